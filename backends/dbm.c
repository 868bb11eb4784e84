/* The dbm backend (dogpile.cache.dbm) on GNU gdbm: a file that many
 * processes share, that survives the process, and that a SIGKILL in the
 * middle of a write never leaves unreadable.
 *
 * Arguments (dogpile's DBMBackend): filename (required); rw_lockfile and
 * dogpile_lockfile (true = "<filename>.rw.lock" / "<filename>.dogpile.lock",
 * false = none, anything else = that path); recreate_on_corrupt (false);
 * sync (false).
 *
 * Locking.  gdbm's own locks never wait, so with rw_lockfile (the default)
 * cachet queues on a flock of the lock file instead and opens the database
 * with GDBM_NOLOCK: readers share it, writers hold it exclusively.  flock
 * belongs to an open file description, so threads of one instance are
 * serialized by the instance mutex too (a GDBM_FILE is not thread-safe
 * anyway), and a forked child opens its own description.
 *
 * The lock file also carries a small header: a generation, bumped by every
 * write, and a dirty flag, set before a writer's first change and cleared
 * once the change is complete.  The generation lets an instance keep its
 * GDBM_FILE open between operations and reuse it for as long as no other
 * writer has touched the file (gdbm's bucket cache is then still right);
 * otherwise it reopens.  The dirty flag is the crash discipline: gdbm's
 * failure_atomic mode needs reflinks (not ext4), so a writer that dies with
 * the flag set makes the next process that takes the lock rebuild the file
 * with gdbm_recover (a new file renamed over the old one) before it reads.
 * New files are built aside and renamed into place, so a half-made file is
 * never seen either.
 *
 * With rw_lockfile = false there is no lock file: gdbm's own locks are
 * used, retried with backoff, the file is opened and closed around every
 * operation, and no crash recovery is possible.
 *
 * dogpile_lockfile: get_or_create's creator lock across processes.  One
 * byte per key (at an offset hashed from the key) of the dogpile lock file
 * is locked with an open-file-description lock (F_OFD_SETLK) on a
 * descriptor opened for that lock; unlock (or the holder's death) closes
 * it.  lock never waits: CACHET_MISS when another holds it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cachet/backend.h>

#define BACKEND        "dbm"
#define FILE_MODE      0600
#define LOCK_MAGIC     "cachetdb"
#define LOCK_VERSION   1u
#define GDBM_BUSY_WAIT_MS 10000     /* rw_lockfile=false: how long gdbm's locks are retried */

/* The lock file's header (native byte order: the file never leaves the host). */
typedef struct {
    char     magic[8];
    uint32_t version;
    uint32_t dirty;       /* a writer began a change and did not finish it */
    uint64_t gen;         /* bumped by every completed write */
} lock_hdr;

typedef struct token {
    int           fd;
    struct token *next;
} token;

typedef struct {
    pthread_mutex_t mu;           /* one operation at a time per instance */
    char     *path;
    char     *rw_path;            /* NULL: rw_lockfile = false */
    char     *dl_path;            /* NULL: dogpile_lockfile = false */
    int       recreate;           /* recreate_on_corrupt */
    int       sync;               /* fsync around every write */
    int       lockfd;             /* the rw lock file, -1 without one */
    int       lock_rdonly;        /* opened read-only: cannot write the header */
    int       held;               /* 0, LOCK_SH or LOCK_EX */
    int       lock_lost;          /* errno of a failed reopen in a forked child */
    int       marked;             /* this operation set the dirty flag */
    lock_hdr  hdr;                /* as read under the lock */
    GDBM_FILE db;                 /* open handle, kept between operations */
    int       db_writer;
    uint64_t  db_gen;             /* hdr.gen the handle is current for */
    dev_t     db_dev;
    ino_t     db_ino;
    token    *tokens;             /* dogpile locks held */
    uint64_t  recoveries, recreated, keys_lost, buckets_lost;
} dbm;

/* ---- errors ---- */

static cachet_status sys_error(const char *what, const char *path, int err)
{
    cachet_status st = err == ENOMEM ? CACHET_ENOMEM : CACHET_EBACKEND;
    return cachet_backend_error(st, "backend " BACKEND ": %s %s: %s", what, path, strerror(err));
}

/* gdbm errors that mean the file's structure is wrong. */
static int structural(int ec)
{
    switch (ec) {
    case GDBM_BAD_MAGIC_NUMBER: case GDBM_EMPTY_DATABASE: case GDBM_BLOCK_SIZE_ERROR:
    case GDBM_FILE_EOF: case GDBM_BAD_FILE_OFFSET: case GDBM_BYTE_SWAPPED:
    case GDBM_NEED_RECOVERY: case GDBM_BAD_BUCKET: case GDBM_BAD_HEADER:
    case GDBM_BAD_AVAIL: case GDBM_BAD_HASH_TABLE: case GDBM_BAD_DIR_ENTRY:
    case GDBM_BUCKET_CACHE_CORRUPTED: case GDBM_BAD_HASH_ENTRY: case GDBM_DIR_OVERFLOW:
        return 1;
    default:
        return 0;
    }
}

