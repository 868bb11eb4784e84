/* The region's read path — classify what a backend returned — as inline
 * functions, because every get, get_multi and get_or_create runs it and a
 * memory-backend hit is only ~60 ns in all: calls between small functions
 * were a fifth of it. */
#ifndef CACHET_REGION_READ_H
#define CACHET_REGION_READ_H

#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"
#include "region.h"

/* The tests' clock (src/testhooks.h), NULL for the real one.  Reading it
 * is one relaxed load and a branch that is never taken outside the tests. */
typedef int64_t (*cachet__clock_fn)(void);
extern _Atomic(cachet__clock_fn) cachet__clock_hook;

/* For expiration checks a few milliseconds of lag do not matter, and the
 * coarse clock costs a fraction of the precise one. */
static inline int64_t cachet__coarse_now_ns(void)
{
    struct timespec ts;
    cachet__clock_fn fake = atomic_load_explicit(&cachet__clock_hook, memory_order_relaxed);
    if (__builtin_expect(fake != NULL, 0))
        return fake();
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether a value created at created_ns is more than exp ns old (exp > 0)
 * on the coarse clock.  time() -- the vDSO's whole
 * seconds of that same clock, with no seqlock to read -- decides unless
 * the value comes of age within the current second; only then is the
 * coarse clock read.  clock_gettime was ~4 ns of a 43 ns memory-backend
 * get hit, time() is ~1 (bench/region_gets, docs/benchmarks.md).  An age
 * past int64 (a creation time from a damaged header) is old. */
static inline __attribute__((always_inline)) int cachet__region_older_than(int64_t created_ns,
                                                                          int64_t exp)
{
    int64_t lo, age;
    if (__builtin_expect(atomic_load_explicit(&cachet__clock_hook, memory_order_relaxed) == NULL, 1)) {
        lo = (int64_t)time(NULL) * 1000000000;      /* the coarse clock is in [lo, lo + 1 s) */
        if (__builtin_sub_overflow(lo, created_ns, &age) || age > exp)
            return 1;
        if (age < exp - 1000000000)
            return 0;
    }
    return __builtin_sub_overflow(cachet__coarse_now_ns(), created_ns, &age) || age > exp;
}

/* Shared invalidation: re-reads the region's invalidation times from the
 * backend when cachet_invalidation_interval is up (one coarse clock read
 * and a compare otherwise).  Before every read that judges freshness. */
static inline __attribute__((always_inline)) cachet_status cachet__region_poll_invalidation(cachet_region *r)
{
    if (__builtin_expect(r->inval.shared, 0)) {
        int64_t now = cachet__inval_clock();
        if (now >= atomic_load_explicit(&r->inval.due_ns, memory_order_relaxed))
            return cachet__inval_refresh(r, now);
    }
    return CACHET_OK;
}

/* How a decoded value stands against expiration and invalidation.  A
 * value written with a lifetime of its own (cachet_set_ex) lives that long
 * unless the call's options say otherwise. */
static inline __attribute__((always_inline)) freshness cachet__region_freshness(cachet_region *r, const cachet_value_meta *m,
                                                 cachet_rule rule)
{
    int64_t exp = rule.expiration_ns;
    if (m->created_ns <= atomic_load_explicit(&r->hard_invalidated_ns, memory_order_acquire))
        return DEAD;
    if (!rule.ignore_soft &&
        m->created_ns <= atomic_load_explicit(&r->soft_invalidated_ns, memory_order_acquire))
        return STALE;
    if (m->lifetime_ns && !rule.from_call)
        exp = m->lifetime_ns;         /* -1: never; > 0: its own */
    if (exp == 0)
        return STALE;                 /* dogpile: expiration_time 0 expires at once */
    if (exp > 0 && cachet__region_older_than(m->created_ns, exp))
        return STALE;
    return FRESH;
}

/* Takes bytes from the backend: a valid value (bound to this key, where
 * the region binds values) stays in *buf, in the version-2 layout that
 * cachet_free() expects (a version-1 value's payload is moved up to the
 * version-2 offset); m is filled.  Anything else -- foreign, truncated, or
 * another key's value -- is freed and is a miss (counted as corrupt when
 * count_corrupt: region.c's cachet__region_corrupt), never a failure of
 * the caller's request and never returned. */
static inline __attribute__((always_inline)) cachet_status
cachet__region_accept(cachet_region *r, const cachet_key *k, const char *key, void **buf,
                      size_t *blen, cachet_value_meta *m, int count_corrupt)
{
    uint64_t want = r->bind_keys ? cachet_value_key_check(k->key, k->klen) : 0;
    size_t hdr;

    if (__builtin_expect(r->foreign, 0))
        return cachet__region_accept_foreign(r, buf, blen, m);
    hdr = cachet_value_valid(*buf, *blen, want, m);

    if (__builtin_expect(hdr == CACHET_VALUE_HDR, 1))
        return CACHET_OK;
    /* rare: a version-1 value to move up, or bytes to refuse (out of line) */
    return cachet__region_accept_slow(r, key, buf, blen, hdr, want, count_corrupt);
}

/* Gets and classifies: CACHET_OK with *fresh set, CACHET_MISS, or an error.
 * count_corrupt: 0 for get_or_create's second and later looks at the same
 * key within one call, so that one foreign value is one `corrupt`. */
static inline __attribute__((always_inline)) cachet_status cachet__region_lookup_ex(cachet_region *r, const cachet_key *k,
                                                     const char *key, cachet_rule rule,
                                                     void **value, size_t *len, freshness *fresh,
                                                     int count_corrupt)
{
    void *buf;
    size_t blen;
    cachet_value_meta m;        /* filled by cachet__region_accept when it is CACHET_OK */
    cachet_status st;

    cachet__error_clear();
    if (__builtin_expect((st = cachet__region_poll_invalidation(r)) != CACHET_OK, 0))
        st = cachet__inval_get_after_failure(r, st, k->key, k->klen, &buf, &blen);
    else
        st = cachet__below_get(&r->below, k->key, k->klen, &buf, &blen);
    if (st == CACHET_MISS)
        return CACHET_MISS;
    if (st != CACHET_OK) {
        /* a foreign region's layer (the keystone proxy) refused the value
         * (a bad MAC); elsewhere ECORRUPT is the backend's failure (a
         * damaged dbm file) and stays one */
        if (st == CACHET_ECORRUPT && r->foreign) {
            CACHET_COUNT(r, corrupt);
            return CACHET_MISS;
        }
        return cachet__region_failed(r, st, "get", key);
    }
    if (cachet__region_accept(r, k, key, &buf, &blen, &m, count_corrupt) != CACHET_OK)
        return CACHET_MISS;
    *fresh = cachet__region_freshness(r, &m, rule);
    *value = cachet_value_payload(buf);
    *len = blen - CACHET_VALUE_HDR;
    return CACHET_OK;
}

static inline __attribute__((always_inline)) cachet_status cachet__region_lookup(cachet_region *r, const cachet_key *k,
                                                  const char *key, cachet_rule rule,
                                                  void **value, size_t *len, freshness *fresh)
{
    return cachet__region_lookup_ex(r, k, key, rule, value, len, fresh, 1);
}

#endif
