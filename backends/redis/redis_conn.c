/* One redis server as all threads of a process share it: a pool of
 * hiredis connections (at most pool_maxsize), the handshake (AUTH, SELECT,
 * ROLE for sentinel mode) under the call's deadline, and the server's
 * health on the common host state machine (backends/common/host.h), the
 * same as memcached's:
 *   UNKNOWN  the first caller makes first contact on a fresh connection;
 *            other callers wait for it briefly, then fail fast;
 *   UP       connections are handed out and made freely; calls in flight
 *            with none completing for a quarter of socket_timeout make new
 *            calls fail fast (a hung server costs one stall);
 *   DOWN     every call fails at once (CACHET_EUNAVAILABLE) while the
 *            instance's prober re-probes it in the background (a fresh
 *            connection, the handshake, PING): after ~1 s, then x1.5 up to
 *            dead_retry; the probe that answers brings it back.
 * A connection that broke while idle in the pool (the server restarted)
 * is not a dead server: the call is retried once on a fresh connection and
 * the rest of the pool is dropped.  A connection made before the server's
 * last change (its epoch) is stale: never reused, and its failure does not
 * mark the server down again.
 *
 * A protocol error (a reply that breaks RESP, a bound, or its request's
 * shape) is not a sign of a hung host: only that connection goes, the
 * server is not marked down, and it is counted in proto_errors apart from
 * failures.  A connection that got more than it asked for, or that holds
 * unread bytes when taken from the pool, is closed (redis_io.c tells).
 *
 * hiredis contexts are not thread-safe: a connection belongs to one thread
 * between acquire and release.  Any c->err makes it unusable: it is freed,
 * never reused.  s->mu (the pool) is never held while the host's lock is
 * taken. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <hiredis/sds.h>
#include "redis.h"
#include "../common/host_shared.h"

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

/* ---- the hosts of an instance, their prober ---- */

static cachet_status handshake(rserver *s, redisContext *c, double deadline, rfail *f);

static rserver *of(cachet_host *h)
{
    return (rserver *)(void *)((char *)h - offsetof(rserver, host));
}

static int reason_of(int kind)
{
    switch (kind) {
    case RF_DEADLINE:
        return CACHET_HR_TIMEOUT;
    case RF_CONNECT:
        return CACHET_HR_REFUSED;
    case RF_EOF:
        return CACHET_HR_CLOSED;
    case RF_PROTO:
        return CACHET_HR_PROTOCOL;
    default:
        return CACHET_HR_IO;
    }
}

/* On the prober thread: a fresh connection, the handshake, PING. */
static int probe(void *arg, cachet_host *h, double deadline, int *reason)
{
    rinst *in = arg;
    rserver *s = of(h);
    const rcfg *cfg = &in->cfg;
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    rcmd cmd = {1, argv, lens, {NULL, NULL}, RX_PONG};
    rfail f = {RF_NONE, ""};
    redisContext *c;
    redisReply *rep = NULL;
    cachet_status st;
    int doubt = 0, rc = -1;
    raddr a;

    rserver_addr(s, &a);
    if (!(c = rio_connect(a.host, a.port, s->unix_path, deadline, cfg->socket_timeout, &f))) {
        *reason = reason_of(f.kind);
        return -1;
    }
    if ((st = handshake(s, c, deadline, &f)) != CACHET_OK) {
        /* AUTH refused: the server answers (the calls will say why) */
        *reason = f.kind == RF_NONE ? CACHET_HR_NONE : f.kind == RF_CONNECT ? CACHET_HR_REJECTED
                  : reason_of(f.kind);
        rc = f.kind == RF_NONE ? 0 : -1;
    } else if (rio_exec(c, &cmd, 1, &rep, deadline, cfg->socket_timeout, cfg->max_value_size,
                        &doubt, &f) != 0) {
        *reason = reason_of(f.kind);
    } else {
        rc = 0;
        freeReplyObject(rep);
    }
    redisFree(c);
    return rc;
}

void rhosts_start(rinst *in)
{
    cachet_hostset_init(&in->hostset, in->cfg.name, in->cfg.socket_timeout, in->cfg.dead_retry,
                        probe, in);
}

