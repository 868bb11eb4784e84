/* What a server does with a write's lifetime (cachet_set_ex, cachet_add):
 * the ttl it is sent and keeps, read back with the server's own client --
 * redis PTTL through hiredis, memcached's meta `mg KEY t` on a raw socket
 * -- and that the value really goes, on the server and in the memory
 * backend, not only for readers.  The rule (DESIGN.md, "Details the table
 * leaves open"): ttl > 0 is kept max(ttl, backend_expiration_time), -1 and
 * 0 backend_expiration_time if it is set, else for ever.  Real servers
 * from tests/servers.h; nothing waits on a fixed sleep. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "helpers.h"
#include "servers.h"
#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

/* ---- memory: an expired entry leaves the backend ---- */

typedef struct {
    cachet_region *r;
    const char    *key;
} region_key;

/* Whether the backend still holds key: ignore_expiration reads past the
 * value's own lifetime, so only a value the backend dropped is a miss. */
static int held(cachet_region *r, const char *key)
{
    cachet_options any = {.ignore_expiration = 1};
    void *v = NULL;
    size_t n;
    cachet_status st = cachet_get_ex(r, key, &any, &v, &n);
    if (st == CACHET_OK)
        cachet_free(v);
    else if (st != CACHET_MISS)
        fail_msg("get_ex %s: %s: %s", key, cachet_strerror(st), cachet_errmsg());
    return st == CACHET_OK;
}

static int gone(void *arg)
{
    region_key *rk = arg;
    return !held(rk->r, rk->key);
}

static void count_entries(void *arg, const char *name, const char *value)
{
    if (strcmp(name, "entries") == 0)
        *(long *)arg = strtol(value, NULL, 10);
}

static long memory_entries(cachet_region *r)
{
    long n = -1;
    assert_int_equal(cachet_backend_report(r, count_entries, &n), CACHET_OK);
    assert_true(n >= 0);
    return n;
}

static void memory_drops_an_entry_after_its_ttl(void **state)
{
    (void)state;
    cachet_region *r = th_open("memory", NULL);
    cachet_set_options one = {.ttl = 1}, never = {.ttl = -1};
    region_key rk = {r, "short"};
    assert_int_equal(cachet_set_ex(r, "short", "s", 1, &one), CACHET_OK);
    assert_int_equal(cachet_set_ex(r, "kept", "k", 1, &never), CACHET_OK);
    assert_int_equal(cachet_set(r, "plain", "p", 1), CACHET_OK);
    assert_true(held(r, "short"));
    assert_int_equal(memory_entries(r), 3);
    if (!th_wait_until(gone, &rk, 10.0))
        fail_msg("memory: the ttl 1 entry is still in the backend after 10 s");
    assert_int_equal(memory_entries(r), 2);
    assert_true(held(r, "kept"));
    assert_true(held(r, "plain"));
    th_assert_hit(r, "kept", "k", 1);
    /* add with a ttl: the same deadline, and the key is free again after it */
    rk.key = "added";
    assert_int_equal(cachet_add(r, "added", "a", 1, &one), CACHET_OK);
    assert_true(held(r, "added"));
    if (!th_wait_until(gone, &rk, 10.0))
        fail_msg("memory: the entry added with ttl 1 is still there after 10 s");
    assert_int_equal(cachet_add(r, "added", "b", 1, NULL), CACHET_OK);
    th_assert_hit(r, "added", "b", 1);
    cachet_region_close(r);
}

/* ---- the readers' clock ---- */

static double realtime_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The poll of a value set at set_s with a lifetime of life_s: each get
 * notes whether it hit though it began more than a tick (of the coarse
 * clock: 10 ms at HZ=100) after the value came of age. */
typedef struct {
    cachet_region *r;
    double         set_s, life_s, late_hit_s;
} lifetime_poll;

static int missed(void *arg)
{
    lifetime_poll *p = arg;
    void *v;
    size_t n;
    double before = realtime_s();
    cachet_options o = {.expiration_time = p->life_s};
    cachet_status st = cachet_get_ex(p->r, "timed", &o, &v, &n);
    if (st == CACHET_OK) {
        cachet_free(v);
        if (before - p->set_s > p->life_s + 0.02 && p->late_hit_s == 0)
            p->late_hit_s = before - p->set_s;
    }
    return st == CACHET_MISS;
}

static double until_s;
static int past_until(void *arg)
{
    (void)arg;
    return realtime_s() >= until_s;
}

