/*
 * cachet — a caching layer for C services, after dogpile.cache and oslo.cache.
 *
 * A region (the API below) stores values under string keys in a backend
 * chosen at run time by an oslo.cache-style [cache] ini section.  Every
 * function is safe to call from many threads on one region.  The library
 * never prints and never exits: failures come back as a cachet_status, with
 * detail in cachet_errmsg().
 */
#ifndef CACHET_CACHET_H
#define CACHET_CACHET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CACHET_VERSION_MAJOR 0
#define CACHET_VERSION_MINOR 1
#define CACHET_VERSION_PATCH 0

typedef enum {
    CACHET_OK = 0,
    CACHET_MISS = 1,          /* absent, expired, or invalidated (dogpile's NO_VALUE) */
    CACHET_EXISTS = 2,        /* cachet_add: a live value is already under the key */
    CACHET_EINVAL = -1,       /* bad argument or bad configuration */
    CACHET_ENOMEM = -2,
    CACHET_ENOBACKEND = -3,   /* no such backend, or its plugin failed to load */
    CACHET_EUNAVAILABLE = -4, /* server down, refused, or timed out */
    CACHET_ETOOBIG = -5,      /* key or value over what the backend accepts */
    CACHET_ECORRUPT = -6,     /* stored bytes failed to decode or to verify */
    CACHET_ETIMEDOUT = -7,    /* waited too long for a lock or a pooled connection */
    CACHET_EBACKEND = -8,     /* any other backend failure */
    CACHET_ENOTSUP = -9,      /* the backend cannot do this operation */
} cachet_status;

/* A short constant description of a status ("miss", "backend unavailable"). */
const char *cachet_strerror(cachet_status st);
/* Thread-local detail of this thread's last failure: names the file, line,
 * option or backend that was wrong.  Valid until this thread's next call. */
const char *cachet_errmsg(void);

/* ---- logging: the library never prints; install a callback to see it ---- */
typedef enum {
    CACHET_LOG_DEBUG = 0,
    CACHET_LOG_INFO = 1,
    CACHET_LOG_WARNING = 2,
    CACHET_LOG_ERROR = 3,
} cachet_log_level;
typedef void (*cachet_log_fn)(void *arg, cachet_log_level level, const char *msg);
/* Process-wide.  NULL removes the callback.  Debug messages are produced only
 * for regions whose config sets debug_cache_backend = true. */
void cachet_set_logger(cachet_log_fn fn, void *arg);

/* ---- configuration: an oslo.cache [cache] section ---- */
typedef struct cachet_config cachet_config;
cachet_config *cachet_config_new(void);
/* Set one option by its oslo.cache name; backend_argument accumulates. */
cachet_status  cachet_config_set(cachet_config *c, const char *option, const char *value);
cachet_status  cachet_config_load(cachet_config *c, const char *path, const char *section);   /* section NULL = "cache" */
cachet_status  cachet_config_parse(cachet_config *c, const char *text, const char *section);
void           cachet_config_free(cachet_config *c);

/* What the config resolves to, as the region will open it: the canonical
 * backend name (its plugin's name, such as "memory" for
 * dogpile.cache.memory, or an absolute .so path) and the effective backend
 * arguments (backend_argument merged with the memcache_* / redis_*
 * options, as oslo.cache does).  NULL when unset. */
const char *cachet_config_backend(const cachet_config *c);
const char *cachet_config_backend_arg(const cachet_config *c, const char *name);
/* The n-th effective backend argument, for listing; returns 0 past the end. */
int cachet_config_backend_arg_at(const cachet_config *c, size_t i,
                                 const char **name, const char **value);

/* ---- the region ---- */
typedef struct cachet_region cachet_region;
cachet_status cachet_region_open(const cachet_config *c, cachet_region **out);
void          cachet_region_close(cachet_region *r);
/* The canonical name of the backend the region runs on. */
const char   *cachet_region_backend(const cachet_region *r);

cachet_status cachet_get(cachet_region *r, const char *key, void **value, size_t *len);
cachet_status cachet_set(cachet_region *r, const char *key, const void *value, size_t len);
cachet_status cachet_delete(cachet_region *r, const char *key);
/* Frees a value handed out by cachet (get, get_multi, get_or_create).
 * Every such value has a NUL byte at value[len], not counted in len. */
void          cachet_free(void *value);

