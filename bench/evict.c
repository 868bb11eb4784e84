/* Hit ratios of cachet's memory table (backends/memory/memtable.c, the
 * sharded S3-FIFO) against exact LRU, SIEVE and S3-FIFO simulations
 * (evict_sim.c) on the same traces (evict_trace.c): Zipf 0.9, Zipf 0.99
 * and Zipf 0.99 with one-time scans, 100k keys, a bound of 10% of them.
 * The table sees each request as a get, then a set on a miss.
 *   bench/evict [requests]          the comparison
 *   bench/evict --dump TRACE [n]    the trace's ids, one a line
 *                                   (TRACE: zipf0.9, zipf0.99, scans) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "evict_sim.h"
#include "evict_trace.h"
#include "memtable.h"

#define KEYS  100000
#define BOUND (KEYS / 10)

static const struct {
    const char *name;
    double      alpha;
    size_t      scan_every, scan_len;
} traces[] = {
    {"zipf0.9", 0.9, 0, 0},
    {"zipf0.99", 0.99, 0, 0},
    {"scans", 0.99, 100000, 20000},   /* a 20k-key one-time scan every 100k requests */
};

static double run_memtable(const evict_trace *t, size_t bound)
{
    memtable *m = memtable_new(bound, 0);
    size_t hits = 0;
    char key[24];

    if (!m)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        int n = snprintf(key, sizeof key, "key:%u", t->ids[i]);
        void *v;
        size_t len;
        if (memtable_get(m, key, (size_t)n, &v, &len) == CACHET_OK) {
            hits++;
            free(v);
        } else if (memtable_set(m, key, (size_t)n, "v", 1, 0) != CACHET_OK) {
            memtable_free(m);
            return -1;
        }
    }
    memtable_free(m);
    return (double)hits / (double)t->n;
}

int main(int argc, char **argv)
{
    size_t n = 2000000;
    evict_trace t;

    if (argc > 2 && strcmp(argv[1], "--dump") == 0) {
        if (argc > 3)
            n = strtoul(argv[3], NULL, 10);
        for (size_t i = 0; i < sizeof traces / sizeof *traces; i++)
            if (strcmp(argv[2], traces[i].name) == 0) {
                if (evict_trace_make(&t, KEYS, traces[i].alpha, n, traces[i].scan_every,
                                     traces[i].scan_len, 42) != 0)
                    return 2;
                for (size_t j = 0; j < t.n; j++)
                    printf("%u\n", t.ids[j]);
                evict_trace_free(&t);
                return 0;
            }
        fprintf(stderr, "evict: no trace %s\n", argv[2]);
        return 2;
    }
    if (argc > 1)
        n = strtoul(argv[1], NULL, 10);
    printf("%zu keys, bound %d entries (max_count), %zu requests a trace\n", (size_t)KEYS, BOUND,
           n);
    printf("%-9s %8s %8s %8s %8s %14s\n", "trace", "LRU", "SIEVE", "S3-FIFO", "cachet",
           "cachet-S3FIFO");
    for (size_t i = 0; i < sizeof traces / sizeof *traces; i++) {
        if (evict_trace_make(&t, KEYS, traces[i].alpha, n, traces[i].scan_every,
                             traces[i].scan_len, 42) != 0)
            return 2;
        double lru = sim_lru(&t, BOUND), sieve = sim_sieve(&t, BOUND),
               s3 = sim_s3fifo(&t, BOUND), mine = run_memtable(&t, BOUND);
        printf("%-9s %8.4f %8.4f %8.4f %8.4f %+13.2f pt\n", traces[i].name, lru, sieve, s3, mine,
               (mine - s3) * 100);
        evict_trace_free(&t);
    }
    return 0;
}
