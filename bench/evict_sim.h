/* Exact simulations of count-bounded caches on a trace (bench/evict):
 * LRU, SIEVE (Zhang et al., NSDI 2024) and S3-FIFO (Yang et al., SOSP
 * 2023, Algorithm 1: small FIFO of 10%, main FIFO with 2-bit reinsertion,
 * a ghost FIFO as long as main, move to main on one hit).  Each returns
 * the hit ratio, or -1 when out of memory. */
#ifndef CACHET_BENCH_EVICT_SIM_H
#define CACHET_BENCH_EVICT_SIM_H

#include "evict_trace.h"

double sim_lru(const evict_trace *t, size_t capacity);
double sim_sieve(const evict_trace *t, size_t capacity);
double sim_s3fifo(const evict_trace *t, size_t capacity);

#endif
