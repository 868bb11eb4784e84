/* What a [cache] section means: the canonical backend and its effective
 * arguments, built the way oslo.cache's _build_cache_config builds the
 * dogpile region config, so a section copied from keystone.conf or
 * nova.conf opens the same backend with the same arguments. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "config_priv.h"

cachet_status cachet__cfg_resolve(cachet_config *c);

#define MEMCACHED_RELATIVE_MAX 2592000     /* 30 days */

/* Both spellings of every backend name (dogpile/oslo and cachet's). */
static const struct { const char *alias, *canonical; } backend_names[] = {
    {"null", "null"},                       {"dogpile.cache.null", "null"},
    {"memory", "memory"},                   {"dogpile.cache.memory", "memory"},
    {"dogpile.cache.memory_pickle", "memory"}, {"oslo_cache.dict", "memory"},
    {"dbm", "dbm"},                         {"dogpile.cache.dbm", "dbm"},
    {"memcached", "memcached"},             {"dogpile.cache.memcached", "memcached"},
    {"dogpile.cache.pylibmc", "memcached"}, {"dogpile.cache.bmemcached", "memcached"},
    {"dogpile.cache.pymemcache", "memcached"},
    {"memcache_pool", "memcache_pool"},     {"oslo_cache.memcache_pool", "memcache_pool"},
    {"redis", "redis"},                     {"dogpile.cache.redis", "redis"},
    {"redis_sentinel", "redis_sentinel"},   {"dogpile.cache.redis_sentinel", "redis_sentinel"},
    {"redis_cluster", "redis_cluster"},     {"dogpile.cache.redis_cluster", "redis_cluster"},
};

static const char *canonical_backend(const char *name)
{
    for (size_t i = 0; i < sizeof backend_names / sizeof backend_names[0]; i++)
        if (strcmp(name, backend_names[i].alias) == 0)
            return backend_names[i].canonical;
    return name;   /* a third-party plugin name or an absolute .so path */
}

static int is_memcache(const char *b)
{
    return strcmp(b, "memcached") == 0 || strcmp(b, "memcache_pool") == 0;
}

static int is_redis(const char *b)
{
    return strcmp(b, "redis") == 0 || strcmp(b, "redis_sentinel") == 0;
}

typedef struct {
    cachet_backend_arg *a;
    size_t n;
    int oom;
} arglist;

/* Replaces name's value, or appends it. */
static void put(arglist *l, const char *name, const char *value)
{
    cachet_backend_arg *a;
    char *v;
    if (l->oom || !value)
        return;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->a[i].name, name) == 0) {
            if (!(v = cachet__strdup(value))) {
                l->oom = 1;
                return;
            }
            free((char *)l->a[i].value);
            l->a[i].value = v;
            return;
        }
    if (!(a = realloc(l->a, (l->n + 1) * sizeof *a))) {
        l->oom = 1;
        return;
    }
    l->a = a;
    a[l->n].name = cachet__strdup(name);
    a[l->n].value = cachet__strdup(value);
    if (!a[l->n].name || !a[l->n].value) {
        free((char *)a[l->n].name);
        free((char *)a[l->n].value);
        l->oom = 1;
        return;
    }
    l->n++;
}

static int has(const arglist *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->a[i].name, name) == 0)
            return 1;
    return 0;
}

/* An oslo option copied to a backend argument, as oslo.cache does. */
static void copy_opt(arglist *l, const cachet_config *c, int id, const char *arg)
{
    put(l, arg, cachet__cfg_str(c, id));
}

