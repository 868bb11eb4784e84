/* One redis connection's I/O under ONE deadline per call.
 *
 * hiredis 0.14's blocking calls bound each read() by SO_RCVTIMEO, never the
 * call: a server dripping a byte per 100 ms keeps redisGetReply going for
 * as long as it likes.  So the context is made non-blocking and driven
 * here: connect, then poll() on c->fd against the absolute deadline
 * (CLOCK_MONOTONIC) for every write and read, send() with MSG_NOSIGNAL
 * (hiredis's write() would raise SIGPIPE on a closed socket), recv() into
 * a buffer that the reply scanner (redis_reply.c) sees before the reader
 * does, and redisReaderGetReply for the parsed replies.
 *
 * A failure is classified by what happened here (the deadline passed, the
 * server closed, it broke the protocol, a syscall failed with its errno),
 * never by whatever errno an earlier call left behind. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <hiredis/sds.h>
#include "redis.h"

/* How far past the deadline a blocking read may end (see make_blocking). */
#define BLOCKING_SLACK 0.002

__attribute__((format(printf, 3, 4)))
static int failed(rfail *f, int kind, const char *fmt, ...)
{
    va_list ap;
    f->kind = kind;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof f->why, fmt, ap);
    va_end(ap);
    return -1;
}

/* Waits for ev on fd until the deadline: 1 ready, 0 deadline passed,
 * -1 poll failed (errno). */
