/* [keystone_authtoken]: cachet and keystonemiddleware share one token
 * cache.  A real memcached (tests/servers.c) and keystonemiddleware's own
 * TokenCache run by Debian's /usr/bin/python3 (tests/keystone_oracle.py,
 * one process answering a line per command) are the other side: for None,
 * MAC, ENCRYPT and a lower-case `encrypt`, what one writes the other reads;
 * tampered, truncated and wrongly keyed values are misses both ways (and
 * keystonemiddleware raises on them); the memcache keys, flags and TTLs are
 * keystonemiddleware's; the section's options map as docs/keystone.md says,
 * and the secret key never reaches a message or a log line. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "helpers.h"
#include "servers.h"

#define SECRET "s3cr3t-Kx9-never-shown"
#define ORACLE TEST_SRCDIR "/tests/keystone_oracle.py"
#define PYTHON "/usr/bin/python3"

static test_server mc;
static char servers[64];
static char dir[] = "/tmp/cachet-ks-XXXXXX";
typedef struct {
    pid_t pid;
    FILE *in, *out;
} oracle_proc;
static oracle_proc ora;     /* on the one server of most tests */

static const char *const strategies[] = {"None", "MAC", "ENCRYPT", "encrypt"};
#define NSTRATEGIES 4

/* ---- the oracle: keystonemiddleware's own cache ---- */

static void oracle_start(oracle_proc *o, const char *list)
{
    int in[2], out[2];
    /* close-on-exec: a second oracle must not hold the first one's stdin open */
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    o->pid = fork();
    assert_true(o->pid >= 0);
    if (o->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(PYTHON, PYTHON, ORACLE, "serve", list, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    o->in = fdopen(in[1], "w");
    o->out = fdopen(out[0], "r");
    assert_non_null(o->in);
    assert_non_null(o->out);
}

static void oracle_stop(oracle_proc *o)
{
    if (o->pid > 0) {
        fclose(o->in);
        fclose(o->out);
        waitpid(o->pid, NULL, 0);
        o->pid = 0;
    }
}

/* One command for keystonemiddleware; its one-line answer (static). */
static const char *oracle_on(oracle_proc *o, const char *strategy, const char *secret, int ttl,
                             const char *cmd, const char *token, const char *json)
{
    static char line[65536];
    size_t n;
    fprintf(o->in, "%s\t%s\t%d\t%s\t%s%s%s\n", strategy, secret, ttl, cmd, token,
            json ? "\t" : "", json ? json : "");
    fflush(o->in);
    if (!fgets(line, sizeof line, o->out))
        fail_msg("keystone_oracle.py died (is python3-keystonemiddleware installed?)");
    n = strlen(line);
    if (n && line[n - 1] == '\n')
        line[--n] = '\0';
    if (strncmp(line, "ERROR", 5) == 0)
        fail_msg("keystone_oracle.py: %s", line);
    return line;
}

static const char *oracle(const char *strategy, const char *secret, int ttl, const char *cmd,
                          const char *token, const char *json)
{
    return oracle_on(&ora, strategy, secret, ttl, cmd, token, json);
}

/* ---- memcached itself, byte by byte ---- */

/* Sends req to the memcached on port, reads until the reply ends with end
 * (or 10 s pass). */
static size_t mc_raw_on(int port, const char *req, size_t reqlen, const char *end, char *buf,
                        size_t size)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    size_t got = 0;
    double until = th_now_s() + 10;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(send(fd, req, reqlen, 0), (ssize_t)reqlen);
    while (th_now_s() < until && got + 1 < size) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;
        if (poll(&p, 1, 100) <= 0)
            continue;
        if ((r = recv(fd, buf + got, size - 1 - got, 0)) <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        if (got >= strlen(end) && strcmp(buf + got - strlen(end), end) == 0)
            break;
    }
    buf[got] = '\0';
    close(fd);
    return got;
}

static size_t mc_raw(const char *req, size_t reqlen, const char *end, char *buf, size_t size)
{
    return mc_raw_on(mc.port, req, reqlen, end, buf, size);
}

/* The bytes memcached holds under key: 1 with them in val (NUL-ended), 0 absent. */
static int mc_get(const char *key, char *val, size_t size, size_t *len)
{
    char req[512], buf[70000], *p;
    unsigned flags;
    size_t n;
    snprintf(req, sizeof req, "get %s\r\n", key);
    mc_raw(req, strlen(req), "END\r\n", buf, sizeof buf);
    if (strncmp(buf, "VALUE ", 6) != 0)
        return 0;
    p = buf + 6 + strlen(key);
    assert_int_equal(sscanf(p, " %u %zu", &flags, &n), 2);
    p = strstr(p, "\r\n") + 2;
    assert_true(n < size);
    memcpy(val, p, n);
    val[n] = '\0';
    *len = n;
    return 1;
}

static void mc_put(const char *key, const void *val, size_t len)
{
    char req[70000], buf[256];
    int h = snprintf(req, sizeof req, "set %s 0 300 %zu\r\n", key, len);
    memcpy(req + h, val, len);
    memcpy(req + h + len, "\r\n", 2);
    mc_raw(req, (size_t)h + len + 2, "\r\n", buf, sizeof buf);
    assert_string_equal(buf, "STORED\r\n");
}

/* Client flags and remaining TTL (-1 = none) memcached has for key (meta get). */
static void mc_flags_ttl(const char *key, unsigned *flags, long *ttl)
{
    char req[512], buf[1024], *f, *t;
    snprintf(req, sizeof req, "mg %s f t\r\n", key);
    mc_raw(req, strlen(req), "\r\n", buf, sizeof buf);
    assert_true(strncmp(buf, "HD ", 3) == 0);
    assert_non_null(f = strstr(buf, " f"));
    assert_non_null(t = strstr(buf, " t"));
    *flags = (unsigned)strtoul(f + 2, NULL, 10);
    *ttl = strtol(t + 2, NULL, 10);
}

/* The memcache key keystonemiddleware uses for token: repr's quotes dropped. */
static const char *ks_key(const char *strategy, const char *token)
{
    static char key[256];
    const char *r = oracle(strategy, SECRET, 300, "key", token, NULL);
    size_t n = strlen(r);
    assert_true(n > 2 && (r[0] == '\'' || r[0] == '"') && r[n - 1] == r[0]);
    snprintf(key, sizeof key, "%.*s", (int)(n - 2), r + 1);
    return key;
}

/* ---- cachet's side ---- */

/* Writes a keystone.conf-like file: [DEFAULT], a [keystone_authtoken]
 * with the middleware's own options around the cache's, and body. */
static const char *write_conf(const char *name, const char *body)
{
    static char path[256];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "w"));
    fprintf(f, "[DEFAULT]\ndebug = true\ntransport_url = rabbit://nova:pw@rabbit:5672/\n\n"
               "[keystone_authtoken]\nwww_authenticate_uri = http://keystone:5000\n"
               "auth_url = http://keystone:5000\nauth_type = password\n"
               "project_domain_id = default\nuser_domain_id = default\nproject_name = service\n"
               "username = nova\npassword = hunter2\nservice_token_roles_required = true\n"
               "region_name = RegionOne\ncafile = /etc/ssl/ca.pem\n%s\n"
               "[cache]\nbackend = oslo_cache.memcache_pool\nenabled = true\n", body);
    fclose(f);
    return path;
}

