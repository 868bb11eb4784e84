/* The memcached backend (dogpile.cache.memcached, .pylibmc, .bmemcached,
 * .pymemcache): cachet's own memcached client with one connection set per thread, as
 * pylibmc's thread-local client.  The client code, the dead-host table and
 * the arguments are shared with memcache_pool in the mc_*.c files. */
#include "mc_common.h"

#define BACKEND "memcached"

static cachet_status mcd_open(const cachet_backend_params *p, void **state)
{
    return mc_open(p, state, BACKEND, 0);
}

static const cachet_backend_ops mcd_ops = {
    .name = BACKEND,
    .open = mcd_open,
    MC_OPS_COMMON,
};

CACHET_BACKEND_EXPORT const cachet_backend_ops *cachet_backend_entry(void)
{
    return &mcd_ops;
}
