/* Lookup and validation of oslo.cache options (the table is options.def). */
#include "config.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "internal.h"
#include "options.h"

#define NOLIM 0, 0, 0.0, 0.0
#define MIN(m) 1, 0, (double)(m), 0.0
#define MAX(m) 0, 1, 0.0, (double)(m)
#define MINMAX(a, b) 1, 1, (double)(a), (double)(b)


const cachet_option cachet_option_table[OPT__COUNT] = {
#define OPTION(id, name, type, dflt, lim, unsup) [id] = {name, type, dflt, lim, NULL, unsup},
#include "options.def"
#undef OPTION
};

int cachet_option_find(const char *name)
{
    for (int i = 0; i < OPT__COUNT; i++)
        if (strcmp(cachet_option_table[i].name, name) == 0)
            return i;
    return -1;
}

int cachet_parse_bool(const char *text, int *out)
{
    /* what oslo.config's BoolOpt accepts */
    static const char *const yes[] = {"true", "1", "on", "yes", NULL};
    static const char *const no[] = {"false", "0", "off", "no", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(text, yes[i]) == 0)
            return *out = 1, 0;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(text, no[i]) == 0)
            return *out = 0, 0;
    return -1;
}

int cachet_parse_long(const char *text, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(text, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    return (end == text || *end || errno) ? -1 : 0;
}

int cachet_parse_double(const char *text, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    return (end == text || *end || errno || isnan(*out) || isinf(*out)) ? -1 : 0;
}

static int asks_for_unsupported(const cachet_option *o, const char *text)
{
    int b;
    if (!o->unsupported || !*text)
        return 0;
    if (o->type == OPT_BOOL)
        return cachet_parse_bool(text, &b) == 0 && b;
    return !o->dflt || strcmp(text, o->dflt) != 0;
}

int cachet_option_check(int id, const char *text)
{
    const cachet_option *o = &cachet_option_table[id];
    double d = 0;
    long l;
    int b;

    switch (o->type) {
    case OPT_BOOL:
        if (cachet_parse_bool(text, &b))
            return cachet__error(CACHET_EINVAL, "option %s: '%s' is not a boolean (true or false)",
                                 o->name, text);
        break;
    case OPT_INT:
        if (cachet_parse_long(text, &l))
            return cachet__error(CACHET_EINVAL, "option %s: '%s' is not an integer", o->name, text);
        d = (double)l;
        break;
    case OPT_FLOAT:
        if (cachet_parse_double(text, &d))
            return cachet__error(CACHET_EINVAL, "option %s: '%s' is not a number", o->name, text);
        break;
    case OPT_DICT:
        for (const char *p = text; *p; ) {
            size_t n = strcspn(p, ",");
            if (!memchr(p, ':', n))
                return cachet__error(CACHET_EINVAL, "option %s: '%.*s' is not key:value",
                                     o->name, (int)n, p);
            p += n + (p[n] == ',');
        }
        break;
    default:
        break;
    }
    if ((o->type == OPT_INT || o->type == OPT_FLOAT) &&
        ((o->has_min && d < o->min) || (o->has_max && d > o->max))) {
        if (id == OPT_EXPIRATION_TIME && d < 0)
            return cachet__error(CACHET_EINVAL, "option %s: %s is not a number of seconds: -1 "
                                 "(never expire) is the only negative value it takes",
                                 o->name, text);
        if (o->has_min && o->has_max)
            return cachet__error(CACHET_EINVAL, "option %s: %s is out of range [%.15g, %.15g]",
                                 o->name, text, o->min, o->max);
        if (o->has_min)
            return cachet__error(CACHET_EINVAL, "option %s: %s is below the minimum %.15g",
                                 o->name, text, o->min);
        return cachet__error(CACHET_EINVAL, "option %s: %s is above the maximum %.15g",
                             o->name, text, o->max);
    }
    if (asks_for_unsupported(o, text))
        return cachet__error(CACHET_EINVAL, "option %s = %s: cachet cannot honour it: %s",
                             o->name, text, o->unsupported);
    return CACHET_OK;
}
