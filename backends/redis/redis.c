/* The redis backends: dogpile.cache.redis, .redis_sentinel and
 * .redis_cluster over hiredis 0.14.1.  This file holds the vtables and the
 * operations; the three plugins share them through libredisclient and
 * differ only in the vtable their entry returns (plugin_redis.c,
 * plugin_redis_sentinel.c, plugin_redis_cluster.c).
 *
 *   get           GET                  get_multi     MGET (cluster: per slot)
 *   set           SET [EX|PX]          set_multi     SETs in one pipeline
 *   del           DEL                  delete_multi  DEL k1 k2 ... (per slot)
 *   lock          SET _lock<key> <token> NX PX lock_timeout
 *   unlock        EVAL compare-and-delete (only the owner's token deletes)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include "redis.h"

static const char UNLOCK_LUA[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end";

/* ---- running commands in each mode ---- */

static uint64_t failures_of(rserver *s)
{
    return rserver_failures(s);
}

static int is_readonly(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rep[i] && rep[i]->type == REDIS_REPLY_ERROR && strncmp(rep[i]->str, "READONLY", 8) == 0)
            return 1;
    return 0;
}

/* Single server, or the master a sentinel names: after a real connection
 * failure or a -READONLY reply (a failover happened), ask the sentinels
 * again and, if the master moved, run once more there. */
static cachet_status run(rinst *in, rcmd *cmds, size_t n, redisReply **rep)
{
    for (int attempt = 0;; attempt++) {
        uint64_t before = failures_of(&in->single);
        cachet_status st = rserver_exec(&in->single, cmds, n, rep);

        if (in->cfg.mode != RMODE_SENTINEL || attempt >= 2)
            return st;
        if (st == CACHET_EUNAVAILABLE && failures_of(&in->single) != before) {
            if (rsentinel_resolve(in, 0) == 1)
                continue;
            return st;
        }
        if (st == CACHET_EUNAVAILABLE) {
            /* marked down: its replica may have been promoted meanwhile */
            if (rsentinel_resolve_if_down(in) == 1)
                continue;
            return st;
        }
        if (st == CACHET_OK && is_readonly(rep, n)) {
            rreplies_free(rep, n);
            if (rsentinel_resolve(in, 0) == 1)
                continue;
            return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: the server answered "
                                        "READONLY (a replica) and the sentinels name no other "
                                        "master yet", in->cfg.name);
        }
        return st;
    }
}

static cachet_status run1(rinst *in, const char *key, size_t klen, rcmd *cmd, redisReply **rep)
{
    if (in->cfg.mode == RMODE_CLUSTER)
        return rcluster_exec1(in, key, klen, cmd, rep);
    return run(in, cmd, 1, rep);
}

static cachet_status reply_error(const rinst *in, const char *op, const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        char said[300];
        snprintf(said, sizeof said, "%s", rep->str);
        rserver_scrub(in, said, sizeof said);
        return cachet_backend_error(CACHET_EBACKEND, "backend %s: %s: the server answered: %s",
                                    in->cfg.name, op, said);
    }
    return cachet_backend_error(CACHET_EBACKEND, "backend %s: %s: unexpected reply type %d",
                                in->cfg.name, op, rep->type);
}

/* A GET reply to a value from malloc: hiredis 0.14 allocates the string
 * with malloc, so it is taken rather than copied. */
static cachet_status take_value(const rinst *in, redisReply *rep, void **value, size_t *len)
{
    if (rep->type == REDIS_REPLY_NIL)
        return CACHET_MISS;
    if (rep->type != REDIS_REPLY_STRING)
        return reply_error(in, "GET", rep);
    *value = rep->str;
    *len = rep->len;
    rep->str = NULL;
    return CACHET_OK;
}

/* SET argv for one value: SET key value [EX n | PX n] [NX] */
typedef struct {
    const char *argv[6];
    size_t      lens[6];
    char        ttl[24];
} setcmd;

/* ttl > 0: the write's own lifetime (PX, in whole milliseconds rounded
 * up so it never goes early); 0: redis_expiration_time, if set.  nx: add
 * (SET NX answers nil when the key is there). */
