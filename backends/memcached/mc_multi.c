/* Multi-key operations: one request (or pipelined batch) per server, sent
 * to every server before any answer is read, under one deadline. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* a pipelined write batch: this many requests or bytes, then every reply
 * is read before the next batch (so neither side's buffers fill up) */
#define BATCH_ITEMS 256
#define BATCH_BYTES (512u * 1024u)

/* ---- multi-key operations: one request per server ---- */

/* Every array a batch needs is carved out of one allocation (sized by a
 * first pass with no memory behind it), so a call makes one malloc and
 * zeroes only what must start at zero: arrays of one entry per host. */
typedef struct {
    char  *base;        /* NULL: sizing only */
    size_t used;
} carve;

static void *take(carve *c, size_t bytes)
{
    void *p = c->base ? c->base + c->used : NULL;
    c->used += (bytes + 15) & ~(size_t)15;     /* every piece 16-aligned */
    return p;
}

typedef struct {
    size_t *pos;        /* item index per (host, slot), grouped by host */
    size_t *start;      /* nhosts + 1 offsets into pos */
    int    *adm;        /* per host: -1 not asked yet, else ADM_* */
    int     probing;    /* this thread holds a probe of some host: wait on none */
    void   *block;      /* the one allocation */
} groups;

static void groups_free(groups *g)
{
    free(g->block);
    g->block = NULL;
}

static int host_usable(mc_inst *m, groups *g, size_t i)
{
    if (g->adm[i] < 0) {
        /* the clock is read per host: an earlier host's wait may have
         * taken up to 200 ms, and admit records `now` as progress */
        g->adm[i] = mc_admit(m, i, mc_now_s(), !g->probing);
        if (g->adm[i] == ADM_PROBE || g->adm[i] == ADM_PROBE_FLUSH)
            g->probing = 1;
    }
    return g->adm[i] != ADM_REJECT;
}

/* Groups items by host.  all_replicas: every live replica (writes), else
 * the first live one (reads).  Items with no live host get EUNAVAILABLE.
 * The caller's own arrays come from the same allocation: layout(c, arg)
 * takes them from c (called once to size, once to place). */
static cachet_status group(mc_inst *m, cachet_backend_item *items, size_t n, int all_replicas,
                           groups *g, void (*layout)(carve *c, void *arg), void *arg)
{
    size_t nh = m->nhosts, *count, reps = all_replicas ? MAX_REPLICAS : 1;
    size_t (*pl)[MAX_REPLICAS + 1];
    carve c = {NULL, 0};

    memset(g, 0, sizeof *g);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && !(c.base = g->block = malloc(c.used)))
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        c.used = 0;
        g->start = take(&c, (nh + 1) * sizeof *g->start);
        count = take(&c, nh * sizeof *count);
        pl = take(&c, (n ? n : 1) * sizeof *pl);
        g->pos = take(&c, (n ? n : 1) * reps * sizeof *g->pos);
        g->adm = take(&c, nh * sizeof *g->adm);
        layout(&c, arg);
    }
    memset(g->start, 0, (nh + 1) * sizeof *g->start);
    memset(count, 0, nh * sizeof *count);
    for (size_t i = 0; i < nh; i++)
        g->adm[i] = -1;
    for (size_t k = 0; k < n; k++) {
        size_t idx[MAX_REPLICAS], np = mc_placement(m, items[k].key, items[k].klen, idx), used = 0;
        for (size_t r = 0; r < np; r++) {
            if (!host_usable(m, g, idx[r]))
                continue;
            pl[k][1 + used++] = idx[r];
            count[idx[r]]++;
            if (!all_replicas)
                break;
        }
        pl[k][0] = used;
        if (!used)
            items[k].status = mc_unavailable(m, idx[0]);
    }
    for (size_t i = 0; i < nh; i++)
        g->start[i + 1] = g->start[i] + count[i];
    memset(count, 0, nh * sizeof *count);
    for (size_t k = 0; k < n; k++)
        for (size_t u = 0; u < pl[k][0]; u++) {
            size_t i = pl[k][1 + u];
            g->pos[g->start[i] + count[i]++] = k;
        }
    return CACHET_OK;
}

/* A connection, then the items grouped by host (waiting for the connection
 * must not count as in flight).  On failure: neither, and every item has
 * the status. */