/* Describes gdbm error ec (errno err) met doing what on the database. */
static cachet_status gdbm_error_status(const dbm *d, const char *what, int ec, int err)
{
    if (ec == GDBM_MALLOC_ERROR)
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": %s %s: out of memory",
                                    what, d->path);
    if (structural(ec))
        return cachet_backend_error(CACHET_ECORRUPT, "backend " BACKEND ": %s %s: not a gdbm "
                                    "database, or damaged (%s)%s", what, d->path,
                                    gdbm_strerror(ec),
                                    d->recreate ? "" : "; backend_argument "
                                    "recreate_on_corrupt:true starts it over");
    if (gdbm_check_syserr(ec) && err)
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": %s %s: %s: %s", what,
                                    d->path, gdbm_strerror(ec), strerror(err));
    return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": %s %s: %s", what,
                                d->path, gdbm_strerror(ec));
}

static cachet_status db_error(const dbm *d, const char *what)
{
    return gdbm_error_status(d, what, gdbm_last_errno(d->db), gdbm_last_syserr(d->db));
}

/* ---- the lock file ---- */

static int flock_retry(int fd, int op)
{
    int rc;
    while ((rc = flock(fd, op)) == -1 && errno == EINTR)
        ;
    return rc;
}

static void read_hdr(dbm *d)
{
    lock_hdr h;
    ssize_t n = pread(d->lockfd, &h, sizeof h, 0);
    if (n == (ssize_t)sizeof h && memcmp(h.magic, LOCK_MAGIC, 8) == 0 && h.version == LOCK_VERSION)
        d->hdr = h;
    else                            /* new, empty or foreign: clean, generation 0 */
        d->hdr = (lock_hdr){LOCK_MAGIC, LOCK_VERSION, 0, 0};
}

static cachet_status write_hdr(dbm *d)
{
    if (d->lock_rdonly)
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": cannot write %s: "
                                    "lock file is read-only to this process", d->rw_path);
    if (pwrite(d->lockfd, &d->hdr, sizeof d->hdr, 0) != (ssize_t)sizeof d->hdr)
        return sys_error("cannot write lock file", d->rw_path, errno ? errno : EIO);
    if (d->sync && fdatasync(d->lockfd) != 0)
        return sys_error("cannot sync lock file", d->rw_path, errno);
    return CACHET_OK;
}

static cachet_status lock_rw(dbm *d, int op)
{
    if (flock_retry(d->lockfd, op) != 0)
        return sys_error("cannot lock", d->rw_path, errno);
    d->held = op;
    read_hdr(d);
    return CACHET_OK;
}

static void unlock_rw(dbm *d)
{
    if (d->held) {
        flock_retry(d->lockfd, LOCK_UN);
        d->held = 0;
    }
}

/* From a shared lock to an exclusive one (not atomic: reread the header). */
static cachet_status escalate(dbm *d)
{
    if (d->lockfd < 0 || d->held == LOCK_EX)
        return CACHET_OK;
    unlock_rw(d);
    return lock_rw(d, LOCK_EX);
}

/* Before the first change of an operation. */
static cachet_status mark_dirty(dbm *d)
{
    if (d->lockfd < 0 || d->marked)
        return CACHET_OK;
    d->hdr.dirty = 1;
    d->marked = 1;
    return write_hdr(d);
}

/* ---- the database handle ---- */

static void close_db(dbm *d)
{
    if (d->db) {
        gdbm_close(d->db);
        d->db = NULL;
    }
}

