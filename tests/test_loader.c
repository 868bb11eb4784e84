/* The plugin loader: absolute paths, CACHET_PLUGIN_PATH, the build tree,
 * the ABI check, and names that must be refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include <cachet/backend.h>
#include "helpers.h"

#define PLUGIN(name) TEST_PLUGIN_PATH(name)

static cachet_status open_backend(const char *backend, cachet_region **r)
{
    cachet_config *c = cachet_config_new();
    cachet_status st;
    assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend", backend), CACHET_OK);
    st = cachet_region_open(c, r);
    cachet_config_free(c);
    return st;
}

static void absolute_path_plugin_serves_the_region(void **state)
{
    cachet_region *r;
    void *v;
    size_t n;
    assert_int_equal(open_backend(PLUGIN("abi_ok"), &r), CACHET_OK);
    assert_string_equal(cachet_region_backend(r), "abi_ok");
    assert_int_equal(cachet_set(r, "k", "hello", 5), CACHET_OK);
    assert_int_equal(cachet_get(r, "k", &v, &n), CACHET_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(v, "hello", 5);
    cachet_free(v);
    assert_int_equal(cachet_get(r, "other", &v, &n), CACHET_MISS);
    cachet_region_close(r);
}

static void wrong_abi_names_both_versions(void **state)
{
    cachet_region *r = (void *)1;
    char want[64];
    assert_int_equal(open_backend(PLUGIN("abi_bad"), &r), CACHET_ENOBACKEND);
    assert_null(r);
    th_assert_contains(cachet_errmsg(), "abi_bad");
    /* a plugin of ABI 1 (before lifetimes and add): both versions named */
    th_assert_contains(cachet_errmsg(), "plugin ABI version 1,");
    snprintf(want, sizeof want, "needs version %d", CACHET_BACKEND_ABI_VERSION);
    th_assert_contains(cachet_errmsg(), want);
}

static void missing_backend_names_it_and_where(void **state)
{
    cachet_region *r;
    assert_int_equal(open_backend("nosuch", &r), CACHET_ENOBACKEND);
    th_assert_contains(cachet_errmsg(), "nosuch");
    th_assert_contains(cachet_errmsg(), TEST_BUILDDIR "/backends/.libs");   /* looked in the build tree */
    assert_int_equal(open_backend("oslo_cache.etcd3gw", &r), CACHET_ENOBACKEND);
    th_assert_contains(cachet_errmsg(), "oslo_cache.etcd3gw");
    assert_int_equal(open_backend("/nonexistent/plugin.so", &r), CACHET_ENOBACKEND);
    th_assert_contains(cachet_errmsg(), "/nonexistent/plugin.so");
}

static void escaping_names_are_refused(void **state)
{
    static const char *const bad[] = {"../memory", "backends/memory", "a/../../b",
                                      "relative/x.so", "..", "/etc/passwd"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cachet_region *r = NULL;
        cachet_status st = open_backend(bad[i], &r);
        assert_true(st == CACHET_EINVAL || st == CACHET_ENOBACKEND);
        assert_null(r);
        th_assert_contains(cachet_errmsg(), bad[i]);
    }
}

static void plugin_path_is_searched(void **state)
{
    char dir[] = "/tmp/cachet-plugins-XXXXXX", dst[256], cmd[512];
    cachet_region *r;
    assert_non_null(mkdtemp(dir));
    snprintf(dst, sizeof dst, "%s/thirdparty.so", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", PLUGIN("abi_ok"), dst);
    assert_int_equal(system(cmd), 0);
    /* empty entries are passed over; the absolute one is used */
    char env[512];
    snprintf(env, sizeof env, "::%s:", dir);
    setenv("CACHET_PLUGIN_PATH", env, 1);
    assert_int_equal(open_backend("thirdparty", &r), CACHET_OK);
    assert_string_equal(cachet_region_backend(r), "abi_ok");
    cachet_region_close(r);
    unsetenv("CACHET_PLUGIN_PATH");
    unlink(dst);
    rmdir(dir);
}

/* A relative entry would mean a different directory in every working
 * directory: it is an error naming the entry, wherever it is in the list,
 * and no later entry is tried. */
static void relative_plugin_path_entry_is_an_error(void **state)
{
    static const char *const envs[] = {"relative/dir", "/tmp:plugins", "./x:/tmp", "/tmp::.."};
    static const char *const named[] = {"'relative/dir'", "'plugins'", "'./x'", "'..'"};
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        cachet_region *r = (void *)1;
        setenv("CACHET_PLUGIN_PATH", envs[i], 1);
        assert_int_equal(open_backend("thirdparty_relative", &r), CACHET_EINVAL);
        assert_null(r);
        th_assert_contains(cachet_errmsg(), "CACHET_PLUGIN_PATH");
        th_assert_contains(cachet_errmsg(), named[i]);
        th_assert_contains(cachet_errmsg(), "relative");
    }
    unsetenv("CACHET_PLUGIN_PATH");
}

static void build_tree_plugins_found_uninstalled(void **state)
{
    cachet_region *r;
    assert_int_equal(open_backend("dogpile.cache.memory", &r), CACHET_OK);
    assert_string_equal(cachet_region_backend(r), "memory");
    cachet_region_close(r);
    assert_int_equal(open_backend("null", &r), CACHET_OK);
    assert_string_equal(cachet_region_backend(r), "null");
    cachet_region_close(r);
}

static void plugin_rejects_unknown_argument(void **state)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend", PLUGIN("abi_ok")), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend_argument", "colour:blue"), CACHET_OK);
    assert_int_equal(cachet_region_open(c, &r), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "colour");
    cachet_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(absolute_path_plugin_serves_the_region),
        cmocka_unit_test(wrong_abi_names_both_versions),
        cmocka_unit_test(missing_backend_names_it_and_where),
        cmocka_unit_test(escaping_names_are_refused),
        cmocka_unit_test(plugin_path_is_searched),
        cmocka_unit_test(relative_plugin_path_entry_is_an_error),
        cmocka_unit_test(build_tree_plugins_found_uninstalled),
        cmocka_unit_test(plugin_rejects_unknown_argument),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
