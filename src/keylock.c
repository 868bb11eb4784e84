/* The table of per-key creator locks.  Striped so that threads creating
 * different keys rarely touch the same mutex; an entry lives only while a
 * thread holds or waits on its key, so the table stays as small as the
 * number of keys being created right now. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "keylock.h"

struct keylock_entry {
    keylock_entry  *next;
    uint64_t        hash;
    char           *key;
    size_t          klen;
    unsigned        refs;        /* holder + waiters */
    int             held;
    uint64_t        generation;  /* bumped at every publish */
    void           *result;      /* last published value (encoded), or NULL */
    size_t          result_len;
    cachet_status   failure;     /* last publish was a creator's failure: its status */
    char           *failure_msg; /* and its message (NULL when no memory for it) */
    pthread_cond_t  cond;
};

/* FNV-1a: short keys, spread over 64 stripes; nothing here is attacker-
 * sensitive enough to need a keyed hash. */
static uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void keylock_init(keylock_table *t)
{
    for (int i = 0; i < KEYLOCK_STRIPES; i++) {
        pthread_mutex_init(&t->stripes[i].mu, NULL);
        t->stripes[i].head = NULL;
    }
}

void keylock_destroy(keylock_table *t)
{
    for (int i = 0; i < KEYLOCK_STRIPES; i++)
        pthread_mutex_destroy(&t->stripes[i].mu);
}

void keylock_fork_prepare(keylock_table *t)
{
    for (int i = 0; i < KEYLOCK_STRIPES; i++)
        pthread_mutex_lock(&t->stripes[i].mu);
}

void keylock_fork_parent(keylock_table *t)
{
    for (int i = KEYLOCK_STRIPES - 1; i >= 0; i--)
        pthread_mutex_unlock(&t->stripes[i].mu);
}

void keylock_fork_child(keylock_table *t)
{
    for (int i = KEYLOCK_STRIPES - 1; i >= 0; i--) {
        keylock_entry *e = t->stripes[i].head, *next;
        for (; e; e = next) {
            next = e->next;
            free(e->result);
            free(e->failure_msg);
            free(e->key);
            free(e);          /* its condition variable has no waiter left here */
        }
        t->stripes[i].head = NULL;
        pthread_mutex_unlock(&t->stripes[i].mu);
    }
}

static keylock_stripe *stripe_of(keylock_table *t, uint64_t h)
{
    return &t->stripes[(h >> 32) % KEYLOCK_STRIPES];
}

static keylock_entry *find_or_add(keylock_stripe *s, uint64_t h, const char *key, size_t klen)
{
    keylock_entry *e;
    for (e = s->head; e; e = e->next)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    if (!(e = calloc(1, sizeof *e)) || !(e->key = cachet__strndup(key, klen))) {
        free(e);
        return NULL;
    }
    e->hash = h;
    e->klen = klen;
    pthread_cond_init(&e->cond, NULL);
    e->next = s->head;
    s->head = e;
    return e;
}

/* Drops one reference; the last one out frees the entry.  Stripe locked. */
static void unref(keylock_stripe *s, keylock_entry *e)
{
    keylock_entry **p;
    if (--e->refs)
        return;
    for (p = &s->head; *p != e; p = &(*p)->next)
        ;
    *p = e->next;
    pthread_cond_destroy(&e->cond);
    free(e->result);
    free(e->failure_msg);
    free(e->key);
    free(e);
}

