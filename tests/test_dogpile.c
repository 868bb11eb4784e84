/* get_or_create under threads: the dogpile lock, stale values served while
 * one thread regenerates, failing creators, invalidation, the _ex options,
 * get_or_create_multi and memoisation. */
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
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "helpers.h"

static cachet_region *open_backend(const char *backend, const char *expiration)
{
    const char *const opts[] = {"expiration_time", expiration, NULL};
    return th_open(backend, expiration ? opts : NULL);
}

/* The callers of one round, so that a creator can hold on until they are
 * where the test needs them (rather than sleeping and hoping they got
 * there: on a loaded machine a thread can be late by more than any
 * sleep). */
#define MAX_CALLERS 64
typedef struct {
    int        n;
    pid_t      tid[MAX_CALLERS];        /* written before the start barrier */
    atomic_int entered[MAX_CALLERS];    /* about to call get_or_create */
    atomic_int returned[MAX_CALLERS];   /* its get_or_create returned */
} crowd;

enum hold { HOLD_NONE, HOLD_UNTIL_OTHERS_WAIT, HOLD_UNTIL_OTHERS_RETURN };
#define HOLD_LIMIT_S 30.0   /* normally met in milliseconds */

static pid_t my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Is thread tid of this process blocked (state S)?  A caller that entered
 * get_or_create and sleeps there is waiting for the key's creator. */
static int asleep(pid_t tid)
{
    char path[64], buf[512];
    size_t n;
    FILE *f;
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');   /* the state follows "(comm)" */
    return p && p[1] == ' ' && p[2] == 'S';
}

/* Are the callers other than this thread (those not returned yet) all
 * asleep in get_or_create (HOLD_UNTIL_OTHERS_WAIT), or all returned? */
static int others_are(crowd *c, enum hold what)
{
    pid_t me = my_tid();
    for (int i = 0; i < c->n; i++) {
        if (c->tid[i] == me || atomic_load(&c->returned[i]))
            continue;
        if (what == HOLD_UNTIL_OTHERS_RETURN || !atomic_load(&c->entered[i]) || !asleep(c->tid[i]))
            return 0;
    }
    return 1;
}

/* Holds the calling creator until others_are(what): 1, or 0 when that did
 * not come within HOLD_LIMIT_S.  Asleep must be seen three polls in a row:
 * a thread also sleeps a moment on a contended mutex on its way. */
static int hold(crowd *c, enum hold what)
{
    int streak = 0;
    if (what == HOLD_NONE)
        return 1;
    for (double t0 = th_now_s(); th_now_s() - t0 < HOLD_LIMIT_S; usleep(5 * 1000)) {
        streak = others_are(c, what) ? streak + 1 : 0;
        if (streak == (what == HOLD_UNTIL_OTHERS_WAIT ? 3 : 1))
            return 1;
    }
    return 0;
}

/* A creator that holds on until the other callers are where the test wants
 * them, counts its calls, and says when it ended. */
typedef struct {
    atomic_int  calls;
    atomic_int  finished;
    atomic_int  held_in_vain;   /* hold() ran out */
    enum hold   hold;
    crowd      *crowd;
    int         fail;
    const char *payload;
} slow_creator;

static cachet_status slow_create(void *arg, const char *key, void **value, size_t *len)
{
    slow_creator *c = arg;
    atomic_fetch_add(&c->calls, 1);
    if (!hold(c->crowd, c->hold))
        atomic_store(&c->held_in_vain, 1);
    atomic_store(&c->finished, 1);
    if (c->fail)
        return CACHET_EBACKEND;
    *value = strdup(c->payload);
    *len = strlen(c->payload);
    return CACHET_OK;
}

typedef struct {
    cachet_region *r;
    slow_creator  *creator;
    pthread_barrier_t *start;
    crowd         *crowd;
    int            id;
    cachet_status  st;
    char           got[32];
    int            creator_done_on_return;
} caller;

static void *call_get_or_create(void *arg)
{
    caller *c = arg;
    void *v = NULL;
    size_t n = 0;
    c->crowd->tid[c->id] = my_tid();
    pthread_barrier_wait(c->start);
    atomic_store(&c->crowd->entered[c->id], 1);
    c->st = cachet_get_or_create(c->r, "hot", slow_create, c->creator, &v, &n);
    c->creator_done_on_return = atomic_load(&c->creator->finished);
    atomic_store(&c->crowd->returned[c->id], 1);
    if (c->st == CACHET_OK) {
        snprintf(c->got, sizeof c->got, "%.*s", (int)n, (char *)v);
        cachet_free(v);
    }
    return NULL;
}

/* n callers of get_or_create("hot") at once; sc's creator holds on as
 * sc->hold says (its crowd is set here), and must not have held in vain. */
