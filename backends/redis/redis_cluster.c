/* redis_cluster: keys to slots (CRC16-XMODEM of the key, or of its {hash
 * tag}, mod 16384), slots to master nodes (CLUSTER SLOTS), and the
 * redirections a cluster answers while slots move:
 *   -MOVED slot host:port   the slot lives there now: note it, refresh the
 *                           whole map (one thread at a time), retry there;
 *   -ASK slot host:port     this key only, this once: ASKING + the command
 *                           on that node, no map change;
 *   -TRYAGAIN               a multi-key command during a migration: retry;
 *   -CLUSTERDOWN            unavailable.
 * Multi-key operations are split by slot (MGET and DEL across slots are
 * refused by a cluster), pipelined per node; a group that gets redirected
 * is redone key by key through the single-key path.
 * Every node is an rserver (redis_conn.c): its own pool and health. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "redis.h"

#define NSLOTS    16384
#define MAX_NODES 128
#define MAX_REDIRECTS 8
/* While a slot's node is marked down, how often the map is asked again:
 * its replica may have been promoted meanwhile. */
#define DOWN_REFRESH_S 0.5

typedef struct rcluster {
    pthread_mutex_t  refresh_mu;  /* one CLUSTER SLOTS at a time */
    pthread_mutex_t  nodes_mu;    /* guards nodes[] growth */
    pthread_rwlock_t map_lock;    /* guards slots[] */
    rserver         *nodes[MAX_NODES];   /* kept until close */
    size_t           nnodes;
    int16_t          slots[NSLOTS];      /* node index, -1 unknown */
    unsigned         version;
    double           next_down_refresh;  /* nodes_mu; see DOWN_REFRESH_S */
} rcluster;

/* ---- CRC16-XMODEM (poly 0x1021, init 0), as redis's crc16.c ---- */

uint16_t rcluster_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned rcluster_slot(const char *key, size_t klen)
{
    const char *open = memchr(key, '{', klen), *close;
    if (open) {
        size_t rest = klen - (size_t)(open - key) - 1;
        close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)   /* "{}" is no tag: the whole key hashes */
            return rcluster_crc16(open + 1, (size_t)(close - open - 1)) & (NSLOTS - 1);
    }
    return rcluster_crc16(key, klen) & (NSLOTS - 1);
}

/* ---- nodes ---- */

/* The node at a (added when new); its index in *idx.  NULL when full. */
static rserver *node_get(rinst *in, const raddr *a, int *idx)
{
    rcluster *cl = in->cluster;
    rserver *s = NULL;
    pthread_mutex_lock(&cl->nodes_mu);
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->addr.port == a->port && strcmp(cl->nodes[i]->addr.host, a->host) == 0) {
            s = cl->nodes[i];
            *idx = (int)i;
            break;
        }
    if (!s && cl->nnodes < MAX_NODES && (s = malloc(sizeof *s)) != NULL) {
        rserver_init(s, in, a, NULL);
        s->state = RS_UP;   /* named by the cluster itself: no probe first */
        *idx = (int)cl->nnodes;
        cl->nodes[cl->nnodes++] = s;
    }
    pthread_mutex_unlock(&cl->nodes_mu);
    return s;
}

static rserver *node_at(rcluster *cl, int idx)
{
    rserver *s;
    pthread_mutex_lock(&cl->nodes_mu);
    s = idx >= 0 && (size_t)idx < cl->nnodes ? cl->nodes[idx] : NULL;
    pthread_mutex_unlock(&cl->nodes_mu);
    return s;
}

static rserver *node_for_slot(rcluster *cl, unsigned slot, unsigned *version)
{
    int idx;
    pthread_rwlock_rdlock(&cl->map_lock);
    idx = cl->slots[slot];
    if (version)
        *version = cl->version;
    pthread_rwlock_unlock(&cl->map_lock);
    return node_at(cl, idx);
}

/* ---- the slot map ---- */

/* A node address from a server: host non-empty and short, port an
 * integer in 1..65535 (not truncated into an int first). */
