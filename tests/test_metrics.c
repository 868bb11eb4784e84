/* cachet_metrics_prometheus(): valid text exposition (tests/prom_check.c,
 * promtool's rules), snprintf-like sizing, the region's counters with
 * backend="NAME", one up/down gauge per server (the servers operation:
 * the servers_probe test backend, and memcached and redis themselves),
 * the backends' figures as samples of their own, never free text in a
 * label, and the metrics proxy's histograms (every operation, the
 * creator's time), under threads that scrape while others work. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cachet/cachet.h>
#include "helpers.h"
#include "servers.h"
#include "prom_check.h"

/* The whole text, checked; the caller frees it. */
static char *scrape(cachet_region *r)
{
    size_t n = cachet_metrics_prometheus(r, NULL, 0), m;
    char *buf;
    const char *bad;
    assert_true(n > 0);
    buf = malloc(n + 4096);             /* the text may grow between the calls */
    assert_non_null(buf);
    m = cachet_metrics_prometheus(r, buf, n + 4096);
    assert_true(m < n + 4096);
    assert_int_equal(strlen(buf), m);
    if ((bad = prom_check(buf))) {
        fprintf(stderr, "%s\n", buf);
        fail_msg("invalid exposition: %s", bad);
    }
    return buf;
}

static double sample(const char *text, const char *series)
{
    double v;
    if (!prom_value(text, series, &v)) {
        fprintf(stderr, "%s\n", text);
        fail_msg("no sample %s", series);
    }
    return v;
}

/* The checker itself refuses what it must (else every test below proves nothing). */
static void checker_refuses_invalid_text(void **state)
{
    (void)state;
    assert_null(prom_check("# HELP a_total x\n# TYPE a_total counter\na_total{backend=\"m\"} 1\n"));
    assert_non_null(prom_check("a_total{backend=\"m\"} 1"));                 /* no newline */
    assert_non_null(prom_check("a{backend=\"m\",x=\"a\\qb\"} 1\n"));          /* bad escape */
    assert_non_null(prom_check("a{backend=\"m\"} 1\na{backend=\"m\"} 2\n")); /* repeated */
    assert_non_null(prom_check("a{backend=\"m\"} 1\nb{backend=\"m\"} 1\na{backend=\"n\"} 1\n"));
    assert_non_null(prom_check("a{x=\"m\"} 1\n"));                           /* no backend */
    assert_non_null(prom_check("# TYPE a counter\na{backend=\"m\"} 1\n"));   /* no _total */
    assert_non_null(prom_check("a{backend=\"m\"} 1\na{backend=\"n\",x=\"1\"} 1\n"));
    assert_non_null(prom_check("# TYPE h histogram\nh_bucket{backend=\"m\",le=\"1\"} 2\n"
                               "h_bucket{backend=\"m\",le=\"+Inf\"} 1\n"
                               "h_count{backend=\"m\"} 1\n"));               /* not cumulative */
    assert_non_null(prom_check("# TYPE h histogram\nh_bucket{backend=\"m\",le=\"1\"} 1\n"
                               "h_bucket{backend=\"m\",le=\"+Inf\"} 2\n"
                               "h_count{backend=\"m\"} 3\n"));               /* count */
    assert_non_null(prom_check("a{backend=\"m\"} one\n"));
}

