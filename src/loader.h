/* Finds a backend or proxy plugin by name, dlopen()s it once, checks its ABI. */
#ifndef CACHET_LOADER_H
#define CACHET_LOADER_H

#include <cachet/backend.h>

/* name: a canonical backend name ("memory") or an absolute path to a .so.
 * CACHET_OK, CACHET_EINVAL (a name that could escape the plugin
 * directories) or CACHET_ENOBACKEND (not found, not loadable, wrong ABI);
 * the message names the backend and every place looked in. */
cachet_status cachet_loader_get(const char *name, const cachet_backend_ops **ops);

/* The same for a proxy: a built-in name ("log"), a plugin's plain name, or
 * an absolute path to a .so exporting cachet_proxy_entry(). */
cachet_status cachet_loader_get_proxy(const char *name, const cachet_proxy_ops **ops);

/* The proxies compiled into libcachet, NULL-terminated (proxies/). */
extern const cachet_proxy_ops *const cachet__builtin_proxies[];

#endif
