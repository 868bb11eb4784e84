/* The compress proxy on memory, memcached and redis (real servers):
 * round trips of compressible, small and incompressible values, single and
 * multi; values written without the proxy still read; values written with
 * it are refused (a counted miss) by a region without it; on redis, the
 * stored bytes carry the header flag and are smaller, and a damaged frame
 * or one declaring more than compress:max_decompressed is a miss counted
 * corrupt; cachet_compact keeps compressed values; bad arguments are
 * refused naming the argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cachet/cachet.h>
#include "helpers.h"
#include "servers.h"
#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

typedef struct {
    const char *name, *backend;
    char        arg[128];      /* the server's option value */
    const char *argname;       /* memcache_servers / backend_argument; NULL for memory */
    int         port;
} target;

static test_server mc, rd;

/* Opens t with the compress proxy (compress != 0) and more option pairs. */
static cachet_region *open_t(const target *t, int compress, const char *a1, const char *v1)
{
    const char *o[12];
    int n = 0;
    if (t->argname) {
        o[n++] = t->argname;
        o[n++] = t->arg;
    }
    if (compress) {
        o[n++] = "cachet_proxies";
        o[n++] = "compress";
    }
    if (a1) {
        o[n++] = a1;
        o[n++] = v1;
    }
    o[n] = NULL;
    return th_open(t->backend, o);
}

static double report_value(cachet_region *r, const char *name);

typedef struct {
    const char *name;
    char        value[64];
    int         found;
} lookup;

static void find_line(void *arg, const char *name, const char *value)
{
    lookup *l = arg;
    if (strcmp(name, l->name) == 0) {
        snprintf(l->value, sizeof l->value, "%s", value);
        l->found = 1;
    }
}

static double report_value(cachet_region *r, const char *name)
{
    lookup l = {name, "", 0};
    assert_int_equal(cachet_backend_report(r, find_line, &l), CACHET_OK);
    if (!l.found)
        fail_msg("no report line %s", name);
    return strtod(l.value, NULL);
}

static char *text(size_t n)            /* compressible: words repeated */
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = "the quick brown fox jumps over the lazy dog "[i % 44];
    s[n] = '\0';
    return s;
}

static char *noise(size_t n)           /* incompressible */
{
    char *s = malloc(n);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        s[i] = (char)x;
    }
    return s;
}

static void round_trips(void **state)
{
    target *t = *state;
    cachet_region *r = open_t(t, 1, NULL, NULL);
    char *big = text(20000), *rnd = noise(5000);
    cachet_item items[2] = {{.key = "m1", .value = big, .len = 20000},
                            {.key = "m2", .value = "short", .len = 5}};

    assert_int_equal(cachet_set(r, "big", big, 20000), CACHET_OK);
    th_assert_hit(r, "big", big, 20000);
    assert_true(report_value(r, "compress_compressed_total") == 1);
    assert_true(report_value(r, "compress_decompressed_total") == 1);
    assert_true(report_value(r, "compress_bytes_out_total") < 20000 / 10);
    /* under min_size: as it is, no counter moves */
    assert_int_equal(cachet_set(r, "small", "tiny value", 10), CACHET_OK);
    th_assert_hit(r, "small", "tiny value", 10);
    assert_true(report_value(r, "compress_compressed_total") == 1);
    /* does not shrink: stored as it is */
    assert_int_equal(cachet_set(r, "noise", rnd, 5000), CACHET_OK);
    th_assert_hit(r, "noise", rnd, 5000);
    assert_true(report_value(r, "compress_stored_as_is_total") == 1);
    /* multi-operations */
    assert_int_equal(cachet_set_multi(r, items, 2), CACHET_OK);
    items[0].value = items[1].value = NULL;
    assert_int_equal(cachet_get_multi(r, items, 2), CACHET_OK);
    assert_int_equal(items[0].status, CACHET_OK);
    assert_int_equal(items[0].len, 20000);
    assert_memory_equal(items[0].value, big, 20000);
    assert_int_equal(((char *)items[0].value)[20000], '\0');    /* the NUL past the value */
    assert_int_equal(items[1].len, 5);
    assert_memory_equal(items[1].value, "short", 5);
    cachet_free(items[0].value);
    cachet_free(items[1].value);
    assert_true(report_value(r, "compress_compressed_total") == 2);
    assert_true(th_stats(r).corrupt == 0);
    /* add goes through it too */
    assert_int_equal(cachet_add(r, "added", big, 20000, NULL), CACHET_OK);
    th_assert_hit(r, "added", big, 20000);
    free(big);
    free(rnd);
    cachet_region_close(r);
}

