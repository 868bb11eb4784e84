/* See evict_trace.h.  Zipf by inverse CDF: rank r (1-based) has weight
 * r^-alpha; a uniform draw is looked up in the cumulative weights with a
 * binary search.  Ranks are the ids, the most popular being 0: the table
 * under test hashes them, so their order means nothing to it. */
#include <math.h>
#include <stdlib.h>
#include "evict_trace.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int evict_trace_make(evict_trace *t, size_t keys, double alpha, size_t n, size_t scan_every,
                     size_t scan_len, uint64_t seed)
{
    double *cdf = malloc(keys * sizeof *cdf), sum = 0;
    uint32_t next_scan_id = (uint32_t)keys;
    size_t i = 0;

    t->ids = malloc(n * sizeof *t->ids);
    if (!cdf || !t->ids) {
        free(cdf);
        free(t->ids);
        return -1;
    }
    for (size_t r = 0; r < keys; r++)
        cdf[r] = (sum += pow((double)(r + 1), -alpha));
    while (i < n) {
        if (scan_every && i > 0 && i % scan_every == 0)
            for (size_t j = 0; j < scan_len && i < n; j++)
                t->ids[i++] = next_scan_id++;
        if (i >= n)
            break;
        double u = (double)(splitmix(&seed) >> 11) / 9007199254740992.0 * sum;
        size_t lo = 0, hi = keys - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        t->ids[i++] = (uint32_t)lo;
    }
    free(cdf);
    t->n = n;
    t->max_id = next_scan_id;
    return 0;
}

void evict_trace_free(evict_trace *t)
{
    free(t->ids);
    t->ids = NULL;
}
