/* An async queue's life: open (workers and the completion fd), dispatch
 * (callbacks in the loop's thread), close (everything queued completes,
 * every callback runs in the closing thread), and the fork guard. */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "async.h"

/* ---- fork: a queue's threads are the parent's, so in a child it is dead.
 * A generation counter bumped in the child (pthread_atfork) tells every
 * entry point; reading it is one load, no getpid() per call. */
static unsigned long fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void in_child(void)
{
    __atomic_add_fetch(&fork_gen, 1, __ATOMIC_RELAXED);
}

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, in_child);
}

unsigned long cachet__async_fork_gen(void)
{
    return __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
}

int cachet__async_usable(const cachet_async *q, const char *what)
{
    if (!q) {
        cachet__error(CACHET_EINVAL, "%s: NULL queue", what);
        return 0;
    }
    if (q->fork_gen != cachet__async_fork_gen()) {
        cachet__error(CACHET_EINVAL,
                      "%s: this queue was opened by process %ld and does not survive fork(); "
                      "open a new queue in the child (cachet_async_open)", what, q->pid);
        return 0;
    }
    return 1;
}

CACHET_EXPORT cachet_status cachet_async_open(cachet_region *r, unsigned threads, cachet_async **out)
{
    if (!out)
        return cachet__error(CACHET_EINVAL, "cachet_async_open: NULL out");
    *out = NULL;
    if (!r)
        return cachet__error(CACHET_EINVAL, "cachet_async_open: NULL region");
    if (threads > CACHET_ASYNC_MAX_THREADS)
        return cachet__error(CACHET_EINVAL, "cachet_async_open: threads = %u is over the limit of %d",
                             threads, CACHET_ASYNC_MAX_THREADS);
    if (threads == 0)
        threads = CACHET_ASYNC_DEFAULT_THREADS;
    pthread_once(&fork_once, register_fork_handler);
    cachet_async *q = calloc(1, sizeof *q);
    if (!q)
        return cachet__error(CACHET_ENOMEM, "cachet_async_open: out of memory");
    q->region = r;
    q->fork_gen = cachet__async_fork_gen();
    q->pid = (long)getpid();
    q->nworkers = threads;
    q->batch_max = CACHET_ASYNC_BATCH_MAX;
    if ((q->efd = cachet__async_notify_open()) < 0) {
        int e = errno;
        free(q);
        return cachet__error(CACHET_ENOMEM, "cachet_async_open: cannot create the completion eventfd: %s",
                             strerror(e));
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work, NULL);
    cachet_status st = cachet__async_workers_start(q, threads);
    if (st != CACHET_OK) {
        close(q->efd);
        pthread_cond_destroy(&q->work);
        pthread_mutex_destroy(&q->mu);
        free(q);
        return st;
    }
    *out = q;
    return CACHET_OK;
}

CACHET_EXPORT int cachet_async_fd(const cachet_async *q)
{
    return cachet__async_usable(q, "cachet_async_fd") ? q->efd : -1;
}

CACHET_EXPORT cachet_status cachet_async_set_batch(cachet_async *q, unsigned max)
{
    if (!cachet__async_usable(q, "cachet_async_set_batch"))
        return CACHET_EINVAL;
    if (max > CACHET_ASYNC_BATCH_MAX)
        return cachet__error(CACHET_EINVAL, "cachet_async_set_batch: %u is over the most, %d",
                             max, CACHET_ASYNC_BATCH_MAX);
    pthread_mutex_lock(&q->mu);
    q->batch_max = max ? max : CACHET_ASYNC_BATCH_MAX;
    pthread_mutex_unlock(&q->mu);
    return CACHET_OK;
}

CACHET_EXPORT size_t cachet_async_outstanding(const cachet_async *q)
{
    if (!cachet__async_usable(q, "cachet_async_outstanding"))
        return 0;
    cachet_async *m = (cachet_async *)q;   /* the lock, not the queue, changes */
    pthread_mutex_lock(&m->mu);
    size_t n = m->outstanding;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void run_callback(async_op *op)
{
    if (op->st < 0)
        /* the worker's message, so done can read cachet_errmsg() */
        cachet__error(op->st, "%s", op->errmsg ? op->errmsg : cachet_strerror(op->st));
    if (op->kind == ASYNC_GET_MULTI) {
        if (op->multi_done) {
            op->multi_done(op->arg, op->st, op->items, op->nitems);
            op->nitems = 0;      /* the values are the callee's now */
        }
    } else if (op->done) {
        op->done(op->arg, op->st, op->out, op->out_len);
        op->out = NULL;
    }
    cachet__async_op_free(op);
}

static void close_now(cachet_async *q);

CACHET_EXPORT size_t cachet_async_dispatch(cachet_async *q)
{
    if (!cachet__async_usable(q, "cachet_async_dispatch"))
        return 0;
    /* drain first, then take: a completion pushed after the take signals
     * the fd again (see cachet__async_complete) */
    cachet__async_notify_drain(q->efd);
    pthread_mutex_lock(&q->mu);
    async_list mine = q->done_list;
    q->done_list = (async_list){0};
    /* they leave the count now, so their callbacks may submit as many */
    q->outstanding -= mine.n;
    pthread_mutex_unlock(&q->mu);
    size_t ran = mine.n;
    q->dispatching++;
    async_op *op;
    while ((op = cachet__async_list_pop(&mine)) != NULL)
        run_callback(op);
    q->dispatching--;
    if (q->dispatching == 0 && q->close_deferred && !q->close_running)
        close_now(q);
    return ran;
}

/* Runs the queue to the end in this thread, then frees it. */
static void close_now(cachet_async *q)
{
    q->close_running = 1;
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->mu);
    for (;;) {
        pthread_mutex_lock(&q->mu);
        size_t left = q->outstanding;
        pthread_mutex_unlock(&q->mu);
        if (left == 0)
            break;
        cachet__async_notify_wait(q->efd, 100);
        cachet_async_dispatch(q);
    }
    cachet__async_workers_join(q);
    close(q->efd);
    pthread_cond_destroy(&q->work);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

CACHET_EXPORT void cachet_async_close(cachet_async *q)
{
    if (!q)
        return;
    if (q->fork_gen != cachet__async_fork_gen()) {
        /* a child's copy: the workers do not exist here and the lock may
         * have been held by one of them at the fork, so nothing is run or
         * locked; the operations' memory is left (it is the parent's
         * state, copied) and the fd and the queue are released */
        close(q->efd);
        free(q->threads);
        free(q);
        return;
    }
    if (q->dispatching) {
        q->close_deferred = 1;   /* from a callback: when dispatch returns */
        return;
    }
    if (q->close_running)
        return;
    close_now(q);
}
