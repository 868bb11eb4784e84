/* cachet_refresh_threads after fork(): the child has none of the parent's
 * refresh threads; its first background refresh starts its own, so the
 * child's callers stay off the creator too (region_refresh.h).  Also the
 * option's bounds.  The behaviour on every backend is a conformance body
 * (refresh_threads_keep_callers_off_the_creator). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "helpers.h"

static pthread_t caller;
static atomic_int calls, in_caller;

static int never(void *p)
{
    (void)p;
    return 0;
}

static cachet_status create(void *arg, const char *key, void **value, size_t *len)
{
    int n = atomic_fetch_add(&calls, 1) + 1;
    (void)arg;
    (void)key;
    if (pthread_equal(pthread_self(), caller))
        atomic_fetch_add(&in_caller, 1);
    th_wait_until(never, NULL, 0.01);
    *value = malloc(16);
    *len = (size_t)snprintf(*value, 16, "v%d", n);
    return CACHET_OK;
}

static cachet_region *region;
static const char *want;

static int stored(void *p)
{
    void *v = NULL;
    size_t n;
    int ok;
    (void)p;
    ok = cachet_get(region, "k", &v, &n) == CACHET_OK && n == strlen(want) &&
         memcmp(v, want, n) == 0;
    cachet_free(v);
    return ok;
}

/* One stale get_or_create; returns 0 when a refresh thread (not the
 * caller) stored the next value. */
static int stale_round(const char *next)
{
    void *v;
    size_t n;
    int before = atomic_load(&in_caller);
    th_clock_advance(11);
    if (cachet_get_or_create(region, "k", create, NULL, &v, &n) != CACHET_OK)
        return 1;
    cachet_free(v);
    want = next;
    if (!th_wait_until(stored, NULL, 30.0))
        return 2;
    return atomic_load(&in_caller) == before ? 0 : 3;
}

static void child_refreshes_in_the_background(void **state)
{
    static const char *const opts[] = {"cachet_refresh_threads", "1", "expiration_time", "10", NULL};
    void *v;
    size_t n;
    int status;
    pid_t pid;
    (void)state;
    region = th_open("memory", opts);
    caller = pthread_self();
    th_clock_fake();
    assert_int_equal(cachet_get_or_create(region, "k", create, NULL, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(stale_round("v2"), 0);       /* the parent's thread runs */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        caller = pthread_self();
        _exit(stale_round("v3") == 0 && cachet_stats(region, &(cachet_stat_counters){0}) == CACHET_OK
              ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the parent's own threads still work after the fork */
    assert_int_equal(stale_round("v3"), 0);
    th_clock_real();
    cachet_region_close(region);
}

static void bounds(void **state)
{
    static const char *const neg[] = {"cachet_refresh_threads", "-1", NULL};
    static const char *const many[] = {"cachet_refresh_threads", "65", NULL};
    static const char *const beta[] = {"cachet_early_refresh", "-0.5", NULL};
    static const char *const fail[] = {"cachet_failure_cache_time", "-1", NULL};
    (void)state;
    assert_int_equal(th_open_status("memory", neg), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_refresh_threads");
    assert_int_equal(th_open_status("memory", many), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_refresh_threads");
    assert_int_equal(th_open_status("memory", beta), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_early_refresh");
    assert_int_equal(th_open_status("memory", fail), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_failure_cache_time");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(child_refreshes_in_the_background, th_clock_teardown),
        cmocka_unit_test(bounds),
    };
    (void)argc;
    th_tsan_allow_threads_after_fork(argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
