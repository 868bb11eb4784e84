/* The dbm backend through the region, as a service uses it: several
 * processes on one file, get_or_create's lock across processes, writers
 * killed with SIGKILL, damaged files, argument errors, compaction, threads
 * and fork().  Every test works in its own directory under a mkdtemp()
 * directory in /tmp, removed at the end.
 *
 * Children never call cmocka's asserts (they would jump into the parent's
 * test state): they report failures on stderr and through their exit
 * status, which the parent asserts. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "helpers.h"

static char topdir[64];
static int testno;

/* A fresh directory for one test: topdir/N. */
static const char *newdir(char *buf, size_t size)
{
    snprintf(buf, size, "%s/%d", topdir, ++testno);
    if (mkdir(buf, 0700) != 0)
        fail_msg("mkdir %s: %s", buf, strerror(errno));
    return buf;
}

/* A new directory, the database path NAME in it and its lock file's path
 * (the buffers of the tests that hold the lock: 128, 160, 192 bytes). */
static void db_paths(const char *name, char dir[128], char path[160], char lockpath[192])
{
    snprintf(path, 160, "%s/%s", newdir(dir, 128), name);
    snprintf(lockpath, 192, "%s.rw.lock", path);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int setup_all(void **state)
{
    (void)state;
    strcpy(topdir, "/tmp/cachet-test-dbm-XXXXXX");
    return mkdtemp(topdir) ? 0 : -1;
}

static int teardown_all(void **state)
{
    (void)state;
    return nftw(topdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay, needle);
}

/* Opens a dbm region on path; extra: "name:value" backend arguments, then
 * NULL.  Returns the status; *out is the region on success. */
static cachet_status try_open(cachet_region **out, const char *path, const char *expiration, ...)
{
    cachet_config *c = cachet_config_new();
    char arg[512];
    const char *a;
    va_list ap;
    cachet_status st;

    *out = NULL;
    if (cachet_config_set(c, "enabled", "true") != CACHET_OK ||
        cachet_config_set(c, "backend", "dogpile.cache.dbm") != CACHET_OK)
        fail_msg("config: %s", cachet_errmsg());
    if (expiration && cachet_config_set(c, "expiration_time", expiration) != CACHET_OK)
        fail_msg("config: %s", cachet_errmsg());
    if (path) {
        snprintf(arg, sizeof arg, "filename:%s", path);
        cachet_config_set(c, "backend_argument", arg);
    }
    va_start(ap, expiration);
    while ((a = va_arg(ap, const char *)) != NULL)
        if (cachet_config_set(c, "backend_argument", a) != CACHET_OK)
            fail_msg("config %s: %s", a, cachet_errmsg());
    va_end(ap);
    st = cachet_region_open(c, out);
    cachet_config_free(c);
    return st;
}

static cachet_region *open_db(const char *path)
{
    cachet_region *r;
    if (try_open(&r, path, NULL, NULL) != CACHET_OK)
        fail_msg("open %s: %s", path, cachet_errmsg());
    return r;
}

static void assert_value(cachet_region *r, const char *key, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    cachet_status st = cachet_get(r, key, &v, &n);
    if (st != CACHET_OK)
        fail_msg("get %s: %s (%s)", key, cachet_strerror(st), cachet_errmsg());
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    cachet_free(v);
}

static void assert_miss(cachet_region *r, const char *key)
{
    void *v = NULL;
    size_t n = 0;
    cachet_status st = cachet_get(r, key, &v, &n);
    if (st != CACHET_MISS)
        fail_msg("get %s: %s, want a miss", key, cachet_strerror(st));
}

static off_t file_size(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("stat %s: %s", path, strerror(errno));
    return sb.st_size;
}

static int wait_child(pid_t pid)
{
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

typedef struct {
    long recoveries, keys_lost, buckets_lost, recreated, entries, holders_died;
} dbm_report;

static void on_report(void *arg, const char *name, const char *value)
{
    dbm_report *r = arg;
    if (strcmp(name, "recoveries") == 0)
        r->recoveries = atol(value);
    else if (strcmp(name, "keys_lost") == 0)
        r->keys_lost = atol(value);
    else if (strcmp(name, "buckets_lost") == 0)
        r->buckets_lost = atol(value);
    else if (strcmp(name, "recreated") == 0)
        r->recreated = atol(value);
    else if (strcmp(name, "entries") == 0)
        r->entries = atol(value);
    else if (strcmp(name, "lock_holders_died") == 0)
        r->holders_died = atol(value);
}

static dbm_report get_report(cachet_region *r)
{
    dbm_report rep = {-1, -1, -1, -1, -1, -1};
    assert_int_equal(cachet_backend_report(r, on_report, &rep), CACHET_OK);
    return rep;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- basics ---- */

/* Round trips of single values are the conformance suite's bodies; what is
 * dbm's own: the file is made at open, and what one region wrote another
 * region (as another process would) reads from the file. */
static void multi_ops_persist_in_the_file(void **state)
{
    char dir[128], path[160];
    cachet_region *r;
    char keys[40][16], vals[40][24];
    cachet_item items[40];
    const char *dkeys[20];

    (void)state;
    snprintf(path, sizeof path, "%s/cache.db", newdir(dir, sizeof dir));
    r = open_db(path);
    assert_string_equal(cachet_region_backend(r), "dbm");
    assert_int_equal(file_size(path) > 0, 1);           /* created at open */

    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof keys[i], "key%d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d", i * 7);
        items[i] = (cachet_item){keys[i], vals[i], strlen(vals[i]), CACHET_EINVAL};
    }
    assert_int_equal(cachet_set_multi(r, items, 40), CACHET_OK);
    for (int i = 0; i < 40; i++)
        assert_int_equal(items[i].status, CACHET_OK);
    for (int i = 0; i < 20; i++)
        dkeys[i] = keys[2 * i];
    assert_int_equal(cachet_delete_multi(r, dkeys, 20), CACHET_OK);
    cachet_region_close(r);

    /* persistent: another region (as another process would) sees it all */
    r = open_db(path);
    for (int i = 0; i < 40; i++)
        items[i] = (cachet_item){keys[i], NULL, 0, CACHET_EINVAL};
    assert_int_equal(cachet_get_multi(r, items, 40), CACHET_OK);
    for (int i = 0; i < 40; i++) {
        if (i % 2 == 0) {
            assert_int_equal(items[i].status, CACHET_MISS);
            assert_null(items[i].value);
        } else {
            assert_int_equal(items[i].status, CACHET_OK);
            assert_int_equal(items[i].len, strlen(vals[i]));
            assert_memory_equal(items[i].value, vals[i], items[i].len);
            cachet_free(items[i].value);
        }
    }
    assert_int_equal(get_report(r).entries, 20);
    cachet_region_close(r);
}

static void lockfiles_off_and_custom(void **state)
{
    char dir[128], path[160], rw[192], arg[224];
    cachet_region *r;
    struct stat sb;

    newdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/plain.db", dir);
    /* rw_lockfile false: gdbm's own locks, no lock file beside it */
    assert_int_equal(try_open(&r, path, NULL, "rw_lockfile:false", "dogpile_lockfile:no", NULL),
                     CACHET_OK);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    assert_value(r, "k", "v");
    snprintf(rw, sizeof rw, "%s.rw.lock", path);
    assert_int_equal(stat(rw, &sb), -1);
    cachet_region_close(r);

    /* a lock file of one's own */
    snprintf(rw, sizeof rw, "%s/my.lock", dir);
    snprintf(arg, sizeof arg, "rw_lockfile:%s", rw);
    assert_int_equal(try_open(&r, path, NULL, arg, NULL), CACHET_OK);
    assert_value(r, "k", "v");
    assert_int_equal(stat(rw, &sb), 0);
    cachet_region_close(r);

    /* sync:true (fsync around writes): the same results, and a multi-op */
    snprintf(path, sizeof path, "%s/synced.db", dir);
    assert_int_equal(try_open(&r, path, NULL, "sync:true", NULL), CACHET_OK);
    assert_int_equal(cachet_set(r, "s1", "one", 3), CACHET_OK);
    cachet_item items[2] = {{.key = "s2", .value = "two", .len = 3},
                            {.key = "s3", .value = "three", .len = 5}};
    assert_int_equal(cachet_set_multi(r, items, 2), CACHET_OK);
    assert_int_equal(cachet_delete(r, "s1"), CACHET_OK);
    cachet_region_close(r);
    assert_int_equal(try_open(&r, path, NULL, "sync:true", NULL), CACHET_OK);
    assert_miss(r, "s1");
    assert_value(r, "s2", "two");
    assert_value(r, "s3", "three");
    cachet_region_close(r);
}

/* ---- argument and file errors ---- */

static void missing_filename_and_unknown_argument(void **state)
{
    cachet_region *r;
    char dir[128], path[160];

    assert_int_equal(try_open(&r, NULL, NULL, NULL), CACHET_EINVAL);
    assert_null(r);
    assert_contains(cachet_errmsg(), "filename");
    assert_contains(cachet_errmsg(), "dbm");

    snprintf(path, sizeof path, "%s/x.db", newdir(dir, sizeof dir));
    assert_int_equal(try_open(&r, path, NULL, "lock_factory:x", NULL), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), "lock_factory");
    assert_int_equal(try_open(&r, path, NULL, "recreate_on_corrupt:maybe", NULL), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), "recreate_on_corrupt");
    assert_int_equal(try_open(&r, path, NULL, "rw_lockfile:", NULL), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), "rw_lockfile");
}

