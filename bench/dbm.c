/* The dbm region's hot paths, timed: get hit and set over N keys with
 * V-byte values, on one thread, on a file in DIR.  Prints `op ops_per_second`
 * per line, like bench/dogpile_dbm.py, so bench/run-dbm can put them side
 * by side.  Usage: dbm DIR [keys] [value_size] [seconds] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/cachet.h>
#include "bench_util.h"

enum { GET, SET };

static double run(cachet_region *r, char **keys, size_t nkeys, const char *value,
                  size_t value_len, double seconds, int op)
{
    size_t n = 0;
    double start = bench_now(), end = start + seconds, t;
    void *v;
    size_t len;
    do {
        /* 1000 ops between clock reads keeps timing out of the rate */
        for (size_t i = 0; i < 1000; i++, n++) {
            const char *k = keys[n % nkeys];
            cachet_status st;
            if (op == GET) {
                st = cachet_get(r, k, &v, &len);
                if (st == CACHET_OK)
                    cachet_free(v);
            } else {
                st = cachet_set(r, k, value, value_len);
            }
            if (st != CACHET_OK) {
                fprintf(stderr, "dbm: op %d on %s: %s: %s\n", op, k, cachet_strerror(st),
                        cachet_errmsg());
                exit(2);
            }
        }
    } while ((t = bench_now()) < end);
    return (double)n / (t - start);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: dbm DIR [keys] [value_size] [seconds]\n");
        return 2;
    }
    const char *dir = argv[1];
    size_t nkeys = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    size_t value_len = argc > 3 ? strtoul(argv[3], NULL, 10) : 100;
    double seconds = argc > 4 ? atof(argv[4]) : 1.0;
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    char **keys = calloc(nkeys, sizeof *keys);
    char *val = malloc(value_len), arg[4200];

    memset(val, 'x', value_len);
    snprintf(arg, sizeof arg, "filename:%s/cachet-bench.db", dir);
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", "dogpile.cache.dbm");
    cachet_config_set(c, "backend_argument", arg);
    if (cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "dbm: %s\n", cachet_errmsg());
        return 2;
    }
    for (size_t i = 0; i < nkeys; i++) {
        keys[i] = malloc(32);
        snprintf(keys[i], 32, "key:%zu", i);
        cachet_set(r, keys[i], val, value_len);
    }
    printf("get %.0f\n", run(r, keys, nkeys, val, value_len, seconds, GET));
    printf("set %.0f\n", run(r, keys, nkeys, val, value_len, seconds, SET));
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    free(val);
    cachet_region_close(r);
    cachet_config_free(c);
    return 0;
}