static int node_addr(const redisReply *host, const redisReply *port, const raddr *asked, raddr *a)
{
    if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER ||
        host->len >= sizeof a->host || memchr(host->str, '\0', host->len) ||
        port->integer < 1 || port->integer > 65535)
        return -1;
    if (host->len == 0 || strcmp(host->str, "?") == 0)
        memcpy(a->host, asked->host, sizeof a->host);   /* the node that answered */
    else
        memcpy(a->host, host->str, host->len + 1);
    a->port = (int)port->integer;
    return 0;
}

/* Parses a CLUSTER SLOTS reply into map; asked: the node that answered
 * (an empty ip means its own).  Every number is the server's: a range is
 * taken only when 0 <= start <= end <= 16383 and its master's port is in
 * 1..65535, and the loop runs over that checked range only.  1 when some
 * range was taken; *refused counts the ranges that were not. */
static int parse_slots(rinst *in, const redisReply *rep, const raddr *asked, int16_t *map,
                       size_t *refused)
{
    int got = 0;
    *refused = 0;
    if (rep->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i], *m;
        long long start, end;
        raddr a;
        int idx;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER) {
            (*refused)++;
            continue;
        }
        start = e->element[0]->integer;
        end = e->element[1]->integer;
        m = e->element[2];
        if (start < 0 || end >= NSLOTS || start > end || m->type != REDIS_REPLY_ARRAY ||
            m->elements < 2 || node_addr(m->element[0], m->element[1], asked, &a) != 0 ||
            !node_get(in, &a, &idx)) {
            (*refused)++;
            continue;
        }
        for (int s = (int)start; s <= (int)end; s++)
            map[s] = (int16_t)idx;
        got = 1;
    }
    return got;
}

/* Asks the known nodes, then the startup nodes, for CLUSTER SLOTS.
 * seen: the map version the caller acted on; when another thread already
 * refreshed past it, nothing is asked. */
static cachet_status refresh(rinst *in, unsigned seen, int wait)
{
    rcluster *cl = in->cluster;
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    rcmd cmd = {2, argv, lens, {NULL, NULL}, RX_SLOTS};
    int16_t *map;
    cachet_status st = CACHET_EUNAVAILABLE;
    size_t n, refused;

    if (wait)
        pthread_mutex_lock(&cl->refresh_mu);
    else if (pthread_mutex_trylock(&cl->refresh_mu) != 0)
        return CACHET_OK;
    pthread_rwlock_rdlock(&cl->map_lock);
    if (cl->version != seen) {
        pthread_rwlock_unlock(&cl->map_lock);
        pthread_mutex_unlock(&cl->refresh_mu);
        return CACHET_OK;
    }
    pthread_rwlock_unlock(&cl->map_lock);
    if (!(map = malloc(NSLOTS * sizeof *map))) {
        pthread_mutex_unlock(&cl->refresh_mu);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", in->cfg.name);
    }
    pthread_mutex_lock(&cl->nodes_mu);
    n = cl->nnodes;
    pthread_mutex_unlock(&cl->nodes_mu);
    for (size_t i = 0; i < n + in->cfg.nsentinels && st != CACHET_OK; i++) {
        rserver *s;
        redisReply *rep;
        raddr a;
        int idx;
        if (i < n) {
            s = node_at(cl, (int)i);
        } else {
            s = node_get(in, &in->cfg.sentinels[i - n], &idx);
        }
        if (!s)
            continue;
        if (rserver_exec(s, &cmd, 1, &rep) != CACHET_OK)
            continue;
        rserver_addr(s, &a);
        memset(map, 0xff, NSLOTS * sizeof *map);
        if (!parse_slots(in, rep, &a, map, &refused)) {
            char name[R_HOST_MAX + 16];
            rserver_name(s, name, sizeof name);
            cachet_backend_error(CACHET_EBACKEND, "backend %s: %s: protocol error: CLUSTER SLOTS "
                                 "named no valid slot range (%zu refused: slots must be in "
                                 "0..16383, ports in 1..65535)", in->cfg.name, name, refused);
        } else {
            pthread_rwlock_wrlock(&cl->map_lock);
            memcpy(cl->slots, map, sizeof cl->slots);
            cl->version++;
            pthread_rwlock_unlock(&cl->map_lock);
            st = CACHET_OK;
        }
        freeReplyObject(rep);
    }
    free(map);
    pthread_mutex_unlock(&cl->refresh_mu);
    if (st != CACHET_OK)
        return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: no node answered CLUSTER "
                                    "SLOTS (last: %s)", in->cfg.name, cachet_errmsg());
    return st;
}

