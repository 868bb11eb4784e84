/* cachet's memcached backends against raw libmemcached making the same
 * calls, on one memcached on loopback; and the dead-host stall count.
 *
 *   bench/memcached --port P [--n N]   get hit, set, get_multi(100): one
 *       "RESULT impl op calls/s keys/s cpu_us user_us sys_us" line per run
 *       for cachet-memcached, cachet-memcache_pool and raw-libmemcached
 *   bench/memcached --stalls            2 live servers and a black hole,
 *       socket_timeout 1, dead_retry 30, 4 threads x 40 gets with a new
 *       thread per request: "STALLS impl slow_gets total_gets" */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <libmemcached/memcached.h>
#include <cachet/cachet.h>
#include "servers.h"

#define VALUE_LEN 100
#define MULTI     100
#define NKEYS     1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double user_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
}

static double sys_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
    fprintf(stderr, "bench/memcached: %s\n", what);
    exit(2);
}

typedef struct {
    double t, user, sys;
} mark;

static mark start(void)
{
    return (mark){now_s(), user_s(), sys_s()};
}

/* RESULT impl op calls/s keys/s cpu_us/call user_us/call sys_us/call */
static void report(const char *impl, const char *op, mark m, long calls, long keys)
{
    double dt = now_s() - m.t, du = user_s() - m.user, ds = sys_s() - m.sys;
    printf("RESULT %s %s %.0f %.0f %.2f %.2f %.2f\n", impl, op, calls / dt, keys / dt,
           (du + ds) / calls * 1e6, du / calls * 1e6, ds / calls * 1e6);
    fflush(stdout);
}

static char keys[NKEYS][32];
static char value[VALUE_LEN];

static cachet_region *open_region(const char *backend, const char *url, const char *timeout,
                                  const char *dead_retry)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", backend);
    cachet_config_set(c, "memcache_servers", url);
    cachet_config_set(c, "memcache_socket_timeout", timeout);
    cachet_config_set(c, "memcache_dead_retry", dead_retry);
    if (cachet_region_open(c, &r) != CACHET_OK)
        die(cachet_errmsg());
    cachet_config_free(c);
    return r;
}

static void bench_cachet(const char *backend, const char *impl, const char *url, long n)
{
    cachet_region *r = open_region(backend, url, "1", "30");
    cachet_item items[MULTI];
    void *v;
    size_t len;
    mark m;
    long i;

    for (i = 0; i < NKEYS; i++)
        if (cachet_set(r, keys[i], value, VALUE_LEN) != CACHET_OK)
            die(cachet_errmsg());
    m = start();
    for (i = 0; i < n; i++) {
        if (cachet_get(r, keys[i % NKEYS], &v, &len) != CACHET_OK)
            die("cachet get missed");
        cachet_free(v);
    }
    report(impl, "get", m, n, n);
    m = start();
    for (i = 0; i < n; i++)
        if (cachet_set(r, keys[i % NKEYS], value, VALUE_LEN) != CACHET_OK)
            die(cachet_errmsg());
    report(impl, "set", m, n, n);
    m = start();
    for (i = 0; i < n / 20; i++) {
        for (int k = 0; k < MULTI; k++)
            items[k] = (cachet_item){keys[(i * MULTI + k) % NKEYS], NULL, 0, 0};
        if (cachet_get_multi(r, items, MULTI) != CACHET_OK)
            die(cachet_errmsg());
        for (int k = 0; k < MULTI; k++) {
            if (items[k].status != CACHET_OK)
                die("cachet get_multi missed");
            cachet_free(items[k].value);
        }
    }
    report(impl, "get_multi100", m, n / 20, n / 20 * MULTI);
    cachet_region_close(r);
}

