/* libmemcached handles, the ring and key placement, and the connection
 * sets (per thread, or pooled) an operation gets its handles from. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- libmemcached handles ---- */

static memcached_return_t add_server(memcached_st *mc, const mc_host *h)
{
    if (h->port == 0)
        return memcached_server_add_unix_socket_with_weight(mc, h->name, h->weight);
    return memcached_server_add_with_weight(mc, h->name, h->port, h->weight);
}

static void set_behaviors(const mc_inst *m, memcached_st *mc)
{
    uint64_t ms = (uint64_t)(m->socket_timeout * 1000.0 + 0.5);
    if (ms < 1)
        ms = 1;
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
    /* the host table decides when to retry; libmemcached must not refuse a
     * probe on its own (a failed handle is thrown away anyway) */
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, 0);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1000000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0);
    if (m->binary)
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
}

/* A single-server handle for host i. */
static memcached_st *handle_new(const mc_inst *m, size_t i)
{
    memcached_st *mc = memcached_create(NULL);
    if (!mc)
        return NULL;
    set_behaviors(m, mc);
    if (m->sasl_user &&
        memcached_set_sasl_auth_data(mc, m->sasl_user, m->sasl_pass ? m->sasl_pass : "") !=
            MEMCACHED_SUCCESS) {
        memcached_free(mc);
        return NULL;
    }
    if (add_server(mc, &m->hosts[i]) != MEMCACHED_SUCCESS) {
        memcached_free(mc);
        return NULL;
    }
    return mc;
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
size_t mc_placement(const mc_inst *m, const char *key, size_t klen, size_t *idx)
{
    size_t n = 1;
    idx[0] = m->nhosts == 1 ? 0 : memcached_generate_hash(m->ring, key, klen);
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
        if (c->srv[i])
            memcached_free(c->srv[i]);
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
    if (c)
        c->inst = m;
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

/* The handle of conn c for host i, made on first use. */
memcached_st *mc_handle(mc_inst *m, mc_conn *c, size_t i)
{
    if (!c->srv[i])
        c->srv[i] = handle_new(m, i);
    return c->srv[i];
}

/* After a connection-level failure the handle's state (a half-read
 * response, libmemcached's own backoff) is not worth keeping. */
void mc_handle_drop(mc_conn *c, size_t i)
{
    if (c->srv[i]) {
        memcached_free(c->srv[i]);
        c->srv[i] = NULL;
    }
}

/* Records how an operation on host i ended, from libmemcached's rc:
 * returns END_OK or END_FAIL. */
int mc_settle(mc_inst *m, mc_conn *c, size_t i, int adm, memcached_return_t rc)
{
    int how = mc_is_conn_failure(rc) ? END_FAIL : END_OK;
    if (how == END_FAIL)
        mc_handle_drop(c, i);
    mc_finish(m, i, adm, how);
    return how;
}

cachet_status mc_error(mc_inst *m, size_t i, memcached_return_t rc, const char *what)
{
    cachet_status st;
    if (mc_is_conn_failure(rc))
        st = CACHET_EUNAVAILABLE;
    else if (rc == MEMCACHED_MEMORY_ALLOCATION_FAILURE)
        st = CACHET_ENOMEM;
    else if (rc == MEMCACHED_E2BIG)
        st = CACHET_ETOOBIG;
    else
        st = CACHET_EBACKEND;
    return cachet_backend_error(st, "backend %s: %s on %s: %s", m->backend, what,
                                m->hosts[i].label, memcached_strerror(NULL, rc));
}

/* Admission plus, for a flushing probe, the flush.  Returns the admission,
 * ADM_REJECT if the host is not to be used (the flush failed: it has been
 * settled as a failure). */
int mc_enter(mc_inst *m, mc_conn *c, size_t i, int adm)
{
    memcached_st *h;
    memcached_return_t rc;

    if (adm != ADM_PROBE_FLUSH)
        return adm;
    if (!(h = mc_handle(m, c, i))) {
        mc_finish(m, i, adm, END_ABORT);
        return ADM_REJECT;
    }
    rc = memcached_flush(h, 0);
    if (rc != MEMCACHED_SUCCESS) {
        mc_settle(m, c, i, adm, mc_is_conn_failure(rc) ? rc : MEMCACHED_CONNECTION_FAILURE);
        return ADM_REJECT;
    }
    pthread_mutex_lock(&m->hosts[i].mu);
    m->hosts[i].flushes++;
    pthread_mutex_unlock(&m->hosts[i].mu);
    cachet_backend_log(CACHET_LOG_INFO, "backend %s: server %s is back: flushed it",
                       m->backend, m->hosts[i].label);
    return adm;
}

int mc_begin(mc_inst *m, mc_conn **c, size_t i, double now, cachet_status *st)
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
        (adm = mc_enter(m, *c, i, adm)) == ADM_REJECT) {
        *st = mc_unavailable(m, i);
        return ADM_REJECT;
    }
    return adm;
}
