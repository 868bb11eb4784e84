/* Backend arguments of redis, redis_sentinel and redis_cluster, as
 * dogpile.cache's Redis backends name them, plus cachet's pool and
 * dead-host arguments.  No message ever shows a password: a bad url is
 * quoted with its password replaced by "***". */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

#define COMMON_ARGS "username", "password", "socket_timeout", "redis_expiration_time", \
    "distributed_lock", "lock_timeout", "lock_sleep", "thread_local_lock", \
    "pool_maxsize", "pool_timeout", "dead_retry", "max_value_size"

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* url with the password (between the user's ':' and '@') masked. */
static void redact(const char *url, char *out, size_t size)
{
    const char *scheme = strstr(url, "://");
    const char *start = scheme ? scheme + 3 : url;
    const char *at = strchr(start, '@');
    const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
    if (colon)
        snprintf(out, size, "%.*s:***%s", (int)(colon - url), url, at);
    else
        snprintf(out, size, "%s", url);
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : (tolower(c) >= 'a' && tolower(c) <= 'f') ? tolower(c) - 'a' + 10 : -1;
}

/* %XX-decoded copy of s[0..n) (user and password in a url, as redis-py unquotes them) */
static char *unquote(const char *s, size_t n)
{
    char *o = malloc(n + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            *w++ = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    return o;
}

int raddr_parse(const char *s, int dflt_port, raddr *a)
{
    const char *hend, *pstart = NULL;
    size_t hl;
    char *end;
    long port = dflt_port;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '[') {
        hend = strchr(s, ']');
        if (!hend)
            return -1;
        hl = (size_t)(hend - s - 1);
        if (hend[1] == ':')
            pstart = hend + 2;
        else if (hend[1] && !isspace((unsigned char)hend[1]))
            return -1;
        s++;
    } else {
        const char *colon = strrchr(s, ':');
        hl = colon ? (size_t)(colon - s) : strcspn(s, " \t");
        if (colon)
            pstart = colon + 1;
    }
    if (hl == 0 || hl >= R_HOST_MAX)
        return -1;
    memcpy(a->host, s, hl);
    a->host[hl] = '\0';
    if (pstart) {
        port = strtol(pstart, &end, 10);
        while (isspace((unsigned char)*end))
            end++;
        if (end == pstart || *end)
            return -1;
    }
    if (port < 1 || port > 65535)
        return -1;
    a->port = (int)port;
    return 0;
}

/* A comma- or blank-separated list of host:port. */
static cachet_status parse_addr_list(const rcfg *cfg, const char *arg, const char *v,
                                     raddr **out, size_t *nout)
{
    char *copy = strdup(v), *save = NULL;
    size_t n = 0;
    raddr *a;

    if (!copy || !(a = calloc(strlen(v) / 2 + 2, sizeof *a))) {
        free(copy);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", cfg->name);
    }
    for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (raddr_parse(t, cfg->mode == RMODE_SENTINEL ? 26379 : 6379, &a[n]) != 0) {
            cachet_status st = cachet_backend_error(CACHET_EINVAL, "backend %s: argument %s: '%s' "
                                                    "is not host:port", cfg->name, arg, t);
            free(copy);
            free(a);
            return st;
        }
        n++;
    }
    free(copy);
    if (n == 0) {
        free(a);
        return cachet_backend_error(CACHET_EINVAL, "backend %s: argument %s: no host:port given",
                                    cfg->name, arg);
    }
    *out = a;
    *nout = n;
    return CACHET_OK;
}

