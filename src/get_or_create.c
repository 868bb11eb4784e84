/* get_or_create: dogpile.cache's CacheRegion.get_or_create, for threads.
 *
 * - A fresh value is returned at once (the hot path takes no lock).
 * - No value (absent, hard-invalidated, foreign bytes): one thread per key
 *   runs the creator; the others wait and get the value it made.
 * - A stale value (expired, soft-invalidated): one thread regenerates; the
 *   others get the stale value at once, without waiting.
 * - The creator's error goes to its caller and to the threads that waited
 *   on it, at once (they do not each run a failing creator in turn); a
 *   caller that comes after retries.  With cachet_failure_cache_time the
 *   failure is remembered per key for that long (region_failures.c).
 * - cachet_serve_stale = false: an expired or soft-invalidated value is
 *   treated as no value, so callers wait for its regeneration.
 * - A failing backend never fails the call: the creator answers, and the
 *   fallback is counted.
 * - cachet_early_refresh (XFetch, Vattani et al., VLDB 2015): a fresh value
 *   is regenerated before it expires when
 *       now - delta * beta * ln(rand()) >= expiry
 *   delta being its creator's measured time (stored in the value header),
 *   so the likelier the nearer expiry and the slower the creator; one
 *   thread regenerates while the others keep getting the value.
 * - With a backend that offers a cross-process lock (distributed_lock), the
 *   thread that holds the in-process lock also takes the backend's, so one
 *   process in the fleet regenerates. */
#include "config.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"
#include "region.h"
#include "region_read.h"
#include "metrics.h"

#define COUNT CACHET_COUNT

