/* The memcached and memcache_pool backends against real memcached servers
 * started on loopback by tests/servers.c: round trips, consistent hashing,
 * killed / hung / restarted servers, a host that accepts and never answers,
 * pool exhaustion, fork(), the distributed lock across processes (and that
 * it never expires before lock_timeout), oversize values, max_value_size,
 * long and spaced keys, and bytes written by a foreign client.  Servers
 * that lie are in test_memcached_hostile.c. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <libmemcached/memcached.h>
#include <cachet/backend.h>
#include <cachet/cachet.h>
#include "helpers.h"
#include "servers.h"

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Opens backend on url with oslo-style options (name, value, ..., NULL). */
static cachet_region *open_mc(const char *backend, const char *url, ...)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    char arg[1024];
    va_list ap;
    const char *name;

    assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend", backend), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "memcache_servers", url), CACHET_OK);
    va_start(ap, url);
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        if (strncmp(name, "arg:", 4) == 0) {
            snprintf(arg, sizeof arg, "%s:%s", name + 4, value);
            assert_int_equal(cachet_config_set(c, "backend_argument", arg), CACHET_OK);
        } else if (cachet_config_set(c, name, value) != CACHET_OK) {
            fail_msg("option %s: %s", name, cachet_errmsg());
        }
    }
    va_end(ap);
    if (cachet_region_open(c, &r) != CACHET_OK)
        fail_msg("open %s on %s: %s", backend, url, cachet_errmsg());
    cachet_config_free(c);
    return r;
}

static const char *url_of(char *buf, size_t size, const int *ports, size_t n)
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s127.0.0.1:%d", i ? "," : "", ports[i]);
    return buf;
}

/* A raw libmemcached ring built the way the backends build theirs, to
 * know which server a key lives on. */
static memcached_st *raw_ring(const int *ports, size_t n)
{
    memcached_st *mc = memcached_create(NULL);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    for (size_t i = 0; i < n; i++)
        memcached_server_add(mc, "127.0.0.1", (in_port_t)ports[i]);
    return mc;
}

static int port_of_key(memcached_st *ring, const char *key)
{
    memcached_return_t rc;
    const memcached_instance_st *in = memcached_server_by_key(ring, key, strlen(key), &rc);
    return in ? memcached_server_port(in) : -1;
}

/* A key (prefix + number) that lives on port. */
static void key_on(memcached_st *ring, int port, const char *prefix, char *out, size_t size)
{
    for (int i = 0;; i++) {
        snprintf(out, size, "%s%d", prefix, i);
        if (port_of_key(ring, out) == port)
            return;
    }
}

/* Two memcached servers started; their ports in ports. */
static void start_two(test_server *s1, test_server *s2, int ports[2])
{
    assert_int_equal(test_memcached_start(s1, 0, NULL), 0);
    assert_int_equal(test_memcached_start(s2, 0, NULL), 0);
    ports[0] = s1->port;
    ports[1] = s2->port;
}

/* A memcached and a host that accepts and never answers; their ports in ports. */
static void start_live_and_hole(test_server *live, test_blackhole *hole, int ports[2])
{
    assert_int_equal(test_memcached_start(live, 0, NULL), 0);
    assert_int_equal(test_blackhole_start(hole), 0);
    ports[0] = live->port;
    ports[1] = hole->port;
}

static memcached_st *raw_one(int port)
{
    memcached_st *mc = memcached_create(NULL);
    memcached_server_add(mc, "127.0.0.1", (in_port_t)port);
    return mc;
}

#define MEMCACHED "dogpile.cache.memcached"
#define MEMCACHE_POOL "oslo_cache.memcache_pool"
static const char *const backends[] = {MEMCACHED, MEMCACHE_POOL};
/* The same two as targets of the bodies that run once per backend, each
 * its own named test (TH_ON): *state points to the backend's name. */
static const char *dogpile_memcached = MEMCACHED, *oslo_memcache_pool = MEMCACHE_POOL;

static const char *backend_of(void **state)
{
    return *(const char **)*state;
}

/* ---- round trips ---- */

/* What the conformance suite (one server) cannot show: with two servers the
 * keys are spread over both, and multi-operations split and join the batch
 * correctly.  Round trips, empty and binary values, awkward keys and
 * foreign bytes are the conformance suite's bodies. */
static void keys_spread_over_two_servers(void **state)
{
    const char *backend = backend_of(state);
    test_server s1, s2;
    int ports[2];
    char url[256], keys[60][32], vals[60][32];
    cachet_item items[60];
    const char *dkeys[30];

    start_two(&s1, &s2, ports);
    cachet_region *r = open_mc(backend, url_of(url, sizeof url, ports, 2), NULL);

    for (int i = 0; i < 60; i++) {
        snprintf(keys[i], sizeof keys[i], "multi-%d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d", i * 7);
        items[i] = (cachet_item){keys[i], vals[i], strlen(vals[i]), CACHET_EINVAL};
    }
    assert_int_equal(cachet_set_multi(r, items, 60), CACHET_OK);
    for (int i = 0; i < 60; i++)
        assert_int_equal(items[i].status, CACHET_OK);
    for (int i = 0; i < 30; i++)
        dkeys[i] = keys[2 * i];
    assert_int_equal(cachet_delete_multi(r, dkeys, 30), CACHET_OK);
    for (int i = 0; i < 60; i++)
        items[i] = (cachet_item){keys[i], NULL, 0, CACHET_EINVAL};
    assert_int_equal(cachet_get_multi(r, items, 60), CACHET_OK);
    for (int i = 0; i < 60; i++) {
        if (i % 2 == 0) {
            assert_int_equal(items[i].status, CACHET_MISS);
        } else {
            assert_int_equal(items[i].status, CACHET_OK);
            assert_int_equal(items[i].len, strlen(vals[i]));
            assert_memory_equal(items[i].value, vals[i], items[i].len);
            cachet_free(items[i].value);
        }
    }
    /* both servers hold some of them: the work was spread */
    memcached_st *a = raw_one(s1.port), *b = raw_one(s2.port);
    int on_a = 0, on_b = 0;
    for (int i = 1; i < 60; i += 2) {
        size_t vl;
        uint32_t fl;
        memcached_return_t rc;
        char *x = memcached_get(a, keys[i], strlen(keys[i]), &vl, &fl, &rc);
        on_a += x != NULL;
        free(x);
        x = memcached_get(b, keys[i], strlen(keys[i]), &vl, &fl, &rc);
        on_b += x != NULL;
        free(x);
    }
    assert_int_equal(on_a + on_b, 30);
    assert_true(on_a > 3 && on_b > 3);
    memcached_free(a);
    memcached_free(b);

    cachet_region_close(r);
    test_server_stop(&s1);
    test_server_stop(&s2);
}