static void build_set(const rinst *in, setcmd *sc, rcmd *cmd, const char *key, size_t klen,
                      const void *value, size_t len, double ttl, int nx)
{
    int n = 0;
    sc->argv[n] = "SET", sc->lens[n++] = 3;
    sc->argv[n] = key, sc->lens[n++] = klen;
    sc->argv[n] = len ? value : "", sc->lens[n++] = len;
    if (ttl > 0) {
        double ms = ttl * 1000.0;
        long long whole = ms >= 9e15 ? 9000000000000000LL : (long long)ms;
        if ((double)whole < ms)
            whole++;
        sc->argv[n] = "PX", sc->lens[n++] = 2;
        snprintf(sc->ttl, sizeof sc->ttl, "%lld", whole);
        sc->argv[n] = sc->ttl, sc->lens[n++] = strlen(sc->ttl);
    } else if (in->cfg.expire_ms) {
        if (in->cfg.expire_whole_s) {
            sc->argv[n] = "EX";
            snprintf(sc->ttl, sizeof sc->ttl, "%ld", in->cfg.expire_ms / 1000);
        } else {
            sc->argv[n] = "PX";
            snprintf(sc->ttl, sizeof sc->ttl, "%ld", in->cfg.expire_ms);
        }
        sc->lens[n++] = 2;
        sc->argv[n] = sc->ttl, sc->lens[n++] = strlen(sc->ttl);
    }
    if (nx)
        sc->argv[n] = "NX", sc->lens[n++] = 2;
    cmd->argc = n;
    cmd->argv = sc->argv;
    cmd->argvlen = sc->lens;
    cmd->own[0] = cmd->own[1] = NULL;
    cmd->expect = nx ? RX_OK_OR_NIL : RX_OK;
}

static cachet_status too_big(const rinst *in, size_t len)
{
    return cachet_backend_error(CACHET_ETOOBIG, "backend %s: a value of %zu bytes is over "
                                "max_value_size (%zu); not stored (it could not be read back)",
                                in->cfg.name, len, in->cfg.max_value_size);
}

/* ---- open / close ---- */

static cachet_status open_mode(const cachet_backend_params *p, void **state, int mode)
{
    rinst *in = calloc(1, sizeof *in);
    cachet_status st;

    if (!in)
        return cachet_backend_error(CACHET_ENOMEM, "backend redis: out of memory");
    if ((st = rcfg_parse(p, mode, &in->cfg)) != CACHET_OK) {
        rcfg_free(&in->cfg);
        free(in);
        return st;
    }
    pthread_mutex_init(&in->sentinel_mu, NULL);
    rhosts_start(in);
    if (mode == RMODE_CLUSTER) {
        rserver_init(&in->single, in, NULL, NULL);   /* unused */
        st = rcluster_open(in);
    } else {
        raddr a;
        memcpy(a.host, in->cfg.host, sizeof a.host);
        a.port = in->cfg.port;
        rserver_init(&in->single, in, mode == RMODE_SINGLE ? &a : NULL,
                     mode == RMODE_SINGLE ? in->cfg.unix_path : NULL);
        if (mode == RMODE_SENTINEL && rsentinel_resolve(in, 1) < 0) {
            cachet_backend_log(CACHET_LOG_WARNING, "%s", cachet_errmsg());
            st = CACHET_OK;   /* the cache must not keep the service from starting */
        } else {
            /* One PING now: a refused AUTH or SELECT fails the open with a
             * clear message; a server that is down only gets marked. */
            const char *argv[] = {"PING"};
            size_t lens[] = {4};
            rcmd cmd = {1, argv, lens, {NULL, NULL}, RX_PONG};
            redisReply *rep;
            st = run(in, &cmd, 1, &rep);
            if (st == CACHET_OK)
                freeReplyObject(rep);
            else if (st != CACHET_EINVAL) {
                cachet_backend_log(CACHET_LOG_WARNING, "%s", cachet_errmsg());
                st = CACHET_OK;
            }
        }
    }
    if (st != CACHET_OK) {
        rhosts_stop(in);      /* the prober first: it uses the servers */
        if (mode == RMODE_CLUSTER)
            rcluster_close(in);
        rserver_destroy(&in->single);
        pthread_mutex_destroy(&in->sentinel_mu);
        rcfg_free(&in->cfg);
        free(in);
        return st;
    }
    *state = in;
    return CACHET_OK;
}

