/* The non-blocking API (cachet_async_*) driven by a real epoll loop, as an
 * event-loop service drives it, against memory, a real memcached and a real
 * redis-server (tests/servers.c), and a server that accepts and never
 * answers (tests/hostile.h).
 *
 * What "never blocks the loop" means here: a 5 ms one-shot timerfd in the
 * same epoll set is re-armed each time it fires, and every cachet call the
 * loop makes is timed.  On a loaded machine a thread may be kept off the
 * CPU by the scheduler for any time at all, so what is asserted is the
 * time a cachet call spent *blocked* (neither running nor runnable:
 * wall time minus on-CPU and run-queue time from /proc/thread-self/schedstat):
 * never more than 20 ms.  The timer's lateness is asserted with a bound
 * well under the hung server's socket timeout (a loop that waited for the
 * server once would be late by at least that), and printed. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "helpers.h"
#include "servers.h"
#include "hostile.h"

#define NOPS 2000
#define WINDOW 500
#define TIMER_MS 5
#define BLOCKED_MAX_S 0.020

static test_server memcached_srv, redis_srv;
static int have_memcached, have_redis;
static char mc_servers[64], redis_url[96], dbm_dir[64], dbm_arg[96];

/* ------------------------------------------------------------- targets */

#ifdef HAVE_LIBMEMCACHED
#define BUILT_MEMCACHED 1
#else
#define BUILT_MEMCACHED 0
#endif
#ifdef HAVE_HIREDIS
#define BUILT_REDIS 1
#else
#define BUILT_REDIS 0
#endif
#ifdef HAVE_GDBM
#define BUILT_DBM 1
#else
#define BUILT_DBM 0
#endif

/* What a body runs on: a backend, its options, the server it needs (the
 * harness starts them in group_setup) and the async workers of ops. */
typedef struct {
    const char *backend;
    const char *opts[8];     /* option pairs, NULL-terminated */
    int         built;       /* its plugin was built (configure found its library) */
    const int  *up;          /* its server started (NULL: it needs none) */
    const char *server;      /* that server, for the failure */
    unsigned    threads;     /* for ops: cachet_async_open's threads (0: none) */
} target;

static target memory = {"memory", {NULL}, 1, NULL, NULL, 0};
static target memcached = {"memcached", {"memcache_servers", mc_servers, NULL},
                           BUILT_MEMCACHED, &have_memcached, "memcached", 0};
static target memcache_pool = {"memcache_pool", {"memcache_servers", mc_servers, NULL},
                               BUILT_MEMCACHED, &have_memcached, "memcached", 0};
static target redis = {"redis", {"backend_argument", redis_url, NULL},
                       BUILT_REDIS, &have_redis, "redis-server", 0};
/* the same through a proxy chain, with workers */
static target redis_through_proxies = {"redis", {"backend_argument", redis_url,
                                                 "cachet_proxies", "log", NULL},
                                       BUILT_REDIS, &have_redis, "redis-server", 2};
/* a file in a directory of its own, made and removed by the group */
static target dbm = {"dbm", {"backend_argument", dbm_arg, NULL}, BUILT_DBM, NULL, NULL, 0};

/* The target of this test: skipped where its plugin was not built, failed
 * where its server did not start. */
static const target *target_of(void **state)
{
    const target *t = *state;
    if (!t->built)
        skip();
    if (t->up && !*t->up)
        fail_msg("%s did not start", t->server);
    return t;
}

/* ---------------------------------------------------------------- loop */

typedef struct {
    int ep, tfd, afd, sched_fd;
    cachet_async *q;
    double deadline;          /* when the timer should fire next */
    double timer_late_max;
    long   timer_fires;
    double blocked_max;       /* the longest a cachet call was blocked */
    double call_max;          /* the longest wall time of a cachet call */
    double t0_wall, t0_run;   /* at call_begin */
    pthread_t thread;
} loop;

/* ns on CPU + ns waiting on the run queue, of the calling thread */
static double run_s(loop *L)
{
    char buf[128];
    ssize_t n = pread(L->sched_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    unsigned long long cpu = 0, wait = 0;
    sscanf(buf, "%llu %llu", &cpu, &wait);
    return (double)(cpu + wait) / 1e9;
}

static void call_begin(loop *L)
{
    L->t0_wall = th_now_s();
    L->t0_run = run_s(L);
}

static void call_end(loop *L)
{
    double wall = th_now_s() - L->t0_wall, run = run_s(L) - L->t0_run;
    double blocked = wall - run;
    if (wall > L->call_max)
        L->call_max = wall;
    if (blocked > L->blocked_max)
        L->blocked_max = blocked;
}

static void arm(loop *L)
{
    L->deadline = th_now_s() + TIMER_MS / 1000.0;
    struct itimerspec its = {.it_value = {.tv_nsec = TIMER_MS * 1000000L}};
    timerfd_settime(L->tfd, 0, &its, NULL);
}

static void loop_init(loop *L, cachet_region *r, unsigned threads)
{
    memset(L, 0, sizeof *L);
    L->thread = pthread_self();
    L->sched_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    assert_true(L->sched_fd >= 0);
    assert_int_equal(cachet_async_open(r, threads, &L->q), CACHET_OK);
    L->afd = cachet_async_fd(L->q);
    assert_true(L->afd >= 0);
    L->ep = epoll_create1(EPOLL_CLOEXEC);
    L->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    assert_true(L->ep >= 0 && L->tfd >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = L->afd};
    assert_int_equal(epoll_ctl(L->ep, EPOLL_CTL_ADD, L->afd, &ev), 0);
    ev.data.fd = L->tfd;
    assert_int_equal(epoll_ctl(L->ep, EPOLL_CTL_ADD, L->tfd, &ev), 0);
    arm(L);
}

/* One turn of the loop: waits up to 50 ms, serves the timer, dispatches. */
static void loop_turn(loop *L)
{
    struct epoll_event evs[4];
    int n = epoll_wait(L->ep, evs, 4, 50);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd == L->tfd) {
            uint64_t x;
            if (read(L->tfd, &x, sizeof x) == sizeof x) {
                double late = th_now_s() - L->deadline;
                if (late > L->timer_late_max)
                    L->timer_late_max = late;
                L->timer_fires++;
                arm(L);
            }
        } else {
            call_begin(L);
            cachet_async_dispatch(L->q);
            call_end(L);
        }
    }
}

