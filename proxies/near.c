/* The near proxy: an in-process L1 in front of any backend.  A get it can
 * answer from its table costs a hash lookup and a copy, whatever is below;
 * an entry is trusted at most near:ttl seconds from when the L1 got it
 * (from a read below or a write through it), then read again from below.
 * Arguments:
 *   near:max_count   entries kept (default 10000; 0 = no count limit)
 *   near:max_size    bytes kept, keys and values (default 64 MiB; 0 = none)
 *   near:ttl         seconds an entry is trusted (default 5; > 0)
 *   near:notify      auto (default): where the backend offers change
 *                    notifications (redis, redis_sentinel: pub/sub), every
 *                    write and delete through this proxy is published and
 *                    the others' are received, so another process's change
 *                    reaches this L1 in milliseconds; off: the ttl alone
 *
 * Coherence:
 *   - writes and deletes through this region update the L1 at once (set,
 *     add, set_multi put the value written; delete, a failed write, an add
 *     that found a value drop the key);
 *   - the region checks every value's header on every read, so expired and
 *     invalidated values are misses even when the L1 holds them; an
 *     invalidation of the region also empties the L1 (cachet_invalidate
 *     calls cachet__near_proxy_clear through src/metrics.c's hook), so a
 *     value written after it elsewhere is read from below;
 *   - another process's write reaches this L1 after at most near:ttl
 *     seconds; with notifications (redis) as soon as the message arrives
 *     (the bound per backend: README, "near");
 *   - a read that fills the L1 from below never overwrites a newer write
 *     of the same key, and of two writes of one key that overlap neither
 *     is kept (near_table's tickets): the next read asks the backend.
 *
 * While the backend is down (a call below failed as unavailable or timed
 * out, until one succeeds) the L1 keeps answering with what it holds, each
 * entry until its ttl: counted as near_hits_while_down_total. */
#include "config.h"
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cachet/backend.h>
#include "proxies.h"
#include "near_table.h"

typedef struct {
    cachet_layer *below;
    near_table   *t;
    int64_t       ttl_ns;
    long          max_count, max_size;
    _Atomic int   down;
    _Atomic uint64_t hits, misses, hits_down, clears;
    /* notifications (near:notify) */
    int           notify;          /* the backend offers them and they are on */
    char          id[64];          /* this instance, in what it publishes */
    void         *sub;             /* the subscription's handle */
    _Atomic int   resubscribe;     /* set in a fork()ed child: the thread is gone */
    pthread_mutex_t sub_mu;
    _Atomic uint64_t remote, resyncs, publish_failures;
} near_proxy;

