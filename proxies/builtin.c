/* The table of built-in proxies the loader looks names up in first. */
#include "config.h"
#include "proxies.h"
#include "loader.h"
#include "metrics.h"

const cachet_proxy_ops *const cachet__builtin_proxies[] = {
    &cachet__log_proxy,
    &cachet__metrics_proxy,
    &cachet__compress_proxy,
    &cachet__near_proxy,
    &cachet__keystone_proxy,
    NULL,
};
