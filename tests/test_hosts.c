/* Host state as the networked backends report it (the servers operation)
 * and as they manage it (backends/common/host.c): up/down with the reason,
 * failures, time since the last change.  The plugins are dlopen()ed from
 * the build tree and driven directly, as metrics scrapes and cachet check
 * drive them. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cachet/backend.h>
#include <cachet/cachet.h>
#include "servers.h"
#include "helpers.h"

/* ---- what the backends log ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int log_down, log_back, log_other_warnings, log_failopen;
static char log_last[512];
static char log_filter[128];     /* count only the lines naming this (a server) */

static void logger(void *arg, cachet_log_level level, const char *msg)
{
    (void)arg;
    pthread_mutex_lock(&log_mu);
    if (log_filter[0] && !strstr(msg, log_filter)) {
        pthread_mutex_unlock(&log_mu);
        return;                          /* another test's instance */
    }
    if (strstr(msg, " is down ("))
        log_down++;
    else if (strstr(msg, " is back after "))
        log_back++;
    else if (strstr(msg, "(fail open)"))
        log_failopen++;
    else if (level >= CACHET_LOG_WARNING)
        log_other_warnings++;
    snprintf(log_last, sizeof log_last, "%s", msg);
    if (getenv("TEST_HOSTS_VERBOSE"))
        fprintf(stderr, "log %d: %s\n", (int)level, msg);
    pthread_mutex_unlock(&log_mu);
}

/* filter: count only the lines that name it (NULL: all) */
static void log_reset(const char *filter)
{
    pthread_mutex_lock(&log_mu);
    log_down = log_back = log_other_warnings = log_failopen = 0;
    snprintf(log_filter, sizeof log_filter, "%s", filter ? filter : "");
    pthread_mutex_unlock(&log_mu);
    cachet_set_logger(logger, NULL);
}

static int log_count(int *which)
{
    int n;
    pthread_mutex_lock(&log_mu);
    n = *which;
    pthread_mutex_unlock(&log_mu);
    return n;
}


static void *open_backend(const cachet_backend_ops *ops, const cachet_backend_arg *args, size_t n)
{
    cachet_backend_params p = {args, n, 0};
    void *st = NULL;
    if (ops->open(&p, &st) != CACHET_OK)
        fail_msg("open %s failed", ops->name);
    return st;
}

/* The entry named name among the n of out, or fail. */
static const cachet_server_state *entry_named(const cachet_server_state *out, size_t n,
                                              const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].name, name) == 0)
            return &out[i];
    fail_msg("no server named %s in the servers operation", name);
    return NULL;
}

/* ---- the targets: the bodies below run on each that applies ---- */

typedef struct {
    const char *backend;     /* the plugin */
    int         redis;       /* its server is a redis-server (else a memcached) */
} target;

#ifdef HAVE_LIBMEMCACHED
static target memcached = {"memcached", 0}, memcache_pool = {"memcache_pool", 0};
#endif
#ifdef HAVE_HIREDIS
static target redis = {"redis", 1};
#endif

/* Starts the target's kind of server; its url for the plugin in url. */
static void start_server(const target *t, test_server *srv, char *url, size_t size)
{
    if (t->redis) {
        assert_int_equal(test_redis_start(srv, 0, NULL), 0);
        snprintf(url, size, "redis://127.0.0.1:%d/0", srv->port);
    } else {
        assert_int_equal(test_memcached_start(srv, 0, NULL), 0);
        snprintf(url, size, "127.0.0.1:%d", srv->port);
    }
}

#ifdef HAVE_LIBMEMCACHED
/* A live memcached and a port where nothing listens: the servers operation
 * names both, the dead one down ("refused") with its failures counted, the
 * live one up and never changed; and it asks for no more than max. */
