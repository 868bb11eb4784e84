/* Single-key operations: get, set and delete, over the replicas of a key. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <stdlib.h>

/* ---- single-key operations ---- */

cachet_status mc_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = mc_placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status st = CACHET_EUNAVAILABLE;
    double now = mc_now_s();

    *value = NULL;
    *len = 0;
    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        int adm;
        memcached_return_t rc;
        memcached_st *h;
        uint32_t flags;
        char *v;

        if ((adm = mc_begin(m, &c, i, now, &st)) == ADM_NOCONN)
            return st;
        if (adm == ADM_REJECT)
            continue;                     /* st: this host is unavailable */
        if (!(h = mc_handle(m, c, i))) {
            mc_finish(m, i, adm, END_ABORT);
            mc_conn_put(m, c);
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        }
        v = memcached_get(h, key, klen, len, &flags, &rc);
        if (mc_settle(m, c, i, adm, rc) == END_FAIL) {
            free(v);
            *len = 0;
            st = mc_error(m, i, rc, "get");
            continue;                     /* the next replica, if any */
        }
        mc_conn_put(m, c);
        if (rc == MEMCACHED_SUCCESS) {
            if (!v && !(v = malloc(1)))
                return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory",
                                            m->backend);
            *value = v;
            return CACHET_OK;
        }
        free(v);
        *len = 0;
        if (rc == MEMCACHED_NOTFOUND)
            return CACHET_MISS;
        return mc_error(m, i, rc, "get");
    }
    mc_conn_put(m, c);
    return st;
}

/* One set on host i; handles E2BIG by deleting the old value. */
static cachet_status set_one(mc_inst *m, mc_conn *c, size_t i, int adm, const char *key,
                             size_t klen, const void *value, size_t len)
{
    memcached_st *h = mc_handle(m, c, i);
    memcached_return_t rc;

    if (!h) {
        mc_finish(m, i, adm, END_ABORT);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    rc = memcached_set(h, key, klen, value, len, (time_t)m->expire, 0);
    if (rc == MEMCACHED_E2BIG || rc == MEMCACHED_SERVER_ERROR) {
        /* the server refused the value: the old one must not stay behind */
        memcached_return_t drc = memcached_delete(h, key, klen, 0);
        mc_settle(m, c, i, adm, drc);
        if (rc == MEMCACHED_E2BIG)
            return cachet_backend_error(CACHET_ETOOBIG, "backend %s: value of %zu bytes is "
                                        "over %s's item size; not stored, old value deleted",
                                        m->backend, len, m->hosts[i].label);
        return mc_error(m, i, rc, "set");
    }
    mc_settle(m, c, i, adm, rc);
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED)
        return CACHET_OK;
    return mc_error(m, i, rc, "set");
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

cachet_status mc_set(void *state, const char *key, size_t klen, const void *value, size_t len)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = mc_placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status acc = CACHET_OK, st;
    int stored = 0;
    double now = mc_now_s();

    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        int adm = mc_begin(m, &c, i, now, &st);
        if (adm == ADM_NOCONN)
            return st;
        if (adm == ADM_REJECT) {
            acc = mc_combine(acc, st, &stored);
            continue;
        }
        acc = mc_combine(acc, set_one(m, c, i, adm, key, klen, value, len), &stored);
    }
    mc_conn_put(m, c);
    if (acc == CACHET_EUNAVAILABLE && stored)
        return CACHET_OK;
    return acc;
}

cachet_status mc_del(void *state, const char *key, size_t klen)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = mc_placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status acc = CACHET_OK, st;
    double now = mc_now_s();

    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        int adm;
        memcached_return_t rc;
        memcached_st *h;

        if ((adm = mc_begin(m, &c, i, now, &st)) == ADM_NOCONN)
            return st;
        if (adm == ADM_REJECT) {
            acc = st;
            continue;
        }
        if (!(h = mc_handle(m, c, i))) {
            mc_finish(m, i, adm, END_ABORT);
            acc = cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
            continue;
        }
        rc = memcached_delete(h, key, klen, 0);
        mc_settle(m, c, i, adm, rc);
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_DELETED && rc != MEMCACHED_NOTFOUND)
            acc = mc_error(m, i, rc, "delete");
    }
    mc_conn_put(m, c);
    return acc;
}
