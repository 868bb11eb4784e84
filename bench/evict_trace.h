/* Request traces for comparing eviction policies (bench/evict): key ids
 * drawn from a Zipf distribution over a key space, optionally with one-time
 * scans mixed in.  Deterministic for a given seed. */
#ifndef CACHET_BENCH_EVICT_TRACE_H
#define CACHET_BENCH_EVICT_TRACE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t *ids;      /* requested key ids; scans use ids >= keys, each once */
    size_t    n;
    uint32_t  max_id;   /* one more than the largest id */
} evict_trace;

/* Zipf(alpha) over `keys` ids, `n` requests.  With scan_every > 0, every
 * scan_every requests a scan of scan_len never-seen ids is inserted (the
 * scans count in n).  0 on success, -1 out of memory. */
int  evict_trace_make(evict_trace *t, size_t keys, double alpha, size_t n, size_t scan_every,
                      size_t scan_len, uint64_t seed);
void evict_trace_free(evict_trace *t);

#endif