static void servers_report(void **state)
{
    const target *t = *state;
    const cachet_backend_ops *ops = th_backend_plugin(t->backend);
    test_server live;
    char url[128], live_name[64], dead_name[64], key[32];
    int dead_port = test_free_port();
    cachet_server_state out[4];
    const cachet_server_state *e;
    void *st;

    assert_non_null(ops->servers);
    assert_int_equal(test_memcached_start(&live, 0, NULL), 0);
    snprintf(live_name, sizeof live_name, "127.0.0.1:%d", live.port);
    snprintf(dead_name, sizeof dead_name, "127.0.0.1:%d", dead_port);
    snprintf(url, sizeof url, "%s,%s", live_name, dead_name);
    cachet_backend_arg args[] = {{"url", url}, {"dead_retry", "300"}};
    st = open_backend(ops, args, 2);

    assert_int_equal(ops->servers(st, out, 0), 2);    /* nothing written */
    assert_int_equal(ops->servers(st, out, 4), 2);
    e = entry_named(out, 2, dead_name);
    assert_int_equal(e->up, 1);                         /* not tried yet */
    assert_true(e->since_change < 0);
    /* keys on both hosts: some land on the dead one */
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ops->set(st, key, strlen(key), "v", 1, 0);
    }
    assert_int_equal(ops->servers(st, out, 4), 2);
    e = entry_named(out, 2, dead_name);
    assert_int_equal(e->up, 0);
    assert_non_null(e->reason);
    assert_string_equal(e->reason, "refused");
    assert_true(e->failures >= 1);
    assert_true(e->since_change >= 0 && e->since_change < 60);
    e = entry_named(out, 2, live_name);
    assert_int_equal(e->up, 1);
    assert_null(e->reason);
    assert_int_equal(e->failures, 0);
    assert_true(e->since_change < 0);
    ops->close(st);
    test_server_stop(&live);
}
#endif

#ifdef HAVE_HIREDIS
/* redis: up while it answers; stopped, down with a reason and a failure. */
static void redis_servers_report(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("redis");
    test_server srv;
    char url[128], name[64];
    cachet_server_state out[2];
    void *st, *v;
    size_t len;
    (void)state;

    assert_non_null(ops->servers);
    start_server(&redis, &srv, url, sizeof url);
    snprintf(name, sizeof name, "127.0.0.1:%d", srv.port);
    cachet_backend_arg args[] = {{"url", url}, {"dead_retry", "300"}};
    st = open_backend(ops, args, 2);
    assert_int_equal(ops->set(st, "k", 1, "v", 1, 0), CACHET_OK);
    assert_int_equal(ops->servers(st, out, 2), 1);
    assert_string_equal(out[0].name, name);
    assert_int_equal(out[0].up, 1);
    assert_null(out[0].reason);
    assert_int_equal(out[0].failures, 0);

    test_server_stop(&srv);
    /* the pooled connection broke: the call retries on a fresh one, refused */
    assert_int_not_equal(ops->get(st, "k", 1, &v, &len), CACHET_OK);
    assert_int_equal(ops->servers(st, out, 2), 1);
    assert_int_equal(out[0].up, 0);
    assert_non_null(out[0].reason);
    assert_string_equal(out[0].reason, "refused");
    assert_true(out[0].failures >= 1);
    assert_true(out[0].since_change >= 0 && out[0].since_change < 60);
    ops->close(st);
}
#endif

/* ---- recovery: probes in the background, never by a caller ---- */

typedef struct {
    const cachet_backend_ops *ops;
    void *st;
    int   id, calls, ok, slow;
    double worst;
} caller;

/* 20 gets of keys of the given prefix; counts the calls that stalled on a
 * host: >= 0.5 s and failed (a live server's answer, a hit or a miss, is
 * not a stall however slow the loaded machine makes it). */
static void *call_loop(void *arg)
{
    caller *c = arg;
    char key[48];
    for (int i = 0; i < c->calls; i++) {
        void *v = NULL;
        size_t len;
        double t0 = th_now_s(), dt;
        cachet_status st;
        snprintf(key, sizeof key, "t%d-k%d", c->id, i % 5);
        st = c->ops->get(c->st, key, strlen(key), &v, &len);
        dt = th_now_s() - t0;
        free(v);
        if (st == CACHET_OK || st == CACHET_MISS)
            c->ok++;
        if (dt >= 0.5 && st != CACHET_OK && st != CACHET_MISS)
            c->slow++;
        if (dt > c->worst)
            c->worst = dt;
    }
    return NULL;
}

