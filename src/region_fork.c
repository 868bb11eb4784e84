/* fork() safety.  A child must not inherit a lock that some other thread
 * of the parent held at the fork (it would never be released), nor share a
 * socket with the parent.  pthread_atfork handlers, registered once, walk
 * the open regions: before the fork they take every lock the region and its
 * backend use; after it the parent releases them, and the child releases
 * them, forgets get_or_create's per-key locks (their threads are the
 * parent's) and lets the backend drop its connections. */
#include "config.h"
#include <pthread.h>
#include "internal.h"
#include "region.h"

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static cachet_region *open_regions;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
    pthread_mutex_lock(&open_lock);
    for (cachet_region *r = open_regions; r; r = r->next_open) {
        region_refresh_fork_prepare(&r->refresh);
        keylock_fork_prepare(&r->locks);
        region_failures_fork_prepare(&r->failures);
        cachet__below_fork_prepare(&r->below);
    }
}

static void parent(void)
{
    for (cachet_region *r = open_regions; r; r = r->next_open) {
        cachet__below_fork_parent(&r->below);
        region_failures_fork_parent(&r->failures);
        keylock_fork_parent(&r->locks);
        region_refresh_fork_parent(&r->refresh);
    }
    pthread_mutex_unlock(&open_lock);
}

static void child(void)
{
    for (cachet_region *r = open_regions; r; r = r->next_open) {
        cachet__below_fork_child(&r->below);
        region_failures_fork_child(&r->failures);
        keylock_fork_child(&r->locks);
        region_refresh_fork_child(&r->refresh);
    }
    pthread_mutex_unlock(&open_lock);
}

static void register_handlers(void)
{
    pthread_atfork(prepare, parent, child);
}

void cachet__region_track(cachet_region *r)
{
    pthread_once(&once, register_handlers);
    pthread_mutex_lock(&open_lock);
    r->next_open = open_regions;
    open_regions = r;
    pthread_mutex_unlock(&open_lock);
}

void cachet__region_untrack(cachet_region *r)
{
    pthread_mutex_lock(&open_lock);
    for (cachet_region **p = &open_regions; *p; p = &(*p)->next_open)
        if (*p == r) {
            *p = r->next_open;
            break;
        }
    pthread_mutex_unlock(&open_lock);
}