static char said[512];

static void keep_compressed_line(void *arg, cachet_log_level level, const char *msg)
{
    (void)arg, (void)level;
    if (strstr(msg, "compressed"))
        snprintf(said, sizeof said, "%s", msg);
}

/* Values of a region without the proxy read through one with it; values
 * the proxy compressed are a counted miss without it, never garbage. */
static void before_and_after(void **state)
{
    target *t = *state;
    char *big;
    cachet_region *plain, *comp;
    if (!t->argname)
        skip();                         /* memory: one region's values are its own */
    big = text(8000);
    plain = open_t(t, 0, "debug_cache_backend", "true");   /* logs why a value is refused */
    comp = open_t(t, 1, NULL, NULL);
    said[0] = '\0';
    cachet_set_logger(keep_compressed_line, NULL);
    assert_int_equal(cachet_set(plain, "old", big, 8000), CACHET_OK);
    th_assert_hit(comp, "old", big, 8000);
    assert_int_equal(cachet_set(comp, "new", big, 8000), CACHET_OK);
    th_assert_miss(plain, "new");
    cachet_set_logger(NULL, NULL);
    assert_true(th_stats(plain).corrupt == 1);
    th_assert_contains(said, "compressed and was not decompressed");
    th_assert_hit(comp, "new", big, 8000);
    free(big);
    cachet_region_close(plain);
    cachet_region_close(comp);
}

static void compact_keeps_compressed_values(void **state)
{
    target *t = *state;
    char *big;
    cachet_region *r;
    size_t removed = 99;
    if (t->argname)
        skip();                         /* the servers expire values themselves */
    big = text(8000);
    r = open_t(t, 1, NULL, NULL);
    assert_int_equal(cachet_set(r, "big", big, 8000), CACHET_OK);
    assert_int_equal(cachet_compact(r, &removed), CACHET_OK);
    assert_int_equal(removed, 0);
    th_assert_hit(r, "big", big, 8000);
    cachet_invalidate(r, 1);
    assert_int_equal(cachet_compact(r, &removed), CACHET_OK);
    assert_int_equal(removed, 1);        /* judged by its header like any other */
    free(big);
    cachet_region_close(r);
}

static void arguments_are_checked(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"compress:level:99", "level"}, {"compress:min_size:-1", "min_size"},
        {"compress:max_decompressed:0", "max_decompressed"}, {"compress:speed:1", "speed"},
        {"compress:level:fast", "level"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *o[] = {"cachet_proxies", "compress", "cachet_proxy_argument", bad[i][0], NULL};
        assert_int_equal(th_open_status("memory", o), CACHET_EINVAL);
        th_assert_contains(cachet_errmsg(), bad[i][1]);
    }
    {
        const char *o[] = {"cachet_proxies", "compress", "cachet_proxy_argument",
                           "compress:min_size:10", "cachet_proxy_argument", "compress:level:1",
                           NULL};
        cachet_region *r = th_open("memory", o);
        char *s = text(100);
        assert_int_equal(cachet_set(r, "k", s, 100), CACHET_OK);
        th_assert_hit(r, "k", s, 100);
        assert_true(report_value(r, "compress_compressed_total") == 1);
        free(s);
        cachet_region_close(r);
    }
}

#ifdef HAVE_HIREDIS
static redisContext *raw(int port)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err)
        fail_msg("hiredis connect");
    return c;
}

