/* The memory backend (dogpile.cache.memory, dogpile.cache.memory_pickle,
 * oslo_cache.dict): a thread-safe hash table of byte keys to byte values in
 * this process, optionally bounded by entry count and by bytes.
 *
 * Bounds follow Cinder's image-cache rules: 0 is unlimited; an entry larger
 * than max_size is refused (and whatever was under its key is dropped, so a
 * failed set never leaves a stale value behind); after a set the least
 * recently used entries go until both bounds hold.
 *
 * Layout: chained buckets (a power of two of them, doubled when the table is
 * as full as it has buckets), one allocation per entry holding the key and
 * the value, and an intrusive LRU list.  One mutex guards an instance;
 * entries are built and freed outside it so that it is held only for the
 * pointer surgery and the copy out of a get. */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/backend.h>

#define BACKEND      "memory"
#define MIN_BUCKETS  64

typedef struct lru_node {
    struct lru_node *prev, *next;
} lru_node;

typedef struct entry {
    lru_node      lru;          /* first, so a node is its entry */
    struct entry *next;         /* bucket chain */
    uint64_t      hash;         /* full hash: cheap compare, no rehash on grow */
    int64_t       expires_ns;   /* CLOCK_MONOTONIC_COARSE; 0 = never (a write's ttl) */
    size_t        klen, vlen;
    unsigned char data[];       /* key bytes, then value bytes */
} entry;

typedef struct {
    pthread_mutex_t mu;
    entry   **buckets;
    size_t    mask;             /* buckets - 1 */
    size_t    count, bytes;     /* bytes: sum of klen + vlen */
    size_t    max_count, max_size;
    int       bounded;          /* the LRU list is maintained only when set */
    lru_node  lru;              /* sentinel: next = most recent, prev = least */
    uint64_t  seed;
    uint64_t  evictions;
} mem;

/* ---- hashing ---- */

/* murmur3's finalizer: every output bit depends on every input bit, which
 * matters because we index by the low bits. */
static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* Eight bytes per multiply (FNV-1a's byte at a time costs ~4x on typical
 * 20-60 byte keys), then fmix64.  The per-instance seed makes bucket layout
 * differ between instances and processes; it is not a cryptographic
 * defence against chosen keys. */
static inline uint64_t hash_key(uint64_t seed, const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL), w;

    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);       /* unaligned-safe; compiles to one load */
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    if (n) {
        w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    return fmix64(h);
}

/* ---- LRU list (only touched when bounded) ---- */

static inline void lru_unlink(lru_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

static inline void lru_push_front(mem *m, lru_node *n)
{
    n->prev = &m->lru;
    n->next = m->lru.next;
    m->lru.next->prev = n;
    m->lru.next = n;
}

/* ---- the table; callers hold m->mu ---- */

/* The link that points at the entry for key, or the chain's NULL end. */
static inline entry **find(mem *m, uint64_t h, const void *key, size_t klen)
{
    entry **pp = &m->buckets[h & m->mask];
    for (entry *e; (e = *pp) != NULL; pp = &e->next)
        if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0)
            break;
    return pp;
}

/* Takes *pp out of the table onto the garbage list, to be freed once the
 * lock is dropped. */
static void unlink_entry(mem *m, entry **pp, entry **garbage)
{
    entry *e = *pp;
    *pp = e->next;
    if (m->bounded)
        lru_unlink(&e->lru);
    m->count--;
    m->bytes -= e->klen + e->vlen;
    e->next = *garbage;
    *garbage = e;
}

static void remove_key(mem *m, uint64_t h, const void *key, size_t klen, entry **garbage)
{
    entry **pp = find(m, h, key, klen);
    if (*pp)
        unlink_entry(m, pp, garbage);
}