static void counters_carry_the_backend(void **state)
{
    (void)state;
    cachet_region *r = th_open("memory", NULL);
    void *v;
    size_t len;
    char *t;
    static const char *const names[] = {
        "hits", "misses", "sets", "deletes", "errors", "creator_calls", "lock_waits",
        "stale_served", "corrupt", "fallbacks", NULL,
    };
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    assert_int_equal(cachet_get(r, "k", &v, &len), CACHET_OK);
    cachet_free(v);
    assert_int_equal(cachet_get(r, "k", &v, &len), CACHET_OK);
    cachet_free(v);
    assert_int_equal(cachet_get(r, "absent", &v, &len), CACHET_MISS);
    assert_int_equal(cachet_delete(r, "k"), CACHET_OK);
    t = scrape(r);
    for (int i = 0; names[i]; i++) {
        char series[128], help[128];
        snprintf(series, sizeof series, "cachet_%s_total{backend=\"memory\"}", names[i]);
        (void)sample(t, series);
        snprintf(help, sizeof help, "# TYPE cachet_%s_total counter\n", names[i]);
        th_assert_contains(t, help);
    }
    assert_true(sample(t, "cachet_hits_total{backend=\"memory\"}") == 2);
    assert_true(sample(t, "cachet_misses_total{backend=\"memory\"}") == 1);
    assert_true(sample(t, "cachet_sets_total{backend=\"memory\"}") == 1);
    assert_true(sample(t, "cachet_deletes_total{backend=\"memory\"}") == 1);
    /* the memory backend's own figures, as samples */
    assert_true(sample(t, "cachet_backend_entries{backend=\"memory\"}") == 0);
    (void)sample(t, "cachet_backend_max_count{backend=\"memory\"}");
    /* no histograms without the metrics proxy */
    assert_null(strstr(t, "cachet_operation_seconds"));
    free(t);
    cachet_region_close(r);
}

static void sized_like_snprintf(void **state)
{
    (void)state;
    cachet_region *r = th_open("memory", NULL);
    size_t n = cachet_metrics_prometheus(r, NULL, 0), m;
    char *full = malloc(n + 1), small[64];
    assert_non_null(full);
    memset(full, 'x', n + 1);
    assert_int_equal(cachet_metrics_prometheus(r, full, n + 1), n);
    assert_int_equal(strlen(full), n);
    memset(small, 'x', sizeof small);
    m = cachet_metrics_prometheus(r, small, 10);
    assert_int_equal(m, n);
    assert_int_equal(strlen(small), 9);                 /* cut, NUL-terminated */
    assert_memory_equal(small, full, 9);
    assert_int_equal(small[10], 'x');                   /* nothing past size */
    /* exactly n bytes: the last byte is given to the NUL */
    assert_int_equal(cachet_metrics_prometheus(r, full, n), n);
    assert_int_equal(strlen(full), n - 1);
    assert_int_equal(cachet_metrics_prometheus(NULL, small, sizeof small), 0);
    free(full);
    cachet_region_close(r);
}

static cachet_region *open_probe(void)
{
    static const char *const opts[] = {
        "backend_argument", "up:10.0.0.1:11211,10.0.0.2:11211",
        "backend_argument", "down:10.0.0.3:6379", NULL,
    };
    return th_open(TEST_PLUGIN_PATH("servers_probe"), opts);
}

static void one_gauge_per_server(void **state)
{
    (void)state;
    cachet_region *r = open_probe();
    char *t = scrape(r);
    th_assert_contains(t, "# TYPE cachet_server_up gauge\n");
    assert_true(sample(t, "cachet_server_up{backend=\"servers_probe\",server=\"10.0.0.1:11211\"}") == 1);
    assert_true(sample(t, "cachet_server_up{backend=\"servers_probe\",server=\"10.0.0.2:11211\"}") == 1);
    assert_true(sample(t, "cachet_server_up{backend=\"servers_probe\",server=\"10.0.0.3:6379\"}") == 0);
    assert_true(sample(t, "cachet_server_failures_total{backend=\"servers_probe\","
                          "server=\"10.0.0.3:6379\"}") == 3);
    /* the servers' own figures, one sample each, under a server label */
    assert_true(sample(t, "cachet_backend_server_curr_items{backend=\"servers_probe\","
                          "server=\"10.0.0.2:11211\"}") == 42);
    assert_true(sample(t, "cachet_backend_server_bytes{backend=\"servers_probe\","
                          "server=\"10.0.0.1:11211\"}") == 1024);
    assert_true(sample(t, "cachet_backend_connections{backend=\"servers_probe\"}") == 2);
    assert_true(sample(t, "cachet_backend_distributed_lock{backend=\"servers_probe\"}") == 0);
    assert_true(sample(t, "cachet_backend_weird_name_with_dots{backend=\"servers_probe\"}") == 7);
    /* text stays text, escaped */
    assert_true(sample(t, "cachet_backend_info{backend=\"servers_probe\",name=\"protocol\","
                          "value=\"te\\\"xt\\\\\"}") == 1);
    /* the free-text server lines never become a label */
    assert_null(strstr(t, "failures="));
    free(t);
    cachet_region_close(r);
}

