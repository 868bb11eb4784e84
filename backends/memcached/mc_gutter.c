/* The gutter (Facebook's memcache paper, mcrouter's failover pool): while
 * a key's server is down, its reads and writes go to a small pool of other
 * servers (`gutter`, a server list like url) with short lifetimes
 * (`gutter_ttl`, 10 s by default), so that a hot key on a dead host is
 * served from the gutter after one miss instead of running its creator on
 * every call.  Short lifetimes bound how stale a gutter value can be: it
 * is never invalidated by writes that reach the real server once it is
 * back.
 *
 * These wrap the vtable's operations: the call goes to the key's own
 * servers first (mc_ops.c, mc_multi.c); only when that fails with
 * CACHET_EUNAVAILABLE and the key's primary server is marked down does it
 * go to the gutter, a memcached instance of its own (opened by mc_open). */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <stdlib.h>
#include <string.h>

/* Is the key's server down (so the gutter stands in for it)? */
static int key_host_down(mc_inst *m, const char *key, size_t klen)
{
    size_t idx[MAX_REPLICAS];
    mc_placement(m, key, klen, idx);
    return cachet_host_state(&m->hosts[idx[0]].h) == CACHET_HOST_DOWN;
}

/* Does the gutter take a call that ended with st: there is one, the key's
 * servers were unavailable and its primary is marked down? */
static int for_gutter(mc_inst *m, cachet_status st, const char *key, size_t klen)
{
    return st == CACHET_EUNAVAILABLE && m->gutter && key_host_down(m, key, klen);
}

static double gutter_ttl(const mc_inst *m, double ttl)
{
    return ttl > 0 && ttl < m->gutter_ttl ? ttl : m->gutter_ttl;
}

cachet_status mcg_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    mc_inst *m = state;
    cachet_status st = mc_get(state, key, klen, value, len);
    if (for_gutter(m, st, key, klen))
        return mc_get(m->gutter, key, klen, value, len);
    return st;
}

cachet_status mcg_set(void *state, const char *key, size_t klen, const void *value, size_t len,
                      double ttl)
{
    mc_inst *m = state;
    cachet_status st = mc_set(state, key, klen, value, len, ttl);
    if (for_gutter(m, st, key, klen))
        return mc_set(m->gutter, key, klen, value, len, gutter_ttl(m, ttl));
    return st;
}

cachet_status mcg_add(void *state, const char *key, size_t klen, const void *value, size_t len,
                      double ttl)
{
    mc_inst *m = state;
    cachet_status st = mc_add(state, key, klen, value, len, ttl);
    if (for_gutter(m, st, key, klen))
        return mc_add(m->gutter, key, klen, value, len, gutter_ttl(m, ttl));
    return st;
}

cachet_status mcg_del(void *state, const char *key, size_t klen)
{
    mc_inst *m = state;
    cachet_status st = mc_del(state, key, klen);
    if (for_gutter(m, st, key, klen))
        return mc_del(m->gutter, key, klen);
    return st;
}

typedef cachet_status (*multi_fn)(void *state, cachet_backend_item *items, size_t n);

/* The items of a multi-operation whose server was down, once more on the
 * gutter; the statuses (and values) written back in place. */
static cachet_status to_gutter(mc_inst *m, cachet_backend_item *items, size_t n, multi_fn fn,
                               int writes, cachet_status st)
{
    cachet_backend_item *sub;
    size_t *pos, k = 0;
    cachet_status acc = CACHET_OK;

    if (!m->gutter || st == CACHET_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        if (for_gutter(m, items[i].status, items[i].key, items[i].klen))
            k++;
    if (k == 0)
        return st;
    sub = malloc(k * sizeof *sub);
    pos = malloc(k * sizeof *pos);
    if (!sub || !pos) {
        free(sub);
        free(pos);
        return st;          /* (the items keep their own servers' statuses) */
    }
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (for_gutter(m, items[i].status, items[i].key, items[i].klen)) {
            sub[k] = items[i];
            if (writes)
                sub[k].ttl = gutter_ttl(m, items[i].ttl);
            else
                sub[k].value = NULL, sub[k].len = 0;
            pos[k++] = i;
        }
    fn(m->gutter, sub, k);
    for (size_t j = 0; j < k; j++) {
        items[pos[j]].status = sub[j].status;
        if (!writes) {
            items[pos[j]].value = sub[j].value;
            items[pos[j]].len = sub[j].len;
        }
    }
    free(sub);
    free(pos);
    /* the first error left, as the multi-operations report */
    for (size_t i = 0; i < n && acc == CACHET_OK; i++)
        if (items[i].status != CACHET_OK && items[i].status != CACHET_MISS)
            acc = items[i].status;
    return acc;
}

cachet_status mcg_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    return to_gutter(state, items, n, mc_get_multi, 0, mc_get_multi(state, items, n));
}

cachet_status mcg_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    return to_gutter(state, items, n, mc_set_multi, 1, mc_set_multi(state, items, n));
}

cachet_status mcg_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    return to_gutter(state, items, n, mc_delete_multi, 1, mc_delete_multi(state, items, n));
}
