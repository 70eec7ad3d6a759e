/* The cairn CLI's argument parser; the rules are in cli_args.h. */
#include "cli_args.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_option(const char *s)
{
    return !strncmp(s, "--", 2);
}

static size_t count_opts(const struct cli_opt *list)
{
    size_t n = 0;
    while (list && list[n].name)
        n++;
    return n;
}

/* Index in list of the option spelled s[0..len), or -1. */
static int find_in(const struct cli_opt *list, const char *s, size_t len)
{
    for (size_t i = 0; list && list[i].name; i++)
        if (strlen(list[i].name) == len && !strncmp(list[i].name, s, len))
            return (int)i;
    return -1;
}

/* Option k of a: the spec's options are numbered first, then the globals. */
static const struct cli_opt *opt_at(const struct cli_args *a, int k)
{
    size_t ns = count_opts(a->spec->opts);
    return (size_t)k < ns ? &a->spec->opts[k] : &a->globals[(size_t)k - ns];
}

static int find(const struct cli_args *a, const char *s, size_t len)
{
    int k = find_in(a->spec->opts, s, len);
    if (k >= 0)
        return k;
    k = find_in(a->globals, s, len);
    return k < 0 ? -1 : k + (int)count_opts(a->spec->opts);
}

/* Index of an option the caller names: asking for one the command does not
 * declare is a bug in the command table, not a user error. */
static int index_of(const struct cli_args *a, const char *name)
{
    int k = find(a, name, strlen(name));
    assert(k >= 0);
    return k;
}

static int fail(struct cli_args *a, int usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct cli_args *a, int usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof(a->err), fmt, ap);
    va_end(ap);
    a->err_usage = usage;
    return -EINVAL;
}

struct seen {
    int k;   /* option index */
    char *v; /* its value */
};

/* The scan of argv: positionals into a->args, option counts into a->count,
 * every value with its option into seen[] (argv order). Returns how many
 * values, or -EINVAL. */
static int scan(struct cli_args *a, int argc, char **argv, struct seen *seen)
{
    int nseen = 0;
    for (int i = 0; i < argc; i++) {
        char *s = argv[i];
        if (!is_option(s)) {
            if (a->n_args >= a->spec->n_args)
                return fail(a, 1, "unexpected argument '%s'", s);
            a->args[a->n_args++] = s;
            continue;
        }
        char *eq = strchr(s, '=');
        int k = find(a, s, eq ? (size_t)(eq - s) : strlen(s));
        if (k < 0)
            return fail(a, 1, "unknown option '%s'", s);
        const struct cli_opt *o = opt_at(a, k);
        if (!(o->flags & CLI_OPT_VALUE)) {
            if (eq)
                return fail(a, 0, "%s takes no value", o->name);
            a->count[k]++;
            continue;
        }
        if (a->count[k] && !(o->flags & CLI_OPT_REPEAT))
            return fail(a, 0, "%s given more than once", o->name);
        char *v;
        if (eq) {
            v = eq + 1;
        } else {
            /* "--size --thick": a forgotten value, not a value */
            if (i + 1 >= argc || is_option(argv[i + 1]))
                return fail(a, 0, "%s needs a value", o->name);
            v = argv[++i];
        }
        a->count[k]++;
        seen[nseen].k = k;
        seen[nseen].v = v;
        nseen++;
    }
    return nseen;
}

int cli_args_parse(struct cli_args *a, const struct cli_args_spec *spec,
                   const struct cli_opt *globals, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->spec = spec;
    a->globals = globals;
    size_t nopts = count_opts(spec->opts) + count_opts(globals);
    assert(nopts <= CLI_ARGS_MAX_OPTS);
    assert(spec->n_args <= CLI_ARGS_MAX_ARGS && spec->n_required <= spec->n_args);

    /* at most one value per argument: argc bounds both arrays */
    size_t cap = (size_t)argc + 1;
    struct seen *seen = calloc(cap, sizeof(*seen));
    a->vals = calloc(cap, sizeof(*a->vals));
    if (!seen || !a->vals) {
        free(seen);
        return -ENOMEM;
    }
    int nseen = scan(a, argc, argv, seen);
    if (nseen < 0) {
        free(seen);
        return nseen;
    }
    /* group the values by option, keeping argv order within each */
    unsigned pos = 0, fill[CLI_ARGS_MAX_OPTS];
    for (size_t k = 0; k < nopts; k++) {
        a->first[k] = pos;
        fill[k] = pos;
        if (opt_at(a, (int)k)->flags & CLI_OPT_VALUE)
            pos += a->count[k];
    }
    for (int i = 0; i < nseen; i++)
        a->vals[fill[seen[i].k]++] = seen[i].v;
    free(seen);

    if (a->n_args < spec->n_required)
        return fail(a, 1, "missing argument %s",
                    spec->args[a->n_args] ? spec->args[a->n_args] : "");
    for (size_t k = 0; k < nopts; k++) {
        const struct cli_opt *o = opt_at(a, (int)k);
        if ((o->flags & CLI_OPT_REQUIRED) && !a->count[k]) {
            if (o->missing)
                return fail(a, 0, "%s", o->missing);
            return fail(a, 0, "%s is required", o->name);
        }
    }
    return 0;
}

void cli_args_free(struct cli_args *a)
{
    free(a->vals);
    a->vals = NULL;
}

char *cli_args_get(const struct cli_args *a, const char *name)
{
    int k = index_of(a, name);
    assert(opt_at(a, k)->flags & CLI_OPT_VALUE);
    return a->count[k] ? a->vals[a->first[k]] : NULL;
}

unsigned cli_args_count(const struct cli_args *a, const char *name)
{
    return a->count[index_of(a, name)];
}

char **cli_args_all(const struct cli_args *a, const char *name, size_t *n)
{
    int k = index_of(a, name);
    assert(opt_at(a, k)->flags & CLI_OPT_VALUE);
    *n = a->count[k];
    return a->count[k] ? &a->vals[a->first[k]] : NULL;
}

int cli_args_words(const struct cli_opt *globals, int argc, char *const *argv, int n, int *idx)
{
    int found = 0;
    for (int i = 0; i < argc && found < n; i++) {
        const char *s = argv[i];
        if (!is_option(s)) {
            idx[found++] = i;
            continue;
        }
        const char *eq = strchr(s, '=');
        int k = find_in(globals, s, eq ? (size_t)(eq - s) : strlen(s));
        if (k < 0)
            break;
        /* skip its value, where the parse will take one */
        if ((globals[k].flags & CLI_OPT_VALUE) && !eq && i + 1 < argc && !is_option(argv[i + 1]))
            i++;
    }
    return found;
}