/* n threads of calls at once; the totals. */
static void run_callers(const cachet_backend_ops *ops, void *st, int n, int calls, int *ok,
                        int *slow)
{
    pthread_t t[16];
    caller c[16];
    *ok = *slow = 0;
    for (int i = 0; i < n; i++) {
        c[i] = (caller){ops, st, i, calls, 0, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, call_loop, &c[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        *ok += c[i].ok;
        *slow += c[i].slow;
    }
}

static int answers(const cachet_backend_ops *ops, void *st)
{
    void *v = NULL;
    size_t len;
    cachet_status rc = ops->get(st, "probe-key", 9, &v, &len);
    free(v);
    return rc == CACHET_OK || rc == CACHET_MISS;
}

static int up_in_servers_op(const cachet_backend_ops *ops, void *st)
{
    cachet_server_state out[1];
    return ops->servers(st, out, 1) == 1 && out[0].up;
}

/* Asks every 20 ms until the instance answers (1) or seconds pass (0). */
static int answers_within(const cachet_backend_ops *ops, void *st, double seconds)
{
    double t0 = th_now_s();
    do {
        if (answers(ops, st))
            return 1;
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    } while (th_now_s() - t0 < seconds);
    return 0;
}

/* The server dies and comes back; dead_retry is 300 s.  While it is down,
 * 8 threads of callers fail fast (none waits socket_timeout) and one
 * warning is logged; once it listens again it is used within 2 s (the
 * prober finds it: the old client waited out dead_retry), one info line
 * says so, and 8 threads whose connections predate the restart all succeed
 * with no second warning (stale connections are replaced, not blamed). */
static void restart_is_seen(void **state)
{
    const target *t = *state;
    const cachet_backend_ops *ops = th_backend_plugin(t->backend);
    test_server srv;
    char url[64], filter[64];
    cachet_backend_arg args[] = {{"url", url}, {"dead_retry", "300"}, {"socket_timeout", "1"},
                                 {"shared_host_state", "false"}};
    void *st;
    int ok, slow;
    double t_back, t_used;

    start_server(t, &srv, url, sizeof url);
    snprintf(filter, sizeof filter, "127.0.0.1:%d ", srv.port);
    log_reset(filter);
    st = open_backend(ops, args, 4);
    run_callers(ops, st, 8, 5, &ok, &slow);          /* every thread holds connections */
    assert_int_equal(ok, 40);

    test_server_kill(&srv);
    run_callers(ops, st, 8, 20, &ok, &slow);
    assert_int_equal(ok, 0);
    assert_int_equal(slow, 0);                        /* refused: nobody waits */
    assert_int_equal(log_count(&log_down), 1);
    assert_false(up_in_servers_op(ops, st));

    assert_int_equal(test_server_restart(&srv), 0);
    t_back = th_now_s();
    assert_true(answers_within(ops, st, 30));
    t_used = th_now_s();
    print_message("%s: used again %.2f s after it listened (dead_retry 300)\n", t->backend,
                  t_used - t_back);
    if (t_used - t_back > 2.0)
        fail_msg("%s: the restarted server was used only %.2f s after it came back",
                 t->backend, t_used - t_back);
    assert_true(up_in_servers_op(ops, st));
    assert_int_equal(log_count(&log_back), 1);

    /* the 8 threads' connections were all made before the restart */
    run_callers(ops, st, 8, 5, &ok, &slow);
    assert_int_equal(ok, 40);
    assert_int_equal(log_count(&log_down), 1);
    assert_true(up_in_servers_op(ops, st));
    ops->close(st);
    test_server_stop(&srv);
}

#ifdef HAVE_LIBMEMCACHED

/* A server restarted between two calls (nobody saw it down): the threads'
 * connections are dead, each is replaced, no call fails, nothing logged. */
static void quick_restart_costs_nothing(void **state)
{
    const target *t = *state;
    const cachet_backend_ops *ops = th_backend_plugin(t->backend);
    test_server srv;
    char url[64];
    cachet_backend_arg args[] = {{"url", url}, {"shared_host_state", "false"}};
    int ok, slow;
    void *st;
    start_server(t, &srv, url, sizeof url);
    log_reset(url);
    st = open_backend(ops, args, 2);
    run_callers(ops, st, 8, 5, &ok, &slow);
    assert_int_equal(ok, 40);
    assert_int_equal(test_server_restart(&srv), 0);
    run_callers(ops, st, 8, 5, &ok, &slow);
    assert_int_equal(ok, 40);
    assert_int_equal(log_count(&log_down), 0);
    ops->close(st);
    test_server_stop(&srv);
}

/* A host that accepts and never answers, next to a live one: 8 threads of
 * calls on both cost one stalled call (first contact), then none, though
 * the prober keeps probing it (each of its probes waits socket_timeout). */
static void hung_host_costs_one_stall(void **state)
{
    const target *t = *state;
    const cachet_backend_ops *ops = th_backend_plugin(t->backend);
    test_server live;
    test_blackhole hole;
    char url[96], filter[32];
    cachet_backend_arg args[] = {{"url", url}, {"socket_timeout", "1"},
                                 {"dead_retry", "3"}, {"shared_host_state", "false"}};
    int ok, slow, slow_total = 0;
    void *st;
    assert_int_equal(test_memcached_start(&live, 0, NULL), 0);
    assert_int_equal(test_blackhole_start(&hole), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d,127.0.0.1:%d", live.port, hole.port);
    snprintf(filter, sizeof filter, "127.0.0.1:%d ", hole.port);
    log_reset(filter);
    st = open_backend(ops, args, 4);
    for (int round = 0; round < 3; round++) {
        run_callers(ops, st, 8, 20, &ok, &slow);
        slow_total += slow;
        assert_true(ok > 0);                      /* the live host's keys */
    }
    print_message("%s: %d calls stalled (>= 0.5 s, failed) over 480 (a hung host)\n", t->backend,
                  slow_total);
    assert_true(slow_total <= 1);
    assert_int_equal(log_count(&log_down), 1);
    ops->close(st);
    test_blackhole_stop(&hole);
    test_server_stop(&live);
}

/* Fail open: two of three hosts hang (a network blip looks like that).
 * The first to time out is marked down; the second is not (that would
 * leave more than half down): it stays in use, with one warning.  Two
 * hosts that refuse connections are both marked down: a refusal is
 * certain, and trying again costs nothing. */
static void memcached_fails_open(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("memcached");
    test_server live;
    test_blackhole h1, h2;
    char url[128], n1[32], n2[32], key[16];
    cachet_server_state out[3];
    void *st, *v;
    size_t len;
    int down = 0;
    (void)state;

    assert_int_equal(test_memcached_start(&live, 0, NULL), 0);
    assert_int_equal(test_blackhole_start(&h1), 0);
    assert_int_equal(test_blackhole_start(&h2), 0);
    snprintf(n1, sizeof n1, "127.0.0.1:%d", h1.port);
    snprintf(n2, sizeof n2, "127.0.0.1:%d", h2.port);
    snprintf(url, sizeof url, "127.0.0.1:%d,%s,%s", live.port, n1, n2);
    cachet_backend_arg args[] = {{"url", url}, {"socket_timeout", "0.3"}, {"dead_retry", "60"},
                                 {"shared_host_state", "false"}};
    log_reset(NULL);
    st = open_backend(ops, args, 4);
    /* keys until both hung hosts have been tried */
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "fo%d", i);
        v = NULL;
        ops->get(st, key, strlen(key), &v, &len);
        free(v);
        if (entry_named(out, ops->servers(st, out, 3), n1)->failures > 0 &&
            entry_named(out, 3, n2)->failures > 0)
            break;
    }
    assert_int_equal(ops->servers(st, out, 3), 3);
    assert_true(entry_named(out, 3, n1)->failures > 0 && entry_named(out, 3, n2)->failures > 0);
    down = !entry_named(out, 3, n1)->up + !entry_named(out, 3, n2)->up;
    assert_int_equal(down, 1);
    assert_int_equal(log_count(&log_failopen), 1);
    ops->close(st);

    /* refused: both down */
    snprintf(url, sizeof url, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", live.port,
             test_free_port(), test_free_port());
    cachet_backend_arg args2[] = {{"url", url}, {"shared_host_state", "false"}};
    st = open_backend(ops, args2, 2);
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "fo%d", i);
        v = NULL;
        ops->get(st, key, strlen(key), &v, &len);
        free(v);
    }
    assert_int_equal(ops->servers(st, out, 3), 3);
    down = 0;
    for (int i = 0; i < 3; i++)
        down += !out[i].up;
    assert_int_equal(down, 2);
    ops->close(st);
    test_blackhole_stop(&h1);
    test_blackhole_stop(&h2);
    test_server_stop(&live);
}

