/* The [cache] section: seed configs users paste, every oslo.cache option,
 * and the errors for what is wrong (naming file, line and option). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cachet/cachet.h>

#define CONF(name) TEST_SRCDIR "/tests/configs/" name

static cachet_config *load(const char *path)
{
    cachet_config *c = cachet_config_new();
    assert_non_null(c);
    cachet_status st = cachet_config_load(c, path, NULL);
    if (st != CACHET_OK)
        fail_msg("loading %s: %s", path, cachet_errmsg());
    return c;
}

static cachet_config *parse(const char *text, cachet_status expect)
{
    cachet_config *c = cachet_config_new();
    assert_non_null(c);
    assert_int_equal(cachet_config_parse(c, text, NULL), expect);
    return c;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay, needle);
}

static void keystone_memcached(void **state)
{
    cachet_config *c = load(CONF("keystone.conf"));
    assert_string_equal(cachet_config_backend(c), "memcached");
    assert_string_equal(cachet_config_backend_arg(c, "url"), "127.0.0.1:11211");
    assert_string_equal(cachet_config_backend_arg(c, "dead_retry"), "30");
    assert_string_equal(cachet_config_backend_arg(c, "socket_timeout"), "0.5");
    assert_null(cachet_config_backend_arg(c, "pool_maxsize"));   /* not a pool */
    cachet_config_free(c);
}

static void nova_memcache_pool(void **state)
{
    cachet_config *c = load(CONF("nova.conf"));
    assert_string_equal(cachet_config_backend(c), "memcache_pool");
    assert_string_equal(cachet_config_backend_arg(c, "url"),
                        "127.0.0.1:11211,127.0.0.2:11211,[::1]:11211");
    assert_string_equal(cachet_config_backend_arg(c, "pool_maxsize"), "20");
    assert_string_equal(cachet_config_backend_arg(c, "pool_flush_on_reconnect"), "true");
    assert_string_equal(cachet_config_backend_arg(c, "pool_connection_get_timeout"), "10");
    assert_string_equal(cachet_config_backend_arg(c, "dead_retry"), "300");
    cachet_config_free(c);
}

static void redis_url(void **state)
{
    cachet_config *c = load(CONF("redis.conf"));
    assert_string_equal(cachet_config_backend(c), "redis");
    assert_string_equal(cachet_config_backend_arg(c, "url"), "redis://127.0.0.1:6379/2");
    assert_string_equal(cachet_config_backend_arg(c, "distributed_lock"), "true");
    assert_null(cachet_config_backend_arg(c, "dead_retry"));    /* memcache options stay out */
    cachet_config_free(c);
}

static void redis_from_options(void **state)
{
    cachet_config *c = parse("[cache]\nenabled = true\nbackend = redis\n"
                             "redis_server = 127.0.0.1:7000\nredis_db = 3\n"
                             "redis_password = s3cret\n", CACHET_OK);
    /* the backend builds its connection from them (no url made in the core) */
    assert_null(cachet_config_backend_arg(c, "url"));
    assert_string_equal(cachet_config_backend_arg(c, "server"), "127.0.0.1:7000");
    assert_string_equal(cachet_config_backend_arg(c, "db"), "3");
    assert_string_equal(cachet_config_backend_arg(c, "password"), "s3cret");
    cachet_config_free(c);
    /* a url given as backend_argument says it all: the redis_* options stay out */
    c = parse("[cache]\nenabled = true\nbackend = redis\nbackend_argument = url:redis://h:1/0\n"
              "redis_server = 127.0.0.1:7000\nredis_db = 3\nredis_password = s3cret\n", CACHET_OK);
    assert_null(cachet_config_backend_arg(c, "server"));
    assert_null(cachet_config_backend_arg(c, "db"));
    assert_null(cachet_config_backend_arg(c, "password"));
    cachet_config_free(c);
}

static void every_oslo_option_loads(void **state)
{
    cachet_config *c = load(CONF("oslo-cache-3.2-all-options.conf"));
    assert_string_equal(cachet_config_backend(c), "null");    /* enabled = false */
    cachet_config_free(c);
    c = load(CONF("oslo-cache-newer-options.conf"));
    assert_string_equal(cachet_config_backend(c), "null");
    cachet_config_free(c);
}

