/* Reading an oslo.cache [cache] section.  libinih does the ini syntax; a
 * reader of our own feeds it so that we know the line of every option, and
 * a load is all-or-nothing: it parses into a copy that replaces the config
 * only when the whole file was good. */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"
#include "config_priv.h"
#include "keystone/ks_section.h"

cachet_status cachet__cfg_resolve(cachet_config *c);   /* config_resolve.c */

/* ---- typed access ---- */

const char *cachet__cfg_str(const cachet_config *c, int id)
{
    return c->val[id] ? c->val[id] : cachet_option_table[id].dflt;
}

int cachet__cfg_bool(const cachet_config *c, int id)
{
    int b = 0;
    const char *t = cachet__cfg_str(c, id);
    return t && cachet_parse_bool(t, &b) == 0 ? b : 0;
}

long cachet__cfg_long(const cachet_config *c, int id)
{
    long l = 0;
    const char *t = cachet__cfg_str(c, id);
    return t && cachet_parse_long(t, &l) == 0 ? l : 0;
}

double cachet__cfg_double(const cachet_config *c, int id)
{
    double d = 0;
    const char *t = cachet__cfg_str(c, id);
    return t && cachet_parse_double(t, &d) == 0 ? d : 0;
}

void cachet__cfg_where(const cachet_config *c, int id, char *buf, size_t size)
{
    if (c->line[id] && c->file[id])
        snprintf(buf, size, "%s:%d: ", c->file[id], c->line[id]);
    else
        buf[0] = '\0';
}

/* ---- life cycle ---- */

CACHET_EXPORT cachet_config *cachet_config_new(void)
{
    cachet_config *c = calloc(1, sizeof *c);
    if (c && cachet__cfg_resolve(c) != CACHET_OK) {
        cachet_config_free(c);
        return NULL;
    }
    return c;
}

static void free_args(cachet_backend_arg *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)a[i].name);
        free((char *)a[i].value);
    }
    free(a);
}

static void config_clear(cachet_config *c)
{
    for (int i = 0; i < OPT__COUNT; i++)
        free(c->val[i]);
    free_args(c->bargs, c->nbargs);
    free(c->bargs_line);
    for (size_t i = 0; i < c->npargs; i++) {
        free(c->pargs[i].proxy);
        free((char *)c->pargs[i].arg.name);
        free((char *)c->pargs[i].arg.value);
    }
    free(c->pargs);
    for (size_t i = 0; i < c->nfiles; i++)
        free(c->files[i]);
    free(c->files);
    free(c->backend);
    free_args(c->eff, c->neff);
    memset(c, 0, sizeof *c);
}

CACHET_EXPORT void cachet_config_free(cachet_config *c)
{
    if (c) {
        config_clear(c);
        free(c);
    }
}

static const char *intern_file(cachet_config *c, const char *name)
{
    char **f;
    for (size_t i = 0; i < c->nfiles; i++)
        if (strcmp(c->files[i], name) == 0)
            return c->files[i];
    f = realloc(c->files, (c->nfiles + 1) * sizeof *f);
    if (!f)
        return NULL;
    c->files = f;
    if (!(f[c->nfiles] = cachet__strdup(name)))
        return NULL;
    return f[c->nfiles++];
}

