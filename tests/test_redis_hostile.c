/* The redis backends against servers that lie: a loopback server
 * (tests/hostile.h) speaking RESP, storing what it is sent like a tiny
 * redis, and misbehaving on cue: an extra reply, a reply of the wrong
 * type, a reply that comes unasked between requests, a reply dripped a
 * byte per 100 ms, a bulk of 999999999999 bytes, an array of 2^31-1
 * elements, a password echoed in an error, a CLUSTER SLOTS with absurd
 * slots and ports, a sentinel naming port 0.  Whatever they send, cachet
 * must never hand a caller another key's value, never hang past its
 * deadline, never grow without bound, and never quote a password. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "hostile.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a tiny redis that misbehaves on cue ---- */

enum {
    M_NORMAL, M_EXTRA, M_UNSOLICITED, M_WRONG_TYPE, M_MGET_EXTRA, M_DRIP, M_HUGE_BULK,
    M_HUGE_ARRAY, M_AUTH_ECHO, M_SLOTS, M_MOVED_BAD, M_CLOSE,
};

typedef struct {
    pthread_mutex_t mu;
    char  *k[64], *v[64];
    size_t kl[64], vl[64];
    size_t n;
    int    mode;
    int    unsolicited_sent;   /* atomic */
    const char *canned;        /* the reply to CLUSTER SLOTS and SENTINEL ... */
    size_t canned_len;
    int    port;               /* our own, for M_SLOTS/M_MOVED_BAD */
    int    auth_argc;          /* the last AUTH's argc and last argument */
    char   auth_last[128];
} kvstate;

static kvstate kv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void kv_reset(int mode)
{
    pthread_mutex_lock(&kv.mu);
    for (size_t i = 0; i < kv.n; i++) {
        free(kv.k[i]);
        free(kv.v[i]);
    }
    kv.n = 0;
    __atomic_store_n(&kv.mode, mode, __ATOMIC_RELEASE);
    kv.canned = NULL;
    kv.canned_len = 0;
    __atomic_store_n(&kv.unsolicited_sent, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&kv.mu);
}

static void kv_put(const char *k, size_t kl, const char *v, size_t vl)
{
    size_t i;
    pthread_mutex_lock(&kv.mu);
    for (i = 0; i < kv.n; i++)
        if (kv.kl[i] == kl && memcmp(kv.k[i], k, kl) == 0)
            break;
    if (i == kv.n && kv.n < 64) {
        kv.k[i] = malloc(kl + 1);
        memcpy(kv.k[i], k, kl);
        kv.kl[i] = kl;
        kv.v[i] = NULL;
        kv.n++;
    }
    if (i < 64) {
        free(kv.v[i]);
        kv.v[i] = malloc(vl + 1);
        memcpy(kv.v[i], v, vl);
        kv.vl[i] = vl;
    }
    pthread_mutex_unlock(&kv.mu);
}

/* "$len\r\nvalue\r\n" or "$-1\r\n" of key k, malloc'd */
static char *kv_bulk(const char *k, size_t kl, size_t *n)
{
    char *out = NULL;
    pthread_mutex_lock(&kv.mu);
    for (size_t i = 0; i < kv.n; i++)
        if (kv.kl[i] == kl && memcmp(kv.k[i], k, kl) == 0) {
            out = malloc(kv.vl[i] + 32);
            *n = (size_t)sprintf(out, "$%zu\r\n", kv.vl[i]);
            memcpy(out + *n, kv.v[i], kv.vl[i]);
            *n += kv.vl[i];
            memcpy(out + *n, "\r\n", 2);
            *n += 2;
        }
    pthread_mutex_unlock(&kv.mu);
    if (!out) {
        out = strdup("$-1\r\n");
        *n = 5;
    }
    return out;
}

