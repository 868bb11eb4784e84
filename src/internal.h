/* Internal declarations shared by libcachet's source files (not installed). */
#ifndef CACHET_INTERNAL_H
#define CACHET_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cachet/cachet.h>
#include <cachet/backend.h>

#define CACHET_EXPORT __attribute__((visibility("default")))
#define CACHET_ERRMSG_MAX 1024

/* error.c: set this thread's cachet_errmsg() and return st. */
cachet_status cachet__error(cachet_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
cachet_status cachet__verror(cachet_status st, const char *fmt, va_list ap);
/* Empties this thread's message (one byte written: cheap on hot paths), so
 * a failure after it can tell whether the backend described itself.
 * Inline: a call was a tenth of the region's own part of a memory get. */
extern _Thread_local unsigned char cachet__errmsg_set __attribute__((tls_model("initial-exec")));
static inline void cachet__error_clear(void)
{
    cachet__errmsg_set = 0;
}
int  cachet__error_isset(void);
/* Prepends "prefix: " to this thread's message (e.g. the backend name). */
void cachet__error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* log.c */
void cachet__log(cachet_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cachet__vlog(cachet_log_level level, const char *fmt, va_list ap);

/* value_stash.c: releases the block of a value cachet gave a caller
 * (its header's start); the thread keeps a few for cachet_backend_value_alloc. */
void cachet__value_block_free(void *block);

/* strings */
char *cachet__strdup(const char *s);
char *cachet__strndup(const char *s, size_t n);

#endif
