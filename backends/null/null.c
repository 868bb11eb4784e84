/* The null backend (dogpile.cache.null, and oslo.cache's `enabled = false`):
 * stores nothing, so every get misses and every creator runs.  It keeps no
 * state, so it is trivially thread-safe. */
#include <stddef.h>
#include <cachet/backend.h>

/* The region only hands state back to us; any non-NULL token will do. */
static char null_token;

static cachet_status null_open(const cachet_backend_params *p, void **state)
{
    static const char *const known[] = {NULL};
    cachet_status st = cachet_backend_args_check(p, "null", known);
    if (st != CACHET_OK)
        return st;
    *state = &null_token;
    return CACHET_OK;
}

static void null_close(void *state)
{
    (void)state;
}

static cachet_status null_get(void *state, const char *key, size_t klen, void **value,
                              size_t *len)
{
    (void)state, (void)key, (void)klen;
    *value = NULL;
    *len = 0;
    return CACHET_MISS;
}

static cachet_status null_set(void *state, const char *key, size_t klen, const void *value,
                              size_t len, double ttl)
{
    (void)state, (void)key, (void)klen, (void)value, (void)len, (void)ttl;
    return CACHET_OK;
}

static cachet_status null_del(void *state, const char *key, size_t klen)
{
    (void)state, (void)key, (void)klen;
    return CACHET_OK;
}

static const cachet_backend_ops null_ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "null",
    .caps = CACHET_CAP_LOCAL,
    .open = null_open,
    .close = null_close,
    .get = null_get,
    .set = null_set,
    .del = null_del,
};

CACHET_BACKEND_EXPORT const cachet_backend_ops *cachet_backend_entry(void)
{
    return &null_ops;
}