static cachet_status r_open_single(const cachet_backend_params *p, void **state)
{
    return open_mode(p, state, RMODE_SINGLE);
}

static cachet_status r_open_sentinel(const cachet_backend_params *p, void **state)
{
    return open_mode(p, state, RMODE_SENTINEL);
}

static cachet_status r_open_cluster(const cachet_backend_params *p, void **state)
{
    return open_mode(p, state, RMODE_CLUSTER);
}

static void r_close(void *state)
{
    rinst *in = state;
    if (!in)
        return;
    rhosts_stop(in);          /* the prober first: it uses the servers */
    if (in->cfg.mode == RMODE_CLUSTER)
        rcluster_close(in);
    rserver_destroy(&in->single);
    pthread_mutex_destroy(&in->sentinel_mu);
    rcfg_free(&in->cfg);
    free(in);
}

/* ---- single-key operations ---- */

static cachet_status r_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    rinst *in = state;
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, klen};
    rcmd cmd = {2, argv, lens, {NULL, NULL}, RX_BULK};
    redisReply *rep;
    cachet_status st;

    *value = NULL;
    *len = 0;
    if ((st = run1(in, key, klen, &cmd, &rep)) != CACHET_OK)
        return st;
    st = take_value(in, rep, value, len);
    freeReplyObject(rep);
    return st;
}

/* set (nx 0) and add (nx 1: CACHET_EXISTS when the key is there) */
static cachet_status set_or_add(void *state, const char *key, size_t klen, const void *value,
                                size_t len, double ttl, int nx)
{
    rinst *in = state;
    setcmd sc;
    rcmd cmd;
    redisReply *rep;
    cachet_status st;

    if (len > in->cfg.max_value_size)
        return too_big(in, len);
    build_set(in, &sc, &cmd, key, klen, value, len, ttl, nx);
    if ((st = run1(in, key, klen, &cmd, &rep)) != CACHET_OK)
        return st;
    if (nx && rep->type == REDIS_REPLY_NIL)
        st = CACHET_EXISTS;
    else if (rep->type != REDIS_REPLY_STATUS)
        st = reply_error(in, nx ? "SET NX" : "SET", rep);
    freeReplyObject(rep);
    return st;
}

static cachet_status r_set(void *state, const char *key, size_t klen, const void *value, size_t len,
                           double ttl)
{
    return set_or_add(state, key, klen, value, len, ttl, 0);
}

static cachet_status r_add(void *state, const char *key, size_t klen, const void *value, size_t len,
                           double ttl)
{
    return set_or_add(state, key, klen, value, len, ttl, 1);
}

static cachet_status r_del(void *state, const char *key, size_t klen)
{
    rinst *in = state;
    const char *argv[2] = {"DEL", key};
    size_t lens[2] = {3, klen};
    rcmd cmd = {2, argv, lens, {NULL, NULL}, RX_INT};
    redisReply *rep;
    cachet_status st;

    if ((st = run1(in, key, klen, &cmd, &rep)) != CACHET_OK)
        return st;
    if (rep->type != REDIS_REPLY_INTEGER)
        st = reply_error(in, "DEL", rep);
    freeReplyObject(rep);
    return st;
}

/* ---- multi-key operations ---- */

static void fail_all(cachet_backend_item *items, size_t n, cachet_status st)
{
    for (size_t i = 0; i < n; i++)
        items[i].status = st;
}

/* KEYWORD k1 k2 ... kn over items (MGET, DEL) */
static cachet_status keys_cmd(const char *kw, const cachet_backend_item *items, const size_t *idx,
                              size_t n, rcmd *cmd)
{
    const char **argv = malloc((n + 1) * sizeof *argv);
    size_t *lens = malloc((n + 1) * sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return CACHET_ENOMEM;
    }
    argv[0] = kw;
    lens[0] = strlen(kw);
    for (size_t i = 0; i < n; i++) {
        const cachet_backend_item *it = &items[idx ? idx[i] : i];
        argv[i + 1] = it->key;
        lens[i + 1] = it->klen;
    }
    cmd->argc = (int)(n + 1);
    cmd->argv = argv;
    cmd->argvlen = lens;
    cmd->own[0] = (void *)argv;
    cmd->own[1] = lens;
    cmd->expect = strcmp(kw, "MGET") == 0 ? RX_MGET : RX_INT;
    return CACHET_OK;
}

