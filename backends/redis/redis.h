/* The redis backends (redis, redis_sentinel, redis_cluster) over hiredis
 * 0.14.1: what their source files share.
 *
 *   redis.c           the vtables and the operations (GET/SET/DEL, MGET,
 *                     pipelined SET, the lock)
 *   plugin_redis*.c   one entry point per plugin, returning its vtable
 *   redis_args.c      backend arguments
 *   redis_url.c       the url and host:port lists, as redis-py parses them
 *   redis_conn.c      one server: a connection pool shared by all threads,
 *                     the handshake (AUTH/SELECT/ROLE), dead-host marking,
 *                     fork hooks
 *   redis_io.c        one connection's connect and round trips under one
 *                     deadline (hiredis driven by hand: poll, send, recv)
 *   redis_reply.c     what a reply may be: the RESP header scanner that
 *                     bounds it before hiredis allocates, and shape checks
 *   redis_sentinel.c  asking sentinels for the master
 *   redis_cluster.c   CRC16 slots, the slot map, MOVED/ASK
 */
#ifndef CACHET_BACKEND_REDIS_H
#define CACHET_BACKEND_REDIS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include <cachet/backend.h>
#include "../common/clock.h"
#include "../common/host.h"

enum { RMODE_SINGLE = 0, RMODE_SENTINEL = 1, RMODE_CLUSTER = 2 };

#define R_HOST_MAX 256

/* The three plugins' vtables (redis.c); each plugin_*.c returns one.  Hidden
 * like everything here but the entry point (-fvisibility=hidden). */
extern const cachet_backend_ops redis_ops_single;
extern const cachet_backend_ops redis_ops_sentinel;
extern const cachet_backend_ops redis_ops_cluster;

typedef struct {
    char host[R_HOST_MAX];
    int  port;
} raddr;

/* Parsed arguments. */
typedef struct {
    int     mode;
    const char *name;           /* backend name for messages */
    char    host[R_HOST_MAX];   /* single: the server */
    int     port;
    char   *unix_path;          /* single: unix socket instead of host:port */
    long    db;
    char   *username, *password;
    double  socket_timeout;     /* s: connect and every command */
    long    expire_ms;          /* redis_expiration_time, 0 = none */
    int     expire_whole_s;     /* send EX (seconds) rather than PX */
    int     distributed_lock;
    long    lock_timeout_ms;
    double  lock_sleep;         /* accepted for dogpile; the region polls */
    long    pool_maxsize;
    double  pool_timeout;       /* s to wait for a pooled connection */
    double  dead_retry;         /* s: the longest gap between probes of a down host */
    int     shared_host_state;  /* share host state with the machine's other processes */
    size_t  max_value_size;     /* bytes: the largest value stored or read back */
    raddr  *sentinels;          /* sentinel: the sentinels; cluster: startup nodes */
    size_t  nsentinels;
    char   *service_name;
    char   *sentinel_password;
} rcfg;

cachet_status rcfg_parse(const cachet_backend_params *p, int mode, rcfg *cfg);
void          rcfg_free(rcfg *cfg);
/* ---- urls and addresses (redis_url.c) ---- */

/* "host:port" or "[v6]:port" into a (port a decimal in 1..65535); 0 ok. */
int           raddr_parse(const char *s, int dflt_port, raddr *a);
/* A comma- or blank-separated list of host:port (argument arg). */
cachet_status raddr_list_parse(const rcfg *cfg, const char *arg, const char *v,
                               raddr **out, size_t *nout);
/* redis:// or unix:// url into cfg, as redis-py parses it. */
cachet_status rurl_parse(rcfg *cfg, const char *url);
/* url for a message: everything before its last '@' is "***". */
void          rurl_redact(const char *url, char *out, size_t size);

/* ---- one server and its pool (redis_conn.c) ---- */

typedef struct rconn {
    redisContext *c;            /* NULL until connected (a slot in the pool bound) */
    unsigned      gen;          /* pool generation it was made in */
    unsigned      epoch;        /* the host's epoch when it connected (stale after) */
    int           reused;       /* came from the idle list */
    struct rconn *prev, *next;  /* every open connection of the server */
    struct rconn *idle_next;
} rconn;

struct rinst;

/* One server: its pool (mu) and its health (host: the common state
 * machine, backends/common/host.h, with its own lock; mu is never held
 * while taking the host's). */
typedef struct rserver {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    struct rinst   *in;
    raddr           addr;       /* may change (sentinel failover) */
    const char     *unix_path;
    rconn          *all, *idle;
    size_t          nopen;
    unsigned        gen;        /* bumped when pooled connections must go */
    char            why[400];   /* the last failure, for messages */
    cachet_host     host;
    struct rlabel  *labels;     /* "host:port" for the servers op, newest first: an
                                 * address change adds one, none is freed before
                                 * destroy (a reader may still hold the old one) */
} rserver;

