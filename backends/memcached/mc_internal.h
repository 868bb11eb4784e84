/* memcached and memcache_pool, never stalling on a dead host, never handing
 * a caller bytes that do not answer its request.
 *
 * cachet speaks the memcached protocols itself (mc_sock.c: one connection
 * under one deadline per call; mc_text.c and mc_bin.c: every reply checked
 * against its request).  libmemcached is used only for key placement (the
 * ring), so keys land where pylibmc and libmemcached clients put them.
 *
 * Each host's health is the one state machine of the networked backends
 * (backends/common/host.h): UNKNOWN until first contact, UP, or DOWN and
 * then failing fast while the instance's prober thread re-probes it in the
 * background (with pool_flush_on_reconnect, the probe that finds it back is
 * a flush of that server).  mc_hosts.c adapts it: admissions, the end of a
 * call, the probe, the servers operation.  A connection made before the
 * host's last change is stale: mc_link makes a fresh one instead.
 *
 * A protocol error (a reply that does not answer the request) closes the
 * connection and fails the call, but does not mark the host dead: it
 * answered.  Protocol errors and timeouts are counted apart.
 *
 * Distribution: a "ring" memcached_st holds every server (distribution set
 * before the servers are added) and is used only to hash keys
 * (memcached_generate_hash, a pure read).  I/O goes through one mc_sock
 * per server per connection set, so that every failure is known to belong
 * to one host, and a multi-operation is one request per server, sent to
 * every server before any is read. */
#ifndef CACHET_MC_INTERNAL_H
#define CACHET_MC_INTERNAL_H

/* Internal to the memcached and memcache_pool plugins: the instance, its
 * host table and connection sets, and the functions the backends/memcached/mc_*.c
 * files share (hidden by -fvisibility=hidden; mc_common.h is the interface). */
#include "mc_common.h"
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <libmemcached/memcached.h>
#include "mc_proto.h"
#include "../common/clock.h"
#include "../common/host.h"

#define MAX_REPLICAS   8
#define MAX_KEY        250

/* ADM_NOCONN: mc_begin could not get a connection set (not the host's
 * fault); the others are cachet_host_admit's (CACHET_ADM_*) */
enum { ADM_NOCONN = -2, ADM_REJECT = CACHET_ADM_REJECT, ADM_OK = CACHET_ADM_OK,
       ADM_PROBE = CACHET_ADM_FIRST,
       /* no longer given (the prober flushes a host that comes back); kept
        * while mc_multi.c still names it */
       ADM_PROBE_FLUSH = 2 };
/* how an operation on a host ended: END_FAIL and END_TIMEOUT mark it down,
 * END_PROTO (it answered, wrongly) is counted but does not */
enum { END_OK, END_FAIL, END_ABORT, END_PROTO, END_TIMEOUT };

#define MAX_VALUE_DEFAULT (64u << 20)    /* max_value_size */
#define MAX_VALUE_LIMIT   (1u << 30)     /* memcached's own hard item limit */

typedef struct {
    char     name[400];        /* hostname, or the socket path */
    char     label[420];       /* name:port for messages */
    in_port_t port;            /* 0: unix socket */
    uint32_t weight;
    cachet_host h;             /* its health (backends/common/host.h) */
    uint64_t flushes;          /* pool_flush_on_reconnect flushes (atomic) */
} mc_host;

struct mc_inst;
typedef struct mc_conn {
    struct mc_conn *prev, *next;   /* every connection set of the instance */
    struct mc_conn *idle_next;     /* pool: idle list */
    struct mc_inst *inst;
    double          idle_since;
    unsigned        gen;           /* instance generation it was made in */
    mc_sock         srv[];         /* one per host, connected on first use */
} mc_conn;

