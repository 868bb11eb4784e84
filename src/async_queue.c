/* The async queue's operations: one allocation each (the op, then its key,
 * value, and for a multi-get its items and keys), the two lists (queued,
 * completed) and admission against the outstanding limit. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "async.h"

async_op *cachet__async_op_new(async_kind kind, const char *key, const void *in, size_t in_len,
                               const char *const *keys, size_t nkeys)
{
    size_t klen = key ? strlen(key) + 1 : 0, size = sizeof(async_op);
    size_t items_at = 0, keys_at;
    if (kind == ASYNC_GET_MULTI) {
        /* items first (aligned), then the key bytes */
        items_at = (size + _Alignof(cachet_item) - 1) & ~(_Alignof(cachet_item) - 1);
        if (nkeys > (SIZE_MAX - items_at) / sizeof(cachet_item) / 2)
            return NULL;
        size = items_at + nkeys * sizeof(cachet_item);
        for (size_t i = 0; i < nkeys; i++) {
            size_t l = strlen(keys[i]) + 1;
            if (l > SIZE_MAX - size)
                return NULL;
            size += l;
        }
    }
    keys_at = size;
    if (klen > SIZE_MAX - size || in_len > SIZE_MAX - size - klen)
        return NULL;
    size += klen + in_len;
    async_op *op = calloc(1, size);
    if (!op)
        return NULL;
    op->kind = kind;
    char *p = (char *)op + keys_at;
    if (kind == ASYNC_GET_MULTI) {
        op->items = (cachet_item *)((char *)op + items_at);
        op->nitems = nkeys;
        p = (char *)(op->items + nkeys);
        for (size_t i = 0; i < nkeys; i++) {
            size_t l = strlen(keys[i]) + 1;
            memcpy(p, keys[i], l);
            op->items[i].key = p;
            p += l;
        }
    }
    if (key) {
        memcpy(p, key, klen);
        op->key = p;
        p += klen;
    }
    if (in_len)
        memcpy(p, in, in_len);
    op->in = in_len ? p : "";      /* a zero-length value is still a value */
    op->in_len = in_len;
    return op;
}

void cachet__async_op_free(async_op *op)
{
    if (!op)
        return;
    cachet_free(op->out);
    for (size_t i = 0; i < op->nitems; i++)
        cachet_free(op->items[i].value);
    free(op->errmsg);
    free(op);
}

void cachet__async_list_push(async_list *l, async_op *op)
{
    op->next = NULL;
    op->prev = l->tail;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    l->n++;
}

void cachet__async_list_unlink(async_list *l, async_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        l->head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        l->tail = op->prev;
    op->next = op->prev = NULL;
    l->n--;
}

async_op *cachet__async_list_pop(async_list *l)
{
    async_op *op = l->head;
    if (op)
        cachet__async_list_unlink(l, op);
    return op;
}

cachet_status cachet__async_submit(cachet_async *q, async_op *op, const char *what)
{
    cachet_status st = CACHET_OK;
    pthread_mutex_lock(&q->mu);
    if (q->closing)
        st = cachet__error(CACHET_EINVAL, "%s: the queue is closing (cachet_async_close has begun)",
                           what);
    else if (q->outstanding >= CACHET_ASYNC_MAX_OUTSTANDING)
        st = cachet__error(CACHET_ENOMEM,
                           "%s: queue is full: %d operations outstanding (submitted and their "
                           "callback not yet run); dispatch completions before submitting more",
                           what, CACHET_ASYNC_MAX_OUTSTANDING);
    else {
        q->outstanding++;
        cachet__async_list_push(&q->queued, op);
        /* a busy worker takes it when it is done: no wakeup (a futex
         * call on the loop's thread) unless a worker sleeps */
        if (q->idle)
            pthread_cond_signal(&q->work);
    }
    pthread_mutex_unlock(&q->mu);
    if (st != CACHET_OK)
        cachet__async_op_free(op);
    return st;
}

void cachet__async_complete(cachet_async *q, async_op *op)
{
    pthread_mutex_lock(&q->mu);
    int was_empty = q->done_list.head == NULL;
    cachet__async_list_push(&q->done_list, op);
    pthread_mutex_unlock(&q->mu);
    /* one wakeup per batch the loop has not collected yet: dispatch drains
     * the fd before it takes the list, so nothing is left unsignalled */
    if (was_empty)
        cachet__async_notify_signal(q->efd);
}
