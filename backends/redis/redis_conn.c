/* One redis server as all threads of a process share it: a pool of
 * hiredis connections (at most pool_maxsize), the handshake (AUTH, SELECT,
 * ROLE for sentinel mode) under the call's deadline, and the server's health.
 *
 * Health, so that a hung host costs one stall and not one per call:
 *   UP       connections are handed out and made freely;
 *   DEAD     every call fails at once (CACHET_EUNAVAILABLE) until dead_until:
 *            dead_retry seconds after a timeout, at most 1 s after a refused
 *            connection or other fast failure (retrying those costs nothing);
 *   UNKNOWN  (at open, and when DEAD ran out) the first caller makes a fresh
 *            connection and its command decides; meanwhile every other
 *            caller fails at once instead of queueing behind the probe.
 * A connection that broke while idle in the pool (the server restarted)
 * is not a dead server: the call is retried once on a fresh connection and
 * the rest of the pool is dropped.
 *
 * A protocol error (a reply that breaks RESP, a bound, or its request's
 * shape) is not a sign of a hung host: only that connection goes, the
 * server is not marked down, and it is counted in proto_errors apart from
 * failures.  A connection that got more than it asked for, or that holds
 * unread bytes when taken from the pool, is closed (redis_io.c tells).
 *
 * hiredis contexts are not thread-safe: a connection belongs to one thread
 * between acquire and release.  Any c->err makes it unusable: it is freed,
 * never reused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <hiredis/sds.h>
#include "redis.h"

struct rlabel {
    struct rlabel *next;
    char s[R_HOST_MAX + 16];
};

void rreplies_free(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rep[i]) {
            freeReplyObject(rep[i]);
            rep[i] = NULL;
        }
}

void rserver_init(rserver *s, rinst *in, const raddr *a, const char *unix_path)
{
    pthread_condattr_t ca;
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->in = in;
    if (a)
        s->addr = *a;
    s->unix_path = unix_path;
    s->state = RS_UNKNOWN;
    s->changed_at = -1;
}

static void conn_free(rconn *cn)
{
    if (cn) {
        if (cn->c)
            redisFree(cn->c);
        free(cn);
    }
}

static void unlink_locked(rserver *s, rconn *cn)
{
    if (cn->prev)
        cn->prev->next = cn->next;
    else if (s->all == cn)
        s->all = cn->next;
    if (cn->next)
        cn->next->prev = cn->prev;
    cn->prev = cn->next = NULL;
    s->nopen--;
}

/* Takes the idle connections out (to be freed unlocked) and makes the ones
 * in use go when they come back. */
static rconn *flush_locked(rserver *s)
{
    rconn *chain = s->idle;
    for (rconn *cn = chain; cn; cn = cn->idle_next)
        unlink_locked(s, cn);
    s->idle = NULL;
    s->gen++;
    return chain;
}

static void free_chain(rconn *cn)
{
    while (cn) {
        rconn *next = cn->idle_next;
        conn_free(cn);
        cn = next;
    }
}