/* ---- shared_host_state ---- */

/* A private runtime directory for this process's shared state files. */
static char runtime_dir[64];

static void use_private_runtime_dir(void)
{
    if (!runtime_dir[0]) {
        snprintf(runtime_dir, sizeof runtime_dir, "/tmp/cachet-hosts-run-XXXXXX");
        assert_non_null(mkdtemp(runtime_dir));
    }
    setenv("XDG_RUNTIME_DIR", runtime_dir, 1);
}

/* The one state file in the runtime directory (there is one per server
 * list: the caller's test uses one list). */
static void state_file(char *path, size_t size)
{
    char cmd[160];
    FILE *f;
    snprintf(cmd, sizeof cmd, "ls -t %s/cachet-hosts-* 2>/dev/null | head -1", runtime_dir);
    assert_non_null(f = popen(cmd, "r"));
    assert_non_null(fgets(path, (int)size, f));
    pclose(f);
    path[strcspn(path, "\n")] = 0;
}

static void clear_runtime_dir(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -f %s/cachet-hosts-*", runtime_dir);
    assert_int_equal(system(cmd), 0);
}

/* n calls on keys all over the hosts; the calls that stalled on the hung
 * host: >= 0.5 s and failed.  A call to a live server answers (a miss)
 * however slow the loaded machine makes it, so it is not counted: what is
 * counted is what the hung host cost, not the scheduler. */