/* ---- the metrics proxy ---- */

static cachet_status make_value(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg, (void)key;
    *value = strdup("made");
    *len = 4;
    return CACHET_OK;
}

static void histograms_of_every_operation(void **state)
{
    (void)state;
    static const char *const opts[] = {"cachet_proxies", "metrics", NULL};
    static const char *const ops[] = {
        "get", "set", "delete", "get_multi", "set_multi", "delete_multi", "lock", "create", NULL,
    };
    cachet_region *r = th_open("memory", opts);
    cachet_item items[2] = {{.key = "a", .value = "1", .len = 1}, {.key = "b", .value = "2", .len = 1}};
    const char *keys[2] = {"a", "b"};
    void *v;
    size_t len;
    char *t, series[160];

    for (int i = 0; i < 3; i++)
        assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cachet_get(r, "k", &v, &len), CACHET_OK);
        cachet_free(v);
    }
    assert_int_equal(cachet_set_multi(r, items, 2), CACHET_OK);
    items[0].value = items[1].value = NULL;
    assert_int_equal(cachet_get_multi(r, items, 2), CACHET_OK);
    cachet_free(items[0].value);
    cachet_free(items[1].value);
    assert_int_equal(cachet_delete_multi(r, keys, 2), CACHET_OK);
    assert_int_equal(cachet_delete(r, "k"), CACHET_OK);
    assert_int_equal(cachet_get_or_create(r, "made", make_value, NULL, &v, &len), CACHET_OK);
    cachet_free(v);
    t = scrape(r);
    th_assert_contains(t, "# TYPE cachet_operation_seconds histogram\n");
    for (int i = 0; ops[i]; i++) {
        snprintf(series, sizeof series,
                 "cachet_operation_seconds_bucket{backend=\"memory\",op=\"%s\",le=\"+Inf\"}", ops[i]);
        (void)sample(t, series);
    }
    /* 5 gets, and get_or_create's two of "made" (before and after its lock) */
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"get\"}") == 7);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"set\"}") == 4);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"delete\"}") == 1);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"set_multi\"}") == 1);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"get_multi\"}") == 1);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"delete_multi\"}") == 1);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"create\"}") == 1);
    assert_true(sample(t, "cachet_operation_seconds_sum{backend=\"memory\",op=\"get\"}") > 0);
    free(t);
    cachet_region_close(r);
}

static void proxy_refuses_unknown_arguments(void **state)
{
    (void)state;
    static const char *const opts[] = {"cachet_proxies", "metrics",
                                       "cachet_proxy_argument", "metrics:buckets:3", NULL};
    assert_int_equal(th_open_status("memory", opts), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "buckets");
}

/* ---- scrapes while other threads work (TSan sees the counters) ---- */

typedef struct {
    cachet_region *r;
    int            stop;
} work;

static void *worker(void *arg)
{
    work *w = arg;
    char key[32];
    for (int i = 0; i < 2000; i++) {
        void *v;
        size_t len;
        snprintf(key, sizeof key, "k%d", i % 50);
        if (cachet_set(w->r, key, "v", 1) != CACHET_OK)
            return "set failed";
        if (cachet_get(w->r, key, &v, &len) == CACHET_OK)
            cachet_free(v);
    }
    return NULL;
}

