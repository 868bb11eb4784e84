/* The redis backends (redis, redis_sentinel, redis_cluster) over hiredis
 * 0.14.1: what their source files share.
 *
 *   redis.c           the vtables and the operations (GET/SET/DEL, MGET,
 *                     pipelined SET, the lock)
 *   redis_args.c      backend arguments and the url
 *   redis_conn.c      one server: a connection pool shared by all threads,
 *                     connect/AUTH/SELECT with timeouts, dead-host marking,
 *                     pipelined execution, fork hooks
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

enum { RMODE_SINGLE = 0, RMODE_SENTINEL = 1, RMODE_CLUSTER = 2 };

#define R_HOST_MAX 256

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
    double  dead_retry;         /* s a host that timed out is skipped */
    raddr  *sentinels;          /* sentinel: the sentinels; cluster: startup nodes */
    size_t  nsentinels;
    char   *service_name;
    char   *sentinel_password;
} rcfg;

cachet_status rcfg_parse(const cachet_backend_params *p, int mode, rcfg *cfg);
void          rcfg_free(rcfg *cfg);
/* "host:port" or "[v6]:port" into a; 0 ok. */
int           raddr_parse(const char *s, int dflt_port, raddr *a);

/* ---- one server and its pool (redis_conn.c) ---- */

typedef struct rconn {
    redisContext *c;
    unsigned      gen;          /* server generation it was made in */
    int           reused;       /* came from the idle list */
    int           probe;        /* this connection decides whether the host is back */
    struct rconn *prev, *next;  /* every open connection of the server */
    struct rconn *idle_next;
} rconn;

enum { RS_UNKNOWN = 0, RS_UP = 1, RS_DEAD = 2 };

struct rinst;

typedef struct rserver {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    struct rinst   *in;
    raddr           addr;       /* may change (sentinel failover) */
    const char     *unix_path;
    rconn          *all, *idle;
    size_t          nopen;
    unsigned        gen;        /* bumped when pooled connections must go */
    int             state;      /* RS_* */
    int             probing;
    double          dead_until; /* monotonic s */
    char            why[400];   /* last failure */
    uint64_t        failures;
} rserver;

typedef struct {
    int          argc;
    const char **argv;
    size_t      *argvlen;
    void        *own[2];        /* freed after use when set (argv arrays from malloc) */
} rcmd;

/* the instance: every mode */
typedef struct rinst {
    rcfg     cfg;
    rserver  single;            /* single and sentinel: the master */
    pthread_mutex_t sentinel_mu;
    struct rcluster *cluster;   /* cluster only */
} rinst;

double        r_now(void);
void          rserver_init(rserver *s, rinst *in, const raddr *a, const char *unix_path);
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
void          rreplies_free(redisReply **rep, size_t n);

/* ---- sentinel (redis_sentinel.c) ---- */

/* Asks the sentinels for the master and points in->single at it.
 * 1 when the address changed, 0 when unchanged, -1 when no sentinel
 * answered (message set).  Concurrent callers: one asks, others return 0. */
int           rsentinel_resolve(rinst *in, int wait);

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

#endif
