/* The proxy chain: configured by cachet_proxies / cachet_proxy_argument,
 * the log proxy (and debug_cache_backend putting it in front), operations a
 * proxy leaves NULL passing through, order of the layers, and the errors
 * that name the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <cachet/cachet.h>

#define PLUGIN(n) TEST_BUILDDIR "/tests/plugins/.libs/" n ".so"

/* ---- a logger that keeps the lines ---- */
static char logged[64][512];
static int nlogged;

static void keep_line(void *arg, cachet_log_level level, const char *msg)
{
    (void)arg;
    if (level == CACHET_LOG_DEBUG && nlogged < 64)
        snprintf(logged[nlogged++], sizeof logged[0], "%s", msg);
}

static int logged_with(const char *a, const char *b)
{
    for (int i = 0; i < nlogged; i++)
        if (strstr(logged[i], a) && (!b || strstr(logged[i], b)))
            return 1;
    return 0;
}

static cachet_region *open_with(const char *const *kv)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend", "memory"), CACHET_OK);
    for (; kv && kv[0]; kv += 2)
        if (cachet_config_set(c, kv[0], kv[1]) != CACHET_OK)
            fail_msg("set %s: %s", kv[0], cachet_errmsg());
    if (cachet_region_open(c, &r) != CACHET_OK)
        fail_msg("open: %s", cachet_errmsg());
    cachet_config_free(c);
    return r;
}

static cachet_status open_status(const char *const *kv)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    cachet_status st;
    assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend", "memory"), CACHET_OK);
    for (; kv && kv[0]; kv += 2)
        if ((st = cachet_config_set(c, kv[0], kv[1])) != CACHET_OK) {
            cachet_config_free(c);
            return st;
        }
    st = cachet_region_open(c, &r);
    cachet_region_close(r);
    cachet_config_free(c);
    return st;
}

/* ---- report lines ---- */
static char report[32][2][128];
static int nreport;

static void keep_report(void *arg, const char *name, const char *value)
{
    (void)arg;
    if (nreport < 32) {
        snprintf(report[nreport][0], 128, "%s", name);
        snprintf(report[nreport][1], 128, "%s", value);
        nreport++;
    }
}

static const char *reported(cachet_region *r, const char *name)
{
    nreport = 0;
    assert_int_equal(cachet_backend_report(r, keep_report, NULL), CACHET_OK);
    for (int i = 0; i < nreport; i++)
        if (strcmp(report[i][0], name) == 0)
            return report[i][1];
    return NULL;
}

