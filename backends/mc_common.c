/* memcached and memcache_pool on libmemcached, never stalling on a dead host.
 *
 * libmemcached keeps its failure state per memcached_st (per clone, per
 * pool member), and never marks a host whose connection was accepted but
 * whose reads time out.  So this file keeps its own table of hosts, shared
 * by every connection of an instance:
 *
 *   UNKNOWN  never reached yet: the first operation probes it; the others
 *            wait for that probe, but only briefly (first_wait: a quarter
 *            of socket_timeout, at most 200 ms) so that a service starting
 *            with many threads does not see errors from a healthy server,
 *            and then fail fast with CACHET_EUNAVAILABLE: a hung host
 *            costs them no stall (a wait under 200 ms is not one).
 *   UP       operations go through.  If operations are in flight and none
 *            has completed for suspect_after (a quarter of socket_timeout),
 *            the host is suspected hung and new operations fail fast.
 *   DEAD     until dead_until: operations fail fast.  Then one operation
 *            probes it (with pool_flush_on_reconnect, the probe is a flush
 *            of that server), the others fail fast meanwhile.
 *
 * So a dead host costs at most one stalled operation per dead_retry in the
 * process, whatever the threading.
 *
 * Distribution: a "ring" memcached_st holds every server (distribution set
 * before the servers are added) and is used only to hash keys
 * (memcached_generate_hash, a pure read).  I/O goes through one
 * single-server memcached_st per server per connection set, so that every
 * failure is known to belong to one host, and a multi-operation is one
 * request per server, sent to every server before any is read. */
#define _GNU_SOURCE
#include "mc_common.h"
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <libmemcached/memcached.h>

#define MAX_REPLICAS   8
#define MAX_KEY        250
/* values up to this go through pipelined noreply sets; larger ones are sent
 * one by one so that the server's "too large" answer is seen */
#define PIPE_MAX_VALUE (1000u * 1000u)

enum { H_UNKNOWN, H_UP, H_DEAD };
enum { ADM_REJECT, ADM_OK, ADM_PROBE, ADM_PROBE_FLUSH };
/* how an operation on a host ended */
enum { END_OK, END_FAIL, END_ABORT };

typedef struct {
    pthread_mutex_t mu;
    char     name[400];        /* hostname, or the socket path */
    char     label[420];       /* name:port for messages */
    in_port_t port;            /* 0: unix socket */
    uint32_t weight;
    int      state;
    int      probing;          /* a thread is probing it: the others fail fast */
    pthread_cond_t probe_done; /* signalled when a probe ends (first contact waits on it) */
    int      was_dead;         /* came back from DEAD (flush on reconnect) */
    unsigned inflight;
    double   dead_until;
    double   progress;         /* last completion, or start of the busy period */
    uint64_t failures, fastfails, probes, flushes;
} mc_host;

struct mc_inst;
typedef struct mc_conn {
    struct mc_conn *prev, *next;   /* every connection set of the instance */
    struct mc_conn *idle_next;     /* pool: idle list */
    struct mc_inst *inst;
    double          idle_since;
    unsigned        gen;           /* instance generation it was made in */
    memcached_st   *srv[];         /* one per host, made on first use */
} mc_conn;

typedef struct mc_inst {
    const char   *backend;
    int           pool;
    mc_host      *hosts;
    size_t        nhosts;
    memcached_st *ring;
    /* arguments */
    double        socket_timeout, dead_retry, suspect_after;
    long          expire;
    int           binary, dist_lock, replicas;
    long          lock_timeout;
    long          pool_max;
    double        unused_timeout, get_timeout;
    int           flush_on_reconnect;
    const char   *sasl_user, *sasl_pass;
    /* connections */
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    mc_conn        *all;
    mc_conn        *idle;
    mc_conn        *orphans;       /* inherited over fork(): never touched again */
    long            nconns;
    unsigned        gen;
    pthread_key_t   tls;
    int             tls_ok;
    uint64_t        lock_seq;
    uint64_t        pool_timeouts;
} mc_inst;

/* ---- small helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int is_conn_failure(memcached_return_t rc)
{
    switch (rc) {
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_CONNECTION_SOCKET_CREATE_FAILURE:
    case MEMCACHED_TIMEOUT:
    case MEMCACHED_WRITE_FAILURE:
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_UNKNOWN_READ_FAILURE:
    case MEMCACHED_ERRNO:
    case MEMCACHED_HOST_LOOKUP_FAILURE:
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_AUTH_PROBLEM:
    case MEMCACHED_AUTH_FAILURE:
        return 1;
    default:
        return 0;
    }
}

/* The pool's waits are timed on the monotonic clock. */
static void cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* ---- the host table ---- */

/* How long an operation waits for the first probe of a host never reached. */
static double first_wait(const mc_inst *m)
{
    return m->suspect_after < 0.2 ? m->suspect_after : 0.2;
}

static int admit(mc_inst *m, size_t i, double now)
{
    mc_host *h = &m->hosts[i];
    int r = ADM_REJECT;
    double give_up = now + first_wait(m);

    pthread_mutex_lock(&h->mu);
again:
    switch (h->state) {
    case H_UP:
        if (h->inflight && now - h->progress > m->suspect_after)
            break;                            /* hung: nothing completes */
        if (!h->inflight)
            h->progress = now;
        h->inflight++;
        r = ADM_OK;
        break;
    case H_DEAD:
        if (now < h->dead_until)
            break;
        /* time for a probe */
        __attribute__((fallthrough));
    default:
        if (h->probing && h->state == H_UNKNOWN && now < give_up) {
            /* first contact: the probe of a live server takes a round trip */
            struct timespec ts;
            double secs = give_up;
            ts.tv_sec = (time_t)secs;
            ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&h->probe_done, &h->mu, &ts);
            now = now_s();
            goto again;
        }
        if (h->probing)
            break;
        h->probing = 1;
        h->probes++;
        if (!h->inflight)
            h->progress = now;
        h->inflight++;
        r = h->was_dead && m->flush_on_reconnect ? ADM_PROBE_FLUSH : ADM_PROBE;
        break;
    }
    if (r == ADM_REJECT)
        h->fastfails++;
    pthread_mutex_unlock(&h->mu);
    return r;
}

/* Would admit() refuse host i now?  Asked before waiting for a pooled
 * connection, so that a dead host fails fast even when the pool is busy,
 * and so that the wait is not counted as an operation in flight (which
 * would make a busy pool look like a hung host). */
static int refused(mc_inst *m, size_t i, double now)
{
    mc_host *h = &m->hosts[i];
    int no;
    pthread_mutex_lock(&h->mu);
    switch (h->state) {
    case H_UP:
        no = h->inflight && now - h->progress > m->suspect_after;
        break;
    case H_DEAD:
        no = now < h->dead_until || h->probing;
        break;
    default:
        no = 0;              /* never reached: admit() waits briefly for its probe */
        break;
    }
    if (no)
        h->fastfails++;
    pthread_mutex_unlock(&h->mu);
    return no;
}

