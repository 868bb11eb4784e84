/* Single-key operations: get, set and delete, over the replicas of a key.
 * Each call has one deadline (socket_timeout from its start) for all of
 * its I/O; once it has passed, the remaining replicas are not tried (they
 * would time out at once and be marked dead for the first one's fault). */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <stdlib.h>
#include <time.h>

/* ---- single-key operations ---- */

cachet_status mc_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = mc_placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status st = CACHET_EUNAVAILABLE;
    double now = mc_now_s(), dl = now + m->socket_timeout;

    *value = NULL;
    *len = 0;
    for (size_t r = 0; r < n && (r == 0 || mc_now_s() < dl); r++) {
        size_t i = idx[r];
        int adm, rc, how;
        mc_sock *s;
        void *v = NULL;
        size_t vl = 0;

        if ((adm = mc_begin(m, &c, i, now, dl, &st)) == ADM_NOCONN)
            return st;
        if (adm == ADM_REJECT)
            continue;                     /* st: this host is unavailable */
        if ((s = mc_link(m, c, i, dl, &rc)) != NULL)
            rc = m->proto->get(s, key, klen, m->max_value, dl, &v, &vl, NULL);
        how = mc_settle(m, c, i, adm, rc);
        if (rc == MC_OK) {
            mc_conn_put(m, c);
            *value = v;
            *len = vl;
            return CACHET_OK;
        }
        if (rc == MC_MISS) {
            mc_conn_put(m, c);
            return CACHET_MISS;
        }
        st = mc_error(m, c, i, rc, "get");
        if (how == END_FAIL || how == END_TIMEOUT)
            continue;                     /* the next replica, if any */
        mc_conn_put(m, c);
        return st;
    }
    mc_conn_put(m, c);
    return st;
}

/* memcached's exptime for a write's ttl (0: memcached_expire_time): whole
 * seconds, rounded up so a value never goes before its time; over 30 days
 * memcached reads exptime as a Unix time, so those are sent as one. */
long mc_exptime(const mc_inst *m, double ttl)
{
    long secs;
    if (!(ttl > 0))
        ttl = (double)m->expire;      /* memcached_expire_time (0: none) */
    if (!(ttl > 0))
        return 0;
    secs = ttl >= 2e9 ? 2000000000L : (long)ttl;
    if ((double)secs < ttl)
        secs++;
    if (secs > 2592000L)
        secs += (long)time(NULL);
    return secs;
}

/* One set (or add) on host i; a value the server refuses has its old one
 * deleted.  add: CACHET_EXISTS when the server holds the key. */
static cachet_status set_one(mc_inst *m, mc_conn *c, size_t i, int adm, const char *key,
                             size_t klen, const void *value, size_t len, long exptime, int add,
                             double dl)
{
    int rc;
    mc_sock *s = mc_link(m, c, i, dl, &rc);

    if (s && (rc = m->proto->store_queue(s, add, key, klen, value, len, exptime, dl)) == MC_OK &&
        (rc = mc_sock_flush(s, dl)) == MC_OK)
        rc = m->proto->reply(s, dl);
    if (add && (rc == MC_NOTSTORED || rc == MC_EXISTS)) {
        mc_settle(m, c, i, adm, MC_OK);
        return CACHET_EXISTS;
    }
    if (rc == MC_TOOBIG || rc == MC_SRVERR) {
        /* the server refused the value: the old one must not stay behind */
        cachet_status st = mc_error(m, c, i, rc, "set");
        int drc = MC_EIO;
        if (rc == MC_SRVERR)
            mc_sock_close(s);      /* (after a refusal the stream is not trusted) */
        if ((s = mc_link(m, c, i, dl, &drc)) != NULL &&
            (drc = m->proto->del_queue(s, key, klen, 0)) == MC_OK &&
            (drc = mc_sock_flush(s, dl)) == MC_OK)
            drc = m->proto->reply(s, dl);
        mc_settle(m, c, i, adm, drc);
        if (rc == MC_TOOBIG)
            return cachet_backend_error(CACHET_ETOOBIG, "backend %s: value of %zu bytes is "
                                        "over %s's item size; not stored, old value deleted",
                                        m->backend, len, m->hosts[i].label);
        return st;
    }
    mc_settle(m, c, i, adm, rc);
    if (rc == MC_OK)
        return CACHET_OK;
    return mc_error(m, c, i, rc, "set");
}

