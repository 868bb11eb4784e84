/* Change notifications for the near proxy (cachet_backend_ops.notify_*),
 * over redis pub/sub, which hiredis 0.14 speaks as plain replies.
 *
 * Channel: "cachet:near:DB" (pub/sub ignores databases: the number keeps
 * regions of different databases apart).  Message: "ID KEY", ID naming the
 * publishing proxy instance (its own publications are skipped), KEY the
 * stored key's bytes.
 *
 * Publishing is a PUBLISH through the server's pooled connections (one
 * deadline, its reply checked like any other).  Subscribing runs one
 * thread with a connection of its own: connect, AUTH, SUBSCRIBE, then
 * poll() in 200 ms steps (so that unsubscribe stops it promptly), and for
 * each message the key goes to the proxy's callback.  Every reply is
 * bounded before it is built: at most MAX_BUFFERED bytes buffered, arrays
 * of at most 3 elements and no nesting, and anything but a "subscribe"
 * confirmation or a "message" of our channel closes the connection.  A
 * lost connection is made again (after 100 ms, then up to 2 s apart);
 * once subscribed again the callback is told keys may have been missed.
 * notify_subscribe returns once the first SUBSCRIBE is confirmed (or
 * failed, or socket_timeout passed), so a region opened is coherent from
 * its first call.
 *
 * The bound a subscriber gets: a change published while it is connected
 * reaches it within the network's delay (milliseconds on a LAN); one
 * published while it is not (the server down, a reconnect) is covered by
 * the forget-everything call when it is back; a process that does not
 * subscribe (a region without near, another client) is covered by near:ttl
 * alone.  Not offered on redis_cluster (PUBLISH there is cluster-wide but
 * the subscriber would have to follow the topology). */
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "redis.h"

#define MAX_BUFFERED (1u << 20)    /* a key is far shorter; more is a broken server */
#define ID_MAX 64

typedef struct rsub {
    rinst          *in;
    char            id[ID_MAX];
    char            channel[48];
    void          (*fn)(void *arg, const char *key, size_t klen);
    void           *arg;
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    atomic_int      stop;
    atomic_int      subscribed;    /* for tests and the report */
    unsigned        tries;         /* sessions ended or confirmed (under mu): subscribe waits */
} rsub;

static void channel_of(const rinst *in, char *buf, size_t size)
{
    snprintf(buf, size, "cachet:near:%ld", in->cfg.db);
}

cachet_status rnotify_publish(void *state, const char *id, const char *key, size_t klen)
{
    rinst *in = state;
    char channel[48];
    const char *argv[3];
    size_t argvlen[3], idlen = strnlen(id, ID_MAX);
    char *msg;
    rcmd cmd;
    redisReply *rep = NULL;
    cachet_status st;

    if (in->cfg.mode == RMODE_CLUSTER)
        return CACHET_ENOTSUP;
    if (!(msg = malloc(idlen + 1 + klen)))
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: publish: out of memory",
                                    in->cfg.name);
    memcpy(msg, id, idlen);
    msg[idlen] = ' ';
    memcpy(msg + idlen + 1, key, klen);
    channel_of(in, channel, sizeof channel);
    argv[0] = "PUBLISH", argvlen[0] = 7;
    argv[1] = channel, argvlen[1] = strlen(channel);
    argv[2] = msg, argvlen[2] = idlen + 1 + klen;
    memset(&cmd, 0, sizeof cmd);
    cmd.argc = 3;
    cmd.argv = argv;
    cmd.argvlen = argvlen;
    cmd.expect = RX_INT;
    st = rserver_exec(&in->single, &cmd, 1, &rep);
    if (rep)
        freeReplyObject(rep);
    free(msg);
    return st;
}

/* ---- the subscriber's bounded replies ---- */

static void *sub_create_array(const redisReadTask *task, int elements)
{
    /* pub/sub replies are flat arrays of 3 */
    if (task->parent || elements < 0 || elements > 3)
        return NULL;
    return rreply_functions.createArray(task, elements);
}

static redisReplyObjectFunctions sub_functions;
static pthread_once_t sub_once = PTHREAD_ONCE_INIT;

static void sub_functions_init(void)
{
    sub_functions = rreply_functions;
    sub_functions.createArray = sub_create_array;
}

static int is_str(const redisReply *r, const char *s)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* Waits up to ms, or until stop. */
static void pause_ms(rsub *s, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    if (!atomic_load(&s->stop))
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
}

/* Writes what hiredis has queued, by the deadline. */
static int flush(redisContext *c, double deadline)
{
    int done = 0;
    while (!done) {
        struct pollfd p = {c->fd, POLLOUT, 0};
        double left = deadline - r_now();
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            return -1;
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -1;
    }
    return 0;
}