static void enabled_false_means_null(void **state)
{
    cachet_config *c = parse("[cache]\nbackend = dogpile.cache.memory\n"
                             "backend_argument = max_count:5\n", CACHET_OK);
    cachet_region *r;
    assert_string_equal(cachet_config_backend(c), "null");
    assert_null(cachet_config_backend_arg(c, "max_count"));     /* null takes none */
    assert_int_equal(cachet_region_open(c, &r), CACHET_OK);
    cachet_region_close(r);
    assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memory");
    assert_string_equal(cachet_config_backend_arg(c, "max_count"), "5");
    cachet_config_free(c);
}

static void backend_spellings(void **state)
{
    static const char *const pairs[][2] = {
        {"memory", "memory"}, {"dogpile.cache.memory", "memory"},
        {"dogpile.cache.memory_pickle", "memory"}, {"oslo_cache.dict", "memory"},
        {"null", "null"}, {"dogpile.cache.null", "null"},
        {"dbm", "dbm"}, {"dogpile.cache.dbm", "dbm"},
        {"memcached", "memcached"}, {"dogpile.cache.memcached", "memcached"},
        {"dogpile.cache.pylibmc", "memcached"}, {"dogpile.cache.bmemcached", "memcached"},
        {"dogpile.cache.pymemcache", "memcached"},
        {"memcache_pool", "memcache_pool"}, {"oslo_cache.memcache_pool", "memcache_pool"},
        {"redis", "redis"}, {"dogpile.cache.redis", "redis"},
        {"dogpile.cache.redis_sentinel", "redis_sentinel"},
        {"dogpile.cache.redis_cluster", "redis_cluster"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        cachet_config *c = cachet_config_new();
        assert_int_equal(cachet_config_set(c, "enabled", "true"), CACHET_OK);
        assert_int_equal(cachet_config_set(c, "backend", pairs[i][0]), CACHET_OK);
        assert_string_equal(cachet_config_backend(c), pairs[i][1]);
        cachet_config_free(c);
    }
}

/* Writes text to a temporary file named like a real config. */
static char *tmpconf(const char *text)
{
    static char path[64];
    int fd;
    strcpy(path, "/tmp/cachet-test-XXXXXX.conf");
    fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void unknown_option_names_file_line_option(void **state)
{
    char *path = tmpconf("[DEFAULT]\nwhatever = 1\n[cache]\nenabled = true\nmemcache_servrs = a:1\n");
    cachet_config *c = cachet_config_new();
    assert_int_equal(cachet_config_load(c, path, NULL), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), path);
    assert_contains(cachet_errmsg(), ":5:");
    assert_contains(cachet_errmsg(), "memcache_servrs");
    unlink(path);
    cachet_config_free(c);
}

static void malformed_values(void **state)
{
    static const struct { const char *text, *line, *what; } bad[] = {
        {"[cache]\n\nexpiration_time = ten\n", ":3:", "expiration_time"},
        {"[cache]\nmemcache_socket_timeout = fast\n", ":2:", "memcache_socket_timeout"},
        {"[cache]\nenabled = maybe\n", ":2:", "enabled"},
        {"[cache]\nbackend_argument = nocolon\n", ":2:", "backend_argument"},
        {"[cache]\nredis_db = -1\n", ":2:", "redis_db"},
        {"[cache]\nretry_attempts = 0\n", ":2:", "retry_attempts"},
        {"[cache]\ntls_enabled = true\n", ":2:", "tls_enabled"},
        {"[cache]\nproxies = my.module.Proxy\n", ":2:", "proxies"},
        {"[cache]\nexpiration_time = 600\nbackend_expiration_time = 60\n", ":3:",
         "backend_expiration_time"},
        {"[cache]\nthis line has no equals sign\n", ":2:", "syntax"},
        /* only -1 means never; other negative durations mean nothing */
        {"[cache]\nexpiration_time = -2\n", ":2:", "expiration_time: -2 is not a number of seconds"},
        {"[cache]\n\n\nexpiration_time = -600\n", ":4:", "-1 (never expire) is the only negative"},
        {"[cache]\nexpiration_time = 99999999999\n", ":2:", "out of range [-1, 9223372036]"},
        {"[cache]\nbackend_expiration_time = -1\n", ":2:", "backend_expiration_time"},
        {"[cache]\nbackend_expiration_time = 0\n", ":2:", "backend_expiration_time"},
        {"[cache]\nmemcache_socket_timeout = -1\n", ":2:", "memcache_socket_timeout"},
        {"[cache]\nmemcache_dead_retry = -5\n", ":2:", "memcache_dead_retry"},
        {"[cache]\nmemcache_pool_maxsize = 0\n", ":2:", "memcache_pool_maxsize"},
        {"[cache]\nmemcache_pool_unused_timeout = -1\n", ":2:", "memcache_pool_unused_timeout"},
        {"[cache]\nmemcache_pool_connection_get_timeout = -1\n", ":2:",
         "memcache_pool_connection_get_timeout"},
        {"[cache]\nredis_socket_timeout = -0.5\n", ":2:", "redis_socket_timeout"},
        {"[cache]\nretry_delay = -1\n", ":2:", "retry_delay"},
        {"[cache]\nhashclient_retry_delay = -1\n", ":2:", "hashclient_retry_delay"},
        {"[cache]\ndead_timeout = -1\n", ":2:", "dead_timeout"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *path = tmpconf(bad[i].text);
        cachet_config *c = cachet_config_new();
        assert_int_equal(cachet_config_load(c, path, NULL), CACHET_EINVAL);
        assert_contains(cachet_errmsg(), path);
        assert_contains(cachet_errmsg(), bad[i].line);
        assert_contains(cachet_errmsg(), bad[i].what);
        unlink(path);
        cachet_config_free(c);
    }
}

static void negative_durations(void **state)
{
    cachet_config *c = parse("[cache]\nexpiration_time = -1\n", CACHET_OK);   /* never */
    assert_int_equal(cachet_config_set(c, "expiration_time", "0"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "expiration_time", "-2"), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), "expiration_time");
    assert_int_equal(cachet_config_set(c, "expiration_time", "-1"), CACHET_OK);
    cachet_config_free(c);
    /* over memcached's 30 days: the backend sends it as a Unix time (not
     * the core's business: it passes the seconds on) */
    c = parse("[cache]\nenabled = true\nbackend = memcached\nexpiration_time = 600\n"
              "backend_expiration_time = 3456000\n", CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "memcached_expire_time"), "3456000");
    cachet_config_free(c);
    /* redis takes any TTL */
    c = parse("[cache]\nenabled = true\nbackend = redis\nbackend_expiration_time = 31536000\n",
              CACHET_OK);
    cachet_config_free(c);
}

