/* The dispatch seam (dispatch.h): the chain of layers, pass-through of the
 * operations a proxy leaves NULL, the serialize lock, multi-op fallbacks,
 * and the optional operations' defaults, written once. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "dispatch.h"

/* Whether layer l itself has operation op. */
static int has(const cachet_layer *l, int op)
{
    const cachet_proxy_ops *p = l->proxy;
    const cachet_backend_ops *b = l->backend;
    switch (op) {
    case LOP_GET:          return p ? p->get != NULL : b->get != NULL;
    case LOP_SET:          return p ? p->set != NULL : b->set != NULL;
    case LOP_DEL:          return p ? p->del != NULL : b->del != NULL;
    case LOP_ADD:          return p ? p->add != NULL : b->add != NULL;
    case LOP_GET_MULTI:    return p ? p->get_multi != NULL : b->get_multi != NULL;
    case LOP_SET_MULTI:    return p ? p->set_multi != NULL : b->set_multi != NULL;
    case LOP_DELETE_MULTI: return p ? p->delete_multi != NULL : b->delete_multi != NULL;
    case LOP_LOCK:         return p ? p->lock != NULL : b->lock != NULL;
    case LOP_UNLOCK:       return p ? p->unlock != NULL : b->unlock != NULL;
    default:               return 0;
    }
}

/* Fills l->at[] from the layer below (whose at[] is already set). */
static void resolve(cachet_layer *l)
{
    for (int op = 0; op < LOP__COUNT; op++)
        l->at[op] = has(l, op) ? l : l->next ? l->next->at[op] : NULL;
}

/* A call on the layer t that has the operation: the proxy's, or the
 * backend's under its serialize lock. */
#define LAYER_CALL(t, st, field, ...) do {                                \
        if ((t)->proxy) {                                                  \
            (st) = (t)->proxy->field((t)->state, __VA_ARGS__);            \
        } else {                                                           \
            if ((t)->serialize) pthread_mutex_lock(&(t)->serial_lock);     \
            (st) = (t)->backend->field((t)->state, __VA_ARGS__);          \
            if ((t)->serialize) pthread_mutex_unlock(&(t)->serial_lock);   \
        }                                                                  \
    } while (0)

cachet_status cachet__below_open(cachet_below *b, const cachet_backend_ops *ops,
                                 const cachet_backend_params *params,
                                 const cachet_proxy_spec *proxies, size_t nproxies)
{
    size_t n = nproxies + 1;
    cachet_layer *L = calloc(n, sizeof *L), *bot;
    cachet_status st;

    memset(b, 0, sizeof *b);
    if (!L)
        return cachet__error(CACHET_ENOMEM, "region open: out of memory");
    bot = &L[n - 1];
    bot->name = ops->name;
    bot->backend = ops;
    bot->bottom = bot;
    bot->serialize = (ops->caps & CACHET_CAP_SERIALIZE) != 0;
    pthread_mutex_init(&bot->serial_lock, NULL);
    if ((st = ops->open(params, &bot->state)) != CACHET_OK) {
        pthread_mutex_destroy(&bot->serial_lock);
        free(L);
        return st;
    }
    resolve(bot);
    /* innermost proxy first: each one's open may already call below */
    for (size_t i = n - 1; i-- > 0;) {
        cachet_layer *l = &L[i];
        l->name = proxies[i].ops->name;
        l->proxy = proxies[i].ops;
        l->next = &L[i + 1];
        l->bottom = bot;
        cachet__error_clear();
        if ((st = l->proxy->open(proxies[i].params, l->next, &l->state)) != CACHET_OK) {
            if (!cachet__error_isset())
                cachet__error(st, "proxy %s: open failed: %s", l->name, cachet_strerror(st));
            for (size_t j = i + 1; j < n - 1; j++)
                L[j].proxy->close(L[j].state);
            ops->close(bot->state);
            pthread_mutex_destroy(&bot->serial_lock);
            free(L);
            return st;
        }
        resolve(l);
    }
    b->layers = L;
    b->nlayers = n;
    b->top = &L[0];
    return CACHET_OK;
}

