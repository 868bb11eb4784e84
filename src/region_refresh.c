/* The refresh threads (region_refresh.h).  A job owns a copy of the key,
 * the creator and its argument, a copy of the call's options (without its
 * info pointer: that points into the caller's frame) and the key's lock;
 * the thread runs get_or_create's creator part with it, exactly as a
 * caller would, and throws the value away once stored and published. */
#include "config.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "region.h"

struct refresh_job {
    refresh_job     *next;
    cachet_key       k;                 /* k.key points into k.buf or k.heap */
    char            *key;               /* the caller's key */
    cachet_creator   create;
    void            *arg;
    cachet_options   o;
    int              has_o;
    keylock_entry   *e;
    int64_t          newer_than;
};

static void job_free(refresh_job *j)
{
    cachet_key_release(&j->k);
    free(j->key);
    free(j);
}

static void *refresh_main(void *p)
{
    cachet_region *r = p;
    region_refresh *q = &r->refresh;
    for (;;) {
        refresh_job *j;
        void *v = NULL;
        size_t n = 0;
        pthread_mutex_lock(&q->mu);
        while (!q->head && !q->stopping)
            pthread_cond_wait(&q->cond, &q->mu);
        if (!q->head) {                 /* stopping, nothing left */
            pthread_mutex_unlock(&q->mu);
            return NULL;
        }
        j = q->head;
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->queued--;
        pthread_mutex_unlock(&q->mu);
        if (cachet__refresh_run(r, &j->k, j->key, j->create, j->arg, j->has_o ? &j->o : NULL,
                                j->e, j->newer_than, &v, &n) == CACHET_OK)
            cachet_free(v);
        job_free(j);
    }
}

void region_refresh_init(region_refresh *p, unsigned threads)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->want = threads > CACHET_REFRESH_THREADS_MAX ? CACHET_REFRESH_THREADS_MAX : threads;
}

void region_refresh_stop(cachet_region *r)
{
    region_refresh *q = &r->refresh;
    refresh_job *j, *next;
    unsigned started;
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    j = q->head;                        /* dropped: not worth a creator run at close */
    q->head = q->tail = NULL;
    q->queued = 0;
    started = q->started;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->mu);
    for (; j; j = next) {
        next = j->next;
        keylock_publish(&r->locks, j->e, NULL, 0);   /* waiters look again */
        job_free(j);
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(q->threads[i], NULL);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->mu);
}

void region_refresh_fork_prepare(region_refresh *p) { pthread_mutex_lock(&p->mu); }
void region_refresh_fork_parent(region_refresh *p) { pthread_mutex_unlock(&p->mu); }

void region_refresh_fork_child(region_refresh *p)
{
    /* the parent's threads are not here, nor are the keys' locks the
     * queued jobs held (keylock_fork_child forgets those entries): drop
     * the jobs without publishing, and start threads again when needed */
    refresh_job *j = p->head, *next;
    for (; j; j = next) {
        next = j->next;
        job_free(j);
    }
    p->head = p->tail = NULL;
    p->queued = 0;
    p->started = 0;
    pthread_mutex_unlock(&p->mu);
    /* the condition variable still counts the parent's waiting threads
     * (destroying it would wait for them for ever): start a new one */
    memset(&p->cond, 0, sizeof p->cond);
    pthread_cond_init(&p->cond, NULL);
}

int region_refresh_submit(cachet_region *r, const cachet_key *k, const char *key,
                          cachet_creator create, void *arg, const cachet_options *o,
                          keylock_entry *e, int64_t newer_than)
{
    region_refresh *q = &r->refresh;
    refresh_job *j;
    if (!q->want || !e)
        return 0;
    if (!(j = calloc(1, sizeof *j)))
        return 0;
    if (!(j->key = cachet__strdup(key))) {
        free(j);
        return 0;
    }
    /* the region's key again (cachet_key points into itself) */
    if (cachet_key_make(&r->keys, key, &j->k) != CACHET_OK) {
        free(j->key);
        free(j);
        return 0;
    }
    if (j->k.key == key)                /* no copy was made: point at ours */
        j->k.key = j->key;
    (void)k;
    j->create = create;
    j->arg = arg;
    if (o) {
        j->o = *o;
        j->o.info = NULL;
        j->has_o = 1;
    }
    j->e = e;
    j->newer_than = newer_than;
    pthread_mutex_lock(&q->mu);
    if (q->stopping || q->queued >= CACHET_REFRESH_QUEUE_MAX) {
        pthread_mutex_unlock(&q->mu);
        job_free(j);
        return 0;
    }
    if (q->started < q->want) {
        /* the library's threads take no signals: they are the service's */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        while (q->started < q->want &&
               pthread_create(&q->threads[q->started], NULL, refresh_main, r) == 0)
            q->started++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (!q->started) {                  /* no thread: the caller refreshes */
        pthread_mutex_unlock(&q->mu);
        job_free(j);
        return 0;
    }
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->queued++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->mu);
    return 1;
}
