/* The ring and key placement (libmemcached's hashing, nothing else of it),
 * the connection sets (per thread, or pooled) an operation gets its
 * connections from, and the link from a connection set to a host. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the ring ---- */

static memcached_return_t add_server(memcached_st *mc, const mc_host *h)
{
    if (h->port == 0)
        return memcached_server_add_unix_socket_with_weight(mc, h->name, h->weight);
    return memcached_server_add_with_weight(mc, h->name, h->port, h->weight);
}

/* The ring: every server, for memcached_generate_hash only. */
cachet_status mc_ring_new(mc_inst *m, const char *distribution)
{
    memcached_st *mc = memcached_create(NULL);
    if (!mc)
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    /* the distribution first: servers added before it land on another ring */
    if (strcmp(distribution, "ketama") == 0 || strcmp(distribution, "consistent") == 0)
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    else
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_MODULA);
    for (size_t i = 0; i < m->nhosts; i++)
        if (add_server(mc, &m->hosts[i]) != MEMCACHED_SUCCESS) {
            memcached_free(mc);
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: cannot use server %s",
                                        m->backend, m->hosts[i].label);
        }
    m->ring = mc;
    return CACHET_OK;
}

/* The hosts a key lives on: the ring's choice first, then replicas chosen
 * by hashing the key with a suffix (so they move as little as the primary
 * when servers come and go), distinct, falling back to list order. */
/* python-memcache's Client._get_server (what keystonemiddleware and
 * oslo.cache's memcache_pool use): cmemcache_hash -- libmemcached's CRC
 * hash, except that 0 becomes 1 -- modulo a bucket list holding each
 * server weight times, in list order.  (Its rehash past a dead server is
 * not followed: a dead server's keys are misses here.) */
static size_t py_placement(const mc_inst *m, const char *key, size_t klen)
{
    uint32_t h = memcached_generate_hash_value(key, klen, MEMCACHED_HASH_CRC);
    uint64_t total = 0, b;
    for (size_t i = 0; i < m->nhosts; i++)
        total += m->hosts[i].weight ? m->hosts[i].weight : 1;
    b = (uint64_t)(h ? h : 1) % total;
    for (size_t i = 0; i < m->nhosts; i++) {
        uint64_t w = m->hosts[i].weight ? m->hosts[i].weight : 1;
        if (b < w)
            return i;
        b -= w;
    }
    return 0;
}

size_t mc_placement(const mc_inst *m, const char *key, size_t klen, size_t *idx)
{
    size_t n = 1;
    idx[0] = m->nhosts == 1 ? 0 : m->py_placement ? py_placement(m, key, klen)
                                                  : memcached_generate_hash(m->ring, key, klen);
    if (idx[0] >= m->nhosts)
        idx[0] = 0;
    if (m->replicas > 1) {
        char buf[MAX_KEY + 16];
        size_t kl = klen > MAX_KEY ? MAX_KEY : klen;
        memcpy(buf, key, kl);
        for (int r = 1; r < m->replicas; r++) {
            size_t pick = SIZE_MAX;
            for (int attempt = 0; attempt < 8 && pick == SIZE_MAX; attempt++) {
                int bl = snprintf(buf + kl, 16, "\x1f%d.%d", r, attempt);
                size_t c = memcached_generate_hash(m->ring, buf, kl + (size_t)bl);
                int seen = c >= m->nhosts;
                for (size_t j = 0; j < n && !seen; j++)
                    seen = idx[j] == c;
                if (!seen)
                    pick = c;
            }
            for (size_t c = (idx[0] + 1) % m->nhosts; pick == SIZE_MAX; c = (c + 1) % m->nhosts) {
                int seen = 0;
                for (size_t j = 0; j < n && !seen; j++)
                    seen = idx[j] == c;
                if (!seen)
                    pick = c;
            }
            idx[n++] = pick;
        }
    }
    return n;
}

/* ---- connection sets ---- */

void mc_conn_free(mc_conn *c, size_t nhosts)
{
    for (size_t i = 0; i < nhosts; i++)
        mc_sock_close(&c->srv[i]);
    free(c);
}

static void link_conn(mc_inst *m, mc_conn *c)
{
    c->prev = NULL;
    c->next = m->all;
    if (m->all)
        m->all->prev = c;
    m->all = c;
}