void cachet__below_close(cachet_below *b)
{
    cachet_layer *bot;
    if (!b->layers)
        return;
    bot = &b->layers[b->nlayers - 1];
    for (size_t i = 0; i + 1 < b->nlayers; i++)      /* outermost first */
        b->layers[i].proxy->close(b->layers[i].state);
    bot->backend->close(bot->state);
    pthread_mutex_destroy(&bot->serial_lock);
    free(b->layers);
    memset(b, 0, sizeof *b);
}

/* ---- calls made at a layer (the region's enter at the top) ---- */

static cachet_status layer_set(cachet_layer *l, const char *key, size_t klen, const void *value,
                               size_t len, double ttl)
{
    cachet_layer *t = l->at[LOP_SET];
    cachet_status st;
    LAYER_CALL(t, st, set, key, klen, value, len, ttl);
    return st;
}

static cachet_status layer_add(cachet_layer *l, const char *key, size_t klen, const void *value,
                               size_t len, double ttl)
{
    cachet_layer *t = l->at[LOP_ADD];
    cachet_status st;
    if (!t)
        return CACHET_ENOTSUP;
    LAYER_CALL(t, st, add, key, klen, value, len, ttl);
    return st;
}

static cachet_status layer_del(cachet_layer *l, const char *key, size_t klen)
{
    cachet_layer *t = l->at[LOP_DEL];
    cachet_status st;
    LAYER_CALL(t, st, del, key, klen);
    return st;
}

/* The first error of the items, as a multi-operation reports it. */
static cachet_status first_error(const cachet_backend_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].status != CACHET_OK && items[i].status != CACHET_MISS)
            return items[i].status;
    return CACHET_OK;
}

static cachet_status layer_get_multi(cachet_layer *l, cachet_backend_item *items, size_t n)
{
    cachet_layer *t = l->at[LOP_GET_MULTI];
    cachet_status st;
    if (t) {
        LAYER_CALL(t, st, get_multi, items, n);
        return st;
    }
    for (size_t i = 0; i < n; i++)
        items[i].status = cachet__layer_get(l, items[i].key, items[i].klen, &items[i].value,
                                            &items[i].len);
    return first_error(items, n);
}

static cachet_status layer_set_multi(cachet_layer *l, cachet_backend_item *items, size_t n)
{
    cachet_layer *t = l->at[LOP_SET_MULTI];
    cachet_status st;
    if (t) {
        LAYER_CALL(t, st, set_multi, items, n);
        return st;
    }
    for (size_t i = 0; i < n; i++)
        items[i].status = layer_set(l, items[i].key, items[i].klen, items[i].value, items[i].len,
                                    items[i].ttl);
    return first_error(items, n);
}

static cachet_status layer_delete_multi(cachet_layer *l, cachet_backend_item *items, size_t n)
{
    cachet_layer *t = l->at[LOP_DELETE_MULTI];
    cachet_status st;
    if (t) {
        LAYER_CALL(t, st, delete_multi, items, n);
        return st;
    }
    for (size_t i = 0; i < n; i++)
        items[i].status = layer_del(l, items[i].key, items[i].klen);
    return first_error(items, n);
}

static cachet_status layer_lock(cachet_layer *l, const char *key, size_t klen, void **token)
{
    cachet_layer *t = l->at[LOP_LOCK];
    cachet_status st;
    if (!t)
        return CACHET_ENOTSUP;
    LAYER_CALL(t, st, lock, key, klen, token);
    return st;
}

static cachet_status layer_unlock(cachet_layer *l, const char *key, size_t klen, void *token)
{
    cachet_layer *t = l->at[LOP_UNLOCK];
    cachet_status st;
    if (!t)
        return CACHET_OK;
    LAYER_CALL(t, st, unlock, key, klen, token);
    return st;
}

/* ---- the region's calls ---- */

cachet_status cachet__below_set(cachet_below *b, const char *key, size_t klen,
                                const void *value, size_t len, double ttl)
{
    return layer_set(b->top, key, klen, value, len, ttl);
}

