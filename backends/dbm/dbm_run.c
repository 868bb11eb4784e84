/* Running an operation: the instance mutex, the file lock (the lock
 * file's shared mutex), recovery first when a writer died, a handle, and
 * the generation bumped after a write. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include "dbm_internal.h"

/* The lock for this operation (readers' and writers' alike: the mutex is
 * exclusive); recovers the file first if a writer died in a change. */
static cachet_status begin(dbm *d)
{
    cachet_status st;

    d->marked = 0;
    if (d->lock_lost)
        return dbm_sys_error("cannot reopen the lock file after fork()", d->rw_path, d->lock_lost);
    if (d->lockfd < 0)
        return CACHET_OK;
    if ((st = dbm_lock_rw(d)) != CACHET_OK)
        return st;
    if (d->hdr.dirty && (st = dbm_recover(d)) != CACHET_OK)
        return st;
    return CACHET_OK;
}

/* After the operation: a complete write bumps the generation and clears
 * the flag; an incomplete one leaves the flag for the next taker. */
static cachet_status end(dbm *d, cachet_status st)
{
    if (d->lockfd < 0) {
        dbm_close_db(d);
        return st;
    }
    if (d->marked) {
        if (st >= 0) {
            cachet_status wst = CACHET_OK;
            if (d->sync && d->db && gdbm_sync(d->db) != 0)
                wst = dbm_db_error(d, "cannot sync");
            if (wst == CACHET_OK) {
                d->hdr.dirty = 0;
                d->hdr.gen++;
                wst = dbm_write_hdr(d);
                d->db_gen = d->hdr.gen;       /* our handle made this change */
            }
            if (wst != CACHET_OK && st >= 0)
                st = wst;
        } else {
            dbm_close_db(d);
        }
        d->marked = 0;
    }
    dbm_unlock_rw(d);
    return st;
}

/* Orders the read's loads before the second look at the header.  TSan has
 * no fences (and cannot see the other process anyway): a seq_cst load
 * keeps its build warning-free. */
#ifdef __SANITIZE_THREAD__
#define READ_FENCE(d) ((void)__atomic_load_n(&(d)->map->h.gen, __ATOMIC_SEQ_CST))
#else
#define READ_FENCE(d) __atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif

/* A process that can only read the lock file cannot take its mutex (that
 * writes it).  Its reads run without the lock and are kept only when the
 * dirty flag was clear and the generation unchanged from before to after
 * (as dbm_read_unlocked's); one that overlapped a change is undone and
 * done again.  A writer stopped or dead in the middle of a change (the
 * flag set) cannot be recovered by this process: it waits, bounded by
 * lock_wait.  Under d->mu. */
static cachet_status run_checked(dbm *d, op_fn fn, void (*undo)(void *arg), void *arg)
{
    cachet_status st;

    for (int tries = 0;; tries++) {
        if (d->lock_lost)
            return dbm_sys_error("cannot reopen the lock file after fork()", d->rw_path,
                                 d->lock_lost);
        if (!d->joined && (st = dbm_join_lockfile(d)) != CACHET_OK)
            return st;
        dbm_read_hdr(d);
        if (!d->hdr.dirty) {
            st = dbm_get_db(d, 0);
            if (st == CACHET_OK || st == CACHET_MISS)
                st = fn(d, st == CACHET_OK ? arg : NULL);
            READ_FENCE(d);
            if (!__atomic_load_n(&d->map->h.dirty, __ATOMIC_ACQUIRE) &&
                __atomic_load_n(&d->map->h.gen, __ATOMIC_ACQUIRE) == d->hdr.gen)
                return st;
            if (undo)
                undo(arg);
            dbm_close_db(d);
        }
        if (tries > 0 && !dbm_wait_more(&d->wait))
            return dbm_lock_wait_error(d, d->rw_path, "another process (a writer in the middle "
                                       "of a change, which this process cannot recover: the "
                                       "lock file is read-only to it)");
    }
}