typedef struct {
    const char   *key;
    void         *value;   /* get_multi: filled (free with cachet_free); set_multi: read */
    size_t        len;
    cachet_status status;  /* per item: CACHET_OK, CACHET_MISS or an error */
} cachet_item;
cachet_status cachet_get_multi(cachet_region *r, cachet_item *items, size_t n);
cachet_status cachet_set_multi(cachet_region *r, cachet_item *items, size_t n);
cachet_status cachet_delete_multi(cachet_region *r, const char *const *keys, size_t n);

/* A creator hands back a value from malloc(); the region takes it.
 * get_or_create: one thread per key runs the creator; a creator's failure
 * goes to the threads that waited on it at once (cachet_failure_cache_time
 * remembers it per key).  With cachet_refresh_threads > 0 the creator and
 * its arg may be called from a refresh thread after get_or_create has
 * returned (to regenerate a stale or early-due value): arg must stay valid
 * until cachet_region_close, which drops queued refreshes and waits for
 * running ones. */
typedef cachet_status (*cachet_creator)(void *arg, const char *key, void **value, size_t *len);
cachet_status cachet_get_or_create(cachet_region *r, const char *key,
                                   cachet_creator create, void *arg,
                                   void **value, size_t *len);

/* Invalidates every value stored before now.  hard: they are gone (a miss);
 * soft: they are stale (get misses, get_or_create regenerates, serving the
 * old value meanwhile unless cachet_serve_stale = false).  A hard and then
 * a soft invalidation keep the values gone.
 *
 * With cachet_invalidation = shared (the default on dbm, memcached and
 * redis) the time is written to the backend under the region's reserved
 * key (_cachet:invalidated:hard:PREFIX or ...:soft:PREFIX, PREFIX being
 * cachet_key_prefix), and every process whose region has the same backend
 * and prefix stops serving those values within
 * cachet_invalidation_interval seconds (plus one backend round trip, plus
 * the clock difference between the hosts).  This process stops at once.
 * _ex returns the backend's error when it could not write the time (this
 * process is invalidated all the same); cachet_invalidate ignores it. */
cachet_status cachet_invalidate_ex(cachet_region *r, int hard);
void cachet_invalidate(cachet_region *r, int hard);   /* hard: values are gone; soft: stale */

/* ---- writes with a lifetime of their own ---- */
typedef struct {
    /* seconds: readers see the value expire after ttl (get misses,
     * get_or_create regenerates); where the backend has a server-side TTL
     * it drops the value after max(ttl, backend_expiration_time); memory
     * reclaims it too.  0 = the region's expiration_time (and
     * backend_expiration_time); -1 = never (the server keeps it
     * backend_expiration_time if that is set, else for ever). */
    double ttl;
} cachet_set_options;
/* o may be NULL (= cachet_set). */
cachet_status cachet_set_ex(cachet_region *r, const char *key, const void *value,
                            size_t len, const cachet_set_options *o);
/* Stores only if no live value is under the key (live: what cachet_get
 * would return; an expired, invalidated or foreign value is replaced):
 * CACHET_OK or CACHET_EXISTS.  Where no value is there at all, atomic
 * across processes on a backend with add (memcached, redis, memory, dbm);
 * replacing a value that is there but not live is atomic among the
 * threads of one process. */
cachet_status cachet_add(cachet_region *r, const char *key, const void *value,
                         size_t len, const cachet_set_options *o);

/* ---- per-call options: the _ex variants ----
 * A zeroed struct (or NULL) means the region's behaviour. */
typedef int (*cachet_should_cache_fn)(void *arg, const char *key, const void *value, size_t len);

/* What cachet knows of a value it hands out (dogpile 1.3's
 * get_value_metadata): filled by cachet_get_ex and cachet_get_or_create_ex
 * when cachet_options.info points here and the call returns CACHET_OK. */
typedef struct {
    double created;          /* when it was stored: seconds since the epoch, the writer's clock */
    double age;              /* seconds since then, by this process's clock (>= 0) */
    double ttl;              /* its own lifetime (cachet_set_ex): 0 = the region's rule, -1 never */
    double creator_seconds;  /* how long its creator took (get_or_create), 0 = not measured */
    int    stale;            /* 1: expired or soft-invalidated, served while it is regenerated */
} cachet_value_info;
typedef struct {
    /* Seconds a value stays fresh for this call, read-side as in dogpile:
     * 0 = the region's expiration_time, -1 = never expires, > 0 = override
     * (fractions allowed).  Anything else (other negatives, NaN, infinity,
     * over 290 years) is CACHET_EINVAL. */
    double expiration_time;
    /* Nonzero: a value that is there is returned however old it is, and
     * whether or not it was soft-invalidated.  Hard-invalidated values stay
     * gone. */
    int    ignore_expiration;
    /* get_or_create: asked before a created value is stored; 0 = return it
     * to the caller (and to waiting threads) without storing it. */
    cachet_should_cache_fn should_cache;
    void  *should_cache_arg;
    /* Non-NULL: filled with the returned value's metadata (see above). */
    cachet_value_info *info;
} cachet_options;