void rserver_destroy(rserver *s)
{
    rconn *cn = s->all;
    while (cn) {
        rconn *next = cn->next;
        conn_free(cn);
        cn = next;
    }
    s->all = s->idle = NULL;
    while (s->labels) {
        struct rlabel *next = s->labels->next;
        free(s->labels);
        s->labels = next;
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void rserver_scrub(const rinst *in, char *buf, size_t size)
{
    r_scrub(buf, size, in->cfg.password);
    r_scrub(buf, size, in->cfg.sentinel_password);
    if (!in->cfg.password)
        r_scrub(buf, size, in->cfg.username);   /* see the AUTH message */
}

void rserver_name(rserver *s, char *buf, size_t size)
{
    if (s->unix_path)
        snprintf(buf, size, "%s", s->unix_path);
    else if (strchr(s->addr.host, ':'))
        snprintf(buf, size, "[%s]:%d", s->addr.host, s->addr.port);
    else
        snprintf(buf, size, "%s:%d", s->addr.host, s->addr.port);
}

/* The caller holds s->mu.  The label of the current address (NULL when out
 * of memory: the servers op then shows "?"). */
static const char *label_locked(rserver *s)
{
    char name[R_HOST_MAX + 16];
    struct rlabel *l;
    rserver_name(s, name, sizeof name);
    if (s->labels && strcmp(s->labels->s, name) == 0)
        return s->labels->s;
    if (!(l = malloc(sizeof *l)))
        return NULL;
    memcpy(l->s, name, sizeof name);
    l->next = s->labels;
    s->labels = l;
    return l->s;
}

void rserver_state(rserver *s, cachet_server_state *out)
{
    double now = r_now();
    const char *label;
    pthread_mutex_lock(&s->mu);
    label = label_locked(s);
    out->name = label ? label : "?";
    out->up = !s->down;
    out->reason = s->down ? s->reason : NULL;
    out->failures = __atomic_load_n(&s->failures, __ATOMIC_RELAXED);
    out->since_change = s->changed_at < 0 ? -1 : now - s->changed_at;
    pthread_mutex_unlock(&s->mu);
}

/* The caller holds s->mu: the server answered a probe. */
static void mark_up_locked(rserver *s)
{
    if (s->down) {
        s->down = 0;
        s->reason = NULL;
        s->changed_at = r_now();
    }
}

static const char *fail_reason(int kind)
{
    switch (kind) {
    case RF_DEADLINE:
        return "timeout";
    case RF_CONNECT:
        return "refused";
    case RF_EOF:
        return "closed";
    default:
        return "I/O error";
    }
}

/* The caller holds s->mu.  timeout_class: the failure cost a stall. */
static void mark_failed_locked(rserver *s, int timeout_class, const char *why, const char *reason)
{
    double retry = s->in->cfg.dead_retry;
    if (!timeout_class && retry > 1.0)
        retry = 1.0;
    if (!s->down) {
        s->down = 1;
        s->changed_at = r_now();
    }
    s->reason = reason;
    __atomic_fetch_add(&s->failures, 1, __ATOMIC_RELAXED);
    snprintf(s->why, sizeof s->why, "%s", why);
    s->probing = 0;
    if (retry > 0) {
        s->state = RS_DEAD;
        s->dead_until = r_now() + retry;
    } else {
        s->state = RS_UNKNOWN;
    }
    pthread_cond_broadcast(&s->cv);
}

/* Drops cn (broken) and records why the server failed; returns the status
 * for the caller, with the message set.  What the failure does to the
 * server's health depends on what happened:
 *   deadline   the server hung: marked down for dead_retry;
 *   protocol   it answered, wrongly: counted apart, not marked down (a
 *              fast answer is no sign of a hung host), and only this
 *              connection goes;
 *   otherwise  (refused, closed, reset) a fast failure: down for <= 1 s. */
static cachet_status conn_failed(rserver *s, rconn *cn, cachet_status st, const rfail *f)
{
    char name[R_HOST_MAX + 16], why[400];
    rconn *garbage = NULL;
    int proto = f->kind == RF_PROTO || f->kind == RF_OOM;

    snprintf(why, sizeof why, "%s", f->why);
    rserver_scrub(s->in, why, sizeof why);
    pthread_mutex_lock(&s->mu);
    rserver_name(s, name, sizeof name);
    if (cn)
        unlink_locked(s, cn);
    if (proto) {
        if (f->kind == RF_PROTO)
            __atomic_fetch_add(&s->proto_errors, 1, __ATOMIC_RELAXED);
        if (cn && cn->probe)
            s->probing = 0;   /* the next caller probes again */
        pthread_cond_broadcast(&s->cv);
    } else {
        mark_failed_locked(s, f->kind == RF_DEADLINE, why, fail_reason(f->kind));
        garbage = flush_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    conn_free(cn);
    free_chain(garbage);
    if (f->kind == RF_PROTO)
        return cachet_backend_error(CACHET_EBACKEND, "backend %s: %s: protocol error: %s "
                                    "(connection closed)", s->in->cfg.name, name, why);
    if (f->kind == RF_OOM)
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: %s: %s", s->in->cfg.name,
                                    name, why);
    return cachet_backend_error(st, "backend %s: %s: %s", s->in->cfg.name, name, why);
}

/* AUTH, SELECT and (sentinel) ROLE, pipelined, by the call's deadline.
 * On failure the status is returned with f set (f->kind RF_NONE: the
 * server refused, a configuration error). */
static cachet_status handshake(rserver *s, redisContext *c, double deadline, rfail *f)
{
    const rcfg *cfg = &s->in->cfg;
    const char *argv[3][3];
    size_t lens[3][3];
    rcmd cmds[3];
    redisReply *rep[3];
    int n = 0, doubt;
    char dbbuf[24];
    cachet_status st = CACHET_OK;

    memset(cmds, 0, sizeof cmds);
    if (cfg->password || cfg->username) {
        /* as redis-py: a user without a password sends AUTH user "" */
        int k = 0;
        argv[n][k++] = "AUTH";
        if (cfg->username)
            argv[n][k++] = cfg->username;
        argv[n][k++] = cfg->password ? cfg->password : "";
        cmds[n].argc = k;
        cmds[n++].expect = RX_OK;
    }
    if (cfg->db) {
        snprintf(dbbuf, sizeof dbbuf, "%ld", cfg->db);
        argv[n][0] = "SELECT";
        argv[n][1] = dbbuf;
        cmds[n].argc = 2;
        cmds[n++].expect = RX_OK;
    }
    if (cfg->mode == RMODE_SENTINEL) {
        argv[n][0] = "ROLE";
        cmds[n].argc = 1;
        cmds[n++].expect = RX_ROLE;
    }
    if (n == 0)
        return CACHET_OK;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < cmds[i].argc; k++)
            lens[i][k] = strlen(argv[i][k]);
        cmds[i].argv = argv[i];
        cmds[i].argvlen = lens[i];
    }
    if (rio_exec(c, cmds, (size_t)n, rep, deadline, cfg->socket_timeout, cfg->max_value_size,
                 &doubt, f) != 0)
        return f->kind == RF_PROTO ? CACHET_EBACKEND : CACHET_EUNAVAILABLE;
    f->kind = RF_NONE;
    for (int i = 0; i < n && st == CACHET_OK; i++) {
        const char *what = cmds[i].argv[0];
        redisReply *r = rep[i];
        if (what[0] == 'A' && r->type == REDIS_REPLY_ERROR) {
            /* a user without a password may be a password written where
             * redis-py reads a user (redis://secret@host): not shown */
            if (cfg->password)
                snprintf(f->why, sizeof f->why, "AUTH refused for user '%s': %s",
                         cfg->username ? cfg->username : "default", r->str);
            else
                snprintf(f->why, sizeof f->why, "AUTH refused for a user given without a "
                         "password (as redis-py, cachet sent AUTH user \"\"): %s", r->str);
            st = CACHET_EINVAL;
        } else if (what[1] == 'E' && r->type == REDIS_REPLY_ERROR) {
            snprintf(f->why, sizeof f->why, "SELECT %ld refused: %s", cfg->db, r->str);
            st = CACHET_EINVAL;
        } else if (what[0] == 'R' &&
                   (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
                    r->element[0]->type != REDIS_REPLY_STRING ||
                    strcmp(r->element[0]->str, "master") != 0)) {
            snprintf(f->why, sizeof f->why, "is not the master of '%s' (ROLE: %.60s)",
                     cfg->service_name,
                     r->type == REDIS_REPLY_ARRAY && r->elements &&
                     r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str
                     : r->type == REDIS_REPLY_ERROR ? r->str : "?");
            st = CACHET_EUNAVAILABLE;
            f->kind = RF_CONNECT;   /* a fast failure: ask the sentinels again */
        }
    }
    rreplies_free(rep, (size_t)n);
    if (st == CACHET_OK && doubt) {
        snprintf(f->why, sizeof f->why, "more replies than requests in the handshake");
        f->kind = RF_PROTO;
        st = CACHET_EBACKEND;
    }
    return st;
}