static void scrapes_while_others_work(void **state)
{
    (void)state;
    static const char *const opts[] = {"cachet_proxies", "metrics", NULL};
    work w = {th_open("memory", opts), 0};
    pthread_t th[3];
    char *t;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w), 0);
    for (int i = 0; i < 20; i++)
        free(scrape(w.r));              /* valid at every moment: _count == +Inf */
    for (int i = 0; i < 3; i++) {
        void *res;
        pthread_join(th[i], &res);
        assert_null(res);
    }
    t = scrape(w.r);
    assert_true(sample(t, "cachet_sets_total{backend=\"memory\"}") == 6000);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"memory\",op=\"set\"}") == 6000);
    free(t);
    cachet_region_close(w.r);
}

/* ---- real servers ---- */

#ifdef HAVE_LIBMEMCACHED
static void memcached_servers_and_their_figures(void **state)
{
    (void)state;
    test_server s;
    char servers[64], series[256];
    char *t;
    cachet_region *r;
    assert_int_equal(test_memcached_start(&s, 0, NULL), 0);
    snprintf(servers, sizeof servers, "127.0.0.1:%d", s.port);
    {
        const char *opts[] = {"memcache_servers", servers, "cachet_proxies", "metrics", NULL};
        r = th_open("memcached", opts);
    }
    assert_int_equal(cachet_set(r, "k", "value", 5), CACHET_OK);
    t = scrape(r);
    assert_true(sample(t, "cachet_sets_total{backend=\"memcached\"}") == 1);
    snprintf(series, sizeof series, "cachet_backend_server_curr_items{backend=\"memcached\","
             "server=\"%s\"}", servers);
    assert_true(sample(t, series) >= 1);
    snprintf(series, sizeof series, "cachet_backend_server_bytes{backend=\"memcached\","
             "server=\"%s\"}", servers);
    assert_true(sample(t, series) > 0);
    snprintf(series, sizeof series, "cachet_backend_server_evictions{backend=\"memcached\","
             "server=\"%s\"}", servers);
    (void)sample(t, series);
    assert_true(sample(t, "cachet_backend_distributed_lock{backend=\"memcached\"}") == 0);
    assert_null(strstr(t, "failures="));
    snprintf(series, sizeof series, "cachet_server_up{backend=\"memcached\",server=\"%s\"}",
             servers);
    assert_true(sample(t, series) == 1);
    free(t);
    cachet_region_close(r);
    /* `cachet stats` shows the server's figures, not only its own zeros */
    {
        char cmd[512], out[8192];
        size_t n;
        FILE *p;
        snprintf(cmd, sizeof cmd, "%s/src/cachet -o backend=memcached -o "
                 "backend_argument=url:%s stats", TEST_BUILDDIR, servers);
        assert_non_null(p = popen(cmd, "r"));
        n = fread(out, 1, sizeof out - 1, p);
        out[n] = '\0';
        assert_int_equal(pclose(p), 0);
        snprintf(series, sizeof series, "%s curr_items", servers);
        th_assert_contains(out, series);
        snprintf(series, sizeof series, "%s evictions", servers);
        th_assert_contains(out, series);
        th_assert_contains(out, " up ");          /* answered: not "unknown" */
        th_assert_contains(out, "distributed_lock               false");
    }
    test_server_stop(&s);
}
#endif

#ifdef HAVE_LIBMEMCACHED
/* A killed server reads 0 once the backend has marked it down, and a
 * scrape does not wait on it. */