static int open_flags(const dbm *d, int mode)
{
    return mode | GDBM_NOMMAP | GDBM_CLOEXEC | (d->lockfd >= 0 ? GDBM_NOLOCK : 0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* gdbm_open; without a lock file, gdbm's locks are retried for a while. */
static GDBM_FILE gopen(const dbm *d, const char *path, int mode, int *ec, int *err)
{
    long waited = 0, step = 1;
    for (;;) {
        GDBM_FILE db;
        errno = 0;
        db = gdbm_open(path, 0, open_flags(d, mode), FILE_MODE, NULL);
        *ec = db ? GDBM_NO_ERROR : gdbm_errno;
        *err = errno;
        if (db || d->lockfd >= 0 || waited >= GDBM_BUSY_WAIT_MS ||
            (*ec != GDBM_CANT_BE_READER && *ec != GDBM_CANT_BE_WRITER))
            return db;
        sleep_ms(step);
        waited += step;
        if (step < 32)
            step *= 2;
    }
}

/* Builds an empty database beside path and renames it over path, so that
 * nobody ever opens a half-initialized file.  Under the exclusive lock. */
static cachet_status create_db(dbm *d)
{
    size_t n = strlen(d->path) + 16;
    char *tmp = malloc(n);
    GDBM_FILE db;
    int fd;

    if (!tmp)
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    snprintf(tmp, n, "%s.new.XXXXXX", d->path);
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        cachet_status st = sys_error("cannot create the database", d->path, errno);
        free(tmp);
        return st;
    }
    db = gdbm_fd_open(fd, tmp, 0, GDBM_NEWDB | GDBM_NOLOCK | GDBM_NOMMAP | GDBM_CLOERROR, NULL);
    if (!db) {
        cachet_status st = gdbm_error_status(d, "cannot create", gdbm_errno, errno);
        unlink(tmp);
        free(tmp);
        return st;
    }
    if ((d->sync && gdbm_sync(db) != 0) || gdbm_close(db) != 0 || rename(tmp, d->path) != 0) {
        cachet_status st = sys_error("cannot create the database", d->path, errno ? errno : EIO);
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return CACHET_OK;
}

static int same_file(const dbm *d)
{
    struct stat sb;
    return stat(d->path, &sb) == 0 && sb.st_dev == d->db_dev && sb.st_ino == d->db_ino;
}

/* Makes d->db a handle that can read (writer = 0) or write the current
 * file.  CACHET_MISS: there is no file to read (a reader never creates). */
static cachet_status get_db(dbm *d, int writer)
{
    int ec, err;
    struct stat sb;

    if (d->db && d->lockfd >= 0 && d->db_gen == d->hdr.gen && (d->db_writer || !writer) &&
        same_file(d))
        return CACHET_OK;
    close_db(d);
    if (writer && d->lockfd >= 0 && stat(d->path, &sb) == 0 && sb.st_size == 0) {
        cachet_status st = create_db(d);   /* never initialized: build it aside */
        if (st != CACHET_OK)
            return st;
    }
    d->db = gopen(d, d->path, writer ? GDBM_WRITER : GDBM_READER, &ec, &err);
    if (!d->db && ec == GDBM_FILE_OPEN_ERROR && err == ENOENT) {
        cachet_status st;
        if (!writer)
            return CACHET_MISS;
        if (d->lockfd < 0)          /* no lock to build it aside under */
            d->db = gopen(d, d->path, GDBM_WRCREAT, &ec, &err);
        else if ((st = create_db(d)) != CACHET_OK)
            return st;
        else
            d->db = gopen(d, d->path, GDBM_WRITER, &ec, &err);
    }
    if (!d->db && !writer && ec == GDBM_EMPTY_DATABASE)
        return CACHET_MISS;         /* created, never initialized: nothing in it */
    if (!d->db) {
        if (ec == GDBM_CANT_BE_READER || ec == GDBM_CANT_BE_WRITER)
            return cachet_backend_error(CACHET_ETIMEDOUT, "backend " BACKEND ": %s stayed locked "
                                        "by another process for %d ms", d->path,
                                        GDBM_BUSY_WAIT_MS);
        if (ec == GDBM_FILE_OPEN_ERROR)
            return sys_error(writer ? "cannot open for writing" : "cannot open", d->path, err);
        return gdbm_error_status(d, "cannot open", ec, err);
    }
    d->db_writer = writer;
    d->db_gen = d->hdr.gen;
    if (fstat(gdbm_fdesc(d->db), &sb) == 0) {
        d->db_dev = sb.st_dev;
        d->db_ino = sb.st_ino;
    }
    return CACHET_OK;
}

/* gdbm_recover's complaints go to the service's logger. */
static void recover_complaint(void *data, char const *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cachet_backend_log(CACHET_LOG_WARNING, "backend " BACKEND ": recovering %s: %s",
                       (const char *)data, msg);
}

/* gdbm writes a store's buckets and directory first and its header last.
 * A writer killed in between leaves buckets whose free-space tables point
 * past the header's next_block (space it took from the end of the file),
 * and gdbm then refuses those whole buckets as malformed, losing every key
 * in them.  Everything written lies inside the file, so moving next_block
 * up to the end of the file makes those buckets valid again.  Only the
 * native 64-bit format that cachet creates is touched:
 * magic, block_size, dir, dir_size, dir_bits, bucket_size, bucket_elems,
 * next_block (at byte 32). */
#define GDBM_MAGIC64_NATIVE 0x13579acfu
#define NEXT_BLOCK_AT 32

static void repair_next_block(const dbm *d)
{
    unsigned char h[NEXT_BLOCK_AT + 8];
    uint32_t magic;
    int32_t block;
    int64_t next, end;
    struct stat sb;
    int fd = open(d->path, O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return;
    if (pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && fstat(fd, &sb) == 0) {
        memcpy(&magic, h, 4);
        memcpy(&block, h + 4, 4);
        memcpy(&next, h + NEXT_BLOCK_AT, 8);
        if (magic == GDBM_MAGIC64_NATIVE && block > 0 && next > 0 && next < sb.st_size) {
            end = ((int64_t)sb.st_size + block - 1) / block * block;
            if (pwrite(fd, &end, 8, NEXT_BLOCK_AT) == 8)
                cachet_backend_log(CACHET_LOG_INFO, "backend " BACKEND ": %s: header's "
                                   "next_block %lld raised to the end of the file %lld",
                                   d->path, (long long)next, (long long)end);
        }
    }
    close(fd);
}

/* The dirty flag is set: a writer died in the middle of a change.  Rebuild
 * the file from what gdbm can read of it.  Under the exclusive lock. */
static cachet_status recover(dbm *d)
{
    gdbm_recovery rc;
    GDBM_FILE db;
    int ec, err;

    close_db(d);
    repair_next_block(d);
    db = gopen(d, d->path, GDBM_WRITER, &ec, &err);
    if (!db && !(ec == GDBM_FILE_OPEN_ERROR && err == ENOENT)) {
        if (ec == GDBM_FILE_OPEN_ERROR)
            return sys_error("cannot open for recovery", d->path, err);
        return gdbm_error_status(d, "cannot recover", ec, err);
    }
    if (db) {
        memset(&rc, 0, sizeof rc);
        rc.errfun = recover_complaint;
        rc.data = d->path;
        if (gdbm_recover(db, &rc, GDBM_RCVR_FORCE | GDBM_RCVR_ERRFUN) != 0) {
            cachet_status st = gdbm_error_status(d, "cannot recover", gdbm_last_errno(db),
                                                 gdbm_last_syserr(db));
            gdbm_close(db);
            return st;
        }
        if (d->sync)
            gdbm_sync(db);
        gdbm_close(db);
        d->recoveries++;
        d->keys_lost += rc.failed_keys;
        d->buckets_lost += rc.failed_buckets;
        cachet_backend_log(CACHET_LOG_WARNING, "backend " BACKEND ": %s: a writer died during "
                           "a change; rebuilt the file (%zu keys kept, %zu keys and %zu buckets "
                           "unreadable)", d->path, rc.recovered_keys, rc.failed_keys,
                           rc.failed_buckets);
    }
    d->hdr.dirty = 0;
    d->hdr.gen++;
    return write_hdr(d);
}

/* recreate_on_corrupt: start over with an empty file. */
static cachet_status recreate(dbm *d)
{
    cachet_status st;

    if ((st = escalate(d)) != CACHET_OK)
        return st;
    close_db(d);
    if (d->lockfd >= 0) {
        st = create_db(d);
    } else {
        GDBM_FILE db;
        int ec, err;
        unlink(d->path);
        if (!(db = gopen(d, d->path, GDBM_NEWDB, &ec, &err)))
            return gdbm_error_status(d, "cannot recreate", ec, err);
        gdbm_close(db);
    }
    if (st != CACHET_OK)
        return st;
    d->recreated++;
    cachet_backend_log(CACHET_LOG_WARNING, "backend " BACKEND ": %s was damaged or not a gdbm "
                       "database; recreated it empty (recreate_on_corrupt)", d->path);
    if (d->lockfd >= 0) {
        d->hdr.dirty = 0;
        d->hdr.gen++;
        d->marked = 0;
        return write_hdr(d);
    }
    return CACHET_OK;
}

/* ---- running an operation ---- */

/* The lock for this operation; recovers the file first if a writer died. */
static cachet_status begin(dbm *d, int excl)
{
    cachet_status st;

    d->marked = 0;
    if (d->lock_lost)
        return sys_error("cannot reopen the lock file after fork()", d->rw_path, d->lock_lost);
    if (d->lockfd < 0)
        return CACHET_OK;
    if ((st = lock_rw(d, excl ? LOCK_EX : LOCK_SH)) != CACHET_OK)
        return st;
    if (d->hdr.dirty && (st = escalate(d)) != CACHET_OK)
        return st;
    if (d->hdr.dirty && (st = recover(d)) != CACHET_OK)
        return st;
    return CACHET_OK;
}

/* After the operation: a complete write bumps the generation and clears
 * the flag; an incomplete one leaves the flag for the next taker. */
static cachet_status end(dbm *d, cachet_status st)
{
    if (d->lockfd < 0) {
        close_db(d);
        return st;
    }
    if (d->marked) {
        if (st >= 0) {
            cachet_status wst = CACHET_OK;
            if (d->sync && d->db && gdbm_sync(d->db) != 0)
                wst = db_error(d, "cannot sync");
            if (wst == CACHET_OK) {
                d->hdr.dirty = 0;
                d->hdr.gen++;
                wst = write_hdr(d);
                d->db_gen = d->hdr.gen;       /* our handle made this change */
            }
            if (wst != CACHET_OK && st >= 0)
                st = wst;
        } else {
            close_db(d);
        }
        d->marked = 0;
    }
    unlock_rw(d);
    return st;
}

typedef cachet_status (*op_fn)(dbm *d, void *arg);

/* Runs fn under the mutex and the file lock, with a handle that can write
 * (excl) or read.  A damaged file is started over once when
 * recreate_on_corrupt allows. */
static cachet_status run(dbm *d, int excl, op_fn fn, void *arg)
{
    cachet_status st;

    pthread_mutex_lock(&d->mu);
    for (int attempt = 0;; attempt++) {
        st = begin(d, excl);
        if (st == CACHET_OK)
            st = get_db(d, excl);
        if (st == CACHET_OK || st == CACHET_MISS)
            st = fn(d, st == CACHET_OK ? arg : NULL);
        if (st == CACHET_ECORRUPT) {
            close_db(d);
            if (d->recreate && attempt == 0 && (st = recreate(d)) == CACHET_OK) {
                end(d, CACHET_OK);
                continue;
            }
        }
        st = end(d, st);
        break;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}

/* ---- arguments ---- */

/* 1, 0, or -1 when v is not one of oslo.config's boolean spellings. */
static int bool_word(const char *v)
{
    static const char *const yes[] = {"true", "1", "on", "yes", NULL};
    static const char *const no[] = {"false", "0", "off", "no", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    return -1;
}

/* rw_lockfile / dogpile_lockfile: a boolean, or a path of one's own. */
static cachet_status lockfile_arg(const cachet_backend_params *p, const char *name,
                                  const char *path, const char *suffix, char **out)
{
    const char *v = cachet_backend_arg_get(p, name);
    int on = 1;
    size_t n;

    *out = NULL;
    if (v && *v && (on = bool_word(v)) < 0) {
        if (!(*out = strdup(v)))           /* not a boolean: a path */
            return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
        return CACHET_OK;
    }
    if (v && !*v)
        return cachet_backend_error(CACHET_EINVAL, "backend " BACKEND ": argument %s: empty "
                                    "(true, false or a path)", name);
    if (v && !on)
        return CACHET_OK;
    n = strlen(path) + strlen(suffix) + 1;
    if (!(*out = malloc(n)))
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    snprintf(*out, n, "%s%s", path, suffix);
    return CACHET_OK;
}

static void free_dbm(dbm *d)
{
    close_db(d);
    for (token *t = d->tokens, *next; t; t = next) {
        next = t->next;
        close(t->fd);
        free(t);
    }
    if (d->lockfd >= 0)
        close(d->lockfd);
    pthread_mutex_destroy(&d->mu);
    free(d->path);
    free(d->rw_path);
    free(d->dl_path);
    free(d);
}

static cachet_status open_lockfile(dbm *d)
{
    d->lock_rdonly = 0;
    d->lockfd = open(d->rw_path, O_RDWR | O_CREAT | O_CLOEXEC, FILE_MODE);
    if (d->lockfd < 0 && (errno == EACCES || errno == EROFS)) {
        d->lockfd = open(d->rw_path, O_RDONLY | O_CLOEXEC);
        d->lock_rdonly = 1;
    }
    if (d->lockfd < 0)
        return cachet_backend_error(errno == ENOMEM ? CACHET_ENOMEM : CACHET_EBACKEND,
                                    "backend " BACKEND ": cannot create the lock file %s (beside "
                                    "the database %s): %s", d->rw_path, d->path, strerror(errno));
    return CACHET_OK;
}

/* Opening checks the file at once: created if missing, refused (or started
 * over) if it is not a gdbm database. */
static cachet_status probe(dbm *d, void *arg)
{
    (void)d;
    (void)arg;
    return CACHET_OK;
}

static cachet_status dbm_open(const cachet_backend_params *p, void **state)
{
    static const char *const known[] = {"filename", "rw_lockfile", "dogpile_lockfile",
                                        "recreate_on_corrupt", "sync", NULL};
    const char *filename = cachet_backend_arg_get(p, "filename");
    cachet_status st;
    struct stat sb;
    dbm *d;

    *state = NULL;
    if ((st = cachet_backend_args_check(p, BACKEND, known)) != CACHET_OK)
        return st;
    if (!filename || !*filename)
        return cachet_backend_error(CACHET_EINVAL, "backend " BACKEND ": argument filename is "
                                    "required (backend_argument = filename:/path/to/cache.db)");
    if (!(d = calloc(1, sizeof *d)))
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    d->lockfd = -1;
    if (pthread_mutex_init(&d->mu, NULL) != 0) {
        free(d);
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": cannot create a mutex");
    }
    if (!(d->path = strdup(filename))) {
        st = cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
        goto fail;
    }
    if ((st = cachet_backend_arg_bool(p, BACKEND, "recreate_on_corrupt", 0, &d->recreate)) ||
        (st = cachet_backend_arg_bool(p, BACKEND, "sync", 0, &d->sync)) ||
        (st = lockfile_arg(p, "rw_lockfile", d->path, ".rw.lock", &d->rw_path)) ||
        (st = lockfile_arg(p, "dogpile_lockfile", d->path, ".dogpile.lock", &d->dl_path)))
        goto fail;
    if (stat(d->path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        st = cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": %s is not a regular "
                                  "file", d->path);
        goto fail;
    }
    if (d->rw_path && (st = open_lockfile(d)) != CACHET_OK)
        goto fail;
    /* a writer's handle creates a missing file; otherwise a reader's checks it */
    if ((st = run(d, stat(d->path, &sb) != 0 || sb.st_size == 0, probe, NULL)) < 0)
        goto fail;
    *state = d;
    return CACHET_OK;
fail:
    free_dbm(d);
    return st;
}

static void dbm_close(void *state)
{
    if (state)
        free_dbm(state);
}

/* ---- single-key operations ---- */

static int too_big(size_t klen, size_t len)
{
    return klen > INT_MAX || len > INT_MAX;
}

static cachet_status too_big_error(size_t klen, size_t len)
{
    return cachet_backend_error(CACHET_ETOOBIG, "backend " BACKEND ": key of %zu bytes or value "
                                "of %zu bytes is over gdbm's limit of %d; not stored", klen, len,
                                INT_MAX);
}

static datum mkdatum(const void *p, size_t n)
{
    datum x;
    x.dptr = n ? (char *)p : (char *)"";    /* gdbm refuses a NULL pointer */
    x.dsize = (int)n;
    return x;
}

typedef struct {
    const char *key;
    size_t      klen;
    const void *in;
    size_t      inlen;
    void      **out;
    size_t     *outlen;
} one_arg;

/* Fetches key: CACHET_OK (value from malloc), CACHET_MISS, or an error. */
static cachet_status fetch(dbm *d, const char *key, size_t klen, void **value, size_t *len)
{
    datum v;

    *value = NULL;
    *len = 0;
    if (klen > INT_MAX)
        return CACHET_MISS;
    v = gdbm_fetch(d->db, mkdatum(key, klen));
    if (!v.dptr) {
        int ec = gdbm_last_errno(d->db);
        if (ec == GDBM_ITEM_NOT_FOUND || ec == GDBM_NO_ERROR)
            return CACHET_MISS;
        return db_error(d, "cannot read");
    }
    *value = v.dptr;
    *len = (size_t)v.dsize;
    return CACHET_OK;
}

static cachet_status op_get(dbm *d, void *arg)
{
    one_arg *a = arg;
    if (!a)
        return CACHET_MISS;         /* no file yet */
    return fetch(d, a->key, a->klen, a->out, a->outlen);
}

static cachet_status op_set(dbm *d, void *arg)
{
    one_arg *a = arg;
    cachet_status st;
    if ((st = mark_dirty(d)) != CACHET_OK)
        return st;
    if (gdbm_store(d->db, mkdatum(a->key, a->klen), mkdatum(a->in, a->inlen), GDBM_REPLACE) != 0)
        return db_error(d, "cannot write");
    return CACHET_OK;
}

static cachet_status remove_key(dbm *d, const char *key, size_t klen)
{
    if (klen > INT_MAX)
        return CACHET_OK;
    if (gdbm_delete(d->db, mkdatum(key, klen)) != 0) {
        int ec = gdbm_last_errno(d->db);
        if (ec != GDBM_ITEM_NOT_FOUND && ec != GDBM_NO_ERROR)
            return db_error(d, "cannot delete from");
    }
    return CACHET_OK;
}

static cachet_status op_del(dbm *d, void *arg)
{
    one_arg *a = arg;
    cachet_status st;
    if ((st = mark_dirty(d)) != CACHET_OK)
        return st;
    return remove_key(d, a->key, a->klen);
}

static cachet_status dbm_get(void *state, const char *key, size_t klen, void **value,
                             size_t *len)
{
    one_arg a = {key, klen, NULL, 0, value, len};
    *value = NULL;
    *len = 0;
    return run(state, 0, op_get, &a);
}

static cachet_status dbm_set(void *state, const char *key, size_t klen, const void *value,
                             size_t len)
{
    one_arg a = {key, klen, value, len, NULL, NULL};
    if (too_big(klen, len)) {
        /* never leave an older value behind a refused one */
        run(state, 1, op_del, &a);
        return too_big_error(klen, len);
    }
    return run(state, 1, op_set, &a);
}

static cachet_status dbm_del(void *state, const char *key, size_t klen)
{
    one_arg a = {key, klen, NULL, 0, NULL, NULL};
    return run(state, 1, op_del, &a);
}

/* ---- multi-operations: one lock hold, one handle ---- */

typedef struct {
    cachet_backend_item *items;
    size_t n;
} multi_arg;

static cachet_status first_error(cachet_backend_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].status < 0)
            return items[i].status;
    return CACHET_OK;
}

/* Fills every item; a missing file (arg NULL) leaves them all misses.  An
 * item not reached keeps CACHET_ENOTSUP, which get never returns. */
static cachet_status op_fill(dbm *d, void *arg)
{
    multi_arg *m = arg;
    cachet_status st = CACHET_OK;
    if (!m)
        return CACHET_MISS;
    for (size_t i = 0; i < m->n; i++) {
        cachet_backend_item *it = &m->items[i];
        free(it->value);                /* from an attempt before a recreate */
        it->value = NULL;
        it->status = fetch(d, it->key, it->klen, &it->value, &it->len);
        if (it->status == CACHET_ECORRUPT)
            return CACHET_ECORRUPT;    /* start over (recreate) or report */
        if (it->status < 0 && st == CACHET_OK)
            st = it->status;
    }
    return st;
}

static cachet_status dbm_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    multi_arg m = {items, n};
    cachet_status st;

    for (size_t i = 0; i < n; i++) {
        items[i].value = NULL;
        items[i].len = 0;
        items[i].status = CACHET_ENOTSUP;
    }
    st = run(state, 0, op_fill, &m);
    if (st == CACHET_MISS)
        st = CACHET_OK;
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CACHET_ENOTSUP)
            items[i].status = st < 0 ? st : CACHET_MISS;
    return st;
}

