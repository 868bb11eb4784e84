/* The rw lock file: opening it, and its header (the generation and the
 * dirty flag), read and written through the shared mapping that joining
 * it (dbm_layout.c) makes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dbm_internal.h"

int dbm_flock(int fd, int op)
{
    int rc;
    while ((rc = flock(fd, op)) == -1 && errno == EINTR)
        ;
    return rc;
}

/* A version-2 layout whose mutex was initialised by a process of this ABI. */
int dbm_layout_ok(const lock_page *p)
{
    return memcmp(p->h.magic, LOCK_MAGIC, 8) == 0 &&
           __atomic_load_n(&p->h.version, __ATOMIC_ACQUIRE) == LOCK_VERSION &&
           __atomic_load_n(&p->ready, __ATOMIC_ACQUIRE) == LOCK_READY &&
           p->mu_size == sizeof(pthread_mutex_t);
}

void dbm_unmap_hdr(dbm *d)
{
    if (d->map) {
        munmap(d->map, sizeof(lock_page));
        d->map = NULL;
    }
}

/* The header is read and written through the mapping with ordered
 * accesses: a writer stores the generation first and the flag last, so a
 * reader that sees the flag clear also sees the generation that came with
 * it.  (Truncating the lock file of a live cache would make those accesses
 * fault; nothing in cachet does.)
 *
 * The flag and the generation are a seqlock's sequence (Boehm, "Can
 * seqlocks get along with programming language memory models?", 2012):
 * release stores, and a release fence after raising the flag so that it is
 * ordered before the change's own stores; the reader's side is in
 * dbm_read_unlocked.  On x86 these are plain stores: a set pays no locked
 * instruction for them (seq_cst stores were four xchg a set).  TSan has no
 * fences: its builds keep seq_cst stores. */
#ifdef CACHET_TSAN
#define HDR_STORE __ATOMIC_SEQ_CST
#define HDR_FENCE() ((void)0)
#else
#define HDR_STORE __ATOMIC_RELEASE
#define HDR_FENCE() __atomic_thread_fence(__ATOMIC_RELEASE)
#endif

void dbm_read_hdr(dbm *d)
{
    d->hdr = (lock_hdr){LOCK_MAGIC, LOCK_VERSION, 0, 0};
    d->hdr.dirty = __atomic_load_n(&d->map->h.dirty, __ATOMIC_ACQUIRE);
    d->hdr.gen = __atomic_load_n(&d->map->h.gen, __ATOMIC_ACQUIRE);
}

cachet_status dbm_write_hdr(dbm *d)
{
    if (d->lock_rdonly)
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": cannot write %s: "
                                    "lock file is read-only to this process", d->rw_path);
    __atomic_store_n(&d->map->h.gen, d->hdr.gen, HDR_STORE);
    __atomic_store_n(&d->map->h.dirty, d->hdr.dirty, HDR_STORE);
    if (d->hdr.dirty)
        HDR_FENCE();                /* the flag before the change it announces */
    if (d->sync && fdatasync(d->lockfd) != 0)
        return dbm_sys_error("cannot sync lock file", d->rw_path, errno);
    return CACHET_OK;
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
