/* cachet_invalidation = shared: an invalidation in one process reaches
 * another process on the same backend (and the same cachet_key_prefix)
 * within cachet_invalidation_interval, and no region of another prefix.
 * Each body forks a child that opens a region of its own (a process with
 * its own invalidation times, as a second service would be) and watches a
 * value it read before, polling with a deadline until the value is gone.
 * Targets: dbm (a temporary file), memcached and redis (real servers).
 * Also: what the options refuse, and cachet_invalidate_ex reporting a
 * backend that cannot take the write. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "helpers.h"
#include "servers.h"

#define INTERVAL "0.2"

typedef struct {
    const char *name;
    const char *backend;
    const char *opts[16];
    /* networked targets: the option that names the server, its value for
     * the harness's server (live) and for a port where nothing listens
     * (dead), and the option of its socket timeout */
    const char *server_opt, *timeout_opt;
    char        live[96], dead[96];
} target;

static char dbm_path[128];

/* target's options + more pairs, NULL-terminated, in buf */
static const char *const *with(const target *t, const char **buf, ...)
{
    size_t n = 0;
    const char *s;
    va_list ap;
    for (; t->opts[n]; n += 2) {
        buf[n] = t->opts[n];
        buf[n + 1] = t->opts[n + 1];
    }
    va_start(ap, buf);
    while ((s = va_arg(ap, const char *)) != NULL) {
        buf[n++] = s;
        buf[n++] = va_arg(ap, const char *);
    }
    va_end(ap);
    buf[n] = NULL;
    return buf;
}

/* The child's own open: no cmocka here (its failures longjmp in the
 * parent's frames); NULL on failure. */
static cachet_region *child_open(const char *backend, const char *const *opts)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    if (!c || cachet_config_set(c, "enabled", "true") || cachet_config_set(c, "backend", backend))
        return NULL;
    for (size_t i = 0; opts && opts[i]; i += 2)
        if (cachet_config_set(c, opts[i], opts[i + 1]) != CACHET_OK)
            return NULL;
    if (cachet_region_open(c, &r) != CACHET_OK)
        r = NULL;
    cachet_config_free(c);
    return r;
}

static int is_hit(cachet_region *r, const char *key, int ignore_expiration)
{
    cachet_options o = {.ignore_expiration = ignore_expiration};
    void *v = NULL;
    size_t n;
    cachet_status st = cachet_get_ex(r, key, &o, &v, &n);
    cachet_free(v);
    return st == CACHET_OK;
}

static cachet_region *watched;
static int gone(void *arg)
{
    return !is_hit(watched, arg, 0);
}
static int other_gone(void *arg)
{
    return !is_hit((cachet_region *)arg, "k", 0);
}

/* child exit codes */
enum { C_OK = 0, C_OPEN = 10, C_NOT_HIT_BEFORE, C_NOT_GONE, C_WRONG_KIND, C_OTHER_PREFIX_GONE,
       C_PIPE };

static int child_main(const target *t, int hard, int ready_fd, int go_fd, int result_fd)
{
    const char *o1[40], *o2[40];
    cachet_region *same = child_open(t->backend, with(t, o1, NULL));
    cachet_region *other = child_open(t->backend, with(t, o2, "cachet_key_prefix", "other:", NULL));
    char b = 0;
    double t0, took;
    if (!same || !other)
        return C_OPEN;
    if (cachet_set(other, "k", "other's", 7) != CACHET_OK)
        return C_OPEN;
    if (!is_hit(same, "k", 0) || !is_hit(other, "k", 0))
        return C_NOT_HIT_BEFORE;
    if (write(ready_fd, "r", 1) != 1 || read(go_fd, &b, 1) != 1)
        return C_PIPE;
    t0 = th_now_s();
    watched = same;
    if (!th_wait_until(gone, "k", 30.0))
        return C_NOT_GONE;
    took = th_now_s() - t0;
    if (write(result_fd, &took, sizeof took) != (ssize_t)sizeof took)
        return C_PIPE;
    /* hard: gone even past expiration; soft: still there for whoever
     * ignores expiration (stale) */
    if (is_hit(same, "k", 1) == hard)
        return C_WRONG_KIND;
    /* another prefix is another region: give it intervals to go wrong */
    if (th_wait_until(other_gone, other, 1.0))
        return C_OTHER_PREFIX_GONE;
    cachet_region_close(same);
    cachet_region_close(other);
    return C_OK;
}