cachet_status cachet__below_add(cachet_below *b, const char *key, size_t klen,
                                const void *value, size_t len, double ttl)
{
    return layer_add(b->top, key, klen, value, len, ttl);
}

cachet_status cachet__below_del(cachet_below *b, const char *key, size_t klen)
{
    return layer_del(b->top, key, klen);
}

cachet_status cachet__below_get_multi(cachet_below *b, cachet_backend_item *items, size_t n)
{
    return layer_get_multi(b->top, items, n);
}

cachet_status cachet__below_set_multi(cachet_below *b, cachet_backend_item *items, size_t n)
{
    return layer_set_multi(b->top, items, n);
}

cachet_status cachet__below_delete_multi(cachet_below *b, cachet_backend_item *items, size_t n)
{
    return layer_delete_multi(b->top, items, n);
}

cachet_status cachet__below_lock(cachet_below *b, const char *key, size_t klen, void **token)
{
    return layer_lock(b->top, key, klen, token);
}

cachet_status cachet__below_unlock(cachet_below *b, const char *key, size_t klen, void *token)
{
    return layer_unlock(b->top, key, klen, token);
}

cachet_status cachet__below_report(cachet_below *b, cachet_report_fn fn, void *arg)
{
    for (size_t i = 0; i < b->nlayers; i++) {
        cachet_layer *l = &b->layers[i];
        cachet_status st = CACHET_OK;
        if (l->proxy && l->proxy->report)
            st = l->proxy->report(l->state, fn, arg);
        else if (l->backend && l->backend->report)
            LAYER_CALL(l, st, report, fn, arg);
        if (st != CACHET_OK)
            return st;
    }
    return CACHET_OK;
}

cachet_status cachet__below_report_layer(cachet_below *b, size_t i, cachet_report_fn fn,
                                        void *arg)
{
    cachet_layer *l = &b->layers[i];
    cachet_status st = CACHET_OK;
    if (l->proxy && l->proxy->report)
        st = l->proxy->report(l->state, fn, arg);
    else if (l->backend && l->backend->report)
        LAYER_CALL(l, st, report, fn, arg);
    return st;
}

int cachet__below_compactable(const cachet_below *b)
{
    const cachet_backend_ops *o = b->top->bottom->backend;
    return o->sweep || o->compact;
}

cachet_status cachet__below_sweep(cachet_below *b,
                                  int (*keep)(void *arg, const void *value, size_t len),
                                  void *arg, size_t *removed)
{
    cachet_layer *t = b->top->bottom;
    cachet_status st;
    if (!t->backend->sweep)
        return CACHET_OK;
    if (t->serialize)
        pthread_mutex_lock(&t->serial_lock);
    st = t->backend->sweep(t->state, keep, arg, removed);
    if (t->serialize)
        pthread_mutex_unlock(&t->serial_lock);
    return st;
}

size_t cachet__below_servers(cachet_below *b, cachet_server_state *out, size_t max)
{
    cachet_layer *t = b->top->bottom;
    return t->backend->servers ? t->backend->servers(t->state, out, max) : 0;
}

cachet_status cachet__below_compact(cachet_below *b)
{
    cachet_layer *t = b->top->bottom;
    cachet_status st;
    if (!t->backend->compact)
        return CACHET_OK;
    if (t->serialize)
        pthread_mutex_lock(&t->serial_lock);
    st = t->backend->compact(t->state);
    if (t->serialize)
        pthread_mutex_unlock(&t->serial_lock);
    return st;
}

/* ---- fork ---- */

void cachet__below_fork_prepare(cachet_below *b)
{
    for (size_t i = 0; i < b->nlayers; i++) {
        cachet_layer *l = &b->layers[i];
        if (l->proxy) {
            if (l->proxy->fork_prepare)
                l->proxy->fork_prepare(l->state);
        } else {
            pthread_mutex_lock(&l->serial_lock);
            if (l->backend->fork_prepare)
                l->backend->fork_prepare(l->state);
        }
    }
}

