/* The memcached protocols, ASCII (mc_text.c) and binary (mc_bin.c), behind
 * one set of functions.  Each checks every reply against its request before
 * any byte reaches the caller: a reply that does not answer the request is
 * MC_EPROTO (the connection must then be closed), never data.  Sizes are
 * checked against maxval before anything is allocated.  They need no
 * server: the fuzzers drive them through a fed mc_sock. */
#ifndef CACHET_MC_PROTO_H
#define CACHET_MC_PROTO_H

#include "mc_sock.h"

#define MC_KEY_MAX 250

/* A hit of a multi-get: item idx of the request; the callee owns value
 * (malloc).  Returns MC_OK to go on. */
typedef int (*mc_hit_fn)(void *arg, size_t idx, void *value, size_t len);

typedef struct mc_proto {
    const char *name;
    /* One key.  cas: NULL, or where the item's CAS goes (text: gets). */
    int (*get)(mc_sock *s, const char *key, size_t klen, size_t maxval, double dl, void **value,
               size_t *len, uint64_t *cas);
    /* Many keys of one server: the request, then (after other servers'
     * requests went out) the answers; keys may repeat. */
    int (*mget_send)(mc_sock *s, const char *const *keys, const size_t *klens, size_t n,
                     double dl);
    int (*mget_recv)(mc_sock *s, const char *const *keys, const size_t *klens, size_t n,
                     size_t maxval, double dl, mc_hit_fn fn, void *arg);
    /* Pipelined writes: queue any number of one kind, flush, then read one
     * reply per queued request, in order (every one is read: no noreply). */
    int (*store_queue)(mc_sock *s, int add, const char *key, size_t klen, const void *value,
                       size_t len, long exptime, double dl);
    int (*del_queue)(mc_sock *s, const char *key, size_t klen, uint64_t cas);
    int (*reply)(mc_sock *s, double dl);
    int (*flush_all)(mc_sock *s, double dl);
} mc_proto;

extern const mc_proto mc_text;
extern const mc_proto mc_bin;

/* Binary: SASL PLAIN (LIST_MECHS, then AUTH), right after connecting. */
int mc_bin_sasl(mc_sock *s, const char *user, const char *pass, double dl);

/* Strict decimal: digits only, no sign or space, at most max.  0 ok, -1 not. */
int mc_parse_u64(const char *p, size_t n, uint64_t max, uint64_t *out);

#endif