static void run_callers(cachet_region *r, slow_creator *sc, caller *cs, int n)
{
    pthread_t t[MAX_CALLERS];
    pthread_barrier_t start;
    crowd *cr = calloc(1, sizeof *cr);
    assert_non_null(cr);
    assert_true(n <= MAX_CALLERS);
    cr->n = n;
    sc->crowd = cr;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        cs[i] = (caller){.r = r, .creator = sc, .start = &start, .crowd = cr, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, call_get_or_create, &cs[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    sc->crowd = NULL;
    free(cr);
    if (atomic_load(&sc->held_in_vain))
        fail_msg("the creator waited %.0f s in vain for the other callers to %s", HOLD_LIMIT_S,
                 sc->hold == HOLD_UNTIL_OTHERS_WAIT ? "wait for it" : "return");
}

static void absent_key_32_threads_one_creator(const char *backend)
{
    cachet_region *r = open_backend(backend, NULL);
    /* every other caller waits for the one creator (the null backend
     * stores nothing: a latecomer would have to create again) */
    slow_creator sc = {.hold = HOLD_UNTIL_OTHERS_WAIT, .payload = "v1"};
    caller cs[32];
    cachet_stat_counters s;

    run_callers(r, &sc, cs, 32);
    assert_int_equal(atomic_load(&sc.calls), 1);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(cs[i].st, CACHET_OK);
        assert_string_equal(cs[i].got, "v1");
    }
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_int_equal(s.creator_calls, 1);
    cachet_region_close(r);
}

static void absent_key_memory(void **state) { absent_key_32_threads_one_creator("memory"); }
/* the null backend stores nothing: the waiters still get the creator's value */
static void absent_key_null(void **state) { absent_key_32_threads_one_creator("null"); }

static void expired_key_one_regeneration_others_stale(void **state)
{
    cachet_region *r;
    /* the creator finishes only after all others returned: stale, unwaited */
    slow_creator sc = {.hold = HOLD_UNTIL_OTHERS_RETURN, .payload = "new"};
    caller cs[32];
    int stale = 0, fresh = 0;
    cachet_stat_counters s;

    th_clock_fake();
    r = open_backend("memory", "1");
    assert_int_equal(cachet_set(r, "hot", "old", 3), CACHET_OK);
    th_clock_advance(1.1);                     /* now expired */
    run_callers(r, &sc, cs, 32);
    th_clock_real();
    assert_int_equal(atomic_load(&sc.calls), 1);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(cs[i].st, CACHET_OK);
        if (strcmp(cs[i].got, "old") == 0) {
            stale++;
            /* served without waiting: the creator had not finished */
            assert_int_equal(cs[i].creator_done_on_return, 0);
        } else {
            assert_string_equal(cs[i].got, "new");
            fresh++;
        }
    }
    assert_int_equal(stale, 31);
    assert_int_equal(fresh, 1);
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_int_equal(s.stale_served, 31);
    cachet_region_close(r);
}