static void unwritable_directory(void **state)
{
    char dir[128], file[160], path[192];
    cachet_region *r;
    cachet_status st;
    int fd;

    /* tests run as root, which ignores permission bits: a path under a
     * regular file is unwritable for anyone */
    snprintf(file, sizeof file, "%s/file.txt", newdir(dir, sizeof dir));
    assert_true((fd = open(file, O_CREAT | O_WRONLY, 0600)) >= 0);
    close(fd);
    snprintf(path, sizeof path, "%s/cache.db", file);
    st = try_open(&r, path, NULL, NULL);
    assert_int_equal(st, CACHET_EBACKEND);
    assert_contains(cachet_errmsg(), path);
    assert_contains(cachet_errmsg(), "Not a directory");
    st = try_open(&r, path, NULL, "rw_lockfile:false", NULL);
    assert_int_equal(st, CACHET_EBACKEND);
    assert_contains(cachet_errmsg(), path);
    /* a missing directory is not created (the caller's job) */
    snprintf(path, sizeof path, "%s/no/such/dir/cache.db", dir);
    assert_int_equal(try_open(&r, path, NULL, NULL), CACHET_EBACKEND);
    assert_contains(cachet_errmsg(), path);
}

static void write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

static void garbage_file(void **state)
{
    char dir[128], path[160], junk[5000];
    cachet_region *r;
    cachet_status st;

    snprintf(path, sizeof path, "%s/garbage.db", newdir(dir, sizeof dir));
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    write_file(path, junk, sizeof junk);
    st = try_open(&r, path, NULL, NULL);
    if (st != CACHET_ECORRUPT && st != CACHET_EBACKEND)
        fail_msg("open of a garbage file: %s", cachet_strerror(st));
    assert_contains(cachet_errmsg(), path);
    assert_contains(cachet_errmsg(), "recreate_on_corrupt");
    assert_int_equal(file_size(path), sizeof junk);     /* left alone */

    /* "it is only a cache: start over" */
    assert_int_equal(try_open(&r, path, NULL, "recreate_on_corrupt:true", NULL), CACHET_OK);
    assert_miss(r, "k");
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    assert_value(r, "k", "v");
    assert_int_equal(get_report(r).recreated, 1);
    cachet_region_close(r);
    r = open_db(path);          /* and now an ordinary open takes it */
    assert_value(r, "k", "v");
    cachet_region_close(r);
}

static void copy_prefix(const char *from, const char *to, off_t n)
{
    char *buf = malloc((size_t)n);
    int fd = open(from, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, (size_t)n), (ssize_t)n);
    close(fd);
    write_file(to, buf, (size_t)n);
    free(buf);
}

static void truncated_file(void **state)
{
    char dir[128], path[160], cut[160], key[32], val[200];
    cachet_region *r;
    cachet_status st;
    int errors = 0, misses = 0;

    newdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/real.db", dir);
    snprintf(cut, sizeof cut, "%s/cut.db", dir);
    r = open_db(path);
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "key%d", i);
        assert_int_equal(cachet_set(r, key, val, sizeof val), CACHET_OK);
    }
    cachet_region_close(r);
    copy_prefix(path, cut, file_size(path) / 2);

    st = try_open(&r, cut, NULL, NULL);
    if (st != CACHET_OK) {
        if (st != CACHET_ECORRUPT && st != CACHET_EBACKEND)
            fail_msg("open of a truncated file: %s", cachet_strerror(st));
        assert_contains(cachet_errmsg(), cut);
    } else {
        /* gdbm may read the header and directory: then reads fail */
        for (int i = 0; i < 3000; i++) {
            void *v;
            size_t n;
            snprintf(key, sizeof key, "key%d", i);
            st = cachet_get(r, key, &v, &n);
            if (st == CACHET_OK) {
                assert_int_equal(n, sizeof val);
                assert_memory_equal(v, val, n);
                cachet_free(v);
            } else if (st == CACHET_MISS) {
                misses++;
            } else {
                if (st != CACHET_ECORRUPT && st != CACHET_EBACKEND)
                    fail_msg("get from a truncated file: %s", cachet_strerror(st));
                assert_contains(cachet_errmsg(), cut);
                errors++;
            }
        }
        assert_true(errors > 0);
        cachet_region_close(r);
    }

    /* recreate_on_corrupt: the damage is met and the file started over */
    assert_int_equal(try_open(&r, cut, NULL, "recreate_on_corrupt:true", NULL), CACHET_OK);
    for (int i = 0; i < 3000; i++) {
        void *v;
        size_t n;
        snprintf(key, sizeof key, "key%d", i);
        st = cachet_get(r, key, &v, &n);
        if (st == CACHET_OK)
            cachet_free(v);
        else if (st != CACHET_MISS)
            fail_msg("get after recreate_on_corrupt: %s: %s", cachet_strerror(st), cachet_errmsg());
    }
    assert_int_equal(cachet_set(r, "fresh", "1", 1), CACHET_OK);
    assert_value(r, "fresh", "1");
    cachet_region_close(r);
}

/* ---- compaction ---- */

static void compact_removes_expired(void **state)
{
    char dir[128], path[160], key[32], val[300];
    cachet_region *r;
    size_t removed;
    off_t sizes[3];

    snprintf(path, sizeof path, "%s/exp.db", newdir(dir, sizeof dir));
    assert_int_equal(try_open(&r, path, "1", NULL), CACHET_OK);
    memset(val, 'e', sizeof val);
    assert_int_equal(cachet_set(r, "kept", "x", 1), CACHET_OK);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 400; i++) {
            snprintf(key, sizeof key, "r%d-%d", round, i);    /* new keys every round */
            assert_int_equal(cachet_set(r, key, val, sizeof val), CACHET_OK);
        }
        usleep(1300 * 1000);
        if (round == 0) {
            /* a value written now is fresh and must survive */
            assert_int_equal(cachet_set(r, "kept", "x", 1), CACHET_OK);
        }
        assert_int_equal(cachet_compact(r, &removed), CACHET_OK);
        assert_int_equal(removed, round == 0 ? 400 : 401);   /* later: the old "kept" too */
        sizes[round] = file_size(path);
        if (round == 0)
            assert_value(r, "kept", "x");
        else
            assert_int_equal(cachet_set(r, "kept", "x", 1), CACHET_OK);
    }
    assert_int_equal(get_report(r).entries, 1);
    /* the file does not grow from round to round */
    assert_true(sizes[2] <= sizes[0]);
    assert_true(sizes[1] <= sizes[0]);
    cachet_region_close(r);
}

/* ---- processes ---- */

#define NPROC       4
#define OPS         10000
#define OWNED       200
#define FINAL_VER   1000000

/* A value that says whose key it is and which version, padded with bytes
 * that depend on both, so any torn or misplaced read is caught. */
static size_t make_value(char *buf, int p, int k, int ver)
{
    int n = snprintf(buf, 64, "p%d:k%d:v%d:", p, k, ver);
    size_t len = (size_t)n + (size_t)((k * 37 + ver) % 300);
    for (size_t i = (size_t)n; i < len; i++)
        buf[i] = (char)('a' + (i * 7 + (size_t)k + (size_t)ver) % 26);
    return len;
}

/* 1 if v is a well-formed value; its owner, key and version in *p *k *ver. */
static int check_value(const void *v, size_t n, int *p, int *k, int *ver)
{
    char buf[512], want[512];
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, v, n);
    buf[n] = 0;
    if (sscanf(buf, "p%d:k%d:v%d:", p, k, ver) != 3)
        return 0;
    return make_value(want, *p, *k, *ver) == n && memcmp(want, v, n) == 0;
}

static void key_name(char *buf, size_t size, int p, int k)
{
    snprintf(buf, size, "proc%d-key%d", p, k);
}

#define CHILD_FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); _exit(1); } while (0)

static void child_mixed(const char *path, int p)
{
    cachet_region *r;
    int model[OWNED];       /* version stored, -1 absent */
    unsigned seed = (unsigned)p * 7919u + 1;
    char key[64], val[512];
    void *v;
    size_t n;
    int op, k, pp, kk, ver;
    cachet_status st;

    if (try_open(&r, path, NULL, NULL) != CACHET_OK)
        CHILD_FAIL("child %d: open: %s", p, cachet_errmsg());
    for (k = 0; k < OWNED; k++) {
        key_name(key, sizeof key, p, k);
        if (cachet_delete(r, key) != CACHET_OK)
            CHILD_FAIL("child %d: delete: %s", p, cachet_errmsg());
        model[k] = -1;
    }
    for (int i = 0; i < OPS; i++) {
        op = rand_r(&seed) % 10;
        k = rand_r(&seed) % OWNED;
        key_name(key, sizeof key, p, k);
        if (op < 4) {                                   /* set */
            size_t len = make_value(val, p, k, i);
            if ((st = cachet_set(r, key, val, len)) != CACHET_OK)
                CHILD_FAIL("child %d: set: %s", p, cachet_errmsg());
            model[k] = i;
        } else if (op < 6) {                            /* delete */
            if ((st = cachet_delete(r, key)) != CACHET_OK)
                CHILD_FAIL("child %d: delete: %s", p, cachet_errmsg());
            model[k] = -1;
        } else if (op < 8) {                            /* get own key: exact */
            st = cachet_get(r, key, &v, &n);
            if (st == CACHET_OK) {
                if (!check_value(v, n, &pp, &kk, &ver) || pp != p || kk != k || ver != model[k])
                    CHILD_FAIL("child %d: %s: read a wrong value (want v%d)", p, key, model[k]);
                cachet_free(v);
            } else if (st != CACHET_MISS || model[k] != -1) {
                CHILD_FAIL("child %d: get %s: %s, want v%d: %s", p, key, cachet_strerror(st),
                           model[k], cachet_errmsg());
            }
        } else if (op < 9) {                            /* get another's key: well-formed */
            int other = rand_r(&seed) % NPROC;
            key_name(key, sizeof key, other, k);
            st = cachet_get(r, key, &v, &n);
            if (st == CACHET_OK) {
                if (!check_value(v, n, &pp, &kk, &ver) || pp != other || kk != k)
                    CHILD_FAIL("child %d: %s: read a malformed value", p, key);
                cachet_free(v);
            } else if (st != CACHET_MISS) {
                CHILD_FAIL("child %d: get %s: %s: %s", p, key, cachet_strerror(st),
                           cachet_errmsg());
            }
        } else {                                        /* get_multi of 5 own keys */
            cachet_item items[5];
            char keys[5][64];
            int ks[5];
            for (int j = 0; j < 5; j++) {
                ks[j] = (k + j) % OWNED;
                key_name(keys[j], sizeof keys[j], p, ks[j]);
                items[j] = (cachet_item){keys[j], NULL, 0, CACHET_EINVAL};
            }
            if (cachet_get_multi(r, items, 5) != CACHET_OK)
                CHILD_FAIL("child %d: get_multi: %s", p, cachet_errmsg());
            for (int j = 0; j < 5; j++) {
                if (items[j].status == CACHET_OK) {
                    if (!check_value(items[j].value, items[j].len, &pp, &kk, &ver) ||
                        pp != p || kk != ks[j] || ver != model[ks[j]])
                        CHILD_FAIL("child %d: get_multi %s: wrong value", p, keys[j]);
                    cachet_free(items[j].value);
                } else if (items[j].status != CACHET_MISS || model[ks[j]] != -1) {
                    CHILD_FAIL("child %d: get_multi %s: status %d", p, keys[j], items[j].status);
                }
            }
        }
    }
    /* a final pass whose outcome the parent knows */
    for (k = 0; k < OWNED; k++) {
        key_name(key, sizeof key, p, k);
        if (k % 3 == 0)
            st = cachet_delete(r, key);
        else
            st = cachet_set(r, key, val, make_value(val, p, k, FINAL_VER));
        if (st != CACHET_OK)
            CHILD_FAIL("child %d: final pass: %s", p, cachet_errmsg());
    }
    cachet_stat_counters s;
    cachet_stats(r, &s);
    if (s.corrupt || s.errors)
        CHILD_FAIL("child %d: %llu corrupt values, %llu errors", p,
                   (unsigned long long)s.corrupt, (unsigned long long)s.errors);
    cachet_region_close(r);
    _exit(0);
}

