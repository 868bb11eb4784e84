/* The region: what a service holds.  Internal layout. */
#ifndef CACHET_REGION_INTERNAL_H
#define CACHET_REGION_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <cachet/backend.h>
#include "key.h"
#include "keylock.h"
#include "dispatch.h"
#include "region_failures.h"
#include "region_invalidation.h"
#include "region_refresh.h"

/* How a value is judged fresh: from the region and a call's options. */
typedef struct {
    int64_t expiration_ns;    /* < 0 never, 0 at once */
    int     ignore_soft;
    int     from_call;        /* the call's options set it: it wins over a value's lifetime */
} cachet_rule;

/* The region's counters.  Every thread counts in a stripe of its own
 * (src/region_stats.c hands them out, round robin): a get that counted in
 * one shared word would write that word's cache line from every thread on
 * every hit, and the line would move between cores on each get.  A stripe
 * is 16 words, 128 bytes, starting on a 128-byte boundary found at run
 * time (the region is calloc'd, so no alignment attribute can be trusted):
 * two stripes never share a line, nor an adjacent-line prefetch pair.
 * cachet_stats and the metrics sum the stripes. */
#define CACHET_STAT_FIELDS(X) X(hits) X(misses) X(sets) X(deletes) X(errors) \
    X(creator_calls) X(lock_waits) X(stale_served) X(corrupt) X(fallbacks) \
    X(early_refreshes) X(background_refreshes)
enum {
#define CACHET_STAT_ENUM(f) CACHET_STAT_##f,
    CACHET_STAT_FIELDS(CACHET_STAT_ENUM)
#undef CACHET_STAT_ENUM
    CACHET_STAT_N
};
#define CACHET_STAT_STRIPES 16
#define CACHET_STAT_WORDS   16          /* a stripe's words: 128 bytes */
_Static_assert(CACHET_STAT_N <= CACHET_STAT_WORDS, "a stripe holds every counter");

typedef struct {
    /* + 16 words of slack for the alignment found at run time */
    _Atomic uint64_t w[(CACHET_STAT_STRIPES + 1) * CACHET_STAT_WORDS];
} cachet_region_stats;

/* This thread's stripe number + 1 (0: none yet).  initial-exec: libcachet
 * is linked, not dlopen'd, and a 4-byte variable fits the static TLS
 * surplus even where it is. */
extern _Thread_local unsigned cachet__stat_stripe1 __attribute__((tls_model("initial-exec")));
unsigned cachet__stat_stripe_assign(void) __attribute__((cold, noinline));

static inline _Atomic uint64_t *cachet__stat_base(const cachet_region_stats *s)
{
    uintptr_t a = (uintptr_t)s->w;
    return (_Atomic uint64_t *)s->w + ((-a) & 127) / sizeof(uint64_t);
}

static inline void cachet__stat_count(cachet_region_stats *s, unsigned field)
{
    unsigned i = cachet__stat_stripe1;
    if (__builtin_expect(i == 0, 0))
        i = cachet__stat_stripe_assign();
    /* relaxed and uncontended: the line stays in this core's cache */
    atomic_fetch_add_explicit(&cachet__stat_base(s)[(i - 1) * CACHET_STAT_WORDS + field], 1,
                              memory_order_relaxed);
}

/* One counter, summed over the stripes (a reader sees each stripe's count
 * at some moment of the sum: exact once the counting threads are quiet). */
uint64_t cachet__stat_sum(const cachet_region_stats *s, unsigned field);

