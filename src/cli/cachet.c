/* cachet: a thin command-line tool over the public API, for operators and
 * scripts (DESIGN.md, "The cachet command").
 *
 *   cachet [-c FILE] [-s SECTION] [-o OPTION=VALUE]... COMMAND [ARGS]
 *
 * Exit status: 0 done (or hit), 1 miss, 2 error with the reason on stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

static void usage(FILE *f)
{
    fputs("usage: cachet [-c FILE] [-s SECTION] [-o OPTION=VALUE]... COMMAND [ARGS]\n"
          "\n"
          "commands:\n"
          "  set KEY VALUE     store VALUE under KEY (VALUE - reads stdin, binary-safe)\n"
          "  get KEY           write the value to stdout; exit 1 on a miss\n"
          "  delete KEY        remove KEY\n"
          "  check             open the region, round-trip a probe key, report the servers\n"
          "  stats [--prometheus]\n"
          "                    this run's region counters and the backend's own report\n"
          "  compact           remove expired and invalidated values, reclaim space\n"
          "  invalidate [--soft]\n"
          "                    every value stored before now is gone (--soft: stale), for\n"
          "                    every process on this backend and cachet_key_prefix\n"
          "  bench [--keys N] [--value-size B] [--threads N] [--duration S] [--op get|set|goc|all]\n"
          "                    ops/s and p50/p99 latency on this config\n"
          "\n"
          "options:\n"
          "  -c FILE           an oslo.cache-style config file (default: $CACHET_CONFIG, else\n"
          "                    the embedded default: dbm in ${XDG_CACHE_HOME:-~/.cache}/cachet/cache.db)\n"
          "  -s SECTION        the section to read (default: cache)\n"
          "  -o OPTION=VALUE   set a [cache] option after the file (repeatable)\n"
          "\n"
          "exit status: 0 done or hit, 1 miss, 2 error\n", f);
}

/* The largest value `set KEY -` reads: above what memcached and redis take
 * and what a tool run should hold in memory; `< /dev/zero` must end. */
#define STDIN_VALUE_MAX ((size_t)1 << 30)

/* Reads all of stdin (a value may hold any bytes, NULs included).  Returns
 * 0, -1 on a read error or no memory, -2 when stdin is over STDIN_VALUE_MAX. */