static cachet_status load(const char *body, cachet_config **out)
{
    cachet_config *c = cachet_config_new();
    cachet_status st;
    assert_non_null(c);
    st = cachet_config_load(c, write_conf("ks.conf", body), "keystone_authtoken");
    if (st != CACHET_OK) {
        cachet_config_free(c);
        c = NULL;
    }
    *out = c;
    return st;
}

/* The section's cache options: the servers, the strategy, the secret as
 * written, then more lines (static: the next call overwrites it). */
static const char *section(const char *list, const char *strategy, const char *secret,
                           const char *more)
{
    static char body[1024];
    snprintf(body, sizeof body, "memcached_servers = %s\nmemcache_security_strategy = %s\n"
             "memcache_secret_key = %s\n%s", list, strategy, secret, more);
    return body;
}

/* The region of a keystone.conf whose section is body; fails the test if
 * it does not load or open. */
static cachet_region *open_body(const char *body)
{
    cachet_config *c;
    cachet_region *r = NULL;
    if (load(body, &c) != CACHET_OK)
        fail_msg("load: %s", cachet_errmsg());
    if (cachet_region_open(c, &r) != CACHET_OK)
        fail_msg("open: %s", cachet_errmsg());
    cachet_config_free(c);
    return r;
}

static cachet_region *open_ks_ttl(const char *strategy, const char *secret, int ttl)
{
    char more[64];
    snprintf(more, sizeof more, "token_cache_time = %d\n", ttl);
    return open_body(section(servers, strategy, secret, more));
}

static cachet_region *open_ks(const char *strategy)
{
    return open_ks_ttl(strategy, SECRET, 300);
}

static void token_for(char *buf, size_t size, const char *what, const char *strategy)
{
    /* a fernet-like token id: long, urlsafe base64 */
    snprintf(buf, size, "gAAAAABl%s-%s-%d-Zm9vYmFyYmF6cXV4eHl6enkxMjM0NTY3ODkwYWJjZGVmZ2hpamts"
             "bW5vcHFyc3R1dnd4eXpBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWjAxMjM0NTY3ODk_-abcdEFGH",
             what, strategy, (int)getpid());
}

static const char data_json[] = "{\"token\": {\"methods\": [\"password\"], \"user\": {\"id\": "
                                "\"u1\", \"name\": \"nova\"}, \"expires_at\": "
                                "\"2030-01-01T00:00:00.000000Z\"}}";

/* ---- the two directions ---- */

static void test_keystonemiddleware_writes_cachet_reads(void **state)
{
    (void)state;
    for (int i = 0; i < NSTRATEGIES; i++) {
        char tok[512];
        cachet_region *r = open_ks(strategies[i]);
        token_for(tok, sizeof tok, "py", strategies[i]);
        assert_string_equal(oracle(strategies[i], SECRET, 300, "set", tok, data_json), "STORED");
        th_assert_hit(r, tok, data_json, strlen(data_json));
        cachet_region_close(r);
    }
}

