/* Multi-key operations: one request per server. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* values up to this go through pipelined noreply sets; larger ones are sent
 * one by one so that the server's "too large" answer is seen */
#define PIPE_MAX_VALUE (1000u * 1000u)

/* ---- multi-key operations: one request per server ---- */

typedef struct {
    size_t *pos;        /* item index per (host, slot), grouped by host */
    size_t *start;      /* nhosts + 1 offsets into pos */
    int    *adm;        /* per host: -1 not asked yet, else ADM_* */
    int     probing;    /* this thread holds a probe of some host: wait on none */
    size_t *chosen;     /* get: the host each item goes to, SIZE_MAX: none */
} groups;

static void groups_free(groups *g)
{
    free(g->pos);
    free(g->start);
    free(g->adm);
    free(g->chosen);
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
 * the first live one (reads).  Items with no live host get EUNAVAILABLE. */
static cachet_status group(mc_inst *m, cachet_backend_item *items, size_t n, int all_replicas,
                           groups *g)
{
    size_t nh = m->nhosts, *count, total = 0;
    size_t (*pl)[MAX_REPLICAS + 1];

    memset(g, 0, sizeof *g);
    g->start = calloc(nh + 1, sizeof *g->start);
    g->adm = malloc(nh * sizeof *g->adm);
    count = calloc(nh, sizeof *count);
    pl = malloc((n ? n : 1) * sizeof *pl);
    if (!g->start || !g->adm || !count || !pl) {
        free(count);
        free(pl);
        groups_free(g);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    for (size_t i = 0; i < nh; i++)
        g->adm[i] = -1;
    for (size_t k = 0; k < n; k++) {
        size_t idx[MAX_REPLICAS], np = mc_placement(m, items[k].key, items[k].klen, idx), used = 0;
        for (size_t r = 0; r < np; r++) {
            if (!host_usable(m, g, idx[r]))
                continue;
            pl[k][1 + used++] = idx[r];
            count[idx[r]]++;
            total++;
            if (!all_replicas)
                break;
        }
        pl[k][0] = used;
        if (!used)
            items[k].status = mc_unavailable(m, idx[0]);
    }
    if (!(g->pos = malloc((total ? total : 1) * sizeof *g->pos))) {
        free(count);
        free(pl);
        groups_free(g);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    for (size_t i = 0; i < nh; i++)
        g->start[i + 1] = g->start[i] + count[i];
    memset(count, 0, nh * sizeof *count);
    for (size_t k = 0; k < n; k++)
        for (size_t u = 0; u < pl[k][0]; u++) {
            size_t i = pl[k][1 + u];
            g->pos[g->start[i] + count[i]++] = k;
        }
    free(count);
    free(pl);
    return CACHET_OK;
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

cachet_status mc_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    mc_inst *m = state;
    groups g;
    mc_conn *c = NULL;
    size_t *order = NULL, nord, maxslice = 0;
    const char **keys = NULL;
    size_t *klens = NULL;
    int *sent = NULL;
    cachet_status st;

    if (n == 0)
        return CACHET_OK;
    for (size_t k = 0; k < n; k++) {
        items[k].value = NULL;
        items[k].len = 0;
        items[k].status = CACHET_MISS;
    }
    /* the connection first: waiting for it must not count as in flight */
    if ((st = mc_conn_get(m, &c)) != CACHET_OK || (st = group(m, items, n, 0, &g)) != CACHET_OK) {
        mc_conn_put(m, c);
        for (size_t k = 0; k < n; k++)
            items[k].status = st;
        return st;
    }
    order = malloc(m->nhosts * sizeof *order);
    sent = calloc(m->nhosts, sizeof *sent);
    for (size_t i = 0; i < m->nhosts; i++)
        if (g.start[i + 1] - g.start[i] > maxslice)
            maxslice = g.start[i + 1] - g.start[i];
    keys = malloc((maxslice ? maxslice : 1) * sizeof *keys);
    klens = malloc((maxslice ? maxslice : 1) * sizeof *klens);
    nord = order ? host_order(m, &g, order) : 0;
    if (!order || !sent || !keys || !klens) {
        st = cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        goto abort_all;
    }
    /* 1. send every server its request */
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], cnt = 0;
        memcached_st *h;
        memcached_return_t rc;
        if ((g.adm[i] = mc_enter(m, c, i, g.adm[i])) == ADM_REJECT) {
            slice_status(&g, items, i, mc_unavailable(m, i));
            continue;
        }
        if (!(h = mc_handle(m, c, i))) {
            mc_finish(m, i, g.adm[i], END_ABORT);
            slice_status(&g, items, i, CACHET_ENOMEM);
            continue;
        }
        for (size_t s = g.start[i]; s < g.start[i + 1]; s++) {
            keys[cnt] = items[g.pos[s]].key;
            klens[cnt++] = items[g.pos[s]].klen;
        }
        rc = memcached_mget(h, keys, klens, cnt);
        if (rc != MEMCACHED_SUCCESS && mc_is_conn_failure(rc)) {
            mc_settle(m, c, i, g.adm[i], rc);
            slice_status(&g, items, i, mc_error(m, i, rc, "get_multi"));
            continue;
        }
        sent[i] = 1;
    }
    /* 2. read the answers, server by server (they are already on their way) */
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], cursor = g.start[i];
        memcached_st *h = c->srv[i];
        memcached_result_st res, *rp;
        memcached_return_t rc = MEMCACHED_SUCCESS, last = MEMCACHED_END;
        if (!sent[i])
            continue;
        if (!memcached_result_create(h, &res)) {
            /* cannot read: drop the handle rather than leave answers queued */
            mc_handle_drop(c, i);
            mc_finish(m, i, g.adm[i], END_ABORT);
            slice_status(&g, items, i, CACHET_ENOMEM);
            continue;
        }
        while ((rp = memcached_fetch_result(h, &res, &rc)) != NULL) {
            const char *rk = memcached_result_key_value(rp);
            size_t rkl = memcached_result_key_length(rp), hit = SIZE_MAX;
            /* answers come in request order: search from the cursor, then wrap */
            for (size_t s = cursor; s < g.start[i + 1] && hit == SIZE_MAX; s++) {
                cachet_backend_item *it = &items[g.pos[s]];
                if (it->klen == rkl && !it->value && memcmp(it->key, rk, rkl) == 0)
                    hit = s;
            }
            for (size_t s = g.start[i]; s < cursor && hit == SIZE_MAX; s++) {
                cachet_backend_item *it = &items[g.pos[s]];
                if (it->klen == rkl && !it->value && memcmp(it->key, rk, rkl) == 0)
                    hit = s;
            }
            if (hit == SIZE_MAX)
                continue;
            cursor = hit + 1;
            {
                cachet_backend_item *it = &items[g.pos[hit]];
                size_t vl = memcached_result_length(rp);
                void *v = malloc(vl ? vl : 1);
                if (!v) {
                    it->status = CACHET_ENOMEM;
                    continue;
                }
                memcpy(v, memcached_result_value(rp), vl);
                it->value = v;
                it->len = vl;
                it->status = CACHET_OK;
            }
        }
        memcached_result_free(&res);
        last = rc;
        if (last == MEMCACHED_END || last == MEMCACHED_NOTFOUND || last == MEMCACHED_SUCCESS) {
            mc_finish(m, i, g.adm[i], END_OK);
        } else {
            cachet_status est;
            int how = mc_settle(m, c, i, g.adm[i], last);
            est = mc_error(m, i, last, "get_multi");
            /* answers that arrived are kept; the rest of this server's keys failed */
            for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
                if (items[g.pos[s]].status == CACHET_MISS)
                    items[g.pos[s]].status = how == END_FAIL ? est : CACHET_EBACKEND;
        }
    }
    mc_conn_put(m, c);
    free(order);
    free(sent);
    free(keys);
    free(klens);
    groups_free(&g);
    if ((st = first_error(items, n)) != CACHET_OK) {
        for (size_t k = 0; k < n; k++)
            if (items[k].status == st)
                return st == CACHET_EUNAVAILABLE
                       ? cachet_backend_error(st, "backend %s: get_multi: some servers are down",
                                              m->backend)
                       : cachet_backend_error(st, "backend %s: get_multi failed: %s",
                                              m->backend, cachet_strerror(st));
    }
    return CACHET_OK;