/* adm: what admit() said; how: END_* */
static void finish(mc_inst *m, size_t i, int adm, int how)
{
    mc_host *h = &m->hosts[i];
    double now = now_s();

    pthread_mutex_lock(&h->mu);
    if (h->inflight)
        h->inflight--;
    if (adm == ADM_PROBE || adm == ADM_PROBE_FLUSH) {
        h->probing = 0;
        pthread_cond_broadcast(&h->probe_done);
    }
    if (how == END_OK) {
        h->progress = now;
        if (h->state != H_UP && (adm == ADM_PROBE || adm == ADM_PROBE_FLUSH)) {
            h->state = H_UP;
            h->was_dead = 0;
        }
    } else if (how == END_FAIL) {
        if (h->state != H_DEAD || h->dead_until < now + m->dead_retry)
            h->dead_until = now + m->dead_retry;
        if (h->state == H_UP || h->state == H_DEAD)
            h->was_dead = 1;
        h->state = H_DEAD;
        h->failures++;
    }
    pthread_mutex_unlock(&h->mu);
    if (how == END_FAIL)
        cachet_backend_log(CACHET_LOG_WARNING, "backend %s: server %s marked dead for %g s",
                           m->backend, h->label, m->dead_retry);
}

static cachet_status unavailable(mc_inst *m, size_t i)
{
    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: server %s is down "
                                "(or being probed): failing fast", m->backend,
                                m->hosts[i].label);
}

/* ---- url parsing ---- */

static cachet_status add_host(mc_inst *m, const char *spec, size_t len)
{
    char buf[400], *p, *port = NULL, *weight = NULL;
    mc_host *h, *nh;
    long pv = 11211, wv = 1;

    while (len && (*spec == ' ' || *spec == '\t'))
        spec++, len--;
    while (len && (spec[len - 1] == ' ' || spec[len - 1] == '\t'))
        len--;
    if (len == 0)
        return CACHET_OK;
    if (len >= sizeof buf)
        return cachet_backend_error(CACHET_EINVAL, "backend %s: url: server \"%.*s\" is too "
                                    "long", m->backend, (int)len, spec);
    memcpy(buf, spec, len);
    buf[len] = 0;
    if (!(nh = realloc(m->hosts, (m->nhosts + 1) * sizeof *nh)))
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    m->hosts = nh;
    h = &m->hosts[m->nhosts];
    memset(h, 0, sizeof *h);
    p = buf;
    if (strncmp(p, "unix:", 5) == 0 || p[0] == '/') {
        if (p[0] != '/')
            p += 5;
        if (p[0] != '/')
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%s\": a unix "
                                        "socket needs an absolute path", m->backend, buf);
        snprintf(h->name, sizeof h->name, "%s", p);
        snprintf(h->label, sizeof h->label, "unix:%s", p);
        h->port = 0;
        h->weight = 1;
    } else {
        if (strncmp(p, "inet6:", 6) == 0)
            p += 6;
        else if (strncmp(p, "inet:", 5) == 0)
            p += 5;
        if (p[0] == '[') {
            char *e = strchr(p, ']');
            if (!e)
                return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%s\": "
                                            "missing ]", m->backend, buf);
            *e = 0;
            snprintf(h->name, sizeof h->name, "%s", p + 1);
            p = e + 1;
            if (*p == ':')
                port = p + 1;
            else if (*p)
                return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%s\": "
                                            "expected :port after ]", m->backend, buf);
        } else {
            char *c = strchr(p, ':');
            if (c) {
                *c = 0;
                port = c + 1;
            }
            snprintf(h->name, sizeof h->name, "%s", p);
        }
        if (port && (weight = strchr(port, ':')) != NULL)
            *weight++ = 0;
        if (port) {
            char *end;
            errno = 0;
            pv = strtol(port, &end, 10);
            if (!*port || *end || errno || pv < 1 || pv > 65535)
                return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%.*s\": bad "
                                            "port", m->backend, (int)len, spec);
        }
        if (weight) {
            char *end;
            errno = 0;
            wv = strtol(weight, &end, 10);
            if (!*weight || *end || errno || wv < 1 || wv > 1000000)
                return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%.*s\": bad "
                                            "weight", m->backend, (int)len, spec);
        }
        if (!h->name[0])
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%.*s\": no host",
                                        m->backend, (int)len, spec);
        h->port = (in_port_t)pv;
        h->weight = (uint32_t)wv;
        snprintf(h->label, sizeof h->label, strchr(h->name, ':') ? "[%s]:%u" : "%s:%u",
                 h->name, (unsigned)h->port);
    }
    /* (the array may still move while hosts are added: glibc's unused
     * mutexes and condvars are plain memory, so that is safe) */
    pthread_mutex_init(&h->mu, NULL);
    cond_init(&h->probe_done);
    m->nhosts++;
    return CACHET_OK;
}

static cachet_status parse_url(mc_inst *m, const char *url)
{
    const char *p = url;
    cachet_status st;

    if (strncmp(p, "memcached://", 12) == 0)
        p += 12;
    while (*p) {
        size_t n = strcspn(p, ",;");
        if ((st = add_host(m, p, n)) != CACHET_OK)
            return st;
        p += n;
        if (*p)
            p++;
    }
    if (m->nhosts == 0)
        return cachet_backend_error(CACHET_EINVAL, "backend %s: url: no server in \"%s\"",
                                    m->backend, url);
    return CACHET_OK;
}

/* ---- libmemcached handles ---- */

static memcached_return_t add_server(memcached_st *mc, const mc_host *h)
{
    if (h->port == 0)
        return memcached_server_add_unix_socket_with_weight(mc, h->name, h->weight);
    return memcached_server_add_with_weight(mc, h->name, h->port, h->weight);
}

static void set_behaviors(const mc_inst *m, memcached_st *mc)
{
    uint64_t ms = (uint64_t)(m->socket_timeout * 1000.0 + 0.5);
    if (ms < 1)
        ms = 1;
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
    /* the host table decides when to retry; libmemcached must not refuse a
     * probe on its own (a failed handle is thrown away anyway) */
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, 0);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1000000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0);
    if (m->binary)
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
}

/* A single-server handle for host i. */
static memcached_st *handle_new(const mc_inst *m, size_t i)
{
    memcached_st *mc = memcached_create(NULL);
    if (!mc)
        return NULL;
    set_behaviors(m, mc);
    if (m->sasl_user &&
        memcached_set_sasl_auth_data(mc, m->sasl_user, m->sasl_pass ? m->sasl_pass : "") !=
            MEMCACHED_SUCCESS) {
        memcached_free(mc);
        return NULL;
    }
    if (add_server(mc, &m->hosts[i]) != MEMCACHED_SUCCESS) {
        memcached_free(mc);
        return NULL;
    }
    return mc;
}