static void failing_creator_no_deadlock(void **state)
{
    cachet_region *r = open_backend("memory", NULL);
    /* each failing creator fails with the others waiting on it */
    slow_creator bad = {.hold = HOLD_UNTIL_OTHERS_WAIT, .fail = 1};
    slow_creator good = {.payload = "ok"};
    caller cs[8];
    void *v;
    size_t n;

    run_callers(r, &bad, cs, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(cs[i].st, CACHET_EBACKEND);
    assert_true(atomic_load(&bad.calls) >= 1);
    assert_int_equal(cachet_get_or_create(r, "hot", slow_create, &good, &v, &n), CACHET_OK);
    assert_memory_equal(v, "ok", 2);
    cachet_free(v);
    cachet_region_close(r);
}

static void soft_invalidation_serves_stale_while_one_regenerates(void **state)
{
    cachet_region *r = open_backend("memory", NULL);
    slow_creator sc = {.hold = HOLD_UNTIL_OTHERS_RETURN, .payload = "regen"};
    caller cs[8];
    void *v;
    size_t n;
    int stale = 0;

    assert_int_equal(cachet_set(r, "hot", "before", 6), CACHET_OK);
    cachet_invalidate(r, 0);
    assert_int_equal(cachet_get(r, "hot", &v, &n), CACHET_MISS);    /* get: a miss */
    run_callers(r, &sc, cs, 8);
    assert_int_equal(atomic_load(&sc.calls), 1);
    for (int i = 0; i < 8; i++)
        stale += strcmp(cs[i].got, "before") == 0;
    assert_int_equal(stale, 7);
    assert_int_equal(cachet_get(r, "hot", &v, &n), CACHET_OK);
    assert_memory_equal(v, "regen", 5);
    cachet_free(v);

    /* hard: nobody gets the old value; all wait for the one creator */
    sc = (slow_creator){.hold = HOLD_UNTIL_OTHERS_WAIT, .payload = "after"};
    cachet_invalidate(r, 1);
    run_callers(r, &sc, cs, 8);
    assert_int_equal(atomic_load(&sc.calls), 1);
    for (int i = 0; i < 8; i++)
        assert_string_equal(cs[i].got, "after");
    cachet_region_close(r);
}

static int never_cache(void *arg, const char *key, const void *value, size_t len)
{
    (*(int *)arg)++;
    return 0;
}

static void ex_options(void **state)
{
    cachet_region *r;
    slow_creator sc = {.payload = "made"};
    cachet_options o = {0};
    void *v;
    size_t n;
    int asked = 0;

    th_clock_fake();
    r = open_backend("memory", NULL);                      /* region: 600 s */
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    th_clock_advance(0.3);
    o.expiration_time = 0.1;                               /* older than 0.1 s: expired */
    assert_int_equal(cachet_get_ex(r, "k", &o, &v, &n), CACHET_MISS);
    o.expiration_time = 10;
    assert_int_equal(cachet_get_ex(r, "k", &o, &v, &n), CACHET_OK);
    cachet_free(v);
    /* ignore_expiration: soft-invalidated values come back; hard ones do not */
    cachet_invalidate(r, 0);
    assert_int_equal(cachet_get(r, "k", &v, &n), CACHET_MISS);
    o = (cachet_options){.ignore_expiration = 1};
    assert_int_equal(cachet_get_ex(r, "k", &o, &v, &n), CACHET_OK);
    cachet_free(v);
    cachet_invalidate(r, 1);
    assert_int_equal(cachet_get_ex(r, "k", &o, &v, &n), CACHET_MISS);
    /* should_cache = no: returned, not stored */
    o = (cachet_options){.should_cache = never_cache, .should_cache_arg = &asked};
    assert_int_equal(cachet_get_or_create_ex(r, "nc", slow_create, &sc, &o, &v, &n), CACHET_OK);
    assert_memory_equal(v, "made", 4);
    cachet_free(v);
    assert_int_equal(asked, 1);
    assert_int_equal(cachet_get(r, "nc", &v, &n), CACHET_MISS);
    /* -1: never expires, even on a region whose values expire at once */
    cachet_region_close(r);
    r = open_backend("memory", "0");
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    assert_int_equal(cachet_get(r, "k", &v, &n), CACHET_MISS);
    o = (cachet_options){.expiration_time = -1};
    assert_int_equal(cachet_get_ex(r, "k", &o, &v, &n), CACHET_OK);
    cachet_free(v);
    cachet_region_close(r);
    th_clock_real();
}

/* Multi creator: counts calls and keys, makes "v:<key>", holds on as
 * slow_creator does. */
typedef struct {
    atomic_int calls;
    atomic_int keys;
    atomic_int held_in_vain;
    enum hold  hold;
    crowd     *crowd;
} multi_creator;

static cachet_status make_many(void *arg, cachet_item *items, size_t n)
{
    multi_creator *m = arg;
    atomic_fetch_add(&m->calls, 1);
    atomic_fetch_add(&m->keys, (int)n);
    if (!hold(m->crowd, m->hold))
        atomic_store(&m->held_in_vain, 1);
    for (size_t i = 0; i < n; i++) {
        char *v = malloc(64);
        items[i].len = (size_t)snprintf(v, 64, "v:%s", items[i].key);
        items[i].value = v;
        items[i].status = CACHET_OK;
    }
    return CACHET_OK;
}

static void get_or_create_multi_one_call(void **state)
{
    cachet_region *r = open_backend("memory", NULL);
    multi_creator m = {0};
    cachet_item items[4] = {{.key = "a"}, {.key = "b"}, {.key = "c"}, {.key = "d"}};
    assert_int_equal(cachet_set(r, "b", "cached-b", 8), CACHET_OK);
    assert_int_equal(cachet_get_or_create_multi(r, items, 4, make_many, &m, NULL), CACHET_OK);
    assert_int_equal(atomic_load(&m.calls), 1);
    assert_int_equal(atomic_load(&m.keys), 3);            /* b was there */
    assert_memory_equal(items[0].value, "v:a", 3);
    assert_memory_equal(items[1].value, "cached-b", 8);
    assert_memory_equal(items[3].value, "v:d", 3);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(items[i].status, CACHET_OK);
        cachet_free(items[i].value);
    }
    /* all there now: no call */
    assert_int_equal(cachet_get_or_create_multi(r, items, 4, make_many, &m, NULL), CACHET_OK);
    assert_int_equal(atomic_load(&m.calls), 1);
    for (int i = 0; i < 4; i++)
        cachet_free(items[i].value);
    cachet_region_close(r);
}

