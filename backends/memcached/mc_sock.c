/* One connection to one memcached server under one deadline per call (see
 * mc_sock.h).  Every wait is a poll() bounded by what is left of the
 * deadline, so the total of connect + send + every read never exceeds it,
 * whatever the server's pace. */
#define _GNU_SOURCE
#include "mc_sock.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE 16384

double mc_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void mc_sock_init(mc_sock *s)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

int mc_sock_fail(mc_sock *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return rc;
}

void mc_sock_quote(char *out, size_t outsz, const char *p, size_t n, size_t max)
{
    size_t o = 0;
    if (!outsz)
        return;
    for (size_t i = 0; i < n && i < max && o + 5 < outsz; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
    }
    if (n > max && o + 4 < outsz) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
}

/* Waits for ev on the socket until the deadline: MC_OK or MC_ETIMEDOUT. */
static int wait_fd(mc_sock *s, short ev, double deadline, const char *doing)
{
    for (;;) {
        double left = deadline - mc_clock();
        struct pollfd p = {.fd = s->fd, .events = ev};
        /* rounded up: never wake just before it.  Past the deadline, one
         * look without waiting: a multi-operation reads its servers one
         * after the other, and an answer that is already here is not late */
        int ms = left > 0 ? (int)(left * 1000.0) + 1 : 0, n;
        n = poll(&p, 1, ms);
        if (n > 0)
            return MC_OK;                  /* readable, writable, or an error to collect */
        if (n < 0 && errno != EINTR)
            return mc_sock_fail(s, MC_EIO, "poll: %s", strerror(errno));
        if (n == 0 && left <= 0)
            return mc_sock_fail(s, MC_ETIMEDOUT, "timed out %s", doing);
    }
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* connect() on a non-blocking socket, finished by poll before the deadline. */
static int connect_one(mc_sock *s, int family, const struct sockaddr *sa, socklen_t salen,
                       double deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), rc, one = 1, soerr = 0;
    socklen_t sl = sizeof soerr;

    if (fd < 0)
        return mc_sock_fail(s, MC_EIO, "socket: %s", strerror(errno));
    if (set_nonblock(fd) < 0) {
        close(fd);
        return mc_sock_fail(s, MC_EIO, "fcntl: %s", strerror(errno));
    }
    if (family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    if (connect(fd, sa, salen) == 0)
        return MC_OK;
    if (errno != EINPROGRESS && errno != EAGAIN) {
        rc = mc_sock_fail(s, MC_EIO, "connect: %s", strerror(errno));
        goto fail;
    }
    if ((rc = wait_fd(s, POLLOUT, deadline, "connecting")) != MC_OK)
        goto fail;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
        rc = mc_sock_fail(s, MC_EIO, "connect: %s", strerror(soerr ? soerr : errno));
        goto fail;
    }
    return MC_OK;
fail:
    close(fd);
    s->fd = -1;
    return rc;
}

int mc_sock_connect(mc_sock *s, const char *host, unsigned port, double deadline)
{
    mc_sock_close(s);
    if (port == 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(host) >= sizeof un.sun_path)
            return mc_sock_fail(s, MC_EIO, "unix socket path too long");
        memcpy(un.sun_path, host, strlen(host) + 1);
        return connect_one(s, AF_UNIX, (struct sockaddr *)&un, sizeof un, deadline);
    }
    {
        /* (a name, not an address, is resolved by getaddrinfo, which no
         * deadline bounds: configure addresses where that matters) */
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res,
                        *ai;
        char ps[16];
        int rc = MC_EIO, g;
        snprintf(ps, sizeof ps, "%u", port);
        if ((g = getaddrinfo(host, ps, &hints, &res)) != 0)
            return mc_sock_fail(s, MC_EIO, "cannot resolve host: %s", gai_strerror(g));
        for (ai = res; ai; ai = ai->ai_next) {
            rc = connect_one(s, ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline);
            if (rc == MC_OK || rc == MC_ETIMEDOUT)
                break;
        }
        freeaddrinfo(res);
        return rc;
    }
}

