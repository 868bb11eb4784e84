/* The host state machine (see host.h): admissions, the end of a call, the
 * transitions and their two log lines. */
#define _GNU_SOURCE
#include "host.h"
#include "clock.h"
#include "host_shared.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const reason_names[CACHET_HR_COUNT] = {
    [CACHET_HR_NONE] = "",
    [CACHET_HR_REFUSED] = "refused",
    [CACHET_HR_TIMEOUT] = "timeout",
    [CACHET_HR_CLOSED] = "closed",
    [CACHET_HR_IO] = "I/O error",
    [CACHET_HR_PROTOCOL] = "protocol error",
    [CACHET_HR_REJECTED] = "rejected",
    [CACHET_HR_SHARED] = "down (seen by another process)",
};

const char *cachet_host_reason_name(int reason)
{
    return reason > 0 && reason < CACHET_HR_COUNT ? reason_names[reason] : "unknown";
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

void cachet_host_init(cachet_host *h, cachet_hostset *set, const char *label)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    cond_init_monotonic(&h->first_done);
    h->set = set;
    snprintf(h->label, sizeof h->label, "%s", label);
    h->state = CACHET_HOST_UNKNOWN;
    h->changed_at = -1;
    h->shared_slot = -1;
    cachet__host_add(set, h);
}

void cachet_host_destroy(cachet_host *h)
{
    cachet__host_remove(h->set, h);
    pthread_cond_destroy(&h->first_done);
    pthread_mutex_destroy(&h->mu);
}

void cachet_host_set_label(cachet_host *h, const char *label)
{
    pthread_mutex_lock(&h->mu);
    snprintf(h->label, sizeof h->label, "%s", label);
    pthread_mutex_unlock(&h->mu);
}

/* How long a caller waits for another's first contact: a quarter of
 * socket_timeout, at most 200 ms (a wait under 200 ms is no stall). */
static double first_wait(const cachet_hostset *s)
{
    return s->suspect_after < 0.2 ? s->suspect_after : 0.2;
}

/* The caller holds h->mu: fold in what other processes found (shared_host_state). */
static void sync_shared_locked(cachet_host *h, double now, int *came_back, int *went_down)
{
    int st, reason = CACHET_HR_SHARED;
    if (!h->set->shared || h->shared_slot < 0)
        return;
    /* the longest a live prober leaves between two confirmations, and some */
    st = cachet__shared_read(h->set->shared, h->shared_slot, now,
                             h->set->dead_retry * 1.25 + h->set->timeout + 2, &h->shared_seen,
                             &reason);
    if (st == CACHET_HOST_UP && h->state == CACHET_HOST_UNKNOWN && !h->first) {
        h->state = CACHET_HOST_UP;          /* another process made first contact */
        h->progress = now;
    } else if (st == CACHET_HOST_DOWN && h->state != CACHET_HOST_DOWN && !h->first) {
        h->state = CACHET_HOST_DOWN;
        h->reason = reason;
        h->epoch++;
        h->changed_at = now;
        h->backoff = cachet__host_first_delay(h->set);
        h->next_probe = now + h->backoff;
        __atomic_add_fetch(&h->set->ndown, 1, __ATOMIC_RELAXED);
        *went_down = 1;
    } else if (st == CACHET_HOST_UP && h->state == CACHET_HOST_DOWN && !h->probing) {
        h->state = CACHET_HOST_UP;
        h->reason = CACHET_HR_NONE;
        h->epoch++;
        h->changed_at = now;
        h->progress = now;
        __atomic_sub_fetch(&h->set->ndown, 1, __ATOMIC_RELAXED);
        *came_back = 1;
    }
}

static void log_down(cachet_host *h, int reason)
{
    cachet_backend_log(CACHET_LOG_WARNING, "backend %s: server %s is down (%s): failing fast "
                       "and probing it in the background", h->set->backend, h->label,
                       cachet_host_reason_name(reason));
}

static void log_back(cachet_host *h, double down_for, int how)
{
    cachet_backend_log(CACHET_LOG_INFO, "backend %s: server %s is back after %.1f s down%s",
                       h->set->backend, h->label, down_for,
                       how ? " (seen by another process)" : "");
}

static void after_sync(cachet_host *h, int came_back, int went_down)
{
    if (went_down) {
        log_down(h, h->reason);
        cachet_hostset_kick(h->set);
    }
    if (came_back)
        log_back(h, 0, 1);
}