static int slow_calls(const cachet_backend_ops *ops, void *st, int id, int n)
{
    int slow = 0;
    char key[32];
    for (int i = 0; i < n; i++) {
        void *v = NULL;
        size_t len;
        cachet_status rc;
        double t0 = th_now_s();
        snprintf(key, sizeof key, "w%d-%d", id, i);
        rc = ops->get(st, key, strlen(key), &v, &len);
        free(v);
        if (th_now_s() - t0 >= 0.5 && rc != CACHET_OK && rc != CACHET_MISS)
            slow++;
    }
    return slow;
}

/* 8 prefork workers (one instance opened by the parent, inherited) and 8
 * independent processes (each opens its own), started at once over two
 * live servers and a host that accepts and never answers (socket_timeout
 * 1): one process makes first contact with the hung host and stalls; the
 * file tells the others, who fail fast.  At most one call of >= 0.5 s in
 * all 16 processes (without shared state: one per process). */
static void shared_state_one_stall_per_machine(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("memcached");
    test_server a, b;
    test_blackhole hole;
    char url[128];
    int go[2], total = 0;
    pid_t kids[16];
    void *st;
    (void)state;

    use_private_runtime_dir();
    clear_runtime_dir();
    assert_int_equal(test_memcached_start(&a, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&b, 0, NULL), 0);
    assert_int_equal(test_blackhole_start(&hole), 0);
    snprintf(url, sizeof url, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", a.port, b.port,
             hole.port);
    cachet_backend_arg args[] = {{"url", url}, {"socket_timeout", "1"}, {"dead_retry", "30"}};
    st = open_backend(ops, args, 3);           /* the prefork parent's, never used by it */
    assert_int_equal(pipe(go), 0);
    for (int k = 0; k < 16; k++) {
        int prefork = k < 8;
        if (prefork)
            ops->fork_prepare(st);
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            char c;
            void *mine = st;
            int slow;
            if (prefork)
                ops->fork_child(st);
            close(go[1]);
            if (!prefork) {
                cachet_backend_params p = {args, 3, 0};
                if (ops->open(&p, &mine) != CACHET_OK)
                    _exit(200);
            }
            if (read(go[0], &c, 1) < 0)       /* EOF: everyone starts now */
                _exit(201);
            slow = slow_calls(ops, mine, k, 40);
            _exit(slow > 100 ? 100 : slow);
        }
        if (prefork)
            ops->fork_parent(st);
    }
    close(go[0]);
    close(go[1]);
    for (int k = 0; k < 16; k++) {
        int status;
        assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
        assert_true(WIFEXITED(status));
        assert_true(WEXITSTATUS(status) <= 40);   /* a count of its 40 calls, not a crash code */
        total += WEXITSTATUS(status);
    }
    print_message("16 processes, 640 calls: %d stalled on the hung host (>= 0.5 s, failed)\n", total);
    assert_true(total <= 1);
    ops->close(st);
    test_blackhole_stop(&hole);
    test_server_stop(&a);
    test_server_stop(&b);
}

/* The state file is the user's, and anything in it is validated: garbage
 * written over it (random bytes, every slot "down" with a claim far in the
 * future, a confirmation from the future) can make a host look down for a
 * moment, never crash, hang or keep a live server unused: it answers again
 * within a few seconds.  A file others may write is not used at all. */
