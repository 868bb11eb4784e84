/* The memcached binary protocol, every response checked against its
 * request: magic 0x81, the request's opcode, the request's opaque (a
 * per-connection counter, so a response to an earlier request is told
 * apart), consistent key/extras/body lengths, the key echoed by GETK and
 * GETKQ equal to the one asked for, and a body no bigger than maxval
 * before anything is allocated.  Multi-get: GETKQ per key, then a NOOP
 * whose response ends the answers. */
#define _GNU_SOURCE
#include "mc_proto.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_GET = 0x00, OP_SET = 0x01, OP_ADD = 0x02, OP_DELETE = 0x04, OP_FLUSH = 0x08,
    OP_NOOP = 0x0a, OP_GETK = 0x0c, OP_GETKQ = 0x0d, OP_SASL_LIST = 0x20, OP_SASL_AUTH = 0x21
};
enum {
    ST_OK = 0, ST_NOTFOUND = 1, ST_EXISTS = 2, ST_TOOBIG = 3, ST_NOTSTORED = 5,
    ST_AUTH_ERROR = 0x20, ST_AUTH_CONTINUE = 0x21
};

#define DIRECT_MIN  65536
#define ERRBODY_MAX 4096       /* an error response's message */

typedef struct {
    uint8_t  opcode, extlen;
    uint16_t keylen, status;
    uint32_t bodylen, opaque;
    uint64_t cas;
    unsigned char ext[32];
    char     key[MC_KEY_MAX];
    void    *value;            /* malloc'd (status OK), or NULL */
    size_t   vlen;
    char     msg[128];         /* an error status's text, quoted */
} resp;

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }
static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *op_name(unsigned op)
{
    switch (op) {
    case OP_GET: return "GET";
    case OP_SET: return "SET";
    case OP_ADD: return "ADD";
    case OP_DELETE: return "DELETE";
    case OP_FLUSH: return "FLUSH";
    case OP_NOOP: return "NOOP";
    case OP_GETK: return "GETK";
    case OP_GETKQ: return "GETKQ";
    case OP_SASL_LIST: return "SASL_LIST_MECHS";
    case OP_SASL_AUTH: return "SASL_AUTH";
    default: return "an unknown opcode";
    }
}

/* Queues one request; returns its opaque through *opq. */
static int queue(mc_sock *s, uint8_t op, const void *ext, uint8_t extlen, const char *key,
                 size_t klen, const void *value, size_t vlen, uint64_t cas, uint32_t *opq,
                 double dl)
{
    unsigned char h[24] = {0x80, op};
    uint32_t o = s->opaque++;
    int rc;
    if (klen > MC_KEY_MAX)
        return mc_sock_fail(s, MC_SRVERR, "key too long");
    if (vlen > UINT32_MAX - klen - extlen)
        return mc_sock_fail(s, MC_ETOOBIG, "value too large for the binary protocol");
    put16(h + 2, (uint16_t)klen);
    h[4] = extlen;
    put32(h + 8, (uint32_t)(extlen + klen + vlen));
    put32(h + 12, o);
    for (int i = 0; i < 8; i++)
        h[16 + i] = (unsigned char)(cas >> (56 - 8 * i));
    if ((rc = mc_sock_out(s, h, 24)) != MC_OK || (rc = mc_sock_out(s, ext, extlen)) != MC_OK ||
        (rc = mc_sock_out(s, key, klen)) != MC_OK)
        return rc;
    rc = vlen >= DIRECT_MIN ? mc_sock_send(s, value, vlen, dl) : mc_sock_out(s, value, vlen);
    if (opq)
        *opq = o;
    return rc;
}

/* Reads a response header and checks what is true of every response. */
static int read_header(mc_sock *s, resp *r, double dl)
{
    unsigned char h[24];
    int rc = mc_sock_read(s, h, 24, dl);
    if (rc != MC_OK)
        return rc;
    memset(r, 0, sizeof *r);
    if (h[0] != 0x81)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: response magic 0x%02x, not 0x81",
                            h[0]);
    r->opcode = h[1];
    r->keylen = get16(h + 2);
    r->extlen = h[4];
    r->status = get16(h + 6);
    r->bodylen = get32(h + 8);
    r->opaque = get32(h + 12);
    for (int i = 0; i < 8; i++)
        r->cas = r->cas << 8 | h[16 + i];
    if (h[5] != 0)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: response data type 0x%02x", h[5]);
    if ((uint64_t)r->keylen + r->extlen > r->bodylen)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: key and extras (%u + %u bytes) "
                            "longer than the body (%u)", r->keylen, r->extlen, r->bodylen);
    if (r->keylen > MC_KEY_MAX || r->extlen > sizeof r->ext)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: a %u-byte key or %u bytes of "
                            "extras in a response", r->keylen, r->extlen);
    return MC_OK;
}

