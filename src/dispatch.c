/* The dispatch seam (dispatch.h): serialize lock, multi-op fallbacks, and
 * the optional operations' defaults, written once. */
#include "config.h"
#include "internal.h"
#include "dispatch.h"

#define CALL(b, st, call) do {                                  \
        if ((b)->serialize) pthread_mutex_lock(&(b)->serial_lock);   \
        (st) = (call);                                          \
        if ((b)->serialize) pthread_mutex_unlock(&(b)->serial_lock); \
    } while (0)

cachet_status cachet__below_open(cachet_below *b, const cachet_backend_ops *ops,
                                 const cachet_backend_params *params)
{
    cachet_status st;
    b->ops = ops;
    b->state = NULL;
    b->serialize = (ops->caps & CACHET_CAP_SERIALIZE) != 0;
    pthread_mutex_init(&b->serial_lock, NULL);
    if ((st = ops->open(params, &b->state)) != CACHET_OK) {
        pthread_mutex_destroy(&b->serial_lock);
        b->ops = NULL;
    }
    return st;
}

void cachet__below_close(cachet_below *b)
{
    if (!b->ops)
        return;
    b->ops->close(b->state);
    pthread_mutex_destroy(&b->serial_lock);
    b->ops = NULL;
}

cachet_status cachet__below_set(cachet_below *b, const char *key, size_t klen,
                                const void *value, size_t len)
{
    cachet_status st;
    CALL(b, st, b->ops->set(b->state, key, klen, value, len));
    return st;
}

cachet_status cachet__below_del(cachet_below *b, const char *key, size_t klen)
{
    cachet_status st;
    CALL(b, st, b->ops->del(b->state, key, klen));
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

cachet_status cachet__below_get_multi(cachet_below *b, cachet_backend_item *items, size_t n)
{
    cachet_status st;
    if (b->ops->get_multi) {
        CALL(b, st, b->ops->get_multi(b->state, items, n));
        return st;
    }
    for (size_t i = 0; i < n; i++)
        items[i].status = cachet__below_get(b, items[i].key, items[i].klen, &items[i].value,
                                            &items[i].len);
    return first_error(items, n);
}

cachet_status cachet__below_set_multi(cachet_below *b, cachet_backend_item *items, size_t n)
{
    cachet_status st;
    if (b->ops->set_multi) {
        CALL(b, st, b->ops->set_multi(b->state, items, n));
        return st;
    }
    for (size_t i = 0; i < n; i++)
        items[i].status = cachet__below_set(b, items[i].key, items[i].klen, items[i].value,
                                            items[i].len);
    return first_error(items, n);
}

cachet_status cachet__below_delete_multi(cachet_below *b, cachet_backend_item *items, size_t n)
{
    cachet_status st;
    if (b->ops->delete_multi) {
        CALL(b, st, b->ops->delete_multi(b->state, items, n));
        return st;
    }
    for (size_t i = 0; i < n; i++)
        items[i].status = cachet__below_del(b, items[i].key, items[i].klen);
    return first_error(items, n);
}

cachet_status cachet__below_lock(cachet_below *b, const char *key, size_t klen, void **token)
{
    cachet_status st;
    if (!b->ops->lock)
        return CACHET_ENOTSUP;
    CALL(b, st, b->ops->lock(b->state, key, klen, token));
    return st;
}

cachet_status cachet__below_unlock(cachet_below *b, const char *key, size_t klen, void *token)
{
    cachet_status st;
    if (!b->ops->unlock)
        return CACHET_OK;
    CALL(b, st, b->ops->unlock(b->state, key, klen, token));
    return st;
}

cachet_status cachet__below_report(cachet_below *b, cachet_report_fn fn, void *arg)
{
    cachet_status st;
    if (!b->ops->report)
        return CACHET_OK;
    CALL(b, st, b->ops->report(b->state, fn, arg));
    return st;
}

int cachet__below_compactable(const cachet_below *b)
{
    return b->ops->sweep || b->ops->compact;
}

cachet_status cachet__below_sweep(cachet_below *b,
                                  int (*keep)(void *arg, const void *value, size_t len),
                                  void *arg, size_t *removed)
{
    cachet_status st;
    if (!b->ops->sweep)
        return CACHET_OK;
    CALL(b, st, b->ops->sweep(b->state, keep, arg, removed));
    return st;
}

cachet_status cachet__below_compact(cachet_below *b)
{
    cachet_status st;
    if (!b->ops->compact)
        return CACHET_OK;
    CALL(b, st, b->ops->compact(b->state));
    return st;
}

void cachet__below_fork_prepare(cachet_below *b)
{
    pthread_mutex_lock(&b->serial_lock);
    if (b->ops->fork_prepare)
        b->ops->fork_prepare(b->state);
}

void cachet__below_fork_parent(cachet_below *b)
{
    if (b->ops->fork_parent)
        b->ops->fork_parent(b->state);
    pthread_mutex_unlock(&b->serial_lock);
}

void cachet__below_fork_child(cachet_below *b)
{
    if (b->ops->fork_child)
        b->ops->fork_child(b->state);
    pthread_mutex_unlock(&b->serial_lock);
}
