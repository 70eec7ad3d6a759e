/* The daemons' configuration file: "key = value" lines whose keys are the
 * daemon's long option names. The file's options come first and the command
 * line's after them, so a flag on the command line overrides the file and
 * the daemon's getopt_long loop runs unchanged on the result. */
#ifndef CAIRN_CONFIG_H
#define CAIRN_CONFIG_H

#include <getopt.h>
#include <stddef.h>

/* Parse text (len bytes; need not end in NUL) read from path, for the
 * options in opts (getopt_long's table, ended by a zero entry). Format: one
 * "key = value" per line; blank lines and lines whose first non-blank
 * character is '#' are skipped; key and value are trimmed of blanks. An
 * option taking an argument needs a non-empty value; a flag (no argument)
 * takes "true" (given) or "false" (left out). "config", "help" and
 * "version" are not keys (a file naming one has an unknown option). A key
 * may repeat (options that accumulate, like --tls-allow).
 * On success appends "--key" [value] to *argv (realloc'd, *argc counts it;
 * the strings are malloc'd) and returns 0. On an error prints
 * "prog: path:LINE: why" to stderr and returns -EINVAL or -ENOMEM. */
int config_parse(const char *prog, const char *path, const char *text, size_t len,
                 const struct option *opts, int *argc, char ***argv);

/* The daemon's argv with its configuration file applied: finds "--config
 * FILE" or "--config=FILE" in argv (not after "--"; the value of another
 * long option that takes one is skipped), reads FILE and returns in
 * *out_argv argv[0], FILE's options, then argv[1..] without --config.
 * Without --config, *out_argv is argv itself. The new argv and its strings
 * stay allocated until exit (getopt's optarg points into them); this module
 * keeps them reachable. 0, or -errno after printing "prog: FILE: why" (an
 * unreadable file, a bad line, --config given twice or with no value). */
extern char **config_kept_argv; /* config_apply's argv; only to keep it reachable */
int config_apply(const char *prog, int argc, char **argv, const struct option *opts, int *out_argc,
                 char ***out_argv);

#endif