/* On the real clock, a value is fresh for its expiration time, not a
 * second more or less: the readers' check decides with time()'s whole
 * seconds unless the value comes of age within the current second, and
 * then with the coarse clock (src/region_read.h).  The reads ask for an
 * expiration time of 1.5 s (cachet_options), so that the backend keeps
 * the value and only the readers' check decides.  No get that began more
 * than a tick after the value came of age hits; the first miss comes at
 * least 1.5 s after the set (the creation time is the precise clock, read
 * after t0, and the coarse clock is never ahead of it); and once whole
 * seconds alone say the value is old, it stays a miss. */
static void a_lifetime_ends_on_the_real_clock(void **state)
{
    (void)state;
    cachet_region *r = th_open("memory", NULL);
    cachet_options o = {.expiration_time = 1.5};
    double t0 = realtime_s();
    lifetime_poll p = {r, 0, 1.5, 0};
    void *v;
    size_t n;
    assert_int_equal(cachet_set(r, "timed", "t", 1), CACHET_OK);
    p.set_s = realtime_s();
    assert_int_equal(cachet_get_ex(r, "timed", &o, &v, &n), CACHET_OK);
    cachet_free(v);
    if (!th_wait_until(missed, &p, 10.0))
        fail_msg("a value read with expiration 1.5 s still reads 10 s after it was set");
    if (realtime_s() - t0 <= 1.5)
        fail_msg("a value read with expiration 1.5 s was a miss %.3f s after it was set",
                 realtime_s() - t0);
    if (p.late_hit_s != 0)
        fail_msg("a value read with expiration 1.5 s was still a hit %.3f s after it was set",
                 p.late_hit_s);
    /* past created + 2.5 s, floor(now) - created > 1.5 s: old by time() alone */
    until_s = p.set_s + 2.6;
    assert_true(th_wait_until(past_until, NULL, 10.0));
    assert_int_equal(cachet_get_ex(r, "timed", &o, &v, &n), CACHET_MISS);
    th_assert_hit(r, "timed", "t", 1);          /* the region's 600 s: still fresh */
    cachet_region_close(r);
}

/* ---- redis: PTTL ---- */
#ifdef HAVE_HIREDIS
static test_server redis_server;
static int redis_failed = -1;
static char redis_url[96];

static int need_redis(void)
{
    if (redis_failed < 0) {
        redis_failed = test_redis_start(&redis_server, 0, NULL) != 0;
        snprintf(redis_url, sizeof redis_url, "url:redis://127.0.0.1:%d/0", redis_server.port);
    }
    if (redis_failed)
        fail_msg("redis-server did not start");
    return 0;
}

static long long redis_pttl(const char *key)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_server.port, tv);
    redisReply *rep;
    long long ms;
    if (!c || c->err)
        fail_msg("hiredis: connect: %s", c ? c->errstr : "no memory");
    redisSetTimeout(c, tv);
    rep = redisCommand(c, "PTTL %s", key);
    if (!rep || rep->type != REDIS_REPLY_INTEGER)
        fail_msg("hiredis: PTTL %s: no integer reply", key);
    ms = rep->integer;
    freeReplyObject(rep);
    redisFree(c);
    return ms;
}

/* lo < PTTL <= hi, naming the key and what was seen. */
static void assert_pttl(const char *key, long long lo, long long hi)
{
    long long ms = redis_pttl(key);
    if (!(ms > lo && ms <= hi))
        fail_msg("redis PTTL %s = %lld ms, want (%lld, %lld]", key, ms, lo, hi);
}

static cachet_region *open_redis(const char *bet)
{
    const char *opts[] = {"backend_argument", redis_url, "expiration_time", "60",
                          "backend_expiration_time", bet, NULL};
    if (!bet)
        opts[4] = NULL;
    need_redis();
    return th_open("redis", opts);
}

/* Slack below the ttl for a loaded machine: a ttl counts down from the
 * write, and seconds may pass before the test reads it back. */
#define SLACK_MS 20000

static void redis_ttl_without_backend_expiration_time(void **state)
{
    (void)state;
    cachet_region *r = open_redis(NULL);
    cachet_set_options five = {.ttl = 5}, frac = {.ttl = 0.25}, never = {.ttl = -1};
    assert_int_equal(cachet_set_ex(r, "five", "5", 1, &five), CACHET_OK);
    assert_pttl("five", 0, 5000);
    assert_int_equal(cachet_set_ex(r, "frac", "f", 1, &frac), CACHET_OK);
    {
        long long ms = redis_pttl("frac");   /* PX in ms: not rounded up to a second */
        if (!(ms <= 250 && (ms > 0 || ms == -2)))
            fail_msg("redis PTTL frac = %lld ms, want (0, 250] or gone", ms);
    }
    assert_int_equal(cachet_set_ex(r, "never", "n", 1, &never), CACHET_OK);
    assert_int_equal(redis_pttl("never"), -1);
    assert_int_equal(cachet_set_ex(r, "zero", "z", 1, NULL), CACHET_OK);
    assert_int_equal(redis_pttl("zero"), -1);
    assert_int_equal(cachet_add(r, "added", "a", 1, &five), CACHET_OK);
    assert_pttl("added", 0, 5000);
    cachet_region_close(r);
}

