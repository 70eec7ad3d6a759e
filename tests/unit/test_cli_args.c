/* The cairn CLI's argument parser (mgmt/cli_args.c), case by case. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cli_args.h"

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (!_a || !_b || strcmp(_a, _b)) {                                                        \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__,    \
                    __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* The same shapes as the real table's: global options, then a few commands. */
static const struct cli_opt globals[] = {
    {"--mdm", CLI_OPT_VALUE, NULL},
    {"--json", 0, NULL},
    {"--help", 0, NULL},
    {NULL, 0, NULL},
};

/* volume create NAME --size SIZE [--pool NAME] [--thick] */
static const struct cli_opt create_opts[] = {
    {"--size", CLI_OPT_VALUE | CLI_OPT_REQUIRED, NULL},
    {"--pool", CLI_OPT_VALUE, NULL},
    {"--thick", 0, NULL},
    {NULL, 0, NULL},
};
static const struct cli_args_spec create = {
    .opts = create_opts, .args = {"NAME"}, .n_args = 1, .n_required = 1};

/* device add --sds NAME --device PATH [--device PATH]... */
static const struct cli_opt add_opts[] = {
    {"--sds", CLI_OPT_VALUE | CLI_OPT_REQUIRED, NULL},
    {"--device", CLI_OPT_VALUE | CLI_OPT_REPEAT | CLI_OPT_REQUIRED,
     "at least one --device PATH is required"},
    {NULL, 0, NULL},
};
static const struct cli_args_spec add = {.opts = add_opts};

/* sds maintenance enter|exit NAME */
static const struct cli_args_spec maint = {
    .args = {"enter|exit", "NAME"}, .n_args = 2, .n_required = 2};

/* Split line at spaces into an argv (no quoting); the strings live until
 * the next call. */
static int split(const char *line, char **argv)
{
    static char buf[1024];
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *s = strtok(buf, " "); s; s = strtok(NULL, " "))
        argv[argc++] = s;
    return argc;
}

static char *argv_buf[64];

static int parse(struct cli_args *a, const struct cli_args_spec *spec, const char *line)
{
    int argc = split(line, argv_buf);
    return cli_args_parse(a, spec, globals, argc, argv_buf);
}

/* A parse that must fail with msg; usage: whether the usage should follow. */
static void refused(const struct cli_args_spec *spec, const char *line, const char *msg, int usage)
{
    struct cli_args a;
    int r = parse(&a, spec, line);
    if (r != -EINVAL)
        fprintf(stderr, "parse of '%s' gave %d\n", line, r);
    CHECK_EQ(r, -EINVAL);
    CHECK_STR(a.err, msg);
    CHECK_EQ(a.err_usage, usage);
    cli_args_free(&a);
}

static void options_before_positionals(void)
{
    struct cli_args a;
    CHECK_EQ(parse(&a, &create, "--size 1G --thick --pool p vol1"), 0);
    CHECK_EQ(a.n_args, 1);
    CHECK_STR(a.args[0], "vol1");
    CHECK_STR(cli_args_get(&a, "--size"), "1G");
    CHECK_STR(cli_args_get(&a, "--pool"), "p");
    CHECK_EQ(cli_args_count(&a, "--thick"), 1);
    cli_args_free(&a);
}

static void options_after_positionals(void)
{
    struct cli_args a;
    CHECK_EQ(parse(&a, &create, "vol1 --size 1G --thick"), 0);
    CHECK_STR(a.args[0], "vol1");
    CHECK_STR(cli_args_get(&a, "--size"), "1G");
    CHECK(cli_args_get(&a, "--pool") == NULL);
    CHECK_EQ(cli_args_count(&a, "--thick"), 1);
    cli_args_free(&a);
}

static void options_between_positionals(void)
{
    struct cli_args a;
    CHECK_EQ(parse(&a, &maint, "enter --json sds4"), 0);
    CHECK_EQ(a.n_args, 2);
    CHECK_STR(a.args[0], "enter");
    CHECK_STR(a.args[1], "sds4");
    CHECK_EQ(cli_args_count(&a, "--json"), 1);
    cli_args_free(&a);
    CHECK_EQ(parse(&a, &maint, "exit --mdm h:1 sds4"), 0);
    CHECK_STR(a.args[0], "exit");
    CHECK_STR(a.args[1], "sds4");
    CHECK_STR(cli_args_get(&a, "--mdm"), "h:1");
    cli_args_free(&a);
}

static void flags_absent_given_and_repeated(void)
{
    struct cli_args a;
    CHECK_EQ(parse(&a, &create, "vol1 --size 1G"), 0);
    CHECK_EQ(cli_args_count(&a, "--thick"), 0);
    CHECK_EQ(cli_args_count(&a, "--json"), 0);
    cli_args_free(&a);
    /* a flag twice is the flag once more: harmless, as it always was */
    CHECK_EQ(parse(&a, &create, "--json vol1 --thick --size 1G --thick --json"), 0);
    CHECK_EQ(cli_args_count(&a, "--thick"), 2);
    CHECK_EQ(cli_args_count(&a, "--json"), 2);
    cli_args_free(&a);
}

