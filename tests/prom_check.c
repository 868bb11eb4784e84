/* The checker of prom_check.h.  Rules (the format's, and promtool's lint):
 * names and label names match their grammars; label values use only the
 * escapes \\ \" \n; values are floats (or +Inf, -Inf, NaN); a family's
 * HELP and TYPE come at most once each, TYPE before its samples; a
 * family's samples are contiguous; no series repeats; every sample of a
 * metric has the same label names; counters end in _total and are never
 * negative; a histogram's buckets are cumulative in increasing le, end
 * with +Inf, and +Inf equals _count; the text ends with a newline.  Also
 * cachet's own rule: every sample carries a backend label. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "prom_check.h"

#define MAXF 512
#define MAXS 8192

static char msg[512];

typedef struct {
    char name[128];
    char type[16];
    int  help, typed, closed;
    char labelnames[256];     /* sorted label names of its first sample, without le */
} family;

typedef struct {
    family f[MAXF];
    size_t nf;
    char  *series[MAXS];
    size_t ns;
    int    cur;               /* index of the family being read, -1 none */
    /* histogram state */
    char   hkey[512];         /* labels without le of the current bucket run */
    double last_le, last_count;
    int    in_buckets, saw_inf;
    double inf_count;
} state;

static const char *fail(int line, const char *what, const char *l)
{
    snprintf(msg, sizeof msg, "line %d: %s: %.200s", line, what, l);
    return msg;
}

static int name_ok(const char *s, size_t n, int label)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalpha(c) || c == '_' || (!label && c == ':') || (i && isdigit(c))))
            return 0;
    }
    return 1;
}

static int value_ok(const char *s, double *v)
{
    char *end;
    if (strcmp(s, "+Inf") == 0) { *v = INFINITY; return 1; }
    if (strcmp(s, "-Inf") == 0) { *v = -INFINITY; return 1; }
    if (strcmp(s, "NaN") == 0) { *v = NAN; return 1; }
    if (!*s)
        return 0;
    *v = strtod(s, &end);
    return *end == '\0';
}

static family *find(state *st, const char *name, size_t n)
{
    for (size_t i = 0; i < st->nf; i++)
        if (strlen(st->f[i].name) == n && memcmp(st->f[i].name, name, n) == 0)
            return &st->f[i];
    return NULL;
}

static family *add(state *st, const char *name, size_t n)
{
    family *f;
    if (st->nf >= MAXF || n >= sizeof f->name)
        return NULL;
    f = &st->f[st->nf++];
    memset(f, 0, sizeof *f);
    memcpy(f->name, name, n);
    return f;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The family a sample name belongs to: histogram samples have suffixes. */
static family *family_of(state *st, const char *name, size_t n, const char **suffix)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count", NULL};
    family *f;
    *suffix = "";
    for (int i = 0; sfx[i]; i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && memcmp(name + n - k, sfx[i], k) == 0 && (f = find(st, name, n - k)) &&
            strcmp(f->type, "histogram") == 0) {
            *suffix = sfx[i];
            return f;
        }
    }
    return find(st, name, n);
}

