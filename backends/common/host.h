/* One host's health, as the memcached and redis families both keep it: the
 * one state machine of cachet's networked backends (the mcrouter way).
 *
 *   UNKNOWN  never reached: the first caller makes first contact and its
 *            call decides; other callers wait for it briefly (first_wait,
 *            at most 200 ms: a healthy server answers well within it) and
 *            then fail fast, so a hung host costs one stalled call.
 *   UP       calls go through.  When calls are in flight and none has
 *            completed for suspect_after, the host is suspected hung: new
 *            calls fail fast until one completes.
 *   DOWN     calls fail fast (CACHET_EUNAVAILABLE).  No caller ever probes:
 *            the instance's prober thread (host_prober.c) does, first after
 *            about 1 s, then with jittered backoff growing x1.5 up to
 *            dead_retry; a probe that succeeds brings the host back at once.
 *
 * A failure marks the host down whatever it was (refused, reset, timeout),
 * except:
 *   - a protocol error: the host answered, wrongly; the caller closes that
 *     connection, the host is not marked down (counted apart);
 *   - a failure on a stale connection, one opened before the host's last
 *     change (its epoch differs): the host has come back since; the
 *     caller drops that connection and uses a fresh one;
 *   - fail open: a timeout that would put more than half of the hosts of
 *     a set of three or more down leaves the host up (see host.c).
 *
 * Logs: one warning when a host goes down, one info line when it comes
 * back, each with the reason; nothing per failing call.
 *
 * Locking: h->mu guards the host, never held across I/O or while taking
 * another lock, so the servers operation and admissions never wait on a
 * server.  The set's mutex may be held while taking a host's (never the
 * other way round). */
#ifndef CACHET_BACKEND_COMMON_HOST_H
#define CACHET_BACKEND_COMMON_HOST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cachet/backend.h>

enum { CACHET_HOST_UNKNOWN = 0, CACHET_HOST_UP, CACHET_HOST_DOWN };

/* What an admission said. */
enum { CACHET_ADM_REJECT = -1, CACHET_ADM_OK = 0, CACHET_ADM_FIRST = 1 };

/* How a call on the host ended. */
enum {
    CACHET_END_OK = 0,     /* it answered */
    CACHET_END_ABORT,      /* nothing was asked of it (the caller gave up first) */
    CACHET_END_PROTO,      /* it answered wrongly: counted, not marked down */
    CACHET_END_FAIL        /* refused, reset, closed, timed out: see reason */
};

/* Why a host is down (cachet_host_reason_name: the servers operation's words). */
enum {
    CACHET_HR_NONE = 0,
    CACHET_HR_REFUSED,     /* connect failed (refused, unreachable, unresolvable) */
    CACHET_HR_TIMEOUT,     /* no answer within socket_timeout */
    CACHET_HR_CLOSED,      /* the server closed or reset the connection */
    CACHET_HR_IO,          /* another I/O error */
    CACHET_HR_PROTOCOL,    /* a probe got a reply that does not answer it */
    CACHET_HR_REJECTED,    /* a probe was refused (e.g. not the master any more) */
    CACHET_HR_SHARED,      /* another process on this machine found it down */
    CACHET_HR_COUNT
};
const char *cachet_host_reason_name(int reason);

struct cachet_hostset;

typedef struct cachet_host {
    pthread_mutex_t mu;
    pthread_cond_t  first_done;   /* first contact ended */
    struct cachet_hostset *set;
    char       label[300];        /* "host:port" for logs */
    int        state;             /* CACHET_HOST_* */
    int        reason;            /* CACHET_HR_*: why it is down */
    int        first;             /* a caller is making first contact */
    int        probing;           /* the prober is probing it */
    unsigned   epoch;             /* bumped when it goes down and when it comes back */
    unsigned   inflight;
    double     progress;          /* last completion, or start of the busy period */
    double     changed_at;        /* monotonic s of the last up<->down; -1 never */
    double     next_probe, backoff;
    uint64_t   failures;          /* failed calls (atomic: read without mu) */
    uint64_t   fastfails, probes, timeouts, proto_errors, stale;
    int        shared_slot;       /* index in the shared state file, -1 none */
    uint64_t   shared_seen;       /* the last version of that slot folded in */
    uint64_t   shared_claim;      /* our first-contact claim in it (0 none) */
} cachet_host;

