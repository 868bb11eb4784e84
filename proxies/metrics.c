/* The metrics proxy: a latency histogram per operation,
 * cachet_operation_seconds{op=...}, written by cachet_metrics_prometheus
 * (src/metrics.c).  The counters and server gauges are there without it;
 * this proxy adds the clock reads, two per call.
 *
 * Buckets are atomics, one increment per call (no lock); a scrape reads
 * them one by one, so _count is taken as the sum of the buckets it read and
 * always equals the +Inf bucket.  "create" is the creator's time in
 * get_or_create, measured by the region (cachet__metrics_creator_time);
 * "lock" is the backend lock's (the cross-process lock) time to answer. */
#include "config.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <cachet/backend.h>
#include "proxies.h"
#include "metrics.h"

enum { OP_GET, OP_SET, OP_DELETE, OP_ADD, OP_GET_MULTI, OP_SET_MULTI, OP_DELETE_MULTI, OP_LOCK,
       OP_CREATE, OP__COUNT };
static const char *const op_names[OP__COUNT] = {
    "get", "set", "delete", "add", "get_multi", "set_multi", "delete_multi", "lock", "create",
};

/* upper bounds in seconds: 50 us (a memory hit) to 10 s (a stalled server
 * or a slow creator) */
static const double bounds[] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10,
};
#define NB (sizeof bounds / sizeof bounds[0])

typedef struct {
    _Atomic uint64_t bucket[NB + 1];     /* not cumulative; [NB] is above the last bound */
    _Atomic uint64_t sum_ns;
} histogram;

typedef struct {
    cachet_layer *below;
    int64_t       bound_ns[NB];
    histogram     h[OP__COUNT];
} metrics_proxy;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void observe(metrics_proxy *m, int op, int64_t ns)
{
    size_t b = 0;
    if (ns < 0)
        ns = 0;
    while (b < NB && ns > m->bound_ns[b])
        b++;
    atomic_fetch_add_explicit(&m->h[op].bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->h[op].sum_ns, (uint64_t)ns, memory_order_relaxed);
}

void cachet__metrics_proxy_observe_create(void *state, int64_t ns)
{
    observe(state, OP_CREATE, ns);
}

void cachet__metrics_proxy_write(void *state, cachet_prom *w, const char *backend)
{
    metrics_proxy *m = state;
    cachet__prom_family(w, "cachet_operation_seconds", "histogram",
                        "Time of each operation through the metrics proxy (create: the "
                        "get_or_create creator's).");
    for (int op = 0; op < OP__COUNT; op++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= NB; b++) {
            cum += atomic_load_explicit(&m->h[op].bucket[b], memory_order_relaxed);
            cachet__prom_str(w, "cachet_operation_seconds_bucket{backend=\"");
            cachet__prom_label(w, backend);
            if (b < NB)
                cachet__prom_printf(w, "\",op=\"%s\",le=\"%g\"} %llu\n", op_names[op], bounds[b],
                                    (unsigned long long)cum);
            else
                cachet__prom_printf(w, "\",op=\"%s\",le=\"+Inf\"} %llu\n", op_names[op],
                                    (unsigned long long)cum);
        }
        cachet__prom_str(w, "cachet_operation_seconds_sum{backend=\"");
        cachet__prom_label(w, backend);
        cachet__prom_printf(w, "\",op=\"%s\"} %.9f\n", op_names[op],
                            (double)atomic_load_explicit(&m->h[op].sum_ns,
                                                         memory_order_relaxed) / 1e9);
        cachet__prom_str(w, "cachet_operation_seconds_count{backend=\"");
        cachet__prom_label(w, backend);
        cachet__prom_printf(w, "\",op=\"%s\"} %llu\n", op_names[op], (unsigned long long)cum);
    }
}

static cachet_status m_open(const cachet_backend_params *p, cachet_layer *below, void **state)
{
    static const char *const known[] = {NULL};
    metrics_proxy *m;
    cachet_status st = cachet_backend_args_check(p, "proxy metrics", known);
    if (st != CACHET_OK)
        return st;
    if (!(m = calloc(1, sizeof *m)))
        return cachet_backend_error(CACHET_ENOMEM, "proxy metrics: out of memory");
    m->below = below;
    for (size_t b = 0; b < NB; b++)
        m->bound_ns[b] = (int64_t)(bounds[b] * 1e9 + 0.5);
    *state = m;
    return CACHET_OK;
}

static void m_close(void *state)
{
    free(state);
}

#define TIMED(op, call) do {                    \
        metrics_proxy *m = state;               \
        int64_t t0 = now_ns();                  \
        cachet_status st = (call);              \
        observe(m, (op), now_ns() - t0);        \
        return st;                              \
    } while (0)

static cachet_status m_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    TIMED(OP_GET, cachet_layer_get(m->below, key, klen, value, len));
}

static cachet_status m_set(void *state, const char *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    TIMED(OP_SET, cachet_layer_set(m->below, key, klen, value, len, ttl));
}

static cachet_status m_add(void *state, const char *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    metrics_proxy *m = state;
    int64_t t0 = now_ns();
    cachet_status st = cachet_layer_add(m->below, key, klen, value, len, ttl);
    if (st != CACHET_ENOTSUP)           /* no layer has add: the region checks and sets */
        observe(m, OP_ADD, now_ns() - t0);
    return st;
}

static cachet_status m_del(void *state, const char *key, size_t klen)
{
    TIMED(OP_DELETE, cachet_layer_del(m->below, key, klen));
}

static cachet_status m_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    TIMED(OP_GET_MULTI, cachet_layer_get_multi(m->below, items, n));
}

static cachet_status m_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    TIMED(OP_SET_MULTI, cachet_layer_set_multi(m->below, items, n));
}

static cachet_status m_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    TIMED(OP_DELETE_MULTI, cachet_layer_delete_multi(m->below, items, n));
}

static cachet_status m_lock(void *state, const char *key, size_t klen, void **token)
{
    metrics_proxy *m = state;
    int64_t t0 = now_ns();
    cachet_status st = cachet_layer_lock(m->below, key, klen, token);
    if (st != CACHET_ENOTSUP)           /* no lock below: nothing was timed */
        observe(m, OP_LOCK, now_ns() - t0);
    return st;
}

const cachet_proxy_ops cachet__metrics_proxy = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "metrics",
    .open = m_open,
    .close = m_close,
    .get = m_get,
    .set = m_set,
    .del = m_del,
    .add = m_add,
    .get_multi = m_get_multi,
    .set_multi = m_set_multi,
    .delete_multi = m_delete_multi,
    .lock = m_lock,
};
