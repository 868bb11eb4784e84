/* The memory region's hot paths, timed: get hit, set and get_or_create hit
 * over N keys with V-byte values, on one thread.  Prints `op ops_per_second`
 * per line (and `op_cpu ops_per_cpu_second`), like bench/dogpile_memory.py, so bench/run-region can put them
 * side by side.  Usage: region [keys] [value_size] [seconds] [backend] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/cachet.h>
#include "bench_util.h"

/* This process's CPU time: a loaded machine moves wall-time rates a lot
 * (the peer's as much as ours), CPU-time ones much less. */
static double cpu_now(void)
{
    return bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static double last_cpu_rate;

static const char *value;
static size_t value_len;

static cachet_status creator(void *arg, const char *key, void **v, size_t *len)
{
    *v = malloc(value_len);
    memcpy(*v, value, value_len);
    *len = value_len;
    return CACHET_OK;
}

enum { GET, SET, GOC };

static double run(cachet_region *r, char **keys, size_t nkeys, double seconds, int op)
{
    size_t n = 0;
    double start = bench_now(), end = start + seconds, t, cpu0 = cpu_now();
    void *v;
    size_t len;
    do {
        /* 1000 ops between clock reads keeps timing out of the rate */
        for (size_t i = 0; i < 1000; i++, n++) {
            const char *k = keys[n % nkeys];
            cachet_status st;
            switch (op) {
            case GET:
                st = cachet_get(r, k, &v, &len);
                if (st == CACHET_OK)
                    cachet_free(v);
                break;
            case SET:
                st = cachet_set(r, k, value, value_len);
                break;
            default:
                st = cachet_get_or_create(r, k, creator, NULL, &v, &len);
                if (st == CACHET_OK)
                    cachet_free(v);
                break;
            }
            if (st != CACHET_OK) {
                fprintf(stderr, "region: op %d on %s: %s: %s\n", op, k, cachet_strerror(st),
                        cachet_errmsg());
                exit(2);
            }
        }
    } while ((t = bench_now()) < end);
    last_cpu_rate = (double)n / (cpu_now() - cpu0);
    return (double)n / (t - start);
}

int main(int argc, char **argv)
{
    size_t nkeys = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    value_len = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    double seconds = argc > 3 ? atof(argv[3]) : 1.0;
    const char *backend = argc > 4 ? argv[4] : "memory";
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    char **keys = calloc(nkeys, sizeof *keys);
    char *val = malloc(value_len);

    memset(val, 'x', value_len);
    value = val;
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", backend);
    if (cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "region: %s\n", cachet_errmsg());
        return 2;
    }
    for (size_t i = 0; i < nkeys; i++) {
        keys[i] = malloc(32);
        snprintf(keys[i], 32, "key:%zu", i);
        cachet_set(r, keys[i], value, value_len);
    }
    static const char *const names[] = {"get", "set", "goc"};
    for (int op = GET; op <= GOC; op++) {
        printf("%s %.0f\n", names[op], run(r, keys, nkeys, seconds, op));
        printf("%s_cpu %.0f\n", names[op], last_cpu_rate);
    }
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    free(val);
    cachet_region_close(r);
    cachet_config_free(c);
    return 0;
}