static void shared_state_survives_garbage(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("memcached");
    test_server srv;
    char url[64], path[256];
    unsigned char junk[4096];
    void *st, *hold;
    FILE *f;
    (void)state;

    use_private_runtime_dir();
    clear_runtime_dir();
    start_server(&memcached, &srv, url, sizeof url);
    cachet_backend_arg args[] = {{"url", url}, {"dead_retry", "300"}};
    /* a process using the file all along (the file lives while one does) */
    hold = open_backend(ops, args, 2);
    assert_true(answers(ops, hold));
    state_file(path, sizeof path);

    srand(7);
    for (int round = 0; round < 6; round++) {
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (unsigned char)rand();
        if (round == 1)
            memset(junk, 0xff, sizeof junk);           /* every field at its maximum */
        if (round == 2)
            for (size_t i = 0; i < sizeof junk; i += 8) /* "down" words everywhere */
                memcpy(junk + i, &(uint64_t){0x7ffff012ull}, 8);
        /* rounds 0-2 keep the header (random from round 3 on) */
        if (round < 3) {
            assert_non_null(f = fopen(path, "r"));
            assert_int_equal(fread(junk, 1, 64, f), 64);
            fclose(f);
        }
        assert_non_null(f = fopen(path, "r+"));
        assert_int_equal(fwrite(junk, 1, round == 4 ? 7 : sizeof junk, f),
                         round == 4 ? 7 : sizeof junk);
        fclose(f);
        st = open_backend(ops, args, 2);
        if (!answers_within(ops, st, 10))
            fail_msg("round %d: the live server stayed unused after garbage in %s", round, path);
        ops->close(st);
    }

    /* the process that was there all along copes too */
    assert_true(answers_within(ops, hold, 10));

    /* group-writable: not used (and not changed) */
    assert_int_equal(chmod(path, 0660), 0);
    log_reset(NULL);
    st = open_backend(ops, args, 2);
    assert_true(answers(ops, st));
    ops->close(st);
    pthread_mutex_lock(&log_mu);
    th_assert_contains(log_last, "not using");
    pthread_mutex_unlock(&log_mu);
    assert_int_equal(chmod(path, 0600), 0);

    /* the last process using the file removes it */
    st = open_backend(ops, args, 2);
    assert_true(answers(ops, st));
    ops->close(st);
    assert_int_equal(access(path, F_OK), 0);         /* hold still uses it */
    ops->close(hold);
    assert_int_not_equal(access(path, F_OK), 0);
    test_server_stop(&srv);
}

/* ---- the gutter ---- */

static int creator_calls;

static cachet_status creator(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg;
    __atomic_add_fetch(&creator_calls, 1, __ATOMIC_RELAXED);
    *len = strlen(key);
    *value = malloc(*len + 1);
    memcpy(*value, key, *len + 1);
    return CACHET_OK;
}

/* A pool server is killed; get_or_create on 50 of its keys, 4 rounds: with
 * a gutter the creator runs once per key (the gutter holds the values
 * gutter_ttl seconds), without one on every call. */
