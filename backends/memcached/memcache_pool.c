/* The memcache_pool backend (oslo_cache.memcache_pool): cachet's memcached client with a
 * bounded pool of connection sets shared by the threads (pool_maxsize,
 * pool_connection_get_timeout, pool_unused_timeout), and a flush of a
 * server that comes back from the dead (pool_flush_on_reconnect).  The
 * client code and the dead-host table are shared with memcached in
 * the mc_*.c files. */
#include "mc_common.h"

#define BACKEND "memcache_pool"

static cachet_status mcp_open(const cachet_backend_params *p, void **state)
{
    return mc_open(p, state, BACKEND, 1);
}

static const cachet_backend_ops mcp_ops = {
    .name = BACKEND,
    .open = mcp_open,
    MC_OPS_COMMON,
};

CACHET_BACKEND_EXPORT const cachet_backend_ops *cachet_backend_entry(void)
{
    return &mcp_ops;
}