static cachet_status multi_begin(mc_inst *m, cachet_backend_item *items, size_t n,
                                 int all_replicas, mc_conn **c, groups *g,
                                 void (*layout)(carve *c, void *arg), void *arg)
{
    cachet_status st;
    if ((st = mc_conn_get(m, c)) == CACHET_OK &&
        (st = group(m, items, n, all_replicas, g, layout, arg)) == CACHET_OK)
        return CACHET_OK;
    mc_conn_put(m, *c);
    for (size_t k = 0; k < n; k++)
        items[k].status = st;
    return st;
}

/* The hosts with items, known-good ones first: a probe that stalls must
 * not hold up reading the answers of the live servers. */
static size_t host_order(mc_inst *m, const groups *g, size_t *order)
{
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < m->nhosts; i++)
            if (g->start[i] != g->start[i + 1] && g->adm[i] > ADM_REJECT &&
                (g->adm[i] == ADM_OK) == (pass == 0))
                order[k++] = i;
    return k;
}

static cachet_status first_error(cachet_backend_item *items, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (items[k].status < 0)
            return items[k].status;
    return CACHET_OK;
}

/* Sets each item's status for host i's slice to st. */
static void slice_status(groups *g, cachet_backend_item *items, size_t i, cachet_status st)
{
    for (size_t s = g->start[i]; s < g->start[i + 1]; s++)
        items[g->pos[s]].status = st;
}

/* Where a server's hits go: slot idx of host i's slice is item pos[idx]. */
typedef struct {
    cachet_backend_item *items;
    const size_t        *pos;
} hits;

static int take_hit(void *arg, size_t idx, void *value, size_t len)
{
    hits *h = arg;
    cachet_backend_item *it = &h->items[h->pos[idx]];
    free(it->value);               /* (a key asked twice: the later answer) */
    it->value = value;
    it->len = len;
    it->status = CACHET_OK;
    return MC_OK;
}

/* A server's answers are all or nothing: after an error none of its values
 * reach the caller. */
static void slice_fail(groups *g, cachet_backend_item *items, size_t i, cachet_status st)
{
    for (size_t s = g->start[i]; s < g->start[i + 1]; s++) {
        cachet_backend_item *it = &items[g->pos[s]];
        free(it->value);
        it->value = NULL;
        it->len = 0;
        it->status = st;
    }
}

/* get_multi's own arrays, in the batch's allocation */
typedef struct {
    size_t       nh, n;
    size_t      *order;
    const char **keys;
    size_t      *klens;
    int         *sent;
} get_arrays;

static void get_layout(carve *c, void *arg)
{
    get_arrays *a = arg;
    a->order = take(c, a->nh * sizeof *a->order);
    a->keys = take(c, a->n * sizeof *a->keys);
    a->klens = take(c, a->n * sizeof *a->klens);
    a->sent = take(c, a->nh * sizeof *a->sent);
}

