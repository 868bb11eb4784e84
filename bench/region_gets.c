/* A fixed number of get hits on the memory region (20k keys, 100-byte
 * values, keys visited with a stride), for tools that count rather than
 * time: cachegrind's instructions and misses per get, /usr/bin/time.  It
 * also prints the wall time a get took, for the order of visits: stride 1
 * walks the keys in the order they were stored (their entries lie in that
 * order in memory), the default 7919 jumps about.
 *   bench/region_gets N [backend_argument|-] [stride] [keys]
 * Run it twice (N and 0) and subtract to leave out the setup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cachet/cachet.h>
#include "bench_util.h"

#define MAX_KEYS 1000000

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000, hits = 0;
    size_t stride = argc > 3 ? strtoul(argv[3], NULL, 10) : 7919;
    size_t nkeys = argc > 4 ? strtoul(argv[4], NULL, 10) : 20000, j = 0;
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    char (*keys)[32];
    char val[100];
    double t0;

    if (nkeys == 0 || nkeys > MAX_KEYS || !(keys = calloc(nkeys, sizeof *keys))) {
        fprintf(stderr, "region_gets: keys: 1 to %d\n", MAX_KEYS);
        return 2;
    }
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", "memory");
    if (argc > 2 && strcmp(argv[2], "-") != 0)
        cachet_config_set(c, "backend_argument", argv[2]);
    if (cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "region_gets: %s\n", cachet_errmsg());
        return 2;
    }
    memset(val, 'x', sizeof val);
    for (size_t i = 0; i < nkeys; i++) {
        snprintf(keys[i], sizeof keys[i], "key:%zu", i);
        cachet_set(r, keys[i], val, sizeof val);
    }
    stride %= nkeys;
    t0 = bench_now();
    for (size_t i = 0; i < n; i++) {
        void *v;
        size_t len;
        if (cachet_get(r, keys[j], &v, &len) == CACHET_OK) {
            hits++;
            cachet_free(v);
        }
        if ((j += stride) >= nkeys)
            j -= nkeys;
    }
    printf("%zu hits, %.1f ns a get (%zu keys, stride %zu)\n", hits,
           n ? (bench_now() - t0) / (double)n * 1e9 : 0.0, nkeys, stride);
    cachet_region_close(r);
    cachet_config_free(c);
    free(keys);
    return hits == n ? 0 : 1;
}
