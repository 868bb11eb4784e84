/* Per-key creator locks for get_or_create (dogpile's Lock, in-process).
 *
 * One entry exists per key that some thread is creating or waiting on; it
 * carries the creator's result to the threads that waited for it, so they
 * get the value the creator made even when the backend could not store it
 * (null backend, a dead server). */
#ifndef CACHET_KEYLOCK_H
#define CACHET_KEYLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <cachet/cachet.h>

/* 32: plenty for per-key creator locks, and fork_prepare holds them all at
 * once, which must stay under ThreadSanitizer's 64 locks held per thread
 * (64 stripes + the region's and a backend's locks crashed TSan's deadlock
 * detector in the redis fork test). */
#define KEYLOCK_STRIPES 32

typedef struct keylock_entry keylock_entry;

typedef struct {
    pthread_mutex_t mu;
    keylock_entry  *head;
} keylock_stripe;

typedef struct {
    keylock_stripe stripes[KEYLOCK_STRIPES];
} keylock_table;

void keylock_init(keylock_table *t);
void keylock_destroy(keylock_table *t);
/* fork(): hold every stripe across it; in the child, forget all entries
 * (their holders and waiters are threads of the parent). */
void keylock_fork_prepare(keylock_table *t);
void keylock_fork_parent(keylock_table *t);
void keylock_fork_child(keylock_table *t);

typedef enum {
    KL_CREATE,      /* the caller holds the key: it must create, then keylock_publish */
    KL_RESULT,      /* another thread created: buf and len hold a copy of its encoded value */
    KL_BUSY,        /* (try only) another thread holds the key */
    KL_RETRY,       /* the creator failed: look in the cache again, then try again */
    KL_SUBSCRIBED,  /* (subscribe only) registered as a waiter: call keylock_await */
    KL_FAILED,      /* the creator failed (keylock_publish_failure): *failed holds its
                       status and this thread's cachet_errmsg() its message */
} keylock_outcome;

typedef enum {
    KL_WAIT,        /* block until the holder publishes */
    KL_TRY,         /* never block: KL_BUSY if held */
    KL_SUBSCRIBE,   /* never block: if held, register as a waiter (KL_SUBSCRIBED)
                       and collect the result later with keylock_await */
} keylock_mode;

/* Takes the key's lock, or waits for / subscribes to its holder's result.
 * failed: where a waiter gets the status of a creator that failed
 * (KL_FAILED); NULL: such a failure is KL_RETRY, look again (cachet_add). */
keylock_outcome keylock_acquire(keylock_table *t, const char *key, size_t klen, keylock_mode mode,
                                keylock_entry **e, uint64_t *generation, void **buf, size_t *len,
                                cachet_status *failed);

/* For a KL_SUBSCRIBED entry: waits for the publish after generation;
 * KL_RESULT (buf and len set), KL_FAILED (with failed) or KL_RETRY.  Drops
 * the subscription. */
keylock_outcome keylock_await(keylock_table *t, keylock_entry *e, uint64_t generation,
                              void **buf, size_t *len, cachet_status *failed);

/* The holder hands its result to the waiters (buf NULL: the creator failed,
 * waiters retry) and gives up the key.  buf is copied only if some thread
 * is waiting. */
void keylock_publish(keylock_table *t, keylock_entry *e, const void *buf, size_t len);
/* The holder's creator failed with st (msg: its cachet_errmsg()): the
 * threads waiting now get that failure at once instead of each running the
 * creator in turn; a caller that comes after takes the key and retries. */
void keylock_publish_failure(keylock_table *t, keylock_entry *e, cachet_status st, const char *msg);

#endif