static int64_t now_ns(void)
{
    struct timespec ts;
    /* the coarse clock: a few ms of lag on a ttl of seconds is nothing,
     * and it costs a fraction of the precise one on every hit */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* What a call below says about the backend's health. */
static void health(near_proxy *n, cachet_status st)
{
    int down = st == CACHET_EUNAVAILABLE || st == CACHET_ETIMEDOUT;
    if (down || st == CACHET_OK || st == CACHET_MISS || st == CACHET_EXISTS) {
        if (atomic_load_explicit(&n->down, memory_order_relaxed) != down)
            atomic_store_explicit(&n->down, down, memory_order_relaxed);
    }
}

/* A hit of the L1 when it has a trusted entry. */
static int l1_get(near_proxy *n, const char *key, size_t klen, void **value, size_t *len)
{
    if (!near_table_get(n->t, key, klen, now_ns() - n->ttl_ns, value, len))
        return 0;
    atomic_fetch_add_explicit(&n->hits, 1, memory_order_relaxed);
    if (atomic_load_explicit(&n->down, memory_order_relaxed))
        atomic_fetch_add_explicit(&n->hits_down, 1, memory_order_relaxed);
    return 1;
}

void cachet__near_proxy_clear(void *state)
{
    near_proxy *n = state;
    near_table_clear(n->t);
    atomic_fetch_add_explicit(&n->clears, 1, memory_order_relaxed);
}

/* Another process changed key (NULL: keys may have been missed). */
static void on_remote(void *arg, const char *key, size_t klen)
{
    near_proxy *n = arg;
    if (!key) {
        near_table_clear(n->t);
        atomic_fetch_add_explicit(&n->resyncs, 1, memory_order_relaxed);
        return;
    }
    near_table_del(n->t, key, klen);
    atomic_fetch_add_explicit(&n->remote, 1, memory_order_relaxed);
}

static void subscribe(near_proxy *n)
{
    cachet_status st = cachet_layer_notify_subscribe(n->below, n->id, on_remote, n, &n->sub);
    if (st != CACHET_OK) {
        n->sub = NULL;
        if (st != CACHET_ENOTSUP)
            cachet_backend_log(CACHET_LOG_WARNING, "cachet %s: proxy near: no change "
                               "notifications (near:ttl alone bounds staleness): %s",
                               cachet_layer_backend(n->below), cachet_strerror(st));
    }
}

/* After a write through this proxy: tell the other processes' L1s. */
static void check_fork(near_proxy *n);

static void publish(near_proxy *n, const char *key, size_t klen)
{
    check_fork(n);
    if (n->notify && cachet_layer_notify_publish(n->below, n->id, key, klen) != CACHET_OK)
        atomic_fetch_add_explicit(&n->publish_failures, 1, memory_order_relaxed);
}

/* In a fork()ed child the subscriber thread is gone: the first get makes
 * a new one (the parent's handle is left alone: its thread and connection
 * belong to the parent). */
static void check_fork(near_proxy *n)
{
    /* one relaxed load on every call: set only in a fork()ed child */
    if (__builtin_expect(atomic_load_explicit(&n->resubscribe, memory_order_relaxed), 0)) {
        pthread_mutex_lock(&n->sub_mu);
        if (atomic_exchange(&n->resubscribe, 0)) {
            near_table_clear(n->t);       /* what the parent heard since is unknown */
            subscribe(n);
        }
        pthread_mutex_unlock(&n->sub_mu);
    }
}

static cachet_status n_open(const cachet_backend_params *p, cachet_layer *below, void **state)
{
    static const char *const known[] = {"max_count", "max_size", "ttl", "notify", NULL};
    const char *notify;
    near_proxy *n;
    long max_count, max_size;
    double ttl;
    cachet_status st;

    if ((st = cachet_backend_args_check(p, "proxy near", known)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, "proxy near", "max_count", 10000, 0, LONG_MAX,
                                      &max_count)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, "proxy near", "max_size", 64L << 20, 0, LONG_MAX,
                                      &max_size)) != CACHET_OK ||
        (st = cachet_backend_arg_double(p, "proxy near", "ttl", 5, 0.001, 86400 * 365.0,
                                        &ttl)) != CACHET_OK)
        return st;
    notify = cachet_backend_arg_get(p, "notify");
    if (notify && strcmp(notify, "auto") != 0 && strcmp(notify, "off") != 0)
        return cachet_backend_error(CACHET_EINVAL, "proxy near: argument notify: \"%s\" is "
                                    "not auto or off", notify);
    if (!max_count && !max_size)
        return cachet_backend_error(CACHET_EINVAL, "proxy near: arguments max_count and "
                                    "max_size are both 0: the L1 would grow without bound");
    if (!(n = calloc(1, sizeof *n)) || !(n->t = near_table_new((size_t)max_count,
                                                                (size_t)max_size))) {
        free(n);
        return cachet_backend_error(CACHET_ENOMEM, "proxy near: out of memory");
    }
    n->below = below;
    n->ttl_ns = (int64_t)(ttl * 1e9);
    n->max_count = max_count;
    n->max_size = max_size;
    pthread_mutex_init(&n->sub_mu, NULL);
    if (!notify || strcmp(notify, "auto") == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* unique among the processes on the server: pid, instance, time */
        snprintf(n->id, sizeof n->id, "%lx.%lx.%lx", (unsigned long)getpid(),
                 (unsigned long)(uintptr_t)n, (unsigned long)ts.tv_nsec);
        subscribe(n);
        n->notify = n->sub != NULL;
    }
    *state = n;
    return CACHET_OK;
}

