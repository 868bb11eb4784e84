/* cachet_failure_cache_time: creator failures remembered per key, in this
 * process, so that callers get the failure at once instead of each running
 * a creator that is known to fail (negative caching).  A small table: one
 * entry per key whose creator failed within the time, bounded in count. */
#ifndef CACHET_REGION_FAILURES_H
#define CACHET_REGION_FAILURES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cachet/cachet.h>

/* At most this many keys are remembered; past it a new failure is not
 * (the creator then runs again, as without the option). */
#define CACHET_FAILURES_MAX 4096

typedef struct region_failure region_failure;

typedef struct {
    pthread_mutex_t  mu;
    int64_t          keep_ns;     /* cachet_failure_cache_time; 0 = off */
    region_failure  *head;
    _Atomic size_t   n;           /* entries: read without the lock to skip it */
} region_failures;

void region_failures_init(region_failures *f, double seconds);
void region_failures_destroy(region_failures *f);
/* fork(): the child keeps what the parent remembered (it is per process
 * from then on) but not a lock some parent thread held. */
void region_failures_fork_prepare(region_failures *f);
void region_failures_fork_parent(region_failures *f);
void region_failures_fork_child(region_failures *f);

/* Remembers that key's creator failed with st (msg: its message). */
void region_failures_note(region_failures *f, const char *key, size_t klen, cachet_status st,
                          const char *msg);
/* Forgets key (its creator succeeded). */
void region_failures_clear(region_failures *f, const char *key, size_t klen);
/* CACHET_OK when key has no remembered failure, else that failure's
 * status, with cachet_errmsg() saying what it was and how old. */
cachet_status region_failures_check(region_failures *f, const char *key, size_t klen);

#endif
