/* What the benchmarks share: the clocks they read, in seconds (wall time
 * on CLOCK_MONOTONIC for rates, and a CPU clock where a loaded machine
 * would move wall-time rates too much, the peer's as much as ours), and
 * the median of their rounds.  Header-only: each benchmark is one program. */
#ifndef CACHET_BENCH_UTIL_H
#define CACHET_BENCH_UTIL_H

#include <stdlib.h>
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

/* qsort's order of doubles, ascending */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the n values of v (which it sorts). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