static void loop_close(loop *L)
{
    if (L->q)
        cachet_async_close(L->q);
    L->q = NULL;
    close(L->ep);
    close(L->tfd);
    close(L->sched_fd);
}

static void loop_assert_never_blocked(loop *L, double late_bound)
{
    print_message("    loop: %ld timer fires, latest %.1f ms late; longest cachet call %.2f ms, "
                  "of it blocked %.2f ms\n", L->timer_fires, L->timer_late_max * 1e3,
                  L->call_max * 1e3, L->blocked_max * 1e3);
    assert_true(L->blocked_max < BLOCKED_MAX_S);
    assert_true(L->timer_late_max < late_bound);
    assert_true(L->timer_fires > 0);
}

/* ------------------------------------------------- the 2000 operations */

enum { K_GET, K_SET, K_MISS, K_GOC, K_ADD, K_MULTI, K_SETEX, K_DEL, NKINDS };

typedef struct run run;
typedef struct {
    run *R;
    int  id;
    int  chained;             /* 0: the op itself; 1: the op its callback submitted */
} opref;

struct run {
    loop *L;
    char  prefix[64];
    int   submitted, completed, inflight;
    int   count[NOPS][2];     /* completions per op id (and its chained op) */
    int   wrong[NOPS][2];     /* a completion with the wrong status or value */
    int   chain_refused;
    int   creator_on_loop_thread, creator_calls;
    int   tolerate_errors;    /* a hung server in the list: errors are allowed */
    int   errors, succeeded;
    opref refs[NOPS][2];
};

static void key_of(run *R, char *buf, size_t n, const char *what, int i)
{
    snprintf(buf, n, "%s%s:%d", R->prefix, what, i);
}

static int is_value(cachet_status st, void *v, size_t len, const char *want)
{
    int ok = st == CACHET_OK && v && len == strlen(want) && memcmp(v, want, len) == 0 &&
             ((char *)v)[len] == 0;
    return ok;
}

static void account(run *R, opref *o, cachet_status st, int right)
{
    R->count[o->id][o->chained]++;
    if (st < 0) {
        R->errors++;
        if (!R->tolerate_errors)
            print_message("    op %d.%d: %s: %s\n", o->id, o->chained, cachet_strerror(st),
                          cachet_errmsg());
    } else if (right) {
        R->succeeded++;
    }
    if (!right && !(R->tolerate_errors && st < 0))
        R->wrong[o->id][o->chained]++;
    if (!o->chained) {
        R->completed++;
        R->inflight--;
    }
}

static cachet_status creator(void *arg, const char *key, void **value, size_t *len)
{
    run *R = arg;
    __atomic_add_fetch(&R->creator_calls, 1, __ATOMIC_RELAXED);
    if (pthread_equal(pthread_self(), R->L->thread))
        __atomic_add_fetch(&R->creator_on_loop_thread, 1, __ATOMIC_RELAXED);
    const char *colon = strrchr(key, ':');
    char *v = malloc(32);
    snprintf(v, 32, "c:%s", colon ? colon + 1 : key);
    *value = v;
    *len = strlen(v);
    return CACHET_OK;
}

static void done_chained(void *arg, cachet_status st, void *v, size_t len)
{
    opref *o = arg;
    run *R = o->R;
    char want[32];
    int kind = o->id % NKINDS, right;
    if (kind == K_SET) {          /* the get after the set */
        snprintf(want, sizeof want, "n:%d", o->id);
        right = is_value(st, v, len, want);
    } else if (kind == K_ADD) {   /* the second add of the same key */
        right = st == CACHET_EXISTS && !v && len == 0;
    } else {                      /* K_DEL: the get after the delete */
        right = st == CACHET_MISS && !v;
    }
    account(R, o, st, right);
    cachet_free(v);
}