static cachet_status op_store_all(dbm *d, void *arg)
{
    multi_arg *m = arg;
    cachet_status st = mark_dirty(d);
    if (st != CACHET_OK)
        return st;
    for (size_t i = 0; i < m->n; i++) {
        cachet_backend_item *it = &m->items[i];
        if (too_big(it->klen, it->len)) {
            it->status = remove_key(d, it->key, it->klen);
            if (it->status == CACHET_OK)
                it->status = CACHET_ETOOBIG;
        } else if (gdbm_store(d->db, mkdatum(it->key, it->klen), mkdatum(it->value, it->len),
                              GDBM_REPLACE) != 0) {
            return it->status = db_error(d, "cannot write");
        } else {
            it->status = CACHET_OK;
        }
        if (it->status < 0 && it->status != CACHET_ETOOBIG)
            return it->status;
    }
    return CACHET_OK;
}

static cachet_status dbm_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    multi_arg m = {items, n};
    cachet_status st;
    for (size_t i = 0; i < n; i++)
        items[i].status = CACHET_EBACKEND;      /* until stored */
    st = run(state, 1, op_store_all, &m);
    if (st != CACHET_OK) {
        for (size_t i = 0; i < n; i++)
            if (items[i].status == CACHET_EBACKEND)
                items[i].status = st;
        return st;
    }
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CACHET_ETOOBIG)
            return too_big_error(items[i].klen, items[i].len);
    return first_error(items, n);
}