/* redis's key slot (CRC16-XMODEM mod 16384; no hash tags in these keys) */
static unsigned key_slot(const char *key)
{
    unsigned crc = 0;
    for (const char *p = key; *p; p++) {
        crc ^= (unsigned)(unsigned char)*p << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc & 16383;
}

static int has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

static void stream_forever(int fd, const char *head)
{
    char junk[65536];             /* per connection: two may run at once */
    memset(junk, 'x', sizeof junk);
    if (hostile_writes(fd, head) != 0)
        return;
    while (hostile_write(fd, junk, sizeof junk) == 0)
        ;
}

static void answer_get(int fd, const char *key, size_t kl, int mode)
{
    size_t n;
    char *b;
    if (mode == M_WRONG_TYPE && has(key, "arr")) {
        hostile_writes(fd, "*1\r\n$1\r\nx\r\n");
        return;
    }
    if (mode == M_DRIP && has(key, "drip")) {
        char buf[300];
        memset(buf, 'y', sizeof buf);
        memcpy(buf, "$290\r\n", 6);
        memcpy(buf + 296, "\r\n", 2);
        hostile_drip(fd, buf, 298, 100);   /* ~30 s if nobody hangs up */
        return;
    }
    if (mode == M_HUGE_BULK && has(key, "huge")) {
        stream_forever(fd, "$999999999999\r\n");
        return;
    }
    if (mode == M_HUGE_ARRAY && has(key, "huge")) {
        char elems[7 * 4096 + 1];     /* per connection, as junk above */
        hostile_writes(fd, "*2147483647\r\n");
        for (int i = 0; i < 4096; i++)
            memcpy(elems + 7 * i, "$1\r\nx\r\n", 7);
        while (hostile_write(fd, elems, 7 * 4096) == 0)
            ;
        return;
    }
    b = kv_bulk(key, kl, &n);
    if (mode == M_EXTRA && has(key, "secret")) {
        char *two = malloc(2 * n);
        memcpy(two, b, n);
        memcpy(two + n, b, n);
        hostile_write(fd, two, 2 * n);   /* one reply too many, in one segment */
        free(two);
    } else if (mode == M_UNSOLICITED && has(key, "secret")) {
        hostile_write(fd, b, n);
        hostile_sleep_ms(100);
        hostile_write(fd, b, n);         /* later, between requests */
        __atomic_store_n(&kv.unsolicited_sent, 1, __ATOMIC_RELEASE);
    } else {
        hostile_write(fd, b, n);
    }
    free(b);
}

static void kv_handler(int fd, int conn_no, void *arg)
{
    (void)conn_no;
    (void)arg;
    for (;;) {
        char **av;
        size_t *al;
        int ac = hostile_read_resp(fd, &av, &al);
        int mode = __atomic_load_n(&kv.mode, __ATOMIC_ACQUIRE);
        if (ac <= 0)
            return;
        if (!strcasecmp(av[0], "PING")) {
            hostile_writes(fd, "+PONG\r\n");
        } else if (!strcasecmp(av[0], "AUTH")) {
            pthread_mutex_lock(&kv.mu);
            kv.auth_argc = ac;
            snprintf(kv.auth_last, sizeof kv.auth_last, "%s", av[ac - 1]);
            pthread_mutex_unlock(&kv.mu);
            if (mode == M_AUTH_ECHO) {
                char line[512];
                snprintf(line, sizeof line, "-ERR invalid password '%s' for '%s'\r\n",
                         av[ac - 1], ac > 2 ? av[1] : "default");
                hostile_writes(fd, line);
            } else {
                hostile_writes(fd, "+OK\r\n");
            }
        } else if (!strcasecmp(av[0], "SELECT") || !strcasecmp(av[0], "ASKING")) {
            hostile_writes(fd, "+OK\r\n");
        } else if (!strcasecmp(av[0], "SET") && ac >= 3) {
            kv_put(av[1], al[1], av[2], al[2]);
            hostile_writes(fd, mode == M_WRONG_TYPE && has(av[1], "int") ? ":1\r\n" : "+OK\r\n");
        } else if (!strcasecmp(av[0], "GET") && ac == 2) {
            if (mode == M_CLOSE && has(av[1], "close")) {
                hostile_free_argv(ac, av, al);
                return;   /* hangs up instead of answering */
            }
            if (mode == M_MOVED_BAD) {
                /* the key's own slot, each time with something wrong */
                char line[128];
                unsigned slot = key_slot(av[1]);
                if (has(av[1], "p0"))
                    snprintf(line, sizeof line, "-MOVED %u 127.0.0.1:0\r\n", slot);
                else if (has(av[1], "p99999"))
                    snprintf(line, sizeof line, "-ASK %u 127.0.0.1:99999\r\n", slot);
                else if (has(av[1], "slot"))
                    snprintf(line, sizeof line, "-MOVED 99999 127.0.0.1:%d\r\n",
                             __atomic_load_n(&kv.port, __ATOMIC_ACQUIRE));
                else
                    snprintf(line, sizeof line, "-MOVED %u 127.0.0.1:4294967297\r\n", slot);
                hostile_writes(fd, line);
            } else {
                answer_get(fd, av[1], al[1], mode);
            }
        } else if (!strcasecmp(av[0], "MGET")) {
            char head[32];
            int extra = mode == M_MGET_EXTRA;
            snprintf(head, sizeof head, "*%d\r\n", ac - 1 + extra);
            hostile_writes(fd, head);
            for (int i = 1; i < ac; i++) {
                size_t n;
                char *b = kv_bulk(av[i], al[i], &n);
                hostile_write(fd, b, n);
                free(b);
            }
            if (extra)
                hostile_writes(fd, "$3\r\nbad\r\n");
        } else if (!strcasecmp(av[0], "DEL") || !strcasecmp(av[0], "EVAL")) {
            hostile_writes(fd, ":1\r\n");
        } else if (!strcasecmp(av[0], "CLUSTER") || !strcasecmp(av[0], "SENTINEL")) {
            char *copy = NULL;
            size_t len = 0;
            pthread_mutex_lock(&kv.mu);
            if (kv.canned && (copy = malloc(kv.canned_len)) != NULL) {
                memcpy(copy, kv.canned, kv.canned_len);
                len = kv.canned_len;
            }
            pthread_mutex_unlock(&kv.mu);
            if (copy)
                hostile_write(fd, copy, len);
            else
                hostile_writes(fd, "-ERR nothing canned\r\n");
            free(copy);
        } else {
            hostile_writes(fd, "-ERR unknown command\r\n");
        }
        hostile_free_argv(ac, av, al);
    }
}

/* ---- helpers ---- */

/* One server per test, never reused: handler threads of a stopped server
 * may still be finishing (they hold a pointer to it). */
static hostile_server servers[32];
static int nservers;
static hostile_server *srv;

static int setup(void **state)
{
    (void)state;
    kv_reset(M_NORMAL);
    if (nservers >= (int)(sizeof servers / sizeof *servers))
        return -1;
    srv = &servers[nservers++];
    return hostile_start(srv, kv_handler, NULL);
}

static int teardown(void **state)
{
    (void)state;
    hostile_stop(srv);
    return 0;
}

static cachet_region *open_cfg(const char *backend, const char *args, cachet_status *st)
{
    char text[4096];
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = %s\n%s", backend, args);
    if (cachet_config_parse(c, text, "cache") != CACHET_OK)
        fail_msg("config: %s", cachet_errmsg());
    *st = cachet_region_open(c, &r);
    cachet_config_free(c);
    return r;
}

static cachet_region *open_hostile(const char *extra)
{
    char args[1024];
    cachet_status st;
    cachet_region *r;
    snprintf(args, sizeof args, "backend_argument = url:redis://127.0.0.1:%d/0\n"
             "backend_argument = socket_timeout:0.5\nbackend_argument = dead_retry:5\n%s",
             srv->port, extra ? extra : "");
    r = open_cfg("dogpile.cache.redis", args, &st);
    if (st != CACHET_OK)
        fail_msg("open: %s", cachet_errmsg());
    return r;
}

/* get key: its value must be want, or the call failed; never anything else */
static cachet_status get_is(cachet_region *r, const char *key, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    cachet_status st = cachet_get(r, key, &v, &n);
    if (st == CACHET_OK) {
        if (n != strlen(want) || memcmp(v, want, n) != 0)
            fail_msg("get %s returned %zu bytes '%.*s', not '%s'", key, n, (int)n, (char *)v, want);
        cachet_free(v);
    }
    return st;
}

typedef struct {
    char text[4096];
} report_buf;

static void collect(void *arg, const char *name, const char *value)
{
    report_buf *b = arg;
    size_t len = strlen(b->text);
    snprintf(b->text + len, sizeof b->text - len, "%s=%s\n", name, value);
}

static void report(cachet_region *r, report_buf *b)
{
    b->text[0] = '\0';
    assert_int_equal(cachet_backend_report(r, collect, b), CACHET_OK);
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- 2. replies matched to requests ---- */

static void extra_reply_never_reaches_another_key(void **state)
{
    cachet_region *r;
    int before;
    (void)state;
    kv_reset(M_EXTRA);
    r = open_hostile(NULL);
    assert_int_equal(cachet_set(r, "secret", "SECRET-VALUE", 12), CACHET_OK);
    assert_int_equal(cachet_set(r, "other", "other-value", 11), CACHET_OK);
    before = hostile_connections(srv);
    assert_int_equal(get_is(r, "secret", "SECRET-VALUE"), CACHET_OK);
    /* the extra reply is still on that connection: it must not be reused */
    for (int i = 0; i < 5; i++)
        assert_int_equal(get_is(r, "other", "other-value"), CACHET_OK);
    assert_true(hostile_connections(srv) > before);
    cachet_region_close(r);
}

static void unsolicited_reply_drops_the_pooled_connection(void **state)
{
    cachet_region *r;
    report_buf rb;
    int before;
    double t0;
    (void)state;
    kv_reset(M_UNSOLICITED);
    r = open_hostile(NULL);
    assert_int_equal(cachet_set(r, "secret", "SECRET-VALUE", 12), CACHET_OK);
    assert_int_equal(cachet_set(r, "other", "other-value", 11), CACHET_OK);
    before = hostile_connections(srv);
    assert_int_equal(get_is(r, "secret", "SECRET-VALUE"), CACHET_OK);
    /* the connection went back to the pool clean; then the server speaks */
    t0 = now_s();
    while (!__atomic_load_n(&kv.unsolicited_sent, __ATOMIC_ACQUIRE) && now_s() - t0 < 20)
        hostile_sleep_ms(10);
    assert_true(__atomic_load_n(&kv.unsolicited_sent, __ATOMIC_ACQUIRE));
    assert_int_equal(get_is(r, "other", "other-value"), CACHET_OK);
    assert_true(hostile_connections(srv) > before);
    report(r, &rb);
    assert_true(has(rb.text, "protocol_errors=1"));
    cachet_region_close(r);
}

static void wrong_reply_types_are_protocol_errors(void **state)
{
    cachet_region *r;
    cachet_status st;
    report_buf rb;
    void *v = NULL;
    size_t n;
    (void)state;
    kv_reset(M_WRONG_TYPE);
    r = open_hostile(NULL);
    st = cachet_get(r, "arr-key", &v, &n);
    assert_int_not_equal(st, CACHET_OK);
    assert_null(v);
    /* a GET answered by an array, at once: a protocol error, not a timeout,
     * and the host is not marked down */
    assert_true(has(cachet_errmsg(), "protocol error"));
    assert_false(has(cachet_errmsg(), "socket_timeout"));
    assert_int_not_equal(cachet_set(r, "int-key", "v", 1), CACHET_OK);
    assert_true(has(cachet_errmsg(), "protocol error"));
    assert_int_equal(cachet_set(r, "fine", "value", 5), CACHET_OK);
    assert_int_equal(get_is(r, "fine", "value"), CACHET_OK);
    report(r, &rb);
    assert_true(has(rb.text, " up "));
    assert_true(has(rb.text, "failures=0"));
    assert_true(has(rb.text, "protocol_errors=2"));
    cachet_region_close(r);
}

static void mget_with_one_element_too_many_fails(void **state)
{
    cachet_region *r;
    cachet_item items[2] = {{"m1", NULL, 0, CACHET_OK}, {"m2", NULL, 0, CACHET_OK}};
    cachet_status st;
    (void)state;
    kv_reset(M_NORMAL);
    r = open_hostile(NULL);
    assert_int_equal(cachet_set(r, "m1", "one", 3), CACHET_OK);
    assert_int_equal(cachet_set(r, "m2", "two", 3), CACHET_OK);
    __atomic_store_n(&kv.mode, M_MGET_EXTRA, __ATOMIC_RELEASE);
    st = cachet_get_multi(r, items, 2);
    assert_int_not_equal(st, CACHET_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_not_equal(items[i].status, CACHET_OK);
        assert_null(items[i].value);
    }
    assert_true(has(cachet_errmsg(), "protocol error"));
    cachet_region_close(r);
}

/* a server that hangs up answered: not a timeout, whatever errno says */
static void closed_connection_is_not_a_timeout(void **state)
{
    cachet_region *r;
    report_buf rb;
    void *v = NULL;
    size_t n;
    double t0, el;
    (void)state;
    char args[512];
    cachet_status st;
    kv_reset(M_CLOSE);
    snprintf(args, sizeof args, "backend_argument = url:redis://127.0.0.1:%d/0\n"
             "backend_argument = socket_timeout:10\n", srv->port);
    r = open_cfg("dogpile.cache.redis", args, &st);
    assert_int_equal(st, CACHET_OK);
    t0 = now_s();
    assert_int_equal(cachet_get(r, "close", &v, &n), CACHET_EUNAVAILABLE);
    el = now_s() - t0;
    assert_true(has(cachet_errmsg(), "closed the connection"));
    assert_false(has(cachet_errmsg(), "socket_timeout"));
    assert_true(el < 5.0);   /* it did not wait for the 10 s deadline */
    report(r, &rb);
    assert_true(has(rb.text, "failures=1"));
    assert_true(has(rb.text, "protocol_errors=0"));
    cachet_region_close(r);
}

/* ---- 1. one deadline, bounded replies ---- */

static void drip_is_cut_at_the_deadline(void **state)
{
    cachet_region *r;
    void *v = NULL;
    size_t n;
    double t0, el;
    (void)state;
    kv_reset(M_DRIP);
    r = open_hostile(NULL);
    t0 = now_s();
    assert_int_not_equal(cachet_get(r, "drip", &v, &n), CACHET_OK);
    el = now_s() - t0;
    print_message("dripped reply (would take ~30 s): the call returned after %.2f s\n", el);
    assert_true(el < 5.0);
    assert_true(has(cachet_errmsg(), "socket_timeout"));
    cachet_region_close(r);
}

/* A reply declaring more than the request can get (mode): the call fails
 * as a protocol error at once, before anything of that size is allocated. */
static void oversized_reply_fails_fast(int mode, const char *what)
{
    cachet_region *r;
    void *v = NULL;
    size_t n;
    long rss0, rss1;
    double t0, el;
    kv_reset(mode);
    r = open_hostile(NULL);
    rss0 = rss_kb();
    t0 = now_s();
    assert_int_not_equal(cachet_get(r, "huge", &v, &n), CACHET_OK);
    el = now_s() - t0;
    rss1 = rss_kb();
    print_message("%s: failed after %.3f s, RSS %+ld KiB\n", what, el, rss1 - rss0);
    assert_true(has(cachet_errmsg(), "protocol error"));
    assert_true(el < 5.0);
    assert_true(rss1 - rss0 < 64 * 1024);
    cachet_region_close(r);
}

static void huge_bulk_fails_fast_without_growing(void **state)
{
    (void)state;
    oversized_reply_fails_fast(M_HUGE_BULK, "$999999999999");
}

static void huge_array_fails_fast(void **state)
{
    (void)state;
    oversized_reply_fails_fast(M_HUGE_ARRAY, "*2147483647");
}

static void value_over_max_value_size_is_not_stored(void **state)
{
    cachet_region *r;
    char big[2048];
    (void)state;
    kv_reset(M_NORMAL);
    r = open_hostile("backend_argument = max_value_size:1024\n");
    memset(big, 'z', sizeof big);
    assert_int_equal(cachet_set(r, "big", big, sizeof big), CACHET_ETOOBIG);
    assert_true(has(cachet_errmsg(), "max_value_size"));
    assert_int_equal(cachet_set(r, "small", "ok", 2), CACHET_OK);
    assert_int_equal(get_is(r, "small", "ok"), CACHET_OK);
    cachet_region_close(r);
}

/* ---- 3. what a server names is checked ---- */

static char canned[512];

static void set_canned(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&kv.mu);   /* handlers copy it under the lock */
    va_start(ap, fmt);
    vsnprintf(canned, sizeof canned, fmt, ap);
    va_end(ap);
    kv.canned = canned;
    kv.canned_len = strlen(canned);
    pthread_mutex_unlock(&kv.mu);
}

static cachet_region *open_cluster(cachet_status *st)
{
    char args[512];
    snprintf(args, sizeof args, "backend_argument = startup_nodes:127.0.0.1:%d\n"
             "backend_argument = socket_timeout:0.5\n", srv->port);
    return open_cfg("dogpile.cache.redis_cluster", args, st);
}

static void cluster_slots_out_of_range_are_refused(void **state)
{
    cachet_region *r;
    cachet_status st;
    void *v = NULL;
    size_t n;
    double t0, el;
    (void)state;
    kv_reset(M_NORMAL);
    set_canned("*1\r\n*3\r\n:-9223372036854775807\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n"
               ":%d\r\n", srv->port);
    t0 = now_s();
    r = open_cluster(&st);
    el = now_s() - t0;
    print_message("CLUSTER SLOTS from -9223372036854775807: open returned after %.3f s\n", el);
    assert_true(el < 5.0);
    assert_int_equal(st, CACHET_OK);   /* the cluster may come right later */
    assert_int_not_equal(cachet_get(r, "k", &v, &n), CACHET_OK);
    assert_true(has(cachet_errmsg(), "0..16383"));
    cachet_region_close(r);
}

static void cluster_ports_out_of_range_are_refused(void **state)
{
    cachet_region *r;
    cachet_status st;
    report_buf rb;
    char want[64];
    (void)state;
    kv_reset(M_NORMAL);
    /* one good range (ours), three with ports 0, 99999 and 2^32+1 */
    set_canned("*4\r\n"
               "*3\r\n:0\r\n:99\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n"
               "*3\r\n:100\r\n:199\r\n*2\r\n$9\r\n127.0.0.1\r\n:0\r\n"
               "*3\r\n:200\r\n:299\r\n*2\r\n$9\r\n127.0.0.1\r\n:99999\r\n"
               "*3\r\n:300\r\n:399\r\n*2\r\n$9\r\n127.0.0.1\r\n:4294967297\r\n", srv->port);
    r = open_cluster(&st);
    assert_int_equal(st, CACHET_OK);
    report(r, &rb);
    snprintf(want, sizeof want, "127.0.0.1:%d ", srv->port);
    assert_true(has(rb.text, want));
    assert_true(has(rb.text, "slots=100"));
    assert_false(has(rb.text, "127.0.0.1:0 "));
    assert_false(has(rb.text, "127.0.0.1:99999 "));
    assert_false(has(rb.text, "127.0.0.1:1 "));   /* 4294967297 truncated */
    cachet_region_close(r);
}

static void moved_to_a_bad_target_is_not_followed(void **state)
{
    static const char *const keys[] = {"p0", "p99999", "slot", "p4294967297"};
    cachet_region *r;
    cachet_status st;
    report_buf rb;
    (void)state;
    kv_reset(M_MOVED_BAD);
    __atomic_store_n(&kv.port, srv->port, __ATOMIC_RELEASE);
    set_canned("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n", srv->port);
    r = open_cluster(&st);
    assert_int_equal(st, CACHET_OK);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        void *v = NULL;
        size_t n;
        assert_int_not_equal(cachet_get(r, keys[i], &v, &n), CACHET_OK);
        if (!has(cachet_errmsg(), "protocol error"))
            fail_msg("%s: %s", keys[i], cachet_errmsg());
    }
    report(r, &rb);
    assert_false(has(rb.text, "127.0.0.1:0 "));
    assert_false(has(rb.text, "127.0.0.1:99999 "));
    assert_false(has(rb.text, "127.0.0.1:1 "));
    cachet_region_close(r);
}

