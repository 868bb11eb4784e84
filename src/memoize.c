/* Memoising C functions: a key from a function name and its arguments, as
 * dogpile.cache's function_key_generator ("name|arg1 arg2"), then
 * get_or_create under it. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

CACHET_EXPORT size_t cachet_function_key(char *buf, size_t size, const char *function,
                                         const char *namespace_, const char *const *args,
                                         size_t nargs)
{
    size_t need = 0;
    /* appends s to buf while it fits, and counts its bytes either way */
#define APPEND(s) do {                                             \
        const char *s_ = (s);                                      \
        size_t l_ = strlen(s_);                                    \
        if (buf && need + 1 < size)                                \
            memcpy(buf + need, s_, need + l_ < size ? l_ : size - 1 - need); \
        need += l_;                                                \
    } while (0)
    APPEND(function ? function : "");
    if (namespace_) {
        APPEND("|");
        APPEND(namespace_);
    }
    APPEND("|");
    for (size_t i = 0; i < nargs; i++) {
        if (i)
            APPEND(" ");
        APPEND(args[i] ? args[i] : "None");
    }
#undef APPEND
    if (buf && size)
        buf[need < size ? need : size - 1] = '\0';
    return need + 1;
}

CACHET_EXPORT cachet_status cachet_memoize(cachet_region *r, const char *function,
                                           const char *const *args, size_t nargs,
                                           cachet_creator create, void *arg,
                                           void **value, size_t *len)
{
    char small[256], *key = small;
    size_t need;
    cachet_status st;

    if (!function || (!args && nargs))
        return cachet__error(CACHET_EINVAL, "cachet_memoize: NULL function or arguments");
    need = cachet_function_key(small, sizeof small, function, NULL, args, nargs);
    if (need > sizeof small) {
        if (!(key = malloc(need)))
            return cachet__error(CACHET_ENOMEM, "cachet_memoize %s: out of memory", function);
        cachet_function_key(key, need, function, NULL, args, nargs);
    }
    st = cachet_get_or_create(r, key, create, arg, value, len);
    if (key != small)
        free(key);
    return st;
}