static void bench_raw(int port, long n)
{
    memcached_st *mc = memcached_create(NULL);
    memcached_return_t rc;
    const char *ks[MULTI];
    size_t kl[MULTI], len;
    uint32_t flags;
    mark m;
    long i;

    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_server_add(mc, "127.0.0.1", (in_port_t)port);
    /* cachet stores a header before the payload: raw stores as many bytes */
    char stored[VALUE_LEN + 32];
    memset(stored, 'v', sizeof stored);
    for (i = 0; i < NKEYS; i++)
        if (memcached_set(mc, keys[i], strlen(keys[i]), stored, sizeof stored, 0, 0) !=
            MEMCACHED_SUCCESS)
            die("raw set failed");
    m = start();
    for (i = 0; i < n; i++) {
        char *v = memcached_get(mc, keys[i % NKEYS], strlen(keys[i % NKEYS]), &len, &flags, &rc);
        if (!v)
            die("raw get missed");
        free(v);
    }
    report("raw-libmemcached", "get", m, n, n);
    m = start();
    for (i = 0; i < n; i++)
        if (memcached_set(mc, keys[i % NKEYS], strlen(keys[i % NKEYS]), stored, sizeof stored, 0,
                          0) != MEMCACHED_SUCCESS)
            die("raw set failed");
    report("raw-libmemcached", "set", m, n, n);
    m = start();
    for (i = 0; i < n / 20; i++) {
        memcached_result_st res, *rp;
        int got = 0;
        for (int k = 0; k < MULTI; k++) {
            ks[k] = keys[(i * MULTI + k) % NKEYS];
            kl[k] = strlen(ks[k]);
        }
        if (memcached_mget(mc, ks, kl, MULTI) != MEMCACHED_SUCCESS)
            die("raw mget failed");
        memcached_result_create(mc, &res);
        while ((rp = memcached_fetch_result(mc, &res, &rc)) != NULL) {
            got += memcached_result_length(rp) > 0;   /* no copy: the least raw can do */
        }
        memcached_result_free(&res);
        if (got != MULTI)
            die("raw mget missed");
    }
    report("raw-libmemcached", "get_multi100", m, n / 20, n / 20 * MULTI);
    memcached_free(mc);
}

/* ---- dead-host stalls ---- */

typedef struct {
    cachet_region *r;
    int lane, i, slow;
} req;

static void *one_request(void *arg)
{
    req *q = arg;
    char key[32];
    void *v;
    size_t n;
    snprintf(key, sizeof key, "dh-%d-%d", q->lane, q->i);
    double t0 = now_s();
    if (cachet_get(q->r, key, &v, &n) == CACHET_OK)
        cachet_free(v);
    q->slow = now_s() - t0 >= 0.5;
    return NULL;
}

static void *lane(void *arg)
{
    req *q = arg;
    int slow = 0;
    for (int i = 0; i < 40; i++) {
        pthread_t t;
        req one = {q->r, q->lane, i, 0};
        pthread_create(&t, NULL, one_request, &one);
        pthread_join(t, NULL);
        slow += one.slow;
        usleep(5000);
    }
    q->slow = slow;
    return NULL;
}

static void stalls(void)
{
    test_server s1, s2;
    test_blackhole bh;
    char url[256];
    static const char *const impls[][2] = {{"memcached", "cachet-memcached"},
                                           {"memcache_pool", "cachet-memcache_pool"}};

    if (test_memcached_start(&s1, 0, NULL) || test_memcached_start(&s2, 0, NULL) ||
        test_blackhole_start(&bh))
        die("cannot start the servers");
    snprintf(url, sizeof url, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", s1.port, s2.port, bh.port);
    for (int b = 0; b < 2; b++) {
        cachet_region *r = open_region(impls[b][0], url, "1", "30");
        pthread_t t[4];
        req q[4];
        int slow = 0;
        for (int i = 0; i < 4; i++) {
            q[i] = (req){r, i, 0, 0};
            pthread_create(&t[i], NULL, lane, &q[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            slow += q[i].slow;
        }
        printf("STALLS %s %d 160\n", impls[b][1], slow);
        fflush(stdout);
        cachet_region_close(r);
    }
    test_blackhole_stop(&bh);
    test_server_stop(&s1);
    test_server_stop(&s2);
}

int main(int argc, char **argv)
{
    int port = 0, rotate = 0;
    long n = 20000;
    char url[64];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = atol(argv[++i]);
        else if (strcmp(argv[i], "--rotate") == 0 && i + 1 < argc)
            rotate = atoi(argv[++i]);
        else if (strcmp(argv[i], "--stalls") == 0) {
            stalls();
            return 0;
        } else {
            fprintf(stderr, "usage: %s --port P [--n N] [--rotate K] | --stalls\n", argv[0]);
            return 2;
        }
    }
    for (int i = 0; i < NKEYS; i++)
        snprintf(keys[i], sizeof keys[i], "bench-key-%d", i);
    memset(value, 'v', sizeof value);
    test_server own;
    if (!port) {
        if (test_memcached_start(&own, 0, NULL))
            die("cannot start memcached");
        port = own.port;
    }
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    /* --rotate k starts with the k-th: runs in turn see the machine's noise */
    for (int k = 0; k < 3; k++) {
        switch ((k + rotate) % 3) {
        case 0: bench_raw(port, n); break;
        case 1: bench_cachet("memcached", "cachet-memcached", url, n); break;
        default: bench_cachet("memcache_pool", "cachet-memcache_pool", url, n); break;
        }
    }
    return 0;
}
