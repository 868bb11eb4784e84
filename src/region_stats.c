/* The region's striped counters (src/region.h): which stripe a thread
 * counts in, and the sums cachet_stats and the metrics read. */
#include "config.h"
#include "internal.h"
#include "region.h"

_Thread_local unsigned cachet__stat_stripe1 __attribute__((tls_model("initial-exec")));

/* Round robin: the first CACHET_STAT_STRIPES threads to count each get a
 * stripe of their own; later ones share (still correct, the adds are
 * atomic).  The shared word is written once per thread, not per get. */
unsigned cachet__stat_stripe_assign(void)
{
    static _Atomic unsigned next;
    unsigned i = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % CACHET_STAT_STRIPES;
    cachet__stat_stripe1 = i + 1;
    return i + 1;
}

uint64_t cachet__stat_sum(const cachet_region_stats *s, unsigned field)
{
    const _Atomic uint64_t *b = cachet__stat_base(s);
    uint64_t n = 0;
    for (unsigned i = 0; i < CACHET_STAT_STRIPES; i++)
        n += atomic_load_explicit(&b[i * CACHET_STAT_WORDS + field], memory_order_relaxed);
    return n;
}
