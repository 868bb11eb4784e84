/* The region over real plugins: values round-trip byte for byte, the
 * multi-operations, expiration and invalidation, bad stored bytes, a
 * failing backend, and the statistics that count all of it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <malloc.h>
#include <pthread.h>
#include <cachet/cachet.h>
#include <cachet/backend.h>
#include "helpers.h"

#define TEST_PLUGIN TEST_PLUGIN_PATH("abi_ok")

static void binary_values_round_trip(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    const char bin[] = {'a', 0, 'b', 0, (char)0xff, '\n'};
    void *v;
    size_t n;

    assert_int_equal(cachet_set(r, "bin", bin, sizeof bin), CACHET_OK);
    assert_int_equal(cachet_get(r, "bin", &v, &n), CACHET_OK);
    assert_int_equal(n, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    cachet_free(v);
    /* empty value: a hit with length 0 */
    assert_int_equal(cachet_set(r, "empty", "", 0), CACHET_OK);
    assert_int_equal(cachet_get(r, "empty", &v, &n), CACHET_OK);
    assert_int_equal(n, 0);
    cachet_free(v);
    /* keys with spaces and long keys are fine on a backend that takes them */
    char longkey[600];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    assert_int_equal(cachet_set(r, longkey, "L", 1), CACHET_OK);
    assert_int_equal(cachet_set(r, "with space", "S", 1), CACHET_OK);
    assert_int_equal(cachet_get(r, longkey, &v, &n), CACHET_OK);
    assert_memory_equal(v, "L", 1);
    cachet_free(v);
    assert_int_equal(cachet_delete(r, "bin"), CACHET_OK);
    assert_int_equal(cachet_get(r, "bin", &v, &n), CACHET_MISS);
    assert_null(v);
    assert_int_equal(cachet_delete(r, "never-there"), CACHET_OK);
    cachet_region_close(r);
}

static void null_backend_stores_nothing(void **state)
{
    cachet_region *r = th_open("dogpile.cache.null", NULL);
    void *v;
    size_t n;
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    assert_int_equal(cachet_get(r, "k", &v, &n), CACHET_MISS);
    cachet_region_close(r);
}

static void multi_operations(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    char keys[50][16], vals[50][16];
    cachet_item items[50];
    const char *dkeys[25];

    for (int i = 0; i < 50; i++) {
        snprintf(keys[i], sizeof keys[i], "key%d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d", i * 7);
        items[i] = (cachet_item){keys[i], vals[i], strlen(vals[i]), CACHET_EINVAL};
    }
    assert_int_equal(cachet_set_multi(r, items, 50), CACHET_OK);
    for (int i = 0; i < 50; i++)
        assert_int_equal(items[i].status, CACHET_OK);
    for (int i = 0; i < 25; i++)
        dkeys[i] = keys[2 * i];                 /* delete the even ones */
    assert_int_equal(cachet_delete_multi(r, dkeys, 25), CACHET_OK);
    for (int i = 0; i < 50; i++)
        items[i] = (cachet_item){keys[i], NULL, 0, CACHET_EINVAL};
    assert_int_equal(cachet_get_multi(r, items, 50), CACHET_OK);   /* misses are handled */
    for (int i = 0; i < 50; i++) {
        if (i % 2 == 0) {
            assert_int_equal(items[i].status, CACHET_MISS);
            assert_null(items[i].value);
        } else {
            assert_int_equal(items[i].status, CACHET_OK);
            assert_int_equal(items[i].len, strlen(vals[i]));
            assert_memory_equal(items[i].value, vals[i], items[i].len);
            cachet_free(items[i].value);
        }
    }
    cachet_stat_counters s;
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_int_equal(s.sets, 50);
    assert_int_equal(s.deletes, 25);
    assert_int_equal(s.hits, 25);
    assert_int_equal(s.misses, 25);
    cachet_region_close(r);
}

static void multi_fallback_loop_on_backend_without_multi(void **state)
{
    /* the test plugin has no multi-operations: the core loops */
    cachet_region *r = th_open(TEST_PLUGIN, NULL);
    cachet_item items[2] = {{"a", "1", 1, 0}, {"b", "22", 2, 0}};
    assert_int_equal(cachet_set_multi(r, items, 2), CACHET_OK);
    items[0] = (cachet_item){"a", NULL, 0, 0};
    items[1] = (cachet_item){"b", NULL, 0, 0};
    assert_int_equal(cachet_get_multi(r, items, 2), CACHET_OK);
    /* it keeps one value: the last one set */
    assert_int_equal(items[0].status, CACHET_MISS);
    assert_int_equal(items[1].status, CACHET_OK);
    assert_memory_equal(items[1].value, "22", 2);
    cachet_free(items[1].value);
    cachet_region_close(r);
}