/* the sentinel's answer, then a get: it must fail, naming why */
static void sentinel_answer_refused(const char *answer, size_t len, const char *needle)
{
    char args[512];
    cachet_region *r;
    cachet_status st;
    void *v = NULL;
    size_t n;
    double t0;
    pthread_mutex_lock(&kv.mu);
    kv.canned = answer;
    kv.canned_len = len;
    pthread_mutex_unlock(&kv.mu);
    snprintf(args, sizeof args, "backend_argument = sentinels:127.0.0.1:%d\n"
             "backend_argument = socket_timeout:0.5\n", srv->port);
    t0 = now_s();
    r = open_cfg("dogpile.cache.redis_sentinel", args, &st);
    assert_int_equal(st, CACHET_OK);   /* the master may be named later */
    assert_int_not_equal(cachet_get(r, "k", &v, &n), CACHET_OK);
    assert_true(now_s() - t0 < 5.0);
    if (!has(cachet_errmsg(), needle))
        fail_msg("'%s' does not say '%s'", cachet_errmsg(), needle);
    cachet_region_close(r);
}

static void sentinel_bad_masters_are_refused(void **state)
{
    static const char port0[] = "*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n";
    static const char port_big[] = "*2\r\n$9\r\n127.0.0.1\r\n$10\r\n4294967297\r\n";
    static const char empty[] = "*2\r\n$0\r\n\r\n$4\r\n6379\r\n";
    static char *huge;   /* a handler may still be writing it: never freed */
    size_t big = 10u << 20;
    int k;
    (void)state;
    kv_reset(M_NORMAL);
    sentinel_answer_refused(port0, sizeof port0 - 1, "1..65535");
    sentinel_answer_refused(port_big, sizeof port_big - 1, "1..65535");
    sentinel_answer_refused(empty, sizeof empty - 1, "protocol error");
    if (!huge)
        huge = malloc(big + 64);
    assert_non_null(huge);
    k = sprintf(huge, "*2\r\n$%zu\r\n", big);
    memset(huge + k, 'h', big);
    memcpy(huge + k + big, "\r\n$4\r\n6379\r\n", 12);
    sentinel_answer_refused(huge, (size_t)k + big + 12, "protocol error");
}