static void debug_cache_backend_puts_the_log_proxy_in_front(void **state)
{
    const char *kv[] = {"debug_cache_backend", "true", NULL};
    cachet_region *r;
    void *v;
    size_t n;
    (void)state;
    nlogged = 0;
    cachet_set_logger(keep_line, NULL);
    r = open_with(kv);
    assert_int_equal(cachet_set(r, "alpha", "1", 1), CACHET_OK);
    assert_int_equal(cachet_get(r, "alpha", &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(cachet_get(r, "beta", &v, &n), CACHET_MISS);
    cachet_region_close(r);
    cachet_set_logger(NULL, NULL);
    assert_true(logged_with("set alpha: ok", NULL));
    assert_true(logged_with("get alpha: ok", " us)"));
    assert_true(logged_with("get beta: miss", NULL));
}

static void the_log_proxy_logs_without_debug_and_can_hide_keys(void **state)
{
    const char *kv[] = {"cachet_proxies", "log", "cachet_proxy_argument", "log:keys:hidden", NULL};
    const char *plain[] = {"cachet_proxies", "log", NULL};
    cachet_region *r;
    cachet_item items[2] = {{.key = "m1"}, {.key = "m2"}};
    void *v;
    size_t n;
    (void)state;
    cachet_set_logger(keep_line, NULL);
    nlogged = 0;
    r = open_with(plain);
    assert_int_equal(cachet_get(r, "token-abc", &v, &n), CACHET_MISS);
    assert_int_equal(cachet_get_multi(r, items, 2), CACHET_OK);
    cachet_region_close(r);
    assert_true(logged_with("get token-abc: miss", NULL));
    assert_true(logged_with("get_multi of 2 keys", "2 miss"));
    nlogged = 0;
    r = open_with(kv);
    assert_int_equal(cachet_get(r, "token-abc", &v, &n), CACHET_MISS);
    cachet_region_close(r);
    cachet_set_logger(NULL, NULL);
    assert_true(logged_with("get <key of 9 bytes>: miss", NULL));
    assert_false(logged_with("token-abc", NULL));
}

/* probe defines get only: set, delete and get_multi pass through it (to
 * the log proxy and the backend), gets go through both, outermost first. */
static void operations_a_proxy_leaves_null_pass_through(void **state)
{
    const char *kv[] = {"cachet_proxies", PLUGIN("proxy_probe") ",log",
                        "cachet_proxy_argument", PLUGIN("proxy_probe") ":label:outer", NULL};
    cachet_region *r;
    cachet_item items[2] = {{.key = "k1"}, {.key = "k2"}};
    void *v;
    size_t n;
    (void)state;
    cachet_set_logger(keep_line, NULL);
    nlogged = 0;
    r = open_with(kv);
    assert_int_equal(cachet_set(r, "k1", "one", 3), CACHET_OK);
    assert_int_equal(cachet_get(r, "k1", &v, &n), CACHET_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "one", 3);
    cachet_free(v);
    assert_string_equal(reported(r, "outer_gets"), "1");
    assert_string_equal(reported(r, "probe_below"), "memory");
    /* get_multi: probe has none, log has one: it passes probe by */
    assert_int_equal(cachet_get_multi(r, items, 2), CACHET_OK);
    assert_int_equal(items[0].status, CACHET_OK);
    cachet_free(items[0].value);
    assert_int_equal(items[1].status, CACHET_MISS);
    assert_string_equal(reported(r, "outer_gets"), "1");
    assert_int_equal(cachet_delete(r, "k1"), CACHET_OK);
    assert_int_equal(cachet_get(r, "k1", &v, &n), CACHET_MISS);
    assert_string_equal(reported(r, "outer_gets"), "2");
    cachet_region_close(r);
    cachet_set_logger(NULL, NULL);
    assert_true(logged_with("set k1: ok", NULL));      /* set went through log */
    assert_true(logged_with("get_multi of 2 keys", NULL));
    assert_true(logged_with("delete k1: ok", NULL));
}

static void a_region_with_proxies_works_in_a_forked_child(void **state)
{
    const char *kv[] = {"cachet_proxies", "log," PLUGIN("proxy_probe"), NULL};
    cachet_region *r = open_with(kv);
    pid_t pid;
    int status;
    (void)state;
    assert_int_equal(cachet_set(r, "before", "x", 1), CACHET_OK);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        void *v;
        size_t n;
        int ok = cachet_get(r, "before", &v, &n) == CACHET_OK && n == 1;
        if (ok)
            cachet_free(v);
        ok = ok && cachet_set(r, "child", "y", 1) == CACHET_OK;
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cachet_region_close(r);
}

static void errors_name_the_option(void **state)
{
    const char *absent[] = {"cachet_proxy_argument", "near:max_count:10", NULL};
    const char *unknown[] = {"cachet_proxies", "nosuch", NULL};
    const char *twice[] = {"cachet_proxies", "log, log", NULL};
    const char *badarg[] = {"cachet_proxies", "log", "cachet_proxy_argument", "log:colour:red",
                            NULL};
    const char *badval[] = {"cachet_proxies", "log", "cachet_proxy_argument", "log:keys:maybe",
                            NULL};
    const char *notabackend[] = {"cachet_proxies", PLUGIN("abi_ok"), NULL};
    (void)state;
    assert_int_equal(open_status(absent), CACHET_EINVAL);
    assert_non_null(strstr(cachet_errmsg(), "cachet_proxy_argument"));
    assert_non_null(strstr(cachet_errmsg(), "near"));
    assert_int_equal(open_status(unknown), CACHET_ENOBACKEND);
    assert_non_null(strstr(cachet_errmsg(), "cachet_proxies"));
    assert_non_null(strstr(cachet_errmsg(), "nosuch"));
    assert_int_equal(open_status(twice), CACHET_EINVAL);
    assert_non_null(strstr(cachet_errmsg(), "twice"));
    assert_int_equal(open_status(badarg), CACHET_EINVAL);
    assert_non_null(strstr(cachet_errmsg(), "colour"));
    assert_int_equal(open_status(badval), CACHET_EINVAL);
    assert_non_null(strstr(cachet_errmsg(), "maybe"));
    /* a backend plugin is not a proxy */
    assert_int_equal(open_status(notabackend), CACHET_ENOBACKEND);
    assert_non_null(strstr(cachet_errmsg(), "cachet_proxy_entry"));
    /* a malformed argument is refused when set */
    cachet_config *c = cachet_config_new();
    assert_int_equal(cachet_config_set(c, "cachet_proxy_argument", "log:keys"), CACHET_EINVAL);
    assert_non_null(strstr(cachet_errmsg(), "PROXY:NAME:VALUE"));
    cachet_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(debug_cache_backend_puts_the_log_proxy_in_front),
        cmocka_unit_test(the_log_proxy_logs_without_debug_and_can_hide_keys),
        cmocka_unit_test(operations_a_proxy_leaves_null_pass_through),
        cmocka_unit_test(a_region_with_proxies_works_in_a_forked_child),
        cmocka_unit_test(errors_name_the_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