cachet_status mc_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    mc_inst *m = state;
    groups g;
    mc_conn *c = NULL;
    get_arrays a = {m->nhosts, n, NULL, NULL, NULL, NULL};
    size_t *order, nord;
    const char **keys;
    size_t *klens;
    int *sent;
    cachet_status st;
    double dl;

    if (n == 0)
        return CACHET_OK;
    for (size_t k = 0; k < n; k++) {
        items[k].value = NULL;
        items[k].len = 0;
        items[k].status = CACHET_MISS;
    }
    if ((st = multi_begin(m, items, n, 0, &c, &g, get_layout, &a)) != CACHET_OK)
        return st;
    order = a.order;
    keys = a.keys;
    klens = a.klens;
    sent = a.sent;
    memset(sent, 0, m->nhosts * sizeof *sent);
    dl = mc_deadline(m);
    nord = host_order(m, &g, order);
    /* 1. send every server its request */
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], cnt = 0;
        mc_sock *s;
        int rc;
        if ((g.adm[i] = mc_enter(m, c, i, g.adm[i], dl)) == ADM_REJECT) {
            slice_status(&g, items, i, mc_unavailable(m, i));
            continue;
        }
        for (size_t q = g.start[i]; q < g.start[i + 1]; q++) {
            keys[cnt] = items[g.pos[q]].key;
            klens[cnt++] = items[g.pos[q]].klen;
        }
        if (!(s = mc_link(m, c, i, dl, &rc)) ||
            (rc = m->proto->mget_send(s, keys, klens, cnt, dl)) != MC_OK ||
            (rc = mc_sock_flush(s, dl)) != MC_OK) {
            mc_settle(m, c, i, g.adm[i], rc);
            slice_status(&g, items, i, mc_error(m, c, i, rc, "get_multi"));
            continue;
        }
        sent[i] = 1;
    }
    /* 2. read the answers, server by server (they are already on their way) */
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], cnt = 0;
        hits h = {items, g.pos + g.start[i]};
        int rc;
        if (!sent[i])
            continue;
        for (size_t q = g.start[i]; q < g.start[i + 1]; q++) {
            keys[cnt] = items[g.pos[q]].key;
            klens[cnt++] = items[g.pos[q]].klen;
        }
        rc = m->proto->mget_recv(&c->srv[i], keys, klens, cnt, m->max_value, dl, take_hit, &h);
        if (rc != MC_OK) {
            cachet_status est = mc_error(m, c, i, rc, "get_multi");
            slice_fail(&g, items, i, est);
        }
        mc_settle(m, c, i, g.adm[i], rc);
    }
    mc_conn_put(m, c);
    groups_free(&g);
    if ((st = first_error(items, n)) != CACHET_OK)
        return st == CACHET_EUNAVAILABLE
               ? cachet_backend_error(st, "backend %s: get_multi: some servers are down",
                                      m->backend)
               : st;          /* (the message of the server's error is kept) */
    return CACHET_OK;
}

/* Pipelines the writes of slots [from, to) of host i's slice in batches,
 * reading every reply (no noreply: each item gets its own status into
 * out[]).  del: deletes, else sets.  Returns MC_OK or the connection's
 * failure (then the unanswered slots are left as they were). */
static int write_batches(mc_inst *m, mc_sock *s, cachet_backend_item *items, const size_t *pos,
                         size_t from, size_t to, int del, const unsigned char *skip, int *out,
                         double dl)
{
    size_t q = from;
    while (q < to) {
        size_t first = q, bytes = 0, nq = 0;
        int rc = MC_OK;
        for (; q < to && nq < BATCH_ITEMS && bytes < BATCH_BYTES; q++) {
            cachet_backend_item *it = &items[pos[q]];
            if (skip && skip[q - from])
                continue;
            rc = del ? m->proto->del_queue(s, it->key, it->klen, 0)
                     : m->proto->store_queue(s, 0, it->key, it->klen, it->value, it->len,
                                             mc_exptime(m, it->ttl), dl);
            if (rc != MC_OK)
                return rc;
            bytes += it->len + it->klen + 32;
            nq++;
        }
        if ((rc = mc_sock_flush(s, dl)) != MC_OK)
            return rc;
        for (size_t r = first; r < q; r++) {
            if (skip && skip[r - from])
                continue;
            if ((rc = m->proto->reply(s, dl)) < 0)
                return rc;
            out[r - from] = rc;
        }
    }
    return MC_OK;
}

/* write_multi's own arrays, in the batch's allocation (a host's slice is
 * at most n items) */
typedef struct {
    size_t         nh, n;
    size_t        *order;
    cachet_status *res;
    int           *out, *dout;
    unsigned char *stored, *refused;
} write_arrays;

static void write_layout(carve *c, void *arg)
{
    write_arrays *a = arg;
    a->order = take(c, a->nh * sizeof *a->order);
    a->res = take(c, a->n * sizeof *a->res);
    a->out = take(c, (a->n + 1) * sizeof *a->out);
    a->dout = take(c, (a->n + 1) * sizeof *a->dout);
    a->stored = take(c, a->n);
    a->refused = take(c, a->n + 1);
}

