/* The redis backends against real redis-server / redis-sentinel processes
 * on loopback: the config a user pastes, multi-ops in one round trip,
 * server-side TTL, foreign bytes, AUTH, a killed and restarted server, a
 * host that never answers, fork, the distributed lock across processes,
 * sentinel failover and a cluster with a slot migrating under a reader. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <cachet/cachet.h>
#include "servers.h"

#define HDR 24   /* cachet's value header (docs/value-format.md) */

static test_server redis_main;   /* shared by the plain tests */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* A raw hiredis command on port (db selected first when db > 0). */
static redisReply *raw(int port, int db, const char *fmt, ...)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *r;
    va_list ap;
    if (!c || c->err)
        fail_msg("raw connect to %d: %s", port, c ? c->errstr : "oom");
    redisSetTimeout(c, tv);
    if (db > 0)
        freeReplyObject(redisCommand(c, "SELECT %d", db));
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r)
        fail_msg("raw command on %d: %s", port, c->errstr);
    redisFree(c);
    return r;
}

static long long raw_int(int port, int db, const char *fmt, const char *arg)
{
    redisReply *r = raw(port, db, fmt, arg);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* calls=N of one command in INFO commandstats, 0 if never called */
static long stat_calls(int port, const char *cmd)
{
    redisReply *r = raw(port, 0, "INFO commandstats");
    char needle[64];
    const char *p;
    long n = 0;
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", cmd);
    if ((p = strstr(r->str, needle)) != NULL)
        n = strtol(p + strlen(needle), NULL, 10);
    freeReplyObject(r);
    return n;
}

static cachet_region *open_text(const char *text)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    if (cachet_config_parse(c, text, "cache") != CACHET_OK)
        fail_msg("config: %s", cachet_errmsg());
    if (cachet_region_open(c, &r) != CACHET_OK)
        fail_msg("open: %s", cachet_errmsg());
    cachet_config_free(c);
    return r;
}

/* [cache] for the redis backend on port with extra lines */
static cachet_region *open_redis(int port, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = dogpile.cache.redis\n"
             "backend_argument = url:redis://127.0.0.1:%d/0\n%s", port, extra ? extra : "");
    return open_text(text);
}

static int setup_main(void **state)
{
    if (test_redis_start(&redis_main, 0, NULL) != 0)
        return -1;
    return 0;
}

static int teardown_main(void **state)
{
    test_server_stop(&redis_main);
    return 0;
}

static void check_value(cachet_region *r, const char *key, const char *want)
{
    void *v;
    size_t n;
    cachet_status st = cachet_get(r, key, &v, &n);
    if (st != CACHET_OK)
        fail_msg("get %s: %s (%s)", key, cachet_strerror(st), cachet_errmsg());
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    cachet_free(v);
}

/* ---- part 1: the single server ---- */

static void pasted_config_round_trip_lands_in_db_2(void **state)
{
    char text[512];
    const char bin[] = {'x', 0, 'y', (char)0xff, '\r', '\n'};
    void *v;
    size_t n;
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = dogpile.cache.redis\n"
             "backend_argument = url:redis://127.0.0.1:%d/2\nexpiration_time = 300\n",
             redis_main.port);
    cachet_region *r = open_text(text);
    assert_string_equal(cachet_region_backend(r), "redis");
    assert_int_equal(cachet_set(r, "pasted", bin, sizeof bin), CACHET_OK);
    assert_int_equal(cachet_get(r, "pasted", &v, &n), CACHET_OK);
    assert_int_equal(n, sizeof bin);
    assert_memory_equal(v, bin, n);
    cachet_free(v);
    /* raw hiredis: the key is in db 2, not in db 0, with header + payload */
    assert_int_equal(raw_int(redis_main.port, 2, "STRLEN %s", "pasted"), HDR + sizeof bin);
    assert_int_equal(raw_int(redis_main.port, 0, "EXISTS %s", "pasted"), 0);
    /* empty value, delete, miss */
    assert_int_equal(cachet_set(r, "empty", "", 0), CACHET_OK);
    assert_int_equal(cachet_get(r, "empty", &v, &n), CACHET_OK);
    assert_int_equal(n, 0);
    cachet_free(v);
    assert_int_equal(cachet_delete(r, "pasted"), CACHET_OK);
    assert_int_equal(cachet_get(r, "pasted", &v, &n), CACHET_MISS);
    assert_int_equal(raw_int(redis_main.port, 2, "EXISTS %s", "pasted"), 0);
    assert_int_equal(cachet_delete(r, "never-there"), CACHET_OK);
    cachet_region_close(r);
}