/* The region's clock is the fake one: time moves when the test says. */
static void expiration(void **state)
{
    static const char *const opts[] = {"expiration_time", "1", NULL};
    cachet_region *r;
    (void)state;
    th_clock_fake();
    r = th_open("memory", opts);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    th_assert_hit(r, "k", "v", 1);
    th_clock_advance(0.9);                      /* younger than 1 s: still fresh */
    th_assert_hit(r, "k", "v", 1);
    th_clock_advance(0.2);                      /* 1.1 s old: expired */
    th_assert_miss(r, "k");
    cachet_region_close(r);

    static const char *const never[] = {"expiration_time", "-1", NULL};
    r = th_open("memory", never);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    th_clock_advance(10 * 365 * 86400.0);       /* ten years on */
    th_assert_hit(r, "k", "v", 1);
    cachet_region_close(r);
    th_clock_real();
}

static void invalidation_hard_and_soft(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    void *v;
    size_t n;
    for (int hard = 0; hard <= 1; hard++) {
        assert_int_equal(cachet_set(r, "old", "o", 1), CACHET_OK);
        cachet_invalidate(r, hard);
        /* set in the same instant as the invalidation: not hidden */
        assert_int_equal(cachet_set(r, "new", "n", 1), CACHET_OK);
        assert_int_equal(cachet_get(r, "old", &v, &n), CACHET_MISS);
        assert_int_equal(cachet_get(r, "new", &v, &n), CACHET_OK);
        assert_memory_equal(v, "n", 1);
        cachet_free(v);
    }
    cachet_region_close(r);
}

static cachet_status make_value(void *arg, const char *key, void **value, size_t *len)
{
    int *calls = arg;
    char *v = malloc(32);
    (*calls)++;
    *len = (size_t)snprintf(v, 32, "made:%s", key);
    *value = v;
    return CACHET_OK;
}

static cachet_status fail_creator(void *arg, const char *key, void **value, size_t *len)
{
    (*(int *)arg)++;
    return CACHET_EBACKEND;
}

static void get_or_create_basics(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    int calls = 0;
    void *v;
    size_t n;
    assert_int_equal(cachet_get_or_create(r, "g", make_value, &calls, &v, &n), CACHET_OK);
    assert_int_equal(calls, 1);
    assert_int_equal(n, 6);
    assert_memory_equal(v, "made:g", 6);
    cachet_free(v);
    assert_int_equal(cachet_get_or_create(r, "g", make_value, &calls, &v, &n), CACHET_OK);
    assert_int_equal(calls, 1);                 /* a hit: no creator call */
    assert_memory_equal(v, "made:g", 6);
    cachet_free(v);
    calls = 0;
    assert_int_equal(cachet_get_or_create(r, "h", fail_creator, &calls, &v, &n), CACHET_EBACKEND);
    assert_int_equal(calls, 1);
    assert_null(v);
    cachet_region_close(r);
}

static void foreign_and_truncated_bytes_are_misses(void **state)
{
    cachet_region *r = th_open(TEST_PLUGIN, NULL);
    cachet_stat_counters s;
    int calls = 0;
    void *v;
    size_t n;
    assert_int_equal(cachet_get(r, "raw:not a cachet value", &v, &n), CACHET_MISS);
    assert_int_equal(cachet_get(r, "raw:x", &v, &n), CACHET_MISS);    /* shorter than a header */
    assert_int_equal(cachet_get(r, "raw:\xca\xc4" "ET\x01", &v, &n), CACHET_MISS);
    /* get_or_create replaces foreign bytes with a created value */
    assert_int_equal(cachet_get_or_create(r, "raw:junk", make_value, &calls, &v, &n), CACHET_OK);
    assert_int_equal(calls, 1);
    cachet_free(v);
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    /* 3 gets and one get_or_create: one count each, although
     * get_or_create read the junk twice (before and after taking the
     * key's lock) */
    assert_int_equal(s.corrupt, 4);
    cachet_region_close(r);

    static const char *const cut[] = {"backend_argument", "truncate_by:3", NULL};
    r = th_open(TEST_PLUGIN, cut);
    assert_int_equal(cachet_set(r, "t", "0123456789", 10), CACHET_OK);
    assert_int_equal(cachet_get(r, "t", &v, &n), CACHET_MISS);
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_int_equal(s.corrupt, 1);
    cachet_region_close(r);
}

