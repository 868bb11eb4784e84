/* What every region suite repeats: open a region from option pairs, expect
 * an open to fail, assert a hit or a miss, read counters, poll a condition
 * against a deadline (never a fixed sleep: the machine may be loaded), and a
 * monotonic clock.  Include after <cmocka.h>. */
#ifndef CACHET_TEST_HELPERS_H
#define CACHET_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <cachet/cachet.h>
#include <cachet/backend.h>

/* Plugins that only the tests load, by absolute path in the build tree. */
#define TEST_PLUGIN_PATH(name) TEST_BUILDDIR "/tests/plugins/.libs/" name ".so"

/* Opens a region on backend with enabled=true and then the option pairs
 * (name, value, ..., NULL; opts may be NULL).  Fails the test, with
 * cachet_errmsg(), if any option is refused or the open fails. */
cachet_region *th_open(const char *backend, const char *const *opts);
/* The same, for an open that should fail: returns its status (a region
 * that opened after all is closed and CACHET_OK returned).  An option that
 * is refused when set returns that status. */
cachet_status th_open_status(const char *backend, const char *const *opts);

/* The backend plugin name (backends/.libs/<name>.so in the build tree),
 * dlopen()ed as the loader does and left loaded: its vtable, for suites
 * that drive a plugin directly.  Fails the test if it does not load. */
const cachet_backend_ops *th_backend_plugin(const char *name);

/* A raw client for a server's own protocol, under the region's back: a TCP
 * connection to 127.0.0.1:port with 10 s send and receive timeouts; all of
 * n bytes sent; bytes read into buf until they end with term (at most
 * size - 1, NUL-ended), their count.  Each fails the test otherwise. */
int    th_connect(int port);
void   th_send_all(int fd, const void *p, size_t n);
size_t th_recv_until(int fd, char *buf, size_t size, const char *term);

/* One body over a table of targets, each its own named test: TH_ON(ops,
 * redis) is the cmocka test "ops_redis", which runs ops with *state ==
 * &redis (a static object of the suite's own target type), so that a
 * failure says which target.  For suites without a group setup that sets a
 * state (cmocka hands a test the group's state over its own). */
#define TH_ON(body, target) { #body "_" #target, (body), NULL, NULL, (void *)&(target) }

/* A hit with exactly these bytes / a miss.  Report the caller's line. */
#define th_assert_hit(r, key, want, wlen) th_assert_hit_at((r), (key), (want), (wlen), __FILE__, __LINE__)
#define th_assert_miss(r, key) th_assert_miss_at((r), (key), __FILE__, __LINE__)
void th_assert_hit_at(cachet_region *r, const char *key, const void *want, size_t wlen,
                      const char *file, int line);
void th_assert_miss_at(cachet_region *r, const char *key, const char *file, int line);

void th_assert_contains(const char *hay, const char *needle);

/* The region's counters now (fails the test if cachet_stats does). */
cachet_stat_counters th_stats(cachet_region *r);

/* Seconds on CLOCK_MONOTONIC. */
double th_now_s(void);
/* Polls cond(arg) every millisecond or so until it is true (returns 1) or
 * seconds have passed (returns 0).  Give generous deadlines: they bound a
 * failure's wait, not a success's. */
int th_wait_until(int (*cond)(void *arg), void *arg, double seconds);

/* A fake clock for the region (src/testhooks.h): th_clock_fake() starts it
 * at the real time now, th_clock_advance() moves it on, th_clock_real()
 * gives the region the real clock back. */
void th_clock_fake(void);
void th_clock_advance(double seconds);
void th_clock_real(void);
/* A cmocka teardown that gives the real clock back, should the test have
 * failed with the fake one set. */
int th_clock_teardown(void **state);

/* ThreadSanitizer refuses new threads in the child of a multi-threaded
 * fork unless TSAN_OPTIONS says die_after_fork=0; suites whose children
 * start threads (background probes, refresh threads: what they test) call
 * this first in main: under TSan the program runs itself again with it set
 * (race detection in such a child is best-effort).  It also turns off
 * TSan's lock-order detector, which cannot count past 64 mutexes held at
 * once: the fork handlers hold every keylock stripe (32) of every open
 * region, and suites that fork with two regions open pass that.  Data-race
 * detection stays on.  No-op otherwise. */
void th_tsan_allow_threads_after_fork(char **argv);

#endif