static void missing_file_is_named(void **state)
{
    cachet_config *c = cachet_config_new();
    assert_int_equal(cachet_config_load(c, "/nonexistent/dir/app.conf", NULL), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), "/nonexistent/dir/app.conf");
    cachet_config_free(c);
}

/* Loads path expecting CACHET_EINVAL with a message naming path and why;
 * alarm() turns a load that blocks or reads for ever into a failure. */
static void assert_refused(const char *path, const char *why)
{
    cachet_config *c = load(CONF("keystone.conf"));
    alarm(20);
    assert_int_equal(cachet_config_load(c, path, NULL), CACHET_EINVAL);
    alarm(0);
    assert_contains(cachet_errmsg(), path);
    assert_contains(cachet_errmsg(), why);
    assert_string_equal(cachet_config_backend(c), "memcached");   /* untouched */
    cachet_config_free(c);
}

static void not_a_regular_file(void **state)
{
    char dir[64], fifo[96], big[96];
    int fd;

    strcpy(dir, "/tmp/cachet-test-cfg-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/app.conf", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_refused(fifo, "is a FIFO, not a regular file");      /* no writer: open must not wait */
    assert_refused("/dev/zero", "is a character device, not a regular file");
    assert_refused(dir, "is a directory, not a regular file");
    /* a sparse 20 GB file: refused on its size, not read */
    snprintf(big, sizeof big, "%s/big.conf", dir);
    assert_true((fd = open(big, O_WRONLY | O_CREAT, 0600)) >= 0);
    assert_int_equal(write(fd, "[cache]\nenabled = true\n", 24), 24);
    assert_int_equal(ftruncate(fd, 20LL * 1000 * 1000 * 1000), 0);
    close(fd);
    assert_refused(big, "is 20 GB, over the 16 MiB a config file may be");
    /* just over the limit is over; a file of the limit itself loads */
    assert_int_equal(truncate(big, (16 << 20) + 1), 0);
    assert_refused(big, "over the 16 MiB");
    assert_int_equal(truncate(big, 16 << 20), 0);
    assert_refused(big, ":3: a NUL byte");    /* read, and the NULs after line 2 refused */
    unlink(big);
    unlink(fifo);
    rmdir(dir);
}

static void failed_load_loses_nothing(void **state)
{
    cachet_config *c = load(CONF("keystone.conf"));
    assert_int_equal(cachet_config_parse(c, "[cache]\nbackend = redis\nbogus = 1\n", NULL),
                     CACHET_EINVAL);
    assert_string_equal(cachet_config_backend(c), "memcached");
    assert_string_equal(cachet_config_backend_arg(c, "url"), "127.0.0.1:11211");
    cachet_config_free(c);
}

static void config_set_from_code(void **state)
{
    cachet_config *c = cachet_config_new();
    assert_int_equal(cachet_config_set(c, "enabled", "yes"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "backend", "oslo_cache.memcache_pool"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "memcache_servers", "10.1.1.1:11211"), CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "url"), "10.1.1.1:11211");
    /* backend_argument url wins over memcache_servers, as in oslo.cache */
    assert_int_equal(cachet_config_set(c, "backend_argument", "url:127.0.0.9:1"), CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "url"), "127.0.0.9:1");
    /* memcache_* options win over a backend_argument of the same name */
    assert_int_equal(cachet_config_set(c, "backend_argument", "dead_retry:5"), CACHET_OK);
    assert_int_equal(cachet_config_set(c, "memcache_dead_retry", "7"), CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "dead_retry"), "7");
    assert_int_equal(cachet_config_set(c, "no_such_option", "1"), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), "no_such_option");
    assert_int_equal(cachet_config_set(c, "memcache_pool_maxsize", "lots"), CACHET_EINVAL);
    assert_contains(cachet_errmsg(), "memcache_pool_maxsize");
    cachet_config_free(c);
}