static void bad_arguments(void **state)
{
    static const char *const bad[][2] = {
        {"arg:nonsense", "1"},
        {"arg:distribution", "random"},
        {"arg:replicas", "0"},
        {"arg:max_value_size", "0"},
        {"arg:max_value_size", "2147483648"},
        {"enable_socket_keepalive", "true"},
        {"enable_retry_client", "true"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cachet_config *c = cachet_config_new();
        cachet_region *r = NULL;
        char arg[256];
        cachet_config_set(c, "enabled", "true");
        cachet_config_set(c, "backend", "dogpile.cache.memcached");
        if (strncmp(bad[i][0], "arg:", 4) == 0) {
            snprintf(arg, sizeof arg, "%s:%s", bad[i][0] + 4, bad[i][1]);
            cachet_config_set(c, "backend_argument", arg);
        } else {
            cachet_config_set(c, bad[i][0], bad[i][1]);
        }
        assert_int_equal(cachet_region_open(c, &r), CACHET_EINVAL);
        const char *needle = strncmp(bad[i][0], "arg:", 4) == 0 ? bad[i][0] + 4 : bad[i][0];
        if (!strstr(cachet_errmsg(), needle))
            fail_msg("message does not name %s: %s", needle, cachet_errmsg());
        cachet_config_free(c);
    }
    /* malformed urls */
    static const char *const urls[] = {"127.0.0.1:0", "127.0.0.1:99999", "[::1", "unix:rel",
                                       "h:1:0"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        cachet_config *c = cachet_config_new();
        cachet_region *r = NULL;
        char arg[256];
        cachet_config_set(c, "enabled", "true");
        cachet_config_set(c, "backend", "oslo_cache.memcache_pool");
        snprintf(arg, sizeof arg, "url:%s", urls[i]);
        cachet_config_set(c, "backend_argument", arg);
        assert_int_equal(cachet_region_open(c, &r), CACHET_EINVAL);
        assert_non_null(strstr(cachet_errmsg(), "url"));
        cachet_config_free(c);
    }
    /* IPv6 and unix socket forms parse (nothing listens: not used) */
    cachet_region *r = open_mc("memcached", "[::1]:11311:2,unix:/nonexistent/sock,h:11211:3",
                               NULL);
    cachet_region_close(r);
}

/* ---- consistent hashing ---- */

static void consistent_hashing(void **state)
{
    test_server s[4];
    int ports[4];
    char url3[256], url4[256], key[32];
    int kept_ring = 0, hits = 0;
    const int N = 600;
    (void)state;

    for (int i = 0; i < 4; i++) {
        assert_int_equal(test_memcached_start(&s[i], 0, NULL), 0);
        ports[i] = s[i].port;
    }
    /* the ring alone: libmemcached's placement for 3 then 4 servers */
    memcached_st *r3 = raw_ring(ports, 3), *r4 = raw_ring(ports, 4);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "ch-%d", i);
        kept_ring += port_of_key(r3, key) == port_of_key(r4, key);
    }
    memcached_free(r3);
    memcached_free(r4);
    assert_true(kept_ring * 3 >= N * 2);

    /* the backend: values set with 3 servers are still found with 4 */
    cachet_region *a = open_mc("memcached", url_of(url3, sizeof url3, ports, 3), NULL);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "ch-%d", i);
        assert_int_equal(cachet_set(a, key, key, strlen(key)), CACHET_OK);
    }
    cachet_region_close(a);
    cachet_region *b = open_mc("oslo_cache.memcache_pool", url_of(url4, sizeof url4, ports, 4),
                               NULL);
    for (int i = 0; i < N; i++) {
        void *v;
        size_t n;
        snprintf(key, sizeof key, "ch-%d", i);
        if (cachet_get(b, key, &v, &n) == CACHET_OK) {
            hits++;
            cachet_free(v);
        }
    }
    cachet_region_close(b);
    print_message("consistent hashing: %d/%d keys on the same server (ring), %d/%d hits "
                  "after adding a 4th server\n", kept_ring, N, hits, N);
    assert_true(hits * 3 >= N * 2);
    assert_int_equal(hits, kept_ring);   /* the backend places keys as the ring does */
    for (int i = 0; i < 4; i++)
        test_server_stop(&s[i]);
}

/* ---- a killed server, restarted ---- */

static int creator_calls;
static cachet_status make_value(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg, (void)key;
    creator_calls++;
    *value = strdup("created");
    *len = 7;
    return CACHET_OK;
}

