/* An instance of the memcached or memcache_pool backend: open and close,
 * the report, and fork. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- open / close ---- */

/* The gutter: an instance of its own over the gutter servers, with every
 * argument of the main one but its url (and no gutter of its own). */
static cachet_status open_gutter(mc_inst *m, const cachet_backend_params *p, const char *url)
{
    cachet_backend_arg *args = malloc((p->nargs + 1) * sizeof *args);
    cachet_backend_params gp = *p;
    cachet_status st;
    void *g = NULL;
    size_t n = 0;

    if (!args)
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    for (size_t i = 0; i < p->nargs; i++)
        if (strcmp(p->args[i].name, "url") != 0 && strcmp(p->args[i].name, "gutter") != 0 &&
            strcmp(p->args[i].name, "gutter_ttl") != 0)
            args[n++] = p->args[i];
    args[n].name = "url";
    args[n++].value = url;
    gp.args = args;
    gp.nargs = n;
    st = mc_open(&gp, &g, m->pool ? "memcache_pool (gutter)" : "memcached (gutter)", m->pool);
    free(args);
    if (st != CACHET_OK) {
        char why[600];
        snprintf(why, sizeof why, "%s", cachet_errmsg());
        return cachet_backend_error(st, "backend %s: gutter: %s", m->backend, why);
    }
    m->gutter = g;
    return CACHET_OK;
}