static void empty_values_mean_unset(void **state)
{
    cachet_config *c = parse("[cache]\nenabled = true\nbackend = memory\n"
                             "backend_argument =\nproxies =\nexpiration_time =\n", CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memory");
    assert_false(cachet_config_backend_arg_at(c, 0, NULL, NULL));   /* no arguments at all */
    cachet_config_free(c);
}

static void other_sections_and_custom_section(void **state)
{
    cachet_config *c = parse("[DEFAULT]\nanything = goes\n[cache]\nenabled = true\nbackend = memory\n"
                             "[database]\nconnection = sqlite://\n", CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memory");
    cachet_config_free(c);
    c = cachet_config_new();
    assert_int_equal(cachet_config_parse(c, "[cache]\nenabled = true\nbackend = redis\n"
                                            "[mycache]\nenabled = true\nbackend = memory\n",
                                         "mycache"), CACHET_OK);
    assert_string_equal(cachet_config_backend(c), "memory");
    cachet_config_free(c);
}

static void long_lines_and_semicolons(void **state)
{
    size_t n = 400, len = 128 + n * 20;
    char *text = malloc(len), *servers = malloc(n * 20);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += (size_t)sprintf(servers + pos, "%s10.0.%zu.%zu:11211", i ? "," : "", i / 250, i % 250);
    snprintf(text, len, "[cache]\nenabled = true\nbackend = memcached\nmemcache_servers = %s\n", servers);
    cachet_config *c = parse(text, CACHET_OK);
    assert_true(strlen(servers) > 5000);
    assert_string_equal(cachet_config_backend_arg(c, "url"), servers);
    cachet_config_free(c);
    free(text);
    free(servers);
    /* oslo.config has no inline comments: ';' and '#' inside a value are data */
    c = parse("[cache]\nenabled = true\nbackend = memcached\nmemcache_sasl_enabled = true\n"
              "memcache_password = a;b #c\n", CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "password"), "a;b #c");
    cachet_config_free(c);
}

static void continuation_lines(void **state)
{
    cachet_config *c = parse("[cache]\nenabled = true\nbackend = memcached\n"
                             "memcache_servers = 127.0.0.1:1,\n  127.0.0.1:2\n", CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "url"), "127.0.0.1:1,\n127.0.0.1:2");
    cachet_config_free(c);
}