static void killed_server(void **state)
{
    const char *backend = backend_of(state);
    test_server s1, s2;
    int ports[2];
    char url[256], k1[32], k2[32];
    void *v;
    size_t n;

    start_two(&s1, &s2, ports);
    memcached_st *ring = raw_ring(ports, 2);
    key_on(ring, s1.port, "live-", k1, sizeof k1);
    key_on(ring, s2.port, "doomed-", k2, sizeof k2);
    memcached_free(ring);
    cachet_region *r = open_mc(backend, url_of(url, sizeof url, ports, 2),
                               "memcache_socket_timeout", "1", "memcache_dead_retry", "2", NULL);
    assert_int_equal(cachet_set(r, k1, "one", 3), CACHET_OK);
    assert_int_equal(cachet_set(r, k2, "two", 3), CACHET_OK);

    test_server_kill(&s2);
    double t0 = th_now_s();
    assert_int_equal(cachet_get(r, k2, &v, &n), CACHET_EUNAVAILABLE);
    assert_true(th_now_s() - t0 < 1.5);              /* within socket_timeout (and a margin) */
    t0 = th_now_s();
    for (int i = 0; i < 20; i++)                  /* and then at once */
        assert_int_equal(cachet_get(r, k2, &v, &n), CACHET_EUNAVAILABLE);
    assert_true(th_now_s() - t0 < 0.5);
    /* get_or_create falls back to the creator */
    creator_calls = 0;
    assert_int_equal(cachet_get_or_create(r, k2, make_value, NULL, &v, &n), CACHET_OK);
    assert_int_equal(creator_calls, 1);
    assert_memory_equal(v, "created", 7);
    cachet_free(v);
    /* the other server's keys are unaffected */
    assert_int_equal(cachet_get(r, k1, &v, &n), CACHET_OK);
    assert_memory_equal(v, "one", 3);
    cachet_free(v);

    /* restarted: not used before dead_retry, used after */
    assert_int_equal(test_server_restart(&s2), 0);
    assert_int_equal(cachet_set(r, k2, "back", 4), CACHET_EUNAVAILABLE);
    sleep_s(2.3);
    assert_int_equal(cachet_set(r, k2, "back", 4), CACHET_OK);
    assert_int_equal(cachet_get(r, k2, &v, &n), CACHET_OK);
    assert_memory_equal(v, "back", 4);
    cachet_free(v);
    cachet_region_close(r);
    test_server_stop(&s1);
    test_server_stop(&s2);
}

/* A server that hangs (SIGSTOP) keeps its data; when it comes back,
 * pool_flush_on_reconnect empties it, and without it the value is there. */
static void flush_on_reconnect(void **state)
{
    (void)state;
    for (int flush = 0; flush < 2; flush++) {
        test_server s1, s2;
        int ports[2];
        char url[256], k2[32];
        void *v;
        size_t n;

        start_two(&s1, &s2, ports);
        memcached_st *ring = raw_ring(ports, 2);
        key_on(ring, s2.port, "hung-", k2, sizeof k2);
        memcached_free(ring);
        cachet_region *r = open_mc("oslo_cache.memcache_pool", url_of(url, sizeof url, ports, 2),
                                   "memcache_socket_timeout", "0.5", "memcache_dead_retry", "1",
                                   "memcache_pool_flush_on_reconnect", flush ? "true" : "false",
                                   NULL);
        assert_int_equal(cachet_set(r, k2, "kept", 4), CACHET_OK);
        assert_int_equal(test_server_freeze(&s2), 0);
        double t0 = th_now_s();
        assert_int_equal(cachet_get(r, k2, &v, &n), CACHET_EUNAVAILABLE);
        assert_true(th_now_s() - t0 < 1.5);
        assert_int_equal(cachet_get(r, k2, &v, &n), CACHET_EUNAVAILABLE);
        test_server_thaw(&s2);
        sleep_s(1.3);
        cachet_status st = cachet_get(r, k2, &v, &n);
        if (flush) {
            assert_int_equal(st, CACHET_MISS);
        } else {
            assert_int_equal(st, CACHET_OK);
            assert_memory_equal(v, "kept", 4);
            cachet_free(v);
        }
        cachet_region_close(r);
        test_server_stop(&s1);
        test_server_stop(&s2);
    }
}

/* ---- a host that accepts and never answers ---- */

typedef struct {
    cachet_region *r;
    int thread_no, from, count;
    double t_open;
    int slow, slow_late;
    double worst;
} stall_job;

static void one_get(stall_job *j, int i)
{
    char key[32];
    void *v;
    size_t n;
    snprintf(key, sizeof key, "dh-%d-%d", j->thread_no, i);
    double t0 = th_now_s();
    if (cachet_get(j->r, key, &v, &n) == CACHET_OK)
        cachet_free(v);
    double t1 = th_now_s(), d = t1 - t0;
    if (d > j->worst)
        j->worst = d;
    if (d >= 0.5) {
        j->slow++;
        if (t0 - j->t_open > 2.0)
            j->slow_late++;
    }
}

static void *long_lived(void *arg)
{
    stall_job *j = arg;
    for (int i = 0; i < j->count; i++) {
        one_get(j, j->from + i);
        sleep_s(0.005);
    }
    return NULL;
}

typedef struct {
    stall_job *j;
    int i;
} one_req;

static void *one_request(void *arg)
{
    one_req *q = arg;
    one_get(q->j, q->i);
    return NULL;
}

/* A lane that starts a new thread for every request (as a server that
 * spawns a thread per request would). */
static void *spawner(void *arg)
{
    stall_job *j = arg;
    for (int i = 0; i < j->count; i++) {
        pthread_t t;
        one_req q = {j, j->from + i};
        assert_int_equal(pthread_create(&t, NULL, one_request, &q), 0);
        pthread_join(t, NULL);
        sleep_s(0.005);
    }
    return NULL;
}

/* Runs 4 threads x 40 gets; returns the number of gets >= 0.5 s. */
static int run_stall_round(cachet_region *r, int per_request, int *late)
{
    pthread_t t[4];
    stall_job j[4];
    double t_open = th_now_s();
    int slow = 0;
    *late = 0;
    for (int i = 0; i < 4; i++) {
        j[i] = (stall_job){r, i, 0, 40, t_open, 0, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, per_request ? spawner : long_lived, &j[i]),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        slow += j[i].slow;
        *late += j[i].slow_late;
    }
    return slow;
}

