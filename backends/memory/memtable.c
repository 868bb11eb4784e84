/* memtable: see memtable.h.
 *
 * Concurrency: the table is split into shards by the key's hash, each with
 * its own lock, buckets and eviction queues, on cache lines of its own.
 * Writers take their shard's lock.  Readers take none: a get walks the
 * chain with acquire loads and copies the value out of an entry whose
 * bytes never change once published (a set links a new entry in place of
 * the old one, in one store).  What a reader may still be reading is not
 * freed at once: unlinked entries and replaced bucket arrays go on their
 * shard's retire list, tagged with the global epoch, and are freed once
 * every reader inside a get announced a later epoch (epoch-based
 * reclamation; epoch.h).  So a hit writes only this
 * thread's own reader slot and, while the entry's 2-bit frequency is below
 * its cap, the entry itself: no line another thread writes on its hits.
 * A get finds its shard's bucket array in the table's array of shard
 * views (shard_view: 16 bytes a shard, apart from the writers' state).
 * A miss is trusted only if the shard's bucket array was not being grown
 * meanwhile (a sequence count, odd while grow() relinks the chains);
 * otherwise, and for an expired entry, the get falls back to the locked
 * path.  Only a bounded table's writes share something (the global count
 * and bytes, updated atomically), because the bounds are the table's.
 *
 * Eviction (bounded tables only): S3-FIFO within each shard.  New entries
 * enter the small FIFO (10% of the shard's share of the bound); one that
 * is hit while there moves to the main FIFO when it reaches the tail, one
 * that is not leaves and its hash goes into the ghost; a key found in the
 * ghost enters main directly.  Main is a FIFO with reinsertion: an entry
 * at the tail with a non-zero frequency goes back to the head with one
 * less.  A hit only increments a capped counter (no list surgery), which is
 * why the read path needs no write to shared lines.  A write that takes
 * the table over a bound evicts from its own shard first, then from the
 * others, one lock at a time.  bench/evict compares this with exact
 * LRU, SIEVE and S3-FIFO simulations on the same traces.
 *
 * Entries: one allocation of the header, the key and the value (and an
 * 8-byte deadline after them only when the write had a ttl).  Unbounded
 * tables keep no eviction links at all; bounded ones put the two queue
 * links in front of the header. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "epoch.h"
#include "memtable.h"

/* Unbounded tables: 64 shards, so that two writing threads rarely share
 * one (1 in 64), while a get's random bucket lands on few pages: each
 * shard's bucket array is an allocation of its own among the entries, and
 * 256 smaller arrays cost a get hit 5% more at 20k keys than 64
 * (bench/region_gets; docs/benchmarks.md). */
#define MAX_SHARDS        64
#define MIN_BUCKETS       8
#define MIN_SHARD_COUNT   256       /* max_count share under which shards are merged */
#define MIN_SHARD_BYTES   (1 << 20) /* likewise for max_size */
#define FREQ_MAX          3
#define GHOST_WAYS        4


enum { F_TTL = 1 };

typedef struct entry entry;
typedef _Atomic(entry *) eptr;

/* Readers see next, hash, klen, vlen, flags and data: all but next are
 * written before the entry is published and never after.  in_main and the
 * queue links are the writers' (under the lock). */
struct entry {
    eptr          next;         /* bucket chain */
    uint32_t      hash;         /* low bits of the key's hash: bucket and quick compare */
    uint32_t      klen, vlen;
    uint8_t       flags;        /* F_TTL */
    _Atomic uint8_t freq;       /* hits, capped at FREQ_MAX (bounded tables only) */
    uint8_t       in_main;      /* in main's FIFO, else small's */
    unsigned char data[];       /* key value [int64 deadline if F_TTL] */
};

/* A bucket array and its mask, replaced as one by grow(). */
typedef struct {
    uint32_t mask;
    eptr     b[];
} buckets;

/* Queue links, in front of the header of a bounded table's entries. */
typedef struct links {
    entry *newer, *older;
} links;

typedef struct {
    entry *head, *tail;         /* newest, oldest */
    size_t n, bytes;
} fifo;