cachet_status cachet_get_ex(cachet_region *r, const char *key, const cachet_options *o,
                            void **value, size_t *len);
cachet_status cachet_get_or_create_ex(cachet_region *r, const char *key,
                                      cachet_creator create, void *arg,
                                      const cachet_options *o, void **value, size_t *len);

/* get_or_create for many keys: one call of the creator for all the keys
 * that are missing (it fills value from malloc, len and status of each item
 * it is given; the region takes the values).  Keys another thread is
 * creating are waited for and get that thread's value. */
typedef cachet_status (*cachet_multi_creator)(void *arg, cachet_item *items, size_t n);
cachet_status cachet_get_or_create_multi(cachet_region *r, cachet_item *items, size_t n,
                                         cachet_multi_creator create, void *arg,
                                         const cachet_options *o);

/* ---- memoising C functions (dogpile's cache_on_arguments) ----
 * The key is "function|arg1 arg2 ..." (with "function|namespace|..." when a
 * namespace is given), as dogpile's function_key_generator builds it.
 * Returns the bytes the key needs including the NUL; writes at most size. */
size_t cachet_function_key(char *buf, size_t size, const char *function, const char *namespace_,
                           const char *const *args, size_t nargs);
/* get_or_create under that key. */
cachet_status cachet_memoize(cachet_region *r, const char *function, const char *const *args,
                             size_t nargs, cachet_creator create, void *arg,
                             void **value, size_t *len);

/* ---- statistics of this process's region ---- */
typedef struct {
    uint64_t hits;
    uint64_t misses;          /* absent, expired or invalidated */
    uint64_t sets;
    uint64_t deletes;
    uint64_t errors;          /* backend failures returned or absorbed */
    uint64_t creator_calls;
    uint64_t lock_waits;      /* get_or_create callers that waited for another's creator */
    uint64_t stale_served;    /* old values served while another caller regenerates */
    uint64_t corrupt;         /* stored bytes without a valid cachet header */
    uint64_t fallbacks;       /* get_or_create calls that bypassed a failing backend */
    /* (fields above are stable; new ones are added here, at the end) */
    uint64_t early_refreshes; /* fresh values regenerated before they expired (cachet_early_refresh) */
    uint64_t background_refreshes; /* regenerations handed to refresh threads (cachet_refresh_threads) */
} cachet_stat_counters;
cachet_status cachet_stats(cachet_region *r, cachet_stat_counters *out);

/* Deletes values that can never be served again (expired beyond the
 * region's expiration_time, hard-invalidated, or not cachet's) and then
 * lets the backend reclaim space.  For backends without a server-side TTL
 * (dbm, memory); CACHET_ENOTSUP where there is nothing to do.  *removed
 * (may be NULL) counts the deleted values. */
cachet_status cachet_compact(cachet_region *r, size_t *removed);

/* The backend's own view: one callback per server or counter.  name is
 * "server" for a per-server line (value: "host:port up" ...). */
typedef void (*cachet_report_fn)(void *arg, const char *name, const char *value);
/* Round-trips nothing; asks the backend for its servers' state. */
cachet_status cachet_backend_report(cachet_region *r, cachet_report_fn fn, void *arg);