static void dead_host_stalls(void **state)
{
    test_server s1, s2;
    test_blackhole bh;
    char url[256];
    (void)state;

    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&s2, 0, NULL), 0);
    assert_int_equal(test_blackhole_start(&bh), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", s1.port, s2.port, bh.port);
    for (int b = 0; b < 2; b++)
        for (int per_request = 0; per_request < 2; per_request++) {
            cachet_region *r = open_mc(backends[b], url, "memcache_socket_timeout", "1",
                                       "memcache_dead_retry", "30", NULL);
            int late, slow = run_stall_round(r, per_request, &late);
            print_message("%s, %s: %d of 160 gets took >= 0.5 s (%d after the first 2 s)\n",
                          backends[b], per_request ? "a new thread per request"
                                                   : "long-lived threads", slow, late);
            assert_true(slow <= 1);
            assert_int_equal(late, 0);
            cachet_region_close(r);
        }
    test_blackhole_stop(&bh);
    test_server_stop(&s1);
    test_server_stop(&s2);
}

/* get_multi with a dead host: the live servers' values still arrive. */
static void get_multi_with_dead_host(void **state)
{
    test_server s1;
    test_blackhole bh;
    char url[256], keys[40][32];
    cachet_item items[40];
    int ports[2];
    (void)state;

    start_live_and_hole(&s1, &bh, ports);
    memcached_st *ring = raw_ring(ports, 2);
    cachet_region *r = open_mc("oslo_cache.memcache_pool", url_of(url, sizeof url, ports, 2),
                               "memcache_socket_timeout", "0.5", "memcache_dead_retry", "30",
                               NULL);
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof keys[i], "gm-%d", i);
        if (port_of_key(ring, keys[i]) == s1.port)
            assert_int_equal(cachet_set(r, keys[i], "v", 1), CACHET_OK);
        items[i] = (cachet_item){keys[i], NULL, 0, CACHET_EINVAL};
    }
    for (int round = 0; round < 2; round++) {
        double t0 = th_now_s();
        assert_int_equal(cachet_get_multi(r, items, 40), CACHET_EUNAVAILABLE);
        double d = th_now_s() - t0;
        assert_true(round == 0 ? d < 1.5 : d < 0.2);   /* one probe stall, then none */
        for (int i = 0; i < 40; i++) {
            if (port_of_key(ring, keys[i]) == s1.port) {
                assert_int_equal(items[i].status, CACHET_OK);
                cachet_free(items[i].value);
            } else {
                assert_int_equal(items[i].status, CACHET_EUNAVAILABLE);
            }
            items[i] = (cachet_item){keys[i], NULL, 0, CACHET_EINVAL};
        }
    }
    memcached_free(ring);
    cachet_region_close(r);
    test_blackhole_stop(&bh);
    test_server_stop(&s1);
}

/* ---- the pool ---- */

typedef struct {
    cachet_region *r;
    const char *key;
} holder_arg;

static void *hold_conn(void *arg)
{
    holder_arg *h = arg;
    void *v;
    size_t n;
    cachet_get(h->r, h->key, &v, &n);   /* probes the black hole: holds the only connection */
    return NULL;
}

static void pool_exhaustion(void **state)
{
    test_server s1;
    test_blackhole bh;
    char url[256], kl[32], kb[32];
    int ports[2];
    void *v;
    size_t n;
    pthread_t t;
    (void)state;

    start_live_and_hole(&s1, &bh, ports);
    memcached_st *ring = raw_ring(ports, 2);
    key_on(ring, s1.port, "pl-", kl, sizeof kl);
    key_on(ring, bh.port, "pb-", kb, sizeof kb);
    memcached_free(ring);
    cachet_region *r = open_mc("oslo_cache.memcache_pool", url_of(url, sizeof url, ports, 2),
                               "memcache_socket_timeout", "3", "memcache_dead_retry", "30",
                               "memcache_pool_maxsize", "1",
                               "memcache_pool_connection_get_timeout", "1", NULL);
    assert_int_equal(cachet_set(r, kl, "x", 1), CACHET_OK);
    holder_arg h = {r, kb};
    assert_int_equal(pthread_create(&t, NULL, hold_conn, &h), 0);
    sleep_s(0.3);
    double t0 = th_now_s();
    assert_int_equal(cachet_get(r, kl, &v, &n), CACHET_ETIMEDOUT);
    double d = th_now_s() - t0;
    assert_true(d > 0.8 && d < 2.0);
    pthread_join(t, NULL);
    /* the connection is back: the live server works again at once */
    assert_int_equal(cachet_get(r, kl, &v, &n), CACHET_OK);
    cachet_free(v);
    cachet_region_close(r);
    test_blackhole_stop(&bh);
    test_server_stop(&s1);
}

/* Idle pool members go after pool_unused_timeout. */
static void report_conns(void *arg, const char *name, const char *value)
{
    if (strcmp(name, "connections") == 0)
        *(long *)arg = atol(value);
}

typedef struct {
    cachet_region *r;
    pthread_barrier_t *b;
} burst_arg;

static void *burst(void *arg)
{
    burst_arg *a = arg;
    char key[32];
    snprintf(key, sizeof key, "burst-%lu", (unsigned long)pthread_self());
    pthread_barrier_wait(a->b);
    for (int i = 0; i < 200; i++)
        cachet_set(a->r, key, "b", 1);
    return NULL;
}

static void pool_idle_connections_closed(void **state)
{
    test_server s1;
    char url[64];
    pthread_t t[4];
    pthread_barrier_t b;
    long conns = -1;
    void *v;
    size_t n;
    (void)state;

    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d", s1.port);
    cachet_region *r = open_mc("oslo_cache.memcache_pool", url, "memcache_pool_maxsize", "4",
                               "memcache_pool_unused_timeout", "1", NULL);
    assert_int_equal(cachet_set(r, "warm", "w", 1), CACHET_OK);
    pthread_barrier_init(&b, NULL, 4);
    burst_arg a = {r, &b};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, burst, &a), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&b);
    assert_int_equal(cachet_backend_report(r, report_conns, &conns), CACHET_OK);
    assert_true(conns >= 1 && conns <= 4);          /* never over pool_maxsize */
    sleep_s(1.5);
    assert_int_equal(cachet_get(r, "warm", &v, &n), CACHET_OK);   /* reaps the idle ones */
    cachet_free(v);
    assert_int_equal(cachet_backend_report(r, report_conns, &conns), CACHET_OK);
    assert_int_equal(conns, 1);
    cachet_region_close(r);
    test_server_stop(&s1);
}

