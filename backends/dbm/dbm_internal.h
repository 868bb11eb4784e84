/* The dbm backend (dogpile.cache.dbm) on GNU gdbm: what its source files
 * share.  The design (locking, the lock file's header, crash recovery, the
 * dogpile lock) is described at the top of dbm.c.
 *
 *   dbm.c           arguments, open/close, fork hooks, the vtable
 *   dbm_error.c     error messages: system errors and gdbm's
 *   dbm_lockfile.c  the rw lock file: opening it, the header (generation, dirty flag)
 *   dbm_layout.c    the lock file's layout: joining it under a shared flock, making
 *                   or upgrading it (the mutex's initialisation) under an exclusive one
 *   dbm_shmutex.c   the file lock: a process-shared robust mutex in the header
 *   dbm_handle.c    the gdbm handle: opening, building files aside, reuse
 *   dbm_repair.c    before recovery: raise gdbm's stale next_block
 *   dbm_recover.c   crash recovery (repair, gdbm_recover) and
 *                   recreate_on_corrupt
 *   dbm_run.c       running an operation under the mutex and the file lock
 *   dbm_keys.c      get/set/del and the multi-operations
 *   dbm_maint.c     sweep, compact, report
 *   dbm_lock.c      the dogpile lock: per-key OFD locks
 *   dbm_wait.c      bounded waits: lock_wait, one deadline per call
 */
#ifndef CACHET_BACKEND_DBM_H
#define CACHET_BACKEND_DBM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <pthread.h>
#include <gdbm.h>
#include <cachet/backend.h>

/* GCC 12's ThreadSanitizer does not intercept pthread_mutex_clocklock (nor
 * an EOWNERDEAD from pthread_mutex_timedlock): see dbm_wait.c, dbm_shmutex.c */
#if defined(__SANITIZE_THREAD__)
#define CACHET_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CACHET_TSAN 1
#endif
#endif

#define BACKEND        "dbm"
#define FILE_MODE      0600
#define LOCK_MAGIC     "cachetdb"
#define LOCK_VERSION   2u           /* 1: the flock per operation (cachet before the mutex) */
#define LOCK_READY     0x6d757478u  /* lock_page.ready once its mutex is initialised */

/* The lock file's header (native byte order: the file never leaves the host).
 * Its 24 bytes are laid out as in version 1, so that the dirty flag and the
 * generation keep their places (tests and tools poke the flag at offset 12). */
typedef struct {
    char     magic[8];
    uint32_t version;
    uint32_t dirty;       /* a writer began a change and did not finish it */
    uint64_t gen;         /* bumped by every completed write */
} lock_hdr;

/* The lock file as mapped: the header, then (version 2) the file lock
 * itself, a PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST mutex at offset 32.
 * ready and mu_size are written once, under the exclusive flock, after the
 * mutex is initialised (dbm_layout.c). */
typedef struct {
    lock_hdr        h;
    uint32_t        ready;        /* LOCK_READY: mu is initialised */
    uint32_t        mu_size;      /* sizeof(pthread_mutex_t) of whoever initialised it */
    pthread_mutex_t mu;
} lock_page;

/* One call's wait: its deadline and the backoff of its polls. */
typedef struct {
    int64_t deadline;             /* CLOCK_MONOTONIC ns */
    int64_t step;                 /* next sleep, ns */
} dbm_wait;

typedef struct token {
    int           fd;
    struct token *next;
} token;

typedef struct {
    pthread_mutex_t mu;           /* one operation at a time per instance */
    pthread_mutex_t tok_mu;       /* tokens: the dogpile lock never waits on mu */
    int64_t   lock_wait_ns;       /* lock_wait: the longest a call waits for a lock */
    dbm_wait  wait;               /* the running operation's (under mu) */
    char     *path;
    char     *rw_path;            /* NULL: rw_lockfile = false */
    char     *dl_path;            /* NULL: dogpile_lockfile = false */
    int       recreate;           /* recreate_on_corrupt */
    int       sync;               /* fsync around every write */
    int       lockfd;             /* the rw lock file, -1 without one */
    int       lock_rdonly;        /* opened read-only: cannot write the header */
    int       held;               /* holds the file lock (the shared mutex) */
    int       joined;             /* holds the shared flock that fences version-1 processes */
    int       lock_lost;          /* errno of a failed reopen in a forked child */
    int       marked;             /* this operation set the dirty flag */
    lock_hdr  hdr;                /* as read under the lock */
    lock_page *map;               /* the lock file's header and mutex, mapped shared;
                                     NULL until joined (see dbm_layout.c) */
    GDBM_FILE db;                 /* open handle, kept between operations */
    int       db_writer;
    uint64_t  db_gen;             /* hdr.gen the handle is current for */
    dev_t     db_dev;
    ino_t     db_ino;
    token    *tokens;             /* dogpile locks held */
    uint64_t  recoveries, recreated, keys_lost, buckets_lost;
    uint64_t  holders_died;       /* the file lock taken over from a dead holder */
} dbm;