static void failing_backend(void **state)
{
    static const char *const failing[] = {"backend_argument", "fail:true", NULL};
    cachet_region *r = th_open(TEST_PLUGIN, failing);
    cachet_stat_counters s;
    int calls = 0;
    void *v;
    size_t n;
    assert_int_equal(cachet_get(r, "k", &v, &n), CACHET_EUNAVAILABLE);
    assert_non_null(strstr(cachet_errmsg(), "told to fail"));
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_EUNAVAILABLE);
    /* get_or_create: the cache is an optimisation, the creator answers */
    assert_int_equal(cachet_get_or_create(r, "k", make_value, &calls, &v, &n), CACHET_OK);
    assert_memory_equal(v, "made:k", 6);
    cachet_free(v);
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_true(s.fallbacks >= 1);
    assert_int_equal(s.errors, 4);             /* get, set, and get+set inside get_or_create */
    cachet_region_close(r);
}

static void bad_arguments(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    void *v;
    size_t n;
    assert_int_equal(cachet_get(r, NULL, &v, &n), CACHET_EINVAL);
    assert_int_equal(cachet_set(r, "k", NULL, 3), CACHET_EINVAL);
    assert_int_equal(cachet_get(NULL, "k", &v, &n), CACHET_EINVAL);
    assert_int_equal(cachet_region_open(NULL, &r), CACHET_EINVAL);
    cachet_free(NULL);
    cachet_region_close(NULL);
    cachet_region_close(r);
}

static void memory_backend_bounds_through_region(void **state)
{
    static const char *const opts[] = {"backend_argument", "max_count:2", NULL};
    cachet_region *r = th_open("oslo_cache.dict", opts);
    void *v;
    size_t n;
    assert_int_equal(cachet_set(r, "a", "1", 1), CACHET_OK);
    assert_int_equal(cachet_set(r, "b", "2", 1), CACHET_OK);
    assert_int_equal(cachet_set(r, "c", "3", 1), CACHET_OK);
    assert_int_equal(cachet_get(r, "a", &v, &n), CACHET_MISS);     /* least recently used */
    assert_int_equal(cachet_get(r, "c", &v, &n), CACHET_OK);
    cachet_free(v);
    cachet_region_close(r);
}

/* A get's value block may be one the thread gave back with cachet_free
 * (src/value_stash.c): whatever the order of sizes, frees and values
 * held at once, each get returns its own value, whole, NUL-terminated. */
