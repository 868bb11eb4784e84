/* cachet's memcached backends against raw libmemcached making the same
 * calls, on one memcached on loopback; and the dead-host stall count.
 *
 *   bench/memcached --port P [--n N]   get hit, set, get_multi(100): one
 *       "RESULT impl op calls/s keys/s cpu_us user_us sys_us" line per run
 *       for cachet-memcached, cachet-memcache_pool and raw-libmemcached,
 *       measured in 10 interleaved blocks per op (raw uses its own keys)
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
#include "bench_util.h"

#define VALUE_LEN 100
#define MULTI     100
#define NKEYS     1000

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

/* The three clients, measured in interleaved blocks (raw, cachet memcached,
 * cachet memcache_pool, then the next block in another order) so that the
 * machine's slow and fast spells fall on all of them alike. */
typedef struct {
    const char    *name;
    cachet_region *r;        /* NULL: raw libmemcached */
    memcached_st  *mc;
    double         wall[3], user[3], sys[3];
    long           calls[3], keys[3];
} client;

enum { OP_GET, OP_SET, OP_MULTI };
static const char *const op_names[] = {"get", "set", "get_multi100"};

static char keys[NKEYS][32];
static char rawkeys[NKEYS][32];       /* raw's own: its bytes are foreign to cachet */
static char value[VALUE_LEN];
static char stored[VALUE_LEN + 32];   /* raw stores as many bytes as cachet (header) */

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

static void run_cachet(client *c, int op, long from, long count)
{
    cachet_item items[MULTI];
    void *v;
    size_t len;
    for (long i = from; i < from + count; i++) {
        if (op == OP_GET) {
            if (cachet_get(c->r, keys[i % NKEYS], &v, &len) != CACHET_OK)
                die("cachet get missed");
            cachet_free(v);
        } else if (op == OP_SET) {
            if (cachet_set(c->r, keys[i % NKEYS], value, VALUE_LEN) != CACHET_OK)
                die(cachet_errmsg());
        } else {
            for (int k = 0; k < MULTI; k++)
                items[k] = (cachet_item){keys[(i * MULTI + k) % NKEYS], NULL, 0, 0};
            if (cachet_get_multi(c->r, items, MULTI) != CACHET_OK)
                die(cachet_errmsg());
            for (int k = 0; k < MULTI; k++) {
                if (items[k].status != CACHET_OK)
                    die("cachet get_multi missed");
                cachet_free(items[k].value);
            }
        }
    }
}

static void run_raw(client *c, int op, long from, long count)
{
    memcached_return_t rc;
    const char *ks[MULTI];
    size_t kl[MULTI], len;
    uint32_t flags;
    for (long i = from; i < from + count; i++) {
        const char *k = rawkeys[i % NKEYS];
        if (op == OP_GET) {
            char *v = memcached_get(c->mc, k, strlen(k), &len, &flags, &rc);
            if (!v)
                die("raw get missed");
            free(v);
        } else if (op == OP_SET) {
            if (memcached_set(c->mc, k, strlen(k), stored, sizeof stored, 0, 0) !=
                MEMCACHED_SUCCESS)
                die("raw set failed");
        } else {
            memcached_result_st res, *rp;
            int got = 0;
            for (int j = 0; j < MULTI; j++) {
                ks[j] = rawkeys[(i * MULTI + j) % NKEYS];
                kl[j] = strlen(ks[j]);
            }
            if (memcached_mget(c->mc, ks, kl, MULTI) != MEMCACHED_SUCCESS)
                die("raw mget failed");
            memcached_result_create(c->mc, &res);
            while ((rp = memcached_fetch_result(c->mc, &res, &rc)) != NULL)
                got += memcached_result_length(rp) > 0;   /* no copy: the least raw can do */
            memcached_result_free(&res);
            if (got != MULTI)
                die("raw mget missed");
        }
    }
}

static void run_block(client *c, int op, long from, long count)
{
    double t = bench_now(), u = user_s(), sy = sys_s();
    if (c->r)
        run_cachet(c, op, from, count);
    else
        run_raw(c, op, from, count);
    c->wall[op] += bench_now() - t;
    c->user[op] += user_s() - u;
    c->sys[op] += sys_s() - sy;
    c->calls[op] += count;
    c->keys[op] += op == OP_MULTI ? count * MULTI : count;
}

/* RESULT impl op calls/s keys/s cpu_us/call user_us/call sys_us/call */
static void report(const client *c, int op)
{
    printf("RESULT %s %s %.0f %.0f %.2f %.2f %.2f\n", c->name, op_names[op],
           c->calls[op] / c->wall[op], c->keys[op] / c->wall[op],
           (c->user[op] + c->sys[op]) / c->calls[op] * 1e6, c->user[op] / c->calls[op] * 1e6,
           c->sys[op] / c->calls[op] * 1e6);
    fflush(stdout);
}

static void bench_all(int port, const char *url, long n, int rotate)
{
    enum { BLOCKS = 10 };
    client cl[3] = {{.name = "raw-libmemcached"},
                    {.name = "cachet-memcached"},
                    {.name = "cachet-memcache_pool"}};
    cl[0].mc = memcached_create(NULL);
    memcached_behavior_set(cl[0].mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_server_add(cl[0].mc, "127.0.0.1", (in_port_t)port);
    cl[1].r = open_region("memcached", url, "1", "30");
    cl[2].r = open_region("memcache_pool", url, "1", "30");
    for (int i = 0; i < NKEYS; i++)
        if (cachet_set(cl[1].r, keys[i], value, VALUE_LEN) != CACHET_OK ||
            memcached_set(cl[0].mc, rawkeys[i], strlen(rawkeys[i]), stored, sizeof stored, 0,
                          0) != MEMCACHED_SUCCESS)
            die("cannot store the keys");
    for (int op = 0; op < 3; op++) {
        long per = (op == OP_MULTI ? n / 20 : n) / BLOCKS;
        for (int b = 0; b < BLOCKS; b++)
            for (int k = 0; k < 3; k++)
                run_block(&cl[(k + b + rotate) % 3], op, b * per, per);
        for (int k = 0; k < 3; k++)
            report(&cl[k], op);
    }
    memcached_free(cl[0].mc);
    cachet_region_close(cl[1].r);
    cachet_region_close(cl[2].r);
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
    double t0 = bench_now();
    if (cachet_get(q->r, key, &v, &n) == CACHET_OK)
        cachet_free(v);
    q->slow = bench_now() - t0 >= 0.5;
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
    for (int i = 0; i < NKEYS; i++)
        snprintf(rawkeys[i], sizeof rawkeys[i], "bench-raw-%d", i);
    memset(value, 'v', sizeof value);
    test_server own;
    if (!port) {
        if (test_memcached_start(&own, 0, NULL))
            die("cannot start memcached");
        port = own.port;
    }
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    memset(stored, 'v', sizeof stored);
    bench_all(port, url, n, rotate);
    return 0;
}