static void test_cachet_writes_keystonemiddleware_reads(void **state)
{
    (void)state;
    for (int i = 0; i < NSTRATEGIES; i++) {
        char tok[512];
        cachet_region *r = open_ks(strategies[i]);
        token_for(tok, sizeof tok, "c", strategies[i]);
        assert_int_equal(oracle(strategies[i], SECRET, 300, "get", tok, NULL)[0], 'M');  /* MISS */
        assert_int_equal(cachet_set(r, tok, data_json, strlen(data_json)), CACHET_OK);
        assert_string_equal(oracle(strategies[i], SECRET, 300, "get", tok, NULL), data_json);
        cachet_region_close(r);
    }
}

/* get_or_create on a miss caches what keystonemiddleware then reads, and
 * get_multi reads several of keystonemiddleware's tokens at once. */
static cachet_status create_json(void *arg, const char *key, void **value, size_t *len)
{
    (void)key;
    ++*(int *)arg;
    *value = strdup(data_json);
    *len = strlen(data_json);
    return CACHET_OK;
}

static void test_get_or_create_and_get_multi(void **state)
{
    char t1[512], t2[512], t3[512];
    int calls = 0;
    void *v = NULL;
    size_t n = 0;
    cachet_region *r = open_ks("ENCRYPT");
    cachet_item items[3];
    (void)state;
    token_for(t1, sizeof t1, "goc", "ENCRYPT");
    assert_int_equal(cachet_get_or_create(r, t1, create_json, &calls, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(cachet_get_or_create(r, t1, create_json, &calls, &v, &n), CACHET_OK);
    assert_memory_equal(v, data_json, n);
    cachet_free(v);
    assert_int_equal(calls, 1);
    assert_string_equal(oracle("ENCRYPT", SECRET, 300, "get", t1, NULL), data_json);

    token_for(t2, sizeof t2, "multi2", "ENCRYPT");
    token_for(t3, sizeof t3, "multi3-absent", "ENCRYPT");
    assert_string_equal(oracle("ENCRYPT", SECRET, 300, "set", t2, "{\"b\": 2}"), "STORED");
    items[0] = (cachet_item){t1, NULL, 0, 0};
    items[1] = (cachet_item){t2, NULL, 0, 0};
    items[2] = (cachet_item){t3, NULL, 0, 0};
    assert_int_equal(cachet_get_multi(r, items, 3), CACHET_OK);
    assert_int_equal(items[0].status, CACHET_OK);
    assert_memory_equal(items[0].value, data_json, items[0].len);
    assert_int_equal(items[1].status, CACHET_OK);
    assert_string_equal(items[1].value, "{\"b\": 2}");
    assert_int_equal(items[2].status, CACHET_MISS);
    for (int i = 0; i < 3; i++)
        cachet_free(items[i].value);
    assert_int_equal(cachet_delete(r, t2), CACHET_OK);
    assert_string_equal(oracle("ENCRYPT", SECRET, 300, "get", t2, NULL), "MISS");
    cachet_region_close(r);
}

/* ---- the facts of keystonemiddleware 10.1 ---- */

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

static void test_keys_flags_ttl(void **state)
{
    char enc_key[256];
    (void)state;
    for (int i = 0; i < NSTRATEGIES; i++) {
        char tok[512], val[70000];
        const char *key;
        size_t len;
        unsigned flags;
        long ttl;
        cachet_region *r = open_ks_ttl(strategies[i], SECRET, 120);
        token_for(tok, sizeof tok, "keys", "same");
        key = ks_key(strategies[i], tok);
        if (i == 0) {
            /* None: tokens/<sha256 hex of the token> */
            assert_int_equal(strlen(key), 7 + 64);
            assert_true(strncmp(key, "tokens/", 7) == 0 && is_hex(key + 7, 64));
        } else {
            /* MAC/ENCRYPT: Python 3's '%s' % bytes: tokens/b'<base64 of 16 bytes>' */
            assert_int_equal(strlen(key), 7 + 2 + 24 + 1);
            assert_true(strncmp(key, "tokens/b'", 9) == 0 && key[33] == '\'');
            assert_true(strcmp(key + 31, "=='") == 0);
        }
        if (i == 2)
            snprintf(enc_key, sizeof enc_key, "%s", key);
        if (i == 3)   /* the strategy's bytes as written take part in the derivation */
            assert_string_not_equal(key, enc_key);
        assert_int_equal(cachet_set(r, tok, data_json, strlen(data_json)), CACHET_OK);
        assert_true(mc_get(key, val, sizeof val, &len));
        /* flags 0 (python-memcache's bare bytes), TTL token_cache_time */
        mc_flags_ttl(key, &flags, &ttl);
        assert_int_equal(flags, 0);
        assert_true(ttl > 60 && ttl <= 120);
        if (i == 0) {
            assert_int_equal(len, strlen(data_json));      /* the data as it is */
            assert_memory_equal(val, data_json, len);
        } else if (i == 2) {
            /* ENCRYPT: MAC(64) + base64(iv 16 + AES-CBC blocks, PKCS#7) */
            size_t ct = 16 + (strlen(data_json) / 16 + 1) * 16;
            assert_int_equal(len, 64 + 4 * ((ct + 2) / 3));
        } else {
            /* MAC, and lower-case encrypt: MAC(64) + base64(the data), not encrypted */
            assert_int_equal(len, 64 + 4 * ((strlen(data_json) + 2) / 3));
            assert_memory_equal(val + 64, "eyJ0b2tlbiI6", 12);    /* base64 of '{"token":' */
        }
        cachet_region_close(r);
    }
}

/* token_cache_time 0: no expiry on the server; -1: nothing is cached. */
static void test_token_cache_time_zero_and_negative(void **state)
{
    char tok[512], val[70000];
    size_t len;
    unsigned flags;
    long ttl;
    cachet_region *r = open_ks_ttl("MAC", SECRET, 0);
    (void)state;
    token_for(tok, sizeof tok, "ttl0", "MAC");
    assert_int_equal(cachet_set(r, tok, "{}", 2), CACHET_OK);
    mc_flags_ttl(ks_key("MAC", tok), &flags, &ttl);
    assert_int_equal(ttl, -1);
    cachet_region_close(r);

    r = open_ks_ttl("MAC", SECRET, -1);
    token_for(tok, sizeof tok, "ttl-1", "MAC");
    assert_int_equal(cachet_set(r, tok, "{}", 2), CACHET_OK);
    assert_false(mc_get(ks_key("MAC", tok), val, sizeof val, &len));
    th_assert_miss(r, tok);
    cachet_region_close(r);
}

/* keystonemiddleware's fetch_token reads [data, expires] as data. */
static void test_legacy_two_element_value(void **state)
{
    char tok[512];
    const char *legacy = "[{\"token\": {\"id\": \"x\"}}, \"2030-01-01T00:00:00Z\"]";
    cachet_region *r = open_ks("MAC");
    (void)state;
    token_for(tok, sizeof tok, "legacy", "MAC");
    assert_string_equal(oracle("MAC", SECRET, 300, "set", tok, legacy), "STORED");
    assert_string_equal(oracle("MAC", SECRET, 300, "get", tok, NULL), "{\"token\": {\"id\": \"x\"}}");
    th_assert_hit(r, tok, "{\"token\": {\"id\": \"x\"}}", strlen("{\"token\": {\"id\": \"x\"}}"));
    /* a three-element array is data as it is */
    assert_string_equal(oracle("MAC", SECRET, 300, "set", tok, "[1, 2, 3]"), "STORED");
    th_assert_hit(r, tok, "[1, 2, 3]", 9);
    cachet_region_close(r);
}

/* ---- values that must not be believed ---- */

static void test_tampered_and_truncated_are_misses_both_ways(void **state)
{
    (void)state;
    for (int i = 1; i < NSTRATEGIES; i++) {
        char tok[512], tok2[512], val[70000], key[256];
        size_t len;
        cachet_region *r = open_ks(strategies[i]);
        uint64_t corrupt0 = th_stats(r).corrupt;

        /* keystonemiddleware's value, one base64 character changed */
        token_for(tok, sizeof tok, "tamper-py", strategies[i]);
        assert_string_equal(oracle(strategies[i], SECRET, 300, "set", tok, data_json), "STORED");
        snprintf(key, sizeof key, "%s", ks_key(strategies[i], tok));
        assert_true(mc_get(key, val, sizeof val, &len));
        val[len - 5] = val[len - 5] == 'A' ? 'B' : 'A';
        mc_put(key, val, len);
        th_assert_miss(r, tok);
        assert_int_equal(th_stats(r).corrupt, corrupt0 + 1);
        /* keystonemiddleware 10.1 itself raises (cachet must not) */
        assert_true(strncmp(oracle(strategies[i], SECRET, 300, "get", tok, NULL), "RAISED", 6) == 0);

        /* cachet's value, truncated */
        token_for(tok2, sizeof tok2, "tamper-c", strategies[i]);
        assert_int_equal(cachet_set(r, tok2, data_json, strlen(data_json)), CACHET_OK);
        snprintf(key, sizeof key, "%s", ks_key(strategies[i], tok2));
        assert_true(mc_get(key, val, sizeof val, &len));
        mc_put(key, val, len / 2);
        th_assert_miss(r, tok2);
        assert_int_equal(th_stats(r).corrupt, corrupt0 + 2);
        assert_true(strncmp(oracle(strategies[i], SECRET, 300, "get", tok2, NULL), "RAISED", 6) == 0);
        /* shorter than the MAC itself */
        mc_put(key, val, 10);
        th_assert_miss(r, tok2);
        assert_int_equal(th_stats(r).corrupt, corrupt0 + 3);
        cachet_region_close(r);
    }
}

/* A value MAC'd under another token's keys (moved between keys), or under
 * another secret: never another token's data. */
static void test_wrongly_keyed_values_are_misses_both_ways(void **state)
{
    char a[512], b[512], val[70000], ka[256], kb[256];
    size_t len;
    cachet_region *r = open_ks("ENCRYPT"), *other;
    (void)state;
    token_for(a, sizeof a, "wrong-a", "ENCRYPT");
    token_for(b, sizeof b, "wrong-b", "ENCRYPT");
    assert_int_equal(cachet_set(r, a, data_json, strlen(data_json)), CACHET_OK);
    assert_string_equal(oracle("ENCRYPT", SECRET, 300, "set", b, "{\"b\": 2}"), "STORED");
    snprintf(ka, sizeof ka, "%s", ks_key("ENCRYPT", a));
    snprintf(kb, sizeof kb, "%s", ks_key("ENCRYPT", b));
    /* a's bytes under b's key: b's MAC key does not verify them */
    assert_true(mc_get(ka, val, sizeof val, &len));
    mc_put(kb, val, len);
    th_assert_miss(r, b);
    assert_int_equal(th_stats(r).corrupt, 1);
    assert_true(strncmp(oracle("ENCRYPT", SECRET, 300, "get", b, NULL), "RAISED", 6) == 0);

    /* another memcache_secret_key derives other keys: a plain miss each way */
    other = open_ks_ttl("ENCRYPT", "another-secret", 300);
    th_assert_miss(other, a);
    assert_string_equal(oracle("ENCRYPT", "another-secret", 300, "get", a, NULL), "MISS");
    assert_int_equal(cachet_set(other, a, "{}", 2), CACHET_OK);
    th_assert_hit(r, a, data_json, strlen(data_json));     /* still a's own value */
    cachet_region_close(other);

    /* a MAC-strategy value put under the ENCRYPT key of the same token */
    other = open_ks("MAC");
    assert_int_equal(cachet_set(other, a, data_json, strlen(data_json)), CACHET_OK);
    assert_true(mc_get(ks_key("MAC", a), val, sizeof val, &len));
    mc_put(ka, val, len);
    th_assert_miss(r, a);
    assert_int_equal(th_stats(r).corrupt, 2);
    cachet_region_close(other);
    cachet_region_close(r);
}

/* Several servers: keys go where python-memcache puts them (its CRC hash
 * modulo the weighted server list), so each side finds every token the
 * other cached, and both servers hold some. */
static void test_several_servers_place_keys_as_python_memcache(void **state)
{
    test_server mc2, mc3;
    oracle_proc o3;
    char list[128], tok[512], req[256], buf[4096];
    cachet_region *r;
    int on[3] = {0, 0, 0};
    (void)state;
    assert_int_equal(test_memcached_start(&mc2, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&mc3, 0, NULL), 0);
    snprintf(list, sizeof list, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", mc.port, mc2.port,
             mc3.port);
    oracle_start(&o3, list);
    r = open_body(section(list, "MAC", SECRET, ""));
    for (int i = 0; i < 40; i++) {
        char data[64];
        int ports[3] = {mc.port, mc2.port, mc3.port};
        snprintf(data, sizeof data, "{\"n\": %d}", i);
        token_for(tok, sizeof tok, i % 2 ? "spread-py" : "spread-c", data + 6);
        if (i % 2) {
            assert_string_equal(oracle_on(&o3, "MAC", SECRET, 300, "set", tok, data), "STORED");
            th_assert_hit(r, tok, data, strlen(data));
        } else {
            assert_int_equal(cachet_set(r, tok, data, strlen(data)), CACHET_OK);
            assert_string_equal(oracle_on(&o3, "MAC", SECRET, 300, "get", tok, NULL), data);
        }
        snprintf(req, sizeof req, "mg %s\r\n", ks_key("MAC", tok));
        for (int s = 0; s < 3; s++) {
            mc_raw_on(ports[s], req, strlen(req), "\r\n", buf, sizeof buf);
            on[s] += strncmp(buf, "HD", 2) == 0;
        }
    }
    assert_int_equal(on[0] + on[1] + on[2], 40);   /* each token on exactly one server */
    assert_true(on[0] > 0 && on[1] > 0 && on[2] > 0);
    cachet_region_close(r);
    oracle_stop(&o3);
    test_server_stop(&mc2);
    test_server_stop(&mc3);
}

/* ---- the section ---- */

static void test_section_maps_to_backends(void **state)
{
    cachet_config *c;
    (void)state;
    /* what the mapping below assumes is keystonemiddleware's _opts.py */
    assert_string_equal(oracle("None", SECRET, 300, "opts", "-", NULL),
                        "memcached_servers=None;memcache_security_strategy=None;"
                        "token_cache_time=300;memcache_pool_dead_retry=300;"
                        "memcache_pool_socket_timeout=3;memcache_pool_maxsize=10;"
                        "memcache_pool_unused_timeout=60;memcache_pool_conn_get_timeout=10;"
                        "memcache_use_advanced_pool=True;"
                        "memcached_servers.deprecated=memcache_servers;"
                        "strategy.choices=None,MAC,ENCRYPT;strategy.ignore_case=True");
    /* defaults: advanced pool, keystonemiddleware's pool defaults */
    assert_int_equal(load("memcached_servers = 10.0.0.1:11211, 10.0.0.2:11211\n", &c), CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memcache_pool");
    assert_string_equal(cachet_config_backend_arg(c, "url"), "10.0.0.1:11211,10.0.0.2:11211");
    assert_string_equal(cachet_config_backend_arg(c, "socket_timeout"), "3");
    assert_string_equal(cachet_config_backend_arg(c, "dead_retry"), "300");
    assert_string_equal(cachet_config_backend_arg(c, "pool_maxsize"), "10");
    assert_string_equal(cachet_config_backend_arg(c, "pool_unused_timeout"), "60");
    assert_string_equal(cachet_config_backend_arg(c, "pool_connection_get_timeout"), "10");
    cachet_config_free(c);
    /* keystonemiddleware's names for the pool options */
    assert_int_equal(load("memcached_servers = h:1\nmemcache_pool_dead_retry = 7\n"
                          "memcache_pool_socket_timeout = 2\nmemcache_pool_maxsize = 4\n"
                          "memcache_pool_unused_timeout = 9\nmemcache_pool_conn_get_timeout = 5\n"
                          "memcache_use_advanced_pool = True\n", &c), CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memcache_pool");
    assert_string_equal(cachet_config_backend_arg(c, "dead_retry"), "7");
    assert_string_equal(cachet_config_backend_arg(c, "socket_timeout"), "2");
    assert_string_equal(cachet_config_backend_arg(c, "pool_maxsize"), "4");
    assert_string_equal(cachet_config_backend_arg(c, "pool_unused_timeout"), "9");
    assert_string_equal(cachet_config_backend_arg(c, "pool_connection_get_timeout"), "5");
    cachet_config_free(c);
    /* continuation lines join the list, quotes go (oslo.config's rules) */
    assert_int_equal(load("memcached_servers = a:1,\n   'b:2'\n", &c), CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "url"), "a:1,b:2");
    cachet_config_free(c);
    /* a long value is read whole, not cut where a buffer ends */
    assert_int_equal(load("memcache_security_strategy = MAC                                       "
                          "                                     junk\n"
                          "memcache_secret_key = k\n", &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "memcache_security_strategy");
    assert_int_equal(load("token_cache_time = 1                                                  "
                          "                          x\n", &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "token_cache_time");
    /* the deprecated memcache_servers; memcached_servers wins over it */
    assert_int_equal(load("memcache_servers = old:1\n", &c), CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "url"), "old:1");
    cachet_config_free(c);
    assert_int_equal(load("memcached_servers = new:1\nmemcache_servers = old:1\n", &c), CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "url"), "new:1");
    cachet_config_free(c);
    /* the eventlet-unsafe pool: python-memcache's own defaults */
    assert_int_equal(load("memcached_servers = h:1\nmemcache_use_advanced_pool = false\n"
                          "memcache_pool_socket_timeout = 9\n", &c), CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memcached");
    assert_string_equal(cachet_config_backend_arg(c, "socket_timeout"), "3");
    assert_string_equal(cachet_config_backend_arg(c, "dead_retry"), "30");
    cachet_config_free(c);
    /* no servers: keystonemiddleware's in-process cache, cachet's memory */
    assert_int_equal(load("memcache_security_strategy = MAC\nmemcache_secret_key = k\n", &c),
                     CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memory");
    cachet_config_free(c);
    assert_int_equal(load("memcached_servers =\n", &c), CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memory");
    cachet_config_free(c);
}

/* Loading the section again replaces what the last load set. */
static void test_reload_replaces(void **state)
{
    char tok[512];
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    const char *path;
    (void)state;
    path = write_conf("r1.conf", section(servers, "MAC", "first", ""));
    assert_int_equal(cachet_config_load(c, path, "keystone_authtoken"), CACHET_OK);
    path = write_conf("r2.conf", section(servers, "ENCRYPT", SECRET, "token_cache_time = 100\n"));
    assert_int_equal(cachet_config_load(c, path, "keystone_authtoken"), CACHET_OK);
    assert_int_equal(cachet_region_open(c, &r), CACHET_OK);
    cachet_config_free(c);
    token_for(tok, sizeof tok, "reload", "ENCRYPT");
    assert_int_equal(cachet_set(r, tok, "{}", 2), CACHET_OK);
    assert_string_equal(oracle("ENCRYPT", SECRET, 100, "get", tok, NULL), "{}");
    cachet_region_close(r);
}

static void test_memory_backend_round_trip(void **state)
{
    cachet_region *r = open_body("memcache_security_strategy = ENCRYPT\nmemcache_secret_key = k\n");
    cachet_item it[2];
    (void)state;
    th_assert_miss(r, "tok");
    assert_int_equal(cachet_set(r, "tok", data_json, strlen(data_json)), CACHET_OK);
    th_assert_hit(r, "tok", data_json, strlen(data_json));
    /* keys are token ids as they are: spaces and length are the proxy's business */
    assert_int_equal(cachet_set(r, "a token with spaces", "{}", 2), CACHET_OK);
    th_assert_hit(r, "a token with spaces", "{}", 2);
    it[0] = (cachet_item){"tok", NULL, 0, 0};
    it[1] = (cachet_item){"a token with spaces", NULL, 0, 0};
    assert_int_equal(cachet_get_multi(r, it, 2), CACHET_OK);
    assert_int_equal(it[0].status, CACHET_OK);
    assert_int_equal(it[1].status, CACHET_OK);
    assert_int_equal(it[1].len, 2);
    cachet_free(it[0].value);
    cachet_free(it[1].value);
    cachet_region_close(r);
}

/* A quoted value is unquoted as oslo.config does: the same secret. */
static void test_quoted_secret(void **state)
{
    char tok[512];
    cachet_region *r = open_body(section(servers, "MAC", "\"" SECRET "\"", ""));
    (void)state;
    token_for(tok, sizeof tok, "quoted", "MAC");
    assert_int_equal(cachet_set(r, tok, "{}", 2), CACHET_OK);
    assert_string_equal(oracle("MAC", SECRET, 300, "get", tok, NULL), "{}");
    cachet_region_close(r);
}

static void test_bad_options_name_the_option(void **state)
{
    cachet_config *c;
    (void)state;
    assert_int_equal(load("memcache_security_strategy = AES\nmemcache_secret_key = " SECRET "\n",
                          &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "ks.conf:");
    th_assert_contains(cachet_errmsg(), "memcache_security_strategy");
    th_assert_contains(cachet_errmsg(), "AES");
    assert_null(strstr(cachet_errmsg(), SECRET));
    assert_int_equal(load("memcache_security_strategy = MAC\n", &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "memcache_secret_key");
    assert_int_equal(load("memcache_security_strategy =\n", &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "memcache_security_strategy");
    assert_int_equal(load("memcache_secret_key = " SECRET "\nmemcache_security_strategy = MAC\n"
                          "token_cache_time = soon\n", &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "token_cache_time");
    assert_null(strstr(cachet_errmsg(), SECRET));
    assert_int_equal(load("memcached_servers = h:1\nmemcache_pool_maxsize = 0\n", &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "memcache_pool_maxsize");
    assert_int_equal(load("memcache_use_advanced_pool = maybe\n", &c), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "memcache_use_advanced_pool");
    /* the keystone proxy is the section's, not a [cache] option */
    {
        cachet_config *k = cachet_config_new();
        cachet_region *r = NULL;
        assert_int_equal(cachet_config_set(k, "enabled", "true"), CACHET_OK);
        assert_int_equal(cachet_config_set(k, "backend", "memory"), CACHET_OK);
        assert_int_equal(cachet_config_set(k, "cachet_proxies", "log, keystone"), CACHET_OK);
        assert_int_equal(cachet_region_open(k, &r), CACHET_EINVAL);
        th_assert_contains(cachet_errmsg(), "keystone_authtoken");
        cachet_config_free(k);
    }
    /* the same file's [cache] keeps cachet's strictness */
    {
        cachet_config *k = cachet_config_new();
        FILE *f;
        char path[256];
        snprintf(path, sizeof path, "%s/strict.conf", dir);
        assert_non_null(f = fopen(path, "w"));
        fputs("[keystone_authtoken]\nauth_url = http://x\n[cache]\nenabled = true\n"
              "no_such_option = 1\n", f);
        fclose(f);
        assert_int_equal(cachet_config_load(k, path, "keystone_authtoken"), CACHET_OK);
        assert_int_equal(cachet_config_load(k, path, "cache"), CACHET_EINVAL);
        th_assert_contains(cachet_errmsg(), "no_such_option");
        cachet_config_free(k);
    }
}

/* The secret in config, on every path that talks: errors, reports, logs. */
static char logged[65536];
static size_t nlogged;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static void capture(void *arg, cachet_log_level level, const char *msg)
{
    (void)arg;
    (void)level;
    pthread_mutex_lock(&log_lock);
    nlogged += (size_t)snprintf(logged + nlogged, sizeof logged - nlogged, "%s\n", msg);
    if (nlogged >= sizeof logged)
        nlogged = sizeof logged - 1;
    pthread_mutex_unlock(&log_lock);
}

static void report_line(void *arg, const char *name, const char *value)
{
    char *buf = arg;
    size_t n = strlen(buf);
    snprintf(buf + n, 8192 - n, "%s=%s\n", name, value);
}

static void test_secret_never_in_messages_or_logs(void **state)
{
    char tok[512], key[256], val[70000], hole[32], report[8192] = "";
    size_t len;
    void *v = NULL;
    cachet_region *r;
    test_blackhole bh;
    (void)state;
    cachet_set_logger(capture, NULL);
    nlogged = 0;
    logged[0] = '\0';
    /* a tampered value is logged */
    r = open_ks("ENCRYPT");
    token_for(tok, sizeof tok, "secret-log", "ENCRYPT");
    assert_int_equal(cachet_set(r, tok, data_json, strlen(data_json)), CACHET_OK);
    snprintf(key, sizeof key, "%s", ks_key("ENCRYPT", tok));
    assert_true(mc_get(key, val, sizeof val, &len));
    val[70] ^= 1;
    mc_put(key, val, len);
    th_assert_miss(r, tok);
    th_assert_contains(logged, "MAC does not verify");
    assert_int_equal(cachet_backend_report(r, report_line, report), CACHET_OK);
    th_assert_contains(report, "keystone_strategy=ENCRYPT");
    assert_null(strstr(report, SECRET));
    cachet_region_close(r);
    /* a server that never answers: the failure's message */
    assert_int_equal(test_blackhole_start(&bh), 0);
    snprintf(hole, sizeof hole, "127.0.0.1:%d", bh.port);
    r = open_body(section(hole, "MAC", SECRET, "memcache_pool_socket_timeout = 1\n"));
    assert_true(cachet_get(r, tok, &v, &len) < 0);
    assert_null(strstr(cachet_errmsg(), SECRET));
    assert_null(strstr(cachet_errmsg(), tok));         /* nor the token id */
    cachet_region_close(r);
    test_blackhole_stop(&bh);
    cachet_set_logger(NULL, NULL);
    assert_null(strstr(logged, SECRET));
    assert_null(strstr(logged, tok));
}

/* ---- the command and the docs' example ---- */

/* Runs the program at path with argv (NULL-ended); what it printed in out
 * (NUL-ended, at most size - 1 bytes), its exit status (-1: it did not exit). */
static int run_program(const char *path, char *const argv[], char *out, size_t size)
{
    int p[2], status;
    size_t got = 0;
    ssize_t r;
    pid_t pid;
    assert_int_equal(pipe(p), 0);
    if ((pid = fork()) == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execv(path, argv);
        _exit(127);
    }
    close(p[1]);
    while (got + 1 < size && (r = read(p[0], out + got, size - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(p[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The cachet command on the section of conf: cmd token [data]. */
static int run_cli(const char *conf, const char *cmd, const char *token, const char *data,
                   char *out, size_t size)
{
    char *const argv[] = {"cachet", "-c", (char *)conf, "-s", "keystone_authtoken", (char *)cmd,
                          (char *)token, (char *)data, NULL};
    return run_program(TEST_BUILDDIR "/src/cachet", argv, out, size);
}

/* docs/keystone_auth_filter.c, the example: conf token. */
static int run_example(const char *conf, const char *token, char *out, size_t size)
{
    char *const argv[] = {"keystone_auth_filter", (char *)conf, (char *)token, NULL};
    return run_program(TEST_BUILDDIR "/docs/keystone_auth_filter", argv, out, size);
}

/* A keystone.conf named name on the one server, ENCRYPT with SECRET, in conf;
 * a token for what in tok. */
static void encrypt_conf_and_token(const char *name, const char *what, char *conf, size_t csize,
                                   char *tok, size_t tsize)
{
    snprintf(conf, csize, "%s", write_conf(name, section(servers, "ENCRYPT", SECRET, "")));
    token_for(tok, tsize, what, "ENCRYPT");
}

static void test_cli_get_set(void **state)
{
    char tok[512], out[4096], conf[256];
    (void)state;
    encrypt_conf_and_token("cli.conf", "cli", conf, sizeof conf, tok, sizeof tok);
    assert_int_equal(run_cli(conf, "get", tok, NULL, out, sizeof out), 1);     /* a miss */
    assert_int_equal(run_cli(conf, "set", tok, data_json, out, sizeof out), 0);
    assert_string_equal(oracle("ENCRYPT", SECRET, 300, "get", tok, NULL), data_json);
    assert_string_equal(oracle("ENCRYPT", SECRET, 300, "set", tok, "{\"py\": 1}"), "STORED");
    assert_int_equal(run_cli(conf, "get", tok, NULL, out, sizeof out), 0);
    assert_string_equal(out, "{\"py\": 1}");
}

/* The example validates on a miss, then hits; keystonemiddleware reads
 * what it cached; a token keystonemiddleware cached is a hit for it. */
static void test_docs_example_auth_filter(void **state)
{
    char tok[512], out[4096], conf[256];
    (void)state;
    encrypt_conf_and_token("example.conf", "example", conf, sizeof conf, tok, sizeof tok);
    assert_int_equal(run_example(conf, tok, out, sizeof out), 0);
    th_assert_contains(out, "(validated by keystone)");
    assert_int_equal(run_example(conf, tok, out, sizeof out), 0);
    th_assert_contains(out, "(from the cache)");
    th_assert_contains(oracle("ENCRYPT", SECRET, 300, "get", tok, NULL), "\"name\": \"nova\"");
    token_for(tok, sizeof tok, "example-py", "ENCRYPT");
    assert_string_equal(oracle("ENCRYPT", SECRET, 300, "set", tok, "{\"py\": 1}"), "STORED");
    assert_int_equal(run_example(conf, tok, out, sizeof out), 0);
    assert_string_equal(out, "{\"py\": 1} (from the cache)\n");
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(dir))
        return -1;
    if (test_memcached_start(&mc, 0, NULL) != 0)
        return -1;
    snprintf(servers, sizeof servers, "127.0.0.1:%d", mc.port);
    oracle_start(&ora, servers);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    oracle_stop(&ora);
    test_server_stop(&mc);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keystonemiddleware_writes_cachet_reads),
        cmocka_unit_test(test_cachet_writes_keystonemiddleware_reads),
        cmocka_unit_test(test_get_or_create_and_get_multi),
        cmocka_unit_test(test_keys_flags_ttl),
        cmocka_unit_test(test_token_cache_time_zero_and_negative),
        cmocka_unit_test(test_legacy_two_element_value),
        cmocka_unit_test(test_tampered_and_truncated_are_misses_both_ways),
        cmocka_unit_test(test_wrongly_keyed_values_are_misses_both_ways),
        cmocka_unit_test(test_several_servers_place_keys_as_python_memcache),
        cmocka_unit_test(test_section_maps_to_backends),
        cmocka_unit_test(test_reload_replaces),
        cmocka_unit_test(test_memory_backend_round_trip),
        cmocka_unit_test(test_quoted_secret),
        cmocka_unit_test(test_bad_options_name_the_option),
        cmocka_unit_test(test_secret_never_in_messages_or_logs),
        cmocka_unit_test(test_cli_get_set),
        cmocka_unit_test(test_docs_example_auth_filter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
