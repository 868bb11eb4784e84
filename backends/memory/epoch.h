/* Deferred freeing for the memory backend's table (epoch-based
 * reclamation): gets that take no lock, writers that free a block only
 * once no get can still be reading it.
 *
 * Every thread that reads has a slot of its own, on a line of its own,
 * found again through thread-local storage: a get stores the global epoch
 * there on entry and 0 on exit.  A writer that unlinks a block tags it
 * with the epoch read after the unlink.  A reader that can still reach the
 * block entered before the unlink, so its slot holds at most that tag;
 * the block is freed when every slot is 0 or above its tag.  When every
 * reader inside has caught up with the global epoch, a reclaiming writer
 * advances it, so blocks retired now become free once those readers leave.
 * The slots are shared by every table of this module (one per thread, kept
 * until the thread exits, then reused).
 *
 * The slot's store must be visible before the get's loads of the chain:
 * the store is a full barrier (xchg on x86).  An asymmetric fence was
 * tried and measured (gets storing with no fence, writers running
 * membarrier(2) before they free, liburcu's "memb" flavour): no get got
 * faster in bench/region (19.1 M/s against 19.6 M/s with the xchg, same
 * run), sets waited for barriers, so it is not here (docs/benchmarks.md). */
#ifndef CACHET_MEMORY_EPOCH_H
#define CACHET_MEMORY_EPOCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Fences.  TSan does not model them (and gcc warns that it does not): its
 * builds use a seq_cst read-modify-write of a word of this thread's
 * instead, a full barrier on the hardware as well. */
#ifdef __SANITIZE_THREAD__
extern _Thread_local _Atomic int epoch__fence_word;
#define fence(order) ((void)(order), \
                      (void)atomic_fetch_add_explicit(&epoch__fence_word, 0, memory_order_seq_cst))
#else
#define fence(order) atomic_thread_fence(order)
#endif

typedef struct epoch_reader {
    _Atomic uint64_t epoch;     /* 0: not inside a get */
    _Atomic int      in_use;
    struct epoch_reader *next;  /* the registry, push-only */
} __attribute__((aligned(64))) epoch_reader;

/* A block a reader may still be reading, and the epoch it was retired in. */
typedef struct {
    void    *p;
    uint64_t epoch;
    size_t   bytes;
} epoch_retired;

/* One writer's blocks waiting to be freed; under the writer's lock. */
typedef struct {
    epoch_retired *v;
    size_t         n, cap, bytes;
} epoch_list;

/* initial-exec: a get must not call __tls_get_addr (11 instructions and a
 * call of ld.so a get, callgrind); 8 bytes fit the static TLS surplus that
 * glibc keeps for modules loaded with dlopen. */
extern _Thread_local epoch_reader *epoch__me __attribute__((tls_model("initial-exec")));
extern _Atomic uint64_t epoch__global;
epoch_reader *epoch__register(void) __attribute__((noinline));

/* This thread's slot, announced; NULL when it has none (out of memory:
 * the caller reads under its lock instead). */
static inline epoch_reader *epoch_enter(void)
{
    epoch_reader *r = epoch__me;
    if (__builtin_expect(!r, 0) && !(r = epoch__register()))
        return NULL;
    uint64_t g = atomic_load_explicit(&epoch__global, memory_order_acquire);
#if defined(__x86_64__) || defined(__i386__)
    /* the store, then the loads of the chain: xchg is a full barrier on
     * x86, and cheaper than the mfence a fence would be */
    atomic_exchange_explicit(&r->epoch, g, memory_order_seq_cst);
#else
    atomic_store_explicit(&r->epoch, g, memory_order_relaxed);
    fence(memory_order_seq_cst);
#endif
    return r;
}

static inline void epoch_exit(epoch_reader *r)
{
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
}

/* p (from malloc) is unlinked: free it once no reader can reach it.
 * bytes counts towards the list's bound.  The caller holds the lock that
 * guards l. */
void epoch_retire(epoch_list *l, void *p, size_t bytes);
/* Frees what no reader can reach any more; the caller holds l's lock. */
void epoch_reclaim(epoch_list *l);
/* Frees all of l: no reader may be inside (the table is being freed). */
void epoch_list_free(epoch_list *l);

#endif
