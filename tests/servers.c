/* Starting and stopping the real servers the tests talk to.  Every server
 * listens on 127.0.0.1 only, on a port nobody else holds, and is killed
 * when the test process exits, whatever way it exits. */
#define _GNU_SOURCE
#include "servers.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 32
/* How long a server may take to listen, a frozen one to stop, a port to be
 * free again: generous, for a loaded 2-core machine under the sanitizers. */
#define START_TIMEOUT_MS   30000
#define FREEZE_TIMEOUT_MS  10000
#define RESTART_TIMEOUT_MS 30000
/* The pids of the servers this process started, for the exit handler.  Pids,
 * not pointers: a test_server usually lives on a test's stack, and a failed
 * cmocka assertion longjmps out of that frame. */
static pid_t started[MAX_SERVERS];

static void remember(pid_t pid)
{
    static int hooked;
    if (!hooked) {
        atexit(test_servers_stop_all);
        hooked = 1;
    }
    for (int i = 0; i < MAX_SERVERS; i++)
        if (!started[i]) {
            started[i] = pid;
            return;
        }
}

static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (started[i] == pid)
            started[i] = 0;
}

/* Can something bind 127.0.0.1:port now? */
static int bindable(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    if (fd < 0)
        return 0;
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A port below the kernel's ephemeral range: a port bind(0) hands out is
 * one the kernel may give to any process's next connect() before our
 * server binds it (seen in CI, where suites run in parallel and open many
 * client connections).  Random, so parallel suites rarely pick the same
 * one; start() checks the server that answers is ours anyway.  offset > 0:
 * port + offset must be free and below the range too (a redis cluster
 * node also listens on port + 10000, its bus). */
static int free_port(int offset)
{
    static unsigned seed;
    int lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    if (lo - offset > 12000) {
        for (int i = 0; i < 200; i++) {
            int port = 10000 + (int)(rand_r(&seed) % (unsigned)(lo - offset - 10000));
            if (bindable(port) && (!offset || bindable(port + offset)))
                return port;
        }
    }
    /* no room below the range: let the kernel choose */
    for (int i = 0; i < 50; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
        if (fd < 0)
            return -1;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        if (port > 0 && (!offset || (port + offset <= 65535 && bindable(port + offset))))
            return port;
    }
    return -1;
}

int test_free_port(void)
{
    return free_port(0);
}

/* Is the socket listening on 127.0.0.1:port one of pid's?  (The port
 * answering is not enough: another process may hold it, and then our
 * server failed to bind and is exiting.)  /proc/net/tcp gives the
 * listening socket's inode; pid's fds must hold it. */
static int listens_for(pid_t pid, int port)
{
    char line[512], path[64], link[64], want[64];
    unsigned long inode = 0;
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return 1;                      /* no /proc: cannot tell, trust it */
    while (fgets(line, sizeof line, f)) {
        unsigned la, lp, st;
        unsigned long ino;
        if (sscanf(line, " %*d: %x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*d %*d %lu",
                   &la, &lp, &st, &ino) == 4 && (int)lp == port && st == 0x0A) {
            inode = ino;
            break;
        }
    }
    fclose(f);
    if (!inode)
        return 0;
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    for (int fd = 0; fd < 1024; fd++) {
        ssize_t n;
        snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
        if ((n = readlink(path, link, sizeof link - 1)) > 0) {
            link[n] = '\0';
            if (strcmp(link, want) == 0)
                return 1;
        }
    }
    return 0;
}

/* Milliseconds on the monotonic clock: waits are measured by it, not by
 * adding up the sleeps (on a loaded machine each sleep and each connect()
 * takes longer than asked). */
static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A TCP connection to 127.0.0.1:port, or -1. */
static int connect_loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int accepts(int port)
{
    int fd = connect_loopback(port);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

/* Whether the redis (or sentinel) on port answers a PING within a second:
 * any reply, even an error (a server with requirepass says -NOAUTH).  A
 * redis listens on its TCP port before it has created its unix socket and
 * entered its event loop, so a connect that succeeds says less: a test's
 * first command over the unix socket found none there (seen under load). */
static int answers_ping(int port)
{
    struct timeval tv = {1, 0};
    char c;
    int fd = connect_loopback(port), ok;
    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ok = write(fd, "PING\r\n", 6) == 6 && read(fd, &c, 1) == 1;
    close(fd);
    return ok;
}

int test_wait_port(int port, int timeout_ms)
{
    long long deadline = mono_ms() + timeout_ms;
    for (;;) {
        if (accepts(port))
            return 0;
        if (mono_ms() > deadline)
            return -1;
        usleep(20 * 1000);
    }
}

/* Splits extra into argv words at blanks (no quoting: tests pass simple words). */
static int split_words(char *buf, char **argv, int max)
{
    int n = 0;
    for (char *t = strtok(buf, " \t\n"); t && n < max; t = strtok(NULL, " \t\n"))
        argv[n++] = t;
    return n;
}

/* Call from the test's main thread: PR_SET_PDEATHSIG follows the thread
 * that forked, not the process.  The server's output goes to log (when
 * not NULL: to say why a server did not start), else nowhere. */
static pid_t spawn(char **argv, const char *log)
{
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        int out = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0600) : -1;
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the test */
        if (getppid() != parent)            /* it died before prctl took */
            _exit(127);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(out >= 0 ? out : devnull, 1);
            dup2(out >= 0 ? out : devnull, 2);
        }
        /* none of the test's sockets (a black hole's listener, clients of
         * other servers) may live on in a server */
        if (close_range(3, ~0u, 0) != 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* A redis cluster node also listens on port + 10000, its cluster bus; 0
 * for any other server. */
static int bus_offset(const test_server *s)
{
    return strcmp(s->kind, "redis") == 0 && strstr(s->extra, "cluster-enabled yes") ? 10000 : 0;
}

static int start(test_server *s)
{
    char *argv[64], portbuf[16], conf[128], log[128], buf[sizeof s->extra];
    int argc = 0;

    snprintf(portbuf, sizeof portbuf, "%d", s->port);
    if (strcmp(s->kind, "memcached") == 0) {
        argv[argc++] = "memcached";
        argv[argc++] = "-l";
        argv[argc++] = "127.0.0.1";
        argv[argc++] = "-p";
        argv[argc++] = portbuf;
        argv[argc++] = "-U";
        argv[argc++] = "0";
        argv[argc++] = "-u";
        argv[argc++] = "root";
        argv[argc++] = "-m";
        argv[argc++] = "64";
        snprintf(buf, sizeof buf, "%s", s->extra);
        argc += split_words(buf, argv + argc, 40);
    } else {
        /* redis-server and sentinel read a config file in the scratch dir */
        FILE *f;
        int sentinel = strcmp(s->kind, "sentinel") == 0;
        snprintf(conf, sizeof conf, "%s/%s.conf", s->dir, s->kind);
        if (!(f = fopen(conf, "w")))
            return -1;
        fprintf(f, "bind 127.0.0.1\nport %d\ndir %s\nsave \"\"\nappendonly no\n"
                   "protected-mode no\n%s%s\n",
                s->port, s->dir, sentinel ? "" : "daemonize no\n", s->extra);
        fclose(f);
        argv[argc++] = sentinel ? "redis-sentinel" : "redis-server";
        argv[argc++] = conf;
    }
    argv[argc] = NULL;
    snprintf(log, sizeof log, "%s/%s.log", s->dir, s->kind);
    if ((s->pid = spawn(argv, s->dir[0] ? log : NULL)) < 0)
        return -1;
    remember(s->pid);
    /* Ready when the listening socket on the port is this server's: the
     * port answering is not enough, another process may hold it, and then
     * ours failed to bind and is exiting (seen at once, not at the
     * deadline).  A redis must also answer a PING (answers_ping: what it
     * sets up after its port, its unix socket, is there then).  A cluster
     * node binds its bus port after the client port,
     * and exits when that one is taken: both must be its own.  Normally
     * well under a second; the deadline is for a loaded machine and the
     * sanitizers. */
    for (long long deadline = mono_ms() + START_TIMEOUT_MS;;) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            forget(s->pid);
            s->pid = 0;
            return -1;
        }
        if (listens_for(s->pid, s->port) &&
            (strcmp(s->kind, "memcached") == 0 ? accepts(s->port) : answers_ping(s->port)) &&
            (!bus_offset(s) || listens_for(s->pid, s->port + bus_offset(s))))
            return 0;
        if (mono_ms() > deadline) {
            test_server_kill(s);
            return -1;
        }
        usleep(10 * 1000);
    }
}

