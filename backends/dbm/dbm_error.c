/* The dbm backend's error messages: system errors and gdbm's. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include "dbm_internal.h"

cachet_status dbm_sys_error(const char *what, const char *path, int err)
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
cachet_status dbm_gdbm_error_status(const dbm *d, const char *what, int ec, int err)
{
    if (ec == GDBM_MALLOC_ERROR)
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": %s %s: out of memory",
                                    what, d->path);
    /* memory-mapped reads report a position past the end of a truncated
     * file as a seek to an invalid offset */
    if (structural(ec) || (ec == GDBM_FILE_SEEK_ERROR && err == EINVAL))
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

cachet_status dbm_db_error(const dbm *d, const char *what)
{
    return dbm_gdbm_error_status(d, what, gdbm_last_errno(d->db), gdbm_last_syserr(d->db));
}