static void done_one(void *arg, cachet_status st, void *v, size_t len)
{
    opref *o = arg;
    run *R = o->R;
    char want[32], key[128];
    int i = o->id, right = 0;
    assert_true(pthread_equal(pthread_self(), R->L->thread));   /* callbacks in the loop's thread */
    switch (i % NKINDS) {
    case K_GET:
        snprintf(want, sizeof want, "v:%d", i % WINDOW);
        right = is_value(st, v, len, want);
        break;
    case K_MISS:
        right = st == CACHET_MISS && !v && len == 0;
        break;
    case K_GOC:
        snprintf(want, sizeof want, "c:%d", i);
        right = is_value(st, v, len, want);
        break;
    case K_SETEX:
        right = st == CACHET_OK && !v && len == 0;
        break;
    case K_SET:
    case K_ADD:
    case K_DEL:
        right = (i % NKINDS == K_DEL ? (st == CACHET_OK || st == CACHET_MISS) : st == CACHET_OK) &&
                !v && len == 0;
        if (right) {
            /* a callback submits more work: read the write back */
            opref *c = &R->refs[i][1];
            cachet_status s2;
            if (i % NKINDS == K_ADD) {
                key_of(R, key, sizeof key, "add", i);
                s2 = cachet_async_add(R->L->q, key, "again", 5, NULL, done_chained, c);
            } else {
                key_of(R, key, sizeof key, i % NKINDS == K_SET ? "new" : "del", i);
                s2 = cachet_async_get(R->L->q, key, done_chained, c);
            }
            if (s2 != CACHET_OK)
                R->chain_refused++;
        }
        break;
    }
    account(R, o, st, right);
    cachet_free(v);
}

static void done_multi(void *arg, cachet_status st, cachet_item *items, size_t n)
{
    opref *o = arg;
    run *R = o->R;
    char want[32];
    int i = o->id, right = n == 3;
    if (right) {
        snprintf(want, sizeof want, "v:%d", i % WINDOW);
        right = is_value(items[0].status, items[0].value, items[0].len, want);
        snprintf(want, sizeof want, "v:%d", (i + 1) % WINDOW);
        right = right && is_value(items[1].status, items[1].value, items[1].len, want);
        right = right && items[2].status == CACHET_MISS && !items[2].value;
        right = right && st == CACHET_OK;
    }
    for (size_t k = 0; k < n; k++)
        cachet_free(items[k].value);
    account(R, o, right ? st : (st < 0 ? st : CACHET_EBACKEND), right);
}

static cachet_status submit(run *R, int i)
{
    char key[128], val[32], k2[128], k3[128];
    opref *o = &R->refs[i][0];
    cachet_async *q = R->L->q;
    cachet_set_options so = {.ttl = 60};
    *o = (opref){R, i, 0};
    R->refs[i][1] = (opref){R, i, 1};
    switch (i % NKINDS) {
    case K_GET:
        key_of(R, key, sizeof key, "pre", i % WINDOW);
        return cachet_async_get(q, key, done_one, o);
    case K_SET:
        key_of(R, key, sizeof key, "new", i);
        snprintf(val, sizeof val, "n:%d", i);
        return cachet_async_set(q, key, val, strlen(val), done_one, o);
    case K_MISS:
        key_of(R, key, sizeof key, "absent", i);
        return cachet_async_get(q, key, done_one, o);
    case K_GOC:
        key_of(R, key, sizeof key, "goc", i);
        return cachet_async_get_or_create(q, key, creator, R, done_one, o);
    case K_ADD:
        key_of(R, key, sizeof key, "add", i);
        return cachet_async_add(q, key, "first", 5, NULL, done_one, o);
    case K_MULTI: {
        key_of(R, key, sizeof key, "pre", i % WINDOW);
        key_of(R, k2, sizeof k2, "pre", (i + 1) % WINDOW);
        key_of(R, k3, sizeof k3, "absent-multi", i);
        const char *keys[3] = {key, k2, k3};
        return cachet_async_get_multi(q, keys, 3, done_multi, o);
    }
    case K_SETEX:
        key_of(R, key, sizeof key, "setex", i);
        return cachet_async_set_ex(q, key, "x", 1, &so, done_one, o);
    default:   /* K_DEL: a key written before */
        key_of(R, key, sizeof key, "del", i);
        return cachet_async_delete(q, key, done_one, o);
    }
}

static void prefill(run *R, cachet_region *r)
{
    char key[128], val[32];
    for (int j = 0; j < WINDOW; j++) {
        key_of(R, key, sizeof key, "pre", j);
        snprintf(val, sizeof val, "v:%d", j);
        cachet_status st = cachet_set(r, key, val, strlen(val));
        if (!R->tolerate_errors)
            assert_int_equal(st, CACHET_OK);
    }
    for (int i = K_DEL; i < NOPS; i += NKINDS) {
        key_of(R, key, sizeof key, "del", i);
        cachet_status st = cachet_set(r, key, "gone soon", 9);
        if (!R->tolerate_errors)
            assert_int_equal(st, CACHET_OK);
    }
}

/* 2000 operations, never more than 500 outstanding, in the epoll loop. */
static void run_ops(run *R, double seconds)
{
    loop *L = R->L;
    double end = th_now_s() + seconds;
    arm(L);     /* the prefill (blocking calls, before the loop runs) is not the loop's time */
    while (R->completed < NOPS && th_now_s() < end) {
        while (R->submitted < NOPS && R->inflight < WINDOW) {
            call_begin(L);
            cachet_status st = submit(R, R->submitted);
            call_end(L);
            assert_int_equal(st, CACHET_OK);
            R->submitted++;
            R->inflight++;
        }
        loop_turn(L);
    }
    /* the chained ops submitted by the last callbacks */
    while (cachet_async_outstanding(L->q) > 0 && th_now_s() < end)
        loop_turn(L);
}

