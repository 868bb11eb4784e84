/* [keystone_authtoken] -> cachet's options (see ks_section.h).  The
 * options, defaults and aliases are keystonemiddleware 10.1's
 * (auth_token/_opts.py); what its _token_cache_factory passes on and to
 * which client is what decides the backend here. */
#include "config.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include "internal.h"
#include "config_priv.h"
#include "ks_section.h"

enum {
    KS_SERVERS,        /* memcached_servers (ListOpt) */
    KS_SERVERS_OLD,    /* memcache_servers: its deprecated name */
    KS_STRATEGY,
    KS_SECRET,
    KS_TTL,
    KS_DEAD_RETRY,
    KS_SOCKET_TIMEOUT,
    KS_MAXSIZE,
    KS_UNUSED_TIMEOUT,
    KS_CONN_GET_TIMEOUT,
    KS_ADVANCED_POOL,
    KS__N
};

static const char *const ks_names[KS__N] = {
    "memcached_servers", "memcache_servers", "memcache_security_strategy",
    "memcache_secret_key", "token_cache_time", "memcache_pool_dead_retry",
    "memcache_pool_socket_timeout", "memcache_pool_maxsize", "memcache_pool_unused_timeout",
    "memcache_pool_conn_get_timeout", "memcache_use_advanced_pool",
};

struct ks_section {
    char *val[KS__N];
    int   line[KS__N];
    int   last;          /* the option of the line before, -1: one we ignore */
};

ks_section *cachet__ks_section_new(void)
{
    ks_section *s = calloc(1, sizeof *s);
    if (s)
        s->last = -1;
    return s;
}

static void wipe_free(char *v)
{
    if (v) {
        OPENSSL_cleanse(v, strlen(v));
        free(v);
    }
}

void cachet__ks_section_free(ks_section *s)
{
    if (!s)
        return;
    for (int i = 0; i < KS__N; i++)
        wipe_free(s->val[i]);
    free(s);
}

cachet_status cachet__ks_section_line(ks_section *s, const char *name, const char *value,
                                      int continuation, int line)
{
    int id;
    char *v;

    if (continuation) {
        size_t a, b;
        if (s->last < 0 || !s->val[s->last])
            return CACHET_OK;            /* a continuation of an option we ignore */
        a = strlen(s->val[s->last]);
        b = strlen(value);
        if (!(v = malloc(a + b + 2)))
            return CACHET_ENOMEM;
        memcpy(v, s->val[s->last], a);
        v[a] = '\n';
        memcpy(v + a + 1, value, b + 1);
        wipe_free(s->val[s->last]);
        s->val[s->last] = v;
        return CACHET_OK;
    }
    for (id = 0; id < KS__N && strcmp(name, ks_names[id]) != 0; id++)
        ;
    s->last = id < KS__N ? id : -1;
    if (id == KS__N)
        return CACHET_OK;                /* auth_url, password, ...: the middleware's */
    if (!(v = cachet__strdup(value)))
        return CACHET_ENOMEM;
    wipe_free(s->val[id]);               /* the last line wins, as in oslo.config */
    s->val[id] = v;
    s->line[id] = line;
    return CACHET_OK;
}

/* oslo.config's value rules: blanks trimmed, then one pair of matching
 * quotes around the whole value removed. */
static char *unquote(char *v)
{
    size_t n;
    while (*v == ' ' || *v == '\t')
        v++;
    n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
        v[--n] = '\0';
    if (n && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        return n >= 2 ? v + 1 : v + n - 1;
    }
    return v;
}

/* An IntOpt's value within [min, max]: CACHET_OK or an error naming it. */
static cachet_status int_opt(const ks_section *s, int id, const char *label, long dflt, long min,
                             long max, long *out)
{
    const char *t;
    char *end, *buf;
    long v;
    cachet_status st = CACHET_OK;

    *out = dflt;
    if (!s->val[id])
        return CACHET_OK;
    if (!(buf = cachet__strdup(s->val[id])))
        return CACHET_ENOMEM;
    t = unquote(buf);
    errno = 0;
    v = strtol(t, &end, 10);
    if (!*t || *end || errno)
        st = cachet__error(CACHET_EINVAL, "%s:%d: option %s: '%.40s' is not an integer", label,
                           s->line[id], ks_names[id], t);
    else if (v < min || v > max)
        st = cachet__error(CACHET_EINVAL, "%s:%d: option %s: %ld is out of range (%ld..%ld)",
                           label, s->line[id], ks_names[id], v, min, max);
    else
        *out = v;
    free(buf);
    return st;
}

