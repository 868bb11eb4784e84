/* Bounded waits: every lock a dbm operation can block on (the instance
 * mutex, the lock file's shared mutex and its flock, gdbm's own locks
 * without a lock file) is waited for until one deadline per call, lock_wait seconds after it began,
 * so that a holder stopped with SIGSTOP (or hung in a debugger, or on a
 * stalled NFS server) makes callers fail with CACHET_ETIMEDOUT instead of
 * blocking them for ever.  flock has no timeout (the lock file's flock is
 * only waited for when joining it, dbm_layout.c): it is polled with LOCK_NB
 * and a backoff that starts at 0.5 ms and doubles to 20 ms, never sleeping
 * past the deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include "dbm_internal.h"

#define BACKOFF_FIRST_NS   500000LL        /* 0.5 ms */
#define BACKOFF_MAX_NS   20000000LL        /* 20 ms */

int64_t dbm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Every call reads the clock once, for its deadline, even when it waits
 * for nothing: CLOCK_MONOTONIC_COARSE is the same clock to a tick (a few
 * ms behind at most, so a wait can end that much early), read without
 * the TSC: 3.5 ns here against 27 ns, 3% of a set. */
void dbm_wait_begin(dbm_wait *w, const dbm *d)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    w->deadline = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + d->lock_wait_ns;
    w->step = BACKOFF_FIRST_NS;
}

int dbm_wait_more(dbm_wait *w)
{
    int64_t left = w->deadline - dbm_now_ns(), ns;
    struct timespec ts;

    if (left <= 0)
        return 0;
    ns = w->step < left ? w->step : left;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    nanosleep(&ts, NULL);           /* EINTR: the loop looks again */
    if (w->step < BACKOFF_MAX_NS)
        w->step = w->step * 2 < BACKOFF_MAX_NS ? w->step * 2 : BACKOFF_MAX_NS;
    return 1;
}

/* GCC 12's ThreadSanitizer does not intercept pthread_mutex_clocklock: a
 * mutex taken with it would be invisible to it (false reports of races and
 * of unlocking an unlocked mutex).  Its builds use pthread_mutex_timedlock,
 * on CLOCK_REALTIME, which it does intercept. */

static struct timespec ns_to_ts(int64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return ts;
}

/* The instance mutex, until the deadline: a thread of this process that
 * holds it may itself be waiting for a stopped process's file lock. */
int dbm_mutex_lock_until(pthread_mutex_t *mu, const dbm_wait *w)
{
    struct timespec ts;
    int rc;

    if ((rc = pthread_mutex_trylock(mu)) != EBUSY)
        return rc;
#ifdef CACHET_TSAN
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t left = w->deadline - dbm_now_ns();
    ts = ns_to_ts((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + (left > 0 ? left : 0));
    while ((rc = pthread_mutex_timedlock(mu, &ts)) == EINTR)
        ;
#else
    ts = ns_to_ts(w->deadline);
    while ((rc = pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, &ts)) == EINTR)
        ;
#endif
    return rc;
}

/* who: "another process", or "another thread of this process" for the
 * instance mutex (a thread that waits for the file lock holds it). */
cachet_status dbm_lock_wait_error(const dbm *d, const char *path, const char *who)
{
    return cachet_backend_error(CACHET_ETIMEDOUT, "backend " BACKEND ": timed out after "
                                "lock_wait %g s waiting for the lock on %s, held by %s (a "
                                "holder that is stopped or hung keeps it)",
                                (double)d->lock_wait_ns / 1e9, path, who);
}
