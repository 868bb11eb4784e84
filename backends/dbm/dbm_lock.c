/* The dogpile lock: one byte per key of the dogpile lock file, locked with
 * an open-file-description lock on a descriptor of its own.  Taking it
 * never waits; how long get_or_create polls it is bounded by lock_wait. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dbm_internal.h"

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

/* get_or_create polls lock() while another process holds the key's lock,
 * until the value lands; an OFD lock lives as long as its holder, so a
 * creator that is stopped or hung would keep its pollers for ever.  So a
 * thread's run of refusals for one key is remembered, and once it has lasted
 * lock_wait, lock returns CACHET_ETIMEDOUT: get_or_create then goes on
 * without the lock, as it does whenever a lock cannot be taken.  Polls are
 * ~10 ms apart, plus a lookup that may itself wait lock_wait: a refusal
 * further from the last one than that begins a new run. */
static __thread struct {
    const dbm *d;
    off_t      off;
    int64_t    since, last;
} refused;

/* CACHET_MISS (poll again) or CACHET_ETIMEDOUT (waited lock_wait). */
static cachet_status held_by_another(const dbm *d, off_t off)
{
    int64_t now = dbm_now_ns(), gap = d->lock_wait_ns + 1000000000LL;
    int same_run = refused.d == d && refused.off == off && now - refused.last <= gap;

    if (!same_run)
        refused.since = now;
    refused.d = d;
    refused.off = off;
    refused.last = now;
    if (same_run && now - refused.since >= d->lock_wait_ns) {
        refused.d = NULL;           /* the next call waits afresh */
        return cachet_backend_error(CACHET_ETIMEDOUT, "backend " BACKEND ": the get_or_create "
                                    "lock of this key in %s was held by another process for "
                                    "lock_wait %g s (a holder that is stopped or hung keeps "
                                    "it); going on without it", d->dl_path,
                                    (double)d->lock_wait_ns / 1e9);
    }
    return CACHET_MISS;
}

cachet_status dbm_lock(void *state, const char *key, size_t klen, void **tok)
{
    dbm *d = state;
    struct flock fl;
    token *t;
    int fd;

    *tok = NULL;
    if (!d->dl_path)
        return CACHET_ENOTSUP;      /* dogpile_lockfile = false: in-process lock only */
    if ((fd = open(d->dl_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, FILE_MODE)) < 0)
        return dbm_sys_error("cannot open the dogpile lock file", d->dl_path, errno);
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = key_offset(key, klen);
    fl.l_len = 1;
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        int err = errno;
        close(fd);
        if (err == EAGAIN || err == EACCES)
            return held_by_another(d, fl.l_start);
        return dbm_sys_error("cannot lock", d->dl_path, err);
    }
    if (!(t = malloc(sizeof *t))) {
        close(fd);
        return cachet_backend_error(CACHET_ENOMEM, "backend " BACKEND ": out of memory");
    }
    t->fd = fd;
    if (refused.d == d)
        refused.d = NULL;
    pthread_mutex_lock(&d->tok_mu);
    t->next = d->tokens;
    d->tokens = t;
    pthread_mutex_unlock(&d->tok_mu);
    *tok = t;
    return CACHET_OK;
}

cachet_status dbm_unlock(void *state, const char *key, size_t klen, void *tok)
{
    dbm *d = state;
    token **pp;
    (void)key;
    (void)klen;

    pthread_mutex_lock(&d->tok_mu);
    for (pp = &d->tokens; *pp; pp = &(*pp)->next)
        if (*pp == tok) {
            *pp = ((token *)tok)->next;
            close(((token *)tok)->fd);      /* releases the lock */
            free(tok);
            break;
        }
    pthread_mutex_unlock(&d->tok_mu);
    return CACHET_OK;               /* unknown token: dropped by a fork */
}
