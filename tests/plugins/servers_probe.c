/* A backend for the metrics tests (tests/test_metrics.c): stores nothing,
 * has the optional servers operation, and reports lines of every kind
 * cachet_metrics_prometheus turns into samples.  Arguments:
 *   up:HOST:PORT,...     servers it says are up
 *   down:HOST:PORT,...   servers it says are marked down ("refused")
 * A label value with a quote and a backslash checks the escaping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cachet/backend.h>

#define MAXS 8

typedef struct {
    char names[MAXS][64];
    int  up[MAXS];
    size_t n;
} probe;

static void add_list(probe *p, const char *list, int up)
{
    while (list && *list && p->n < MAXS) {
        size_t n = strcspn(list, ",");
        snprintf(p->names[p->n], sizeof p->names[0], "%.*s", (int)n, list);
        p->up[p->n++] = up;
        list += n + (list[n] == ',');
    }
}

static cachet_status sp_open(const cachet_backend_params *params, void **state)
{
    static const char *const known[] = {"up", "down", NULL};
    probe *p;
    cachet_status st = cachet_backend_args_check(params, "servers_probe", known);
    if (st != CACHET_OK)
        return st;
    if (!(p = calloc(1, sizeof *p)))
        return CACHET_ENOMEM;
    add_list(p, cachet_backend_arg_get(params, "up"), 1);
    add_list(p, cachet_backend_arg_get(params, "down"), 0);
    *state = p;
    return CACHET_OK;
}

static void sp_close(void *state)
{
    free(state);
}

static cachet_status sp_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    (void)state, (void)key, (void)klen, (void)value, (void)len;
    return CACHET_MISS;
}

static cachet_status sp_set(void *state, const char *key, size_t klen, const void *value,
                            size_t len, double ttl)
{
    (void)state, (void)key, (void)klen, (void)value, (void)len, (void)ttl;
    return CACHET_OK;
}

static cachet_status sp_del(void *state, const char *key, size_t klen)
{
    (void)state, (void)key, (void)klen;
    return CACHET_OK;
}

static size_t sp_servers(void *state, cachet_server_state *out, size_t max)
{
    probe *p = state;
    for (size_t i = 0; i < p->n && i < max; i++) {
        out[i].name = p->names[i];
        out[i].up = p->up[i];
        out[i].reason = p->up[i] ? NULL : "refused";
        out[i].failures = p->up[i] ? 0 : 3;
        out[i].since_change = -1;
    }
    return p->n;
}

static cachet_status sp_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    probe *p = state;
    char name[96];
    for (size_t i = 0; i < p->n; i++) {
        fn(arg, "server", p->up[i] ? "up failures=0" : "down failures=3");   /* free text */
        snprintf(name, sizeof name, "%s curr_items", p->names[i]);
        fn(arg, name, "42");
        snprintf(name, sizeof name, "%s bytes", p->names[i]);
        fn(arg, name, "1024");
    }
    fn(arg, "connections", "2");
    fn(arg, "distributed_lock", "false");
    fn(arg, "protocol", "te\"xt\\");
    fn(arg, "weird-name.with.dots", "7");
    return CACHET_OK;
}

static const cachet_backend_ops ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "servers_probe",
    .open = sp_open,
    .close = sp_close,
    .get = sp_get,
    .set = sp_set,
    .del = sp_del,
    .report = sp_report,
    .servers = sp_servers,
};

CACHET_BACKEND_EXPORT const cachet_backend_ops *cachet_backend_entry(void)
{
    return &ops;
}
