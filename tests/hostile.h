/* A deliberately misbehaving server for the hostile-reply tests: a
 * listener on 127.0.0.1 (a free port) run by a thread of the test process.
 * Each accepted connection is handed to the test's handler on a thread of
 * its own; the handler reads requests and answers whatever the test wants
 * (an extra reply, another key's value, one byte per 100 ms, a bulk length
 * of 999999999999, ...).  This is the one kind of fake server the suite
 * has: everything else talks to real memcached and redis-server. */
#ifndef CACHET_TEST_HOSTILE_H
#define CACHET_TEST_HOSTILE_H

#include <stddef.h>
#include <sys/types.h>

/* Called once per accepted connection, on its own thread; fd is closed
 * when it returns.  conn_no counts connections from 0. */
typedef void (*hostile_handler)(int fd, int conn_no, void *arg);

typedef struct hostile_server {
    int port;                 /* 127.0.0.1:port */
    int listen_fd;
    hostile_handler handler;
    void *arg;
    int stopping;
    int nconns;               /* connections accepted so far */
    unsigned long accept_thread;
} hostile_server;

/* 0 ok, -1 failed. */
int  hostile_start(hostile_server *h, hostile_handler fn, void *arg);
/* Stops accepting and waits for the accept thread; handlers still running
 * see their fd shut down (reads return 0). */
void hostile_stop(hostile_server *h);
/* Connections accepted so far (atomic read). */
int  hostile_connections(hostile_server *h);

/* Helpers for handlers. */
/* Reads until the buffer holds a complete line ending in "\r\n" (or n-1
 * bytes); returns its length including the CRLF, 0 on EOF, -1 on error.
 * The line is NUL-terminated.  Bytes after the line stay unread. */
ssize_t hostile_read_line(int fd, char *buf, size_t n);
/* Reads exactly n bytes (0 ok, -1 EOF/error). */
int     hostile_read_exact(int fd, void *buf, size_t n);
/* Reads one RESP command (an array of bulk strings, as hiredis sends);
 * fills argv (NUL-terminated copies, free with hostile_free_argv) and
 * returns argc, 0 on EOF, -1 on a malformed request. */
int     hostile_read_resp(int fd, char ***argv, size_t **lens);
void    hostile_free_argv(int argc, char **argv, size_t *lens);
/* Writes all of buf (MSG_NOSIGNAL); 0 ok, -1 peer gone. */
int     hostile_write(int fd, const void *buf, size_t n);
int     hostile_writes(int fd, const char *s);
/* Writes buf one byte at a time, sleeping ms between bytes; stops early
 * (returns -1) when the peer closed. */
int     hostile_drip(int fd, const void *buf, size_t n, int ms);
/* Milliseconds of sleep that a loaded machine cannot shorten. */
void    hostile_sleep_ms(int ms);

#endif