/* ---- 4. secrets ---- */

static void echoed_password_is_scrubbed(void **state)
{
    char args[512];
    cachet_status st;
    cachet_region *r;
    (void)state;
    kv_reset(M_AUTH_ECHO);
    snprintf(args, sizeof args, "backend_argument = url:redis://:THEPASSWORD@127.0.0.1:%d/0\n"
             "backend_argument = socket_timeout:0.5\n", srv->port);
    r = open_cfg("dogpile.cache.redis", args, &st);
    assert_int_not_equal(st, CACHET_OK);
    assert_null(r);
    assert_true(has(cachet_errmsg(), "AUTH"));
    assert_false(has(cachet_errmsg(), "THEPASSWORD"));
}

/* a url that fails to parse, quoted: none of hidden shows */
static void bad_url_hides(const char *url, const char *const *hidden)
{
    char args[512];
    cachet_status st;
    snprintf(args, sizeof args, "backend_argument = url:%s\n", url);
    assert_null(open_cfg("dogpile.cache.redis", args, &st));
    assert_int_equal(st, CACHET_EINVAL);
    assert_true(has(cachet_errmsg(), "***@"));
    for (; *hidden; hidden++)
        if (has(cachet_errmsg(), *hidden))
            fail_msg("'%s' shows '%s'", cachet_errmsg(), *hidden);
}