static void cmd_free(rcmd *cmd)
{
    free((void *)cmd->argv);
    free(cmd->argvlen);
}

typedef struct {
    rinst *in;
    cachet_backend_item *items;
    const char *kw;
} multi_ctx;

/* MGET reply into items[idx[..]] */
static cachet_status mget_done(void *arg, size_t *idx, size_t n, redisReply *rep)
{
    multi_ctx *m = arg;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        cachet_status st = reply_error(m->in, "MGET", rep);
        for (size_t i = 0; i < n; i++)
            m->items[idx ? idx[i] : i].status = st;
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        cachet_backend_item *it = &m->items[idx ? idx[i] : i];
        it->status = take_value(m->in, rep->element[i], &it->value, &it->len);
    }
    return CACHET_OK;
}

static cachet_status keys_build(void *arg, size_t *idx, size_t n, rcmd *cmd)
{
    multi_ctx *m = arg;
    return keys_cmd(m->kw, m->items, idx, n, cmd);
}

static cachet_status del_done(void *arg, size_t *idx, size_t n, redisReply *rep)
{
    multi_ctx *m = arg;
    cachet_status st = rep->type == REDIS_REPLY_INTEGER ? CACHET_OK : reply_error(m->in, "DEL", rep);
    for (size_t i = 0; i < n; i++)
        m->items[idx ? idx[i] : i].status = st;
    return st;
}

static cachet_status first_error(const cachet_backend_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].status < 0)
            return items[i].status;
    return CACHET_OK;
}

/* MGET or DEL of every item's key: one command (one per slot on a cluster);
 * done sets each item's status from the reply. */
static cachet_status keys_multi(rinst *in, cachet_backend_item *items, size_t n,
                                const char *verb, rcluster_done_fn done)
{
    multi_ctx m = {in, items, verb};
    redisReply *rep;
    cachet_status st;
    rcmd cmd;

    if (n == 0)
        return CACHET_OK;
    if (in->cfg.mode == RMODE_CLUSTER) {
        st = rcluster_exec_multi(in, items, n, 0, keys_build, done, &m);
        return st != CACHET_OK ? st : first_error(items, n);
    }
    if (keys_cmd(verb, items, NULL, n, &cmd) != CACHET_OK) {
        fail_all(items, n, CACHET_ENOMEM);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", in->cfg.name);
    }
    st = run(in, &cmd, 1, &rep);
    cmd_free(&cmd);
    if (st != CACHET_OK) {
        fail_all(items, n, st);
        return st;
    }
    done(&m, NULL, n, rep);
    freeReplyObject(rep);
    return first_error(items, n);
}

static cachet_status r_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        items[i].value = NULL;
        items[i].len = 0;
    }
    return keys_multi(state, items, n, "MGET", mget_done);
}

static cachet_status r_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    return keys_multi(state, items, n, "DEL", del_done);
}

/* set_multi: one SET per item; built per group for the cluster */
typedef struct {
    multi_ctx m;
    setcmd   *sc;
} set_ctx;

static cachet_status set_build(void *arg, size_t *idx, size_t n, rcmd *cmd)
{
    set_ctx *s = arg;
    const cachet_backend_item *it = &s->m.items[idx[0]];
    (void)n;   /* one key per command */
    build_set(s->m.in, &s->sc[idx[0]], cmd, it->key, it->klen, it->value, it->len, it->ttl, 0);
    return CACHET_OK;
}

static cachet_status set_done(void *arg, size_t *idx, size_t n, redisReply *rep)
{
    set_ctx *s = arg;
    cachet_status st = rep->type == REDIS_REPLY_STATUS ? CACHET_OK : reply_error(s->m.in, "SET", rep);
    s->m.items[idx[0]].status = st;
    (void)n;
    return st;
}

