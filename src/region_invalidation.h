/* Region invalidation (cachet_invalidate_ex): the hard and soft
 * invalidation times, local to this process or shared through the backend
 * (cachet_invalidation = shared), where every process on the same backend
 * and cachet_key_prefix finds them under the region's two reserved keys:
 *
 *     _cachet:invalidated:hard:PREFIX     _cachet:invalidated:soft:PREFIX
 *
 * (mangled like any key where the backend needs it; the payload is the
 * time as 8 bytes little-endian, nanoseconds since the epoch, inside
 * cachet's value header).  A process re-reads them at most every
 * cachet_invalidation_interval seconds, on the first read after the
 * interval is up: one extra round trip per interval, not one per get. */
#ifndef CACHET_REGION_INVALIDATION_H
#define CACHET_REGION_INVALIDATION_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <cachet/cachet.h>

struct cachet_config;
struct cachet_region;

#define CACHET_INVAL_KEY_BASE "_cachet:invalidated:"

typedef struct {
    int              shared;          /* cachet_invalidation = shared */
    int64_t          interval_ns;     /* cachet_invalidation_interval */
    _Atomic int64_t  due_ns;          /* CLOCK_MONOTONIC_COARSE: when to re-read */
    char            *key[2];          /* [0] hard, [1] soft: as the backend stores them */
    size_t           klen[2];
} region_invalidation;

/* From the config and the backend the region opened (its canonical name
 * and caps): CACHET_EINVAL naming the option for shared on a backend whose
 * values are in one process (memory). */
cachet_status cachet__inval_open(struct cachet_region *r, const struct cachet_config *c);
void          cachet__inval_close(struct cachet_region *r);
/* The slow part of the poll: re-reads the shared times (one thread per
 * interval; the others go on with the times they have). */
/* CACHET_OK, or the backend's failure (its message set): the backend is
 * not answering, and the read that polled would fail the same way. */
cachet_status cachet__inval_refresh(struct cachet_region *r, int64_t now_ns);

/* The read that made a re-read that failed with st: a timeout fails it
 * (the read would wait out the same stalled backend again); any other
 * failure (one server of several down) leaves the read to try, and if it
 * fails too, the re-read's message (the first, and often the clearer, word
 * on why) is the one kept. */
cachet_status cachet__inval_get_after_failure(struct cachet_region *r, cachet_status st,
                                              const char *key, size_t klen, void **buf,
                                              size_t *blen) __attribute__((cold, noinline));

static inline int64_t cachet__inval_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
