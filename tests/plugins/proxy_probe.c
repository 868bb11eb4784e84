/* A proxy as a third party writes one, for the chain tests: it defines get
 * only (everything else must pass through it) and reports how many gets it
 * saw, under the name its "label" argument gives. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <cachet/backend.h>

typedef struct {
    cachet_layer *below;
    char label[32];
    atomic_ulong gets;
} probe;

static cachet_status p_open(const cachet_backend_params *p, cachet_layer *below, void **state)
{
    static const char *const known[] = {"label", NULL};
    const char *label = cachet_backend_arg_get(p, "label");
    probe *pr;
    cachet_status st = cachet_backend_args_check(p, "proxy probe", known);
    if (st != CACHET_OK)
        return st;
    if (!(pr = calloc(1, sizeof *pr)))
        return CACHET_ENOMEM;
    pr->below = below;
    snprintf(pr->label, sizeof pr->label, "%s", label ? label : "probe");
    *state = pr;
    return CACHET_OK;
}

static void p_close(void *state)
{
    free(state);
}

static cachet_status p_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    probe *pr = state;
    atomic_fetch_add(&pr->gets, 1);
    return cachet_layer_get(pr->below, key, klen, value, len);
}

static cachet_status p_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    probe *pr = state;
    char name[48], v[32];
    snprintf(name, sizeof name, "%s_gets", pr->label);
    snprintf(v, sizeof v, "%lu", atomic_load(&pr->gets));
    fn(arg, name, v);
    fn(arg, "probe_below", cachet_layer_backend(pr->below));
    return CACHET_OK;
}

static const cachet_proxy_ops ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "probe",
    .open = p_open,
    .close = p_close,
    .get = p_get,
    .report = p_report,
};

__attribute__((visibility("default"))) const cachet_proxy_ops *cachet_proxy_entry(void)
{
    return &ops;
}
