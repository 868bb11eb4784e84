/* cachet_metrics_prometheus(): this process's region in the Prometheus
 * text format 0.0.4.  Every sample carries backend="NAME"; every metric
 * keeps one label set.  What it writes:
 *
 *   - the region's counters (cachet_hits_total ... cachet_fallbacks_total);
 *   - cachet_server_up{server} and cachet_server_failures_total{server},
 *     one each per server of a networked backend (its servers operation,
 *     which never blocks);
 *   - every layer's report as samples of their own: a numeric line NAME
 *     of the backend becomes cachet_backend_NAME; a line "SERVER NAME"
 *     (a server's own figure, e.g. memcached's curr_items) becomes
 *     cachet_backend_server_NAME{server="SERVER"}; a proxy's line NAME
 *     becomes cachet_NAME (a counter when NAME ends in _total, else a
 *     gauge); "true"/"false" read as 1/0; other text (a file name, a
 *     protocol) becomes cachet_backend_info{name,value} 1.  The report's
 *     free-text "server" lines are left to `cachet stats`: the gauges above
 *     say the same with a stable label set;
 *   - with the metrics proxy in the chain, its histograms
 *     cachet_operation_seconds{op}.
 *
 * A report may ask the servers for their own figures (memcached stats,
 * redis INFO): a scrape then costs one round trip per server, bounded by
 * the backend's socket timeout; hosts marked down are not asked. */
#include "config.h"
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "region.h"
#include "metrics.h"
#include "proxies.h"

#define MAX_SERVERS 256
#define MAX_LINES   1024

/* ---- the region's counters ---- */

typedef struct {
    const char *name, *help;
    unsigned    field;          /* CACHET_STAT_* (src/region.h) */
} counter;

#define C(f, h) { "cachet_" #f "_total", h, CACHET_STAT_##f }
static const counter counters[] = {
    C(hits, "Gets that found a fresh value."),
    C(misses, "Gets that found nothing, an expired or an invalidated value."),
    C(sets, "Values stored."),
    C(deletes, "Keys deleted."),
    C(errors, "Backend failures returned or absorbed."),
    C(creator_calls, "get_or_create creator calls."),
    C(lock_waits, "get_or_create callers that waited for another caller's creator."),
    C(stale_served, "Old values served while another caller regenerates."),
    C(corrupt, "Stored values that failed to decode or verify."),
    C(fallbacks, "get_or_create calls that bypassed a failing backend."),
    C(early_refreshes, "Fresh values regenerated before they expired (cachet_early_refresh)."),
    C(background_refreshes, "Regenerations handed to refresh threads (cachet_refresh_threads)."),
};
#undef C

static void backend_label(cachet_prom *w, const char *backend)
{
    cachet__prom_str(w, "backend=\"");
    cachet__prom_label(w, backend);
    cachet__prom_put(w, "\"", 1);
}

static void write_counters(cachet_region *r, cachet_prom *w)
{
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        cachet__prom_family(w, counters[i].name, "counter", counters[i].help);
        cachet__prom_printf(w, "%s{", counters[i].name);
        backend_label(w, r->backend);
        cachet__prom_printf(w, "} %llu\n",
                            (unsigned long long)cachet__stat_sum(&r->stats, counters[i].field));
    }
}

/* ---- servers ---- */

/* "metric{backend=...,server=\"...\"}" of one server's line, its value to follow. */
static void server_labels(cachet_prom *w, const char *metric, const cachet_region *r,
                          const cachet_server_state *s)
{
    cachet__prom_str(w, metric);
    cachet__prom_str(w, "{");
    backend_label(w, r->backend);
    cachet__prom_str(w, ",server=\"");
    cachet__prom_label(w, s->name ? s->name : "");
    cachet__prom_str(w, "\"}");
}

