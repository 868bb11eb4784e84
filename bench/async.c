/* The async API (cachet_async_*) against the synchronous API in the same
 * run, per backend (memory, memcached, redis: servers started on loopback
 * by tests/servers.c): ops/s and p50/p99 latency of gets with 1, 10 and
 * 100 outstanding from an epoll loop, with the batching of queued gets into
 * one get_multi (the default) and without it (cachet_async_set_batch 1),
 * and the synchronous cachet_get from one thread.  1000 keys, 100-byte
 * values, 4 workers.  Prints one table per backend; each figure is the
 * median of RUNS runs of SECONDS each.
 * Usage: bench/async [SECONDS [RUNS [BACKEND...]]] */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "servers.h"
#include "bench_util.h"

#define NKEYS 1000
#define VSIZE 100
#define MAXLAT 4000000

static char keys[NKEYS][32];
static double *lat;           /* seconds, per completed op */
static size_t nlat;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench/async: %s: %s\n", what, detail);
    exit(2);
}

typedef struct {
    double ops, p50, p99, mean;
} result;

static result summarise(double secs)
{
    result r = {0};
    if (!nlat)
        return r;
    qsort(lat, nlat, sizeof *lat, bench_cmp_double);
    double sum = 0;
    for (size_t i = 0; i < nlat; i++)
        sum += lat[i];
    r.ops = (double)nlat / secs;
    r.p50 = lat[nlat / 2] * 1e6;
    r.p99 = lat[(size_t)((double)nlat * 0.99)] * 1e6;
    r.mean = sum / (double)nlat * 1e6;
    return r;
}

static void record(double t)
{
    if (nlat < MAXLAT)
        lat[nlat++] = t;
}

static result run_sync(cachet_region *r, double secs)
{
    nlat = 0;
    double t0 = bench_now(), end = t0 + secs, t;
    size_t i = 0;
    while ((t = bench_now()) < end) {
        void *v;
        size_t n;
        cachet_status st = cachet_get(r, keys[i++ % NKEYS], &v, &n);
        if (st != CACHET_OK)
            die("sync get", cachet_errmsg());
        cachet_free(v);
        record(bench_now() - t);
    }
    return summarise(bench_now() - t0);
}

typedef struct {
    double submitted;
    int *inflight;
    int *failed;
} ticket;

static ticket tickets[128];
static int free_tickets[128], nfree;

static void got(void *arg, cachet_status st, void *v, size_t len)
{
    ticket *tk = arg;
    record(bench_now() - tk->submitted);
    if (st != CACHET_OK)
        (*tk->failed)++;
    (*tk->inflight)--;
    free_tickets[nfree++] = (int)(tk - tickets);
    cachet_free(v);
}

static result run_async(cachet_region *r, int window, int batch, double secs)
{
    cachet_async *q;
    if (cachet_async_open(r, 4, &q) != CACHET_OK)
        die("cachet_async_open", cachet_errmsg());
    cachet_async_set_batch(q, batch ? 0 : 1);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN}, out[1];
    epoll_ctl(ep, EPOLL_CTL_ADD, cachet_async_fd(q), &ev);
    int inflight = 0, failed = 0;
    nfree = 0;
    for (int k = 0; k < window; k++)
        free_tickets[nfree++] = k;
    nlat = 0;
    double t0 = bench_now(), end = t0 + secs;
    size_t i = 0;
    while (bench_now() < end) {
        while (inflight < window) {
            ticket *tk = &tickets[free_tickets[--nfree]];
            *tk = (ticket){bench_now(), &inflight, &failed};
            if (cachet_async_get(q, keys[i++ % NKEYS], got, tk) != CACHET_OK)
                die("async get", cachet_errmsg());
            inflight++;
        }
        if (epoll_wait(ep, out, 1, 100) > 0)
            cachet_async_dispatch(q);
    }
    double took = bench_now() - t0;
    size_t done_in_time = nlat;
    cachet_async_close(q);       /* the rest complete, not counted */
    nlat = done_in_time;
    if (failed)
        die("async get", "some gets failed");
    close(ep);
    return summarise(took);
}

static int cmp_result_ops(const void *a, const void *b)
{
    return bench_cmp_double(&((const result *)a)->ops, &((const result *)b)->ops);
}

/* the median run (by ops/s) of runs */
static result median_of(result *rs, int runs)
{
    qsort(rs, (size_t)runs, sizeof *rs, cmp_result_ops);
    return rs[runs / 2];
}