/* A failed calloc is not an error: chains just get longer. */
static void grow(mem *m)
{
    size_t n = (m->mask + 1) * 2, i;
    entry **nb;

    if (n > SIZE_MAX / sizeof *nb || !(nb = calloc(n, sizeof *nb)))
        return;
    for (i = 0; i <= m->mask; i++) {
        entry *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    free(m->buckets);
    m->buckets = nb;
    m->mask = n - 1;
}

static inline int over_bounds(const mem *m)
{
    return (m->max_count && m->count > m->max_count) ||
           (m->max_size && m->bytes > m->max_size);
}

/* Stores e (replacing any entry under its key), then evicts.  The entry
 * just stored is never evicted: it fits max_size on its own (checked
 * before it was built) and max_count is at least 1 when set. */
static void put(mem *m, entry *e, entry **garbage)
{
    entry **pp = find(m, e->hash, e->data, e->klen);
    entry *old = *pp;

    if (old) {
        e->next = old->next;
        *pp = e;
        if (m->bounded)
            lru_unlink(&old->lru);
        m->bytes -= old->klen + old->vlen;
        old->next = *garbage;
        *garbage = old;
    } else {
        e->next = NULL;
        *pp = e;
        m->count++;
    }
    m->bytes += e->klen + e->vlen;
    if (m->bounded) {
        lru_push_front(m, &e->lru);
        while (over_bounds(m) && m->lru.prev != &e->lru) {
            entry *victim = (entry *)m->lru.prev;
            entry **vp = &m->buckets[victim->hash & m->mask];
            while (*vp != victim)
                vp = &(*vp)->next;
            unlink_entry(m, vp, garbage);
            m->evictions++;
        }
    }
    if (m->count > m->mask + 1)
        grow(m);
}

static void free_list(entry *e)
{
    while (e) {
        entry *next = e->next;
        free(e);
        e = next;
    }
}

/* A write's ttl as a deadline on the coarse monotonic clock (a few ms of
 * lag do not matter for a cache's lifetimes; reading it costs little). */
static int64_t mono_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int expired(const entry *e)
{
    return e->expires_ns && mono_coarse_ns() >= e->expires_ns;
}

/* The live entry under key, or NULL; an expired one found on the way is
 * unlinked into garbage.  The caller holds the lock. */
static inline __attribute__((always_inline)) entry *find_live(mem *m, uint64_t h, const void *key,
                                                        size_t klen, entry **garbage)
{
    entry **pp = find(m, h, key, klen);
    if (*pp && expired(*pp)) {
        unlink_entry(m, pp, garbage);
        return NULL;
    }
    return *pp;
}

/* ---- building entries, outside the lock ---- */

/* CACHET_OK if key+value may be stored under the bounds. */
static cachet_status check_size(const mem *m, size_t klen, size_t len)
{
    /* the quarter keeps klen + len + header from wrapping */
    if (klen > SIZE_MAX / 4 || len > SIZE_MAX / 4)
        return CACHET_ETOOBIG;
    if (m->max_size && klen + len > m->max_size)
        return CACHET_ETOOBIG;
    return CACHET_OK;
}

static entry *entry_new(const mem *m, const void *key, size_t klen, const void *value,
                        size_t len, double ttl)
{
    entry *e = malloc(sizeof *e + klen + len);
    if (!e)
        return NULL;
    e->hash = hash_key(m->seed, key, klen);
    e->expires_ns = ttl > 0 ? mono_coarse_ns() + (int64_t)(ttl * 1e9) : 0;
    e->klen = klen;
    e->vlen = len;
    if (klen)
        memcpy(e->data, key, klen);
    if (len)
        memcpy(e->data + klen, value, len);
    return e;
}

static cachet_status set_failed(const mem *m, cachet_status st, size_t klen, size_t len)
{
    if (st == CACHET_ENOMEM)
        return cachet_backend_error(st, "backend " BACKEND ": out of memory storing a "
                                    "%zu-byte value", len);
    if (klen > SIZE_MAX / 4 || len > SIZE_MAX / 4)
        return cachet_backend_error(st, "backend " BACKEND ": value of %zu bytes is too big "
                                    "to store; not stored", len);
    return cachet_backend_error(st, "backend " BACKEND ": entry of %zu bytes (key %zu + value "
                                "%zu) is larger than max_size %zu; not stored",
                                klen + len, klen, len, m->max_size);
}

/* ---- the vtable ---- */

static cachet_status mem_open(const cachet_backend_params *p, void **state)
{
    static const char *const known[] = {"max_count", "max_size", NULL};
    long max_count, max_size;
    cachet_status st;
    mem *m;

    if ((st = cachet_backend_args_check(p, BACKEND, known)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, BACKEND, "max_count", 0, 0, LONG_MAX,
                                      &max_count)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, BACKEND, "max_size", 0, 0, LONG_MAX,
                                      &max_size)) != CACHET_OK)
        return st;
    if (!(m = calloc(1, sizeof *m)) || !(m->buckets = calloc(MIN_BUCKETS, sizeof *m->buckets))) {
        free(m);
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    }
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m->buckets);
        free(m);
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": cannot create a mutex");
    }
    m->mask = MIN_BUCKETS - 1;
    m->max_count = (size_t)max_count;
    m->max_size = (size_t)max_size;
    m->bounded = m->max_count || m->max_size;
    m->lru.prev = m->lru.next = &m->lru;
    /* heap and stack addresses: cheap, and different per process under ASLR */
    m->seed = fmix64((uint64_t)(uintptr_t)m ^ ((uint64_t)(uintptr_t)&m << 29));
    *state = m;
    return CACHET_OK;
}