typedef struct mc_inst {
    const char   *backend;
    int           pool;
    mc_host      *hosts;
    size_t        nhosts;
    cachet_hostset hostset;        /* the hosts' prober */
    int           hosts_ready;     /* hostset and every hosts[i].h initialized */
    struct mc_inst *gutter;        /* gutter servers (mc_gutter.c), or NULL */
    double        gutter_ttl;      /* s: the longest lifetime of a value in the gutter */
    memcached_st *ring;
    int           py_placement;    /* distribution = python-memcache (mc_placement) */
    /* arguments */
    double        socket_timeout, dead_retry, suspect_after;
    long          expire;
    int           binary, dist_lock, replicas;
    const mc_proto *proto;         /* mc_text or mc_bin */
    size_t        max_value;       /* max_value_size */
    double        lock_timeout;
    long          pool_max;
    double        unused_timeout, get_timeout;
    int           flush_on_reconnect;
    char         *sasl_user, *sasl_pass;   /* copies: the arguments live only during open */
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

/* the monotonic clock, shared with redis (backends/common/clock.c) */
static inline double mc_now_s(void)
{
    return cachet_clock_now();
}

/* mc_hosts.c: small helpers and the host table */
void          mc_cond_init(pthread_cond_t *cv);
/* may_wait: a host never reached and being probed by another thread is
 * waited for (briefly) rather than refused; a caller that itself holds a
 * probe of another host must not wait (two such callers would wait on
 * each other). */
int           mc_admit(mc_inst *m, size_t i, double now, int may_wait);
int           mc_refused(mc_inst *m, size_t i, double now);
void          mc_finish(mc_inst *m, size_t i, int adm, int how);
/* mc_finish of a call on a connection opened in the host's epoch, with why
 * it failed (CACHET_HR_*) */
void          mc_finish_on(mc_inst *m, size_t i, int adm, int how, int why, unsigned epoch);
/* The host table: each host's state machine, and the prober (mc_open). */
cachet_status mc_hosts_start(mc_inst *m, int shared);
void          mc_hosts_stop(mc_inst *m);
cachet_status mc_unavailable(mc_inst *m, size_t i);

/* mc_stats.c: each server's own figures (stats) as "HOST:PORT NAME" report
 * lines; answered[i] (nhosts of them) says whether host i answered */
void          mc_stats_report(mc_inst *m, int *answered, cachet_backend_report_fn fn, void *arg);

/* mc_url.c: url parsing */
cachet_status mc_parse_url(mc_inst *m, const char *url);

/* mc_conn.c: the ring, connection sets, and the link to a host */
cachet_status mc_ring_new(mc_inst *m, const char *distribution);
size_t        mc_placement(const mc_inst *m, const char *key, size_t klen, size_t *idx);
void          mc_conn_free(mc_conn *c, size_t nhosts);
void          mc_tls_destroy(void *arg);
cachet_status mc_conn_get(mc_inst *m, mc_conn **out);
void          mc_conn_put(mc_inst *m, mc_conn *c);
/* The connection of c to host i, ready for a request before the deadline:
 * connected (and authenticated) on first use, and connected afresh when
 * the old one has anything to read.  NULL with *rc (MC_E*) on failure. */
mc_sock      *mc_link(mc_inst *m, mc_conn *c, size_t i, double dl, int *rc);
/* Records how an operation on host i ended from its outcome rc (MC_*),
 * closing the connection when it is in doubt; returns the END_* */
int           mc_settle(mc_inst *m, mc_conn *c, size_t i, int adm, int rc);
/* The status and message for outcome rc of `what` on host i. */
cachet_status mc_error(mc_inst *m, mc_conn *c, size_t i, int rc, const char *what);
int           mc_enter(mc_inst *m, mc_conn *c, size_t i, int adm, double dl);
/* The start of every single-key request on host i: fail fast if the host
 * is refused, take a connection set when *c has none yet, then admit and
 * enter.  Returns the admission (for mc_settle/mc_finish); ADM_REJECT with
 * *st = the host's EUNAVAILABLE; ADM_NOCONN with *st = the pool's error. */
int           mc_begin(mc_inst *m, mc_conn **c, size_t i, double now, double dl,
                       cachet_status *st);
/* The deadline of a call that starts now. */
double        mc_deadline(const mc_inst *m);

/* mc_ops.c: single-key operations */
cachet_status mc_combine(cachet_status acc, cachet_status st, int *stored);
/* memcached's exptime for a write's ttl (0: memcached_expire_time). */
long          mc_exptime(const mc_inst *m, double ttl);

#endif
