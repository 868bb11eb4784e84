/* An instance of the memcached or memcache_pool backend: open and close,
 * the report, and fork. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- open / close ---- */

cachet_status mc_open(const cachet_backend_params *p, void **state, const char *backend, int pool)
{
    static const char *const known_mc[] = {
        "url", "distribution", "binary", "socket_timeout", "dead_retry",
        "memcached_expire_time", "distributed_lock", "lock_timeout", "replicas",
        "sasl_enabled", "username", "password", "enable_socket_keepalive",
        "socket_keepalive_idle", "socket_keepalive_interval", "socket_keepalive_count",
        "enable_retry_client", "retry_attempts", "retry_delay", "max_value_size", NULL};
    static const char *const known_pool[] = {
        "url", "distribution", "binary", "socket_timeout", "dead_retry",
        "memcached_expire_time", "distributed_lock", "lock_timeout", "replicas",
        "sasl_enabled", "username", "password", "enable_socket_keepalive",
        "socket_keepalive_idle", "socket_keepalive_interval", "socket_keepalive_count",
        "enable_retry_client", "retry_attempts", "retry_delay", "max_value_size",
        "pool_maxsize", "pool_unused_timeout", "pool_connection_get_timeout",
        "pool_flush_on_reconnect", NULL};
    const char *url, *dist;
    long replicas, pool_max = 10, max_value;
    double unused = 60, get_to = 10;
    int sasl = 0, flag, flush = 0;
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
        (st = mc_ring_new(m, dist)) != CACHET_OK)
        goto fail;
    m->replicas = (int)((size_t)replicas > m->nhosts ? (long)m->nhosts : replicas);
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
    if (m->tls_ok)
        pthread_key_delete(m->tls);   /* no destructor runs after this */
    for (c = m->all; c; c = next) {
        next = c->next;
        mc_conn_free(c, m->nhosts);
    }
    /* m->orphans belong to the parent process: forget them */
    if (m->ring)
        memcached_free(m->ring);
    for (size_t i = 0; i < m->nhosts; i++) {
        pthread_cond_destroy(&m->hosts[i].probe_done);
        pthread_mutex_destroy(&m->hosts[i].mu);
    }
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
    double now = mc_now_s();

    for (size_t i = 0; i < m->nhosts; i++) {
        mc_host *h = &m->hosts[i];
        int stt, probing;
        double until;
        uint64_t fails, ff, probes, flushes, tmo, perr;
        pthread_mutex_lock(&h->mu);
        stt = h->state;
        probing = h->probing;
        until = h->dead_until;
        fails = h->failures;
        ff = h->fastfails;
        probes = h->probes;
        flushes = h->flushes;
        tmo = h->timeouts;
        perr = h->proto_errors;
        pthread_mutex_unlock(&h->mu);
        if (stt == H_DEAD && now < until)
            snprintf(buf, sizeof buf, "%s dead (retry in %.0f s)", h->label, until - now);
        else
            snprintf(buf, sizeof buf, "%s %s", h->label,
                     probing ? "probing" : stt == H_UP ? "up" : stt == H_DEAD ? "dead (retry due)"
                     : "unknown");
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf),
                 " failures=%llu timeouts=%llu protocol_errors=%llu fast_failures=%llu "
                 "probes=%llu flushes=%llu",
                 (unsigned long long)fails, (unsigned long long)tmo, (unsigned long long)perr,
                 (unsigned long long)ff, (unsigned long long)probes, (unsigned long long)flushes);
        fn(arg, "server", buf);
    }
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
    fn(arg, "distributed_lock", m->dist_lock ? "on" : "off");
    fn(arg, "protocol", m->proto->name);
    snprintf(buf, sizeof buf, "%zu", m->max_value);
    fn(arg, "max_value_size", buf);
    return CACHET_OK;
}

/* ---- fork ---- */

void mc_fork_prepare(void *state)
{
    mc_inst *m = state;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nhosts; i++)
        pthread_mutex_lock(&m->hosts[i].mu);
}

void mc_fork_parent(void *state)
{
    mc_inst *m = state;
    for (size_t i = m->nhosts; i-- > 0;)
        pthread_mutex_unlock(&m->hosts[i].mu);
    pthread_mutex_unlock(&m->mu);
}

/* The child keeps what it knows about the hosts, but none of the parent's
 * sockets: every connection set becomes an orphan, never used, never
 * closed (closing would send "quit" on the parent's connections).  Threads
 * that were mid-operation do not exist here, so no probe is running. */
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
    for (size_t i = m->nhosts; i-- > 0;) {
        m->hosts[i].probing = 0;
        m->hosts[i].inflight = 0;
        /* made anew, never destroyed: a parent thread parked in a timed
         * wait on it (not holding the mutex fork_prepare took) is counted
         * as a waiter, and glibc's pthread_cond_destroy waits for waiters
         * to leave — for ever, in a child where that thread does not exist */
        mc_cond_init(&m->hosts[i].probe_done);
        pthread_mutex_unlock(&m->hosts[i].mu);
    }
    pthread_mutex_unlock(&m->mu);
    mc_cond_init(&m->cv);           /* likewise: pool waiters of the parent */
}
