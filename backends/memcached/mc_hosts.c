/* The memcached hosts on the common host state machine (backends/common/
 * host.h): admissions and ends of calls in memcached's terms, the probe the
 * prober thread runs, and the servers operation. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../common/host_shared.h"

/* ---- small helpers ---- */

/* The pool's waits are timed on the monotonic clock. */
void mc_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

static mc_host *of(cachet_host *h)
{
    return (mc_host *)(void *)((char *)h - offsetof(mc_host, h));
}

/* ---- the probe (on the prober thread) ---- */

/* A fresh connection, then a get of a key nobody uses (a miss or a hit is
 * an answer), or with pool_flush_on_reconnect a flush: a server back from
 * the dead may hold values that were overwritten elsewhere meanwhile. */
static int probe(void *arg, cachet_host *ch, double dl, int *reason)
{
    mc_inst *m = arg;
    mc_host *h = of(ch);
    mc_sock s;
    void *v = NULL;
    size_t vl;
    int rc;

    mc_sock_init(&s);
    if ((rc = mc_sock_connect(&s, h->name, h->port, dl)) != MC_OK) {
        *reason = rc == MC_ETIMEDOUT ? CACHET_HR_TIMEOUT : CACHET_HR_REFUSED;
        mc_sock_close(&s);
        return -1;
    }
    if ((rc = mc_sock_set_patience(&s, m->socket_timeout)) == MC_OK &&
        (!m->sasl_user || (rc = mc_bin_sasl(&s, m->sasl_user, m->sasl_pass, dl)) == MC_OK))
        rc = m->flush_on_reconnect ? m->proto->flush_all(&s, dl)
             : m->proto->get(&s, "cachet:probe", 12, 1024, dl, &v, &vl, NULL);
    free(v);
    mc_sock_close(&s);
    if (rc == MC_EAUTH)
        return 0;      /* it answers (the calls will say the login was refused) */
    if (rc >= 0 && rc != MC_SRVERR) {
        if (m->flush_on_reconnect) {
            __atomic_add_fetch(&h->flushes, 1, __ATOMIC_RELAXED);
            cachet_backend_log(CACHET_LOG_INFO, "backend %s: server %s answers again: flushed it "
                               "(pool_flush_on_reconnect)", m->backend, h->label);
        }
        return 0;
    }
    *reason = rc == MC_ETIMEDOUT ? CACHET_HR_TIMEOUT : rc == MC_EPROTO ? CACHET_HR_PROTOCOL
              : rc == MC_EAUTH || rc == MC_SRVERR ? CACHET_HR_REJECTED : CACHET_HR_CLOSED;
    return -1;
}

/* ---- the host table ---- */

cachet_status mc_hosts_start(mc_inst *m, int shared)
{
    cachet_hostset_init(&m->hostset, m->backend, m->socket_timeout, m->dead_retry, probe, m);
    m->hostset.suspect_after = m->suspect_after;
    for (size_t i = 0; i < m->nhosts; i++)
        cachet_host_init(&m->hosts[i].h, &m->hostset, m->hosts[i].label);
    m->hosts_ready = 1;
    if (shared && m->nhosts <= CACHET_SHARED_MAX_HOSTS) {
        const char **labels = malloc(m->nhosts * sizeof *labels);
        if (!labels)
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        for (size_t i = 0; i < m->nhosts; i++)
            labels[i] = m->hosts[i].label;
        /* memcached and memcache_pool over the same servers share one file */
        if ((m->hostset.shared = cachet__shared_open("memcached", labels, m->nhosts)) != NULL)
            for (size_t i = 0; i < m->nhosts; i++)
                m->hosts[i].h.shared_slot = (int)i;
        free(labels);
    }
    return CACHET_OK;
}

void mc_hosts_stop(mc_inst *m)
{
    if (!m->hosts_ready)
        return;
    cachet_hostset_destroy(&m->hostset);     /* the prober first: it uses the hosts */
    for (size_t i = 0; i < m->nhosts; i++)
        cachet_host_destroy(&m->hosts[i].h);
    m->hosts_ready = 0;
}

int mc_admit(mc_inst *m, size_t i, double now, int may_wait)
{
    (void)now;
    return cachet_host_admit(&m->hosts[i].h, may_wait);
}

int mc_refused(mc_inst *m, size_t i, double now)
{
    (void)now;
    return cachet_host_refused(&m->hosts[i].h);
}

void mc_finish(mc_inst *m, size_t i, int adm, int how)
{
    mc_finish_on(m, i, adm, how, CACHET_HR_IO, cachet_host_epoch(&m->hosts[i].h));
}

void mc_finish_on(mc_inst *m, size_t i, int adm, int how, int why, unsigned epoch)
{
    int end = how == END_OK ? CACHET_END_OK : how == END_PROTO ? CACHET_END_PROTO
              : how == END_ABORT ? CACHET_END_ABORT : CACHET_END_FAIL;
    if (how == END_TIMEOUT)
        why = CACHET_HR_TIMEOUT;
    cachet_host_done(&m->hosts[i].h, adm, end, why, epoch);
}

cachet_status mc_unavailable(mc_inst *m, size_t i)
{
    cachet_server_state ss;
    cachet_host_snapshot(&m->hosts[i].h, &ss);
    if (!ss.up)
        return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: server %s is down (%s, "
                                    "%.1f s ago): failing fast while it is probed in the "
                                    "background", m->backend, m->hosts[i].label, ss.reason,
                                    ss.since_change);
    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: server %s is not answering "
                                "yet (first contact or calls in flight without an answer): "
                                "failing fast", m->backend, m->hosts[i].label);
}

/* The servers operation: a snapshot of each host under its own mutex,
 * which no thread holds across I/O, so this never waits on a server. */
size_t mc_servers(void *state, cachet_server_state *out, size_t max)
{
    mc_inst *m = state;
    for (size_t i = 0; i < m->nhosts && i < max; i++) {
        cachet_host_snapshot(&m->hosts[i].h, &out[i]);
        out[i].name = m->hosts[i].label;
    }
    return m->nhosts;
}