/* Waits (stripe locked) for the publish after gen, then takes the result. */
static keylock_outcome await_locked(keylock_stripe *s, keylock_entry *e, uint64_t gen,
                                    void **buf, size_t *len, cachet_status *failed)
{
    keylock_outcome o = KL_RETRY;
    while (e->held && e->generation == gen)
        pthread_cond_wait(&e->cond, &s->mu);
    if (e->generation != gen && e->failure && failed) {
        /* the creator waited for failed: share its failure (callers that
         * come after the publish take the key and retry) */
        *failed = e->failure;
        cachet__error(e->failure, "%s", e->failure_msg ? e->failure_msg
                                                        : cachet_strerror(e->failure));
        o = KL_FAILED;
    } else if (e->generation != gen && e->result) {
        void *copy = malloc(e->result_len + 1);
        if (copy) {
            memcpy(copy, e->result, e->result_len);
            ((char *)copy)[e->result_len] = '\0';   /* values handed out end in a NUL */
            *buf = copy;
            *len = e->result_len;
            o = KL_RESULT;
        }
    }
    unref(s, e);
    return o;
}

keylock_outcome keylock_acquire(keylock_table *t, const char *key, size_t klen, keylock_mode mode,
                                keylock_entry **out, uint64_t *generation, void **buf, size_t *len,
                                cachet_status *failed)
{
    uint64_t h = hash_key(key, klen);
    keylock_stripe *s = stripe_of(t, h);
    keylock_entry *e;
    keylock_outcome o;

    pthread_mutex_lock(&s->mu);
    if (!(e = find_or_add(s, h, key, klen))) {
        /* no memory for an entry: create without the lock rather than fail */
        pthread_mutex_unlock(&s->mu);
        *out = NULL;
        return KL_CREATE;
    }
    *out = e;
    if (!e->held) {
        e->held = 1;
        e->refs++;
        pthread_mutex_unlock(&s->mu);
        return KL_CREATE;
    }
    if (mode == KL_TRY) {
        pthread_mutex_unlock(&s->mu);
        return KL_BUSY;
    }
    e->refs++;
    *generation = e->generation;
    if (mode == KL_SUBSCRIBE) {
        pthread_mutex_unlock(&s->mu);
        return KL_SUBSCRIBED;
    }
    o = await_locked(s, e, *generation, buf, len, failed);
    pthread_mutex_unlock(&s->mu);
    return o;
}

keylock_outcome keylock_await(keylock_table *t, keylock_entry *e, uint64_t generation,
                              void **buf, size_t *len, cachet_status *failed)
{
    keylock_stripe *s = stripe_of(t, e->hash);
    keylock_outcome o;
    pthread_mutex_lock(&s->mu);
    o = await_locked(s, e, generation, buf, len, failed);
    pthread_mutex_unlock(&s->mu);
    return o;
}

/* Stripe locked: what every publish does. */
static void publish_locked(keylock_entry *e, const void *buf, size_t len, cachet_status failure,
                           const char *msg)
{
    free(e->result);
    e->result = NULL;
    free(e->failure_msg);
    e->failure_msg = NULL;
    e->failure = failure;
    if (buf && e->refs > 1 && (e->result = malloc(len + 1))) {
        memcpy(e->result, buf, len);
        e->result_len = len;
    }
    if (failure && msg && e->refs > 1)
        e->failure_msg = cachet__strdup(msg);
}

void keylock_publish_failure(keylock_table *t, keylock_entry *e, cachet_status st, const char *msg)
{
    keylock_stripe *s;
    if (!e)
        return;
    s = stripe_of(t, e->hash);
    pthread_mutex_lock(&s->mu);
    publish_locked(e, NULL, 0, st, msg);
    e->held = 0;
    e->generation++;
    pthread_cond_broadcast(&e->cond);
    unref(s, e);
    pthread_mutex_unlock(&s->mu);
}

void keylock_publish(keylock_table *t, keylock_entry *e, const void *buf, size_t len)
{
    keylock_stripe *s;
    if (!e)
        return;
    s = stripe_of(t, e->hash);
    pthread_mutex_lock(&s->mu);
    publish_locked(e, buf, len, CACHET_OK, NULL);
    e->held = 0;
    e->generation++;
    pthread_cond_broadcast(&e->cond);
    unref(s, e);
    pthread_mutex_unlock(&s->mu);
}