/* The ring: every server, for memcached_generate_hash only. */
static cachet_status ring_new(mc_inst *m, const char *distribution)
{
    memcached_st *mc = memcached_create(NULL);
    if (!mc)
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    /* the distribution first: servers added before it land on another ring */
    if (strcmp(distribution, "ketama") == 0 || strcmp(distribution, "consistent") == 0)
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    else
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_MODULA);
    for (size_t i = 0; i < m->nhosts; i++)
        if (add_server(mc, &m->hosts[i]) != MEMCACHED_SUCCESS) {
            memcached_free(mc);
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: cannot use server %s",
                                        m->backend, m->hosts[i].label);
        }
    m->ring = mc;
    return CACHET_OK;
}

/* The hosts a key lives on: the ring's choice first, then replicas chosen
 * by hashing the key with a suffix (so they move as little as the primary
 * when servers come and go), distinct, falling back to list order. */
static size_t placement(const mc_inst *m, const char *key, size_t klen, size_t *idx)
{
    size_t n = 1;
    idx[0] = m->nhosts == 1 ? 0 : memcached_generate_hash(m->ring, key, klen);
    if (idx[0] >= m->nhosts)
        idx[0] = 0;
    if (m->replicas > 1) {
        char buf[MAX_KEY + 16];
        size_t kl = klen > MAX_KEY ? MAX_KEY : klen;
        memcpy(buf, key, kl);
        for (int r = 1; r < m->replicas; r++) {
            size_t pick = SIZE_MAX;
            for (int attempt = 0; attempt < 8 && pick == SIZE_MAX; attempt++) {
                int bl = snprintf(buf + kl, 16, "\x1f%d.%d", r, attempt);
                size_t c = memcached_generate_hash(m->ring, buf, kl + (size_t)bl);
                int seen = c >= m->nhosts;
                for (size_t j = 0; j < n && !seen; j++)
                    seen = idx[j] == c;
                if (!seen)
                    pick = c;
            }
            for (size_t c = (idx[0] + 1) % m->nhosts; pick == SIZE_MAX; c = (c + 1) % m->nhosts) {
                int seen = 0;
                for (size_t j = 0; j < n && !seen; j++)
                    seen = idx[j] == c;
                if (!seen)
                    pick = c;
            }
            idx[n++] = pick;
        }
    }
    return n;
}

/* ---- connection sets ---- */

static void conn_free(mc_conn *c, size_t nhosts)
{
    for (size_t i = 0; i < nhosts; i++)
        if (c->srv[i])
            memcached_free(c->srv[i]);
    free(c);
}

static void link_conn(mc_inst *m, mc_conn *c)
{
    c->prev = NULL;
    c->next = m->all;
    if (m->all)
        m->all->prev = c;
    m->all = c;
}

