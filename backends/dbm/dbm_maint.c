/* Whole-file operations: sweep (drop what keep refuses), compact
 * (gdbm_reorganize) and the report. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "dbm_internal.h"

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
            st = dbm_db_error(d, "cannot read");
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
        st = dbm_db_error(d, "cannot walk");
    if (st == CACHET_OK && ndead)
        st = dbm_mark_dirty(d);
    for (i = 0; i < ndead; i++) {
        if (st == CACHET_OK && gdbm_delete(d->db, dead[i]) == 0)
            s->removed++;
        else if (st == CACHET_OK && gdbm_last_errno(d->db) != GDBM_ITEM_NOT_FOUND)
            st = dbm_db_error(d, "cannot delete from");
        free(dead[i].dptr);
    }
    free(dead);
    return st;
}

cachet_status dbm_sweep(void *state, int (*keep)(void *arg, const void *value, size_t len),
                        void *arg, size_t *removed)
{
    sweep_arg s = {keep, arg, 0};
    cachet_status st = dbm_run(state, 1, op_sweep, &s);
    if (removed)
        *removed = s.removed;
    return st;
}

static cachet_status op_compact(dbm *d, void *arg)
{
    cachet_status st;
    struct stat sb;
    (void)arg;
    if ((st = dbm_mark_dirty(d)) != CACHET_OK)
        return st;
    if (gdbm_reorganize(d->db) != 0)
        return dbm_db_error(d, "cannot reorganize");
    /* the handle now reads the new file that was renamed into place */
    if (fstat(gdbm_fdesc(d->db), &sb) == 0) {
        d->db_dev = sb.st_dev;
        d->db_ino = sb.st_ino;
    }
    return CACHET_OK;
}

cachet_status dbm_compact(void *state)
{
    return dbm_run(state, 1, op_compact, NULL);
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
        return dbm_db_error(d, "cannot count");
    if (fstat(gdbm_fdesc(d->db), &sb) == 0)
        s->size = sb.st_size;
    s->have = 1;
    return CACHET_OK;
}

cachet_status dbm_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    dbm *d = state;
    stat_arg s = {0, 0, 0};
    uint64_t rec = 0, recr = 0, lost = 0, blost = 0, died = 0;
    char buf[32];
    cachet_status st = dbm_run(d, 0, op_stat, &s);
    dbm_wait w;
    int counted;

    dbm_wait_begin(&w, d);          /* a report waits no longer than an operation */
    if ((counted = dbm_mutex_lock_until(&d->mu, &w) == 0)) {
        rec = d->recoveries;
        recr = d->recreated;
        lost = d->keys_lost;
        blost = d->buckets_lost;
        died = d->holders_died;
        pthread_mutex_unlock(&d->mu);
    }
    fn(arg, "filename", d->path);
    fn(arg, "rw_lockfile", d->rw_path ? d->rw_path : "false");
    fn(arg, "dogpile_lockfile", d->dl_path ? d->dl_path : "false");
    if (s.have) {
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)s.entries);
        fn(arg, "entries", buf);
        snprintf(buf, sizeof buf, "%lld", (long long)s.size);
        fn(arg, "file_size", buf);
    }
    if (counted) {
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)rec);
        fn(arg, "recoveries", buf);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)lost);
        fn(arg, "keys_lost", buf);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)blost);
        fn(arg, "buckets_lost", buf);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)recr);
        fn(arg, "recreated", buf);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)died);
        fn(arg, "lock_holders_died", buf);
    }
    snprintf(buf, sizeof buf, "%g", (double)d->lock_wait_ns / 1e9);
    fn(arg, "lock_wait", buf);
    return st < 0 ? st : CACHET_OK;
}