/* A service that starts with many threads: their first operations reach a
 * server nobody has probed yet at the same moment.  One probes; the others
 * wait for it briefly instead of failing fast, so none sees an error from a
 * healthy server. */
typedef struct {
    cachet_region *r;
    pthread_barrier_t *b;
    int index;
    cachet_status st;
} first_arg;

static void *first_contact(void *arg)
{
    first_arg *a = arg;
    char key[32];
    snprintf(key, sizeof key, "first-%d", a->index);
    pthread_barrier_wait(a->b);
    a->st = cachet_set(a->r, key, "f", 1);
    return NULL;
}

static void concurrent_first_contact(void **state)
{
    enum { N = 8 };
    test_server s1, s2;
    char url[96];
    (void)state;

    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&s2, 0, NULL), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d,127.0.0.1:%d", s1.port, s2.port);
    for (size_t k = 0; k < 2; k++) {
        for (int round = 0; round < 5; round++) {
            cachet_region *r = open_mc(backends[k], url, NULL);
            pthread_t t[N];
            first_arg a[N];
            pthread_barrier_t b;
            pthread_barrier_init(&b, NULL, N);
            for (int i = 0; i < N; i++) {
                a[i] = (first_arg){r, &b, i, CACHET_EBACKEND};
                assert_int_equal(pthread_create(&t[i], NULL, first_contact, &a[i]), 0);
            }
            for (int i = 0; i < N; i++)
                pthread_join(t[i], NULL);
            pthread_barrier_destroy(&b);
            for (int i = 0; i < N; i++)
                if (a[i].st != CACHET_OK)
                    fail_msg("%s round %d thread %d: first set: %s", backends[k], round, i,
                             cachet_strerror(a[i].st));
            cachet_region_close(r);
        }
    }
    test_server_stop(&s1);
    test_server_stop(&s2);
}

/* SASL (binary protocol), with the oslo options a user pastes: a memcached
 * started with -S and a sasldb made by saslpasswd2 (Debian's sasl2-bin).
 * The right password round-trips; a wrong one fails with a message that
 * says authentication failed and never contains the password. */
static void sasl_auth(void **state)
{
    char dir[] = "/tmp/cachet-sasl-XXXXXX", path[256], cmd[512], url[64];
    test_server s1;
    void *v;
    size_t n;
    FILE *f;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/memcached.conf", dir);
    assert_non_null(f = fopen(path, "w"));
    fprintf(f, "mech_list: plain\nsasldb_path: %s/sasldb2\n", dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "printf 'Op3n-Sesame' | saslpasswd2 -p -a memcached -c -f %s/sasldb2 alice",
             dir);
    if (system(cmd) != 0)
        fail_msg("saslpasswd2 failed (is Debian's sasl2-bin installed?)");
    setenv("SASL_CONF_PATH", dir, 1);      /* read by the memcached we start */
    assert_int_equal(test_memcached_start(&s1, 0, "-S"), 0);
    unsetenv("SASL_CONF_PATH");
    snprintf(url, sizeof url, "127.0.0.1:%d", s1.port);
    for (size_t k = 0; k < 2; k++) {
        cachet_region *r = open_mc(backends[k], url, "memcache_sasl_enabled", "true",
                                   "memcache_username", "alice", "memcache_password", "Op3n-Sesame",
                                   NULL);
        { cachet_status st0 = cachet_set(r, "sasl-key", "authed", 6); if (st0 != CACHET_OK) fail_msg("%s: set with the right password: %s", backends[k], cachet_errmsg()); }
        assert_int_equal(cachet_get(r, "sasl-key", &v, &n), CACHET_OK);
        assert_int_equal(n, 6);
        assert_memory_equal(v, "authed", 6);
        cachet_free(v);
        cachet_region_close(r);

        r = open_mc(backends[k], url, "memcache_sasl_enabled", "true", "memcache_username", "alice",
                    "memcache_password", "Wr0ng-Guess", NULL);
        cachet_status st = cachet_set(r, "sasl-key", "x", 1);
        assert_true(st < 0);
        const char *msg = cachet_errmsg();
        if (!strcasestr(msg, "auth"))
            fail_msg("%s: a refused login should say so: %s", backends[k], msg);
        assert_null(strstr(msg, "Wr0ng-Guess"));
        assert_int_equal(cachet_get(r, "sasl-key", &v, &n) < 0, 1);   /* nothing read */
        cachet_region_close(r);
    }
    test_server_stop(&s1);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Every url form and both distributions, for real: a memcached listening on
 * 127.0.0.1 and [::1], and one on a unix socket; modula as well as ketama.
 * Each key must come back, through both backends. */
static void url_forms_round_trip(void **state)
{
    char dir[] = "/tmp/cachet-mcunix-XXXXXX", sock[128], pidfile[128], cmd[512], url[256];
    test_server s1;
    FILE *f;
    long upid = 0;
    (void)state;

    assert_int_equal(test_memcached_start(&s1, 0, "-l ::1"), 0);
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof sock, "%s/mc.sock", dir);
    snprintf(pidfile, sizeof pidfile, "%s/mc.pid", dir);
    snprintf(cmd, sizeof cmd, "memcached -d -u root -s %s -P %s", sock, pidfile);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 200 && access(sock, F_OK) != 0; i++)
        sleep_s(0.01);
    for (int i = 0; i < 200 && !upid; i++) {       /* -d writes the pid file after forking */
        if ((f = fopen(pidfile, "r"))) {
            if (fscanf(f, "%ld", &upid) != 1)
                upid = 0;
            fclose(f);
        }
        if (!upid)
            sleep_s(0.01);
    }
    assert_true(upid > 0);
    static const char *const forms[] = {"127.0.0.1:%d", "[::1]:%d", "127.0.0.1:%d:3", "unix:%s", "%s"};
    for (size_t u = 0; u < sizeof forms / sizeof forms[0]; u++) {
        if (u < 3)
            snprintf(url, sizeof url, forms[u], s1.port);
        else
            snprintf(url, sizeof url, forms[u], sock);
        for (size_t k = 0; k < 2; k++) {
            for (int modula = 0; modula < 2; modula++) {
                char key[64];
                void *v;
                size_t n;
                cachet_region *r = modula
                    ? open_mc(backends[k], url, "arg:distribution", "modula", NULL)
                    : open_mc(backends[k], url, NULL);
                snprintf(key, sizeof key, "form-%zu-%zu-%d", u, k, modula);
                cachet_status st = cachet_set(r, key, url, strlen(url));
                if (st != CACHET_OK)
                    fail_msg("%s on %s: set: %s", backends[k], url, cachet_errmsg());
                assert_int_equal(cachet_get(r, key, &v, &n), CACHET_OK);
                assert_int_equal(n, strlen(url));
                assert_memory_equal(v, url, n);
                cachet_free(v);
                cachet_region_close(r);
            }
        }
    }
    kill((pid_t)upid, SIGTERM);
    test_server_stop(&s1);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- fork ---- */