static void unlink_conn(mc_inst *m, mc_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        m->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static mc_conn *conn_new(mc_inst *m)
{
    mc_conn *c = calloc(1, sizeof *c + m->nhosts * sizeof c->srv[0]);
    if (c)
        c->inst = m;
    return c;
}

static unsigned cur_gen(mc_inst *m)
{
    return __atomic_load_n(&m->gen, __ATOMIC_ACQUIRE);
}

/* A thread's connection set goes with the thread. */
static void tls_destroy(void *arg)
{
    mc_conn *c = arg;
    mc_inst *m = c->inst;
    int mine;

    pthread_mutex_lock(&m->mu);
    mine = c->gen == m->gen;
    if (mine) {
        unlink_conn(m, c);
        m->nconns--;
    }
    pthread_mutex_unlock(&m->mu);
    if (mine)
        conn_free(c, m->nhosts);
}

/* Idle pool members unused for unused_timeout; the caller holds m->mu and
 * frees the list it gets once unlocked. */
static mc_conn *reap_idle(mc_inst *m, double now)
{
    mc_conn **pp = &m->idle, *dead = NULL;
    if (m->unused_timeout <= 0)
        return NULL;
    while (*pp) {
        mc_conn *c = *pp;
        if (now - c->idle_since > m->unused_timeout) {
            *pp = c->idle_next;
            unlink_conn(m, c);
            m->nconns--;
            c->idle_next = dead;
            dead = c;
        } else {
            pp = &c->idle_next;
        }
    }
    return dead;
}

static void free_list(mc_inst *m, mc_conn *c)
{
    while (c) {
        mc_conn *next = c->idle_next;
        conn_free(c, m->nhosts);
        c = next;
    }
}

static cachet_status conn_get(mc_inst *m, mc_conn **out)
{
    mc_conn *c, *dead;
    struct timespec deadline;
    double now;

    if (!m->pool) {
        c = m->tls_ok ? pthread_getspecific(m->tls) : NULL;
        if (c && c->gen == cur_gen(m)) {
            *out = c;
            return CACHET_OK;
        }
        /* none yet, or one inherited over fork(): that one is the parent's */
        if (!(c = conn_new(m)))
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        pthread_mutex_lock(&m->mu);
        c->gen = m->gen;
        link_conn(m, c);
        m->nconns++;
        pthread_mutex_unlock(&m->mu);
        if (pthread_setspecific(m->tls, c) != 0) {
            tls_destroy(c);
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        }
        *out = c;
        return CACHET_OK;
    }

    now = now_s();
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    {
        double w = m->get_timeout;
        deadline.tv_sec += (time_t)w;
        deadline.tv_nsec += (long)((w - (double)(time_t)w) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&m->mu);
    dead = reap_idle(m, now);
    for (;;) {
        if ((c = m->idle) != NULL) {
            m->idle = c->idle_next;
            c->idle_next = NULL;
            break;
        }
        if (m->nconns < m->pool_max) {
            m->nconns++;
            pthread_mutex_unlock(&m->mu);
            free_list(m, dead);
            if (!(c = conn_new(m))) {
                pthread_mutex_lock(&m->mu);
                m->nconns--;
                pthread_cond_signal(&m->cv);
                pthread_mutex_unlock(&m->mu);
                return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory",
                                            m->backend);
            }
            pthread_mutex_lock(&m->mu);
            c->gen = m->gen;
            link_conn(m, c);
            pthread_mutex_unlock(&m->mu);
            *out = c;
            return CACHET_OK;
        }
        if (pthread_cond_timedwait(&m->cv, &m->mu, &deadline) == ETIMEDOUT && !m->idle &&
            m->nconns >= m->pool_max) {
            m->pool_timeouts++;
            pthread_mutex_unlock(&m->mu);
            free_list(m, dead);
            return cachet_backend_error(CACHET_ETIMEDOUT, "backend %s: no free connection "
                                        "after pool_connection_get_timeout %g s "
                                        "(pool_maxsize %ld)", m->backend, m->get_timeout,
                                        m->pool_max);
        }
    }
    pthread_mutex_unlock(&m->mu);
    free_list(m, dead);
    *out = c;
    return CACHET_OK;
}

static void conn_put(mc_inst *m, mc_conn *c)
{
    mc_conn *dead;
    double now;

    if (!m->pool || !c)
        return;
    now = now_s();
    pthread_mutex_lock(&m->mu);
    if (c->gen != m->gen) {          /* taken out before a fork: not ours */
        pthread_mutex_unlock(&m->mu);
        return;
    }
    c->idle_since = now;
    c->idle_next = m->idle;          /* LIFO: the cold ones age out at the tail */
    m->idle = c;
    dead = reap_idle(m, now);
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    free_list(m, dead);
}

/* The handle of conn c for host i, made on first use. */
static memcached_st *handle(mc_inst *m, mc_conn *c, size_t i)
{
    if (!c->srv[i])
        c->srv[i] = handle_new(m, i);
    return c->srv[i];
}

/* After a connection-level failure the handle's state (a half-read
 * response, libmemcached's own backoff) is not worth keeping. */
static void handle_drop(mc_conn *c, size_t i)
{
    if (c->srv[i]) {
        memcached_free(c->srv[i]);
        c->srv[i] = NULL;
    }
}

/* Records how an operation on host i ended, from libmemcached's rc:
 * returns END_OK or END_FAIL. */
static int settle(mc_inst *m, mc_conn *c, size_t i, int adm, memcached_return_t rc)
{
    int how = is_conn_failure(rc) ? END_FAIL : END_OK;
    if (how == END_FAIL)
        handle_drop(c, i);
    finish(m, i, adm, how);
    return how;
}

static cachet_status mc_error(mc_inst *m, size_t i, memcached_return_t rc, const char *what)
{
    cachet_status st;
    if (is_conn_failure(rc))
        st = CACHET_EUNAVAILABLE;
    else if (rc == MEMCACHED_MEMORY_ALLOCATION_FAILURE)
        st = CACHET_ENOMEM;
    else if (rc == MEMCACHED_E2BIG)
        st = CACHET_ETOOBIG;
    else
        st = CACHET_EBACKEND;
    return cachet_backend_error(st, "backend %s: %s on %s: %s", m->backend, what,
                                m->hosts[i].label, memcached_strerror(NULL, rc));
}

/* Admission plus, for a flushing probe, the flush.  Returns the admission,
 * ADM_REJECT if the host is not to be used (the flush failed: it has been
 * settled as a failure). */
static int enter(mc_inst *m, mc_conn *c, size_t i, int adm)
{
    memcached_st *h;
    memcached_return_t rc;

    if (adm != ADM_PROBE_FLUSH)
        return adm;
    if (!(h = handle(m, c, i))) {
        finish(m, i, adm, END_ABORT);
        return ADM_REJECT;
    }
    rc = memcached_flush(h, 0);
    if (rc != MEMCACHED_SUCCESS) {
        settle(m, c, i, adm, is_conn_failure(rc) ? rc : MEMCACHED_CONNECTION_FAILURE);
        return ADM_REJECT;
    }
    pthread_mutex_lock(&m->hosts[i].mu);
    m->hosts[i].flushes++;
    pthread_mutex_unlock(&m->hosts[i].mu);
    cachet_backend_log(CACHET_LOG_INFO, "backend %s: server %s is back: flushed it",
                       m->backend, m->hosts[i].label);
    return adm;
}

/* ---- open / close ---- */

cachet_status mc_open(const cachet_backend_params *p, void **state, const char *backend, int pool)
{
    static const char *const known_mc[] = {
        "url", "distribution", "binary", "socket_timeout", "dead_retry",
        "memcached_expire_time", "distributed_lock", "lock_timeout", "replicas",
        "sasl_enabled", "username", "password", "enable_socket_keepalive",
        "socket_keepalive_idle", "socket_keepalive_interval", "socket_keepalive_count",
        "enable_retry_client", "retry_attempts", "retry_delay", NULL};
    static const char *const known_pool[] = {
        "url", "distribution", "binary", "socket_timeout", "dead_retry",
        "memcached_expire_time", "distributed_lock", "lock_timeout", "replicas",
        "sasl_enabled", "username", "password", "enable_socket_keepalive",
        "socket_keepalive_idle", "socket_keepalive_interval", "socket_keepalive_count",
        "enable_retry_client", "retry_attempts", "retry_delay",
        "pool_maxsize", "pool_unused_timeout", "pool_connection_get_timeout",
        "pool_flush_on_reconnect", NULL};
    const char *url, *dist;
    long replicas, pool_max = 10;
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
    cond_init(&m->cv);
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
        (st = cachet_backend_arg_long(p, backend, "lock_timeout", 30, 0, 86400 * 30,
                                      &m->lock_timeout)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, backend, "replicas", 1, 1, MAX_REPLICAS,
                                      &replicas)) != CACHET_OK ||
        (st = cachet_backend_arg_bool(p, backend, "sasl_enabled", 0, &sasl)) != CACHET_OK)
        goto fail;
    if (strcmp(dist, "ketama") != 0 && strcmp(dist, "consistent") != 0 &&
        strcmp(dist, "modula") != 0) {
        st = cachet_backend_error(CACHET_EINVAL, "backend %s: distribution: \"%s\" is not "
                                  "ketama or modula", backend, dist);
        goto fail;
    }
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
    /* what libmemcached cannot do is an error, never silently ignored */
    if ((st = cachet_backend_arg_bool(p, backend, "enable_socket_keepalive", 0, &flag)) !=
        CACHET_OK)
        goto fail;
    if (flag) {
        st = cachet_backend_error(CACHET_EINVAL, "backend %s: enable_socket_keepalive: "
                                  "libmemcached cannot set socket_keepalive_interval and "
                                  "socket_keepalive_count; unset it", backend);
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
        m->sasl_user = cachet_backend_arg_get(p, "username");
        m->sasl_pass = cachet_backend_arg_get(p, "password");
        if (!m->sasl_user) {
            st = cachet_backend_error(CACHET_EINVAL, "backend %s: sasl_enabled needs a "
                                      "username", backend);
            goto fail;
        }
        m->binary = 1;   /* SASL exists only in the binary protocol */
    }
    m->pool_max = pool_max;
    m->unused_timeout = unused;
    m->get_timeout = get_to;
    m->flush_on_reconnect = flush;
    m->suspect_after = m->socket_timeout / 4;
    if ((st = parse_url(m, url ? url : "localhost:11211")) != CACHET_OK ||
        (st = ring_new(m, dist)) != CACHET_OK)
        goto fail;
    m->replicas = (int)((size_t)replicas > m->nhosts ? (long)m->nhosts : replicas);
    if (!pool) {
        if (pthread_key_create(&m->tls, tls_destroy) != 0) {
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
        conn_free(c, m->nhosts);
    }
    /* m->orphans belong to the parent process: forget them */
    if (m->ring)
        memcached_free(m->ring);
    for (size_t i = 0; i < m->nhosts; i++) {
        pthread_cond_destroy(&m->hosts[i].probe_done);
        pthread_mutex_destroy(&m->hosts[i].mu);
    }
    free(m->hosts);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- single-key operations ---- */

cachet_status mc_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status st = CACHET_EUNAVAILABLE;
    double now = now_s();

    *value = NULL;
    *len = 0;
    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        int adm;
        memcached_return_t rc;
        memcached_st *h;
        uint32_t flags;
        char *v;

        if (refused(m, i, now)) {
            st = unavailable(m, i);
            continue;
        }
        if (!c && (st = conn_get(m, &c)) != CACHET_OK)
            return st;
        if ((adm = admit(m, i, now_s())) == ADM_REJECT) {
            st = unavailable(m, i);
            continue;
        }
        if ((adm = enter(m, c, i, adm)) == ADM_REJECT) {
            st = unavailable(m, i);
            continue;
        }
        if (!(h = handle(m, c, i))) {
            finish(m, i, adm, END_ABORT);
            conn_put(m, c);
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        }
        v = memcached_get(h, key, klen, len, &flags, &rc);
        if (settle(m, c, i, adm, rc) == END_FAIL) {
            free(v);
            *len = 0;
            st = mc_error(m, i, rc, "get");
            continue;                     /* the next replica, if any */
        }
        conn_put(m, c);
        if (rc == MEMCACHED_SUCCESS) {
            if (!v && !(v = malloc(1)))
                return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory",
                                            m->backend);
            *value = v;
            return CACHET_OK;
        }
        free(v);
        *len = 0;
        if (rc == MEMCACHED_NOTFOUND)
            return CACHET_MISS;
        return mc_error(m, i, rc, "get");
    }
    conn_put(m, c);
    return st;
}