static void assert_each_once(run *R)
{
    int chained_expected = 0, missing = 0, twice = 0, wrong = 0;
    for (int i = 0; i < NOPS; i++) {
        int k = i % NKINDS;
        if (R->count[i][0] != 1)
            *(R->count[i][0] ? &twice : &missing) += 1;
        wrong += R->wrong[i][0] + R->wrong[i][1];
        int chains = (k == K_SET || k == K_ADD || k == K_DEL) && R->wrong[i][0] == 0 &&
                     R->count[i][0] == 1;
        if (R->tolerate_errors)
            chains = R->count[i][1] > 0;   /* only ops whose first half succeeded chained */
        chained_expected += chains;
        if (chains && R->count[i][1] != 1)
            *(R->count[i][1] ? &twice : &missing) += 1;
        if (!chains && R->count[i][1] != 0)
            twice++;
    }
    print_message("    %d ops (+%d chained) completed: %d missing, %d more than once, %d wrong, "
                  "%d errors\n", R->completed, chained_expected, missing, twice, wrong, R->errors);
    assert_int_equal(missing, 0);
    assert_int_equal(twice, 0);
    assert_int_equal(wrong, 0);
    assert_int_equal(R->completed, NOPS);
    assert_int_equal(R->chain_refused, 0);
}

static run *run_new(loop *L, const char *name)
{
    run *R = calloc(1, sizeof *R);
    assert_non_null(R);
    R->L = L;
    snprintf(R->prefix, sizeof R->prefix, "async-%ld-%s-%.0f:", (long)getpid(), name,
             th_now_s() * 1e6);
    return R;
}

/* The 2000 operations on a target: each completes once, right, in the
 * loop's thread; the creator never runs there; the loop is never blocked. */
static void ops(void **state)
{
    const target *t = target_of(state);
    cachet_region *r = th_open(t->backend, t->opts);
    loop L;
    run *R;
    loop_init(&L, r, t->threads);
    R = run_new(&L, t->backend);
    prefill(R, r);
    run_ops(R, 120);
    assert_each_once(R);
    assert_int_equal(R->creator_on_loop_thread, 0);
    assert_true(R->creator_calls > 0);
    loop_assert_never_blocked(&L, 1.0);
    loop_close(&L);
    free(R);
    cachet_region_close(r);
}

/* Many gets of the same few keys queued at once (one worker, so they
 * batch, a key many times in one get_multi, as a hot key is): every one
 * gets its own copy of the right value. */
typedef struct {
    int n, right;
} dupes;

static void dupe_done(void *arg, cachet_status st, void *v, size_t len)
{
    dupes *d = arg;
    d->n++;
    d->right += st == CACHET_OK && len == 5 && memcmp(v, "value", 5) == 0;
    cachet_free(v);
}

static void repeated_keys(void **state)
{
    const target *t = target_of(state);
    cachet_region *r = th_open(t->backend, t->opts);
    assert_int_equal(cachet_set(r, "dup-a", "value", 5), CACHET_OK);
    assert_int_equal(cachet_set(r, "dup-b", "value", 5), CACHET_OK);
    cachet_async *q;
    assert_int_equal(cachet_async_open(r, 1, &q), CACHET_OK);
    dupes d = {0};
    for (int i = 0; i < 600; i++)
        assert_int_equal(cachet_async_get(q, i % 3 ? "dup-a" : "dup-b", dupe_done, &d), CACHET_OK);
    cachet_async_close(q);
    assert_int_equal(d.n, 600);
    assert_int_equal(d.right, 600);
    cachet_region_close(r);
}

/* ------------------------------------------------ a server that hangs */

/* The hostile servers outlive their test: their connection threads may
 * still be reading the struct after hostile_stop returns. */
static hostile_server hostiles[8];
static int nhostiles;

static hostile_server *next_hostile(void)
{
    assert_true(nhostiles < 8);
    return &hostiles[nhostiles++];
}

/* A redis that answers (PING, SET: +OK; GET: nil) until *hang is set, and
 * then reads every request and answers none: the region opens and talks to
 * it, and then it hangs under load, as a stuck server does. */
static int redis_hang;

static void redis_then_hang(int fd, int conn_no, void *arg)
{
    char **av;
    size_t *al;
    int ac;
    while ((ac = hostile_read_resp(fd, &av, &al)) > 0) {
        int hang = __atomic_load_n(&redis_hang, __ATOMIC_SEQ_CST);
        if (!hang) {
            if (strcasecmp(av[0], "GET") == 0)
                hostile_writes(fd, "$-1\r\n");
            else if (strcasecmp(av[0], "MGET") == 0) {
                char head[32];
                snprintf(head, sizeof head, "*%d\r\n", ac - 1);
                hostile_writes(fd, head);
                for (int i = 1; i < ac; i++)
                    hostile_writes(fd, "$-1\r\n");
            } else if (strcasecmp(av[0], "PING") == 0)
                hostile_writes(fd, "+PONG\r\n");
            else
                hostile_writes(fd, "+OK\r\n");
        }
        hostile_free_argv(ac, av, al);
    }
}

