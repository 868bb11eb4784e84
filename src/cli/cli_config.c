/* Where the tool's configuration comes from: -c FILE, else $CACHET_CONFIG,
 * else the embedded default; then the -o OPTION=VALUE overrides in order.
 *
 * The embedded default is the dbm backend in
 * ${XDG_CACHE_HOME:-$HOME/.cache}/cachet/cache.db with values that never
 * expire, so that `cachet set` in one run and `cachet get` in the next work
 * with no server and no config (a tool run is a new process each time, so
 * the memory backend could never hit).  A build without gdbm falls back to
 * the memory backend and says so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"

int cli_fail(const char *what, cachet_status st)
{
    const char *detail = cachet_errmsg();

    if (detail && *detail)
        fprintf(stderr, "cachet: %s: %s: %s\n", what, cachet_strerror(st), detail);
    else
        fprintf(stderr, "cachet: %s: %s\n", what, cachet_strerror(st));
    return CLI_ERROR;
}

/* mkdir -p for the default database's directory (0700: a user's cache). */
static int make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static char default_db[4096];

/* The embedded default's database path; creates its directory. */
static const char *default_db_path(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[4000];

    if (xdg && xdg[0] == '/')
        snprintf(dir, sizeof dir, "%s/cachet", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/cachet", home);
    else {
        fprintf(stderr, "cachet: embedded default: neither XDG_CACHE_HOME nor HOME is set; "
                        "give a config with -c\n");
        return NULL;
    }
    if (make_dirs(dir) != 0) {
        fprintf(stderr, "cachet: embedded default: cannot create %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    snprintf(default_db, sizeof default_db, "%s/cache.db", dir);
    return default_db;
}

static int overrides_backend(const cli_source *src)
{
    for (size_t i = 0; i < src->noverrides; i++)
        if (strncmp(src->overrides[i], "backend=", 8) == 0)
            return 1;
    return 0;
}

static cachet_status set_checked(cachet_config *c, const char *option, const char *value)
{
    cachet_status st = cachet_config_set(c, option, value);
    if (st != CACHET_OK)
        cli_fail("embedded default", st);
    return st;
}

/* The embedded default: dbm (or, where dbm is not built, memory) with
 * values that never expire; -o backend=NAME replaces it. */
static cachet_status embedded_default(cachet_config *c, const cli_source *src, int memory)
{
    char arg[4200];

    if (set_checked(c, "enabled", "true") != CACHET_OK)
        return CACHET_EINVAL;
    if (overrides_backend(src))       /* -o backend=...: the user's choice, no dbm file */
        return CACHET_OK;
    if (memory)
        return set_checked(c, "backend", "memory");
    const char *db = default_db_path();
    if (!db)
        return CACHET_EINVAL;
    snprintf(arg, sizeof arg, "filename:%s", db);
    if (set_checked(c, "backend", "dbm") != CACHET_OK ||
        set_checked(c, "backend_argument", arg) != CACHET_OK ||
        set_checked(c, "expiration_time", "-1") != CACHET_OK)
        return CACHET_EINVAL;
    return CACHET_OK;
}

/* -o OPTION=VALUE, in order. */
static cachet_status apply_overrides(cachet_config *c, const cli_source *src)
{
    for (size_t i = 0; i < src->noverrides; i++) {
        const char *o = src->overrides[i], *eq = strchr(o, '=');
        char name[128];
        cachet_status st;

        if (!eq || eq == o) {
            fprintf(stderr, "cachet: -o %s: expected OPTION=VALUE\n", o);
            return CACHET_EINVAL;
        }
        if ((size_t)(eq - o) >= sizeof name) {
            fprintf(stderr, "cachet: -o %.40s...: no [cache] option has so long a name\n", o);
            return CACHET_EINVAL;
        }
        memcpy(name, o, (size_t)(eq - o));
        name[eq - o] = '\0';
        if (strcmp(name, "backend") == 0 && !eq[1]) {
            /* an empty value means unset, which is the null backend: a
             * `set` would succeed and store nothing */
            fprintf(stderr, "cachet: -o backend=: no backend named (-o backend=null if "
                            "storing nothing is what you want)\n");
            return CACHET_EINVAL;
        }
        st = cachet_config_set(c, name, eq + 1);
        if (st != CACHET_OK) {
            char what[200];
            snprintf(what, sizeof what, "-o %s", name);
            return cli_fail(what, st), st;
        }
    }
    return CACHET_OK;
}

/* Says where the config came from, as the region will open it. */
static void describe(const cachet_config *c, const cli_source *src, int memory, char *buf,
                     size_t size)
{
    const char *backend = cachet_config_backend(c), *file = cachet_config_backend_arg(c, "filename");

    if (src->file)
        snprintf(buf, size, "%s [%s]", src->file, src->section ? src->section : "cache");
    else if (overrides_backend(src))
        snprintf(buf, size, "the -o options");
    else if (memory)
        snprintf(buf, size, "the memory backend (dbm is not available)");
    else
        snprintf(buf, size, "the embedded default (%s in %s)", backend ? backend : "dbm",
                 file ? file : "?");
}

static cachet_config *build(const cli_source *src, int memory)
{
    cachet_config *c = cachet_config_new();
    cachet_status st;

    if (!c) {
        fprintf(stderr, "cachet: out of memory\n");
        return NULL;
    }
    if (src->file) {
        st = cachet_config_load(c, src->file, src->section);
        if (st != CACHET_OK) {
            cli_fail("config", st);
            goto fail;
        }
    } else if (embedded_default(c, src, memory) != CACHET_OK) {
        goto fail;
    }
    if (apply_overrides(c, src) != CACHET_OK)
        goto fail;
    return c;
fail:
    cachet_config_free(c);
    return NULL;
}

cachet_region *cli_region_open(const cli_source *src, cachet_config **cfg, const char **out_described)
{
    static char described[4400];
    cachet_region *r = NULL;
    cachet_config *c = build(src, 0);
    cachet_status st;
    int memory = 0;

    if (!c)
        return NULL;
    st = cachet_region_open(c, &r);
    if (st == CACHET_ENOBACKEND && !src->file && !overrides_backend(src)) {
        /* a build without gdbm: still a working tool, for this run only */
        fprintf(stderr, "cachet: the dbm backend is not available (%s); using the memory "
                        "backend, whose values last only this run\n", cachet_errmsg());
        cachet_config_free(c);
        if (!(c = build(src, memory = 1)))
            return NULL;
        st = cachet_region_open(c, &r);
    }
    describe(c, src, memory, described, sizeof described);
    if (st != CACHET_OK) {
        char what[4500];
        snprintf(what, sizeof what, "opening the region (config from %s)", described);
        cli_fail(what, st);
        cachet_config_free(c);
        return NULL;
    }
    *cfg = c;
    if (out_described)
        *out_described = described;
    return r;
}