static void fork_parent_and_child(void **state)
{
    const char *backend = backend_of(state);
    test_server s1;
    char url[64];
    void *v;
    size_t n;
    int status;

    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d", s1.port);
    cachet_region *r = open_mc(backend, url, NULL);
    assert_int_equal(cachet_set(r, "before", "parent", 6), CACHET_OK);
    pid_t pid = fork();
    if (pid == 0) {
        int ok = cachet_get(r, "before", &v, &n) == CACHET_OK && n == 6 &&
                 memcmp(v, "parent", 6) == 0;
        for (int i = 0; ok && i < 50; i++) {
            char k[32];
            snprintf(k, sizeof k, "child-%d", i);
            ok = cachet_set(r, k, "c", 1) == CACHET_OK;
        }
        _exit(ok ? 0 : 1);
    }
    assert_true(pid > 0);
    /* the parent goes on meanwhile on its own connections */
    for (int i = 0; i < 50; i++) {
        char k[32];
        snprintf(k, sizeof k, "parent-%d", i);
        assert_int_equal(cachet_set(r, k, "p", 1), CACHET_OK);
        assert_int_equal(cachet_get(r, k, &v, &n), CACHET_OK);
        cachet_free(v);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* and after the child is gone */
    assert_int_equal(cachet_get(r, "child-49", &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(cachet_get(r, "before", &v, &n), CACHET_OK);
    cachet_free(v);
    cachet_region_close(r);
    test_server_stop(&s1);
}

/* fork() while one thread probes a hung host and another waits for that
 * probe: the child must not hang in the fork handlers (glibc's
 * pthread_cond_destroy on a condvar with a waiter that only exists in the
 * parent never returns). */
typedef struct {
    cachet_region *r;
    const char *key;
    double delay;
} wait_get_arg;

static void *delayed_get(void *arg)
{
    wait_get_arg *a = arg;
    void *v;
    size_t n;
    sleep_s(a->delay);
    if (cachet_get(a->r, a->key, &v, &n) == CACHET_OK)
        cachet_free(v);
    return NULL;
}

static void fork_during_probe(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        test_blackhole bh;
        char url[64];
        int status = 0;
        pthread_t prober, waiter;

        assert_int_equal(test_blackhole_start(&bh), 0);
        snprintf(url, sizeof url, "127.0.0.1:%d", bh.port);
        cachet_region *r = open_mc(backends[k], url, "memcache_socket_timeout", "2", NULL);
        wait_get_arg a1 = {r, "fork-probe-1", 0}, a2 = {r, "fork-probe-2", 0.05};
        assert_int_equal(pthread_create(&prober, NULL, delayed_get, &a1), 0);
        assert_int_equal(pthread_create(&waiter, NULL, delayed_get, &a2), 0);
        sleep_s(0.1);                       /* the prober stalls, the waiter waits */
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);                       /* the handlers have run: done */
        assert_true(pid > 0);
        double t0 = th_now_s();
        pid_t got = 0;
        while ((got = waitpid(pid, &status, WNOHANG)) == 0 && th_now_s() - t0 < 5)
            sleep_s(0.01);
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("%s: the child hung in fork() for 5 s", backends[k]);
        }
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        pthread_join(prober, NULL);
        pthread_join(waiter, NULL);
        cachet_region_close(r);
        test_blackhole_stop(&bh);
    }
}

/* ---- the distributed lock ---- */

static const char *lock_log;
static cachet_status slow_creator(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg, (void)key;
    int fd = open(lock_log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd >= 0) {
        (void)!write(fd, "x", 1);
        close(fd);
    }
    sleep_s(0.5);
    *value = strdup("made once");
    *len = 9;
    return CACHET_OK;
}