static cachet_status write_multi(mc_inst *m, cachet_backend_item *items, size_t n, int is_set)
{
    groups g;
    mc_conn *c = NULL;
    write_arrays a = {m->nhosts, n, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t *order, nord;
    cachet_status *res, st;
    unsigned char *stored, *refused;
    int *out, *dout;
    const char *what = is_set ? "set_multi" : "delete_multi";
    double dl;

    if (n == 0)
        return CACHET_OK;
    for (size_t k = 0; k < n; k++)
        items[k].status = CACHET_OK;
    if ((st = multi_begin(m, items, n, 1, &c, &g, write_layout, &a)) != CACHET_OK)
        return st;
    order = a.order;
    res = a.res;
    out = a.out;
    dout = a.dout;
    stored = a.stored;
    refused = a.refused;
    memset(stored, 0, n);
    dl = mc_deadline(m);
    nord = host_order(m, &g, order);
    /* res: the combined outcome over replicas; unavailable ones were set by group() */
    for (size_t k = 0; k < n; k++)
        res[k] = items[k].status;
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], from = g.start[i], to = g.start[i + 1], cnt = to - from;
        int rc = MC_OK, dummy, nref = 0;
        mc_sock *s;

        if ((g.adm[i] = mc_enter(m, c, i, g.adm[i], dl)) == ADM_REJECT) {
            for (size_t q = from; q < to; q++)
                res[g.pos[q]] = mc_combine(res[g.pos[q]], CACHET_EUNAVAILABLE, &dummy);
            continue;
        }
        for (size_t q = 0; q < cnt; q++) {
            out[q] = MC_EIO;                    /* not answered */
            /* over max_value_size: never sent, the old value deleted */
            refused[q] = is_set && items[g.pos[from + q]].len > m->max_value;
            if (refused[q]) {
                out[q] = MC_ETOOBIG;
                nref++;
            }
        }
        if ((s = mc_link(m, c, i, dl, &rc)) != NULL)
            rc = write_batches(m, s, items, g.pos, from, to, !is_set, nref ? refused : NULL,
                               out, dl);
        if (rc == MC_OK && is_set) {
            /* values the server refused (or we did) must not leave the old ones behind */
            nref = 0;
            for (size_t q = 0; q < cnt; q++)
                if (out[q] == MC_TOOBIG || out[q] == MC_SRVERR || out[q] == MC_ETOOBIG)
                    refused[q] = 0, nref++;
                else
                    refused[q] = 1;
            if (nref)
                rc = write_batches(m, s, items, g.pos, from, to, 1, refused, dout, dl);
        }
        for (size_t q = 0; q < cnt; q++) {
            size_t k = g.pos[from + q];
            int r = out[q];
            cachet_status ist;
            if (r == MC_OK || (r == MC_MISS && !is_set))
                ist = CACHET_OK;
            else if (r == MC_ETOOBIG)
                ist = cachet_backend_error(CACHET_ETOOBIG, "backend %s: %s: a value of %zu "
                                           "bytes is over max_value_size (%zu)", m->backend,
                                           what, items[k].len, m->max_value);
            else if (r == MC_EIO && rc != MC_OK)   /* unanswered: the message is below */
                ist = rc == MC_EPROTO || rc == MC_SRVERR ? CACHET_EBACKEND
                      : rc == MC_ENOMEM ? CACHET_ENOMEM : CACHET_EUNAVAILABLE;
            else
                ist = mc_error(m, c, i, r, what);
            if (ist == CACHET_OK)
                stored[k] = 1;
            res[k] = mc_combine(res[k], ist, &dummy);
        }
        mc_settle(m, c, i, g.adm[i], rc);
        if (rc != MC_OK)
            mc_error(m, c, i, rc, what);
    }
    mc_conn_put(m, c);
    for (size_t k = 0; k < n; k++) {
        /* stored on a live replica: the dead ones do not make it fail */
        items[k].status = (res[k] == CACHET_EUNAVAILABLE && stored[k]) ? CACHET_OK : res[k];
        if (!stored[k] && res[k] == CACHET_OK)
            items[k].status = CACHET_EUNAVAILABLE;
    }
    groups_free(&g);
    st = first_error(items, n);
    if (st != CACHET_OK)
        return cachet_backend_error(st, "backend %s: %s: %s", m->backend, what,
                                    st == CACHET_EUNAVAILABLE ? "some servers are down"
                                    : st == CACHET_ETOOBIG ? "a value is over the item size "
                                      "(not stored, old value deleted)"
                                    : st == CACHET_EBACKEND ? "a server answered wrongly or "
                                      "refused a write" : cachet_strerror(st));
    return CACHET_OK;
}

cachet_status mc_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    return write_multi(state, items, n, 1);
}

cachet_status mc_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    return write_multi(state, items, n, 0);
}