static void four_processes_mixed(void **state)
{
    char dir[128], path[160], key[64];
    pid_t pids[NPROC];
    cachet_region *r;
    double t0 = now();

    snprintf(path, sizeof path, "%s/shared.db", newdir(dir, sizeof dir));
    for (int p = 0; p < NPROC; p++) {
        if ((pids[p] = fork()) == 0)
            child_mixed(path, p);
        assert_true(pids[p] > 0);
    }
    for (int p = 0; p < NPROC; p++)
        assert_int_equal(wait_child(pids[p]), 0);
    print_message("      %d processes x %d ops: %.2f s\n", NPROC, OPS, now() - t0);
    r = open_db(path);
    for (int p = 0; p < NPROC; p++)
        for (int k = 0; k < OWNED; k++) {
            key_name(key, sizeof key, p, k);
            if (k % 3 == 0) {
                assert_miss(r, key);
            } else {
                void *v;
                size_t n;
                int pp, kk, ver;
                assert_int_equal(cachet_get(r, key, &v, &n), CACHET_OK);
                assert_true(check_value(v, n, &pp, &kk, &ver));
                assert_int_equal(pp, p);
                assert_int_equal(kk, k);
                assert_int_equal(ver, FINAL_VER);
                cachet_free(v);
            }
        }
    cachet_stat_counters s;
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    assert_int_equal(s.corrupt, 0);
    assert_int_equal(get_report(r).entries, NPROC * (OWNED - (OWNED + 2) / 3));
    cachet_region_close(r);
}

static const char *count_path;

/* The creator: counts itself with one appended byte, then takes 300 ms. */
static cachet_status slow_creator(void *arg, const char *key, void **value, size_t *len)
{
    int fd = open(count_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    (void)arg;
    (void)key;
    if (fd >= 0) {
        if (write(fd, "x", 1) != 1)
            fprintf(stderr, "creator: write failed\n");
        close(fd);
    }
    usleep(300 * 1000);
    *value = strdup("created value");
    *len = strlen("created value");
    return CACHET_OK;
}

static void get_or_create_across_processes(void **state)
{
    char dir[128], path[160], counter[160];
    int go[2], ready[2];
    pid_t pids[NPROC];

    newdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/goc.db", dir);
    snprintf(counter, sizeof counter, "%s/creator-runs", dir);
    count_path = counter;
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(ready), 0);
    for (int p = 0; p < NPROC; p++) {
        if ((pids[p] = fork()) == 0) {
            cachet_region *r;
            void *v;
            size_t n;
            char b;
            close(go[1]);
            close(ready[0]);
            if (try_open(&r, path, NULL, NULL) != CACHET_OK)
                CHILD_FAIL("goc child: open: %s", cachet_errmsg());
            if (write(ready[1], "r", 1) != 1)
                CHILD_FAIL("goc child: cannot say it is ready");
            if (read(go[0], &b, 1) != 1)            /* all start together */
                CHILD_FAIL("goc child: no start signal");
            if (cachet_get_or_create(r, "the-absent-key", slow_creator, NULL, &v, &n) != CACHET_OK)
                CHILD_FAIL("goc child: get_or_create: %s", cachet_errmsg());
            if (n != strlen("created value") || memcmp(v, "created value", n) != 0)
                CHILD_FAIL("goc child: wrong value");
            cachet_free(v);
            cachet_region_close(r);
            _exit(0);
        }
        assert_true(pids[p] > 0);
    }
    close(go[0]);
    close(ready[1]);
    for (int p = 0; p < NPROC; p++) {          /* every child has opened its region */
        char b;
        assert_int_equal(read(ready[0], &b, 1), 1);
    }
    close(ready[0]);
    assert_int_equal(write(go[1], "gggg", NPROC), NPROC);
    close(go[1]);
    for (int p = 0; p < NPROC; p++)
        assert_int_equal(wait_child(pids[p]), 0);
    assert_int_equal(file_size(counter), 1);            /* the creator ran once */
}

/* dogpile_lockfile=false: the backend offers no lock; the region goes on
 * with its in-process lock. */
