/* A plugin built for plugin ABI 1 (before writes carried a lifetime and
 * add existed): the loader must refuse it, naming both versions. */
#include <cachet/backend.h>

static const cachet_backend_ops ops = {
    .abi_version = 1,
    .name = "abi_bad",
};

__attribute__((visibility("default"))) const cachet_backend_ops *cachet_backend_entry(void)
{
    return &ops;
}