static void memcache_args(arglist *l, const cachet_config *c, int pool)
{
    /* backend_argument = url:... wins over memcache_servers (oslo's setdefault) */
    if (!has(l, "url"))
        copy_opt(l, c, OPT_MEMCACHE_SERVERS, "url");
    /* the memcache_* options are set after backend_argument in oslo.cache,
     * so they win over a backend_argument of the same name */
    copy_opt(l, c, OPT_MEMCACHE_DEAD_RETRY, "dead_retry");
    copy_opt(l, c, OPT_MEMCACHE_SOCKET_TIMEOUT, "socket_timeout");
    if (pool) {
        copy_opt(l, c, OPT_MEMCACHE_POOL_MAXSIZE, "pool_maxsize");
        copy_opt(l, c, OPT_MEMCACHE_POOL_UNUSED_TIMEOUT, "pool_unused_timeout");
        copy_opt(l, c, OPT_MEMCACHE_POOL_CONNECTION_GET_TIMEOUT, "pool_connection_get_timeout");
        copy_opt(l, c, OPT_MEMCACHE_POOL_FLUSH_ON_RECONNECT, "pool_flush_on_reconnect");
    }
    if (cachet__cfg_bool(c, OPT_MEMCACHE_SASL_ENABLED)) {
        copy_opt(l, c, OPT_MEMCACHE_SASL_ENABLED, "sasl_enabled");
        copy_opt(l, c, OPT_MEMCACHE_USERNAME, "username");
        copy_opt(l, c, OPT_MEMCACHE_PASSWORD, "password");
    }
    if (cachet__cfg_bool(c, OPT_ENABLE_SOCKET_KEEPALIVE)) {
        copy_opt(l, c, OPT_ENABLE_SOCKET_KEEPALIVE, "enable_socket_keepalive");
        copy_opt(l, c, OPT_SOCKET_KEEPALIVE_IDLE, "socket_keepalive_idle");
        copy_opt(l, c, OPT_SOCKET_KEEPALIVE_INTERVAL, "socket_keepalive_interval");
        copy_opt(l, c, OPT_SOCKET_KEEPALIVE_COUNT, "socket_keepalive_count");
    }
    if (cachet__cfg_bool(c, OPT_ENABLE_RETRY_CLIENT)) {
        copy_opt(l, c, OPT_ENABLE_RETRY_CLIENT, "enable_retry_client");
        copy_opt(l, c, OPT_RETRY_ATTEMPTS, "retry_attempts");
        copy_opt(l, c, OPT_RETRY_DELAY, "retry_delay");
    }
    if (cachet__cfg_str(c, OPT_BACKEND_EXPIRATION_TIME))
        copy_opt(l, c, OPT_BACKEND_EXPIRATION_TIME, "memcached_expire_time");
}

/* redis://[[user]:password@]host:port/db from the redis_* options, unless
 * backend_argument gave a url. */
static void redis_args(arglist *l, const cachet_config *c, int sentinel)
{
    const char *user = cachet__cfg_str(c, OPT_REDIS_USERNAME);
    const char *pass = cachet__cfg_str(c, OPT_REDIS_PASSWORD);
    char url[2048];

    if (sentinel) {
        if (!has(l, "sentinels"))
            copy_opt(l, c, OPT_REDIS_SENTINELS, "sentinels");
        if (!has(l, "service_name"))
            copy_opt(l, c, OPT_REDIS_SENTINEL_SERVICE_NAME, "service_name");
        if (!has(l, "db"))
            copy_opt(l, c, OPT_REDIS_DB, "db");
        if (user && !has(l, "username"))
            put(l, "username", user);
        if (pass && !has(l, "password"))
            put(l, "password", pass);
    } else if (!has(l, "url") && !has(l, "host")) {
        snprintf(url, sizeof url, "redis://%s%s%s%s%s/%ld",
                 user ? user : "", pass ? ":" : "", pass ? pass : "", (user || pass) ? "@" : "",
                 cachet__cfg_str(c, OPT_REDIS_SERVER), cachet__cfg_long(c, OPT_REDIS_DB));
        put(l, "url", url);
    }
    if (!has(l, "socket_timeout"))
        copy_opt(l, c, OPT_REDIS_SOCKET_TIMEOUT, "socket_timeout");
    if (cachet__cfg_str(c, OPT_BACKEND_EXPIRATION_TIME))
        copy_opt(l, c, OPT_BACKEND_EXPIRATION_TIME, "redis_expiration_time");
}

