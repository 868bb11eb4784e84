/* A small HTTP cache service on libuv, with cachet behind it through the
 * async API: the loop never waits for the cache.  libuv has no HTTP, so
 * this reads one request per connection (the request line and headers; no
 * body), answers it, and closes.
 *
 *   GET    /KEY   the value (get_or_create: a miss runs the creator on a
 *                 cachet worker thread and stores its result)
 *   DELETE /KEY   deletes it
 *
 * Usage: libuv_http PORT [CONFIG-FILE]   (no file: the memory backend)
 * The queue's eventfd is watched by a uv_poll_t; its callback runs
 * cachet_async_dispatch, whose completions write the replies. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <cachet/cachet.h>

#define REQ_MAX 8192

static cachet_async *queue;
static uv_loop_t *loop;

typedef struct {
    uv_tcp_t tcp;
    char     buf[REQ_MAX];
    size_t   used;
    int      waiting;      /* a cache operation is out: c stays until it completes */
    int      peer_gone;    /* the client hung up while it was out */
    int      closing;
} conn;

typedef struct {
    uv_write_t w;
    conn      *c;
    char      *data;
} write_req;

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(conn *c)
{
    if (!c->closing) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void on_written(uv_write_t *w, int status)
{
    write_req *wr = (write_req *)w;
    conn_close(wr->c);
    free(wr->data);
    free(wr);
}

static void respond(conn *c, int code, const char *reason, const void *body, size_t len)
{
    c->waiting = 0;
    if (c->peer_gone) {    /* the client went away meanwhile */
        conn_close(c);
        return;
    }
    if (c->closing)
        return;
    write_req *wr = malloc(sizeof *wr);
    char *out = wr ? malloc(len + 256) : NULL;
    if (!out) {
        free(wr);
        conn_close(c);
        return;
    }
    int n = snprintf(out, 256, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
                               "Content-Type: application/octet-stream\r\n\r\n", code, reason, len);
    memcpy(out + n, body, len);
    wr->c = c;
    wr->data = out;
    uv_buf_t b = uv_buf_init(out, (unsigned)(n + len));
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(out);
        free(wr);
        conn_close(c);
    }
}

static void respond_status(conn *c, cachet_status st)
{
    char msg[1200];
    if (st == CACHET_OK)
        respond(c, 200, "OK", "ok\n", 3);
    else if (st == CACHET_MISS)
        respond(c, 404, "Not Found", "not found\n", 10);
    else
        respond(c, 503, "Service Unavailable", msg,
                (size_t)snprintf(msg, sizeof msg, "cache: %s: %s\n", cachet_strerror(st),
                                 cachet_errmsg()));
}

/* on a cachet worker thread, never the loop's */
static cachet_status expensive(void *arg, const char *key, void **value, size_t *len)
{
    char *v = malloc(strlen(key) + 32);
    if (!v)
        return CACHET_ENOMEM;
    *len = (size_t)sprintf(v, "computed for %s\n", key);
    *value = v;
    return CACHET_OK;
}

static void got(void *arg, cachet_status st, void *value, size_t len)
{
    conn *c = arg;
    if (st == CACHET_OK)
        respond(c, 200, "OK", value, len);
    else
        respond_status(c, st);
    cachet_free(value);
}

static void deleted(void *arg, cachet_status st, void *value, size_t len)
{
    respond_status(arg, st);
}

/* A whole request head is in c->buf: "METHOD /KEY HTTP/1.x". */
static void handle(conn *c)
{
    char method[8], path[1024];
    if (sscanf(c->buf, "%7s %1023s", method, path) != 2 || path[0] != '/' || !path[1]) {
        respond(c, 400, "Bad Request", "a key is needed: /KEY\n", 22);
        return;
    }
    cachet_status st;
    c->waiting = 1;
    if (strcmp(method, "GET") == 0)
        st = cachet_async_get_or_create(queue, path + 1, expensive, NULL, got, c);
    else if (strcmp(method, "DELETE") == 0)
        st = cachet_async_delete(queue, path + 1, deleted, c);
    else {
        respond(c, 405, "Method Not Allowed", "GET or DELETE\n", 14);
        return;
    }
    if (st != CACHET_OK)
        respond_status(c, st);   /* refused at once: done will not run */
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    conn *c = h->data;
    *b = uv_buf_init(c->buf + c->used, (unsigned)(REQ_MAX - 1 - c->used));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = s->data;
    if (n < 0) {
        uv_read_stop(s);
        if (c->waiting)
            c->peer_gone = 1;   /* the completion closes it (its arg is c) */
        else
            conn_close(c);
        return;
    }
    c->used += (size_t)n;
    c->buf[c->used] = 0;
    if (strstr(c->buf, "\r\n\r\n") && !c->waiting) {
        uv_read_stop(s);
        handle(c);
    } else if (c->used >= REQ_MAX - 1) {
        uv_read_stop(s);
        respond(c, 431, "Request Header Fields Too Large", "", 0);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    else
        conn_close(c);
}

static void on_completions(uv_poll_t *p, int status, int events)
{
    cachet_async_dispatch(queue);
}

static void on_signal(uv_signal_t *s, int sig)
{
    uv_stop(loop);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [CONFIG-FILE]\n", argv[0]);
        return 2;
    }
    cachet_config *cfg = cachet_config_new();
    cachet_status st = argc > 2 ? cachet_config_load(cfg, argv[2], "cache")
                                : cachet_config_parse(cfg, "[cache]\nenabled = true\n"
                                                           "backend = dogpile.cache.memory\n", NULL);
    cachet_region *region;
    if (st != CACHET_OK || cachet_region_open(cfg, &region) != CACHET_OK ||
        cachet_async_open(region, 0, &queue) != CACHET_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], cachet_errmsg());
        return 1;
    }
    cachet_config_free(cfg);
    signal(SIGPIPE, SIG_IGN);

    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&server, 128, on_connection) != 0) {
        fprintf(stderr, "%s: cannot listen on 127.0.0.1:%s\n", argv[0], argv[1]);
        return 1;
    }
    uv_poll_t completions;
    uv_poll_init(loop, &completions, cachet_async_fd(queue));
    uv_poll_start(&completions, UV_READABLE, on_completions);
    uv_signal_t term, intr;
    uv_signal_init(loop, &term);
    uv_signal_start(&term, on_signal, SIGTERM);
    uv_signal_init(loop, &intr);
    uv_signal_start(&intr, on_signal, SIGINT);
    printf("listening on 127.0.0.1:%s (%s)\n", argv[1], cachet_region_backend(region));
    fflush(stdout);

    uv_run(loop, UV_RUN_DEFAULT);

    /* the requests still waiting get their replies queued by close's
     * callbacks; one more turn of the loop writes them */
    uv_poll_stop(&completions);
    cachet_async_close(queue);
    uv_close((uv_handle_t *)&completions, NULL);
    uv_close((uv_handle_t *)&server, NULL);
    uv_close((uv_handle_t *)&term, NULL);
    uv_close((uv_handle_t *)&intr, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    cachet_region_close(region);
    return 0;
}
