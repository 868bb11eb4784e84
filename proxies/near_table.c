/* The near proxy's table (near_table.h): NSHARDS shards, each a chained
 * hash table with an LRU list under its own mutex; the limits are split
 * evenly between the shards (a shard evicts on its own share), which
 * keeps every operation O(1) under one lock. */
#include "config.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "near_table.h"

#define NSHARDS 16
#define NSLOTS  1024                 /* fill-ticket slots: key hash % NSLOTS */

typedef struct entry {
    struct entry *hnext;             /* hash chain */
    struct entry *prev, *next;       /* LRU: head is the most recent */
    uint64_t      hash;
    int64_t       put_at;
    size_t        klen, len;
    char         *key;
    unsigned char *value;            /* len + 1 bytes, NUL at [len] */
} entry;

typedef struct {
    pthread_mutex_t mu;
    entry  **buckets;
    size_t   nbuckets, count, bytes;    /* nbuckets: a power of two */
    entry   *head, *tail;
    uint64_t evictions;
} shard;

struct near_table {
    shard            shards[NSHARDS];
    unsigned         nsh;                    /* shards in use: fewer for a tiny max_count */
    size_t           max_count, max_size;    /* per shard; 0 = unbounded */
    _Atomic uint64_t slot[NSLOTS];           /* bumped by every write of a key in the slot */
    _Atomic uint64_t clears;
};

static uint64_t hash_key(const char *key, size_t klen)
{
    uint64_t h = 0xcbf29ce484222325ULL;      /* FNV-1a, then a mix for the shard bits */
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static size_t entry_bytes(const entry *e)
{
    return sizeof *e + e->klen + e->len + 1;
}

near_table *near_table_new(size_t max_count, size_t max_size)
{
    near_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    /* each shard gets a whole share, rounded down: the sum never exceeds
     * the limits */
    t->nsh = NSHARDS;
    while (max_count && t->nsh > max_count)      /* a power of two: shards are picked by mask */
        t->nsh /= 2;
    t->max_count = max_count / t->nsh;
    t->max_size = max_size / t->nsh;
    if (max_size && !t->max_size)
        t->max_size = 1;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &t->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->nbuckets = 64;
        if (!(s->buckets = calloc(s->nbuckets, sizeof *s->buckets))) {
            near_table_free(t);
            return NULL;
        }
    }
    return t;
}

static void entry_free(entry *e)
{
    free(e->key);
    free(e->value);
    free(e);
}