/* What a command's reply may be (rreply_check); an error reply always may. */
enum {
    RX_NONE = 0,        /* unset: refused, so that no command goes unchecked */
    RX_BULK,            /* GET: bulk or nil */
    RX_OK,              /* SET, AUTH, SELECT, ASKING: +OK */
    RX_OK_OR_NIL,       /* SET NX: +OK or nil */
    RX_INT,             /* DEL, EVAL unlock */
    RX_MGET,            /* exactly argc-1 elements, each bulk or nil */
    RX_PONG,            /* PING */
    RX_SLOTS,           /* CLUSTER SLOTS: an array (ranges checked by the cluster) */
    RX_ROLE,            /* ROLE: an array */
    RX_MASTER_ADDR,     /* SENTINEL get-master-addr-by-name: [host, port] or nil */
};

typedef struct {
    int          argc;
    const char **argv;
    size_t      *argvlen;
    void        *own[2];        /* freed after use when set (argv arrays from malloc) */
    int          expect;        /* RX_* */
} rcmd;

/* ---- replies (redis_reply.c) ---- */

/* How big and deep one reply may be. */
typedef struct {
    size_t max_bulk;            /* bytes of one bulk string */
    size_t max_top;             /* elements of a top-level array */
    size_t max_nested;          /* elements of a nested array */
    int    max_depth;           /* 0: no array at all */
    size_t max_line;            /* a status or error line */
    size_t max_total;           /* bytes of the whole reply */
} rlimits;

#define R_SCAN_DEPTH 8          /* hiredis's reader stops at 9 levels */

/* The incremental scanner: fed every byte the server sends, in order. */
typedef struct {
    const rcmd *cmds;           /* the requests, for their limits */
    size_t      expected;       /* replies asked for */
    size_t      max_value;
    size_t      done;           /* replies complete so far */
    size_t      reader_done;    /* replies hiredis's reader returned so far */
    unsigned long long trailing; /* bytes seen after the last expected reply */
    rlimits     lim;            /* of reply number done */
    size_t      total;          /* bytes of that reply so far */
    int         depth;
    long long   left[R_SCAN_DEPTH];
    char        type;           /* header being read, 0 between values */
    int         cr;
    char        line[24];
    size_t      linelen;
    unsigned long long bulk_left; /* bulk payload + CRLF still to come */
    int         failed, refused;
    char        why[160];
} rscan;

void rlimits_for(const rcmd *cmd, size_t max_value, rlimits *l);
void rscan_init(rscan *s, const rcmd *cmds, size_t n, size_t max_value);
/* Bytes of p that belong to the expected replies (the rest: s->trailing),
 * or -1 when the server broke the protocol or a bound (s->why). */
long rscan_feed(rscan *s, const char *p, size_t n);
/* 0 when r is a reply cmd may get; else -1 and why. */
int  rreply_check(const rcmd *cmd, const redisReply *r, char *why, size_t size);
/* Reader functions whose createArray honours the scanner's bounds
 * (reader->privdata = the rscan). */
extern redisReplyObjectFunctions rreply_functions;
/* Replaces each occurrence of secret in buf (NUL-terminated, size bytes)
 * by "***". */
void r_scrub(char *buf, size_t size, const char *secret);

/* ---- one connection's I/O (redis_io.c) ---- */

/* How a connection failed; decides what the server's health becomes. */
enum { RF_NONE = 0, RF_DEADLINE, RF_EOF, RF_PROTO, RF_IO, RF_CONNECT, RF_OOM };

typedef struct {
    int  kind;                  /* RF_* */
    char why[300];
} rfail;

/* A connected, non-blocking context by the monotonic deadline, or NULL. */
redisContext *rio_connect(const char *host, int port, const char *unix_path, double deadline,
                          double timeout, rfail *f);
/* Sends the n commands in one write and reads their n replies by the
 * deadline, each bounded by the scanner and checked by rreply_check.
 * 0 ok (rep[] filled; *in_doubt set when the server sent more than asked),
 * -1 with f set (rep[] all NULL; the context must be freed). */
int           rio_exec(redisContext *c, const rcmd *cmds, size_t n, redisReply **rep,
                       double deadline, double timeout, size_t max_value, int *in_doubt,
                       rfail *f);
/* 1 when an idle connection has bytes waiting or was closed by the server. */
int           rio_pending(redisContext *c, int *eof);

