/* Helpers that let a plugin read its arguments with errors that name the
 * backend, the argument and the bad value, all worded the same way. */
#include "config.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "internal.h"

CACHET_EXPORT const char *cachet_backend_arg_get(const cachet_backend_params *p, const char *name)
{
    const char *v = NULL;
    /* the last one wins, as when oslo.cache builds its argument dict */
    for (size_t i = 0; p && i < p->nargs; i++)
        if (strcmp(p->args[i].name, name) == 0)
            v = p->args[i].value;
    return v;
}

CACHET_EXPORT cachet_status cachet_backend_arg_long(const cachet_backend_params *p,
                                                    const char *backend, const char *name,
                                                    long dflt, long min, long max, long *out)
{
    const char *v = cachet_backend_arg_get(p, name);
    char *end;
    long n;
    if (!v) {
        *out = dflt;
        return CACHET_OK;
    }
    errno = 0;
    n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno)
        return cachet__error(CACHET_EINVAL, "backend %s: argument %s: '%s' is not an integer",
                             backend, name, v);
    if (n < min || n > max)
        return cachet__error(CACHET_EINVAL, "backend %s: argument %s: %ld is out of range [%ld, %ld]",
                             backend, name, n, min, max);
    *out = n;
    return CACHET_OK;
}

CACHET_EXPORT cachet_status cachet_backend_arg_double(const cachet_backend_params *p,
                                                      const char *backend, const char *name,
                                                      double dflt, double min, double max,
                                                      double *out)
{
    const char *v = cachet_backend_arg_get(p, name);
    char *end;
    double d;
    if (!v) {
        *out = dflt;
        return CACHET_OK;
    }
    errno = 0;
    d = strtod(v, &end);
    if (end == v || *end != '\0' || errno || isnan(d))
        return cachet__error(CACHET_EINVAL, "backend %s: argument %s: '%s' is not a number",
                             backend, name, v);
    if (d < min || d > max)
        return cachet__error(CACHET_EINVAL, "backend %s: argument %s: %g is out of range [%g, %g]",
                             backend, name, d, min, max);
    *out = d;
    return CACHET_OK;
}

CACHET_EXPORT cachet_status cachet_backend_arg_bool(const cachet_backend_params *p,
                                                    const char *backend, const char *name,
                                                    int dflt, int *out)
{
    const char *v = cachet_backend_arg_get(p, name);
    if (!v) {
        *out = dflt;
        return CACHET_OK;
    }
    /* the spellings oslo.config's BoolOpt accepts */
    static const char *const yes[] = {"true", "1", "on", "yes", NULL};
    static const char *const no[] = {"false", "0", "off", "no", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, CACHET_OK;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, CACHET_OK;
    return cachet__error(CACHET_EINVAL, "backend %s: argument %s: '%s' is not a boolean (true/false)",
                         backend, name, v);
}

CACHET_EXPORT cachet_status cachet_backend_args_check(const cachet_backend_params *p,
                                                      const char *backend,
                                                      const char *const *known)
{
    for (size_t i = 0; p && i < p->nargs; i++) {
        int ok = 0;
        for (size_t k = 0; known && known[k]; k++)
            if (strcmp(p->args[i].name, known[k]) == 0) {
                ok = 1;
                break;
            }
        if (!ok)
            return cachet__error(CACHET_EINVAL, "backend %s: unknown argument '%s'",
                                 backend, p->args[i].name);
    }
    return CACHET_OK;
}
