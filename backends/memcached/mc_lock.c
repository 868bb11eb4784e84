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
typedef int (*lock_cmd)(mc_inst *m, mc_sock *s, const char *lk, size_t lkl, const char *token,
                        double dl);

static cachet_status lock_op(mc_inst *m, const char *lk, size_t lkl, lock_cmd cmd,
                             const char *token, int *rcp)
{
    size_t i = m->nhosts == 1 ? 0 : memcached_generate_hash(m->ring, lk, lkl);
    int adm, rc;
    mc_conn *c = NULL;
    mc_sock *s;
    cachet_status st = CACHET_OK;
    double now = mc_now_s(), dl = now + m->socket_timeout;

    if (i >= m->nhosts)
        i = 0;
    if ((adm = mc_begin(m, &c, i, now, dl, &st)) == ADM_NOCONN)
        return st;
    if (adm == ADM_REJECT) {
        mc_conn_put(m, c);               /* NULL when the host was refused at once */
        return st;
    }
    if ((s = mc_link(m, c, i, dl, &rc)) != NULL)
        rc = cmd(m, s, lk, lkl, token, dl);
    mc_settle(m, c, i, adm, rc);
    if (rc < 0 || rc == MC_SRVERR)
        st = mc_error(m, c, i, rc, "lock");
    mc_conn_put(m, c);
    *rcp = rc;
    return st;
}

/* memcached's clock ticks in whole seconds, and an item added at x.9 s
 * with exptime 1 is gone at (x+1).0: the lock would vanish 100 ms after it
 * was taken.  So ceil(lock_timeout) + 1 s: it never expires before
 * lock_timeout has passed (0: never expires, as in dogpile). */
static long lock_exptime(double lock_timeout)
{
    long whole = (long)lock_timeout;
    if (lock_timeout <= 0)
        return 0;
    return (whole < lock_timeout ? whole + 1 : whole) + 1;
}

static int cmd_add(mc_inst *m, mc_sock *s, const char *lk, size_t lkl, const char *token,
                   double dl)
{
    int rc = m->proto->store_queue(s, 1, lk, lkl, token, strlen(token),
                                   lock_exptime(m->lock_timeout), dl);
    if (rc == MC_OK && (rc = mc_sock_flush(s, dl)) == MC_OK)
        rc = m->proto->reply(s, dl);
    return rc;
}

/* Deletes the lock if it still holds our token.  Binary protocol: the
 * DELETE carries the CAS the GET saw, so the server deletes only the item
 * we compared (atomic).  Text: gets, compare, delete (memcached has no
 * compare-and-delete in it): a lock that expired and was taken by another
 * between the gets and the delete is the remaining window. */
static int cmd_release(mc_inst *m, mc_sock *s, const char *lk, size_t lkl, const char *token,
                       double dl)
{
    void *v = NULL;
    size_t vl = 0;
    uint64_t cas = 0;
    int rc = m->proto->get(s, lk, lkl, 1024, dl, &v, &vl, &cas);
    int mine = rc == MC_OK && vl == strlen(token) && memcmp(v, token, vl) == 0;
    free(v);
    if (!mine)
        return rc == MC_OK ? MC_MISS : rc;
    if ((rc = m->proto->del_queue(s, lk, lkl, m->binary ? cas : 0)) == MC_OK &&
        (rc = mc_sock_flush(s, dl)) == MC_OK)
        rc = m->proto->reply(s, dl);
    return rc == MC_EXISTS ? MC_MISS : rc;   /* (changed since the get: not ours any more) */
}

cachet_status mc_lock(void *state, const char *key, size_t klen, void **token)
{
    mc_inst *m = state;
    char lk[MAX_KEY + 64], tok[80];
    unsigned char rnd[12];
    size_t lkl;
    int rc = MC_OK;
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
    if ((st = lock_op(m, lk, lkl, cmd_add, tok, &rc)) != CACHET_OK)
        return st;
    if (rc == MC_NOTSTORED || rc == MC_EXISTS)
        return CACHET_MISS;
    if (rc != MC_OK)
        return cachet_backend_error(CACHET_EBACKEND, "backend %s: lock: unexpected outcome %d",
                                    m->backend, rc);
    if (!(*token = strdup(tok))) {
        int drc;
        lock_op(m, lk, lkl, cmd_release, tok, &drc);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    return CACHET_OK;
}

cachet_status mc_unlock(void *state, const char *key, size_t klen, void *token)
{
    mc_inst *m = state;
    char lk[MAX_KEY + 64];
    size_t lkl;
    int rc = MC_OK;
    cachet_status st;

    if (!token)
        return CACHET_OK;
    lkl = lock_key(key, klen, lk);
    st = lock_op(m, lk, lkl, cmd_release, token, &rc);
    free(token);
    return st;
}