/* The rest of the response: extras, key, value (bounded by maxval, or
 * ERRBODY_MAX for an error status, whose text goes to r->msg). */
static int read_body(mc_sock *s, resp *r, size_t maxval, double dl)
{
    size_t vlen = r->bodylen - r->keylen - r->extlen;
    int rc;
    if ((rc = mc_sock_read(s, r->ext, r->extlen, dl)) != MC_OK ||
        (rc = mc_sock_read(s, r->key, r->keylen, dl)) != MC_OK)
        return rc;
    if (r->status != ST_OK) {
        char tmp[ERRBODY_MAX];
        if (vlen > ERRBODY_MAX)
            return mc_sock_fail(s, MC_EPROTO, "protocol error: an error response of %zu bytes",
                                vlen);
        if ((rc = mc_sock_read(s, tmp, vlen, dl)) != MC_OK)
            return rc;
        mc_sock_quote(r->msg, sizeof r->msg, tmp, vlen, 80);
        return MC_OK;
    }
    if (vlen > maxval)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: a value of %zu bytes declared, over "
                            "max_value_size (%zu)", vlen, maxval);
    if (!(r->value = malloc(vlen + 1)))   /* + the NUL every value handed out ends in */
        return mc_sock_fail(s, MC_ENOMEM, "out of memory for a value of %zu bytes", vlen);
    if ((rc = mc_sock_read(s, r->value, vlen, dl)) != MC_OK) {
        free(r->value);
        r->value = NULL;
        return rc;
    }
    ((char *)r->value)[vlen] = '\0';
    r->vlen = vlen;
    return MC_OK;
}

/* The response to the request (op, opaque): anything else is a protocol error. */
static int read_resp(mc_sock *s, resp *r, uint8_t op, uint32_t opaque, size_t maxval, double dl)
{
    int rc = read_header(s, r, dl);
    if (rc != MC_OK)
        return rc;
    if (r->opcode != op)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: a %s response (0x%02x) to a %s "
                            "request", op_name(r->opcode), r->opcode, op_name(op));
    if (r->opaque != opaque)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: a response to request %u where "
                            "request %u was expected", r->opaque, opaque);
    return read_body(s, r, maxval, dl);
}

/* An error status as an outcome. */
static int status_rc(mc_sock *s, const resp *r)
{
    switch (r->status) {
    case ST_OK: return MC_OK;
    case ST_NOTFOUND: return MC_MISS;
    case ST_EXISTS: return MC_EXISTS;
    case ST_NOTSTORED: return MC_NOTSTORED;
    case ST_TOOBIG: return mc_sock_fail(s, MC_TOOBIG, "server said \"%s\"", r->msg);
    default:
        return mc_sock_fail(s, MC_SRVERR, "server answered status 0x%02x \"%s\"", r->status,
                            r->msg);
    }
}

static int key_matches(mc_sock *s, const resp *r, const char *key, size_t klen)
{
    char q[100];
    if (r->keylen == klen && memcmp(r->key, key, klen) == 0)
        return MC_OK;
    mc_sock_quote(q, sizeof q, r->key, r->keylen, 60);
    return mc_sock_fail(s, MC_EPROTO, "protocol error: a value for another key (\"%s\") than "
                        "the one asked for", q);
}

