/* The dispatch seam: the one place where a region's call leaves for the
 * layers below it -- the proxy chain (cachet_proxies, outermost first),
 * then the backend plugin.  What every caller would otherwise repeat lives
 * here once: the serialize lock of a backend that is not thread-safe
 * (CACHET_CAP_SERIALIZE), pass-through of the operations a proxy leaves
 * NULL, the loops that stand in for a missing multi-operation, "no lock"
 * where no layer has one, and the fork hooks.  The region above never
 * touches a vtable. */
#ifndef CACHET_DISPATCH_H
#define CACHET_DISPATCH_H

#include <pthread.h>
#include <cachet/backend.h>

/* The operations a layer may have (index into cachet_layer.at). */
enum {
    LOP_GET, LOP_SET, LOP_DEL, LOP_ADD, LOP_GET_MULTI, LOP_SET_MULTI, LOP_DELETE_MULTI,
    LOP_LOCK, LOP_UNLOCK, LOP__COUNT
};

struct cachet_layer {
    const char               *name;
    void                     *state;
    const cachet_proxy_ops   *proxy;      /* a proxy ... */
    const cachet_backend_ops *backend;    /* ... or the backend at the bottom */
    struct cachet_layer      *next;       /* the layer below; NULL for the backend */
    struct cachet_layer      *bottom;     /* the backend's layer */
    int                       serialize;  /* backend: CACHET_CAP_SERIALIZE */
    pthread_mutex_t           serial_lock;
    /* where a call made at this layer lands: the first layer at or below
     * it that has the operation (NULL: none has it) */
    struct cachet_layer      *at[LOP__COUNT];
};

/* One proxy of the chain to open: its vtable and arguments. */
typedef struct {
    const cachet_proxy_ops     *ops;
    const cachet_backend_params *params;
} cachet_proxy_spec;

typedef struct {
    cachet_layer *top;        /* where the region's calls enter */
    cachet_layer *layers;     /* nproxies + 1, outermost first, backend last */
    size_t        nlayers;
} cachet_below;

/* Opens the backend, then the proxies from the innermost out, into b; on
 * failure everything opened is closed again and b holds nothing. */
cachet_status cachet__below_open(cachet_below *b, const cachet_backend_ops *ops,
                                 const cachet_backend_params *params,
                                 const cachet_proxy_spec *proxies, size_t nproxies);
void          cachet__below_close(cachet_below *b);
static inline unsigned cachet__below_caps(const cachet_below *b)
{
    return b->top->bottom->backend->caps;
}

/* get is the hottest call of all: inline, one branch for a proxy, one for
 * the lock. */
static inline cachet_status cachet__layer_get(cachet_layer *l, const char *key, size_t klen,
                                              void **value, size_t *len)
{
    cachet_layer *t = l->at[LOP_GET];
    cachet_status st;
    if (t->proxy)
        return t->proxy->get(t->state, key, klen, value, len);
    if (!t->serialize)
        return t->backend->get(t->state, key, klen, value, len);
    pthread_mutex_lock(&t->serial_lock);
    st = t->backend->get(t->state, key, klen, value, len);
    pthread_mutex_unlock(&t->serial_lock);
    return st;
}
static inline cachet_status cachet__below_get(cachet_below *b, const char *key, size_t klen,
                                              void **value, size_t *len)
{
    return cachet__layer_get(b->top, key, klen, value, len);
}
cachet_status cachet__below_set(cachet_below *b, const char *key, size_t klen,
                                const void *value, size_t len, double ttl);
cachet_status cachet__below_del(cachet_below *b, const char *key, size_t klen);
/* CACHET_OK, CACHET_EXISTS, or CACHET_ENOTSUP where no layer has add (the
 * region then checks and sets itself). */
cachet_status cachet__below_add(cachet_below *b, const char *key, size_t klen,
                                const void *value, size_t len, double ttl);

/* One call for n items where a layer has the multi-operation, else a loop
 * of single calls; each item's status is set either way. */
cachet_status cachet__below_get_multi(cachet_below *b, cachet_backend_item *items, size_t n);
cachet_status cachet__below_set_multi(cachet_below *b, cachet_backend_item *items, size_t n);
cachet_status cachet__below_delete_multi(cachet_below *b, cachet_backend_item *items, size_t n);

/* The cross-process lock: CACHET_ENOTSUP where no layer has one. */
cachet_status cachet__below_lock(cachet_below *b, const char *key, size_t klen, void **token);
cachet_status cachet__below_unlock(cachet_below *b, const char *key, size_t klen, void *token);

/* Every layer's report, outermost first (CACHET_OK with nothing where none
 * reports). */
cachet_status cachet__below_report(cachet_below *b, cachet_report_fn fn, void *arg);
/* The report of layer i alone (0 outermost, nlayers - 1 the backend). */
cachet_status cachet__below_report_layer(cachet_below *b, size_t i, cachet_report_fn fn,
                                        void *arg);
/* The backend's servers (cachet_backend_ops.servers); 0 where it has none.
 * Not serialized: the operation must not block. */
size_t        cachet__below_servers(cachet_below *b, cachet_server_state *out, size_t max);
/* sweep and compact are the backend's: proxies do not take part. */
int           cachet__below_compactable(const cachet_below *b);
cachet_status cachet__below_sweep(cachet_below *b,
                                  int (*keep)(void *arg, const void *value, size_t len),
                                  void *arg, size_t *removed);
cachet_status cachet__below_compact(cachet_below *b);

/* fork(): prepare takes every layer's locks (outermost first, the
 * backend's serialize lock with its own); parent and child release them in
 * the reverse order (the child also lets each layer drop what it must not
 * share with the parent: its sockets). */
void cachet__below_fork_prepare(cachet_below *b);
void cachet__below_fork_parent(cachet_below *b);
void cachet__below_fork_child(cachet_below *b);

#endif