/* The worst outcome of a write to several replicas: stored somewhere wins
 * over unavailable elsewhere, but a refused value is always reported. */
cachet_status mc_combine(cachet_status acc, cachet_status st, int *stored)
{
    if (st == CACHET_OK) {
        *stored = 1;
        return acc;
    }
    if (acc == CACHET_OK || (acc == CACHET_EUNAVAILABLE && st != CACHET_EUNAVAILABLE))
        return st;
    return acc;
}

cachet_status mc_set(void *state, const char *key, size_t klen, const void *value, size_t len,
                     double ttl)
{
    mc_inst *m = state;
    long exptime = mc_exptime(m, ttl);
    size_t idx[MAX_REPLICAS], n = mc_placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status acc = CACHET_OK, st;
    int stored = 0;
    double now = mc_now_s(), dl = now + m->socket_timeout;

    if (len > m->max_value) {
        /* never sent; as with a value the server refuses, the old one must go */
        mc_del(state, key, klen);
        return cachet_backend_error(CACHET_ETOOBIG, "backend %s: value of %zu bytes is over "
                                    "max_value_size (%zu): not sent, old value deleted",
                                    m->backend, len, m->max_value);
    }
    for (size_t r = 0; r < n && (r == 0 || mc_now_s() < dl); r++) {
        size_t i = idx[r];
        int adm = mc_begin(m, &c, i, now, dl, &st);
        if (adm == ADM_NOCONN)
            return st;
        if (adm == ADM_REJECT) {
            acc = mc_combine(acc, st, &stored);
            continue;
        }
        acc = mc_combine(acc, set_one(m, c, i, adm, key, klen, value, len, exptime, 0, dl),
                         &stored);
    }
    mc_conn_put(m, c);
    if (acc == CACHET_EUNAVAILABLE && stored)
        return CACHET_OK;
    return acc;
}

/* add: the first live replica decides (memcached's add is atomic there);
 * once it stored the value the other replicas get a plain set. */
cachet_status mc_add(void *state, const char *key, size_t klen, const void *value, size_t len,
                     double ttl)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = mc_placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status st = CACHET_EUNAVAILABLE, acc;
    long exptime = mc_exptime(m, ttl);
    double now = mc_now_s(), dl = now + m->socket_timeout;
    int decided = 0;

    if (len > m->max_value)
        return cachet_backend_error(CACHET_ETOOBIG, "backend %s: value of %zu bytes is over "
                                    "max_value_size (%zu): not sent", m->backend, len,
                                    m->max_value);
    for (size_t r = 0; r < n && (r == 0 || mc_now_s() < dl); r++) {
        size_t i = idx[r];
        int adm = mc_begin(m, &c, i, now, dl, &acc);
        if (adm == ADM_NOCONN)
            return acc;
        if (adm == ADM_REJECT) {
            if (!decided)
                st = acc;
            continue;
        }
        acc = set_one(m, c, i, adm, key, klen, value, len, exptime, !decided, dl);
        if (!decided) {
            st = acc;
            if (acc == CACHET_EXISTS || (acc != CACHET_OK && acc != CACHET_EUNAVAILABLE))
                break;
            decided = acc == CACHET_OK;
        }
    }
    mc_conn_put(m, c);
    return st;
}

cachet_status mc_del(void *state, const char *key, size_t klen)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = mc_placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status acc = CACHET_OK, st;
    double now = mc_now_s(), dl = now + m->socket_timeout;

    for (size_t r = 0; r < n && (r == 0 || mc_now_s() < dl); r++) {
        size_t i = idx[r];
        int adm, rc;
        mc_sock *s;

        if ((adm = mc_begin(m, &c, i, now, dl, &st)) == ADM_NOCONN)
            return st;
        if (adm == ADM_REJECT) {
            acc = st;
            continue;
        }
        if ((s = mc_link(m, c, i, dl, &rc)) != NULL &&
            (rc = m->proto->del_queue(s, key, klen, 0)) == MC_OK &&
            (rc = mc_sock_flush(s, dl)) == MC_OK)
            rc = m->proto->reply(s, dl);
        mc_settle(m, c, i, adm, rc);
        if (rc != MC_OK && rc != MC_MISS)
            acc = mc_error(m, c, i, rc, "delete");
    }
    mc_conn_put(m, c);
    return acc;
}
