/*
 * cachet plugin ABI: what a backend shared object exports.
 *
 * A backend is a shared object (libtool -module) that exports one function,
 * cachet_backend_entry(), returning a pointer to a const vtable.  The loader
 * refuses a vtable whose abi_version differs from CACHET_BACKEND_ABI_VERSION.
 *
 * A backend stores opaque bytes under opaque keys.  It never sees cachet's
 * value header, expiration, or invalidation: the region does all that.  It
 * reports failures by returning a status and describing them with
 * cachet_backend_error() (never by printing).
 *
 * Memory: a value a backend hands back (get, get_multi) must come from
 * malloc() with room for one byte more than its length, and that byte must
 * be NUL: the region hands values on as they are, and every value cachet
 * gives a caller ends in a NUL not counted in its length (so string users
 * cannot read past it).  The caller frees it with free().  A backend that
 * copies values out of its own memory may take the block from
 * cachet_backend_value_alloc() instead, which is malloc() reusing what the
 * thread last gave back with cachet_free(), or have
 * cachet_backend_value_copy() make the whole copy.
 *
 * Threads: the region calls a backend from many threads at once unless the
 * vtable sets CACHET_CAP_SERIALIZE, in which case calls on one instance are
 * serialized by the region.
 */
#ifndef CACHET_BACKEND_H
#define CACHET_BACKEND_H

#include <stdarg.h>
#include <stddef.h>
#include <cachet/cachet.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bump on any incompatible change to the structs below.  2: set and
 * set_multi carry a lifetime, add is new. */
#define CACHET_BACKEND_ABI_VERSION 2

/* capability bits (cachet_backend_ops.caps) */
#define CACHET_CAP_SERIALIZE   0x01u  /* not thread-safe: the region serializes calls */
#define CACHET_CAP_SERVER_TTL  0x02u  /* drops a value itself after the ttl a write carries */
#define CACHET_CAP_DIST_LOCK   0x04u  /* lock/unlock work across processes */
#define CACHET_CAP_PERSISTENT  0x08u  /* values survive the process */
/* The backend keeps the bytes it is given itself (process memory, a local
 * file): what get returns is what was set under that key.  Without it (a
 * server behind a connection) the region binds every value to its key and
 * refuses a value that comes back under another key. */
#define CACHET_CAP_LOCAL       0x10u

/* key rules (cachet_backend_ops.key_rules): keys breaking them are mangled */
#define CACHET_KEY_NO_SPACE    0x01u  /* no space bytes */
#define CACHET_KEY_NO_CONTROL  0x02u  /* no bytes < 0x20 or 0x7f */

/* One backend argument: backend_argument = name:value, split on the first colon. */
typedef struct {
    const char *name;
    const char *value;
} cachet_backend_arg;

typedef struct {
    const cachet_backend_arg *args;
    size_t nargs;
    int debug;                 /* debug_cache_backend */
} cachet_backend_params;

/* One item of a multi-operation, with the key already prefixed/mangled. */
typedef struct {
    const char   *key;
    size_t        klen;
    void         *value;       /* get_multi: set by the backend (malloc); set_multi: read */
    size_t        len;
    cachet_status status;      /* set by the backend for each item */
    double        ttl;         /* set_multi: the item's lifetime (see set) */
} cachet_backend_item;

typedef void (*cachet_backend_report_fn)(void *arg, const char *name, const char *value);

/* One server of a networked backend as the backend sees it now (the
 * servers operation).  Strings are the backend's: name lives as long as
 * the instance, reason is a static string. */
typedef struct {
    const char *name;          /* "host:port" (or socket path) as configured */
    int         up;            /* 1: in use; 0: marked down */
    const char *reason;        /* why it is down: "refused", "timeout", "protocol error", ...;
                                  NULL when up */
    uint64_t    failures;      /* failed calls to it since open */
    double      since_change;  /* seconds since up last changed; -1 = never changed */
} cachet_server_state;

