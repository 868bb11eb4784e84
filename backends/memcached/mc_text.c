/* The memcached ASCII protocol, every reply checked against its request:
 *
 *   get k       VALUE <k> <flags> <bytes>\r\n<data>\r\nEND\r\n  or  END\r\n
 *               (the key MUST be the one asked for)
 *   get k1 k2   VALUE lines in request order, a subsequence of the request
 *               (each requested position answered at most once), then END
 *   set/add     STORED | NOT_STORED | SERVER_ERROR object too large ...
 *   delete      DELETED | NOT_FOUND
 *
 * Anything else is a protocol error.  A VALUE line declaring more than
 * maxval bytes is refused before anything is allocated. */
#define _GNU_SOURCE
#include "mc_proto.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* values at least this big are written straight from the caller's buffer */
#define DIRECT_MIN 65536

int mc_parse_u64(const char *p, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int bad_reply(mc_sock *s, const char *what, const char *line, size_t len)
{
    char q[100];
    mc_sock_quote(q, sizeof q, line, len, 60);
    return mc_sock_fail(s, MC_EPROTO, "protocol error: %s: \"%s\"", what, q);
}

static int starts(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(line, word, n) == 0 && (len == n || line[n] == ' ');
}

/* SERVER_ERROR, CLIENT_ERROR, ERROR: the server refused the command. */
static int server_error(mc_sock *s, const char *line, size_t len)
{
    char q[100];
    if (starts(line, len, "SERVER_ERROR") || starts(line, len, "CLIENT_ERROR") ||
        starts(line, len, "ERROR")) {
        mc_sock_quote(q, sizeof q, line, len, 80);
        return mc_sock_fail(s, MC_SRVERR, "server said \"%s\"", q);
    }
    return MC_OK;
}

static int key_ok(const char *key, size_t klen)
{
    if (klen == 0 || klen > MC_KEY_MAX)
        return 0;
    for (size_t i = 0; i < klen; i++)
        if ((unsigned char)key[i] <= ' ' || key[i] == 0x7f)
            return 0;
    return 1;
}

/* "VALUE <key> <flags> <bytes>[ <cas>]": splits it, checks every number. */
typedef struct {
    const char *key;
    size_t      klen;
    uint64_t    bytes, cas;
    int         has_cas;
} value_line;

static int parse_value(mc_sock *s, const char *line, size_t len, size_t maxval, value_line *v)
{
    const char *f[5];
    size_t fl[5], nf = 0, i = 6;
    uint64_t flags;

    if (len < 6 || memcmp(line, "VALUE ", 6) != 0)
        return bad_reply(s, "expected VALUE or END", line, len);
    while (i < len && nf < 5) {
        size_t st = i;
        while (i < len && line[i] != ' ')
            i++;
        if (i == st)
            return bad_reply(s, "malformed VALUE line", line, len);
        f[nf] = line + st;
        fl[nf++] = i - st;
        if (i < len)
            i++;                 /* the single space */
        if (i == len && line[len - 1] == ' ')
            return bad_reply(s, "malformed VALUE line", line, len);
    }
    if (i < len || nf < 3 || nf > 4)
        return bad_reply(s, "malformed VALUE line", line, len);
    if (fl[0] > MC_KEY_MAX || mc_parse_u64(f[1], fl[1], UINT32_MAX, &flags) != 0 ||
        mc_parse_u64(f[2], fl[2], UINT64_MAX, &v->bytes) != 0 ||
        (nf == 4 && mc_parse_u64(f[3], fl[3], UINT64_MAX, &v->cas) != 0))
        return bad_reply(s, "malformed VALUE line", line, len);
    if (v->bytes > maxval)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: a value of %llu bytes declared, "
                            "over max_value_size (%zu)", (unsigned long long)v->bytes, maxval);
    v->key = f[0];
    v->klen = fl[0];
    v->has_cas = nf == 4;
    return MC_OK;
}