/* A deep copy, so that a failed load leaves the original untouched. */
static cachet_config *config_clone(const cachet_config *src)
{
    cachet_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    for (size_t i = 0; i < src->nfiles; i++)
        if (!intern_file(c, src->files[i]))
            goto fail;
    for (int i = 0; i < OPT__COUNT; i++) {
        if (src->val[i] && !(c->val[i] = cachet__strdup(src->val[i])))
            goto fail;
        c->line[i] = src->line[i];
        c->file[i] = src->file[i] ? intern_file(c, src->file[i]) : NULL;
    }
    c->foreign_values = src->foreign_values;
    if (src->nbargs) {
        c->bargs = calloc(src->nbargs, sizeof *c->bargs);
        c->bargs_line = calloc(src->nbargs, sizeof *c->bargs_line);
        if (!c->bargs || !c->bargs_line)
            goto fail;
        for (size_t i = 0; i < src->nbargs; i++, c->nbargs++) {
            c->bargs[i].name = cachet__strdup(src->bargs[i].name);
            c->bargs[i].value = cachet__strdup(src->bargs[i].value);
            c->bargs_line[i] = src->bargs_line[i];
            if (!c->bargs[i].name || !c->bargs[i].value) {
                c->nbargs++;
                goto fail;
            }
        }
    }
    if (src->npargs && !(c->pargs = calloc(src->npargs, sizeof *c->pargs)))
        goto fail;
    for (size_t i = 0; i < src->npargs; i++, c->npargs++) {
        cachet_proxy_arg *d = &c->pargs[i];
        const cachet_proxy_arg *s = &src->pargs[i];
        d->proxy = cachet__strdup(s->proxy);
        d->arg.name = cachet__strdup(s->arg.name);
        d->arg.value = cachet__strdup(s->arg.value);
        d->line = s->line;
        d->file = s->file ? intern_file(c, s->file) : NULL;
        if (!d->proxy || !d->arg.name || !d->arg.value) {
            c->npargs++;
            goto fail;
        }
    }
    return c;
fail:
    cachet_config_free(c);
    return NULL;
}

/* ---- setting one option ---- */

#define CONFIG_MAX_BACKEND_ARGS 1000

static cachet_status add_backend_argument(cachet_config *c, const char *value, int line)
{
    const char *colon = strchr(value, ':');
    cachet_backend_arg *a;
    int *l;

    if (!colon || colon == value)
        return cachet__error(CACHET_EINVAL, "option backend_argument: '%.200s' is not name:value",
                             value);
    /* a backend takes a dozen; the effective list is built by name lookups */
    if (c->nbargs >= CONFIG_MAX_BACKEND_ARGS)
        return cachet__error(CACHET_EINVAL, "option backend_argument: more than %d of them (no "
                             "backend takes so many arguments)", CONFIG_MAX_BACKEND_ARGS);
    a = realloc(c->bargs, (c->nbargs + 1) * sizeof *a);
    if (!a)
        return CACHET_ENOMEM;
    c->bargs = a;
    l = realloc(c->bargs_line, (c->nbargs + 1) * sizeof *l);
    if (!l)
        return CACHET_ENOMEM;
    c->bargs_line = l;
    a[c->nbargs].name = cachet__strndup(value, (size_t)(colon - value));
    a[c->nbargs].value = cachet__strdup(colon + 1);
    if (!a[c->nbargs].name || !a[c->nbargs].value) {
        free((char *)a[c->nbargs].name);
        free((char *)a[c->nbargs].value);
        return CACHET_ENOMEM;
    }
    l[c->nbargs++] = line;
    return CACHET_OK;
}