/* A region on a redis_then_hang server, opened and written to while it
 * answers, with redis_socket_timeout seconds; the server hangs from now on.
 * *hp: the server, for hostile_stop. */
static cachet_region *open_hung_redis(hostile_server **hp, const char *socket_timeout)
{
    char url[96];
    cachet_region *r;
    *hp = next_hostile();
    __atomic_store_n(&redis_hang, 0, __ATOMIC_SEQ_CST);
    assert_int_equal(hostile_start(*hp, redis_then_hang, NULL), 0);
    snprintf(url, sizeof url, "url:redis://127.0.0.1:%d/0", (*hp)->port);
    const char *opts[] = {"backend_argument", url, "redis_socket_timeout", socket_timeout, NULL};
    r = th_open("redis", opts);
    assert_int_equal(cachet_set(r, "warm", "v", 1), CACHET_OK);   /* it answers, for now */
    __atomic_store_n(&redis_hang, 1, __ATOMIC_SEQ_CST);
    return r;
}

/* A memcached (text protocol) that stores nothing but answers until
 * mc_hang is set, and then reads every request and answers none. */
static int mc_hang;

static void memcached_then_hang(int fd, int conn_no, void *arg)
{
    char line[2048];
    ssize_t n;
    while ((n = hostile_read_line(fd, line, sizeof line)) > 0) {
        if (__atomic_load_n(&mc_hang, __ATOMIC_SEQ_CST))
            continue;
        char cmd[16] = "";
        unsigned long flags = 0, exp = 0, bytes = 0;
        sscanf(line, "%15s", cmd);
        if (strcmp(cmd, "set") == 0 || strcmp(cmd, "add") == 0) {
            char key[300];
            if (sscanf(line, "%*s %299s %lu %lu %lu", key, &flags, &exp, &bytes) == 4 &&
                bytes < 1 << 20) {
                char *data = malloc(bytes + 2);
                int ok = data && hostile_read_exact(fd, data, bytes + 2) == 0;
                free(data);
                if (!ok)
                    return;
            }
            if (!strstr(line, "noreply"))
                hostile_writes(fd, "STORED\r\n");
        } else if (strcmp(cmd, "get") == 0 || strcmp(cmd, "gets") == 0) {
            hostile_writes(fd, "END\r\n");
        } else if (strcmp(cmd, "delete") == 0) {
            hostile_writes(fd, "NOT_FOUND\r\n");
        } else if (strcmp(cmd, "version") == 0) {
            hostile_writes(fd, "VERSION 1.6.18\r\n");
        } else {
            hostile_writes(fd, "ERROR\r\n");
        }
    }
}

/* memcached with a hung server in its list: keys on the live server work,
 * keys on the hung one fail after the socket timeout, and the loop's timer
 * keeps its time throughout. */
static void hung_server_in_the_list_never_blocks_the_loop(void **state)
{
#ifndef HAVE_LIBMEMCACHED
    skip();
#endif
    if (!have_memcached)
        fail_msg("memcached did not start");
    hostile_server *hp = next_hostile();
    __atomic_store_n(&mc_hang, 0, __ATOMIC_SEQ_CST);
    assert_int_equal(hostile_start(hp, memcached_then_hang, NULL), 0);
    char servers[128];
    snprintf(servers, sizeof servers, "127.0.0.1:%d,127.0.0.1:%d", memcached_srv.port, hp->port);
    const char *opts[] = {"memcache_servers", servers, "memcache_socket_timeout", "2", NULL};
    cachet_region *r = th_open("memcached", opts);
    loop L;
    loop_init(&L, r, 0);
    run *R = run_new(&L, "hung-mc");
    R->tolerate_errors = 1;
    prefill(R, r);             /* both servers answer, for now */
    __atomic_store_n(&mc_hang, 1, __ATOMIC_SEQ_CST);
    double t0 = th_now_s();
    run_ops(R, 300);
    assert_each_once(R);
    print_message("    %d right answers, %d errors in %.2f s\n", R->succeeded, R->errors,
                  th_now_s() - t0);
    assert_true(th_now_s() - t0 >= 1.9);    /* the server did hang for a socket timeout */
    assert_true(R->errors > 0);        /* the hung server did get keys */
    assert_true(R->succeeded > 0);     /* and the live one answered */
    /* a loop that had waited for the hung server once would be >= 2 s late */
    loop_assert_never_blocked(&L, 1.0);
    loop_close(&L);
    free(R);
    cachet_region_close(r);
    hostile_stop(hp);
}

/* redis whose only server hangs: every op fails, none blocks the loop. */
typedef struct {
    int count, errors, other;
} tally;

static void count_done(void *arg, cachet_status st, void *v, size_t len)
{
    tally *t = arg;
    t->count++;
    if (st == CACHET_EUNAVAILABLE || st == CACHET_ETIMEDOUT)
        t->errors++;
    else if (st < 0)
        t->other++;
    cachet_free(v);
}