static void distributed_lock(void **state)
{
    test_server s1, s2;
    char url[128], logpath[] = "/tmp/cachet-lock-XXXXXX";
    int go[2], status;
    pid_t pids[4];
    struct stat sb;
    (void)state;

    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&s2, 0, NULL), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d,127.0.0.1:%d", s1.port, s2.port);
    int fd = mkstemp(logpath);
    assert_true(fd >= 0);
    close(fd);
    lock_log = logpath;
    assert_int_equal(pipe(go), 0);
    for (int p = 0; p < 4; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            char c;
            close(go[1]);
            cachet_region *r = open_mc(p % 2 ? "oslo_cache.memcache_pool" : "memcached", url,
                                       "arg:distributed_lock", "true", NULL);
            void *v;
            size_t n;
            (void)!read(go[0], &c, 1);
            int ok = cachet_get_or_create(r, "the-lock-key", slow_creator, NULL, &v, &n) ==
                         CACHET_OK && n == 9 && memcmp(v, "made once", 9) == 0;
            cachet_region_close(r);
            _exit(ok ? 0 : 1);
        }
        assert_true(pids[p] > 0);
    }
    close(go[0]);
    sleep_s(0.3);
    assert_int_equal(write(go[1], "gggg", 4), 4);
    close(go[1]);
    for (int p = 0; p < 4; p++) {
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(stat(logpath, &sb), 0);
    print_message("distributed_lock: the creator ran %lld time(s) in 4 processes\n",
                  (long long)sb.st_size);
    assert_int_equal(sb.st_size, 1);
    unlink(logpath);

    /* turned off, the lock is not offered: every process may create */
    cachet_region *r = open_mc("memcached", url, NULL);
    void *v;
    size_t n;
    assert_int_equal(cachet_get_or_create(r, "other-key", make_value, NULL, &v, &n), CACHET_OK);
    cachet_free(v);
    cachet_region_close(r);
    test_server_stop(&s1);
    test_server_stop(&s2);
}

/* ---- oversize values ---- */

static void oversize_value(void **state)
{
    test_server s1;
    char url[64];
    void *v;
    size_t n, big = 2u << 20;
    char *buf = malloc(big);
    (void)state;

    memset(buf, 'b', big);
    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);   /* -I 1m, the default */
    snprintf(url, sizeof url, "127.0.0.1:%d", s1.port);
    for (int b = 0; b < 2; b++) {
        cachet_region *r = open_mc(backends[b], url, NULL);
        assert_int_equal(cachet_set(r, "big", "small", 5), CACHET_OK);
        assert_int_equal(cachet_set(r, "big", buf, big), CACHET_ETOOBIG);
        assert_int_equal(cachet_get(r, "big", &v, &n), CACHET_MISS);   /* the old one is gone */
        /* through set_multi too */
        assert_int_equal(cachet_set(r, "big2", "small", 5), CACHET_OK);
        cachet_item items[2] = {{"big2", buf, big, 0}, {"fine", "ok", 2, 0}};
        assert_int_equal(cachet_set_multi(r, items, 2), CACHET_ETOOBIG);
        assert_int_equal(items[0].status, CACHET_ETOOBIG);
        assert_int_equal(items[1].status, CACHET_OK);
        assert_int_equal(cachet_get(r, "big2", &v, &n), CACHET_MISS);
        assert_int_equal(cachet_get(r, "fine", &v, &n), CACHET_OK);
        cachet_free(v);
        /* a value that fits (900 KB) is stored */
        assert_int_equal(cachet_set(r, "big", buf, 900000), CACHET_OK);
        assert_int_equal(cachet_get(r, "big", &v, &n), CACHET_OK);
        assert_int_equal(n, 900000);
        cachet_free(v);
        cachet_region_close(r);
    }
    free(buf);
    test_server_stop(&s1);
}

/* ---- replicas ---- */

static void replicas(void **state)
{
    test_server s1, s2, s3;
    int ports[3];
    char url[256], key[32];
    void *v;
    size_t n;
    (void)state;

    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&s2, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&s3, 0, NULL), 0);
    ports[0] = s1.port;
    ports[1] = s2.port;
    ports[2] = s3.port;
    cachet_region *r = open_mc("memcached", url_of(url, sizeof url, ports, 3),
                               "memcache_socket_timeout", "1", "memcache_dead_retry", "30",
                               "arg:replicas", "2", NULL);
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "rep-%d", i);
        assert_int_equal(cachet_set(r, key, "r", 1), CACHET_OK);
    }
    /* each key on exactly two servers */
    memcached_st *raw[3] = {raw_one(s1.port), raw_one(s2.port), raw_one(s3.port)};
    for (int i = 0; i < 60; i++) {
        int copies = 0;
        snprintf(key, sizeof key, "rep-%d", i);
        for (int s = 0; s < 3; s++) {
            size_t vl;
            uint32_t fl;
            memcached_return_t rc;
            char *x = memcached_get(raw[s], key, strlen(key), &vl, &fl, &rc);
            copies += x != NULL;
            free(x);
        }
        assert_int_equal(copies, 2);
    }
    for (int s = 0; s < 3; s++)
        memcached_free(raw[s]);
    /* one server down: every key is still read */
    test_server_kill(&s2);
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "rep-%d", i);
        assert_int_equal(cachet_get(r, key, &v, &n), CACHET_OK);
        cachet_free(v);
    }
    cachet_item items[60];
    char keys[60][32];
    for (int i = 0; i < 60; i++) {
        snprintf(keys[i], sizeof keys[i], "rep-%d", i);
        items[i] = (cachet_item){keys[i], NULL, 0, 0};
    }
    assert_int_equal(cachet_get_multi(r, items, 60), CACHET_OK);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(items[i].status, CACHET_OK);
        cachet_free(items[i].value);
    }
    cachet_region_close(r);
    test_server_stop(&s1);
    test_server_stop(&s3);
}

/* ---- the lock never expires before lock_timeout ---- */

typedef struct {
    int inside;          /* holders right now */
    int overlaps;        /* a section entered while another was in it */
    int sections;
} lock_shared;

/* 25 critical sections of 20 ms under one 1 s lock, each a lock/unlock pair
 * of the plugin.  memcached's clock ticks in whole seconds: with exptime 1
 * a lock taken just before a tick vanished at the tick, milliseconds later,
 * and another process entered (2-5 overlaps of 125 with the old code).
 * The plugin itself drives the lock (the region only takes it inside
 * get_or_create). */