/* memcached_servers, else memcache_servers: a comma list, items trimmed,
 * empty ones dropped.  "" = no servers (keystonemiddleware's in-process
 * cache).  NULL on ENOMEM. */
static char *server_list(const ks_section *s)
{
    const char *src = s->val[KS_SERVERS] ? s->val[KS_SERVERS] : s->val[KS_SERVERS_OLD];
    char *copy, *out, *o, *item, *save = NULL;

    if (!src)
        return cachet__strdup("");
    if (!(copy = cachet__strdup(src)) || !(out = malloc(strlen(src) + 1))) {
        free(copy);
        return NULL;
    }
    o = out;
    for (item = strtok_r(copy, ",\n", &save); item; item = strtok_r(NULL, ",\n", &save)) {
        char *t = unquote(item);
        if (!*t)
            continue;
        if (o != out)
            *o++ = ',';
        memcpy(o, t, strlen(t));
        o += strlen(t);
    }
    *o = '\0';
    free(copy);
    return out;
}

/* Removes the keystone proxy's arguments a load before this one set. */
static void drop_keystone_args(cachet_config *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->npargs; i++) {
        cachet_proxy_arg *a = &c->pargs[i];
        if (strcmp(a->proxy, "keystone") == 0) {
            free(a->proxy);
            free((char *)a->arg.name);
            wipe_free((char *)a->arg.value);
        } else {
            c->pargs[k++] = *a;
        }
    }
    c->npargs = k;
}

#define SET(name, value, id)                                                               \
    do {                                                                                   \
        if ((st = cachet__cfg_set_at(c, name, value, file, s->line[id])) != CACHET_OK)     \
            goto done;                                                                     \
    } while (0)

static cachet_status apply_checked(ks_section *s, cachet_config *c, const char *label,
                                   const char *file, const char *strategy);

cachet_status cachet__ks_section_apply(ks_section *s, cachet_config *c, const char *label,
                                       const char *file)
{
    char *strategy, *sbuf;
    cachet_status st;

    /* memcache_security_strategy: StrOpt, choices None/MAC/ENCRYPT, ignore_case */
    if (!(sbuf = cachet__strdup(s->val[KS_STRATEGY] ? s->val[KS_STRATEGY] : "None")))
        return CACHET_ENOMEM;
    strategy = unquote(sbuf);
    if (strcasecmp(strategy, "None") != 0 && strcasecmp(strategy, "MAC") != 0 &&
        strcasecmp(strategy, "ENCRYPT") != 0) {
        st = cachet__error(CACHET_EINVAL, "%s:%d: option memcache_security_strategy: '%.40s' is "
                           "not one of None, MAC, ENCRYPT (keystonemiddleware refuses it too)",
                           label, s->line[KS_STRATEGY], strategy);
        free(sbuf);
        return st;
    }
    st = apply_checked(s, c, label, file, strategy);
    free(sbuf);
    return st;
}