typedef struct cachet_backend_ops {
    unsigned    abi_version;   /* CACHET_BACKEND_ABI_VERSION */
    const char *name;          /* canonical name, e.g. "memory" */
    unsigned    caps;          /* CACHET_CAP_* */
    size_t      max_key_len;   /* longest key accepted; 0 = no limit */
    unsigned    key_rules;     /* CACHET_KEY_* */

    /* Parse args, allocate the instance.  Unknown or malformed arguments are
     * CACHET_EINVAL with a message naming the argument.  The argument
     * strings are valid only during open (the caller may free its config
     * right after): copy what the instance keeps. */
    cachet_status (*open)(const cachet_backend_params *p, void **state);
    void          (*close)(void *state);

    /* CACHET_OK (value from malloc) or CACHET_MISS, else an error. */
    cachet_status (*get)(void *state, const char *key, size_t klen, void **value, size_t *len);
    /* ttl: seconds after which the backend may drop the value (a server-side
     * TTL: memcached exptime, redis PX; memory drops it itself), or 0 for
     * the backend's own default (its expiration argument, else for ever).
     * A backend without CACHET_CAP_SERVER_TTL may ignore it: the region's
     * value header carries the lifetime for readers anyway. */
    cachet_status (*set)(void *state, const char *key, size_t klen, const void *value, size_t len,
                         double ttl);
    /* Deleting an absent key is CACHET_OK. */
    cachet_status (*del)(void *state, const char *key, size_t klen);
    /* Optional: store only if no value is under the key: CACHET_OK (stored)
     * or CACHET_EXISTS, atomically across processes (memcached add, redis
     * SET NX).  NULL: the region checks with get then sets (atomic between
     * the threads of a process only). */
    cachet_status (*add)(void *state, const char *key, size_t klen, const void *value, size_t len,
                         double ttl);

    /* Optional (NULL: the region loops over get/set/del).  Return CACHET_OK
     * when every item was handled, else the first error; set each status. */
    cachet_status (*get_multi)(void *state, cachet_backend_item *items, size_t n);
    cachet_status (*set_multi)(void *state, cachet_backend_item *items, size_t n);
    cachet_status (*delete_multi)(void *state, cachet_backend_item *items, size_t n);

    /* Optional cross-process lock for get_or_create (NULL: in-process only).
     * lock: CACHET_OK when taken, CACHET_MISS when held by another; token
     * identifies the owner for unlock. */
    cachet_status (*lock)(void *state, const char *key, size_t klen, void **token);
    cachet_status (*unlock)(void *state, const char *key, size_t klen, void *token);

    /* Optional: describe servers / own counters, one call of fn each. */
    cachet_status (*report)(void *state, cachet_backend_report_fn fn, void *arg);
    /* Optional: reclaim space (e.g. rewrite a file without its holes). */
    cachet_status (*compact)(void *state);
    /* Optional, for backends with no server-side TTL: visit every stored
     * value and delete those for which keep() returns 0.  The region's keep
     * drops expired, invalidated and foreign values. */
    cachet_status (*sweep)(void *state, int (*keep)(void *arg, const void *value, size_t len),
                           void *arg, size_t *removed);

    /* Optional fork() hooks, called by the region's pthread_atfork handlers
     * for every open instance: prepare takes the instance's locks so no
     * other thread holds them across the fork; parent releases them; child
     * releases them and drops what the child must not share with the
     * parent (sockets: a child must open its own connections). */
    void (*fork_prepare)(void *state);
    void (*fork_parent)(void *state);
    void (*fork_child)(void *state);

    /* Optional, for networked backends: fills at most max entries of out
     * with the state of each server, returns how many servers there are
     * (possibly more than max).  Called from any thread at any time
     * (metrics scrapes): it must not block on a server. */
    size_t (*servers)(void *state, cachet_server_state *out, size_t max);

    /* Optional, for backends whose server can tell other processes of a
     * change (redis pub/sub): what keeps the near proxy's L1 coherent
     * across processes.  id names the calling proxy instance, so that a
     * subscriber does not get its own publications back.
     * notify_publish: tells every subscriber on the same data (server and
     *   database) that key changed; one round trip.  A failure costs no
     *   correctness: the subscribers' ttl still bounds what they serve.
     * notify_subscribe: delivers the keys the others publish to fn, from a
     *   thread of the backend's own on a connection of its own, until
     *   notify_unsubscribe(handle) (which stops the thread before it
     *   returns).  fn(arg, NULL, 0) means "keys may have been missed" (the
     *   connection was lost and is back): forget everything.
     * NULL: the proxies rely on their ttl alone. */
    cachet_status (*notify_publish)(void *state, const char *id, const char *key, size_t klen);
    cachet_status (*notify_subscribe)(void *state, const char *id,
                                      void (*fn)(void *arg, const char *key, size_t klen),
                                      void *arg, void **handle);
    void          (*notify_unsubscribe)(void *state, void *handle);
} cachet_backend_ops;

