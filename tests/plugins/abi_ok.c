/* A third-party plugin as the tests build it: loaded by absolute path.  It
 * keeps one value, enough to show the region really dispatches to it, and
 * has knobs the region tests use to hand the region bad bytes and failures:
 *   get "raw:BYTES"      returns BYTES as stored bytes (foreign data)
 *   get "hex:HEX"        returns the bytes HEX spells (foreign data with NULs)
 *   truncate_by:N        returns the stored value N bytes short
 *   fail:true            every operation fails with CACHET_EUNAVAILABLE
 *   any_key:true         get returns the one stored value whatever key is
 *                        asked, as a desynchronised connection would
 *   lock_busy:true       lock always answers "held by another" (a lying server);
 *                        lock_timeout:S is accepted, as a networked backend's */
#include <stdlib.h>
#include <string.h>
#include <cachet/backend.h>

typedef struct {
    char  *key, *val;
    size_t klen, vlen;
    long   truncate_by;
    int    fail;
    int    any_key;
    int    lock_busy;
} one;

static cachet_status t_open(const cachet_backend_params *p, void **state)
{
    static const char *const known[] = {"truncate_by", "fail", "any_key", "lock_busy",
                                        "lock_timeout", NULL};
    one *o;
    long cut;
    int fail, any_key, lock_busy;
    cachet_status st = cachet_backend_args_check(p, "abi_ok", known);
    if (st == CACHET_OK)
        st = cachet_backend_arg_long(p, "abi_ok", "truncate_by", 0, 0, 1 << 20, &cut);
    if (st == CACHET_OK)
        st = cachet_backend_arg_bool(p, "abi_ok", "fail", 0, &fail);
    if (st == CACHET_OK)
        st = cachet_backend_arg_bool(p, "abi_ok", "any_key", 0, &any_key);
    if (st == CACHET_OK)
        st = cachet_backend_arg_bool(p, "abi_ok", "lock_busy", 0, &lock_busy);
    if (st != CACHET_OK)
        return st;
    if (!(o = calloc(1, sizeof *o)))
        return CACHET_ENOMEM;
    o->truncate_by = cut;
    o->fail = fail;
    o->any_key = any_key;
    o->lock_busy = lock_busy;
    *state = o;
    return CACHET_OK;
}

static void t_close(void *state)
{
    one *o = state;
    free(o->key);
    free(o->val);
    free(o);
}

static cachet_status t_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    one *o = state;
    if (o->fail)
        return cachet_backend_error(CACHET_EUNAVAILABLE, "abi_ok: told to fail");
    if (klen > 4 && memcmp(key, "raw:", 4) == 0) {
        char *v = malloc(klen - 4 + 1);   /* values handed back end in a NUL */
        if (!v)
            return CACHET_ENOMEM;
        memcpy(v, key + 4, klen - 4);
        v[klen - 4] = '\0';
        *value = v;
        *len = klen - 4;
        return CACHET_OK;
    }
    if (klen > 4 && memcmp(key, "hex:", 4) == 0) {
        size_t n = (klen - 4) / 2;
        unsigned char *b = malloc(n + 1);
        if (!b)
            return CACHET_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            unsigned x;
            char two[3] = {key[4 + 2 * i], key[5 + 2 * i], 0};
            x = (unsigned)strtoul(two, NULL, 16);
            b[i] = (unsigned char)x;
        }
        b[n] = '\0';
        *value = b;
        *len = n;
        return CACHET_OK;
    }
    if (!o->key || (!o->any_key && (o->klen != klen || memcmp(o->key, key, klen) != 0)))
        return CACHET_MISS;
    {
        char *v = malloc(o->vlen + 1);
        if (!v)
            return CACHET_ENOMEM;
        memcpy(v, o->val, o->vlen);
        *len = o->vlen > (size_t)o->truncate_by ? o->vlen - (size_t)o->truncate_by : 0;
        v[*len] = '\0';
        *value = v;
    }
    return CACHET_OK;
}

static cachet_status t_set(void *state, const char *key, size_t klen, const void *value, size_t len,
                           double ttl)
{
    (void)ttl;
    one *o = state;
    if (o->fail)
        return cachet_backend_error(CACHET_EUNAVAILABLE, "abi_ok: told to fail");
    free(o->key);
    free(o->val);
    o->key = malloc(klen + 1);
    o->val = malloc(len + 1);
    if (!o->key || !o->val)
        return CACHET_ENOMEM;
    memcpy(o->key, key, klen);
    memcpy(o->val, value, len);
    o->klen = klen;
    o->vlen = len;
    return CACHET_OK;
}

static cachet_status t_del(void *state, const char *key, size_t klen)
{
    one *o = state;
    if (o->fail)
        return cachet_backend_error(CACHET_EUNAVAILABLE, "abi_ok: told to fail");
    if (o->key && o->klen == klen && memcmp(o->key, key, klen) == 0) {
        free(o->key);
        o->key = NULL;
    }
    return CACHET_OK;
}

static cachet_status t_lock(void *state, const char *key, size_t klen, void **token)
{
    one *o = state;
    (void)key, (void)klen;
    *token = NULL;
    return o->lock_busy ? CACHET_MISS : CACHET_ENOTSUP;
}

static cachet_status t_unlock(void *state, const char *key, size_t klen, void *token)
{
    (void)state, (void)key, (void)klen, (void)token;
    return CACHET_OK;
}

static const cachet_backend_ops ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "abi_ok",
    .open = t_open, .close = t_close, .get = t_get, .set = t_set, .del = t_del,
    .lock = t_lock, .unlock = t_unlock,
};

__attribute__((visibility("default"))) const cachet_backend_ops *cachet_backend_entry(void)
{
    return &ops;
}
