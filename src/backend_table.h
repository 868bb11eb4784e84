/* What the core knows of the backends, as data (src/backend_table.c): the
 * names a [cache] section may give each (dogpile's and oslo's spellings),
 * and how oslo.cache's own options become its arguments.  Nothing else in
 * libcachet names a backend: a new backend is a plugin plus a row here. */
#ifndef CACHET_BACKEND_TABLE_H
#define CACHET_BACKEND_TABLE_H

#include <stddef.h>

/* How an oslo option becomes a backend argument (oslo.cache's
 * _build_cache_config sets some after backend_argument, some with
 * setdefault). */
typedef enum {
    MAP_OVER,      /* set after backend_argument: wins over one of the same name */
    MAP_DEFAULT,   /* setdefault: only when none of `unless` was given */
} cachet_map_rule;

typedef struct {
    int             opt;         /* OPT_* */
    const char     *arg;         /* the backend argument it becomes */
    cachet_map_rule rule;
    const char     *unless[4];   /* MAP_DEFAULT: arguments that make it unneeded */
    int             only_if;     /* OPT_* that must be true, or -1 */
} cachet_option_map;

typedef struct {
    const char              *name;      /* canonical: also the plugin's file name */
    const char *const       *aliases;   /* NULL-terminated */
    const cachet_option_map *map;       /* ends with arg == NULL */
} cachet_backend_info;

/* NULL-terminated by name == NULL. */
extern const cachet_backend_info cachet__backend_table[];

/* The row whose name or alias is name, or NULL (a third-party plugin). */
const cachet_backend_info *cachet__backend_lookup(const char *name);

/* "null, memory, dbm, ..." for messages: the canonical names. */
void cachet__backend_names(char *buf, size_t size);

#endif