abort_all:
    for (size_t i = 0; i < m->nhosts; i++)
        if (g.adm[i] > ADM_REJECT)
            mc_finish(m, i, g.adm[i], END_ABORT);
    for (size_t k = 0; k < n; k++)
        if (items[k].status == CACHET_MISS)
            items[k].status = st;
    free(order);
    free(sent);
    free(keys);
    free(klens);
    groups_free(&g);
    mc_conn_put(m, c);
    return st;
}

/* set_multi and delete_multi: per server, every item but the last goes as
 * a noreply command (written, not waited for); the last one is an ordinary
 * command whose answer confirms that the server read the lot.  Values too
 * big to be sure of go one by one, to see the server's refusal. */
static cachet_status write_multi(mc_inst *m, cachet_backend_item *items, size_t n, int is_set)
{
    groups g;
    mc_conn *c = NULL;
    size_t *order = NULL, nord;
    cachet_status *res = NULL, st;
    unsigned char *stored = NULL;
    const char *what = is_set ? "set_multi" : "delete_multi";

    if (n == 0)
        return CACHET_OK;
    for (size_t k = 0; k < n; k++)
        items[k].status = CACHET_OK;
    if ((st = mc_conn_get(m, &c)) != CACHET_OK || (st = group(m, items, n, 1, &g)) != CACHET_OK) {
        mc_conn_put(m, c);
        for (size_t k = 0; k < n; k++)
            items[k].status = st;
        return st;
    }
    order = malloc(m->nhosts * sizeof *order);
    res = malloc(n * sizeof *res);
    stored = calloc(n, 1);
    nord = order ? host_order(m, &g, order) : 0;
    if (!order || !res || !stored) {
        st = cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        goto abort_all;
    }
    /* res: the combined outcome over replicas; unavailable ones were set by group() */
    for (size_t k = 0; k < n; k++)
        res[k] = items[k].status;
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], last_small = SIZE_MAX;
        memcached_st *h;
        memcached_return_t rc = MEMCACHED_SUCCESS;
        int failed = 0, dummy;

        if ((g.adm[i] = mc_enter(m, c, i, g.adm[i])) == ADM_REJECT) {
            for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
                res[g.pos[s]] = mc_combine(res[g.pos[s]], CACHET_EUNAVAILABLE, &dummy);
            continue;
        }
        if (!(h = mc_handle(m, c, i))) {
            mc_finish(m, i, g.adm[i], END_ABORT);
            for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
                res[g.pos[s]] = mc_combine(res[g.pos[s]], CACHET_ENOMEM, &dummy);
            continue;
        }
        for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
            if (!is_set || items[g.pos[s]].len <= PIPE_MAX_VALUE)
                last_small = s;
        /* the pipelined part */
        if (last_small != SIZE_MAX && last_small > g.start[i]) {
            memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NOREPLY, 1);
            for (size_t s = g.start[i]; s < last_small && !failed; s++) {
                cachet_backend_item *it = &items[g.pos[s]];
                if (is_set && it->len > PIPE_MAX_VALUE)
                    continue;
                rc = is_set ? memcached_set(h, it->key, it->klen, it->value, it->len,
                                            (time_t)m->expire, 0)
                            : memcached_delete(h, it->key, it->klen, 0);
                failed = mc_is_conn_failure(rc);
            }
            memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NOREPLY, 0);
        }
        /* the confirming command, then the big values one by one */
        if (!failed && last_small != SIZE_MAX) {
            cachet_backend_item *it = &items[g.pos[last_small]];
            rc = is_set ? memcached_set(h, it->key, it->klen, it->value, it->len,
                                        (time_t)m->expire, 0)
                        : memcached_delete(h, it->key, it->klen, 0);
            failed = mc_is_conn_failure(rc);
            if (!failed && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_STORED &&
                rc != MEMCACHED_DELETED && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_E2BIG)
                res[g.pos[last_small]] = mc_combine(res[g.pos[last_small]],
                                                    mc_error(m, i, rc, what), &dummy);
            else if (rc == MEMCACHED_E2BIG) {
                memcached_delete(h, it->key, it->klen, 0);
                res[g.pos[last_small]] = mc_combine(res[g.pos[last_small]], CACHET_ETOOBIG, &dummy);
            }
        }
        for (size_t s = g.start[i]; s < g.start[i + 1] && !failed && is_set; s++) {
            cachet_backend_item *it = &items[g.pos[s]];
            if (it->len <= PIPE_MAX_VALUE)
                continue;
            rc = memcached_set(h, it->key, it->klen, it->value, it->len, (time_t)m->expire, 0);
            if (rc == MEMCACHED_E2BIG || rc == MEMCACHED_SERVER_ERROR) {
                memcached_return_t drc = memcached_delete(h, it->key, it->klen, 0);
                res[g.pos[s]] = mc_combine(res[g.pos[s]], mc_error(m, i, rc, what), &dummy);
                if (mc_is_conn_failure(drc))
                    rc = drc;
            } else if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_STORED &&
                       !mc_is_conn_failure(rc)) {
                res[g.pos[s]] = mc_combine(res[g.pos[s]], mc_error(m, i, rc, what), &dummy);
            }
            failed = mc_is_conn_failure(rc);
        }
        mc_settle(m, c, i, g.adm[i], failed ? rc : MEMCACHED_SUCCESS);
        for (size_t s = g.start[i]; s < g.start[i + 1]; s++) {
            size_t k = g.pos[s];
            if (failed)
                res[k] = mc_combine(res[k], CACHET_EUNAVAILABLE, &dummy);
            else if (res[k] == CACHET_OK || res[k] == CACHET_EUNAVAILABLE)
                stored[k] = 1;
        }
        if (failed)
            mc_error(m, i, rc, what);
    }
    mc_conn_put(m, c);
    for (size_t k = 0; k < n; k++) {
        /* stored on a live replica: the dead ones do not make it fail */
        items[k].status = (res[k] == CACHET_EUNAVAILABLE && stored[k]) ? CACHET_OK : res[k];
        if (!stored[k] && res[k] == CACHET_OK)
            items[k].status = CACHET_EUNAVAILABLE;
    }
    free(order);
    free(res);
    free(stored);
    groups_free(&g);
    st = first_error(items, n);
    if (st != CACHET_OK)
        return cachet_backend_error(st, "backend %s: %s: %s", m->backend, what,
                                    st == CACHET_EUNAVAILABLE ? "some servers are down"
                                    : st == CACHET_ETOOBIG ? "a value is over the item size "
                                      "(not stored, old value deleted)"
                                    : cachet_strerror(st));
    return CACHET_OK;

abort_all:
    for (size_t i = 0; i < m->nhosts; i++)
        if (g.adm[i] > ADM_REJECT)
            mc_finish(m, i, g.adm[i], END_ABORT);
    for (size_t k = 0; k < n; k++)
        items[k].status = st;
    free(order);
    free(res);
    free(stored);
    groups_free(&g);
    mc_conn_put(m, c);
    return st;
}

cachet_status mc_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    return write_multi(state, items, n, 1);
}

cachet_status mc_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    return write_multi(state, items, n, 0);
}