typedef struct {
    cachet_region *r;
    multi_creator *m;
    pthread_barrier_t *start;
    crowd *crowd;
    int id, first;
    cachet_status st;
    int ok;
} multi_caller;

static void *call_multi(void *arg)
{
    multi_caller *c = arg;
    char names[20][8];
    cachet_item items[20];
    /* overlapping sets: thread i asks for keys i .. i+19 (of 0..39) */
    for (int k = 0; k < 20; k++) {
        snprintf(names[k], sizeof names[k], "m%d", (c->first + k) % 40);
        items[k] = (cachet_item){names[k], NULL, 0, CACHET_MISS};
    }
    c->crowd->tid[c->id] = my_tid();
    pthread_barrier_wait(c->start);
    atomic_store(&c->crowd->entered[c->id], 1);
    c->st = cachet_get_or_create_multi(c->r, items, 20, make_many, c->m, NULL);
    atomic_store(&c->crowd->returned[c->id], 1);
    c->ok = 1;
    for (int k = 0; k < 20; k++) {
        char want[16];
        int wl = snprintf(want, sizeof want, "v:%s", names[k]);
        if (items[k].status != CACHET_OK || items[k].len != (size_t)wl ||
            memcmp(items[k].value, want, (size_t)wl) != 0)
            c->ok = 0;
        cachet_free(items[k].value);
    }
    return NULL;
}

static void get_or_create_multi_threads_each_key_once(void **state)
{
    cachet_region *r = open_backend("null", NULL);          /* nothing stored: waiters must share */
    /* each creator holds on until every other thread sleeps: in its own
     * creator, or waiting for keys another one creates.  By then each
     * thread has taken or subscribed to all its keys, so none can be
     * created twice, however late a thread started. */
    crowd cr = {.n = 8};
    multi_creator m = {.hold = HOLD_UNTIL_OTHERS_WAIT, .crowd = &cr};
    multi_caller cs[8];
    pthread_t t[8];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 8);
    for (int i = 0; i < 8; i++) {
        cs[i] = (multi_caller){r, &m, &start, &cr, i, i * 5, CACHET_EINVAL, 0};
        pthread_create(&t[i], NULL, call_multi, &cs[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    if (atomic_load(&m.held_in_vain))
        fail_msg("a creator waited %.0f s in vain for the other threads to sleep", HOLD_LIMIT_S);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cs[i].st, CACHET_OK);
        assert_true(cs[i].ok);
    }
    /* 8 threads x 20 keys over 40 distinct keys: each created once */
    assert_int_equal(atomic_load(&m.keys), 40);
    cachet_region_close(r);
}

static cachet_status make_square(void *arg, const char *key, void **value, size_t *len)
{
    (*(int *)arg)++;
    char *v = malloc(32);
    *len = (size_t)snprintf(v, 32, "%ld", strtol(strchr(key, '|') + 1, NULL, 10) * strtol(strchr(key, '|') + 1, NULL, 10));
    *value = v;
    return CACHET_OK;
}

static void memoize(void **state)
{
    cachet_region *r = open_backend("memory", NULL);
    const char *args[] = {"12"};
    const char *two[] = {"a", "b"};
    char key[64];
    int calls = 0;
    void *v;
    size_t n;

    assert_int_equal(cachet_function_key(key, sizeof key, "mod:square", NULL, args, 1), 14);
    assert_string_equal(key, "mod:square|12");
    cachet_function_key(key, sizeof key, "f", "ns", two, 2);
    assert_string_equal(key, "f|ns|a b");
    assert_int_equal(cachet_function_key(key, 4, "long_function", NULL, two, 2), 18);
    assert_string_equal(key, "lon");                            /* truncated, terminated */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cachet_memoize(r, "square", args, 1, make_square, &calls, &v, &n), CACHET_OK);
        assert_memory_equal(v, "144", 3);
        cachet_free(v);
    }
    assert_int_equal(calls, 1);
    assert_int_equal(cachet_get(r, "square|12", &v, &n), CACHET_OK);
    cachet_free(v);
    cachet_region_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(absent_key_memory),
        cmocka_unit_test(absent_key_null),
        cmocka_unit_test_teardown(expired_key_one_regeneration_others_stale, th_clock_teardown),
        cmocka_unit_test(failing_creator_no_deadlock),
        cmocka_unit_test(soft_invalidation_serves_stale_while_one_regenerates),
        cmocka_unit_test_teardown(ex_options, th_clock_teardown),
        cmocka_unit_test(get_or_create_multi_one_call),
        cmocka_unit_test(get_or_create_multi_threads_each_key_once),
        cmocka_unit_test(memoize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