/* The data block of a VALUE: bytes, then \r\n. */
static int read_data(mc_sock *s, size_t bytes, double dl, void **out)
{
    char crlf[2];
    int rc;
    char *v = malloc(bytes + 1);          /* + the NUL every value handed out ends in */
    if (!v)
        return mc_sock_fail(s, MC_ENOMEM, "out of memory for a value of %zu bytes", bytes);
    if ((rc = mc_sock_read(s, v, bytes, dl)) != MC_OK ||
        (rc = mc_sock_read(s, crlf, 2, dl)) != MC_OK) {
        free(v);
        return rc;
    }
    if (crlf[0] != '\r' || crlf[1] != '\n') {
        free(v);
        return mc_sock_fail(s, MC_EPROTO, "protocol error: the value is not followed by "
                            "\\r\\n (its length is not what the VALUE line said)");
    }
    v[bytes] = '\0';
    *out = v;
    return MC_OK;
}

static int text_get(mc_sock *s, const char *key, size_t klen, size_t maxval, double dl,
                    void **value, size_t *len, uint64_t *cas)
{
    char *line;
    size_t ll;
    value_line vl;
    void *v;
    int rc;

    *value = NULL;
    *len = 0;
    if (!key_ok(key, klen))
        return mc_sock_fail(s, MC_SRVERR, "key not usable in the text protocol");
    if ((rc = mc_sock_out(s, cas ? "gets " : "get ", cas ? 5 : 4)) != MC_OK ||
        (rc = mc_sock_out(s, key, klen)) != MC_OK || (rc = mc_sock_out(s, "\r\n", 2)) != MC_OK ||
        (rc = mc_sock_flush(s, dl)) != MC_OK)
        return rc;
    if ((rc = mc_sock_line(s, MC_LINE_MAX, dl, &line, &ll)) != MC_OK)
        return rc;
    if (ll == 3 && memcmp(line, "END", 3) == 0)
        return MC_MISS;
    if ((rc = server_error(s, line, ll)) != MC_OK)
        return rc;
    if ((rc = parse_value(s, line, ll, maxval, &vl)) != MC_OK)
        return rc;
    if (vl.klen != klen || memcmp(vl.key, key, klen) != 0)
        return bad_reply(s, "a VALUE for another key than the one asked for", line, ll);
    if (cas && !vl.has_cas)
        return bad_reply(s, "gets answered without a CAS", line, ll);
    if (cas)
        *cas = vl.cas;
    if ((rc = read_data(s, (size_t)vl.bytes, dl, &v)) != MC_OK)
        return rc;
    if ((rc = mc_sock_line(s, MC_LINE_MAX, dl, &line, &ll)) != MC_OK ||
        !(ll == 3 && memcmp(line, "END", 3) == 0)) {
        free(v);
        return rc != MC_OK ? rc : bad_reply(s, "expected END after the value", line, ll);
    }
    *value = v;
    *len = (size_t)vl.bytes;
    return MC_OK;
}

static int text_mget_send(mc_sock *s, const char *const *keys, const size_t *klens, size_t n,
                          double dl)
{
    int rc = mc_sock_out(s, "get", 3);
    (void)dl;
    for (size_t k = 0; k < n && rc == MC_OK; k++) {
        if (!key_ok(keys[k], klens[k]))
            return mc_sock_fail(s, MC_SRVERR, "key not usable in the text protocol");
        if ((rc = mc_sock_out(s, " ", 1)) == MC_OK)
            rc = mc_sock_out(s, keys[k], klens[k]);
    }
    if (rc == MC_OK)
        rc = mc_sock_out(s, "\r\n", 2);
    /* (flushed by the caller's mc_sock_flush, once per server) */
    return rc;
}

static int text_mget_recv(mc_sock *s, const char *const *keys, const size_t *klens, size_t n,
                          size_t maxval, double dl, mc_hit_fn fn, void *arg)
{
    size_t cursor = 0;
    for (;;) {
        char *line;
        size_t ll, hit = n;
        value_line vl;
        void *v;
        int rc;

        if ((rc = mc_sock_line(s, MC_LINE_MAX, dl, &line, &ll)) != MC_OK)
            return rc;
        if (ll == 3 && memcmp(line, "END", 3) == 0)
            return MC_OK;
        if ((rc = server_error(s, line, ll)) != MC_OK)
            return rc;
        if ((rc = parse_value(s, line, ll, maxval, &vl)) != MC_OK)
            return rc;
        /* the answers are a subsequence of the request, in its order */
        for (size_t k = cursor; k < n && hit == n; k++)
            if (klens[k] == vl.klen && memcmp(keys[k], vl.key, vl.klen) == 0)
                hit = k;
        if (hit == n)
            return bad_reply(s, "a VALUE for a key not asked for, out of order, or twice",
                             line, ll);
        cursor = hit + 1;
        if ((rc = read_data(s, (size_t)vl.bytes, dl, &v)) != MC_OK)
            return rc;
        if ((rc = fn(arg, hit, v, (size_t)vl.bytes)) != MC_OK)
            return rc;
    }
}