static void reused_blocks_hold_each_value_whole(void **state)
{
    static const size_t sizes[] = {0, 1, 100, 1000, 1900, 3000, 100, 7, 1500, 0, 100};
    enum { NSIZES = sizeof sizes / sizeof sizes[0] };
    cachet_region *r = th_open("memory", NULL);
    char key[32], *want = malloc(4000);
    void *held[NSIZES];
    size_t n;

    (void)state;
    assert_non_null(want);
    for (size_t i = 0; i < NSIZES; i++) {
        memset(want, 'a' + (int)i, sizes[i]);
        snprintf(key, sizeof key, "stash:%zu", i);
        assert_int_equal(cachet_set(r, key, want, sizes[i]), CACHET_OK);
    }
    for (int round = 0; round < 3; round++) {
        /* one at a time: each free gives back the block the next get takes */
        for (size_t i = 0; i < NSIZES; i++) {
            snprintf(key, sizeof key, "stash:%zu", i);
            memset(want, 'a' + (int)i, sizes[i]);
            th_assert_hit(r, key, want, sizes[i]);
        }
        /* all held at once, freed in another order, then read again */
        for (size_t i = 0; i < NSIZES; i++) {
            snprintf(key, sizeof key, "stash:%zu", i);
            assert_int_equal(cachet_get(r, key, &held[i], &n), CACHET_OK);
            assert_int_equal(n, sizes[i]);
            assert_int_equal(((char *)held[i])[n], '\0');
        }
        for (size_t i = 0; i < NSIZES; i++) {
            memset(want, 'a' + (int)i, sizes[i]);
            assert_memory_equal(held[i], want, sizes[i]);
            for (size_t j = 0; j < i; j++)
                assert_ptr_not_equal(held[i], held[j]);
        }
        for (size_t i = NSIZES; i-- > 0;)
            if (i % 2 == (size_t)round % 2)
                cachet_free(held[i]);
        for (size_t i = 0; i < NSIZES; i++)
            if (i % 2 != (size_t)round % 2)
                cachet_free(held[i]);
    }
    /* a block from cachet_backend_value_alloc is free()'s, as the ABI says */
    void *b = cachet_backend_value_alloc(150);
    assert_non_null(b);
    memset(b, 1, 150);
    free(b);
    /* and so is one from cachet_backend_value_copy: the bytes, then a NUL,
     * in a reused block or a new one alike */
    for (size_t i = 0; i < NSIZES; i++) {
        memset(want, 'A' + (int)i, sizes[i]);
        b = cachet_backend_value_copy(want, sizes[i]);
        assert_non_null(b);
        assert_memory_equal(b, want, sizes[i]);
        assert_int_equal(((char *)b)[sizes[i]], '\0');
        /* cachet_free takes a payload, 40 bytes (the value header) into
         * its block: what the next copy may reuse */
        if (i % 2 || sizes[i] < 40)
            free(b);
        else
            cachet_free((char *)b + 40);
    }
    b = cachet_backend_value_copy(NULL, 0);
    assert_non_null(b);
    assert_int_equal(*(char *)b, '\0');
    free(b);
    free(want);
    cachet_region_close(r);
}

typedef struct {
    cachet_region *r;
    char           key[32];
} stash_job;

static void *get_and_free_then_exit(void *arg)
{
    stash_job *j = arg;
    void *v[4];
    size_t n;
    for (int i = 0; i < 4; i++)
        if (cachet_get(j->r, j->key, &v[i], &n) != CACHET_OK)
            return (void *)1;
    for (int i = 0; i < 4; i++)
        cachet_free(v[i]);             /* the thread keeps these blocks */
    return NULL;
}

/* What a thread kept is freed when it exits: 64 threads each leave four
 * 1.5 KiB blocks behind at exit, 384 KiB if their destructor did not run.
 * (Off under ASan, where the stash is off and nothing is kept.) */
static void exiting_threads_give_their_blocks_back(void **state)
{
    enum { THREADS = 64 };
    cachet_region *r = th_open("memory", NULL);
    char *val = malloc(1500);
    stash_job job = {r, "stash:thread"};
    size_t before, after;

    (void)state;
    assert_non_null(val);
    memset(val, 'z', 1500);
    assert_int_equal(cachet_set(r, job.key, val, 1500), CACHET_OK);
    /* one thread first, so that the arena and the TLS of threads exist */
    for (int pass = 0; pass < 2; pass++) {
        struct mallinfo2 mi = mallinfo2();
        before = mi.uordblks;
        for (int i = 0; i < (pass ? THREADS : 1); i++) {
            pthread_t t;
            void *ret;
            assert_int_equal(pthread_create(&t, NULL, get_and_free_then_exit, &job), 0);
            assert_int_equal(pthread_join(t, &ret), 0);
            assert_null(ret);
        }
        mi = mallinfo2();
        after = mi.uordblks;
    }
    /* a thread's own bookkeeping may stay; 64 x 4 x 1.5 KiB may not */
    if (after > before)
        assert_true(after - before < 64 * 1024);
    free(val);
    cachet_region_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(binary_values_round_trip),
        cmocka_unit_test(null_backend_stores_nothing),
        cmocka_unit_test(multi_operations),
        cmocka_unit_test(multi_fallback_loop_on_backend_without_multi),
        cmocka_unit_test_teardown(expiration, th_clock_teardown),
        cmocka_unit_test(invalidation_hard_and_soft),
        cmocka_unit_test(get_or_create_basics),
        cmocka_unit_test(foreign_and_truncated_bytes_are_misses),
        cmocka_unit_test(failing_backend),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(memory_backend_bounds_through_region),
        cmocka_unit_test(reused_blocks_hold_each_value_whole),
        cmocka_unit_test(exiting_threads_give_their_blocks_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
