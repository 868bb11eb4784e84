/* redis_sentinel: which server is the master of service_name, asked of the
 * sentinels in turn (SENTINEL get-master-addr-by-name).  Asked at open,
 * after a connection to the master fails, and after a -READONLY reply; the
 * connection handshake confirms the answer with ROLE (redis_conn.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

/* One sentinel's answer into a: 1 got it, 0 no answer (why set). */
static int ask(const rinst *in, const raddr *sen, raddr *a, char *why, size_t size)
{
    const rcfg *cfg = &in->cfg;
    struct timeval tv;
    redisContext *c;
    redisReply *rep;
    int ok = 0;

    tv.tv_sec = (time_t)cfg->socket_timeout;
    tv.tv_usec = (suseconds_t)((cfg->socket_timeout - (double)tv.tv_sec) * 1e6);
    c = redisConnectWithTimeout(sen->host, sen->port, tv);
    if (!c || c->err) {
        snprintf(why, size, "%s:%d: %s", sen->host, sen->port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return 0;
    }
    redisSetTimeout(c, tv);   /* hiredis 0.14: no command timeout otherwise */
    if (cfg->sentinel_password) {
        const char *argv[2] = {"AUTH", cfg->sentinel_password};
        size_t lens[2] = {4, strlen(cfg->sentinel_password)};
        rep = redisCommandArgv(c, 2, argv, lens);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(why, size, "%s:%d: AUTH refused: %s", sen->host, sen->port,
                     rep ? rep->str : c->errstr);
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            return 0;
        }
        freeReplyObject(rep);
    }
    {
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", cfg->service_name};
        size_t lens[3] = {8, 23, strlen(cfg->service_name)};
        rep = redisCommandArgv(c, 3, argv, lens);
    }
    if (!rep) {
        snprintf(why, size, "%s:%d: %s", sen->host, sen->port, c->errstr);
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
               rep->element[0]->type == REDIS_REPLY_STRING &&
               rep->element[1]->type == REDIS_REPLY_STRING &&
               rep->element[0]->len < sizeof a->host) {
        snprintf(a->host, sizeof a->host, "%s", rep->element[0]->str);
        a->port = atoi(rep->element[1]->str);
        ok = a->port > 0;
        if (!ok)
            snprintf(why, size, "%s:%d: bad port in its answer", sen->host, sen->port);
    } else if (rep->type == REDIS_REPLY_NIL) {
        snprintf(why, size, "%s:%d: does not know a master named '%s'", sen->host, sen->port,
                 cfg->service_name);
    } else {
        snprintf(why, size, "%s:%d: %s", sen->host, sen->port,
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected answer");
    }
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
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