/* label: "host:port" (copied).  The host joins set (its prober). */
void     cachet_host_init(cachet_host *h, struct cachet_hostset *set, const char *label);
void     cachet_host_destroy(cachet_host *h);
void     cachet_host_set_label(cachet_host *h, const char *label);

/* may_wait: wait (briefly) for another caller's first contact rather than
 * fail at once; a caller that itself holds a first contact of another
 * host must not (two such callers would wait on each other). */
int      cachet_host_admit(cachet_host *h, int may_wait);
/* Would cachet_host_admit refuse now?  Asked before a caller waits for a
 * pooled connection, so that a down host fails fast even when the pool is
 * busy (and the wait is not counted as a call in flight). */
int      cachet_host_refused(cachet_host *h);
/* The end of an admitted call.  conn_epoch: the host's epoch when the
 * connection used was opened (cachet_host_epoch).  Returns 1 when the
 * failure was on a stale connection (the host was not marked down: retry
 * on a fresh connection), else 0. */
int      cachet_host_done(cachet_host *h, int adm, int end, int reason, unsigned conn_epoch);
unsigned cachet_host_epoch(cachet_host *h);
int      cachet_host_state(cachet_host *h);   /* CACHET_HOST_* now */
uint64_t cachet_host_failures(cachet_host *h);
/* Forget what is known (a new address: sentinel failover): UNKNOWN. */
void     cachet_host_forget(cachet_host *h);
/* A protocol error seen outside a call (unsolicited bytes on an idle
 * connection). */
void     cachet_host_count_proto(cachet_host *h);

/* The servers operation's entry (all but name). */
void     cachet_host_snapshot(cachet_host *h, cachet_server_state *out);

/* ---- the set: hosts of one instance, their prober (host_prober.c) ---- */

/* Probes host h by deadline: 0 it answered; -1 it did not, *reason set
 * (CACHET_HR_*).  Runs on the prober thread, with no lock held. */
typedef int (*cachet_probe_fn)(void *arg, cachet_host *h, double deadline, int *reason);

typedef struct cachet_hostset {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    const char     *backend;       /* for messages */
    double          timeout;       /* socket_timeout: each probe's deadline */
    double          dead_retry;    /* the longest gap between probes (0: never down) */
    double          suspect_after; /* hung when nothing completes for this long */
    cachet_probe_fn probe;
    void           *probe_arg;
    cachet_host   **hosts;
    size_t          n, cap;
    unsigned        ndown;         /* hosts DOWN now (atomic) */
    int             failopen_said; /* the fail-open warning was logged */
    pthread_t       thread;
    int             running, stop;
    pid_t           pid;           /* the process the prober runs in */
    uint64_t        rng;
    struct cachet_shared *shared;  /* shared_host_state (host_shared.c) or NULL */
} cachet_hostset;

void   cachet_hostset_init(cachet_hostset *s, const char *backend, double timeout,
                           double dead_retry, cachet_probe_fn probe, void *probe_arg);
/* Stops the prober (waits for a probe under way: at most timeout). */
void   cachet_hostset_destroy(cachet_hostset *s);
/* Wakes the prober (started when needed): a host went down. */
void   cachet_hostset_kick(cachet_hostset *s);
size_t cachet_hostset_count(cachet_hostset *s);
/* fork(): prepare takes the set's and every host's lock; the child has no
 * prober (restarted when a host is next found down) and no call in flight. */
void   cachet_hostset_fork_prepare(cachet_hostset *s);
void   cachet_hostset_fork_parent(cachet_hostset *s);
void   cachet_hostset_fork_child(cachet_hostset *s);

/* internal to host.c and host_prober.c */
void   cachet__host_add(cachet_hostset *s, cachet_host *h);
void   cachet__host_remove(cachet_hostset *s, cachet_host *h);
double cachet__host_first_delay(const cachet_hostset *s);
double cachet__host_next_delay(cachet_hostset *s, double prev);
void   cachet__host_probed(cachet_host *h, int ok, int reason);

#endif