/* One set on host i; handles E2BIG by deleting the old value. */
static cachet_status set_one(mc_inst *m, mc_conn *c, size_t i, int adm, const char *key,
                             size_t klen, const void *value, size_t len)
{
    memcached_st *h = handle(m, c, i);
    memcached_return_t rc;

    if (!h) {
        finish(m, i, adm, END_ABORT);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    rc = memcached_set(h, key, klen, value, len, (time_t)m->expire, 0);
    if (rc == MEMCACHED_E2BIG || rc == MEMCACHED_SERVER_ERROR) {
        /* the server refused the value: the old one must not stay behind */
        memcached_return_t drc = memcached_delete(h, key, klen, 0);
        settle(m, c, i, adm, drc);
        if (rc == MEMCACHED_E2BIG)
            return cachet_backend_error(CACHET_ETOOBIG, "backend %s: value of %zu bytes is "
                                        "over %s's item size; not stored, old value deleted",
                                        m->backend, len, m->hosts[i].label);
        return mc_error(m, i, rc, "set");
    }
    settle(m, c, i, adm, rc);
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED)
        return CACHET_OK;
    return mc_error(m, i, rc, "set");
}

/* The worst outcome of a write to several replicas: stored somewhere wins
 * over unavailable elsewhere, but a refused value is always reported. */
static cachet_status combine(cachet_status acc, cachet_status st, int *stored)
{
    if (st == CACHET_OK) {
        *stored = 1;
        return acc;
    }
    if (acc == CACHET_OK || (acc == CACHET_EUNAVAILABLE && st != CACHET_EUNAVAILABLE))
        return st;
    return acc;
}

cachet_status mc_set(void *state, const char *key, size_t klen, const void *value, size_t len)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status acc = CACHET_OK, st;
    int stored = 0;
    double now = now_s();

    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        int adm;
        if (refused(m, i, now)) {
            acc = combine(acc, unavailable(m, i), &stored);
            continue;
        }
        if (!c && (st = conn_get(m, &c)) != CACHET_OK)
            return st;
        if ((adm = admit(m, i, now_s())) == ADM_REJECT) {
            acc = combine(acc, unavailable(m, i), &stored);
            continue;
        }
        if ((adm = enter(m, c, i, adm)) == ADM_REJECT) {
            acc = combine(acc, unavailable(m, i), &stored);
            continue;
        }
        acc = combine(acc, set_one(m, c, i, adm, key, klen, value, len), &stored);
    }
    conn_put(m, c);
    if (acc == CACHET_EUNAVAILABLE && stored)
        return CACHET_OK;
    return acc;
}

cachet_status mc_del(void *state, const char *key, size_t klen)
{
    mc_inst *m = state;
    size_t idx[MAX_REPLICAS], n = placement(m, key, klen, idx);
    mc_conn *c = NULL;
    cachet_status acc = CACHET_OK, st;
    double now = now_s();

    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        int adm;
        memcached_return_t rc;
        memcached_st *h;

        if (refused(m, i, now)) {
            acc = unavailable(m, i);
            continue;
        }
        if (!c && (st = conn_get(m, &c)) != CACHET_OK)
            return st;
        if ((adm = admit(m, i, now_s())) == ADM_REJECT) {
            acc = unavailable(m, i);
            continue;
        }
        if ((adm = enter(m, c, i, adm)) == ADM_REJECT) {
            acc = unavailable(m, i);
            continue;
        }
        if (!(h = handle(m, c, i))) {
            finish(m, i, adm, END_ABORT);
            acc = cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
            continue;
        }
        rc = memcached_delete(h, key, klen, 0);
        settle(m, c, i, adm, rc);
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_DELETED && rc != MEMCACHED_NOTFOUND)
            acc = mc_error(m, i, rc, "delete");
    }
    conn_put(m, c);
    return acc;
}

/* ---- multi-key operations: one request per server ---- */

typedef struct {
    size_t *pos;        /* item index per (host, slot), grouped by host */
    size_t *start;      /* nhosts + 1 offsets into pos */
    int    *adm;        /* per host: -1 not asked yet, else ADM_* */
    size_t *chosen;     /* get: the host each item goes to, SIZE_MAX: none */
} groups;

static void groups_free(groups *g)
{
    free(g->pos);
    free(g->start);
    free(g->adm);
    free(g->chosen);
}

static int host_usable(mc_inst *m, groups *g, size_t i, double now)
{
    if (g->adm[i] < 0)
        g->adm[i] = admit(m, i, now);
    return g->adm[i] != ADM_REJECT;
}

/* Groups items by host.  all_replicas: every live replica (writes), else
 * the first live one (reads).  Items with no live host get EUNAVAILABLE. */
