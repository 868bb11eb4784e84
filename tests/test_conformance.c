/* One body of tests run on every backend and proxy chain, as APR's
 * testdbm.c runs one body on every driver: what the public contract
 * promises must hold whatever is below the region.  Targets: memory, dbm
 * (a temporary file), memcached and memcache_pool (a real memcached), redis
 * (a real redis-server), memcached's binary protocol, the log proxy,
 * log + the probe proxy and debug_cache_backend over memory and over a
 * networked backend, the distributed lock of memcached and redis, and the
 * built-in proxies (metrics, compress, near) over memory, memcached and redis.  A target whose server cannot
 * start fails its whole group; a body that cannot apply to a target says so
 * with skip() (reported), never by passing silently.
 *
 * Foreign bytes and values bound to another key are written under the
 * region with the backend's own client (a raw socket for memcached,
 * hiredis for redis, gdbm for dbm): the region must call them a miss and
 * count them as corrupt.
 *
 * Writes with a lifetime (cachet_set_ex) and cachet_add are judged here as
 * readers see them, with the fake clock (it moves the region's time, not a
 * server's); what the servers themselves keep is tests/test_lifetimes.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include <cachet/backend.h>   /* cachet_backend_error: a creator's own message */
#include "helpers.h"
#include "servers.h"
#ifdef HAVE_GDBM
#include <gdbm.h>
#endif
#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

/* How the test reaches the stored bytes under the region. */
enum raw_kind { RAW_NONE, RAW_MEMCACHED, RAW_REDIS, RAW_DBM };

typedef struct {
    const char   *name;
    const char   *backend;
    const char   *opts[16];      /* option pairs, NULL-terminated */
    enum raw_kind raw;
    int           binds_keys;    /* not CACHET_CAP_LOCAL: values carry their key */
    int           dist_lock;     /* distributed_lock:true is set */
    int           port;          /* the server's, for the raw client */
    char          path[128];     /* dbm file */
    int           server_failed; /* its server did not start */
    int           logs;          /* the log proxy is in its chain */
} target;

/* Every line the library logs: the log proxy formats every key the bodies
 * use (control bytes, 300 bytes), and a chain with it must log. */
static atomic_ulong log_lines;
/* The log proxy's lines for the keys of log_passes_add_and_set_ex. */
static atomic_ulong add_ok_lines, add_exists_lines, set_ex_lines;

static void count_line(void *arg, cachet_log_level level, const char *msg)
{
    (void)arg;
    (void)level;
    assert_non_null(msg);
    assert_true(strlen(msg) < 4096);
    atomic_fetch_add(&log_lines, 1);
    if (strstr(msg, ": add logged-add: ok"))
        atomic_fetch_add(&add_ok_lines, 1);
    if (strstr(msg, ": add logged-add: exists"))
        atomic_fetch_add(&add_exists_lines, 1);
    if (strstr(msg, ": set logged-set: ok"))
        atomic_fetch_add(&set_ex_lines, 1);
}

static test_server memcached_server, redis_server;
static int memcached_up = -1, redis_up = -1;     /* -1 not tried, 0 up, 1 failed */

/* ---- raw clients ---- */

static void mc_raw_put(int port, const char *key, uint32_t flags, const void *v, size_t len)
{
    char line[512], reply[64];
    int fd = th_connect(port);
    int hl = snprintf(line, sizeof line, "set %s %u 0 %zu\r\n", key, flags, len);
    th_send_all(fd, line, (size_t)hl);
    th_send_all(fd, v, len);
    th_send_all(fd, "\r\n", 2);
    th_recv_until(fd, reply, sizeof reply, "\r\n");
    close(fd);
    assert_memory_equal(reply, "STORED\r\n", 8);
}

/* The value under key (malloc'd), its flags; fails the test on a miss. */
static void *mc_raw_get(int port, const char *key, uint32_t *flags, size_t *len)
{
    static char buf[1 << 16];
    char line[512];
    unsigned fl;
    size_t n, bytes;
    char *nl, *v;
    int fd = th_connect(port);
    int hl = snprintf(line, sizeof line, "get %s\r\n", key);
    th_send_all(fd, line, (size_t)hl);
    n = th_recv_until(fd, buf, sizeof buf, "END\r\n");
    close(fd);
    if (sscanf(buf, "VALUE %*s %u %zu", &fl, &bytes) != 2 || !(nl = strstr(buf, "\r\n")))
        fail_msg("raw memcached client: no value under %s", key);
    assert_true((size_t)(nl + 2 - buf) + bytes <= n);
    v = malloc(bytes ? bytes : 1);
    memcpy(v, nl + 2, bytes);
    *flags = fl;
    *len = bytes;
    return v;
}

static void mc_raw_flush(int port)
{
    char reply[64];
    int fd = th_connect(port);
    th_send_all(fd, "flush_all\r\n", 11);
    th_recv_until(fd, reply, sizeof reply, "\r\n");
    close(fd);
    assert_memory_equal(reply, "OK\r\n", 4);
}

#ifdef HAVE_HIREDIS
static redisContext *redis_raw(int port)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err)
        fail_msg("hiredis: connect to 127.0.0.1:%d: %s", port, c ? c->errstr : "no memory");
    redisSetTimeout(c, tv);
    return c;
}

#endif

#ifdef HAVE_GDBM
static GDBM_FILE dbm_raw(const target *t)
{
    GDBM_FILE f = gdbm_open(t->path, 0, GDBM_WRCREAT, 0600, NULL);
    if (!f)
        fail_msg("gdbm_open %s: %s", t->path, gdbm_strerror(gdbm_errno));
    return f;
}
#endif

/* Writes bytes under key behind the region's back.  For dbm the region
 * must be closed (gdbm's own lock). */
static void raw_put(const target *t, const char *key, uint32_t flags, const void *v, size_t len)
{
    switch (t->raw) {
    case RAW_MEMCACHED:
        mc_raw_put(t->port, key, flags, v, len);
        return;
#ifdef HAVE_HIREDIS
    case RAW_REDIS: {
        redisContext *c = redis_raw(t->port);
        redisReply *rep = redisCommand(c, "SET %s %b", key, v, len);
        if (!rep || rep->type != REDIS_REPLY_STATUS)
            fail_msg("hiredis: SET %s failed", key);
        freeReplyObject(rep);
        redisFree(c);
        return;
    }
#endif
#ifdef HAVE_GDBM
    case RAW_DBM: {
        GDBM_FILE f = dbm_raw(t);
        datum k = {(char *)key, (int)strlen(key)}, d = {(char *)(len ? v : ""), (int)len};
        assert_int_equal(gdbm_store(f, k, d, GDBM_REPLACE), 0);
        gdbm_close(f);
        return;
    }
#endif
    default:
        fail_msg("%s: no raw client", t->name);
    }
}

static void *raw_get(const target *t, const char *key, uint32_t *flags, size_t *len)
{
    *flags = 0;
    switch (t->raw) {
    case RAW_MEMCACHED:
        return mc_raw_get(t->port, key, flags, len);
#ifdef HAVE_HIREDIS
    case RAW_REDIS: {
        redisContext *c = redis_raw(t->port);
        redisReply *rep = redisCommand(c, "GET %s", key);
        void *v;
        if (!rep || rep->type != REDIS_REPLY_STRING)
            fail_msg("hiredis: GET %s: no value", key);
        v = malloc(rep->len ? rep->len : 1);
        memcpy(v, rep->str, rep->len);
        *len = rep->len;
        freeReplyObject(rep);
        redisFree(c);
        return v;
    }
#endif
#ifdef HAVE_GDBM
    case RAW_DBM: {
        GDBM_FILE f = dbm_raw(t);
        datum k = {(char *)key, (int)strlen(key)}, d = gdbm_fetch(f, k);
        gdbm_close(f);
        if (!d.dptr)
            fail_msg("gdbm: %s: no value", key);
        *len = (size_t)d.dsize;
        return d.dptr;
    }
#endif
    default:
        fail_msg("%s: no raw reader", t->name);
    }
    return NULL;
}

/* ---- per-test setup: every body starts on an empty store ---- */

static int empty_store(void **state)
{
    target *t = *state;
    if (t->server_failed)
        fail_msg("%s: its server did not start", t->name);
    switch (t->raw) {
    case RAW_MEMCACHED:
        mc_raw_flush(t->port);
        break;
#ifdef HAVE_HIREDIS
    case RAW_REDIS: {
        redisContext *c = redis_raw(t->port);
        redisReply *rep = redisCommand(c, "FLUSHALL");
        assert_non_null(rep);
        freeReplyObject(rep);
        redisFree(c);
        break;
    }
#endif
    case RAW_DBM:
        unlink(t->path);
        break;
    default:
        break;
    }
    return 0;
}

static cachet_region *open_target(const target *t)
{
    return th_open(t->backend, t->opts);
}

/* ---- the bodies ---- */