cachet_status mc_open(const cachet_backend_params *p, void **state, const char *backend, int pool)
{
    /* both backends' arguments; memcache_pool's own go before the last three */
#define MC_KNOWN_ARGS                                                                    \
        "url", "distribution", "binary", "socket_timeout", "dead_retry",                 \
        "memcached_expire_time", "distributed_lock", "lock_timeout", "replicas",         \
        "sasl_enabled", "username", "password", "enable_socket_keepalive",               \
        "socket_keepalive_idle", "socket_keepalive_interval", "socket_keepalive_count",  \
        "enable_retry_client", "retry_attempts", "retry_delay", "max_value_size"
#define MC_KNOWN_LAST "shared_host_state", "gutter", "gutter_ttl", NULL
    static const char *const known_mc[] = {MC_KNOWN_ARGS, MC_KNOWN_LAST};
    static const char *const known_pool[] = {
        MC_KNOWN_ARGS, "pool_maxsize", "pool_unused_timeout", "pool_connection_get_timeout",
        "pool_flush_on_reconnect", MC_KNOWN_LAST};
#undef MC_KNOWN_ARGS
#undef MC_KNOWN_LAST
    const char *url, *dist;
    long replicas, pool_max = 10, max_value;
    double unused = 60, get_to = 10;
    int sasl = 0, flag, flush = 0, shared = 1;
    cachet_status st;
    mc_inst *m;

    if ((st = cachet_backend_args_check(p, backend, pool ? known_pool : known_mc)) != CACHET_OK)
        return st;
    if (!(m = calloc(1, sizeof *m)))
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", backend);
    m->backend = backend;
    m->pool = pool;
    pthread_mutex_init(&m->mu, NULL);
    mc_cond_init(&m->cv);
    *state = NULL;

    url = cachet_backend_arg_get(p, "url");
    dist = cachet_backend_arg_get(p, "distribution");
    if (!dist)
        dist = "ketama";
    if ((st = cachet_backend_arg_bool(p, backend, "binary", 0, &m->binary)) != CACHET_OK ||
        (st = cachet_backend_arg_double(p, backend, "socket_timeout", 1.0, 0.001, 3600,
                                        &m->socket_timeout)) != CACHET_OK ||
        (st = cachet_backend_arg_double(p, backend, "dead_retry", 300, 0, 86400 * 30,
                                        &m->dead_retry)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, backend, "memcached_expire_time", 0, 0, LONG_MAX,
                                      &m->expire)) != CACHET_OK ||
        (st = cachet_backend_arg_bool(p, backend, "distributed_lock", 0, &m->dist_lock)) !=
            CACHET_OK ||
        (st = cachet_backend_arg_double(p, backend, "lock_timeout", 30, 0, 86400 * 30,
                                        &m->lock_timeout)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, backend, "replicas", 1, 1, MAX_REPLICAS,
                                      &replicas)) != CACHET_OK ||
        (st = cachet_backend_arg_bool(p, backend, "sasl_enabled", 0, &sasl)) != CACHET_OK ||
        (st = cachet_backend_arg_bool(p, backend, "shared_host_state", 1, &shared)) != CACHET_OK ||
        /* the largest value a reply may declare (checked before allocating) or a
         * set may send; memcached itself never stores more than 1 GiB */
        (st = cachet_backend_arg_long(p, backend, "max_value_size", MAX_VALUE_DEFAULT, 1,
                                      MAX_VALUE_LIMIT, &max_value)) != CACHET_OK)
        goto fail;
    m->max_value = (size_t)max_value;
    if (strcmp(dist, "ketama") != 0 && strcmp(dist, "consistent") != 0 &&
        strcmp(dist, "modula") != 0 && strcmp(dist, "python-memcache") != 0) {
        st = cachet_backend_error(CACHET_EINVAL, "backend %s: distribution: \"%s\" is not "
                                  "ketama, modula or python-memcache", backend, dist);
        goto fail;
    }
    m->py_placement = strcmp(dist, "python-memcache") == 0;
    if (pool &&
        ((st = cachet_backend_arg_long(p, backend, "pool_maxsize", 10, 1, 100000,
                                       &pool_max)) != CACHET_OK ||
         (st = cachet_backend_arg_double(p, backend, "pool_unused_timeout", 60, 0, 86400 * 365,
                                         &unused)) != CACHET_OK ||
         (st = cachet_backend_arg_double(p, backend, "pool_connection_get_timeout", 10, 0,
                                         86400, &get_to)) != CACHET_OK ||
         (st = cachet_backend_arg_bool(p, backend, "pool_flush_on_reconnect", 0, &flush)) !=
             CACHET_OK))
        goto fail;
    /* what the client does not do is an error, never silently ignored */
    if ((st = cachet_backend_arg_bool(p, backend, "enable_socket_keepalive", 0, &flag)) !=
        CACHET_OK)
        goto fail;
    if (flag) {
        st = cachet_backend_error(CACHET_EINVAL, "backend %s: enable_socket_keepalive: "
                                  "not supported (a hung server is caught by socket_timeout "
                                  "on every call); unset it", backend);
        goto fail;
    }
    if ((st = cachet_backend_arg_bool(p, backend, "enable_retry_client", 0, &flag)) != CACHET_OK)
        goto fail;
    if (flag) {
        st = cachet_backend_error(CACHET_EINVAL, "backend %s: enable_retry_client: not "
                                  "supported (a failed server is marked dead for dead_retry "
                                  "instead of being retried); unset it", backend);
        goto fail;
    }
    if (sasl) {
        const char *user = cachet_backend_arg_get(p, "username");
        const char *pass = cachet_backend_arg_get(p, "password");
        if (!user) {
            st = cachet_backend_error(CACHET_EINVAL, "backend %s: sasl_enabled needs a "
                                      "username", backend);
            goto fail;
        }
        /* copied: the region's arguments are only valid during open (the
         * caller may free the config right after) */
        if (!(m->sasl_user = strdup(user)) || !(m->sasl_pass = strdup(pass ? pass : ""))) {
            st = cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", backend);
            goto fail;
        }
        m->binary = 1;   /* SASL exists only in the binary protocol */
    }
    m->proto = m->binary ? &mc_bin : &mc_text;
    m->pool_max = pool_max;
    m->unused_timeout = unused;
    m->get_timeout = get_to;
    m->flush_on_reconnect = flush;
    m->suspect_after = m->socket_timeout / 4;
    if ((st = mc_parse_url(m, url ? url : "localhost:11211")) != CACHET_OK ||
        (st = mc_ring_new(m, dist)) != CACHET_OK ||
        (st = mc_hosts_start(m, shared)) != CACHET_OK)
        goto fail;
    m->replicas = (int)((size_t)replicas > m->nhosts ? (long)m->nhosts : replicas);
    /* gutter_ttl: whole seconds are what memcached keeps (rounded up) */
    if ((st = cachet_backend_arg_double(p, backend, "gutter_ttl", 10, 1, 2592000,
                                        &m->gutter_ttl)) != CACHET_OK)
        goto fail;
    if (cachet_backend_arg_get(p, "gutter") &&
        (st = open_gutter(m, p, cachet_backend_arg_get(p, "gutter"))) != CACHET_OK)
        goto fail;
    if (!pool) {
        if (pthread_key_create(&m->tls, mc_tls_destroy) != 0) {
            st = cachet_backend_error(CACHET_EBACKEND, "backend %s: no thread-local key left",
                                      backend);
            goto fail;
        }
        m->tls_ok = 1;
    }
    *state = m;
    return CACHET_OK;
fail:
    mc_close(m);
    return st;
}