/* On redis the stored bytes are looked at and damaged behind the region. */
static void stored_bytes_and_damage(void **state)
{
    (void)state;
    target t = {"redis", "redis", "", "backend_argument", rd.port};
    char *big = text(30000);
    cachet_region *r, *strict;
    redisContext *c;
    redisReply *rep;
    snprintf(t.arg, sizeof t.arg, "url:redis://127.0.0.1:%d/0", rd.port);
    r = open_t(&t, 1, NULL, NULL);
    assert_int_equal(cachet_set(r, "dmg", big, 30000), CACHET_OK);
    c = raw(rd.port);
    rep = redisCommand(c, "GET dmg");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_true(rep->len < 30000 / 10);
    assert_true((unsigned char)rep->str[5] & 0x02);            /* the header's flag */
    {
        /* a frame cut short, then one with a byte changed */
        size_t n = rep->len;
        char *b = malloc(n);
        memcpy(b, rep->str, n);
        freeReplyObject(rep);
        /* a reader that allows less than the frame declares: refused before allocating */
        {
            const char *o[] = {t.argname, t.arg, "cachet_proxies", "compress",
                               "cachet_proxy_argument", "compress:max_decompressed:1000", NULL};
            strict = th_open("redis", o);
            th_assert_miss(strict, "dmg");
            assert_true(th_stats(strict).corrupt == 1);
            assert_true(report_value(strict, "compress_corrupt_total") == 1);
            cachet_region_close(strict);
        }
        /* fix the header's size for a shorter frame, so only the frame is wrong */
        {
            uint64_t sz = n - 40 - 10;
            memcpy(b + 16, &sz, 8);                             /* little-endian host */
            freeReplyObject(redisCommand(c, "SET dmg %b", b, n - 10));
        }
        th_assert_miss(r, "dmg");
        assert_true(th_stats(r).corrupt == 1);
        b[n / 2] ^= 0x55;
        {
            uint64_t sz = n - 40;
            memcpy(b + 16, &sz, 8);
        }
        freeReplyObject(redisCommand(c, "SET dmg %b", b, n));
        {
            void *v = NULL;
            size_t len;
            cachet_status st = cachet_get(r, "dmg", &v, &len);
            /* zstd checks no checksum by default: a flipped byte is caught
             * when it breaks the frame, else the bytes differ.  Either way
             * never a crash, never more than the declared size. */
            if (st == CACHET_OK) {
                assert_int_equal(len, 30000);
                cachet_free(v);
            } else {
                assert_int_equal(st, CACHET_MISS);
            }
        }
        free(b);
    }
    assert_true(report_value(r, "compress_corrupt_total") >= 1);
    /* get_or_create replaces a damaged value */
    freeReplyObject(redisCommand(c, "SET dmg %b", "\xCA\xC4" "ET\x02\x03", (size_t)6));
    th_assert_miss(r, "dmg");
    redisFree(c);
    free(big);
    cachet_region_close(r);
}
#endif

static int run(target *t)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(round_trips, t),
        cmocka_unit_test_prestate(before_and_after, t),
        cmocka_unit_test_prestate(compact_keeps_compressed_values, t),
    };
    print_message("[ TARGET   ] %s\n", t->name);
    return _cmocka_run_group_tests(t->name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}

/* run on the target of backend on the harness's server s */
static int run_on(const char *backend, test_server *s)
{
    target t = {backend, backend, "", NULL, 0};
    t.argname = test_server_option(s, t.arg, sizeof t.arg);
    return run(&t);
}

int main(void)
{
    int failed = 0;
    static target mem = {"memory", "memory", "", NULL, 0};
    const struct CMUnitTest common[] = {
        cmocka_unit_test(arguments_are_checked),
#ifdef HAVE_HIREDIS
        cmocka_unit_test(stored_bytes_and_damage),
#endif
    };
    failed += run(&mem);
#ifdef HAVE_LIBMEMCACHED
    if (test_memcached_start(&mc, 0, NULL) != 0) {
        fprintf(stderr, "memcached did not start\n");
        return 1;
    }
    failed += run_on("memcached", &mc);
#endif
#ifdef HAVE_HIREDIS
    if (test_redis_start(&rd, 0, NULL) != 0) {
        fprintf(stderr, "redis did not start\n");
        return 1;
    }
    failed += run_on("redis", &rd);
#endif
    failed += cmocka_run_group_tests(common, NULL, NULL);
    test_servers_stop_all();
    return failed ? 1 : 0;
}