/* A new connection for cn (which is counted and linked), by the deadline. */
static cachet_status connect_conn(rserver *s, rconn *cn, const raddr *a, double deadline)
{
    const rcfg *cfg = &s->in->cfg;
    redisContext *c;
    cachet_status st;
    rfail f = {RF_NONE, ""};

    c = rio_connect(a->host, a->port, s->unix_path, deadline, cfg->socket_timeout, &f);
    if (!c)
        return conn_failed(s, cn, CACHET_EUNAVAILABLE, &f);
    if ((st = handshake(s, c, deadline, &f)) != CACHET_OK) {
        redisFree(c);
        if (f.kind == RF_NONE) {
            /* AUTH or SELECT refused: the server is fine, the configuration is not */
            rfail g = {RF_CONNECT, ""};
            snprintf(g.why, sizeof g.why, "%s", f.why);
            return conn_failed(s, cn, st, &g);
        }
        return conn_failed(s, cn, st, &f);
    }
    pthread_mutex_lock(&s->mu);
    cn->c = c;
    pthread_mutex_unlock(&s->mu);
    return CACHET_OK;
}

/* A pooled connection that must not be used: the server sent something
 * nobody asked for (a reply that would be taken for the next request's),
 * or closed it.  Dropped unlocked. */
static int pooled_in_doubt(rserver *s, rconn *cn)
{
    int eof;
    if (!rio_pending(cn->c, &eof))
        return 0;
    pthread_mutex_lock(&s->mu);
    unlink_locked(s, cn);
    if (!eof)
        __atomic_fetch_add(&s->proto_errors, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    conn_free(cn);
    return 1;
}

/* A connection for one call.  fresh: never one from the pool.  *call_end:
 * the call's deadline, set here (socket_timeout from when a connection is
 * at hand, the pool wait apart) unless already set. */
static cachet_status acquire(rserver *s, int fresh, double *call_end, rconn **out)
{
    const rcfg *cfg = &s->in->cfg;
    char name[R_HOST_MAX + 16], why[sizeof s->why];
    double deadline = 0, now;
    struct timespec ts;
    rconn *cn;
    raddr a;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->state == RS_DEAD) {
            now = r_now();
            if (now < s->dead_until) {
                double left = s->dead_until - now;
                rserver_name(s, name, sizeof name);
                snprintf(why, sizeof why, "%s", s->why);
                pthread_mutex_unlock(&s->mu);
                return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: %s is marked down "
                                            "for %.1f s more (dead_retry) after: %s",
                                            cfg->name, name, left, why);
            }
            s->state = RS_UNKNOWN;
        }
        if (s->state == RS_UNKNOWN) {
            if (s->probing) {
                rserver_name(s, name, sizeof name);
                pthread_mutex_unlock(&s->mu);
                return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: %s: another thread "
                                            "is checking whether the server answers",
                                            cfg->name, name);
            }
            s->probing = 1;
            break;
        }
        if (!fresh && s->idle) {
            cn = s->idle;
            s->idle = cn->idle_next;
            cn->idle_next = NULL;
            cn->reused = 1;
            pthread_mutex_unlock(&s->mu);
            if (pooled_in_doubt(s, cn)) {
                pthread_mutex_lock(&s->mu);
                continue;
            }
            if (*call_end == 0)
                *call_end = r_now() + cfg->socket_timeout;
            *out = cn;
            return CACHET_OK;
        }
        if (s->nopen < (size_t)cfg->pool_maxsize)
            break;
        now = r_now();
        if (deadline == 0)
            deadline = now + cfg->pool_timeout;
        if (now >= deadline) {
            rserver_name(s, name, sizeof name);
            pthread_mutex_unlock(&s->mu);
            return cachet_backend_error(CACHET_ETIMEDOUT, "backend %s: %s: all %ld pooled "
                                        "connections stayed busy for pool_timeout (%.3g s)",
                                        cfg->name, name, cfg->pool_maxsize, cfg->pool_timeout);
        }
        ts.tv_sec = (time_t)deadline;
        ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    /* a new connection, counted now so the pool bound holds */
    if (!(cn = calloc(1, sizeof *cn))) {
        s->probing = 0;
        pthread_mutex_unlock(&s->mu);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", cfg->name);
    }
    cn->probe = s->state == RS_UNKNOWN;
    cn->gen = s->gen;
    cn->next = s->all;
    if (s->all)
        s->all->prev = cn;
    s->all = cn;
    s->nopen++;
    a = s->addr;
    pthread_mutex_unlock(&s->mu);
    if (*call_end == 0)
        *call_end = r_now() + cfg->socket_timeout;
    {
        cachet_status st = connect_conn(s, cn, &a, *call_end);
        if (st != CACHET_OK)
            return st;
    }
    *out = cn;
    return CACHET_OK;
}