static cachet_status run_locked(dbm *d, int excl, op_fn fn, void (*undo)(void *arg), void *arg)
{
    cachet_status st;

    if (d->lockfd >= 0 && d->lock_rdonly) {
        if (!excl)
            return run_checked(d, fn, undo, arg);
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": cannot write %s: "
                                    "lock file %s is read-only to this process", d->path,
                                    d->rw_path);
    }
    for (int attempt = 0;; attempt++) {
        st = begin(d);
        if (st == CACHET_OK)
            st = dbm_get_db(d, excl);
        if (st == CACHET_OK || st == CACHET_MISS)
            st = fn(d, st == CACHET_OK ? arg : NULL);
        if (st == CACHET_ECORRUPT) {
            dbm_close_db(d);
            if (d->recreate && attempt == 0 && (st = dbm_recreate(d)) == CACHET_OK) {
                end(d, CACHET_OK);
                continue;
            }
        }
        return end(d, st);
    }
}

/* Runs fn under the instance mutex and the file lock, with a handle that
 * can write (excl) or read.  A damaged file is started over once when
 * recreate_on_corrupt allows. */
static cachet_status run(dbm *d, int excl, op_fn fn, void (*undo)(void *arg), void *arg)
{
    cachet_status st;
    dbm_wait w;
    int rc;

    /* one deadline for the whole call: the instance mutex, then the file lock */
    dbm_wait_begin(&w, d);
    if ((rc = dbm_mutex_lock_until(&d->mu, &w)) != 0) {
        if (rc == ETIMEDOUT)
            return dbm_lock_wait_error(d, d->rw_path ? d->rw_path : d->path,
                                       "another thread of this process");
        return dbm_sys_error("cannot take the instance lock for", d->path, rc);
    }
    d->wait = w;
    st = run_locked(d, excl, fn, undo, arg);
    pthread_mutex_unlock(&d->mu);
    return st;
}

cachet_status dbm_run(dbm *d, int excl, op_fn fn, void *arg)
{
    return run(d, excl, fn, NULL, arg);
}

cachet_status dbm_run_read(dbm *d, op_fn fn, void (*undo)(void *arg), void *arg)
{
    return run(d, 0, fn, undo, arg);
}

/* A read without the file lock.  It is kept only when the shared header says
 * that no writer of any process was inside the file while it ran: the
 * dirty flag clear and the generation, the one our handle is current for,
 * unchanged from before the read to after it.  A writer sets the flag
 * before its first change and bumps the generation before it clears the
 * flag, so a read that overlapped a change sees one or the other and is
 * thrown away (with the handle, whose bucket cache may hold what it read
 * half-written); the caller then runs it under the lock.  Anything out of
 * the ordinary (no handle yet, another thread in the instance, a dirty
 * file, an error) also goes the locked way, which knows how to wait,
 * recover and report. */
int dbm_read_unlocked(dbm *d, op_fn fn, void (*undo)(void *arg), void *arg, cachet_status *out)
{
    cachet_status st;
    uint64_t gen;
    int kept = 0;

    if (!d->map || pthread_mutex_trylock(&d->mu) != 0)
        return 0;
    if (d->db && d->lockfd >= 0 && !d->lock_lost && d->joined &&
        !__atomic_load_n(&d->map->h.dirty, __ATOMIC_ACQUIRE) &&
        (gen = __atomic_load_n(&d->map->h.gen, __ATOMIC_ACQUIRE)) == d->db_gen) {
        st = fn(d, arg);
        READ_FENCE(d);
        kept = !__atomic_load_n(&d->map->h.dirty, __ATOMIC_ACQUIRE) &&
               __atomic_load_n(&d->map->h.gen, __ATOMIC_ACQUIRE) == gen;
        if (!kept || (st != CACHET_OK && st != CACHET_MISS)) {
            undo(arg);
            dbm_close_db(d);
            kept = 0;
        } else {
            *out = st;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return kept;
}