static int bin_get(mc_sock *s, const char *key, size_t klen, size_t maxval, double dl,
                   void **value, size_t *len, uint64_t *cas)
{
    resp r;
    uint32_t o;
    int rc;

    *value = NULL;
    *len = 0;
    if ((rc = queue(s, OP_GETK, NULL, 0, key, klen, NULL, 0, 0, &o, dl)) != MC_OK ||
        (rc = mc_sock_flush(s, dl)) != MC_OK || (rc = read_resp(s, &r, OP_GETK, o, maxval, dl)) != MC_OK)
        return rc;
    if (r.status != ST_OK) {
        /* memcached echoes the key with a GETK miss; if it does, it must be ours */
        if (r.keylen && (rc = key_matches(s, &r, key, klen)) != MC_OK)
            return rc;
        return status_rc(s, &r);
    }
    if ((rc = key_matches(s, &r, key, klen)) != MC_OK || r.extlen != 4) {
        free(r.value);
        return rc != MC_OK ? rc : mc_sock_fail(s, MC_EPROTO, "protocol error: a GETK response "
                                               "with %u bytes of extras, not 4", r.extlen);
    }
    if (cas)
        *cas = r.cas;
    *value = r.value;
    *len = r.vlen;
    return MC_OK;
}

/* Multi-get: GETKQ with opaques base .. base+n-1, then NOOP base+n. */
static int bin_mget_send(mc_sock *s, const char *const *keys, const size_t *klens, size_t n,
                         double dl)
{
    int rc = MC_OK;
    s->acked = s->opaque;        /* the first GETKQ's opaque */
    for (size_t k = 0; k < n && rc == MC_OK; k++)
        rc = queue(s, OP_GETKQ, NULL, 0, keys[k], klens[k], NULL, 0, 0, NULL, dl);
    return rc != MC_OK ? rc : queue(s, OP_NOOP, NULL, 0, NULL, 0, NULL, 0, 0, NULL, dl);
}

static int bin_mget_recv(mc_sock *s, const char *const *keys, const size_t *klens, size_t n,
                         size_t maxval, double dl, mc_hit_fn fn, void *arg)
{
    uint32_t base = s->acked, next = base;     /* answers come in request order */
    for (;;) {
        resp r;
        uint32_t k;
        int rc = read_header(s, &r, dl);
        if (rc != MC_OK)
            return rc;
        if (r.opcode == OP_NOOP) {
            if (r.opaque != base + (uint32_t)n)
                return mc_sock_fail(s, MC_EPROTO, "protocol error: a NOOP response to "
                                    "request %u where %u was expected", r.opaque,
                                    base + (uint32_t)n);
            rc = read_body(s, &r, 0, dl);
            free(r.value);
            return rc;
        }
        if (r.opcode != OP_GETKQ)
            return mc_sock_fail(s, MC_EPROTO, "protocol error: a %s response (0x%02x) to a "
                                "multi-get", op_name(r.opcode), r.opcode);
        k = r.opaque - base;
        if (r.opaque - next >= (uint32_t)n - (next - base) || k >= n)
            return mc_sock_fail(s, MC_EPROTO, "protocol error: a response to request %u, not "
                                "one of the multi-get's pending %u..%u (out of order, twice, "
                                "or not asked)", r.opaque, next, base + (uint32_t)n - 1);
        if ((rc = read_body(s, &r, maxval, dl)) != MC_OK)
            return rc;
        if (r.status == ST_NOTFOUND) {        /* quiet gets say nothing of a miss; tolerated */
            next = r.opaque + 1;
            continue;
        }
        if (r.status != ST_OK)
            return mc_sock_fail(s, MC_SRVERR, "server answered status 0x%02x \"%s\" in a "
                                "multi-get", r.status, r.msg);
        if ((rc = key_matches(s, &r, keys[k], klens[k])) != MC_OK || r.extlen != 4) {
            free(r.value);
            return rc != MC_OK ? rc : mc_sock_fail(s, MC_EPROTO, "protocol error: a GETKQ "
                                                   "response with %u bytes of extras", r.extlen);
        }
        next = r.opaque + 1;
        if ((rc = fn(arg, k, r.value, r.vlen)) != MC_OK)
            return rc;
    }
}

/* One more request of a pipelined batch: the first one marks where the
 * batch's opaques start (a batch is all of one opcode). */
static void batch(mc_sock *s, uint8_t op)
{
    if (!s->queued)
        s->acked = s->opaque;
    s->pend_op = op;
    s->queued++;
}

static int bin_store_queue(mc_sock *s, int add, const char *key, size_t klen, const void *value,
                           size_t len, long exptime, double dl)
{
    unsigned char ext[8] = {0};
    put32(ext + 4, (uint32_t)exptime);
    batch(s, add ? OP_ADD : OP_SET);
    return queue(s, s->pend_op, ext, 8, key, klen, value, len, 0, NULL, dl);
}