static cachet_status op_delete_all(dbm *d, void *arg)
{
    multi_arg *m = arg;
    cachet_status st = mark_dirty(d);
    if (st != CACHET_OK)
        return st;
    for (size_t i = 0; i < m->n; i++)
        if ((m->items[i].status = remove_key(d, m->items[i].key, m->items[i].klen)) != CACHET_OK)
            return m->items[i].status;
    return CACHET_OK;
}

static cachet_status dbm_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    multi_arg m = {items, n};
    cachet_status st;
    for (size_t i = 0; i < n; i++)
        items[i].status = CACHET_EBACKEND;
    st = run(state, 1, op_delete_all, &m);
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CACHET_EBACKEND)
            items[i].status = st == CACHET_OK ? CACHET_OK : st;
    return st;
}

/* ---- sweep, compact, report ---- */

typedef struct {
    int  (*keep)(void *arg, const void *value, size_t len);
    void  *arg;
    size_t removed;
} sweep_arg;

static cachet_status op_sweep(dbm *d, void *arg)
{
    sweep_arg *s = arg;
    datum *dead = NULL, k, next = {NULL, 0};
    size_t ndead = 0, cap = 0, i;
    cachet_status st = CACHET_OK;

    /* collect first: deleting during gdbm's walk would skip keys */
    for (k = gdbm_firstkey(d->db); k.dptr; k = next) {
        datum v = gdbm_fetch(d->db, k);
        int keep = v.dptr ? s->keep(s->arg, v.dptr, (size_t)v.dsize) : 1;
        free(v.dptr);
        if (!v.dptr && gdbm_last_errno(d->db) != GDBM_ITEM_NOT_FOUND &&
            gdbm_last_errno(d->db) != GDBM_NO_ERROR) {
            st = db_error(d, "cannot read");
            free(k.dptr);
            break;
        }
        next = gdbm_nextkey(d->db, k);
        if (keep) {
            free(k.dptr);
        } else {
            if (ndead == cap) {
                datum *grown = realloc(dead, (cap = cap ? cap * 2 : 64) * sizeof *dead);
                if (!grown) {
                    free(k.dptr);
                    free(next.dptr);
                    st = cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
                    break;
                }
                dead = grown;
            }
            dead[ndead++] = k;
        }
    }
    /* the walk ended on firstkey/nextkey: not-found is its normal end */
    if (st == CACHET_OK && gdbm_last_errno(d->db) != GDBM_ITEM_NOT_FOUND &&
        gdbm_last_errno(d->db) != GDBM_NO_ERROR)
        st = db_error(d, "cannot walk");
    if (st == CACHET_OK && ndead)
        st = mark_dirty(d);
    for (i = 0; i < ndead; i++) {
        if (st == CACHET_OK && gdbm_delete(d->db, dead[i]) == 0)
            s->removed++;
        else if (st == CACHET_OK && gdbm_last_errno(d->db) != GDBM_ITEM_NOT_FOUND)
            st = db_error(d, "cannot delete from");
        free(dead[i].dptr);
    }
    free(dead);
    return st;
}

