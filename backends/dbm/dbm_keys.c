/* Reading and writing keys: get/set/del, and the multi-operations that
 * do many keys under one lock hold with one handle. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdlib.h>
#include "dbm_internal.h"

/* ---- single-key operations ---- */

static int too_big(size_t klen, size_t len)
{
    return klen > INT_MAX || len > INT_MAX;
}

static cachet_status too_big_error(size_t klen, size_t len)
{
    return cachet_backend_error(CACHET_ETOOBIG, "backend " BACKEND ": key of %zu bytes or value "
                                "of %zu bytes is over gdbm's limit of %d; not stored", klen, len,
                                INT_MAX);
}

static datum mkdatum(const void *p, size_t n)
{
    datum x;
    x.dptr = n ? (char *)p : (char *)"";    /* gdbm refuses a NULL pointer */
    x.dsize = (int)n;
    return x;
}

typedef struct {
    const char *key;
    size_t      klen;
    const void *in;
    size_t      inlen;
    void      **out;
    size_t     *outlen;
} one_arg;

/* Fetches key: CACHET_OK (value from malloc), CACHET_MISS, or an error. */
static cachet_status fetch(dbm *d, const char *key, size_t klen, void **value, size_t *len)
{
    datum v;

    *value = NULL;
    *len = 0;
    if (klen > INT_MAX)
        return CACHET_MISS;
    v = gdbm_fetch(d->db, mkdatum(key, klen));
    if (!v.dptr) {
        int ec = gdbm_last_errno(d->db);
        if (ec == GDBM_ITEM_NOT_FOUND || ec == GDBM_NO_ERROR)
            return CACHET_MISS;
        return dbm_db_error(d, "cannot read");
    }
    /* gdbm_fetch allocates exactly dsize: room for the NUL every value
     * handed out ends in */
    {
        char *nb = realloc(v.dptr, (size_t)v.dsize + 1);
        if (!nb) {
            free(v.dptr);
            return cachet_backend_error(CACHET_ENOMEM, "backend dbm: out of memory");
        }
        nb[v.dsize] = '\0';
        v.dptr = nb;
    }
    *value = v.dptr;
    *len = (size_t)v.dsize;
    return CACHET_OK;
}

static cachet_status op_get(dbm *d, void *arg)
{
    one_arg *a = arg;
    if (!a)
        return CACHET_MISS;         /* no file yet */
    return fetch(d, a->key, a->klen, a->out, a->outlen);
}

static cachet_status op_set(dbm *d, void *arg)
{
    one_arg *a = arg;
    cachet_status st;
    if ((st = dbm_mark_dirty(d)) != CACHET_OK)
        return st;
    if (gdbm_store(d->db, mkdatum(a->key, a->klen), mkdatum(a->in, a->inlen), GDBM_REPLACE) != 0)
        return dbm_db_error(d, "cannot write");
    return CACHET_OK;
}

/* gdbm_store with GDBM_INSERT refuses a key that is there (returns 1):
 * the check and the store are one write under the file's writer lock, so
 * add is atomic across processes. */
static cachet_status op_add(dbm *d, void *arg)
{
    one_arg *a = arg;
    cachet_status st;
    int r;
    if ((st = dbm_mark_dirty(d)) != CACHET_OK)
        return st;
    r = gdbm_store(d->db, mkdatum(a->key, a->klen), mkdatum(a->in, a->inlen), GDBM_INSERT);
    if (r == 1)
        return CACHET_EXISTS;
    if (r != 0)
        return dbm_db_error(d, "cannot write");
    return CACHET_OK;
}

static cachet_status remove_key(dbm *d, const char *key, size_t klen)
{
    if (klen > INT_MAX)
        return CACHET_OK;
    if (gdbm_delete(d->db, mkdatum(key, klen)) != 0) {
        int ec = gdbm_last_errno(d->db);
        if (ec != GDBM_ITEM_NOT_FOUND && ec != GDBM_NO_ERROR)
            return dbm_db_error(d, "cannot delete from");
    }
    return CACHET_OK;
}

static cachet_status op_del(dbm *d, void *arg)
{
    one_arg *a = arg;
    cachet_status st;
    if ((st = dbm_mark_dirty(d)) != CACHET_OK)
        return st;
    return remove_key(d, a->key, a->klen);
}

static void undo_get(void *arg)
{
    one_arg *a = arg;
    free(*a->out);
    *a->out = NULL;
    *a->outlen = 0;
}

cachet_status dbm_get(void *state, const char *key, size_t klen, void **value,
                      size_t *len)
{
    one_arg a = {key, klen, NULL, 0, value, len};
    cachet_status st;
    *value = NULL;
    *len = 0;
    if (dbm_read_unlocked(state, op_get, undo_get, &a, &st))
        return st;
    return dbm_run_read(state, op_get, undo_get, &a);
}

/* ttl: dbm has no server-side expiry; the region's value header carries
 * the lifetime, and cachet_compact's sweep reclaims expired values. */