static void n_close(void *state)
{
    near_proxy *n = state;
    if (n->sub)
        cachet_layer_notify_unsubscribe(n->below, n->sub);   /* the thread stops first */
    near_table_free(n->t);
    pthread_mutex_destroy(&n->sub_mu);
    free(n);
}

static cachet_status n_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    near_proxy *n = state;
    uint64_t ticket;
    cachet_status st;
    check_fork(n);
    if (l1_get(n, key, klen, value, len))
        return CACHET_OK;
    atomic_fetch_add_explicit(&n->misses, 1, memory_order_relaxed);
    ticket = near_table_ticket(n->t, key, klen);
    st = cachet_layer_get(n->below, key, klen, value, len);
    health(n, st);
    if (st == CACHET_OK)
        near_table_fill(n->t, key, klen, ticket, *value, *len, now_ns());
    return st;
}

/* After a write below that began with ticket: the L1 holds what was
 * written, or nothing (a failed write, or one that overlapped another
 * write of the key: which reached the backend last is unknown). */
static void written(near_proxy *n, const char *key, size_t klen, uint64_t ticket,
                    const void *value, size_t len, cachet_status st)
{
    health(n, st);
    if (st == CACHET_OK)
        near_table_write(n->t, key, klen, ticket, value, len, now_ns());
    else
        near_table_del(n->t, key, klen);
    if (st == CACHET_OK)
        publish(n, key, klen);
}

static cachet_status n_set(void *state, const char *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    near_proxy *n = state;
    uint64_t ticket = near_table_ticket(n->t, key, klen);
    cachet_status st = cachet_layer_set(n->below, key, klen, value, len, ttl);
    written(n, key, klen, ticket, value, len, st);
    return st;
}

static cachet_status n_add(void *state, const char *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    near_proxy *n = state;
    uint64_t ticket = near_table_ticket(n->t, key, klen);
    cachet_status st = cachet_layer_add(n->below, key, klen, value, len, ttl);
    if (st == CACHET_ENOTSUP)          /* the region checks and sets: through n_get, n_set */
        return st;
    written(n, key, klen, ticket, value, len, st);
    return st;
}

static cachet_status n_del(void *state, const char *key, size_t klen)
{
    near_proxy *n = state;
    cachet_status st;
    near_table_del(n->t, key, klen);
    st = cachet_layer_del(n->below, key, klen);
    health(n, st);
    near_table_del(n->t, key, klen);   /* again: a fill that read the old value fails */
    publish(n, key, klen);
    return st;
}

static cachet_status n_get_multi(void *state, cachet_backend_item *items, size_t count)
{
    near_proxy *n = state;
    cachet_backend_item *rest;
    size_t *idx, nrest = 0;
    uint64_t *tickets;
    cachet_status st = CACHET_OK;

    for (size_t i = 0; i < count; i++) {
        items[i].value = NULL;
        items[i].len = 0;
        items[i].status = l1_get(n, items[i].key, items[i].klen, &items[i].value, &items[i].len)
                          ? CACHET_OK : CACHET_MISS;
        nrest += items[i].status != CACHET_OK;
    }
    if (!nrest)
        return CACHET_OK;
    atomic_fetch_add_explicit(&n->misses, nrest, memory_order_relaxed);
    rest = malloc(nrest * sizeof *rest);
    idx = malloc(nrest * sizeof *idx);
    tickets = malloc(nrest * sizeof *tickets);
    if (!rest || !idx || !tickets) {
        free(rest), free(idx), free(tickets);
        for (size_t i = 0; i < count; i++)
            if (items[i].status == CACHET_OK) {
                free(items[i].value);
                items[i].value = NULL;
            }
        return cachet_backend_error(CACHET_ENOMEM, "proxy near: get_multi of %zu: out of "
                                    "memory", count);
    }
    for (size_t i = 0, k = 0; i < count; i++)
        if (items[i].status != CACHET_OK) {
            idx[k] = i;
            rest[k] = items[i];
            tickets[k] = near_table_ticket(n->t, items[i].key, items[i].klen);
            k++;
        }
    st = cachet_layer_get_multi(n->below, rest, nrest);
    health(n, st);
    for (size_t k = 0; k < nrest; k++) {
        cachet_backend_item *it = &items[idx[k]];
        it->status = rest[k].status;
        it->value = rest[k].value;
        it->len = rest[k].len;
        if (it->status == CACHET_OK)
            near_table_fill(n->t, it->key, it->klen, tickets[k], it->value, it->len, now_ns());
    }
    free(rest), free(idx), free(tickets);
    return st;
}