/* Whether a call that failed on a node marked down (which did not try the
 * node, so its failure count did not move) should ask for the map again:
 * at most every DOWN_REFRESH_S per instance. */
static int down_refresh_due(rcluster *cl)
{
    double now = r_now();
    int due;
    pthread_mutex_lock(&cl->nodes_mu);
    due = now >= cl->next_down_refresh;
    if (due)
        cl->next_down_refresh = now + DOWN_REFRESH_S;
    pthread_mutex_unlock(&cl->nodes_mu);
    return due;
}

/* After a call failed on node s (status st, message set): refreshes the map
 * when s just failed (waiting for a refresh under way) or is marked down
 * and a look is due (never waiting).  1 when the map was refreshed; the
 * call's message is kept either way. */
static int refresh_after_failure(rinst *in, rserver *s, uint64_t failures_before,
                                 unsigned version, cachet_status st)
{
    char msg[1024];
    int just_failed = __atomic_load_n(&s->failures, __ATOMIC_RELAXED) != failures_before, ok;
    if (st != CACHET_EUNAVAILABLE || (!just_failed && !down_refresh_due(in->cluster)))
        return 0;
    snprintf(msg, sizeof msg, "%s", cachet_errmsg());
    ok = refresh(in, version, just_failed) == CACHET_OK;
    cachet_backend_error(st, "%s", msg);
    return ok;
}

cachet_status rcluster_open(rinst *in)
{
    rcluster *cl = calloc(1, sizeof *cl);
    cachet_status st;
    if (!cl)
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", in->cfg.name);
    pthread_mutex_init(&cl->refresh_mu, NULL);
    pthread_mutex_init(&cl->nodes_mu, NULL);
    pthread_rwlock_init(&cl->map_lock, NULL);
    memset(cl->slots, 0xff, sizeof cl->slots);
    in->cluster = cl;
    st = refresh(in, 0, 1);
    if (st == CACHET_EINVAL)
        return st;   /* AUTH refused: a configuration error */
    if (st != CACHET_OK)
        cachet_backend_log(CACHET_LOG_WARNING, "%s", cachet_errmsg());
    return CACHET_OK;   /* the cluster may come later */
}

void rcluster_close(rinst *in)
{
    rcluster *cl = in->cluster;
    if (!cl)
        return;
    for (size_t i = 0; i < cl->nnodes; i++) {
        rserver_destroy(cl->nodes[i]);
        free(cl->nodes[i]);
    }
    pthread_rwlock_destroy(&cl->map_lock);
    pthread_mutex_destroy(&cl->nodes_mu);
    pthread_mutex_destroy(&cl->refresh_mu);
    free(cl);
    in->cluster = NULL;
}

/* ---- redirections ---- */

/* "MOVED 3999 127.0.0.1:6381" / "ASK ..." into a: 1 parsed, 0 not this
 * keyword, -1 this keyword with a slot outside 0..16383, another slot than
 * the key's, or no valid host:port (a port outside 1..65535). */