static cachet_status r_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    rinst *in = state;
    set_ctx s = {{in, items, "SET"}, NULL};
    redisReply **rep = NULL;
    rcmd *cmds = NULL;
    cachet_status st;
    size_t i;

    if (n == 0)
        return CACHET_OK;
    for (i = 0; i < n; i++)
        if (items[i].len > in->cfg.max_value_size) {
            fail_all(items, n, CACHET_ETOOBIG);
            return too_big(in, items[i].len);
        }
    if (!(s.sc = malloc(n * sizeof *s.sc)) || !(cmds = malloc(n * sizeof *cmds)) ||
        !(rep = calloc(n, sizeof *rep))) {
        free(s.sc);
        free(cmds);
        fail_all(items, n, CACHET_ENOMEM);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", in->cfg.name);
    }
    if (in->cfg.mode == RMODE_CLUSTER) {
        st = rcluster_exec_multi(in, items, n, 1, set_build, set_done, &s);
        if (st == CACHET_OK)
            st = first_error(items, n);
    } else {
        for (i = 0; i < n; i++)
            build_set(in, &s.sc[i], &cmds[i], items[i].key, items[i].klen, items[i].value,
                      items[i].len, items[i].ttl, 0);
        st = run(in, cmds, n, rep);
        if (st != CACHET_OK) {
            fail_all(items, n, st);
        } else {
            for (i = 0; i < n; i++)
                items[i].status = rep[i]->type == REDIS_REPLY_STATUS ? CACHET_OK
                                  : reply_error(in, "SET", rep[i]);
            rreplies_free(rep, n);
            st = first_error(items, n);
        }
    }
    free(rep);
    free(cmds);
    free(s.sc);
    return st;
}

/* ---- the distributed lock ---- */

/* "_lock" + key, as dogpile.cache's redis backend names its lock keys */
static char *lock_key(const char *key, size_t klen, size_t *lklen)
{
    char *k = malloc(klen + 6);
    if (!k)
        return NULL;
    memcpy(k, "_lock", 5);
    memcpy(k + 5, key, klen);
    k[klen + 5] = '\0';
    *lklen = klen + 5;
    return k;
}

/* 128 random bits, hex: the owner's token */
static char *new_token(void)
{
    unsigned char r[16];
    char *t = malloc(33);
    size_t got = 0;
    if (!t)
        return NULL;
    while (got < sizeof r) {
        ssize_t k = getrandom(r + got, sizeof r - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            free(t);
            return NULL;
        }
        got += (size_t)k;
    }
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(t + 2 * i, 3, "%02x", r[i]);
    return t;
}

static cachet_status r_lock(void *state, const char *key, size_t klen, void **token)
{
    rinst *in = state;
    char ttl[24], *lk, *tok;
    size_t lklen;
    const char *argv[6];
    size_t lens[6];
    rcmd cmd = {6, argv, lens, {NULL, NULL}, RX_OK_OR_NIL};
    redisReply *rep;
    cachet_status st;

    *token = NULL;
    if (!in->cfg.distributed_lock)
        return CACHET_ENOTSUP;
    if (!(lk = lock_key(key, klen, &lklen)) || !(tok = new_token())) {
        free(lk);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", in->cfg.name);
    }
    snprintf(ttl, sizeof ttl, "%ld", in->cfg.lock_timeout_ms);
    argv[0] = "SET", lens[0] = 3;
    argv[1] = lk, lens[1] = lklen;
    argv[2] = tok, lens[2] = strlen(tok);
    argv[3] = "NX", lens[3] = 2;
    argv[4] = "PX", lens[4] = 2;
    argv[5] = ttl, lens[5] = strlen(ttl);
    st = run1(in, lk, lklen, &cmd, &rep);
    free(lk);
    if (st != CACHET_OK) {
        free(tok);
        return st;
    }
    if (rep->type == REDIS_REPLY_STATUS) {
        *token = tok;
    } else {
        st = rep->type == REDIS_REPLY_NIL ? CACHET_MISS : reply_error(in, "SET NX (lock)", rep);
        free(tok);
    }
    freeReplyObject(rep);
    return st;
}

static cachet_status r_unlock(void *state, const char *key, size_t klen, void *token)
{
    rinst *in = state;
    char *lk;
    size_t lklen;
    const char *argv[5];
    size_t lens[5];
    rcmd cmd = {5, argv, lens, {NULL, NULL}, RX_INT};
    redisReply *rep;
    cachet_status st;

    if (!token)
        return CACHET_OK;
    if (!(lk = lock_key(key, klen, &lklen))) {
        free(token);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", in->cfg.name);
    }
    argv[0] = "EVAL", lens[0] = 4;
    argv[1] = UNLOCK_LUA, lens[1] = sizeof UNLOCK_LUA - 1;
    argv[2] = "1", lens[2] = 1;
    argv[3] = lk, lens[3] = lklen;
    argv[4] = token, lens[4] = strlen(token);
    st = run1(in, lk, lklen, &cmd, &rep);
    free(lk);
    free(token);
    if (st != CACHET_OK)
        return st;   /* the lock expires by itself */
    if (rep->type != REDIS_REPLY_INTEGER)
        st = reply_error(in, "EVAL (unlock)", rep);
    freeReplyObject(rep);
    return st;
}

