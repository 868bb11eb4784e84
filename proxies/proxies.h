/* The proxies built into libcachet (each in its own file here). */
#ifndef CACHET_PROXIES_H
#define CACHET_PROXIES_H

#include <cachet/backend.h>

extern const cachet_proxy_ops cachet__log_proxy;
extern const cachet_proxy_ops cachet__compress_proxy;
extern const cachet_proxy_ops cachet__near_proxy;
/* near.c: empties the L1 (an invalidation of the region) */
void cachet__near_proxy_clear(void *state);
extern const cachet_proxy_ops cachet__keystone_proxy;   /* set up by [keystone_authtoken] */

#endif
