/* The database handle: opening gdbm, building new files aside, and keeping
 * a handle open for as long as the generation says it is current. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dbm_internal.h"

void dbm_close_db(dbm *d)
{
    if (d->db) {
        gdbm_close(d->db);
        d->db = NULL;
    }
}

/* gdbm's memory-mapped I/O (its default): a read is a copy, not a
 * system call.  Safe because neither cachet nor gdbm ever shrinks a
 * database file in place: new files (creation, recovery, reorganization)
 * are built aside and renamed over the old one, whose inode the mapping
 * keeps. */
static int open_flags(const dbm *d, int mode)
{
    return mode | GDBM_CLOEXEC | (d->lockfd >= 0 ? GDBM_NOLOCK : 0);
}

/* gdbm_open; without a lock file, gdbm's own locks (which never wait) are
 * retried until the operation's deadline. */
GDBM_FILE dbm_gopen(dbm *d, const char *path, int mode, int *ec, int *err)
{
    for (;;) {
        GDBM_FILE db;
        errno = 0;
        db = gdbm_open(path, 0, open_flags(d, mode), FILE_MODE, NULL);
        *ec = db ? GDBM_NO_ERROR : gdbm_errno;
        *err = errno;
        if (db || d->lockfd >= 0 || (*ec != GDBM_CANT_BE_READER && *ec != GDBM_CANT_BE_WRITER))
            return db;
        if (!dbm_wait_more(&d->wait))
            return NULL;
    }
}

/* Builds an empty database beside path and renames it over path, so that
 * nobody ever opens a half-initialized file.  Under the exclusive lock. */
cachet_status dbm_create_db(dbm *d)
{
    size_t n = strlen(d->path) + 16;
    char *tmp = malloc(n);
    GDBM_FILE db;
    int fd;

    if (!tmp)
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    snprintf(tmp, n, "%s.new.XXXXXX", d->path);
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        cachet_status st = dbm_sys_error("cannot create the database", d->path, errno);
        free(tmp);
        return st;
    }
    db = gdbm_fd_open(fd, tmp, 0, GDBM_NEWDB | GDBM_NOLOCK | GDBM_NOMMAP | GDBM_CLOERROR, NULL);
    if (!db) {
        cachet_status st = dbm_gdbm_error_status(d, "cannot create", gdbm_errno, errno);
        unlink(tmp);
        free(tmp);
        return st;
    }
    if ((d->sync && gdbm_sync(db) != 0) || gdbm_close(db) != 0 || rename(tmp, d->path) != 0) {
        cachet_status st = dbm_sys_error("cannot create the database", d->path,
                                         errno ? errno : EIO);
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    /* a new file: every other process's handle (on a file deleted by hand)
     * must see that it is no longer current */
    if (d->lockfd >= 0) {
        d->hdr.gen++;
        return dbm_write_hdr(d);
    }
    return CACHET_OK;
}

/* Makes d->db a handle that can read (writer = 0) or write the current
 * file.  CACHET_MISS: there is no file to read (a reader never creates). */
cachet_status dbm_get_db(dbm *d, int writer)
{
    int ec, err;
    struct stat sb;

    /* Every replacement of the file by cachet (creation over an empty one,
     * recovery, recreate_on_corrupt, compaction) bumps the generation, so
     * an unchanged one means the same file: no stat per call.  (A file
     * deleted by hand is noticed at the next write of another process.) */
    if (d->db && d->lockfd >= 0 && d->db_gen == d->hdr.gen && (d->db_writer || !writer))
        return CACHET_OK;
    dbm_close_db(d);
    if (writer && d->lockfd >= 0 && stat(d->path, &sb) == 0 && sb.st_size == 0) {
        cachet_status st = dbm_create_db(d);   /* never initialized: build it aside */
        if (st != CACHET_OK)
            return st;
    }
    d->db = dbm_gopen(d, d->path, writer ? GDBM_WRITER : GDBM_READER, &ec, &err);
    if (!d->db && ec == GDBM_FILE_OPEN_ERROR && err == ENOENT) {
        cachet_status st;
        if (!writer)
            return CACHET_MISS;
        if (d->lockfd < 0)          /* no lock to build it aside under */
            d->db = dbm_gopen(d, d->path, GDBM_WRCREAT, &ec, &err);
        else if ((st = dbm_create_db(d)) != CACHET_OK)
            return st;
        else
            d->db = dbm_gopen(d, d->path, GDBM_WRITER, &ec, &err);
    }
    if (!d->db && !writer && ec == GDBM_EMPTY_DATABASE)
        return CACHET_MISS;         /* created, never initialized: nothing in it */
    if (!d->db) {
        if (ec == GDBM_CANT_BE_READER || ec == GDBM_CANT_BE_WRITER)
            return dbm_lock_wait_error(d, d->path, "another process");
        if (ec == GDBM_FILE_OPEN_ERROR)
            return dbm_sys_error(writer ? "cannot open for writing" : "cannot open", d->path, err);
        return dbm_gdbm_error_status(d, "cannot open", ec, err);
    }
    d->db_writer = writer;
    d->db_gen = d->hdr.gen;
    if (fstat(gdbm_fdesc(d->db), &sb) == 0) {
        d->db_dev = sb.st_dev;
        d->db_ino = sb.st_ino;
    }
    return CACHET_OK;
}