static const char *check_sample(state *st, int ln, const char *l)
{
    const char *p = l, *name = l, *suffix;
    size_t nlen;
    char labels[32][160], lnames[32][64], sorted[1024] = "", key_nole[1024] = "", le[64] = "";
    size_t nl = 0;
    int has_backend = 0;
    double v;
    family *f;

    while (*p && *p != '{' && *p != ' ')
        p++;
    nlen = (size_t)(p - name);
    if (!name_ok(name, nlen, 0))
        return fail(ln, "bad metric name", l);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            const char *ln0 = p;
            size_t o = 0;
            while (*p && *p != '=')
                p++;
            if (!*p || !name_ok(ln0, (size_t)(p - ln0), 1) || (p - ln0 >= 2 && ln0[0] == '_' &&
                                                                ln0[1] == '_'))
                return fail(ln, "bad label name", l);
            if (nl >= 32 || (size_t)(p - ln0) >= sizeof lnames[0])
                return fail(ln, "too many or too long labels", l);
            snprintf(lnames[nl], sizeof lnames[0], "%.*s", (int)(p - ln0), ln0);
            for (size_t i = 0; i < nl; i++)
                if (strcmp(lnames[i], lnames[nl]) == 0)
                    return fail(ln, "label repeated", l);
            if (*++p != '"')
                return fail(ln, "label value not quoted", l);
            p++;
            while (*p && *p != '"') {
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        return fail(ln, "bad escape in label value", l);
                } else if (*p == '\n') {
                    return fail(ln, "newline in label value", l);
                }
                if (o + 1 < sizeof labels[0])
                    labels[nl][o++] = *p;
                p++;
            }
            if (*p != '"')
                return fail(ln, "unterminated label value", l);
            labels[nl][o] = '\0';
            p++;
            if (strcmp(lnames[nl], "backend") == 0)
                has_backend = 1;
            if (strcmp(lnames[nl], "le") == 0)
                snprintf(le, sizeof le, "%s", labels[nl]);
            nl++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return fail(ln, "expected , or } after a label", l);
        }
        p++;
    }
    if (*p != ' ')
        return fail(ln, "no space before the value", l);
    p++;
    {
        char val[64];
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        if (n >= sizeof val)
            return fail(ln, "value too long", l);
        memcpy(val, p, n);
        val[n] = '\0';
        if (!value_ok(val, &v))
            return fail(ln, "bad value", l);
        if (sp) {                       /* a timestamp: an integer */
            for (const char *t = sp + 1; *t; t++)
                if (!isdigit((unsigned char)*t) && !(t == sp + 1 && *t == '-'))
                    return fail(ln, "bad timestamp", l);
        }
    }
    if (!has_backend)
        return fail(ln, "sample without a backend label (cachet's rule)", l);
    f = family_of(st, name, nlen, &suffix);
    if (!f) {
        if (!(f = add(st, name, nlen)))
            return fail(ln, "too many families", l);
        strcpy(f->type, "untyped");
    }
    if (f->closed)
        return fail(ln, "samples of a family are not contiguous", l);
    if (st->cur >= 0 && &st->f[st->cur] != f)
        st->f[st->cur].closed = 1;
    st->cur = (int)(f - st->f);
    /* the series, and the label names without le */
    {
        char *sl[32];
        size_t o = 0, ko = 0;
        for (size_t i = 0; i < nl; i++)
            sl[i] = lnames[i];
        qsort(sl, nl, sizeof sl[0], cmp_str);
        for (size_t i = 0; i < nl; i++) {
            if (strcmp(sl[i], "le") == 0)
                continue;
            o += (size_t)snprintf(sorted + o, sizeof sorted - o, "%s,", sl[i]);
            for (size_t j = 0; j < nl; j++)
                if (lnames[j] == sl[i])
                    ko += (size_t)snprintf(key_nole + ko, sizeof key_nole - ko, "%s=%s,", sl[i],
                                           labels[j]);
        }
        if (strcmp(suffix, "") == 0 || strcmp(suffix, "_bucket") == 0 || !f->labelnames[0]) {
            if (!f->labelnames[0] && !(strcmp(f->type, "histogram") == 0 && *suffix == '\0'))
                snprintf(f->labelnames, sizeof f->labelnames, "%s", sorted);
            else if (strcmp(f->labelnames, sorted) != 0)
                return fail(ln, "a metric's samples have different label names", l);
        } else if (strcmp(f->labelnames, sorted) != 0) {
            return fail(ln, "a metric's samples have different label names", l);
        }
        if (st->ns >= MAXS)
            return fail(ln, "too many series", l);
        {
            char full[1400];
            snprintf(full, sizeof full, "%.*s|%s|le=%s", (int)nlen, name, key_nole, le);
            for (size_t i = 0; i < st->ns; i++)
                if (strcmp(st->series[i], full) == 0)
                    return fail(ln, "series repeated", l);
            st->series[st->ns++] = strdup(full);
        }
    }
    if (strcmp(f->type, "counter") == 0) {
        if (nlen < 6 || memcmp(name + nlen - 6, "_total", 6) != 0)
            return fail(ln, "counter name without _total (promtool lint)", l);
        if (!(v >= 0))
            return fail(ln, "negative or NaN counter", l);
    }
    if (strcmp(f->type, "histogram") == 0) {
        if (*suffix == '\0')
            return fail(ln, "histogram sample without _bucket/_sum/_count", l);
        if (strcmp(suffix, "_bucket") == 0) {
            double lev;
            if (!le[0] || !value_ok(le, &lev))
                return fail(ln, "bucket without a valid le", l);
            if (!st->in_buckets || strcmp(st->hkey, key_nole) != 0) {
                if (st->in_buckets && !st->saw_inf)
                    return fail(ln, "histogram buckets without +Inf", l);
                snprintf(st->hkey, sizeof st->hkey, "%s", key_nole);
                st->in_buckets = 1;
                st->saw_inf = 0;
                st->last_le = -INFINITY;
                st->last_count = 0;
            }
            if (!(lev > st->last_le))
                return fail(ln, "bucket le not increasing", l);
            if (v < st->last_count)
                return fail(ln, "buckets not cumulative", l);
            st->last_le = lev;
            st->last_count = v;
            if (isinf(lev)) {
                st->saw_inf = 1;
                st->inf_count = v;
            }
        } else {
            if (!st->in_buckets || strcmp(st->hkey, key_nole) != 0 || !st->saw_inf)
                return fail(ln, "histogram _sum/_count before its buckets ending in +Inf", l);
            if (strcmp(suffix, "_count") == 0 && v != st->inf_count)
                return fail(ln, "histogram _count differs from its +Inf bucket", l);
        }
    }
    return NULL;
}