static void mem_close(void *state)
{
    mem *m = state;
    if (!m)
        return;
    for (size_t i = 0; i <= m->mask; i++)
        free_list(m->buckets[i]);
    free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* Copies e's value into *value; the caller holds the lock.  malloc(1) for
 * an empty value so that a hit is never a NULL pointer. */
static cachet_status copy_out(mem *m, entry *e, void **value, size_t *len)
{
    char *v = malloc(e->vlen + 1);        /* + the NUL every value handed out ends in */
    if (!v)
        return CACHET_ENOMEM;
    memcpy(v, e->data + e->klen, e->vlen);
    v[e->vlen] = '\0';
    if (m->bounded && m->lru.next != &e->lru) {
        lru_unlink(&e->lru);
        lru_push_front(m, &e->lru);
    }
    *value = v;
    *len = e->vlen;
    return CACHET_OK;
}

static cachet_status mem_get(void *state, const char *key, size_t klen, void **value,
                             size_t *len)
{
    mem *m = state;
    uint64_t h = hash_key(m->seed, key, klen);
    cachet_status st = CACHET_MISS;
    entry *e, *garbage = NULL;

    *value = NULL;
    *len = 0;
    pthread_mutex_lock(&m->mu);
    if ((e = find_live(m, h, key, klen, &garbage)) != NULL)
        st = copy_out(m, e, value, len);
    pthread_mutex_unlock(&m->mu);
    free_list(garbage);
    if (st == CACHET_ENOMEM)
        return cachet_backend_error(st, "backend " BACKEND ": out of memory copying a value");
    return st;
}

static cachet_status mem_set(void *state, const char *key, size_t klen, const void *value,
                             size_t len, double ttl)
{
    mem *m = state;
    cachet_status st = check_size(m, klen, len);
    entry *e = NULL, *garbage = NULL;

    if (st == CACHET_OK && !(e = entry_new(m, key, klen, value, len, ttl)))
        st = CACHET_ENOMEM;
    pthread_mutex_lock(&m->mu);
    if (e)
        put(m, e, &garbage);
    else
        remove_key(m, hash_key(m->seed, key, klen), key, klen, &garbage);
    pthread_mutex_unlock(&m->mu);
    free_list(garbage);
    return st == CACHET_OK ? st : set_failed(m, st, klen, len);
}

/* Stores only if no live entry is under the key; the check and the store
 * are one lock hold. */
static cachet_status mem_add(void *state, const char *key, size_t klen, const void *value,
                             size_t len, double ttl)
{
    mem *m = state;
    cachet_status st = check_size(m, klen, len);
    entry *e = NULL, *garbage = NULL;

    if (st != CACHET_OK)
        return set_failed(m, st, klen, len);
    if (!(e = entry_new(m, key, klen, value, len, ttl)))
        return set_failed(m, CACHET_ENOMEM, klen, len);
    pthread_mutex_lock(&m->mu);
    if (find_live(m, e->hash, key, klen, &garbage)) {
        st = CACHET_EXISTS;
    } else {
        put(m, e, &garbage);
        e = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    free(e);
    free_list(garbage);
    return st;
}

static cachet_status mem_del(void *state, const char *key, size_t klen)
{
    mem *m = state;
    uint64_t h = hash_key(m->seed, key, klen);
    entry *garbage = NULL;

    pthread_mutex_lock(&m->mu);
    remove_key(m, h, key, klen, &garbage);
    pthread_mutex_unlock(&m->mu);
    free_list(garbage);
    return CACHET_OK;
}

static cachet_status mem_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    mem *m = state;
    entry *garbage = NULL;
    size_t i;

    pthread_mutex_lock(&m->mu);
    for (i = 0; i < n; i++) {
        cachet_backend_item *it = &items[i];
        entry *e = find_live(m, hash_key(m->seed, it->key, it->klen), it->key, it->klen,
                             &garbage);
        it->value = NULL;
        it->len = 0;
        it->status = e ? copy_out(m, e, &it->value, &it->len) : CACHET_MISS;
    }
    pthread_mutex_unlock(&m->mu);
    free_list(garbage);
    for (i = 0; i < n; i++)
        if (items[i].status < 0)
            return cachet_backend_error(items[i].status, "backend " BACKEND ": out of memory "
                                        "copying a value");
    return CACHET_OK;
}

static cachet_status mem_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    mem *m = state;
    entry **fresh, *garbage = NULL;
    size_t i;

    if (n == 0)
        return CACHET_OK;
    if (!(fresh = calloc(n, sizeof *fresh))) {
        /* still store what we can, one lock hold per item */
        cachet_status first = CACHET_OK;
        for (i = 0; i < n; i++) {
            items[i].status = mem_set(m, items[i].key, items[i].klen, items[i].value,
                                      items[i].len, items[i].ttl);
            if (first == CACHET_OK)
                first = items[i].status;
        }
        return first;
    }
    for (i = 0; i < n; i++) {
        cachet_backend_item *it = &items[i];
        it->status = check_size(m, it->klen, it->len);
        if (it->status == CACHET_OK &&
            !(fresh[i] = entry_new(m, it->key, it->klen, it->value, it->len, it->ttl)))
            it->status = CACHET_ENOMEM;
    }
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < n; i++) {
        if (fresh[i])
            put(m, fresh[i], &garbage);
        else
            remove_key(m, hash_key(m->seed, items[i].key, items[i].klen), items[i].key,
                       items[i].klen, &garbage);
    }
    pthread_mutex_unlock(&m->mu);
    free_list(garbage);
    free(fresh);
    for (i = 0; i < n; i++)
        if (items[i].status != CACHET_OK)
            return set_failed(m, items[i].status, items[i].klen, items[i].len);
    return CACHET_OK;
}

