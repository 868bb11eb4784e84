/* What a redis reply may be, checked before hiredis allocates anything.
 *
 * hiredis 0.14 trusts the server: a "$999999999999" header makes its reader
 * buffer grow with whatever is streamed after it (the bulk is handed over
 * only once complete), "*2147483647" makes it calloc 16 GB, and it stops
 * at no reply boundary.  So every byte a server sends goes through rscan
 * first: an incremental RESP header scanner that knows, for each request
 * of the call, how big and how deep its reply may legitimately be, counts
 * the replies it has seen complete, and tells which bytes came after the
 * last one the call asked for (a desynchronised connection).  Only bytes
 * it accepted are fed to the reader.
 *
 * Then each parsed reply is checked for the shape its request allows
 * (rreply_check): GET gets a bulk or nil, MGET n an array of exactly n,
 * and so on.  Error replies are allowed everywhere: the caller words them.
 *
 * No I/O and no state outside its arguments: the fuzzers build this file
 * alone (tests/fuzz/fuzz_redis_reply.c). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

#define LINE_MAX_BYTES   65536      /* a status or error line */
#define SMALL_TOTAL      (LINE_MAX_BYTES + 64)

static size_t sat_mul_add(size_t a, size_t b, size_t c)
{
    if (b && a > (SIZE_MAX - c) / b)
        return SIZE_MAX;
    return a * b + c;
}

void rlimits_for(const rcmd *cmd, size_t max_value, rlimits *l)
{
    memset(l, 0, sizeof *l);
    l->max_line = LINE_MAX_BYTES;
    l->max_bulk = 64;
    l->max_total = SMALL_TOTAL;
    switch (cmd->expect) {
    case RX_BULK:
        l->max_bulk = max_value;
        l->max_total = sat_mul_add(1, max_value, SMALL_TOTAL);
        break;
    case RX_MGET:
        l->max_depth = 1;
        l->max_top = cmd->argc > 1 ? (size_t)cmd->argc - 1 : 0;
        l->max_bulk = max_value;
        l->max_total = sat_mul_add(l->max_top, max_value + 32, SMALL_TOTAL);
        break;
    case RX_SLOTS:
        /* [[start, end, [ip, port, id, [hostname metadata]], replicas...], ...] */
        l->max_depth = 4;
        l->max_top = 16384;
        l->max_nested = 1024;
        l->max_bulk = 1024;
        l->max_total = 32u << 20;
        break;
    case RX_ROLE:
        /* ["master", offset, [[ip, port, offset], ...]] and the replica's form */
        l->max_depth = 3;
        l->max_top = 16;
        l->max_nested = 1024;
        l->max_bulk = 1024;
        l->max_total = 1u << 20;
        break;
    case RX_MASTER_ADDR:
        l->max_depth = 1;
        l->max_top = 2;
        l->max_bulk = R_HOST_MAX;
        l->max_total = SMALL_TOTAL;
        break;
    default:   /* status, integer: no arrays */
        break;
    }
}

void rscan_init(rscan *s, const rcmd *cmds, size_t n, size_t max_value)
{
    memset(s, 0, sizeof *s);
    s->cmds = cmds;
    s->expected = n;
    s->max_value = max_value;
    if (n)
        rlimits_for(&cmds[0], max_value, &s->lim);
}

__attribute__((format(printf, 2, 3)))
static int fail(rscan *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    s->failed = 1;
    return -1;
}

/* One value finished: count it against the arrays it is in; a finished
 * top-level value is one more reply. */
static void item_done(rscan *s)
{
    while (s->depth > 0) {
        if (--s->left[s->depth - 1] > 0)
            return;
        s->depth--;
    }
    s->done++;
    s->total = 0;
    if (s->done < s->expected)
        rlimits_for(&s->cmds[s->done], s->max_value, &s->lim);
}

/* "-12" into v: an optional '-' then 1..19 digits without a leading zero
 * ("0" alone is fine), nothing else: what hiredis's string2ll accepts, so
 * that the reader never refuses what the scanner let through. */
static int parse_ll(const char *p, size_t n, long long *v)
{
    unsigned long long u = 0;
    size_t i = 0;
    int neg = 0;
    if (n && p[0] == '-')
        neg = 1, i = 1;
    if (i == n || n - i > 19 || (p[i] == '0' && (n - i > 1 || neg)))
        return -1;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        u = u * 10 + (unsigned)(p[i] - '0');
    }
    if (u > (unsigned long long)LLONG_MAX)
        return -1;
    *v = neg ? -(long long)u : (long long)u;
    return 0;
}

