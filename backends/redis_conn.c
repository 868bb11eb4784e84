/* One redis server as all threads of a process share it: a pool of
 * hiredis connections (at most pool_maxsize), the handshake (AUTH, SELECT,
 * ROLE for sentinel mode) under socket_timeout, and the server's health.
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

double r_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval tv_of(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
        tv.tv_usec = 1000;
    return tv;
}

/* Writes what hiredis buffered with MSG_NOSIGNAL: hiredis 0.14 uses
 * write(), which raises SIGPIPE on a socket the server closed, and a
 * library must not change the process's signal handling to avoid that.
 * 0 ok; -1 with errno and c->err set (the context is then dropped). */
static int flush_out(redisContext *c)
{
    size_t len = sdslen(c->obuf), off = 0;
    while (off < len) {
        ssize_t k = send(c->fd, c->obuf + off, len - off, MSG_NOSIGNAL);
        if (k < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            c->err = REDIS_ERR_IO;
            snprintf(c->errstr, sizeof c->errstr, "%s", strerror(e));
            errno = e;
            return -1;
        }
        off += (size_t)k;
    }
    sdsfree(c->obuf);
    c->obuf = sdsempty();
    return 0;
}

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
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
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

/* The caller holds s->mu.  timeout_class: the failure cost a stall. */
static void mark_failed_locked(rserver *s, int timeout_class, const char *why)
{
    double retry = s->in->cfg.dead_retry;
    if (!timeout_class && retry > 1.0)
        retry = 1.0;
    s->failures++;
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

/* Did the call on c fail by running out of socket_timeout?  A server that
 * closed the connection (REDIS_ERR_EOF: read() returned 0) answered: errno
 * is then whatever an earlier call left there (EINPROGRESS from the
 * non-blocking connect), not this failure's. */
static int timed_out(const redisContext *c, int err_no, double elapsed, double timeout)
{
    if (c && c->err == REDIS_ERR_EOF)
        return 0;
    return err_no == EAGAIN || err_no == EWOULDBLOCK || err_no == ETIMEDOUT ||
           err_no == EINPROGRESS || elapsed >= timeout * 0.9;
}

/* Drops cn (broken) and records why the server failed; returns the status
 * for the caller, with the message set. */
static cachet_status conn_failed(rserver *s, rconn *cn, cachet_status st, int timeout_class,
                                 const char *what)
{
    char name[R_HOST_MAX + 16], why[400];
    rconn *garbage;

    pthread_mutex_lock(&s->mu);
    rserver_name(s, name, sizeof name);
    snprintf(why, sizeof why, "%s", what);
    if (cn)
        unlink_locked(s, cn);
    mark_failed_locked(s, timeout_class, why);
    garbage = flush_locked(s);
    pthread_mutex_unlock(&s->mu);
    conn_free(cn);
    free_chain(garbage);
    return cachet_backend_error(st, "backend %s: %s: %s", s->in->cfg.name, name, why);
}

/* Describes a hiredis I/O failure of c. */
static void io_why(const redisContext *c, int err_no, double elapsed, double timeout,
                   char *buf, size_t size)
{
    if (timed_out(c, err_no, elapsed, timeout))
        snprintf(buf, size, "no reply within socket_timeout (%.3g s)", timeout);
    else if (c && c->err == REDIS_ERR_EOF)
        snprintf(buf, size, "the server closed the connection");
    else
        snprintf(buf, size, "%s", c && c->errstr[0] ? c->errstr : "connection failed");
}

/* AUTH, SELECT and (sentinel) ROLE, pipelined.  On failure the message is
 * in why and the status returned. */
static cachet_status handshake(rserver *s, redisContext *c, char *why, size_t size, int *tmo)
{
    const rcfg *cfg = &s->in->cfg;
    const char *argv[3][3];
    size_t lens[3][3];
    int argc[3], n = 0, kind[3];
    char dbbuf[24];
    redisReply *rep = NULL;
    cachet_status st = CACHET_OK;
    double t0 = r_now();

    *tmo = 0;
    if (cfg->password) {
        int k = 0;
        argv[n][k++] = "AUTH";
        if (cfg->username)
            argv[n][k++] = cfg->username;
        argv[n][k++] = cfg->password;
        argc[n] = k;
        kind[n++] = 'A';
    }
    if (cfg->db) {
        snprintf(dbbuf, sizeof dbbuf, "%ld", cfg->db);
        argv[n][0] = "SELECT";
        argv[n][1] = dbbuf;
        argc[n] = 2;
        kind[n++] = 'S';
    }
    if (cfg->mode == RMODE_SENTINEL) {
        argv[n][0] = "ROLE";
        argc[n] = 1;
        kind[n++] = 'R';
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < argc[i]; k++)
            lens[i][k] = strlen(argv[i][k]);
        redisAppendCommandArgv(c, argc[i], argv[i], lens[i]);
    }
    for (int i = 0; i < n; i++) {
        if ((i == 0 && flush_out(c) != 0) || redisGetReply(c, (void **)&rep) != REDIS_OK) {
            int e = errno;
            double el = r_now() - t0;
            *tmo = timed_out(c, e, el, cfg->socket_timeout);
            io_why(c, e, el, cfg->socket_timeout, why, size);
            return CACHET_EUNAVAILABLE;
        }
        if (st == CACHET_OK && kind[i] == 'A' && rep->type == REDIS_REPLY_ERROR) {
            /* the server's words never include the password */
            snprintf(why, size, "AUTH refused for user '%s': %s",
                     cfg->username ? cfg->username : "default", rep->str);
            st = CACHET_EINVAL;
        } else if (st == CACHET_OK && kind[i] == 'S' && rep->type == REDIS_REPLY_ERROR) {
            snprintf(why, size, "SELECT %ld refused: %s", cfg->db, rep->str);
            st = CACHET_EINVAL;
        } else if (st == CACHET_OK && kind[i] == 'R' &&
                   (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
                    rep->element[0]->type != REDIS_REPLY_STRING ||
                    strcmp(rep->element[0]->str, "master") != 0)) {
            snprintf(why, size, "is not the master of '%s' (ROLE: %s)", cfg->service_name,
                     rep->type == REDIS_REPLY_ARRAY && rep->elements &&
                     rep->element[0]->type == REDIS_REPLY_STRING ? rep->element[0]->str
                     : rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
            st = CACHET_EUNAVAILABLE;
        }
        freeReplyObject(rep);
    }
    return st;
}

/* A new connection for cn (which is counted and linked). */
static cachet_status connect_conn(rserver *s, rconn *cn, const raddr *a)
{
    const rcfg *cfg = &s->in->cfg;
    struct timeval tv = tv_of(cfg->socket_timeout);
    char why[400];
    double t0 = r_now();
    redisContext *c;
    cachet_status st;
    int tmo;

    c = s->unix_path ? redisConnectUnixWithTimeout(s->unix_path, tv)
                     : redisConnectWithTimeout(a->host, a->port, tv);
    if (!c || c->err) {
        int e = errno;
        double el = r_now() - t0;
        if (!c)
            snprintf(why, sizeof why, "cannot connect: out of memory");
        else if (timed_out(c, e, el, cfg->socket_timeout) && el >= cfg->socket_timeout * 0.5)
            snprintf(why, sizeof why, "cannot connect within socket_timeout (%.3g s)",
                     cfg->socket_timeout);
        else
            snprintf(why, sizeof why, "cannot connect: %s", c->errstr);
        if (c)
            redisFree(c);
        return conn_failed(s, cn, CACHET_EUNAVAILABLE, el >= cfg->socket_timeout * 0.5, why);
    }
    /* hiredis 0.14 has no default command timeout: without this a hung
     * server blocks the call for ever */
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(why, sizeof why, "cannot set socket_timeout: %s", c->errstr);
        redisFree(c);
        return conn_failed(s, cn, CACHET_EUNAVAILABLE, 0, why);
    }
    if ((st = handshake(s, c, why, sizeof why, &tmo)) != CACHET_OK) {
        redisFree(c);
        return conn_failed(s, cn, st, tmo, why);
    }
    pthread_mutex_lock(&s->mu);
    cn->c = c;
    pthread_mutex_unlock(&s->mu);
    return CACHET_OK;
}

