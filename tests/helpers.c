/* The shared test helpers (tests/helpers.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include "helpers.h"
#include "testhooks.h"

static cachet_status configure(cachet_config *c, const char *backend, const char *const *opts)
{
    cachet_status st;
    if ((st = cachet_config_set(c, "enabled", "true")) != CACHET_OK ||
        (st = cachet_config_set(c, "backend", backend)) != CACHET_OK)
        return st;
    for (; opts && opts[0]; opts += 2)
        if ((st = cachet_config_set(c, opts[0], opts[1])) != CACHET_OK)
            return st;
    return CACHET_OK;
}

cachet_region *th_open(const char *backend, const char *const *opts)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    assert_non_null(c);
    if (configure(c, backend, opts) != CACHET_OK)
        fail_msg("configure %s: %s", backend, cachet_errmsg());
    if (cachet_region_open(c, &r) != CACHET_OK)
        fail_msg("open %s: %s", backend, cachet_errmsg());
    cachet_config_free(c);
    return r;
}

cachet_status th_open_status(const char *backend, const char *const *opts)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r = NULL;
    cachet_status st;
    assert_non_null(c);
    st = configure(c, backend, opts);
    if (st == CACHET_OK)
        st = cachet_region_open(c, &r);
    cachet_region_close(r);
    cachet_config_free(c);
    return st;
}

const cachet_backend_ops *th_backend_plugin(const char *name)
{
    char path[4096];
    void *h;
    cachet_backend_entry_fn entry;
    snprintf(path, sizeof path, TEST_BUILDDIR "/backends/.libs/%s.so", name);
    if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
        fail_msg("dlopen %s: %s", path, dlerror());
    *(void **)&entry = dlsym(h, CACHET_BACKEND_ENTRY_SYMBOL);
    assert_non_null(entry);
    return entry();
}

int th_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {10, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("raw client: connect to 127.0.0.1:%d failed", port);
    return fd;
}

void th_send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

size_t th_recv_until(int fd, char *buf, size_t size, const char *term)
{
    size_t n = 0, tl = strlen(term);
    while (n < tl || memcmp(buf + n - tl, term, tl) != 0) {
        ssize_t got;
        assert_true(n + 1 < size);
        got = recv(fd, buf + n, size - 1 - n, 0);
        if (got <= 0)
            fail_msg("raw client: connection closed or timed out before \"%s\"", term);
        n += (size_t)got;
    }
    buf[n] = '\0';
    return n;
}

void th_assert_hit_at(cachet_region *r, const char *key, const void *want, size_t wlen,
                      const char *file, int line)
{
    void *v = NULL;
    size_t n = 0;
    cachet_status st = cachet_get(r, key, &v, &n);
    if (st != CACHET_OK)
        fail_msg("%s:%d: get %.40s: %s (%s), want a hit", file, line, key, cachet_strerror(st),
                 st == CACHET_MISS ? "" : cachet_errmsg());
    if (n != wlen || (wlen && memcmp(v, want, wlen) != 0)) {
        cachet_free(v);
        fail_msg("%s:%d: get %.40s: %zu bytes, not the %zu bytes set", file, line, key, n, wlen);
    }
    if (((const char *)v)[n] != '\0') {
        cachet_free(v);
        fail_msg("%s:%d: get %.40s: no NUL after the value", file, line, key);
    }
    cachet_free(v);
}

void th_assert_miss_at(cachet_region *r, const char *key, const char *file, int line)
{
    void *v = NULL;
    size_t n = 0;
    cachet_status st = cachet_get(r, key, &v, &n);
    if (st == CACHET_OK)
        cachet_free(v);
    if (st != CACHET_MISS)
        fail_msg("%s:%d: get %.40s: %s (%s), want a miss", file, line, key, cachet_strerror(st),
                 st == CACHET_OK ? "" : cachet_errmsg());
}

void th_assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

cachet_stat_counters th_stats(cachet_region *r)
{
    cachet_stat_counters s;
    memset(&s, 0, sizeof s);
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    return s;
}

double th_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int th_wait_until(int (*cond)(void *arg), void *arg, double seconds)
{
    struct timespec ms = {0, 1000000};
    double t0 = th_now_s();
    for (;;) {
        if (cond(arg))
            return 1;
        if (th_now_s() - t0 > seconds)
            return cond(arg);
        nanosleep(&ms, NULL);
    }
}

/* ---- the fake clock ---- */
static _Atomic int64_t fake_ns;

static int64_t fake_now(void)
{
    return atomic_load(&fake_ns);
}

void th_clock_fake(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store(&fake_ns, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
    cachet__clock_set(fake_now);
}

void th_clock_advance(double seconds)
{
    atomic_fetch_add(&fake_ns, (int64_t)(seconds * 1e9));
}

void th_clock_real(void)
{
    cachet__clock_set(NULL);
}

int th_clock_teardown(void **state)
{
    (void)state;
    th_clock_real();
    return 0;
}

void th_tsan_allow_threads_after_fork(char **argv)
{
#if defined(__SANITIZE_THREAD__)
    const char *old = getenv("TSAN_OPTIONS");
    char opts[1024];
    if (getenv("CACHET_TEST_TSAN_REEXEC"))
        return;
    snprintf(opts, sizeof opts, "%s%sdie_after_fork=0 detect_deadlocks=0", old ? old : "",
             old ? " " : "");
    setenv("TSAN_OPTIONS", opts, 1);
    setenv("CACHET_TEST_TSAN_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
#else
    (void)argv;
#endif
}
