/* Crash recovery (a writer died with the dirty flag set: repair the
 * header's next_block (dbm_repair.c), then gdbm_recover) and
 * recreate_on_corrupt. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dbm_internal.h"

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

/* The dirty flag is set: a writer died in the middle of a change.  Rebuild
 * the file from what gdbm can read of it.  Under the exclusive lock. */
cachet_status dbm_recover(dbm *d)
{
    gdbm_recovery rc;
    GDBM_FILE db;
    int ec, err;

    dbm_close_db(d);
    dbm_repair_next_block(d->path);
    db = dbm_gopen(d, d->path, GDBM_WRITER, &ec, &err);
    if (!db && !(ec == GDBM_FILE_OPEN_ERROR && err == ENOENT)) {
        if (ec == GDBM_FILE_OPEN_ERROR)
            return dbm_sys_error("cannot open for recovery", d->path, err);
        return dbm_gdbm_error_status(d, "cannot recover", ec, err);
    }
    if (db) {
        memset(&rc, 0, sizeof rc);
        rc.errfun = recover_complaint;
        rc.data = d->path;
        if (gdbm_recover(db, &rc, GDBM_RCVR_FORCE | GDBM_RCVR_ERRFUN) != 0) {
            cachet_status st = dbm_gdbm_error_status(d, "cannot recover", gdbm_last_errno(db),
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
    return dbm_write_hdr(d);
}

/* recreate_on_corrupt: start over with an empty file. */
cachet_status dbm_recreate(dbm *d)
{
    cachet_status st = CACHET_OK;

    dbm_close_db(d);                /* under the file lock, which is exclusive */
    if (d->lockfd >= 0) {
        st = dbm_create_db(d);
    } else {
        GDBM_FILE db;
        int ec, err;
        unlink(d->path);
        if (!(db = dbm_gopen(d, d->path, GDBM_NEWDB, &ec, &err)))
            return dbm_gdbm_error_status(d, "cannot recreate", ec, err);
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
        return dbm_write_hdr(d);
    }
    return CACHET_OK;
}