const char *prom_check(const char *text)
{
    state *st = calloc(1, sizeof *st);
    const char *res = NULL, *p = text;
    int ln = 0;
    if (!st)
        return "out of memory";
    st->cur = -1;
    if (*text && text[strlen(text) - 1] != '\n')
        res = "the text does not end with a newline";
    while (!res && *p) {
        char l[2048];
        size_t n = strcspn(p, "\n");
        ln++;
        if (n >= sizeof l) {
            res = fail(ln, "line too long", "");
            break;
        }
        memcpy(l, p, n);
        l[n] = '\0';
        p += n + (p[n] == '\n');
        if (n == 0)
            continue;
        if (strncmp(l, "# HELP ", 7) == 0 || strncmp(l, "# TYPE ", 7) == 0) {
            const char *nm = l + 7, *sp = strchr(nm, ' ');
            size_t k = sp ? (size_t)(sp - nm) : strlen(nm);
            family *f = find(st, nm, k);
            if (!name_ok(nm, k, 0)) {
                res = fail(ln, "bad name in HELP/TYPE", l);
                break;
            }
            if (!f && !(f = add(st, nm, k))) {
                res = fail(ln, "too many families", l);
                break;
            }
            if (l[2] == 'H') {
                if (f->help++) {
                    res = fail(ln, "HELP repeated", l);
                    break;
                }
                for (const char *h = sp; h && *h; h++)
                    if (*h == '\\' && h[1] != '\\' && h[1] != 'n') {
                        res = fail(ln, "bad escape in HELP", l);
                        break;
                    } else if (*h == '\\') {
                        h++;
                    }
                if (!sp || !sp[1])
                    res = fail(ln, "empty HELP (promtool lint)", l);
            } else {
                const char *t = sp ? sp + 1 : "";
                if (f->typed++ || f->labelnames[0] || f->closed) {
                    res = fail(ln, "TYPE repeated or after the family's samples", l);
                    break;
                }
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                    strcmp(t, "summary") && strcmp(t, "untyped")) {
                    res = fail(ln, "unknown TYPE", l);
                    break;
                }
                snprintf(f->type, sizeof f->type, "%s", t);
            }
            continue;
        }
        if (l[0] == '#')
            continue;
        res = check_sample(st, ln, l);
    }
    if (!res && st->in_buckets && !st->saw_inf)
        res = "histogram buckets without +Inf at the end";
    for (size_t i = 0; i < st->ns; i++)
        free(st->series[i]);
    free(st);
    return res;
}

int prom_value(const char *text, const char *series, double *v)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            *v = strtod(p + n + 1, NULL);
            return 1;
        }
    }
    return 0;
}