/* A connection for one call.  fresh: never one from the pool. */
static cachet_status acquire(rserver *s, int fresh, rconn **out)
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
    {
        cachet_status st = connect_conn(s, cn, &a);
        if (st != CACHET_OK)
            return st;
    }
    *out = cn;
    return CACHET_OK;
}

static void release(rserver *s, rconn *cn)
{
    int keep;
    pthread_mutex_lock(&s->mu);
    if (cn->probe) {
        cn->probe = 0;
        s->probing = 0;
        if (s->state == RS_UNKNOWN)
            s->state = RS_UP;
    }
    keep = !cn->c->err && cn->gen == s->gen && s->state == RS_UP;
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
    cachet_status st;
    size_t i;

    memset(rep, 0, n * sizeof *rep);
    for (int attempt = 0; attempt < 2; attempt++) {
        rconn *cn = NULL;
        double t0;
        int e = 0;

        if ((st = acquire(s, attempt > 0, &cn)) != CACHET_OK)
            return st;
        t0 = r_now();
        for (i = 0; i < n; i++)
            if (redisAppendCommandArgv(cn->c, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK)
                break;
        if (i == n && flush_out(cn->c) != 0) {
            e = errno;
            i = 0;
        } else if (i == n) {
            for (i = 0; i < n; i++)
                if (redisGetReply(cn->c, (void **)&rep[i]) != REDIS_OK) {
                    e = errno;
                    break;
                }
        }
        if (i == n) {
            release(s, cn);
            return CACHET_OK;
        }
        rreplies_free(rep, n);
        {
            double el = r_now() - t0;
            int tmo = timed_out(cn->c, e, el, cfg->socket_timeout);
            char why[400];
            if (cn->c->err == REDIS_ERR_OOM)
                return conn_failed(s, cn, CACHET_ENOMEM, 0, "out of memory");
            if (cn->reused && !tmo && attempt == 0) {
                /* broke while pooled (a restart): drop the pool, try a new one */
                rconn *garbage;
                pthread_mutex_lock(&s->mu);
                unlink_locked(s, cn);
                garbage = flush_locked(s);
                pthread_mutex_unlock(&s->mu);
                conn_free(cn);
                free_chain(garbage);
                continue;
            }
            io_why(cn->c, e, el, cfg->socket_timeout, why, sizeof why);
            return conn_failed(s, cn, CACHET_EUNAVAILABLE, tmo, why);
        }
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
        snprintf(buf, size, "%s down (%.1f s more; %s) failures=%llu", name,
                 s->dead_until - r_now(), s->why, (unsigned long long)s->failures);
    else
        snprintf(buf, size, "%s %s connections=%zu failures=%llu", name,
                 s->state == RS_UP ? "up" : "unknown", s->nopen,
                 (unsigned long long)s->failures);
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
