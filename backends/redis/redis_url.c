/* The redis url and host:port lists, parsed as redis-py 4.3 (urllib)
 * parses them, and quoted in messages without any secret.
 *
 *   redis://[[user][:password]@]host[:port][/db][?...][#...]
 *   unix://[[user][:password]@]/path[?db=N]
 *
 * urllib: the netloc runs from "//" to the first '/', '?' or '#'; the
 * userinfo is what precedes the LAST '@' of the netloc (a password may
 * hold '@'); user and password split at the first ':' of the userinfo;
 * both are %XX-decoded; empty ones count as absent.  So
 * "redis://S3cretLone@host" names the user S3cretLone with no password
 * (redis-py then sends AUTH S3cretLone "", and so does cachet).
 *
 * A message quotes a url as the scheme then "***@host:port/db": everything
 * before the last '@' of the whole url is hidden, a superset of the userinfo
 * (a password with an unencoded '/' ends urllib's netloc early, and its
 * tail must not show either).
 *
 * No I/O: tests/fuzz/fuzz_redis_url.c builds this file alone (with
 * backends/common/hostport.c). */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"
#include "../common/hostport.h"

void rurl_redact(const char *url, char *out, size_t size)
{
    const char *scheme = strstr(url, "://");
    const char *start = scheme ? scheme + 3 : url;
    const char *at = strrchr(start, '@');
    if (at)
        snprintf(out, size, "%.*s***%s", (int)(start - url), url, at);
    else
        snprintf(out, size, "%s", url);
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : (tolower(c) >= 'a' && tolower(c) <= 'f') ? tolower(c) - 'a' + 10 : -1;
}

/* %XX-decoded copy of s[0..n) (as urllib's unquote) */
static char *unquote(const char *s, size_t n)
{
    char *o = malloc(n + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 && hexval((unsigned char)s[i + 2]) >= 0) {
            *w++ = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    return o;
}

int raddr_parse(const char *s, int dflt_port, raddr *a)
{
    size_t n;

    while (isspace((unsigned char)*s))
        s++;
    n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return cachet_hostport_parse(s, n, dflt_port, a->host, sizeof a->host, &a->port) ==
           CACHET_HP_OK ? 0 : -1;
}

cachet_status raddr_list_parse(const rcfg *cfg, const char *arg, const char *v,
                               raddr **out, size_t *nout)
{
    char *copy = strdup(v), *save = NULL;
    size_t n = 0;
    raddr *a;

    if (!copy || !(a = calloc(strlen(v) / 2 + 2, sizeof *a))) {
        free(copy);
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", cfg->name);
    }
    for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (raddr_parse(t, cfg->mode == RMODE_SENTINEL ? 26379 : 6379, &a[n]) != 0) {
            cachet_status st = cachet_backend_error(CACHET_EINVAL, "backend %s: argument %s: "
                                                    "'%.300s' is not host:port", cfg->name, arg, t);
            free(copy);
            free(a);
            return st;
        }
        n++;
    }
    free(copy);
    if (n == 0) {
        free(a);
        return cachet_backend_error(CACHET_EINVAL, "backend %s: argument %s: no host:port given",
                                    cfg->name, arg);
    }
    *out = a;
    *nout = n;
    return CACHET_OK;
}

/* user and password from the userinfo u[0..n) */
static cachet_status take_userinfo(rcfg *cfg, const char *u, size_t n)
{
    const char *colon = memchr(u, ':', n);
    size_t ul = colon ? (size_t)(colon - u) : n;
    free(cfg->username);
    free(cfg->password);
    cfg->username = cfg->password = NULL;
    if (ul && !(cfg->username = unquote(u, ul)))
        return CACHET_ENOMEM;
    if (colon && colon + 1 < u + n && !(cfg->password = unquote(colon + 1, (size_t)(u + n - colon - 1))))
        return CACHET_ENOMEM;
    /* "%00" decodes to an empty name: absent, as redis-py's truthiness test */
    if (cfg->username && !cfg->username[0]) {
        free(cfg->username);
        cfg->username = NULL;
    }
    if (cfg->password && !cfg->password[0]) {
        free(cfg->password);
        cfg->password = NULL;
    }
    return CACHET_OK;
}

cachet_status rurl_parse(rcfg *cfg, const char *url)
{
    char shown[1024];
    const char *p, *netloc_end, *at = NULL;
    int is_unix = 0;

    rurl_redact(url, shown, sizeof shown);
#define BAD(why) cachet_backend_error(CACHET_EINVAL, "backend %s: argument url: '%s': %s", \
                                      cfg->name, shown, why)
    if (strncmp(url, "redis://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "unix://", 7) == 0)
        p = url + 7, is_unix = 1;
    else if (strncmp(url, "rediss://", 9) == 0)
        return BAD("TLS (rediss://) is not available: Debian 12's hiredis 0.14.1 has no TLS");
    else
        return BAD("the scheme must be redis:// or unix://");
    netloc_end = p + strcspn(p, "/?#");
    for (const char *q = p; q < netloc_end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        if (take_userinfo(cfg, p, (size_t)(at - p)) != CACHET_OK)
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", cfg->name);
        p = at + 1;
    }
    if (is_unix) {
        const char *q;
        size_t n;
        if (p != netloc_end)
            return BAD("a unix socket url has no host (unix:///run/redis.sock)");
        n = strcspn(p, "?#");
        q = p[n] == '?' ? p + n : NULL;
        if (n == 0 || p[0] != '/')
            return BAD("a unix socket url needs an absolute path (unix:///run/redis.sock)");
        free(cfg->unix_path);
        if (!(cfg->unix_path = strndup(p, n)))
            return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", cfg->name);
        while (q && *q && *q != '#') {
            q++;
            if (strncmp(q, "db=", 3) == 0) {
                char *end;
                if (!isdigit((unsigned char)q[3]))
                    return BAD("db= must be a number >= 0");
                cfg->db = strtol(q + 3, &end, 10);
                if ((*end && *end != '&' && *end != '#') || cfg->db < 0 || cfg->db > INT_MAX)
                    return BAD("db= must be a number >= 0");
                q = end;
            } else {
                q += strcspn(q, "&#");
            }
        }
        return CACHET_OK;
    }
    {
        char hp[R_HOST_MAX + 16];
        size_t n = (size_t)(netloc_end - p);
        raddr a;
        if (n == 0 || n >= sizeof hp)
            return BAD("no host");
        memcpy(hp, p, n);
        hp[n] = '\0';
        if (raddr_parse(hp, 6379, &a) != 0)
            return BAD("the host part must be host[:port] with a port in 1..65535");
        memcpy(cfg->host, a.host, sizeof a.host);
        cfg->port = a.port;
    }
    if (*netloc_end == '/' && netloc_end[1] && netloc_end[1] != '?' && netloc_end[1] != '#') {
        char *end;
        if (!isdigit((unsigned char)netloc_end[1]))
            return BAD("the path must be a database number (/0, /1, ...)");
        cfg->db = strtol(netloc_end + 1, &end, 10);
        if ((*end && *end != '?' && *end != '#') || cfg->db < 0 || cfg->db > INT_MAX)
            return BAD("the path must be a database number (/0, /1, ...)");
    }
    return CACHET_OK;
#undef BAD
}
