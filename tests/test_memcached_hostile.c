/* The memcached and memcache_pool backends against a server that lies
 * (tests/hostile.h): whatever it sends, cachet must never hand a caller
 * another key's value, never wait past socket_timeout, never allocate what
 * a reply merely declares, and never reuse a connection with unread bytes.
 * Every test runs for both backends and both protocols.
 *
 * The fake keeps what cachet stores (so the values it hands back are real
 * cachet values: a lie is another key's genuine value, not noise that the
 * value decoder would catch) and answers according to the test's mode. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "hostile.h"

enum {
    M_HONEST,
    M_EXTRA,          /* after the reply to a get of "secret", a forged reply for "other" */
    M_WRONGKEY,       /* a single get answered with another stored key's value */
    M_OUTOFORDER,     /* multi-get hits in reverse request order */
    M_TWICE,          /* each multi-get hit twice */
    M_NOTASKED,       /* a multi-get hit for a stored key not in the request */
    M_WRONGOPAQUE,    /* binary: the response carries the next request's opaque */
    M_WRONGOPCODE,    /* binary: a GET response to a GETK */
    M_HUGE,           /* a value of 999999999999 bytes (binary: ~4 GiB), then endless bytes */
    M_DRIP,           /* the honest reply, one byte per 100 ms */
    M_UNSOLICITED     /* the honest reply, then bytes nobody asked for */
};

#define NKEYS 16
typedef struct {
    pthread_mutex_t mu;
    int             mode;
    char            key[NKEYS][256];
    unsigned char  *val[NKEYS];
    size_t          len[NKEYS];
    int             n;
    int             unsolicited_sent;
} store;

static store S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void store_reset(int mode)
{
    pthread_mutex_lock(&S.mu);
    for (int i = 0; i < S.n; i++)
        free(S.val[i]);
    S.n = 0;
    S.mode = mode;
    S.unsolicited_sent = 0;
    pthread_mutex_unlock(&S.mu);
}

static int mode_now(void)
{
    pthread_mutex_lock(&S.mu);
    int m = S.mode;
    pthread_mutex_unlock(&S.mu);
    return m;
}

static void set_mode(int mode)
{
    pthread_mutex_lock(&S.mu);
    S.mode = mode;
    pthread_mutex_unlock(&S.mu);
}

/* (called with S.mu held) */
static int find(const char *k, size_t kl)
{
    for (int i = 0; i < S.n; i++)
        if (strlen(S.key[i]) == kl && memcmp(S.key[i], k, kl) == 0)
            return i;
    return -1;
}

static void put(const char *k, size_t kl, const void *v, size_t vl)
{
    pthread_mutex_lock(&S.mu);
    int i = find(k, kl);
    if (i < 0 && S.n < NKEYS && kl < 256) {
        i = S.n++;
        memcpy(S.key[i], k, kl);
        S.key[i][kl] = 0;
        S.val[i] = NULL;
    }
    if (i >= 0) {
        free(S.val[i]);
        S.val[i] = malloc(vl ? vl : 1);
        memcpy(S.val[i], v, vl);
        S.len[i] = vl;
    }
    pthread_mutex_unlock(&S.mu);
}

/* A growable reply buffer. */
typedef struct {
    char  *p;
    size_t n, cap;
} obuf;