/* A shard's lock.  Its critical sections are a chain walk and a copy of one
 * value, shorter than a glibc mutex's own lock and unlock (about 60
 * instructions a get, measured with cachegrind), so it spins; it yields
 * the processor when the holder seems preempted, because this library runs
 * on machines with more threads than cores. */
typedef struct {
    atomic_int held;
} lock_t;

static inline void lock(lock_t *l)
{
    unsigned spins = 0;
    while (atomic_exchange_explicit(&l->held, 1, memory_order_acquire))
        while (atomic_load_explicit(&l->held, memory_order_relaxed))
            if (++spins % 128 == 0)
                sched_yield();
#if defined(__x86_64__) || defined(__i386__)
            else
                __builtin_ia32_pause();
#endif
}

static inline void unlock(lock_t *l)
{
    atomic_store_explicit(&l->held, 0, memory_order_release);
}

/* What a get reads of a shard, apart from the shard: 16 bytes each in one
 * array (1 KiB for 64 shards), so that a get's lookup touches a line of
 * this small, read-mostly array, not a line of the shard's writer state
 * and another of its bucket array's header.  With 20k keys and 256 shards
 * those two lines a get cost 14% of the get hit (bench/region, against a
 * one-shard build); this array puts one line of its own in their place.
 * tab is the bucket array with log2 of its size in the low 6 bits (the
 * array is 64-byte aligned): one load gives a pointer and a mask that
 * belong together, which two loads during a grow() would not. */
typedef struct {
    _Atomic uintptr_t tab;
    _Atomic unsigned  grow_seq; /* odd while grow() relinks the chains */
} shard_view;

typedef struct shard {
    lock_t    mu;
    shard_view *view;           /* this shard's entry in memtable.views */
    _Atomic(buckets *) tab;     /* the writers' copy of view->tab's pointer */
    size_t    count, bytes;
    fifo      small, main;
    /* ghost: 4-way buckets of (tag << 32 | insertion number); an entry is
     * in the ghost while fewer than `main.n` insertions came after it */
    uint64_t *ghost;
    uint32_t  gmask;            /* ghost buckets - 1 */
    uint32_t  gseq;
    uint64_t  evictions;
    epoch_list retired;         /* under mu */
} __attribute__((aligned(64))) shard;

struct memtable {
    size_t         max_count, max_size;
    int            bounded;
    size_t         share;       /* a shard's part of the bound, in its units */
    int            by_count;    /* queue sizes in entries (else in bytes) */
    unsigned       nshards;     /* a power of two */
    uint64_t       seed;
    void        *(*copy)(const void *, size_t);  /* a get's copy: see memtable_set_copy */
    _Atomic size_t count, bytes;/* bounded tables only */
    shard         *shards;
    shard_view    *views;       /* [nshards] */
};

/* ---- deferred freeing: epoch.h ---- */

static inline void retire(shard *s, void *p, size_t bytes)
{
    epoch_retire(&s->retired, p, bytes);
}

/* ---- hashing ---- */

/* murmur3's finalizer: every output bit depends on every input bit, which
 * matters because shards take the high bits and buckets the low ones. */
static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* Eight bytes per multiply, then fmix64.  The per-table seed makes layout
 * differ between tables and processes; not a defence against chosen keys. */
static inline uint64_t hash_key(uint64_t seed, const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL), w;

    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    if (n) {
        /* the tail in fixed-size loads, not a memcpy of n bytes (a loop or
         * a call): the last 8 bytes, overlapping the word before, or for a
         * key under 8 bytes two 4-byte loads, or its first, middle and
         * last bytes.  The length is in the seed, so overlaps of keys of
         * different lengths cannot collide by construction. */
        if (p != (const unsigned char *)key) {
            memcpy(&w, p + n - 8, 8);
        } else if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, p, 4);
            memcpy(&b, p + n - 4, 4);
            w = (uint64_t)a << 32 | b;
        } else {
            w = (uint64_t)p[0] << 16 | (uint64_t)p[n >> 1] << 8 | p[n - 1];
        }
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    return fmix64(h);
}