static void oslo_redis_options_build_the_url(void **state)
{
    char text[512];
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = dogpile.cache.redis\n"
             "redis_server = 127.0.0.1:%d\nredis_db = 3\nredis_socket_timeout = 0.5\n",
             redis_main.port);
    cachet_region *r = open_text(text);
    assert_int_equal(cachet_set(r, "oslo", "v", 1), CACHET_OK);
    check_value(r, "oslo", "v");
    assert_int_equal(raw_int(redis_main.port, 3, "EXISTS %s", "oslo"), 1);
    cachet_region_close(r);
}

static void host_port_db_arguments(void **state)
{
    char text[512];
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = redis\n"
             "backend_argument = host:127.0.0.1\nbackend_argument = port:%d\n"
             "backend_argument = db:4\n", redis_main.port);
    cachet_region *r = open_text(text);
    assert_int_equal(cachet_set(r, "hp", "v", 1), CACHET_OK);
    assert_int_equal(raw_int(redis_main.port, 4, "EXISTS %s", "hp"), 1);
    cachet_region_close(r);
}

static void multi_ops_take_one_round_trip(void **state)
{
    cachet_region *r = open_redis(redis_main.port, NULL);
    char keys[100][16], vals[100][24];
    cachet_item items[100];
    const char *dkeys[50];

    for (int i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof keys[i], "m%d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d", i * 13);
        items[i] = (cachet_item){keys[i], vals[i], strlen(vals[i]), CACHET_EINVAL};
    }
    freeReplyObject(raw(redis_main.port, 0, "CONFIG RESETSTAT"));
    assert_int_equal(cachet_set_multi(r, items, 100), CACHET_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(items[i].status, CACHET_OK);
    for (int i = 0; i < 50; i++)
        dkeys[i] = keys[2 * i];
    assert_int_equal(cachet_delete_multi(r, dkeys, 50), CACHET_OK);
    for (int i = 0; i < 100; i++)
        items[i] = (cachet_item){keys[i], NULL, 0, CACHET_EINVAL};
    assert_int_equal(cachet_get_multi(r, items, 100), CACHET_OK);
    for (int i = 0; i < 100; i++) {
        if (i % 2 == 0) {
            assert_int_equal(items[i].status, CACHET_MISS);
        } else {
            assert_int_equal(items[i].status, CACHET_OK);
            assert_int_equal(items[i].len, strlen(vals[i]));
            assert_memory_equal(items[i].value, vals[i], items[i].len);
            cachet_free(items[i].value);
        }
    }
    /* one MGET and one DEL; the 100 SETs went in one pipeline */
    assert_int_equal(stat_calls(redis_main.port, "mget"), 1);
    assert_int_equal(stat_calls(redis_main.port, "get"), 0);
    assert_int_equal(stat_calls(redis_main.port, "del"), 1);
    assert_int_equal(stat_calls(redis_main.port, "set"), 100);
    cachet_region_close(r);
}

