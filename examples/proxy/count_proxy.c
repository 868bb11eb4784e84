/* An example third-party cachet proxy: counts the reads that pass through
 * it, hits and misses apart, and says so in the backend report (`cachet
 * check`, `cachet stats`).  Build it against the installed headers:
 *
 *   cc -shared -fPIC -o count_proxy.so count_proxy.c \
 *      $(pkg-config --cflags --libs cachet)
 *
 * and load it by absolute path:
 *
 *   [cache]
 *   cachet_proxies = /usr/local/lib/count_proxy.so
 *   cachet_proxy_argument = /usr/local/lib/count_proxy.so:label:web
 *
 * Everything it does not define (set, delete, the locks...) passes through
 * to the layer below unchanged. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cachet/backend.h>

typedef struct {
    cachet_layer *below;
    char label[64];
    atomic_ulong hits, misses;
} counter;

static cachet_status count_open(const cachet_backend_params *p, cachet_layer *below, void **state)
{
    static const char *const known[] = {"label", NULL};
    const char *label = cachet_backend_arg_get(p, "label");
    counter *c;
    cachet_status st = cachet_backend_args_check(p, "proxy count", known);
    if (st != CACHET_OK)
        return st;
    if (!(c = calloc(1, sizeof *c)))
        return cachet_backend_error(CACHET_ENOMEM, "proxy count: out of memory");
    c->below = below;
    snprintf(c->label, sizeof c->label, "%s", label ? label : "count");
    *state = c;
    return CACHET_OK;
}

static void count_close(void *state)
{
    free(state);
}

static void tally(counter *c, cachet_status st)
{
    if (st == CACHET_OK)
        atomic_fetch_add(&c->hits, 1);
    else if (st == CACHET_MISS)
        atomic_fetch_add(&c->misses, 1);
}

static cachet_status count_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    counter *c = state;
    cachet_status st = cachet_layer_get(c->below, key, klen, value, len);
    tally(c, st);
    return st;
}

static cachet_status count_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    counter *c = state;
    cachet_status st = cachet_layer_get_multi(c->below, items, n);
    for (size_t i = 0; i < n; i++)
        tally(c, items[i].status);
    return st;
}

static cachet_status count_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    counter *c = state;
    char name[96], value[32];
    snprintf(name, sizeof name, "%s_hits", c->label);
    snprintf(value, sizeof value, "%lu", atomic_load(&c->hits));
    fn(arg, name, value);
    snprintf(name, sizeof name, "%s_misses", c->label);
    snprintf(value, sizeof value, "%lu", atomic_load(&c->misses));
    fn(arg, name, value);
    return CACHET_OK;
}

static const cachet_proxy_ops count_ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "count",
    .open = count_open,
    .close = count_close,
    .get = count_get,
    .get_multi = count_get_multi,
    .report = count_report,
};

CACHET_BACKEND_EXPORT const cachet_proxy_ops *cachet_proxy_entry(void)
{
    return &count_ops;
}
