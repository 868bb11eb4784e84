/* The host table shared by every connection of an instance (see the design
 * comment in mc_internal.h), and the small helpers it rests on. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <time.h>

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

/* ---- the host table ---- */

/* How long an operation waits for the first probe of a host never reached. */
static double first_wait(const mc_inst *m)
{
    return m->suspect_after < 0.2 ? m->suspect_after : 0.2;
}

int mc_admit(mc_inst *m, size_t i, double now, int may_wait)
{
    mc_host *h = &m->hosts[i];
    int r = ADM_REJECT;
    double give_up = now + first_wait(m);

    pthread_mutex_lock(&h->mu);
again:
    switch (h->state) {
    case H_UP:
        if (h->inflight && now - h->progress > m->suspect_after)
            break;                            /* hung: nothing completes */
        if (!h->inflight)
            h->progress = now;
        h->inflight++;
        r = ADM_OK;
        break;
    case H_DEAD:
        if (now < h->dead_until)
            break;
        /* time for a probe */
        __attribute__((fallthrough));
    default:
        if (h->probing && h->state == H_UNKNOWN && may_wait && now < give_up) {
            /* first contact: the probe of a live server takes a round trip */
            struct timespec ts;
            double secs = give_up;
            ts.tv_sec = (time_t)secs;
            ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&h->probe_done, &h->mu, &ts);
            now = mc_now_s();
            goto again;
        }
        if (h->probing)
            break;
        h->probing = 1;
        h->probes++;
        if (!h->inflight)
            h->progress = now;
        h->inflight++;
        r = h->was_dead && m->flush_on_reconnect ? ADM_PROBE_FLUSH : ADM_PROBE;
        break;
    }
    if (r == ADM_REJECT)
        h->fastfails++;
    pthread_mutex_unlock(&h->mu);
    return r;
}

/* Would mc_admit() refuse host i now?  Asked before waiting for a pooled
 * connection, so that a dead host fails fast even when the pool is busy,
 * and so that the wait is not counted as an operation in flight (which
 * would make a busy pool look like a hung host). */
int mc_refused(mc_inst *m, size_t i, double now)
{
    mc_host *h = &m->hosts[i];
    int no;
    pthread_mutex_lock(&h->mu);
    switch (h->state) {
    case H_UP:
        no = h->inflight && now - h->progress > m->suspect_after;
        break;
    case H_DEAD:
        no = now < h->dead_until || h->probing;
        break;
    default:
        no = 0;              /* never reached: mc_admit() waits briefly for its probe */
        break;
    }
    if (no)
        h->fastfails++;
    pthread_mutex_unlock(&h->mu);
    return no;
}

void mc_finish(mc_inst *m, size_t i, int adm, int how)
{
    mc_finish_why(m, i, adm, how, NULL);
}

/* adm: what mc_admit() said; how: END_* */
void mc_finish_why(mc_inst *m, size_t i, int adm, int how, const char *why)
{
    mc_host *h = &m->hosts[i];
    double now = mc_now_s();

    pthread_mutex_lock(&h->mu);
    if (h->inflight)
        h->inflight--;
    if (adm == ADM_PROBE || adm == ADM_PROBE_FLUSH) {
        h->probing = 0;
        pthread_cond_broadcast(&h->probe_done);
    }
    if (how == END_PROTO)
        h->proto_errors++;
    if (how == END_TIMEOUT)
        h->timeouts++;
    if (how == END_OK || how == END_PROTO) {
        /* (a wrong answer is an answer: the host is up, the connection closed) */
        h->progress = now;
        if (h->state != H_UP && (adm == ADM_PROBE || adm == ADM_PROBE_FLUSH)) {
            if (h->state == H_DEAD)
                h->changed_at = now;
            h->state = H_UP;
            h->reason = NULL;
            h->was_dead = 0;
        }
    } else if (how == END_FAIL || how == END_TIMEOUT) {
        if (h->state != H_DEAD || h->dead_until < now + m->dead_retry)
            h->dead_until = now + m->dead_retry;
        if (h->state == H_UP || h->state == H_DEAD)
            h->was_dead = 1;
        if (h->state != H_DEAD)
            h->changed_at = now;
        h->reason = why ? why : how == END_TIMEOUT ? "timeout" : "connection failed";
        h->state = H_DEAD;
        h->failures++;
    }
    pthread_mutex_unlock(&h->mu);
    if (how == END_FAIL || how == END_TIMEOUT)
        cachet_backend_log(CACHET_LOG_WARNING, "backend %s: server %s marked dead for %g s",
                           m->backend, h->label, m->dead_retry);
}

cachet_status mc_unavailable(mc_inst *m, size_t i)
{
    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: server %s is down "
                                "(or being probed): failing fast", m->backend,
                                m->hosts[i].label);
}

/* The servers operation: a snapshot of each host under its own mutex,
 * which no thread holds across I/O, so this never waits on a server. */
size_t mc_servers(void *state, cachet_server_state *out, size_t max)
{
    mc_inst *m = state;
    double now = mc_now_s();

    for (size_t i = 0; i < m->nhosts && i < max; i++) {
        mc_host *h = &m->hosts[i];
        pthread_mutex_lock(&h->mu);
        out[i].name = h->label;
        out[i].up = h->state != H_DEAD;
        out[i].reason = h->state == H_DEAD ? h->reason : NULL;
        out[i].failures = h->failures;
        out[i].since_change = h->changed_at < 0 ? -1 : now - h->changed_at;
        pthread_mutex_unlock(&h->mu);
    }
    return m->nhosts;
}
