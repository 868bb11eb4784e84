/* The non-blocking API's insides (cachet_async_*), shared by its files:
 *   async_queue.c    the operations: allocation (key and value copied in
 *                    one block), the FIFO the workers take from, the
 *                    completed list dispatch takes from, the outstanding
 *                    limit;
 *   async_notify.c   the completion fd (one eventfd);
 *   async_workers.c  the threads that run operations on the region, and the
 *                    batching of queued gets into one get_multi;
 *   async_ops.c      the public submit functions, one per operation;
 *   async.c          open, dispatch, close, the fork guard.
 *
 * One mutex (q->mu) guards both lists and the counters; it is never held
 * while an operation runs or a callback is called, so the loop's thread
 * waits on it only for list pointer moves. */
#ifndef CACHET_ASYNC_H
#define CACHET_ASYNC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "internal.h"

/* Outstanding operations (submitted, and their callback not yet run) a
 * queue accepts; the next submit gets CACHET_ENOMEM.  The contract asks for
 * at least 10,000. */
#define CACHET_ASYNC_MAX_OUTSTANDING 65536
/* Worker threads when cachet_async_open is given 0, and the most it takes. */
#define CACHET_ASYNC_DEFAULT_THREADS 4
#define CACHET_ASYNC_MAX_THREADS 256
/* The most queued gets one worker folds into one cachet_get_multi. */
#define CACHET_ASYNC_BATCH_MAX 64

typedef enum {
    ASYNC_GET,
    ASYNC_SET,         /* also set_ex: has_opts */
    ASYNC_ADD,
    ASYNC_DELETE,
    ASYNC_GET_MULTI,
    ASYNC_GET_OR_CREATE,
} async_kind;

typedef struct async_op {
    struct async_op *next, *prev;
    async_kind kind;
    /* what was submitted (key, value and multi-get keys point into the
     * same allocation as the op: one malloc and one free per operation) */
    const char *key;
    const void *in;
    size_t      in_len;
    int         has_opts;
    cachet_set_options opts;
    cachet_creator create;
    void       *create_arg;
    cachet_item *items;        /* get_multi: n items, keys copied */
    size_t       nitems;
    cachet_async_done       done;
    cachet_async_multi_done multi_done;
    void       *arg;
    /* what came back */
    cachet_status st;
    void       *out;           /* handed to done, which takes it */
    size_t      out_len;
    char       *errmsg;        /* the worker's cachet_errmsg() on failure (malloc) */
} async_op;

typedef struct {
    async_op *head, *tail;
    size_t    n;
} async_list;

struct cachet_async {
    cachet_region  *region;
    pthread_mutex_t mu;
    pthread_cond_t  work;      /* a worker may go: an op queued, or closing */
    async_list      queued;    /* submitted, not yet taken by a worker */
    async_list      done_list; /* run, waiting for dispatch */
    size_t          outstanding;   /* submitted and callback not yet run */
    int             closing;       /* close has begun: submits are refused */
    int             fail_fast;     /* closing and the backend is down: queued ops are not tried */
    size_t          idle;          /* workers waiting on work */
    unsigned        batch_max;     /* gets per get_multi (cachet_async_set_batch) */
    unsigned        nworkers;      /* how many were asked for (set before they start) */
    unsigned        nthreads;      /* how many started (the starting thread's) */
    pthread_t      *threads;
    int             efd;           /* the completion eventfd */
    unsigned long   fork_gen;      /* cachet__async_fork_gen() when opened */
    long            pid;           /* the process that opened it (for the message) */
    /* the loop thread's own (dispatch and close run there) */
    int             dispatching;   /* callbacks are running in dispatch */
    int             close_deferred;    /* close was called from a callback */
    int             close_running;     /* close is draining */
};

/* async_queue.c (the list functions expect q->mu held) */
async_op *cachet__async_op_new(async_kind kind, const char *key, const void *in, size_t in_len,
                               const char *const *keys, size_t nkeys);
void      cachet__async_op_free(async_op *op);
void      cachet__async_list_push(async_list *l, async_op *op);
void      cachet__async_list_unlink(async_list *l, async_op *op);
async_op *cachet__async_list_pop(async_list *l);
/* Admits op into q's queue (takes q->mu): CACHET_OK, or an error (the op is
 * freed and done will never be called) when the queue is closing, was
 * opened in the parent of a fork, or is full. */
cachet_status cachet__async_submit(cachet_async *q, async_op *op, const char *what);
/* Moves a run op to the completed list and signals the fd (takes q->mu). */
void      cachet__async_complete(cachet_async *q, async_op *op);

/* async_notify.c */
int  cachet__async_notify_open(void);           /* the eventfd, or -1 (errno) */
void cachet__async_notify_signal(int efd);
void cachet__async_notify_drain(int efd);
/* Waits until the fd is readable or ms milliseconds pass. */
void cachet__async_notify_wait(int efd, int ms);

/* async_workers.c */
cachet_status cachet__async_workers_start(cachet_async *q, unsigned n);
void          cachet__async_workers_join(cachet_async *q);

/* async.c */
unsigned long cachet__async_fork_gen(void);
/* Whether q may be used in this process; sets the message when not. */
int cachet__async_usable(const cachet_async *q, const char *what);

#endif