static void round_trip_binary_empty_overwrite(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    static const char bin[] = {'a', 0, 'b', 0, (char)0xff, '\r', '\n', 'E', 'N', 'D', '\r', '\n', 0};
    unsigned long before = atomic_load(&log_lines);
    assert_int_equal(cachet_set(r, "bin", bin, sizeof bin), CACHET_OK);
    th_assert_hit(r, "bin", bin, sizeof bin);
    assert_int_equal(cachet_set(r, "empty", "", 0), CACHET_OK);
    th_assert_hit(r, "empty", "", 0);
    assert_int_equal(cachet_set(r, "over", "first", 5), CACHET_OK);
    assert_int_equal(cachet_set(r, "over", "second!", 7), CACHET_OK);
    th_assert_hit(r, "over", "second!", 7);
    assert_int_equal(cachet_set(r, "over", "", 0), CACHET_OK);
    th_assert_hit(r, "over", "", 0);
    cachet_region_close(r);
    if (t->logs)
        assert_true(atomic_load(&log_lines) > before);
}

static void delete_then_miss_and_absent_delete_is_ok(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    assert_int_equal(cachet_set(r, "d", "x", 1), CACHET_OK);
    th_assert_hit(r, "d", "x", 1);
    assert_int_equal(cachet_delete(r, "d"), CACHET_OK);
    th_assert_miss(r, "d");
    assert_int_equal(cachet_delete(r, "d"), CACHET_OK);
    assert_int_equal(cachet_delete(r, "never-set"), CACHET_OK);
    th_assert_miss(r, "never-set");
    cachet_region_close(r);
}

static void get_multi_mixed_hits_and_misses(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    cachet_item it[4] = {{.key = "m1"}, {.key = "m2"}, {.key = "m3"}, {.key = "m4"}};
    assert_int_equal(cachet_set(r, "m1", "one", 3), CACHET_OK);
    assert_int_equal(cachet_set(r, "m3", "three\0", 6), CACHET_OK);
    assert_int_equal(cachet_get_multi(r, it, 4), CACHET_OK);
    assert_int_equal(it[0].status, CACHET_OK);
    assert_int_equal(it[0].len, 3);
    assert_memory_equal(it[0].value, "one", 3);
    assert_int_equal(it[1].status, CACHET_MISS);
    assert_null(it[1].value);
    assert_int_equal(it[2].status, CACHET_OK);
    assert_int_equal(it[2].len, 6);
    assert_memory_equal(it[2].value, "three\0", 6);
    assert_int_equal(it[3].status, CACHET_MISS);
    cachet_free(it[0].value);
    cachet_free(it[2].value);
    cachet_region_close(r);
}

static void set_multi_get_multi_delete_multi(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    static const char v2[] = {0, (char)0xff, '\r', '\n'};
    cachet_item s[3] = {{.key = "s1", .value = "alpha", .len = 5},
                        {.key = "s2", .value = (void *)v2, .len = sizeof v2},
                        {.key = "s3", .value = "", .len = 0}};
    cachet_item g[3] = {{.key = "s1"}, {.key = "s2"}, {.key = "s3"}};
    const char *const dk[4] = {"s1", "s2", "s3", "absent"};
    assert_int_equal(cachet_set_multi(r, s, 3), CACHET_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s[i].status, CACHET_OK);
    assert_int_equal(cachet_get_multi(r, g, 3), CACHET_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].status, CACHET_OK);
        assert_int_equal(g[i].len, s[i].len);
        if (s[i].len)
            assert_memory_equal(g[i].value, s[i].value, s[i].len);
        cachet_free(g[i].value);
    }
    assert_int_equal(cachet_delete_multi(r, dk, 4), CACHET_OK);
    for (int i = 0; i < 3; i++)
        th_assert_miss(r, dk[i]);
    cachet_region_close(r);
}

static cachet_status count_create(void *arg, const char *key, void **value, size_t *len)
{
    atomic_int *calls = arg;
    char *v = malloc(64);
    atomic_fetch_add(calls, 1);
    *len = (size_t)snprintf(v, 64, "made:%s", key);
    *value = v;
    return CACHET_OK;
}

static void get_or_create_runs_the_creator_once(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    atomic_int calls = 0;
    void *v;
    size_t n;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cachet_get_or_create(r, "goc", count_create, &calls, &v, &n), CACHET_OK);
        assert_int_equal(n, 8);
        assert_memory_equal(v, "made:goc", 8);
        cachet_free(v);
    }
    assert_int_equal(atomic_load(&calls), 1);
    th_assert_hit(r, "goc", "made:goc", 8);
    assert_int_equal(th_stats(r).creator_calls, 1);
    cachet_region_close(r);
}

/* A creator that holds on until told, so another thread waits on it. */
typedef struct {
    atomic_int go;
    atomic_int started;
} nul_hold_arg;

static cachet_status nul_hold_create(void *arg, const char *key, void **value, size_t *len)
{
    nul_hold_arg *a = arg;
    (void)key;
    atomic_store(&a->started, 1);
    for (int i = 0; i < 30000 && !atomic_load(&a->go); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    *value = malloc(4);
    if (!*value)
        return CACHET_ENOMEM;
    memcpy(*value, "slow", 4);       /* no NUL of its own: the region adds one */
    *len = 4;
    return CACHET_OK;
}

typedef struct {
    cachet_region *r;
    nul_hold_arg *a;
    char byte_after;
    size_t len;
    cachet_status st;
} nul_waiter;

static void *nul_wait_for_creator(void *p)
{
    nul_waiter *w = p;
    void *v;
    w->st = cachet_get_or_create(w->r, "nul-wait", nul_hold_create, w->a, &v, &w->len);
    if (w->st == CACHET_OK) {
        w->byte_after = ((char *)v)[w->len];
        cachet_free(v);
    }
    return NULL;
}

static int nul_creator_started(void *arg)
{
    return atomic_load(&((nul_hold_arg *)arg)->started);
}

/* Every value handed out ends in a NUL not counted in its length, on every
 * path a value leaves by: get, get_multi, get_or_create (a hit, the
 * creator's own value, a waiter's copy of it). */
static void values_handed_out_end_in_a_nul(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    cachet_item items[2] = {{.key = "nul-a"}, {.key = "nul-b"}};
    atomic_int calls = 0;
    nul_hold_arg a = {0, 0};
    nul_waiter w = {r, &a, 'x', 0, CACHET_EINVAL};
    pthread_t th;
    void *v;
    size_t n;

    assert_int_equal(cachet_set(r, "nul-a", "abc", 3), CACHET_OK);
    assert_int_equal(cachet_set(r, "nul-b", "", 0), CACHET_OK);
    th_assert_hit(r, "nul-a", "abc", 3);        /* checks value[len] == 0 */
    th_assert_hit(r, "nul-b", "", 0);
    assert_int_equal(cachet_get_multi(r, items, 2), CACHET_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(items[i].status, CACHET_OK);
        assert_int_equal(((char *)items[i].value)[items[i].len], '\0');
        cachet_free(items[i].value);
    }
    /* the creator's value (count_create makes 8 bytes without a NUL), then a hit */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cachet_get_or_create(r, "nul-goc", count_create, &calls, &v, &n),
                         CACHET_OK);
        assert_int_equal(((char *)v)[n], '\0');
        cachet_free(v);
    }
    /* a waiter gets a copy of another thread's creation */
    assert_int_equal(pthread_create(&th, NULL, nul_wait_for_creator, &w), 0);
    assert_true(th_wait_until(nul_creator_started, &a, 30.0));
    {
        nul_waiter w2 = {r, &a, 'x', 0, CACHET_EINVAL};
        pthread_t th2;
        assert_int_equal(pthread_create(&th2, NULL, nul_wait_for_creator, &w2), 0);
        /* the second caller is parked on the key (or has the value) before the creator ends */
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);   /* only a head start: both outcomes are checked the same */
        atomic_store(&a.go, 1);
        pthread_join(th2, NULL);
        assert_int_equal(w2.st, CACHET_OK);
        assert_int_equal(w2.len, 4);
        assert_int_equal(w2.byte_after, '\0');
    }
    pthread_join(th, NULL);
    assert_int_equal(w.st, CACHET_OK);
    assert_int_equal(w.len, 4);
    assert_int_equal(w.byte_after, '\0');
    cachet_region_close(r);
}

/* Keys memcached cannot take (spaces, control bytes, over 250 bytes) are
 * mangled there: they must still round-trip, and two long keys that share
 * their first 250 bytes must stay two keys. */
static void awkward_keys_round_trip(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    char long1[301], long2[301];
    const char *odd[] = {"with space", "tab\there", "nl\r\nEND", "bell\a\x7f", "ünïcode"};
    memset(long1, 'k', 300);
    long1[300] = 0;
    memcpy(long2, long1, sizeof long1);
    long2[299] = 'z';
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
        assert_int_equal(cachet_set(r, odd[i], odd[i], strlen(odd[i])), CACHET_OK);
    assert_int_equal(cachet_set(r, long1, "L1", 2), CACHET_OK);
    assert_int_equal(cachet_set(r, long2, "L2", 2), CACHET_OK);
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
        th_assert_hit(r, odd[i], odd[i], strlen(odd[i]));
    th_assert_hit(r, long1, "L1", 2);
    th_assert_hit(r, long2, "L2", 2);
    assert_int_equal(cachet_delete(r, long1), CACHET_OK);
    th_assert_miss(r, long1);
    th_assert_hit(r, long2, "L2", 2);
    cachet_region_close(r);
}

