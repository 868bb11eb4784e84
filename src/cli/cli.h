/* The cachet tool's parts: option handling and region setup (cli_config.c),
 * the commands (cachet.c, stats.c) and the benchmark (bench.c). */
#ifndef CACHET_CLI_H
#define CACHET_CLI_H

#include <stddef.h>
#include <cachet/cachet.h>

/* Exit statuses (DESIGN.md): done or hit, miss, error. */
enum { CLI_OK = 0, CLI_MISS = 1, CLI_ERROR = 2 };

/* Where the configuration comes from, as given on the command line. */
typedef struct {
    const char  *file;       /* -c, else $CACHET_CONFIG, else NULL: the embedded default */
    const char  *section;    /* -s, default "cache" */
    const char **overrides;  /* -o OPTION=VALUE, in order */
    size_t       noverrides;
} cli_source;

/* Builds the config (the file, or the embedded default, then the -o
 * overrides) and opens the region, printing why on stderr when it cannot.
 * *described says where the config came from. */
cachet_region *cli_region_open(const cli_source *src, cachet_config **cfg, const char **described);

/* Prints "cachet: WHAT: <status>: <detail>" on stderr; returns CLI_ERROR. */
int cli_fail(const char *what, cachet_status st);

int cli_stats(cachet_region *r, int argc, char **argv);
int cli_check(cachet_region *r, const char *described);
int cli_bench(cachet_region *r, int argc, char **argv);

#endif