static void hung_redis_never_blocks_the_loop(void **state)
{
#ifndef HAVE_HIREDIS
    skip();
#endif
    hostile_server *hp;
    cachet_region *r = open_hung_redis(&hp, "2");
    loop L;
    loop_init(&L, r, 4);
    double t0 = th_now_s();
    tally t = {0};
    int n = 40;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        call_begin(&L);
        assert_int_equal(i % 2 ? cachet_async_get(L.q, key, count_done, &t)
                               : cachet_async_set(L.q, key, "v", 1, count_done, &t), CACHET_OK);
        call_end(&L);
    }
    double end = th_now_s() + 120;
    while (t.count < n && th_now_s() < end)
        loop_turn(&L);
    assert_int_equal(t.count, n);
    assert_int_equal(t.errors + t.other, n);
    assert_int_equal(t.other, 0);
    assert_true(th_now_s() - t0 >= 1.9);    /* the server did hang for a socket timeout */
    loop_assert_never_blocked(&L, 1.0);
    loop_close(&L);
    cachet_region_close(r);
    hostile_stop(hp);
}

/* ------------------------------------------------------------- close */

typedef struct {
    int count[6000];
    int wrong;
    pthread_t thread;
    int other_thread;
} closing;

typedef struct {
    closing *c;
    int id;
} cref;

static void close_done(void *arg, cachet_status st, void *v, size_t len)
{
    cref *r = arg;
    r->c->count[r->id]++;
    if (!pthread_equal(pthread_self(), r->c->thread))
        r->c->other_thread++;
    if (r->id % 2 == 1 && !(st == CACHET_OK && len == 1 && memcmp(v, "v", 1) == 0) &&
        st != CACHET_MISS)
        r->c->wrong++;   /* a get: hit (its set ran first) or miss, never garbage */
    if (r->id % 2 == 0 && st != CACHET_OK)
        r->c->wrong++;
    cachet_free(v);
}

static void close_with_operations_queued(void **state)
{
    const target *t = target_of(state);
    cachet_region *r = th_open(t->backend, t->opts);
    cachet_async *q;
    assert_int_equal(cachet_async_open(r, 2, &q), CACHET_OK);
    closing *c = calloc(1, sizeof *c);
    cref *refs = calloc(6000, sizeof *refs);
    c->thread = pthread_self();
    for (int i = 0; i < 6000; i++) {
        char key[64];
        refs[i] = (cref){c, i};
        snprintf(key, sizeof key, "close-%ld-%d", (long)getpid(), i / 2);
        assert_int_equal(i % 2 ? cachet_async_get(q, key, close_done, &refs[i])
                               : cachet_async_set(q, key, "v", 1, close_done, &refs[i]), CACHET_OK);
    }
    cachet_async_close(q);     /* nothing dispatched yet */
    for (int i = 0; i < 6000; i++)
        assert_int_equal(c->count[i], 1);
    assert_int_equal(c->other_thread, 0);
    assert_int_equal(c->wrong, 0);
    free(refs);
    free(c);
    cachet_region_close(r);
}

/* Close with 2000 ops queued on a server that never answers: the first to
 * time out makes the rest fail at once, so close does not take 2000
 * timeouts; every callback still runs, with the failure. */
static void close_on_a_hung_server_is_bounded(void **state)
{
#ifndef HAVE_HIREDIS
    skip();
#endif
    hostile_server *hp;
    cachet_region *r = open_hung_redis(&hp, "1");
    cachet_async *q;
    assert_int_equal(cachet_async_open(r, 2, &q), CACHET_OK);
    tally t = {0};
    for (int i = 0; i < 2000; i++)
        assert_int_equal(cachet_async_get(q, "k", count_done, &t), CACHET_OK);
    double t0 = th_now_s();
    cachet_async_close(q);
    double took = th_now_s() - t0;
    print_message("    close took %.2f s\n", took);
    assert_int_equal(t.count, 2000);
    assert_int_equal(t.errors, 2000);
    assert_true(took >= 0.9);  /* it did wait for the hung server once */
    assert_true(took < 30);    /* 2000 one-second timeouts on 2 workers would be 1000 s */
    cachet_region_close(r);
    hostile_stop(hp);
}

/* ---------------------------------------------------------- the limit */

/* waits (up to 100 ms) for the completion fd to be readable */
static void wait_fd(cachet_async *q)
{
    struct pollfd p = {.fd = cachet_async_fd(q), .events = POLLIN};
    poll(&p, 1, 100);
}

static void note_done(void *arg, cachet_status st, void *v, size_t len)
{
    (*(int *)arg)++;
    cachet_free(v);
}

static void queue_full_is_an_error_not_a_hang(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    cachet_async *q;
    assert_int_equal(cachet_async_open(r, 0, &q), CACHET_OK);
    int called = 0, accepted = 0;
    cachet_status st;
    /* a loop that does not dispatch: completions pile up and count */
    while ((st = cachet_async_set(q, "k", "v", 1, note_done, &called)) == CACHET_OK)
        accepted++;
    assert_int_equal(st, CACHET_ENOMEM);
    th_assert_contains(cachet_errmsg(), "queue is full");
    assert_true(accepted >= 10000);
    assert_int_equal(cachet_async_outstanding(q), (size_t)accepted);
    /* the refused submit never completes; dispatching makes room again */
    double end = th_now_s() + 60;
    size_t ran = 0;
    while ((int)ran < accepted && th_now_s() < end) {
        wait_fd(q);
        ran += cachet_async_dispatch(q);
    }
    assert_int_equal(ran, (size_t)accepted);
    assert_int_equal(called, accepted);
    assert_int_equal(cachet_async_get(q, "k", note_done, &called), CACHET_OK);
    cachet_async_close(q);
    assert_int_equal(called, accepted + 1);
    cachet_region_close(r);
}

