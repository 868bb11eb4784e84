/* The dbm backend (dogpile.cache.dbm) on GNU gdbm: a file that many
 * processes share, that survives the process, and that a SIGKILL in the
 * middle of a write never leaves unreadable.
 *
 * Arguments (dogpile's DBMBackend): filename (required); rw_lockfile and
 * dogpile_lockfile (true = "<filename>.rw.lock" / "<filename>.dogpile.lock",
 * false = none, anything else = that path); recreate_on_corrupt (false);
 * sync (false); and cachet's lock_wait (10 s): the longest a call waits
 * for a lock another process (or thread) holds, before CACHET_ETIMEDOUT.
 *
 * Locking.  gdbm's own locks never wait, so with rw_lockfile (the default)
 * cachet queues on a lock of its own and opens the database with
 * GDBM_NOLOCK: a process-shared robust pthread mutex in the lock file,
 * which every process maps shared (dbm_shmutex.c).  Uncontended, taking
 * and releasing it are atomics in user space; a holder that dies hands it
 * to the next taker (EOWNERDEAD), and the dirty flag below says whether the
 * file needs recovering.  Every process also holds a shared flock of the
 * lock file while it has it open: the fence against lock file version 1
 * (cachet before the mutex), and the guard under which the layout is made
 * or upgraded (dbm_layout.c).  Threads of one instance are serialized by
 * the instance mutex too (a GDBM_FILE is not thread-safe anyway), and a
 * forked child opens its own lock-file description.
 *
 * The lock file also carries a small header: a generation, bumped by every
 * write, and a dirty flag, set before a writer's first change and cleared
 * once the change is complete.  The generation lets an instance keep its
 * GDBM_FILE open between operations and reuse it for as long as no other
 * writer has touched the file (gdbm's bucket cache is then still right);
 * otherwise it reopens.  The header is mapped shared, so a get whose
 * handle is current and finds the flag clear reads without the lock at
 * all, keeping the result only if neither changed meanwhile
 * (dbm_read_unlocked in dbm_run.c).  The dirty flag is the crash discipline: gdbm's
 * failure_atomic mode needs reflinks (not ext4), so a writer that dies with
 * the flag set makes the next process that takes the lock rebuild the file
 * with gdbm_recover (a new file renamed over the old one) before it reads,
 * after raising gdbm's stale next_block past everything the dead writer
 * allocated (dbm_repair.c), or gdbm would refuse whole buckets.  New files are built aside and renamed into place, so a half-made file is
 * never seen either.
 *
 * Every wait for a lock is bounded by lock_wait (dbm_wait.c): a holder
 * stopped with SIGSTOP in the middle of a set keeps the lock, and without
 * a bound every reader and writer of the file would wait for it for ever.
 *
 * With rw_lockfile = false there is no lock file: gdbm's own locks are
 * used, retried with backoff until lock_wait, the file is opened and closed around every
 * operation, and no crash recovery is possible.
 *
 * dogpile_lockfile: get_or_create's creator lock across processes.  One
 * byte per key (at an offset hashed from the key) of the dogpile lock file
 * is locked with an open-file-description lock (F_OFD_SETLK) on a
 * descriptor opened for that lock; unlock (or the holder's death) closes
 * it.  lock never waits: CACHET_MISS when another holds it, and
 * CACHET_ETIMEDOUT once one thread has been refused the key for lock_wait
 * (get_or_create polls it; see dbm_lock.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dbm_internal.h"

#define LOCK_WAIT_DEFAULT 10.0      /* seconds */
#define LOCK_WAIT_MAX     3600.0    /* always a finite bound */

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
    dbm_close_db(d);
    for (token *t = d->tokens, *next; t; t = next) {
        next = t->next;
        close(t->fd);
        free(t);
    }
    dbm_unmap_hdr(d);
    if (d->lockfd >= 0)
        close(d->lockfd);
    pthread_mutex_destroy(&d->tok_mu);
    pthread_mutex_destroy(&d->mu);
    free(d->path);
    free(d->rw_path);
    free(d->dl_path);
    free(d);
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
                                        "recreate_on_corrupt", "sync", "lock_wait", NULL};
    const char *filename = cachet_backend_arg_get(p, "filename");
    cachet_status st;
    struct stat sb;
    double wait_s;
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
    if (pthread_mutex_init(&d->tok_mu, NULL) != 0) {
        pthread_mutex_destroy(&d->mu);
        free(d);
        return cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": cannot create a mutex");
    }
    if (!(d->path = strdup(filename))) {
        st = cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
        goto fail;
    }
    if ((st = cachet_backend_arg_bool(p, BACKEND, "recreate_on_corrupt", 0, &d->recreate)) ||
        (st = cachet_backend_arg_bool(p, BACKEND, "sync", 0, &d->sync)) ||
        (st = cachet_backend_arg_double(p, BACKEND, "lock_wait", LOCK_WAIT_DEFAULT, 0,
                                        LOCK_WAIT_MAX, &wait_s)) ||
        (st = lockfile_arg(p, "rw_lockfile", d->path, ".rw.lock", &d->rw_path)) ||
        (st = lockfile_arg(p, "dogpile_lockfile", d->path, ".dogpile.lock", &d->dl_path)))
        goto fail;
    d->lock_wait_ns = (int64_t)(wait_s * 1e9);
    if (stat(d->path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        st = cachet_backend_error(CACHET_EBACKEND, "backend " BACKEND ": %s is not a regular "
                                  "file", d->path);
        goto fail;
    }
    if (d->rw_path && (st = dbm_open_lockfile(d)) != CACHET_OK)
        goto fail;
    /* a writer's handle creates a missing file; otherwise a reader's checks it */
    if ((st = dbm_run(d, stat(d->path, &sb) != 0 || sb.st_size == 0, probe, NULL)) < 0)
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

/* ---- fork ---- */

static void dbm_fork_prepare(void *state)
{
    pthread_mutex_lock(&((dbm *)state)->mu);
    pthread_mutex_lock(&((dbm *)state)->tok_mu);
}

static void dbm_fork_parent(void *state)
{
    pthread_mutex_unlock(&((dbm *)state)->tok_mu);
    pthread_mutex_unlock(&((dbm *)state)->mu);
}

/* The child shares the parent's open file descriptions: its flocks would be
 * the parent's, its handle's file offset too, and the dogpile locks it
 * inherited would stay held for as long as it lives.  It gets its own.  It
 * keeps the shared mapping of the lock file (and so the same mutex), which
 * the parent did not hold: fork_prepare waited for its operation to end. */
static void dbm_fork_child(void *state)
{
    dbm *d = state;

    dbm_close_db(d);                /* after a complete operation: nothing to write */
    for (token *t = d->tokens, *next; t; t = next) {
        next = t->next;
        close(t->fd);
        free(t);
    }
    d->tokens = NULL;
    d->held = 0;                    /* the parent held no lock: mu was ours (prepare) */
    d->joined = 0;                  /* the next operation takes the child's own flock */
    if (d->lockfd >= 0) {
        close(d->lockfd);
        d->lockfd = open(d->rw_path, (d->lock_rdonly ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC |
                                     O_NONBLOCK | O_NOCTTY, FILE_MODE);
        if (d->lockfd < 0)
            d->lock_lost = errno;   /* operations fail, naming the path */
    }
    pthread_mutex_unlock(&d->tok_mu);
    pthread_mutex_unlock(&d->mu);
}

static const cachet_backend_ops dbm_ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = BACKEND,
    .caps = CACHET_CAP_DIST_LOCK | CACHET_CAP_PERSISTENT | CACHET_CAP_LOCAL,
    .open = dbm_open,
    .close = dbm_close,
    .get = dbm_get,
    .set = dbm_set,
    .add = dbm_add,
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