/* in_doubt: the server sent more than was asked; the connection goes. */
static void release(rserver *s, rconn *cn, int in_doubt)
{
    int keep;
    pthread_mutex_lock(&s->mu);
    if (cn->probe) {
        cn->probe = 0;
        s->probing = 0;
        if (s->state == RS_UNKNOWN)
            s->state = RS_UP;
        mark_up_locked(s);
    }
    keep = !in_doubt && !cn->c->err && cn->gen == s->gen && s->state == RS_UP;
    if (in_doubt)
        __atomic_fetch_add(&s->proto_errors, 1, __ATOMIC_RELAXED);
    if (keep) {
        cn->idle_next = s->idle;
        s->idle = cn;
    } else {
        unlink_locked(s, cn);
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!keep)
        conn_free(cn);
}

cachet_status rserver_exec(rserver *s, rcmd *cmds, size_t n, redisReply **rep)
{
    const rcfg *cfg = &s->in->cfg;
    double call_end = 0;
    cachet_status st;

    memset(rep, 0, n * sizeof *rep);
    for (int attempt = 0; attempt < 2; attempt++) {
        rconn *cn = NULL;
        rfail f = {RF_NONE, ""};
        int doubt = 0;

        if ((st = acquire(s, attempt > 0, &call_end, &cn)) != CACHET_OK)
            return st;
        if (rio_exec(cn->c, cmds, n, rep, call_end, cfg->socket_timeout, cfg->max_value_size,
                     &doubt, &f) == 0) {
            release(s, cn, doubt);
            return CACHET_OK;
        }
        if (cn->reused && attempt == 0 && (f.kind == RF_EOF || f.kind == RF_IO) &&
            r_now() < call_end) {
            /* broke while pooled (a restart): drop the pool, try a new one
             * within what is left of the deadline */
            rconn *garbage;
            pthread_mutex_lock(&s->mu);
            unlink_locked(s, cn);
            garbage = flush_locked(s);
            pthread_mutex_unlock(&s->mu);
            conn_free(cn);
            free_chain(garbage);
            continue;
        }
        return conn_failed(s, cn, CACHET_EUNAVAILABLE, &f);
    }
    return CACHET_EUNAVAILABLE;   /* not reached: the second attempt returns */
}

