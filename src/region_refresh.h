/* cachet_refresh_threads: background regeneration (dogpile's
 * async_creation_runner).  When get_or_create finds a stale value (or an
 * early refresh is due) and takes the key's lock, it hands the key -- lock
 * and all -- to a refresh thread and returns the value it has at once; the
 * thread runs the creator, stores the value and publishes it.
 *
 * The threads start on the first refresh.  fork(): the child has none of
 * them; its queue starts empty and its threads start again on its own
 * first refresh (so the child refreshes in the background too). */
#ifndef CACHET_REGION_REFRESH_H
#define CACHET_REGION_REFRESH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <cachet/cachet.h>
#include "key.h"
#include "keylock.h"

/* Refreshes queued beyond this run in the caller, as without threads. */
#define CACHET_REFRESH_QUEUE_MAX 1024
#define CACHET_REFRESH_THREADS_MAX 64

typedef struct refresh_job refresh_job;

typedef struct {
    pthread_mutex_t  mu;
    pthread_cond_t   cond;
    unsigned         want;              /* cachet_refresh_threads; 0 = off */
    unsigned         started;           /* threads running in this process */
    int              stopping;
    refresh_job     *head, *tail;
    size_t           queued;
    pthread_t        threads[CACHET_REFRESH_THREADS_MAX];
} region_refresh;

struct cachet_region;
void region_refresh_init(region_refresh *p, unsigned threads);
/* Stops the threads after the refresh each is running; queued refreshes
 * are dropped (their keys released to waiters). */
void region_refresh_stop(struct cachet_region *r);
void region_refresh_fork_prepare(region_refresh *p);
void region_refresh_fork_parent(region_refresh *p);
void region_refresh_fork_child(region_refresh *p);

/* Hands the key (whose lock e the caller holds) to a refresh thread.
 * Returns 1 when queued (the lock is the job's now), 0 when the caller
 * must run the creator itself (off, queue full, no thread could start). */
int region_refresh_submit(struct cachet_region *r, const cachet_key *k, const char *key,
                          cachet_creator create, void *arg, const cachet_options *o,
                          keylock_entry *e, int64_t newer_than);

#endif
