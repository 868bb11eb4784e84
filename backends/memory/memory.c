/* The memory backend (dogpile.cache.memory, dogpile.cache.memory_pickle,
 * oslo_cache.dict): the vtable over memtable (memtable.h), which holds the
 * table, its bounds (max_count, max_size; Cinder's rules) and its S3-FIFO
 * eviction.  This file parses the arguments and words the errors. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cachet/backend.h>
#include "memtable.h"

#define BACKEND "memory"

static cachet_status set_failed(memtable *t, cachet_status st, size_t klen, size_t len)
{
    if (st == CACHET_ENOMEM)
        return cachet_backend_error(st, "backend " BACKEND ": out of memory storing a "
                                    "%zu-byte value", len);
    if (klen > MEMTABLE_MAX_PART || len > MEMTABLE_MAX_PART || klen > SIZE_MAX / 4 ||
        len > SIZE_MAX / 4)
        return cachet_backend_error(st, "backend " BACKEND ": %s of %zu bytes is too big "
                                    "to store (at most %zu); not stored",
                                    klen > len ? "key" : "value", klen > len ? klen : len,
                                    MEMTABLE_MAX_PART < SIZE_MAX / 4 ? MEMTABLE_MAX_PART
                                                                     : SIZE_MAX / 4);
    return cachet_backend_error(st, "backend " BACKEND ": entry of %zu bytes (key %zu + value "
                                "%zu) is larger than max_size %zu; not stored",
                                klen + len, klen, len, memtable_max_size(t));
}

static cachet_status mem_open(const cachet_backend_params *p, void **state)
{
    static const char *const known[] = {"max_count", "max_size", NULL};
    long max_count, max_size;
    cachet_status st;
    memtable *t;

    if ((st = cachet_backend_args_check(p, BACKEND, known)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, BACKEND, "max_count", 0, 0, LONG_MAX,
                                      &max_count)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, BACKEND, "max_size", 0, 0, LONG_MAX,
                                      &max_size)) != CACHET_OK)
        return st;
    if (!(t = memtable_new((size_t)max_count, (size_t)max_size)))
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    /* a get's copy reuses the block the caller's last cachet_free gave back */
    memtable_set_copy(t, cachet_backend_value_copy);
    *state = t;
    return CACHET_OK;
}

static void mem_close(void *state)
{
    memtable_free(state);
}

static cachet_status mem_get(void *state, const char *key, size_t klen, void **value,
                             size_t *len)
{
    cachet_status st = memtable_get(state, key, klen, value, len);
    if (st == CACHET_ENOMEM)
        return cachet_backend_error(st, "backend " BACKEND ": out of memory copying a value");
    return st;
}

static cachet_status mem_set(void *state, const char *key, size_t klen, const void *value,
                             size_t len, double ttl)
{
    cachet_status st = memtable_set(state, key, klen, value, len, ttl);
    return st == CACHET_OK ? st : set_failed(state, st, klen, len);
}

static cachet_status mem_add(void *state, const char *key, size_t klen, const void *value,
                             size_t len, double ttl)
{
    cachet_status st = memtable_add(state, key, klen, value, len, ttl);
    return st == CACHET_OK || st == CACHET_EXISTS ? st : set_failed(state, st, klen, len);
}

static cachet_status mem_del(void *state, const char *key, size_t klen)
{
    memtable_del(state, key, klen);
    return CACHET_OK;
}

static cachet_status mem_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    cachet_status first = CACHET_OK;
    for (size_t i = 0; i < n; i++) {
        cachet_backend_item *it = &items[i];
        it->status = memtable_get(state, it->key, it->klen, &it->value, &it->len);
        if (it->status < 0 && first == CACHET_OK)
            first = it->status;
    }
    if (first != CACHET_OK)
        return cachet_backend_error(first, "backend " BACKEND ": out of memory copying a value");
    return CACHET_OK;
}

/* Items in order, so a batch evicts as the same sets one by one would and
 * a key given twice ends with its last value. */
static cachet_status mem_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        cachet_backend_item *it = &items[i];
        it->status = memtable_set(state, it->key, it->klen, it->value, it->len, it->ttl);
        if (it->status != CACHET_OK && bad == n)
            bad = i;
    }
    if (bad < n)
        return set_failed(state, items[bad].status, items[bad].klen, items[bad].len);
    return CACHET_OK;
}

static cachet_status mem_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memtable_del(state, items[i].key, items[i].klen);
        items[i].status = CACHET_OK;
    }
    return CACHET_OK;
}

static cachet_status mem_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    memtable_stats s;
    char buf[32];

    memtable_stats_get(state, &s);
    /* fn runs unlocked: it may be slow, or call back into the region */
    snprintf(buf, sizeof buf, "%zu", s.entries);
    fn(arg, "entries", buf);
    snprintf(buf, sizeof buf, "%zu", s.bytes);
    fn(arg, "bytes", buf);
    snprintf(buf, sizeof buf, "%zu", memtable_max_count(state));
    fn(arg, "max_count", buf);
    snprintf(buf, sizeof buf, "%zu", memtable_max_size(state));
    fn(arg, "max_size", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)s.evictions);
    fn(arg, "evictions", buf);
    return CACHET_OK;
}

/* Nothing here expires by itself unless a write had a ttl, so
 * cachet_compact's sweep is how dead values leave an unbounded instance. */
static cachet_status mem_sweep(void *state, int (*keep)(void *arg, const void *value, size_t len),
                               void *arg, size_t *removed)
{
    size_t n = memtable_sweep(state, keep, arg);
    if (removed)
        *removed = n;
    return CACHET_OK;
}

/* The table is plain memory, so the child keeps it; it only needs the
 * locks that other threads may have held across fork(). */
static void mem_fork_prepare(void *state)
{
    memtable_lock_all(state);
}

static void mem_fork_release(void *state)
{
    memtable_unlock_all(state);
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
