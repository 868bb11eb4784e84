/* A set of hosts and its prober: one thread per instance, started when a
 * host is first found down (and again in a forked child, lazily: the
 * thread does not survive fork), that re-probes down hosts so that no
 * caller ever does.  Probe times: first about 1 s after the host went
 * down, then each gap x1.5 (as mcrouter; doubling from 1 s leaves 4 s
 * between the 3rd and 4th probe), up to dead_retry, each jittered by
 * +-10% so that the processes of a machine do not probe in step.  Probes
 * run one at a time: a hung host delays the others' probes by at most
 * socket_timeout. */
#define _GNU_SOURCE
#include "host.h"
#include "clock.h"
#include "host_shared.h"
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cachet_hostset_init(cachet_hostset *s, const char *backend, double timeout,
                         double dead_retry, cachet_probe_fn probe, void *probe_arg)
{
    pthread_condattr_t a;
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &a);
    pthread_condattr_destroy(&a);
    s->backend = backend;
    s->timeout = timeout;
    s->dead_retry = dead_retry;
    s->suspect_after = timeout / 4;
    s->probe = probe;
    s->probe_arg = probe_arg;
    s->rng = (uint64_t)(cachet_clock_now() * 1e9) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)s;
}

void cachet_hostset_destroy(cachet_hostset *s)
{
    int join;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    join = s->running && s->pid == getpid();
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (join)
        pthread_join(s->thread, NULL);
    free(s->hosts);
    s->hosts = NULL;
    s->n = s->cap = 0;
    cachet__shared_close(s->shared);
    s->shared = NULL;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void cachet__host_add(cachet_hostset *s, cachet_host *h)
{
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        cachet_host **nh = realloc(s->hosts, cap * sizeof *nh);
        if (!nh) {
            /* not probed in the background: it then stays down once down
             * (out of memory at open is refused long before this) */
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->hosts = nh;
        s->cap = cap;
    }
    s->hosts[s->n] = h;
    __atomic_store_n(&s->n, s->n + 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&s->mu);
}

void cachet__host_remove(cachet_hostset *s, cachet_host *h)
{
    if (!s->hosts)
        return;          /* the set went first (close) */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n; i++)
        if (s->hosts[i] == h) {
            s->hosts[i] = s->hosts[s->n - 1];
            __atomic_store_n(&s->n, s->n - 1, __ATOMIC_RELAXED);
            break;
        }
    pthread_mutex_unlock(&s->mu);
}

/* Lock-free: asked with a host's lock held (fail open), which must not
 * wait for the set's (the prober takes them the other way round). */
size_t cachet_hostset_count(cachet_hostset *s)
{
    return __atomic_load_n(&s->n, __ATOMIC_RELAXED);
}

/* +-10%, from a xorshift the caller may race on (harmless: it is jitter) */
static double jitter(cachet_hostset *s, double d)
{
    uint64_t x = __atomic_load_n(&s->rng, __ATOMIC_RELAXED);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    __atomic_store_n(&s->rng, x, __ATOMIC_RELAXED);
    return d * (0.9 + 0.2 * (double)(x >> 11) / 9007199254740992.0);
}

double cachet__host_first_delay(const cachet_hostset *s)
{
    double d = s->dead_retry < 1.0 ? s->dead_retry : 1.0;
    return jitter((cachet_hostset *)s, d);
}

double cachet__host_next_delay(cachet_hostset *s, double prev)
{
    double d = prev * 1.5;
    if (d > s->dead_retry)
        d = s->dead_retry;
    d = jitter(s, d);
    return d > s->dead_retry ? s->dead_retry : d;
}

static void *prober_main(void *arg)
{
    cachet_hostset *s = arg;

    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        double now = cachet_clock_now(), wake = INFINITY;
        cachet_host *due = NULL;

        for (size_t i = 0; i < s->n; i++) {
            cachet_host *h = s->hosts[i];
            pthread_mutex_lock(&h->mu);
            if (h->state == CACHET_HOST_DOWN && !h->probing) {
                if (!due && h->next_probe <= now) {
                    due = h;
                    h->probing = 1;
                } else if (h->next_probe < wake) {
                    wake = h->next_probe;
                }
            }
            pthread_mutex_unlock(&h->mu);
        }
        if (due) {
            int reason = CACHET_HR_IO, rc;
            pthread_mutex_unlock(&s->mu);
            rc = s->probe(s->probe_arg, due, cachet_clock_now() + s->timeout, &reason);
            cachet__host_probed(due, rc == 0, reason);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (wake == INFINITY) {
            pthread_cond_wait(&s->cv, &s->mu);
        } else {
            struct timespec ts;
            ts.tv_sec = (time_t)wake;
            ts.tv_nsec = (long)((wake - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void cachet_hostset_kick(cachet_hostset *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->running && !s->stop && s->probe) {
        sigset_t all, old;
        /* the library's thread takes none of the application's signals */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&s->thread, NULL, prober_main, s) == 0) {
            s->pid = getpid();
            __atomic_store_n(&s->running, 1, __ATOMIC_RELEASE);
        } else {
            /* next kick tries again; meanwhile down hosts stay down */
            cachet_backend_log(CACHET_LOG_WARNING, "backend %s: cannot start the thread that "
                               "probes down servers", s->backend);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void cachet_hostset_fork_prepare(cachet_hostset *s)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n; i++)
        pthread_mutex_lock(&s->hosts[i]->mu);
}

void cachet_hostset_fork_parent(cachet_hostset *s)
{
    for (size_t i = s->n; i-- > 0;)
        pthread_mutex_unlock(&s->hosts[i]->mu);
    pthread_mutex_unlock(&s->mu);
}

/* The child keeps what is known of the hosts; the prober and every call in
 * flight stayed in the parent. */
void cachet_hostset_fork_child(cachet_hostset *s)
{
    pthread_condattr_t a;
    for (size_t i = s->n; i-- > 0;) {
        cachet_host *h = s->hosts[i];
        h->probing = 0;
        h->first = 0;
        h->inflight = 0;
        h->shared_claim = 0;
        /* made anew, never destroyed: a parent thread parked in a timed
         * wait on it is counted as a waiter, and glibc's destroy would wait
         * for it for ever */
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&h->first_done, &a);
        pthread_condattr_destroy(&a);
        pthread_mutex_unlock(&h->mu);
    }
    s->running = 0;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &a);
    pthread_condattr_destroy(&a);
    pthread_mutex_unlock(&s->mu);
}