/* Whether n bytes at a and b are the same: up to 64 bytes in 8-byte
 * words inline (the last word overlapping the one before; under 8 bytes
 * two overlapping 4-byte words or the bytes), past that memcmp.  A get's
 * key compare was a memcmp call, 19 instructions for a 9-byte key. */
static inline int key_eq(const unsigned char *a, const void *bv, size_t n)
{
    const unsigned char *b = bv;
    uint64_t x, y, d = 0;

    if (n > 64)
        return memcmp(a, b, n) == 0;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            d |= x ^ y;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return (d | (x ^ y)) == 0;
    }
    if (n >= 4) {
        uint32_t p, q, r, t;
        memcpy(&p, a, 4);
        memcpy(&q, b, 4);
        memcpy(&r, a + n - 4, 4);
        memcpy(&t, b + n - 4, 4);
        return ((p ^ q) | (r ^ t)) == 0;
    }
    for (size_t i = 0; i < n; i++)
        d |= (uint64_t)(a[i] ^ b[i]);
    return d == 0;
}

static inline unsigned shard_index(const memtable *t, uint64_t h)
{
    return (unsigned)(h >> 40) & (t->nshards - 1);
}

static inline shard *shard_of(memtable *t, uint64_t h)
{
    return &t->shards[shard_index(t, h)];
}

/* ---- entries ---- */

static int64_t mono_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The key first, at a fixed offset, so that a get finds it and the value
 * without looking at the flags; a ttl's deadline (unaligned) follows the
 * value. */
static inline unsigned char *e_key(entry *e)
{
    return e->data;
}

static inline unsigned char *e_value(entry *e)
{
    return e_key(e) + e->klen;
}

static inline int e_expired(const entry *e)
{
    int64_t deadline;
    if (!(e->flags & F_TTL))
        return 0;
    memcpy(&deadline, e->data + e->klen + e->vlen, 8);
    return mono_coarse_ns() >= deadline;
}

static inline links *e_links(entry *e)
{
    return (links *)(void *)((char *)e - sizeof(links));
}

static inline size_t e_units(const memtable *t, const entry *e)
{
    return t->by_count ? 1 : (size_t)e->klen + e->vlen;
}

static entry *e_new(memtable *t, uint64_t h, const void *key, size_t klen, const void *value,
                    size_t len, double ttl)
{
    /* past ~300 years a deadline would overflow: it is for ever */
    size_t pre = t->bounded ? sizeof(links) : 0, dl = ttl > 0 && ttl < 9e9 ? 8 : 0;
    char *p = malloc(pre + sizeof(entry) + dl + klen + len);
    entry *e;

    if (!p)
        return NULL;
    e = (entry *)(void *)(p + pre);
    atomic_init(&e->next, NULL);
    e->hash = (uint32_t)h;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)len;
    e->flags = 0;
    atomic_init(&e->freq, 0);
    e->in_main = 0;
    if (klen)
        memcpy(e_key(e), key, klen);
    if (len)
        memcpy(e_value(e), value, len);
    if (dl) {
        int64_t deadline = mono_coarse_ns() + (int64_t)(ttl * 1e9);
        e->flags |= F_TTL;
        memcpy(e_value(e) + len, &deadline, 8);
    }
    return e;
}

static void *e_block(memtable *t, entry *e)
{
    return t->bounded ? (void *)e_links(e) : (void *)e;
}

/* An entry no reader ever saw. */
static void e_free(memtable *t, entry *e)
{
    if (e)
        free(e_block(t, e));
}

/* An entry that was in the table. */
static void e_retire(memtable *t, shard *s, entry *e)
{
    if (e)
        retire(s, e_block(t, e), sizeof(entry) + e->klen + e->vlen);
}

static inline uint8_t e_freq(const entry *e)
{
    return atomic_load_explicit(&e->freq, memory_order_relaxed);
}

static inline void e_set_freq(entry *e, uint8_t f)
{
    atomic_store_explicit(&e->freq, f, memory_order_relaxed);
}

/* ---- FIFOs (bounded tables) ---- */

