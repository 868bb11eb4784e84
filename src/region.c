/* The region: key preparation, the value header, expiration and
 * invalidation, statistics, and dispatch to the backend vtable. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"
#include "config_priv.h"
#include "loader.h"
#include "chain.h"
#include "region.h"
#include "metrics.h"
#include "region_read.h"
#include "testhooks.h"
#include "value.h"

#define COUNT CACHET_COUNT

/* ---- clocks ---- */

_Atomic(cachet__clock_fn) cachet__clock_hook;

CACHET_EXPORT void cachet__clock_set(int64_t (*now)(void))
{
    atomic_store_explicit(&cachet__clock_hook, now, memory_order_relaxed);
}

int64_t cachet__region_now_ns(void)
{
    struct timespec ts;
    cachet__clock_fn fake = atomic_load_explicit(&cachet__clock_hook, memory_order_relaxed);
    if (__builtin_expect(fake != NULL, 0))
        return fake();
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cachet__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A creation time strictly after the last invalidation, so a value set in
 * the same nanosecond as cachet_invalidate() is not hidden by it. */
static int64_t creation_time(cachet_region *r)
{
    int64_t t = cachet__region_now_ns();
    int64_t h = atomic_load_explicit(&r->hard_invalidated_ns, memory_order_acquire);
    int64_t s = atomic_load_explicit(&r->soft_invalidated_ns, memory_order_acquire);
    if (t <= h)
        t = h + 1;
    if (t <= s)
        t = s + 1;
    return t;
}

/* A failure that the backend did not describe still gets a message. */
cachet_status cachet__region_failed(cachet_region *r, cachet_status st, const char *op, const char *key)
{
    COUNT(r, errors);
    if (!cachet__error_isset())
        cachet__error(st, "backend %s: %s %s: %s", r->backend, op, key, cachet_strerror(st));
    if (r->debug)
        cachet__log(CACHET_LOG_DEBUG, "%s %s failed: %s", op, key, cachet_errmsg());
    return st;
}

/* ---- open / close ---- */

static void cachet_region_close_untracked(cachet_region *r);

CACHET_EXPORT cachet_status cachet_region_open(const cachet_config *c, cachet_region **out)
{
    cachet_region *r;
    cachet_backend_params params;
    const cachet_backend_ops *ops;
    cachet_chain chain;
    cachet_status st;
    char where[512];
    long exp;

    if (!c || !out)
        return cachet__error(CACHET_EINVAL, "cachet_region_open: NULL config or out");
    *out = NULL;
    if ((st = cachet__cfg_validate(c)) != CACHET_OK)
        return st;
    if ((st = cachet_loader_get(c->backend, &ops)) != CACHET_OK) {
        cachet__cfg_where(c, OPT_BACKEND, where, sizeof where);
        if (where[0])
            cachet__error_prefix("%.*s", (int)strlen(where) - 2, where);
        return st;
    }
    if ((st = cachet__chain_make(c, &chain)) != CACHET_OK)
        return st;
    if (!(r = calloc(1, sizeof *r)) || !(r->backend = cachet__strdup(ops->name ? ops->name : c->backend))) {
        free(r);
        cachet__chain_free(&chain);
        return cachet__error(CACHET_ENOMEM, "cachet_region_open: out of memory");
    }
    r->keys.max_len = ops->max_key_len;
    r->keys.rules = ops->key_rules;
    {
        /* cachet_key_prefix goes in front of every key, before mangling
         * (key.c), so that the mangled key depends on it too */
        const char *pfx = cachet__cfg_str(c, OPT_CACHET_KEY_PREFIX);
        if (!(r->prefix_owned = cachet__strdup(pfx ? pfx : ""))) {
            free(r->backend);
            free(r);
            cachet__chain_free(&chain);
            return cachet__error(CACHET_ENOMEM, "cachet_region_open: out of memory");
        }
        r->keys.prefix = r->prefix_owned;
        r->keys.prefix_len = strlen(r->prefix_owned);
    }
    exp = cachet__cfg_long(c, OPT_EXPIRATION_TIME);
    r->expiration_ns = exp < 0 ? -1 : (int64_t)exp * 1000000000;
    r->default_rule = (cachet_rule){r->expiration_ns, 0, 0};
    r->backend_ttl_s = cachet__cfg_str(c, OPT_BACKEND_EXPIRATION_TIME)
                       ? (double)cachet__cfg_long(c, OPT_BACKEND_EXPIRATION_TIME) : 0;
    r->debug = cachet__cfg_bool(c, OPT_DEBUG_CACHE_BACKEND);
    /* bytes that come back over a connection may be another request's
     * answer: each value carries a check of its key (docs/value-format.md) */
    r->bind_keys = (ops->caps & CACHET_CAP_LOCAL) == 0;
    if (c->foreign_values) {
        /* keys and values are what the chain (the keystone proxy) makes */
        r->foreign = 1;
        r->bind_keys = 0;
        r->keys.max_len = 0;
        r->keys.rules = 0;
    }
    {
        /* a lock another process holds expires after the backend's
         * lock_timeout (30 s unless set): get_or_create waits that long */
        const char *lt = cachet_config_backend_arg(c, "lock_timeout");
        double secs = lt ? strtod(lt, NULL) : 30.0;
        if (!(secs > 0 && secs < 86400.0 * 30))
            secs = 30.0;
        r->lock_wait_ns = (int64_t)((secs + 1.0) * 1e9);
    }
    keylock_init(&r->locks);
    r->serve_stale = cachet__cfg_bool(c, OPT_CACHET_SERVE_STALE);
    r->early_beta = cachet__cfg_double(c, OPT_CACHET_EARLY_REFRESH);
    region_refresh_init(&r->refresh, (unsigned)cachet__cfg_long(c, OPT_CACHET_REFRESH_THREADS));
    region_failures_init(&r->failures, cachet__cfg_double(c, OPT_CACHET_FAILURE_CACHE_TIME));
    params.args = c->eff;
    params.nargs = c->neff;
    params.debug = r->debug;
    cachet__error_clear();
    st = cachet__below_open(&r->below, ops, &params, chain.specs, chain.n);
    cachet__chain_free(&chain);   /* proxies copied what they keep of their arguments */
    if (st != CACHET_OK) {
        if (!cachet__error_isset())
            cachet__error(st, "backend %s: open failed: %s", r->backend, cachet_strerror(st));
        region_refresh_stop(r);
        keylock_destroy(&r->locks);
        region_failures_destroy(&r->failures);
        free(r->prefix_owned);
        free(r->backend);
        free(r);
        return st;
    }
    if ((st = cachet__inval_open(r, c)) != CACHET_OK) {
        cachet_region_close_untracked(r);
        return st;
    }
    if (r->debug)
        cachet__log(CACHET_LOG_DEBUG, "region opened on backend %s", r->backend);
    cachet__region_track(r);
    *out = r;
    return CACHET_OK;
}

/* Everything close does but the fork list (open's late failures). */
static void cachet_region_close_untracked(cachet_region *r)
{
    region_refresh_stop(r);           /* its threads use the backend */
    cachet__inval_close(r);
    cachet__below_close(&r->below);
    keylock_destroy(&r->locks);
    region_failures_destroy(&r->failures);
    free(r->prefix_owned);
    free(r->backend);
    free(r);
}

CACHET_EXPORT void cachet_region_close(cachet_region *r)
{
    if (!r)
        return;
    cachet__region_untrack(r);
    cachet_region_close_untracked(r);
}

CACHET_EXPORT const char *cachet_region_backend(const cachet_region *r)
{
    return r ? r->backend : NULL;
}

/* ---- values ---- */

CACHET_EXPORT void cachet_free(void *value)
{
    if (value)
        cachet__value_block_free((uint8_t *)value - CACHET_VALUE_HDR);
}

/* The longest per-call expiration_time: 290 years, inside int64 ns (9.2e18;
 * 300 years, 9.47e18 ns, would not be). */
#define MAX_EXPIRATION_S 9.2e9

cachet_status cachet__options_check(const cachet_options *o, const char *op)
{
    double e;
    if (!o)
        return CACHET_OK;
    e = o->expiration_time;
    if (e == 0 || e == -1 || (e > 0 && e <= MAX_EXPIRATION_S))
        return CACHET_OK;
    return cachet__error(CACHET_EINVAL, "%s: cachet_options.expiration_time %g: it is -1 (never "
                         "expires), 0 (the region's expiration_time) or seconds > 0", op, e);
}

/* o has passed cachet__options_check. */
cachet_rule cachet__region_rule(const cachet_region *r, const cachet_options *o)
{
    cachet_rule rule = {r->expiration_ns, 0, 0};
    if (o) {
        if (o->ignore_expiration) {
            rule.expiration_ns = -1;
            rule.ignore_soft = 1;
            rule.from_call = 1;
        } else if (o->expiration_time < 0) {
            rule.expiration_ns = -1;
            rule.from_call = 1;
        } else if (o->expiration_time > 0) {
            rule.expiration_ns = (int64_t)(o->expiration_time * 1e9);
            rule.from_call = 1;
        }
    }
    return rule;
}

void cachet__region_corrupt(cachet_region *r, const char *key, void *buf, size_t len,
                            uint64_t want_check)
{
    cachet_value_meta m;
    COUNT(r, corrupt);
    if (r->debug) {
        cachet_value_decode(buf, len, want_check, &m);       /* for the message */
        cachet__log(CACHET_LOG_DEBUG, "get %s: %s", key, cachet_errmsg());
    }
    free(buf);
}

cachet_status cachet__region_accept_slow(cachet_region *r, const char *key, void **buf,
                                         size_t *blen, size_t hdr, uint64_t want,
                                         int count_corrupt)
{
    if (hdr == CACHET_VALUE_HDR_V1) {
        size_t n = *blen - CACHET_VALUE_HDR_V1;
        cachet_value_meta m;
        uint8_t *nb;
        (void)cachet_value_valid(*buf, *blen, 0, &m);   /* version 1: created, flags */
        nb = realloc(*buf, CACHET_VALUE_HDR + n + 1);
        if (nb) {
            memmove(nb + CACHET_VALUE_HDR, nb + CACHET_VALUE_HDR_V1, n);
            nb[CACHET_VALUE_HDR + n] = '\0';
            /* a version-2 header in front, so that every value handed
             * out has one (cachet__value_info reads it) */
            m.lifetime_ns = 0;
            m.key_check = 0;
            m.flags &= (uint8_t)~CACHET_VF_KEY_BOUND;
            cachet_value_header(nb, &m, n);
            *buf = nb;
            *blen = CACHET_VALUE_HDR + n;
            return CACHET_OK;
        }
    }
    if (count_corrupt)
        cachet__region_corrupt(r, key, *buf, *blen, want);
    else
        free(*buf);
    *buf = NULL;
    return CACHET_ECORRUPT;
}

/* Wraps a payload in the header: one buffer of header + payload. */
void *cachet__region_encode(cachet_region *r, const cachet_key *k, const void *value, size_t len,
                            int64_t lifetime_ns, size_t *outlen)
{
    return cachet__region_encode_timed(r, k, value, len, lifetime_ns, 0, outlen);
}

void *cachet__region_encode_timed(cachet_region *r, const cachet_key *k, const void *value,
                                  size_t len, int64_t lifetime_ns, int64_t creator_ns,
                                  size_t *outlen)
{
    if (r->foreign)
        return cachet__region_encode_foreign(value, len, outlen);
    cachet_value_meta m = {creation_time(r), 0, CACHET_VALUE_VERSION, 0, lifetime_ns, creator_ns};
    if (r->bind_keys) {
        m.flags |= CACHET_VF_KEY_BOUND;
        m.key_check = cachet_value_key_check(k->key, k->klen);
    }
    uint8_t *buf = malloc(CACHET_VALUE_HDR + len + 1);
    if (!buf)
        return NULL;
    cachet_value_header(buf, &m, len);
    if (len)
        memcpy(buf + CACHET_VALUE_HDR, value, len);
    buf[CACHET_VALUE_HDR + len] = '\0';
    *outlen = CACHET_VALUE_HDR + len;
    return buf;
}

/* ---- single-key operations ---- */

/* get and get_ex share this; inlined into both so that the plain get, the
 * hottest call of all, is one function deep before the backend. */
static inline __attribute__((always_inline)) cachet_status get_common(cachet_region *r, const char *key, const cachet_options *o,
                                       void **value, size_t *len)
{
    freshness f = DEAD;
    cachet_key k;
    void *v = NULL;
    size_t n = 0;
    cachet_status st;

    if (!r || !key || !value)
        return cachet__error(CACHET_EINVAL, "cachet_get: NULL region, key or value");
    *value = NULL;
    if (len)
        *len = 0;
    if (o && cachet__options_check(o, "cachet_get_ex") != CACHET_OK)
        return CACHET_EINVAL;
    if ((st = cachet_key_make(&r->keys, key, &k)) != CACHET_OK)
        return cachet__error(st, "get %s: out of memory", key);
    st = cachet__region_lookup(r, &k, key, o ? cachet__region_rule(r, o) : r->default_rule,
                               &v, &n, &f);
    cachet_key_release(&k);
    if (st == CACHET_OK && f != FRESH) {
        cachet_free(v);
        st = CACHET_MISS;
    }
    if (st == CACHET_MISS) {
        COUNT(r, misses);
        return CACHET_MISS;
    }
    if (st != CACHET_OK)
        return st;
    COUNT(r, hits);
    *value = v;
    if (len)
        *len = n;
    return CACHET_OK;
}

void cachet__value_info(cachet_region *r, const cachet_options *o, const void *payload)
{
    const uint8_t *h = (const uint8_t *)payload - CACHET_VALUE_HDR;
    cachet_value_info *info = o->info;
    cachet_value_meta m = {0, 0, 0, 0, 0, 0};
    int64_t now = cachet__region_now_ns();
    uint64_t v;
    memcpy(&v, h + 8, 8);
    m.created_ns = (int64_t)le64toh(v);
    memcpy(&v, h + 32, 8);
    m.lifetime_ns = (int64_t)le64toh(v);
    info->created = (double)m.created_ns / 1e9;
    info->age = now > m.created_ns ? (double)(now - m.created_ns) / 1e9 : 0;
    info->ttl = m.lifetime_ns < 0 ? -1 : (double)m.lifetime_ns / 1e9;
    info->creator_seconds = (double)cachet_value_creator_ns(h) / 1e9;
    m.creator_ns = 0;
    info->stale = cachet__region_freshness(r, &m, cachet__region_rule(r, o)) != FRESH;
}

CACHET_EXPORT cachet_status cachet_get_ex(cachet_region *r, const char *key, const cachet_options *o,
                                          void **value, size_t *len)
{
    cachet_status st = get_common(r, key, o, value, len);
    if (st == CACHET_OK && o && o->info)
        cachet__value_info(r, o, *value);
    return st;
}

CACHET_EXPORT cachet_status cachet_get(cachet_region *r, const char *key, void **value, size_t *len)
{
    return get_common(r, key, NULL, value, len);
}

cachet_status cachet__region_store(cachet_region *r, const cachet_key *k, const char *key,
                                   const void *buf, size_t blen, double server_ttl)
{
    cachet_status st;

    cachet__error_clear();
    st = cachet__below_set(&r->below, k->key, k->klen, buf, blen, server_ttl);
    if (st != CACHET_OK)
        return cachet__region_failed(r, st, "set", key);
    COUNT(r, sets);
    return CACHET_OK;
}

/* The longest ttl a write takes: 290 years, inside int64 ns (as above). */
#define MAX_TTL_S 9.2e9

/* A write's lifetimes from its options: for readers (the header) and for
 * the server (the backend's set).  CACHET_EINVAL for a ttl that means
 * nothing. */
static cachet_status write_lifetimes(const cachet_region *r, const cachet_set_options *o,
                                     const char *op, int64_t *lifetime_ns, double *server_ttl)
{
    double t = o ? o->ttl : 0;
    *lifetime_ns = 0;
    *server_ttl = 0;           /* the backend's default: backend_expiration_time or none */
    if (t == 0 || t == -1) {
        *lifetime_ns = t == -1 ? -1 : 0;
        return CACHET_OK;
    }
    if (!(t > 0 && t <= MAX_TTL_S))
        return cachet__error(CACHET_EINVAL, "%s: cachet_set_options.ttl %g: it is -1 (never), 0 "
                             "(the region's expiration_time) or seconds > 0", op, t);
    *lifetime_ns = (int64_t)(t * 1e9);
    /* the server keeps it max(ttl, backend_expiration_time) */
    *server_ttl = r->backend_ttl_s > t ? r->backend_ttl_s : t;
    return CACHET_OK;
}

CACHET_EXPORT cachet_status cachet_set_ex(cachet_region *r, const char *key, const void *value,
                                          size_t len, const cachet_set_options *o)
{
    cachet_key k;
    void *buf;
    size_t blen;
    int64_t life;
    double sttl;
    cachet_status st;

    if (!r || !key || (!value && len))
        return cachet__error(CACHET_EINVAL, "cachet_set: NULL region, key or value");
    if ((st = write_lifetimes(r, o, "cachet_set_ex", &life, &sttl)) != CACHET_OK)
        return st;
    if ((st = cachet_key_make(&r->keys, key, &k)) != CACHET_OK)
        return cachet__error(st, "set %s: out of memory", key);
    if (!(buf = cachet__region_encode(r, &k, value, len, life, &blen))) {
        cachet_key_release(&k);
        return cachet__error(CACHET_ENOMEM, "set %s: out of memory", key);
    }
    st = cachet__region_store(r, &k, key, buf, blen, sttl);
    cachet_key_release(&k);
    free(buf);
    return st;
}

CACHET_EXPORT cachet_status cachet_set(cachet_region *r, const char *key, const void *value, size_t len)
{
    return cachet_set_ex(r, key, value, len, NULL);
}

/* add with the key held in this process (so its threads do not race).
 * Live means what cachet_get would return; a value that is there but not
 * live is replaced: deleted, then added again where the backend has add
 * (another process may win that add: EXISTS is then the truth). */
static cachet_status add_held(cachet_region *r, const cachet_key *k, const char *key,
                              const void *buf, size_t blen, double sttl)
{
    void *v = NULL;
    size_t n = 0;
    freshness f = DEAD;
    cachet_status st, look;

    cachet__error_clear();
    st = cachet__below_add(&r->below, k->key, k->klen, buf, blen, sttl);
    if (st == CACHET_OK) {
        COUNT(r, sets);
        return CACHET_OK;
    }
    if (st != CACHET_EXISTS && st != CACHET_ENOTSUP)
        return cachet__region_failed(r, st, "add", key);
    look = cachet__region_lookup(r, k, key, r->default_rule, &v, &n, &f);
    if (look == CACHET_OK) {
        cachet_free(v);
        if (f == FRESH)
            return CACHET_EXISTS;
    } else if (look != CACHET_MISS) {
        return look;                     /* cannot tell: the failure, counted */
    }
    if (st == CACHET_ENOTSUP)            /* no add below: the key is ours in this process */
        return cachet__region_store(r, k, key, buf, blen, sttl);
    if ((st = cachet__below_del(&r->below, k->key, k->klen)) != CACHET_OK && st != CACHET_MISS)
        return cachet__region_failed(r, st, "add (replacing a value that is not live)", key);
    st = cachet__below_add(&r->below, k->key, k->klen, buf, blen, sttl);
    if (st == CACHET_OK)
        COUNT(r, sets);
    else if (st != CACHET_EXISTS)
        return cachet__region_failed(r, st, "add", key);
    return st;
}

CACHET_EXPORT cachet_status cachet_add(cachet_region *r, const char *key, const void *value,
                                       size_t len, const cachet_set_options *o)
{
    cachet_key k;
    void *buf, *res;
    size_t blen, rlen;
    int64_t life;
    double sttl;
    cachet_status st;
    keylock_entry *e;
    uint64_t gen;

    if (!r || !key || (!value && len))
        return cachet__error(CACHET_EINVAL, "cachet_add: NULL region, key or value");
    if ((st = write_lifetimes(r, o, "cachet_add", &life, &sttl)) != CACHET_OK)
        return st;
    if ((st = cachet_key_make(&r->keys, key, &k)) != CACHET_OK)
        return cachet__error(st, "add %s: out of memory", key);
    if (!(buf = cachet__region_encode(r, &k, value, len, life, &blen))) {
        cachet_key_release(&k);
        return cachet__error(CACHET_ENOMEM, "add %s: out of memory", key);
    }
    /* the key's get_or_create lock: one add (or creator) per key at a time */
    for (;;) {
        keylock_outcome lo;
        res = NULL;
        lo = keylock_acquire(&r->locks, k.key, k.klen, KL_WAIT, &e, &gen, &res, &rlen, NULL);
        if (lo == KL_CREATE) {
            st = add_held(r, &k, key, buf, blen, sttl);
            keylock_publish(&r->locks, e, NULL, 0);   /* waiters look again */
            break;
        }
        if (lo != KL_RESULT && lo != KL_RETRY) {
            st = cachet__error(CACHET_EBACKEND, "add %s: lock table error", key);
            break;
        }
        /* A creator ran, but the value it hands its waiters is no proof
         * that one is stored (should_cache said no, or the store failed):
         * take the key and ask the backend. */
        free(res);
    }
    cachet_key_release(&k);
    free(buf);
    return st;
}

CACHET_EXPORT cachet_status cachet_delete(cachet_region *r, const char *key)
{
    cachet_key k;
    cachet_status st;

    if (!r || !key)
        return cachet__error(CACHET_EINVAL, "cachet_delete: NULL region or key");
    if ((st = cachet_key_make(&r->keys, key, &k)) != CACHET_OK)
        return cachet__error(st, "delete %s: out of memory", key);
    cachet__error_clear();
    st = cachet__below_del(&r->below, k.key, k.klen);
    cachet_key_release(&k);
    if (st != CACHET_OK && st != CACHET_MISS)
        return cachet__region_failed(r, st, "delete", key);
    COUNT(r, deletes);
    return CACHET_OK;
}

/* invalidation: region_invalidation.c */

/* ---- stats and reports ---- */

CACHET_EXPORT cachet_status cachet_stats(cachet_region *r, cachet_stat_counters *o)
{
    if (!r || !o)
        return cachet__error(CACHET_EINVAL, "cachet_stats: NULL region or output");
#define LOAD(f) o->f = cachet__stat_sum(&r->stats, CACHET_STAT_##f)
    LOAD(hits); LOAD(misses); LOAD(sets); LOAD(deletes); LOAD(errors);
    LOAD(creator_calls); LOAD(lock_waits); LOAD(stale_served); LOAD(corrupt); LOAD(fallbacks);
    LOAD(early_refreshes); LOAD(background_refreshes);
#undef LOAD
    return CACHET_OK;
}

CACHET_EXPORT cachet_status cachet_backend_report(cachet_region *r, cachet_report_fn fn, void *arg)
{
    if (!r || !fn)
        return cachet__error(CACHET_EINVAL, "cachet_backend_report: NULL region or callback");
    return cachet__below_report(&r->below, fn, arg);
}