static cachet_status group(mc_inst *m, cachet_backend_item *items, size_t n, int all_replicas,
                           groups *g)
{
    size_t nh = m->nhosts, *count, total = 0;
    size_t (*pl)[MAX_REPLICAS + 1];
    double now = now_s();

    memset(g, 0, sizeof *g);
    g->start = calloc(nh + 1, sizeof *g->start);
    g->adm = malloc(nh * sizeof *g->adm);
    count = calloc(nh, sizeof *count);
    pl = malloc((n ? n : 1) * sizeof *pl);
    if (!g->start || !g->adm || !count || !pl) {
        free(count);
        free(pl);
        groups_free(g);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    for (size_t i = 0; i < nh; i++)
        g->adm[i] = -1;
    for (size_t k = 0; k < n; k++) {
        size_t idx[MAX_REPLICAS], np = placement(m, items[k].key, items[k].klen, idx), used = 0;
        for (size_t r = 0; r < np; r++) {
            if (!host_usable(m, g, idx[r], now))
                continue;
            pl[k][1 + used++] = idx[r];
            count[idx[r]]++;
            total++;
            if (!all_replicas)
                break;
        }
        pl[k][0] = used;
        if (!used)
            items[k].status = unavailable(m, idx[0]);
    }
    if (!(g->pos = malloc((total ? total : 1) * sizeof *g->pos))) {
        free(count);
        free(pl);
        groups_free(g);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    for (size_t i = 0; i < nh; i++)
        g->start[i + 1] = g->start[i] + count[i];
    memset(count, 0, nh * sizeof *count);
    for (size_t k = 0; k < n; k++)
        for (size_t u = 0; u < pl[k][0]; u++) {
            size_t i = pl[k][1 + u];
            g->pos[g->start[i] + count[i]++] = k;
        }
    free(count);
    free(pl);
    return CACHET_OK;
}

/* The hosts with items, known-good ones first: a probe that stalls must
 * not hold up reading the answers of the live servers. */
static size_t host_order(mc_inst *m, const groups *g, size_t *order)
{
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < m->nhosts; i++)
            if (g->start[i] != g->start[i + 1] && g->adm[i] > ADM_REJECT &&
                (g->adm[i] == ADM_OK) == (pass == 0))
                order[k++] = i;
    return k;
}

static cachet_status first_error(cachet_backend_item *items, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (items[k].status < 0)
            return items[k].status;
    return CACHET_OK;
}

/* Sets each item's status for host i's slice to st. */
static void slice_status(groups *g, cachet_backend_item *items, size_t i, cachet_status st)
{
    for (size_t s = g->start[i]; s < g->start[i + 1]; s++)
        items[g->pos[s]].status = st;
}

cachet_status mc_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    mc_inst *m = state;
    groups g;
    mc_conn *c = NULL;
    size_t *order = NULL, nord, maxslice = 0;
    const char **keys = NULL;
    size_t *klens = NULL;
    int *sent = NULL;
    cachet_status st;

    if (n == 0)
        return CACHET_OK;
    for (size_t k = 0; k < n; k++) {
        items[k].value = NULL;
        items[k].len = 0;
        items[k].status = CACHET_MISS;
    }
    /* the connection first: waiting for it must not count as in flight */
    if ((st = conn_get(m, &c)) != CACHET_OK || (st = group(m, items, n, 0, &g)) != CACHET_OK) {
        conn_put(m, c);
        for (size_t k = 0; k < n; k++)
            items[k].status = st;
        return st;
    }
    order = malloc(m->nhosts * sizeof *order);
    sent = calloc(m->nhosts, sizeof *sent);
    for (size_t i = 0; i < m->nhosts; i++)
        if (g.start[i + 1] - g.start[i] > maxslice)
            maxslice = g.start[i + 1] - g.start[i];
    keys = malloc((maxslice ? maxslice : 1) * sizeof *keys);
    klens = malloc((maxslice ? maxslice : 1) * sizeof *klens);
    nord = order ? host_order(m, &g, order) : 0;
    if (!order || !sent || !keys || !klens) {
        st = cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        goto abort_all;
    }
    /* 1. send every server its request */
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], cnt = 0;
        memcached_st *h;
        memcached_return_t rc;
        if ((g.adm[i] = enter(m, c, i, g.adm[i])) == ADM_REJECT) {
            slice_status(&g, items, i, unavailable(m, i));
            continue;
        }
        if (!(h = handle(m, c, i))) {
            finish(m, i, g.adm[i], END_ABORT);
            slice_status(&g, items, i, CACHET_ENOMEM);
            continue;
        }
        for (size_t s = g.start[i]; s < g.start[i + 1]; s++) {
            keys[cnt] = items[g.pos[s]].key;
            klens[cnt++] = items[g.pos[s]].klen;
        }
        rc = memcached_mget(h, keys, klens, cnt);
        if (rc != MEMCACHED_SUCCESS && is_conn_failure(rc)) {
            settle(m, c, i, g.adm[i], rc);
            slice_status(&g, items, i, mc_error(m, i, rc, "get_multi"));
            continue;
        }
        sent[i] = 1;
    }
    /* 2. read the answers, server by server (they are already on their way) */
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], cursor = g.start[i];
        memcached_st *h = c->srv[i];
        memcached_result_st res, *rp;
        memcached_return_t rc = MEMCACHED_SUCCESS, last = MEMCACHED_END;
        if (!sent[i])
            continue;
        if (!memcached_result_create(h, &res)) {
            /* cannot read: drop the handle rather than leave answers queued */
            handle_drop(c, i);
            finish(m, i, g.adm[i], END_ABORT);
            slice_status(&g, items, i, CACHET_ENOMEM);
            continue;
        }
        while ((rp = memcached_fetch_result(h, &res, &rc)) != NULL) {
            const char *rk = memcached_result_key_value(rp);
            size_t rkl = memcached_result_key_length(rp), hit = SIZE_MAX;
            /* answers come in request order: search from the cursor, then wrap */
            for (size_t s = cursor; s < g.start[i + 1] && hit == SIZE_MAX; s++) {
                cachet_backend_item *it = &items[g.pos[s]];
                if (it->klen == rkl && !it->value && memcmp(it->key, rk, rkl) == 0)
                    hit = s;
            }
            for (size_t s = g.start[i]; s < cursor && hit == SIZE_MAX; s++) {
                cachet_backend_item *it = &items[g.pos[s]];
                if (it->klen == rkl && !it->value && memcmp(it->key, rk, rkl) == 0)
                    hit = s;
            }
            if (hit == SIZE_MAX)
                continue;
            cursor = hit + 1;
            {
                cachet_backend_item *it = &items[g.pos[hit]];
                size_t vl = memcached_result_length(rp);
                void *v = malloc(vl ? vl : 1);
                if (!v) {
                    it->status = CACHET_ENOMEM;
                    continue;
                }
                memcpy(v, memcached_result_value(rp), vl);
                it->value = v;
                it->len = vl;
                it->status = CACHET_OK;
            }
        }
        memcached_result_free(&res);
        last = rc;
        if (last == MEMCACHED_END || last == MEMCACHED_NOTFOUND || last == MEMCACHED_SUCCESS) {
            finish(m, i, g.adm[i], END_OK);
        } else {
            cachet_status est;
            int how = settle(m, c, i, g.adm[i], last);
            est = mc_error(m, i, last, "get_multi");
            /* answers that arrived are kept; the rest of this server's keys failed */
            for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
                if (items[g.pos[s]].status == CACHET_MISS)
                    items[g.pos[s]].status = how == END_FAIL ? est : CACHET_EBACKEND;
        }
    }
    conn_put(m, c);
    free(order);
    free(sent);
    free(keys);
    free(klens);
    groups_free(&g);
    if ((st = first_error(items, n)) != CACHET_OK) {
        for (size_t k = 0; k < n; k++)
            if (items[k].status == st)
                return st == CACHET_EUNAVAILABLE
                       ? cachet_backend_error(st, "backend %s: get_multi: some servers are down",
                                              m->backend)
                       : cachet_backend_error(st, "backend %s: get_multi failed: %s",
                                              m->backend, cachet_strerror(st));
    }
    return CACHET_OK;

