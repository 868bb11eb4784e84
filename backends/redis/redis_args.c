/* Backend arguments of redis, redis_sentinel and redis_cluster, as
 * dogpile.cache's Redis backends name them, plus cachet's pool, dead-host
 * and max_value_size arguments.  The url and host:port lists are parsed in
 * redis_url.c. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

#define COMMON_ARGS "username", "password", "socket_timeout", "redis_expiration_time", \
    "distributed_lock", "lock_timeout", "lock_sleep", "thread_local_lock", \
    "pool_maxsize", "pool_timeout", "dead_retry", "max_value_size", "shared_host_state"

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

cachet_status rcfg_parse(const cachet_backend_params *p, int mode, rcfg *cfg)
{
    static const char *const known_single[] = {"url", "host", "port", "server", "db", COMMON_ARGS,
                                               NULL};
    static const char *const known_sentinel[] = {"sentinels", "service_name", "sentinel_password",
                                                 "db", COMMON_ARGS, NULL};
    static const char *const known_cluster[] = {"startup_nodes", "url", COMMON_ARGS, NULL};
    const char *const *known = mode == RMODE_SINGLE ? known_single
                               : mode == RMODE_SENTINEL ? known_sentinel : known_cluster;
    const char *name = mode == RMODE_SINGLE ? "redis" : mode == RMODE_SENTINEL ? "redis_sentinel"
                       : "redis_cluster";
    cachet_status st;
    const char *v;
    double d;
    long l;
    int tl;

    memset(cfg, 0, sizeof *cfg);
    cfg->mode = mode;
    cfg->name = name;
    snprintf(cfg->host, sizeof cfg->host, "localhost");
    cfg->port = 6379;
    if ((st = cachet_backend_args_check(p, name, known)) != CACHET_OK)
        return st;
    cfg->username = dup_or_null(cachet_backend_arg_get(p, "username"));
    cfg->password = dup_or_null(cachet_backend_arg_get(p, "password"));
    if ((st = cachet_backend_arg_long(p, name, "db", 0, 0, INT_MAX, &cfg->db)) != CACHET_OK)
        return st;
    if (mode != RMODE_SENTINEL && (v = cachet_backend_arg_get(p, "url")) != NULL) {
        if ((st = rurl_parse(cfg, v)) != CACHET_OK)
            return st;
    } else if (mode == RMODE_SINGLE && !cachet_backend_arg_get(p, "host") &&
               (v = cachet_backend_arg_get(p, "server")) != NULL) {
        /* host[:port] (oslo.cache's redis_server) */
        raddr a;
        if (raddr_parse(v, 6379, &a) != 0)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: argument server: '%s' is not "
                                        "host[:port] with a port in 1..65535", name, v);
        memcpy(cfg->host, a.host, sizeof cfg->host);
        cfg->port = a.port;
    } else if (mode == RMODE_SINGLE) {
        if ((v = cachet_backend_arg_get(p, "host")) != NULL) {
            if (!*v || strlen(v) >= sizeof cfg->host)
                return cachet_backend_error(CACHET_EINVAL, "backend %s: argument host: empty or "
                                            "too long", name);
            snprintf(cfg->host, sizeof cfg->host, "%s", v);
        }
        if ((st = cachet_backend_arg_long(p, name, "port", 6379, 1, 65535, &l)) != CACHET_OK)
            return st;
        cfg->port = (int)l;
    }
    if (mode == RMODE_CLUSTER && cfg->db != 0)
        return cachet_backend_error(CACHET_EINVAL, "backend %s: a cluster has only database 0 "
                                    "(the url names database %ld)", name, cfg->db);
    if ((st = cachet_backend_arg_double(p, name, "socket_timeout", 1.0, 0.001, 3600,
                                        &cfg->socket_timeout)) != CACHET_OK ||
        (st = cachet_backend_arg_double(p, name, "redis_expiration_time", 0, 0, 1e9, &d)) != CACHET_OK)
        return st;
    cfg->expire_ms = (long)(d * 1000 + 0.5);
    cfg->expire_whole_s = cfg->expire_ms % 1000 == 0;
    if ((st = cachet_backend_arg_bool(p, name, "distributed_lock", 0, &cfg->distributed_lock)) != CACHET_OK ||
        (st = cachet_backend_arg_double(p, name, "lock_timeout", 30, 0.001, 1e7, &d)) != CACHET_OK)
        return st;
    cfg->lock_timeout_ms = (long)(d * 1000 + 0.5);
    if ((st = cachet_backend_arg_double(p, name, "lock_sleep", 0.1, 0, 3600, &cfg->lock_sleep)) != CACHET_OK ||
        (st = cachet_backend_arg_bool(p, name, "thread_local_lock", 1, &tl)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, name, "pool_maxsize", 10, 1, 100000, &cfg->pool_maxsize)) != CACHET_OK ||
        (st = cachet_backend_arg_double(p, name, "pool_timeout", 10, 0, 3600, &cfg->pool_timeout)) != CACHET_OK ||
        (st = cachet_backend_arg_double(p, name, "dead_retry", 30, 0, 86400, &cfg->dead_retry)) != CACHET_OK ||
        (st = cachet_backend_arg_bool(p, name, "shared_host_state", 1, &cfg->shared_host_state)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, name, "max_value_size", 64L << 20, 1, 512L << 20, &l)) != CACHET_OK)
        return st;
    /* what a GET may read back; redis's own proto-max-bulk-len is 512 MiB */
    cfg->max_value_size = (size_t)l;
    if (mode == RMODE_SENTINEL) {
        if ((v = cachet_backend_arg_get(p, "sentinels")) == NULL)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: argument sentinels is required "
                                        "(host:port,host:port,...)", name);
        if ((st = raddr_list_parse(cfg, "sentinels", v, &cfg->sentinels, &cfg->nsentinels)) != CACHET_OK)
            return st;
        v = cachet_backend_arg_get(p, "service_name");
        cfg->service_name = strdup(v && *v ? v : "mymaster");
        cfg->sentinel_password = dup_or_null(cachet_backend_arg_get(p, "sentinel_password"));
    } else if (mode == RMODE_CLUSTER) {
        if ((v = cachet_backend_arg_get(p, "startup_nodes")) != NULL) {
            if ((st = raddr_list_parse(cfg, "startup_nodes", v, &cfg->sentinels,
                                      &cfg->nsentinels)) != CACHET_OK)
                return st;
        } else if (cachet_backend_arg_get(p, "url")) {
            if (!(cfg->sentinels = calloc(1, sizeof *cfg->sentinels)))
                return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", name);
            cfg->sentinels[0] = (raddr){{0}, cfg->port};
            memcpy(cfg->sentinels[0].host, cfg->host, sizeof cfg->host);
            cfg->nsentinels = 1;
        } else {
            return cachet_backend_error(CACHET_EINVAL, "backend %s: argument startup_nodes is "
                                        "required (host:port,host:port,...)", name);
        }
    }
    if ((cachet_backend_arg_get(p, "username") && !cfg->username) ||
        (cachet_backend_arg_get(p, "password") && !cfg->password) ||
        (mode == RMODE_SENTINEL && !cfg->service_name))
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", name);
    return CACHET_OK;
}

void rcfg_free(rcfg *cfg)
{
    free(cfg->unix_path);
    if (cfg->password)
        memset(cfg->password, 0, strlen(cfg->password));
    if (cfg->sentinel_password)
        memset(cfg->sentinel_password, 0, strlen(cfg->sentinel_password));
    free(cfg->username);
    free(cfg->password);
    free(cfg->sentinels);
    free(cfg->service_name);
    free(cfg->sentinel_password);
    memset(cfg, 0, sizeof *cfg);
}