static void redis_ttl_with_backend_expiration_time_takes_the_max(void **state)
{
    (void)state;
    cachet_region *r = open_redis("60");
    cachet_set_options five = {.ttl = 5}, long_ = {.ttl = 120}, never = {.ttl = -1};
    assert_int_equal(cachet_set_ex(r, "five", "5", 1, &five), CACHET_OK);
    assert_pttl("five", 60000 - SLACK_MS, 60000);
    assert_int_equal(cachet_set_ex(r, "long", "l", 1, &long_), CACHET_OK);
    assert_pttl("long", 120000 - SLACK_MS, 120000);
    assert_int_equal(cachet_set_ex(r, "never", "n", 1, &never), CACHET_OK);
    assert_pttl("never", 60000 - SLACK_MS, 60000);
    assert_int_equal(cachet_set_ex(r, "zero", "z", 1, NULL), CACHET_OK);
    assert_pttl("zero", 60000 - SLACK_MS, 60000);
    /* (a key of its own: the test before added "added" on this server) */
    assert_int_equal(cachet_add(r, "added60", "a", 1, &five), CACHET_OK);
    assert_pttl("added60", 60000 - SLACK_MS, 60000);
    /* readers still see ttl 5 (the server keeps it longer, readers do not) */
    th_clock_fake();
    assert_int_equal(cachet_set_ex(r, "five", "5", 1, &five), CACHET_OK);
    th_clock_advance(6);
    th_assert_miss(r, "five");
    th_clock_real();
    cachet_region_close(r);
}
#endif

/* ---- memcached: meta mg KEY t ---- */
#ifdef HAVE_LIBMEMCACHED
static test_server mc_server;
static int mc_failed = -1;
static char mc_servers[64];

static void need_memcached(void)
{
    if (mc_failed < 0) {
        mc_failed = test_memcached_start(&mc_server, 0, NULL) != 0;
        snprintf(mc_servers, sizeof mc_servers, "127.0.0.1:%d", mc_server.port);
    }
    if (mc_failed)
        fail_msg("memcached did not start");
}

/* One request line, one reply line (without its CRLF) into buf. */
static void mc_request(const char *req, char *buf, size_t size)
{
    int fd = th_connect(mc_server.port);
    size_t n;
    th_send_all(fd, req, strlen(req));
    n = th_recv_until(fd, buf, size, "\r\n");
    close(fd);
    buf[n - 2] = 0;
}

#define MC_MISS (-1000000000L)

/* The remaining ttl memcached reports for key: -1 for none, MC_MISS when
 * the key is not there. */
static long mc_ttl(const char *key)
{
    char req[300], rep[256];
    const char *t;
    snprintf(req, sizeof req, "mg %s t\r\n", key);
    mc_request(req, rep, sizeof rep);
    if (strcmp(rep, "EN") == 0)
        return MC_MISS;
    if (strncmp(rep, "HD", 2) != 0 || !(t = strstr(rep, " t")))
        fail_msg("memcached: mg %s t: unexpected reply \"%s\"", key, rep);
    return strtol(t + 2, NULL, 10);
}

static void assert_mc_ttl(const char *key, long lo, long hi)
{
    long t = mc_ttl(key);
    if (t == MC_MISS)
        fail_msg("memcached: %s is not there", key);
    if (t < lo || t > hi)
        fail_msg("memcached: %s has %ld s left, want [%ld, %ld]", key, t, lo, hi);
}

/* state: NULL, or the backend_argument of a variant ("binary:true"). */
static cachet_region *open_mc(void **state, const char *bet)
{
    const char *opts[9] = {"memcache_servers", mc_servers, "expiration_time", "60"};
    size_t n = 4;
    char rep[64];
    need_memcached();
    mc_request("flush_all\r\n", rep, sizeof rep);   /* every test starts on an empty server */
    assert_string_equal(rep, "OK");
    if (bet) {
        opts[n++] = "backend_expiration_time";
        opts[n++] = bet;
    }
    if (*state) {
        opts[n++] = "backend_argument";
        opts[n++] = *state;
    }
    opts[n] = NULL;
    return th_open("memcached", opts);
}

static int mc_key_gone(void *arg)
{
    return mc_ttl(arg) == MC_MISS;
}

