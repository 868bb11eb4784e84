/* The clocks the benchmarks read, in seconds: wall time on CLOCK_MONOTONIC
 * for rates, and a CPU clock where a loaded machine would move wall-time
 * rates too much (the peer's as much as ours). */
#ifndef CACHET_BENCH_CLOCK_H
#define CACHET_BENCH_CLOCK_H

#include <time.h>

static inline double bench_clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double bench_now(void)
{
    return bench_clock_s(CLOCK_MONOTONIC);
}

#endif