static void gutter_stands_in_for_a_dead_server(void **state)
{
    test_server a, b, g;
    char servers[96], gutter[64], key[32], keys[50][32];
    cachet_region *plain, *r;
    int found = 0, plain_calls;
    (void)state;

    assert_int_equal(test_memcached_start(&a, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&b, 0, NULL), 0);
    assert_int_equal(test_memcached_start(&g, 0, NULL), 0);
    snprintf(servers, sizeof servers, "127.0.0.1:%d,127.0.0.1:%d", a.port, b.port);
    snprintf(gutter, sizeof gutter, "gutter:127.0.0.1:%d", g.port);
    const char *plain_opts[] = {"memcache_servers", servers, "memcache_dead_retry", "300",
                                "backend_argument", "shared_host_state:false", NULL};
    const char *gutter_opts[] = {"memcache_servers", servers, "memcache_dead_retry", "300",
                                 "backend_argument", "shared_host_state:false",
                                 "backend_argument", gutter, NULL};
    plain = th_open("oslo_cache.memcache_pool", plain_opts);
    r = th_open("oslo_cache.memcache_pool", gutter_opts);
    test_server_kill(&b);
    /* the dead server's keys: those the region without a gutter cannot reach */
    for (int i = 0; i < 1000 && found < 50; i++) {
        void *v;
        size_t n;
        snprintf(key, sizeof key, "gk%d", i);
        if (cachet_get(plain, key, &v, &n) == CACHET_EUNAVAILABLE)
            snprintf(keys[found++], sizeof keys[0], "%s", key);
    }
    assert_int_equal(found, 50);

    creator_calls = 0;
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < 50; i++) {
            void *v = NULL;
            size_t n;
            assert_int_equal(cachet_get_or_create(plain, keys[i], creator, NULL, &v, &n),
                             CACHET_OK);
            cachet_free(v);
        }
    plain_calls = creator_calls;

    creator_calls = 0;
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < 50; i++) {
            void *v = NULL;
            size_t n;
            assert_int_equal(cachet_get_or_create(r, keys[i], creator, NULL, &v, &n),
                             CACHET_OK);
            assert_int_equal(n, strlen(keys[i]));
            assert_memory_equal(v, keys[i], n);
            cachet_free(v);
        }
    print_message("gutter: the creator ran %d times for 4 rounds of 50 keys of a dead server "
                  "(%d without a gutter)\n", creator_calls, plain_calls);
    assert_int_equal(plain_calls, 200);
    assert_true(creator_calls >= 50 && creator_calls <= 60);
    cachet_region_close(plain);
    cachet_region_close(r);
    test_server_stop(&a);
    test_server_stop(&g);
}

/* fork(): the child inherits "down" and has a prober of its own (the
 * parent's thread does not exist there): it sees the server come back. */
static void memcached_prober_restarts_in_child(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("memcached");
    test_server srv;
    char url[64];
    void *st;
    pid_t pid;
    int status;
    (void)state;

    start_server(&memcached, &srv, url, sizeof url);
    cachet_backend_arg args[] = {{"url", url}, {"dead_retry", "300"},
                                 {"shared_host_state", "false"}};
    st = open_backend(ops, args, 3);
    assert_true(answers(ops, st));
    test_server_kill(&srv);
    assert_false(answers(ops, st));
    assert_false(up_in_servers_op(ops, st));
    ops->fork_prepare(st);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ops->fork_child(st);
        if (answers(ops, st))
            _exit(2);                                 /* still down here */
        /* the parent restarts the server; our own prober must find it */
        _exit(answers_within(ops, st, 30) ? 0 : 1);
    }
    ops->fork_parent(st);
    assert_int_equal(test_server_restart(&srv), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ops->close(st);
    test_server_stop(&srv);
}
#endif

#ifdef HAVE_HIREDIS
/* redis on a host that accepts and never answers: the open's PING is the
 * one stall (first contact), then 8 threads of calls fail fast; one
 * warning, the servers op says "timeout". */
static void redis_hung_host_costs_one_stall(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("redis");
    test_blackhole hole;
    char url[64], filter[32];
    cachet_server_state out[1];
    int ok, slow;
    double t0;
    void *st;
    (void)state;

    assert_int_equal(test_blackhole_start(&hole), 0);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", hole.port);
    snprintf(filter, sizeof filter, "127.0.0.1:%d ", hole.port);
    log_reset(filter);
    cachet_backend_arg args[] = {{"url", url}, {"socket_timeout", "1"},
                                 {"shared_host_state", "false"}};
    t0 = th_now_s();
    st = open_backend(ops, args, 3);
    assert_true(th_now_s() - t0 < 10);                  /* the open's PING gave up */
    run_callers(ops, st, 8, 20, &ok, &slow);
    assert_int_equal(ok, 0);
    assert_int_equal(slow, 0);
    assert_int_equal(ops->servers(st, out, 1), 1);
    assert_int_equal(out[0].up, 0);
    assert_string_equal(out[0].reason, "timeout");
    assert_int_equal(log_count(&log_down), 1);
    ops->close(st);
    test_blackhole_stop(&hole);
}

/* redis_cluster: a one-node cluster (every slot on it); the servers op
 * lists the node the cluster named, up; the node killed, down. */
static int cluster_ok(int port)
{
    char cmd[128], line[256];
    int ok = 0;
    FILE *f;
    snprintf(cmd, sizeof cmd, "redis-cli -p %d cluster info 2>/dev/null", port);
    if (!(f = popen(cmd, "r")))
        return 0;
    while (fgets(line, sizeof line, f))
        ok |= strncmp(line, "cluster_state:ok", 16) == 0;
    pclose(f);
    return ok;
}