static void unlink_conn(mc_inst *m, mc_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        m->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static mc_conn *conn_new(mc_inst *m)
{
    mc_conn *c = calloc(1, sizeof *c + m->nhosts * sizeof c->srv[0]);
    if (c) {
        c->inst = m;
        for (size_t i = 0; i < m->nhosts; i++)
            mc_sock_init(&c->srv[i]);
    }
    return c;
}

static unsigned cur_gen(mc_inst *m)
{
    return __atomic_load_n(&m->gen, __ATOMIC_ACQUIRE);
}

/* A thread's connection set goes with the thread. */
void mc_tls_destroy(void *arg)
{
    mc_conn *c = arg;
    mc_inst *m = c->inst;
    int mine;

    pthread_mutex_lock(&m->mu);
    mine = c->gen == m->gen;
    if (mine) {
        unlink_conn(m, c);
        m->nconns--;
    }
    pthread_mutex_unlock(&m->mu);
    if (mine)
        mc_conn_free(c, m->nhosts);
}

/* Idle pool members unused for unused_timeout; the caller holds m->mu and
 * frees the list it gets once unlocked. */
static mc_conn *reap_idle(mc_inst *m, double now)
{
    mc_conn **pp = &m->idle, *dead = NULL;
    if (m->unused_timeout <= 0)
        return NULL;
    while (*pp) {
        mc_conn *c = *pp;
        if (now - c->idle_since > m->unused_timeout) {
            *pp = c->idle_next;
            unlink_conn(m, c);
            m->nconns--;
            c->idle_next = dead;
            dead = c;
        } else {
            pp = &c->idle_next;
        }
    }
    return dead;
}

static void free_list(mc_inst *m, mc_conn *c)
{
    while (c) {
        mc_conn *next = c->idle_next;
        mc_conn_free(c, m->nhosts);
        c = next;
    }
}

cachet_status mc_conn_get(mc_inst *m, mc_conn **out)
{
    mc_conn *c, *dead;
    struct timespec deadline;
    double now;

    if (!m->pool) {
        c = m->tls_ok ? pthread_getspecific(m->tls) : NULL;
        if (c && c->gen == cur_gen(m)) {
            *out = c;
            return CACHET_OK;
        }
        /* none yet, or one inherited over fork(): that one is the parent's */
        if (!(c = conn_new(m)))
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        pthread_mutex_lock(&m->mu);
        c->gen = m->gen;
        link_conn(m, c);
        m->nconns++;
        pthread_mutex_unlock(&m->mu);
        if (pthread_setspecific(m->tls, c) != 0) {
            mc_tls_destroy(c);
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        }
        *out = c;
        return CACHET_OK;
    }

    now = mc_now_s();
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    {
        double w = m->get_timeout;
        deadline.tv_sec += (time_t)w;
        deadline.tv_nsec += (long)((w - (double)(time_t)w) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&m->mu);
    dead = reap_idle(m, now);
    for (;;) {
        if ((c = m->idle) != NULL) {
            m->idle = c->idle_next;
            c->idle_next = NULL;
            break;
        }
        if (m->nconns < m->pool_max) {
            m->nconns++;
            pthread_mutex_unlock(&m->mu);
            free_list(m, dead);
            if (!(c = conn_new(m))) {
                pthread_mutex_lock(&m->mu);
                m->nconns--;
                pthread_cond_signal(&m->cv);
                pthread_mutex_unlock(&m->mu);
                return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory",
                                            m->backend);
            }
            pthread_mutex_lock(&m->mu);
            c->gen = m->gen;
            link_conn(m, c);
            pthread_mutex_unlock(&m->mu);
            *out = c;
            return CACHET_OK;
        }
        if (pthread_cond_timedwait(&m->cv, &m->mu, &deadline) == ETIMEDOUT && !m->idle &&
            m->nconns >= m->pool_max) {
            m->pool_timeouts++;
            pthread_mutex_unlock(&m->mu);
            free_list(m, dead);
            return cachet_backend_error(CACHET_ETIMEDOUT, "backend %s: no free connection "
                                        "after pool_connection_get_timeout %g s "
                                        "(pool_maxsize %ld)", m->backend, m->get_timeout,
                                        m->pool_max);
        }
    }
    pthread_mutex_unlock(&m->mu);
    free_list(m, dead);
    *out = c;
    return CACHET_OK;
}

void mc_conn_put(mc_inst *m, mc_conn *c)
{
    mc_conn *dead;
    double now;

    if (!m->pool || !c)
        return;
    now = mc_now_s();
    pthread_mutex_lock(&m->mu);
    if (c->gen != m->gen) {          /* taken out before a fork: not ours */
        pthread_mutex_unlock(&m->mu);
        return;
    }
    c->idle_since = now;
    c->idle_next = m->idle;          /* LIFO: the cold ones age out at the tail */
    m->idle = c;
    dead = reap_idle(m, now);
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    free_list(m, dead);
}

double mc_deadline(const mc_inst *m)
{
    return mc_now_s() + m->socket_timeout;
}

mc_sock *mc_link(mc_inst *m, mc_conn *c, size_t i, double dl, int *rc)
{
    mc_sock *s = &c->srv[i];
    mc_host *h = &m->hosts[i];
    unsigned epoch = cachet_host_epoch(&h->h);

    if (mc_sock_is_open(s)) {
        int p = s->tag != epoch ? 3 : mc_sock_pending(s);
        if (!p)
            return s;
        if (p == 1) {
            /* bytes nobody asked for: never read them as the next answer */
            cachet_host_count_proto(&h->h);
            cachet_backend_log(CACHET_LOG_WARNING, "backend %s: server %s: protocol error: "
                               "unsolicited bytes between requests: reconnecting",
                               m->backend, h->label);
        }
        /* (2: the server closed it; 3: opened before the host went down
         * and came back: stale, whatever it looks like) */
        mc_sock_close(s);
    }
    s->tag = epoch;
    if ((*rc = mc_sock_connect(s, h->name, h->port, dl)) != MC_OK ||
        (*rc = mc_sock_set_patience(s, m->socket_timeout)) != MC_OK ||
        (m->sasl_user && (*rc = mc_bin_sasl(s, m->sasl_user, m->sasl_pass, dl)) != MC_OK))
        return NULL;      /* s->err says why; mc_settle closes it */
    return s;
}

/* Why a failed call failed (CACHET_HR_*), from its message. */
static int failure_reason(int how, const char *err)
{
    if (how == END_TIMEOUT)
        return CACHET_HR_TIMEOUT;
    if (strncmp(err, "connect:", 8) == 0 || strncmp(err, "cannot resolve", 14) == 0 ||
        strncmp(err, "socket:", 7) == 0)
        return CACHET_HR_REFUSED;
    if (strstr(err, "closed") || strstr(err, "reset"))
        return CACHET_HR_CLOSED;
    if (strstr(err, "SASL") || strstr(err, "auth"))
        return CACHET_HR_REJECTED;
    return CACHET_HR_IO;
}

int mc_settle(mc_inst *m, mc_conn *c, size_t i, int adm, int rc)
{
    mc_sock *s = &c->srv[i];
    int why;
    /* (a refused SASL login is the configuration's fault, not the host's:
     * it answered; the connection goes, the host stays as it was) */
    int how = rc == MC_EPROTO ? END_PROTO : rc == MC_ETIMEDOUT ? END_TIMEOUT
              : rc == MC_ENOMEM || rc == MC_EAUTH ? END_ABORT
              : rc < 0 && rc != MC_ETOOBIG ? END_FAIL : END_OK;

    if (how == END_OK && mc_sock_buffered(s)) {
        /* the reply is complete and more came: the connection is in doubt */
        how = END_PROTO;
        snprintf(s->err, sizeof s->err, "protocol error: unread bytes after the reply");
        mc_sock_close(s);
        mc_finish_on(m, i, adm, how, CACHET_HR_NONE, s->tag);
        return END_OK;    /* the reply itself answered its request */
    }
    why = how == END_FAIL || how == END_TIMEOUT ? failure_reason(how, s->err) : CACHET_HR_NONE;
    if (how != END_OK || rc == MC_SRVERR)
        mc_sock_close(s);
    mc_finish_on(m, i, adm, how, why, s->tag);
    return how;
}

cachet_status mc_error(mc_inst *m, mc_conn *c, size_t i, int rc, const char *what)
{
    const char *why = c ? c->srv[i].err : "";
    cachet_status st;
    switch (rc) {
    case MC_ETIMEDOUT:
        return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: %s on %s: %s (deadline "
                                    "socket_timeout %g s passed)", m->backend, what,
                                    m->hosts[i].label, why, m->socket_timeout);
    case MC_EIO:
    case MC_EAUTH:
        st = CACHET_EUNAVAILABLE;
        break;
    case MC_ENOMEM:
        st = CACHET_ENOMEM;
        break;
    case MC_TOOBIG:
    case MC_ETOOBIG:
        st = CACHET_ETOOBIG;
        break;
    case MC_EPROTO:
        /* s->err starts with "protocol error:" */
        st = CACHET_EBACKEND;
        break;
    default:
        st = CACHET_EBACKEND;
        break;
    }
    return cachet_backend_error(st, "backend %s: %s on %s: %s", m->backend, what,
                                m->hosts[i].label, why[0] ? why : "failed");
}

/* Between admission and the request (a hook for what must happen first);
 * the flush of pool_flush_on_reconnect is the prober's now. */
int mc_enter(mc_inst *m, mc_conn *c, size_t i, int adm, double dl)
{
    (void)m, (void)c, (void)i, (void)dl;
    return adm;
}

int mc_begin(mc_inst *m, mc_conn **c, size_t i, double now, double dl, cachet_status *st)
{
    int adm;

    /* asked before waiting for a pooled connection (see mc_refused) */
    if (mc_refused(m, i, now)) {
        *st = mc_unavailable(m, i);
        return ADM_REJECT;
    }
    if (!*c && (*st = mc_conn_get(m, c)) != CACHET_OK)
        return ADM_NOCONN;
    if ((adm = mc_admit(m, i, mc_now_s(), 1)) == ADM_REJECT ||
        (adm = mc_enter(m, *c, i, adm, dl)) == ADM_REJECT) {
        *st = mc_unavailable(m, i);
        return ADM_REJECT;
    }
    return adm;
}
