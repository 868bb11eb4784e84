/* The backends cachet knows by name, and what oslo.cache's options mean to
 * each (see backend_table.h).  The mappings are oslo.cache's own: the
 * memcache_* options are set after backend_argument (they win over one of
 * the same name), while memcache_servers, the redis_* options and the
 * sentinel ones are setdefaults (a backend_argument wins). */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include "backend_table.h"
#include "options.h"

#define END {0, NULL, MAP_OVER, {NULL}, -1}
#define OVER(o, a) {o, a, MAP_OVER, {NULL}, -1}
#define OVER_IF(o, a, cond) {o, a, MAP_OVER, {NULL}, cond}
#define DEFAULT(o, a, ...) {o, a, MAP_DEFAULT, {__VA_ARGS__, NULL}, -1}

/* memcached and memcache_pool: oslo.cache's memcache_* options */
#define MEMCACHE_COMMON                                                          \
    DEFAULT(OPT_MEMCACHE_SERVERS, "url", "url"),                                 \
    OVER(OPT_MEMCACHE_DEAD_RETRY, "dead_retry"),                                 \
    OVER(OPT_MEMCACHE_SOCKET_TIMEOUT, "socket_timeout"),                         \
    OVER_IF(OPT_MEMCACHE_SASL_ENABLED, "sasl_enabled", OPT_MEMCACHE_SASL_ENABLED), \
    OVER_IF(OPT_MEMCACHE_USERNAME, "username", OPT_MEMCACHE_SASL_ENABLED),       \
    OVER_IF(OPT_MEMCACHE_PASSWORD, "password", OPT_MEMCACHE_SASL_ENABLED),       \
    OVER_IF(OPT_ENABLE_SOCKET_KEEPALIVE, "enable_socket_keepalive", OPT_ENABLE_SOCKET_KEEPALIVE), \
    OVER_IF(OPT_SOCKET_KEEPALIVE_IDLE, "socket_keepalive_idle", OPT_ENABLE_SOCKET_KEEPALIVE), \
    OVER_IF(OPT_SOCKET_KEEPALIVE_INTERVAL, "socket_keepalive_interval", OPT_ENABLE_SOCKET_KEEPALIVE), \
    OVER_IF(OPT_SOCKET_KEEPALIVE_COUNT, "socket_keepalive_count", OPT_ENABLE_SOCKET_KEEPALIVE), \
    OVER_IF(OPT_ENABLE_RETRY_CLIENT, "enable_retry_client", OPT_ENABLE_RETRY_CLIENT), \
    OVER_IF(OPT_RETRY_ATTEMPTS, "retry_attempts", OPT_ENABLE_RETRY_CLIENT),      \
    OVER_IF(OPT_RETRY_DELAY, "retry_delay", OPT_ENABLE_RETRY_CLIENT),            \
    OVER(OPT_BACKEND_EXPIRATION_TIME, "memcached_expire_time")

static const cachet_option_map memcached_map[] = {MEMCACHE_COMMON, END};
static const cachet_option_map memcache_pool_map[] = {
    MEMCACHE_COMMON,
    OVER(OPT_MEMCACHE_POOL_MAXSIZE, "pool_maxsize"),
    OVER(OPT_MEMCACHE_POOL_UNUSED_TIMEOUT, "pool_unused_timeout"),
    OVER(OPT_MEMCACHE_POOL_CONNECTION_GET_TIMEOUT, "pool_connection_get_timeout"),
    OVER(OPT_MEMCACHE_POOL_FLUSH_ON_RECONNECT, "pool_flush_on_reconnect"),
    END,
};

/* redis: a url or host given as backend_argument says it all; otherwise
 * the redis_* options name the server, database and credentials */
static const cachet_option_map redis_map[] = {
    DEFAULT(OPT_REDIS_SERVER, "server", "url", "host"),
    DEFAULT(OPT_REDIS_DB, "db", "url", "host", "db"),
    DEFAULT(OPT_REDIS_USERNAME, "username", "url", "host", "username"),
    DEFAULT(OPT_REDIS_PASSWORD, "password", "url", "host", "password"),
    DEFAULT(OPT_REDIS_SOCKET_TIMEOUT, "socket_timeout", "socket_timeout"),
    OVER(OPT_BACKEND_EXPIRATION_TIME, "redis_expiration_time"),
    END,
};

static const cachet_option_map redis_sentinel_map[] = {
    DEFAULT(OPT_REDIS_SENTINELS, "sentinels", "sentinels"),
    DEFAULT(OPT_REDIS_SENTINEL_SERVICE_NAME, "service_name", "service_name"),
    DEFAULT(OPT_REDIS_DB, "db", "db"),
    DEFAULT(OPT_REDIS_USERNAME, "username", "username"),
    DEFAULT(OPT_REDIS_PASSWORD, "password", "password"),
    DEFAULT(OPT_REDIS_SOCKET_TIMEOUT, "socket_timeout", "socket_timeout"),
    OVER(OPT_BACKEND_EXPIRATION_TIME, "redis_expiration_time"),
    END,
};

static const cachet_option_map no_map[] = {END};

static const char *const null_names[] = {"dogpile.cache.null", NULL};
static const char *const memory_names[] = {"dogpile.cache.memory", "dogpile.cache.memory_pickle",
                                           "oslo_cache.dict", NULL};
static const char *const dbm_names[] = {"dogpile.cache.dbm", NULL};
static const char *const memcached_names[] = {"dogpile.cache.memcached", "dogpile.cache.pylibmc",
                                              "dogpile.cache.bmemcached",
                                              "dogpile.cache.pymemcache", NULL};
static const char *const memcache_pool_names[] = {"oslo_cache.memcache_pool", NULL};
static const char *const redis_names[] = {"dogpile.cache.redis", NULL};
static const char *const redis_sentinel_names[] = {"dogpile.cache.redis_sentinel", NULL};
static const char *const redis_cluster_names[] = {"dogpile.cache.redis_cluster", NULL};

const cachet_backend_info cachet__backend_table[] = {
    {"null", null_names, no_map},
    {"memory", memory_names, no_map},
    {"dbm", dbm_names, no_map},
    {"memcached", memcached_names, memcached_map},
    {"memcache_pool", memcache_pool_names, memcache_pool_map},
    {"redis", redis_names, redis_map},
    {"redis_sentinel", redis_sentinel_names, redis_sentinel_map},
    {"redis_cluster", redis_cluster_names, no_map},
    {NULL, NULL, NULL},
};

const cachet_backend_info *cachet__backend_lookup(const char *name)
{
    for (const cachet_backend_info *b = cachet__backend_table; b->name; b++) {
        if (strcmp(name, b->name) == 0)
            return b;
        for (const char *const *a = b->aliases; *a; a++)
            if (strcmp(name, *a) == 0)
                return b;
    }
    return NULL;
}

void cachet__backend_names(char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const cachet_backend_info *b = cachet__backend_table; b->name && used < size; b++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", b->name);
}