int cachet_host_admit(cachet_host *h, int may_wait)
{
    cachet_hostset *s = h->set;
    double now = cachet_clock_now(), give_up = now + first_wait(s);
    int r = CACHET_ADM_REJECT, kick = 0, back = 0, down = 0;

    pthread_mutex_lock(&h->mu);
    sync_shared_locked(h, now, &back, &down);
again:
    switch (h->state) {
    case CACHET_HOST_UP:
        if (h->inflight && now - h->progress > s->suspect_after)
            break;                            /* hung: nothing completes */
        if (!h->inflight)
            h->progress = now;
        h->inflight++;
        r = CACHET_ADM_OK;
        break;
    case CACHET_HOST_DOWN:
        kick = !__atomic_load_n(&s->running, __ATOMIC_ACQUIRE);
        break;
    default:
        if (h->first) {
            if (may_wait && now < give_up) {
                /* first contact: the call of a live server takes a round trip */
                struct timespec ts;
                ts.tv_sec = (time_t)give_up;
                ts.tv_nsec = (long)((give_up - (double)ts.tv_sec) * 1e9);
                pthread_cond_timedwait(&h->first_done, &h->mu, &ts);
                now = cachet_clock_now();
                goto again;
            }
            break;
        }
        if (s->shared && h->shared_slot >= 0 &&
            !cachet__shared_claim_first(s->shared, h->shared_slot, now, s->timeout,
                                        &h->shared_claim)) {
            /* another process is making first contact: wait for its word */
            if (may_wait && now < give_up) {
                pthread_mutex_unlock(&h->mu);
                nanosleep(&(struct timespec){0, 2000000}, NULL);
                now = cachet_clock_now();
                pthread_mutex_lock(&h->mu);
                sync_shared_locked(h, now, &back, &down);
                goto again;
            }
            break;
        }
        h->first = 1;
        if (!h->inflight)
            h->progress = now;
        h->inflight++;
        r = CACHET_ADM_FIRST;
        break;
    }
    if (r == CACHET_ADM_REJECT)
        h->fastfails++;
    pthread_mutex_unlock(&h->mu);
    after_sync(h, back, down);
    if (kick)
        cachet_hostset_kick(s);     /* a prober lost to fork(), or never started */
    return r;
}

int cachet_host_refused(cachet_host *h)
{
    double now = cachet_clock_now();
    int no, back = 0, down = 0, kick = 0;
    pthread_mutex_lock(&h->mu);
    sync_shared_locked(h, now, &back, &down);
    switch (h->state) {
    case CACHET_HOST_UP:
        no = h->inflight && now - h->progress > h->set->suspect_after;
        break;
    case CACHET_HOST_DOWN:
        no = 1;
        kick = !__atomic_load_n(&h->set->running, __ATOMIC_ACQUIRE);
        break;
    default:
        no = 0;              /* never reached: cachet_host_admit waits briefly for first contact */
        break;
    }
    if (no)
        h->fastfails++;
    pthread_mutex_unlock(&h->mu);
    after_sync(h, back, down);
    if (kick)
        cachet_hostset_kick(h->set);   /* a prober lost to fork(), or never started */
    return no;
}

/* Fail open: a set of three or more hosts keeps more than half of them in
 * use whatever times out.  A timeout on many hosts at once is more likely
 * the network (or this machine) than the servers; declaring them all dead
 * would turn a blip into an outage of the whole cache for the probes'
 * backoff.  A refused connection is certain (and costs nothing to retry):
 * it marks the host down whatever. */
static int fail_open(cachet_hostset *s, int reason)
{
    size_t n = cachet_hostset_count(s);
    unsigned down = __atomic_load_n(&s->ndown, __ATOMIC_RELAXED);
    return reason == CACHET_HR_TIMEOUT && n >= 3 && (size_t)(down + 1) * 2 > n;
}

int cachet_host_done(cachet_host *h, int adm, int end, int reason, unsigned conn_epoch)
{
    cachet_hostset *s = h->set;
    double now = cachet_clock_now();
    int stale = 0, went_down = 0, opened = 0;

    pthread_mutex_lock(&h->mu);
    if (adm != CACHET_ADM_REJECT && h->inflight)
        h->inflight--;
    if (adm == CACHET_ADM_FIRST) {
        h->first = 0;
        pthread_cond_broadcast(&h->first_done);
        if (s->shared && h->shared_slot >= 0)
            cachet__shared_release_first(s->shared, h->shared_slot, &h->shared_claim);
    }
    switch (end) {
    case CACHET_END_PROTO:
        h->proto_errors++;
        __attribute__((fallthrough));
    case CACHET_END_OK:
        /* (a wrong answer is an answer: the host is up, the connection closed) */
        h->progress = now;
        if (h->state == CACHET_HOST_UNKNOWN && adm == CACHET_ADM_FIRST) {
            h->state = CACHET_HOST_UP;
            if (s->shared && h->shared_slot >= 0)
                cachet__shared_write(s->shared, h->shared_slot, CACHET_HOST_UP, 0, &h->shared_seen);
        }
        break;
    case CACHET_END_FAIL:
        if (reason == CACHET_HR_TIMEOUT)
            h->timeouts++;
        __atomic_add_fetch(&h->failures, 1, __ATOMIC_RELAXED);
        if (h->state == CACHET_HOST_UP && conn_epoch != h->epoch) {
            /* opened before the host went down and came back: not its fault now */
            h->stale++;
            stale = 1;
            break;
        }
        if (h->state == CACHET_HOST_DOWN || s->dead_retry <= 0)
            break;
        if (fail_open(s, reason)) {
            opened = 1;
            if (h->state == CACHET_HOST_UNKNOWN)
                h->state = CACHET_HOST_UP;
            break;
        }
        h->state = CACHET_HOST_DOWN;
        h->reason = reason;
        h->epoch++;
        h->changed_at = now;
        h->backoff = cachet__host_first_delay(s);
        h->next_probe = now + h->backoff;
        __atomic_add_fetch(&s->ndown, 1, __ATOMIC_RELAXED);
        if (s->shared && h->shared_slot >= 0)
            cachet__shared_write(s->shared, h->shared_slot, CACHET_HOST_DOWN, reason, &h->shared_seen);
        went_down = 1;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&h->mu);
    if (went_down) {
        log_down(h, reason);
        cachet_hostset_kick(s);
    }
    if (opened && !__atomic_exchange_n(&s->failopen_said, 1, __ATOMIC_RELAXED))
        cachet_backend_log(CACHET_LOG_WARNING, "backend %s: more than half of the servers are "
                           "down: %s timed out but stays in use (fail open)", s->backend,
                           h->label);
    return stale;
}

