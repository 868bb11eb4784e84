/* Finds a backend plugin by name, dlopen()s it once, checks its ABI. */
#ifndef CACHET_LOADER_H
#define CACHET_LOADER_H

#include <cachet/backend.h>

/* name: a canonical backend name ("memory") or an absolute path to a .so.
 * CACHET_OK, CACHET_EINVAL (a name that could escape the plugin
 * directories) or CACHET_ENOBACKEND (not found, not loadable, wrong ABI);
 * the message names the backend and every place looked in. */
cachet_status cachet_loader_get(const char *name, const cachet_backend_ops **ops);

#endif