static void out(obuf *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 256;
        o->p = realloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

static void outf(obuf *o, const char *fmt, ...)
{
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    out(o, b, (size_t)n);
}

/* (S.mu held) */
static void text_value(obuf *o, const char *k, int i)
{
    outf(o, "VALUE %s 0 %zu\r\n", k, S.len[i]);
    out(o, S.val[i], S.len[i]);
    out(o, "\r\n", 2);
}

static void endless(int fd)
{
    char junk[65536];             /* per connection: two may run at once */
    memset(junk, 'x', sizeof junk);
    /* until cachet hangs up (at most 4 GiB: never reached when it does) */
    for (int i = 0; i < 65536 && hostile_write(fd, junk, sizeof junk) == 0; i++)
        ;
}

/* Sends o per the mode (drip, or all at once), then the unsolicited bytes. */
static int finish(int fd, obuf *o, int mode, const void *extra, size_t en)
{
    int rc = mode == M_DRIP ? hostile_drip(fd, o->p, o->n, 100) : hostile_write(fd, o->p, o->n);
    o->n = 0;
    if (rc == 0 && mode == M_UNSOLICITED && extra) {
        hostile_sleep_ms(20);
        rc = hostile_write(fd, extra, en);
        pthread_mutex_lock(&S.mu);
        S.unsolicited_sent = 1;
        pthread_mutex_unlock(&S.mu);
    }
    return rc;
}

static void text_handler(int fd, int conn_no, void *arg)
{
    char line[2048];
    obuf o = {0};
    (void)conn_no;
    (void)arg;
    for (;;) {
        ssize_t n = hostile_read_line(fd, line, sizeof line);
        char *save = NULL, *w;
        int mode = mode_now();       /* (read after the request: the test sets it before) */
        if (n <= 0)
            break;
        line[n - 2] = 0;
        w = strtok_r(line, " ", &save);
        if (!w)
            break;
        if (!strcmp(w, "set") || !strcmp(w, "add")) {
            char *k = strtok_r(NULL, " ", &save);
            strtok_r(NULL, " ", &save);
            strtok_r(NULL, " ", &save);
            size_t bytes = strtoul(strtok_r(NULL, " ", &save), NULL, 10);
            char *v = malloc(bytes + 2);
            if (hostile_read_exact(fd, v, bytes + 2) != 0) {
                free(v);
                break;
            }
            pthread_mutex_lock(&S.mu);
            int exists = find(k, strlen(k)) >= 0;
            pthread_mutex_unlock(&S.mu);
            if (!strcmp(w, "add") && exists) {
                outf(&o, "NOT_STORED\r\n");
            } else {
                put(k, strlen(k), v, bytes);
                outf(&o, "STORED\r\n");
            }
            free(v);
        } else if (!strcmp(w, "delete")) {
            outf(&o, "DELETED\r\n");
        } else if (!strcmp(w, "flush_all")) {
            outf(&o, "OK\r\n");
        } else if (!strcmp(w, "get") || !strcmp(w, "gets")) {
            char *keys[64];
            int nk = 0, hits[64], nh = 0;
            while (nk < 64 && (keys[nk] = strtok_r(NULL, " ", &save)) != NULL)
                nk++;
            if (mode == M_HUGE) {
                outf(&o, "VALUE %s 0 999999999999\r\n", keys[0]);
                hostile_write(fd, o.p, o.n);
                endless(fd);
                break;
            }
            pthread_mutex_lock(&S.mu);
            for (int k = 0; k < nk; k++) {
                int i = find(keys[k], strlen(keys[k]));
                if (i >= 0)
                    hits[nh++] = k;
            }
            if (mode == M_WRONGKEY && nk == 1) {
                /* another stored key's genuine value */
                for (int i = 0; i < S.n; i++)
                    if (strcmp(S.key[i], keys[0]) != 0) {
                        text_value(&o, S.key[i], i);
                        break;
                    }
            } else if (mode == M_OUTOFORDER && nk > 1) {
                for (int h = nh; h-- > 0;)
                    text_value(&o, keys[hits[h]], find(keys[hits[h]], strlen(keys[hits[h]])));
            } else {
                for (int h = 0; h < nh; h++) {
                    int i = find(keys[hits[h]], strlen(keys[hits[h]]));
                    text_value(&o, keys[hits[h]], i);
                    if (mode == M_TWICE && nk > 1)
                        text_value(&o, keys[hits[h]], i);
                }
                if (mode == M_NOTASKED && nk > 1)
                    for (int i = 0; i < S.n; i++) {
                        int asked = 0;
                        for (int k = 0; k < nk; k++)
                            asked |= !strcmp(S.key[i], keys[k]);
                        if (!asked) {
                            text_value(&o, S.key[i], i);
                            break;
                        }
                    }
            }
            outf(&o, "END\r\n");
            if (mode == M_EXTRA && nk == 1 && strstr(keys[0], "secret")) {
                /* a forged answer to the next request, with the secret's bytes */
                char other[256];
                int i = find(keys[0], strlen(keys[0]));
                snprintf(other, sizeof other, "%s", keys[0]);
                memcpy(strstr(other, "secret"), "other", 5);
                memmove(strstr(other, "other") + 5, strstr(other, "other") + 6,
                        strlen(strstr(other, "other") + 6) + 1);
                if (i >= 0)
                    text_value(&o, other, i);
                outf(&o, "END\r\n");
            }
            pthread_mutex_unlock(&S.mu);
            {
                static const char junk[] = "VALUE stray 0 5\r\nstray\r\nEND\r\n";
                if (finish(fd, &o, mode, junk, sizeof junk - 1) != 0)
                    break;
            }
            continue;
        } else {
            outf(&o, "ERROR\r\n");
        }
        if (hostile_write(fd, o.p, o.n) != 0)
            break;
        o.n = 0;
    }
    free(o.p);
}

/* ---- binary ---- */

static void bin_hdr(obuf *o, uint8_t op, uint16_t kl, uint8_t el, uint16_t status, uint32_t body,
                    uint32_t opaque)
{
    unsigned char h[24] = {0x81, op, (unsigned char)(kl >> 8), (unsigned char)kl, el, 0,
                           (unsigned char)(status >> 8), (unsigned char)status,
                           (unsigned char)(body >> 24), (unsigned char)(body >> 16),
                           (unsigned char)(body >> 8), (unsigned char)body,
                           (unsigned char)(opaque >> 24), (unsigned char)(opaque >> 16),
                           (unsigned char)(opaque >> 8), (unsigned char)opaque};
    h[23] = 1;      /* a CAS */
    out(o, h, 24);
}

/* A hit: op GETK/GETKQ, key k, stored item i (S.mu held). */
static void bin_value(obuf *o, uint8_t op, const char *k, int i, uint32_t opaque)
{
    size_t kl = strlen(k);
    bin_hdr(o, op, (uint16_t)kl, 4, 0, (uint32_t)(4 + kl + S.len[i]), opaque);
    out(o, "\0\0\0\0", 4);
    out(o, k, kl);
    out(o, S.val[i], S.len[i]);
}

typedef struct {
    char     key[256];
    uint32_t opaque;
} pend;

static void bin_handler(int fd, int conn_no, void *arg)
{
    obuf o = {0};
    pend q[64];
    int nq = 0;
    (void)conn_no;
    (void)arg;
    for (;;) {
        unsigned char h[24];
        uint8_t op;
        uint16_t kl;
        uint8_t el;
        uint32_t body, opaque;
        char *b, key[256];
        int mode;
        if (hostile_read_exact(fd, h, 24) != 0 || h[0] != 0x80)
            break;
        mode = mode_now();           /* (read after the request: the test sets it before) */
        op = h[1];
        kl = (uint16_t)(h[2] << 8 | h[3]);
        el = h[4];
        body = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
        memcpy(&opaque, h + 12, 4);
        opaque = __builtin_bswap32(opaque);
        if (body > (64u << 20) || kl > 250 || !(b = malloc(body + 1)))
            break;
        if (hostile_read_exact(fd, b, body) != 0) {
            free(b);
            break;
        }
        memcpy(key, b + el, kl);
        key[kl] = 0;
        if (op == 0x01 || op == 0x02) {              /* SET, ADD */
            put(key, kl, b + el + kl, body - el - kl);
            bin_hdr(&o, op, 0, 0, 0, 0, opaque);
        } else if (op == 0x04 || op == 0x08) {       /* DELETE, FLUSH */
            bin_hdr(&o, op, 0, 0, 0, 0, opaque);
        } else if (op == 0x0c) {                     /* GETK */
            if (mode == M_HUGE) {
                bin_hdr(&o, 0x0c, (uint16_t)kl, 4, 0, 0xfffffff0u, opaque);
                hostile_write(fd, o.p, o.n);
                free(b);
                endless(fd);
                break;
            }
            pthread_mutex_lock(&S.mu);
            int i = find(key, kl);
            if (mode == M_WRONGKEY) {
                for (int j = 0; j < S.n; j++)
                    if (j != i) {
                        bin_value(&o, 0x0c, S.key[j], j, opaque);
                        break;
                    }
            } else if (i >= 0) {
                bin_value(&o, mode == M_WRONGOPCODE ? 0x00 : 0x0c, key, i,
                          mode == M_WRONGOPAQUE ? opaque + 1 : opaque);
            } else {
                bin_hdr(&o, 0x0c, (uint16_t)kl, 0, 1, kl, opaque);
                out(&o, key, kl);
            }
            if (mode == M_EXTRA && strstr(key, "secret") && i >= 0) {
                char other[256];
                snprintf(other, sizeof other, "%s", key);
                memcpy(strstr(other, "secret"), "other", 5);
                memmove(strstr(other, "other") + 5, strstr(other, "other") + 6,
                        strlen(strstr(other, "other") + 6) + 1);
                bin_value(&o, 0x0c, other, i, opaque + 1);   /* the next request's id */
            }
            pthread_mutex_unlock(&S.mu);
            {
                static const unsigned char junk[24] = {0x81, 0x0a};
                if (finish(fd, &o, mode, junk, sizeof junk) != 0) {
                    free(b);
                    break;
                }
            }
        } else if (op == 0x0d) {                     /* GETKQ: answered at the NOOP */
            if (nq < 64) {
                snprintf(q[nq].key, sizeof q[nq].key, "%s", key);
                q[nq++].opaque = opaque;
            }
        } else if (op == 0x0a) {                     /* NOOP: the multi-get's answers */
            int hits[64], nh = 0;
            pthread_mutex_lock(&S.mu);
            for (int k = 0; k < nq; k++)
                if (find(q[k].key, strlen(q[k].key)) >= 0)
                    hits[nh++] = k;
            if (mode == M_OUTOFORDER) {
                for (int x = nh; x-- > 0;)
                    bin_value(&o, 0x0d, q[hits[x]].key, find(q[hits[x]].key, strlen(q[hits[x]].key)),
                              q[hits[x]].opaque);
            } else {
                for (int x = 0; x < nh; x++) {
                    int i = find(q[hits[x]].key, strlen(q[hits[x]].key));
                    bin_value(&o, 0x0d, q[hits[x]].key, i, q[hits[x]].opaque);
                    if (mode == M_TWICE)
                        bin_value(&o, 0x0d, q[hits[x]].key, i, q[hits[x]].opaque);
                }
                if (mode == M_NOTASKED && S.n)
                    bin_value(&o, 0x0d, S.key[0], 0, opaque + 7);
            }
            pthread_mutex_unlock(&S.mu);
            bin_hdr(&o, 0x0a, 0, 0, 0, 0, opaque);
            nq = 0;
        } else {
            bin_hdr(&o, op, 0, 0, 0x81, 0, opaque);
        }
        free(b);
        if (o.n && hostile_write(fd, o.p, o.n) != 0)
            break;
        o.n = 0;
    }
    free(o.p);
}

/* ---- the tests ---- */

static const char *const backends[] = {"dogpile.cache.memcached", "oslo_cache.memcache_pool"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    hostile_server srv;
    cachet_region *r;
    int            binary;
    const char    *backend;
} fixture;

static void start(fixture *f, int b, int binary, int mode, const char *timeout)
{
    cachet_config *c = cachet_config_new();
    char url[64];
    store_reset(mode);
    f->binary = binary;
    f->backend = backends[b];
    assert_int_equal(hostile_start(&f->srv, binary ? bin_handler : text_handler, NULL), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d", f->srv.port);
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", backends[b]);
    cachet_config_set(c, "memcache_servers", url);
    cachet_config_set(c, "memcache_socket_timeout", timeout ? timeout : "2");
    cachet_config_set(c, "memcache_dead_retry", "30");
    if (binary)
        cachet_config_set(c, "backend_argument", "binary:true");
    if (cachet_region_open(c, &f->r) != CACHET_OK)
        fail_msg("open: %s", cachet_errmsg());
    cachet_config_free(c);
}

static void stop(fixture *f)
{
    cachet_region_close(f->r);
    hostile_stop(&f->srv);
}

static void must_set(fixture *f, const char *k, const char *v)
{
    if (cachet_set(f->r, k, v, strlen(v)) != CACHET_OK)
        fail_msg("%s %s: set %s: %s", f->backend, f->binary ? "binary" : "text", k,
                 cachet_errmsg());
}

/* The backend's report line for the server. */
static void grab(void *arg, const char *name, const char *value)
{
    if (!strcmp(name, "server"))
        snprintf(arg, 512, "%s", value);
}

static void server_line(fixture *f, char *buf)
{
    buf[0] = 0;
    assert_int_equal(cachet_backend_report(f->r, grab, buf), CACHET_OK);
}

/* Runs the block once per backend and protocol, with f, b and binary set. */
#define EACH(...)                                                    \
    for (int b_ = 0; b_ < 2; b_++)                                   \
        for (int bin_ = 0; bin_ < 2; bin_++) {                       \
            fixture f_;                                              \
            fixture *f = &f_;                                        \
            int b = b_, binary = bin_;                               \
            __VA_ARGS__                                              \
        }

/* The reply to get secret is followed by a forged reply for "other"
 * carrying the secret's bytes: a later get other must not return them,
 * and must go over a new connection. */
static void extra_reply_after_get(void **state)
{
    (void)state;
    EACH({
        void *v;
        size_t n;
        start(f, b, binary, M_EXTRA, NULL);
        must_set(f, "secret", "the secret");
        assert_int_equal(cachet_get(f->r, "secret", &v, &n), CACHET_OK);
        assert_int_equal(n, 10);
        assert_memory_equal(v, "the secret", 10);
        cachet_free(v);
        cachet_status st = cachet_get(f->r, "other", &v, &n);
        if (st == CACHET_OK) {
            fail_msg("%s %s: get other returned %zu bytes (the secret's?)", f->backend,
                     binary ? "binary" : "text", n);
        }
        assert_int_equal(st, CACHET_MISS);
        assert_true(hostile_connections(&f->srv) >= 2);
        stop(f);
    });
}

static void wrong_key_single_get(void **state)
{
    (void)state;
    EACH({
        void *v;
        size_t n;
        char line[512];
        start(f, b, binary, M_HONEST, NULL);
        must_set(f, "alpha", "value of alpha");
        must_set(f, "beta", "value of beta");
        set_mode(M_WRONGKEY);
        assert_int_equal(cachet_get(f->r, "beta", &v, &n), CACHET_EBACKEND);
        if (!strstr(cachet_errmsg(), "protocol error") || !strstr(cachet_errmsg(), "127.0.0.1"))
            fail_msg("message: %s", cachet_errmsg());
        /* it answered: the host is not dead, the next call goes through */
        set_mode(M_HONEST);
        assert_int_equal(cachet_get(f->r, "beta", &v, &n), CACHET_OK);
        assert_int_equal(n, 13);
        assert_memory_equal(v, "value of beta", 13);
        cachet_free(v);
        server_line(f, line);
        if (!strstr(line, "protocol_errors=1") || !strstr(line, " up "))
            fail_msg("report: %s", line);
        stop(f);
    });
}

static void multi_get_mode(int mode, const char *what)
{
    EACH({
        cachet_item it[3] = {{"k1", NULL, 0, 0}, {"k2", NULL, 0, 0}, {"k3", NULL, 0, 0}};
        start(f, b, binary, M_HONEST, NULL);
        must_set(f, "k1", "one");
        must_set(f, "k2", "two");
        must_set(f, "k3", "three");
        if (mode == M_NOTASKED)
            must_set(f, "k4", "four");
        set_mode(mode);
        cachet_item *items = mode == M_NOTASKED ? it + 1 : it;   /* k4... first stored: k1 */
        size_t ni = mode == M_NOTASKED ? 2 : 3;
        cachet_status st = cachet_get_multi(f->r, items, ni);
        if (st != CACHET_EBACKEND)
            fail_msg("%s %s %s: get_multi: %d %s", what, f->backend, binary ? "binary" : "text",
                     st, cachet_errmsg());
        for (size_t k = 0; k < ni; k++) {
            assert_int_equal(items[k].status, CACHET_EBACKEND);
            assert_null(items[k].value);
        }
        set_mode(M_HONEST);
        assert_int_equal(cachet_get_multi(f->r, it, 3), CACHET_OK);
        assert_int_equal(it[2].len, 5);
        assert_memory_equal(it[2].value, "three", 5);
        for (size_t k = 0; k < 3; k++)
            cachet_free(it[k].value);
        stop(f);
    });
}

static void multi_get_out_of_order(void **state)
{
    (void)state;
    multi_get_mode(M_OUTOFORDER, "out of order");
}

static void multi_get_twice(void **state)
{
    (void)state;
    multi_get_mode(M_TWICE, "twice");
}

static void multi_get_not_asked(void **state)
{
    (void)state;
    multi_get_mode(M_NOTASKED, "not asked");
}

/* Binary only: a response with the wrong opaque or the wrong opcode. */
static void binary_wrong_header(void **state)
{
    (void)state;
    for (int b = 0; b < 2; b++)
        for (int mode = M_WRONGOPAQUE; mode <= M_WRONGOPCODE; mode++) {
            fixture f_, *f = &f_;
            void *v;
            size_t n;
            start(f, b, 1, M_HONEST, NULL);
            must_set(f, "k", "value");
            set_mode(mode);
            assert_int_equal(cachet_get(f->r, "k", &v, &n), CACHET_EBACKEND);
            assert_non_null(strstr(cachet_errmsg(), mode == M_WRONGOPAQUE ? "request" : "GET"));
            stop(f);
        }
}

static size_t rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp) {
        if (fscanf(fp, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(fp);
    }
    return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

/* A value of 999999999999 bytes (binary: a 4 GiB body) followed by endless
 * bytes: a protocol error at once, nothing allocated. */
static void huge_declared_value(void **state)
{
    (void)state;
    EACH({
        void *v;
        size_t n, before;
        double t0;
        start(f, b, binary, M_HONEST, NULL);
        must_set(f, "k", "value");
        set_mode(M_HUGE);
        before = rss_bytes();
        t0 = now_s();
        assert_int_equal(cachet_get(f->r, "k", &v, &n), CACHET_EBACKEND);
        assert_true(now_s() - t0 < 1.5);      /* not after the 2 s deadline: at once */
        if (!strstr(cachet_errmsg(), "max_value_size"))
            fail_msg("message: %s", cachet_errmsg());
        {
            size_t after = rss_bytes();
            print_message("huge_declared_value %s %s: %.3f s, RSS %+ld KiB\n", f->backend,
                          binary ? "binary" : "text", now_s() - t0,
                          ((long)after - (long)before) / 1024);
            assert_true(after < before + (64u << 20));
        }
        stop(f);
    });
}

/* One byte per 100 ms: the call ends at its deadline, not when the drip does. */
static void slow_drip(void **state)
{
    (void)state;
    EACH({
        void *v;
        size_t n;
        double t0, took;
        start(f, b, binary, M_HONEST, "0.5");
        must_set(f, "dripkey", "a value long enough to drip for seconds");
        set_mode(M_DRIP);
        t0 = now_s();
        assert_int_equal(cachet_get(f->r, "dripkey", &v, &n), CACHET_EUNAVAILABLE);
        took = now_s() - t0;
        if (took >= 5 || !strstr(cachet_errmsg(), "timed out"))
            fail_msg("%s %s: took %.2f s: %s", f->backend, binary ? "binary" : "text", took,
                     cachet_errmsg());
        print_message("slow_drip %s %s: returned after %.2f s (socket_timeout 0.5)\n",
                      f->backend, binary ? "binary" : "text", took);
        stop(f);
    });
}

/* Bytes arriving between requests: the connection is dropped before reuse. */
static void unsolicited_bytes(void **state)
{
    (void)state;
    EACH({
        void *v;
        size_t n;
        int sent = 0;
        char line[512];
        start(f, b, binary, M_HONEST, NULL);
        must_set(f, "k", "value");
        /* the region's first read also reads its shared invalidation times
         * (once per interval): let it happen before the server misbehaves,
         * so that the get below is the one request it answers */
        assert_int_equal(cachet_get(f->r, "k", &v, &n), CACHET_OK);
        cachet_free(v);
        set_mode(M_UNSOLICITED);
        assert_int_equal(cachet_get(f->r, "k", &v, &n), CACHET_OK);
        cachet_free(v);
        for (double t0 = now_s(); !sent && now_s() - t0 < 10; hostile_sleep_ms(5)) {
            pthread_mutex_lock(&S.mu);
            sent = S.unsolicited_sent;
            pthread_mutex_unlock(&S.mu);
        }
        assert_true(sent);
        set_mode(M_HONEST);
        int before = hostile_connections(&f->srv);
        assert_int_equal(cachet_get(f->r, "k", &v, &n), CACHET_OK);
        assert_int_equal(n, 5);
        assert_memory_equal(v, "value", 5);
        cachet_free(v);
        assert_int_equal(hostile_connections(&f->srv), before + 1);
        server_line(f, line);
        if (!strstr(line, "protocol_errors=1"))
            fail_msg("report: %s", line);
        stop(f);
    });
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(extra_reply_after_get),
        cmocka_unit_test(wrong_key_single_get),
        cmocka_unit_test(multi_get_out_of_order),
        cmocka_unit_test(multi_get_twice),
        cmocka_unit_test(multi_get_not_asked),
        cmocka_unit_test(binary_wrong_header),
        cmocka_unit_test(huge_declared_value),
        cmocka_unit_test(slow_drip),
        cmocka_unit_test(unsolicited_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