static void urls_in_messages_show_no_userinfo(void **state)
{
    static const char *const lone[] = {"S3cretLone", NULL};
    static const char *const at[] = {"p@ss", "ss@", "user", NULL};
    static const char *const slash[] = {"pa/ss", "ss@", NULL};
    (void)state;
    bad_url_hides("redis://S3cretLone@127.0.0.1:notaport/0", lone);
    bad_url_hides("redis://user:p@ss@127.0.0.1:notaport/0", at);
    bad_url_hides("redis://:pa/ss@127.0.0.1:6379/x", slash);
    bad_url_hides("unix://user:p@ss@/run/x.sock?db=x", at);
}

/* A URL with userinfo to the server that refuses AUTH: the open fails,
 * the server saw argc words of AUTH, its password last, and the message
 * names AUTH but shows none of hidden. */
static void auth_refused_hides(const char *userinfo, int argc, const char *last,
                               const char *const hidden[])
{
    char args[512];
    cachet_status st;
    snprintf(args, sizeof args, "backend_argument = url:redis://%s@127.0.0.1:%d/0\n", userinfo,
             srv->port);
    assert_null(open_cfg("dogpile.cache.redis", args, &st));
    pthread_mutex_lock(&kv.mu);
    assert_int_equal(kv.auth_argc, argc);
    assert_string_equal(kv.auth_last, last);
    pthread_mutex_unlock(&kv.mu);
    assert_true(has(cachet_errmsg(), "AUTH"));
    for (size_t i = 0; hidden[i]; i++)
        assert_false(has(cachet_errmsg(), hidden[i]));
}