/* The last lines of s's log, on stderr (the test's log): why it did not start. */
static void tell_why(const test_server *s)
{
    char path[128], buf[1024];
    size_t n = 0;
    FILE *f;
    snprintf(path, sizeof path, "%s/%s.log", s->dir, s->kind);
    if (!s->dir[0] || !(f = fopen(path, "r"))) {
        fprintf(stderr, "test server %s: did not start on port %d\n", s->kind, s->port);
        return;
    }
    if (fseek(f, -(long)(sizeof buf - 1), SEEK_END) != 0)
        rewind(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "test server %s: did not start on port %d; %s ends:\n%s\n", s->kind, s->port,
            path, buf);
}

static int start_kind(test_server *s, const char *kind, int port, const char *extra)
{
    memset(s, 0, sizeof *s);
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    snprintf(s->extra, sizeof s->extra, "%s", extra ? extra : "");
    if (strcmp(kind, "memcached") != 0) {
        snprintf(s->dir, sizeof s->dir, "/tmp/cachet-%s-XXXXXX", kind);
        if (!mkdtemp(s->dir))
            return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {   /* a free port can be taken meanwhile */
        s->port = port ? port : free_port(bus_offset(s));
        if (s->port > 0 && start(s) == 0)
            return 0;
        tell_why(s);
        if (port)
            break;
    }
    return -1;
}

int test_memcached_start(test_server *s, int port, const char *extra)
{
    return start_kind(s, "memcached", port, extra);
}

int test_redis_start(test_server *s, int port, const char *extra)
{
    return start_kind(s, "redis", port, extra);
}

int test_sentinel_start(test_server *s, int port, const char *extra)
{
    return start_kind(s, "sentinel", port, extra);
}

const char *test_server_option(const test_server *s, char *value, size_t size)
{
    if (strcmp(s->kind, "memcached") == 0) {
        snprintf(value, size, "127.0.0.1:%d", s->port);
        return "memcache_servers";
    }
    snprintf(value, size, "url:redis://127.0.0.1:%d/0", s->port);
    return "backend_argument";
}

int test_server_restart(test_server *s)
{
    if (s->pid > 0)
        test_server_stop(s);
    /* the port may linger a moment: the new server exits at once then */
    for (long long deadline = mono_ms() + RESTART_TIMEOUT_MS;;) {
        if (start(s) == 0)
            return 0;
        if (mono_ms() > deadline) {
            tell_why(s);
            return -1;
        }
        usleep(100 * 1000);
    }
}

static void stop_with(test_server *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        kill(s->pid, SIGCONT);          /* a frozen server must see the SIGTERM */
        waitpid(s->pid, NULL, 0);
        forget(s->pid);
        s->pid = 0;
    }
}

