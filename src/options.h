/* The table of every option oslo.cache defines in its [cache] group, with
 * oslo.cache's types and defaults, plus what cachet does with each. */
#ifndef CACHET_OPTIONS_H
#define CACHET_OPTIONS_H

#include <stddef.h>

typedef enum {
    OPT_BOOL,
    OPT_INT,
    OPT_FLOAT,
    OPT_STR,
    OPT_LIST,        /* comma-separated */
    OPT_MULTISTR,    /* repeatable; each occurrence adds one value */
    OPT_DICT,        /* key:value,key:value */
} cachet_opt_type;

typedef struct {
    const char     *name;
    cachet_opt_type type;
    const char     *dflt;         /* oslo.cache's default, as text; NULL = None */
    int             has_min, has_max;
    double          min, max;
    const char     *const *choices;
    /* Non-NULL when cachet cannot honour this option: a value that asks for
     * it (anything but the default / false / empty) is an error that quotes
     * this reason. */
    const char     *unsupported;
} cachet_option;

enum {
#define OPTION(id, ...) id,
#include "options.def"
#undef OPTION
    OPT__COUNT
};

extern const cachet_option cachet_option_table[OPT__COUNT];

/* Index of the option called name, or -1. */
int cachet_option_find(const char *name);

/* Checks text against the option's type, bounds and choices; on error sets
 * cachet_errmsg() to "option: why" and returns CACHET_EINVAL. */
int cachet_option_check(int id, const char *text);

/* Parsers for text already checked (so they cannot fail). */
int    cachet_parse_bool(const char *text, int *out);   /* 0 ok, -1 bad */
int    cachet_parse_long(const char *text, long *out);
int    cachet_parse_double(const char *text, double *out);

#endif
