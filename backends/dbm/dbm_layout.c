/* Joining the lock file, and making or upgrading its layout.
 *
 * Every process of lock file version 2 holds a shared flock of the lock
 * file from the first operation to close (a forked child takes its own).
 * That flock does two jobs, and costs one system call per process, not per
 * operation:
 *
 *  - It fences off version 1 (cachet before the mutex), whose writers take
 *    the flock exclusively around every write and know nothing of the
 *    mutex.  While any version-2 process has the file open, a version-1
 *    writer cannot get in: its write times out after its lock_wait and
 *    changes nothing.  So the two never write the file at once.
 *  - The layout is made (a new lock file) or upgraded (a version-1 one)
 *    only under the exclusive flock, which nobody can get while a
 *    version-2 process has the file open.  So the mutex is never
 *    initialised while somebody may be using it, and two processes
 *    creating the file at once initialise it once: the second finds it
 *    ready (the ready word, stored last) and joins.
 *
 * A layout of a later version is refused with a message that says so. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>
#include "dbm_internal.h"

static cachet_status map_page(dbm *d)
{
    void *p;

    if (d->map)
        return CACHET_OK;
    p = mmap(NULL, sizeof(lock_page), PROT_READ | (d->lock_rdonly ? 0 : PROT_WRITE), MAP_SHARED,
             d->lockfd, 0);
    if (p == MAP_FAILED)
        return dbm_sys_error("cannot map the lock file", d->rw_path, errno);
    d->map = p;
    return CACHET_OK;
}

/* Under the exclusive flock: a fresh layout, keeping the dirty flag and the
 * generation of a version-1 header (a recovery it owed is still owed). */
static cachet_status make_layout(dbm *d, const lock_page *old, ssize_t n)
{
    pthread_mutexattr_t attr;
    lock_page p;
    cachet_status st;
    int rc;

    memset(&p, 0, sizeof p);
    memcpy(p.h.magic, LOCK_MAGIC, 8);
    p.h.version = LOCK_VERSION;
    if (n >= (ssize_t)sizeof(lock_hdr) && memcmp(old->h.magic, LOCK_MAGIC, 8) == 0) {
        p.h.dirty = old->h.dirty;
        p.h.gen = old->h.gen + 1;       /* handles of version-1 processes reopen */
    }
    if (pwrite(d->lockfd, &p, sizeof p, 0) != (ssize_t)sizeof p)
        return dbm_sys_error("cannot write lock file", d->rw_path, errno ? errno : EIO);
    if ((st = map_page(d)) != CACHET_OK)
        return st;
    if ((rc = pthread_mutexattr_init(&attr)) == 0) {
        if ((rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) == 0 &&
            (rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) == 0)
            rc = pthread_mutex_init(&d->map->mu, &attr);
        pthread_mutexattr_destroy(&attr);
    }
    if (rc != 0)
        return dbm_sys_error("cannot make the lock in", d->rw_path, rc);
    d->map->mu_size = sizeof(pthread_mutex_t);
    __atomic_store_n(&d->map->ready, LOCK_READY, __ATOMIC_RELEASE);
    if (d->sync && fdatasync(d->lockfd) != 0)
        return dbm_sys_error("cannot sync lock file", d->rw_path, errno);
    return CACHET_OK;
}

/* flock(op | LOCK_NB): 1 taken, 0 held by another, -1 an error (errno). */
static int try_flock(dbm *d, int op)
{
    if (dbm_flock(d->lockfd, op | LOCK_NB) == 0)
        return 1;
    return errno == EWOULDBLOCK ? 0 : -1;
}

cachet_status dbm_join_lockfile(dbm *d)
{
    lock_page page;
    cachet_status st;
    ssize_t n;
    int got;

    for (;;) {
        /* held exclusively only by a process making the layout, or by a
         * version-1 writer */
        if ((got = try_flock(d, LOCK_SH)) < 0)
            return dbm_sys_error("cannot lock", d->rw_path, errno);
        if (got) {
            n = pread(d->lockfd, &page, sizeof page, 0);
            if (n == (ssize_t)sizeof page && dbm_layout_ok(&page)) {
                if ((st = map_page(d)) != CACHET_OK) {
                    dbm_flock(d->lockfd, LOCK_UN);
                    return st;
                }
                d->joined = 1;
                return CACHET_OK;
            }
            if (n >= (ssize_t)sizeof(lock_hdr) && memcmp(page.h.magic, LOCK_MAGIC, 8) == 0 &&
                page.h.version > LOCK_VERSION) {
                dbm_flock(d->lockfd, LOCK_UN);
                return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": the lock file "
                                            "%s has layout version %u, made by a newer cachet; "
                                            "this one knows version %u", d->rw_path,
                                            page.h.version, LOCK_VERSION);
            }
            if (d->lock_rdonly) {
                dbm_flock(d->lockfd, LOCK_UN);
                return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": the lock file "
                                            "%s is read-only to this process and no process "
                                            "that can write it has set it up (layout version "
                                            "%u) yet", d->rw_path, LOCK_VERSION);
            }
            /* to make or upgrade it: exclusively (this drops the shared
             * flock first, so a refusal leaves none) */
            if ((got = try_flock(d, LOCK_EX)) < 0)
                return dbm_sys_error("cannot lock", d->rw_path, errno);
            if (got) {
                n = pread(d->lockfd, &page, sizeof page, 0);
                if (!(n == (ssize_t)sizeof page && dbm_layout_ok(&page)) &&
                    (st = make_layout(d, &page, n)) != CACHET_OK) {
                    dbm_flock(d->lockfd, LOCK_UN);
                    return st;
                }
                if (try_flock(d, LOCK_SH) == 1)
                    continue;           /* the next turn checks it and joins */
            }
        }
        if (!dbm_wait_more(&d->wait))
            return dbm_lock_wait_error(d, d->rw_path, "another process (setting the lock "
                                       "file up, or a cachet of lock file version 1 writing)");
    }
}