static void write_servers(cachet_region *r, cachet_prom *w)
{
    cachet_server_state *s = calloc(MAX_SERVERS, sizeof *s);
    size_t n;
    if (!s)
        return;
    n = cachet__below_servers(&r->below, s, MAX_SERVERS);
    if (n > MAX_SERVERS)
        n = MAX_SERVERS;
    if (n) {
        cachet__prom_family(w, "cachet_server_up", "gauge",
                            "1 while the backend uses the server, 0 while it has marked it down.");
        for (size_t i = 0; i < n; i++) {
            server_labels(w, "cachet_server_up", r, &s[i]);
            cachet__prom_printf(w, " %d\n", s[i].up ? 1 : 0);
        }
        cachet__prom_family(w, "cachet_server_failures_total", "counter",
                            "Failed calls to the server since the region opened.");
        for (size_t i = 0; i < n; i++) {
            server_labels(w, "cachet_server_failures_total", r, &s[i]);
            cachet__prom_printf(w, " %llu\n", (unsigned long long)s[i].failures);
        }
    }
    free(s);
}

/* ---- the layers' reports ---- */

enum { K_NUMBER, K_SERVER, K_INFO };

typedef struct {
    char  *family;       /* metric name */
    char  *label;        /* K_SERVER: the server; K_INFO: the line's name */
    char  *text;         /* K_INFO: the line's value */
    double v;
    int    kind, proxy;
    size_t order;        /* arrival, so that sorting keeps the report's order */
} line;

typedef struct {
    line  *lines;
    size_t n;
    int    proxy;        /* the layer reporting is a proxy */
} collect;

/* NAME as a metric name's tail: [a-zA-Z0-9_], anything else '_'. */
static char *metric_name(const char *prefix, const char *name)
{
    size_t pl = strlen(prefix), nl = strlen(name);
    char *s = malloc(pl + nl + 1);
    if (!s)
        return NULL;
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)name[i];
        s[pl + i] = (char)(isalnum(c) && c < 0x80 ? c : '_');
    }
    s[pl + nl] = '\0';
    return s;
}

static int number(const char *s, double *v)
{
    char *end;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *v = s[0] == 't';
        return 1;
    }
    if (!*s || isspace((unsigned char)*s))
        return 0;
    *v = strtod(s, &end);
    return *end == '\0' && isfinite(*v);
}

static void collect_line(void *arg, const char *name, const char *value)
{
    collect *c = arg;
    line *l;
    const char *sp;
    if (!name || !value || c->n >= MAX_LINES || strcmp(name, "server") == 0)
        return;
    l = &c->lines[c->n];
    memset(l, 0, sizeof *l);
    l->proxy = c->proxy;
    l->order = c->n;
    if ((sp = strrchr(name, ' ')) && sp != name && sp[1]) {   /* "SERVER NAME" */
        if (!number(value, &l->v))
            return;
        l->kind = K_SERVER;
        l->family = metric_name("cachet_backend_server_", sp + 1);
        l->label = cachet__strndup(name, (size_t)(sp - name));
    } else if (number(value, &l->v)) {
        l->kind = K_NUMBER;
        l->family = metric_name(c->proxy ? "cachet_" : "cachet_backend_", name);
    } else {
        l->kind = K_INFO;
        l->v = 1;
        l->family = cachet__strdup("cachet_backend_info");
        l->label = cachet__strdup(name);
        l->text = cachet__strdup(value);
        if (!l->text)
            goto oom;
    }
    if (!l->family || (l->kind != K_NUMBER && !l->label))
        goto oom;
    c->n++;
    return;
oom:
    free(l->family);
    free(l->label);
    free(l->text);
}