static cachet_status mem_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    mem *m = state;
    entry *garbage = NULL;

    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        remove_key(m, hash_key(m->seed, items[i].key, items[i].klen), items[i].key,
                   items[i].klen, &garbage);
        items[i].status = CACHET_OK;
    }
    pthread_mutex_unlock(&m->mu);
    free_list(garbage);
    return CACHET_OK;
}

static cachet_status mem_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    mem *m = state;
    size_t count, bytes;
    uint64_t evictions;
    char buf[32];

    pthread_mutex_lock(&m->mu);
    count = m->count;
    bytes = m->bytes;
    evictions = m->evictions;
    pthread_mutex_unlock(&m->mu);
    /* fn runs unlocked: it may be slow, or call back into the region */
    snprintf(buf, sizeof buf, "%zu", count);
    fn(arg, "entries", buf);
    snprintf(buf, sizeof buf, "%zu", bytes);
    fn(arg, "bytes", buf);
    snprintf(buf, sizeof buf, "%zu", m->max_count);
    fn(arg, "max_count", buf);
    snprintf(buf, sizeof buf, "%zu", m->max_size);
    fn(arg, "max_size", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)evictions);
    fn(arg, "evictions", buf);
    return CACHET_OK;
}

/* Nothing here expires by itself, so cachet_compact's sweep is the only way
 * dead values leave an unbounded instance. */
static cachet_status mem_sweep(void *state, int (*keep)(void *arg, const void *value, size_t len),
                               void *arg, size_t *removed)
{
    mem *m = state;
    entry *garbage = NULL;
    size_t n = 0;

    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i <= m->mask; i++) {
        entry **pp = &m->buckets[i];
        while (*pp) {
            if (!expired(*pp) && keep(arg, (*pp)->data + (*pp)->klen, (*pp)->vlen)) {
                pp = &(*pp)->next;
            } else {
                unlink_entry(m, pp, &garbage);
                n++;
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    free_list(garbage);
    if (removed)
        *removed = n;
    return CACHET_OK;
}

/* The table is plain memory, so the child keeps it; it only needs the
 * mutex that the forking thread held across fork(). */
static void mem_fork_prepare(void *state)
{
    pthread_mutex_lock(&((mem *)state)->mu);
}

static void mem_fork_release(void *state)
{
    pthread_mutex_unlock(&((mem *)state)->mu);
}

static const cachet_backend_ops mem_ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = BACKEND,
    .caps = CACHET_CAP_LOCAL | CACHET_CAP_SERVER_TTL,
    .open = mem_open,
    .close = mem_close,
    .get = mem_get,
    .set = mem_set,
    .del = mem_del,
    .add = mem_add,
    .get_multi = mem_get_multi,
    .set_multi = mem_set_multi,
    .delete_multi = mem_delete_multi,
    .report = mem_report,
    .sweep = mem_sweep,
    .fork_prepare = mem_fork_prepare,
    .fork_parent = mem_fork_release,
    .fork_child = mem_fork_release,
};

CACHET_BACKEND_EXPORT const cachet_backend_ops *cachet_backend_entry(void)
{
    return &mem_ops;
}
