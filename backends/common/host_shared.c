/* The shared host state file (see host_shared.h).
 *
 * Layout: a 64-byte header (magic, version, slot count, the hash of the
 * server list), then one 64-byte slot per host.  A slot holds two 64-bit
 * words, each read and written with one atomic operation (no torn reads):
 *   word  state (bits 0-3), reason (bits 4-11), version (bits 12-63): a
 *         write bumps the version, a reader folds in a version it has not
 *         seen yet;
 *   claim the monotonic millisecond until which a process is making first
 *         contact with the host (0: none);
 *   confirm when and by which process the host was last found down (its
 *         going down, or a failed probe): "down" is believed only while a
 *         live process keeps confirming it, so a file left by processes
 *         long gone (or a port reused by a new server) misleads no one.
 * CLOCK_MONOTONIC is one clock for every process of a machine. */
#define _GNU_SOURCE
#include "host_shared.h"
#include "host.h"
#include "clock.h"
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAGIC   0x3148545348434143ull   /* "CACHSTH1" */
#define VERSION 1u

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t nslots;
    uint64_t list_hash;
    uint64_t pad[5];
} shared_header;

typedef struct {
    uint64_t word;
    uint64_t claim;
    uint64_t confirm;   /* (monotonic ms << 22) | pid of the last process that found it down */
    uint64_t pad[5];
} shared_slot;

struct cachet_shared {
    int          fd;
    pid_t        opener;       /* the process that opened it (a forked child did not) */
    dev_t        dev;
    ino_t        ino;
    size_t       size, nslots;
    shared_header *hdr;
    shared_slot   *slots;
    char         path[512];
};

/* FNV-1a 64 */
static uint64_t hash_add(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The directory: $XDG_RUNTIME_DIR when it is ours, a directory, and
 * private; else /dev/shm (the file name then carries the uid). */
static int pick_dir(char *dir, size_t size, int *private_dir)
{
    const char *x = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (x && x[0] == '/' && strlen(x) < size && stat(x, &st) == 0 && S_ISDIR(st.st_mode) &&
        st.st_uid == geteuid() && (st.st_mode & 077) == 0) {
        snprintf(dir, size, "%s", x);
        *private_dir = 1;
        return 0;
    }
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(dir, size, "/dev/shm");
        *private_dir = 0;
        return 0;
    }
    return -1;
}

static void say(const char *backend, const char *path, const char *why)
{
    cachet_backend_log(CACHET_LOG_INFO, "backend %s: shared_host_state: not using %s: %s "
                       "(host state stays per process)", backend, path, why);
}

cachet_shared *cachet__shared_open(const char *backend, const char *const *labels, size_t n)
{
    char dir[400];
    int private_dir, fd;
    uint64_t h = 0xcbf29ce484222325ull;
    struct stat st;
    cachet_shared *sh;
    size_t size;
    void *map;

    if (n == 0 || n > CACHET_SHARED_MAX_HOSTS || pick_dir(dir, sizeof dir, &private_dir) != 0)
        return NULL;
    h = hash_add(h, backend, strlen(backend) + 1);
    for (size_t i = 0; i < n; i++)
        h = hash_add(h, labels[i], strlen(labels[i]) + 1);
    if (!(sh = calloc(1, sizeof *sh)))
        return NULL;
    if (private_dir)
        snprintf(sh->path, sizeof sh->path, "%s/cachet-hosts-%016llx", dir,
                 (unsigned long long)h);
    else
        snprintf(sh->path, sizeof sh->path, "%s/cachet-hosts-%u-%016llx", dir,
                 (unsigned)geteuid(), (unsigned long long)h);
    size = sizeof(shared_header) + n * sizeof(shared_slot);
    /* Every process using the file holds a shared flock on it; the last
     * one to close takes it exclusively and removes the file.  So an opener
     * takes its shared lock (never waiting: at most a few short retries
     * while a closer holds it exclusively), then checks that the path still
     * names the file it locked. */
    for (int attempt = 0;; attempt++) {
        struct stat now;
        int locked = 0;
        fd = open(sh->path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            say(backend, sh->path, strerror(errno));
            free(sh);
            return NULL;
        }
        /* someone else's file, or one others may write: never trusted (nor
         * locked: its owner could hold a lock for ever) */
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            (st.st_mode & 077) != 0) {
            say(backend, sh->path, "not a regular file of this user with mode 0600");
            close(fd);
            free(sh);
            return NULL;
        }
        for (int i = 0; i < 20 && !locked; i++) {
            locked = flock(fd, LOCK_SH | LOCK_NB) == 0;
            if (!locked)
                nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
        if (locked && stat(sh->path, &now) == 0 && now.st_dev == st.st_dev &&
            now.st_ino == st.st_ino)
            break;
        close(fd);
        if (attempt == 3) {
            say(backend, sh->path, locked ? "it keeps being replaced" : "it stays locked");
            free(sh);
            return NULL;
        }
    }
    if ((size_t)st.st_size != size && ftruncate(fd, (off_t)size) != 0) {
        say(backend, sh->path, "cannot size it");
        close(fd);
        free(sh);
        return NULL;
    }
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        say(backend, sh->path, strerror(errno));
        close(fd);
        free(sh);
        return NULL;
    }
    sh->fd = fd;
    sh->opener = getpid();
    sh->dev = st.st_dev;
    sh->ino = st.st_ino;
    sh->size = size;
    sh->nslots = n;
    sh->hdr = map;
    sh->slots = (shared_slot *)((char *)map + sizeof(shared_header));
    /* a new file, or one that is not what we write: start it afresh (it is
     * ours; at worst another process's view of the hosts is forgotten) */
    if (sh->hdr->magic != MAGIC || sh->hdr->version != VERSION || sh->hdr->nslots != n ||
        sh->hdr->list_hash != h) {
        memset(map, 0, size);
        sh->hdr->version = VERSION;
        sh->hdr->nslots = (uint32_t)n;
        sh->hdr->list_hash = h;
        __atomic_store_n(&sh->hdr->magic, MAGIC, __ATOMIC_RELEASE);
    }
    return sh;
}

