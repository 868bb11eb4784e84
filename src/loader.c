/* The plugin loader, for backends and proxies alike.  Plugins are looked
 * for, in order, in the directories of $CACHET_PLUGIN_PATH (absolute only:
 * a relative entry is an error naming it, since which directory it means
 * would depend on the process's working directory),
 * then the build tree's plugin directory when this libcachet is itself the
 * build tree's (so `make check` and the uninstalled tool work), then the
 * installed directory of their kind; an absolute .so path is taken as it
 * is.  A proxy name is first looked up among the built-in proxies.  A
 * loaded plugin stays loaded for the life of the process, as in APR's dbm
 * layer: unloading code that another region or thread may still run is not
 * worth the memory it would give back. */
#include "config.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "loader.h"
#include "backend_table.h"

#define PATH_MAX_LEN 4096

/* What tells a backend plugin from a proxy plugin. */
typedef struct {
    const char *what;         /* "backend" / "proxy", for messages */
    const char *symbol;       /* the entry it exports */
    const char *build_dir;    /* under the build tree */
    const char *install_dir;  /* compiled in */
} plugin_kind;

static const plugin_kind backend_kind = {"backend", CACHET_BACKEND_ENTRY_SYMBOL, "backends/.libs",
                                         CACHET_PLUGIN_DIR};
static const plugin_kind proxy_kind = {"proxy", CACHET_PROXY_ENTRY_SYMBOL, "proxies/.libs",
                                       CACHET_PROXY_DIR};

typedef struct loaded {
    char *name;
    const plugin_kind *kind;
    const void *ops;
    struct loaded *next;
} loaded;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static loaded *registry;

static int is_so_path(const char *name)
{
    size_t n = strlen(name);
    return name[0] == '/' && n > 3 && strcmp(name + n - 3, ".so") == 0;
}

/* Plain names only: letters, digits, '_' and '-'; nothing that walks out
 * of a plugin directory. */
static int is_plain_name(const char *name)
{
    if (!*name)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* True when the code of this library lives under the build tree. */
static int running_from_build_tree(void)
{
    Dl_info info;
    size_t n = strlen(CACHET_BUILD_DIR);
    if (!dladdr((void *)&running_from_build_tree, &info) || !info.dli_fname)
        return 0;
    return strncmp(info.dli_fname, CACHET_BUILD_DIR, n) == 0 && info.dli_fname[n] == '/';
}

/* The vtable's own checks: ABI version and required operations. */
static int vtable_ok(const plugin_kind *k, const void *ops, const char *name, const char *path)
{
    unsigned abi;
    int complete;
    if (k == &backend_kind) {
        const cachet_backend_ops *o = ops;
        abi = o->abi_version;
        complete = o->open && o->close && o->get && o->set && o->del;
    } else {
        const cachet_proxy_ops *o = ops;
        abi = o->abi_version;
        complete = o->open && o->close;
    }
    if (abi != CACHET_BACKEND_ABI_VERSION) {
        cachet__error(CACHET_ENOBACKEND, "%s %s: %s has plugin ABI version %u, this libcachet "
                      "needs version %u", k->what, name, path, abi, CACHET_BACKEND_ABI_VERSION);
        return 0;
    }
    if (!complete) {
        cachet__error(CACHET_ENOBACKEND, "%s %s: %s lacks a required operation (%s)", k->what,
                      name, path, k == &backend_kind ? "open, close, get, set, del"
                                                     : "open, close");
        return 0;
    }
    return 1;
}

/* Opens path and checks the vtable.  0 when the file does not exist (keep
 * looking), 1 when found and good, -1 when found but unusable (stop). */
static int try_open(const plugin_kind *k, const char *path, const char *name, const void **ops)
{
    void *h;
    const void *(*entry)(void);
    const void *o;
    FILE *f = fopen(path, "rb");

    if (!f)
        return 0;
    fclose(f);
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        cachet__error(CACHET_ENOBACKEND, "%s %s: cannot load %s: %s", k->what, name, path,
                      dlerror());
        return -1;
    }
    *(void **)&entry = dlsym(h, k->symbol);
    if (!entry) {
        cachet__error(CACHET_ENOBACKEND, "%s %s: %s does not export %s (is it a %s plugin?)",
                      k->what, name, path, k->symbol, k->what);
        dlclose(h);
        return -1;
    }
    if (!(o = entry())) {
        cachet__error(CACHET_ENOBACKEND, "%s %s: %s returned no vtable", k->what, name, path);
        dlclose(h);
        return -1;
    }
    if (!vtable_ok(k, o, name, path)) {
        dlclose(h);
        return -1;
    }
    *ops = o;
    return 1;
}