static cachet_status n_set_multi(void *state, cachet_backend_item *items, size_t count)
{
    near_proxy *n = state;
    uint64_t *tickets = malloc((count ? count : 1) * sizeof *tickets);
    cachet_status st;
    if (!tickets)
        return cachet_backend_error(CACHET_ENOMEM, "proxy near: set_multi of %zu: out of "
                                    "memory", count);
    for (size_t i = 0; i < count; i++)
        tickets[i] = near_table_ticket(n->t, items[i].key, items[i].klen);
    st = cachet_layer_set_multi(n->below, items, count);
    health(n, st);
    for (size_t i = 0; i < count; i++)
        written(n, items[i].key, items[i].klen, tickets[i], items[i].value, items[i].len,
                items[i].status);
    free(tickets);
    return st;
}

static cachet_status n_delete_multi(void *state, cachet_backend_item *items, size_t count)
{
    near_proxy *n = state;
    cachet_status st;
    for (size_t i = 0; i < count; i++)
        near_table_del(n->t, items[i].key, items[i].klen);
    st = cachet_layer_delete_multi(n->below, items, count);
    health(n, st);
    for (size_t i = 0; i < count; i++) {
        near_table_del(n->t, items[i].key, items[i].klen);
        publish(n, items[i].key, items[i].klen);
    }
    return st;
}

static cachet_status n_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    near_proxy *n = state;
    near_table_stats s;
    char buf[32];
    near_table_stat(n->t, &s);
#define R(name, v) (snprintf(buf, sizeof buf, "%llu", (unsigned long long)(v)), fn(arg, name, buf))
    R("near_hits_total", atomic_load_explicit(&n->hits, memory_order_relaxed));
    R("near_misses_total", atomic_load_explicit(&n->misses, memory_order_relaxed));
    R("near_hits_while_down_total", atomic_load_explicit(&n->hits_down, memory_order_relaxed));
    R("near_clears_total", atomic_load_explicit(&n->clears, memory_order_relaxed));
    R("near_evictions_total", s.evictions);
    R("near_entries", s.count);
    R("near_bytes", s.bytes);
    R("near_backend_down", atomic_load_explicit(&n->down, memory_order_relaxed));
    R("near_notify", n->notify);
    R("near_remote_changes_total", atomic_load_explicit(&n->remote, memory_order_relaxed));
    R("near_resyncs_total", atomic_load_explicit(&n->resyncs, memory_order_relaxed));
    R("near_publish_failures_total",
      atomic_load_explicit(&n->publish_failures, memory_order_relaxed));
#undef R
    return CACHET_OK;
}

static void n_fork_prepare(void *state)
{
    near_proxy *n = state;
    pthread_mutex_lock(&n->sub_mu);
    near_table_lock_all(n->t);
}

static void n_fork_parent(void *state)
{
    near_proxy *n = state;
    near_table_unlock_all(n->t);
    pthread_mutex_unlock(&n->sub_mu);
}

static void n_fork_child(void *state)
{
    near_proxy *n = state;
    near_table_unlock_all(n->t);
    pthread_mutex_unlock(&n->sub_mu);
    if (n->notify) {
        /* a new id at once: the parent must not take the child's
         * publications for its own */
        snprintf(n->id, sizeof n->id, "%lx.%lx.f", (unsigned long)getpid(),
                 (unsigned long)(uintptr_t)n);
        atomic_store(&n->resubscribe, 1);
    }
}

const cachet_proxy_ops cachet__near_proxy = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "near",
    .open = n_open,
    .close = n_close,
    .get = n_get,
    .set = n_set,
    .del = n_del,
    .add = n_add,
    .get_multi = n_get_multi,
    .set_multi = n_set_multi,
    .delete_multi = n_delete_multi,
    .report = n_report,
    .fork_prepare = n_fork_prepare,
    .fork_parent = n_fork_parent,
    .fork_child = n_fork_child,
};