static void server_side_ttl(void **state)
{
    char extra[] = "expiration_time = 10\nbackend_argument = redis_expiration_time:20\n";
    cachet_region *r = open_redis(redis_main.port, extra);
    long long ttl;
    assert_int_equal(cachet_set(r, "ttl", "v", 1), CACHET_OK);
    ttl = raw_int(redis_main.port, 0, "TTL %s", "ttl");
    assert_true(ttl > 0 && ttl <= 20);
    cachet_region_close(r);
    /* backend_expiration_time (newer oslo.cache) becomes redis_expiration_time */
    r = open_redis(redis_main.port, "expiration_time = 10\nbackend_expiration_time = 30\n");
    assert_int_equal(cachet_set(r, "ttl2", "v", 1), CACHET_OK);
    ttl = raw_int(redis_main.port, 0, "TTL %s", "ttl2");
    assert_true(ttl > 20 && ttl <= 30);
    cachet_region_close(r);
    /* none by default */
    r = open_redis(redis_main.port, NULL);
    assert_int_equal(cachet_set(r, "ttl3", "v", 1), CACHET_OK);
    assert_int_equal(raw_int(redis_main.port, 0, "TTL %s", "ttl3"), -1);
    cachet_region_close(r);
}

static void foreign_bytes_are_a_miss(void **state)
{
    cachet_region *r = open_redis(redis_main.port, NULL);
    cachet_stat_counters s;
    void *v;
    size_t n;
    freeReplyObject(raw(redis_main.port, 0, "SET %s %s", "foreign", "written by someone else"));
    freeReplyObject(raw(redis_main.port, 0, "SET %s %s", "short", "ab"));
    assert_int_equal(cachet_get(r, "foreign", &v, &n), CACHET_MISS);
    assert_int_equal(cachet_get(r, "short", &v, &n), CACHET_MISS);
    /* a hash under the key: WRONGTYPE is an error, not a crash */
    freeReplyObject(raw(redis_main.port, 0, "HSET %s %s %s", "ahash", "f", "v"));
    assert_true(cachet_get(r, "ahash", &v, &n) != CACHET_OK);
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_true(s.corrupt >= 2);
    cachet_region_close(r);
}

static void wrong_password_is_clear_and_secret(void **state)
{
    static test_server s;
    const char *secret = "Tr0ub4dor-wrong-pw";
    char text[512];
    cachet_config *c;
    cachet_region *r = NULL;
    cachet_status st;

    assert_int_equal(test_redis_start(&s, 0, "requirepass right-password-123"), 0);
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = dogpile.cache.redis\n"
             "backend_argument = url:redis://:%s@127.0.0.1:%d/0\n", secret, s.port);
    c = cachet_config_new();
    assert_int_equal(cachet_config_parse(c, text, NULL), CACHET_OK);
    st = cachet_region_open(c, &r);
    assert_int_not_equal(st, CACHET_OK);
    assert_null(r);
    assert_non_null(strstr(cachet_errmsg(), "AUTH"));
    assert_null(strstr(cachet_errmsg(), secret));
    cachet_config_free(c);
    /* the oslo options, with a username (ACL) */
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = dogpile.cache.redis\n"
             "redis_server = 127.0.0.1:%d\nredis_username = default\nredis_password = %s\n",
             s.port, secret);
    c = cachet_config_new();
    assert_int_equal(cachet_config_parse(c, text, NULL), CACHET_OK);
    assert_int_not_equal(cachet_region_open(c, &r), CACHET_OK);
    assert_null(strstr(cachet_errmsg(), secret));
    cachet_config_free(c);
    /* a malformed url shows no password either */
    c = cachet_config_new();
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = redis\n"
             "backend_argument = url:redis://user:%s@127.0.0.1:notaport/0\n", secret);
    assert_int_equal(cachet_config_parse(c, text, NULL), CACHET_OK);
    assert_int_equal(cachet_region_open(c, &r), CACHET_EINVAL);
    assert_non_null(strstr(cachet_errmsg(), "url"));
    assert_null(strstr(cachet_errmsg(), secret));
    cachet_config_free(c);
    /* the right password works, percent-encoded in the url */
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = redis\n"
             "backend_argument = url:redis://:right%%2Dpassword-123@127.0.0.1:%d/1\n", s.port);
    r = open_text(text);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    check_value(r, "k", "v");
    cachet_region_close(r);
    test_server_stop(&s);
}

