/* The proxies built into libcachet (each in its own file here). */
#ifndef CACHET_PROXIES_H
#define CACHET_PROXIES_H

#include <cachet/backend.h>

extern const cachet_proxy_ops cachet__log_proxy;
extern const cachet_proxy_ops cachet__keystone_proxy;   /* set up by [keystone_authtoken] */

#endif