void mc_close(void *state)
{
    mc_inst *m = state;
    mc_conn *c, *next;

    if (!m)
        return;
    mc_hosts_stop(m);                 /* the prober first: it uses the instance */
    mc_close(m->gutter);
    if (m->tls_ok)
        pthread_key_delete(m->tls);   /* no destructor runs after this */
    for (c = m->all; c; c = next) {
        next = c->next;
        mc_conn_free(c, m->nhosts);
    }
    /* m->orphans belong to the parent process: forget them */
    if (m->ring)
        memcached_free(m->ring);
    free(m->hosts);
    free(m->sasl_user);
    if (m->sasl_pass) {
        explicit_bzero(m->sasl_pass, strlen(m->sasl_pass));   /* no password left in freed memory */
        free(m->sasl_pass);
    }
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- report ---- */

cachet_status mc_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    mc_inst *m = state;
    char buf[512];
    int *answered = calloc(m->nhosts ? m->nhosts : 1, sizeof *answered);

    if (!answered)
        return cachet_backend_error(CACHET_ENOMEM, "%s: report: out of memory", m->backend);
    /* the servers' own figures first (mc_stats.c): a host never used yet
     * that answers them is up, not "unknown" */
    mc_stats_report(m, answered, fn, arg);
    for (size_t i = 0; i < m->nhosts; i++) {
        cachet_host *h = &m->hosts[i].h;
        cachet_server_state ss;
        uint64_t ff, probes, tmo, perr, stale;
        int stt;
        cachet_host_snapshot(h, &ss);
        pthread_mutex_lock(&h->mu);
        stt = h->state;
        ff = h->fastfails;
        probes = h->probes;
        tmo = h->timeouts;
        perr = h->proto_errors;
        stale = h->stale;
        pthread_mutex_unlock(&h->mu);
        if (!ss.up)
            snprintf(buf, sizeof buf, "%s down (%s, %.1f s ago; probed in the background)",
                     m->hosts[i].label, ss.reason, ss.since_change);
        else if (ss.since_change >= 0)
            snprintf(buf, sizeof buf, "%s up (back %.1f s ago)", m->hosts[i].label,
                     ss.since_change);
        else
            snprintf(buf, sizeof buf, "%s %s (never down)", m->hosts[i].label,
                     stt == CACHET_HOST_UP || answered[i] ? "up" : "not contacted yet");
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf),
                 " failures=%llu timeouts=%llu protocol_errors=%llu fast_failures=%llu "
                 "probes=%llu flushes=%llu stale_connections=%llu",
                 (unsigned long long)ss.failures, (unsigned long long)tmo,
                 (unsigned long long)perr, (unsigned long long)ff, (unsigned long long)probes,
                 (unsigned long long)__atomic_load_n(&m->hosts[i].flushes, __ATOMIC_RELAXED),
                 (unsigned long long)stale);
        fn(arg, "server", buf);
    }
    free(answered);
    pthread_mutex_lock(&m->mu);
    snprintf(buf, sizeof buf, "%ld", m->nconns);
    pthread_mutex_unlock(&m->mu);
    fn(arg, "connections", buf);
    if (m->pool) {
        snprintf(buf, sizeof buf, "%ld", m->pool_max);
        fn(arg, "pool_maxsize", buf);
        pthread_mutex_lock(&m->mu);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)m->pool_timeouts);
        pthread_mutex_unlock(&m->mu);
        fn(arg, "pool_timeouts", buf);
    }
    snprintf(buf, sizeof buf, "%d", m->replicas);
    fn(arg, "replicas", buf);
    if (m->gutter) {
        for (size_t i = 0; i < m->gutter->nhosts; i++) {
            cachet_server_state ss;
            cachet_host_snapshot(&m->gutter->hosts[i].h, &ss);
            snprintf(buf, sizeof buf, "%s %s (gutter_ttl %g s)", m->gutter->hosts[i].label,
                     ss.up ? "up" : "down", m->gutter_ttl);
            fn(arg, "gutter", buf);
        }
    }
    fn(arg, "distributed_lock", m->dist_lock ? "true" : "false");   /* as redis and the option say */
    fn(arg, "protocol", m->proto->name);
    snprintf(buf, sizeof buf, "%zu", m->max_value);
    fn(arg, "max_value_size", buf);
    return CACHET_OK;
}

/* ---- fork ---- */

void mc_fork_prepare(void *state)
{
    mc_inst *m = state;
    if (m->gutter)
        mc_fork_prepare(m->gutter);
    pthread_mutex_lock(&m->mu);
    cachet_hostset_fork_prepare(&m->hostset);
}

void mc_fork_parent(void *state)
{
    mc_inst *m = state;
    cachet_hostset_fork_parent(&m->hostset);
    pthread_mutex_unlock(&m->mu);
    if (m->gutter)
        mc_fork_parent(m->gutter);
}

/* The child keeps what it knows about the hosts, but none of the parent's
 * sockets: every connection set becomes an orphan, never used, never
 * closed (closing would send "quit" on the parent's connections).  Threads
 * that were mid-operation do not exist here, nor does the prober. */
void mc_fork_child(void *state)
{
    mc_inst *m = state;
    mc_conn *c, *next;

    for (c = m->all; c; c = next) {
        next = c->next;
        c->idle_next = m->orphans;
        m->orphans = c;
    }
    m->all = NULL;
    m->idle = NULL;
    m->nconns = 0;
    __atomic_add_fetch(&m->gen, 1, __ATOMIC_RELEASE);
    cachet_hostset_fork_child(&m->hostset);   /* the prober restarts when needed */
    pthread_mutex_unlock(&m->mu);
    mc_cond_init(&m->cv);           /* likewise: pool waiters of the parent */
    if (m->gutter)
        mc_fork_child(m->gutter);
}