static int bin_del_queue(mc_sock *s, const char *key, size_t klen, uint64_t cas)
{
    batch(s, OP_DELETE);
    return queue(s, OP_DELETE, NULL, 0, key, klen, NULL, 0, cas, NULL, 0);
}

/* The next queued request's response (opaques are issued in order). */
static int bin_reply(mc_sock *s, double dl)
{
    resp r;
    int rc;
    if (!s->queued)
        return mc_sock_fail(s, MC_EPROTO, "protocol error: a reply read with none pending");
    rc = read_resp(s, &r, s->pend_op, s->acked, 0, dl);
    s->acked++;
    s->queued--;
    if (rc != MC_OK)
        return rc;
    if (r.status == ST_OK && r.vlen) {
        free(r.value);
        return mc_sock_fail(s, MC_EPROTO, "protocol error: a %s response with a body",
                            op_name(r.opcode));
    }
    free(r.value);
    return status_rc(s, &r);
}

static int bin_flush_all(mc_sock *s, double dl)
{
    int rc;
    batch(s, OP_FLUSH);
    if ((rc = queue(s, OP_FLUSH, NULL, 0, NULL, 0, NULL, 0, 0, NULL, dl)) != MC_OK ||
        (rc = mc_sock_flush(s, dl)) != MC_OK)
        return rc;
    return bin_reply(s, dl);
}

int mc_bin_sasl(mc_sock *s, const char *user, const char *pass, double dl)
{
    resp r;
    uint32_t o;
    int rc;
    size_t ul = strlen(user), pl = strlen(pass);
    char *tok;

    if ((rc = queue(s, OP_SASL_LIST, NULL, 0, NULL, 0, NULL, 0, 0, &o, dl)) != MC_OK ||
        (rc = mc_sock_flush(s, dl)) != MC_OK ||
        (rc = read_resp(s, &r, OP_SASL_LIST, o, 1024, dl)) != MC_OK)
        return rc;
    if (r.status != ST_OK)
        return mc_sock_fail(s, MC_EAUTH, "SASL authentication: the server lists no mechanisms "
                            "(status 0x%02x): is it started with -S?", r.status);
    {
        int plain = 0;
        char *save = NULL, *list = malloc(r.vlen + 1);
        if (!list) {
            free(r.value);
            return mc_sock_fail(s, MC_ENOMEM, "out of memory");
        }
        memcpy(list, r.value, r.vlen);
        list[r.vlen] = 0;
        free(r.value);
        for (char *w = strtok_r(list, " ", &save); w; w = strtok_r(NULL, " ", &save))
            plain |= strcmp(w, "PLAIN") == 0;
        free(list);
        if (!plain)
            return mc_sock_fail(s, MC_EAUTH, "SASL authentication: the server does not offer "
                                "PLAIN");
    }
    if (!(tok = malloc(ul + pl + 2)))
        return mc_sock_fail(s, MC_ENOMEM, "out of memory");
    tok[0] = 0;
    memcpy(tok + 1, user, ul);
    tok[ul + 1] = 0;
    memcpy(tok + ul + 2, pass, pl);
    rc = queue(s, OP_SASL_AUTH, NULL, 0, "PLAIN", 5, tok, ul + pl + 2, 0, &o, dl);
    explicit_bzero(tok, ul + pl + 2);
    free(tok);
    if (rc == MC_OK)
        rc = mc_sock_flush(s, dl);
    /* the queue held the password: wipe it (mc_sock_flush only resets the length) */
    if (s->wbuf)
        explicit_bzero(s->wbuf, s->wcap);
    if (rc != MC_OK || (rc = read_resp(s, &r, OP_SASL_AUTH, o, 1024, dl)) != MC_OK)
        return rc;
    free(r.value);
    if (r.status == ST_OK)
        return MC_OK;
    return mc_sock_fail(s, MC_EAUTH, "SASL authentication failed for user \"%.64s\" "
                        "(status 0x%02x)", user, r.status);
}

const mc_proto mc_bin = {
    .name = "binary",
    .get = bin_get,
    .mget_send = bin_mget_send,
    .mget_recv = bin_mget_recv,
    .store_queue = bin_store_queue,
    .del_queue = bin_del_queue,
    .reply = bin_reply,
    .flush_all = bin_flush_all,
};