int mc_sock_set_patience(mc_sock *s, double secs)
{
    struct timeval tv = {(time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6)};
    int fl;
    if (s->fd < 0 || secs <= 0.002)
        return MC_OK;
    if (setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        (fl = fcntl(s->fd, F_GETFL)) < 0 || fcntl(s->fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return MC_OK;                      /* stays non-blocking: poll + recv */
    s->patience = secs;
    return MC_OK;
}

void mc_sock_close(mc_sock *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->rbuf);
    free(s->wbuf);
    s->rbuf = s->wbuf = NULL;
    s->rcap = s->rpos = s->rend = s->wcap = s->wlen = 0;
    s->fed = 0;
    s->queued = 0;
    s->acked = s->opaque;
    s->sent = 0;
    s->patience = 0;
}

int mc_sock_is_open(const mc_sock *s)
{
    return s->fd >= 0 || s->fed;
}

size_t mc_sock_buffered(const mc_sock *s)
{
    return s->rend - s->rpos;
}

int mc_sock_pending(mc_sock *s)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    char b;
    if (s->rend > s->rpos)
        return 1;
    if (s->fd < 0 || poll(&p, 1, 0) <= 0)
        return 0;
    /* readable: unsolicited bytes (1), or the server hung up (2) */
    return recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0 ? 1 : 2;
}

int mc_sock_feed(mc_sock *s, const void *p, size_t n)
{
    mc_sock_close(s);
    s->fed = 1;
    if (!(s->rbuf = malloc(n ? n : 1)))
        return MC_ENOMEM;
    memcpy(s->rbuf, p, n);
    s->rcap = s->rend = n;
    s->rpos = 0;
    return MC_OK;
}

/* ---- output ---- */

int mc_sock_out(mc_sock *s, const void *p, size_t n)
{
    if (n == 0)
        return MC_OK;
    if (s->wlen + n > s->wcap) {
        size_t cap = s->wcap ? s->wcap : 1024;
        unsigned char *nb;
        while (cap < s->wlen + n)
            cap *= 2;
        if (!(nb = realloc(s->wbuf, cap)))
            return mc_sock_fail(s, MC_ENOMEM, "out of memory");
        s->wbuf = nb;
        s->wcap = cap;
    }
    memcpy(s->wbuf + s->wlen, p, n);
    s->wlen += n;
    return MC_OK;
}

static int write_all(mc_sock *s, const unsigned char *p, size_t n, double deadline)
{
    if (s->fed)
        return MC_OK;                     /* fuzzing: requests go nowhere */
    if (s->fd < 0)
        return mc_sock_fail(s, MC_EIO, "not connected");
    while (n) {
        ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(s, POLLOUT, deadline, "sending the request");
            if (rc != MC_OK)
                return rc;
            continue;
        }
        return mc_sock_fail(s, MC_EIO, "send: %s", w < 0 ? strerror(errno) : "nothing written");
    }
    return MC_OK;
}

int mc_sock_flush(mc_sock *s, double deadline)
{
    int rc = write_all(s, s->wbuf, s->wlen, deadline);
    s->wlen = 0;
    s->sent = 1;
    return rc;
}

int mc_sock_send(mc_sock *s, const void *p, size_t n, double deadline)
{
    int rc = mc_sock_flush(s, deadline);
    return rc != MC_OK ? rc : write_all(s, p, n, deadline);
}

/* ---- input ---- */

/* Receives at least one byte into buf (cap bytes), waiting on the
 * deadline for the socket to have some; *got says how many. */
static int recv_some(mc_sock *s, void *buf, size_t cap, double deadline, size_t *got)
{
    for (;;) {
        ssize_t r = recv(s->fd, buf, cap, MSG_DONTWAIT);
        if (r > 0) {
            *got = (size_t)r;
            return MC_OK;
        }
        if (r == 0)
            return mc_sock_fail(s, MC_EIO, "connection closed by the server");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = wait_fd(s, POLLIN, deadline, "waiting for the reply");
            if (rc != MC_OK)
                return rc;
            continue;
        }
        return mc_sock_fail(s, MC_EIO, "recv: %s", strerror(errno));
    }
}