abort_all:
    for (size_t i = 0; i < m->nhosts; i++)
        if (g.adm[i] > ADM_REJECT)
            finish(m, i, g.adm[i], END_ABORT);
    for (size_t k = 0; k < n; k++)
        if (items[k].status == CACHET_MISS)
            items[k].status = st;
    free(order);
    free(sent);
    free(keys);
    free(klens);
    groups_free(&g);
    conn_put(m, c);
    return st;
}

/* set_multi and delete_multi: per server, every item but the last goes as
 * a noreply command (written, not waited for); the last one is an ordinary
 * command whose answer confirms that the server read the lot.  Values too
 * big to be sure of go one by one, to see the server's refusal. */
static cachet_status write_multi(mc_inst *m, cachet_backend_item *items, size_t n, int is_set)
{
    groups g;
    mc_conn *c = NULL;
    size_t *order = NULL, nord;
    cachet_status *res = NULL, st;
    unsigned char *stored = NULL;
    const char *what = is_set ? "set_multi" : "delete_multi";

    if (n == 0)
        return CACHET_OK;
    for (size_t k = 0; k < n; k++)
        items[k].status = CACHET_OK;
    if ((st = conn_get(m, &c)) != CACHET_OK || (st = group(m, items, n, 1, &g)) != CACHET_OK) {
        conn_put(m, c);
        for (size_t k = 0; k < n; k++)
            items[k].status = st;
        return st;
    }
    order = malloc(m->nhosts * sizeof *order);
    res = malloc(n * sizeof *res);
    stored = calloc(n, 1);
    nord = order ? host_order(m, &g, order) : 0;
    if (!order || !res || !stored) {
        st = cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
        goto abort_all;
    }
    /* res: the combined outcome over replicas; unavailable ones were set by group() */
    for (size_t k = 0; k < n; k++)
        res[k] = items[k].status;
    for (size_t o = 0; o < nord; o++) {
        size_t i = order[o], last_small = SIZE_MAX;
        memcached_st *h;
        memcached_return_t rc = MEMCACHED_SUCCESS;
        int failed = 0, dummy;

        if ((g.adm[i] = enter(m, c, i, g.adm[i])) == ADM_REJECT) {
            for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
                res[g.pos[s]] = combine(res[g.pos[s]], CACHET_EUNAVAILABLE, &dummy);
            continue;
        }
        if (!(h = handle(m, c, i))) {
            finish(m, i, g.adm[i], END_ABORT);
            for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
                res[g.pos[s]] = combine(res[g.pos[s]], CACHET_ENOMEM, &dummy);
            continue;
        }
        for (size_t s = g.start[i]; s < g.start[i + 1]; s++)
            if (!is_set || items[g.pos[s]].len <= PIPE_MAX_VALUE)
                last_small = s;
        /* the pipelined part */
        if (last_small != SIZE_MAX && last_small > g.start[i]) {
            memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NOREPLY, 1);
            for (size_t s = g.start[i]; s < last_small && !failed; s++) {
                cachet_backend_item *it = &items[g.pos[s]];
                if (is_set && it->len > PIPE_MAX_VALUE)
                    continue;
                rc = is_set ? memcached_set(h, it->key, it->klen, it->value, it->len,
                                            (time_t)m->expire, 0)
                            : memcached_delete(h, it->key, it->klen, 0);
                failed = is_conn_failure(rc);
            }
            memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NOREPLY, 0);
        }
        /* the confirming command, then the big values one by one */
        if (!failed && last_small != SIZE_MAX) {
            cachet_backend_item *it = &items[g.pos[last_small]];
            rc = is_set ? memcached_set(h, it->key, it->klen, it->value, it->len,
                                        (time_t)m->expire, 0)
                        : memcached_delete(h, it->key, it->klen, 0);
            failed = is_conn_failure(rc);
            if (!failed && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_STORED &&
                rc != MEMCACHED_DELETED && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_E2BIG)
                res[g.pos[last_small]] = combine(res[g.pos[last_small]],
                                                 mc_error(m, i, rc, what), &dummy);
            else if (rc == MEMCACHED_E2BIG) {
                memcached_delete(h, it->key, it->klen, 0);
                res[g.pos[last_small]] = combine(res[g.pos[last_small]], CACHET_ETOOBIG, &dummy);
            }
        }
        for (size_t s = g.start[i]; s < g.start[i + 1] && !failed && is_set; s++) {
            cachet_backend_item *it = &items[g.pos[s]];
            if (it->len <= PIPE_MAX_VALUE)
                continue;
            rc = memcached_set(h, it->key, it->klen, it->value, it->len, (time_t)m->expire, 0);
            if (rc == MEMCACHED_E2BIG || rc == MEMCACHED_SERVER_ERROR) {
                memcached_return_t drc = memcached_delete(h, it->key, it->klen, 0);
                res[g.pos[s]] = combine(res[g.pos[s]], mc_error(m, i, rc, what), &dummy);
                if (is_conn_failure(drc))
                    rc = drc;
            } else if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_STORED &&
                       !is_conn_failure(rc)) {
                res[g.pos[s]] = combine(res[g.pos[s]], mc_error(m, i, rc, what), &dummy);
            }
            failed = is_conn_failure(rc);
        }
        settle(m, c, i, g.adm[i], failed ? rc : MEMCACHED_SUCCESS);
        for (size_t s = g.start[i]; s < g.start[i + 1]; s++) {
            size_t k = g.pos[s];
            if (failed)
                res[k] = combine(res[k], CACHET_EUNAVAILABLE, &dummy);
            else if (res[k] == CACHET_OK || res[k] == CACHET_EUNAVAILABLE)
                stored[k] = 1;
        }
        if (failed)
            mc_error(m, i, rc, what);
    }
    conn_put(m, c);
    for (size_t k = 0; k < n; k++) {
        /* stored on a live replica: the dead ones do not make it fail */
        items[k].status = (res[k] == CACHET_EUNAVAILABLE && stored[k]) ? CACHET_OK : res[k];
        if (!stored[k] && res[k] == CACHET_OK)
            items[k].status = CACHET_EUNAVAILABLE;
    }
    free(order);
    free(res);
    free(stored);
    groups_free(&g);
    st = first_error(items, n);
    if (st != CACHET_OK)
        return cachet_backend_error(st, "backend %s: %s: %s", m->backend, what,
                                    st == CACHET_EUNAVAILABLE ? "some servers are down"
                                    : st == CACHET_ETOOBIG ? "a value is over the item size "
                                      "(not stored, old value deleted)"
                                    : cachet_strerror(st));
    return CACHET_OK;