static int parse_redirect(const char *msg, const char *kw, unsigned slot, raddr *a)
{
    size_t kl = strlen(kw), digits;
    const char *p;
    long v = 0;
    if (strncmp(msg, kw, kl) != 0 || msg[kl] != ' ')
        return 0;
    p = msg + kl + 1;
    digits = strspn(p, "0123456789");
    if (digits == 0 || digits > 5 || p[digits] != ' ')
        return -1;
    for (size_t i = 0; i < digits; i++)
        v = v * 10 + (p[i] - '0');
    if (v >= NSLOTS || (unsigned)v != slot)
        return -1;
    return raddr_parse(p + digits + 1, 6379, a) == 0 && !strchr(a->host, ' ') ? 1 : -1;
}

static cachet_status bad_redirect(rinst *in, unsigned slot, redisReply *r)
{
    char said[120];
    snprintf(said, sizeof said, "%s", r->str);
    rserver_scrub(in, said, sizeof said);
    freeReplyObject(r);
    return cachet_backend_error(CACHET_EBACKEND, "backend %s: slot %u: protocol error: a "
                                "redirection to no valid slot or host:port: '%s'",
                                in->cfg.name, slot, said);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

cachet_status rcluster_exec1(rinst *in, const char *key, size_t klen, rcmd *cmd, redisReply **rep)
{
    rcluster *cl = in->cluster;
    unsigned slot = rcluster_slot(key, klen), version = 0;
    rserver *ask = NULL;
    cachet_status st;
    int refreshed = 0;

    *rep = NULL;
    for (int tries = 0; tries < MAX_REDIRECTS; tries++) {
        redisReply *r;
        raddr a;
        int idx, pr;
        if (ask) {
            const char *av[1] = {"ASKING"};
            size_t al[1] = {6};
            rcmd two[2] = {{1, av, al, {NULL, NULL}, RX_OK}, *cmd};
            redisReply *reps[2];
            st = rserver_exec(ask, two, 2, reps);
            ask = NULL;
            if (st != CACHET_OK)
                return st;
            freeReplyObject(reps[0]);
            r = reps[1];
        } else {
            rserver *s = node_for_slot(cl, slot, &version);
            if (!s) {
                if (refreshed++ || refresh(in, version, 1) != CACHET_OK) {
                    char why[700];
                    snprintf(why, sizeof why, "%s", cachet_errmsg());
                    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: no node serves "
                                                "slot %u (%s)", in->cfg.name, slot, why);
                }
                if (!(s = node_for_slot(cl, slot, &version)))
                    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: no node serves "
                                                "slot %u", in->cfg.name, slot);
            }
            uint64_t before = __atomic_load_n(&s->failures, __ATOMIC_RELAXED);
            st = rserver_exec(s, cmd, 1, &r);
            if (st != CACHET_OK) {
                /* a node that failed (now, or earlier: marked down) may have
                 * been replaced by its replica: look again once */
                if (!refreshed && refresh_after_failure(in, s, before, version, st)) {
                    refreshed = 1;
                    if (node_for_slot(cl, slot, NULL) != s)
                        continue;
                }
                return st;
            }
        }
        if (r->type != REDIS_REPLY_ERROR) {
            *rep = r;
            return CACHET_OK;
        }
        if ((pr = parse_redirect(r->str, "MOVED", slot, &a)) < 0 ||
            (pr == 0 && (pr = parse_redirect(r->str, "ASK", slot, &a)) < 0))
            return bad_redirect(in, slot, r);
        if (pr == 1 && r->str[0] == 'M') {
            if (node_get(in, &a, &idx)) {
                pthread_rwlock_wrlock(&cl->map_lock);
                cl->slots[slot] = (int16_t)idx;
                pthread_rwlock_unlock(&cl->map_lock);
            }
            freeReplyObject(r);
            refresh(in, version, 0);   /* the other slots that moved with it */
            continue;
        }
        if (pr == 1) {   /* ASK */
            freeReplyObject(r);
            if (!(ask = node_get(in, &a, &idx)))
                return cachet_backend_error(CACHET_EBACKEND, "backend %s: too many nodes",
                                            in->cfg.name);
            continue;
        }
        if (strncmp(r->str, "TRYAGAIN", 8) == 0) {
            freeReplyObject(r);
            sleep_ms(10 << (tries < 4 ? tries : 4));
            continue;
        }
        if (strncmp(r->str, "CLUSTERDOWN", 11) == 0) {
            st = cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: slot %u: %s",
                                      in->cfg.name, slot, r->str);
            freeReplyObject(r);
            return st;
        }
        *rep = r;   /* another error: the caller words it */
        return CACHET_OK;
    }
    return cachet_backend_error(CACHET_EUNAVAILABLE, "backend %s: slot %u: still redirected "
                                "after %d tries", in->cfg.name, slot, MAX_REDIRECTS);
}