cachet_status dbm_set(void *state, const char *key, size_t klen, const void *value,
                      size_t len, double ttl)
{
    (void)ttl;
    one_arg a = {key, klen, value, len, NULL, NULL};
    if (too_big(klen, len)) {
        /* never leave an older value behind a refused one */
        dbm_run(state, 1, op_del, &a);
        return too_big_error(klen, len);
    }
    return dbm_run(state, 1, op_set, &a);
}

cachet_status dbm_add(void *state, const char *key, size_t klen, const void *value,
                      size_t len, double ttl)
{
    one_arg a = {key, klen, value, len, NULL, NULL};
    (void)ttl;
    if (too_big(klen, len))
        return too_big_error(klen, len);
    return dbm_run(state, 1, op_add, &a);
}

cachet_status dbm_del(void *state, const char *key, size_t klen)
{
    one_arg a = {key, klen, NULL, 0, NULL, NULL};
    return dbm_run(state, 1, op_del, &a);
}

/* ---- multi-operations: one lock hold, one handle ---- */

typedef struct {
    cachet_backend_item *items;
    size_t n;
} multi_arg;

static cachet_status first_error(cachet_backend_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].status < 0)
            return items[i].status;
    return CACHET_OK;
}

/* Fills every item; a missing file (arg NULL) leaves them all misses.  An
 * item not reached keeps CACHET_ENOTSUP, which get never returns. */
static cachet_status op_fill(dbm *d, void *arg)
{
    multi_arg *m = arg;
    cachet_status st = CACHET_OK;
    if (!m)
        return CACHET_MISS;
    for (size_t i = 0; i < m->n; i++) {
        cachet_backend_item *it = &m->items[i];
        free(it->value);                /* from an attempt before a recreate */
        it->value = NULL;
        it->status = fetch(d, it->key, it->klen, &it->value, &it->len);
        if (it->status == CACHET_ECORRUPT)
            return CACHET_ECORRUPT;    /* start over (recreate) or report */
        if (it->status < 0 && st == CACHET_OK)
            st = it->status;
    }
    return st;
}

static void undo_fill(void *arg)
{
    multi_arg *m = arg;
    for (size_t i = 0; i < m->n; i++) {
        free(m->items[i].value);
        m->items[i].value = NULL;
        m->items[i].len = 0;
        m->items[i].status = CACHET_ENOTSUP;
    }
}

cachet_status dbm_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    multi_arg m = {items, n};
    cachet_status st;

    for (size_t i = 0; i < n; i++) {
        items[i].value = NULL;
        items[i].len = 0;
        items[i].status = CACHET_ENOTSUP;
    }
    /* like a get: without the lock while no other process writes */
    if (!dbm_read_unlocked(state, op_fill, undo_fill, &m, &st))
        st = dbm_run_read(state, op_fill, undo_fill, &m);
    if (st == CACHET_MISS)
        st = CACHET_OK;
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CACHET_ENOTSUP)
            items[i].status = st < 0 ? st : CACHET_MISS;
    return st;
}

static cachet_status op_store_all(dbm *d, void *arg)
{
    multi_arg *m = arg;
    cachet_status st = dbm_mark_dirty(d);
    if (st != CACHET_OK)
        return st;
    for (size_t i = 0; i < m->n; i++) {
        cachet_backend_item *it = &m->items[i];
        if (too_big(it->klen, it->len)) {
            it->status = remove_key(d, it->key, it->klen);
            if (it->status == CACHET_OK)
                it->status = CACHET_ETOOBIG;
        } else if (gdbm_store(d->db, mkdatum(it->key, it->klen), mkdatum(it->value, it->len),
                              GDBM_REPLACE) != 0) {
            return it->status = dbm_db_error(d, "cannot write");
        } else {
            it->status = CACHET_OK;
        }
        if (it->status < 0 && it->status != CACHET_ETOOBIG)
            return it->status;
    }
    return CACHET_OK;
}

cachet_status dbm_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    multi_arg m = {items, n};
    cachet_status st;
    for (size_t i = 0; i < n; i++)
        items[i].status = CACHET_EBACKEND;      /* until stored */
    st = dbm_run(state, 1, op_store_all, &m);
    if (st != CACHET_OK) {
        for (size_t i = 0; i < n; i++)
            if (items[i].status == CACHET_EBACKEND)
                items[i].status = st;
        return st;
    }
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CACHET_ETOOBIG)
            return too_big_error(items[i].klen, items[i].len);
    return first_error(items, n);
}

static cachet_status op_delete_all(dbm *d, void *arg)
{
    multi_arg *m = arg;
    cachet_status st = dbm_mark_dirty(d);
    if (st != CACHET_OK)
        return st;
    for (size_t i = 0; i < m->n; i++)
        if ((m->items[i].status = remove_key(d, m->items[i].key, m->items[i].klen)) != CACHET_OK)
            return m->items[i].status;
    return CACHET_OK;
}

cachet_status dbm_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    multi_arg m = {items, n};
    cachet_status st;
    for (size_t i = 0; i < n; i++)
        items[i].status = CACHET_EBACKEND;
    st = dbm_run(state, 1, op_delete_all, &m);
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CACHET_EBACKEND)
            items[i].status = st == CACHET_OK ? CACHET_OK : st;
    return st;
}