static void bench_backend(const char *backend, const char *opt, const char *val, double secs,
                          int runs)
{
    cachet_config *c = cachet_config_new();
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", backend);
    if (opt && cachet_config_set(c, opt, val) != CACHET_OK)
        die(backend, cachet_errmsg());
    cachet_region *r;
    if (cachet_region_open(c, &r) != CACHET_OK)
        die(backend, cachet_errmsg());
    cachet_config_free(c);
    char value[VSIZE];
    memset(value, 'x', sizeof value);
    for (int k = 0; k < NKEYS; k++)
        if (cachet_set(r, keys[k], value, sizeof value) != CACHET_OK)
            die("set", cachet_errmsg());

    static const struct {
        const char *name;
        int window, batch;
    } modes[] = {{"sync", 0, 0},           {"async 1", 1, 1},       {"async 10", 10, 1},
                 {"async 100", 100, 1},    {"async 10 nobatch", 10, 0},
                 {"async 100 nobatch", 100, 0}};
    enum { NMODES = sizeof modes / sizeof *modes };
    result res[NMODES][15];
    for (int run = 0; run < runs; run++)
        for (int m = 0; m < NMODES; m++)   /* interleaved, so load swings hit every mode */
            res[m][run] = modes[m].window ? run_async(r, modes[m].window, modes[m].batch, secs)
                                          : run_sync(r, secs);
    result med[NMODES];
    for (int m = 0; m < NMODES; m++)
        med[m] = median_of(res[m], runs);
    printf("\n%s: gets, median of %d runs of %.1f s (1 loop thread, 4 workers)\n", backend, runs,
           secs);
    printf("%-18s %10s %9s %9s %9s %9s\n", "mode", "ops/s", "mean_us", "p50_us", "p99_us",
           "vs_sync");
    for (int m = 0; m < NMODES; m++)
        printf("%-18s %10.0f %9.1f %9.1f %9.1f %8.2fx\n", modes[m].name, med[m].ops, med[m].mean,
               med[m].p50, med[m].p99, med[m].ops / med[0].ops);
    printf("%s: overhead per get at 1 outstanding: %.1f us (mean async %.1f - sync %.1f); "
           "async 100 / sync: %.2fx (batching %.2fx of nobatch)\n",
           backend, med[1].mean - med[0].mean, med[1].mean, med[0].mean, med[3].ops / med[0].ops,
           med[3].ops / med[5].ops);
    cachet_region_close(r);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    int runs = argc > 2 ? atoi(argv[2]) : 3;
    if (secs <= 0 || runs < 1 || runs > 15)
        die("usage", "bench/async [SECONDS [RUNS (1-15) [BACKEND...]]]");
    lat = malloc(MAXLAT * sizeof *lat);
    if (!lat)
        die("malloc", "latencies");
    for (int k = 0; k < NKEYS; k++)
        snprintf(keys[k], sizeof keys[k], "bench-async:%d", k);
    const char *all[] = {"memory", "memcached", "redis"};
    const char *const *which = argc > 3 ? (const char *const *)argv + 3 : all;
    int n = argc > 3 ? argc - 3 : 3;
    test_server mc, rd;
    int have_mc = 0, have_rd = 0;
    printf("bench/async: cachet_async_get from an epoll loop vs cachet_get, same run\n");
    for (int i = 0; i < n; i++) {
        char arg[96];
        if (strcmp(which[i], "memory") == 0) {
            bench_backend("memory", NULL, NULL, secs, runs);
        } else if (strcmp(which[i], "memcached") == 0) {
            if (!have_mc && test_memcached_start(&mc, 0, NULL) != 0)
                die("memcached", "did not start");
            have_mc = 1;
            snprintf(arg, sizeof arg, "127.0.0.1:%d", mc.port);
            bench_backend("memcached", "memcache_servers", arg, secs, runs);
        } else if (strcmp(which[i], "redis") == 0) {
            if (!have_rd && test_redis_start(&rd, 0, NULL) != 0)
                die("redis", "did not start");
            have_rd = 1;
            snprintf(arg, sizeof arg, "url:redis://127.0.0.1:%d/0", rd.port);
            bench_backend("redis", "backend_argument", arg, secs, runs);
        } else {
            die("unknown backend", which[i]);
        }
    }
    test_servers_stop_all();
    free(lat);
    return 0;
}