static void fifo_push(fifo *q, entry *e, size_t units)
{
    links *l = e_links(e);
    l->newer = NULL;
    l->older = q->head;
    if (q->head)
        e_links(q->head)->newer = e;
    else
        q->tail = e;
    q->head = e;
    q->n++;
    q->bytes += units;
}

static void fifo_remove(fifo *q, entry *e, size_t units)
{
    links *l = e_links(e);
    if (l->newer)
        e_links(l->newer)->older = l->older;
    else
        q->head = l->older;
    if (l->older)
        e_links(l->older)->newer = l->newer;
    else
        q->tail = l->newer;
    q->n--;
    q->bytes -= units;
}

static inline size_t fifo_size(const memtable *t, const fifo *q)
{
    return t->by_count ? q->n : q->bytes;
}

static inline fifo *queue_of(shard *s, const entry *e)
{
    return e->in_main ? &s->main : &s->small;
}

/* ---- the ghost ---- */

static inline uint32_t ghost_tag(uint32_t h)
{
    return (h * 0x9e3779b1u) | 1;    /* never 0, the empty slot */
}

static inline uint64_t *ghost_set(shard *s, uint32_t h)
{
    return &s->ghost[(size_t)((h >> 7) & s->gmask) * GHOST_WAYS];
}

/* The ghost holds as many keys as main holds entries (the paper's size);
 * its table has about twice that many slots. */
static void ghost_fit(shard *s)
{
    size_t want = MIN_BUCKETS;
    uint64_t *g;

    while (want * GHOST_WAYS < 2 * s->main.n)
        want *= 2;
    if (s->ghost && want <= (size_t)s->gmask + 1)
        return;
    if (!(g = calloc(want * GHOST_WAYS, sizeof *g)))
        return;                 /* a smaller ghost only forgets sooner */
    free(s->ghost);             /* regrown while main fills: little is lost */
    s->ghost = g;
    s->gmask = (uint32_t)(want - 1);
}

static void ghost_put(shard *s, uint32_t h)
{
    uint64_t *set, slot;
    uint32_t oldest = 0, age, i, victim = 0;

    ghost_fit(s);
    if (!s->ghost)
        return;
    set = ghost_set(s, h);
    for (i = 0; i < GHOST_WAYS; i++) {
        if (!set[i]) {
            victim = i;
            break;
        }
        age = s->gseq - (uint32_t)set[i];
        if (age >= oldest) {
            oldest = age;
            victim = i;
        }
    }
    slot = (uint64_t)ghost_tag(h) << 32 | s->gseq++;
    set[victim] = slot;
}

/* 1 (and forgets it) if h is in the ghost. */
static int ghost_take(shard *s, uint32_t h)
{
    uint64_t *set;
    uint32_t tag = ghost_tag(h);

    if (!s->ghost)
        return 0;
    set = ghost_set(s, h);
    for (unsigned i = 0; i < GHOST_WAYS; i++)
        if ((uint32_t)(set[i] >> 32) == tag && s->gseq - (uint32_t)set[i] < s->main.n + 1) {
            set[i] = 0;
            return 1;
        }
    return 0;
}

/* ---- the hash table; callers hold the shard's lock ---- */

/* Loads of links by the lock's holder (relaxed: only it stores them);
 * stores are releases, because readers follow them without the lock. */
