/* A plugin built for another plugin ABI: the loader must refuse it. */
#include <cachet/backend.h>

static const cachet_backend_ops ops = {
    .abi_version = CACHET_BACKEND_ABI_VERSION + 41,
    .name = "abi_bad",
};

__attribute__((visibility("default"))) const cachet_backend_ops *cachet_backend_entry(void)
{
    return &ops;
}