/* Hands the caller the payload of an encoded buffer. */
static void give(void *buf, size_t blen, void **value, size_t *len)
{
    *value = cachet_value_payload(buf);
    if (len)
        *len = blen - CACHET_VALUE_HDR;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The header in front of a payload handed out (always version 2). */
static int64_t payload_created(const void *payload)
{
    uint64_t c;
    memcpy(&c, (const uint8_t *)payload - CACHET_VALUE_HDR + 8, 8);
    return (int64_t)le64toh(c);
}

/* Uniform in (0, 1], per thread (xorshift64*: no lock, no shared state). */
static double rand01(void)
{
    static _Thread_local uint64_t s;
    if (!s)
        s = (uint64_t)cachet__mono_ns() ^ ((uint64_t)(uintptr_t)&s << 17) ^ 0x9e3779b97f4a7c15ULL;
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return ((double)((s * 0x2545F4914F6CDD1DULL) >> 11) + 1.0) / 9007199254740992.0;
}

/* XFetch: whether a fresh value is due for its early refresh. */
static int early_due(const cachet_region *r, const void *payload, cachet_rule rule)
{
    const uint8_t *h = (const uint8_t *)payload - CACHET_VALUE_HDR;
    int64_t delta = cachet_value_creator_ns(h), life, exp;
    uint64_t l;
    if (delta <= 0)
        return 0;                 /* not measured: written by set, or before */
    memcpy(&l, h + 32, 8);
    life = (int64_t)le64toh(l);
    exp = life && !rule.from_call ? life : rule.expiration_ns;
    if (exp <= 0)
        return 0;                 /* never expires (or at once: not fresh) */
    return -(double)delta * r->early_beta * log(rand01()) >=
           (double)payload_created(payload) + (double)exp - (double)cachet__coarse_now_ns();
}

/* Takes the backend's cross-process lock, if it has one that is turned on.
 * Returns 1 when taken (unlock after), 0 when there is none or it failed
 * (go on without it: the cache must not block the service), and -1 when
 * another process holds it and a stale value can be served instead. */
static int take_backend_lock(cachet_region *r, const cachet_key *k, int have_stale,
                             const char *key, cachet_rule rule, void **fresh_buf,
                             size_t *fresh_len, void **token)
{
    cachet_status st;
    int64_t give_up = 0;
    for (;;) {
        st = cachet__below_lock(&r->below, k->key, k->klen, token);
        if (st == CACHET_OK)
            return 1;
        if (st != CACHET_MISS)
            return 0;                 /* ENOTSUP (turned off) or a failure */
        if (have_stale)
            return -1;
        /* another process creates: poll the cache until its value lands or
         * its lock expires (lock_timeout in the backend).  A lock that stays
         * taken past its own lifetime is a server that lies or a clock that
         * jumped: the cache must not hold the caller for ever, so after
         * lock_timeout and a second more, create without the lock. */
        if (!give_up) {
            give_up = cachet__mono_ns() + r->lock_wait_ns;
        } else if (cachet__mono_ns() >= give_up) {
            COUNT(r, fallbacks);
            cachet__log(CACHET_LOG_WARNING, "get_or_create %s: backend %s refused its lock for "
                        "%.1f s, longer than its lock_timeout: creating without it", key,
                        r->backend, (double)r->lock_wait_ns / 1e9);
            return 0;
        }
        COUNT(r, lock_waits);
        sleep_ms(10);
        void *v = NULL;
        size_t n = 0;
        freshness f = DEAD;
        if (cachet__region_lookup_ex(r, k, key, rule, &v, &n, &f, 0) == CACHET_OK) {
            if (f == FRESH) {
                *fresh_buf = (uint8_t *)v - CACHET_VALUE_HDR;
                *fresh_len = n + CACHET_VALUE_HDR;
                return 2;
            }
            cachet_free(v);
        }
    }
}

/* A fresh value found while taking the lock (one that landed meanwhile,
 * or another process's): handed to the waiters and to the caller, a hit. */
static cachet_status serve_found(cachet_region *r, keylock_entry *e, void *buf, size_t blen,
                                 void *stale, void **value, size_t *len)
{
    keylock_publish(&r->locks, e, buf, blen);
    cachet_free(stale);
    COUNT(r, hits);
    give(buf, blen, value, len);
    return CACHET_OK;
}

static void release_backend_lock(cachet_region *r, const cachet_key *k, void *token)
{
    (void)cachet__below_unlock(&r->below, k->key, k->klen, token);   /* it expires anyway */
}

/* The creator's part, with the key's in-process lock held (e may be NULL
 * when there was no memory for a lock entry).  Publishes to waiters. */
static cachet_status create_locked(cachet_region *r, const cachet_key *k, const char *key,
                                   cachet_creator create, void *arg, const cachet_options *o,
                                   cachet_rule rule, keylock_entry *e, void *stale, size_t stale_len,
                                   int cache_failed, int64_t newer_than, int background,
                                   void **value, size_t *len)
{
    void *v = NULL, *buf, *token = NULL;
    size_t n = 0, blen;
    freshness f = DEAD;
    cachet_status st;
    int locked = 0;
    int64_t t0;

    /* Look again: the value may have landed while we took the lock (for an
     * early refresh: a value newer than the one that was due). */
    if (!cache_failed &&
        cachet__region_lookup_ex(r, k, key, rule, &v, &n, &f, 0) == CACHET_OK) {
        if (f == FRESH && payload_created(v) > newer_than)
            return serve_found(r, e, (uint8_t *)v - CACHET_VALUE_HDR, n + CACHET_VALUE_HDR,
                               stale, value, len);
        cachet_free(v);
    }
    if (!cache_failed) {
        /* (a refresh thread never waits on another process: the callers
         * have a value meanwhile) */
        locked = take_backend_lock(r, k, stale != NULL || background, key, rule, &buf, &blen,
                                   &token);
        if (locked == 2)              /* another process's value arrived */
            return serve_found(r, e, buf, blen, stale, value, len);
        /* Taken: look once more, as dogpile does after acquiring its
         * mutex.  Another process may have stored its value and released
         * the lock between our last look and our taking it. */
        if (locked == 1 && cachet__region_lookup_ex(r, k, key, rule, &v, &n, &f, 0) == CACHET_OK) {
            if (f == FRESH && payload_created(v) > newer_than) {
                release_backend_lock(r, k, token);
                return serve_found(r, e, (uint8_t *)v - CACHET_VALUE_HDR, n + CACHET_VALUE_HDR,
                                   stale, value, len);
            }
            cachet_free(v);
        }
        if (locked < 0) {             /* another process regenerates: serve stale */
            keylock_publish(&r->locks, e, NULL, 0);
            if (background)
                ;                     /* the caller was counted when it got the value */
            else if (newer_than == INT64_MIN)
                COUNT(r, stale_served);
            else
                COUNT(r, hits);       /* an early refresh's value is still fresh */
            *value = stale;
            if (len)
                *len = stale_len;
            return CACHET_OK;
        }
    }
    COUNT(r, misses);
    COUNT(r, creator_calls);
    v = NULL;
    n = 0;
    cachet__error_clear();
    t0 = cachet__mono_ns();
    st = create(arg, key, &v, &n);
    int64_t took = cachet__mono_ns() - t0;    /* stored with the value: XFetch's delta */
    cachet__metrics_creator_time(r, took);    /* the metrics proxy's "create" */
    if (st != CACHET_OK || (!v && n)) {
        free(v);
        if (st == CACHET_OK)
            st = cachet__error(CACHET_EINVAL, "get_or_create %s: the creator returned NULL", key);
        else if (!cachet__error_isset())
            cachet__error(st, "get_or_create %s: the creator failed: %s", key, cachet_strerror(st));
        if (locked > 0)
            release_backend_lock(r, k, token);
        region_failures_note(&r->failures, k->key, k->klen, st, cachet_errmsg());
        keylock_publish_failure(&r->locks, e, st, cachet_errmsg());
        if (newer_than != INT64_MIN && stale) {
            /* an early refresh that failed: the value is still fresh */
            *value = stale;
            if (len)
                *len = stale_len;
            return CACHET_OK;
        }
        cachet_free(stale);
        return st;
    }
    region_failures_clear(&r->failures, k->key, k->klen);
    buf = cachet__region_encode_timed(r, k, v, n, 0, took, &blen);
    if (!buf) {
        free(v);
        if (locked > 0)
            release_backend_lock(r, k, token);
        keylock_publish(&r->locks, e, NULL, 0);
        cachet_free(stale);
        return cachet__error(CACHET_ENOMEM, "get_or_create %s: out of memory", key);
    }
    if (!o || !o->should_cache || o->should_cache(o->should_cache_arg, key, v, n)) {
        if (cachet__region_store(r, k, key, buf, blen, 0) != CACHET_OK)
            COUNT(r, fallbacks);      /* the value still goes back to the callers */
    }
    free(v);
    if (locked > 0)
        release_backend_lock(r, k, token);
    keylock_publish(&r->locks, e, buf, blen);
    cachet_free(stale);
    give(buf, blen, value, len);
    return CACHET_OK;
}

cachet_status cachet__get_or_create_key(cachet_region *r, const cachet_key *k, const char *key,
                                       cachet_creator create, void *arg, const cachet_options *o,
                                       void **value, size_t *len)
{
    cachet_rule rule = cachet__region_rule(r, o);

    for (;;) {
        void *v = NULL, *buf;
        size_t n = 0, blen;
        freshness f = DEAD;
        keylock_entry *e;
        uint64_t gen;
        int cache_failed;
        cachet_status failed = CACHET_OK, remembered;
        cachet_status st = cachet__region_lookup(r, k, key, rule, &v, &n, &f);

        if (st == CACHET_OK && f == FRESH) {
            if (__builtin_expect(r->early_beta > 0, 0) && early_due(r, v, rule) &&
                keylock_acquire(&r->locks, k->key, k->klen, KL_TRY, &e, &gen, &buf, &blen,
                                NULL) == KL_CREATE) {
                COUNT(r, early_refreshes);
                if (!region_refresh_submit(r, k, key, create, arg, o, e, payload_created(v)))
                    return create_locked(r, k, key, create, arg, o, rule, e, v, n, 0,
                                         payload_created(v), 0, value, len);
                COUNT(r, background_refreshes);
            }
            COUNT(r, hits);           /* (a refresh due that another thread runs: this one) */
            *value = v;
            if (len)
                *len = n;
            return CACHET_OK;
        }
        cache_failed = st != CACHET_OK && st != CACHET_MISS;
        if (cache_failed)
            COUNT(r, fallbacks);
        if (st == CACHET_OK && (f == DEAD || !r->serve_stale)) {
            cachet_free(v);           /* (not served stale: wait for the new one) */
            v = NULL;
        }
        if ((remembered = region_failures_check(&r->failures, k->key, k->klen)) != CACHET_OK) {
            if (!v)
                return remembered;    /* the creator failed a moment ago: its failure */
            COUNT(r, stale_served);   /* the old value beats an error */
            *value = v;
            if (len)
                *len = n;
            return CACHET_OK;
        }
        switch (keylock_acquire(&r->locks, k->key, k->klen, v ? KL_TRY : KL_WAIT, &e, &gen,
                                &buf, &blen, &failed)) {
        case KL_BUSY:                 /* someone regenerates: the stale value now */
            COUNT(r, stale_served);
            *value = v;
            if (len)
                *len = n;
            return CACHET_OK;
        case KL_RESULT:               /* waited, and got the creator's value */
            COUNT(r, lock_waits);
            give(buf, blen, value, len);
            return CACHET_OK;
        case KL_RETRY:                /* the holder stored nothing (cachet_add): look again */
            COUNT(r, lock_waits);
            cachet_free(v);
            continue;
        case KL_FAILED:               /* waited, and the creator failed: its failure */
            COUNT(r, lock_waits);
            cachet_free(v);
            return failed;
        case KL_CREATE:
            if (v && region_refresh_submit(r, k, key, create, arg, o, e, INT64_MIN)) {
                /* a refresh thread regenerates: the stale value now */
                COUNT(r, background_refreshes);
                COUNT(r, stale_served);
                *value = v;
                if (len)
                    *len = n;
                return CACHET_OK;
            }
            return create_locked(r, k, key, create, arg, o, rule, e, v, n, cache_failed,
                                 INT64_MIN, 0, value, len);
        default:                      /* KL_SUBSCRIBED: not asked for */
            cachet_free(v);
            return cachet__error(CACHET_EBACKEND, "get_or_create %s: lock table error", key);
        }
    }
}

cachet_status cachet__refresh_run(cachet_region *r, const cachet_key *k, const char *key,
                                 cachet_creator create, void *arg, const cachet_options *o,
                                 keylock_entry *e, int64_t newer_than, void **value, size_t *len)
{
    return create_locked(r, k, key, create, arg, o, cachet__region_rule(r, o), e, NULL, 0, 0,
                         newer_than, 1, value, len);
}

CACHET_EXPORT cachet_status cachet_get_or_create_ex(cachet_region *r, const char *key,
                                                    cachet_creator create, void *arg,
                                                    const cachet_options *o, void **value,
                                                    size_t *len)
{
    cachet_key k;
    cachet_status st;

    if (!r || !key || !create || !value)
        return cachet__error(CACHET_EINVAL, "cachet_get_or_create: NULL region, key, creator or value");
    *value = NULL;
    if (len)
        *len = 0;
    if (cachet__options_check(o, "cachet_get_or_create_ex") != CACHET_OK)
        return CACHET_EINVAL;
    if ((st = cachet_key_make(&r->keys, key, &k)) != CACHET_OK)
        return cachet__error(st, "get_or_create %s: out of memory", key);
    st = cachet__get_or_create_key(r, &k, key, create, arg, o, value, len);
    cachet_key_release(&k);
    if (st == CACHET_OK && o && o->info)
        cachet__value_info(r, o, *value);
    return st;
}

CACHET_EXPORT cachet_status cachet_get_or_create(cachet_region *r, const char *key,
                                                 cachet_creator create, void *arg,
                                                 void **value, size_t *len)
{
    return cachet_get_or_create_ex(r, key, create, arg, NULL, value, len);
}