static void unix_socket_url(void **state)
{
    static test_server s;
    char extra[256], text[512], path[200];
    int n = snprintf(path, sizeof path, "/tmp/cachet-redis-test-%d.sock", (int)getpid());
    assert_true(n > 0);
    snprintf(extra, sizeof extra, "unixsocket %s\nunixsocketperm 700", path);
    assert_int_equal(test_redis_start(&s, 0, extra), 0);
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = redis\n"
             "backend_argument = url:unix://%s?db=5\n", path);
    cachet_region *r = open_text(text);
    assert_int_equal(cachet_set(r, "unix", "v", 1), CACHET_OK);
    check_value(r, "unix", "v");
    assert_int_equal(raw_int(s.port, 5, "EXISTS %s", "unix"), 1);
    cachet_region_close(r);
    test_server_stop(&s);
    unlink(path);
}

static void bad_arguments_name_the_argument(void **state)
{
    static const struct { const char *line, *needle; } bad[] = {
        {"backend_argument = url:http://x/", "url"},
        {"backend_argument = url:rediss://127.0.0.1/0", "TLS"},
        {"backend_argument = socket_timeout:abc", "socket_timeout"},
        {"backend_argument = pool_maxsize:0", "pool_maxsize"},
        {"backend_argument = bogus:1", "bogus"},
        {"backend_argument = distributed_lock:maybe", "distributed_lock"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        cachet_config *c = cachet_config_new();
        cachet_region *r = NULL;
        snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = redis\n%s\n", bad[i].line);
        assert_int_equal(cachet_config_parse(c, text, NULL), CACHET_OK);
        assert_int_equal(cachet_region_open(c, &r), CACHET_EINVAL);
        if (!strstr(cachet_errmsg(), bad[i].needle))
            fail_msg("'%s' does not name '%s'", cachet_errmsg(), bad[i].needle);
        cachet_config_free(c);
    }
}

/* many threads, a small pool: every call is served, no more than
 * pool_maxsize connections are ever open */
typedef struct {
    cachet_region *r;
    int id, errors;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    char key[32], val[32];
    for (int i = 0; i < 300; i++) {
        void *v;
        size_t n;
        snprintf(key, sizeof key, "t%d-%d", w->id, i % 10);
        snprintf(val, sizeof val, "v%d-%d", w->id, i);
        if (cachet_set(w->r, key, val, strlen(val)) != CACHET_OK)
            w->errors++;
        if (cachet_get(w->r, key, &v, &n) != CACHET_OK || n != strlen(val) ||
            memcmp(v, val, n) != 0)
            w->errors++;
        else
            cachet_free(v);
    }
    return NULL;
}

static long connected_clients(int port)
{
    redisReply *r = raw(port, 0, "INFO clients");
    const char *p = strstr(r->str, "connected_clients:");
    long n = p ? strtol(p + 18, NULL, 10) : -1;
    freeReplyObject(r);
    return n;
}

static void threads_share_a_bounded_pool(void **state)
{
    cachet_region *r = open_redis(redis_main.port, "backend_argument = pool_maxsize:3\n");
    pthread_t t[8];
    worker w[8];
    long before = connected_clients(redis_main.port);
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){r, i, 0};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    /* before counts the open-time connection, now also the raw one */
    assert_true(connected_clients(redis_main.port) <= before + 3);
    cachet_region_close(r);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(pasted_config_round_trip_lands_in_db_2),
        cmocka_unit_test(oslo_redis_options_build_the_url),
        cmocka_unit_test(host_port_db_arguments),
        cmocka_unit_test(multi_ops_take_one_round_trip),
        cmocka_unit_test(server_side_ttl),
        cmocka_unit_test(foreign_bytes_are_a_miss),
        cmocka_unit_test(wrong_password_is_clear_and_secret),
        cmocka_unit_test(unix_socket_url),
        cmocka_unit_test(bad_arguments_name_the_argument),
        cmocka_unit_test(threads_share_a_bounded_pool),
    };
    int failed;
    setenv("CACHET_PLUGIN_PATH", TEST_BUILDDIR "/backends/.libs", 1);
    failed = cmocka_run_group_tests_name("redis", plain, setup_main, teardown_main);
    return failed;
}
