/* Deferred freeing for the memory backend's table: see epoch.h. */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "epoch.h"

#define RETIRE_BATCH      16         /* retired blocks that make a writer try to free */
#define RETIRE_BYTES      (64 << 10) /* likewise, in bytes */
/* light mode: a writer's list may wait this long for a barrier... */
#define BARRIER_EVERY_NS  1000000
/* ...unless it grew past this, then it takes one at once */
#define HARD_BLOCKS       1024
#define HARD_BYTES        (256 << 10)

#ifdef __SANITIZE_THREAD__
_Thread_local _Atomic int epoch__fence_word;
#endif

_Thread_local epoch_reader *epoch__me __attribute__((tls_model("initial-exec")));
_Atomic uint64_t epoch__global = 1;
int              epoch__light;

static _Atomic(epoch_reader *) readers;
static pthread_key_t  reader_key;
static int            reader_key_ok;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;

/* light mode: barriers one at a time; a count bumped when one begins and
 * when it ends (odd while one runs), and when the last one began.  A block
 * retired when the count read s is safe to free once a whole barrier
 * began after that: at s + 2 if none ran at the time (s even), else at
 * s + 3, after the next one (covered()). */
static pthread_mutex_t  barrier_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t barrier_seq;
static _Atomic int64_t  barrier_last_ns;

static inline int covered(uint64_t retired_at, uint64_t now)
{
    return now >= retired_at + 2 + (retired_at & 1);
}

static int membarrier_cmd(int cmd)
{
    return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

/* Whether gets may store without a fence: membarrier's private expedited
 * command is there and this process is registered for it. */
static int light_possible(void)
{
#ifdef __SANITIZE_THREAD__
    return 0;                   /* TSan does not model the barrier */
#else
    int cmds = membarrier_cmd(MEMBARRIER_CMD_QUERY);
    return cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
           membarrier_cmd(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#endif
}

static int64_t mono_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void reader_release(void *arg)
{
    epoch_reader *r = arg;
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
    atomic_store_explicit(&r->in_use, 0, memory_order_release);
}

/* In a fork()ed child only the forking thread exists: the others' slots
 * would otherwise keep their epochs, and nothing would be freed again.
 * The child registers for membarrier again (the kernel keeps the
 * registration with the address space); if it cannot, its gets fence
 * again -- it has one thread, none inside a get. */
static void readers_after_fork_child(void)
{
    for (epoch_reader *r = atomic_load(&readers); r; r = r->next)
        if (r != epoch__me)
            reader_release(r);
    pthread_mutex_init(&barrier_mu, NULL);
    if (epoch__light && membarrier_cmd(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0)
        epoch__light = 0;
}

static void readers_init(void)
{
    reader_key_ok = pthread_key_create(&reader_key, reader_release) == 0;
    pthread_atfork(NULL, NULL, readers_after_fork_child);
    epoch__light = light_possible();
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
 * memory (the caller then reads under the lock).  pthread_once orders
 * epoch__light's one write before this thread's first get. */
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
    if (pthread_setspecific(reader_key, r) != 0) {
        reader_release(r);
        return NULL;
    }
    return epoch__me = r;
}

/* light mode: every thread of the process runs a full barrier, so each
 * reader's store of its epoch is visible, or its later loads see the
 * unlinks made before this.  0, or -1 when the kernel refused (nothing
 * is freed on the strength of it). */
static int barrier(void)
{
    int rc;
    pthread_mutex_lock(&barrier_mu);
    atomic_store_explicit(&barrier_last_ns, mono_coarse_ns(), memory_order_relaxed);
    atomic_fetch_add_explicit(&barrier_seq, 1, memory_order_seq_cst);     /* begins */
    rc = membarrier_cmd(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    /* ends; a refused one is taken back (a block retired meanwhile, at the
     * odd count, waits for one barrier more: never less) */
    if (rc == 0)
        atomic_fetch_add_explicit(&barrier_seq, 1, memory_order_release);
    else
        atomic_fetch_sub_explicit(&barrier_seq, 1, memory_order_release);
    pthread_mutex_unlock(&barrier_mu);
    return rc == 0 ? 0 : -1;
}

/* The oldest epoch a reader inside announced (UINT64_MAX: none inside).
 * In light mode the caller read barrier_seq (acquire) after the end of a
 * barrier that makes the slots it relies on visible. */
static uint64_t oldest_reader(void)
{
    uint64_t m = UINT64_MAX;
    if (!epoch__light)
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
    uint64_t done = 0, m, g;
    size_t kept = 0;

    /* a writer that never read must see the mode the readers use */
    pthread_once(&reader_once, readers_init);
    if (epoch__light) {
        /* a block is covered once a whole barrier began after it was
         * retired (covered()) */
        done = atomic_load_explicit(&barrier_seq, memory_order_acquire);
        if (l->n && !covered(l->v[l->n - 1].barriers, done) &&
            (l->n >= HARD_BLOCKS || l->bytes >= HARD_BYTES ||
             mono_coarse_ns() - atomic_load_explicit(&barrier_last_ns, memory_order_relaxed) >=
                 BARRIER_EVERY_NS) &&
            barrier() == 0)
            done = atomic_load_explicit(&barrier_seq, memory_order_acquire);
        if (l->n && !covered(l->v[0].barriers, done)) {
            /* nothing is covered yet: try again a batch later */
            l->next_try = l->n + RETIRE_BATCH;
            l->next_try_bytes = l->bytes + RETIRE_BYTES;
            return;
        }
    }
    m = oldest_reader();
    g = atomic_load(&epoch__global);
    if (m >= g)                 /* everyone inside has caught up: move on */
        atomic_compare_exchange_strong(&epoch__global, &g, g + 1);
    l->bytes = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].epoch < m && (!epoch__light || covered(l->v[i].barriers, done))) {
            free(l->v[i].p);
        } else {
            l->bytes += l->v[i].bytes;
            l->v[kept++] = l->v[i];
        }
    l->n = kept;
    /* what stayed waits for a batch more, not for every retire after it */
    l->next_try = kept + RETIRE_BATCH;
    l->next_try_bytes = l->bytes + RETIRE_BYTES;
}

/* Out of memory for the list: wait for the readers inside to leave (a
 * get holds no lock and makes no call that blocks), then free p. */
static void free_after_readers(void *p)
{
    uint64_t tag = atomic_load(&epoch__global);
    atomic_fetch_add(&epoch__global, 1);
    for (;;) {
        if (epoch__light && barrier() != 0) {
            sched_yield();
            continue;
        }
        if (oldest_reader() > tag)
            break;
        sched_yield();
    }
    free(p);
}

void epoch_retire(epoch_list *l, void *p, size_t bytes)
{
    if (!p)
        return;
    pthread_once(&reader_once, readers_init);   /* epoch__light, as in epoch_reclaim */
    fence(memory_order_seq_cst);      /* the unlink before the tag */
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : RETIRE_BATCH * 2;
        epoch_retired *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) {
            free_after_readers(p);
            return;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n].p = p;
    l->v[l->n].epoch = atomic_load(&epoch__global);
    l->v[l->n].barriers = atomic_load_explicit(&barrier_seq, memory_order_acquire);
    l->v[l->n].bytes = bytes;
    l->n++;
    l->bytes += bytes;
    if (!l->next_try) {
        l->next_try = RETIRE_BATCH;
        l->next_try_bytes = RETIRE_BYTES;
    }
    if (l->n >= l->next_try || l->bytes >= l->next_try_bytes)
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