static cachet_status dbm_sweep(void *state, int (*keep)(void *arg, const void *value, size_t len),
                               void *arg, size_t *removed)
{
    sweep_arg s = {keep, arg, 0};
    cachet_status st = run(state, 1, op_sweep, &s);
    if (removed)
        *removed = s.removed;
    return st;
}

static cachet_status op_compact(dbm *d, void *arg)
{
    cachet_status st;
    struct stat sb;
    (void)arg;
    if ((st = mark_dirty(d)) != CACHET_OK)
        return st;
    if (gdbm_reorganize(d->db) != 0)
        return db_error(d, "cannot reorganize");
    /* the handle now reads the new file that was renamed into place */
    if (fstat(gdbm_fdesc(d->db), &sb) == 0) {
        d->db_dev = sb.st_dev;
        d->db_ino = sb.st_ino;
    }
    return CACHET_OK;
}

static cachet_status dbm_compact(void *state)
{
    return run(state, 1, op_compact, NULL);
}

typedef struct {
    gdbm_count_t entries;
    off_t        size;
    int          have;
} stat_arg;

static cachet_status op_stat(dbm *d, void *arg)
{
    stat_arg *s = arg;
    struct stat sb;
    if (!s)
        return CACHET_OK;
    if (gdbm_count(d->db, &s->entries) != 0)
        return db_error(d, "cannot count");
    if (fstat(gdbm_fdesc(d->db), &sb) == 0)
        s->size = sb.st_size;
    s->have = 1;
    return CACHET_OK;
}