void rserver_set_addr(rserver *s, const raddr *a)
{
    rconn *garbage;
    pthread_mutex_lock(&s->mu);
    s->addr = *a;
    garbage = flush_locked(s);
    /* a new address deserves a probe now, not after the old one's dead_retry */
    if (s->state == RS_DEAD)
        s->state = RS_UNKNOWN;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free_chain(garbage);
}

void rserver_addr(rserver *s, raddr *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->addr;
    pthread_mutex_unlock(&s->mu);
}

void rserver_describe(rserver *s, char *buf, size_t size)
{
    char name[R_HOST_MAX + 16];
    pthread_mutex_lock(&s->mu);
    rserver_name(s, name, sizeof name);
    if (s->state == RS_DEAD && r_now() < s->dead_until)
        snprintf(buf, size, "%s down (%.1f s more; %s) failures=%llu protocol_errors=%llu", name,
                 s->dead_until - r_now(), s->why,
                 (unsigned long long)__atomic_load_n(&s->failures, __ATOMIC_RELAXED),
                 (unsigned long long)__atomic_load_n(&s->proto_errors, __ATOMIC_RELAXED));
    else
        snprintf(buf, size, "%s %s connections=%zu failures=%llu protocol_errors=%llu", name,
                 s->state == RS_UP ? "up" : "unknown", s->nopen,
                 (unsigned long long)__atomic_load_n(&s->failures, __ATOMIC_RELAXED),
                 (unsigned long long)__atomic_load_n(&s->proto_errors, __ATOMIC_RELAXED));
    pthread_mutex_unlock(&s->mu);
}

/* ---- fork ---- */

void rserver_fork_prepare(rserver *s)
{
    pthread_mutex_lock(&s->mu);
}

void rserver_fork_parent(rserver *s)
{
    pthread_mutex_unlock(&s->mu);
}

/* The child forgets the parent's connections without a byte on them:
 * idle ones are closed (close() on a socket the parent still holds sends
 * nothing); ones that other parent threads were using are only closed, as
 * their hiredis state may be half-way through a call. */
void rserver_fork_child(rserver *s)
{
    pthread_condattr_t ca;
    rconn *cn = s->all;
    while (cn) {
        rconn *next = cn->next;
        int idle = 0;
        for (rconn *i = s->idle; i; i = i->idle_next)
            if (i == cn)
                idle = 1;
        if (idle) {
            conn_free(cn);
        } else if (cn->c && cn->c->fd >= 0) {
            close(cn->c->fd);   /* the struct is left: another thread owned it */
        }
        cn = next;
    }
    s->all = s->idle = NULL;
    s->nopen = 0;
    s->gen++;
    s->probing = 0;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_unlock(&s->mu);
}
