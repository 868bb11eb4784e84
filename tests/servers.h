/* Real servers for the tests: memcached and redis-server processes started
 * on 127.0.0.1 on free ports, and a "black hole" host that accepts TCP
 * connections and never answers (the stall OpenStack hit). */
#ifndef CACHET_TEST_SERVERS_H
#define CACHET_TEST_SERVERS_H

#include <sys/types.h>

typedef struct {
    pid_t pid;
    int   port;
    char  kind[16];           /* "memcached", "redis", "sentinel" */
    char  dir[64];            /* scratch directory (redis) */
    char  extra[512];         /* extra arguments / config lines it was started with */
} test_server;

/* A free TCP port on 127.0.0.1 (bound then released). */
int  test_free_port(void);
/* Waits until something accepts on 127.0.0.1:port; 0 ok, -1 timed out. */
int  test_wait_port(int port, int timeout_ms);

/* port 0 = a free one.  extra: more command-line arguments (memcached) or
 * config lines (redis, sentinel; "\n"-separated).  Returns once the server
 * itself listens on the port (within 30 s), 0 ok, -1 failed. */
int  test_memcached_start(test_server *s, int port, const char *extra);
int  test_redis_start(test_server *s, int port, const char *extra);
int  test_sentinel_start(test_server *s, int port, const char *extra);
/* Starts it again on the same port with the same arguments (retrying for
 * 30 s while the port is not free yet). */
int  test_server_restart(test_server *s);
void test_server_stop(test_server *s);     /* SIGTERM, wait */
void test_server_kill(test_server *s);     /* SIGKILL, wait */
/* SIGSTOP, and wait until every thread of the server has stopped (kill()
 * returns before that: a request sent at once may still be answered);
 * 0 ok, -1 not stopped within 10 s.  test_server_thaw sends SIGCONT. */
int  test_server_freeze(test_server *s);
void test_server_thaw(test_server *s);
/* How a region reaches server s (a memcached or a redis): the option's
 * name returned, its value written into value (size bytes):
 * memcache_servers 127.0.0.1:PORT, or backend_argument
 * url:redis://127.0.0.1:PORT/0. */
const char *test_server_option(const test_server *s, char *value, size_t size);
/* Stops every server this process started (also run at exit). */
void test_servers_stop_all(void);

/* A listening socket nobody accepts on: connects succeed (the kernel's
 * backlog), requests are never answered. */
typedef struct {
    int fd;
    int port;
} test_blackhole;
int  test_blackhole_start(test_blackhole *b);
void test_blackhole_stop(test_blackhole *b);

#endif