static inline entry *ld(eptr *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static inline void st(eptr *p, entry *e)
{
    atomic_store_explicit(p, e, memory_order_release);
}

static inline buckets *tab_of(shard *s)
{
    return atomic_load_explicit(&s->tab, memory_order_relaxed);
}

/* 64-byte aligned, for the size in shard_view.tab's low bits. */
static buckets *tab_new(size_t n)
{
    size_t bytes = (sizeof(buckets) + n * sizeof(eptr) + 63) & ~(size_t)63;
    buckets *b = aligned_alloc(64, bytes);
    if (b) {
        memset(b, 0, bytes);
        b->mask = (uint32_t)(n - 1);
    }
    return b;
}

/* Publishes b as s's bucket array, for writers and for readers. */
static inline void tab_publish(shard *s, buckets *b)
{
    uintptr_t log2n = (uintptr_t)__builtin_ctz(b->mask + 1);
    atomic_store_explicit(&s->tab, b, memory_order_release);
    atomic_store_explicit(&s->view->tab, (uintptr_t)b | log2n, memory_order_release);
}

/* A reader's bucket head for hash h, from one load of the view. */
static inline eptr *view_bucket(const shard_view *v, uint32_t h)
{
    uintptr_t tab = atomic_load_explicit(&v->tab, memory_order_acquire);
    buckets *b = (buckets *)(tab & ~(uintptr_t)63);
    return &b->b[h & (((uint32_t)1 << (tab & 63)) - 1)];
}

static inline eptr *find(shard *s, uint32_t h, const void *key, size_t klen)
{
    buckets *b = tab_of(s);
    eptr *pp = &b->b[h & b->mask];
    for (entry *e; (e = ld(pp)) != NULL; pp = &e->next)
        if (e->hash == h && e->klen == klen && key_eq(e_key(e), key, klen))
            break;
    return pp;
}

/* Relinks every entry into a twice larger array.  A reader walking a chain
 * meanwhile may be led into another chain (never into a loop: moved entries
 * only point to moved entries) and miss: grow_seq tells it to look again. */
static void grow(shard *s)
{
    buckets *old = tab_of(s), *nb;
    size_t n = ((size_t)old->mask + 1) * 2;
    unsigned seq = atomic_load_explicit(&s->view->grow_seq, memory_order_relaxed);

    if (n > UINT32_MAX || !(nb = tab_new(n)))
        return;                 /* chains just get longer */
    atomic_store_explicit(&s->view->grow_seq, seq + 1, memory_order_relaxed);
    fence(memory_order_release);
    for (size_t i = 0; i <= old->mask; i++)
        for (entry *e = ld(&old->b[i]), *next; e; e = next) {
            next = ld(&e->next);
            st(&e->next, ld(&nb->b[e->hash & (n - 1)]));
            st(&nb->b[e->hash & (n - 1)], e);
        }
    tab_publish(s, nb);
    atomic_store_explicit(&s->view->grow_seq, seq + 2, memory_order_release);
    retire(s, old, 0);
}

/* Takes *pp out of the table (chain, queue, counts); the caller frees it. */
/* Takes e out of the counts and its queue (not out of its chain). */
static void uncount(memtable *t, shard *s, entry *e)
{
    size_t bytes = (size_t)e->klen + e->vlen;

    s->count--;
    s->bytes -= bytes;
    if (t->bounded) {
        fifo_remove(queue_of(s, e), e, e_units(t, e));
        atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&t->bytes, bytes, memory_order_relaxed);
    }
}

static entry *unlink_at(memtable *t, shard *s, eptr *pp)
{
    entry *e = ld(pp);

    st(pp, ld(&e->next));       /* e keeps its link: a reader on e goes on */
    uncount(t, s, e);
    return e;
}

static void drop(memtable *t, shard *s, entry *e)
{
    e_retire(t, s, unlink_at(t, s, find(s, e->hash, e_key(e), e->klen)));
}

/* Main's tail: reinserted with one less while it has hits, else evicted.
 * 1 if it evicted. */
static int evict_main(memtable *t, shard *s)
{
    entry *v;
    while ((v = s->main.tail) != NULL) {
        if (e_freq(v)) {
            e_set_freq(v, e_freq(v) - 1);
            fifo_remove(&s->main, v, e_units(t, v));
            fifo_push(&s->main, v, e_units(t, v));
        } else {
            drop(t, s, v);
            return 1;
        }
    }
    return 0;
}

/* Small's tail: to main if it was hit there, else out (its hash to the
 * ghost); until one entry has left.  1 if one did. */
static int evict_small(memtable *t, shard *s)
{
    entry *v;
    while ((v = s->small.tail) != NULL) {
        if (e_freq(v)) {
            fifo_remove(&s->small, v, e_units(t, v));
            e_set_freq(v, 0);
            v->in_main = 1;
            fifo_push(&s->main, v, e_units(t, v));
            if (fifo_size(t, &s->main) > t->share - t->share / 10 && evict_main(t, s))
                return 1;
        } else {
            ghost_put(s, v->hash);
            drop(t, s, v);
            return 1;
        }
    }
    return 0;
}

