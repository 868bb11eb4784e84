/* What a [cache] section means: the canonical backend and its effective
 * arguments, built the way oslo.cache's _build_cache_config builds the
 * dogpile region config, so a section copied from keystone.conf or
 * nova.conf opens the same backend with the same arguments. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "config_priv.h"
#include "backend_table.h"

cachet_status cachet__cfg_resolve(cachet_config *c);


static const char *canonical_backend(const char *name)
{
    const cachet_backend_info *b = cachet__backend_lookup(name);
    return b ? b->name : name;   /* else a third-party plugin name or an absolute .so path */
}

typedef struct {
    cachet_backend_arg *a;
    size_t n;
    int oom;
} arglist;

/* Replaces name's value, or appends it. */
static void put(arglist *l, const char *name, const char *value)
{
    cachet_backend_arg *a;
    char *v;
    if (l->oom || !value)
        return;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->a[i].name, name) == 0) {
            if (!(v = cachet__strdup(value))) {
                l->oom = 1;
                return;
            }
            free((char *)l->a[i].value);
            l->a[i].value = v;
            return;
        }
    if (!(a = realloc(l->a, (l->n + 1) * sizeof *a))) {
        l->oom = 1;
        return;
    }
    l->a = a;
    a[l->n].name = cachet__strdup(name);
    a[l->n].value = cachet__strdup(value);
    if (!a[l->n].name || !a[l->n].value) {
        free((char *)a[l->n].name);
        free((char *)a[l->n].value);
        l->oom = 1;
        return;
    }
    l->n++;
}

static int has(const arglist *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->a[i].name, name) == 0)
            return 1;
    return 0;
}

/* The oslo options that mean something to backend b, as backend_table.c
 * maps them, after the backend_argument lines already in l. */
static void map_options(arglist *l, const cachet_config *c, const cachet_backend_info *b)
{
    for (const cachet_option_map *m = b->map; m->arg; m++) {
        int skip = m->only_if >= 0 && !cachet__cfg_bool(c, m->only_if);
        for (size_t u = 0; !skip && m->rule == MAP_DEFAULT && m->unless[u]; u++)
            skip = has(l, m->unless[u]);
        if (!skip)
            put(l, m->arg, cachet__cfg_str(c, m->opt));   /* an unset option adds nothing */
    }
}

cachet_status cachet__cfg_resolve(cachet_config *c)
{
    arglist l = {0};
    const char *b = cachet__cfg_bool(c, OPT_ENABLED)
                    ? canonical_backend(cachet__cfg_str(c, OPT_BACKEND)) : "null";
    char *nb = cachet__strdup(b);

    if (!nb)
        return cachet__error(CACHET_ENOMEM, "config: out of memory");
    /* null takes no arguments: a disabled section keeps its backend_argument
     * lines for when it is enabled again, and dogpile's null ignores them */
    for (size_t i = 0; strcmp(b, "null") != 0 && i < c->nbargs; i++)
        put(&l, c->bargs[i].name, c->bargs[i].value);
    if (cachet__backend_lookup(b))
        map_options(&l, c, cachet__backend_lookup(b));
    if (l.oom) {
        for (size_t i = 0; i < l.n; i++) {
            free((char *)l.a[i].name);
            free((char *)l.a[i].value);
        }
        free(l.a);
        free(nb);
        return cachet__error(CACHET_ENOMEM, "config: out of memory");
    }
    for (size_t i = 0; i < c->neff; i++) {
        free((char *)c->eff[i].name);
        free((char *)c->eff[i].value);
    }
    free(c->eff);
    free(c->backend);
    c->eff = l.a;
    c->neff = l.n;
    c->backend = nb;
    return CACHET_OK;
}

cachet_status cachet__cfg_validate(const cachet_config *c)
{
    const char *bet = cachet__cfg_str(c, OPT_BACKEND_EXPIRATION_TIME);
    char where[512];

    /* the keystone proxy makes keystonemiddleware's bytes from the payload:
     * only a region without cachet's header (foreign_values) can use it */
    if (!c->foreign_values && cachet__cfg_str(c, OPT_CACHET_PROXIES)) {
        const char *p = cachet__cfg_str(c, OPT_CACHET_PROXIES);
        while (*p) {
            size_t n = strcspn(p, ","), b = 0;
            while (b < n && (p[b] == ' ' || p[b] == '\t'))
                b++;
            while (n > b && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                n--;
            if (n - b == 8 && memcmp(p + b, "keystone", 8) == 0) {
                cachet__cfg_where(c, OPT_CACHET_PROXIES, where, sizeof where);
                return cachet__error(CACHET_EINVAL, "%soption cachet_proxies: keystone is set up "
                                     "by reading a [keystone_authtoken] section "
                                     "(cachet_config_load(c, path, \"keystone_authtoken\")), "
                                     "not named here", where);
            }
            p += strcspn(p, ",");
            p += *p == ',';
        }
    }

    if (bet && cachet__cfg_long(c, OPT_BACKEND_EXPIRATION_TIME) < cachet__cfg_long(c, OPT_EXPIRATION_TIME)) {
        cachet__cfg_where(c, OPT_BACKEND_EXPIRATION_TIME, where, sizeof where);
        return cachet__error(CACHET_EINVAL, "%soption backend_expiration_time: %s is less than "
                             "expiration_time (%ld): the server would drop values the region "
                             "still counts as fresh", where, bet,
                             cachet__cfg_long(c, OPT_EXPIRATION_TIME));
    }
    {
        const char *inv = cachet__cfg_str(c, OPT_CACHET_INVALIDATION);
        if (inv && strcmp(inv, "shared") != 0 && strcmp(inv, "local") != 0) {
            cachet__cfg_where(c, OPT_CACHET_INVALIDATION, where, sizeof where);
            return cachet__error(CACHET_EINVAL, "%soption cachet_invalidation: '%s' is neither "
                                 "shared nor local", where, inv);
        }
        if (!(cachet__cfg_double(c, OPT_CACHET_INVALIDATION_INTERVAL) > 0)) {
            cachet__cfg_where(c, OPT_CACHET_INVALIDATION_INTERVAL, where, sizeof where);
            return cachet__error(CACHET_EINVAL, "%soption cachet_invalidation_interval: %s: it "
                                 "is seconds > 0 (how long a process may go without re-reading "
                                 "the shared invalidation times)", where,
                                 cachet__cfg_str(c, OPT_CACHET_INVALIDATION_INTERVAL));
        }
    }
    return CACHET_OK;
}

/* ---- public accessors ---- */

CACHET_EXPORT const char *cachet_config_backend(const cachet_config *c)
{
    return c ? c->backend : NULL;
}

CACHET_EXPORT const char *cachet_config_backend_arg(const cachet_config *c, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; c && name && i < c->neff; i++)
        if (strcmp(c->eff[i].name, name) == 0)
            v = c->eff[i].value;
    return v;
}

CACHET_EXPORT int cachet_config_backend_arg_at(const cachet_config *c, size_t i,
                                               const char **name, const char **value)
{
    if (!c || i >= c->neff)
        return 0;
    if (name)
        *name = c->eff[i].name;
    if (value)
        *value = c->eff[i].value;
    return 1;
}
