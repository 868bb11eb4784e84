/* The plugin loader.  Plugins are looked for, in order, in the directories
 * of $CACHET_PLUGIN_PATH (absolute only), then the build tree's plugin
 * directory when this libcachet is itself the build tree's (so `make check`
 * and the uninstalled tool work), then the installed directory.  A loaded
 * plugin stays loaded for the life of the process, as in APR's dbm layer:
 * unloading code that another region or thread may still run is not worth
 * the memory it would give back. */
#include "config.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "loader.h"

#define PATH_MAX_LEN 4096

typedef struct loaded {
    char *name;
    const cachet_backend_ops *ops;
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

/* Opens path and checks the vtable.  0 when the file does not exist (keep
 * looking), 1 when found and good, -1 when found but unusable (stop). */
static int try_open(const char *path, const char *name, const cachet_backend_ops **ops)
{
    void *h;
    cachet_backend_entry_fn entry;
    const cachet_backend_ops *o;
    FILE *f = fopen(path, "rb");

    if (!f)
        return 0;
    fclose(f);
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        cachet__error(CACHET_ENOBACKEND, "backend %s: cannot load %s: %s", name, path, dlerror());
        return -1;
    }
    *(void **)&entry = dlsym(h, CACHET_BACKEND_ENTRY_SYMBOL);
    if (!entry) {
        cachet__error(CACHET_ENOBACKEND, "backend %s: %s does not export %s", name, path,
                      CACHET_BACKEND_ENTRY_SYMBOL);
        dlclose(h);
        return -1;
    }
    o = entry();
    if (!o) {
        cachet__error(CACHET_ENOBACKEND, "backend %s: %s returned no vtable", name, path);
        dlclose(h);
        return -1;
    }
    if (o->abi_version != CACHET_BACKEND_ABI_VERSION) {
        cachet__error(CACHET_ENOBACKEND,
                      "backend %s: %s has plugin ABI version %u, this libcachet needs version %u",
                      name, path, o->abi_version, CACHET_BACKEND_ABI_VERSION);
        dlclose(h);
        return -1;
    }
    if (!o->open || !o->close || !o->get || !o->set || !o->del) {
        cachet__error(CACHET_ENOBACKEND, "backend %s: %s lacks a required operation "
                      "(open, close, get, set, del)", name, path);
        dlclose(h);
        return -1;
    }
    *ops = o;
    return 1;
}

/* Builds the list of directories to search, ':'-separated, into dirs. */
static void search_dirs(char *dirs, size_t size)
{
    const char *env = secure_getenv("CACHET_PLUGIN_PATH");
    size_t used = 0;
    dirs[0] = '\0';
    if (env) {
        const char *p = env;
        while (*p) {
            size_t n = strcspn(p, ":");
            if (n && p[0] == '/' && used + n + 2 < size) {   /* relative entries are skipped */
                memcpy(dirs + used, p, n);
                used += n;
                dirs[used++] = ':';
            }
            p += n + (p[n] == ':');
        }
    }
    if (running_from_build_tree())
        used += (size_t)snprintf(dirs + used, size - used, "%s/backends/.libs:", CACHET_BUILD_DIR);
    if (used < size)
        snprintf(dirs + used, size - used, "%s", CACHET_PLUGIN_DIR);
}

static cachet_status find_and_open(const char *name, const cachet_backend_ops **ops)
{
    char dirs[PATH_MAX_LEN * 2], path[PATH_MAX_LEN];
    const char *p;
    int r;

    if (is_so_path(name)) {
        r = try_open(name, name, ops);
        if (r == 0)
            return cachet__error(CACHET_ENOBACKEND, "backend %s: no such file", name);
        return r > 0 ? CACHET_OK : CACHET_ENOBACKEND;
    }
    if (!strchr(name, '/') && !strstr(name, "..") && strchr(name, '.'))
        return cachet__error(CACHET_ENOBACKEND, "backend %s: cachet has no such backend (it has "
                             "null, memory, dbm, memcached, memcache_pool, redis, redis_sentinel, "
                             "redis_cluster, and plugins by plain name or absolute .so path)", name);
    if (!is_plain_name(name))
        return cachet__error(CACHET_EINVAL, "backend '%s': a backend name holds only letters, "
                             "digits, '_' and '-' (or is an absolute path to a .so)", name);
    search_dirs(dirs, sizeof dirs);
    for (p = dirs; *p; ) {
        size_t n = strcspn(p, ":");
        snprintf(path, sizeof path, "%.*s/%s.so", (int)n, p, name);
        r = try_open(path, name, ops);
        if (r != 0)
            return r > 0 ? CACHET_OK : CACHET_ENOBACKEND;
        p += n + (p[n] == ':');
    }
    for (char *c = dirs; *c; c++)
        if (*c == ':')
            *c = ' ';
    return cachet__error(CACHET_ENOBACKEND, "backend %s: no plugin %s.so in %s "
                         "(directories from CACHET_PLUGIN_PATH are searched first)",
                         name, name, dirs);
}

cachet_status cachet_loader_get(const char *name, const cachet_backend_ops **ops)
{
    cachet_status st = CACHET_OK;
    loaded *l;

    pthread_mutex_lock(&registry_lock);
    for (l = registry; l; l = l->next)
        if (strcmp(l->name, name) == 0) {
            *ops = l->ops;
            goto out;
        }
    st = find_and_open(name, ops);
    if (st == CACHET_OK) {
        l = calloc(1, sizeof *l);
        if (l && (l->name = cachet__strdup(name))) {
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