static int wait_fd(int fd, short ev, double deadline)
{
    for (;;) {
        double left = deadline - r_now();
        struct pollfd pfd = {fd, ev, 0};
        int ms, r;
        if (left <= 0)
            return 0;
        ms = (int)(left * 1000.0) + 1;
        r = poll(&pfd, 1, ms);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Connected, the socket becomes blocking with SO_RCVTIMEO = the whole
 * socket_timeout: the common read (a pooled connection's first, the full
 * timeout still ahead) is then one recv() instead of poll() + recv().
 * Sends and every other read stay non-blocking (MSG_DONTWAIT, poll()). */
static int make_blocking(int fd, double timeout)
{
    struct timeval tv;
    int fl = fcntl(fd, F_GETFL);
    tv.tv_sec = (time_t)timeout;
    tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        return -1;
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

redisContext *rio_connect(const char *host, int port, const char *unix_path, double deadline,
                          double timeout, rfail *f)
{
    redisContext *c = unix_path ? redisConnectUnixNonBlock(unix_path)
                                : redisConnectNonBlock(host, port);
    int r, soerr = 0;
    socklen_t sl = sizeof soerr;

    if (!c) {
        failed(f, RF_OOM, "cannot connect: out of memory");
        return NULL;
    }
    if (c->err) {
        failed(f, RF_CONNECT, "cannot connect: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    r = wait_fd(c->fd, POLLOUT, deadline);
    if (r == 0) {
        failed(f, RF_DEADLINE, "cannot connect within socket_timeout (%.3g s)", timeout);
    } else if (r < 0) {
        failed(f, RF_IO, "cannot connect: poll: %s", strerror(errno));
    } else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
        failed(f, RF_CONNECT, "cannot connect: %s", strerror(soerr ? soerr : errno));
    } else if (make_blocking(c->fd, timeout) != 0) {
        failed(f, RF_IO, "cannot set socket options: %s", strerror(errno));
    } else {
        c->reader->fn = &rreply_functions;
        return c;
    }
    redisFree(c);
    return NULL;
}

/* Sends what hiredis buffered in c->obuf. */
static int flush_out(redisContext *c, double deadline, double timeout, rfail *f)
{
    size_t len = sdslen(c->obuf), off = 0;
    while (off < len) {
        ssize_t k = send(c->fd, c->obuf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            int e = errno, r;
            if (e == EINTR)
                continue;
            if (e != EAGAIN && e != EWOULDBLOCK)
                return failed(f, e == EPIPE || e == ECONNRESET ? RF_EOF : RF_IO,
                              "cannot send: %s", strerror(e));
            if ((r = wait_fd(c->fd, POLLOUT, deadline)) == 0)
                return failed(f, RF_DEADLINE, "could not send the request within "
                              "socket_timeout (%.3g s)", timeout);
            if (r < 0)
                return failed(f, RF_IO, "poll: %s", strerror(errno));
            continue;
        }
        off += (size_t)k;
    }
    sdsfree(c->obuf);
    c->obuf = sdsempty();
    return c->obuf ? 0 : failed(f, RF_OOM, "out of memory");
}

int rio_exec(redisContext *c, const rcmd *cmds, size_t n, redisReply **rep, double deadline,
             double timeout, size_t max_value, int *in_doubt, rfail *f)
{
    char buf[16384];
    rscan sc;
    size_t got = 0;
    int rc = -1;

    memset(rep, 0, n * sizeof *rep);
    *in_doubt = 0;
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].expect == RX_NONE)
            return failed(f, RF_OOM, "internal error: a command without a reply kind");
        if (redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK)
            return failed(f, RF_OOM, "out of memory");
    }
    if (flush_out(c, deadline, timeout, f) != 0)
        return -1;
    rscan_init(&sc, cmds, n, max_value);
    c->reader->privdata = &sc;
    while (got < n) {
        void *r = NULL;
        double left;
        ssize_t k;
        long used;
        int w;

        if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
            /* the scanner passed it, so this is the reader's own refusal
             * (nesting) or our createArray's; both are the server's fault,
             * except a real out of memory */
            if (sc.refused || c->reader->err != REDIS_ERR_OOM)
                failed(f, RF_PROTO, "%s", sc.refused ? "an array over its bound"
                                                      : c->reader->errstr);
            else
                failed(f, RF_OOM, "out of memory");
            goto out;
        }
        if (r) {
            rep[got++] = r;
            sc.reader_done = got;
            continue;
        }
        left = deadline - r_now();
        if (left >= timeout - BLOCKING_SLACK) {
            /* SO_RCVTIMEO (timeout) ends this read at most BLOCKING_SLACK
             * after the deadline */
            k = recv(c->fd, buf, sizeof buf, 0);
        } else {
            /* the rest of a reply is often there already: poll only when not */
            k = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if ((w = wait_fd(c->fd, POLLIN, deadline)) == 0) {
                    failed(f, RF_DEADLINE, "no complete reply within socket_timeout (%.3g s)",
                           timeout);
                    goto out;
                }
                if (w < 0) {
                    failed(f, RF_IO, "poll: %s", strerror(errno));
                    goto out;
                }
                continue;
            }
        }
        if (k == 0) {
            failed(f, RF_EOF, "the server closed the connection");
            goto out;
        }
        if (k < 0) {
            int e = errno;
            if (e == EINTR || e == EAGAIN || e == EWOULDBLOCK)
                continue;
            failed(f, e == ECONNRESET ? RF_EOF : RF_IO, "cannot read: %s", strerror(e));
            goto out;
        }
        if ((used = rscan_feed(&sc, buf, (size_t)k)) < 0) {
            failed(f, RF_PROTO, "%s", sc.why);
            goto out;
        }
        if (used < k)
            *in_doubt = 1;   /* more than was asked for: never reuse this connection */
        if (used > 0 && redisReaderFeed(c->reader, buf, (size_t)used) != REDIS_OK) {
            failed(f, RF_OOM, "out of memory");
            goto out;
        }
    }
    if (c->reader->pos < c->reader->len)
        *in_doubt = 1;
    for (size_t i = 0; i < n; i++) {
        char why[200];
        if (rreply_check(&cmds[i], rep[i], why, sizeof why) != 0) {
            if (n > 1)
                failed(f, RF_PROTO, "reply %zu of %zu: %s", i + 1, n, why);
            else
                failed(f, RF_PROTO, "%s", why);
            goto out;
        }
    }
    rc = 0;
out:
    c->reader->privdata = NULL;
    if (rc != 0) {
        c->err = c->err ? c->err : REDIS_ERR_OTHER;   /* never reused */
        for (size_t i = 0; i < n; i++)
            if (rep[i]) {
                freeReplyObject(rep[i]);
                rep[i] = NULL;
            }
    }
    return rc;
}

int rio_pending(redisContext *c, int *eof)
{
    char b;
    ssize_t k;
    *eof = 0;
    if (c->reader->pos < c->reader->len)
        return 1;
    k = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (k == 0)
        *eof = 1;
    return k >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