static int evict_one(memtable *t, shard *s)
{
    int r;
    if (s->small.n && (fifo_size(t, &s->small) >= t->share / 10 || !s->main.n))
        r = evict_small(t, s) || evict_main(t, s);
    else
        r = evict_main(t, s) || evict_small(t, s);
    if (r)
        s->evictions++;
    return r;
}

static inline int over(memtable *t)
{
    return (t->max_count &&
            atomic_load_explicit(&t->count, memory_order_relaxed) > t->max_count) ||
           (t->max_size && atomic_load_explicit(&t->bytes, memory_order_relaxed) > t->max_size);
}

/* Stores e (not yet counted) in s, replacing what is under its key; the
 * caller holds s's lock and retires *old_out.  A bounded table counts e
 * first, then evicts from s until the bounds hold: e is linked only after,
 * so it is never its own victim.  The old entry leaves the counts and its
 * queue first but the chain only when e takes its place, in one store, so
 * a reader meanwhile finds the one or the other, never neither.  An
 * overwrite counts as a hit of the key. */
static void put_locked(memtable *t, shard *s, entry *e, entry **old_out)
{
    eptr *pp = find(s, e->hash, e_key(e), e->klen);
    entry *old = ld(pp);
    size_t bytes = (size_t)e->klen + e->vlen;
    uint8_t freq = 0, in_main = 0;

    if (old) {
        uncount(t, s, old);
        freq = e_freq(old) < FREQ_MAX ? e_freq(old) + 1 : FREQ_MAX;
        in_main = old->in_main;
    }
    if (t->bounded) {
        atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->bytes, bytes, memory_order_relaxed);
        while (over(t) && evict_one(t, s))
            ;
        if (!old && ghost_take(s, e->hash))
            in_main = 1;
        e_set_freq(e, freq);
        e->in_main = in_main;
        fifo_push(queue_of(s, e), e, e_units(t, e));
        pp = find(s, e->hash, e_key(e), e->klen);   /* eviction may have moved the chain */
    }
    st(&e->next, old ? ld(&old->next) : NULL);
    st(pp, e);                  /* publishes e: its bytes before the pointer */
    s->count++;
    s->bytes += bytes;
    if (s->count > (size_t)tab_of(s)->mask + 1)
        grow(s);
    *old_out = old;
}

/* After a write: if the bounds still do not hold (the writer's shard had
 * nothing left to give), the other shards give, one lock at a time. */
static void evict_elsewhere(memtable *t, shard *mine)
{
    for (unsigned i = 0; i < t->nshards && over(t); i++) {
        shard *s = &t->shards[i];
        if (s == mine)
            continue;
        lock(&s->mu);
        while (over(t) && evict_one(t, s))
            ;
        unlock(&s->mu);
    }
}

/* ---- the interface ---- */

/* The default copy: malloc's. */
static void *malloc_copy(const void *bytes, size_t n)
{
    char *v = n < SIZE_MAX ? malloc(n + 1) : NULL;
    if (!v)
        return NULL;
    v[n] = '\0';
    return n ? memcpy(v, bytes, n) : v;
}

void memtable_set_copy(memtable *t, void *(*copy)(const void *, size_t))
{
    t->copy = copy;
}