static void dogpile_lockfile_off(void **state)
{
    char dir[128], path[160], counter[160], dl[192];
    cachet_region *r;
    struct stat sb;
    void *v;
    size_t n;

    newdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/nodl.db", dir);
    snprintf(counter, sizeof counter, "%s/runs", dir);
    count_path = counter;
    assert_int_equal(try_open(&r, path, NULL, "dogpile_lockfile:false", NULL), CACHET_OK);
    assert_int_equal(cachet_get_or_create(r, "k", slow_creator, NULL, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(cachet_get_or_create(r, "k", slow_creator, NULL, &v, &n), CACHET_OK);
    cachet_free(v);
    assert_int_equal(file_size(counter), 1);
    snprintf(dl, sizeof dl, "%s.dogpile.lock", path);
    assert_int_equal(stat(dl, &sb), -1);
    cachet_region_close(r);
}

/* ---- SIGKILL in the middle of writes ---- */

#define KILL_ROUNDS  50
#define WRITERS      2
#define STRIDE       20000
#define MAX_DONE     (KILL_ROUNDS * WRITERS * STRIDE)

static size_t kill_value(char *buf, int idx)
{
    /* 50..2050 bytes: small and large values, bucket splits, file growth */
    size_t len = 50 + (size_t)((unsigned long long)idx * 7919u % 2000);
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('A' + (idx + (int)i) % 23);
    return len;
}

static void kill_writer(const char *path, int fd, int base)
{
    cachet_region *r;
    char key[32], val[2100];
    if (try_open(&r, path, NULL, NULL) != CACHET_OK)
        CHILD_FAIL("writer: open: %s", cachet_errmsg());
    for (int i = base; i < base + STRIDE; i++) {
        snprintf(key, sizeof key, "kill-%d", i);
        if (cachet_set(r, key, val, kill_value(val, i)) != CACHET_OK)
            CHILD_FAIL("writer: set: %s", cachet_errmsg());
        if (write(fd, &i, sizeof i) != sizeof i)    /* completed */
            _exit(1);
        if (i % 97 == 0 && i - 50 >= base) {
            snprintf(key, sizeof key, "kill-%d", i - 50);   /* deletes move space too */
            cachet_delete(r, key);
        }
    }
    pause();        /* wait to be killed */
}

static void print_warnings(void *arg, cachet_log_level level, const char *msg)
{
    (void)arg;
    if (level >= CACHET_LOG_WARNING && strstr(msg, "can't"))
        print_message("      log: %s\n", msg);
}

static void killed_writers_lose_nothing_completed(void **state)
{
    char dir[128], path[160], key[32], want[2100];
    unsigned char *done = calloc(MAX_DONE, 1);   /* 1 completed, 2 deleted */
    unsigned seed = (unsigned)time(NULL);
    long recoveries = 0, checked = 0;
    int maxidx = 0;

    snprintf(path, sizeof path, "%s/killed.db", newdir(dir, sizeof dir));
    print_message("      seed %u\n", seed);
    cachet_set_logger(print_warnings, NULL);
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int fds[WRITERS][2];
        pid_t pids[WRITERS];
        for (int w = 0; w < WRITERS; w++) {
            assert_int_equal(pipe(fds[w]), 0);
            if ((pids[w] = fork()) == 0) {
                close(fds[w][0]);
                kill_writer(path, fds[w][1], (round * WRITERS + w) * STRIDE);
            }
            assert_true(pids[w] > 0);
            close(fds[w][1]);
        }
        /* kill each at a random point: during open, recovery or sets */
        for (int w = 0; w < WRITERS; w++) {
            usleep((useconds_t)(rand_r(&seed) % 25000));
            kill(pids[w], SIGKILL);
        }
        for (int w = 0; w < WRITERS; w++) {
            int idx, base = (round * WRITERS + w) * STRIDE;
            int rc = wait_child(pids[w]);
            if (rc != 128 + SIGKILL)
                fail_msg("writer exited with %d before it was killed", rc);
            while (read(fds[w][0], &idx, sizeof idx) == sizeof idx) {
                assert_true(idx >= 0 && idx < MAX_DONE);
                done[idx] = 1;
                if (idx > maxidx)
                    maxidx = idx;
                if (idx % 97 == 0 && idx - 50 >= base)
                    done[idx - 50] = 2;     /* deleted after (maybe: killed before) */
            }
            close(fds[w][0]);
        }
        /* the file opens, and every completed set is there */
        cachet_region *r;
        if (try_open(&r, path, NULL, NULL) != CACHET_OK)
            fail_msg("round %d: open after SIGKILL: %s", round, cachet_errmsg());
        for (int i = 0; i <= maxidx; i++) {
            void *v;
            size_t n;
            cachet_status st;
            if (!done[i])
                continue;
            snprintf(key, sizeof key, "kill-%d", i);
            st = cachet_get(r, key, &v, &n);
            if (st == CACHET_MISS && done[i] == 2)
                continue;
            if (st != CACHET_OK) {
                dbm_report rep = get_report(r);
                fail_msg("round %d: completed %s: %s (%s); this open: %ld recoveries, %ld keys "
                         "lost, %ld buckets lost", round, key, cachet_strerror(st),
                         st == CACHET_MISS ? "" : cachet_errmsg(), rep.recoveries, rep.keys_lost,
                         rep.buckets_lost);
            }
            size_t wl = kill_value(want, i);
            assert_int_equal(n, wl);
            assert_memory_equal(v, want, wl);
            cachet_free(v);
            checked++;
        }
        /* and the recovery (if this open ran one) could read the whole file:
         * a refused bucket or key is damage a kill must not leave, even
         * when no completed set happened to be in it */
        dbm_report rep = get_report(r);
        if (rep.buckets_lost != 0 || rep.keys_lost != 0)
            fail_msg("round %d: the recovery lost %ld buckets and %ld keys", round,
                     rep.buckets_lost, rep.keys_lost);
        recoveries += rep.recoveries;
        cachet_stat_counters s;
        cachet_stats(r, &s);
        assert_int_equal(s.corrupt, 0);
        cachet_region_close(r);
    }
    print_message("      %d rounds, %ld values checked, %ld recoveries by the checker\n",
                  KILL_ROUNDS, checked, recoveries);
    free(done);
}

/* The exact state a writer killed in the middle of a bucket split leaves,
 * built by hand, so that this regression does not depend on where a random
 * kill lands.  When a set splits a full bucket, gdbm gives the new second
 * bucket a whole free block taken from the end of the file, and only the
 * header (written last) and a final extension of the file account for it.
 * A writer killed after the buckets and the directory but before the header
 * leaves a file that ends where that block begins.  Recovery used to raise
 * the stale next_block to the end of the file only, and gdbm then refused
 * the new bucket ("Malformed avail_block") with every completed key that
 * the split had moved into it.
 *
 * The test sets keys until a set leaves an all-zero last block (allocated
 * at the end, never written: a split's free block), then puts back the
 * header as it was before that set, cuts the block off, and sets the lock
 * file's dirty flag, as the kill would have.  It reads gdbm's block size
 * from the header (offset 4) and the lock file's layout (the dirty flag at
 * offset 12) from dbm_internal.h. */
static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void writer_killed_in_a_bucket_split(void **state)
{
    char dir[128], path[160], lockpath[192], key[32], val[128];
    unsigned char *old_hdr = NULL, *tail = NULL;
    int32_t bs = 0;
    uint32_t dirty = 1;
    off_t old_size = 0, size = 0;
    int fd, found = -1;
    cachet_region *r;

    db_paths("split.db", dir, path, lockpath);
    r = open_db(path);
    memset(val, 'v', sizeof val);
    assert_int_equal(cachet_set(r, "split-first", val, sizeof val), CACHET_OK);
    assert_true((fd = open(path, O_RDWR)) >= 0);
    assert_int_equal(pread(fd, &bs, sizeof bs, 4), sizeof bs);
    assert_true(bs >= 512 && bs <= 1 << 24);
    old_hdr = malloc((size_t)bs);
    tail = malloc((size_t)bs);
    for (int i = 0; i < 20000 && found < 0; i++) {
        assert_int_equal(pread(fd, old_hdr, (size_t)bs, 0), bs);
        old_size = file_size(path);
        snprintf(key, sizeof key, "split-%d", i);
        assert_int_equal(cachet_set(r, key, val, sizeof val), CACHET_OK);
        size = file_size(path);
        if (size >= old_size + 2 * bs && size % bs == 0 &&
            pread(fd, tail, (size_t)bs, size - bs) == bs && all_zero(tail, (size_t)bs))
            found = i;
    }
    cachet_region_close(r);
    if (found < 0)
        fail_msg("no set split a bucket with a block from the end of the file");
    print_message("      set %d split a bucket; file %lld -> %lld bytes\n", found,
                  (long long)old_size, (long long)size);
    /* what the kill leaves: the old header, the file not yet extended, dirty */
    assert_int_equal(pwrite(fd, old_hdr, (size_t)bs, 0), bs);
    assert_int_equal(ftruncate(fd, size - bs), 0);
    close(fd);
    assert_true((fd = open(lockpath, O_RDWR)) >= 0);
    assert_int_equal(pwrite(fd, &dirty, sizeof dirty, 12), sizeof dirty);
    close(fd);

    r = open_db(path);
    for (int i = -1; i < found; i++) {        /* every set that had returned */
        void *v;
        size_t n;
        cachet_status st;
        if (i < 0)
            snprintf(key, sizeof key, "split-first");
        else
            snprintf(key, sizeof key, "split-%d", i);
        if ((st = cachet_get(r, key, &v, &n)) != CACHET_OK) {
            dbm_report rep = get_report(r);
            fail_msg("%s after the split's kill: %s; the recovery lost %ld buckets", key,
                     cachet_strerror(st), rep.buckets_lost);
        }
        assert_int_equal(n, sizeof val);
        assert_memory_equal(v, val, n);
        cachet_free(v);
    }
    dbm_report rep = get_report(r);
    assert_int_equal(rep.recoveries, 1);
    assert_int_equal(rep.buckets_lost, 0);
    assert_int_equal(rep.keys_lost, 0);
    cachet_region_close(r);
    free(old_hdr);
    free(tail);
}

/* ---- threads and fork ---- */

typedef struct {
    cachet_region *r;
    int t;
    int failures;
} thread_arg;

/* ---- lock_wait: a holder that is stopped or hung ---- */

#define LOCK_WAIT "0.5"
#define LOCK_WAIT_S 0.5
#define SLACK_S 5.0             /* a loaded 2-core machine */

/* A child that holds path's flock (exclusive) until it is killed; returns
 * once it holds it. */
static pid_t hold_flock(const char *lockpath)
{
    int ready[2];
    char b;
    pid_t pid;

    assert_int_equal(pipe(ready), 0);
    if ((pid = fork()) == 0) {
        int fd = open(lockpath, O_RDWR | O_CLOEXEC);
        close(ready[0]);
        if (fd < 0 || flock(fd, LOCK_EX) != 0)
            CHILD_FAIL("holder: lock %s: %s", lockpath, strerror(errno));
        if (write(ready[1], "h", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    assert_true(pid > 0);
    close(ready[1]);
    assert_int_equal(read(ready[0], &b, 1), 1);
    close(ready[0]);
    return pid;
}

/* The lock file's layout (version 2, backends/dbm/dbm_internal.h): the
 * header's version at offset 8, the dirty flag at 12, the generation at 16,
 * the ready word at 24, and the file lock, a process-shared robust mutex,
 * at 32. */
#define LOCK_VERSION_OFFSET 8
#define LOCK_MUTEX_OFFSET 32
#define LOCK_PAGE_SIZE (LOCK_MUTEX_OFFSET + sizeof(pthread_mutex_t))

/* The file lock of lockpath, mapped shared, as the backend maps it. */
static pthread_mutex_t *map_file_lock(const char *lockpath)
{
    int fd = open(lockpath, O_RDWR | O_CLOEXEC);
    void *p;
    if (fd < 0)
        return NULL;
    p = mmap(NULL, LOCK_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : (pthread_mutex_t *)((char *)p + LOCK_MUTEX_OFFSET);
}

static void unmap_file_lock(pthread_mutex_t *mu)
{
    munmap((char *)mu - LOCK_MUTEX_OFFSET, LOCK_PAGE_SIZE);
}

/* A child that takes the file lock of lockpath (the mutex, as a writer
 * does), sets the dirty flag to dirty (a writer inside a change) or leaves
 * it, and then either waits to be killed (die 0) or exits holding both
 * (die 1: a holder that dies).  Returns once it holds the lock. */
static pid_t hold_lock(const char *lockpath, uint32_t dirty, int die)
{
    int ready[2];
    char b;
    pid_t pid;

    assert_int_equal(pipe(ready), 0);
    if ((pid = fork()) == 0) {
        pthread_mutex_t *mu = map_file_lock(lockpath);
        int rc;
        close(ready[0]);
        if (!mu)
            CHILD_FAIL("holder: map %s: %s", lockpath, strerror(errno));
        if ((rc = pthread_mutex_lock(mu)) == EOWNERDEAD)
            rc = pthread_mutex_consistent(mu);
        if (rc != 0)
            CHILD_FAIL("holder: lock %s: %s", lockpath, strerror(rc));
        if (dirty)
            ((uint32_t *)((char *)mu - LOCK_MUTEX_OFFSET))[3] = dirty;   /* offset 12 */
        if (write(ready[1], "h", 1) != 1)
            _exit(1);
        if (die)
            _exit(0);                   /* without unlocking: the kernel marks it dead */
        for (;;)
            pause();
    }
    assert_true(pid > 0);
    close(ready[1]);
    assert_int_equal(read(ready[0], &b, 1), 1);
    close(ready[0]);
    return pid;
}

/* The lock file header's dirty flag (offset 12): what a writer stopped in
 * the middle of a change leaves there. */
static void set_dirty_flag(const char *lockpath, uint32_t dirty)
{
    int fd = open(lockpath, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, &dirty, sizeof dirty, 12), sizeof dirty);
    close(fd);
}

static uint32_t dirty_flag(const char *lockpath)
{
    uint32_t dirty = 0;
    int fd = open(lockpath, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &dirty, sizeof dirty, 12), sizeof dirty);
    close(fd);
    return dirty;
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    assert_int_equal(wait_child(pid), 128 + SIGKILL);
}

/* st is CACHET_ETIMEDOUT, reached after about lock_wait and within the
 * slack, and the message names the lock file and lock_wait. */
static void assert_timed_out(const char *what, cachet_status st, double t0, const char *file)
{
    double took = now() - t0;
    if (st != CACHET_ETIMEDOUT)
        fail_msg("%s: %s (%s), want CACHET_ETIMEDOUT", what, cachet_strerror(st), cachet_errmsg());
    if (took < LOCK_WAIT_S * 0.9 || took > LOCK_WAIT_S + SLACK_S)
        fail_msg("%s: timed out after %.3f s with lock_wait " LOCK_WAIT " s", what, took);
    assert_contains(cachet_errmsg(), file);
    assert_contains(cachet_errmsg(), "lock_wait " LOCK_WAIT " s");
}

static void lock_wait_bounds_a_held_lock(void **state)
{
    char dir[128], path[160], lockpath[192];
    cachet_region *r;
    cachet_item items[2] = {{"a", NULL, 0, 0}, {"b", NULL, 0, 0}};
    const char *keys[2] = {"a", "b"};
    void *v;
    size_t n;
    double t0;
    pid_t holder;

    alarm(120);                         /* a regression fails instead of hanging */
    db_paths("held.db", dir, path, lockpath);
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:" LOCK_WAIT, NULL), CACHET_OK);
    assert_int_equal(cachet_set(r, "k", "before", 6), CACHET_OK);
    holder = hold_lock(lockpath, 0, 0);

    /* a holder that has not begun a change does not stop a get: nothing
     * was written since this handle read the file (the generation says so) */
    t0 = now();
    assert_value(r, "k", "before");
    assert_true(now() - t0 < 1.0);
    /* one that has (the dirty flag) does: the get waits for the lock */
    set_dirty_flag(lockpath, 1);
    t0 = now();
    assert_timed_out("get", cachet_get(r, "k", &v, &n), t0, lockpath);
    t0 = now();
    assert_timed_out("set", cachet_set(r, "k", "during", 6), t0, lockpath);
    t0 = now();
    assert_timed_out("delete", cachet_delete(r, "k"), t0, lockpath);
    t0 = now();
    assert_timed_out("get_multi", cachet_get_multi(r, items, 2), t0, lockpath);
    t0 = now();
    items[0].value = items[1].value = "v";
    items[0].len = items[1].len = 1;
    assert_timed_out("set_multi", cachet_set_multi(r, items, 2), t0, lockpath);
    t0 = now();
    assert_timed_out("delete_multi", cachet_delete_multi(r, keys, 2), t0, lockpath);
    t0 = now();
    assert_timed_out("compact", cachet_compact(r, NULL), t0, lockpath);
    /* opening a region on the file waits no longer */
    cachet_region *r2;
    t0 = now();
    assert_timed_out("open", try_open(&r2, path, NULL, "lock_wait:" LOCK_WAIT, NULL), t0, lockpath);

    set_dirty_flag(lockpath, 0);        /* the holder finished its change cleanly */
    kill_and_reap(holder);
    assert_value(r, "k", "before");
    assert_int_equal(cachet_set(r, "k", "after", 5), CACHET_OK);
    assert_value(r, "k", "after");
    cachet_region_close(r);
    alarm(0);
}

/* Two threads of one region while another process holds the lock: the one
 * queued behind the other on the instance mutex keeps the deadline its call
 * began with, which covers that queueing (a deadline taken after the mutex
 * would make it wait out the first's lock_wait, then its own). */
typedef struct {
    cachet_region *r;
    cachet_status st;
    double took;
    char msg[512];
} timed_get;

static void *timed_get_main(void *arg)
{
    timed_get *t = arg;
    void *v;
    size_t n;
    double t0 = now();
    t->st = cachet_get(t->r, "k", &v, &n);
    t->took = now() - t0;
    snprintf(t->msg, sizeof t->msg, "%s", cachet_errmsg());
    if (t->st == CACHET_OK)
        cachet_free(v);
    return NULL;
}

static void lock_wait_is_per_call_across_threads(void **state)
{
    char dir[128], path[160], lockpath[192];
    cachet_region *r;
    timed_get t[2];
    pthread_t tid[2];
    pid_t holder;

    alarm(120);
    db_paths("threads.db", dir, path, lockpath);
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:3", NULL), CACHET_OK);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    holder = hold_lock(lockpath, 0, 0);
    set_dirty_flag(lockpath, 1);        /* a writer in the middle of a change: gets wait */
    for (int i = 0; i < 2; i++) {
        t[i] = (timed_get){.r = r};
        assert_int_equal(pthread_create(&tid[i], NULL, timed_get_main, &t[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(tid[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        if (t[i].st != CACHET_ETIMEDOUT)
            fail_msg("thread %d: %s (%s), want CACHET_ETIMEDOUT", i, cachet_strerror(t[i].st),
                     t[i].msg);
        /* one lock_wait each: 6 s would be the second waiting out the first */
        if (t[i].took > 3 + 1.5)
            fail_msg("thread %d timed out after %.3f s with lock_wait 3 s", i, t[i].took);
        assert_contains(t[i].msg, lockpath);
        assert_contains(t[i].msg, "lock_wait 3 s");
    }
    set_dirty_flag(lockpath, 0);
    kill_and_reap(holder);
    assert_value(r, "k", "v");
    cachet_region_close(r);
    alarm(0);
}

/* lock_wait:0 does not wait at all; without a lock file, gdbm's own lock is
 * bounded the same way. */
static void lock_wait_zero_and_gdbm_locks(void **state)
{
    char dir[128], path[160], lockpath[192];
    cachet_region *r;
    void *v;
    size_t n;
    double t0;
    pid_t holder;

    alarm(120);                         /* a regression fails instead of hanging */
    db_paths("zero.db", dir, path, lockpath);
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:0", NULL), CACHET_OK);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    holder = hold_lock(lockpath, 0, 0);
    set_dirty_flag(lockpath, 1);        /* in the middle of a change: a get must lock */
    t0 = now();
    assert_int_equal(cachet_get(r, "k", &v, &n), CACHET_ETIMEDOUT);
    assert_true(now() - t0 < SLACK_S);
    assert_contains(cachet_errmsg(), lockpath);
    assert_contains(cachet_errmsg(), "lock_wait 0 s");
    set_dirty_flag(lockpath, 0);
    kill_and_reap(holder);
    assert_value(r, "k", "v");
    cachet_region_close(r);

    /* rw_lockfile:false: gdbm locks the database itself; a writer holding
     * its lock (here: a flock on the file, which is what gdbm takes) */
    snprintf(path, sizeof path, "%s/nolock.db", dir);
    assert_int_equal(try_open(&r, path, NULL, "rw_lockfile:false", "lock_wait:" LOCK_WAIT, NULL),
                     CACHET_OK);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    holder = hold_flock(path);
    t0 = now();
    assert_timed_out("set without a lock file", cachet_set(r, "k", "w", 1), t0, path);
    kill_and_reap(holder);
    assert_value(r, "k", "v");
    cachet_region_close(r);
    alarm(0);
}

static void lock_wait_argument(void **state)
{
    char dir[128], path[160];
    cachet_region *r;
    static const char *const bad[] = {"lock_wait:-1", "lock_wait:soon", "lock_wait:1e9",
                                      "lock_wait:inf", "lock_wait:nan"};

    snprintf(path, sizeof path, "%s/arg.db", newdir(dir, sizeof dir));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(try_open(&r, path, NULL, bad[i], NULL), CACHET_EINVAL);
        assert_contains(cachet_errmsg(), "lock_wait");
    }
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:2.5", NULL), CACHET_OK);
    cachet_region_close(r);
}

/* A lock file that is not a regular file: a device would take the flock and
 * lose the header (and crash recovery with it); a FIFO must not block. */
static void lock_file_not_regular(void **state)
{
    char dir[128], path[160], fifo[192], arg[256];
    cachet_region *r;

    snprintf(path, sizeof path, "%s/odd.db", newdir(dir, sizeof dir));
    snprintf(fifo, sizeof fifo, "%s/fifo.lock", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(60);
    assert_int_equal(try_open(&r, path, NULL, "rw_lockfile:/dev/zero", NULL), CACHET_EBACKEND);
    assert_contains(cachet_errmsg(), "/dev/zero is not a regular file");
    snprintf(arg, sizeof arg, "rw_lockfile:%s", fifo);
    assert_int_equal(try_open(&r, path, NULL, arg, NULL), CACHET_EBACKEND);
    assert_contains(cachet_errmsg(), fifo);
    alarm(0);
    /* the database itself as a FIFO is refused too */
    assert_int_equal(try_open(&r, fifo, NULL, NULL), CACHET_EBACKEND);
    assert_contains(cachet_errmsg(), "not a regular file");
}

/* Is the file lock of lockpath free now?  (Takes it and lets go at once.) */
static int lock_free(const char *lockpath)
{
    pthread_mutex_t *mu = map_file_lock(lockpath);
    int rc;
    assert_non_null(mu);
    if ((rc = pthread_mutex_trylock(mu)) == EOWNERDEAD)
        rc = pthread_mutex_consistent(mu);
    if (rc == 0)
        pthread_mutex_unlock(mu);
    unmap_file_lock(mu);
    return rc == 0;
}

/* The case itself: a writer looping sets is stopped (SIGSTOP) while it holds
 * the lock.  Readers and writers time out; once it is killed, the file is
 * recovered if need be and everything completed before is there. */
static void writer_stopped_mid_set(void **state)
{
    char dir[128], path[160], lockpath[192];
    cachet_region *r;
    void *v;
    size_t n;
    double t0, give_up;
    pid_t writer;
    int ws, caught = 0, opened[2];
    char b;

    alarm(120);                         /* a regression fails instead of hanging */
    db_paths("stopped.db", dir, path, lockpath);
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:" LOCK_WAIT, NULL), CACHET_OK);
    assert_int_equal(cachet_set(r, "kept", "from before", 11), CACHET_OK);
    assert_int_equal(pipe(opened), 0);
    if ((writer = fork()) == 0) {
        cachet_region *w;
        char key[32], val[64];
        close(opened[0]);
        if (try_open(&w, path, NULL, NULL) != CACHET_OK)
            CHILD_FAIL("writer: open: %s", cachet_errmsg());
        /* from here on it holds the lock only in sets: exclusively */
        if (write(opened[1], "o", 1) != 1)
            _exit(1);
        for (unsigned i = 0;; i++) {
            snprintf(key, sizeof key, "w%u", i % 500);
            snprintf(val, sizeof val, "value %u %0*d", i, 40, 0);
            if (cachet_set(w, key, val, strlen(val)) != CACHET_OK)
                CHILD_FAIL("writer: set: %s", cachet_errmsg());
        }
    }
    assert_true(writer > 0);
    close(opened[1]);
    assert_int_equal(read(opened[0], &b, 1), 1);   /* its open (a shared lock) is done */
    close(opened[0]);
    /* stop it, and keep it stopped only if it holds the lock then */
    give_up = now() + 60;
    while (!caught && now() < give_up) {
        if (lock_free(lockpath))
            continue;                       /* not inside a set right now */
        assert_int_equal(kill(writer, SIGSTOP), 0);
        assert_int_equal(waitpid(writer, &ws, WUNTRACED), writer);
        assert_true(WIFSTOPPED(ws));
        if (!(caught = !lock_free(lockpath))) {
            assert_int_equal(kill(writer, SIGCONT), 0);
            assert_int_equal(waitpid(writer, &ws, WCONTINUED), writer);
        }
    }
    if (!caught) {
        kill_and_reap(writer);
        fail_msg("never caught the writer holding the lock");
    }
    /* a writer stopped inside a change (the dirty flag set) makes gets
     * wait, bounded by lock_wait; one stopped holding the lock before it
     * began changing anything leaves the file whole: gets read it */
    t0 = now();
    {
        cachet_status gst = cachet_get(r, "kept", &v, &n);
        /* stopped before it began changing: the file is whole, and a get
         * either reads it or (its handle older than the writer's last
         * change) waits for the lock, bounded by lock_wait */
        if (dirty_flag(lockpath) || gst != CACHET_OK) {
            assert_timed_out("get while the writer is stopped", gst, t0, lockpath);
        } else {
            assert_int_equal(n, 11);
            assert_memory_equal(v, "from before", 11);
            cachet_free(v);
        }
    }
    t0 = now();
    assert_timed_out("set while the writer is stopped", cachet_set(r, "mine", "x", 1), t0,
                     lockpath);
    kill(writer, SIGKILL);                  /* a stopped process dies of it too */
    assert_int_equal(waitpid(writer, &ws, 0), writer);
    assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    assert_value(r, "kept", "from before");
    assert_int_equal(cachet_set(r, "mine", "x", 1), CACHET_OK);
    assert_value(r, "mine", "x");
    cachet_region_close(r);
    alarm(0);
}


/* ---- the file lock: a robust mutex in the lock file (layout version 2) ---- */

/* A holder of the file lock that dies: the next taker gets the lock
 * (EOWNERDEAD, made consistent) within its deadline, recovers the file if
 * the holder had begun a change, and the lock works for every process
 * after. */
static void lock_holder_dies(void **state)
{
    char dir[128], path[160], lockpath[192];
    cachet_region *r;
    dbm_report rep;
    pid_t pid;

    alarm(120);
    db_paths("died.db", dir, path, lockpath);
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:10", NULL), CACHET_OK);
    assert_int_equal(cachet_set(r, "k", "before", 6), CACHET_OK);

    /* dies inside a change: the dirty flag set, the mutex held */
    pid = hold_lock(lockpath, 1, 1);
    assert_int_equal(wait_child(pid), 0);
    assert_value(r, "k", "before");
    rep = get_report(r);
    assert_int_equal(rep.holders_died, 1);
    assert_int_equal(rep.recoveries, 1);
    assert_int_equal(rep.keys_lost, 0);
    assert_int_equal(rep.buckets_lost, 0);
    assert_int_equal(dirty_flag(lockpath), 0);

    /* dies holding the lock before any change: nothing to recover */
    pid = hold_lock(lockpath, 0, 1);
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(cachet_set(r, "k", "after", 5), CACHET_OK);
    assert_value(r, "k", "after");
    rep = get_report(r);
    assert_int_equal(rep.holders_died, 2);
    assert_int_equal(rep.recoveries, 1);

    /* the lock is whole for another process too */
    if ((pid = fork()) == 0) {
        cachet_region *w;
        if (try_open(&w, path, NULL, "lock_wait:10", NULL) != CACHET_OK ||
            cachet_set(w, "c", "child", 5) != CACHET_OK)
            CHILD_FAIL("child: %s", cachet_errmsg());
        cachet_region_close(w);
        _exit(0);
    }
    assert_int_equal(wait_child(pid), 0);
    assert_value(r, "c", "child");
    assert_true(lock_free(lockpath));
    cachet_region_close(r);
    alarm(0);
}

/* A real writer killed (SIGKILL) while it holds the file lock, wherever in
 * its set that is: the next get takes the lock over within lock_wait,
 * recovers when the writer was inside a change, and reads a whole file:
 * the value from before, and every value the writer wrote well formed. */
static void writer_killed_holding_the_lock(void **state)
{
    char dir[128], path[160], lockpath[192], key[32];
    cachet_region *r;
    dbm_report rep;
    double give_up;
    pid_t writer;
    int ws, caught = 0, opened[2];
    uint32_t dirty;
    char b;

    alarm(120);
    db_paths("killed.db", dir, path, lockpath);
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:10", NULL), CACHET_OK);
    assert_int_equal(cachet_set(r, "kept", "from before", 11), CACHET_OK);
    assert_int_equal(pipe(opened), 0);
    if ((writer = fork()) == 0) {
        cachet_region *w;
        char val[600];
        close(opened[0]);
        if (try_open(&w, path, NULL, NULL) != CACHET_OK)
            CHILD_FAIL("writer: open: %s", cachet_errmsg());
        if (write(opened[1], "o", 1) != 1)
            _exit(1);
        for (unsigned i = 0;; i++) {
            int n = snprintf(val, sizeof val, "value %u:", i);
            memset(val + n, 'a' + (char)(i % 26), i % 500);   /* splits buckets */
            snprintf(key, sizeof key, "w%u", i % 300);
            if (cachet_set(w, key, val, (size_t)n + i % 500) != CACHET_OK)
                CHILD_FAIL("writer: set: %s", cachet_errmsg());
        }
    }
    assert_true(writer > 0);
    close(opened[1]);
    assert_int_equal(read(opened[0], &b, 1), 1);
    close(opened[0]);
    give_up = now() + 60;
    while (!caught && now() < give_up) {
        if (lock_free(lockpath))
            continue;                       /* not inside a set right now */
        assert_int_equal(kill(writer, SIGSTOP), 0);
        assert_int_equal(waitpid(writer, &ws, WUNTRACED), writer);
        if (!(caught = !lock_free(lockpath))) {
            assert_int_equal(kill(writer, SIGCONT), 0);
            assert_int_equal(waitpid(writer, &ws, WCONTINUED), writer);
        }
    }
    kill(writer, SIGKILL);
    assert_int_equal(waitpid(writer, &ws, 0), writer);
    if (!caught)
        fail_msg("never caught the writer holding the lock");
    dirty = dirty_flag(lockpath);
    print_message("      killed holding the lock, %s a change\n", dirty ? "inside" : "outside");

    assert_value(r, "kept", "from before");     /* not CACHET_ETIMEDOUT: taken over */
    rep = get_report(r);
    assert_int_equal(rep.holders_died, 1);
    assert_int_equal(rep.recoveries, dirty ? 1 : 0);
    assert_int_equal(rep.buckets_lost, 0);
    for (int k = 0; k < 300; k++) {
        void *v;
        size_t n;
        unsigned i;
        cachet_status st;
        snprintf(key, sizeof key, "w%d", k);
        if ((st = cachet_get(r, key, &v, &n)) == CACHET_MISS)
            continue;
        assert_int_equal(st, CACHET_OK);
        char *colon = memchr(v, ':', n);
        if (!colon || sscanf(v, "value %u:", &i) != 1 || i % 300 != (unsigned)k ||
            n - (size_t)(colon + 1 - (char *)v) != i % 500)
            fail_msg("%s: not a value the writer wrote whole: %.*s", key, (int)(n < 40 ? n : 40),
                     (char *)v);
        cachet_free(v);
    }
    assert_int_equal(cachet_set(r, "mine", "x", 1), CACHET_OK);
    assert_value(r, "mine", "x");
    cachet_region_close(r);
    alarm(0);
}

/* The header of lock file version 1 (cachet before the mutex): 24 bytes. */
static void write_v1_header(const char *lockpath, uint32_t version, uint32_t dirty, uint64_t gen)
{
    unsigned char h[24];
    int fd = open(lockpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    memcpy(h, "cachetdb", 8);
    memcpy(h + 8, &version, 4);
    memcpy(h + 12, &dirty, 4);
    memcpy(h + 16, &gen, 8);
    assert_int_equal(pwrite(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
}

static uint32_t lock_version(const char *lockpath)
{
    uint32_t v = 0;
    int fd = open(lockpath, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &v, sizeof v, LOCK_VERSION_OFFSET), sizeof v);
    close(fd);
    return v;
}

/* A lock file of version 1 is upgraded in place, keeping what it owed (a
 * writer of version 1 died in a change: the file is recovered); one of a
 * later version is refused, naming it. */
static void lock_file_layouts(void **state)
{
    char dir[128], path[160], lockpath[192];
    cachet_region *r;
    dbm_report rep;

    db_paths("layout.db", dir, path, lockpath);
    r = open_db(path);
    assert_int_equal(cachet_set(r, "k", "v1 era", 6), CACHET_OK);
    cachet_region_close(r);

    write_v1_header(lockpath, 1, 1, 7);
    r = open_db(path);
    assert_value(r, "k", "v1 era");
    rep = get_report(r);
    assert_int_equal(rep.recoveries, 1);
    assert_int_equal(rep.keys_lost, 0);
    assert_int_equal(lock_version(lockpath), 2);
    assert_true(file_size(lockpath) >= (off_t)LOCK_PAGE_SIZE);
    assert_int_equal(dirty_flag(lockpath), 0);
    assert_int_equal(cachet_set(r, "k", "v2 era", 6), CACHET_OK);
    cachet_region_close(r);

    write_v1_header(lockpath, 3, 0, 1);
    assert_int_equal(try_open(&r, path, NULL, NULL), CACHET_EBACKEND);
    assert_contains(cachet_errmsg(), lockpath);
    assert_contains(cachet_errmsg(), "newer cachet");
}

/* Processes of version 1 take the lock file's flock exclusively for every
 * write.  While a version-2 process has the file open, its shared flock
 * keeps them out (their write would time out, changing nothing); while
 * one holds it (in the middle of its write), a version-2 open waits for
 * it, bounded by lock_wait, and names the file. */
static void old_writers_are_fenced_off(void **state)
{
    char dir[128], path[160], lockpath[192];
    cachet_region *r, *r2;
    double t0;
    pid_t holder;
    int fd;

    alarm(120);
    db_paths("fence.db", dir, path, lockpath);
    r = open_db(path);
    assert_int_equal(cachet_set(r, "k", "v", 1), CACHET_OK);
    assert_true((fd = open(lockpath, O_RDWR | O_CLOEXEC)) >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1);
    assert_int_equal(errno, EWOULDBLOCK);
    cachet_region_close(r);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);   /* nobody has it open now */
    close(fd);

    holder = hold_flock(lockpath);                       /* a version-1 writer, mid-write */
    t0 = now();
    assert_timed_out("open beside a version-1 writer",
                     try_open(&r2, path, NULL, "lock_wait:" LOCK_WAIT, NULL), t0, lockpath);
    kill_and_reap(holder);
    r = open_db(path);
    assert_value(r, "k", "v");
    cachet_region_close(r);
    alarm(0);
}

/* Processes that create the lock file at the same moment set its mutex up
 * once: every one of them opens, writes, and every write is there. */
static void processes_create_the_lock_file_at_once(void **state)
{
    enum { ROUNDS = 10, NCREATORS = 4 };
    char dir[128], path[160], lockpath[192], key[32];
    cachet_region *r;

    alarm(120);
    newdir(dir, sizeof dir);
    for (int round = 0; round < ROUNDS; round++) {
        int go[2];
        pid_t pid[NCREATORS];
        char b;
        snprintf(path, sizeof path, "%s/at-once-%d.db", dir, round);
        assert_int_equal(pipe(go), 0);
        for (int p = 0; p < NCREATORS; p++) {
            if ((pid[p] = fork()) == 0) {
                cachet_region *w;
                close(go[1]);
                if (read(go[0], &b, 1) != 0)
                    _exit(1);
                snprintf(key, sizeof key, "p%d", p);
                if (try_open(&w, path, NULL, "lock_wait:10", NULL) != CACHET_OK ||
                    cachet_set(w, key, "here", 4) != CACHET_OK)
                    CHILD_FAIL("child %d: %s", p, cachet_errmsg());
                cachet_region_close(w);
                _exit(0);
            }
            assert_true(pid[p] > 0);
        }
        close(go[0]);
        close(go[1]);                           /* all of them at once */
        for (int p = 0; p < NCREATORS; p++)
            assert_int_equal(wait_child(pid[p]), 0);
        r = open_db(path);
        for (int p = 0; p < NCREATORS; p++) {
            snprintf(key, sizeof key, "p%d", p);
            assert_value(r, key, "here");
        }
        snprintf(lockpath, sizeof lockpath, "%s.rw.lock", path);
        assert_int_equal(lock_version(lockpath), 2);
        assert_int_equal(get_report(r).holders_died, 0);
        cachet_region_close(r);
    }
    alarm(0);
}


/* A process that can only read the lock file cannot take its mutex: its
 * reads are checked against the generation and the dirty flag instead (and
 * see what other processes wrote), its writes fail naming the lock file,
 * and a writer inside a change makes its reads wait, bounded by lock_wait.
 * Needs root, to be another user. */
static void read_only_lock_file(void **state)
{
    char dir[128], path[160], lockpath[192], b;
    int p2c[2], c2p[2];
    cachet_region *r;
    pid_t pid;

    if (geteuid() != 0)
        skip();
    alarm(120);
    db_paths("ro.db", dir, path, lockpath);
    r = open_db(path);
    assert_int_equal(cachet_set(r, "k", "one", 3), CACHET_OK);
    assert_int_equal(chmod(topdir, 0711), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(chmod(lockpath, 0644), 0);
    assert_int_equal(pipe(p2c), 0);
    assert_int_equal(pipe(c2p), 0);
    if ((pid = fork()) == 0) {
        cachet_region *ro;
        void *v;
        size_t n;
        cachet_status st;
        close(p2c[1]);
        close(c2p[0]);
        if (setgid(65534) != 0 || setuid(65534) != 0)
            CHILD_FAIL("reader: cannot become nobody: %s", strerror(errno));
        if (try_open(&ro, path, NULL, "lock_wait:" LOCK_WAIT, NULL) != CACHET_OK)
            CHILD_FAIL("reader: open: %s", cachet_errmsg());
        if (cachet_get(ro, "k", &v, &n) != CACHET_OK || n != 3 || memcmp(v, "one", 3) != 0)
            CHILD_FAIL("reader: first get: %s", cachet_errmsg());
        cachet_free(v);
        if ((st = cachet_set(ro, "k", "mine", 4)) == CACHET_OK || !strstr(cachet_errmsg(), lockpath) ||
            !strstr(cachet_errmsg(), "read-only"))
            CHILD_FAIL("reader: set: %s (%s)", cachet_strerror(st), cachet_errmsg());
        if (write(c2p[1], "1", 1) != 1 || read(p2c[0], &b, 1) != 1)   /* the parent writes */
            _exit(1);
        if (cachet_get(ro, "k", &v, &n) != CACHET_OK || n != 3 || memcmp(v, "two", 3) != 0)
            CHILD_FAIL("reader: get after the parent's set: %s", cachet_errmsg());
        cachet_free(v);
        if (write(c2p[1], "2", 1) != 1 || read(p2c[0], &b, 1) != 1)   /* a change under way */
            _exit(1);
        if ((st = cachet_get(ro, "k", &v, &n)) != CACHET_ETIMEDOUT ||
            !strstr(cachet_errmsg(), lockpath))
            CHILD_FAIL("reader: get during a change: %s (%s)", cachet_strerror(st),
                       cachet_errmsg());
        cachet_region_close(ro);
        _exit(0);
    }
    assert_true(pid > 0);
    close(p2c[0]);
    close(c2p[1]);
    assert_int_equal(read(c2p[0], &b, 1), 1);
    assert_int_equal(cachet_set(r, "k", "two", 3), CACHET_OK);
    assert_int_equal(write(p2c[1], "g", 1), 1);
    assert_int_equal(read(c2p[0], &b, 1), 1);
    set_dirty_flag(lockpath, 1);
    assert_int_equal(write(p2c[1], "g", 1), 1);
    assert_int_equal(wait_child(pid), 0);
    set_dirty_flag(lockpath, 0);
    close(p2c[1]);
    close(c2p[0]);
    assert_int_equal(chmod(topdir, 0700), 0);
    assert_value(r, "k", "two");
    cachet_region_close(r);
    alarm(0);
}

/* get_or_create's per-key lock held by a creator that is stopped: the other
 * process polls it at most lock_wait, then creates the value itself. */
static cachet_status hanging_creator(void *arg, const char *key, void **value, size_t *len)
{
    int fd = *(int *)arg;
    (void)key;
    (void)value;
    (void)len;
    if (write(fd, "c", 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

static cachet_status quick_creator(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg;
    (void)key;
    *value = strdup("made here");
    *len = strlen("made here");
    return *value ? CACHET_OK : CACHET_ENOMEM;
}

static void get_or_create_lock_held_by_a_stopped_creator(void **state)
{
    char dir[128], path[160];
    cachet_region *r;
    int inside[2];
    void *v;
    size_t n;
    char b;
    double t0, took;
    pid_t creator;

    snprintf(path, sizeof path, "%s/goc.db", newdir(dir, sizeof dir));
    assert_int_equal(try_open(&r, path, NULL, "lock_wait:" LOCK_WAIT, NULL), CACHET_OK);
    assert_int_equal(pipe(inside), 0);
    if ((creator = fork()) == 0) {
        cachet_region *c;
        close(inside[0]);
        if (try_open(&c, path, NULL, NULL) != CACHET_OK)
            CHILD_FAIL("creator: open: %s", cachet_errmsg());
        cachet_get_or_create(c, "the-key", hanging_creator, &inside[1], &v, &n);
        _exit(1);
    }
    assert_true(creator > 0);
    close(inside[1]);
    assert_int_equal(read(inside[0], &b, 1), 1);   /* it holds the key's lock */
    close(inside[0]);
    assert_int_equal(kill(creator, SIGSTOP), 0);

    alarm(60);                          /* a regression fails instead of hanging */
    t0 = now();
    assert_int_equal(cachet_get_or_create(r, "the-key", quick_creator, NULL, &v, &n), CACHET_OK);
    took = now() - t0;
    alarm(0);
    assert_int_equal(n, strlen("made here"));
    assert_memory_equal(v, "made here", n);
    cachet_free(v);
    if (took < LOCK_WAIT_S * 0.9 || took > LOCK_WAIT_S + SLACK_S)
        fail_msg("get_or_create took %.3f s with lock_wait " LOCK_WAIT " s", took);
    /* the next call finds the value: no wait */
    assert_value(r, "the-key", "made here");
    kill_and_reap(creator);
    cachet_region_close(r);
}

static void *thread_main(void *p)
{
    thread_arg *a = p;
    char key[32], val[64];
    for (int i = 0; i < 2000; i++) {
        int k = i % 50;
        snprintf(key, sizeof key, "t%d-%d", a->t, k);
        snprintf(val, sizeof val, "t%d-%d-%d", a->t, k, i);
        if (cachet_set(a->r, key, val, strlen(val)) != CACHET_OK)
            a->failures++;
        void *v;
        size_t n;
        if (cachet_get(a->r, key, &v, &n) != CACHET_OK || n != strlen(val) ||
            memcmp(v, val, n) != 0)
            a->failures++;
        else
            cachet_free(v);
        if (i % 10 == 0)
            cachet_delete(a->r, key);
    }
    return NULL;
}

static void threads_share_a_region(void **state)
{
    char dir[128], path[160];
    pthread_t th[4];
    thread_arg args[4];
    cachet_region *r;

    snprintf(path, sizeof path, "%s/threads.db", newdir(dir, sizeof dir));
    r = open_db(path);
    for (int t = 0; t < 4; t++) {
        args[t] = (thread_arg){r, t, 0};
        assert_int_equal(pthread_create(&th[t], NULL, thread_main, &args[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].failures, 0);
    }
    cachet_region_close(r);
}

static void region_survives_fork(void **state)
{
    char dir[128], path[160];
    cachet_region *r;
    pid_t pid;

    snprintf(path, sizeof path, "%s/fork.db", newdir(dir, sizeof dir));
    r = open_db(path);
    assert_int_equal(cachet_set(r, "before", "parent", 6), CACHET_OK);
    if ((pid = fork()) == 0) {
        void *v;
        size_t n;
        if (cachet_get(r, "before", &v, &n) != CACHET_OK || n != 6 || memcmp(v, "parent", 6))
            CHILD_FAIL("fork child: get: %s", cachet_errmsg());
        cachet_free(v);
        if (cachet_set(r, "after", "child", 5) != CACHET_OK)
            CHILD_FAIL("fork child: set: %s", cachet_errmsg());
        _exit(0);
    }
    assert_true(pid > 0);
    assert_int_equal(wait_child(pid), 0);
    assert_value(r, "after", "child");       /* the parent's handle sees the child's write */
    cachet_region_close(r);
}

/* ---- reads without the lock (dbm_read_unlocked) ---- */

/* A get that skips the flock because the generation is unchanged must
 * still see every write another process completed before it: each round
 * the child overwrites, adds and deletes, the parent reads right after. */
static void another_process_write_is_seen(void **state)
{
    char dir[128], path[160], key[32], want[64];
    int go[2], done[2];
    cachet_region *r;
    pid_t pid;
    char b;

    snprintf(path, sizeof path, "%s/seen.db", newdir(dir, sizeof dir));
    r = open_db(path);
    assert_int_equal(cachet_set(r, "k", "parent", 6), CACHET_OK);
    assert_value(r, "k", "parent");             /* the handle is current: reads skip the lock */
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    if ((pid = fork()) == 0) {
        cachet_region *w;
        close(go[1]);
        close(done[0]);
        if (try_open(&w, path, NULL, NULL) != CACHET_OK)
            CHILD_FAIL("writer: open: %s", cachet_errmsg());
        for (int i = 0; read(go[0], &b, 1) == 1; i++) {
            snprintf(want, sizeof want, "child %d", i);
            snprintf(key, sizeof key, "new%d", i);
            if (cachet_set(w, "k", want, strlen(want)) != CACHET_OK ||
                cachet_set(w, key, want, strlen(want)) != CACHET_OK ||
                (i > 0 && (snprintf(key, sizeof key, "new%d", i - 1),
                           cachet_delete(w, key) != CACHET_OK)))
                CHILD_FAIL("writer: %s", cachet_errmsg());
            if (write(done[1], "d", 1) != 1)
                _exit(1);
        }
        cachet_region_close(w);
        _exit(0);
    }
    assert_true(pid > 0);
    close(go[0]);
    close(done[1]);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(write(go[1], "g", 1), 1);
        assert_int_equal(read(done[0], &b, 1), 1);
        snprintf(want, sizeof want, "child %d", i);
        assert_value(r, "k", want);
        snprintf(key, sizeof key, "new%d", i);
        assert_value(r, key, want);
        if (i > 0) {
            snprintf(key, sizeof key, "new%d", i - 1);
            assert_miss(r, key);
        }
    }
    close(go[1]);
    assert_int_equal(wait_child(pid), 0);
    close(done[0]);
    cachet_region_close(r);
}

/* Reads racing a writer of another process: a read that overlapped a
 * change is thrown away and done again under the lock, so every value
 * read is one the writer wrote whole, never a torn or mixed one. */
static void reads_racing_a_writer_are_whole(void **state)
{
    char dir[128], path[160], key[32];
    cachet_region *r;
    long reads = 0;
    double end;
    pid_t pid;

    snprintf(path, sizeof path, "%s/race.db", newdir(dir, sizeof dir));
    r = open_db(path);
    for (int k = 0; k < 50; k++) {
        snprintf(key, sizeof key, "r%d", k);
        assert_int_equal(cachet_set(r, key, "0:", 2), CACHET_OK);
    }
    if ((pid = fork()) == 0) {
        cachet_region *w;
        char val[600];
        double stop = now() + 2.0;
        if (try_open(&w, path, NULL, NULL) != CACHET_OK)
            CHILD_FAIL("writer: open: %s", cachet_errmsg());
        for (unsigned i = 1; now() < stop; i++) {
            /* "i:" then i % 500 copies of the letter for i: lengths vary,
             * so buckets split and values move */
            int n = snprintf(val, sizeof val, "%u:", i);
            memset(val + n, 'a' + (char)(i % 26), i % 500);
            snprintf(key, sizeof key, "r%u", i % 50);
            if (cachet_set(w, key, val, (size_t)n + i % 500) != CACHET_OK)
                CHILD_FAIL("writer: set: %s", cachet_errmsg());
        }
        cachet_region_close(w);
        _exit(0);
    }
    assert_true(pid > 0);
    end = now() + 2.0;
    while (now() < end) {
        for (int k = 0; k < 50; k++) {
            void *v;
            size_t n;
            unsigned i;
            char *colon;
            snprintf(key, sizeof key, "r%d", k);
            assert_int_equal(cachet_get(r, key, &v, &n), CACHET_OK);
            reads++;
            colon = memchr(v, ':', n);
            if (!colon || sscanf(v, "%u:", &i) != 1)
                fail_msg("%s: not a value the writer wrote: %.*s", key, (int)n, (char *)v);
            if (i > 0) {
                size_t tail = n - (size_t)(colon + 1 - (char *)v);
                if (tail != i % 500 || i % 50 != (unsigned)k)
                    fail_msg("%s: torn value (i %u, %zu letters)", key, i, tail);
                for (size_t j = 0; j < tail; j++)
                    if (colon[1 + j] != 'a' + (char)(i % 26))
                        fail_msg("%s: mixed value (i %u, byte %zu)", key, i, j);
            }
            cachet_free(v);
        }
    }
    assert_int_equal(wait_child(pid), 0);
    assert_true(reads > 0);
    cachet_region_close(r);
}

int main(int argc, char **argv)
{
    (void)argc;
    th_tsan_allow_threads_after_fork(argv);   /* forks with two regions open */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(another_process_write_is_seen),
        cmocka_unit_test(reads_racing_a_writer_are_whole),
        cmocka_unit_test(multi_ops_persist_in_the_file),
        cmocka_unit_test(lockfiles_off_and_custom),
        cmocka_unit_test(missing_filename_and_unknown_argument),
        cmocka_unit_test(unwritable_directory),
        cmocka_unit_test(garbage_file),
        cmocka_unit_test(truncated_file),
        cmocka_unit_test(compact_removes_expired),
        cmocka_unit_test(four_processes_mixed),
        cmocka_unit_test(get_or_create_across_processes),
        cmocka_unit_test(dogpile_lockfile_off),
        cmocka_unit_test(killed_writers_lose_nothing_completed),
        cmocka_unit_test(writer_killed_in_a_bucket_split),
        cmocka_unit_test(lock_wait_bounds_a_held_lock),
        cmocka_unit_test(lock_wait_is_per_call_across_threads),
        cmocka_unit_test(lock_wait_zero_and_gdbm_locks),
        cmocka_unit_test(lock_wait_argument),
        cmocka_unit_test(lock_file_not_regular),
        cmocka_unit_test(writer_stopped_mid_set),
        cmocka_unit_test(lock_holder_dies),
        cmocka_unit_test(writer_killed_holding_the_lock),
        cmocka_unit_test(lock_file_layouts),
        cmocka_unit_test(old_writers_are_fenced_off),
        cmocka_unit_test(processes_create_the_lock_file_at_once),
        cmocka_unit_test(read_only_lock_file),
        cmocka_unit_test(get_or_create_lock_held_by_a_stopped_creator),
        cmocka_unit_test(threads_share_a_region),
        cmocka_unit_test(region_survives_fork),
    };
    if (getenv("CACHET_TEST_FILTER"))   /* e.g. "killed_*": run only those */
        cmocka_set_test_filter(getenv("CACHET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
