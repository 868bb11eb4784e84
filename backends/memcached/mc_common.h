/* The client code that the memcached and memcache_pool backends share.
 * They differ only in where an operation gets its connections: memcached
 * keeps one set per thread (as pylibmc with a thread-local client does),
 * memcache_pool a bounded pool (oslo.cache's memcache_pool). */
#ifndef CACHET_MC_COMMON_H
#define CACHET_MC_COMMON_H

#include <cachet/backend.h>

/* open for either backend: pool = 0 (memcached) or 1 (memcache_pool) */
cachet_status mc_open(const cachet_backend_params *p, void **state, const char *backend, int pool);
void          mc_close(void *state);
cachet_status mc_get(void *state, const char *key, size_t klen, void **value, size_t *len);
cachet_status mc_set(void *state, const char *key, size_t klen, const void *value, size_t len,
                     double ttl);
cachet_status mc_add(void *state, const char *key, size_t klen, const void *value, size_t len,
                     double ttl);
cachet_status mc_del(void *state, const char *key, size_t klen);
cachet_status mc_get_multi(void *state, cachet_backend_item *items, size_t n);
cachet_status mc_set_multi(void *state, cachet_backend_item *items, size_t n);
cachet_status mc_delete_multi(void *state, cachet_backend_item *items, size_t n);
cachet_status mc_lock(void *state, const char *key, size_t klen, void **token);
cachet_status mc_unlock(void *state, const char *key, size_t klen, void *token);
cachet_status mc_report(void *state, cachet_backend_report_fn fn, void *arg);
size_t        mc_servers(void *state, cachet_server_state *out, size_t max);
void          mc_fork_prepare(void *state);
void          mc_fork_parent(void *state);
void          mc_fork_child(void *state);

/* Everything but name and open, for a backend's vtable. */
#define MC_OPS_COMMON                                         \
    .abi_version = CACHET_BACKEND_ABI_VERSION,                \
    .caps = CACHET_CAP_SERVER_TTL | CACHET_CAP_DIST_LOCK,     \
    .max_key_len = 250,                                       \
    .key_rules = CACHET_KEY_NO_SPACE | CACHET_KEY_NO_CONTROL, \
    .close = mc_close,                                        \
    .get = mc_get,                                            \
    .set = mc_set,                                            \
    .add = mc_add,                                            \
    .del = mc_del,                                            \
    .get_multi = mc_get_multi,                                \
    .set_multi = mc_set_multi,                                \
    .delete_multi = mc_delete_multi,                          \
    .lock = mc_lock,                                          \
    .unlock = mc_unlock,                                      \
    .report = mc_report,                                      \
    .servers = mc_servers,                                    \
    .fork_prepare = mc_fork_prepare,                          \
    .fork_parent = mc_fork_parent,                            \
    .fork_child = mc_fork_child

#endif
