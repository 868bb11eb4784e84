/* get_or_create_multi: one get per key, one creator call for all the keys
 * this thread may create, one store each for what it created.  For keys
 * another thread is creating, this thread subscribes to that thread's
 * result before creating its own batch and collects it afterwards, when it
 * holds no key lock: two threads with overlapping key sets cannot deadlock,
 * and a waiter gets the value the other thread made (unlike dogpile.cache
 * 1.1.8, where each waiter regenerates in turn). */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "region.h"
#include "region_read.h"
#include "metrics.h"

#define COUNT CACHET_COUNT

enum { TODO_NONE, TODO_CREATE, TODO_AWAIT };

typedef struct {
    cachet_key     key;
    int            todo;
    keylock_entry *lock;
    uint64_t       generation;   /* TODO_AWAIT: the publish to wait for */
    void          *stale;        /* payload of a stale value, or NULL */
    size_t         stale_len;
} slot;

/* Adapts the multi creator to the single-key path, for the waited keys. */
typedef struct {
    cachet_multi_creator create;
    void *arg;
} one_of_many;

static cachet_status create_one(void *arg, const char *key, void **value, size_t *len)
{
    one_of_many *m = arg;
    cachet_item item = {key, NULL, 0, CACHET_MISS};
    cachet_status st = m->create(m->arg, &item, 1);
    if (st == CACHET_OK && item.status != CACHET_OK)
        st = item.status == CACHET_MISS ? CACHET_EBACKEND : item.status;
    if (st != CACHET_OK) {
        free(item.value);
        return st;
    }
    *value = item.value;
    *len = item.len;
    return CACHET_OK;
}

