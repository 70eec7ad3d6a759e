/* The cairn CLI's argument parser: argv and a command's option spec in,
 * positional arguments and option values out, or one error message.
 *
 * Pure: no I/O, no exit, no globals; unit-tested on its own
 * (tests/unit/test_cli_args.c).
 *
 * Syntax. An argument that starts with "--" is an option; any other is a
 * positional argument. Options and positionals mix in any order. An option
 * that takes a value is "--key VALUE" or "--key=VALUE"; in the first form a
 * VALUE that starts with "--" is refused ("--key needs a value"), because it
 * is far more likely a forgotten value than a value (the "=" form takes any
 * value, even one that starts with "--"). A flag takes no value and may be
 * given any number of times. An option with a value may be given once,
 * unless it is CLI_OPT_REPEAT (then every value is kept, in order). There is
 * no "--" end-of-options marker and no short option.
 */
#ifndef CAIRN_CLI_ARGS_H
#define CAIRN_CLI_ARGS_H

#include <stddef.h>

#define CLI_OPT_VALUE 1u    /* takes a value (else it is a flag) */
#define CLI_OPT_REPEAT 2u   /* may be given more than once: every value is kept */
#define CLI_OPT_REQUIRED 4u /* must be given at least once */

struct cli_opt {
    const char *name; /* with its dashes: "--size"; NULL ends a list of options */
    unsigned flags;   /* CLI_OPT_* */
    /* The error when a CLI_OPT_REQUIRED option is missing; NULL means
     * "<name> is required". Some commands have always said it their way. */
    const char *missing;
};

#define CLI_ARGS_MAX_ARGS 16 /* positional arguments of one command */
#define CLI_ARGS_MAX_OPTS 16 /* options of one command plus the global ones */

/* What one command accepts. */
struct cli_args_spec {
    const struct cli_opt *opts;          /* NULL-name terminated; NULL: none */
    const char *args[CLI_ARGS_MAX_ARGS]; /* names of the positionals, for messages */
    int n_args;                          /* how many positionals at most */
    int n_required;                      /* how many of them must be given */
};

/* A parsed command line. Values point into argv (for "--key=VALUE", just past
 * the "="), so argv must outlive it. */
struct cli_args {
    const struct cli_args_spec *spec;
    const struct cli_opt *globals;
    char *args[CLI_ARGS_MAX_ARGS]; /* positionals, in order */
    int n_args;
    /* Per option, spec->opts first, then globals: times given, and where its
     * values start in vals (they are contiguous there, in argv order). */
    unsigned count[CLI_ARGS_MAX_OPTS];
    unsigned first[CLI_ARGS_MAX_OPTS];
    char **vals; /* malloc'd; freed by cli_args_free() */
    /* On failure: the message (no "cairn: " prefix, no newline), and whether
     * it is about the shape of the command line (1: the caller prints the
     * usage after it and exits 2) or about one option (0: exits 1). */
    char err[256];
    int err_usage;
};

/* Parse argv[0..argc) (the arguments after the command words) against spec
 * and the options every command accepts (globals, NULL-name terminated; may
 * be NULL). Errors, checked in this order: an unknown option, a value that
 * is missing or refused, a value given to a flag, an option given twice that
 * may not repeat, too many positionals (all in argv order); then a missing
 * positional; then a missing required option (in spec order).
 * Returns 0, or -EINVAL with a->err and a->err_usage set, or -ENOMEM.
 * Call cli_args_free() after either. */
int cli_args_parse(struct cli_args *a, const struct cli_args_spec *spec,
                   const struct cli_opt *globals, int argc, char **argv);

/* Release what cli_args_parse() allocated. Idempotent. */
void cli_args_free(struct cli_args *a);

/* The value of option name (spec or global; it must be one), its first if
 * it repeats; NULL when it was not given. */
char *cli_args_get(const struct cli_args *a, const char *name);

/* How many times option name (spec or global; it must be one) was given. */
unsigned cli_args_count(const struct cli_args *a, const char *name);

/* Every value of option name, in argv order; *n is how many. The array
 * lives as long as a (valid until cli_args_free()); NULL when *n is 0. */
char **cli_args_all(const struct cli_args *a, const char *name, size_t *n);

/* Find the command words: the first n arguments of argv[0..argc) that are
 * neither options in globals nor the values of those. Stops early at an
 * option that is not in globals (it belongs to no command yet; the caller's
 * parse reports it). Stores their indexes in idx[]; returns how many it
 * found (0..n). */
int cli_args_words(const struct cli_opt *globals, int argc, char *const *argv, int n, int *idx);

#endif