memtable *memtable_new(size_t max_count, size_t max_size)
{
    memtable *t = calloc(1, sizeof *t);
    unsigned n = MAX_SHARDS, i;

    if (!t)
        return NULL;
    t->copy = malloc_copy;
    t->max_count = max_count;
    t->max_size = max_size;
    t->bounded = max_count || max_size;
    t->by_count = max_count != 0;
    /* small bounds get fewer shards, so that each shard's S3-FIFO queues
     * are long enough to behave like the whole table's would */
    while (n > 1 && ((max_count && max_count / n < MIN_SHARD_COUNT) ||
                     (!max_count && max_size && max_size / n < MIN_SHARD_BYTES)))
        n /= 2;
    t->nshards = n;
    t->share = max_count ? max_count / n : max_size / n;
    if (t->bounded && t->share == 0)
        t->share = 1;
    t->seed = fmix64((uint64_t)(uintptr_t)t ^ ((uint64_t)(uintptr_t)&t << 29));
    if (posix_memalign((void **)&t->shards, 64, n * sizeof *t->shards) != 0) {
        free(t);
        return NULL;
    }
    memset(t->shards, 0, n * sizeof *t->shards);
    if (!(t->views = aligned_alloc(64, (n * sizeof *t->views + 63) & ~(size_t)63))) {
        free(t->shards);
        free(t);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        shard *s = &t->shards[i];
        buckets *b = tab_new(MIN_BUCKETS);
        s->view = &t->views[i];
        atomic_init(&s->view->grow_seq, 0);
        if (!b) {
            t->nshards = i;
            memtable_free(t);
            return NULL;
        }
        tab_publish(s, b);
    }
    return t;
}

void memtable_free(memtable *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < t->nshards; i++) {
        shard *s = &t->shards[i];
        buckets *tab = tab_of(s);
        for (size_t b = 0; b <= tab->mask; b++)
            for (entry *e = ld(&tab->b[b]), *next; e; e = next) {
                next = ld(&e->next);
                e_free(t, e);
            }
        free(tab);
        /* no get runs on a table being freed: nothing retired is in use */
        epoch_list_free(&s->retired);
        free(s->ghost);
    }
    free(t->shards);
    free(t->views);
    free(t);
}

cachet_status memtable_fits(const memtable *t, size_t klen, size_t len)
{
    /* the quarter keeps the entry's size from wrapping where size_t is 32 bits */
    if (klen > MEMTABLE_MAX_PART || len > MEMTABLE_MAX_PART || klen > SIZE_MAX / 4 ||
        len > SIZE_MAX / 4)
        return CACHET_ETOOBIG;
    if (t->max_size && klen + len > t->max_size)
        return CACHET_ETOOBIG;
    return CACHET_OK;
}

/* The live entry under key (an expired one is retired on the way). */
static inline entry *find_live(memtable *t, shard *s, uint32_t h, const void *key, size_t klen)
{
    eptr *pp = find(s, h, key, klen);
    entry *e = ld(pp);
    if (e && e_expired(e)) {
        e_retire(t, s, unlink_at(t, s, pp));
        return NULL;
    }
    return e;
}

/* The copy the caller owns: len + 1 bytes, NUL-terminated. */
static inline cachet_status copy_out(memtable *t, entry *e, void **value, size_t *len)
{
    uint8_t f;

    if (t->bounded && (f = e_freq(e)) < FREQ_MAX)
        e_set_freq(e, f + 1);   /* the hit's only write, and none once capped */
    *len = e->vlen;
    if (!(*value = t->copy(e_value(e), e->vlen))) {
        *len = 0;
        return CACHET_ENOMEM;
    }
    return CACHET_OK;
}

/* The get under the lock: when the reader found an expired entry (to
 * drop it), or missed while the chains were relinked, or has no slot. */
static __attribute__((noinline)) cachet_status get_locked(memtable *t, shard *s, uint32_t h,
                                                          const void *key, size_t klen,
                                                          void **value, size_t *len)
{
    cachet_status st = CACHET_MISS;
    entry *e;

    lock(&s->mu);
    if ((e = find_live(t, s, h, key, klen)) != NULL)
        st = copy_out(t, e, value, len);
    unlock(&s->mu);
    return st;
}