static cachet_status dbm_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    dbm *d = state;
    stat_arg s = {0, 0, 0};
    uint64_t rec, recr, lost, blost;
    char buf[32];
    cachet_status st = run(d, 0, op_stat, &s);

    pthread_mutex_lock(&d->mu);
    rec = d->recoveries;
    recr = d->recreated;
    lost = d->keys_lost;
    blost = d->buckets_lost;
    pthread_mutex_unlock(&d->mu);
    fn(arg, "filename", d->path);
    fn(arg, "rw_lockfile", d->rw_path ? d->rw_path : "false");
    fn(arg, "dogpile_lockfile", d->dl_path ? d->dl_path : "false");
    if (s.have) {
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)s.entries);
        fn(arg, "entries", buf);
        snprintf(buf, sizeof buf, "%lld", (long long)s.size);
        fn(arg, "file_size", buf);
    }
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)rec);
    fn(arg, "recoveries", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)lost);
    fn(arg, "keys_lost", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)blost);
    fn(arg, "buckets_lost", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)recr);
    fn(arg, "recreated", buf);
    return st < 0 ? st : CACHET_OK;
}

/* ---- the dogpile lock: one byte per key of the dogpile lock file ---- */

/* FNV-1a, unseeded: every process must pick the same byte for a key. */
static off_t key_offset(const char *key, size_t klen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < klen; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    return (off_t)(h & 0x3fffffffffffffffULL);
}