/* Input that used to take time quadratic in its size (minutes for a file of
 * a few MB), a line over the limit, a section header left open. */
static void large_and_broken_input(void **state)
{
    size_t lines = 1000000, len = 64 + lines * 4, pos;
    char *text = malloc(len + (1 << 20) + 64), *big;
    cachet_config *c;

    /* a value of a million continuation lines: joined in linear time */
    pos = (size_t)sprintf(text, "[cache]\nenabled = true\nbackend = memcached\n"
                                "memcache_servers = a\n");
    for (size_t i = 0; i < lines; i++, pos += 4)
        memcpy(text + pos, "  b\n", 4);
    text[pos] = '\0';
    alarm(30);
    c = parse(text, CACHET_OK);
    alarm(0);
    assert_int_equal(strlen(cachet_config_backend_arg(c, "url")), 1 + lines * 2);
    cachet_config_free(c);

    /* thousands of backend_argument lines: refused past 1000, at once */
    pos = (size_t)sprintf(text, "[cache]\nenabled = true\nbackend = memory\n");
    for (int i = 0; i < 50000; i++)
        pos += (size_t)sprintf(text + pos, "backend_argument = k%d:v\n", i);
    alarm(30);
    c = parse(text, CACHET_EINVAL);
    alarm(0);
    assert_contains(cachet_errmsg(), ":1004:");
    assert_contains(cachet_errmsg(), "more than 1000");
    cachet_config_free(c);

    /* a line of 1 MiB and more: named with its line, not a syntax error later */
    big = text + sprintf(text, "[cache]\n\nmemcache_servers = ");
    memset(big, 'a', 1 << 20);
    strcpy(big + (1 << 20), "\nenabled = true\n");
    c = parse(text, CACHET_EINVAL);
    assert_contains(cachet_errmsg(), ":3: the line is over the 1024 KiB");
    cachet_config_free(c);
    /* just under the limit is a value */
    strcpy(text, "[cache]\nmemcache_servers = ");
    pos = strlen(text);
    memset(text + pos, 'a', (1 << 20) - pos - 1);
    strcpy(text + (1 << 20) - 1, "\n");
    c = parse(text, CACHET_OK);
    cachet_config_free(c);

    /* a section header without its ']' */
    c = parse("[cache]\nenabled = true\n[cache\nbackend = redis\n", CACHET_EINVAL);
    assert_contains(cachet_errmsg(), ":3: syntax error");
    cachet_config_free(c);
    free(text);
}

static void repeated_backend_argument_last_wins(void **state)
{
    cachet_config *c = parse("[cache]\nenabled = true\nbackend = memory\n"
                             "backend_argument = max_count:10\nbackend_argument = max_size:100\n"
                             "backend_argument = max_count:20\n", CACHET_OK);
    assert_string_equal(cachet_config_backend_arg(c, "max_count"), "20");
    assert_string_equal(cachet_config_backend_arg(c, "max_size"), "100");
    cachet_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keystone_memcached),
        cmocka_unit_test(nova_memcache_pool),
        cmocka_unit_test(redis_url),
        cmocka_unit_test(redis_from_options),
        cmocka_unit_test(every_oslo_option_loads),
        cmocka_unit_test(enabled_false_means_null),
        cmocka_unit_test(backend_spellings),
        cmocka_unit_test(unknown_option_names_file_line_option),
        cmocka_unit_test(malformed_values),
        cmocka_unit_test(negative_durations),
        cmocka_unit_test(missing_file_is_named),
        cmocka_unit_test(not_a_regular_file),
        cmocka_unit_test(failed_load_loses_nothing),
        cmocka_unit_test(config_set_from_code),
        cmocka_unit_test(empty_values_mean_unset),
        cmocka_unit_test(other_sections_and_custom_section),
        cmocka_unit_test(long_lines_and_semicolons),
        cmocka_unit_test(continuation_lines),
        cmocka_unit_test(repeated_backend_argument_last_wins),
        cmocka_unit_test(large_and_broken_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