cachet_status memtable_get(memtable *t, const void *key, size_t klen, void **value, size_t *len)
{
    uint64_t hh = hash_key(t->seed, key, klen);
    uint32_t h = (uint32_t)hh;
    shard_view *v = &t->views[shard_index(t, hh)];
    cachet_status st;
    epoch_reader *r = epoch_enter();

    *value = NULL;
    *len = 0;
    if (r) {
        unsigned seq = atomic_load_explicit(&v->grow_seq, memory_order_acquire);
        entry *e = atomic_load_explicit(view_bucket(v, h), memory_order_acquire);

        for (; e; e = atomic_load_explicit(&e->next, memory_order_acquire))
            if (e->hash == h && e->klen == klen && key_eq(e_key(e), key, klen))
                break;
        if (e && !e_expired(e)) {
            st = copy_out(t, e, value, len);
            epoch_exit(r);
            return st;
        }
        if (!e) {
            fence(memory_order_acquire);
            if (!(seq & 1) && atomic_load_explicit(&v->grow_seq, memory_order_relaxed) == seq) {
                epoch_exit(r);
                return CACHET_MISS;
            }
        }
        epoch_exit(r);
    }
    return get_locked(t, shard_of(t, hh), h, key, klen, value, len);
}

static cachet_status store(memtable *t, const void *key, size_t klen, const void *value,
                           size_t len, double ttl, int only_if_absent)
{
    uint64_t h = hash_key(t->seed, key, klen);
    shard *s = shard_of(t, h);
    cachet_status st = memtable_fits(t, klen, len);
    entry *e = NULL, *old = NULL;

    if (st == CACHET_OK && !(e = e_new(t, h, key, klen, value, len, ttl)))
        st = CACHET_ENOMEM;
    if (only_if_absent && st != CACHET_OK)
        return st;
    lock(&s->mu);
    if (only_if_absent && find_live(t, s, (uint32_t)h, key, klen)) {
        st = CACHET_EXISTS;
    } else if (e) {
        put_locked(t, s, e, &old);
        e = NULL;
    } else {
        eptr *pp = find(s, (uint32_t)h, key, klen);
        if (ld(pp))
            old = unlink_at(t, s, pp);
    }
    e_retire(t, s, old);
    unlock(&s->mu);
    e_free(t, e);               /* never linked */
    if (t->bounded && over(t))
        evict_elsewhere(t, s);
    return st;
}

cachet_status memtable_set(memtable *t, const void *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    return store(t, key, klen, value, len, ttl, 0);
}

cachet_status memtable_add(memtable *t, const void *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    return store(t, key, klen, value, len, ttl, 1);
}

void memtable_del(memtable *t, const void *key, size_t klen)
{
    uint64_t h = hash_key(t->seed, key, klen);
    shard *s = shard_of(t, h);
    eptr *pp;

    lock(&s->mu);
    pp = find(s, (uint32_t)h, key, klen);
    if (ld(pp))
        e_retire(t, s, unlink_at(t, s, pp));
    unlock(&s->mu);
}

size_t memtable_sweep(memtable *t, int (*keep)(void *arg, const void *value, size_t len),
                      void *arg)
{
    size_t n = 0;

    for (unsigned i = 0; i < t->nshards; i++) {
        shard *s = &t->shards[i];
        buckets *tab;

        lock(&s->mu);
        tab = tab_of(s);
        for (size_t b = 0; b <= tab->mask; b++) {
            eptr *pp = &tab->b[b];
            entry *e;
            while ((e = ld(pp)) != NULL) {
                if (!e_expired(e) && keep(arg, e_value(e), e->vlen)) {
                    pp = &e->next;
                } else {
                    e_retire(t, s, unlink_at(t, s, pp));
                    n++;
                }
            }
        }
        if (s->retired.n)
            epoch_reclaim(&s->retired);
        unlock(&s->mu);
    }
    return n;
}

void memtable_stats_get(memtable *t, memtable_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < t->nshards; i++) {
        shard *s = &t->shards[i];
        lock(&s->mu);
        out->entries += s->count;
        out->bytes += s->bytes;
        out->evictions += s->evictions;
        unlock(&s->mu);
    }
}

size_t memtable_max_count(const memtable *t)
{
    return t->max_count;
}

size_t memtable_max_size(const memtable *t)
{
    return t->max_size;
}

void memtable_lock_all(memtable *t)
{
    for (unsigned i = 0; i < t->nshards; i++)
        lock(&t->shards[i].mu);
}

void memtable_unlock_all(memtable *t)
{
    for (unsigned i = t->nshards; i-- > 0;)
        unlock(&t->shards[i].mu);
}
