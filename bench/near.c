/* The near proxy: get hits through near over memcached and over redis
 * against the same backend without near, with the memory backend (no
 * server at all) as what an L1 should come close to; and the staleness of
 * a write made in another region: on redis the pub/sub message, measured;
 * on memcached (no notifications) near:ttl, measured with a ttl of 0.2 s.
 * One thread, 1000 keys, 100-byte values, loopback servers started here.
 * Each figure is the median of RUNS runs of SECONDS each, interleaved.
 * Usage: bench/near [RUNS] [SECONDS]   (from a built tree) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/cachet.h>
#include "servers.h"
#include "bench_util.h"

#define NKEYS 1000
#define VSIZE 100
#define MAXRUNS 15

static char keys[NKEYS][32];

static cachet_region *open_region(const char *backend, const char *argname, const char *arg,
                                  const char *chain, const char *ttl)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", backend);
    if (argname)
        cachet_config_set(c, argname, arg);
    if (chain)
        cachet_config_set(c, "cachet_proxies", chain);
    if (ttl)
        cachet_config_set(c, "cachet_proxy_argument", ttl);
    if (cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "bench/near: open %s: %s\n", backend, cachet_errmsg());
        exit(2);
    }
    cachet_config_free(c);
    return r;
}

static double get_rate(cachet_region *r, double secs)
{
    double t0 = bench_now(), t;
    size_t n = 0;
    do {
        for (int k = 0; k < 1000; k++, n++) {
            void *v;
            size_t len;
            if (cachet_get(r, keys[n % NKEYS], &v, &len) != CACHET_OK) {
                fprintf(stderr, "bench/near: get missed\n");
                exit(2);
            }
            cachet_free(v);
        }
        t = bench_now() - t0;
    } while (t < secs);
    return (double)n / t;
}

/* ms from a set in writer to reader seeing it, median of n trials. */
static double staleness_ms(cachet_region *writer, cachet_region *reader, int n)
{
    double *ms = calloc((size_t)n, sizeof *ms), m;
    char v[32];
    for (int i = 0; i < n; i++) {
        void *got;
        size_t len;
        double t0;
        snprintf(v, sizeof v, "v%d-%d", i, rand());
        /* the reader's L1 holds the old value first */
        cachet_get(reader, "stale-key", &got, &len) == CACHET_OK ? cachet_free(got) : (void)0;
        t0 = bench_now();
        cachet_set(writer, "stale-key", v, strlen(v));
        for (;;) {
            if (cachet_get(reader, "stale-key", &got, &len) == CACHET_OK) {
                int same = len == strlen(v) && memcmp(got, v, len) == 0;
                cachet_free(got);
                if (same)
                    break;
            }
            if (bench_now() - t0 > 30) {
                fprintf(stderr, "bench/near: the write was never seen\n");
                exit(2);
            }
        }
        ms[i] = (bench_now() - t0) * 1e3;
    }
    m = bench_median(ms, n);
    free(ms);
    return m;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 3;
    double secs = argc > 2 ? atof(argv[2]) : 1;
    test_server mc, rd;
    char mcs[64], rurl[96], value[VSIZE];
    struct {
        const char *name, *backend, *argname, *arg, *chain;
        cachet_region *r;
        double rate[MAXRUNS];
    } c[] = {
        {"memory", "memory", NULL, NULL, NULL, NULL, {0}},
        {"memcached", "memcached", "memcache_servers", mcs, NULL, NULL, {0}},
        {"near+memcached", "memcached", "memcache_servers", mcs, "near", NULL, {0}},
        {"redis", "redis", "backend_argument", rurl, NULL, NULL, {0}},
        {"near+redis", "redis", "backend_argument", rurl, "near", NULL, {0}},
    };
    size_t nc = sizeof c / sizeof c[0];

    if (runs < 1 || runs > MAXRUNS)
        runs = 3;
    if (test_memcached_start(&mc, 0, NULL) != 0 || test_redis_start(&rd, 0, NULL) != 0) {
        fprintf(stderr, "bench/near: servers did not start\n");
        return 2;
    }
    snprintf(mcs, sizeof mcs, "127.0.0.1:%d", mc.port);
    snprintf(rurl, sizeof rurl, "url:redis://127.0.0.1:%d/0", rd.port);
    memset(value, 'v', sizeof value);
    for (int i = 0; i < NKEYS; i++)
        snprintf(keys[i], sizeof keys[i], "near-bench:%d", i);
    for (size_t k = 0; k < nc; k++) {
        /* near:ttl of an hour: the bench measures hits, not refills */
        c[k].r = open_region(c[k].backend, c[k].argname, c[k].arg, c[k].chain,
                             c[k].chain ? "near:ttl:3600" : NULL);
        for (int i = 0; i < NKEYS; i++)
            cachet_set(c[k].r, keys[i], value, VSIZE);
    }
    for (int run = 0; run < runs; run++)
        for (size_t k = 0; k < nc; k++)
            c[k].rate[run] = get_rate(c[k].r, secs);
    printf("get hit, 1 thread, %d keys, %d-byte values, loopback; median of %d runs of %.1f s\n",
           NKEYS, VSIZE, runs, secs);
    {
        double med[8];
        for (size_t k = 0; k < nc; k++) {
            med[k] = bench_median(c[k].rate, runs);
            printf("  %-16s %12.0f gets/s\n", c[k].name, med[k]);
        }
        printf("  near+memcached / memcached: %.1fx   near+memcached / memory: %.2f\n",
               med[2] / med[1], med[2] / med[0]);
        printf("  near+redis / redis:         %.1fx   near+redis / memory:     %.2f\n",
               med[4] / med[3], med[4] / med[0]);
    }
    for (size_t k = 0; k < nc; k++)
        cachet_region_close(c[k].r);
    {
        /* staleness: another region writes, this one's L1 must see it */
        cachet_region *w = open_region("redis", "backend_argument", rurl, "near", "near:ttl:600");
        cachet_region *rr = open_region("redis", "backend_argument", rurl, "near", "near:ttl:600");
        cachet_region *mw = open_region("memcached", "memcache_servers", mcs, NULL, NULL);
        cachet_region *mr = open_region("memcached", "memcache_servers", mcs, "near",
                                        "near:ttl:0.2");
        printf("staleness after a write in another region (median of 101 / 11 trials):\n");
        printf("  near+redis (pub/sub, near:ttl 600 s):    %.3f ms\n", staleness_ms(w, rr, 101));
        printf("  near+memcached (near:ttl 0.2 s alone):   %.1f ms\n", staleness_ms(mw, mr, 11));
        cachet_region_close(w);
        cachet_region_close(rr);
        cachet_region_close(mw);
        cachet_region_close(mr);
    }
    test_servers_stop_all();
    return 0;
}
