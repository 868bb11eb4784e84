/* The one way cachet says anything: a callback the service installs. */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include "internal.h"

static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static cachet_log_fn log_fn;
static void *log_arg;

CACHET_EXPORT void cachet_set_logger(cachet_log_fn fn, void *arg)
{
    pthread_rwlock_wrlock(&log_lock);
    log_fn = fn;
    log_arg = arg;
    pthread_rwlock_unlock(&log_lock);
}

void cachet__vlog(cachet_log_level level, const char *fmt, va_list ap)
{
    char msg[1024];
    pthread_rwlock_rdlock(&log_lock);
    if (log_fn) {
        vsnprintf(msg, sizeof msg, fmt, ap);
        log_fn(log_arg, level, msg);
    }
    pthread_rwlock_unlock(&log_lock);
}

void cachet__log(cachet_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cachet__vlog(level, fmt, ap);
    va_end(ap);
}

CACHET_EXPORT void cachet_backend_log(cachet_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cachet__vlog(level, fmt, ap);
    va_end(ap);
}