/* The last process using the file removes it (nobody else holds its shared
 * lock).  A forked child shares its parent's lock (one open file
 * description): it never removes it. */
void cachet__shared_close(cachet_shared *sh)
{
    struct stat st;
    if (!sh)
        return;
    munmap(sh->hdr, sh->size);
    if (sh->opener == getpid() && flock(sh->fd, LOCK_EX | LOCK_NB) == 0 &&
        stat(sh->path, &st) == 0 && st.st_dev == sh->dev && st.st_ino == sh->ino)
        unlink(sh->path);
    close(sh->fd);
    free(sh);
}

const char *cachet__shared_path(const cachet_shared *sh)
{
    return sh->path;
}

static shared_slot *slot_at(cachet_shared *sh, int slot)
{
    return slot >= 0 && (size_t)slot < sh->nslots ? &sh->slots[slot] : NULL;
}

static uint64_t confirm_word(double now)
{
    return ((uint64_t)(now * 1000) << 22) | ((uint64_t)getpid() & 0x3fffff);
}

/* Is "down" still confirmed: by a live process, within max_age s? */
static int confirmed(const shared_slot *s, double now, double max_age)
{
    uint64_t c = __atomic_load_n(&s->confirm, __ATOMIC_ACQUIRE);
    double at = (double)(c >> 22) / 1000.0;
    pid_t pid = (pid_t)(c & 0x3fffff);
    if (at > now + 1 || now - at > max_age || pid <= 0)
        return 0;                  /* too old, or ahead of the clock: corrupt */
    return pid == getpid() || kill(pid, 0) == 0 || errno == EPERM;
}

int cachet__shared_read(cachet_shared *sh, int slot, double now, double max_age,
                        uint64_t *seen, int *reason)
{
    shared_slot *s = slot_at(sh, slot);
    uint64_t w;
    int state, r;
    if (!s)
        return -1;
    w = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
    if (w == *seen)
        return -1;
    state = (int)(w & 0xf);
    r = (int)((w >> 4) & 0xff);
    if (state != CACHET_HOST_UP && state != CACHET_HOST_DOWN) {
        *seen = w;
        return -1;                 /* (corrupt: ignored) */
    }
    if (state == CACHET_HOST_DOWN && !confirmed(s, now, max_age))
        return -1;                 /* (stale: looked at again next time) */
    *seen = w;
    if (state == CACHET_HOST_DOWN)
        *reason = r > CACHET_HR_NONE && r < CACHET_HR_COUNT ? r : CACHET_HR_SHARED;
    return state;
}

void cachet__shared_confirm(cachet_shared *sh, int slot, double now)
{
    shared_slot *s = slot_at(sh, slot);
    if (s)
        __atomic_store_n(&s->confirm, confirm_word(now), __ATOMIC_RELEASE);
}

void cachet__shared_write(cachet_shared *sh, int slot, int state, int reason, uint64_t *seen)
{
    shared_slot *s = slot_at(sh, slot);
    uint64_t old, nw;
    if (!s)
        return;
    if (state == CACHET_HOST_DOWN)
        __atomic_store_n(&s->confirm, confirm_word(cachet_clock_now()), __ATOMIC_RELEASE);
    old = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
    do {
        nw = (((old >> 12) + 1) << 12) | ((uint64_t)(reason & 0xff) << 4) | (uint64_t)(state & 0xf);
    } while (!__atomic_compare_exchange_n(&s->word, &old, nw, 1, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    *seen = nw;
}

int cachet__shared_claim_first(cachet_shared *sh, int slot, double now, double timeout,
                               uint64_t *claim)
{
    shared_slot *s = slot_at(sh, slot);
    uint64_t now_ms = (uint64_t)(now * 1000), len_ms = (uint64_t)(timeout * 1000) + 100, v;
    if (!s)
        return 1;
    v = __atomic_load_n(&s->claim, __ATOMIC_ACQUIRE);
    /* live: ahead of now, but not further than a claim can reach (else corrupt) */
    if (v > now_ms && v <= now_ms + len_ms + 1000)
        return 0;
    if (!__atomic_compare_exchange_n(&s->claim, &v, now_ms + len_ms, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return 0;                  /* another process claimed it just now */
    *claim = now_ms + len_ms;
    return 1;
}

void cachet__shared_release_first(cachet_shared *sh, int slot, uint64_t *claim)
{
    shared_slot *s = slot_at(sh, slot);
    uint64_t mine = *claim;
    if (s && mine)
        __atomic_compare_exchange_n(&s->claim, &mine, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    *claim = 0;
}