static void a_dead_server_reads_0(void **state)
{
    (void)state;
    test_server s;
    char servers[64], series[256];
    char *t;
    cachet_region *r;
    void *v;
    size_t len;
    double t0;
    assert_int_equal(test_memcached_start(&s, 0, NULL), 0);
    snprintf(servers, sizeof servers, "127.0.0.1:%d", s.port);
    {
        const char *opts[] = {"memcache_servers", servers, NULL};
        r = th_open("memcached", opts);
    }
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    test_server_kill(&s);
    assert_true(cachet_get(r, "k", &v, &len) != CACHET_OK);
    t0 = th_now_s();
    t = scrape(r);
    assert_true(th_now_s() - t0 < 3);
    snprintf(series, sizeof series, "cachet_server_up{backend=\"memcached\",server=\"%s\"}",
             servers);
    assert_true(sample(t, series) == 0);
    snprintf(series, sizeof series, "cachet_server_failures_total{backend=\"memcached\","
             "server=\"%s\"}", servers);
    assert_true(sample(t, series) >= 1);
    free(t);
    cachet_region_close(r);
}
#endif

#ifdef HAVE_HIREDIS
static void redis_servers_and_their_figures(void **state)
{
    (void)state;
    test_server s;
    char url[96], server[64], series[256];
    char *t;
    cachet_region *r;
    assert_int_equal(test_redis_start(&s, 0, NULL), 0);
    snprintf(url, sizeof url, "url:redis://127.0.0.1:%d/0", s.port);
    snprintf(server, sizeof server, "127.0.0.1:%d", s.port);
    {
        const char *opts[] = {"backend_argument", url, "cachet_proxies", "metrics", NULL};
        r = th_open("redis", opts);
    }
    assert_int_equal(cachet_set(r, "k", "value", 5), CACHET_OK);
    t = scrape(r);
    snprintf(series, sizeof series, "cachet_backend_server_used_memory{backend=\"redis\","
             "server=\"%s\"}", server);
    assert_true(sample(t, series) > 0);
    snprintf(series, sizeof series, "cachet_backend_server_keys{backend=\"redis\","
             "server=\"%s\"}", server);
    assert_true(sample(t, series) >= 1);
    assert_true(sample(t, "cachet_backend_distributed_lock{backend=\"redis\"}") == 0);
    assert_true(sample(t, "cachet_operation_seconds_count{backend=\"redis\",op=\"set\"}") == 1);
    snprintf(series, sizeof series, "cachet_server_up{backend=\"redis\",server=\"%s\"}", server);
    assert_true(sample(t, series) == 1);
    free(t);
    cachet_region_close(r);
    /* the lock's histogram: get_or_create with the distributed lock */
    {
        const char *opts[] = {"backend_argument", url, "backend_argument", "distributed_lock:true",
                              "cachet_proxies", "metrics", NULL};
        void *v;
        size_t len;
        r = th_open("redis", opts);
        assert_int_equal(cachet_get_or_create(r, "locked", make_value, NULL, &v, &len), CACHET_OK);
        cachet_free(v);
        t = scrape(r);
        assert_true(sample(t, "cachet_operation_seconds_count{backend=\"redis\",op=\"lock\"}") == 1);
        assert_true(sample(t, "cachet_operation_seconds_count{backend=\"redis\",op=\"create\"}") == 1);
        assert_true(sample(t, "cachet_backend_distributed_lock{backend=\"redis\"}") == 1);
        free(t);
        cachet_region_close(r);
    }
    test_server_stop(&s);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checker_refuses_invalid_text),
        cmocka_unit_test(counters_carry_the_backend),
        cmocka_unit_test(sized_like_snprintf),
        cmocka_unit_test(one_gauge_per_server),
        cmocka_unit_test(histograms_of_every_operation),
        cmocka_unit_test(proxy_refuses_unknown_arguments),
        cmocka_unit_test(scrapes_while_others_work),
#ifdef HAVE_LIBMEMCACHED
        cmocka_unit_test(memcached_servers_and_their_figures),
        cmocka_unit_test(a_dead_server_reads_0),
#endif
#ifdef HAVE_HIREDIS
        cmocka_unit_test(redis_servers_and_their_figures),
#endif
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    test_servers_stop_all();
    return rc;
}
