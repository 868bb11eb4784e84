/* The dispatch seam: the one place where a region's call leaves for the
 * layer below it (today the backend plugin; the proxy chain goes here).
 * What every caller would otherwise repeat lives here once: the serialize
 * lock of a backend that is not thread-safe (CACHET_CAP_SERIALIZE), the
 * loops that stand in for a missing multi-operation, "no lock" for a
 * backend without one, and the fork hooks.  The region above never touches
 * a vtable. */
#ifndef CACHET_DISPATCH_H
#define CACHET_DISPATCH_H

#include <pthread.h>
#include <cachet/backend.h>

typedef struct {
    const cachet_backend_ops *ops;
    void            *state;
    int              serialize;    /* CACHET_CAP_SERIALIZE: one call at a time */
    pthread_mutex_t  serial_lock;
} cachet_below;

/* Opens ops with params into b; on failure b holds nothing. */
cachet_status cachet__below_open(cachet_below *b, const cachet_backend_ops *ops,
                                 const cachet_backend_params *params);
void          cachet__below_close(cachet_below *b);
static inline unsigned cachet__below_caps(const cachet_below *b) { return b->ops->caps; }

/* get is the hottest call of all: inline, one branch for the lock. */
static inline cachet_status cachet__below_get(cachet_below *b, const char *key, size_t klen,
                                              void **value, size_t *len)
{
    cachet_status st;
    if (!b->serialize)
        return b->ops->get(b->state, key, klen, value, len);
    pthread_mutex_lock(&b->serial_lock);
    st = b->ops->get(b->state, key, klen, value, len);
    pthread_mutex_unlock(&b->serial_lock);
    return st;
}
cachet_status cachet__below_set(cachet_below *b, const char *key, size_t klen,
                                const void *value, size_t len);
cachet_status cachet__below_del(cachet_below *b, const char *key, size_t klen);

/* One call for n items where the layer has the multi-operation, else a loop
 * of single calls; each item's status is set either way. */
cachet_status cachet__below_get_multi(cachet_below *b, cachet_backend_item *items, size_t n);
cachet_status cachet__below_set_multi(cachet_below *b, cachet_backend_item *items, size_t n);
cachet_status cachet__below_delete_multi(cachet_below *b, cachet_backend_item *items, size_t n);

/* The cross-process lock: CACHET_ENOTSUP where the layer has none. */
cachet_status cachet__below_lock(cachet_below *b, const char *key, size_t klen, void **token);
cachet_status cachet__below_unlock(cachet_below *b, const char *key, size_t klen, void *token);

/* CACHET_OK with nothing reported where the layer has no report. */
cachet_status cachet__below_report(cachet_below *b, cachet_report_fn fn, void *arg);
/* 1 when the layer can sweep or compact (cachet_compact has work). */
int           cachet__below_compactable(const cachet_below *b);
cachet_status cachet__below_sweep(cachet_below *b,
                                  int (*keep)(void *arg, const void *value, size_t len),
                                  void *arg, size_t *removed);
cachet_status cachet__below_compact(cachet_below *b);

/* fork(): prepare takes the serialize lock and the layer's own locks;
 * parent and child release them (the child also drops what it must not
 * share with the parent: its sockets). */
void cachet__below_fork_prepare(cachet_below *b);
void cachet__below_fork_parent(cachet_below *b);
void cachet__below_fork_child(cachet_below *b);

#endif