cachet_status cachet__cfg_resolve(cachet_config *c)
{
    arglist l = {0};
    const char *b = cachet__cfg_bool(c, OPT_ENABLED)
                    ? canonical_backend(cachet__cfg_str(c, OPT_BACKEND)) : "null";
    char *nb = cachet__strdup(b);

    if (!nb)
        return cachet__error(CACHET_ENOMEM, "config: out of memory");
    /* null takes no arguments: a disabled section keeps its backend_argument
     * lines for when it is enabled again, and dogpile's null ignores them */
    for (size_t i = 0; strcmp(b, "null") != 0 && i < c->nbargs; i++)
        put(&l, c->bargs[i].name, c->bargs[i].value);
    if (is_memcache(b))
        memcache_args(&l, c, strcmp(b, "memcache_pool") == 0);
    else if (is_redis(b))
        redis_args(&l, c, strcmp(b, "redis_sentinel") == 0);
    if (l.oom) {
        for (size_t i = 0; i < l.n; i++) {
            free((char *)l.a[i].name);
            free((char *)l.a[i].value);
        }
        free(l.a);
        free(nb);
        return cachet__error(CACHET_ENOMEM, "config: out of memory");
    }
    for (size_t i = 0; i < c->neff; i++) {
        free((char *)c->eff[i].name);
        free((char *)c->eff[i].value);
    }
    free(c->eff);
    free(c->backend);
    c->eff = l.a;
    c->neff = l.n;
    c->backend = nb;
    return CACHET_OK;
}

cachet_status cachet__cfg_validate(const cachet_config *c)
{
    const char *bet = cachet__cfg_str(c, OPT_BACKEND_EXPIRATION_TIME);
    char where[512];

    if (bet && cachet__cfg_long(c, OPT_BACKEND_EXPIRATION_TIME) < cachet__cfg_long(c, OPT_EXPIRATION_TIME)) {
        cachet__cfg_where(c, OPT_BACKEND_EXPIRATION_TIME, where, sizeof where);
        return cachet__error(CACHET_EINVAL, "%soption backend_expiration_time: %s is less than "
                             "expiration_time (%ld): the server would drop values the region "
                             "still counts as fresh", where, bet,
                             cachet__cfg_long(c, OPT_EXPIRATION_TIME));
    }
    /* memcached reads an exptime over 30 days as an absolute Unix time: a
     * larger backend_expiration_time would be a date in 1970, every value
     * expired as it is stored */
    if (bet && is_memcache(c->backend) &&
        cachet__cfg_long(c, OPT_BACKEND_EXPIRATION_TIME) > MEMCACHED_RELATIVE_MAX) {
        cachet__cfg_where(c, OPT_BACKEND_EXPIRATION_TIME, where, sizeof where);
        return cachet__error(CACHET_EINVAL, "%soption backend_expiration_time: %s is over the "
                             "%d seconds (30 days) memcached takes as a relative time; it "
                             "would read %s as a Unix time in the past and expire every "
                             "value at once", where, bet, MEMCACHED_RELATIVE_MAX, bet);
    }
    return CACHET_OK;
}

/* ---- public accessors ---- */

CACHET_EXPORT const char *cachet_config_backend(const cachet_config *c)
{
    return c ? c->backend : NULL;
}

CACHET_EXPORT const char *cachet_config_backend_arg(const cachet_config *c, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; c && name && i < c->neff; i++)
        if (strcmp(c->eff[i].name, name) == 0)
            v = c->eff[i].value;
    return v;
}

CACHET_EXPORT int cachet_config_backend_arg_at(const cachet_config *c, size_t i,
                                               const char **name, const char **value)
{
    if (!c || i >= c->neff)
        return 0;
    if (name)
        *name = c->eff[i].name;
    if (value)
        *value = c->eff[i].value;
    return 1;
}
