/* shared_host_state: what one process learns about a host (down, back up,
 * someone is making first contact) is seen at once by every process of the
 * same user on the machine that uses the same servers, through a small
 * shared-memory file (one 64-byte slot per host).  So a dead or hung host
 * costs one stall per machine, not one per process or prefork worker.
 *
 * The file is $XDG_RUNTIME_DIR/cachet-hosts-<hash> when that directory is
 * ours and private, else /dev/shm/cachet-hosts-<uid>-<hash>; the hash is of
 * the backend name and the server list.  It is created 0600 and used only
 * when it is a regular file owned by this user with no group or other
 * permission (O_NOFOLLOW: never a symlink).  Everything read from it is
 * validated: a corrupt or hostile file can make hosts look up or down,
 * nothing else (no crash, no unbounded wait, no out-of-range index). */
#ifndef CACHET_BACKEND_COMMON_HOST_SHARED_H
#define CACHET_BACKEND_COMMON_HOST_SHARED_H

#include <stddef.h>
#include <stdint.h>

typedef struct cachet_shared cachet_shared;

#define CACHET_SHARED_MAX_HOSTS 64

/* NULL when the file cannot be used (the reason goes to the log at info
 * level: host state then stays per process). */
cachet_shared *cachet__shared_open(const char *backend, const char *const *labels, size_t n);
void           cachet__shared_close(cachet_shared *sh);
/* The path of the file (for messages and tests). */
const char    *cachet__shared_path(const cachet_shared *sh);

/* A state (CACHET_HOST_UP or _DOWN) newer than *seen (then updated), with
 * *reason (a valid CACHET_HR_*); -1 when nothing new or the slot is bad.
 * "down" counts only while a live process confirmed it within max_age s. */
int  cachet__shared_read(cachet_shared *sh, int slot, double now, double max_age,
                         uint64_t *seen, int *reason);
/* The host is still down (a failed probe): keeps "down" believed. */
void cachet__shared_confirm(cachet_shared *sh, int slot, double now);
void cachet__shared_write(cachet_shared *sh, int slot, int state, int reason, uint64_t *seen);
/* First contact with an unknown host: 1 when this process may make it (a
 * claim of timeout seconds stored in *claim), 0 while another holds a
 * live claim.  A claim further ahead than the longest a claim can be is
 * corrupt and ignored. */
int  cachet__shared_claim_first(cachet_shared *sh, int slot, double now, double timeout,
                                uint64_t *claim);
void cachet__shared_release_first(cachet_shared *sh, int slot, uint64_t *claim);

#endif