static void repeated_option_keeps_every_value_in_order(void)
{
    struct cli_args a;
    CHECK_EQ(parse(&a, &add, "--device /a --sds s1 --device /b --json --device=/c"), 0);
    size_t n;
    char **v = cli_args_all(&a, "--device", &n);
    CHECK_EQ(n, 3);
    CHECK_STR(v[0], "/a");
    CHECK_STR(v[1], "/b");
    CHECK_STR(v[2], "/c");
    CHECK_STR(cli_args_get(&a, "--device"), "/a");
    CHECK_STR(cli_args_get(&a, "--sds"), "s1");
    v = cli_args_all(&a, "--mdm", &n);
    CHECK_EQ(n, 0);
    CHECK(v == NULL);
    cli_args_free(&a);
}

static void option_that_may_not_repeat_refused_twice(void)
{
    refused(&create, "vol1 --size 1G --size 2G", "--size given more than once", 0);
    refused(&add, "--device /a --sds s1 --sds s2", "--sds given more than once", 0);
    refused(&create, "--mdm a:1 vol1 --size 1G --mdm=b:2", "--mdm given more than once", 0);
}

static void key_equals_value(void)
{
    struct cli_args a;
    CHECK_EQ(parse(&a, &create, "--size=1G vol1 --pool=a=b --mdm=h:1"), 0);
    CHECK_STR(cli_args_get(&a, "--size"), "1G");
    CHECK_STR(cli_args_get(&a, "--pool"), "a=b"); /* the first '=' splits */
    CHECK_STR(cli_args_get(&a, "--mdm"), "h:1");
    cli_args_free(&a);
    /* the '=' form is how to give an empty value or one that starts with -- */
    CHECK_EQ(parse(&a, &create, "vol1 --size= --pool=--odd"), 0);
    CHECK_STR(cli_args_get(&a, "--size"), "");
    CHECK_STR(cli_args_get(&a, "--pool"), "--odd");
    cli_args_free(&a);
}

static void flag_given_a_value_refused(void)
{
    refused(&create, "vol1 --size 1G --thick=yes", "--thick takes no value", 0);
    refused(&create, "vol1 --size 1G --json=1", "--json takes no value", 0);
}

static void unknown_option(void)
{
    refused(&create, "vol1 --size 1G --bogus", "unknown option '--bogus'", 1);
    refused(&create, "--bogus=1 vol1", "unknown option '--bogus=1'", 1);
    /* an option of another command is unknown here */
    refused(&create, "vol1 --size 1G --device /x", "unknown option '--device'", 1);
    /* no prefix matching: --siz is not --size */
    refused(&create, "vol1 --siz 1G", "unknown option '--siz'", 1);
    refused(&create, "vol1 -- --size 1G", "unknown option '--'", 1);
}

static void missing_value(void)
{
    refused(&create, "vol1 --size", "--size needs a value", 0);
    refused(&create, "vol1 --size 1G --mdm", "--mdm needs a value", 0);
}

static void value_starting_with_dashes_refused(void)
{
    /* "--size --thick" is a forgotten value, as it always was */
    refused(&create, "vol1 --size --thick", "--size needs a value", 0);
    refused(&add, "--sds --device /a", "--sds needs a value", 0);
    refused(&create, "vol1 --size 1G --mdm --json", "--mdm needs a value", 0);
}

static void value_starting_with_one_dash_taken(void)
{
    struct cli_args a;
    CHECK_EQ(parse(&a, &create, "vol1 --size -5"), 0);
    CHECK_STR(cli_args_get(&a, "--size"), "-5");
    cli_args_free(&a);
    /* and a lone "-" is a positional */
    CHECK_EQ(parse(&a, &create, "- --size 1G"), 0);
    CHECK_STR(a.args[0], "-");
    cli_args_free(&a);
}

static void missing_positional(void)
{
    refused(&create, "--size 1G", "missing argument NAME", 1);
    refused(&maint, "enter", "missing argument NAME", 1);
    refused(&maint, "--json", "missing argument enter|exit", 1);
}

static void extra_positional(void)
{
    refused(&create, "vol1 vol2 --size 1G", "unexpected argument 'vol2'", 1);
    refused(&create, "--size 1G vol1 --thick vol2", "unexpected argument 'vol2'", 1);
    refused(&add, "--sds s1 --device /a stray", "unexpected argument 'stray'", 1);
    /* a value is not a positional: "--pool p" takes p */
    struct cli_args a;
    CHECK_EQ(parse(&a, &create, "--pool p vol1 --size 1G"), 0);
    CHECK_EQ(a.n_args, 1);
    cli_args_free(&a);
}

static void missing_required_option(void)
{
    refused(&create, "vol1", "--size is required", 0);
    refused(&create, "vol1 --thick --pool p", "--size is required", 0);
    refused(&add, "--sds s1", "at least one --device PATH is required", 0);
    refused(&add, "--device /a", "--sds is required", 0); /* in spec order */
}

