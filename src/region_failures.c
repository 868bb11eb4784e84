/* The remembered creator failures (region_failures.h).  A list under one
 * mutex: it is consulted only on the slow path of get_or_create (no fresh
 * value), and with the option off it is not consulted at all. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "region.h"
#include "region_failures.h"

struct region_failure {
    region_failure *next;
    char           *key;
    size_t          klen;
    int64_t         at_ns;       /* CLOCK_MONOTONIC when it failed */
    cachet_status   st;
    char           *msg;
};

void region_failures_init(region_failures *f, double seconds)
{
    pthread_mutex_init(&f->mu, NULL);
    f->keep_ns = seconds > 0 ? (int64_t)(seconds * 1e9) : 0;
    f->head = NULL;
    f->n = 0;
}

static void drop(region_failure *e)
{
    free(e->key);
    free(e->msg);
    free(e);
}

void region_failures_destroy(region_failures *f)
{
    for (region_failure *e = f->head, *next; e; e = next) {
        next = e->next;
        drop(e);
    }
    f->head = NULL;
    pthread_mutex_destroy(&f->mu);
}

void region_failures_fork_prepare(region_failures *f) { pthread_mutex_lock(&f->mu); }
void region_failures_fork_parent(region_failures *f) { pthread_mutex_unlock(&f->mu); }
void region_failures_fork_child(region_failures *f) { pthread_mutex_unlock(&f->mu); }

/* Unlinks the expired entries and returns key's, if any.  Locked. */
static region_failure **find(region_failures *f, const char *key, size_t klen, int64_t now)
{
    region_failure **p = &f->head, **hit = NULL;
    while (*p) {
        region_failure *e = *p;
        if (now - e->at_ns >= f->keep_ns) {
            *p = e->next;
            drop(e);
            f->n--;
            continue;
        }
        if (e->klen == klen && memcmp(e->key, key, klen) == 0)
            hit = p;
        p = &e->next;
    }
    return hit;
}

void region_failures_note(region_failures *f, const char *key, size_t klen, cachet_status st,
                          const char *msg)
{
    int64_t now = cachet__mono_ns();
    region_failure **p, *e;
    if (!f->keep_ns)
        return;
    pthread_mutex_lock(&f->mu);
    if ((p = find(f, key, klen, now)) != NULL) {
        e = *p;
    } else if (f->n >= CACHET_FAILURES_MAX || !(e = calloc(1, sizeof *e))) {
        pthread_mutex_unlock(&f->mu);
        return;
    } else if (!(e->key = cachet__strndup(key, klen))) {
        free(e);
        pthread_mutex_unlock(&f->mu);
        return;
    } else {
        e->klen = klen;
        e->next = f->head;
        f->head = e;
        f->n++;
    }
    e->at_ns = now;
    e->st = st;
    free(e->msg);
    e->msg = msg ? cachet__strdup(msg) : NULL;
    pthread_mutex_unlock(&f->mu);
}

void region_failures_clear(region_failures *f, const char *key, size_t klen)
{
    region_failure **p;
    if (!f->keep_ns)
        return;
    pthread_mutex_lock(&f->mu);
    if ((p = find(f, key, klen, cachet__mono_ns())) != NULL) {
        region_failure *e = *p;
        *p = e->next;
        drop(e);
        f->n--;
    }
    pthread_mutex_unlock(&f->mu);
}

cachet_status region_failures_check(region_failures *f, const char *key, size_t klen)
{
    int64_t now;
    region_failure **p;
    cachet_status st = CACHET_OK;
    if (!f->keep_ns || atomic_load_explicit(&f->n, memory_order_relaxed) == 0)
        return CACHET_OK;
    now = cachet__mono_ns();
    pthread_mutex_lock(&f->mu);
    if ((p = find(f, key, klen, now)) != NULL) {
        st = (*p)->st;
        cachet__error(st, "%s (the creator failed %.3f s ago; remembered for "
                      "cachet_failure_cache_time = %g s)",
                      (*p)->msg ? (*p)->msg : cachet_strerror(st),
                      (double)(now - (*p)->at_ns) / 1e9, (double)f->keep_ns / 1e9);
    }
    pthread_mutex_unlock(&f->mu);
    return st;
}
