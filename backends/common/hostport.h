/* "host[:port]" and "[v6addr][:port]", as the memcached server list and the
 * redis urls and host lists spell a server.  Only the syntax both share:
 * the callers trim blanks, split their own extras off (memcached's
 * ":weight") and word their own messages.  No I/O, no allocation:
 * tests/fuzz/fuzz_mc_url.c and fuzz_redis_url.c compile it in. */
#ifndef CACHET_BACKEND_COMMON_HOSTPORT_H
#define CACHET_BACKEND_COMMON_HOSTPORT_H

#include <stddef.h>

enum {
    CACHET_HP_OK = 0,
    CACHET_HP_NO_CLOSE = -1,     /* "[" without "]" */
    CACHET_HP_AFTER_CLOSE = -2,  /* "]" followed by something other than ":port" */
    CACHET_HP_BAD_PORT = -3,     /* not 1..65535 in plain decimal digits */
    CACHET_HP_NO_HOST = -4,      /* an empty host */
    CACHET_HP_TOO_LONG = -5,     /* the host does not fit hostsize */
};

/* Parses s[0..n): "[addr]" or "[addr]:port", else "host" or "host:port"
 * split at the LAST ':' (redis-py's rsplit; an unbracketed v6 address thus
 * reads as host:port).  The port is plain decimal digits (no sign, no blank)
 * in 1..65535; without one, *port is default_port.  On success host holds
 * the NUL-terminated host (without brackets).  Returns CACHET_HP_OK or one
 * of the CACHET_HP_* errors; host and *port are then unspecified. */
int cachet_hostport_parse(const char *s, size_t n, int default_port,
                          char *host, size_t hostsize, int *port);

#endif