void test_server_stop(test_server *s) { stop_with(s, SIGTERM); }
void test_server_kill(test_server *s) { stop_with(s, SIGKILL); }

void test_servers_stop_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (started[i] > 0) {
            kill(started[i], SIGKILL);
            waitpid(started[i], NULL, 0);
            started[i] = 0;
        }
}

int test_blackhole_start(test_blackhole *b)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    b->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (b->fd < 0 || bind(b->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(b->fd, 1024) != 0 || getsockname(b->fd, (struct sockaddr *)&a, &len) != 0) {
        if (b->fd >= 0)
            close(b->fd);
        return -1;
    }
    b->port = ntohs(a.sin_port);
    return 0;
}

void test_blackhole_stop(test_blackhole *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
}

/* 1 when every thread of pid is in state T (stopped). */
static int all_stopped(pid_t pid)
{
    char path[320], buf[512];
    struct dirent *e;
    int stopped = 1, seen = 0;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    while (stopped && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');     /* the state follows "(comm)" */
        seen = 1;
        if (!p || p[1] != ' ' || (p[2] != 'T' && p[2] != 't'))
            stopped = 0;
    }
    closedir(d);
    return stopped && seen;
}

int test_server_freeze(test_server *s)
{
    if (s->pid <= 0 || kill(s->pid, SIGSTOP) != 0)
        return -1;
    for (long long deadline = mono_ms() + FREEZE_TIMEOUT_MS;;) {
        if (all_stopped(s->pid))
            return 0;
        if (mono_ms() > deadline)
            return -1;
        usleep(5 * 1000);
    }
}

void test_server_thaw(test_server *s)
{
    if (s->pid > 0)
        kill(s->pid, SIGCONT);
}