static void errors_in_documented_order(void)
{
    /* argv order first: the unknown option comes before the stray word */
    refused(&create, "--bogus vol1 vol2", "unknown option '--bogus'", 1);
    refused(&create, "vol1 vol2 --bogus", "unexpected argument 'vol2'", 1);
    /* then a missing positional, then a missing required option */
    refused(&create, "--thick", "missing argument NAME", 1);
}

static void no_arguments(void)
{
    static const struct cli_args_spec none = {0};
    struct cli_args a;
    CHECK_EQ(cli_args_parse(&a, &none, globals, 0, argv_buf), 0);
    CHECK_EQ(a.n_args, 0);
    CHECK(cli_args_get(&a, "--mdm") == NULL);
    cli_args_free(&a);
    cli_args_free(&a); /* idempotent */
    refused(&none, "list", "unexpected argument 'list'", 1);
}

/* Find the command words the way main() does, then parse the rest. */
static int command(const char *line, const char *want_obj, const char *want_verb,
                   const struct cli_args_spec *spec, struct cli_args *a)
{
    char *argv[64], *rest[64];
    int argc = split(line, argv);
    int w[2];
    CHECK_EQ(cli_args_words(globals, argc, argv, 2, w), 2);
    CHECK_STR(argv[w[0]], want_obj);
    CHECK_STR(argv[w[1]], want_verb);
    int n = 0;
    for (int i = 0; i < argc; i++)
        if (i != w[0] && i != w[1])
            rest[n++] = argv[i];
    memcpy(argv_buf, rest, sizeof(rest));
    return cli_args_parse(a, spec, globals, n, argv_buf);
}

static void global_options_after_the_command(void)
{
    struct cli_args a;
    CHECK_EQ(
        command("volume create vol1 --size 1G --json --mdm h:1", "volume", "create", &create, &a),
        0);
    CHECK_STR(a.args[0], "vol1");
    CHECK_EQ(cli_args_count(&a, "--json"), 1);
    CHECK_STR(cli_args_get(&a, "--mdm"), "h:1");
    cli_args_free(&a);
    CHECK_EQ(command("volume create --json vol1 --size 1G", "volume", "create", &create, &a), 0);
    CHECK_STR(a.args[0], "vol1");
    CHECK_EQ(cli_args_count(&a, "--json"), 1);
    cli_args_free(&a);
}

static void global_options_before_and_between_the_words(void)
{
    struct cli_args a;
    CHECK_EQ(
        command("--json volume --mdm h:1 create vol1 --size=1G", "volume", "create", &create, &a),
        0);
    CHECK_STR(a.args[0], "vol1");
    CHECK_EQ(cli_args_count(&a, "--json"), 1);
    CHECK_STR(cli_args_get(&a, "--mdm"), "h:1");
    cli_args_free(&a);
    CHECK_EQ(command("--mdm=h:1 volume create vol1 --size 1G", "volume", "create", &create, &a), 0);
    CHECK_STR(cli_args_get(&a, "--mdm"), "h:1");
    cli_args_free(&a);
}

static void words_stop_at_an_option_of_no_command(void)
{
    char *argv[64];
    int w[2];
    int argc = split("volume --size 1G create vol1", argv);
    CHECK_EQ(cli_args_words(globals, argc, argv, 2, w), 1);
    CHECK_EQ(w[0], 0);
    argc = split("--bogus volume list", argv);
    CHECK_EQ(cli_args_words(globals, argc, argv, 2, w), 0);
    /* "--mdm --json": no value to skip, the parse will say so */
    argc = split("--mdm --json status", argv);
    CHECK_EQ(cli_args_words(globals, argc, argv, 2, w), 1);
    CHECK_EQ(w[0], 2);
    argc = split("status", argv);
    CHECK_EQ(cli_args_words(globals, argc, argv, 2, w), 1);
    CHECK_EQ(cli_args_words(globals, 0, argv, 2, w), 0);
}

struct test_case {
    const char *name;
    void (*fn)(void);
};

#define CASE(f)                                                                                    \
    {                                                                                              \
#f, f                                                                                      \
    }
static const struct test_case cases[] = {
    CASE(options_before_positionals),
    CASE(options_after_positionals),
    CASE(options_between_positionals),
    CASE(flags_absent_given_and_repeated),
    CASE(repeated_option_keeps_every_value_in_order),
    CASE(option_that_may_not_repeat_refused_twice),
    CASE(key_equals_value),
    CASE(flag_given_a_value_refused),
    CASE(unknown_option),
    CASE(missing_value),
    CASE(value_starting_with_dashes_refused),
    CASE(value_starting_with_one_dash_taken),
    CASE(missing_positional),
    CASE(extra_positional),
    CASE(missing_required_option),
    CASE(errors_in_documented_order),
    CASE(no_arguments),
    CASE(global_options_after_the_command),
    CASE(global_options_before_and_between_the_words),
    CASE(words_stop_at_an_option_of_no_command),
};

int main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fprintf(stderr, "case %s\n", cases[i].name);
        cases[i].fn();
    }
    fprintf(stderr, "%zu cases passed\n", sizeof(cases) / sizeof(cases[0]));
    return 0;
}
