/* The async queue's worker threads: each takes the oldest queued operation
 * and runs it on the region with the ordinary blocking call, so every
 * backend and proxy chain works and a slow or hung server holds up a
 * worker, never the loop.  A worker that takes a get also takes the other
 * gets queued behind it (up to CACHET_ASYNC_BATCH_MAX) and runs them as one
 * cachet_get_multi: one MGET or multi-get round trip instead of one per
 * key, which is where a queue of gets beats one thread per call. */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "async.h"

/* how far past the head a worker looks for more gets to batch: bounded so
 * that a long queue of sets does not make every take a long walk */
#define BATCH_SCAN 256

static void keep_errmsg(async_op *op)
{
    if (op->st < 0 && !op->errmsg)
        op->errmsg = cachet__strdup(cachet_errmsg());
}

static void run_one(cachet_region *r, async_op *op)
{
    const cachet_set_options *o = op->has_opts ? &op->opts : NULL;
    switch (op->kind) {
    case ASYNC_GET:
        op->st = cachet_get(r, op->key, &op->out, &op->out_len);
        break;
    case ASYNC_SET:
        op->st = o ? cachet_set_ex(r, op->key, op->in, op->in_len, o)
                   : cachet_set(r, op->key, op->in, op->in_len);
        break;
    case ASYNC_ADD:
        op->st = cachet_add(r, op->key, op->in, op->in_len, o);
        break;
    case ASYNC_DELETE:
        op->st = cachet_delete(r, op->key);
        break;
    case ASYNC_GET_MULTI:
        op->st = cachet_get_multi(r, op->items, op->nitems);
        break;
    case ASYNC_GET_OR_CREATE:
        op->st = cachet_get_or_create(r, op->key, op->create, op->create_arg, &op->out,
                                      &op->out_len);
        break;
    }
    if (op->st != CACHET_OK) {
        /* a failed call hands nothing out; make sure nothing is passed on */
        if (op->kind != ASYNC_GET_MULTI && op->out) {
            cachet_free(op->out);
            op->out = NULL;
        }
        op->out_len = 0;
    }
    keep_errmsg(op);
}

/* The gets of a batch, as one get_multi; each op gets its own item's
 * status and value. */
static void run_batch(cachet_region *r, async_op **ops, size_t n)
{
    cachet_item items[CACHET_ASYNC_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        items[i] = (cachet_item){.key = ops[i]->key, .status = CACHET_MISS};
    cachet_get_multi(r, items, n);
    for (size_t i = 0; i < n; i++) {
        ops[i]->st = items[i].status;
        ops[i]->out = items[i].status == CACHET_OK ? items[i].value : NULL;
        ops[i]->out_len = items[i].status == CACHET_OK ? items[i].len : 0;
        if (items[i].status != CACHET_OK)
            cachet_free(items[i].value);
        keep_errmsg(ops[i]);
    }
}

/* Takes the next work (q->mu held): the head, and if it is a get the gets
 * queued behind it.  Returns how many ops were taken (0: exit). */
static size_t take(cachet_async *q, async_op **ops)
{
    while (!q->queued.head && !q->closing) {
        q->idle++;
        pthread_cond_wait(&q->work, &q->mu);
        q->idle--;
    }
    async_op *op = cachet__async_list_pop(&q->queued);
    if (!op)
        return 0;
    ops[0] = op;
    size_t n = 1;
    if (op->kind != ASYNC_GET)
        return n;
    /* leave a share for the other workers when the queue is short, so that
     * a few gets run in parallel rather than in one batch */
    size_t limit = q->queued.n / q->nworkers + 1;
    if (limit > q->batch_max)
        limit = q->batch_max;
    async_op *p = q->queued.head;
    for (int scanned = 0; p && n < limit && scanned < BATCH_SCAN; scanned++) {
        async_op *next = p->next;
        if (p->kind == ASYNC_GET) {
            cachet__async_list_unlink(&q->queued, p);
            ops[n++] = p;
        }
        p = next;
    }
    return n;
}

static void *worker(void *arg)
{
    cachet_async *q = arg;
    async_op *ops[CACHET_ASYNC_BATCH_MAX];
    for (;;) {
        pthread_mutex_lock(&q->mu);
        size_t n = take(q, ops);
        int fail_fast = q->fail_fast;
        pthread_mutex_unlock(&q->mu);
        if (n == 0)
            break;
        if (fail_fast) {
            for (size_t i = 0; i < n; i++) {
                ops[i]->st = cachet__error(CACHET_EUNAVAILABLE,
                                           "cachet_async_close: operation not run: the queue was "
                                           "closing and the backend had failed (%s)",
                                           cachet_strerror(CACHET_EUNAVAILABLE));
                keep_errmsg(ops[i]);
            }
        } else if (n == 1) {
            run_one(q->region, ops[0]);
        } else {
            run_batch(q->region, ops, n);
        }
        int down = 0;
        for (size_t i = 0; i < n; i++)
            down |= ops[i]->st == CACHET_EUNAVAILABLE || ops[i]->st == CACHET_ETIMEDOUT;
        if (down && !fail_fast) {
            pthread_mutex_lock(&q->mu);
            if (q->closing)
                q->fail_fast = 1;
            pthread_mutex_unlock(&q->mu);
        }
        for (size_t i = 0; i < n; i++)
            cachet__async_complete(q, ops[i]);
    }
    return NULL;
}

cachet_status cachet__async_workers_start(cachet_async *q, unsigned n)
{
    q->threads = calloc(n, sizeof *q->threads);
    if (!q->threads)
        return cachet__error(CACHET_ENOMEM, "cachet_async_open: out of memory");
    /* the service's signals go to its own threads, never to ours */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = 0;
    for (q->nthreads = 0; q->nthreads < n; q->nthreads++) {
        if ((err = pthread_create(&q->threads[q->nthreads], NULL, worker, q)) != 0)
            break;
#ifdef __GLIBC__
        pthread_setname_np(q->threads[q->nthreads], "cachet-async");
#endif
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        cachet__async_workers_join(q);
        return cachet__error(CACHET_ENOMEM, "cachet_async_open: cannot start worker thread %u of %u: %s",
                             q->nthreads + 1, n, strerror(err));
    }
    return CACHET_OK;
}

/* Tells the workers to finish the queue and exit, and waits for them. */
void cachet__async_workers_join(cachet_async *q)
{
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    free(q->threads);
    q->threads = NULL;
    q->nthreads = 0;
}