/* ---- multi-key: split by slot, pipelined per node ---- */

typedef struct {
    unsigned slot;
    size_t   i;
} slot_item;

static int by_slot(const void *a, const void *b)
{
    const slot_item *x = a, *y = b;
    return x->slot != y->slot ? (x->slot < y->slot ? -1 : 1) : (x->i < y->i ? -1 : x->i > y->i);
}

static void cmd_release(rcmd *c)
{
    free(c->own[0]);
    free(c->own[1]);
    c->own[0] = c->own[1] = NULL;
}

/* One item again through the single-key path (after a redirect). */
static void redo_one(rinst *in, cachet_backend_item *items, size_t i, rcluster_group_fn build,
                     rcluster_done_fn done, void *arg)
{
    rcmd cmd;
    redisReply *rep;
    cachet_status st = build(arg, &i, 1, &cmd);
    if (st != CACHET_OK) {
        items[i].status = cachet_backend_error(st, "backend %s: out of memory", in->cfg.name);
        return;
    }
    st = rcluster_exec1(in, items[i].key, items[i].klen, &cmd, &rep);
    cmd_release(&cmd);
    if (st != CACHET_OK) {
        items[i].status = st;
        return;
    }
    done(arg, &i, 1, rep);
    freeReplyObject(rep);
}

cachet_status rcluster_exec_multi(rinst *in, cachet_backend_item *items, size_t n,
                                  int one_per_key, rcluster_group_fn build,
                                  rcluster_done_fn done, void *arg)
{
    rcluster *cl = in->cluster;
    slot_item *si = malloc(n * sizeof *si);
    size_t *order = malloc(n * sizeof *order), *gstart = malloc((n + 1) * sizeof *gstart);
    int *gnode = malloc(n * sizeof *gnode);
    rcmd *cmds = malloc(n * sizeof *cmds);
    redisReply **reps = calloc(n, sizeof *reps);
    size_t *gidx = malloc(n * sizeof *gidx);
    size_t ng = 0, g, i;
    cachet_status first = CACHET_OK;
    unsigned version;
    int refreshed = 0;

    if (!si || !order || !gstart || !gnode || !cmds || !reps || !gidx) {
        free(si), free(order), free(gstart), free(gnode), free(cmds), free(reps), free(gidx);
        for (i = 0; i < n; i++)
            items[i].status = CACHET_ENOMEM;
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", in->cfg.name);
    }
    for (i = 0; i < n; i++)
        si[i] = (slot_item){rcluster_slot(items[i].key, items[i].klen), i};
    qsort(si, n, sizeof *si, by_slot);
    /* groups: runs of one slot (or single items) */
    pthread_rwlock_rdlock(&cl->map_lock);
    version = cl->version;
    for (i = 0; i < n; i++) {
        order[i] = si[i].i;
        if (i == 0 || one_per_key || si[i].slot != si[i - 1].slot) {
            gstart[ng] = i;
            gnode[ng++] = cl->slots[si[i].slot];
        }
    }
    pthread_rwlock_unlock(&cl->map_lock);
    gstart[ng] = n;
    /* per node: every group of the node in one pipeline */
    for (g = 0; g < ng; g++) {
        int node = gnode[g];
        size_t k = 0;
        rserver *s;
        cachet_status st;
        if (node == -2)
            continue;   /* done with an earlier node */
        s = node_at(cl, node);
        for (size_t h = g; h < ng; h++) {
            if (gnode[h] != node)
                continue;
            gidx[k] = h;
            if (build(arg, order + gstart[h], gstart[h + 1] - gstart[h], &cmds[k]) != CACHET_OK)
                break;
            k++;
        }
        uint64_t before = s ? __atomic_load_n(&s->failures, __ATOMIC_RELAXED) : 0;
        int moved = 0;
        st = s ? rserver_exec(s, cmds, k, reps) : CACHET_EUNAVAILABLE;
        /* the node failed or is marked down: its slots may have a new
         * master (failover); one look per call */
        if (st != CACHET_OK && s && !refreshed &&
            refresh_after_failure(in, s, before, version, st)) {
            refreshed = 1;
            moved = 1;
        }
        for (size_t j = 0; j < k; j++) {
            size_t h = gidx[j], *idx = order + gstart[h], cnt = gstart[h + 1] - gstart[h];
            cmd_release(&cmds[j]);
            gnode[h] = -2;
            if (st == CACHET_OK && reps[j]->type != REDIS_REPLY_ERROR) {
                done(arg, idx, cnt, reps[j]);
            } else if (st == CACHET_OK || !s ||
                       (moved && node_for_slot(cl, si[gstart[h]].slot, NULL) != s)) {
                /* redirected, no node known, or the slot has another node
                 * now: key by key, with redirects handled */
                for (size_t q = 0; q < cnt; q++)
                    redo_one(in, items, idx[q], build, done, arg);
            } else {
                for (size_t q = 0; q < cnt; q++)
                    items[idx[q]].status = st;
                if (first == CACHET_OK)
                    first = st;
            }
        }
        if (st == CACHET_OK)
            rreplies_free(reps, k);
    }
    free(si), free(order), free(gstart), free(gnode), free(cmds), free(reps), free(gidx);
    return first;
}

