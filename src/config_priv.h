/* The parsed [cache] section and what it resolves to (internal). */
#ifndef CACHET_CONFIG_INTERNAL_H
#define CACHET_CONFIG_INTERNAL_H

#include <cachet/backend.h>
#include "options.h"

/* The largest config file cachet_config_load reads: a service's whole file
 * with hundreds of options is a few tens of KiB. */
#define CACHET_CONFIG_MAX_BYTES (16 << 20)

/* cachet_proxy_argument = PROXY:NAME:VALUE */
typedef struct {
    char              *proxy;       /* as cachet_proxies names it */
    cachet_backend_arg arg;         /* what the proxy's open sees */
    int                line;
    const char        *file;        /* points into files[] */
} cachet_proxy_arg;

struct cachet_config {
    char *val[OPT__COUNT];          /* text as set; NULL = oslo.cache's default */
    int   line[OPT__COUNT];         /* where it was set; 0 = from code */
    const char *file[OPT__COUNT];   /* points into files[] */
    cachet_backend_arg *bargs;      /* backend_argument, in order (owned) */
    int   *bargs_line;
    size_t nbargs;
    cachet_proxy_arg *pargs;        /* cachet_proxy_argument, in order (owned) */
    size_t npargs;
    char **files;                   /* names of the files loaded (owned) */
    size_t nfiles;
    /* resolved after every change: see resolve() */
    char *backend;                  /* canonical name */
    cachet_backend_arg *eff;        /* effective backend arguments (owned) */
    size_t neff;
    /* values are another program's format, stored as they are (no cachet
     * header) under keys the chain makes (no prefix, no mangling): set by
     * reading [keystone_authtoken] (src/keystone/ks_section.c) */
    int foreign_values;
};

/* Typed access to options whose text was checked when set. */
const char *cachet__cfg_str(const cachet_config *c, int id);      /* NULL = None */
int         cachet__cfg_bool(const cachet_config *c, int id);
long        cachet__cfg_long(const cachet_config *c, int id);
double      cachet__cfg_double(const cachet_config *c, int id);

/* Cross-option checks (e.g. backend_expiration_time >= expiration_time);
 * messages name the file and line where the option was set. */
cachet_status cachet__cfg_validate(const cachet_config *c);

/* Sets one option as a config file line would (file interned by the
 * caller, or NULL); does not resolve. */
cachet_status cachet__cfg_set_at(cachet_config *c, const char *option, const char *value,
                                 const char *file, int line);

/* "file:line: " or "" for an option set from code, for messages. */
void cachet__cfg_where(const cachet_config *c, int id, char *buf, size_t size);

#endif
