/* Host state as the networked backends report it (the servers operation)
 * and as they manage it (backends/common/host.c): up/down with the reason,
 * failures, time since the last change.  The plugins are dlopen()ed from
 * the build tree and driven directly, as metrics scrapes and cachet check
 * drive them. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cachet/backend.h>
#include "servers.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const cachet_backend_ops *plugin(const char *name)
{
    char path[4096];
    void *h;
    cachet_backend_entry_fn entry;
    snprintf(path, sizeof path, TEST_BUILDDIR "/backends/.libs/%s.so", name);
    if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
        fail_msg("dlopen %s: %s", path, dlerror());
    *(void **)&entry = dlsym(h, CACHET_BACKEND_ENTRY_SYMBOL);
    assert_non_null(entry);
    return entry();
}

static void *open_backend(const cachet_backend_ops *ops, const cachet_backend_arg *args, size_t n)
{
    cachet_backend_params p = {args, n, 0};
    void *st = NULL;
    if (ops->open(&p, &st) != CACHET_OK)
        fail_msg("open %s failed", ops->name);
    return st;
}

/* The entry named name among the n of out, or fail. */
static const cachet_server_state *entry_named(const cachet_server_state *out, size_t n,
                                              const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].name, name) == 0)
            return &out[i];
    fail_msg("no server named %s in the servers operation", name);
    return NULL;
}

#ifdef HAVE_LIBMEMCACHED
/* A live memcached and a port where nothing listens: the servers operation
 * names both, the dead one down ("refused") with its failures counted, the
 * live one up and never changed; and it asks for no more than max. */
static void mc_servers_report(const char *backend)
{
    const cachet_backend_ops *ops = plugin(backend);
    test_server live;
    char url[128], live_name[64], dead_name[64], key[32];
    int dead_port = test_free_port();
    cachet_server_state out[4];
    const cachet_server_state *e;
    void *st;

    assert_non_null(ops->servers);
    assert_int_equal(test_memcached_start(&live, 0, NULL), 0);
    snprintf(live_name, sizeof live_name, "127.0.0.1:%d", live.port);
    snprintf(dead_name, sizeof dead_name, "127.0.0.1:%d", dead_port);
    snprintf(url, sizeof url, "%s,%s", live_name, dead_name);
    cachet_backend_arg args[] = {{"url", url}, {"dead_retry", "300"}};
    st = open_backend(ops, args, 2);

    assert_int_equal(ops->servers(st, out, 0), 2);    /* nothing written */
    assert_int_equal(ops->servers(st, out, 4), 2);
    e = entry_named(out, 2, dead_name);
    assert_int_equal(e->up, 1);                         /* not tried yet */
    assert_true(e->since_change < 0);
    /* keys on both hosts: some land on the dead one */
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ops->set(st, key, strlen(key), "v", 1, 0);
    }
    assert_int_equal(ops->servers(st, out, 4), 2);
    e = entry_named(out, 2, dead_name);
    assert_int_equal(e->up, 0);
    assert_non_null(e->reason);
    assert_string_equal(e->reason, "refused");
    assert_true(e->failures >= 1);
    assert_true(e->since_change >= 0 && e->since_change < 60);
    e = entry_named(out, 2, live_name);
    assert_int_equal(e->up, 1);
    assert_null(e->reason);
    assert_int_equal(e->failures, 0);
    assert_true(e->since_change < 0);
    ops->close(st);
    test_server_stop(&live);
}

static void memcached_servers_report(void **state)
{
    (void)state;
    mc_servers_report("memcached");
}

static void memcache_pool_servers_report(void **state)
{
    (void)state;
    mc_servers_report("memcache_pool");
}
#endif

#ifdef HAVE_HIREDIS
/* redis: up while it answers; stopped, down with a reason and a failure. */
static void redis_servers_report(void **state)
{
    const cachet_backend_ops *ops = plugin("redis");
    test_server srv;
    char url[128], name[64];
    cachet_server_state out[2];
    void *st, *v;
    size_t len;
    (void)state;

    assert_non_null(ops->servers);
    assert_int_equal(test_redis_start(&srv, 0, NULL), 0);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", srv.port);
    snprintf(name, sizeof name, "127.0.0.1:%d", srv.port);
    cachet_backend_arg args[] = {{"url", url}, {"dead_retry", "300"}};
    st = open_backend(ops, args, 2);
    assert_int_equal(ops->set(st, "k", 1, "v", 1, 0), CACHET_OK);
    assert_int_equal(ops->servers(st, out, 2), 1);
    assert_string_equal(out[0].name, name);
    assert_int_equal(out[0].up, 1);
    assert_null(out[0].reason);
    assert_int_equal(out[0].failures, 0);

    test_server_stop(&srv);
    /* the pooled connection broke: the call retries on a fresh one, refused */
    assert_int_not_equal(ops->get(st, "k", 1, &v, &len), CACHET_OK);
    assert_int_equal(ops->servers(st, out, 2), 1);
    assert_int_equal(out[0].up, 0);
    assert_non_null(out[0].reason);
    assert_string_equal(out[0].reason, "refused");
    assert_true(out[0].failures >= 1);
    assert_true(out[0].since_change >= 0 && out[0].since_change < 60);
    ops->close(st);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
#ifdef HAVE_LIBMEMCACHED
        cmocka_unit_test(memcached_servers_report),
        cmocka_unit_test(memcache_pool_servers_report),
#endif
#ifdef HAVE_HIREDIS
        cmocka_unit_test(redis_servers_report),
#endif
    };
    (void)now_s;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