typedef cachet_status (*op_fn)(dbm *d, void *arg);

/* dbm_wait.c */
int64_t dbm_now_ns(void);
void dbm_wait_begin(dbm_wait *w, const dbm *d);
/* Sleeps the next backoff step, not past the deadline; 0 when it is past. */
int dbm_wait_more(dbm_wait *w);
/* pthread_mutex_lock until w's deadline: 0, or ETIMEDOUT (or an error). */
int dbm_mutex_lock_until(pthread_mutex_t *mu, const dbm_wait *w);
cachet_status dbm_lock_wait_error(const dbm *d, const char *path, const char *who);

/* dbm_error.c */
cachet_status dbm_sys_error(const char *what, const char *path, int err);
cachet_status dbm_gdbm_error_status(const dbm *d, const char *what, int ec, int err);
cachet_status dbm_db_error(const dbm *d, const char *what);

/* dbm_lockfile.c */
void dbm_read_hdr(dbm *d);
cachet_status dbm_write_hdr(dbm *d);
cachet_status dbm_mark_dirty(dbm *d);
cachet_status dbm_open_lockfile(dbm *d);
int dbm_flock(int fd, int op);
void dbm_unmap_hdr(dbm *d);
int dbm_layout_ok(const lock_page *p);

/* dbm_layout.c: takes the shared flock that every version-2 process holds
 * while it has the file open, making or upgrading the layout first when
 * need be; until d->wait's deadline. */
cachet_status dbm_join_lockfile(dbm *d);

/* dbm_shmutex.c: the file lock, until d->wait's deadline.  A holder that
 * died is handled as the dirty flag says (dbm_run.c recovers). */
cachet_status dbm_lock_rw(dbm *d);
void dbm_unlock_rw(dbm *d);

/* dbm_handle.c */
void dbm_close_db(dbm *d);
GDBM_FILE dbm_gopen(dbm *d, const char *path, int mode, int *ec, int *err);
cachet_status dbm_create_db(dbm *d);
cachet_status dbm_get_db(dbm *d, int writer);

/* dbm_repair.c: raises the header's next_block past everything a killed
 * writer allocated, so that gdbm_recover refuses no bucket for it. */
void dbm_repair_next_block(const char *path);

/* dbm_recover.c */
cachet_status dbm_recover(dbm *d);
cachet_status dbm_recreate(dbm *d);

/* dbm_run.c */
cachet_status dbm_run(dbm *d, int excl, op_fn fn, void *arg);
/* A read (excl 0): dbm_run, or, with a lock file this process can only
 * read (it cannot take the mutex), a read checked against the generation
 * and the dirty flag, undone (undo may be NULL) and done again if a writer
 * overlapped it. */
cachet_status dbm_run_read(dbm *d, op_fn fn, void (*undo)(void *arg), void *arg);
/* A read without the file lock, kept only if no writer ran meanwhile: 1
 * with *st set when it stands, 0 when the caller must dbm_run it (undo
 * has then freed what fn handed out). */
int dbm_read_unlocked(dbm *d, op_fn fn, void (*undo)(void *arg), void *arg, cachet_status *st);

/* dbm_keys.c */
cachet_status dbm_get(void *state, const char *key, size_t klen, void **value, size_t *len);
cachet_status dbm_set(void *state, const char *key, size_t klen, const void *value, size_t len,
                      double ttl);
cachet_status dbm_add(void *state, const char *key, size_t klen, const void *value, size_t len,
                      double ttl);
cachet_status dbm_del(void *state, const char *key, size_t klen);
cachet_status dbm_get_multi(void *state, cachet_backend_item *items, size_t n);
cachet_status dbm_set_multi(void *state, cachet_backend_item *items, size_t n);
cachet_status dbm_delete_multi(void *state, cachet_backend_item *items, size_t n);

/* dbm_maint.c */
cachet_status dbm_sweep(void *state, int (*keep)(void *arg, const void *value, size_t len),
                        void *arg, size_t *removed);
cachet_status dbm_compact(void *state);
cachet_status dbm_report(void *state, cachet_backend_report_fn fn, void *arg);

/* dbm_lock.c */
cachet_status dbm_lock(void *state, const char *key, size_t klen, void **tok);
cachet_status dbm_unlock(void *state, const char *key, size_t klen, void *tok);

#endif