/* The one symbol a plugin exports (declared here so a plugin's definition
 * is checked against it; the attribute keeps it visible when the plugin is
 * built with -fvisibility=hidden). */
#define CACHET_BACKEND_EXPORT __attribute__((visibility("default")))
CACHET_BACKEND_EXPORT const struct cachet_backend_ops *cachet_backend_entry(void);
typedef const cachet_backend_ops *(*cachet_backend_entry_fn)(void);
#define CACHET_BACKEND_ENTRY_SYMBOL "cachet_backend_entry"

/* ---- proxies: layers between the region and the backend ----
 *
 * A proxy is a plugin with the calls of a backend plus a handle on the
 * layer below it (the next proxy, or the backend).  The chain is configured
 * with cachet_proxies (outermost first) and cachet_proxy_argument
 * (PROXY:NAME:VALUE).  Each operation a proxy leaves NULL passes through to
 * the layer below, as in curl's connection filters: a proxy that wants to
 * see every read must set get and get_multi (a multi-operation it leaves
 * NULL goes straight past it).  A proxy's operations are called from many
 * threads at once; the backend's serialize lock applies to the backend
 * only.  A plugin file exports cachet_proxy_entry() returning this vtable;
 * its abi_version is checked like a backend's. */
typedef struct cachet_layer cachet_layer;

typedef struct cachet_proxy_ops {
    unsigned    abi_version;   /* CACHET_BACKEND_ABI_VERSION */
    const char *name;

    /* p holds this proxy's arguments (valid only during open); below is
     * the layer this proxy calls down into, valid until close. */
    cachet_status (*open)(const cachet_backend_params *p, cachet_layer *below, void **state);
    void          (*close)(void *state);

    cachet_status (*get)(void *state, const char *key, size_t klen, void **value, size_t *len);
    cachet_status (*set)(void *state, const char *key, size_t klen, const void *value, size_t len,
                         double ttl);
    cachet_status (*del)(void *state, const char *key, size_t klen);
    cachet_status (*add)(void *state, const char *key, size_t klen, const void *value, size_t len,
                         double ttl);
    cachet_status (*get_multi)(void *state, cachet_backend_item *items, size_t n);
    cachet_status (*set_multi)(void *state, cachet_backend_item *items, size_t n);
    cachet_status (*delete_multi)(void *state, cachet_backend_item *items, size_t n);
    cachet_status (*lock)(void *state, const char *key, size_t klen, void **token);
    cachet_status (*unlock)(void *state, const char *key, size_t klen, void *token);
    /* the proxy's own lines; the layers below report after it */
    cachet_status (*report)(void *state, cachet_backend_report_fn fn, void *arg);
    void (*fork_prepare)(void *state);
    void (*fork_parent)(void *state);
    void (*fork_child)(void *state);
} cachet_proxy_ops;

