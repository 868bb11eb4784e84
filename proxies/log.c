/* The log proxy: one debug line per operation -- op, key, status, time --
 * to the service's logger, whatever debug_cache_backend says
 * (debug_cache_backend = true puts it in the chain).  Argument:
 *   log:keys:hidden   write "<key of N bytes>" instead of the key (a key
 *                     may be a token id: keep it out of logs) */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/backend.h>
#include "proxies.h"

typedef struct {
    cachet_layer *below;
    int hide_keys;
} log_proxy;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The key as a log line may show it: printable bytes as they are, others
 * as \xNN, at most 200 bytes of it. */
static void show_key(const log_proxy *p, const char *key, size_t klen, char *out, size_t size)
{
    size_t o = 0;
    if (p->hide_keys) {
        snprintf(out, size, "<key of %zu bytes>", klen);
        return;
    }
    for (size_t i = 0; i < klen && i < 200 && o + 5 < size; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
    }
    out[o] = '\0';
    if (klen > 200 && o + 4 < size)
        memcpy(out + o, "...", 4);
}

static const char *outcome(cachet_status st)
{
    return st == CACHET_OK ? "ok" : st == CACHET_MISS ? "miss" : st == CACHET_EXISTS ? "exists"
           : cachet_strerror(st);
}

static void line(const log_proxy *p, const char *op, const char *key, size_t klen,
                 cachet_status st, double t0)
{
    char k[1024];
    show_key(p, key, klen, k, sizeof k);
    cachet_backend_log(CACHET_LOG_DEBUG, "cachet %s: %s %s: %s (%.0f us)",
                       cachet_layer_backend(p->below), op, k, outcome(st), now_us() - t0);
}

static void multi_line(const log_proxy *p, const char *op, const cachet_backend_item *items,
                       size_t n, cachet_status st, double t0)
{
    size_t ok = 0, miss = 0;
    for (size_t i = 0; i < n; i++)
        ok += items[i].status == CACHET_OK, miss += items[i].status == CACHET_MISS;
    cachet_backend_log(CACHET_LOG_DEBUG, "cachet %s: %s of %zu keys: %s (%zu ok, %zu miss, %zu "
                       "failed) (%.0f us)", cachet_layer_backend(p->below), op, n, outcome(st),
                       ok, miss, n - ok - miss, now_us() - t0);
}

static cachet_status log_open(const cachet_backend_params *params, cachet_layer *below,
                              void **state)
{
    static const char *const known[] = {"keys", NULL};
    const char *keys;
    log_proxy *p;
    cachet_status st = cachet_backend_args_check(params, "proxy log", known);
    if (st != CACHET_OK)
        return st;
    keys = cachet_backend_arg_get(params, "keys");
    if (keys && strcmp(keys, "shown") != 0 && strcmp(keys, "hidden") != 0)
        return cachet_backend_error(CACHET_EINVAL, "proxy log: argument keys: \"%s\" is not "
                                    "shown or hidden", keys);
    if (!(p = calloc(1, sizeof *p)))
        return cachet_backend_error(CACHET_ENOMEM, "proxy log: out of memory");
    p->below = below;
    p->hide_keys = keys && strcmp(keys, "hidden") == 0;
    *state = p;
    return CACHET_OK;
}

static void log_close(void *state)
{
    free(state);
}

static cachet_status log_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    double t0 = now_us();
    cachet_status st = cachet_layer_get(((log_proxy *)state)->below, key, klen, value, len);
    line(state, "get", key, klen, st, t0);
    return st;
}

static cachet_status log_set(void *state, const char *key, size_t klen, const void *value,
                             size_t len, double ttl)
{
    double t0 = now_us();
    cachet_status st = cachet_layer_set(((log_proxy *)state)->below, key, klen, value, len, ttl);
    line(state, "set", key, klen, st, t0);
    return st;
}

static cachet_status log_add(void *state, const char *key, size_t klen, const void *value,
                             size_t len, double ttl)
{
    double t0 = now_us();
    cachet_status st = cachet_layer_add(((log_proxy *)state)->below, key, klen, value, len, ttl);
    if (st != CACHET_ENOTSUP)          /* the region's own check follows: not an add here */
        line(state, "add", key, klen, st, t0);
    return st;
}

static cachet_status log_del(void *state, const char *key, size_t klen)
{
    double t0 = now_us();
    cachet_status st = cachet_layer_del(((log_proxy *)state)->below, key, klen);
    line(state, "delete", key, klen, st, t0);
    return st;
}

/* The multi-operations: the call below, then one line for the batch. */
typedef cachet_status (*log_multi_fn)(cachet_layer *below, cachet_backend_item *items, size_t n);

static cachet_status log_multi(log_proxy *lp, const char *op, log_multi_fn down,
                               cachet_backend_item *items, size_t n)
{
    double t0 = now_us();
    cachet_status st = down(lp->below, items, n);
    multi_line(lp, op, items, n, st, t0);
    return st;
}

static cachet_status log_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    return log_multi(state, "get_multi", cachet_layer_get_multi, items, n);
}

static cachet_status log_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    return log_multi(state, "set_multi", cachet_layer_set_multi, items, n);
}

static cachet_status log_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    return log_multi(state, "delete_multi", cachet_layer_delete_multi, items, n);
}

static cachet_status log_lock(void *state, const char *key, size_t klen, void **token)
{
    double t0 = now_us();
    cachet_status st = cachet_layer_lock(((log_proxy *)state)->below, key, klen, token);
    line(state, "lock", key, klen, st == CACHET_MISS ? CACHET_OK : st, t0);
    return st;
}

static cachet_status log_unlock(void *state, const char *key, size_t klen, void *token)
{
    double t0 = now_us();
    cachet_status st = cachet_layer_unlock(((log_proxy *)state)->below, key, klen, token);
    line(state, "unlock", key, klen, st, t0);
    return st;
}

const cachet_proxy_ops cachet__log_proxy = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "log",
    .open = log_open,
    .close = log_close,
    .get = log_get,
    .set = log_set,
    .del = log_del,
    .add = log_add,
    .get_multi = log_get_multi,
    .set_multi = log_set_multi,
    .delete_multi = log_delete_multi,
    .lock = log_lock,
    .unlock = log_unlock,
};