void cachet__host_probed(cachet_host *h, int ok, int reason)
{
    cachet_hostset *s = h->set;
    double now = cachet_clock_now(), down_for = 0;
    int back = 0;

    pthread_mutex_lock(&h->mu);
    h->probing = 0;
    h->probes++;
    if (h->state != CACHET_HOST_DOWN) {
        /* brought back meanwhile (shared state, or a new address) */
    } else if (ok) {
        down_for = h->changed_at >= 0 ? now - h->changed_at : 0;
        h->state = CACHET_HOST_UP;
        h->reason = CACHET_HR_NONE;
        h->epoch++;                  /* connections of before are stale */
        h->changed_at = now;
        h->progress = now;
        __atomic_sub_fetch(&s->ndown, 1, __ATOMIC_RELAXED);
        if (s->shared && h->shared_slot >= 0)
            cachet__shared_write(s->shared, h->shared_slot, CACHET_HOST_UP, 0, &h->shared_seen);
        back = 1;
    } else {
        h->reason = reason;
        if (s->shared && h->shared_slot >= 0)
            cachet__shared_confirm(s->shared, h->shared_slot, now);
        h->backoff = cachet__host_next_delay(s, h->backoff);
        h->next_probe = now + h->backoff;
    }
    pthread_mutex_unlock(&h->mu);
    if (back) {
        __atomic_store_n(&s->failopen_said, 0, __ATOMIC_RELAXED);
        log_back(h, down_for, 0);
    }
}

unsigned cachet_host_epoch(cachet_host *h)
{
    unsigned e;
    pthread_mutex_lock(&h->mu);
    e = h->epoch;
    pthread_mutex_unlock(&h->mu);
    return e;
}

int cachet_host_state(cachet_host *h)
{
    int st;
    pthread_mutex_lock(&h->mu);
    st = h->state;
    pthread_mutex_unlock(&h->mu);
    return st;
}

uint64_t cachet_host_failures(cachet_host *h)
{
    return __atomic_load_n(&h->failures, __ATOMIC_RELAXED);
}

void cachet_host_forget(cachet_host *h)
{
    pthread_mutex_lock(&h->mu);
    if (h->state == CACHET_HOST_DOWN)
        __atomic_sub_fetch(&h->set->ndown, 1, __ATOMIC_RELAXED);
    if (h->state != CACHET_HOST_UNKNOWN)
        h->epoch++;
    h->state = CACHET_HOST_UNKNOWN;
    h->reason = CACHET_HR_NONE;
    pthread_mutex_unlock(&h->mu);
}

void cachet_host_count_proto(cachet_host *h)
{
    pthread_mutex_lock(&h->mu);
    h->proto_errors++;
    pthread_mutex_unlock(&h->mu);
}

void cachet_host_snapshot(cachet_host *h, cachet_server_state *out)
{
    double now = cachet_clock_now();
    int back = 0, down = 0;
    pthread_mutex_lock(&h->mu);
    sync_shared_locked(h, now, &back, &down);
    out->up = h->state != CACHET_HOST_DOWN;
    out->reason = h->state == CACHET_HOST_DOWN ? cachet_host_reason_name(h->reason) : NULL;
    out->failures = __atomic_load_n(&h->failures, __ATOMIC_RELAXED);
    out->since_change = h->changed_at < 0 ? -1 : now - h->changed_at;
    pthread_mutex_unlock(&h->mu);
    after_sync(h, back, down);
}