/* ---- fork and report ---- */

void rcluster_fork(rinst *in, int phase)
{
    rcluster *cl = in->cluster;
    if (phase == 0) {
        pthread_mutex_lock(&cl->refresh_mu);
        pthread_mutex_lock(&cl->nodes_mu);
        pthread_rwlock_wrlock(&cl->map_lock);
        for (size_t i = 0; i < cl->nnodes; i++)
            rserver_fork_prepare(cl->nodes[i]);
        return;
    }
    for (size_t i = 0; i < cl->nnodes; i++)
        phase == 1 ? rserver_fork_parent(cl->nodes[i]) : rserver_fork_child(cl->nodes[i]);
    pthread_rwlock_unlock(&cl->map_lock);
    pthread_mutex_unlock(&cl->nodes_mu);
    pthread_mutex_unlock(&cl->refresh_mu);
}

size_t rcluster_servers(rinst *in, cachet_server_state *out, size_t max)
{
    rcluster *cl = in->cluster;
    size_t n;
    pthread_mutex_lock(&cl->nodes_mu);
    n = cl->nnodes;
    pthread_mutex_unlock(&cl->nodes_mu);
    /* nodes are only ever added, and kept until close */
    for (size_t i = 0; i < n && i < max; i++)
        rserver_state(node_at(cl, (int)i), &out[i]);
    return n;
}

void rcluster_report(rinst *in, cachet_backend_report_fn fn, void *arg)
{
    rcluster *cl = in->cluster;
    size_t n, counts[MAX_NODES] = {0};
    char buf[600];

    pthread_rwlock_rdlock(&cl->map_lock);
    for (size_t s = 0; s < NSLOTS; s++)
        if (cl->slots[s] >= 0)
            counts[cl->slots[s]]++;
    pthread_rwlock_unlock(&cl->map_lock);
    pthread_mutex_lock(&cl->nodes_mu);
    n = cl->nnodes;
    pthread_mutex_unlock(&cl->nodes_mu);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        rserver_describe(cl->nodes[i], buf, sizeof buf);
        len = strlen(buf);
        snprintf(buf + len, sizeof buf - len, " slots=%zu", counts[i]);
        fn(arg, "server", buf);
    }
}