/* redis://[[user]:password@]host[:port][/db]  or  unix://[[user]:password@]/path[?db=N] */
static cachet_status parse_url(rcfg *cfg, const char *url)
{
    char shown[1024];
    const char *p, *at, *hostpart, *slash;
    int is_unix = 0;

    redact(url, shown, sizeof shown);
#define BAD(why) cachet_backend_error(CACHET_EINVAL, "backend %s: argument url: '%s': %s", \
                                      cfg->name, shown, why)
    if (strncmp(url, "redis://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "unix://", 7) == 0)
        p = url + 7, is_unix = 1;
    else if (strncmp(url, "rediss://", 9) == 0)
        return BAD("TLS (rediss://) is not available: Debian 12's hiredis 0.14.1 has no TLS");
    else
        return BAD("the scheme must be redis:// or unix://");
    at = strchr(p, '@');
    if (at && (!strchr(p, '/') || at < strchr(p, '/') || is_unix)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        free(cfg->username);
        free(cfg->password);
        cfg->username = cfg->password = NULL;
        if (colon) {
            if (colon > p)
                cfg->username = unquote(p, (size_t)(colon - p));
            cfg->password = unquote(colon + 1, (size_t)(at - colon - 1));
        } else if (at > p) {
            /* redis://secret@host: redis-py takes a lone user part as the password */
            cfg->password = unquote(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    hostpart = p;
    if (is_unix) {
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/')
            return BAD("a unix socket url needs an absolute path (unix:///run/redis.sock)");
        if (!(cfg->unix_path = strndup(p, n)))
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", cfg->name);
        while (q && *q) {
            q++;
            if (strncmp(q, "db=", 3) == 0) {
                char *end;
                cfg->db = strtol(q + 3, &end, 10);
                if (end == q + 3 || (*end && *end != '&') || cfg->db < 0)
                    return BAD("db= must be a number >= 0");
                q = end;
            } else {
                q = strchr(q, '&');
            }
        }
        return CACHET_OK;
    }
    slash = strchr(hostpart, '/');
    {
        char hp[R_HOST_MAX + 16];
        size_t n = slash ? (size_t)(slash - hostpart) : strlen(hostpart);
        raddr a;
        if (n == 0 || n >= sizeof hp)
            return BAD("no host");
        memcpy(hp, hostpart, n);
        hp[n] = '\0';
        if (raddr_parse(hp, 6379, &a) != 0)
            return BAD("the host part must be host[:port] with a port in 1..65535");
        memcpy(cfg->host, a.host, sizeof a.host);
        cfg->port = a.port;
    }
    if (slash && slash[1]) {
        char *end;
        cfg->db = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || (*end && *end != '?') || cfg->db < 0)
            return BAD("the path must be a database number (/0, /1, ...)");
    }
    return CACHET_OK;
#undef BAD
}

cachet_status rcfg_parse(const cachet_backend_params *p, int mode, rcfg *cfg)
{
    static const char *const known_single[] = {"url", "host", "port", "db", COMMON_ARGS, NULL};
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
        if ((st = parse_url(cfg, v)) != CACHET_OK)
            return st;
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
        (st = cachet_backend_arg_long(p, name, "max_value_size", 64L << 20, 1, 512L << 20, &l)) != CACHET_OK)
        return st;
    /* what a GET may read back; redis's own proto-max-bulk-len is 512 MiB */
    cfg->max_value_size = (size_t)l;
    if (mode == RMODE_SENTINEL) {
        if ((v = cachet_backend_arg_get(p, "sentinels")) == NULL)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: argument sentinels is required "
                                        "(host:port,host:port,...)", name);
        if ((st = parse_addr_list(cfg, "sentinels", v, &cfg->sentinels, &cfg->nsentinels)) != CACHET_OK)
            return st;
        v = cachet_backend_arg_get(p, "service_name");
        cfg->service_name = strdup(v && *v ? v : "mymaster");
        cfg->sentinel_password = dup_or_null(cachet_backend_arg_get(p, "sentinel_password"));
    } else if (mode == RMODE_CLUSTER) {
        if ((v = cachet_backend_arg_get(p, "startup_nodes")) != NULL) {
            if ((st = parse_addr_list(cfg, "startup_nodes", v, &cfg->sentinels,
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
