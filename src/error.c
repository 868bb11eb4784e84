/* Status names and the thread-local detail message behind cachet_errmsg(). */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static _Thread_local char errmsg[CACHET_ERRMSG_MAX];
/* Whether errmsg was written since the last cachet__error_clear() (so a
 * failure can tell whether the backend described it).  A
 * separate one-byte flag with the initial-exec TLS model, so clearing it on
 * every get is one store rather than a call to __tls_get_addr (the message
 * buffer itself stays general-dynamic: 1 KiB is too much to take from the
 * static TLS surplus a dlopen()ed module — an nginx or apache module linking
 * libcachet — can count on). */
_Thread_local unsigned char cachet__errmsg_set __attribute__((tls_model("initial-exec")));
#define errmsg_set cachet__errmsg_set

CACHET_EXPORT const char *cachet_strerror(cachet_status st)
{
    switch (st) {
    case CACHET_OK: return "ok";
    case CACHET_MISS: return "miss";
    case CACHET_EXISTS: return "a live value exists";
    case CACHET_EINVAL: return "invalid argument or configuration";
    case CACHET_ENOMEM: return "out of memory";
    case CACHET_ENOBACKEND: return "no such backend";
    case CACHET_EUNAVAILABLE: return "backend unavailable";
    case CACHET_ETOOBIG: return "key or value too big";
    case CACHET_ECORRUPT: return "corrupt value";
    case CACHET_ETIMEDOUT: return "timed out";
    case CACHET_EBACKEND: return "backend failure";
    case CACHET_ENOTSUP: return "operation not supported by the backend";
    }
    return "unknown status";
}

CACHET_EXPORT const char *cachet_errmsg(void)
{
    return errmsg;     /* the last failure's, until the next failure */
}

int cachet__error_isset(void)
{
    return errmsg_set;
}

cachet_status cachet__verror(cachet_status st, const char *fmt, va_list ap)
{
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    errmsg_set = 1;
    return st;
}

cachet_status cachet__error(cachet_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cachet__verror(st, fmt, ap);
    va_end(ap);
    return st;
}

void cachet__error_prefix(const char *fmt, ...)
{
    char prefix[256], old[CACHET_ERRMSG_MAX - 300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%.*s", (int)sizeof old - 1, cachet_errmsg());
    snprintf(errmsg, sizeof errmsg, "%s: %s", prefix, old);
    errmsg_set = 1;
}

CACHET_EXPORT cachet_status cachet_backend_error(cachet_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cachet__verror(st, fmt, ap);
    va_end(ap);
    return st;
}

char *cachet__strdup(const char *s)
{
    return s ? cachet__strndup(s, strlen(s)) : NULL;
}

char *cachet__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}