/* ------------------------------------------ errors, arguments, messages */

typedef struct {
    int calls;
    cachet_status st;
    char msg[256];
} seen;

static void seen_done(void *arg, cachet_status st, void *v, size_t len)
{
    seen *s = arg;
    s->calls++;
    s->st = st;
    snprintf(s->msg, sizeof s->msg, "%s", st < 0 ? cachet_errmsg() : "");
    cachet_free(v);
}

static void bad_submits_return_errors_and_never_call_done(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    cachet_async *q;
    seen s = {0};
    assert_int_equal(cachet_async_open(r, 300, &q), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "threads");
    assert_int_equal(cachet_async_open(NULL, 0, &q), CACHET_EINVAL);
    assert_int_equal(cachet_async_open(r, 1, &q), CACHET_OK);
    assert_int_equal(cachet_async_get(q, NULL, seen_done, &s), CACHET_EINVAL);
    assert_int_equal(cachet_async_set(q, "k", NULL, 3, seen_done, &s), CACHET_EINVAL);
    assert_int_equal(cachet_async_get_or_create(q, "k", NULL, NULL, seen_done, &s), CACHET_EINVAL);
    const char *keys[] = {"a", NULL};
    assert_int_equal(cachet_async_get_multi(q, keys, 2, NULL, NULL), CACHET_EINVAL);
    assert_int_equal(cachet_async_get(NULL, "k", seen_done, &s), CACHET_EINVAL);
    assert_int_equal(cachet_async_fd(NULL), -1);
    assert_int_equal(cachet_async_dispatch(NULL), 0);
    /* an operation the region refuses completes with the region's message,
     * readable in done */
    cachet_set_options bad = {.ttl = -5};
    assert_int_equal(cachet_async_set_ex(q, "k", "v", 1, &bad, seen_done, &s), CACHET_OK);
    struct { cachet_async *q; seen *s; } w = {q, &s};
    double end = th_now_s() + 30;
    while (!s.calls && th_now_s() < end) {
        wait_fd(w.q);
        cachet_async_dispatch(w.q);
    }
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.st, CACHET_EINVAL);
    th_assert_contains(s.msg, "ttl");
    /* fire and forget: done may be NULL */
    assert_int_equal(cachet_async_set(q, "ff", "v", 1, NULL, NULL), CACHET_OK);
    assert_int_equal(cachet_async_get(q, "ff", NULL, NULL), CACHET_OK);
    cachet_async_close(q);
    assert_int_equal(s.calls, 1);
    cachet_region_close(r);
}

/* close called from a callback happens when that dispatch returns */
typedef struct {
    cachet_async *q;
    int calls;
} closer;

static void close_in_done(void *arg, cachet_status st, void *v, size_t len)
{
    closer *c = arg;
    c->calls++;
    cachet_free(v);
    if (c->calls == 1)
        cachet_async_close(c->q);
}

static void close_from_a_callback(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    closer c = {0};
    assert_int_equal(cachet_async_open(r, 1, &c.q), CACHET_OK);
    for (int i = 0; i < 50; i++)
        assert_int_equal(cachet_async_get(c.q, "k", close_in_done, &c), CACHET_OK);
    double end = th_now_s() + 30;
    while (c.calls == 0 && th_now_s() < end) {
        wait_fd(c.q);
        cachet_async_dispatch(c.q);   /* the queue is gone after the call that closed it */
    }
    assert_int_equal(c.calls, 50);
    cachet_region_close(r);
}

/* Submits from other threads while the loop dispatches (documented as
 * safe): every completion once, and every callback in the loop's thread. */
typedef struct {
    cachet_async *q;
    int base;
    int refused;
} submitter;

static int other_counts[4000];
static pthread_t loop_thread;
static int off_loop_callbacks;

static void other_done(void *arg, cachet_status st, void *v, size_t len)
{
    int id = (int)(intptr_t)arg;
    other_counts[id]++;
    if (!pthread_equal(pthread_self(), loop_thread) || st != CACHET_OK)
        off_loop_callbacks++;
    cachet_free(v);
}

static void *submit_from_thread(void *p)
{
    submitter *s = p;
    for (int i = 0; i < 2000; i++) {
        char key[32];
        int id = s->base + i;
        snprintf(key, sizeof key, "other-%d", id);
        if (cachet_async_set(s->q, key, "v", 1, other_done, (void *)(intptr_t)id) != CACHET_OK)
            s->refused++;
    }
    return NULL;
}

static void submits_from_other_threads(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    loop L;
    loop_init(&L, r, 2);
    loop_thread = pthread_self();
    memset(other_counts, 0, sizeof other_counts);
    off_loop_callbacks = 0;
    submitter a = {L.q, 0, 0}, b = {L.q, 2000, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, submit_from_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, submit_from_thread, &b), 0);
    int total = 0;
    double end = th_now_s() + 60;
    while (total < 4000 && th_now_s() < end) {
        loop_turn(&L);
        total = 0;
        for (int i = 0; i < 4000; i++)
            total += other_counts[i] > 0;
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.refused + b.refused, 0);
    for (int i = 0; i < 4000; i++)
        assert_int_equal(other_counts[i], 1);
    assert_int_equal(off_loop_callbacks, 0);
    loop_close(&L);
    cachet_region_close(r);
}

