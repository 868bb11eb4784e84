/* The dogpile lock: one byte per key of the dogpile lock file, locked with
 * an open-file-description lock on a descriptor of its own. */
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

cachet_status dbm_lock(void *state, const char *key, size_t klen, void **tok)
{
    dbm *d = state;
    struct flock fl;
    token *t;
    int fd;

    *tok = NULL;
    if (!d->dl_path)
        return CACHET_ENOTSUP;      /* dogpile_lockfile = false: in-process lock only */
    if ((fd = open(d->dl_path, O_RDWR | O_CREAT | O_CLOEXEC, FILE_MODE)) < 0)
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
            return CACHET_MISS;     /* another holds it */
        return dbm_sys_error("cannot lock", d->dl_path, err);
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

cachet_status dbm_unlock(void *state, const char *key, size_t klen, void *tok)
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
