/* The Prometheus text writer (metrics.h): bounded like snprintf, so one
 * pass both measures and writes. */
#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "metrics.h"

void cachet__prom_put(cachet_prom *w, const char *s, size_t n)
{
    if (w->len + 1 < w->size) {
        size_t room = w->size - 1 - w->len;
        memcpy(w->buf + w->len, s, n < room ? n : room);
    }
    w->len += n;
    if (w->size)
        w->buf[w->len < w->size ? w->len : w->size - 1] = '\0';
}

void cachet__prom_str(cachet_prom *w, const char *s)
{
    cachet__prom_put(w, s, strlen(s));
}

void cachet__prom_printf(cachet_prom *w, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* every caller's line is short; a longer one is cut, never overrun */
    cachet__prom_put(w, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void cachet__prom_label(cachet_prom *w, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            cachet__prom_put(w, "\\\\", 2);
        else if (*s == '"')
            cachet__prom_put(w, "\\\"", 2);
        else if (*s == '\n')
            cachet__prom_put(w, "\\n", 2);
        else
            cachet__prom_put(w, s, 1);
    }
}

void cachet__prom_family(cachet_prom *w, const char *name, const char *type, const char *help)
{
    cachet__prom_printf(w, "# HELP %s ", name);
    /* HELP text escapes backslash and newline */
    for (const char *s = help; *s; s++) {
        if (*s == '\\')
            cachet__prom_put(w, "\\\\", 2);
        else if (*s == '\n')
            cachet__prom_put(w, "\\n", 2);
        else
            cachet__prom_put(w, s, 1);
    }
    cachet__prom_printf(w, "\n# TYPE %s %s\n", name, type);
}
