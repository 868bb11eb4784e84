/* redis_sentinel: which server is the master of service_name, asked of the
 * sentinels in turn (SENTINEL get-master-addr-by-name).  Asked at open,
 * after a connection to the master fails, and after a -READONLY reply; the
 * connection handshake confirms the answer with ROLE (redis_conn.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

/* "6379" into *port: a full decimal in 1..65535, nothing else (no atoi:
 * "6379junk" or "99999" from a sentinel is no port). */
static int parse_port(const char *p, size_t n, int *port)
{
    long v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

/* One sentinel's answer into a: 1 got it, 0 no answer (why set).  The
 * query runs like every other call: one deadline, bounded and checked
 * replies (redis_io.c). */
static int ask(const rinst *in, const raddr *sen, raddr *a, char *why, size_t size)
{
    const rcfg *cfg = &in->cfg;
    double deadline = r_now() + cfg->socket_timeout;
    const char *auth[2] = {"AUTH", cfg->sentinel_password};
    size_t alens[2] = {4, cfg->sentinel_password ? strlen(cfg->sentinel_password) : 0};
    const char *q[3] = {"SENTINEL", "get-master-addr-by-name", cfg->service_name};
    size_t qlens[3] = {8, 23, strlen(cfg->service_name)};
    rcmd cmds[2] = {{2, auth, alens, {NULL, NULL}, RX_OK}, {3, q, qlens, {NULL, NULL}, RX_MASTER_ADDR}};
    redisReply *rep[2] = {NULL, NULL}, *r;
    size_t first = cfg->sentinel_password ? 0 : 1;
    rfail f = {RF_NONE, ""};
    redisContext *c;
    int ok = 0, doubt;

    c = rio_connect(sen->host, sen->port, NULL, deadline, cfg->socket_timeout, &f);
    if (!c) {
        snprintf(why, size, "%s:%d: %s", sen->host, sen->port, f.why);
        return 0;
    }
    if (rio_exec(c, cmds + first, 2 - first, rep + first, deadline, cfg->socket_timeout,
                 cfg->max_value_size, &doubt, &f) != 0) {
        rserver_scrub(in, f.why, sizeof f.why);
        snprintf(why, size, "%s:%d: %s%s", sen->host, sen->port,
                 f.kind == RF_PROTO ? "protocol error: " : "", f.why);
        redisFree(c);
        return 0;
    }
    redisFree(c);   /* one query per connection: no reuse, no doubt to carry */
    if (rep[0] && rep[0]->type == REDIS_REPLY_ERROR) {
        char said[200];
        snprintf(said, sizeof said, "%s", rep[0]->str);
        rserver_scrub(in, said, sizeof said);
        snprintf(why, size, "%s:%d: AUTH refused: %s", sen->host, sen->port, said);
        rreplies_free(rep, 2);
        return 0;
    }
    r = rep[1];
    if (r->type == REDIS_REPLY_ARRAY) {
        const redisReply *h = r->element[0], *p = r->element[1];
        if (h->len == 0 || h->len >= sizeof a->host || memchr(h->str, '\0', h->len))
            snprintf(why, size, "%s:%d: protocol error: a master host of %zu bytes in its "
                     "answer", sen->host, sen->port, h->len);
        else if (parse_port(p->str, p->len, &a->port) != 0)
            snprintf(why, size, "%s:%d: protocol error: the master's port '%.12s' is not in "
                     "1..65535", sen->host, sen->port, p->str);
        else {
            memcpy(a->host, h->str, h->len + 1);
            ok = 1;
        }
    } else if (r->type == REDIS_REPLY_NIL) {
        snprintf(why, size, "%s:%d: does not know a master named '%s'", sen->host, sen->port,
                 cfg->service_name);
    } else {
        char said[200];
        snprintf(said, sizeof said, "%s", r->str);
        rserver_scrub(in, said, sizeof said);
        snprintf(why, size, "%s:%d: %s", sen->host, sen->port, said);
    }
    rreplies_free(rep, 2);
    return ok;
}

int rsentinel_resolve(rinst *in, int wait)
{
    char why[512] = "", last[512] = "";
    raddr a, cur;
    int r = -1;

    if (wait)
        pthread_mutex_lock(&in->sentinel_mu);
    else if (pthread_mutex_trylock(&in->sentinel_mu) != 0)
        return 0;   /* another thread is asking */
    for (size_t i = 0; i < in->cfg.nsentinels; i++) {
        memset(&a, 0, sizeof a);
        if (ask(in, &in->cfg.sentinels[i], &a, why, sizeof why)) {
            rserver_addr(&in->single, &cur);
            r = 0;
            if (strcmp(cur.host, a.host) != 0 || cur.port != a.port) {
                if (cur.host[0])
                    cachet_backend_log(CACHET_LOG_WARNING, "backend %s: master of '%s' moved "
                                       "from %s:%d to %s:%d", in->cfg.name, in->cfg.service_name,
                                       cur.host, cur.port, a.host, a.port);
                rserver_set_addr(&in->single, &a);
                r = 1;
            }
            break;
        }
        snprintf(last, sizeof last, "%s", why);
    }
    pthread_mutex_unlock(&in->sentinel_mu);
    if (r < 0)
        cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: no sentinel named the master of "
                             "'%s' (last: %s)", in->cfg.name, in->cfg.service_name, last);
    return r;
}

int rsentinel_resolve_if_down(rinst *in)
{
    double now = r_now();
    int due;
    if (cachet_host_state(&in->single.host) != CACHET_HOST_DOWN)
        return 0;
    if (pthread_mutex_trylock(&in->sentinel_mu) != 0)
        return 0;   /* another thread is asking */
    due = now >= in->next_down_resolve;
    if (due)
        in->next_down_resolve = now + 0.5;
    pthread_mutex_unlock(&in->sentinel_mu);
    return due ? rsentinel_resolve(in, 0) : 0;
}
