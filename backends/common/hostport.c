/* host:port parsing (see hostport.h). */
#include <string.h>
#include "hostport.h"

/* Plain decimal in 1..65535: digits only, at least one. */
static int parse_port(const char *s, size_t n, int *port)
{
    long v = 0;
    if (n == 0)
        return CACHET_HP_BAD_PORT;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CACHET_HP_BAD_PORT;
        v = v * 10 + (s[i] - '0');
        if (v > 65535)
            return CACHET_HP_BAD_PORT;
    }
    if (v < 1)
        return CACHET_HP_BAD_PORT;
    *port = (int)v;
    return CACHET_HP_OK;
}

int cachet_hostport_parse(const char *s, size_t n, int default_port,
                          char *host, size_t hostsize, int *port)
{
    const char *h = s, *p = NULL;
    size_t hl, pl = 0;

    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        size_t rest;
        if (!close)
            return CACHET_HP_NO_CLOSE;
        h = s + 1;
        hl = (size_t)(close - h);
        rest = n - (size_t)(close + 1 - s);
        if (rest && close[1] != ':')
            return CACHET_HP_AFTER_CLOSE;
        if (rest) {
            p = close + 2;
            pl = rest - 1;
        }
    } else {
        const char *colon = NULL;
        for (size_t i = n; i > 0; i--)
            if (s[i - 1] == ':') {
                colon = s + i - 1;
                break;
            }
        hl = colon ? (size_t)(colon - s) : n;
        if (colon) {
            p = colon + 1;
            pl = n - hl - 1;
        }
    }
    if (hl == 0)
        return CACHET_HP_NO_HOST;
    if (hl >= hostsize)
        return CACHET_HP_TOO_LONG;
    if (p) {
        int rc = parse_port(p, pl, port);
        if (rc != CACHET_HP_OK)
            return rc;
    } else {
        *port = default_port;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    return CACHET_HP_OK;
}