/* ------------------------------------------- a server dies mid-flight */

static void server_dies_mid_flight(void **state)
{
#ifndef HAVE_HIREDIS
    skip();
#endif
    test_server s;
    assert_int_equal(test_redis_start(&s, 0, NULL), 0);
    char url[96];
    snprintf(url, sizeof url, "url:redis://127.0.0.1:%d/0", s.port);
    const char *opts[] = {"backend_argument", url, "redis_socket_timeout", "2", NULL};
    cachet_region *r = th_open("redis", opts);
    loop L;
    loop_init(&L, r, 4);
    enum { N = 3000 };
    tally t = {0};
    int submitted = 0, killed = 0;
    double end = th_now_s() + 120;
    while (t.count < N && th_now_s() < end) {
        while (submitted < N && submitted - t.count < WINDOW) {
            char key[32];
            snprintf(key, sizeof key, "die-%d", submitted % 100);
            cachet_status st = submitted % 2 ? cachet_async_get(L.q, key, count_done, &t)
                                             : cachet_async_set(L.q, key, "v", 1, count_done, &t);
            assert_int_equal(st, CACHET_OK);
            submitted++;
        }
        if (!killed && t.count > 500) {
            test_server_kill(&s);
            killed = 1;
        }
        loop_turn(&L);
    }
    print_message("    %d completed, %d unavailable\n", t.count, t.errors);
    assert_true(killed);
    assert_int_equal(t.count, N);
    assert_true(t.errors > 0);           /* the ones after the kill failed */
    assert_true(t.errors < N);
    assert_int_equal(t.other, 0);
    loop_assert_never_blocked(&L, 1.0);
    loop_close(&L);
    cachet_region_close(r);
}

/* ---------------------------------------------------------------- fork */

static void fork_child_gets_an_error_and_opens_its_own(void **state)
{
    cachet_region *r = th_open("memory", NULL);
    cachet_async *q;
    assert_int_equal(cachet_async_open(r, 2, &q), CACHET_OK);
    seen s = {0};
    assert_int_equal(cachet_async_set(q, "k", "parent", 6, seen_done, &s), CACHET_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = 0;
        seen cs = {0};
        if (cachet_async_get(q, "k", seen_done, &cs) != CACHET_EINVAL)
            code |= 1;
        if (!strstr(cachet_errmsg(), "fork"))
            code |= 2;
        if (cachet_async_fd(q) != -1 || cachet_async_dispatch(q) != 0)
            code |= 4;
        cachet_async_close(q);   /* releases, runs nothing, does not hang */
        if (cs.calls != 0)
            code |= 8;
#ifdef __SANITIZE_THREAD__
        /* TSan cannot start threads in the child of a threaded process */
        _exit(code);
#endif
        cachet_async *mine;
        if (cachet_async_open(r, 1, &mine) != CACHET_OK)
            _exit(code | 16);
        if (cachet_async_set(mine, "child", "c", 1, seen_done, &cs) != CACHET_OK)
            code |= 32;
        cachet_async_close(mine);
        if (cs.calls != 1 || cs.st != CACHET_OK)
            code |= 64;
        _exit(code);
    }
    int status;
    double end = th_now_s() + 60;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && th_now_s() < end) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the child hung");
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the parent's queue is unharmed */
    cachet_async_close(q);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.st, CACHET_OK);
    cachet_region_close(r);
}

/* -------------------------------------------------------------- setup */

static int group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    have_memcached = test_memcached_start(&memcached_srv, 0, NULL) == 0;
    snprintf(mc_servers, sizeof mc_servers, "127.0.0.1:%d", memcached_srv.port);
    have_redis = test_redis_start(&redis_srv, 0, NULL) == 0;
    snprintf(redis_url, sizeof redis_url, "url:redis://127.0.0.1:%d/0", redis_srv.port);
    snprintf(dbm_dir, sizeof dbm_dir, "/tmp/cachet-async-dbm.XXXXXX");
    if (!mkdtemp(dbm_dir))
        return -1;
    snprintf(dbm_arg, sizeof dbm_arg, "filename:%s/a.db", dbm_dir);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    test_servers_stop_all();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dbm_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_ON(ops, memory),
        TH_ON(ops, memcached),
        TH_ON(ops, redis),
        TH_ON(ops, redis_through_proxies),
        TH_ON(ops, memcache_pool),
        TH_ON(ops, dbm),
        TH_ON(repeated_keys, memcached),
        TH_ON(repeated_keys, redis),
        cmocka_unit_test(hung_server_in_the_list_never_blocks_the_loop),
        cmocka_unit_test(hung_redis_never_blocks_the_loop),
        TH_ON(close_with_operations_queued, memory),
        TH_ON(close_with_operations_queued, redis),
        cmocka_unit_test(close_on_a_hung_server_is_bounded),
        cmocka_unit_test(queue_full_is_an_error_not_a_hang),
        cmocka_unit_test(bad_submits_return_errors_and_never_call_done),
        cmocka_unit_test(close_from_a_callback),
        cmocka_unit_test(submits_from_other_threads),
        cmocka_unit_test(server_dies_mid_flight),
        cmocka_unit_test(fork_child_gets_an_error_and_opens_its_own),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
