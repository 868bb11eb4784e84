/* The file lock: a PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST mutex in
 * the lock file's shared mapping.  Taking and releasing it free are
 * user-space atomics (no system call); a waiter sleeps on the futex until
 * the call's deadline.  The kernel hands a dead holder's mutex to the next
 * taker with EOWNERDEAD: the holder may have died anywhere, and the dirty
 * flag already says whether it had begun a change (dbm_run.c then
 * recovers the file, exactly as after a dead flock holder), so the mutex
 * is made consistent at once.  Were a taker to release it without that,
 * the mutex would be unusable for good (ENOTRECOVERABLE). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include "dbm_internal.h"

/* pthread_mutex_clocklock until w's deadline.  ThreadSanitizer intercepts
 * neither pthread_mutex_clocklock (GCC 12) nor an EOWNERDEAD from
 * pthread_mutex_timedlock, so its builds poll pthread_mutex_trylock with
 * the flock's old backoff instead. */
static int lock_until(pthread_mutex_t *mu, dbm_wait *w)
{
    int rc = pthread_mutex_trylock(mu);

    if (rc != EBUSY)
        return rc;
#ifdef CACHET_TSAN
    while ((rc = pthread_mutex_trylock(mu)) == EBUSY)
        if (!dbm_wait_more(w))
            return ETIMEDOUT;
#else
    struct timespec ts = {(time_t)(w->deadline / 1000000000LL),
                          (long)(w->deadline % 1000000000LL)};
    while ((rc = pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, &ts)) == EINTR)
        ;
#endif
    return rc;
}

cachet_status dbm_lock_rw(dbm *d)
{
    cachet_status st;
    int rc;

    if (!d->joined && (st = dbm_join_lockfile(d)) != CACHET_OK)
        return st;
    rc = lock_until(&d->map->mu, &d->wait);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&d->map->mu);
        d->holders_died++;
        rc = 0;
    }
    if (rc == ETIMEDOUT)
        return dbm_lock_wait_error(d, d->rw_path, "another process");
    if (rc == ENOTRECOVERABLE)
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": the lock in %s is "
                                    "unusable (a holder died and the next one released it "
                                    "without repair); delete the lock file while no process "
                                    "has the database open", d->rw_path);
    if (rc != 0)
        return dbm_sys_error("cannot lock", d->rw_path, rc);
    d->held = 1;
    dbm_read_hdr(d);
    return CACHET_OK;
}

void dbm_unlock_rw(dbm *d)
{
    if (d->held) {
        pthread_mutex_unlock(&d->map->mu);
        d->held = 0;
    }
}