static void reaches_another_process(void **state, int hard)
{
    const target *t = *state;
    const char *o[40];
    cachet_region *r = th_open(t->backend, with(t, o, NULL));
    int ready[2], go[2], res[2], status;
    double took = -1;
    char b;
    pid_t pid;
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(res), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_main(t, hard, ready[1], go[0], res[1]));   /* _exit: not the harness's atexit */
    assert_int_equal(read(ready[0], &b, 1), 1);
    assert_int_equal(cachet_invalidate_ex(r, hard), CACHET_OK);
    th_assert_miss(r, "k");                 /* this process: at once */
    assert_int_equal(write(go[1], "g", 1), 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != C_OK)
        fail_msg("%s: child failed with %d", t->name, WEXITSTATUS(status));
    assert_int_equal(read(res[0], &took, sizeof took), (ssize_t)sizeof took);
    /* the bound is the interval plus a round trip; 5 s only bounds a failure */
    assert_true(took >= 0 && took < 5.0);
    print_message("[ INFO     ] %s: seen by the other process after %.3f s (interval %s s)\n",
                  t->name, took, INTERVAL);
    /* a new value after the invalidation is a hit, here and for the next */
    assert_int_equal(cachet_set(r, "k", "new", 3), CACHET_OK);
    th_assert_hit(r, "k", "new", 3);
    for (int i = 0; i < 2; i++) {
        close(ready[i]);
        close(go[i]);
        close(res[i]);
    }
    cachet_region_close(r);
}

static void hard_reaches_another_process(void **state) { reaches_another_process(state, 1); }
static void soft_reaches_another_process(void **state) { reaches_another_process(state, 0); }

/* A region opened after an invalidation (a process that starts later)
 * does not serve what it hid; one of another prefix does. */
static void a_later_region_sees_it(void **state)
{
    const target *t = *state;
    const char *o[40], *o2[40];
    cachet_region *a = th_open(t->backend, with(t, o, "cachet_key_prefix", "late:", NULL));
    cachet_region *other = th_open(t->backend, with(t, o2, "cachet_key_prefix", "early:", NULL));
    cachet_region *b;
    assert_int_equal(cachet_set(a, "x", "1", 1), CACHET_OK);
    assert_int_equal(cachet_set(other, "x", "2", 1), CACHET_OK);
    assert_int_equal(cachet_invalidate_ex(a, 1), CACHET_OK);
    cachet_region_close(a);
    cachet_region_close(other);
    b = th_open(t->backend, with(t, o, "cachet_key_prefix", "late:", NULL));
    th_assert_miss(b, "x");
    cachet_region_close(b);
    other = th_open(t->backend, with(t, o2, "cachet_key_prefix", "early:", NULL));
    th_assert_hit(other, "x", "2", 1);
    cachet_region_close(other);
}

/* local: the old behaviour, this process only. */
static void local_stays_in_the_process(void **state)
{
    const target *t = *state;
    const char *o[40];
    cachet_region *a = th_open(t->backend, with(t, o, "cachet_invalidation", "local", NULL));
    cachet_region *b = th_open(t->backend, with(t, o, "cachet_invalidation", "local", NULL));
    assert_int_equal(cachet_set(a, "loc", "v", 1), CACHET_OK);
    assert_int_equal(cachet_invalidate_ex(a, 1), CACHET_OK);
    th_assert_miss(a, "loc");
    th_assert_hit(b, "loc", "v", 1);
    cachet_region_close(a);
    cachet_region_close(b);
}

/* ---- what is refused, and a backend that cannot take the write ---- */

