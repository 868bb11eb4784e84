/* The distributed lock on memcached. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* ---- the distributed lock: add with a token, release only by the owner ---- */

static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    while (n--)
        h = (h ^ (unsigned char)*p++) * 0x100000001b3ULL;
    return h;
}

/* "<key>.lock", or for keys near the limit, a prefix and a hash of the key. */
static size_t lock_key(const char *key, size_t klen, char *out)
{
    if (klen + 5 <= MAX_KEY) {
        memcpy(out, key, klen);
        memcpy(out + klen, ".lock", 5);
        return klen + 5;
    }
    memcpy(out, key, 200);
    return 200 + (size_t)snprintf(out + 200, 40, ".lock.%016llx",
                                  (unsigned long long)fnv1a64(key, klen));
}

/* One single-key command on the lock key's server, through the host table. */
typedef memcached_return_t (*lock_cmd)(memcached_st *h, const char *lk, size_t lkl, void *arg);

static cachet_status lock_op(mc_inst *m, const char *lk, size_t lkl, lock_cmd cmd, void *arg,
                             memcached_return_t *rcp)
{
    size_t i = m->nhosts == 1 ? 0 : memcached_generate_hash(m->ring, lk, lkl);
    int adm;
    mc_conn *c = NULL;
    memcached_st *h;
    cachet_status st;

    if (i >= m->nhosts)
        i = 0;
    if ((adm = mc_begin(m, &c, i, mc_now_s(), &st)) == ADM_NOCONN)
        return st;
    if (adm == ADM_REJECT) {
        mc_conn_put(m, c);               /* NULL when the host was refused at once */
        return st;
    }
    if (!(h = mc_handle(m, c, i))) {
        mc_finish(m, i, adm, END_ABORT);
        mc_conn_put(m, c);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    *rcp = cmd(h, lk, lkl, arg);
    mc_settle(m, c, i, adm, *rcp);
    mc_conn_put(m, c);
    if (mc_is_conn_failure(*rcp))
        return mc_error(m, i, *rcp, "lock");
    return CACHET_OK;
}

typedef struct {
    mc_inst    *m;
    const char *token;
} lock_arg;

static memcached_return_t cmd_add(memcached_st *h, const char *lk, size_t lkl, void *arg)
{
    lock_arg *a = arg;
    return memcached_add(h, lk, lkl, a->token, strlen(a->token), (time_t)a->m->lock_timeout, 0);
}

/* Deletes the lock if it still holds our token (gets, compare, delete:
 * memcached has no compare-and-delete, so a lock that expired and was taken
 * by another in between the get and the delete is the remaining window). */
static memcached_return_t cmd_release(memcached_st *h, const char *lk, size_t lkl, void *arg)
{
    lock_arg *a = arg;
    size_t vl;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(h, lk, lkl, &vl, &flags, &rc);
    int mine = rc == MEMCACHED_SUCCESS && v && vl == strlen(a->token) &&
               memcmp(v, a->token, vl) == 0;
    free(v);
    if (!mine)
        return rc == MEMCACHED_SUCCESS ? MEMCACHED_NOTFOUND : rc;
    return memcached_delete(h, lk, lkl, 0);
}

cachet_status mc_lock(void *state, const char *key, size_t klen, void **token)
{
    mc_inst *m = state;
    char lk[MAX_KEY + 64], tok[80];
    unsigned char rnd[12];
    size_t lkl;
    memcached_return_t rc = MEMCACHED_SUCCESS;
    lock_arg a = {m, tok};
    cachet_status st;
    uint64_t seq;

    if (!m->dist_lock)
        return CACHET_ENOTSUP;   /* turned off: the region's in-process lock only */
    lkl = lock_key(key, klen, lk);
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    seq = __atomic_add_fetch(&m->lock_seq, 1, __ATOMIC_RELAXED);
    snprintf(tok, sizeof tok, "%ld.%llu.%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x",
             (long)getpid(), (unsigned long long)seq, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
             rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11]);
    if ((st = lock_op(m, lk, lkl, cmd_add, &a, &rc)) != CACHET_OK)
        return st;
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
        return CACHET_MISS;
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_STORED)
        return cachet_backend_error(CACHET_EBACKEND, "backend %s: lock: %s", m->backend,
                                    memcached_strerror(NULL, rc));
    if (!(*token = strdup(tok))) {
        memcached_return_t drc;
        lock_op(m, lk, lkl, cmd_release, &a, &drc);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    return CACHET_OK;
}

cachet_status mc_unlock(void *state, const char *key, size_t klen, void *token)
{
    mc_inst *m = state;
    char lk[MAX_KEY + 64];
    size_t lkl;
    memcached_return_t rc = MEMCACHED_SUCCESS;
    lock_arg a = {m, token};
    cachet_status st;

    if (!token)
        return CACHET_OK;
    lkl = lock_key(key, klen, lk);
    st = lock_op(m, lk, lkl, cmd_release, &a, &rc);
    free(token);
    return st;
}
