/* A small HTTP cache service on libevent's evhttp, with cachet behind it
 * through the async API: the loop never waits for the cache.
 *
 *   GET    /KEY   the value (get_or_create: a miss runs the "expensive"
 *                 creator on a cachet worker thread, stores its result)
 *   PUT    /KEY   stores the request body (200), or 503 if the cache fails
 *   DELETE /KEY   deletes it
 *
 * Usage: libevent_http PORT [CONFIG-FILE]   (no file: the memory backend)
 * The queue's eventfd is one more event in the base; when it is readable,
 * cachet_async_dispatch runs the completions, which send the replies. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <cachet/cachet.h>

static cachet_async *queue;

/* One request waiting for the cache.  If the client goes away first,
 * libevent frees the request: the connection's close callback marks the
 * pending entry gone, and the completion then only frees it. */
typedef struct {
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    int gone;
} pending;

static void client_gone(struct evhttp_connection *conn, void *arg)
{
    ((pending *)arg)->gone = 1;
}

static pending *pending_new(struct evhttp_request *req)
{
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->req = req;
    p->conn = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(p->conn, client_gone, p);
    return p;
}

/* the reply, unless the client left; frees p */
static void reply(pending *p, int code, const char *reason, const void *body, size_t len)
{
    if (!p->gone) {
        evhttp_connection_set_closecb(p->conn, NULL, NULL);
        struct evbuffer *b = evbuffer_new();
        if (b && len)
            evbuffer_add(b, body, len);
        evhttp_add_header(evhttp_request_get_output_headers(p->req), "Content-Type",
                          "application/octet-stream");
        evhttp_send_reply(p->req, code, reason, b);
        if (b)
            evbuffer_free(b);
    }
    free(p);
}

static void reply_status(pending *p, cachet_status st)
{
    char msg[1200];
    if (st == CACHET_OK) {
        reply(p, 200, "OK", "ok\n", 3);
    } else if (st == CACHET_MISS) {
        reply(p, 404, "Not Found", "not found\n", 10);
    } else {
        int n = snprintf(msg, sizeof msg, "cache: %s: %s\n", cachet_strerror(st), cachet_errmsg());
        reply(p, 503, "Service Unavailable", msg, (size_t)n);
    }
}

/* Runs on a cachet worker thread, never on the loop's: the loop keeps
 * serving while it "computes". */
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
    if (st == CACHET_OK)
        reply(arg, 200, "OK", value, len);
    else
        reply_status(arg, st);
    cachet_free(value);
}

static void written(void *arg, cachet_status st, void *value, size_t len)
{
    reply_status(arg, st);
}

static void handle(struct evhttp_request *req, void *unused)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path || path[0] != '/' || !path[1]) {
        evhttp_send_error(req, 400, "a key is needed: /KEY");
        return;
    }
    char *key = evhttp_uridecode(path + 1, 0, NULL);
    pending *p = key ? pending_new(req) : NULL;
    if (!p) {
        free(key);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    cachet_status st;
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        st = cachet_async_get_or_create(queue, key, expensive, NULL, got, p);
        break;
    case EVHTTP_REQ_PUT: {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        st = cachet_async_set(queue, key, evbuffer_pullup(in, -1), n, written, p);
        break;
    }
    case EVHTTP_REQ_DELETE:
        st = cachet_async_delete(queue, key, written, p);
        break;
    default:
        evhttp_connection_set_closecb(p->conn, NULL, NULL);
        free(p);
        free(key);
        evhttp_send_error(req, 405, "GET, PUT or DELETE");
        return;
    }
    free(key);     /* the queue copied it */
    if (st != CACHET_OK)
        reply_status(p, st);   /* refused at once (queue full): done will not run */
}

static void on_completions(evutil_socket_t fd, short what, void *arg)
{
    cachet_async_dispatch(queue);
}

static void on_signal(evutil_socket_t sig, short what, void *base)
{
    event_base_loopexit(base, NULL);
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

    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_gencb(http, handle, NULL);
    if (!http || evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)atoi(argv[1])) != 0) {
        fprintf(stderr, "%s: cannot listen on 127.0.0.1:%s\n", argv[0], argv[1]);
        return 1;
    }
    struct event *completions = event_new(base, cachet_async_fd(queue), EV_READ | EV_PERSIST,
                                          on_completions, NULL);
    event_add(completions, NULL);
    struct event *term = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *intr = evsignal_new(base, SIGINT, on_signal, base);
    event_add(term, NULL);
    event_add(intr, NULL);
    printf("listening on 127.0.0.1:%s (%s)\n", argv[1], cachet_region_backend(region));
    fflush(stdout);

    event_base_dispatch(base);

    /* every request still waiting gets its reply from close's callbacks;
     * then the HTTP side goes */
    cachet_async_close(queue);
    event_free(completions);
    event_free(term);
    event_free(intr);
    evhttp_free(http);
    event_base_free(base);
    cachet_region_close(region);
    return 0;
}