static int read_stdin(char **buf, size_t *len)
{
    size_t cap = 4096, n = 0, got;
    struct stat sb;
    char *b;

    /* a regular file says its size: refuse it before reading */
    if (fstat(STDIN_FILENO, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uintmax_t)sb.st_size > STDIN_VALUE_MAX)
        return -2;
    if (!(b = malloc(cap)))
        return -1;
    while ((got = fread(b + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n > STDIN_VALUE_MAX) {
            free(b);
            return -2;
        }
        if (n == cap) {
            /* one byte over the limit is enough to know */
            size_t ncap = cap * 2 > STDIN_VALUE_MAX + 1 ? STDIN_VALUE_MAX + 1 : cap * 2;
            char *nb = realloc(b, ncap);
            if (!nb) {
                free(b);
                return -1;
            }
            b = nb;
            cap = ncap;
        }
    }
    if (ferror(stdin)) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

static int cmd_set(cachet_region *r, const char *key, const char *arg)
{
    char *buf = NULL, what[300];
    size_t len;
    cachet_status st;

    if (strcmp(arg, "-") == 0) {
        int rc = read_stdin(&buf, &len);
        if (rc == -2) {
            fprintf(stderr, "cachet: set %.250s: the value on stdin is over %zu MiB, the most "
                            "the tool stores\n", key, STDIN_VALUE_MAX >> 20);
            return CLI_ERROR;
        }
        if (rc != 0) {
            fprintf(stderr, "cachet: set %.250s: cannot read the value from stdin\n", key);
            return CLI_ERROR;
        }
        st = cachet_set(r, key, buf, len);
        free(buf);
    } else {
        st = cachet_set(r, key, arg, strlen(arg));
    }
    if (st != CACHET_OK) {
        snprintf(what, sizeof what, "set %.250s", key);
        return cli_fail(what, st);
    }
    return CLI_OK;
}

static int cmd_get(cachet_region *r, const char *key)
{
    void *v;
    size_t len;
    char what[300];
    cachet_status st = cachet_get(r, key, &v, &len);

    if (st == CACHET_MISS)
        return CLI_MISS;
    if (st != CACHET_OK) {
        snprintf(what, sizeof what, "get %.250s", key);
        return cli_fail(what, st);
    }
    int ok = fwrite(v, 1, len, stdout) == len;
    /* the bytes as stored; a terminal also gets the line end it needs */
    if (ok && isatty(STDOUT_FILENO) && (len == 0 || ((char *)v)[len - 1] != '\n'))
        ok = putchar('\n') != EOF;
    cachet_free(v);
    if (fflush(stdout) != 0 || !ok) {
        fprintf(stderr, "cachet: get %.250s: cannot write to stdout\n", key);
        return CLI_ERROR;
    }
    return CLI_OK;
}

static int cmd_delete(cachet_region *r, const char *key)
{
    char what[300];
    cachet_status st = cachet_delete(r, key);

    if (st != CACHET_OK) {
        snprintf(what, sizeof what, "delete %.250s", key);
        return cli_fail(what, st);
    }
    return CLI_OK;
}

static int cmd_compact(cachet_region *r)
{
    size_t removed = 0;
    cachet_status st = cachet_compact(r, &removed);

    if (st != CACHET_OK)
        return cli_fail("compact", st);
    printf("removed %zu values\n", removed);
    return CLI_OK;
}

/* The region's invalidation: with cachet_invalidation = shared (the
 * default on dbm, memcached, redis) it is written to the backend, so it
 * outlives this run and reaches every process; on a local region (memory)
 * it ends with this run, and the tool says so. */
static int cmd_invalidate(cachet_region *r, int nargs, char **args)
{
    int hard = 1;
    cachet_status st;

    if (nargs == 1) {
        if (strcmp(args[0], "--soft") != 0) {
            fprintf(stderr, "cachet: invalidate: unknown option '%s' (only --soft)\n", args[0]);
            return CLI_ERROR;
        }
        hard = 0;
    }
    if ((st = cachet_invalidate_ex(r, hard)) != CACHET_OK)
        return cli_fail("invalidate", st);
    if (strcmp(cachet_region_backend(r), "memory") == 0 || strcmp(cachet_region_backend(r), "null") == 0)
        fprintf(stderr, "cachet: invalidate: backend %s keeps values in this process only: the "
                "invalidation ends with this run\n", cachet_region_backend(r));
    printf("invalidated (%s): values stored before now are %s\n", hard ? "hard" : "soft",
           hard ? "gone" : "stale");
    return CLI_OK;
}

/* Arity of each command, checked before the region opens. */
static const struct {
    const char *name;
    int min, max;     /* arguments after the command name */
} commands[] = {
    { "set", 2, 2 }, { "get", 1, 1 }, { "delete", 1, 1 }, { "check", 0, 0 },
    { "stats", 0, 1 }, { "compact", 0, 0 }, { "bench", 0, 64 }, { "invalidate", 0, 1 },
};

int main(int argc, char **argv)
{
    cli_source src = { 0 };
    const char **ov;
    const char *described = "";
    int opt, rc;

    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int section_given = 0;

    if (!(ov = calloc((size_t)argc, sizeof *ov)))
        return CLI_ERROR;
    src.overrides = ov;
    src.section = "cache";
    /* "+": stop at the command, so its own options (bench --keys) are its */
    while ((opt = getopt_long(argc, argv, "+c:s:o:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': src.file = optarg; break;
        case 's': src.section = optarg; section_given = 1; break;
        case 'o': ov[src.noverrides++] = optarg; break;
        case 'h': usage(stdout); free(ov); return CLI_OK;
        case 'V':
            printf("cachet %d.%d.%d\n", CACHET_VERSION_MAJOR, CACHET_VERSION_MINOR,
                   CACHET_VERSION_PATCH);
            free(ov);
            return CLI_OK;
        default: usage(stderr); free(ov); return CLI_ERROR;
        }
    }
    if (!src.file) {
        const char *env = getenv("CACHET_CONFIG");
        if (env && *env)
            src.file = env;
    }
    if (section_given && !src.file) {
        fprintf(stderr, "cachet: -s %s: there is no config file to read a section from "
                        "(give one with -c or $CACHET_CONFIG)\n", src.section);
        free(ov);
        return CLI_ERROR;
    }
    if (optind >= argc) {
        fprintf(stderr, "cachet: no command given\n");
        usage(stderr);
        free(ov);
        return CLI_ERROR;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1, known = 0;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(cmd, commands[i].name) != 0)
            continue;
        known = 1;
        if (nargs < commands[i].min || nargs > commands[i].max) {
            fprintf(stderr, "cachet: %s: wrong number of arguments\n", cmd);
            usage(stderr);
            free(ov);
            return CLI_ERROR;
        }
    }
    if (!known) {
        fprintf(stderr, "cachet: unknown command '%s'\n", cmd);
        usage(stderr);
        free(ov);
        return CLI_ERROR;
    }

    cachet_config *cfg = NULL;
    cachet_region *r = cli_region_open(&src, &cfg, &described);
    if (!r) {
        free(ov);
        return CLI_ERROR;
    }
    char **args = argv + optind + 1;
    if (strcmp(cmd, "set") == 0)
        rc = cmd_set(r, args[0], args[1]);
    else if (strcmp(cmd, "get") == 0)
        rc = cmd_get(r, args[0]);
    else if (strcmp(cmd, "delete") == 0)
        rc = cmd_delete(r, args[0]);
    else if (strcmp(cmd, "check") == 0)
        rc = cli_check(r, described);
    else if (strcmp(cmd, "stats") == 0)
        rc = cli_stats(r, nargs, args);
    else if (strcmp(cmd, "compact") == 0)
        rc = cmd_compact(r);
    else if (strcmp(cmd, "invalidate") == 0)
        rc = cmd_invalidate(r, nargs, args);
    else
        rc = cli_bench(r, nargs, args);
    cachet_region_close(r);
    cachet_config_free(cfg);
    free(ov);
    return rc;
}
