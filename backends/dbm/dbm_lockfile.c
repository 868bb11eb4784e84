/* The rw lock file: the flock that readers share and writers hold alone,
 * and its header, with the generation and the dirty flag. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dbm_internal.h"

static int flock_retry(int fd, int op)
{
    int rc;
    while ((rc = flock(fd, op)) == -1 && errno == EINTR)
        ;
    return rc;
}

/* The header is mapped shared once the file holds one, so that a reader
 * can see the generation and the dirty flag without a system call
 * (dbm_read_unlocked), and a writer changes them with ordered stores: the
 * generation first, the flag last, so a reader that sees the flag clear
 * also sees the generation that came with it.  (Truncating the lock file
 * of a live cache would make those loads fault; nothing in cachet does.) */
static int map_ours(const dbm *d)
{
    return d->map && memcmp(d->map->magic, LOCK_MAGIC, 8) == 0 &&
           d->map->version == LOCK_VERSION;
}

static void map_hdr(dbm *d)
{
    struct stat sb;
    void *p;

    if (d->map || fstat(d->lockfd, &sb) != 0 || sb.st_size < (off_t)sizeof(lock_hdr))
        return;
    p = mmap(NULL, sizeof(lock_hdr), PROT_READ | (d->lock_rdonly ? 0 : PROT_WRITE), MAP_SHARED,
             d->lockfd, 0);
    if (p != MAP_FAILED)
        d->map = p;                 /* else every call reads it with pread, as before */
}

void dbm_unmap_hdr(dbm *d)
{
    if (d->map) {
        munmap(d->map, sizeof(lock_hdr));
        d->map = NULL;
    }
}

static void read_hdr(dbm *d)
{
    lock_hdr h;
    ssize_t n;

    if (map_ours(d)) {
        d->hdr = (lock_hdr){LOCK_MAGIC, LOCK_VERSION, 0, 0};
        d->hdr.dirty = __atomic_load_n(&d->map->dirty, __ATOMIC_ACQUIRE);
        d->hdr.gen = __atomic_load_n(&d->map->gen, __ATOMIC_ACQUIRE);
        return;
    }
    n = pread(d->lockfd, &h, sizeof h, 0);
    if (n == (ssize_t)sizeof h && memcmp(h.magic, LOCK_MAGIC, 8) == 0 && h.version == LOCK_VERSION)
        d->hdr = h;
    else                            /* new, empty or foreign: clean, generation 0 */
        d->hdr = (lock_hdr){LOCK_MAGIC, LOCK_VERSION, 0, 0};
}

cachet_status dbm_write_hdr(dbm *d)
{
    if (d->lock_rdonly)
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": cannot write %s: "
                                    "lock file is read-only to this process", d->rw_path);
    if (map_ours(d)) {
        __atomic_store_n(&d->map->gen, d->hdr.gen, __ATOMIC_SEQ_CST);
        __atomic_store_n(&d->map->dirty, d->hdr.dirty, __ATOMIC_SEQ_CST);
    } else {
        if (pwrite(d->lockfd, &d->hdr, sizeof d->hdr, 0) != (ssize_t)sizeof d->hdr)
            return dbm_sys_error("cannot write lock file", d->rw_path, errno ? errno : EIO);
        map_hdr(d);
    }
    if (d->sync && fdatasync(d->lockfd) != 0)
        return dbm_sys_error("cannot sync lock file", d->rw_path, errno);
    return CACHET_OK;
}

/* flock(op), polled with LOCK_NB until the operation's deadline. */
cachet_status dbm_lock_rw(dbm *d, int op)
{
    for (;;) {
        if (flock_retry(d->lockfd, op | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK)
            return dbm_sys_error("cannot lock", d->rw_path, errno);
        if (!dbm_wait_more(&d->wait))
            return dbm_lock_wait_error(d, d->rw_path, "another process");
    }
    d->held = op;
    map_hdr(d);
    read_hdr(d);
    return CACHET_OK;
}

void dbm_unlock_rw(dbm *d)
{
    if (d->held) {
        flock_retry(d->lockfd, LOCK_UN);
        d->held = 0;
    }
}

/* From a shared lock to an exclusive one (not atomic: reread the header). */
cachet_status dbm_escalate(dbm *d)
{
    if (d->lockfd < 0 || d->held == LOCK_EX)
        return CACHET_OK;
    dbm_unlock_rw(d);
    return dbm_lock_rw(d, LOCK_EX);
}

/* Before the first change of an operation. */
cachet_status dbm_mark_dirty(dbm *d)
{
    if (d->lockfd < 0 || d->marked)
        return CACHET_OK;
    d->hdr.dirty = 1;
    d->marked = 1;
    return dbm_write_hdr(d);
}

/* O_NONBLOCK: a FIFO put where the lock file should be must not block the
 * open (it is then refused, as every file that is not a regular one: a
 * device such as /dev/zero would take the lock and silently lose the
 * header, and with it crash recovery). */
cachet_status dbm_open_lockfile(dbm *d)
{
    struct stat sb;

    d->lock_rdonly = 0;
    d->lockfd = open(d->rw_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, FILE_MODE);
    if (d->lockfd < 0 && (errno == EACCES || errno == EROFS)) {
        d->lockfd = open(d->rw_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        d->lock_rdonly = 1;
    }
    if (d->lockfd < 0)
        return cachet_backend_error(errno == ENOMEM ? CACHET_ENOMEM : CACHET_EBACKEND,
                                    "backend " BACKEND ": cannot create the lock file %s (beside "
                                    "the database %s): %s", d->rw_path, d->path, strerror(errno));
    if (fstat(d->lockfd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(d->lockfd);
        d->lockfd = -1;
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": the lock file %s is "
                                    "not a regular file", d->rw_path);
    }
    return CACHET_OK;
}