static int by_family(const void *a, const void *b)
{
    const line *x = a, *y = b;
    int c = strcmp(x->family, y->family);
    return c ? c : x->order < y->order ? -1 : x->order > y->order;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

static int same_labels(const line *a, const line *b)
{
    return strcmp(a->family, b->family) == 0 &&
           (a->label == b->label || (a->label && b->label && strcmp(a->label, b->label) == 0)) &&
           (a->text == b->text || (a->text && b->text && strcmp(a->text, b->text) == 0));
}

static void write_reports(cachet_region *r, cachet_prom *w)
{
    collect c = {calloc(MAX_LINES, sizeof(line)), 0, 0};
    if (!c.lines)
        return;
    for (size_t i = 0; i < r->below.nlayers; i++) {
        c.proxy = i + 1 < r->below.nlayers;
        /* a failed report still gave the lines it gave */
        (void)cachet__below_report_layer(&r->below, i, collect_line, &c);
    }
    cachet__error_clear();
    qsort(c.lines, c.n, sizeof *c.lines, by_family);
    for (size_t i = 0; i < c.n; i++) {
        const line *l = &c.lines[i];
        char help[300];
        if (i && same_labels(l, &c.lines[i - 1]))
            continue;                    /* one sample per label set */
        if (i == 0 || strcmp(l->family, c.lines[i - 1].family) != 0) {
            const char *type = l->kind == K_INFO ? "gauge"
                               : ends_with(l->family, "_total") ? "counter" : "gauge";
            if (l->kind == K_INFO)
                snprintf(help, sizeof help, "The backend's settings, one sample per setting.");
            else if (l->kind == K_SERVER)
                snprintf(help, sizeof help, "Each server's own figure %s (the backend's report).",
                         l->family + strlen("cachet_backend_server_"));
            else
                snprintf(help, sizeof help, "The %s's figure %s (its report).",
                         l->proxy ? "proxy" : "backend",
                         l->family + strlen(l->proxy ? "cachet_" : "cachet_backend_"));
            cachet__prom_family(w, l->family, type, help);
        }
        cachet__prom_printf(w, "%s{", l->family);
        backend_label(w, r->backend);
        if (l->kind == K_SERVER) {
            cachet__prom_str(w, ",server=\"");
            cachet__prom_label(w, l->label);
            cachet__prom_put(w, "\"", 1);
        } else if (l->kind == K_INFO) {
            cachet__prom_str(w, ",name=\"");
            cachet__prom_label(w, l->label);
            cachet__prom_str(w, "\",value=\"");
            cachet__prom_label(w, l->text);
            cachet__prom_put(w, "\"", 1);
        }
        cachet__prom_printf(w, "} %.17g\n", l->v);
    }
    for (size_t i = 0; i < c.n; i++) {
        free(c.lines[i].family);
        free(c.lines[i].label);
        free(c.lines[i].text);
    }
    free(c.lines);
}

/* ---- the metrics proxy's histograms, and the creator's time ---- */

static void *metrics_proxy_state(cachet_region *r)
{
    for (size_t i = 0; i + 1 < r->below.nlayers; i++)
        if (r->below.layers[i].proxy == &cachet__metrics_proxy)
            return r->below.layers[i].state;
    return NULL;
}

void cachet__metrics_creator_time(cachet_region *r, int64_t ns)
{
    void *m = metrics_proxy_state(r);
    if (m)
        cachet__metrics_proxy_observe_create(m, ns);
}

void cachet__proxies_invalidated(cachet_region *r)
{
    for (size_t i = 0; i + 1 < r->below.nlayers; i++)
        if (r->below.layers[i].proxy == &cachet__near_proxy)
            cachet__near_proxy_clear(r->below.layers[i].state);
}

CACHET_EXPORT size_t cachet_metrics_prometheus(cachet_region *r, char *buf, size_t size)
{
    cachet_prom w = {buf, buf ? size : 0, 0};
    void *m;
    if (w.size)
        buf[0] = '\0';
    if (!r) {
        cachet__error(CACHET_EINVAL, "cachet_metrics_prometheus: NULL region");
        return 0;
    }
    write_counters(r, &w);
    write_servers(r, &w);
    if ((m = metrics_proxy_state(r)))
        cachet__metrics_proxy_write(m, &w, r->backend);
    write_reports(r, &w);
    return w.len;
}