static int header_done(rscan *s)
{
    long long v;
    if (s->type == '+' || s->type == '-') {
        item_done(s);
        return 0;
    }
    if (parse_ll(s->line, s->linelen, &v) != 0)
        return fail(s, "a malformed '%c' header line", s->type);
    if (s->type == ':') {
        item_done(s);
        return 0;
    }
    if (v == -1) {   /* nil bulk or nil array */
        item_done(s);
        return 0;
    }
    if (v < 0)
        return fail(s, "a negative length %lld", v);
    if (s->type == '$') {
        if ((unsigned long long)v > s->lim.max_bulk)
            return fail(s, "a bulk string of %lld bytes (at most %llu expected)", v,
                        (unsigned long long)s->lim.max_bulk);
        s->bulk_left = (unsigned long long)v + 2;
        return 0;
    }
    /* '*' */
    if (s->depth >= s->lim.max_depth || s->depth >= R_SCAN_DEPTH)
        return fail(s, "an array nested %d deep (at most %d expected)", s->depth + 1,
                    s->lim.max_depth);
    if ((unsigned long long)v > (s->depth == 0 ? s->lim.max_top : s->lim.max_nested))
        return fail(s, "an array of %lld elements (at most %llu expected)", v,
                    (unsigned long long)(s->depth == 0 ? s->lim.max_top : s->lim.max_nested));
    if (v == 0) {
        item_done(s);
        return 0;
    }
    s->left[s->depth++] = v;
    return 0;
}

/* Header and status lines are taken a segment at a time (memchr for the
 * CR), bulk payloads a chunk at a time: an MGET of 100 values costs ~300
 * steps, not one per byte. */
long rscan_feed(rscan *s, const char *p, size_t n)
{
    size_t i = 0;
    if (s->failed)
        return -1;
    while (i < n) {
        if (s->done >= s->expected) {
            s->trailing += n - i;
            return (long)i;
        }
        if (s->bulk_left) {
            /* payload, then the CRLF that must close it */
            size_t take = n - i;
            if (s->bulk_left > 2) {
                unsigned long long body = s->bulk_left - 2;
                if (take > body)
                    take = (size_t)body;
            } else if (s->bulk_left == 2 && take >= 2) {
                if (p[i] != '\r' || p[i + 1] != '\n')
                    return fail(s, "a bulk string not ended by CRLF");
                take = 2;
            } else {
                take = 1;
                if (p[i] != (s->bulk_left == 2 ? '\r' : '\n'))
                    return fail(s, "a bulk string not ended by CRLF");
            }
            if ((s->total += take) > s->lim.max_total)
                return fail(s, "a reply over %zu bytes", s->lim.max_total);
            s->bulk_left -= take;
            i += take;
            if (s->bulk_left == 0)
                item_done(s);
            continue;
        }
        if (!s->type) {
            char c = p[i++];
            if (++s->total > s->lim.max_total)
                return fail(s, "a reply over %zu bytes", s->lim.max_total);
            if (c != '+' && c != '-' && c != ':' && c != '$' && c != '*')
                return fail(s, "an unknown reply type byte 0x%02x", (unsigned char)c);
            s->type = c;
            s->linelen = 0;
            s->cr = 0;
            continue;
        }
        if (s->cr) {
            if (p[i++] != '\n')
                return fail(s, "a CR not followed by LF in a header");
            if (++s->total > s->lim.max_total)
                return fail(s, "a reply over %zu bytes", s->lim.max_total);
            if (header_done(s) != 0)
                return -1;
            s->type = 0;
            continue;
        }
        {
            /* the line's bytes up to its CR */
            const char *cr = memchr(p + i, '\r', n - i);
            size_t seg = cr ? (size_t)(cr - (p + i)) : n - i;
            if ((s->total += seg + (cr != NULL)) > s->lim.max_total)
                return fail(s, "a reply over %zu bytes", s->lim.max_total);
            if (s->type == '+' || s->type == '-') {
                if ((s->linelen += seg) > s->lim.max_line)
                    return fail(s, "a status line over %zu bytes", s->lim.max_line);
            } else {
                if (seg > sizeof s->line - s->linelen)
                    return fail(s, "a header line over %zu bytes", sizeof s->line);
                memcpy(s->line + s->linelen, p + i, seg);
                s->linelen += seg;
            }
            i += seg;
            if (cr) {
                s->cr = 1;
                i++;
            }
        }
    }
    return (long)n;
}

/* ---- shapes ---- */

static const char *type_name(int t)
{
    switch (t) {
    case REDIS_REPLY_STRING:  return "a bulk string";
    case REDIS_REPLY_ARRAY:   return "an array";
    case REDIS_REPLY_INTEGER: return "an integer";
    case REDIS_REPLY_NIL:     return "nil";
    case REDIS_REPLY_STATUS:  return "a status";
    case REDIS_REPLY_ERROR:   return "an error";
    default:                  return "an unknown type";
    }
}