static int text_store_queue(mc_sock *s, int add, const char *key, size_t klen, const void *value,
                            size_t len, long exptime, double dl)
{
    char hdr[80];
    int rc, hl;
    if (!key_ok(key, klen))
        return mc_sock_fail(s, MC_SRVERR, "key not usable in the text protocol");
    s->pend_op = 's';
    hl = snprintf(hdr, sizeof hdr, " 0 %ld %zu\r\n", exptime, len);
    if ((rc = mc_sock_out(s, add ? "add " : "set ", 4)) != MC_OK ||
        (rc = mc_sock_out(s, key, klen)) != MC_OK || (rc = mc_sock_out(s, hdr, (size_t)hl)) != MC_OK)
        return rc;
    if (len >= DIRECT_MIN)
        rc = mc_sock_send(s, value, len, dl);
    else
        rc = mc_sock_out(s, value, len);
    return rc != MC_OK ? rc : mc_sock_out(s, "\r\n", 2);
}

static int text_del_queue(mc_sock *s, const char *key, size_t klen, uint64_t cas)
{
    int rc;
    (void)cas;        /* the text protocol has no compare-and-delete */
    s->pend_op = 'd';
    if (!key_ok(key, klen))
        return mc_sock_fail(s, MC_SRVERR, "key not usable in the text protocol");
    if ((rc = mc_sock_out(s, "delete ", 7)) != MC_OK || (rc = mc_sock_out(s, key, klen)) != MC_OK)
        return rc;
    return mc_sock_out(s, "\r\n", 2);
}

/* The reply to a queued write: which words are valid depends on what was
 * queued (a batch is all sets, or all deletes). */
static int text_reply(mc_sock *s, double dl)
{
    char *line;
    size_t ll;
    int rc, op = s->pend_op;
    if ((rc = mc_sock_line(s, MC_LINE_MAX, dl, &line, &ll)) != MC_OK)
        return rc;
#define IS(w) (ll == sizeof w - 1 && memcmp(line, w, sizeof w - 1) == 0)
    if (op == 's') {
        if (IS("STORED"))
            return MC_OK;
        if (IS("NOT_STORED"))
            return MC_NOTSTORED;
        if (IS("EXISTS"))
            return MC_EXISTS;
        if (starts(line, ll, "SERVER_ERROR") && strstr(line, "too large")) {
            char q[100];
            mc_sock_quote(q, sizeof q, line, ll, 80);
            return mc_sock_fail(s, MC_TOOBIG, "server said \"%s\"", q);
        }
    } else if (op == 'd') {
        if (IS("DELETED"))
            return MC_OK;
        if (IS("NOT_FOUND"))
            return MC_MISS;
    } else if (op == 'f') {
        if (IS("OK"))
            return MC_OK;
    }
#undef IS
    if ((rc = server_error(s, line, ll)) != MC_OK)
        return rc;
    return bad_reply(s, "unexpected reply to a write", line, ll);
}

static int text_flush_all(mc_sock *s, double dl)
{
    int rc;
    s->pend_op = 'f';
    rc = mc_sock_send(s, "flush_all\r\n", 11, dl);
    return rc != MC_OK ? rc : text_reply(s, dl);
}

const mc_proto mc_text = {
    .name = "text",
    .get = text_get,
    .mget_send = text_mget_send,
    .mget_recv = text_mget_recv,
    .store_queue = text_store_queue,
    .del_queue = text_del_queue,
    .reply = text_reply,
    .flush_all = text_flush_all,
};
