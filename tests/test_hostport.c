/* The host[:port] / [v6]:port parser the memcached and redis backends share
 * (backends/common/hostport.c): what each spelling yields, and that every
 * malformed port or host is refused rather than read as something else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "hostport.h"

static int parse(const char *s, char *host, size_t hostsize, int *port)
{
    return cachet_hostport_parse(s, strlen(s), 4242, host, hostsize, port);
}

static void accepts(const char *s, const char *want_host, int want_port)
{
    char host[64];
    int port = -1;
    int rc = parse(s, host, sizeof host, &port);
    if (rc != CACHET_HP_OK)
        fail_msg("\"%s\" refused (%d)", s, rc);
    assert_string_equal(host, want_host);
    assert_int_equal(port, want_port);
}

static void refuses(const char *s, int want_rc)
{
    char host[64];
    int port = -1;
    int rc = parse(s, host, sizeof host, &port);
    if (rc != want_rc)
        fail_msg("\"%s\": %d, expected %d", s, rc, want_rc);
}

static void hosts_and_ports(void **state)
{
    (void)state;
    accepts("cache1", "cache1", 4242);
    accepts("cache1:11211", "cache1", 11211);
    accepts("10.0.0.1:1", "10.0.0.1", 1);
    accepts("h:65535", "h", 65535);
    accepts("h:00080", "h", 80);
    accepts("[::1]", "::1", 4242);
    accepts("[::1]:6379", "::1", 6379);
    accepts("[fe80::1%eth0]:7000", "fe80::1%eth0", 7000);
    /* unbracketed, the LAST ':' splits (redis-py's rsplit) */
    accepts("a:b:80", "a:b", 80);
}

static void only_the_first_n_bytes_are_read(void **state)
{
    char host[64];
    int port = -1;
    (void)state;
    assert_int_equal(cachet_hostport_parse("cache:11211:7", 11, 1, host, sizeof host, &port),
                     CACHET_HP_OK);
    assert_string_equal(host, "cache");
    assert_int_equal(port, 11211);
    assert_int_equal(cachet_hostport_parse("[::1]:80", 5, 1, host, sizeof host, &port),
                     CACHET_HP_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
}

static void bad_ports(void **state)
{
    (void)state;
    refuses("h:", CACHET_HP_BAD_PORT);
    refuses("h:0", CACHET_HP_BAD_PORT);
    refuses("h:65536", CACHET_HP_BAD_PORT);
    refuses("h:99999999999999999999", CACHET_HP_BAD_PORT);
    refuses("h:-1", CACHET_HP_BAD_PORT);
    refuses("h:+80", CACHET_HP_BAD_PORT);
    refuses("h: 80", CACHET_HP_BAD_PORT);
    refuses("h:80 ", CACHET_HP_BAD_PORT);
    refuses("h:0x50", CACHET_HP_BAD_PORT);
    refuses("[::1]:", CACHET_HP_BAD_PORT);
    refuses("[::1]:x", CACHET_HP_BAD_PORT);
}

static void bad_hosts(void **state)
{
    char host[8];
    int port;
    (void)state;
    refuses("", CACHET_HP_NO_HOST);
    refuses(":80", CACHET_HP_NO_HOST);
    refuses("[]:80", CACHET_HP_NO_HOST);
    refuses("[::1", CACHET_HP_NO_CLOSE);
    refuses("[::1]x", CACHET_HP_AFTER_CLOSE);
    refuses("[::1]80", CACHET_HP_AFTER_CLOSE);
    /* a host that does not fit is refused, never truncated */
    assert_int_equal(parse("1234567", host, sizeof host, &port), CACHET_HP_OK);
    assert_int_equal(parse("12345678:80", host, sizeof host, &port), CACHET_HP_TOO_LONG);
    assert_int_equal(parse("[12345678]", host, sizeof host, &port), CACHET_HP_TOO_LONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hosts_and_ports),
        cmocka_unit_test(only_the_first_n_bytes_are_read),
        cmocka_unit_test(bad_ports),
        cmocka_unit_test(bad_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