/* Builds the list of directories to search, ':'-separated, into dirs.  A
 * relative entry in CACHET_PLUGIN_PATH is refused, not skipped: skipping
 * it silently made a mistyped path look like a missing plugin.  Empty
 * entries ("a::b", a trailing ':') name no directory and are passed over. */
static cachet_status search_dirs(const plugin_kind *k, char *dirs, size_t size)
{
    const char *env = secure_getenv("CACHET_PLUGIN_PATH");
    size_t used = 0;
    dirs[0] = '\0';
    if (env) {
        const char *p = env;
        while (*p) {
            size_t n = strcspn(p, ":");
            if (n && p[0] != '/')
                return cachet__error(CACHET_EINVAL, "CACHET_PLUGIN_PATH: entry '%.*s' is a "
                                     "relative directory (every entry must be absolute)",
                                     (int)(n > 256 ? 256 : n), p);
            if (n && used + n + 2 < size) {
                memcpy(dirs + used, p, n);
                used += n;
                dirs[used++] = ':';
            }
            p += n + (p[n] == ':');
        }
    }
    if (running_from_build_tree())
        used += (size_t)snprintf(dirs + used, size - used, "%s/%s:", CACHET_BUILD_DIR,
                                 k->build_dir);
    if (used < size)
        snprintf(dirs + used, size - used, "%s", k->install_dir);
    return CACHET_OK;
}

static cachet_status find_and_open(const plugin_kind *k, const char *name, const void **ops)
{
    char dirs[PATH_MAX_LEN * 2], path[PATH_MAX_LEN];
    const char *p;
    int r;

    if (is_so_path(name)) {
        r = try_open(k, name, name, ops);
        if (r == 0)
            return cachet__error(CACHET_ENOBACKEND, "%s %s: no such file", k->what, name);
        return r > 0 ? CACHET_OK : CACHET_ENOBACKEND;
    }
    if (k == &backend_kind && !strchr(name, '/') && !strstr(name, "..") && strchr(name, '.')) {
        char known[512];
        cachet__backend_names(known, sizeof known);
        return cachet__error(CACHET_ENOBACKEND, "backend %s: cachet has no such backend (it has "
                             "%s, and plugins by plain name or absolute .so path)", name, known);
    }
    if (!is_plain_name(name))
        return cachet__error(CACHET_EINVAL, "%s '%s': a %s name holds only letters, digits, '_' "
                             "and '-' (or is an absolute path to a .so)", k->what, name, k->what);
    if (search_dirs(k, dirs, sizeof dirs) != CACHET_OK)
        return CACHET_EINVAL;
    for (p = dirs; *p; ) {
        size_t n = strcspn(p, ":");
        snprintf(path, sizeof path, "%.*s/%s.so", (int)n, p, name);
        r = try_open(k, path, name, ops);
        if (r != 0)
            return r > 0 ? CACHET_OK : CACHET_ENOBACKEND;
        p += n + (p[n] == ':');
    }
    for (char *c = dirs; *c; c++)
        if (*c == ':')
            *c = ' ';
    return cachet__error(CACHET_ENOBACKEND, "%s %s: no plugin %s.so in %s "
                         "(directories from CACHET_PLUGIN_PATH are searched first)",
                         k->what, name, name, dirs);
}

static cachet_status load(const plugin_kind *k, const char *name, const void **ops)
{
    cachet_status st = CACHET_OK;
    loaded *l;

    pthread_mutex_lock(&registry_lock);
    for (l = registry; l; l = l->next)
        if (l->kind == k && strcmp(l->name, name) == 0) {
            *ops = l->ops;
            goto out;
        }
    st = find_and_open(k, name, ops);
    if (st == CACHET_OK) {
        l = calloc(1, sizeof *l);
        if (l && (l->name = cachet__strdup(name))) {
            l->kind = k;
            l->ops = *ops;
            l->next = registry;
            registry = l;
        } else {
            free(l);   /* still usable, only not remembered */
        }
    }
out:
    pthread_mutex_unlock(&registry_lock);
    return st;
}

cachet_status cachet_loader_get(const char *name, const cachet_backend_ops **ops)
{
    const void *o;
    cachet_status st = load(&backend_kind, name, &o);
    if (st == CACHET_OK)
        *ops = o;
    return st;
}

cachet_status cachet_loader_get_proxy(const char *name, const cachet_proxy_ops **ops)
{
    const void *o;
    cachet_status st;
    for (size_t i = 0; cachet__builtin_proxies[i]; i++)
        if (strcmp(cachet__builtin_proxies[i]->name, name) == 0) {
            *ops = cachet__builtin_proxies[i];
            return CACHET_OK;
        }
    if ((st = load(&proxy_kind, name, &o)) == CACHET_OK)
        *ops = o;
    return st;
}
