/* The daemons' configuration file (config.h): "key = value" lines turned
 * into "--key value" arguments ahead of the command line's. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

/* The argv config_apply made: kept here so that it and its strings stay
 * reachable (LeakSanitizer) while optarg pointers into them live. Not
 * static: a static that is never read loses its store to the optimiser. */
char **config_kept_argv;

static int argv_push(int *argc, char ***argv, const char *s, size_t len)
{
    char *copy = strndup(s, len);
    char **nv = copy ? realloc(*argv, (size_t)(*argc + 2) * sizeof(**argv)) : NULL;
    if (!nv) {
        free(copy);
        return -ENOMEM;
    }
    nv[(*argc)++] = copy;
    nv[*argc] = NULL;
    *argv = nv;
    return 0;
}

static const struct option *option_find(const struct option *opts, const char *name, size_t len)
{
    for (; opts->name; opts++)
        if (strlen(opts->name) == len && memcmp(opts->name, name, len) == 0)
            return opts;
    return NULL;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* One line, [p, end): blanks trimmed; appends its arguments. */
static int config_line(const char *prog, const char *path, unsigned lineno, const char *p,
                       const char *end, const struct option *opts, int *argc, char ***argv)
{
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    if (p == end || *p == '#')
        return 0;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (!eq) {
        fprintf(stderr, "%s: %s:%u: want 'key = value', got '%.*s'\n", prog, path, lineno,
                (int)(end - p), p);
        return -EINVAL;
    }
    const char *key_end = eq, *val = eq + 1;
    while (key_end > p && is_blank(key_end[-1]))
        key_end--;
    while (val < end && is_blank(*val))
        val++;
    size_t klen = (size_t)(key_end - p), vlen = (size_t)(end - val);
    const struct option *o = option_find(opts, p, klen);
    /* what asks for an answer and an exit is for a command line only */
    if (!o || strcmp(o->name, "help") == 0 || strcmp(o->name, "config") == 0 ||
        strcmp(o->name, "version") == 0) {
        fprintf(stderr, "%s: %s:%u: unknown option '%.*s'\n", prog, path, lineno, (int)klen, p);
        return -EINVAL;
    }
    char flag[128];
    snprintf(flag, sizeof(flag), "--%s", o->name);
    if (o->has_arg == no_argument) {
        if (vlen == 5 && memcmp(val, "false", 5) == 0)
            return 0;
        if (vlen == 4 && memcmp(val, "true", 4) == 0)
            return argv_push(argc, argv, flag, strlen(flag));
        fprintf(stderr, "%s: %s:%u: option '%s' takes 'true' or 'false', not '%.*s'\n", prog, path,
                lineno, o->name, (int)vlen, val);
        return -EINVAL;
    }
    if (vlen == 0) {
        fprintf(stderr, "%s: %s:%u: option '%s' needs a value\n", prog, path, lineno, o->name);
        return -EINVAL;
    }
    int r = argv_push(argc, argv, flag, strlen(flag));
    return r < 0 ? r : argv_push(argc, argv, val, vlen);
}

int config_parse(const char *prog, const char *path, const char *text, size_t len,
                 const struct option *opts, int *argc, char ***argv)
{
    const char *p = text, *end = text + len;
    unsigned lineno = 1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (memchr(p, '\0', (size_t)(le - p))) {
            fprintf(stderr, "%s: %s:%u: a NUL byte: not a text file\n", prog, path, lineno);
            return -EINVAL;
        }
        int r = config_line(prog, path, lineno, p, le, opts, argc, argv);
        if (r < 0)
            return r;
        p = nl ? nl + 1 : end;
        lineno++;
    }
    return 0;
}

/* Where "--config" is in argv: 1 if found (*at its index, *path its value,
 * *span 1 or 2 arguments), 0 if not, -EINVAL if twice or with no value. */
static int config_find(const char *prog, int argc, char **argv, const struct option *opts, int *at,
                       const char **path, int *span)
{
    int found = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (strncmp(a, "--", 2) != 0)
            continue;
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen == 6 && memcmp(name, "config", 6) == 0) {
            if (found || (!eq && i + 1 >= argc)) {
                fprintf(stderr, "%s: --config %s\n", prog, found ? "given twice" : "needs a file");
                return -EINVAL;
            }
            found = 1;
            *at = i;
            *path = eq ? eq + 1 : argv[i + 1];
            *span = eq ? 1 : 2;
            i += *span - 1;
            continue;
        }
        const struct option *o = option_find(opts, name, nlen);
        if (o && o->has_arg == required_argument && !eq)
            i++; /* its value, whatever it looks like */
    }
    return found;
}

int config_apply(const char *prog, int argc, char **argv, const struct option *opts, int *out_argc,
                 char ***out_argv)
{
    int at = 0, span = 0;
    const char *path = NULL;
    int r = config_find(prog, argc, argv, opts, &at, &path, &span);
    *out_argc = argc;
    *out_argv = argv;
    if (r <= 0)
        return r;
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    if (stat(path, &st) < 0)
        r = -errno;
    else if (!S_ISREG(st.st_mode))
        r = -EINVAL;
    else
        r = file_read_all(path, &text, &len);
    if (r < 0) {
        fprintf(stderr, "%s: cannot read %s: %s\n", prog, path,
                r == -EINVAL ? "not a regular file" : strerror(-r));
        return r;
    }
    int nargc = 0;
    char **nargv = NULL;
    r = argv_push(&nargc, &nargv, argv[0], strlen(argv[0]));
    if (r == 0)
        r = config_parse(prog, path, text, len, opts, &nargc, &nargv);
    for (int i = 1; r == 0 && i < argc; i++)
        if (i < at || i >= at + span)
            r = argv_push(&nargc, &nargv, argv[i], strlen(argv[i]));
    free(text);
    if (r < 0) {
        if (r == -ENOMEM)
            fprintf(stderr, "%s: %s: out of memory\n", prog, path);
        for (int i = 0; i < nargc; i++)
            free(nargv[i]);
        free(nargv);
        return r;
    }
    config_kept_argv = nargv;
    *out_argc = nargc;
    *out_argv = nargv;
    return 0;
}