/* cachet_proxy_argument = PROXY:NAME:VALUE, split on the first two colons. */
static cachet_status add_proxy_argument(cachet_config *c, const char *value, const char *file,
                                        int line)
{
    const char *c1 = strchr(value, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    cachet_proxy_arg *a;

    if (!c1 || c1 == value || !c2 || c2 == c1 + 1)
        return cachet__error(CACHET_EINVAL, "option cachet_proxy_argument: '%.200s' is not "
                             "PROXY:NAME:VALUE", value);
    if (c->npargs >= CONFIG_MAX_BACKEND_ARGS)
        return cachet__error(CACHET_EINVAL, "option cachet_proxy_argument: more than %d of them",
                             CONFIG_MAX_BACKEND_ARGS);
    if (!(a = realloc(c->pargs, (c->npargs + 1) * sizeof *a)))
        return CACHET_ENOMEM;
    c->pargs = a;
    a += c->npargs;
    a->proxy = cachet__strndup(value, (size_t)(c1 - value));
    a->arg.name = cachet__strndup(c1 + 1, (size_t)(c2 - c1 - 1));
    a->arg.value = cachet__strdup(c2 + 1);
    a->line = line;
    a->file = file;
    if (!a->proxy || !a->arg.name || !a->arg.value) {
        free(a->proxy);
        free((char *)a->arg.name);
        free((char *)a->arg.value);
        return CACHET_ENOMEM;
    }
    c->npargs++;
    return CACHET_OK;
}

/* Trims blanks at both ends, in place. */
static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

static cachet_status set_option(cachet_config *c, const char *option, const char *value,
                                const char *file, int line)
{
    int id = cachet_option_find(option);
    char *copy, *v;
    cachet_status st;

    if (id < 0)
        return cachet__error(CACHET_EINVAL, "unknown option '%s' (not an oslo.cache [cache] option)",
                             option);
    if (!(copy = cachet__strdup(value ? value : "")))
        return CACHET_ENOMEM;
    v = trim(copy);
    if (cachet_option_table[id].type == OPT_MULTISTR) {
        /* empty: nothing added */
        st = !*v ? CACHET_OK : id == OPT_CACHET_PROXY_ARGUMENT ? add_proxy_argument(c, v, file, line)
                                                               : add_backend_argument(c, v, line);
        free(copy);
        return st;
    }
    if (!*v) {                      /* an empty value means unset */
        free(copy);
        free(c->val[id]);
        c->val[id] = NULL;
        c->line[id] = 0;
        return CACHET_OK;
    }
    if ((st = cachet_option_check(id, v)) != CACHET_OK) {
        free(copy);
        return st;
    }
    free(c->val[id]);
    c->val[id] = cachet__strdup(v);
    free(copy);
    if (!c->val[id])
        return CACHET_ENOMEM;
    c->line[id] = line;
    c->file[id] = file;
    return CACHET_OK;
}

cachet_status cachet__cfg_set_at(cachet_config *c, const char *option, const char *value,
                                 const char *file, int line)
{
    return set_option(c, option, value, file, line);
}

CACHET_EXPORT cachet_status cachet_config_set(cachet_config *c, const char *option, const char *value)
{
    cachet_status st;
    if (!c || !option)
        return cachet__error(CACHET_EINVAL, "cachet_config_set: NULL config or option");
    if ((st = set_option(c, option, value, NULL, 0)) != CACHET_OK)
        return st;
    return cachet__cfg_resolve(c);
}

/* ---- parsing ---- */

typedef struct {
    /* input: a FILE or a string */
    FILE       *f;
    const char *s;
    /* position */
    int         line;            /* line being read, 1-based */
    bool        at_line_start;
    bool        continuation;    /* this line began with a blank */
    /* target */
    cachet_config *c;
    const char *section;
    const char *label;           /* file name or "<config text>" for messages */
    const char *file;            /* interned file name, NULL for text */
    size_t      bytes;           /* read so far from f */
    bool        too_long;        /* f grew past the limit while being read */
    int         read_errno;      /* reading f failed: nothing of it is used */
    int         nul_line;        /* the line of f holding a NUL byte */
    size_t      line_len;        /* bytes of the current line so far */
    struct {                     /* the option being read (prev_name) */
        bool    on;
        int     line;            /* its first line */
        char   *buf;             /* its value, continuation lines joined */
        size_t  len, cap;
    } pend;
    int         long_line;       /* the line over CONFIG_MAX_LINE */
    char        prev_name[128];
    ks_section *ks;              /* reading [keystone_authtoken]: its options go there */
    cachet_status st;
} parse_ctx;

/* The longest line, newline included: a memcache_servers list of a few
 * thousand hosts. */
#define CONFIG_MAX_LINE (1 << 20)

/* inih calls this for each chunk of a line (a long line takes several
 * calls); counting the chunks that start a line gives the line number. */
static char *read_chunk(char *buf, int size, void *stream)
{
    parse_ctx *p = stream;
    int n = 0;

    if (size < 2)
        return NULL;
    if (p->f) {
        /* byte by byte: fgets would hide a NUL byte, and a file of NULs
         * would be read as empty lines for as long as it lasts */
        int ch = EOF;
        while (n < size - 1 && (ch = getc(p->f)) != EOF) {
            if (ch == '\0') {
                p->nul_line = p->line + (p->at_line_start ? 1 : 0);
                return NULL;
            }
            buf[n++] = (char)ch;
            if (ch == '\n')
                break;
        }
        if (n == 0) {
            p->read_errno = ferror(p->f) ? (errno ? errno : EIO) : 0;
            return NULL;
        }
        buf[n] = '\0';
        /* the size was checked before the read; a file that grows under
         * us is still not read past the limit */
        if ((p->bytes += (size_t)n) > CACHET_CONFIG_MAX_BYTES) {
            p->too_long = true;
            return NULL;
        }
    } else {
        if (!*p->s)
            return NULL;
        while (n < size - 1 && p->s[n]) {
            buf[n] = p->s[n];
            if (p->s[n++] == '\n')
                break;
        }
        buf[n] = '\0';
        p->s += n;
    }
    if (p->at_line_start) {
        p->line++;
        p->line_len = 0;
        p->continuation = buf[0] == ' ' || buf[0] == '\t';
    }
    p->at_line_start = n > 0 && buf[n - 1] == '\n';
    /* inih would report a longer line as a syntax error on a later line */
    if ((p->line_len += (size_t)n) > CONFIG_MAX_LINE) {
        p->long_line = p->line;
        return NULL;
    }
    return buf;
}

/* Sets the pending option (its lines joined); 0 on error, as inih wants. */
static int flush_pending(parse_ctx *p)
{
    cachet_status st;

    if (!p->pend.on)
        return 1;
    p->pend.on = false;
    st = set_option(p->c, p->prev_name, p->pend.buf ? p->pend.buf : "", p->file, p->pend.line);
    if (st != CACHET_OK) {
        cachet__error_prefix("%s:%d", p->label, p->pend.line);
        p->st = st;
        return 0;
    }
    return 1;
}

/* Appends "\n" (when the value so far is not empty) and piece to the
 * pending value, growing it geometrically: a value of many continuation
 * lines costs its length, not its length squared. */
static int pend_append(parse_ctx *p, const char *piece)
{
    size_t n = strlen(piece), need = p->pend.len + n + 2;

    if (need > p->pend.cap) {
        size_t cap = p->pend.cap ? p->pend.cap : 256;
        while (cap < need)
            cap *= 2;
        char *b = realloc(p->pend.buf, cap);
        if (!b) {
            p->st = cachet__error(CACHET_ENOMEM, "%s:%d: out of memory", p->label, p->line);
            return 0;
        }
        p->pend.buf = b;
        p->pend.cap = cap;
    }
    if (p->pend.len && n)
        p->pend.buf[p->pend.len++] = '\n';
    memcpy(p->pend.buf + p->pend.len, piece, n + 1);
    p->pend.len += n;
    return 1;
}

/* An option line.  A single-valued option is held back until its last
 * continuation line has been read (oslo.config joins them with newlines);
 * backend_argument lines and unknown names are handled at once. */
static int on_option(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *p = user;
    cachet_status st;
    int id;

    if (strcmp(section, p->section) != 0)
        return flush_pending(p);      /* other sections are not ours */
    if (p->ks) {                      /* keystonemiddleware's options, its rules */
        int cont = p->continuation && strcmp(name, p->prev_name) == 0;
        snprintf(p->prev_name, sizeof p->prev_name, "%s", name);
        if ((st = cachet__ks_section_line(p->ks, name, value, cont, p->line)) != CACHET_OK) {
            p->st = cachet__error(st, "%s:%d: out of memory", p->label, p->line);
            return 0;
        }
        return 1;
    }
    if (p->pend.on && p->continuation && strcmp(name, p->prev_name) == 0)
        return pend_append(p, value);  /* a continuation line */
    if (!flush_pending(p))
        return 0;
    id = cachet_option_find(name);
    snprintf(p->prev_name, sizeof p->prev_name, "%s", name);
    if (id >= 0 && cachet_option_table[id].type != OPT_MULTISTR) {
        p->pend.on = true;
        p->pend.len = 0;
        p->pend.line = p->line;
        return pend_append(p, value);
    }
    st = set_option(p->c, name, value, p->file, p->line);
    if (st != CACHET_OK) {
        cachet__error_prefix("%s:%d", p->label, p->line);
        p->st = st;
        return 0;
    }
    return 1;
}

/* libinih's knobs are process-wide variables in Debian's build: set the
 * ones oslo.config's syntax needs for the parse and put them back after,
 * under a lock so two cachet loads do not interleave. */
static pthread_mutex_t inih_lock = PTHREAD_MUTEX_INITIALIZER;

static int run_inih(parse_ctx *p)
{
    bool use_stack = ini_use_stack, realloc_ok = ini_allow_realloc,
         inline_c = ini_allow_inline_comments, multi = ini_allow_multiline,
         stop = ini_stop_on_first_error;
    int max_line = ini_max_line, initial = ini_initial_alloc, r;

    pthread_mutex_lock(&inih_lock);
    ini_use_stack = false;             /* heap line buffer ...          */
    ini_allow_realloc = true;          /* ... that grows: long lines    */
    ini_max_line = CONFIG_MAX_LINE + 2;   /* room for the line end and the NUL */
    ini_initial_alloc = 512;
    ini_allow_inline_comments = false; /* oslo.config has none: ';' is data */
    ini_allow_multiline = true;
    ini_stop_on_first_error = true;
    r = ini_parse_stream(read_chunk, p, on_option, p);
    ini_use_stack = use_stack;
    ini_allow_realloc = realloc_ok;
    ini_max_line = max_line;
    ini_initial_alloc = initial;
    ini_allow_inline_comments = inline_c;
    ini_allow_multiline = multi;
    ini_stop_on_first_error = stop;
    pthread_mutex_unlock(&inih_lock);
    return r;
}

static cachet_status parse_into(cachet_config *c, FILE *f, const char *text,
                                const char *label, const char *section)
{
    cachet_config *tmp = config_clone(c);
    parse_ctx p = {0};
    cachet_status st;
    int r;

    if (!tmp)
        return cachet__error(CACHET_ENOMEM, "%s: out of memory", label);
    p.f = f;
    p.s = text;
    p.at_line_start = true;
    p.c = tmp;
    p.section = section ? section : "cache";
    p.label = label;
    p.file = f ? intern_file(tmp, label) : NULL;
    p.st = CACHET_OK;
    if (strcmp(p.section, CACHET_KS_SECTION) == 0)
        p.ks = cachet__ks_section_new();
    if ((f && !p.file) || (strcmp(p.section, CACHET_KS_SECTION) == 0 && !p.ks)) {
        cachet__ks_section_free(p.ks);
        cachet_config_free(tmp);
        return cachet__error(CACHET_ENOMEM, "%s: out of memory", label);
    }
    r = run_inih(&p);
    if (p.st == CACHET_OK && !p.too_long && !p.nul_line && !p.long_line && !p.read_errno)
        flush_pending(&p);           /* the last option (read before any syntax error) */
    free(p.pend.buf);
    if (p.too_long && p.st == CACHET_OK)
        p.st = cachet__error(CACHET_EINVAL, "%s: grew past the %d MiB a config file may be "
                             "while it was read", label, CACHET_CONFIG_MAX_BYTES >> 20);
    if (p.long_line && p.st == CACHET_OK)
        p.st = cachet__error(CACHET_EINVAL, "%s:%d: the line is over the %d KiB a line may be",
                             label, p.long_line, CONFIG_MAX_LINE >> 10);
    if (p.nul_line && p.st == CACHET_OK)
        p.st = cachet__error(CACHET_EINVAL, "%s:%d: a NUL byte: not a text file", label,
                             p.nul_line);
    if (p.read_errno && p.st == CACHET_OK)
        p.st = cachet__error(CACHET_EINVAL, "%s: read error: %s", label, strerror(p.read_errno));
    if (r != 0 && p.st == CACHET_OK) {
        if (r < 0)
            p.st = cachet__error(CACHET_ENOMEM, "%s: out of memory while parsing", label);
        else
            p.st = cachet__error(CACHET_EINVAL, "%s:%d: syntax error (expected [section] "
                                 "or name = value)", label, r);
    }
    if (p.ks && p.st == CACHET_OK)
        p.st = cachet__ks_section_apply(p.ks, tmp, label, p.file);
    cachet__ks_section_free(p.ks);
    st = p.st;
    if (st == CACHET_OK && (st = cachet__cfg_resolve(tmp)) == CACHET_OK)
        st = cachet__cfg_validate(tmp);
    if (st != CACHET_OK) {
        cachet_config_free(tmp);
        return st;
    }
    /* success: tmp becomes c */
    config_clear(c);
    *c = *tmp;
    free(tmp);
    return CACHET_OK;
}

static const char *file_kind(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a plain file";
}

/* "20 GB", "17 MB", "3000 bytes": a size for a message. */
static void human_size(char *buf, size_t n, long long bytes)
{
    if (bytes >= 10LL * 1000 * 1000 * 1000)
        snprintf(buf, n, "%lld GB", bytes / (1000LL * 1000 * 1000));
    else if (bytes >= 10LL * 1000 * 1000)
        snprintf(buf, n, "%lld MB", bytes / (1000LL * 1000));
    else
        snprintf(buf, n, "%lld bytes", bytes);
}

/* Opens path for reading only if it is a regular file of a config file's
 * size: a FIFO, a device (/dev/zero) or a huge file would otherwise make a
 * load block or read for ever.  O_NONBLOCK keeps the open itself from
 * waiting for a FIFO's writer; the checks are on the descriptor that is
 * then read, so the file cannot be swapped between the check and the read. */
static cachet_status open_config_file(const char *path, FILE **out)
{
    struct stat sb;
    char size[32];
    int fd, flags;

    *out = NULL;
    if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)) < 0)
        return cachet__error(CACHET_EINVAL, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return cachet__error(CACHET_EINVAL, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return cachet__error(CACHET_EINVAL, "%s is %s, not a regular file", path,
                             file_kind(sb.st_mode));
    }
    if (sb.st_size > CACHET_CONFIG_MAX_BYTES) {
        close(fd);
        human_size(size, sizeof size, (long long)sb.st_size);
        return cachet__error(CACHET_EINVAL, "%s is %s, over the %d MiB a config file may be",
                             path, size, CACHET_CONFIG_MAX_BYTES >> 20);
    }
    /* a regular file never blocks, but reads should not see EAGAIN either */
    if ((flags = fcntl(fd, F_GETFL)) != -1)
        (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    if (!(*out = fdopen(fd, "r"))) {
        int err = errno;
        close(fd);
        return cachet__error(err == ENOMEM ? CACHET_ENOMEM : CACHET_EINVAL, "%s: cannot read: %s",
                             path, strerror(err));
    }
    return CACHET_OK;
}

CACHET_EXPORT cachet_status cachet_config_load(cachet_config *c, const char *path, const char *section)
{
    FILE *f;
    cachet_status st;

    if (!c || !path)
        return cachet__error(CACHET_EINVAL, "cachet_config_load: NULL config or path");
    if ((st = open_config_file(path, &f)) != CACHET_OK)
        return st;
    st = parse_into(c, f, NULL, path, section);   /* a read error fails it: c unchanged */
    fclose(f);
    return st;
}

CACHET_EXPORT cachet_status cachet_config_parse(cachet_config *c, const char *text, const char *section)
{
    if (!c || !text)
        return cachet__error(CACHET_EINVAL, "cachet_config_parse: NULL config or text");
    return parse_into(c, NULL, text, "<config text>", section);
}