static void memcached_exptime_from_ttl(void **state)
{
    (void)state;
    cachet_region *r = open_mc(state, NULL);
    cachet_set_options five = {.ttl = 5}, frac = {.ttl = 1.2}, never = {.ttl = -1},
                       days40 = {.ttl = 40.0 * 86400};
    int saw_two = 0;
    assert_int_equal(cachet_set_ex(r, "five", "5", 1, &five), CACHET_OK);
    assert_mc_ttl("five", 3, 6);
    /* 1.2 s goes as exptime 2 (rounded up: never shorter than asked).  The
     * server's clock ticks in whole seconds, so right after the set it may
     * say 1; an exptime of 1 could never say 2. */
    for (int i = 0; i < 5 && !saw_two; i++) {
        long t;
        assert_int_equal(cachet_set_ex(r, "frac", "f", 1, &frac), CACHET_OK);
        t = mc_ttl("frac");
        if (t != MC_MISS && (t < 0 || t > 2))
            fail_msg("memcached: ttl 1.2 left %ld s, want at most 2", t);
        saw_two = t == 2;
    }
    assert_true(saw_two);
    /* over 30 days memcached reads a Unix time: sent as one, it is 40 days
     * from now, not a date in 1970 that expires the value at once */
    assert_int_equal(cachet_set_ex(r, "days40", "d", 1, &days40), CACHET_OK);
    assert_mc_ttl("days40", 40L * 86400 - 60, 40L * 86400 + 2);
    th_assert_hit(r, "days40", "d", 1);
    assert_int_equal(cachet_set_ex(r, "never", "n", 1, &never), CACHET_OK);
    assert_int_equal(mc_ttl("never"), -1);
    assert_int_equal(cachet_add(r, "added", "a", 1, &five), CACHET_OK);
    assert_mc_ttl("added", 3, 6);
    cachet_region_close(r);
}

static void memcached_ttl_with_backend_expiration_time_takes_the_max(void **state)
{
    (void)state;
    cachet_region *r = open_mc(state, "60");
    cachet_set_options five = {.ttl = 5}, long_ = {.ttl = 120}, never = {.ttl = -1};
    assert_int_equal(cachet_set_ex(r, "five", "5", 1, &five), CACHET_OK);
    assert_mc_ttl("five", 60 - SLACK_MS / 1000, 60);
    assert_int_equal(cachet_set_ex(r, "long", "l", 1, &long_), CACHET_OK);
    assert_mc_ttl("long", 120 - SLACK_MS / 1000, 120);
    assert_int_equal(cachet_set_ex(r, "never", "n", 1, &never), CACHET_OK);
    assert_mc_ttl("never", 60 - SLACK_MS / 1000, 60);
    assert_int_equal(cachet_set_ex(r, "zero", "z", 1, NULL), CACHET_OK);
    assert_mc_ttl("zero", 60 - SLACK_MS / 1000, 60);
    cachet_region_close(r);
}

static void memcached_drops_the_value_after_its_ttl(void **state)
{
    (void)state;
    cachet_region *r = open_mc(state, NULL);
    cachet_set_options one = {.ttl = 1};
    assert_int_equal(cachet_set_ex(r, "one", "1", 1, &one), CACHET_OK);
    assert_true(mc_ttl("one") != MC_MISS);
    /* memcached's clock is in whole seconds: exptime 1 may last up to 2 */
    if (!th_wait_until(mc_key_gone, "one", 5.0))
        fail_msg("memcached still holds a ttl 1 value after 5 s");
    th_assert_miss(r, "one");
    assert_int_equal(cachet_add(r, "one", "again", 5, NULL), CACHET_OK);
    th_assert_hit(r, "one", "again", 5);
    cachet_region_close(r);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(memory_drops_an_entry_after_its_ttl),
        cmocka_unit_test(a_lifetime_ends_on_the_real_clock),
#ifdef HAVE_HIREDIS
        cmocka_unit_test(redis_ttl_without_backend_expiration_time),
        cmocka_unit_test_teardown(redis_ttl_with_backend_expiration_time_takes_the_max,
                                  th_clock_teardown),
#endif
#ifdef HAVE_LIBMEMCACHED
        cmocka_unit_test(memcached_exptime_from_ttl),
        cmocka_unit_test(memcached_ttl_with_backend_expiration_time_takes_the_max),
        cmocka_unit_test(memcached_drops_the_value_after_its_ttl),
        /* the binary protocol carries exptime in its own field */
        cmocka_unit_test_prestate(memcached_exptime_from_ttl, (void *)"binary:true"),
        cmocka_unit_test_prestate(memcached_ttl_with_backend_expiration_time_takes_the_max,
                                  (void *)"binary:true"),
        cmocka_unit_test_prestate(memcached_drops_the_value_after_its_ttl,
                                  (void *)"binary:true"),
#endif
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    test_servers_stop_all();
    return failed ? 1 : 0;
}
