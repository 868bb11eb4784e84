/* get_multi, set_multi and delete_multi: one backend call for all keys
 * when the backend has a multi-operation, a loop over the single ones when
 * it has not. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "region.h"
#include "region_read.h"

/* Prepared keys for n items; all released by keys_release. */
typedef struct {
    cachet_key          *keys;
    cachet_backend_item *items;
} batch;

static void batch_release(batch *b, size_t n)
{
    for (size_t i = 0; b->keys && i < n; i++)
        cachet_key_release(&b->keys[i]);
    free(b->keys);
    free(b->items);
}

static cachet_status batch_prepare(cachet_region *r, batch *b, const char *const *keys,
                                   const cachet_item *items, size_t n, const char *op)
{
    b->keys = calloc(n ? n : 1, sizeof *b->keys);
    b->items = calloc(n ? n : 1, sizeof *b->items);
    if (!b->keys || !b->items)
        return cachet__error(CACHET_ENOMEM, "%s: out of memory", op);
    for (size_t i = 0; i < n; i++) {
        const char *k = keys ? keys[i] : items[i].key;
        if (!k)
            return cachet__error(CACHET_EINVAL, "%s: item %zu has a NULL key", op, i);
        if (cachet_key_make(&r->keys, k, &b->keys[i]) != CACHET_OK)
            return cachet__error(CACHET_ENOMEM, "%s: out of memory", op);
        b->items[i].key = b->keys[i].key;
        b->items[i].klen = b->keys[i].klen;
        b->items[i].status = CACHET_MISS;
    }
    return CACHET_OK;
}

CACHET_EXPORT cachet_status cachet_get_multi(cachet_region *r, cachet_item *items, size_t n)
{
    batch b = {0};
    cachet_status st, first = CACHET_OK;
    cachet_rule rule;

    if (!r || (!items && n))
        return cachet__error(CACHET_EINVAL, "cachet_get_multi: NULL region or items");
    rule = cachet__region_rule(r, NULL);
    for (size_t i = 0; i < n; i++) {
        items[i].value = NULL;
        items[i].len = 0;
        items[i].status = CACHET_EINVAL;
    }
    if ((st = batch_prepare(r, &b, NULL, items, n, "get_multi")) != CACHET_OK) {
        batch_release(&b, n);
        return st;
    }
    (void)cachet__region_poll_invalidation(r);   /* a failure shows in the items */
    cachet__error_clear();
    cachet__below_get_multi(&r->below, b.items, n);   /* each item has its status */
    for (size_t i = 0; i < n; i++) {
        cachet_backend_item *bi = &b.items[i];
        cachet_value_meta m = {0, 0, 0, 0, 0, 0};
        if (bi->status == CACHET_OK) {
            if (cachet__region_accept(r, &b.keys[i], items[i].key, &bi->value, &bi->len, &m,
                                      1) != CACHET_OK) {
                bi->status = CACHET_MISS;       /* accept freed the foreign bytes */
            } else if (cachet__region_freshness(r, &m, rule) != FRESH) {
                free(bi->value);
                bi->status = CACHET_MISS;
            } else {
                items[i].value = cachet_value_payload(bi->value);
                items[i].len = bi->len - CACHET_VALUE_HDR;
            }
        } else if (bi->status == CACHET_ECORRUPT && r->foreign) {   /* refused below (a bad MAC) */
            free(bi->value);
            bi->status = CACHET_MISS;
            CACHET_COUNT(r, corrupt);
        } else if (bi->status != CACHET_MISS) {
            free(bi->value);
            cachet__region_failed(r, bi->status, "get_multi", items[i].key);
            if (first == CACHET_OK)
                first = bi->status;
        }
        items[i].status = bi->status;
        if (bi->status == CACHET_OK)
            CACHET_COUNT(r, hits);
        else if (bi->status == CACHET_MISS)
            CACHET_COUNT(r, misses);
    }
    batch_release(&b, n);
    return first;
}

CACHET_EXPORT cachet_status cachet_set_multi(cachet_region *r, cachet_item *items, size_t n)
{
    batch b = {0};
    cachet_status st, first = CACHET_OK;

    if (!r || (!items && n))
        return cachet__error(CACHET_EINVAL, "cachet_set_multi: NULL region or items");
    if ((st = batch_prepare(r, &b, NULL, items, n, "set_multi")) != CACHET_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].value && items[i].len) {
            st = cachet__error(CACHET_EINVAL, "set_multi: item %zu (%s) has a NULL value",
                               i, items[i].key);
            goto out;
        }
        b.items[i].value = cachet__region_encode(r, &b.keys[i], items[i].value, items[i].len,
                                                 0, &b.items[i].len);
        if (!b.items[i].value) {
            st = cachet__error(CACHET_ENOMEM, "set_multi: out of memory");
            goto out;
        }
    }
    cachet__error_clear();
    cachet__below_set_multi(&r->below, b.items, n);
    for (size_t i = 0; i < n; i++) {
        items[i].status = b.items[i].status;
        if (items[i].status == CACHET_OK) {
            CACHET_COUNT(r, sets);
        } else {
            cachet__region_failed(r, items[i].status, "set_multi", items[i].key);
            if (first == CACHET_OK)
                first = items[i].status;
        }
    }
    st = first;
out:
    if (st != CACHET_OK && st != first)
        for (size_t i = 0; i < n; i++)
            items[i].status = st;
    for (size_t i = 0; b.items && i < n; i++)
        free(b.items[i].value);
    batch_release(&b, n);
    return st;
}

CACHET_EXPORT cachet_status cachet_delete_multi(cachet_region *r, const char *const *keys, size_t n)
{
    batch b = {0};
    cachet_status st, first = CACHET_OK;

    if (!r || (!keys && n))
        return cachet__error(CACHET_EINVAL, "cachet_delete_multi: NULL region or keys");
    if ((st = batch_prepare(r, &b, keys, NULL, n, "delete_multi")) != CACHET_OK) {
        batch_release(&b, n);
        return st;
    }
    cachet__error_clear();
    cachet__below_delete_multi(&r->below, b.items, n);
    for (size_t i = 0; i < n; i++) {
        cachet_status s = b.items[i].status;
        if (s == CACHET_OK || s == CACHET_MISS) {
            CACHET_COUNT(r, deletes);
        } else {
            cachet__region_failed(r, s, "delete_multi", keys[i]);
            if (first == CACHET_OK)
                first = s;
        }
    }
    batch_release(&b, n);
    return first;
}