static int lock_sections(const char *backend, const char *url, int binary, lock_shared *sh)
{
    const cachet_backend_ops *ops = th_backend_plugin(backend);
    cachet_backend_arg args[] = {{"url", url}, {"distributed_lock", "true"},
                                 {"lock_timeout", "1"}, {"binary", binary ? "true" : "false"}};
    cachet_backend_params p = {args, 4, 0};
    void *st = NULL, *tok;
    int done = 0;
    if (ops->open(&p, &st) != CACHET_OK)
        return 1;
    for (double t0 = th_now_s(); done < 25 && th_now_s() - t0 < 60;) {
        cachet_status rc = ops->lock(st, "crit", 4, &tok);
        if (rc == CACHET_MISS) {
            sleep_s(0.001);
            continue;
        }
        if (rc != CACHET_OK)
            break;
        if (__atomic_fetch_add(&sh->inside, 1, __ATOMIC_SEQ_CST) != 0)
            __atomic_fetch_add(&sh->overlaps, 1, __ATOMIC_SEQ_CST);
        sleep_s(0.02);
        __atomic_fetch_sub(&sh->inside, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&sh->sections, 1, __ATOMIC_SEQ_CST);
        if (ops->unlock(st, "crit", 4, tok) != CACHET_OK)
            break;
        done++;
    }
    ops->close(st);
    return done == 25 ? 0 : 1;
}

static void lock_outlives_lock_timeout(void **state)
{
    test_server s1;
    char url[64];
    int status;
    pid_t pids[5];
    lock_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                           -1, 0);
    (void)state;

    assert_true(sh != MAP_FAILED);
    memset(sh, 0, sizeof *sh);
    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d", s1.port);
    for (int p = 0; p < 5; p++) {
        pids[p] = fork();
        if (pids[p] == 0)   /* both backends, both protocols: the same lock item */
            _exit(lock_sections(p % 2 ? "memcache_pool" : "memcached", url, p >= 2, sh));
        assert_true(pids[p] > 0);
    }
    for (int p = 0; p < 5; p++) {
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(sh->sections, 125);
    if (sh->overlaps)
        fail_msg("%d of 125 critical sections overlapped another", sh->overlaps);
    munmap(sh, sizeof *sh);
    test_server_stop(&s1);
}

/* ---- max_value_size ---- */

/* A reply declaring more than max_value_size is refused before anything is
 * allocated (a protocol error, the host stays up); a set of more is
 * CACHET_ETOOBIG before anything is sent, and the old value is gone. */
static void max_value_size_bound(void **state)
{
    test_server s1;
    char url[64], big[5000];
    void *v;
    size_t n;
    (void)state;

    memset(big, 'v', sizeof big);
    assert_int_equal(test_memcached_start(&s1, 0, NULL), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d", s1.port);
    for (int b = 0; b < 2; b++)
        for (int binary = 0; binary < 2; binary++) {
            cachet_region *wide = open_mc(backends[b], url, NULL);
            cachet_region *r = open_mc(backends[b], url, "arg:max_value_size", "1000",
                                       "arg:binary", binary ? "true" : "false", NULL);
            assert_int_equal(cachet_set(wide, "bound-big", big, sizeof big), CACHET_OK);
            assert_int_equal(cachet_get(r, "bound-big", &v, &n), CACHET_EBACKEND);
            if (!strstr(cachet_errmsg(), "protocol error") ||
                !strstr(cachet_errmsg(), "max_value_size"))
                fail_msg("%s: %s", backends[b], cachet_errmsg());
            cachet_item items[2] = {{"bound-big", NULL, 0, 0}, {"bound-small", NULL, 0, 0}};
            assert_int_equal(cachet_set(r, "bound-small", "ok", 2), CACHET_OK);   /* still up */
            assert_int_equal(cachet_get_multi(r, items, 2), CACHET_EBACKEND);
            assert_null(items[0].value);
            assert_null(items[1].value);       /* the same server's answer: all or nothing */
            /* writes over the bound: never sent */
            assert_int_equal(cachet_set(r, "bound-small", big, sizeof big), CACHET_ETOOBIG);
            assert_non_null(strstr(cachet_errmsg(), "max_value_size"));
            assert_int_equal(cachet_get(wide, "bound-small", &v, &n), CACHET_MISS);  /* old gone */
            cachet_item w[2] = {{"bound-w", big, sizeof big, 0}, {"bound-x", "x", 1, 0}};
            assert_int_equal(cachet_set(wide, "bound-w", "old", 3), CACHET_OK);
            assert_int_equal(cachet_set_multi(r, w, 2), CACHET_ETOOBIG);
            assert_int_equal(w[0].status, CACHET_ETOOBIG);
            assert_int_equal(w[1].status, CACHET_OK);
            assert_int_equal(cachet_get(wide, "bound-w", &v, &n), CACHET_MISS);  /* old gone */
            assert_int_equal(cachet_get(r, "bound-x", &v, &n), CACHET_OK);
            cachet_free(v);
            cachet_region_close(r);
            cachet_region_close(wide);
        }
    test_server_stop(&s1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_ON(keys_spread_over_two_servers, dogpile_memcached),
        TH_ON(keys_spread_over_two_servers, oslo_memcache_pool),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(consistent_hashing),
        TH_ON(killed_server, dogpile_memcached),
        TH_ON(killed_server, oslo_memcache_pool),
        cmocka_unit_test(flush_on_reconnect),
        cmocka_unit_test(dead_host_stalls),
        cmocka_unit_test(get_multi_with_dead_host),
        cmocka_unit_test(pool_exhaustion),
        cmocka_unit_test(pool_idle_connections_closed),
        cmocka_unit_test(concurrent_first_contact),
        cmocka_unit_test(sasl_auth),
        cmocka_unit_test(url_forms_round_trip),
        TH_ON(fork_parent_and_child, dogpile_memcached),
        TH_ON(fork_parent_and_child, oslo_memcache_pool),
        cmocka_unit_test(fork_during_probe),
        cmocka_unit_test(distributed_lock),
        cmocka_unit_test(oversize_value),
        cmocka_unit_test(replicas),
        cmocka_unit_test(lock_outlives_lock_timeout),
        cmocka_unit_test(max_value_size_bound),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