/* as redis-py 4.3 parses them: the userinfo ends at the LAST '@', a lone
 * user part is a user (AUTH user ""); neither shows in a message */
static void url_userinfo_as_redis_py(void **state)
{
    static const char *const pass[] = {"p@ss", "w0rd", NULL};
    static const char *const lone[] = {"S3cretLone", NULL};
    (void)state;
    kv_reset(M_AUTH_ECHO);
    auth_refused_hides(":p%40ss@w0rd", 2, "p@ss@w0rd", pass);
    auth_refused_hides("S3cretLone", 3, "", lone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(extra_reply_never_reaches_another_key, setup, teardown),
        cmocka_unit_test_setup_teardown(unsolicited_reply_drops_the_pooled_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_reply_types_are_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(mget_with_one_element_too_many_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(closed_connection_is_not_a_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(drip_is_cut_at_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(huge_bulk_fails_fast_without_growing, setup, teardown),
        cmocka_unit_test_setup_teardown(huge_array_fails_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(value_over_max_value_size_is_not_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(echoed_password_is_scrubbed, setup, teardown),
        cmocka_unit_test(urls_in_messages_show_no_userinfo),
        cmocka_unit_test_setup_teardown(url_userinfo_as_redis_py, setup, teardown),
        cmocka_unit_test_setup_teardown(cluster_slots_out_of_range_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(cluster_ports_out_of_range_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(moved_to_a_bad_target_is_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(sentinel_bad_masters_are_refused, setup, teardown),
    };
    setenv("CACHET_PLUGIN_PATH", TEST_BUILDDIR "/backends/.libs", 1);
    if (getenv("CACHET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CACHET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