/* apply, once the strategy is known good. */
static cachet_status apply_checked(ks_section *s, cachet_config *c, const char *label,
                                   const char *file, const char *strategy)
{
    char num[32], *secret = NULL, *servers = NULL, *arg = NULL;
    long ttl, dead_retry, sock_timeout, maxsize, unused, conn_get;
    int advanced = 1;
    cachet_status st;

    if ((st = int_opt(s, KS_TTL, label, 300, INT_MIN, INT_MAX, &ttl)) != CACHET_OK ||
        (st = int_opt(s, KS_DEAD_RETRY, label, 300, 0, INT_MAX, &dead_retry)) != CACHET_OK ||
        (st = int_opt(s, KS_SOCKET_TIMEOUT, label, 3, 1, 86400, &sock_timeout)) != CACHET_OK ||
        (st = int_opt(s, KS_MAXSIZE, label, 10, 1, 100000, &maxsize)) != CACHET_OK ||
        (st = int_opt(s, KS_UNUSED_TIMEOUT, label, 60, 0, INT_MAX, &unused)) != CACHET_OK ||
        (st = int_opt(s, KS_CONN_GET_TIMEOUT, label, 10, 0, 86400, &conn_get)) != CACHET_OK)
        return st;
    if (s->val[KS_ADVANCED_POOL]) {
        char *b = cachet__strdup(s->val[KS_ADVANCED_POOL]), *t;
        if (!b)
            return CACHET_ENOMEM;
        t = unquote(b);
        if (cachet_parse_bool(t, &advanced) != 0)
            st = cachet__error(CACHET_EINVAL, "%s:%d: option memcache_use_advanced_pool: "
                               "'%.40s' is not true or false", label, s->line[KS_ADVANCED_POOL], t);
        free(b);
        if (st != CACHET_OK)
            return st;
    }
    if (strcasecmp(strategy, "None") != 0) {
        char *t;
        if (!(secret = cachet__strdup(s->val[KS_SECRET] ? s->val[KS_SECRET] : "")))
            return CACHET_ENOMEM;
        t = unquote(secret);
        memmove(secret, t, strlen(t) + 1);
        if (!*secret) {
            wipe_free(secret);
            return cachet__error(CACHET_EINVAL, "%s:%d: option memcache_secret_key: must be set "
                                 "when memcache_security_strategy is %s (keystonemiddleware "
                                 "refuses to start without it)", label,
                                 s->val[KS_SECRET] ? s->line[KS_SECRET] : s->line[KS_STRATEGY],
                                 strategy);
        }
    }
    if (!(servers = server_list(s))) {
        wipe_free(secret);
        return CACHET_ENOMEM;
    }

    drop_keystone_args(c);               /* a reload replaces the last load's */
    SET("enabled", "true", KS_SERVERS);
    if (*servers)   /* keys on the server python-memcache picks: every side finds them */
        SET("backend_argument", "distribution:python-memcache", KS_SERVERS);
    if (!*servers) {
        /* no memcached_servers: keystonemiddleware caches in its process */
        SET("backend", "memory", KS_SERVERS);
    } else if (advanced) {
        /* oslo_cache's MemcacheClientPool with the memcache_pool_* options */
        SET("backend", "memcache_pool", KS_ADVANCED_POOL);
        SET("memcache_servers", servers, s->val[KS_SERVERS] ? KS_SERVERS : KS_SERVERS_OLD);
        snprintf(num, sizeof num, "%ld", dead_retry);
        SET("memcache_dead_retry", num, KS_DEAD_RETRY);
        snprintf(num, sizeof num, "%ld", sock_timeout);
        SET("memcache_socket_timeout", num, KS_SOCKET_TIMEOUT);
        snprintf(num, sizeof num, "%ld", maxsize);
        SET("memcache_pool_maxsize", num, KS_MAXSIZE);
        snprintf(num, sizeof num, "%ld", unused);
        SET("memcache_pool_unused_timeout", num, KS_UNUSED_TIMEOUT);
        snprintf(num, sizeof num, "%ld", conn_get);
        SET("memcache_pool_connection_get_timeout", num, KS_CONN_GET_TIMEOUT);
    } else {
        /* _CachePool: memcache.Client(servers) with python-memcache's own
         * defaults; the memcache_pool_* options are not passed to it */
        SET("backend", "memcached", KS_ADVANCED_POOL);
        SET("memcache_servers", servers, s->val[KS_SERVERS] ? KS_SERVERS : KS_SERVERS_OLD);
        SET("memcache_dead_retry", "30", KS_ADVANCED_POOL);
        SET("memcache_socket_timeout", "3", KS_ADVANCED_POOL);
    }
    /* readers keep a value as long as the server does: token_cache_time */
    SET("expiration_time", "-1", KS_TTL);
    SET("cachet_proxies", "keystone", KS_STRATEGY);
    st = CACHET_ENOMEM;
    if (!(arg = malloc(strlen(strategy) + (secret ? strlen(secret) : 0) + 64)))
        goto done;
    sprintf(arg, "keystone:strategy:%s", strategy);
    SET("cachet_proxy_argument", arg, KS_STRATEGY);
    sprintf(arg, "keystone:token_cache_time:%ld", ttl);
    SET("cachet_proxy_argument", arg, KS_TTL);
    if (secret) {
        sprintf(arg, "keystone:secret_key:%s", secret);
        SET("cachet_proxy_argument", arg, KS_SECRET);
    }
    c->foreign_values = 1;
    st = CACHET_OK;
done:
    if (arg) {
        OPENSSL_cleanse(arg, strlen(arg));
        free(arg);
    }
    wipe_free(secret);
    free(servers);
    return st;
}