/* One connection's life: 0 when stopped, -1 when it broke. */
static int session(rsub *s)
{
    rinst *in = s->in;
    const rcfg *cfg = &in->cfg;
    double deadline = r_now() + cfg->socket_timeout;
    raddr a;
    rfail f = {RF_NONE, ""};
    redisContext *c;
    int rc = -1, confirmed = 0;

    rserver_addr(&in->single, &a);       /* the master now (sentinel: after failover too) */
    if (!(c = rio_connect(a.host, a.port, cfg->unix_path, deadline, cfg->socket_timeout, &f)))
        return -1;
    if (cfg->password || cfg->username) {
        const char *argv[3];
        size_t lens[3];
        int k = 0, doubt = 0;
        rcmd cmd;
        redisReply *rep = NULL;
        argv[k++] = "AUTH";
        if (cfg->username)
            argv[k++] = cfg->username;
        argv[k++] = cfg->password ? cfg->password : "";
        for (int i = 0; i < k; i++)
            lens[i] = strlen(argv[i]);
        memset(&cmd, 0, sizeof cmd);
        cmd.argc = k, cmd.argv = argv, cmd.argvlen = lens, cmd.expect = RX_OK;
        if (rio_exec(c, &cmd, 1, &rep, deadline, cfg->socket_timeout, cfg->max_value_size,
                     &doubt, &f) != 0 || !rep || rep->type != REDIS_REPLY_STATUS || doubt) {
            if (rep)
                freeReplyObject(rep);
            goto out;
        }
        freeReplyObject(rep);
    }
    pthread_once(&sub_once, sub_functions_init);
    c->reader->fn = &sub_functions;
    c->reader->privdata = NULL;
    if (redisAppendCommand(c, "SUBSCRIBE %s", s->channel) != REDIS_OK || flush(c, deadline) != 0)
        goto out;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {c->fd, POLLIN, 0};
        void *reply;
        int n = poll(&p, 1, 200);
        if (n < 0 && errno != EINTR)
            goto out;
        if (n <= 0) {
            if (!confirmed && r_now() > deadline)
                goto out;                /* no confirmation in time */
            continue;
        }
        if (redisBufferRead(c) != REDIS_OK)
            goto out;
        if (c->reader->len - c->reader->pos > MAX_BUFFERED)
            goto out;
        for (;;) {
            redisReply *r;
            if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
                goto out;
            if (!(r = reply))
                break;
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
                !is_str(r->element[1], s->channel)) {
                freeReplyObject(r);
                goto out;
            }
            if (is_str(r->element[0], "subscribe")) {
                if (!confirmed) {
                    confirmed = 1;
                    s->fn(s->arg, NULL, 0);  /* what was published before is unknown */
                    pthread_mutex_lock(&s->mu);
                    atomic_store(&s->subscribed, 1);
                    s->tries++;
                    pthread_cond_broadcast(&s->cv);
                    pthread_mutex_unlock(&s->mu);
                }
            } else if (is_str(r->element[0], "message") &&
                       r->element[2]->type == REDIS_REPLY_STRING) {
                const char *m = r->element[2]->str, *sp = memchr(m, ' ', r->element[2]->len);
                size_t idl = sp ? (size_t)(sp - m) : 0;
                if (sp && !(idl == strlen(s->id) && memcmp(m, s->id, idl) == 0))
                    s->fn(s->arg, sp + 1, r->element[2]->len - idl - 1);
            } else {
                freeReplyObject(r);
                goto out;
            }
            freeReplyObject(r);
        }
    }
    rc = 0;
out:
    atomic_store(&s->subscribed, 0);
    redisFree(c);
    return rc;
}

static void *subscriber(void *arg)
{
    rsub *s = arg;
    long backoff = 100;
    while (!atomic_load(&s->stop)) {
        double t0 = r_now();
        int rc = session(s);
        pthread_mutex_lock(&s->mu);
        s->tries++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (rc == 0)
            break;
        if (r_now() - t0 > 5)
            backoff = 100;               /* it had been working: come back quickly */
        pause_ms(s, backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    return NULL;
}

cachet_status rnotify_subscribe(void *state, const char *id,
                                void (*fn)(void *arg, const char *key, size_t klen), void *arg,
                                void **handle)
{
    rinst *in = state;
    rsub *s;
    if (in->cfg.mode == RMODE_CLUSTER)
        return CACHET_ENOTSUP;
    if (!(s = calloc(1, sizeof *s)))
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: subscribe: out of memory",
                                    in->cfg.name);
    s->in = in;
    snprintf(s->id, sizeof s->id, "%s", id);
    channel_of(in, s->channel, sizeof s->channel);
    s->fn = fn;
    s->arg = arg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, subscriber, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return cachet_backend_error(CACHET_EBACKEND, "backend %s: subscribe: cannot start a "
                                    "thread", in->cfg.name);
    }
    /* wait (socket_timeout at most) for the first session to subscribe or
     * fail, so that a region is coherent from its first call; a server
     * down now is retried by the thread (the L1 is empty meanwhile) */
    {
        struct timespec ts;
        double secs = in->cfg.socket_timeout > 0 ? in->cfg.socket_timeout : 1;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)secs;
        ts.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_mutex_lock(&s->mu);
        while (s->tries == 0 && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
            ;
        pthread_mutex_unlock(&s->mu);
    }
    *handle = s;
    return CACHET_OK;
}

void rnotify_unsubscribe(void *state, void *handle)
{
    rsub *s = handle;
    (void)state;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stop, 1);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