/* Shared host state: the single server only (a sentinel's master moves, a
 * cluster's nodes come and go). */
static void share(rserver *s)
{
    rinst *in = s->in;
    char name[R_HOST_MAX + 16];
    const char *labels[1] = {name};
    if (in->cfg.mode != RMODE_SINGLE || !in->cfg.shared_host_state || in->hostset.shared)
        return;
    rserver_name(s, name, sizeof name);
    if ((in->hostset.shared = cachet__shared_open("redis", labels, 1)) != NULL)
        s->host.shared_slot = 0;
}

void rhosts_stop(rinst *in)
{
    cachet_hostset_destroy(&in->hostset);
}

void rserver_init(rserver *s, rinst *in, const raddr *a, const char *unix_path)
{
    pthread_condattr_t ca;
    char name[R_HOST_MAX + 16];
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
    rserver_name(s, name, sizeof name);
    cachet_host_init(&s->host, &in->hostset, name);
    if (a || unix_path)
        share(s);
    else if (in->cfg.mode == RMODE_CLUSTER)
        cachet__host_remove(&in->hostset, &s->host);   /* the cluster's unused single one */
}

uint64_t rserver_failures(rserver *s)
{
    return cachet_host_failures(&s->host);
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
    cachet_host_destroy(&s->host);
    while (s->labels) {
        struct rlabel *next = s->labels->next;
        free(s->labels);
        s->labels = next;
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void rserver_state(rserver *s, cachet_server_state *out)
{
    const char *label;
    pthread_mutex_lock(&s->mu);
    label = label_locked(s);
    pthread_mutex_unlock(&s->mu);
    cachet_host_snapshot(&s->host, out);
    out->name = label ? label : "?";
}

/* Drops cn (broken) and says why the call failed; what it does to the
 * server's health is rserver_exec's (cachet_host_done).  A failure other
 * than a protocol error drops the idle pool too (they are likely as dead). */
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
    if (!proto) {
        snprintf(s->why, sizeof s->why, "%s", why);
        garbage = flush_locked(s);
    }
    pthread_cond_broadcast(&s->cv);
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

/* Connects cn (counted and linked, cn->c NULL) by the deadline: the
 * handshake too.  On failure cn is dropped; *f says what happened (RF_NONE:
 * AUTH or SELECT refused, a configuration error: the server answered). */
static cachet_status connect_conn(rserver *s, rconn *cn, double deadline, rfail *f)
{
    const rcfg *cfg = &s->in->cfg;
    redisContext *c;
    cachet_status st;
    raddr a;

    rserver_addr(s, &a);
    c = rio_connect(a.host, a.port, s->unix_path, deadline, cfg->socket_timeout, f);
    if (!c)
        return conn_failed(s, cn, CACHET_EUNAVAILABLE, f);
    if ((st = handshake(s, c, deadline, f)) != CACHET_OK) {
        redisFree(c);
        if (f->kind == RF_NONE) {
            /* AUTH or SELECT refused: the server is fine, the configuration is not */
            rfail g = {RF_CONNECT, ""};
            snprintf(g.why, sizeof g.why, "%s", f->why);
            st = conn_failed(s, cn, st, &g);
            f->kind = RF_NONE;
            return st;
        }
        return conn_failed(s, cn, st, f);
    }
    pthread_mutex_lock(&s->mu);
    cn->c = c;
    pthread_mutex_unlock(&s->mu);
    return CACHET_OK;
}

static int pooled_in_doubt(rserver *s, rconn *cn)
{
    int eof;
    if (!rio_pending(cn->c, &eof))
        return 0;
    pthread_mutex_lock(&s->mu);
    unlink_locked(s, cn);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!eof)
        cachet_host_count_proto(&s->host);
    conn_free(cn);
    return 1;
}

/* A connection for one call: an idle one of this epoch (fresh: never one
 * from the pool), else a new one, counted but not connected yet (cn->c
 * NULL).  Only ever waits for the pool, never for the server. */
static cachet_status acquire(rserver *s, int fresh, unsigned epoch, rconn **out)
{
    const rcfg *cfg = &s->in->cfg;
    char name[R_HOST_MAX + 16];
    double deadline = 0, now;
    struct timespec ts;
    rconn *cn;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (!fresh && s->idle) {
            cn = s->idle;
            s->idle = cn->idle_next;
            cn->idle_next = NULL;
            cn->reused = 1;
            if (cn->epoch != epoch) {
                /* made before the server went down and came back */
                unlink_locked(s, cn);
                pthread_mutex_unlock(&s->mu);
                conn_free(cn);
                pthread_mutex_lock(&s->mu);
                continue;
            }
            pthread_mutex_unlock(&s->mu);
            if (pooled_in_doubt(s, cn)) {
                pthread_mutex_lock(&s->mu);
                continue;
            }
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
        pthread_mutex_unlock(&s->mu);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", cfg->name);
    }
    cn->gen = s->gen;
    cn->epoch = epoch;
    cn->next = s->all;
    if (s->all)
        s->all->prev = cn;
    s->all = cn;
    s->nopen++;
    pthread_mutex_unlock(&s->mu);
    *out = cn;
    return CACHET_OK;
}

/* Back to the pool (or closed).  in_doubt: the server sent more than was
 * asked; the connection goes.  keep: the server is up (not down now). */
static void release(rserver *s, rconn *cn, int in_doubt, int keep_ok)
{
    int keep;
    pthread_mutex_lock(&s->mu);
    keep = keep_ok && !in_doubt && cn->c && !cn->c->err && cn->gen == s->gen;
    if (keep) {
        cn->idle_next = s->idle;
        s->idle = cn;
    } else {
        unlink_locked(s, cn);
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (in_doubt)
        cachet_host_count_proto(&s->host);
    if (!keep)
        conn_free(cn);
}

/* Drops a connection never used (the call was refused after taking it). */
static void discard(rserver *s, rconn *cn)
{
    if (cn->c) {
        release(s, cn, 0, 1);
        return;
    }
    pthread_mutex_lock(&s->mu);
    unlink_locked(s, cn);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    conn_free(cn);
}

static cachet_status down_error(rserver *s)
{
    cachet_server_state ss;
    char name[R_HOST_MAX + 16], why[sizeof s->why];
    pthread_mutex_lock(&s->mu);
    rserver_name(s, name, sizeof name);
    snprintf(why, sizeof why, "%s", s->why);
    pthread_mutex_unlock(&s->mu);
    cachet_host_snapshot(&s->host, &ss);
    if (!ss.up)
        return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: %s is marked down (%s, "
                                    "%.1f s ago%s%s): failing fast while it is probed in the "
                                    "background", s->in->cfg.name, name, ss.reason,
                                    ss.since_change, why[0] ? ": " : "", why);
    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: %s is not answering yet "
                                "(another call is making first contact, or calls in flight "
                                "get no answer): failing fast", s->in->cfg.name, name);
}

/* How a failure ends the call for the host (CACHET_END_*), and why. */
static int end_of(const rfail *f, int *reason)
{
    *reason = reason_of(f->kind);
    if (f->kind == RF_PROTO)
        return CACHET_END_PROTO;
    if (f->kind == RF_OOM || f->kind == RF_NONE)
        return CACHET_END_ABORT;
    return CACHET_END_FAIL;
}

cachet_status rserver_exec(rserver *s, rcmd *cmds, size_t n, redisReply **rep)
{
    const rcfg *cfg = &s->in->cfg;
    double call_end = 0;
    cachet_status st;
    int adm = CACHET_ADM_REJECT;

    memset(rep, 0, n * sizeof *rep);
    /* asked before waiting for the pool: a down server fails fast even
     * when the pool is busy (and the wait is no call in flight) */
    if (cachet_host_refused(&s->host))
        return down_error(s);
    for (int attempt = 0; attempt < 2; attempt++) {
        rconn *cn = NULL;
        rfail f = {RF_NONE, ""};
        int doubt = 0, reason, end;
        unsigned epoch = cachet_host_epoch(&s->host);

        if ((st = acquire(s, attempt > 0, epoch, &cn)) != CACHET_OK) {
            if (adm != CACHET_ADM_REJECT)
                cachet_host_done(&s->host, adm, CACHET_END_ABORT, CACHET_HR_NONE, epoch);
            return st;
        }
        if (adm == CACHET_ADM_REJECT &&
            (adm = cachet_host_admit(&s->host, 1)) == CACHET_ADM_REJECT) {
            discard(s, cn);
            return down_error(s);
        }
        if (call_end == 0)
            call_end = r_now() + cfg->socket_timeout;
        if (!cn->c && (st = connect_conn(s, cn, call_end, &f)) != CACHET_OK) {
            /* (AUTH or SELECT refused: f.kind RF_NONE, the server answered) */
            end = f.kind == RF_NONE ? CACHET_END_OK : end_of(&f, &reason);
            cachet_host_done(&s->host, adm, end, f.kind == RF_NONE ? 0 : reason, epoch);
            return st;
        }
        if (rio_exec(cn->c, cmds, n, rep, call_end, cfg->socket_timeout, cfg->max_value_size,
                     &doubt, &f) == 0) {
            release(s, cn, doubt, 1);
            cachet_host_done(&s->host, adm, CACHET_END_OK, CACHET_HR_NONE, epoch);
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
        epoch = cn->epoch;
        st = conn_failed(s, cn, CACHET_EUNAVAILABLE, &f);
        end = end_of(&f, &reason);
        if (cachet_host_done(&s->host, adm, end, reason, epoch) && attempt == 0 &&
            r_now() < call_end) {
            /* a stale connection (made before the server came back): once
             * more on a fresh one */
            adm = CACHET_ADM_REJECT;
            continue;
        }
        return st;
    }
    if (adm != CACHET_ADM_REJECT)
        cachet_host_done(&s->host, adm, CACHET_END_ABORT, CACHET_HR_NONE,
                         cachet_host_epoch(&s->host));
    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: the server failed twice",
                                cfg->name);
}

void rserver_set_addr(rserver *s, const raddr *a)
{
    char name[R_HOST_MAX + 16];
    rconn *garbage;
    pthread_mutex_lock(&s->mu);
    s->addr = *a;
    garbage = flush_locked(s);
    rserver_name(s, name, sizeof name);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free_chain(garbage);
    /* a new address deserves first contact now, not a probe of the old one */
    cachet_host_set_label(&s->host, name);
    cachet_host_forget(&s->host);
}

void rserver_addr(rserver *s, raddr *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->addr;
    pthread_mutex_unlock(&s->mu);
}

void rserver_describe(rserver *s, char *buf, size_t size)
{
    char name[R_HOST_MAX + 16], why[sizeof s->why];
    cachet_server_state ss;
    uint64_t perr, probes;
    size_t nopen;
    int state;
    pthread_mutex_lock(&s->mu);
    rserver_name(s, name, sizeof name);
    snprintf(why, sizeof why, "%s", s->why);
    nopen = s->nopen;
    pthread_mutex_unlock(&s->mu);
    cachet_host_snapshot(&s->host, &ss);
    pthread_mutex_lock(&s->host.mu);
    perr = s->host.proto_errors;
    probes = s->host.probes;
    state = s->host.state;
    pthread_mutex_unlock(&s->host.mu);
    if (!ss.up)
        snprintf(buf, size, "%s down (%s, %.1f s ago; %s) failures=%llu protocol_errors=%llu "
                 "probes=%llu", name, ss.reason, ss.since_change, why,
                 (unsigned long long)ss.failures, (unsigned long long)perr,
                 (unsigned long long)probes);
    else {
        char since[48];
        if (ss.since_change >= 0)
            snprintf(since, sizeof since, "back %.1f s ago", ss.since_change);
        else
            snprintf(since, sizeof since, "never down");
        snprintf(buf, size, "%s %s (%s) connections=%zu failures=%llu protocol_errors=%llu",
                 name, state == CACHET_HOST_UP ? "up" : "not contacted yet", since, nopen,
                 (unsigned long long)ss.failures, (unsigned long long)perr);
    }
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
 * their hiredis state may be half-way through a call.  (The host's state
 * is the hostset's: cachet_hostset_fork_child.) */
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
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_unlock(&s->mu);
}