/* the instance: every mode */
typedef struct rinst {
    rcfg     cfg;
    cachet_hostset hostset;     /* every server's prober */
    double   next_down_resolve; /* sentinel: sentinel_mu; see rsentinel_resolve_if_down */
    rserver  single;            /* single and sentinel: the master */
    pthread_mutex_t sentinel_mu;
    struct rcluster *cluster;   /* cluster only */
} rinst;

static inline double r_now(void)   /* backends/common/clock.c, shared with memcached */
{
    return cachet_clock_now();
}

/* The instance's hosts and their prober (before any rserver_init). */
void          rhosts_start(rinst *in);
void          rhosts_stop(rinst *in);
void          rserver_init(rserver *s, rinst *in, const raddr *a, const char *unix_path);
/* Failed calls so far (a change tells "this call just failed"). */
uint64_t      rserver_failures(rserver *s);
void          rserver_destroy(rserver *s);
/* Sends the n commands in one write and reads the n replies (rep[i] from
 * hiredis: free with freeReplyObject).  CACHET_OK when every reply came
 * (some may be error replies), else CACHET_EUNAVAILABLE, CACHET_EINVAL
 * (AUTH or SELECT refused) or CACHET_ETIMEDOUT with a message; rep[] is
 * then all NULL. */
cachet_status rserver_exec(rserver *s, rcmd *cmds, size_t n, redisReply **rep);
/* Points the server at another address (failover); pooled connections go. */
void          rserver_set_addr(rserver *s, const raddr *a);
void          rserver_addr(rserver *s, raddr *out);
void          rserver_fork_prepare(rserver *s);
void          rserver_fork_parent(rserver *s);
void          rserver_fork_child(rserver *s);
/* "host:port up|down ..." for report */
void          rserver_describe(rserver *s, char *buf, size_t size);
/* "host:port" or the unix path */
void          rserver_name(rserver *s, char *buf, size_t size);
/* One entry of the servers operation (never waits on the server). */
void          rserver_state(rserver *s, cachet_server_state *out);
void          rreplies_free(redisReply **rep, size_t n);

/* Replaces the configured password and sentinel_password in a text that
 * came from a server (an error reply, a ROLE answer) by "***". */
void          rserver_scrub(const rinst *in, char *buf, size_t size);

/* ---- sentinel (redis_sentinel.c) ---- */

/* Asks the sentinels for the master and points in->single at it.
 * 1 when the address changed, 0 when unchanged, -1 when no sentinel
 * answered (message set).  Concurrent callers: one asks, others return 0. */
int           rsentinel_resolve(rinst *in, int wait);
/* While the master is marked down, asks the sentinels again at most every
 * 0.5 s (its replica may have been promoted); 1 when the master moved. */
int           rsentinel_resolve_if_down(rinst *in);

/* ---- cluster (redis_cluster.c) ---- */

uint16_t      rcluster_crc16(const char *buf, size_t len);
unsigned      rcluster_slot(const char *key, size_t klen);
cachet_status rcluster_open(rinst *in);
void          rcluster_close(rinst *in);
/* One single-key command, routed by slot with MOVED/ASK/TRYAGAIN handled. */
cachet_status rcluster_exec1(rinst *in, const char *key, size_t klen, rcmd *cmd, redisReply **rep);
/* The same command kind over many keys, split by slot: build(i..) makes one
 * command for a group of items of one slot. */
typedef cachet_status (*rcluster_group_fn)(void *arg, size_t *idx, size_t n, rcmd *cmd);
typedef cachet_status (*rcluster_done_fn)(void *arg, size_t *idx, size_t n, redisReply *rep);
cachet_status rcluster_exec_multi(rinst *in, cachet_backend_item *items, size_t n,
                                  int one_per_key, rcluster_group_fn build,
                                  rcluster_done_fn done, void *arg);
void          rcluster_fork(rinst *in, int phase);   /* 0 prepare, 1 parent, 2 child */
void          rcluster_report(rinst *in, cachet_backend_report_fn fn, void *arg);
/* redis_notify.c: the near proxy's change notifications (pub/sub) */
cachet_status rnotify_publish(void *state, const char *id, const char *key, size_t klen);
cachet_status rnotify_subscribe(void *state, const char *id,
                                void (*fn)(void *arg, const char *key, size_t klen), void *arg,
                                void **handle);
void          rnotify_unsubscribe(void *state, void *handle);
/* redis_info.c: the server's own figures (INFO) as "HOST:PORT FIELD" report lines */
void          rinfo_report(rinst *in, rserver *s, cachet_backend_report_fn fn, void *arg);
size_t        rcluster_servers(rinst *in, cachet_server_state *out, size_t max);

#endif