/* ---- report and fork ---- */

static cachet_status r_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    rinst *in = state;
    char buf[600];

    if (in->cfg.mode == RMODE_CLUSTER) {
        rcluster_report(in, fn, arg);
    } else {
        /* asked first, so that the line after it says up or down, not "unknown" */
        rinfo_report(in, &in->single, fn, arg);
        rserver_describe(&in->single, buf, sizeof buf);
        fn(arg, "server", buf);
    }
    snprintf(buf, sizeof buf, "%ld", in->cfg.pool_maxsize);
    fn(arg, "pool_maxsize", buf);
    fn(arg, "distributed_lock", in->cfg.distributed_lock ? "true" : "false");
    return CACHET_OK;
}

static size_t r_servers(void *state, cachet_server_state *out, size_t max)
{
    rinst *in = state;
    if (in->cfg.mode == RMODE_CLUSTER)
        return rcluster_servers(in, out, max);
    if (max > 0)
        rserver_state(&in->single, out);
    return 1;
}

static void r_fork_prepare(void *state)
{
    rinst *in = state;
    pthread_mutex_lock(&in->sentinel_mu);
    if (in->cfg.mode == RMODE_CLUSTER)
        rcluster_fork(in, 0);
    else
        rserver_fork_prepare(&in->single);
    cachet_hostset_fork_prepare(&in->hostset);
}

static void r_fork_parent(void *state)
{
    rinst *in = state;
    cachet_hostset_fork_parent(&in->hostset);
    if (in->cfg.mode == RMODE_CLUSTER)
        rcluster_fork(in, 1);
    else
        rserver_fork_parent(&in->single);
    pthread_mutex_unlock(&in->sentinel_mu);
}

static void r_fork_child(void *state)
{
    rinst *in = state;
    cachet_hostset_fork_child(&in->hostset);   /* the prober restarts when needed */
    if (in->cfg.mode == RMODE_CLUSTER)
        rcluster_fork(in, 2);
    else
        rserver_fork_child(&in->single);
    pthread_mutex_unlock(&in->sentinel_mu);
}

#define REDIS_OPS(NAME, OPEN) {                                                     \
    .abi_version = CACHET_BACKEND_ABI_VERSION,                                \
    .name = NAME,                                                             \
    .caps = CACHET_CAP_SERVER_TTL | CACHET_CAP_DIST_LOCK | CACHET_CAP_PERSISTENT, \
    .max_key_len = 0,                                                         \
    .key_rules = 0,                                                           \
    .open = OPEN,                                                             \
    .close = r_close,                                                         \
    .get = r_get,                                                             \
    .set = r_set,                                                             \
    .add = r_add,                                                             \
    .del = r_del,                                                             \
    .get_multi = r_get_multi,                                                 \
    .set_multi = r_set_multi,                                                 \
    .delete_multi = r_delete_multi,                                           \
    .lock = r_lock,                                                           \
    .unlock = r_unlock,                                                       \
    .report = r_report,                                                       \
    .servers = r_servers,                                                     \
    .notify_publish = rnotify_publish,                                        \
    .notify_subscribe = rnotify_subscribe,                                    \
    .notify_unsubscribe = rnotify_unsubscribe,                                \
    .fork_prepare = r_fork_prepare,                                           \
    .fork_parent = r_fork_parent,                                             \
    .fork_child = r_fork_child,                                               \
}

const cachet_backend_ops redis_ops_single = REDIS_OPS("redis", r_open_single);
const cachet_backend_ops redis_ops_sentinel = REDIS_OPS("redis_sentinel", r_open_sentinel);
const cachet_backend_ops redis_ops_cluster = REDIS_OPS("redis_cluster", r_open_cluster);
