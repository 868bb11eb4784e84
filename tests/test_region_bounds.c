/* The region's own bounds: per-call options that no rule can come from
 * are refused, and get_or_create does not wait for ever on a lock that a
 * backend keeps refusing (a lying server, a clock that jumped). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <cachet/cachet.h>

#define PLUGIN(n) TEST_BUILDDIR "/tests/plugins/.libs/" n ".so"

static cachet_region *open_backend(const char *backend, const char *arg1, const char *arg2)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend", backend), CACHET_OK);
    if (arg1)
        assert_int_equal(cachet_config_set(c, "backend_argument", arg1), CACHET_OK);
    if (arg2)
        assert_int_equal(cachet_config_set(c, "backend_argument", arg2), CACHET_OK);
    if (cachet_region_open(c, &r) != CACHET_OK)
        fail_msg("open %s: %s", backend, cachet_errmsg());
    cachet_config_free(c);
    return r;
}

static cachet_status create_x(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg, (void)key;
    *value = strdup("x");
    *len = 1;
    return CACHET_OK;
}

static void per_call_expiration_must_mean_something(void **state)
{
    cachet_region *r = open_backend("memory", NULL, NULL);
    const double bad[] = {-2, -0.5, NAN, INFINITY, -INFINITY, 1e300};
    void *v;
    size_t n;
    (void)state;
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cachet_options o = {.expiration_time = bad[i]};
        assert_int_equal(cachet_get_ex(r, "k", &o, &v, &n), CACHET_EINVAL);
        assert_null(v);
        assert_non_null(strstr(cachet_errmsg(), "expiration_time"));
        assert_int_equal(cachet_get_or_create_ex(r, "k", create_x, NULL, &o, &v, &n),
                         CACHET_EINVAL);
    }
    /* what it takes */
    const double good[] = {-1, 0, 0.001, 3600, 86400.0 * 365 * 100};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cachet_options o = {.expiration_time = good[i]};
        assert_int_equal(cachet_get_ex(r, "k", &o, &v, &n), CACHET_OK);
        cachet_free(v);
    }
    cachet_region_close(r);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void a_lock_refused_for_ever_does_not_hold_the_caller(void **state)
{
    cachet_region *r = open_backend(PLUGIN("abi_ok"), "lock_busy:true", "lock_timeout:0.5");
    cachet_stat_counters s;
    void *v;
    size_t n;
    double t0 = now_s(), took;
    (void)state;
    assert_int_equal(cachet_get_or_create(r, "k", create_x, NULL, &v, &n), CACHET_OK);
    took = now_s() - t0;
    assert_int_equal(n, 1);
    assert_memory_equal(v, "x", 1);
    cachet_free(v);
    /* lock_timeout + 1 s, with room for a loaded machine; without the
     * bound the call never returns */
    assert_true(took < 30.0);
    assert_true(took >= 1.0);
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_true(s.fallbacks >= 1);
    cachet_region_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_call_expiration_must_mean_something),
        cmocka_unit_test(a_lock_refused_for_ever_does_not_hold_the_caller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
