/* Invalidation that reaches every process (region_invalidation.h).
 *
 * Why two keys and not one record of both times: each key holds one time
 * that only ever moves forward, so two processes invalidating at once
 * cannot lose each other's update of the other kind; two writing the same
 * kind both write "now", and whichever lands last is at most a moment
 * younger than the other.
 *
 * The records go straight to the backend, past the proxy chain: an
 * in-process L1 (the near proxy) must not hold an old record back. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "config_priv.h"
#include "region.h"
#include "region_read.h"
#include "metrics.h"

#define COUNT CACHET_COUNT

/* Ten years: "for ever" where backend_expiration_time would otherwise
 * give the records the backend's default lifetime (a record that went
 * away would bring back every value it hid). */
#define RECORD_SERVER_TTL (10.0 * 365 * 86400)

static cachet_below bottom_of(cachet_region *r)
{
    cachet_below b = r->below;
    b.top = r->below.top->bottom;
    return b;
}

/* Raises *t to v (times only move forward). */
/* Raises *t to v; 1 when it did and *t held a time before (0: none). */
static int raise_to(_Atomic int64_t *t, int64_t v)
{
    int64_t cur = atomic_load_explicit(t, memory_order_acquire);
    while (cur < v) {
        int64_t was = cur;
        if (atomic_compare_exchange_weak_explicit(t, &cur, v, memory_order_acq_rel,
                                                  memory_order_acquire))
            return was != 0;
    }
    return 0;
}

cachet_status cachet__inval_open(cachet_region *r, const cachet_config *c)
{
    const char *mode = cachet__cfg_str(c, OPT_CACHET_INVALIDATION);
    unsigned caps = cachet__below_caps(&r->below);
    /* memory (and null) keep values in this process, or nowhere */
    int in_process = (caps & CACHET_CAP_LOCAL) && !(caps & CACHET_CAP_PERSISTENT);
    char where[512];
    cachet_key_policy pol = r->keys;

    r->inval.shared = mode ? strcmp(mode, "shared") == 0 : !in_process;
    if (r->inval.shared && in_process) {
        if (strcmp(r->backend, "null") == 0) {
            r->inval.shared = 0;      /* nothing is stored: nothing to share */
        } else {
            cachet__cfg_where(c, OPT_CACHET_INVALIDATION, where, sizeof where);
            return cachet__error(CACHET_EINVAL, "%soption cachet_invalidation = shared: backend "
                                 "%s keeps its values in this process, so no other process "
                                 "has them to invalidate (use local)", where, r->backend);
        }
    }
    r->inval.interval_ns = (int64_t)(cachet__cfg_double(c, OPT_CACHET_INVALIDATION_INTERVAL) * 1e9);
    atomic_store(&r->inval.due_ns, 0);
    if (!r->inval.shared)
        return CACHET_OK;
    pol.prefix = "";
    pol.prefix_len = 0;
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(CACHET_INVAL_KEY_BASE) + 5 + r->keys.prefix_len + 1;
        char *name = malloc(n);
        cachet_key k;
        if (!name)
            return cachet__error(CACHET_ENOMEM, "cachet_region_open: out of memory");
        snprintf(name, n, "%s%s:%s", CACHET_INVAL_KEY_BASE, i ? "soft" : "hard", r->keys.prefix);
        if (cachet_key_make(&pol, name, &k) != CACHET_OK ||
            !(r->inval.key[i] = cachet__strndup(k.key, k.klen))) {
            cachet_key_release(&k);
            free(name);
            return cachet__error(CACHET_ENOMEM, "cachet_region_open: out of memory");
        }
        r->inval.klen[i] = k.klen;
        cachet_key_release(&k);
        free(name);
    }
    /* not read at open: the first read does it (an open that talked to
     * the servers would mark one down before the service's first call
     * could say why, e.g. a refused login) */
    return CACHET_OK;
}

void cachet__inval_close(cachet_region *r)
{
    for (int i = 0; i < 2; i++) {
        free(r->inval.key[i]);
        r->inval.key[i] = NULL;
    }
}