/* Reads what the socket has into the buffer (at least one byte). */
static int fill(mc_sock *s, double deadline)
{
    if (s->fed)
        return mc_sock_fail(s, MC_EIO, "connection closed by the server (end of input)");
    if (s->fd < 0)
        return mc_sock_fail(s, MC_EIO, "not connected");
    if (!s->rbuf) {
        if (!(s->rbuf = malloc(RBUF_SIZE)))
            return mc_sock_fail(s, MC_ENOMEM, "out of memory");
        s->rcap = RBUF_SIZE;
    }
    if (s->rpos == s->rend)
        s->rpos = s->rend = 0;
    else if (s->rend == s->rcap) {
        memmove(s->rbuf, s->rbuf + s->rpos, s->rend - s->rpos);
        s->rend -= s->rpos;
        s->rpos = 0;
    }
    if (s->sent) {
        /* the reply to what was just sent is not there yet: block in recv
         * if SO_RCVTIMEO ends within 1 ms of the deadline, else poll first
         * (a recv without waiting could only say EAGAIN) */
        int rc;
        s->sent = 0;
        if (s->patience > 0 && deadline - mc_clock() >= s->patience - 0.001) {
            ssize_t r = recv(s->fd, s->rbuf + s->rend, s->rcap - s->rend, 0);
            if (r > 0) {
                s->rend += (size_t)r;
                return MC_OK;
            }
            if (r == 0)
                return mc_sock_fail(s, MC_EIO, "connection closed by the server");
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return mc_sock_fail(s, MC_EIO, "recv: %s", strerror(errno));
            /* timed out (or a signal): the loop below decides, on the deadline */
        } else if ((rc = wait_fd(s, POLLIN, deadline, "waiting for the reply")) != MC_OK) {
            return rc;
        }
    }
    {
        size_t got;
        int rc = recv_some(s, s->rbuf + s->rend, s->rcap - s->rend, deadline, &got);
        if (rc == MC_OK)
            s->rend += got;
        return rc;
    }
}

int mc_sock_line(mc_sock *s, size_t max, double deadline, char **line, size_t *len)
{
    size_t scanned = 0;
    if (max > RBUF_SIZE - 4)
        max = RBUF_SIZE - 4;             /* a line and its CRLF always fit the buffer */
    for (;;) {
        unsigned char *b = s->rbuf + s->rpos, *nl;
        size_t have = s->rend - s->rpos;
        if (have > scanned && (nl = memchr(b + scanned, '\n', have - scanned)) != NULL) {
            size_t n = (size_t)(nl - b);
            if (n == 0 || b[n - 1] != '\r') {
                char q[80];
                mc_sock_quote(q, sizeof q, (char *)b, n, 40);
                return mc_sock_fail(s, MC_EPROTO, "protocol error: a line ending without "
                                    "\\r\\n: \"%s\"", q);
            }
            if (n - 1 > max)
                break;
            b[n - 1] = 0;
            *line = (char *)b;
            *len = n - 1;
            s->rpos += n + 1;
            return MC_OK;
        }
        scanned = have;
        if (have > max + 1)
            break;
        {
            int rc = fill(s, deadline);
            if (rc != MC_OK)
                return rc;
        }
        /* fill may have moved the bytes to the front: rescan from the same offset */
    }
    return mc_sock_fail(s, MC_EPROTO, "protocol error: a reply line longer than %zu bytes", max);
}

int mc_sock_read(mc_sock *s, void *dst, size_t n, double deadline)
{
    unsigned char *d = dst;
    while (n) {
        size_t have = s->rend - s->rpos;
        if (have) {
            size_t k = have < n ? have : n;
            if (d) {
                memcpy(d, s->rbuf + s->rpos, k);
                d += k;
            }
            s->rpos += k;
            n -= k;
            continue;
        }
        if (d && n >= RBUF_SIZE && s->fd >= 0 && !s->fed) {
            /* a large value goes straight into its destination */
            size_t got;
            int rc = recv_some(s, d, n, deadline, &got);
            if (rc != MC_OK)
                return rc;
            d += got;
            n -= got;
            continue;
        }
        {
            int rc = fill(s, deadline);
            if (rc != MC_OK)
                return rc;
        }
    }
    return MC_OK;
}