static void foreign_bytes_are_a_corrupt_miss(void **state)
{
    target *t = *state;
    cachet_region *r;
    static const char junk[] = "not a cachet value, written by someone else";
    void *v;
    size_t n;
    if (t->raw == RAW_NONE)
        skip();   /* the memory backend lives in this region only: nobody else writes there */
    if (t->raw == RAW_DBM) {
        raw_put(t, "foreign", 0, junk, sizeof junk);
        r = open_target(t);
    } else {
        r = open_target(t);
        raw_put(t, "foreign", 0, junk, sizeof junk);
    }
    th_assert_miss(r, "foreign");
    assert_int_equal(th_stats(r).corrupt, 1);
    /* get_or_create replaces it rather than handing it out */
    atomic_int calls = 0;
    assert_int_equal(cachet_get_or_create(r, "foreign", count_create, &calls, &v, &n), CACHET_OK);
    assert_int_equal(n, 12);
    assert_memory_equal(v, "made:foreign", 12);
    cachet_free(v);
    assert_int_equal(atomic_load(&calls), 1);
    th_assert_hit(r, "foreign", "made:foreign", 12);
    cachet_region_close(r);
}

/* A region's value copied byte for byte under another key (a server that
 * answers for the wrong key does this): a miss, counted as corrupt. */
static void another_keys_value_is_a_corrupt_miss(void **state)
{
    target *t = *state;
    cachet_region *r;
    uint32_t flags;
    size_t len = 0;
    void *bytes;
    if (!t->binds_keys || t->raw == RAW_NONE || t->raw == RAW_DBM)
        skip();   /* local backends (memory, dbm) do not bind values to keys */
    r = open_target(t);
    assert_int_equal(cachet_set(r, "owner", "owner's value", 13), CACHET_OK);
    bytes = raw_get(t, "owner", &flags, &len);
    raw_put(t, "thief", flags, bytes, len);
    free(bytes);
    th_assert_miss(r, "thief");
    assert_int_equal(th_stats(r).corrupt, 1);
    th_assert_hit(r, "owner", "owner's value", 13);
    cachet_region_close(r);
}

static void invalidate_hard_and_soft(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    cachet_options ignore = {.ignore_expiration = 1};
    atomic_int calls = 0;
    void *v;
    size_t n;

    assert_int_equal(cachet_set(r, "inv", "old", 3), CACHET_OK);
    cachet_invalidate(r, 0);
    th_assert_miss(r, "inv");                              /* soft: stale ... */
    assert_int_equal(cachet_get_ex(r, "inv", &ignore, &v, &n), CACHET_OK);
    assert_int_equal(n, 3);                                /* ... but still there */
    assert_memory_equal(v, "old", 3);
    cachet_free(v);
    assert_int_equal(cachet_get_or_create(r, "inv", count_create, &calls, &v, &n), CACHET_OK);
    assert_memory_equal(v, "made:inv", 8);                 /* regenerated */
    cachet_free(v);
    assert_int_equal(atomic_load(&calls), 1);
    th_assert_hit(r, "inv", "made:inv", 8);

    cachet_invalidate(r, 1);
    th_assert_miss(r, "inv");                              /* hard: gone ... */
    assert_int_equal(cachet_get_ex(r, "inv", &ignore, &v, &n), CACHET_MISS);
    assert_int_equal(cachet_set(r, "after", "a", 1), CACHET_OK);
    th_assert_hit(r, "after", "a", 1);                     /* ... later values are not */
    cachet_region_close(r);
}

/* ---- cachet_key_prefix ---- */

/* The target's options plus more pairs (NULL-terminated), in buf. */
static const char *const *opts_plus(const target *t, const char **buf, size_t cap, ...)
{
    size_t n = 0;
    const char *s;
    va_list ap;
    while (t->opts[n]) {
        buf[n] = t->opts[n];
        buf[n + 1] = t->opts[n + 1];
        n += 2;
    }
    va_start(ap, cap);
    while ((s = va_arg(ap, const char *)) != NULL && n + 3 < cap) {
        buf[n++] = s;
        buf[n++] = va_arg(ap, const char *);
    }
    va_end(ap);
    buf[n] = NULL;
    return buf;
}

/* Two services on one server, each with its prefix: the same key holds two
 * values, the stored key is prefix + key (before mangling), and a region
 * without the prefix sees neither. */
