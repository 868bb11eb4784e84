/* One connection to one memcached server, with its own read and write
 * buffers, where every step of a call (connect, send, each read) runs
 * against ONE absolute deadline on the monotonic clock: a server that
 * drips a byte at a time cannot stretch a call past socket_timeout.
 *
 * Nothing here knows the memcached protocol (mc_text.c and mc_bin.c do),
 * nor the host table: a mc_sock is plain bytes in and out.  A mc_sock with
 * fd -1 and bytes put in with mc_sock_feed() reads those bytes and then
 * "end of input": that is how the fuzzers drive the reply parsers without a
 * server. */
#ifndef CACHET_MC_SOCK_H
#define CACHET_MC_SOCK_H

#include <stddef.h>
#include <stdint.h>

/* Outcomes.  >= 0: the server answered (the connection stays usable);
 * < 0: the connection is in doubt and must be closed. */
enum {
    MC_OK = 0,
    MC_MISS = 1,         /* not found */
    MC_NOTSTORED = 2,    /* add of an existing key, set refused without reason */
    MC_EXISTS = 3,       /* cas mismatch */
    MC_TOOBIG = 4,       /* the server refused the value as too large */
    MC_SRVERR = 5,       /* SERVER_ERROR / CLIENT_ERROR / an error status: s->err */
    MC_ETIMEDOUT = -1,   /* the call's deadline passed */
    MC_EIO = -2,         /* connect refused, reset, closed by the server */
    MC_EPROTO = -3,      /* the reply does not answer the request: s->err */
    MC_ENOMEM = -4,
    MC_EAUTH = -5,       /* SASL refused: s->err (never the password) */
    MC_ETOOBIG = -6      /* a value over max_value_size: not sent (nothing written) */
};

#define MC_LINE_MAX 2048         /* longest text reply line accepted */

typedef struct mc_sock {
    int            fd;
    unsigned char *rbuf;         /* buffered input: rbuf[rpos, rend) */
    size_t         rcap, rpos, rend;
    unsigned char *wbuf;         /* output queued by mc_sock_out */
    size_t         wcap, wlen;
    uint32_t       opaque;       /* binary protocol: the next request's id */
    uint32_t       acked;        /* binary: the id the next queued reply must carry */
    unsigned       queued;       /* binary: replies still to read */
    uint8_t        pend_op;      /* binary: the opcode of the queued requests */
    int            fed;
    int            sent;         /* a request just went out: its reply is not there yet */
    double         patience;     /* SO_RCVTIMEO of the blocking socket (0: none) */          /* fuzzing: no fd, input from mc_sock_feed */
    char           err[256];     /* what went wrong, for messages */
    unsigned       tag;          /* the owner's (the host's epoch when it connected) */
} mc_sock;

double mc_clock(void);                      /* CLOCK_MONOTONIC, seconds */
void   mc_sock_init(mc_sock *s);
/* port 0: host is a unix socket path.  TCP_NODELAY, non-blocking. */
int    mc_sock_connect(mc_sock *s, const char *host, unsigned port, double deadline);
void   mc_sock_close(mc_sock *s);           /* also frees the buffers */
/* Makes the connected socket blocking with SO_RCVTIMEO = secs, the length
 * of a call's deadline: the first read after a request may then block in
 * recv() (one syscall, where poll + recv are two) when at least secs less
 * 1 ms of the deadline is left, so it never overshoots it by more than
 * 1 ms.  Every other wait is a poll() on what is left. */
int    mc_sock_set_patience(mc_sock *s, double secs);
int    mc_sock_is_open(const mc_sock *s);
/* A connection with anything to read between requests is in doubt: 1
 * bytes buffered or readable, 2 the server closed it, 0 clean. */
int    mc_sock_pending(mc_sock *s);
size_t mc_sock_buffered(const mc_sock *s);

/* Queue output (copied); mc_sock_flush writes the queue. */
int    mc_sock_out(mc_sock *s, const void *p, size_t n);
int    mc_sock_flush(mc_sock *s, double deadline);
/* Flushes the queue, then writes p directly (large values are not copied). */
int    mc_sock_send(mc_sock *s, const void *p, size_t n, double deadline);

/* A line ending in \r\n, at most max bytes: *line points into the buffer
 * (NUL-terminated, without the CRLF) and stays valid until the next read. */
int    mc_sock_line(mc_sock *s, size_t max, double deadline, char **line, size_t *len);
/* Exactly n bytes into dst (dst may be NULL: discard). */
int    mc_sock_read(mc_sock *s, void *dst, size_t n, double deadline);

/* Sets s->err (printf format) and returns rc. */
int    mc_sock_fail(mc_sock *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Server text for a message: printable ASCII only, at most max bytes. */
void   mc_sock_quote(char *out, size_t outsz, const char *p, size_t n, size_t max);

/* Fuzzing: no socket, these bytes are the input. */
int    mc_sock_feed(mc_sock *s, const void *p, size_t n);

#endif