static void options_refused(void **state)
{
    static const char *const mem_shared[] = {"cachet_invalidation", "shared", NULL};
    static const char *const bogus[] = {"cachet_invalidation", "everywhere", NULL};
    static const char *const zero[] = {"cachet_invalidation_interval", "0", NULL};
    static const char *const neg[] = {"cachet_invalidation_interval", "-1", NULL};
    static const char *const mem_local[] = {"cachet_invalidation", "local", NULL};
    cachet_region *r;
    (void)state;
    assert_int_equal(th_open_status("memory", mem_shared), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_invalidation");
    th_assert_contains(cachet_errmsg(), "memory");
    assert_int_equal(th_open_status("memory", bogus), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_invalidation");
    assert_int_equal(th_open_status("memory", zero), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_invalidation_interval");
    assert_int_equal(th_open_status("memory", neg), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "cachet_invalidation_interval");
    r = th_open("memory", mem_local);
    assert_int_equal(cachet_invalidate_ex(r, 1), CACHET_OK);
    cachet_region_close(r);
    r = th_open("memory", NULL);               /* the default there: local */
    assert_int_equal(cachet_invalidate_ex(r, 0), CACHET_OK);
    cachet_region_close(r);
}

static void invalidate_ex_reports_a_dead_backend(void **state)
{
    const target *t = *state;
    const char *const dead[] = {t->server_opt, t->dead, t->timeout_opt, "0.5",
                                "cachet_invalidation_interval", INTERVAL, NULL};
    cachet_region *r = th_open(t->backend, dead);
    cachet_status st = cachet_invalidate_ex(r, 1);
    assert_int_not_equal(st, CACHET_OK);
    th_assert_contains(cachet_errmsg(), "invalidat");
    cachet_invalidate(r, 0);                   /* the same, status ignored: no crash */
    cachet_region_close(r);
}

/* ---- targets ---- */

static int setup_dbm(void **state)
{
    target *t = *state;
    unlink(dbm_path);
    (void)t;
    return 0;
}

/* t's options: where its data is, and the interval. */
static target *set_opts(target *t, const char *where, const char *value)
{
    t->opts[0] = where;
    t->opts[1] = value;
    t->opts[2] = "cachet_invalidation_interval";
    t->opts[3] = INTERVAL;
    return t;
}

/* A networked target on srv, started by start; fmt makes the server
 * option's value from a port.  NULL (and a line) if the server did not
 * start. */
static target *net_target(target *t, int (*start)(test_server *, int, const char *),
                          test_server *srv, const char *server, const char *fmt)
{
    if (start(srv, 0, NULL) != 0) {
        fprintf(stderr, "%s did not start\n", server);
        return NULL;
    }
    snprintf(t->live, sizeof t->live, fmt, srv->port);
    snprintf(t->dead, sizeof t->dead, fmt, test_free_port());
    return set_opts(t, t->server_opt, t->live);
}

int main(void)
{
    static char dbm_arg[160];
    static test_server mc, rs;
    static target dbm = {.name = "dbm", .backend = "dbm"},
                  memc = {.name = "memcached", .backend = "memcached",
                          .server_opt = "memcache_servers",
                          .timeout_opt = "memcache_socket_timeout"},
                  red = {.name = "redis", .backend = "redis", .server_opt = "backend_argument",
                         .timeout_opt = "redis_socket_timeout"};
    int failed = 0;
    const struct CMUnitTest common[] = {
        cmocka_unit_test(options_refused),
    };
    const struct CMUnitTest across[] = {
        cmocka_unit_test_setup(hard_reaches_another_process, setup_dbm),
        cmocka_unit_test_setup(soft_reaches_another_process, setup_dbm),
        cmocka_unit_test_setup(a_later_region_sees_it, setup_dbm),
        cmocka_unit_test_setup(local_stays_in_the_process, setup_dbm),
    };
    const struct CMUnitTest dead[] = {
        cmocka_unit_test(invalidate_ex_reports_a_dead_backend),
    };
    struct CMUnitTest tests[8];
    target *targets[3];
    size_t nt = 0;

    failed += cmocka_run_group_tests_name("options", common, NULL, NULL);
#ifdef HAVE_GDBM
    snprintf(dbm_path, sizeof dbm_path, "/tmp/cachet-inval-%d.db", (int)getpid());
    snprintf(dbm_arg, sizeof dbm_arg, "filename:%s", dbm_path);
    targets[nt++] = set_opts(&dbm, "backend_argument", dbm_arg);
#endif
#ifdef HAVE_LIBMEMCACHED
    if (!(targets[nt] = net_target(&memc, test_memcached_start, &mc, "memcached", "127.0.0.1:%d")))
        failed++;
    else
        nt++;
#endif
#ifdef HAVE_HIREDIS
    if (!(targets[nt] = net_target(&red, test_redis_start, &rs, "redis-server",
                                   "url:redis://127.0.0.1:%d/0")))
        failed++;
    else
        nt++;
#endif
    for (size_t i = 0; i < nt; i++) {
        size_t n = sizeof across / sizeof *across;
        memcpy(tests, across, sizeof across);
        if (strcmp(targets[i]->backend, "dbm") != 0)
            tests[n++] = dead[0];
        for (size_t j = 0; j < n; j++)
            tests[j].initial_state = targets[i];
        print_message("[ TARGET   ] %s\n", targets[i]->name);
        failed += _cmocka_run_group_tests(targets[i]->name, tests, n, NULL, NULL);
    }
    test_servers_stop_all();
    if (dbm_path[0]) {
        char p[200];
        unlink(dbm_path);
        snprintf(p, sizeof p, "%s.rw.lock", dbm_path);
        unlink(p);
    }
    return failed ? 1 : 0;
}