abort_all:
    for (size_t i = 0; i < m->nhosts; i++)
        if (g.adm[i] > ADM_REJECT)
            finish(m, i, g.adm[i], END_ABORT);
    for (size_t k = 0; k < n; k++)
        items[k].status = st;
    free(order);
    free(res);
    free(stored);
    groups_free(&g);
    conn_put(m, c);
    return st;
}

cachet_status mc_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    return write_multi(state, items, n, 1);
}

cachet_status mc_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    return write_multi(state, items, n, 0);
}

/* ---- the distributed lock: add with a token, release only by the owner ---- */

static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    while (n--)
        h = (h ^ (unsigned char)*p++) * 0x100000001b3ULL;
    return h;
}

/* "<key>.lock", or for keys near the limit, a prefix and a hash of the key. */
static size_t lock_key(const char *key, size_t klen, char *out)
{
    if (klen + 5 <= MAX_KEY) {
        memcpy(out, key, klen);
        memcpy(out + klen, ".lock", 5);
        return klen + 5;
    }
    memcpy(out, key, 200);
    return 200 + (size_t)snprintf(out + 200, 40, ".lock.%016llx",
                                  (unsigned long long)fnv1a64(key, klen));
}

/* One single-key command on the lock key's server, through the host table. */
typedef memcached_return_t (*lock_cmd)(memcached_st *h, const char *lk, size_t lkl, void *arg);

static cachet_status lock_op(mc_inst *m, const char *lk, size_t lkl, lock_cmd cmd, void *arg,
                             memcached_return_t *rcp)
{
    size_t i = m->nhosts == 1 ? 0 : memcached_generate_hash(m->ring, lk, lkl);
    int adm;
    mc_conn *c;
    memcached_st *h;
    cachet_status st;

    if (i >= m->nhosts)
        i = 0;
    if (refused(m, i, now_s()))
        return unavailable(m, i);
    if ((st = conn_get(m, &c)) != CACHET_OK)
        return st;
    if ((adm = admit(m, i, now_s())) == ADM_REJECT) {
        conn_put(m, c);
        return unavailable(m, i);
    }
    if ((adm = enter(m, c, i, adm)) == ADM_REJECT) {
        conn_put(m, c);
        return unavailable(m, i);
    }
    if (!(h = handle(m, c, i))) {
        finish(m, i, adm, END_ABORT);
        conn_put(m, c);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    *rcp = cmd(h, lk, lkl, arg);
    settle(m, c, i, adm, *rcp);
    conn_put(m, c);
    if (is_conn_failure(*rcp))
        return mc_error(m, i, *rcp, "lock");
    return CACHET_OK;
}

typedef struct {
    mc_inst    *m;
    const char *token;
} lock_arg;

static memcached_return_t cmd_add(memcached_st *h, const char *lk, size_t lkl, void *arg)
{
    lock_arg *a = arg;
    return memcached_add(h, lk, lkl, a->token, strlen(a->token), (time_t)a->m->lock_timeout, 0);
}

/* Deletes the lock if it still holds our token (gets, compare, delete:
 * memcached has no compare-and-delete, so a lock that expired and was taken
 * by another in between the get and the delete is the remaining window). */
static memcached_return_t cmd_release(memcached_st *h, const char *lk, size_t lkl, void *arg)
{
    lock_arg *a = arg;
    size_t vl;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(h, lk, lkl, &vl, &flags, &rc);
    int mine = rc == MEMCACHED_SUCCESS && v && vl == strlen(a->token) &&
               memcmp(v, a->token, vl) == 0;
    free(v);
    if (!mine)
        return rc == MEMCACHED_SUCCESS ? MEMCACHED_NOTFOUND : rc;
    return memcached_delete(h, lk, lkl, 0);
}

cachet_status mc_lock(void *state, const char *key, size_t klen, void **token)
{
    mc_inst *m = state;
    char lk[MAX_KEY + 64], tok[80];
    unsigned char rnd[12];
    size_t lkl;
    memcached_return_t rc = MEMCACHED_SUCCESS;
    lock_arg a = {m, tok};
    cachet_status st;
    uint64_t seq;

    if (!m->dist_lock)
        return CACHET_ENOTSUP;   /* turned off: the region's in-process lock only */
    lkl = lock_key(key, klen, lk);
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    seq = __atomic_add_fetch(&m->lock_seq, 1, __ATOMIC_RELAXED);
    snprintf(tok, sizeof tok, "%ld.%llu.%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x",
             (long)getpid(), (unsigned long long)seq, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
             rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11]);
    if ((st = lock_op(m, lk, lkl, cmd_add, &a, &rc)) != CACHET_OK)
        return st;
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
        return CACHET_MISS;
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_STORED)
        return cachet_backend_error(CACHET_EBACKEND, "backend %s: lock: %s", m->backend,
                                    memcached_strerror(NULL, rc));
    if (!(*token = strdup(tok))) {
        memcached_return_t drc;
        lock_op(m, lk, lkl, cmd_release, &a, &drc);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    }
    return CACHET_OK;
}

cachet_status mc_unlock(void *state, const char *key, size_t klen, void *token)
{
    mc_inst *m = state;
    char lk[MAX_KEY + 64];
    size_t lkl;
    memcached_return_t rc = MEMCACHED_SUCCESS;
    lock_arg a = {m, token};
    cachet_status st;

    if (!token)
        return CACHET_OK;
    lkl = lock_key(key, klen, lk);
    st = lock_op(m, lk, lkl, cmd_release, &a, &rc);
    free(token);
    return st;
}

/* ---- report ---- */

cachet_status mc_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    mc_inst *m = state;
    char buf[512];
    double now = now_s();

    for (size_t i = 0; i < m->nhosts; i++) {
        mc_host *h = &m->hosts[i];
        int stt, probing;
        double until;
        uint64_t fails, ff, probes, flushes;
        pthread_mutex_lock(&h->mu);
        stt = h->state;
        probing = h->probing;
        until = h->dead_until;
        fails = h->failures;
        ff = h->fastfails;
        probes = h->probes;
        flushes = h->flushes;
        pthread_mutex_unlock(&h->mu);
        if (stt == H_DEAD && now < until)
            snprintf(buf, sizeof buf, "%s dead (retry in %.0f s)", h->label, until - now);
        else
            snprintf(buf, sizeof buf, "%s %s", h->label,
                     probing ? "probing" : stt == H_UP ? "up" : stt == H_DEAD ? "dead (retry due)"
                     : "unknown");
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf),
                 " failures=%llu fast_failures=%llu probes=%llu flushes=%llu",
                 (unsigned long long)fails, (unsigned long long)ff, (unsigned long long)probes,
                 (unsigned long long)flushes);
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
        pthread_cond_destroy(&m->hosts[i].probe_done);
        cond_init(&m->hosts[i].probe_done);
        pthread_mutex_unlock(&m->hosts[i].mu);
    }
    pthread_mutex_unlock(&m->mu);
    /* pthread objects are re-made: a condvar waited on by vanished threads */
    pthread_cond_destroy(&m->cv);
    cond_init(&m->cv);
}
