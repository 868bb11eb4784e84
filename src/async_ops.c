/* The submit functions of the async API: each checks its arguments, copies
 * the key and value into a new operation and queues it.  Failures here
 * return at once and never call done. */
#include "config.h"
#include "async.h"

static cachet_status submit_keyed(cachet_async *q, const char *what, async_kind kind,
                                  const char *key, const void *value, size_t len,
                                  const cachet_set_options *o, cachet_async_done done, void *arg,
                                  async_op **made)
{
    /* a write without a value is refused first (the queue's own checks follow) */
    if ((kind == ASYNC_SET || kind == ASYNC_ADD) && !value && q && key)
        return cachet__error(CACHET_EINVAL, "%s: NULL value", what);
    if (!cachet__async_usable(q, what))
        return CACHET_EINVAL;
    if (!key)
        return cachet__error(CACHET_EINVAL, "%s: NULL key", what);
    if (!value && len)
        return cachet__error(CACHET_EINVAL, "%s: NULL value with len %zu", what, len);
    async_op *op = cachet__async_op_new(kind, key, value, len, NULL, 0);
    if (!op)
        return cachet__error(CACHET_ENOMEM, "%s: out of memory copying a %zu-byte value", what, len);
    if (o) {
        op->has_opts = 1;
        op->opts = *o;
    }
    op->done = done;
    op->arg = arg;
    if (made) {
        *made = op;
        return CACHET_OK;
    }
    return cachet__async_submit(q, op, what);
}

CACHET_EXPORT cachet_status cachet_async_get(cachet_async *q, const char *key,
                                             cachet_async_done done, void *arg)
{
    return submit_keyed(q, "cachet_async_get", ASYNC_GET, key, NULL, 0, NULL, done, arg, NULL);
}

CACHET_EXPORT cachet_status cachet_async_set(cachet_async *q, const char *key, const void *value,
                                             size_t len, cachet_async_done done, void *arg)
{
    return submit_keyed(q, "cachet_async_set", ASYNC_SET, key, value, len, NULL, done, arg, NULL);
}

CACHET_EXPORT cachet_status cachet_async_set_ex(cachet_async *q, const char *key, const void *value,
                                                size_t len, const cachet_set_options *o,
                                                cachet_async_done done, void *arg)
{
    return submit_keyed(q, "cachet_async_set_ex", ASYNC_SET, key, value, len, o, done, arg, NULL);
}

CACHET_EXPORT cachet_status cachet_async_add(cachet_async *q, const char *key, const void *value,
                                             size_t len, const cachet_set_options *o,
                                             cachet_async_done done, void *arg)
{
    return submit_keyed(q, "cachet_async_add", ASYNC_ADD, key, value, len, o, done, arg, NULL);
}

CACHET_EXPORT cachet_status cachet_async_delete(cachet_async *q, const char *key,
                                                cachet_async_done done, void *arg)
{
    return submit_keyed(q, "cachet_async_delete", ASYNC_DELETE, key, NULL, 0, NULL, done, arg, NULL);
}

CACHET_EXPORT cachet_status cachet_async_get_or_create(cachet_async *q, const char *key,
                                                       cachet_creator create, void *create_arg,
                                                       cachet_async_done done, void *arg)
{
    const char *what = "cachet_async_get_or_create";
    if (!create && q && key)
        return cachet__error(CACHET_EINVAL, "%s: NULL creator", what);
    async_op *op = NULL;
    cachet_status st = submit_keyed(q, what, ASYNC_GET_OR_CREATE, key, NULL, 0, NULL, done, arg, &op);
    if (st != CACHET_OK)
        return st;
    op->create = create;
    op->create_arg = create_arg;
    return cachet__async_submit(q, op, what);
}

CACHET_EXPORT cachet_status cachet_async_get_multi(cachet_async *q, const char *const *keys, size_t n,
                                                   cachet_async_multi_done done, void *arg)
{
    const char *what = "cachet_async_get_multi";
    if (!cachet__async_usable(q, what))
        return CACHET_EINVAL;
    if (!keys && n)
        return cachet__error(CACHET_EINVAL, "%s: NULL keys", what);
    for (size_t i = 0; i < n; i++)
        if (!keys[i])
            return cachet__error(CACHET_EINVAL, "%s: key %zu is NULL", what, i);
    async_op *op = cachet__async_op_new(ASYNC_GET_MULTI, NULL, NULL, 0, keys, n);
    if (!op)
        return cachet__error(CACHET_ENOMEM, "%s: out of memory copying %zu keys", what, n);
    for (size_t i = 0; i < n; i++)
        op->items[i].status = CACHET_MISS;
    op->multi_done = done;
    op->arg = arg;
    return cachet__async_submit(q, op, what);
}
