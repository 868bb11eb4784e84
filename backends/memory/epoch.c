/* Deferred freeing for the memory backend's table: see epoch.h. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include "epoch.h"

#define RETIRE_BATCH      16         /* retired blocks that make a writer try to free */
#define RETIRE_BYTES      (64 << 10) /* likewise, in bytes */
#ifdef __SANITIZE_THREAD__
_Thread_local _Atomic int epoch__fence_word;
#endif

_Thread_local epoch_reader *epoch__me __attribute__((tls_model("initial-exec")));
_Atomic uint64_t epoch__global = 1;

static _Atomic(epoch_reader *) readers;
/* slots held by a thread: with none but this thread's, a writer frees at
 * once (epoch_retire) */
static _Atomic int slots_in_use;
static pthread_key_t  reader_key;
static int            reader_key_ok;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;

static void reader_release(void *arg)
{
    epoch_reader *r = arg;
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
    if (atomic_exchange(&r->in_use, 0))
        atomic_fetch_sub(&slots_in_use, 1);
}

/* In a fork()ed child only the forking thread exists: the others' slots
 * would otherwise keep their epochs, and nothing would be freed again. */
static void readers_after_fork_child(void)
{
    for (epoch_reader *r = atomic_load(&readers); r; r = r->next)
        if (r != epoch__me)
            reader_release(r);
}

static void readers_init(void)
{
    reader_key_ok = pthread_key_create(&reader_key, reader_release) == 0;
    pthread_atfork(NULL, NULL, readers_after_fork_child);
}

/* The module is unloaded (dlclose) or the process ends: exiting threads
 * must not call into it.  The slots are freed (dlclose would leave them
 * unreachable) only when no other thread holds one: at exit() other
 * threads may still be inside a get. */
__attribute__((destructor)) static void readers_fini(void)
{
    epoch_reader *r;
    if (reader_key_ok)
        pthread_key_delete(reader_key);
    for (r = atomic_load(&readers); r; r = r->next)
        if (r != epoch__me && atomic_load(&r->in_use))
            return;
    r = atomic_exchange(&readers, NULL);
    while (r) {
        epoch_reader *next = r->next;
        free(r);
        r = next;
    }
    epoch__me = NULL;
}

/* This thread's slot, registered on its first get; NULL when out of
 * memory (the caller then reads under the lock). */
epoch_reader *epoch__register(void)
{
    epoch_reader *r;
    pthread_once(&reader_once, readers_init);
    if (!reader_key_ok)
        return NULL;
    for (r = atomic_load(&readers); r; r = r->next) {
        int free_slot = 0;
        if (atomic_compare_exchange_strong(&r->in_use, &free_slot, 1))
            break;
    }
    if (!r) {
        if (posix_memalign((void **)&r, 64, sizeof *r) != 0)
            return NULL;
        atomic_init(&r->epoch, 0);
        atomic_init(&r->in_use, 1);
        r->next = atomic_load(&readers);
        while (!atomic_compare_exchange_weak(&readers, &r->next, r))
            ;
    }
    /* counted, then a full fence, before this thread's first announce: a
     * writer that still counts no one but itself has its unlinks seen by
     * this thread's loads (epoch_retire) */
    atomic_fetch_add(&slots_in_use, 1);
    fence(memory_order_seq_cst);
    if (pthread_setspecific(reader_key, r) != 0) {
        reader_release(r);
        return NULL;
    }
    return epoch__me = r;
}

/* The oldest epoch a reader inside announced (UINT64_MAX: none inside). */
static uint64_t oldest_reader(void)
{
    uint64_t m = UINT64_MAX;
    fence(memory_order_seq_cst);
    for (epoch_reader *r = atomic_load_explicit(&readers, memory_order_acquire); r; r = r->next) {
        uint64_t e = atomic_load_explicit(&r->epoch, memory_order_acquire);
        if (e && e < m)
            m = e;
    }
    return m;
}

void epoch_reclaim(epoch_list *l)
{
    uint64_t m = oldest_reader(), g = atomic_load(&epoch__global);
    size_t kept = 0;

    if (m >= g)                 /* everyone inside has caught up: move on */
        atomic_compare_exchange_strong(&epoch__global, &g, g + 1);
    l->bytes = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].epoch < m) {
            free(l->v[i].p);
        } else {
            l->bytes += l->v[i].bytes;
            l->v[kept++] = l->v[i];
        }
    l->n = kept;
}

/* Whether no other thread can be inside a get: no slot is held but this
 * thread's (which is not inside one: it is writing).  Read after the
 * writer's fence; a thread that takes a slot later fences after counting
 * itself, so its loads see what was unlinked before. */
static int alone(void)
{
    int n = atomic_load(&slots_in_use);
    epoch_reader *me = epoch__me;
    return n == 0 || (n == 1 && me && atomic_load_explicit(&me->in_use, memory_order_relaxed));
}

void epoch_retire(epoch_list *l, void *p, size_t bytes)
{
    if (!p)
        return;
    fence(memory_order_seq_cst);      /* the unlink before the tag */
    if (alone()) {
        /* one thread (a prefork worker, a single-threaded service): the
         * block goes back now, to malloc's per-thread cache, where the
         * next set's entry finds it -- a batch freed later was 2.5 times
         * slower a set (bench/region) */
        free(p);
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : RETIRE_BATCH * 2;
        epoch_retired *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) {
            /* out of memory: wait for the readers inside to leave (a get
             * holds no lock and makes no call that blocks) */
            uint64_t tag = atomic_load(&epoch__global);
            atomic_fetch_add(&epoch__global, 1);
            while (oldest_reader() <= tag)
                sched_yield();
            free(p);
            return;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n].p = p;
    l->v[l->n].epoch = atomic_load(&epoch__global);
    l->v[l->n].bytes = bytes;
    l->n++;
    l->bytes += bytes;
    if (l->n >= RETIRE_BATCH || l->bytes >= RETIRE_BYTES)
        epoch_reclaim(l);
}

void epoch_list_free(epoch_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].p);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = l->bytes = 0;
}