static const char *expect_name(int x)
{
    switch (x) {
    case RX_BULK:        return "GET";
    case RX_OK:          return "a command answered +OK";
    case RX_OK_OR_NIL:   return "SET NX";
    case RX_INT:         return "a command answered by an integer";
    case RX_MGET:        return "MGET";
    case RX_PONG:        return "PING";
    case RX_SLOTS:       return "CLUSTER SLOTS";
    case RX_ROLE:        return "ROLE";
    case RX_MASTER_ADDR: return "SENTINEL get-master-addr-by-name";
    default:             return "a command of unknown kind";
    }
}

int rreply_check(const rcmd *cmd, const redisReply *r, char *why, size_t size)
{
    int t = r->type, ok = 0;
    if (t == REDIS_REPLY_ERROR)
        return 0;
    switch (cmd->expect) {
    case RX_BULK:
        ok = t == REDIS_REPLY_STRING || t == REDIS_REPLY_NIL;
        break;
    case RX_OK:
        ok = t == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0;
        break;
    case RX_OK_OR_NIL:
        ok = t == REDIS_REPLY_NIL ||
             (t == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0);
        break;
    case RX_INT:
        ok = t == REDIS_REPLY_INTEGER;
        break;
    case RX_PONG:
        ok = t == REDIS_REPLY_STATUS && r->len == 4 && memcmp(r->str, "PONG", 4) == 0;
        break;
    case RX_MGET:
        if (t != REDIS_REPLY_ARRAY || r->elements != (size_t)(cmd->argc - 1)) {
            if (t == REDIS_REPLY_ARRAY) {
                snprintf(why, size, "MGET of %d keys answered by an array of %zu elements",
                         cmd->argc - 1, r->elements);
                return -1;
            }
            break;
        }
        ok = 1;
        for (size_t i = 0; i < r->elements; i++)
            if (!r->element[i] || (r->element[i]->type != REDIS_REPLY_STRING &&
                                   r->element[i]->type != REDIS_REPLY_NIL)) {
                snprintf(why, size, "MGET answered %s for key %zu",
                         r->element[i] ? type_name(r->element[i]->type) : "nothing", i + 1);
                return -1;
            }
        break;
    case RX_SLOTS:
    case RX_ROLE:
        ok = t == REDIS_REPLY_ARRAY;
        break;
    case RX_MASTER_ADDR:
        ok = t == REDIS_REPLY_NIL ||
             (t == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              r->element[1]->type == REDIS_REPLY_STRING);
        break;
    default:
        break;
    }
    if (!ok)
        snprintf(why, size, "%s answered by %s", expect_name(cmd->expect), type_name(t));
    return ok ? 0 : -1;
}

/* ---- reply objects ---- */

/* hiredis 0.14's own reply functions (static in hiredis.c), restated so
 * that createArray can refuse a count the scanner did not allow: belt and
 * braces, since the scanner already refused it before the reader saw it.
 * The objects are what freeReplyObject expects (malloc'd str, element). */
static void link_parent(const redisReadTask *task, redisReply *r)
{
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (!(r->str = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    r->type = task->type;
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    link_parent(task, r);
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    rscan *s = task->privdata;
    redisReply *r;
    if (s) {
        /* the limits of the reply the reader is at (the scanner may be ahead) */
        rlimits l;
        size_t bound = 0;
        if (s->reader_done < s->expected) {
            rlimits_for(&s->cmds[s->reader_done], s->max_value, &l);
            bound = task->parent ? l.max_nested : l.max_top;
        }
        if (elements < 0 || (size_t)elements > bound) {
            s->refused = 1;
            return NULL;
        }
    }
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    r->type = REDIS_REPLY_ARRAY;
    if (elements > 0 && !(r->element = calloc((size_t)elements, sizeof *r->element))) {
        free(r);
        return NULL;
    }
    r->elements = (size_t)elements;
    link_parent(task, r);
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->type = REDIS_REPLY_INTEGER;
    r->integer = value;
    link_parent(task, r);
    return r;
}

static void *create_nil(const redisReadTask *task)
{
    redisReply *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->type = REDIS_REPLY_NIL;
    link_parent(task, r);
    return r;
}

redisReplyObjectFunctions rreply_functions = {
    create_string, create_array, create_integer, create_nil, freeReplyObject,
};

/* ---- secrets ---- */

void r_scrub(char *buf, size_t size, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0, o = 0;
    const char *p = buf;
    char *out;
    if (sl == 0 || size == 0 || !strstr(buf, secret))
        return;
    if (!(out = malloc(size))) {
        snprintf(buf, size, "(text withheld: it held a secret)");
        return;
    }
    while (*p && o + 1 < size) {
        if (strncmp(p, secret, sl) == 0) {
            for (int k = 0; k < 3 && o + 1 < size; k++)
                out[o++] = '*';
            p += sl;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    memcpy(buf, out, o + 1);
    free(out);
}