static cachet_status dbm_lock(void *state, const char *key, size_t klen, void **tok)
{
    dbm *d = state;
    struct flock fl;
    token *t;
    int fd;

    *tok = NULL;
    if (!d->dl_path)
        return CACHET_ENOTSUP;      /* dogpile_lockfile = false: in-process lock only */
    if ((fd = open(d->dl_path, O_RDWR | O_CREAT | O_CLOEXEC, FILE_MODE)) < 0)
        return sys_error("cannot open the dogpile lock file", d->dl_path, errno);
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = key_offset(key, klen);
    fl.l_len = 1;
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        int err = errno;
        close(fd);
        if (err == EAGAIN || err == EACCES)
            return CACHET_MISS;     /* another holds it */
        return sys_error("cannot lock", d->dl_path, err);
    }
    if (!(t = malloc(sizeof *t))) {
        close(fd);
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    }
    t->fd = fd;
    pthread_mutex_lock(&d->mu);
    t->next = d->tokens;
    d->tokens = t;
    pthread_mutex_unlock(&d->mu);
    *tok = t;
    return CACHET_OK;
}

static cachet_status dbm_unlock(void *state, const char *key, size_t klen, void *tok)
{
    dbm *d = state;
    token **pp;
    (void)key;
    (void)klen;

    pthread_mutex_lock(&d->mu);
    for (pp = &d->tokens; *pp; pp = &(*pp)->next)
        if (*pp == tok) {
            *pp = ((token *)tok)->next;
            close(((token *)tok)->fd);      /* releases the lock */
            free(tok);
            break;
        }
    pthread_mutex_unlock(&d->mu);
    return CACHET_OK;               /* unknown token: dropped by a fork */
}

/* ---- fork ---- */

static void dbm_fork_prepare(void *state)
{
    pthread_mutex_lock(&((dbm *)state)->mu);
}

static void dbm_fork_parent(void *state)
{
    pthread_mutex_unlock(&((dbm *)state)->mu);
}

/* The child shares the parent's open file descriptions: its flocks would be
 * the parent's, its handle's file offset too, and the dogpile locks it
 * inherited would stay held for as long as it lives.  It gets its own. */
static void dbm_fork_child(void *state)
{
    dbm *d = state;

    close_db(d);                    /* after a complete operation: nothing to write */
    for (token *t = d->tokens, *next; t; t = next) {
        next = t->next;
        close(t->fd);
        free(t);
    }
    d->tokens = NULL;
    d->held = 0;
    if (d->lockfd >= 0) {
        close(d->lockfd);
        d->lockfd = open(d->rw_path, d->lock_rdonly ? O_RDONLY | O_CLOEXEC
                                                    : O_RDWR | O_CREAT | O_CLOEXEC, FILE_MODE);
        if (d->lockfd < 0)
            d->lock_lost = errno;   /* operations fail, naming the path */
    }
    pthread_mutex_unlock(&d->mu);
}

static const cachet_backend_ops dbm_ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = BACKEND,
    .caps = CACHET_CAP_DIST_LOCK | CACHET_CAP_PERSISTENT,
    .open = dbm_open,
    .close = dbm_close,
    .get = dbm_get,
    .set = dbm_set,
    .del = dbm_del,
    .get_multi = dbm_get_multi,
    .set_multi = dbm_set_multi,
    .delete_multi = dbm_delete_multi,
    .lock = dbm_lock,
    .unlock = dbm_unlock,
    .report = dbm_report,
    .compact = dbm_compact,
    .sweep = dbm_sweep,
    .fork_prepare = dbm_fork_prepare,
    .fork_parent = dbm_fork_parent,
    .fork_child = dbm_fork_child,
};

CACHET_BACKEND_EXPORT const cachet_backend_ops *cachet_backend_entry(void)
{
    return &dbm_ops;
}