static void key_prefix_keeps_services_apart(void **state)
{
    target *t = *state;
    const char *oa[40], *ob[40];
    cachet_region *a, *b, *plain;
    char longkey[300];
    if (t->raw == RAW_NONE)
        skip();   /* memory: each region has a store of its own anyway */
    a = th_open(t->backend, opts_plus(t, oa, 40, "cachet_key_prefix", "svcA:", NULL));
    b = th_open(t->backend, opts_plus(t, ob, 40, "cachet_key_prefix", "svcB:", NULL));
    assert_int_equal(cachet_set(a, "k", "from-a", 6), CACHET_OK);
    assert_int_equal(cachet_set(b, "k", "from-b", 6), CACHET_OK);
    th_assert_hit(a, "k", "from-a", 6);
    th_assert_hit(b, "k", "from-b", 6);
    memset(longkey, 'x', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';      /* mangled where the backend limits keys */
    assert_int_equal(cachet_set(a, longkey, "long-a", 6), CACHET_OK);
    th_assert_miss(b, longkey);
    th_assert_hit(a, longkey, "long-a", 6);
    if (t->raw == RAW_DBM) {
        cachet_region_close(a);
        cachet_region_close(b);
        a = b = NULL;
    }
    {
        uint32_t flags;
        size_t len = 0;
        char *raw = raw_get(t, "svcA:k", &flags, &len);
        assert_true(len >= 6);
        assert_memory_equal(raw + len - 6, "from-a", 6);   /* header first, payload last */
        free(raw);
    }
    plain = open_target(t);
    th_assert_miss(plain, "k");
    cachet_region_close(plain);
    cachet_region_close(a);
    cachet_region_close(b);
}

/* ---- creator failures: shared with the waiters, remembered; no stale ---- */

enum { FAILERS = 8 };
typedef struct {
    atomic_int    calls;
    atomic_int    entered;      /* threads about to call get_or_create */
    cachet_status fail_with;    /* CACHET_OK: succeed */
    double        hold_s;       /* how long a call takes */
} failing_arg;

static int failers_entered(void *p)
{
    return atomic_load(&((failing_arg *)p)->entered) >= FAILERS;
}

static int never(void *p)
{
    (void)p;
    return 0;
}

/* Fails (or succeeds) after hold_s, with a message of its own: keystone
 * timing out. */
static cachet_status failing_create(void *arg, const char *key, void **value, size_t *len)
{
    failing_arg *a = arg;
    atomic_fetch_add(&a->calls, 1);
    th_wait_until(never, NULL, a->hold_s);
    if (a->fail_with != CACHET_OK)
        return cachet_backend_error(a->fail_with, "keystone down for %s", key);
    *value = malloc(3);
    memcpy(*value, "new", 3);
    *len = 3;
    return CACHET_OK;
}

typedef struct {
    cachet_region *r;
    failing_arg   *a;
    const char    *key;
    cachet_status  st;
    char           msg[256];
    double         done_at;
} failer;

static void *fail_thread(void *p)
{
    failer *f = p;
    void *v = NULL;
    size_t n;
    atomic_fetch_add(&f->a->entered, 1);
    th_wait_until(failers_entered, f->a, 30.0);          /* start together */
    f->st = cachet_get_or_create(f->r, f->key, failing_create, f->a, &v, &n);
    snprintf(f->msg, sizeof f->msg, "%s", cachet_errmsg());
    f->done_at = th_now_s();
    if (f->st == CACHET_OK)
        cachet_free(v);
    return NULL;
}

/* 8 callers on a creator that fails after 50 ms: every one gets its error
 * and its message, and they do not run it one after another (that took
 * 8 x 50 ms: 402 ms for the last caller).  The next caller retries. */
static void creator_failure_reaches_every_waiter(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    failing_arg a = {.fail_with = CACHET_EUNAVAILABLE, .hold_s = 0.05};
    failer f[FAILERS];
    pthread_t th[FAILERS];
    double start = th_now_s(), last = 0;
    void *v;
    size_t n;
    for (int i = 0; i < FAILERS; i++) {
        f[i] = (failer){.r = r, .a = &a, .key = "failing"};
        assert_int_equal(pthread_create(&th[i], NULL, fail_thread, &f[i]), 0);
    }
    for (int i = 0; i < FAILERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < FAILERS; i++) {
        assert_int_equal(f[i].st, CACHET_EUNAVAILABLE);
        th_assert_contains(f[i].msg, "keystone down for failing");
        if (f[i].done_at > last)
            last = f[i].done_at;
    }
    /* not in series: far fewer runs than callers, and all back within a
     * generous bound (serial is 400 ms of creator time alone) */
    assert_true(atomic_load(&a.calls) < FAILERS / 2);
    assert_true(last - start < 1.0);
    assert_true(th_stats(r).lock_waits >= 1);
    /* nothing remembers the failure (cachet_failure_cache_time is 0) */
    a.fail_with = CACHET_OK;
    a.hold_s = 0;
    int before = atomic_load(&a.calls);
    assert_int_equal(cachet_get_or_create(r, "failing", failing_create, &a, &v, &n), CACHET_OK);
    assert_int_equal(atomic_load(&a.calls), before + 1);
    assert_memory_equal(v, "new", 3);
    cachet_free(v);
    cachet_region_close(r);
}

/* cachet_failure_cache_time: the failure comes back at once, with the
 * creator's own status and message, without running it, until the time
 * is up; other keys are not held back; a success forgets it. */
static void creator_failure_remembered_for_its_time(void **state)
{
    target *t = *state;
    const char *o[40];
    cachet_region *r = th_open(t->backend, opts_plus(t, o, 40, "cachet_failure_cache_time", "0.3",
                                                      NULL));
    failing_arg a = {.fail_with = CACHET_ETIMEDOUT};
    void *v = NULL;
    size_t n;
    double t0 = th_now_s();
    cachet_status st;
    assert_int_equal(cachet_get_or_create(r, "neg", failing_create, &a, &v, &n), CACHET_ETIMEDOUT);
    assert_int_equal(cachet_get_or_create(r, "neg", failing_create, &a, &v, &n), CACHET_ETIMEDOUT);
    th_assert_contains(cachet_errmsg(), "keystone down for neg");
    th_assert_contains(cachet_errmsg(), "cachet_failure_cache_time");
    assert_int_equal(atomic_load(&a.calls), 1);
    /* per key: another key's creator runs */
    assert_int_equal(cachet_get_or_create(r, "other", failing_create, &a, &v, &n), CACHET_ETIMEDOUT);
    assert_int_equal(atomic_load(&a.calls), 2);
    /* poll until the creator is asked again: not before 0.3 s */
    a.fail_with = CACHET_OK;
    while ((st = cachet_get_or_create(r, "neg", failing_create, &a, &v, &n)) == CACHET_ETIMEDOUT)
        assert_true(th_now_s() - t0 < 30.0);
    assert_int_equal(st, CACHET_OK);
    assert_true(th_now_s() - t0 >= 0.3);
    assert_int_equal(atomic_load(&a.calls), 3);
    cachet_free(v);
    th_assert_hit(r, "neg", "new", 3);
    cachet_region_close(r);
}

/* cachet_serve_stale = false: a caller that comes while another regenerates
 * an expired (or soft-invalidated) value waits for the new one. */
typedef struct {
    cachet_region *r;
    atomic_int     in_creator, waiter_started, waiter_done;
    char           got[8];
    cachet_status  st;
} stale_race;

static int stale_flag(void *p)
{
    return atomic_load((atomic_int *)p) != 0;
}

static cachet_status holding_create(void *arg, const char *key, void **value, size_t *len)
{
    stale_race *x = arg;
    (void)key;
    atomic_store(&x->in_creator, 1);
    th_wait_until(stale_flag, &x->waiter_started, 30.0);
    /* hold the key until the waiter returns (it must not, until we do) */
    th_wait_until(stale_flag, &x->waiter_done, 0.3);
    *value = malloc(3);
    memcpy(*value, "new", 3);
    *len = 3;
    return CACHET_OK;
}

static void *stale_waiter(void *p)
{
    stale_race *x = p;
    void *v = NULL;
    size_t n = 0;
    th_wait_until(stale_flag, &x->in_creator, 30.0);
    atomic_store(&x->waiter_started, 1);
    x->st = cachet_get_or_create(x->r, "st", holding_create, x, &v, &n);
    if (x->st == CACHET_OK && n < sizeof x->got)
        memcpy(x->got, v, n);
    cachet_free(v);
    atomic_store(&x->waiter_done, 1);
    return NULL;
}

static void serve_stale_false_waits_for_the_new_value(void **state)
{
    target *t = *state;
    const char *o[40];
    cachet_region *r = th_open(t->backend, opts_plus(t, o, 40, "cachet_serve_stale", "false",
                                                      NULL));
    for (int soft = 0; soft < 2; soft++) {
        stale_race x = {.r = r};
        pthread_t th;
        void *v = NULL;
        size_t n;
        assert_int_equal(cachet_set(r, "st", "old", 3), CACHET_OK);
        if (soft) {
            cachet_invalidate(r, 0);
        } else {
            th_clock_fake();
            th_clock_advance(601);      /* past expiration_time (600) */
        }
        assert_int_equal(pthread_create(&th, NULL, stale_waiter, &x), 0);
        assert_int_equal(cachet_get_or_create(r, "st", holding_create, &x, &v, &n), CACHET_OK);
        assert_memory_equal(v, "new", 3);
        cachet_free(v);
        pthread_join(th, NULL);
        assert_int_equal(x.st, CACHET_OK);
        assert_string_equal(x.got, "new");
        th_clock_real();
    }
    assert_int_equal(th_stats(r).stale_served, 0);
    cachet_region_close(r);
}

/* ---- value metadata (cachet_options.info) ---- */

static cachet_status timed_create(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg;
    (void)key;
    th_wait_until(never, NULL, 0.02);      /* a 20 ms creator */
    *value = malloc(4);
    memcpy(*value, "made", 4);
    *len = 4;
    return CACHET_OK;
}

static void value_info_says_when_and_how_old(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    cachet_value_info info;
    cachet_options o = {.info = &info};
    cachet_set_options ten = {.ttl = 10};
    struct timespec ts;
    double t0;
    void *v = NULL;
    size_t n;

    th_clock_fake();
    clock_gettime(CLOCK_REALTIME, &ts);
    t0 = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    assert_int_equal(cachet_set(r, "meta", "v", 1), CACHET_OK);
    th_clock_advance(5);
    memset(&info, 0xff, sizeof info);
    assert_int_equal(cachet_get_ex(r, "meta", &o, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_true(info.created >= t0 - 1 && info.created <= t0 + 5);
    assert_true(info.age >= 4.9 && info.age <= 6.0);
    assert_true(info.ttl == 0);
    assert_true(info.creator_seconds == 0);
    assert_int_equal(info.stale, 0);

    assert_int_equal(cachet_set_ex(r, "meta10", "v", 1, &ten), CACHET_OK);
    assert_int_equal(cachet_get_ex(r, "meta10", &o, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_true(info.ttl > 9.99 && info.ttl < 10.01);
    assert_true(info.age >= 0 && info.age < 1.0);

    /* get_or_create: the creator's measured time comes with the value, and
     * stays with it for the next reader */
    assert_int_equal(cachet_get_or_create_ex(r, "made", timed_create, NULL, &o, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_true(info.creator_seconds >= 0.019);
    assert_int_equal(cachet_get_ex(r, "made", &o, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_true(info.creator_seconds >= 0.019);
    /* a miss leaves it alone */
    memset(&info, 0, sizeof info);
    assert_int_equal(cachet_get_ex(r, "absent", &o, &v, &n), CACHET_MISS);
    assert_true(info.created == 0);
    th_clock_real();
    cachet_region_close(r);
}

/* ---- early refresh (XFetch) ---- */

typedef struct {
    atomic_int calls;
} xf_arg;

static cachet_status xf_create(void *arg, const char *key, void **value, size_t *len)
{
    xf_arg *a = arg;
    (void)key;
    atomic_fetch_add(&a->calls, 1);
    th_wait_until(never, NULL, 0.02);      /* delta: a 20 ms creator */
    *value = malloc(2);
    memcpy(*value, "xf", 2);
    *len = 2;
    return CACHET_OK;
}

/* With the fake clock 1 ms before expiry and a 20 ms creator, XFetch
 * (beta 1) refreshes with probability 1 - exp(-20) per call, far from
 * expiry (5 s: exp(-250)) never; with beta 0 it never does.  The calls that
 * ran the creator are counted: with early refresh the value is replaced
 * before it expires, so no caller finds it expired afterwards. */
static int xfetch_calls_until_refresh(const target *t, const char *beta, int *expired_later)
{
    const char *o[40];
    cachet_region *r = th_open(t->backend, opts_plus(t, o, 40, "cachet_early_refresh", beta,
                                                      "expiration_time", "10", NULL));
    xf_arg a = {0};
    void *v;
    size_t n;
    int calls_near = -1;
    assert_int_equal(cachet_delete(r, "xf"), CACHET_OK);   /* the run before left its value */
    th_clock_fake();
    assert_int_equal(cachet_get_or_create(r, "xf", xf_create, &a, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(atomic_load(&a.calls), 1);
    th_clock_advance(5);                   /* 5 s before expiry */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(cachet_get_or_create(r, "xf", xf_create, &a, &v, &n), CACHET_OK);
        cachet_free(v);
    }
    assert_int_equal(atomic_load(&a.calls), 1);
    th_clock_advance(4.999);               /* 1 ms before expiry */
    for (int i = 0; i < 100 && calls_near < 0; i++) {
        assert_int_equal(cachet_get_or_create(r, "xf", xf_create, &a, &v, &n), CACHET_OK);
        assert_memory_equal(v, "xf", 2);
        cachet_free(v);
        if (atomic_load(&a.calls) > 1)
            calls_near = i + 1;
    }
    /* past the first value's expiry: a miss of the region's rule? */
    th_clock_advance(0.5);
    uint64_t misses = th_stats(r).misses;
    assert_int_equal(cachet_get_or_create(r, "xf", xf_create, &a, &v, &n), CACHET_OK);
    cachet_free(v);
    *expired_later = th_stats(r).misses > misses;
    if (calls_near > 0)
        assert_int_equal(th_stats(r).early_refreshes, 1);
    th_clock_real();
    cachet_region_close(r);
    return calls_near;
}

static void early_refresh_replaces_a_value_before_it_expires(void **state)
{
    target *t = *state;
    int expired;
    assert_int_equal(xfetch_calls_until_refresh(t, "0", &expired), -1);
    assert_true(expired);                  /* dogpile's behaviour: a caller regenerates */
    assert_true(xfetch_calls_until_refresh(t, "1", &expired) > 0);
    assert_false(expired);                 /* refreshed before: nobody found it expired */
}

/* ---- refresh threads: after the first fill no caller runs a creator ---- */

typedef struct {
    atomic_int calls, in_caller;
    pthread_t  caller;
} bg_arg;

static cachet_status bg_create(void *arg, const char *key, void **value, size_t *len)
{
    bg_arg *a = arg;
    int n = atomic_fetch_add(&a->calls, 1) + 1;
    (void)key;
    if (pthread_equal(pthread_self(), a->caller))
        atomic_fetch_add(&a->in_caller, 1);
    th_wait_until(never, NULL, 0.01);      /* a 10 ms creator */
    *value = malloc(16);
    *len = (size_t)snprintf(*value, 16, "v%d", n);
    return CACHET_OK;
}

typedef struct {
    cachet_region *r;
    const char    *want;
} bg_wait;

static int bg_stored(void *p)
{
    bg_wait *w = p;
    void *v = NULL;
    size_t n;
    int ok = cachet_get(w->r, "bg", &v, &n) == CACHET_OK && n == strlen(w->want) &&
             memcmp(v, w->want, n) == 0;
    cachet_free(v);
    return ok;
}

static void refresh_threads_keep_callers_off_the_creator(void **state)
{
    target *t = *state;
    const char *o[40];
    for (int early = 0; early < 2; early++) {
        cachet_region *r = th_open(t->backend, opts_plus(t, o, 40, "cachet_refresh_threads", "2",
                                   "expiration_time", "10", "cachet_early_refresh",
                                   early ? "1" : "0", NULL));
        bg_arg a = {.caller = pthread_self()};
        bg_wait w = {r, "v2"};
        void *v;
        size_t n;
        assert_int_equal(cachet_delete(r, "bg"), CACHET_OK);
        th_clock_fake();
        assert_int_equal(cachet_get_or_create(r, "bg", bg_create, &a, &v, &n), CACHET_OK);
        assert_memory_equal(v, "v1", 2);    /* the first fill: in the caller */
        cachet_free(v);
        assert_int_equal(atomic_load(&a.in_caller), 1);
        if (early) {
            /* 1 ms before expiry: due with probability 1 - exp(-10) a call */
            th_clock_advance(9.999);
            for (int i = 0; i < 200 && th_stats(r).background_refreshes == 0; i++) {
                assert_int_equal(cachet_get_or_create(r, "bg", bg_create, &a, &v, &n), CACHET_OK);
                assert_true(n == 2 && ((char *)v)[0] == 'v');
                cachet_free(v);
            }
        } else {
            th_clock_advance(11);           /* expired: stale */
            assert_int_equal(cachet_get_or_create(r, "bg", bg_create, &a, &v, &n), CACHET_OK);
            assert_memory_equal(v, "v1", 2);   /* the old value, at once */
            cachet_free(v);
        }
        assert_true(th_stats(r).background_refreshes >= 1);
        assert_true(th_wait_until(bg_stored, &w, 30.0));
        assert_int_equal(atomic_load(&a.in_caller), 1);   /* no caller ran it again */
        assert_true(atomic_load(&a.calls) >= 2);
        th_clock_real();
        cachet_region_close(r);
    }
}

/* ---- the two places cachet differs from dogpile on purpose (README) ---- */

static cachet_status made_create(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg;
    (void)key;
    *value = malloc(4);
    memcpy(*value, "made", 4);
    *len = 4;
    return CACHET_OK;
}

/* Soft invalidation works without an expiration time (dogpile raises), and
 * a soft invalidation after a hard one keeps the values the hard one
 * removed gone (dogpile would serve them as stale). */
static void soft_without_expiration_and_hard_then_soft(void **state)
{
    target *t = *state;
    const char *o[40];
    cachet_region *r = th_open(t->backend, opts_plus(t, o, 40, "expiration_time", "-1", NULL));
    cachet_options any = {.ignore_expiration = 1};
    void *v = NULL;
    size_t n;
    assert_int_equal(cachet_set(r, "never", "old", 3), CACHET_OK);
    assert_int_equal(cachet_invalidate_ex(r, 0), CACHET_OK);
    th_assert_miss(r, "never");                                /* stale */
    assert_int_equal(cachet_get_ex(r, "never", &any, &v, &n), CACHET_OK);   /* still there */
    cachet_free(v);
    assert_int_equal(cachet_get_or_create(r, "never", made_create, NULL, &v, &n), CACHET_OK);
    assert_memory_equal(v, "made", 4);                          /* regenerated */
    cachet_free(v);

    assert_int_equal(cachet_set(r, "gone", "old", 3), CACHET_OK);
    assert_int_equal(cachet_invalidate_ex(r, 1), CACHET_OK);
    assert_int_equal(cachet_invalidate_ex(r, 0), CACHET_OK);
    /* ignore_expiration serves stale values, never hard-invalidated ones */
    assert_int_equal(cachet_get_ex(r, "gone", &any, &v, &n), CACHET_MISS);
    cachet_region_close(r);
}

/* ---- cachet_add: stores only where no live value is ---- */

static void add_absent_then_exists_keeps_the_old_value(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    assert_int_equal(cachet_add(r, "a", "first", 5, NULL), CACHET_OK);
    th_assert_hit(r, "a", "first", 5);
    assert_int_equal(cachet_add(r, "a", "second", 6, NULL), CACHET_EXISTS);
    th_assert_hit(r, "a", "first", 5);
    /* a value cachet_set stored is as live as an added one */
    assert_int_equal(cachet_set(r, "b", "set", 3), CACHET_OK);
    assert_int_equal(cachet_add(r, "b", "added", 5, NULL), CACHET_EXISTS);
    th_assert_hit(r, "b", "set", 3);
    /* with a lifetime of its own, and an empty value */
    cachet_set_options o = {.ttl = 30};
    assert_int_equal(cachet_add(r, "c", "", 0, &o), CACHET_OK);
    th_assert_hit(r, "c", "", 0);
    assert_int_equal(cachet_add(r, "c", "x", 1, &o), CACHET_EXISTS);
    th_assert_hit(r, "c", "", 0);
    cachet_region_close(r);
}

/* An expired value is not live: add replaces it.  The fake clock moves
 * the region's time only: a server still holds the value (its ttl is in
 * real seconds), so add must get past the server's own "exists". */
static void add_over_an_expired_value_replaces_it(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    cachet_set_options o = {.ttl = 2};
    th_clock_fake();
    assert_int_equal(cachet_set_ex(r, "e", "old", 3, &o), CACHET_OK);
    assert_int_equal(cachet_add(r, "e", "new?", 4, NULL), CACHET_EXISTS);   /* still live */
    th_clock_advance(3);
    th_assert_miss(r, "e");
    assert_int_equal(cachet_add(r, "e", "new", 3, NULL), CACHET_OK);
    th_assert_hit(r, "e", "new", 3);
    assert_int_equal(cachet_add(r, "e", "newer", 5, NULL), CACHET_EXISTS);
    th_assert_hit(r, "e", "new", 3);
    th_clock_real();
    cachet_region_close(r);
}

static void add_over_invalidated_values_replaces_them(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    /* (a value written in the invalidation's nanosecond counts as before it) */
    assert_int_equal(cachet_set(r, "soft", "old", 3), CACHET_OK);
    cachet_invalidate(r, 0);
    assert_int_equal(cachet_add(r, "soft", "new", 3, NULL), CACHET_OK);
    th_assert_hit(r, "soft", "new", 3);
    assert_int_equal(cachet_add(r, "soft", "newer", 5, NULL), CACHET_EXISTS);

    assert_int_equal(cachet_set(r, "hard", "old", 3), CACHET_OK);
    cachet_invalidate(r, 1);
    assert_int_equal(cachet_add(r, "hard", "new", 3, NULL), CACHET_OK);
    th_assert_hit(r, "hard", "new", 3);
    assert_int_equal(cachet_add(r, "hard", "newer", 5, NULL), CACHET_EXISTS);
    th_assert_hit(r, "hard", "new", 3);
    cachet_region_close(r);
}

static void add_over_foreign_bytes_replaces_them(void **state)
{
    target *t = *state;
    cachet_region *r;
    static const char junk[] = "not a cachet value";
    if (t->raw == RAW_NONE)
        skip();   /* memory: nobody else writes there */
    if (t->raw == RAW_DBM) {
        raw_put(t, "foreign-add", 0, junk, sizeof junk);
        r = open_target(t);
    } else {
        r = open_target(t);
        raw_put(t, "foreign-add", 0, junk, sizeof junk);
    }
    assert_int_equal(cachet_add(r, "foreign-add", "mine", 4, NULL), CACHET_OK);
    th_assert_hit(r, "foreign-add", "mine", 4);
    assert_int_equal(cachet_add(r, "foreign-add", "again", 5, NULL), CACHET_EXISTS);
    th_assert_hit(r, "foreign-add", "mine", 4);
    cachet_region_close(r);
}

/* 8 threads add to one fresh key: one wins, 7 are told it exists, and
 * the value is the winner's. */
enum { ADDERS = 8 };
typedef struct {
    const target  *t;
    cachet_region *r;         /* shared, or NULL: the thread opens its own */
    atomic_int    *ready;
    int            id;
    cachet_status  st;
} adder;

static int adders_ready(void *arg)
{
    return atomic_load((atomic_int *)arg) >= ADDERS;
}

static void *add_thread(void *arg)
{
    adder *a = arg;
    cachet_region *r = a->r ? a->r : open_target(a->t);
    char v[24];
    int n = snprintf(v, sizeof v, "adder-%d", a->id);
    atomic_fetch_add(a->ready, 1);
    th_wait_until(adders_ready, a->ready, 30.0);   /* start together */
    a->st = cachet_add(r, "raced", v, (size_t)n, NULL);
    if (!a->r)
        cachet_region_close(r);
    return NULL;
}

static void race_adds(const target *t, cachet_region *shared)
{
    adder a[ADDERS];
    pthread_t th[ADDERS];
    atomic_int ready = 0;
    int ok = 0, exists = 0, winner = -1;
    char want[24];
    cachet_region *r;
    for (int i = 0; i < ADDERS; i++) {
        a[i] = (adder){.t = t, .r = shared, .ready = &ready, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, add_thread, &a[i]), 0);
    }
    for (int i = 0; i < ADDERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < ADDERS; i++) {
        if (a[i].st == CACHET_OK) {
            ok++;
            winner = i;
        } else if (a[i].st == CACHET_EXISTS) {
            exists++;
        } else {
            fail_msg("adder %d: %s", i, cachet_strerror(a[i].st));
        }
    }
    assert_int_equal(ok, 1);
    assert_int_equal(exists, ADDERS - 1);
    r = shared ? shared : open_target(t);
    snprintf(want, sizeof want, "adder-%d", winner);
    th_assert_hit(r, "raced", want, strlen(want));
    if (!shared)
        cachet_region_close(r);
}

static void add_race_8_threads_one_region(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    race_adds(t, r);
    cachet_region_close(r);
}

static void add_race_8_regions(void **state)
{
    target *t = *state;
    if (t->raw == RAW_NONE)
        skip();   /* memory: each region has a store of its own */
    race_adds(t, NULL);
}

/* An add that waits on the key behind a get_or_create whose value was not
 * stored (should_cache said no) must not be told EXISTS: nothing is
 * there, so the add stores. */
typedef struct {
    const target  *t;
    cachet_region *r;
    atomic_int     in_creator, adder_started, add_done;
    cachet_status  add_st, goc_st;
} nocache_race;

static int flag_set(void *arg)
{
    return atomic_load((atomic_int *)arg) != 0;
}

static cachet_status held_create(void *arg, const char *key, void **value, size_t *len)
{
    nocache_race *x = arg;
    (void)key;
    atomic_store(&x->in_creator, 1);
    th_wait_until(flag_set, &x->adder_started, 20.0);
    /* Hold the key for half a second in which the add, blocked behind us,
     * cannot finish (if it does, it did not wait and the test proves
     * nothing this run, never fails wrongly). */
    th_wait_until(flag_set, &x->add_done, 0.5);
    *value = strdup("not stored");
    *len = 10;
    return CACHET_OK;
}

static int never_cache(void *arg, const char *key, const void *value, size_t len)
{
    (void)arg;
    (void)key;
    (void)value;
    (void)len;
    return 0;
}

static void *goc_no_store_thread(void *arg)
{
    nocache_race *x = arg;
    cachet_options o = {.should_cache = never_cache};
    void *v = NULL;
    size_t n;
    x->goc_st = cachet_get_or_create_ex(x->r, "nocache", held_create, x, &o, &v, &n);
    cachet_free(v);
    return NULL;
}

static void *late_add_thread(void *arg)
{
    nocache_race *x = arg;
    atomic_store(&x->adder_started, 1);
    x->add_st = cachet_add(x->r, "nocache", "added", 5, NULL);
    atomic_store(&x->add_done, 1);
    return NULL;
}

static void add_behind_a_creator_that_did_not_store(void **state)
{
    target *t = *state;
    nocache_race x = {.t = t};
    pthread_t a, b;
    x.r = open_target(t);
    assert_int_equal(pthread_create(&a, NULL, goc_no_store_thread, &x), 0);
    if (!th_wait_until(flag_set, &x.in_creator, 20.0))
        fail_msg("the creator was not called within 20 s");
    assert_int_equal(pthread_create(&b, NULL, late_add_thread, &x), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_int_equal(x.goc_st, CACHET_OK);
    if (x.add_st != CACHET_OK)
        fail_msg("add behind a creator that stored nothing: %s, want ok",
                 cachet_strerror(x.add_st));
    th_assert_hit(x.r, "nocache", "added", 5);
    cachet_region_close(x.r);
}

/* ---- cachet_set_ex: a value's own lifetime, for readers (fake clock:
 * the region's time moves, a server's does not) ---- */

static void set_ex_ttl_expires_for_readers(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    cachet_set_options o = {.ttl = 2};
    atomic_int calls = 0;
    void *v;
    size_t n;
    th_clock_fake();
    assert_int_equal(cachet_set_ex(r, "ttl2", "short", 5, &o), CACHET_OK);
    th_clock_advance(1.9);
    th_assert_hit(r, "ttl2", "short", 5);
    th_clock_advance(0.2);
    th_assert_miss(r, "ttl2");
    assert_int_equal(cachet_get_or_create(r, "ttl2", count_create, &calls, &v, &n), CACHET_OK);
    assert_int_equal(n, 9);
    assert_memory_equal(v, "made:ttl2", 9);
    cachet_free(v);
    assert_int_equal(atomic_load(&calls), 1);
    /* what get_or_create stored lives by the region's rule (oslo's 600 s) */
    th_clock_advance(300);
    th_assert_hit(r, "ttl2", "made:ttl2", 9);
    /* a plain set over a set_ex value takes the region's rule again */
    assert_int_equal(cachet_set_ex(r, "ttl2", "again", 5, &o), CACHET_OK);
    assert_int_equal(cachet_set(r, "ttl2", "plain", 5), CACHET_OK);
    th_clock_advance(300);
    th_assert_hit(r, "ttl2", "plain", 5);
    th_clock_advance(301);
    th_assert_miss(r, "ttl2");
    th_clock_real();
    cachet_region_close(r);
}

/* Opens the target with expiration_time added to its options. */
static cachet_region *open_target_expiring(const target *t, const char *seconds)
{
    const char *opts[20];
    size_t n = 0;
    while (t->opts[n]) {
        opts[n] = t->opts[n];
        opts[n + 1] = t->opts[n + 1];
        n += 2;
    }
    opts[n++] = "expiration_time";
    opts[n++] = seconds;
    opts[n] = NULL;
    return th_open(t->backend, opts);
}

static void set_ex_never_outlives_the_region_rule(void **state)
{
    target *t = *state;
    cachet_region *r = open_target_expiring(t, "1");
    cachet_set_options never = {.ttl = -1}, dflt = {.ttl = 0};
    cachet_options call = {.expiration_time = 5}, forever = {.expiration_time = -1};
    void *v;
    size_t n;
    th_clock_fake();
    assert_int_equal(cachet_set_ex(r, "never", "n", 1, &never), CACHET_OK);
    assert_int_equal(cachet_set_ex(r, "zero", "z", 1, &dflt), CACHET_OK);
    assert_int_equal(cachet_set_ex(r, "null", "0", 1, NULL), CACHET_OK);
    th_clock_advance(1.5);
    th_assert_miss(r, "zero");                 /* ttl 0: the region's 1 s */
    th_assert_miss(r, "null");
    th_assert_hit(r, "never", "n", 1);
    /* a per-call expiration_time overrides the value's own lifetime, both ways */
    assert_int_equal(cachet_get_ex(r, "zero", &call, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(cachet_get_ex(r, "null", &forever, &v, &n), CACHET_OK);
    cachet_free(v);
    th_clock_advance(10.0 * 365.25 * 86400);   /* ten years on */
    th_assert_hit(r, "never", "n", 1);
    assert_int_equal(cachet_get_ex(r, "never", &call, &v, &n), CACHET_MISS);

    /* ttl 60 against a region's 1 s: the value's own wins unless the call says */
    cachet_set_options sixty = {.ttl = 60};
    assert_int_equal(cachet_set_ex(r, "sixty", "s", 1, &sixty), CACHET_OK);
    th_clock_advance(30);
    th_assert_hit(r, "sixty", "s", 1);
    assert_int_equal(cachet_get_ex(r, "sixty", &call, &v, &n), CACHET_MISS);
    th_clock_advance(31);
    th_assert_miss(r, "sixty");
    assert_int_equal(cachet_get_ex(r, "sixty", &forever, &v, &n), CACHET_OK);
    cachet_free(v);
    th_clock_real();
    cachet_region_close(r);
}

/* get_multi and cachet_compact judge a value by its own lifetime too:
 * compact drops what readers can no longer get, and keeps a ttl -1 value
 * however old. */
static void get_multi_and_compact_honour_a_values_own_lifetime(void **state)
{
    target *t = *state;
    cachet_region *r = open_target_expiring(t, "1");
    cachet_set_options never = {.ttl = -1}, two = {.ttl = 2};
    cachet_item it[3] = {{.key = "never"}, {.key = "two"}, {.key = "plain"}};
    size_t removed = 99;
    cachet_status st;
    th_clock_fake();
    assert_int_equal(cachet_set_ex(r, "never", "n", 1, &never), CACHET_OK);
    assert_int_equal(cachet_set_ex(r, "two", "2", 1, &two), CACHET_OK);
    assert_int_equal(cachet_set(r, "plain", "p", 1), CACHET_OK);
    th_clock_advance(1.5);
    assert_int_equal(cachet_get_multi(r, it, 3), CACHET_OK);
    assert_int_equal(it[0].status, CACHET_OK);
    assert_int_equal(it[1].status, CACHET_OK);
    assert_int_equal(it[2].status, CACHET_MISS);
    cachet_free(it[0].value);
    cachet_free(it[1].value);
    st = cachet_compact(r, &removed);
    if (st == CACHET_ENOTSUP) {          /* the server drops values itself */
        th_clock_real();
        cachet_region_close(r);
        skip();
    }
    assert_int_equal(st, CACHET_OK);
    assert_int_equal(removed, 1);        /* plain */
    th_clock_advance(1);
    assert_int_equal(cachet_compact(r, &removed), CACHET_OK);
    assert_int_equal(removed, 1);        /* two */
    th_clock_advance(10.0 * 365.25 * 86400);
    assert_int_equal(cachet_compact(r, &removed), CACHET_OK);
    assert_int_equal(removed, 0);
    th_assert_hit(r, "never", "n", 1);
    th_clock_real();
    cachet_region_close(r);
}

static void set_ex_and_add_refuse_a_meaningless_ttl(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    const double bad[] = {-2, -0.5, 1.0 / 0.0, -1.0 / 0.0, 0.0 / 0.0, 1e300};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cachet_set_options o = {.ttl = bad[i]};
        assert_int_equal(cachet_set_ex(r, "bad", "x", 1, &o), CACHET_EINVAL);
        th_assert_contains(cachet_errmsg(), "ttl");
        assert_int_equal(cachet_add(r, "bad", "x", 1, &o), CACHET_EINVAL);
        th_assert_contains(cachet_errmsg(), "ttl");
    }
    th_assert_miss(r, "bad");                  /* nothing was written */
    cachet_region_close(r);
}

/* add and set_ex go through the proxies: the log proxy logs each (the add
 * with its outcome), and the ttl reaches the server below them. */
static void log_passes_add_and_set_ex(void **state)
{
    target *t = *state;
    cachet_region *r = open_target(t);
    cachet_set_options o = {.ttl = 30};
    unsigned long ok0 = atomic_load(&add_ok_lines), ex0 = atomic_load(&add_exists_lines);
    unsigned long set0 = atomic_load(&set_ex_lines);
    assert_int_equal(cachet_add(r, "logged-add", "a", 1, &o), CACHET_OK);
    assert_int_equal(cachet_add(r, "logged-add", "b", 1, &o), CACHET_EXISTS);
    th_assert_hit(r, "logged-add", "a", 1);
    assert_int_equal(cachet_set_ex(r, "logged-set", "s", 1, &o), CACHET_OK);
    th_assert_hit(r, "logged-set", "s", 1);
    if (t->logs) {
        assert_int_equal(atomic_load(&add_ok_lines) - ok0, 1);
        assert_true(atomic_load(&add_exists_lines) - ex0 >= 1);
        assert_int_equal(atomic_load(&set_ex_lines) - set0, 1);
    } else {
        assert_int_equal(atomic_load(&add_ok_lines) - ok0, 0);
    }
#ifdef HAVE_HIREDIS
    if (t->raw == RAW_REDIS) {
        redisContext *c = redis_raw(t->port);
        const char *keys[] = {"logged-add", "logged-set"};
        for (int i = 0; i < 2; i++) {
            redisReply *rep = redisCommand(c, "PTTL %s", keys[i]);
            if (!rep || rep->type != REDIS_REPLY_INTEGER)
                fail_msg("hiredis: PTTL %s: no integer reply", keys[i]);
            if (!(rep->integer > 0 && rep->integer <= 30000))
                fail_msg("%s: PTTL %s = %lld, want (0, 30000]", t->name, keys[i],
                         rep->integer);
            freeReplyObject(rep);
        }
        redisFree(c);
    }
#endif
    cachet_region_close(r);
}

/* ---- the distributed lock: 4 threads, each with its own region (so
 * that only the backend's lock stands between them, not the region's
 * in-process one), one creator call in all ---- */
typedef struct {
    const target *t;
    atomic_int   *calls;
    atomic_int   *entered;
    cachet_status st;
    char          got[32];
} locker;

static int all_entered(void *arg)
{
    return atomic_load((atomic_int *)arg) >= 4;
}

static int second_creator(void *arg)
{
    return atomic_load((atomic_int *)arg) > 1;
}

static cachet_status slow_create(void *arg, const char *key, void **value, size_t *len)
{
    locker *l = arg;
    (void)key;
    atomic_fetch_add(l->calls, 1);
    /* Hold the lock until every thread is on its way in, then for half a
     * second more in which a second creator, if the lock let one in, would
     * show up (and end the wait at once): the others are past their first
     * look by then, even on a loaded machine, in all but rare runs, which
     * would pass without proving anything, never fail wrongly. */
    th_wait_until(all_entered, l->entered, 20.0);
    th_wait_until(second_creator, l->calls, 0.5);
    *value = strdup("created");
    *len = 7;
    return CACHET_OK;
}

static void *lock_thread(void *arg)
{
    locker *l = arg;
    cachet_region *r = open_target(l->t);
    void *v = NULL;
    size_t n = 0;
    atomic_fetch_add(l->entered, 1);
    l->st = cachet_get_or_create(r, "locked-key", slow_create, l, &v, &n);
    if (l->st == CACHET_OK) {
        snprintf(l->got, sizeof l->got, "%.*s", (int)n, (char *)v);
        cachet_free(v);
    }
    cachet_region_close(r);
    return NULL;
}

static void distributed_lock_one_creator_for_4_threads(void **state)
{
    target *t = *state;
    atomic_int calls = 0, entered = 0;
    locker l[4];
    pthread_t th[4];
    if (!t->dist_lock)
        skip();   /* this target runs without distributed_lock */
    for (int i = 0; i < 4; i++) {
        l[i] = (locker){.t = t, .calls = &calls, .entered = &entered};
        assert_int_equal(pthread_create(&th[i], NULL, lock_thread, &l[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        if (l[i].st != CACHET_OK)
            fail_msg("thread %d: %s", i, cachet_strerror(l[i].st));
        assert_string_equal(l[i].got, "created");
    }
    assert_int_equal(atomic_load(&calls), 1);
}

/* ---- targets ---- */

static const struct CMUnitTest bodies[] = {
    cmocka_unit_test_setup(round_trip_binary_empty_overwrite, empty_store),
    cmocka_unit_test_setup(delete_then_miss_and_absent_delete_is_ok, empty_store),
    cmocka_unit_test_setup(get_multi_mixed_hits_and_misses, empty_store),
    cmocka_unit_test_setup(set_multi_get_multi_delete_multi, empty_store),
    cmocka_unit_test_setup(get_or_create_runs_the_creator_once, empty_store),
    cmocka_unit_test_setup(values_handed_out_end_in_a_nul, empty_store),
    cmocka_unit_test_setup(awkward_keys_round_trip, empty_store),
    cmocka_unit_test_setup(foreign_bytes_are_a_corrupt_miss, empty_store),
    cmocka_unit_test_setup(another_keys_value_is_a_corrupt_miss, empty_store),
    cmocka_unit_test_setup(invalidate_hard_and_soft, empty_store),
    cmocka_unit_test_setup(distributed_lock_one_creator_for_4_threads, empty_store),
    cmocka_unit_test_setup(key_prefix_keeps_services_apart, empty_store),
    cmocka_unit_test_setup(creator_failure_reaches_every_waiter, empty_store),
    cmocka_unit_test_setup(creator_failure_remembered_for_its_time, empty_store),
    cmocka_unit_test_setup_teardown(serve_stale_false_waits_for_the_new_value, empty_store,
                                    th_clock_teardown),
    cmocka_unit_test_setup_teardown(value_info_says_when_and_how_old, empty_store,
                                    th_clock_teardown),
    cmocka_unit_test_setup_teardown(early_refresh_replaces_a_value_before_it_expires, empty_store,
                                    th_clock_teardown),
    cmocka_unit_test_setup_teardown(refresh_threads_keep_callers_off_the_creator, empty_store,
                                    th_clock_teardown),
    cmocka_unit_test_setup(soft_without_expiration_and_hard_then_soft, empty_store),
    cmocka_unit_test_setup(add_absent_then_exists_keeps_the_old_value, empty_store),
    cmocka_unit_test_setup_teardown(add_over_an_expired_value_replaces_it, empty_store,
                                    th_clock_teardown),
    cmocka_unit_test_setup(add_over_invalidated_values_replaces_them, empty_store),
    cmocka_unit_test_setup(add_over_foreign_bytes_replaces_them, empty_store),
    cmocka_unit_test_setup(add_race_8_threads_one_region, empty_store),
    cmocka_unit_test_setup(add_race_8_regions, empty_store),
    cmocka_unit_test_setup(add_behind_a_creator_that_did_not_store, empty_store),
    cmocka_unit_test_setup_teardown(set_ex_ttl_expires_for_readers, empty_store,
                                    th_clock_teardown),
    cmocka_unit_test_setup_teardown(set_ex_never_outlives_the_region_rule, empty_store,
                                    th_clock_teardown),
    cmocka_unit_test_setup_teardown(get_multi_and_compact_honour_a_values_own_lifetime,
                                    empty_store, th_clock_teardown),
    cmocka_unit_test_setup(set_ex_and_add_refuse_a_meaningless_ttl, empty_store),
    cmocka_unit_test_setup(log_passes_add_and_set_ex, empty_store),
};
#define NBODIES (sizeof bodies / sizeof *bodies)

static char memcache_servers[64], redis_url[96];
static char dbm_dir[64];

static int need_memcached(target *t)
{
    if (memcached_up < 0) {
        memcached_up = test_memcached_start(&memcached_server, 0, NULL) == 0 ? 0 : 1;
        snprintf(memcache_servers, sizeof memcache_servers, "127.0.0.1:%d", memcached_server.port);
    }
    t->port = memcached_server.port;
    return memcached_up == 0;
}

static int need_redis(target *t)
{
    if (redis_up < 0) {
        redis_up = test_redis_start(&redis_server, 0, NULL) == 0 ? 0 : 1;
        snprintf(redis_url, sizeof redis_url, "url:redis://127.0.0.1:%d/0", redis_server.port);
    }
    t->port = redis_server.port;
    return redis_up == 0;
}

/* Appends option pairs to t->opts. */
static void add_opts(target *t, ...)
{
    size_t n = 0;
    const char *s;
    va_list ap;
    while (t->opts[n])
        n += 2;
    va_start(ap, t);
    while ((s = va_arg(ap, const char *)) != NULL) {
        t->opts[n++] = s;
        t->opts[n++] = va_arg(ap, const char *);
    }
    va_end(ap);
    t->opts[n] = NULL;
}

/* The backend part of a target: "memory", "dbm", "memcached",
 * "memcache_pool" or "redis"; returns 0 if it cannot be had here. */
static int base(target *t, const char *backend, int dist_lock)
{
    t->backend = backend;
    t->dist_lock = dist_lock;
    if (strcmp(backend, "memory") == 0)
        return 1;
    if (strcmp(backend, "dbm") == 0) {
        t->raw = RAW_DBM;
        snprintf(t->path, sizeof t->path, "%s/%s.db", dbm_dir, t->name);
        char *arg = malloc(strlen(t->path) + 16);
        sprintf(arg, "filename:%s", t->path);
        add_opts(t, "backend_argument", arg, NULL);
        return 1;
    }
    t->binds_keys = 1;
    if (strncmp(backend, "memcache", 8) == 0) {
        t->raw = RAW_MEMCACHED;
        t->server_failed = !need_memcached(t);
        add_opts(t, "memcache_servers", memcache_servers, NULL);
        if (dist_lock)
            add_opts(t, "backend_argument", "distributed_lock:true", NULL);
        return 1;
    }
    t->raw = RAW_REDIS;
    t->server_failed = !need_redis(t);
    add_opts(t, "backend_argument", redis_url, NULL);
    if (dist_lock)
        add_opts(t, "backend_argument", "distributed_lock:true", NULL);
    return 1;
}

/* The dbm file and its lock files. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int run_target(target *t)
{
    print_message("[ TARGET   ] %s\n", t->name);
    struct CMUnitTest tests[NBODIES];
    for (size_t i = 0; i < NBODIES; i++) {
        tests[i] = bodies[i];
        tests[i].initial_state = t;
    }
    return _cmocka_run_group_tests(t->name, tests, NBODIES, NULL, NULL);
}

int main(void)
{
    /* the networked backend the chains run over: the first one built */
#if defined(HAVE_HIREDIS)
    const char *net = "redis";
#elif defined(HAVE_LIBMEMCACHED)
    const char *net = "memcached";
#else
    const char *net = NULL;
#endif
    static target targets[32];
    size_t nt = 0;
    int failed = 0;
    static char probe_chain[512];

    snprintf(dbm_dir, sizeof dbm_dir, "/tmp/cachet-conformance.XXXXXX");
    if (!mkdtemp(dbm_dir)) {
        perror("mkdtemp");
        return 1;
    }
    cachet_set_logger(count_line, NULL);
    snprintf(probe_chain, sizeof probe_chain, "log,%s", TEST_PLUGIN_PATH("proxy_probe"));

#define TARGET(nm, be, dl) (targets[nt] = (target){.name = (nm)}, base(&targets[nt], (be), (dl)), &targets[nt++])
    TARGET("memory", "memory", 0);
#ifdef HAVE_GDBM
    TARGET("dbm", "dbm", 0);
#endif
#ifdef HAVE_LIBMEMCACHED
    TARGET("memcached", "memcached", 0);
    TARGET("memcache_pool", "memcache_pool", 0);
    add_opts(TARGET("memcached+binary", "memcached", 0), "backend_argument", "binary:true", NULL);
    TARGET("memcached+distributed_lock", "memcached", 1);
#endif
#ifdef HAVE_HIREDIS
    TARGET("redis", "redis", 0);
    TARGET("redis+distributed_lock", "redis", 1);
#endif
    add_opts(TARGET("memory|log", "memory", 0), "cachet_proxies", "log", NULL);
    add_opts(TARGET("memory|log,probe", "memory", 0), "cachet_proxies", probe_chain, NULL);
    add_opts(TARGET("memory|debug_cache_backend", "memory", 0), "debug_cache_backend", "true",
             NULL);
    targets[nt - 3].logs = targets[nt - 2].logs = targets[nt - 1].logs = 1;
    /* the built-in proxies: metrics and compress over memory and every
     * networked family (compress:min_size:0, so that every value the
     * bodies write goes through zstd) */
    add_opts(TARGET("memory|metrics,compress", "memory", 0), "cachet_proxies", "metrics,compress",
             "cachet_proxy_argument", "compress:min_size:0", NULL);
#ifdef HAVE_LIBMEMCACHED
    add_opts(TARGET("memcached|compress", "memcached", 0), "cachet_proxies", "compress",
             "cachet_proxy_argument", "compress:min_size:0", NULL);
#endif
#ifdef HAVE_HIREDIS
    add_opts(TARGET("redis|metrics,compress", "redis", 1), "cachet_proxies", "metrics,compress",
             "cachet_proxy_argument", "compress:min_size:0", NULL);
#endif
    add_opts(TARGET("memory|near", "memory", 0), "cachet_proxies", "near", NULL);
#ifdef HAVE_LIBMEMCACHED
    add_opts(TARGET("memcached|near,compress", "memcached", 0), "cachet_proxies", "near,compress",
             "cachet_proxy_argument", "compress:min_size:0", NULL);
#endif
#ifdef HAVE_HIREDIS
    add_opts(TARGET("redis|near,compress", "redis", 1), "cachet_proxies", "near,compress",
             "cachet_proxy_argument", "compress:min_size:0", NULL);
#endif
    if (net) {
        static char n1[64], n2[64], n3[64];
        snprintf(n1, sizeof n1, "%s|log", net);
        snprintf(n2, sizeof n2, "%s|log,probe", net);
        snprintf(n3, sizeof n3, "%s|debug_cache_backend", net);
        add_opts(TARGET(n1, net, 0), "cachet_proxies", "log", NULL);
        add_opts(TARGET(n2, net, 0), "cachet_proxies", probe_chain, NULL);
        add_opts(TARGET(n3, net, 0), "debug_cache_backend", "true", NULL);
        targets[nt - 3].logs = targets[nt - 2].logs = targets[nt - 1].logs = 1;
    }
#undef TARGET

    for (size_t i = 0; i < nt; i++)
        failed += run_target(&targets[i]);
    test_servers_stop_all();
    remove_dir(dbm_dir);
    return failed ? 1 : 0;
}