static void fork_after(cachet_below *b, int child)
{
    for (size_t i = b->nlayers; i-- > 0;) {
        cachet_layer *l = &b->layers[i];
        if (l->proxy) {
            void (*fn)(void *) = child ? l->proxy->fork_child : l->proxy->fork_parent;
            if (fn)
                fn(l->state);
        } else {
            void (*fn)(void *) = child ? l->backend->fork_child : l->backend->fork_parent;
            if (fn)
                fn(l->state);
            pthread_mutex_unlock(&l->serial_lock);
        }
    }
}

void cachet__below_fork_parent(cachet_below *b)
{
    fork_after(b, 0);
}

void cachet__below_fork_child(cachet_below *b)
{
    fork_after(b, 1);
}

/* ---- what proxies call (exported) ---- */

CACHET_EXPORT cachet_status cachet_layer_get(cachet_layer *below, const char *key, size_t klen,
                                             void **value, size_t *len)
{
    return cachet__layer_get(below, key, klen, value, len);
}

CACHET_EXPORT cachet_status cachet_layer_set(cachet_layer *below, const char *key, size_t klen,
                                             const void *value, size_t len, double ttl)
{
    return layer_set(below, key, klen, value, len, ttl);
}

CACHET_EXPORT cachet_status cachet_layer_add(cachet_layer *below, const char *key, size_t klen,
                                             const void *value, size_t len, double ttl)
{
    return layer_add(below, key, klen, value, len, ttl);
}

CACHET_EXPORT cachet_status cachet_layer_del(cachet_layer *below, const char *key, size_t klen)
{
    return layer_del(below, key, klen);
}

CACHET_EXPORT cachet_status cachet_layer_get_multi(cachet_layer *below, cachet_backend_item *items,
                                                   size_t n)
{
    return layer_get_multi(below, items, n);
}

CACHET_EXPORT cachet_status cachet_layer_set_multi(cachet_layer *below, cachet_backend_item *items,
                                                   size_t n)
{
    return layer_set_multi(below, items, n);
}

CACHET_EXPORT cachet_status cachet_layer_delete_multi(cachet_layer *below,
                                                      cachet_backend_item *items, size_t n)
{
    return layer_delete_multi(below, items, n);
}

CACHET_EXPORT cachet_status cachet_layer_lock(cachet_layer *below, const char *key, size_t klen,
                                              void **token)
{
    return layer_lock(below, key, klen, token);
}

CACHET_EXPORT cachet_status cachet_layer_unlock(cachet_layer *below, const char *key, size_t klen,
                                                void *token)
{
    return layer_unlock(below, key, klen, token);
}

/* Not serialized: a backend that offers notifications is thread-safe
 * (they run on connections of their own). */
CACHET_EXPORT cachet_status cachet_layer_notify_publish(cachet_layer *below, const char *id,
                                                        const char *key, size_t klen)
{
    const cachet_backend_ops *o = below->bottom->backend;
    if (!o->notify_publish || below->bottom->serialize)
        return CACHET_ENOTSUP;
    return o->notify_publish(below->bottom->state, id, key, klen);
}

CACHET_EXPORT cachet_status cachet_layer_notify_subscribe(cachet_layer *below, const char *id,
                                                          void (*fn)(void *arg, const char *key,
                                                                     size_t klen),
                                                          void *arg, void **handle)
{
    const cachet_backend_ops *o = below->bottom->backend;
    if (!o->notify_subscribe || !o->notify_publish || !o->notify_unsubscribe ||
        below->bottom->serialize)
        return CACHET_ENOTSUP;
    return o->notify_subscribe(below->bottom->state, id, fn, arg, handle);
}

CACHET_EXPORT void cachet_layer_notify_unsubscribe(cachet_layer *below, void *handle)
{
    const cachet_backend_ops *o = below->bottom->backend;
    if (o->notify_unsubscribe && handle)
        o->notify_unsubscribe(below->bottom->state, handle);
}

CACHET_EXPORT unsigned cachet_layer_caps(const cachet_layer *below)
{
    return below->bottom->backend->caps;
}

CACHET_EXPORT const char *cachet_layer_backend(const cachet_layer *below)
{
    return below->bottom->name;
}
