/* The misbehaving loopback server of tests/hostile.h. */
#define _GNU_SOURCE
#include "hostile.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What a connection's thread needs, copied at accept: the thread never
 * reads the hostile_server, which may be a test's stack variable reused by
 * the next test while a detached connection thread is still finishing. */
typedef struct {
    hostile_handler handler;
    void *arg;
    int fd;
    int no;
} conn_arg;

static void *conn_main(void *p)
{
    conn_arg *c = p;
    c->handler(c->fd, c->no, c->arg);
    close(c->fd);
    free(c);
    return NULL;
}

static void *accept_main(void *p)
{
    hostile_server *h = p;
    for (;;) {
        struct pollfd pfd = {h->listen_fd, POLLIN, 0};
        int r = poll(&pfd, 1, 50);
        if (__atomic_load_n(&h->stopping, __ATOMIC_ACQUIRE))
            break;
        if (r <= 0)
            continue;
        int fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_arg *c = malloc(sizeof *c);
        pthread_t t;
        if (!c) {
            close(fd);
            continue;
        }
        c->handler = h->handler;
        c->arg = h->arg;
        c->fd = fd;
        c->no = __atomic_fetch_add(&h->nconns, 1, __ATOMIC_ACQ_REL);
        if (pthread_create(&t, NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

int hostile_start(hostile_server *h, hostile_handler fn, void *arg)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    pthread_t t;
    int one = 1;

    memset(h, 0, sizeof *h);
    h->handler = fn;
    h->arg = arg;
    h->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->listen_fd < 0)
        return -1;
    setsockopt(h->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(h->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(h->listen_fd, 64) != 0 ||
        getsockname(h->listen_fd, (struct sockaddr *)&a, &len) != 0) {
        close(h->listen_fd);
        return -1;
    }
    h->port = ntohs(a.sin_port);
    if (pthread_create(&t, NULL, accept_main, h) != 0) {
        close(h->listen_fd);
        return -1;
    }
    h->accept_thread = (unsigned long)t;
    return 0;
}

void hostile_stop(hostile_server *h)
{
    __atomic_store_n(&h->stopping, 1, __ATOMIC_RELEASE);
    pthread_join((pthread_t)h->accept_thread, NULL);
    close(h->listen_fd);
    h->listen_fd = -1;
}

int hostile_connections(hostile_server *h)
{
    return __atomic_load_n(&h->nconns, __ATOMIC_ACQUIRE);
}

ssize_t hostile_read_line(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got + 1 < n) {
        ssize_t k = recv(fd, buf + got, 1, 0);
        if (k == 0)
            return 0;
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got++;
        if (got >= 2 && buf[got - 2] == '\r' && buf[got - 1] == '\n')
            break;
    }
    buf[got] = '\0';
    return (ssize_t)got;
}

int hostile_read_exact(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = recv(fd, (char *)buf + got, n - got, 0);
        if (k == 0)
            return -1;
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)k;
    }
    return 0;
}

void hostile_free_argv(int argc, char **argv, size_t *lens)
{
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
    free(lens);
}

int hostile_read_resp(int fd, char ***argvp, size_t **lensp)
{
    char line[128];
    ssize_t k = hostile_read_line(fd, line, sizeof line);
    long argc;
    char **argv;
    size_t *lens;

    if (k <= 0)
        return k == 0 ? 0 : -1;
    if (line[0] != '*' || (argc = strtol(line + 1, NULL, 10)) <= 0 || argc > 1000000)
        return -1;
    argv = calloc((size_t)argc, sizeof *argv);
    lens = calloc((size_t)argc, sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return -1;
    }
    for (long i = 0; i < argc; i++) {
        long bl;
        char crlf[2];
        if (hostile_read_line(fd, line, sizeof line) <= 0 || line[0] != '$' ||
            (bl = strtol(line + 1, NULL, 10)) < 0 || bl > 512L * 1024 * 1024 ||
            !(argv[i] = malloc((size_t)bl + 1)) || hostile_read_exact(fd, argv[i], (size_t)bl) ||
            hostile_read_exact(fd, crlf, 2)) {
            hostile_free_argv((int)argc, argv, lens);
            return -1;
        }
        argv[i][bl] = '\0';
        lens[i] = (size_t)bl;
    }
    *argvp = argv;
    *lensp = lens;
    return (int)argc;
}

int hostile_write(int fd, const void *buf, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t k = send(fd, (const char *)buf + off, n - off, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)k;
    }
    return 0;
}

int hostile_writes(int fd, const char *s)
{
    return hostile_write(fd, s, strlen(s));
}

void hostile_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int hostile_drip(int fd, const void *buf, size_t n, int ms)
{
    for (size_t i = 0; i < n; i++) {
        if (hostile_write(fd, (const char *)buf + i, 1) != 0)
            return -1;
        hostile_sleep_ms(ms);
    }
    return 0;
}