static void lru_unlink(shard *s, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(shard *s, entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
}

/* Removes e from its chain and the LRU, and frees it. */
static void drop(shard *s, entry *e)
{
    entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    s->bytes -= entry_bytes(e);
    entry_free(e);
}

static entry *find(shard *s, uint64_t h, const char *key, size_t klen)
{
    for (entry *e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

static void grow(shard *s)
{
    size_t n = s->nbuckets * 2;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return;                      /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++)
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

void near_table_free(near_table *t)
{
    if (!t)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &t->shards[i];
        for (entry *e = s->head, *next; e; e = next) {
            next = e->next;
            entry_free(e);
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(t);
}

int near_table_get(near_table *t, const char *key, size_t klen, int64_t not_before,
                   void **value, size_t *len)
{
    uint64_t h = hash_key(key, klen);
    shard *s = &t->shards[(h >> 48) & (t->nsh - 1)];
    entry *e;
    void *copy = NULL;
    size_t n = 0;

    pthread_mutex_lock(&s->mu);
    if ((e = find(s, h, key, klen))) {
        if (e->put_at < not_before) {
            drop(s, e);
        } else if ((copy = malloc(e->len + 1))) {
            memcpy(copy, e->value, e->len + 1);
            n = e->len;
            if (s->head != e) {
                lru_unlink(s, e);
                lru_front(s, e);
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (!copy)
        return 0;
    *value = copy;
    *len = n;
    return 1;
}

/* The caller holds s->mu. */
static int put_locked(near_table *t, shard *s, uint64_t h, const char *key, size_t klen,
                      const void *value, size_t len, int64_t now)
{
    entry *e = find(s, h, key, klen), *n;
    if (e)
        drop(s, e);
    if (t->max_size && sizeof *e + klen + len + 1 > t->max_size)
        return 0;                    /* over the shard's share: not kept */
    if (!(n = calloc(1, sizeof *n)) || !(n->key = malloc(klen ? klen : 1)) ||
        !(n->value = malloc(len + 1))) {
        if (n) {
            free(n->key);
            free(n);
        }
        return -1;
    }
    memcpy(n->key, key, klen);
    memcpy(n->value, value, len);
    n->value[len] = '\0';
    n->klen = klen;
    n->len = len;
    n->hash = h;
    n->put_at = now;
    if (s->count >= s->nbuckets)
        grow(s);
    n->hnext = s->buckets[h & (s->nbuckets - 1)];
    s->buckets[h & (s->nbuckets - 1)] = n;
    lru_front(s, n);
    s->count++;
    s->bytes += entry_bytes(n);
    while (s->tail && s->tail != n &&
           ((t->max_count && s->count > t->max_count) || (t->max_size && s->bytes > t->max_size))) {
        drop(s, s->tail);
        s->evictions++;
    }
    return 0;
}

int near_table_put(near_table *t, const char *key, size_t klen, const void *value, size_t len,
                   int64_t now)
{
    uint64_t h = hash_key(key, klen);
    shard *s = &t->shards[(h >> 48) & (t->nsh - 1)];
    int rc;
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add_explicit(&t->slot[h % NSLOTS], 1, memory_order_relaxed);
    rc = put_locked(t, s, h, key, klen, value, len, now);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

uint64_t near_table_ticket(near_table *t, const char *key, size_t klen)
{
    uint64_t h = hash_key(key, klen);
    shard *s = &t->shards[(h >> 48) & (t->nsh - 1)];
    uint64_t ticket;
    /* read under the lock the writers bump it under: a fill that follows
     * sees every write that finished before the ticket */
    pthread_mutex_lock(&s->mu);
    ticket = atomic_load_explicit(&t->slot[h % NSLOTS], memory_order_relaxed) +
             (atomic_load_explicit(&t->clears, memory_order_relaxed) << 40);
    pthread_mutex_unlock(&s->mu);
    return ticket;
}

void near_table_fill(near_table *t, const char *key, size_t klen, uint64_t ticket,
                     const void *value, size_t len, int64_t now)
{
    uint64_t h = hash_key(key, klen);
    shard *s = &t->shards[(h >> 48) & (t->nsh - 1)];
    pthread_mutex_lock(&s->mu);
    if (atomic_load_explicit(&t->slot[h % NSLOTS], memory_order_relaxed) +
        (atomic_load_explicit(&t->clears, memory_order_relaxed) << 40) == ticket)
        (void)put_locked(t, s, h, key, klen, value, len, now);
    pthread_mutex_unlock(&s->mu);
}

void near_table_write(near_table *t, const char *key, size_t klen, uint64_t ticket,
                      const void *value, size_t len, int64_t now)
{
    uint64_t h = hash_key(key, klen);
    shard *s = &t->shards[(h >> 48) & (t->nsh - 1)];
    entry *e;
    int mine;
    pthread_mutex_lock(&s->mu);
    mine = atomic_load_explicit(&t->slot[h % NSLOTS], memory_order_relaxed) +
           (atomic_load_explicit(&t->clears, memory_order_relaxed) << 40) == ticket;
    atomic_fetch_add_explicit(&t->slot[h % NSLOTS], 1, memory_order_relaxed);
    if (!mine || put_locked(t, s, h, key, klen, value, len, now) != 0) {
        if ((e = find(s, h, key, klen)))
            drop(s, e);
    }
    pthread_mutex_unlock(&s->mu);
}

void near_table_del(near_table *t, const char *key, size_t klen)
{
    uint64_t h = hash_key(key, klen);
    shard *s = &t->shards[(h >> 48) & (t->nsh - 1)];
    entry *e;
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add_explicit(&t->slot[h % NSLOTS], 1, memory_order_relaxed);
    if ((e = find(s, h, key, klen)))
        drop(s, e);
    pthread_mutex_unlock(&s->mu);
}

void near_table_clear(near_table *t)
{
    /* counted before the shards empty: a fill racing with the clear fails */
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_lock(&t->shards[i].mu);
    atomic_fetch_add_explicit(&t->clears, 1, memory_order_relaxed);
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &t->shards[i];
        for (entry *e = s->head, *next; e; e = next) {
            next = e->next;
            entry_free(e);
        }
        memset(s->buckets, 0, s->nbuckets * sizeof *s->buckets);
        s->head = s->tail = NULL;
        s->count = s->bytes = 0;
    }
    for (int i = NSHARDS; i-- > 0;)
        pthread_mutex_unlock(&t->shards[i].mu);
}

void near_table_stat(near_table *t, near_table_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &t->shards[i];
        pthread_mutex_lock(&s->mu);
        out->count += s->count;
        out->bytes += s->bytes;
        out->evictions += s->evictions;
        pthread_mutex_unlock(&s->mu);
    }
}

void near_table_lock_all(near_table *t)
{
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_lock(&t->shards[i].mu);
}

void near_table_unlock_all(near_table *t)
{
    for (int i = NSHARDS; i-- > 0;)
        pthread_mutex_unlock(&t->shards[i].mu);
}