/* ---- non-blocking use from an event loop (nginx, libevent, libuv, epoll) ----
 * Operations submitted from the loop's thread are queued and run on the
 * queue's worker threads (threads = 0: 4; at most 256); their completions
 * wait until the loop sees cachet_async_fd() readable and calls
 * cachet_async_dispatch(), which runs the callbacks in the loop's own
 * thread.  The fd is one eventfd (non-blocking, close-on-exec, owned by the
 * queue): watch it for reading, level- or edge-triggered; dispatch empties
 * it.  Keys and values are copied at submit; a value handed to done is the
 * callee's to cachet_free (a set's, add's or delete's completion gets
 * value = NULL, len = 0).  Inside done, cachet_errmsg() describes that
 * operation's failure.
 *
 * - Submits never block on the backend: a submit returns at once with
 *   CACHET_OK (done will be called exactly once, with the operation's
 *   status, also when the server dies or the queue is closed meanwhile) or
 *   with an error (done will never be called).
 * - Bounded: at most 65,536 operations may be outstanding (submitted and
 *   their callback not yet run); past that a submit returns CACHET_ENOMEM,
 *   "queue is full".  A loop that stops dispatching thus stops accepting.
 * - Operations run concurrently on the workers, so two operations submitted
 *   together may complete in either order: for read-your-write, submit the
 *   get from the set's callback.  Queued gets are folded, up to 64 at a
 *   time, into one cachet_get_multi (one redis MGET or memcached multi-get).
 * - A callback may submit more work, and may call dispatch; done may be NULL
 *   (fire and forget: cachet frees any value).
 * - Submits may come from any thread (callbacks still run in the thread
 *   that dispatches); dispatch and close are the loop's: one thread at a
 *   time per queue.
 * - get_or_create's creator runs on a worker thread, not the loop's: it
 *   must not touch the loop's state without its own locking, and must not
 *   wait for a completion of the same queue.
 * - The region must stay open until cachet_async_close returns; several
 *   queues may share one region.
 * - fork(): a queue does not survive into the child (its threads are the
 *   parent's).  In the child every call on it returns CACHET_EINVAL (fd:
 *   -1, dispatch: 0) saying so; cachet_async_close there releases the fd
 *   and memory without running callbacks.  The child opens its own queue on
 *   its region (which does survive fork). */
typedef struct cachet_async cachet_async;
typedef void (*cachet_async_done)(void *arg, cachet_status st, void *value, size_t len);
cachet_status cachet_async_open(cachet_region *r, unsigned threads, cachet_async **out); /* 0 = default */
int           cachet_async_fd(const cachet_async *q);
size_t        cachet_async_dispatch(cachet_async *q);   /* runs waiting callbacks, returns how many */
cachet_status cachet_async_get(cachet_async *q, const char *key, cachet_async_done done, void *arg);
cachet_status cachet_async_set(cachet_async *q, const char *key, const void *value, size_t len,
                               cachet_async_done done, void *arg);
cachet_status cachet_async_get_or_create(cachet_async *q, const char *key,
                                         cachet_creator create, void *create_arg,
                                         cachet_async_done done, void *arg);
/* Every queued operation completes first: the ones not yet run are run
 * (unless the backend is down: once one fails with CACHET_EUNAVAILABLE or
 * CACHET_ETIMEDOUT during close, the rest complete with that status
 * without being tried), and every remaining callback runs, in the closing
 * thread, before it returns.  Submits during close (from those callbacks)
 * return CACHET_EINVAL.  Called from inside a callback, the close happens
 * when that dispatch returns.  NULL is a no-op. */
void          cachet_async_close(cachet_async *q);

/* The same style for the other region operations.  o (may be NULL) is
 * copied at submit.  add completes with CACHET_OK or CACHET_EXISTS. */
cachet_status cachet_async_delete(cachet_async *q, const char *key, cachet_async_done done, void *arg);
cachet_status cachet_async_set_ex(cachet_async *q, const char *key, const void *value, size_t len,
                                  const cachet_set_options *o, cachet_async_done done, void *arg);
cachet_status cachet_async_add(cachet_async *q, const char *key, const void *value, size_t len,
                               const cachet_set_options *o, cachet_async_done done, void *arg);
/* get_multi: done gets the n items in the order of keys, each with its
 * status and (on a hit) its value, which is the callee's to cachet_free,
 * as after cachet_get_multi; the array and its keys are cachet's and gone
 * when done returns.  st is what
 * cachet_get_multi returned: CACHET_OK when every item was handled. */
typedef void (*cachet_async_multi_done)(void *arg, cachet_status st, cachet_item *items, size_t n);
cachet_status cachet_async_get_multi(cachet_async *q, const char *const *keys, size_t n,
                                     cachet_async_multi_done done, void *arg);
/* The most queued gets a worker folds into one cachet_get_multi: 1 = each
 * get on its own, 0 = the default (64, also the most).  For measuring, and
 * for backends whose multi-get costs more than the gets it replaces. */
cachet_status cachet_async_set_batch(cachet_async *q, unsigned max);
/* Operations submitted and whose callback has not run yet. */
size_t        cachet_async_outstanding(const cachet_async *q);
/* Metrics of this process's region in the Prometheus text format 0.0.4:
 * the counters above, one up/down gauge per server, the backend's own
 * figures, and with the metrics proxy per-operation latency histograms
 * (README, "Metrics").  snprintf-like: returns the length of the whole
 * text (without the NUL), writes at most size bytes, NUL included; buf may
 * be NULL when size is 0.  The text can grow between two calls (a new
 * server, a first latency): size the buffer with room to spare. */
size_t cachet_metrics_prometheus(cachet_region *r, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* CACHET_CACHET_H */
