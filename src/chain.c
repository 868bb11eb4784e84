/* The proxy chain a config asks for: cachet_proxies, outermost first, with
 * the log proxy in front when debug_cache_backend is set (and log is not
 * already listed); each proxy gets the cachet_proxy_argument lines that
 * name it.  An argument for a proxy that is not in the chain, a proxy
 * named twice, or one that does not load is an error naming the option and
 * where it was set. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "config_priv.h"
#include "chain.h"
#include "loader.h"

#define MAX_PROXIES 16

void cachet__chain_free(cachet_chain *ch)
{
    for (size_t i = 0; i < ch->n; i++) {
        free(ch->names[i]);
        free(ch->args[i]);
    }
    free(ch->names);
    free(ch->args);
    free(ch->params);
    free(ch->specs);
    memset(ch, 0, sizeof *ch);
}

static int add_name(cachet_chain *ch, const char *name, size_t len)
{
    if (!(ch->names[ch->n] = cachet__strndup(name, len)))
        return -1;
    ch->n++;
    return 0;
}

/* The next name of the comma-separated list at *p: its start in *name, its
 * length (blanks around it trimmed, 0 for an empty item) returned; *p moves
 * past it and its comma. */
static size_t next_name(const char **p, const char **name)
{
    size_t n = strcspn(*p, ",");
    const char *s = *p;
    size_t m = n;
    while (m && (*s == ' ' || *s == '\t'))
        s++, m--;
    while (m && (s[m - 1] == ' ' || s[m - 1] == '\t'))
        m--;
    *p += n + ((*p)[n] == ',');
    *name = s;
    return m;
}

/* "file:line: " of proxy argument a, for messages. */
static void arg_where(const cachet_proxy_arg *a, char *buf, size_t size)
{
    if (a->file)
        snprintf(buf, size, "%s:%d: ", a->file, a->line);
    else
        buf[0] = '\0';
}

cachet_status cachet__chain_make(const cachet_config *c, cachet_chain *ch)
{
    const char *list = cachet__cfg_str(c, OPT_CACHET_PROXIES);
    char where[512];
    int with_log = cachet__cfg_bool(c, OPT_DEBUG_CACHE_BACKEND);
    cachet_status st;

    memset(ch, 0, sizeof *ch);
    cachet__cfg_where(c, OPT_CACHET_PROXIES, where, sizeof where);
    ch->names = calloc(MAX_PROXIES + 1, sizeof *ch->names);
    ch->args = calloc(MAX_PROXIES + 1, sizeof *ch->args);
    ch->params = calloc(MAX_PROXIES + 1, sizeof *ch->params);
    ch->specs = calloc(MAX_PROXIES + 1, sizeof *ch->specs);
    if (!ch->names || !ch->args || !ch->params || !ch->specs)
        goto oom;
    /* debug_cache_backend: the log proxy outermost, unless listed */
    for (const char *p = list; with_log && p && *p; ) {
        const char *s;
        size_t m = next_name(&p, &s);
        if (m == 3 && memcmp(s, "log", 3) == 0)
            with_log = 0;
    }
    if (with_log && add_name(ch, "log", 3) != 0)
        goto oom;
    for (const char *p = list; p && *p; ) {
        const char *s;
        size_t m = next_name(&p, &s);
        if (!m)
            continue;
        for (size_t i = 0; i < ch->n; i++)
            if (strlen(ch->names[i]) == m && memcmp(ch->names[i], s, m) == 0) {
                cachet__chain_free(ch);
                return cachet__error(CACHET_EINVAL, "%soption cachet_proxies: '%.*s' is named "
                                     "twice", where, (int)m, s);
            }
        if (ch->n >= MAX_PROXIES) {
            cachet__chain_free(ch);
            return cachet__error(CACHET_EINVAL, "%soption cachet_proxies: more than %d proxies",
                                 where, MAX_PROXIES);
        }
        if (add_name(ch, s, m) != 0)
            goto oom;
    }
    /* every argument names a proxy of the chain */
    for (size_t a = 0; a < c->npargs; a++) {
        size_t i;
        for (i = 0; i < ch->n && strcmp(ch->names[i], c->pargs[a].proxy) != 0; i++)
            ;
        if (i == ch->n) {
            char aw[512];
            arg_where(&c->pargs[a], aw, sizeof aw);
            st = cachet__error(CACHET_EINVAL, "%soption cachet_proxy_argument: '%s:%s:...' is for "
                               "proxy '%s', which is not in cachet_proxies%s", aw,
                               c->pargs[a].proxy, c->pargs[a].arg.name, c->pargs[a].proxy,
                               ch->n ? "" : " (empty)");
            cachet__chain_free(ch);
            return st;
        }
    }
    for (size_t i = 0; i < ch->n; i++) {
        size_t k = 0;
        if (!(ch->args[i] = calloc(c->npargs + 1, sizeof *ch->args[i])))
            goto oom;
        for (size_t a = 0; a < c->npargs; a++)
            if (strcmp(c->pargs[a].proxy, ch->names[i]) == 0)
                ch->args[i][k++] = c->pargs[a].arg;
        ch->params[i].args = ch->args[i];
        ch->params[i].nargs = k;
        ch->params[i].debug = cachet__cfg_bool(c, OPT_DEBUG_CACHE_BACKEND);
        ch->specs[i].params = &ch->params[i];
        if ((st = cachet_loader_get_proxy(ch->names[i], &ch->specs[i].ops)) != CACHET_OK) {
            cachet__error_prefix("%soption cachet_proxies", where);
            cachet__chain_free(ch);
            return st;
        }
    }
    return CACHET_OK;
oom:
    cachet__chain_free(ch);
    return cachet__error(CACHET_ENOMEM, "region open: out of memory");
}