struct cachet_region {
    cachet_below             below;           /* every call down goes through dispatch.h */
    char                    *backend;         /* canonical name */
    cachet_key_policy        keys;
    char                    *prefix_owned;    /* cachet_key_prefix ("" unset): keys.prefix */
    int64_t                  expiration_ns;   /* < 0: never expires */
    cachet_rule              default_rule;    /* for calls without options */
    int                      debug;
    int                      bind_keys;       /* values carry their key's check (not CACHET_CAP_LOCAL) */
    int                      foreign;         /* another program's values: no header, keys as given
                                                 (cachet_config.foreign_values; see region_foreign.c) */
    int64_t                  lock_wait_ns;    /* longest get_or_create waits on another's lock */
    double                   backend_ttl_s;   /* backend_expiration_time, 0 = unset */
    _Atomic int64_t          hard_invalidated_ns;   /* values created at or before: gone */
    _Atomic int64_t          soft_invalidated_ns;   /* values created at or before: stale */
    region_invalidation      inval;           /* local, or shared through the backend */
    cachet_region_stats      stats;
    keylock_table            locks;           /* get_or_create's per-key locks */
    int                      serve_stale;     /* cachet_serve_stale */
    double                   early_beta;      /* cachet_early_refresh (XFetch's beta), 0 off */
    region_refresh           refresh;         /* cachet_refresh_threads */
    region_failures          failures;        /* cachet_failure_cache_time */
    struct cachet_region    *next_open;       /* the list fork handlers walk */
};

/* Shared by region.c and region_multi.c. */
typedef enum { FRESH, STALE, DEAD } freshness;
#include "value.h"
cachet_status cachet__region_failed(cachet_region *r, cachet_status st, const char *op, const char *key);
/* region_fork.c: the open regions fork() handlers look after. */
void cachet__region_track(cachet_region *r);
void cachet__region_untrack(cachet_region *r);

cachet_status cachet__get_or_create_key(cachet_region *r, const cachet_key *k, const char *key,
                                       cachet_creator create, void *arg,
                                       const cachet_options *o, void **value, size_t *len);

/* A refresh thread's get_or_create: the creator part with the key's lock
 * e held, as if a caller had found the value stale (or due early). */
cachet_status cachet__refresh_run(cachet_region *r, const cachet_key *k, const char *key,
                                  cachet_creator create, void *arg, const cachet_options *o,
                                  keylock_entry *e, int64_t newer_than, void **value, size_t *len);

cachet_rule   cachet__region_rule(const cachet_region *r, const cachet_options *o);
/* CACHET_EINVAL (with a message naming op) for options no rule can come from. */
cachet_status cachet__options_check(const cachet_options *o, const char *op);
/* The region's clock (CLOCK_REALTIME, or the tests' fake), nanoseconds. */
int64_t       cachet__region_now_ns(void);
/* CLOCK_MONOTONIC in nanoseconds, for waits. */
int64_t       cachet__mono_ns(void);
/* region_read.h's accept, its rare part: moves a version-1 value's payload
 * up to the version-2 offset (hdr 24), or refuses the bytes (hdr 0). */
cachet_status cachet__region_accept_slow(cachet_region *r, const char *key, void **buf,
                                         size_t *blen, size_t hdr, uint64_t want,
                                         int count_corrupt) __attribute__((cold, noinline));
/* region_foreign.c: a foreign value (r->foreign) as the region hands it
 * on -- moved up to the payload offset, fresh for as long as the backend
 * keeps it -- and the bytes to store for a payload (a copy). */
cachet_status cachet__region_accept_foreign(cachet_region *r, void **buf, size_t *blen,
                                            cachet_value_meta *m) __attribute__((cold, noinline));
void         *cachet__region_encode_foreign(const void *value, size_t len, size_t *outlen);
/* Fills o->info from the header in front of a payload handed out. */
void          cachet__value_info(cachet_region *r, const cachet_options *o, const void *payload);
/* Counts and logs a value that failed to decode, and frees it. */
void          cachet__region_corrupt(cachet_region *r, const char *key, void *buf, size_t len,
                                     uint64_t want_check);
/* server_ttl: what the backend's set gets (0: its default). */
cachet_status cachet__region_store(cachet_region *r, const cachet_key *k, const char *key,
                                   const void *buf, size_t blen, double server_ttl);
/* Wraps a payload in the header, bound to the key k where the region binds
 * values to keys. */
void         *cachet__region_encode(cachet_region *r, const cachet_key *k, const void *value,
                                    size_t len, int64_t lifetime_ns, size_t *outlen);
/* The same, with the creator's measured time (header bytes 6-7). */
void         *cachet__region_encode_timed(cachet_region *r, const cachet_key *k, const void *value,
                                          size_t len, int64_t lifetime_ns, int64_t creator_ns,
                                          size_t *outlen);

#define CACHET_COUNT(r, field) cachet__stat_count(&(r)->stats, CACHET_STAT_##field)

#endif