cachet_status cachet__inval_refresh(cachet_region *r, int64_t now)
{
    int64_t due = atomic_load_explicit(&r->inval.due_ns, memory_order_relaxed);
    cachet_backend_item it[2];
    cachet_below b;
    _Atomic int64_t *dst[2] = {&r->hard_invalidated_ns, &r->soft_invalidated_ns};
    cachet_status failed = CACHET_OK;

    if (now < due || !atomic_compare_exchange_strong(&r->inval.due_ns, &due,
                                                     now + r->inval.interval_ns))
        return CACHET_OK;             /* another thread reads them */
    memset(it, 0, sizeof it);
    for (int i = 0; i < 2; i++) {
        it[i].key = r->inval.key[i];
        it[i].klen = r->inval.klen[i];
        it[i].status = CACHET_MISS;
    }
    b = bottom_of(r);
    cachet__error_clear();
    cachet__below_get_multi(&b, it, 2);
    for (int i = 0; i < 2; i++) {
        cachet_value_meta m;
        uint64_t want = r->bind_keys ? cachet_value_key_check(it[i].key, it[i].klen) : 0;
        uint64_t t;
        if (it[i].status == CACHET_OK) {
            if (cachet_value_decode(it[i].value, it[i].len, want, &m) == CACHET_OK &&
                it[i].len == CACHET_VALUE_HDR + 8 && m.version == CACHET_VALUE_VERSION) {
                memcpy(&t, (uint8_t *)it[i].value + CACHET_VALUE_HDR, 8);
                /* an invalidation new to this process empties the proxies'
                 * copies (a near L1): a saving, not what keeps reads right
                 * (the region refuses values created before the times);
                 * the first reading since open empties nothing */
                if (raise_to(dst[i], (int64_t)le64toh(t)))
                    cachet__proxies_invalidated(r);
            } else {
                /* not counted as corrupt (that counter is the callers'
                 * values); the times we have stay */
                if (r->debug)
                    cachet__log(CACHET_LOG_DEBUG, "invalidation record %s: %s", it[i].key,
                                cachet_errmsg());
            }
        } else if (it[i].status != CACHET_MISS && failed == CACHET_OK) {
            /* the times we have stay; the next interval tries again */
            failed = it[i].status;
        }
        free(it[i].value);
    }
    return failed;
}

cachet_status cachet__inval_get_after_failure(cachet_region *r, cachet_status st, const char *key,
                                              size_t klen, void **buf, size_t *blen)
{
    char why[512];
    cachet_status got;
    if (st == CACHET_ETIMEDOUT)
        return st;
    snprintf(why, sizeof why, "%s", cachet_errmsg());
    cachet__error_clear();
    got = cachet__below_get(&r->below, key, klen, buf, blen);
    if (got != CACHET_OK && got != CACHET_MISS)
        cachet__error(got, "%s", why);
    return got;
}

/* Writes one record; CACHET_OK or the backend's error. */
static cachet_status write_record(cachet_region *r, int i, int64_t t)
{
    cachet_key k = {.key = r->inval.key[i], .klen = r->inval.klen[i]};
    uint64_t le = htole64((uint64_t)t);
    cachet_below b = bottom_of(r);
    size_t blen;
    void *buf = cachet__region_encode(r, &k, &le, 8, -1, &blen);
    cachet_status st;
    if (!buf)
        return cachet__error(CACHET_ENOMEM, "invalidate: out of memory");
    cachet__error_clear();
    st = cachet__below_set(&b, k.key, k.klen, buf, blen,
                           r->backend_ttl_s > 0 ? RECORD_SERVER_TTL : 0);
    free(buf);
    if (st != CACHET_OK) {
        COUNT(r, errors);
        if (!cachet__error_isset())
            cachet__error(st, "backend %s: %s", r->backend, cachet_strerror(st));
        cachet__error_prefix("invalidate: writing the region's %s invalidation time (%s)",
                             i ? "soft" : "hard", k.key);
    }
    return st;
}

CACHET_EXPORT cachet_status cachet_invalidate_ex(cachet_region *r, int hard)
{
    _Atomic int64_t *dst;
    int64_t t;

    if (!r)
        return cachet__error(CACHET_EINVAL, "cachet_invalidate: NULL region");
    dst = hard ? &r->hard_invalidated_ns : &r->soft_invalidated_ns;
    t = cachet__region_now_ns();
    raise_to(dst, t);                 /* this process at once, whatever the backend says */
    cachet__proxies_invalidated(r);   /* and its near L1 */
    if (!r->inval.shared)
        return CACHET_OK;
    return write_record(r, hard ? 0 : 1, atomic_load_explicit(dst, memory_order_acquire));
}

CACHET_EXPORT void cachet_invalidate(cachet_region *r, int hard)
{
    (void)cachet_invalidate_ex(r, hard);
}
