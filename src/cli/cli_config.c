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

static cachet_status embedded_default(cachet_config *c, const cli_source *src, const char **described)
{
    static char text[4200];

    if (set_checked(c, "enabled", "true") != CACHET_OK)
        return CACHET_EINVAL;
    if (overrides_backend(src)) {     /* -o backend=...: the user's choice, no dbm file */
        *described = "the -o options";
        return CACHET_OK;
    }
    const char *db = default_db_path();
    if (!db)
        return CACHET_EINVAL;
    snprintf(text, sizeof text, "filename:%s", db);
    if (set_checked(c, "backend", "dbm") != CACHET_OK ||
        set_checked(c, "backend_argument", text) != CACHET_OK ||
        set_checked(c, "expiration_time", "-1") != CACHET_OK)
        return CACHET_EINVAL;
    snprintf(text, sizeof text, "the embedded default (dbm in %s)", db);
    *described = text;
    return CACHET_OK;
}

cachet_config *cli_config_build(const cli_source *src, const char **described)
{
    static char from[4200];
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
        snprintf(from, sizeof from, "%s [%s]", src->file, src->section ? src->section : "cache");
        *described = from;
    } else if (embedded_default(c, src, described) != CACHET_OK) {
        goto fail;
    }
    for (size_t i = 0; i < src->noverrides; i++) {
        const char *o = src->overrides[i], *eq = strchr(o, '=');
        char name[128];

        if (!eq || eq == o || (size_t)(eq - o) >= sizeof name) {
            fprintf(stderr, "cachet: -o %s: expected OPTION=VALUE\n", o);
            goto fail;
        }
        memcpy(name, o, (size_t)(eq - o));
        name[eq - o] = '\0';
        st = cachet_config_set(c, name, eq + 1);
        if (st != CACHET_OK) {
            char what[200];
            snprintf(what, sizeof what, "-o %s", name);
            cli_fail(what, st);
            goto fail;
        }
    }
    return c;
fail:
    cachet_config_free(c);
    return NULL;
}

cachet_region *cli_region_open(const cli_source *src, cachet_config **cfg, const char **out_described)
{
    const char *described = "";
    cachet_region *r = NULL;
    cachet_config *c = cli_config_build(src, &described);
    cachet_status st;

    if (!c)
        return NULL;
    st = cachet_region_open(c, &r);
    if (st == CACHET_ENOBACKEND && !src->file && !overrides_backend(src)) {
        /* a build without gdbm: still a working tool, for this run only */
        fprintf(stderr, "cachet: the dbm backend is not available (%s); using the memory "
                        "backend, whose values last only this run\n", cachet_errmsg());
        cachet_config_free(c);
        c = cachet_config_new();
        if (!c || cachet_config_set(c, "enabled", "true") != CACHET_OK ||
            cachet_config_set(c, "backend", "memory") != CACHET_OK) {
            cachet_config_free(c);
            fprintf(stderr, "cachet: out of memory\n");
            return NULL;
        }
        st = cachet_region_open(c, &r);
        described = "the memory backend (dbm is not available)";
    }
    if (st != CACHET_OK) {
        char what[4300];
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