CACHET_BACKEND_EXPORT const struct cachet_proxy_ops *cachet_proxy_entry(void);
typedef const cachet_proxy_ops *(*cachet_proxy_entry_fn)(void);
#define CACHET_PROXY_ENTRY_SYMBOL "cachet_proxy_entry"

/* A proxy's calls into the layer below: the same contract as the backend
 * operations (a multi-operation the layers below lack is a loop of single
 * ones; lock is CACHET_ENOTSUP where no layer below has one). */
cachet_status cachet_layer_get(cachet_layer *below, const char *key, size_t klen,
                               void **value, size_t *len);
cachet_status cachet_layer_set(cachet_layer *below, const char *key, size_t klen,
                               const void *value, size_t len, double ttl);
cachet_status cachet_layer_del(cachet_layer *below, const char *key, size_t klen);
cachet_status cachet_layer_add(cachet_layer *below, const char *key, size_t klen,
                               const void *value, size_t len, double ttl);
cachet_status cachet_layer_get_multi(cachet_layer *below, cachet_backend_item *items, size_t n);
cachet_status cachet_layer_set_multi(cachet_layer *below, cachet_backend_item *items, size_t n);
cachet_status cachet_layer_delete_multi(cachet_layer *below, cachet_backend_item *items, size_t n);
cachet_status cachet_layer_lock(cachet_layer *below, const char *key, size_t klen, void **token);
cachet_status cachet_layer_unlock(cachet_layer *below, const char *key, size_t klen, void *token);
/* The notifications of the backend at the bottom of the chain
 * (cachet_backend_ops.notify_*): CACHET_ENOTSUP where it has none. */
cachet_status cachet_layer_notify_publish(cachet_layer *below, const char *id, const char *key,
                                          size_t klen);
cachet_status cachet_layer_notify_subscribe(cachet_layer *below, const char *id,
                                            void (*fn)(void *arg, const char *key, size_t klen),
                                            void *arg, void **handle);
void          cachet_layer_notify_unsubscribe(cachet_layer *below, void *handle);
/* The capabilities of the backend at the bottom of the chain, and its name. */
unsigned      cachet_layer_caps(const cachet_layer *below);
const char   *cachet_layer_backend(const cachet_layer *below);

/* ---- services libcachet offers to plugins ---- */

/* Records the detail of a failure for cachet_errmsg() and returns st, so a
 * backend can write `return cachet_backend_error(CACHET_EINVAL, "...")`. */
cachet_status cachet_backend_error(cachet_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same as malloc(n) (free() releases the block), but it first reuses
 * a block this thread gave back with cachet_free(): for a backend that
 * copies values out of its own memory, that saves a malloc and a free a
 * get.  NULL when out of memory. */
void *cachet_backend_value_alloc(size_t n);
/* A block from cachet_backend_value_alloc(n + 1) holding a copy of the n
 * bytes and a NUL after them: what a get hands back, in one call.  NULL
 * when out of memory. */
void *cachet_backend_value_copy(const void *bytes, size_t n);
/* Sends a message to the service's logger (if any). */
void cachet_backend_log(cachet_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Argument helpers: they name the backend and the argument in the error. */
const char   *cachet_backend_arg_get(const cachet_backend_params *p, const char *name);
cachet_status cachet_backend_arg_long(const cachet_backend_params *p, const char *backend,
                                      const char *name, long dflt, long min, long max, long *out);
cachet_status cachet_backend_arg_double(const cachet_backend_params *p, const char *backend,
                                        const char *name, double dflt, double min, double max,
                                        double *out);
cachet_status cachet_backend_arg_bool(const cachet_backend_params *p, const char *backend,
                                      const char *name, int dflt, int *out);
/* Fails naming the first argument not in the NULL-terminated list. */
cachet_status cachet_backend_args_check(const cachet_backend_params *p, const char *backend,
                                        const char *const *known);

#ifdef __cplusplus
}
#endif
#endif /* CACHET_BACKEND_H */