static void cluster_servers_report(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("redis_cluster");
    test_server node;
    char cmd[128], nodes[64];
    cachet_server_state out[4];
    double t0;
    void *st, *v;
    size_t len;
    (void)state;

    assert_int_equal(test_redis_start(&node, 0, "cluster-enabled yes\n"
                                      "cluster-config-file nodes.conf"), 0);
    snprintf(cmd, sizeof cmd, "redis-cli -p %d cluster addslotsrange 0 16383 >/dev/null",
             node.port);
    assert_int_equal(system(cmd), 0);
    for (t0 = th_now_s(); !cluster_ok(node.port) && th_now_s() - t0 < 30;)
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    assert_true(cluster_ok(node.port));
    snprintf(nodes, sizeof nodes, "127.0.0.1:%d", node.port);
    cachet_backend_arg args[] = {{"startup_nodes", nodes}, {"socket_timeout", "1"}};
    st = open_backend(ops, args, 2);
    assert_int_equal(ops->set(st, "k", 1, "v", 1, 0), CACHET_OK);
    assert_int_equal(ops->servers(st, out, 4), 1);
    assert_string_equal(out[0].name, nodes);
    assert_int_equal(out[0].up, 1);
    test_server_kill(&node);
    assert_int_not_equal(ops->get(st, "k", 1, &v, &len), CACHET_OK);
    assert_int_equal(ops->servers(st, out, 4), 1);
    assert_int_equal(out[0].up, 0);
    assert_true(out[0].failures >= 1);
    ops->close(st);
}

/* redis_sentinel: the servers op names the master the sentinel gave. */
static void sentinel_servers_report(void **state)
{
    const cachet_backend_ops *ops = th_backend_plugin("redis_sentinel");
    test_server master, sentinel;
    char extra[256], sentinels[64], name[64];
    cachet_server_state out[2];
    void *st;
    (void)state;

    assert_int_equal(test_redis_start(&master, 0, NULL), 0);
    snprintf(extra, sizeof extra, "sentinel monitor hostsmaster 127.0.0.1 %d 1\n", master.port);
    assert_int_equal(test_sentinel_start(&sentinel, 0, extra), 0);
    snprintf(sentinels, sizeof sentinels, "127.0.0.1:%d", sentinel.port);
    snprintf(name, sizeof name, "127.0.0.1:%d", master.port);
    cachet_backend_arg args[] = {{"sentinels", sentinels}, {"service_name", "hostsmaster"}};
    st = open_backend(ops, args, 2);
    assert_int_equal(ops->set(st, "k", 1, "v", 1, 0), CACHET_OK);
    assert_int_equal(ops->servers(st, out, 2), 1);
    assert_string_equal(out[0].name, name);
    assert_int_equal(out[0].up, 1);
    ops->close(st);
    test_server_stop(&sentinel);
    test_server_stop(&master);
}
#endif

int main(int argc, char **argv)
{
    (void)argc;
    th_tsan_allow_threads_after_fork(argv);
    const struct CMUnitTest tests[] = {
#ifdef HAVE_LIBMEMCACHED
        TH_ON(servers_report, memcached),
        TH_ON(servers_report, memcache_pool),
        TH_ON(restart_is_seen, memcached),
        TH_ON(restart_is_seen, memcache_pool),
        TH_ON(quick_restart_costs_nothing, memcached),
        TH_ON(quick_restart_costs_nothing, memcache_pool),
        TH_ON(hung_host_costs_one_stall, memcached),
        TH_ON(hung_host_costs_one_stall, memcache_pool),
        cmocka_unit_test(memcached_prober_restarts_in_child),
        cmocka_unit_test(memcached_fails_open),
        cmocka_unit_test(shared_state_one_stall_per_machine),
        cmocka_unit_test(shared_state_survives_garbage),
        cmocka_unit_test(gutter_stands_in_for_a_dead_server),
#endif
#ifdef HAVE_HIREDIS
        cmocka_unit_test(redis_servers_report),
        TH_ON(restart_is_seen, redis),
        cmocka_unit_test(redis_hung_host_costs_one_stall),
        cmocka_unit_test(sentinel_servers_report),
        cmocka_unit_test(cluster_servers_report),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