CACHET_EXPORT cachet_status cachet_get_or_create_multi(cachet_region *r, cachet_item *items, size_t n,
                                                       cachet_multi_creator create, void *arg,
                                                       const cachet_options *o)
{
    cachet_rule rule;
    slot *slots;
    cachet_item *batch = NULL;
    size_t nb = 0;
    cachet_status st, first = CACHET_OK;

    if (!r || (!items && n) || !create)
        return cachet__error(CACHET_EINVAL, "cachet_get_or_create_multi: NULL region, items or creator");
    if (cachet__options_check(o, "cachet_get_or_create_multi") != CACHET_OK)
        return CACHET_EINVAL;
    rule = cachet__region_rule(r, o);
    if (!(slots = calloc(n ? n : 1, sizeof *slots)) || !(batch = calloc(n ? n : 1, sizeof *batch))) {
        free(slots);
        return cachet__error(CACHET_ENOMEM, "get_or_create_multi: out of memory");
    }
    /* 1. look everything up (one backend round trip where it has get_multi) */
    for (size_t i = 0; i < n; i++) {
        items[i].value = NULL;
        items[i].len = 0;
        items[i].status = CACHET_MISS;
        if (!items[i].key || cachet_key_make(&r->keys, items[i].key, &slots[i].key) != CACHET_OK) {
            items[i].status = cachet__error(items[i].key ? CACHET_ENOMEM : CACHET_EINVAL,
                                            "get_or_create_multi: item %zu: %s", i,
                                            items[i].key ? "out of memory" : "NULL key");
            slots[i].key.heap = NULL;
            continue;
        }
    }
    for (size_t i = 0; i < n; i++) {
        void *v = NULL, *buf;
        size_t len = 0, blen;
        freshness f = DEAD;
        if (items[i].status != CACHET_MISS)
            continue;
        st = cachet__region_lookup(r, &slots[i].key, items[i].key, rule, &v, &len, &f);
        if (st == CACHET_OK && f == FRESH) {
            COUNT(r, hits);
            items[i].value = v;
            items[i].len = len;
            items[i].status = CACHET_OK;
            continue;
        }
        if (st != CACHET_OK && st != CACHET_MISS)
            COUNT(r, fallbacks);
        if (st == CACHET_OK && f == DEAD) {
            cachet_free(v);
            v = NULL;
        }
        /* 2. take the keys nobody else is creating, subscribe to the others;
         * never block while holding */
        switch (keylock_acquire(&r->locks, slots[i].key.key, slots[i].key.klen,
                                v ? KL_TRY : KL_SUBSCRIBE, &slots[i].lock,
                                &slots[i].generation, &buf, &blen, NULL)) {
        case KL_CREATE:
            slots[i].todo = TODO_CREATE;
            slots[i].stale = v;
            slots[i].stale_len = len;
            batch[nb++] = (cachet_item){items[i].key, NULL, 0, CACHET_MISS};
            break;
        case KL_BUSY:                 /* another thread regenerates: the stale value */
            COUNT(r, stale_served);
            items[i].value = v;
            items[i].len = len;
            items[i].status = CACHET_OK;
            break;
        default:                      /* KL_SUBSCRIBED */
            slots[i].todo = TODO_AWAIT;
            break;
        }
    }
    /* 3. one creator call for every key this thread holds */
    if (nb) {
        size_t b = 0;
        COUNT(r, creator_calls);
        cachet__error_clear();
        int64_t t0 = cachet__mono_ns();
        st = create(arg, batch, nb);
        int64_t took = cachet__mono_ns() - t0;   /* each value cost the batch's time */
        cachet__metrics_creator_time(r, took);
        for (size_t i = 0; i < n; i++) {
            cachet_item *it;
            void *buf = NULL;
            size_t blen = 0;
            if (slots[i].todo != TODO_CREATE)
                continue;
            it = &batch[b++];
            COUNT(r, misses);
            if (st == CACHET_OK && it->status == CACHET_OK && (it->value || !it->len))
                buf = cachet__region_encode_timed(r, &slots[i].key, it->value ? it->value : "",
                                                  it->len, 0, took, &blen);
            if (!buf) {
                items[i].status = st != CACHET_OK ? st
                                : it->status != CACHET_OK && it->status != CACHET_MISS ? it->status
                                : CACHET_EBACKEND;
                if (!cachet__error_isset())
                    cachet__error(items[i].status, "get_or_create_multi %s: the creator gave no value",
                                  items[i].key);
                keylock_publish_failure(&r->locks, slots[i].lock, items[i].status, cachet_errmsg());
            } else {
                if (!o || !o->should_cache ||
                    o->should_cache(o->should_cache_arg, items[i].key, it->value, it->len)) {
                    if (cachet__region_store(r, &slots[i].key, items[i].key, buf, blen, 0) != CACHET_OK)
                        COUNT(r, fallbacks);
                }
                keylock_publish(&r->locks, slots[i].lock, buf, blen);
                items[i].value = cachet_value_payload(buf);
                items[i].len = it->len;
                items[i].status = CACHET_OK;
            }
            free(it->value);
            cachet_free(slots[i].stale);
        }
    }
    /* 4. the keys others were creating, with no lock held now: their
     * result, or (if their creator failed) the single-key path */
    for (size_t i = 0; i < n; i++) {
        one_of_many m = {create, arg};
        void *buf;
        size_t blen;
        cachet_status failed = CACHET_OK;
        keylock_outcome lo;
        if (slots[i].todo != TODO_AWAIT)
            continue;
        COUNT(r, lock_waits);
        lo = keylock_await(&r->locks, slots[i].lock, slots[i].generation, &buf, &blen, &failed);
        if (lo == KL_RESULT) {
            items[i].value = cachet_value_payload(buf);
            items[i].len = blen - CACHET_VALUE_HDR;
            items[i].status = CACHET_OK;
        } else if (lo == KL_FAILED) {
            items[i].status = failed;     /* the creator's failure, shared */
        } else {
            items[i].status = cachet__get_or_create_key(r, &slots[i].key, items[i].key, create_one,
                                                        &m, o, &items[i].value, &items[i].len);
        }
    }
    for (size_t i = 0; i < n; i++) {
        cachet_key_release(&slots[i].key);
        if (items[i].status != CACHET_OK && first == CACHET_OK)
            first = items[i].status;
    }
    free(slots);
    free(batch);
    return first;
}
