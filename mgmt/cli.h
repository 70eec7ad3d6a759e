/* The cairn CLI's internal header: one section per file, so it doubles as
 * the index of the program. Every command is one request to the MDM (or,
 * for check-copies, reads from the SDSs), printed as text or JSON.
 *
 *   cli.c        the command table (each command's words, usage line,
 *                options and handler), the usage text made from it, main()
 *   cli_args.c   the pure argument parser (cli_args.h)
 *   cli_mdm.c    the request to the MDM
 *   cli_print.c  the printers: status, SDSs, devices, pools, volumes, SDCs,
 *                fault sets; text and JSON
 *   cli_check.c  volume check-copies and volume locate (cli_check.h)
 *   cli_sdc.c    volume map and unmap (and their waits), sdc approve,
 *                cluster set --restricted-sdc
 *   cli_watch.c  the live views: status --watch, top, rebuild|rebalance wait
 *   cli_progress.c  what a status says of a rebuild's or rebalance's work,
 *                and its progress as words, a bar, JSON (cli_progress.h)
 *
 * No globals: main() hands each handler the MDM's address and the --json
 * choice; the printers take the choice as an argument.
 */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include "cairn.pb-c.h"
#include "cli_args.h"
#include "cli_check.h"
#include "cli_progress.h"

/* ---- cli.c ---- */

/* What every handler needs from the command line beyond its own options. */
struct cli_env {
    const char *mdm; /* the MDM's address */
    int json;        /* --json: print JSON */
};

struct cli_command;
/* Returns the process's exit code. */
typedef int cli_run_fn(const struct cli_command *c, const struct cli_args *a,
                       const struct cli_env *env);
typedef void cli_print_fn(const Cairn__MgmtReply *rep, int json);

struct cli_command {
    const char *obj;
    const char *verb; /* NULL: the object alone is the command ("status") */
    /* Its line in the usage text; NULL: it shares the line of the entry
     * before it ("fault-set add|remove NAME"). */
    const char *usage;
    const char *help; /* the description column; '\n' between its lines */
    struct cli_args_spec spec;
    cli_run_fn *run;
    int op;              /* the request, where one handler serves two commands */
    cli_print_fn *print; /* for the handlers that show a part of the status */
};

/* A report from the status whose printer (c->print) ends its own output. */
int cli_run_report(const struct cli_command *c, const struct cli_args *a,
                   const struct cli_env *env);

/* Print "cairn: <message>" on stderr. Returns 1, the exit code of a failed
 * command, so that a handler can end with `return cli_fail(...)`. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cli_mdm.c ---- */

/* Send req to the MDM at addr ("host:port" or "unix:/path"; or a list,
 * "a,b,c", of which the leader is found: cli_mdm.c) and wait for its reply
 * on the default loop. Returns 0 with *rep set (the caller frees
 * it with cairn__mgmt_reply__free_unpacked()), or -errno with *rep NULL
 * after printing why on stderr: the MDM unreachable, the request failed,
 * or the MDM refused it (then its own message). req is only read. */
int cli_mdm_call(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **rep);
/* The same, but the message (no "cairn: " prefix) goes to err[errlen]
 * instead of stderr: for the live views, which show it in place. */
int cli_mdm_call_quiet(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **rep, char *err,
                       size_t errlen);
/* How long one request waits for its reply (default 30 s). */
void cli_mdm_set_call_timeout(unsigned ms);
/* How long a request may take in all, finding the leader (an election)
 * and its reply included (--mdm-timeout; default 30 s). */
void cli_mdm_set_wait(unsigned ms);
/* The same from --mdm-timeout's value v, seconds from 0.1 to 3600 (NULL:
 * not given, the default stays). 0, or -1 after saying what is wrong. */
int cli_mdm_set_wait_arg(const char *v);
/* 1: a status query is answered by the MDM asked, from its own state
 * (--local), not by the leader. */
void cli_mdm_set_local(int local);

/* ---- cli_mdms.c: the MDM cluster ---- */

cli_run_fn cli_run_mdm_list, cli_run_mdm_add, cli_run_mdm_remove, cli_run_mdm_transfer;

/* ---- cli_sdc.c ---- */

/* volume map|unmap (c->op): map waits until the SDC serves the export;
 * unmap, and map --read-only, until every SDS refuses what the SDC may no
 * longer do (a warning on stderr if one does not within 10 s). */
cli_run_fn cli_run_map;
/* ---- cli.c: helpers of the handlers ---- */

/* Send req; print what (or {"ok":true} with --json) on success. Exit code. */
int cli_request(const struct cli_env *env, Cairn__MgmtRequest *req, const char *what);
/* The MDM's status reply (the caller frees it). 0, or -1 after saying why. */
int cli_get_status(const struct cli_env *env, Cairn__MgmtReply **rep);
/* The value of a size option the spec requires: 0, or -EINVAL after saying why. */
int cli_size_arg(const struct cli_args *a, const char *name, uint64_t *v);

/* ---- cli_volume.c: volume create, list, show, grow, remove, check-copies,
 * locate ---- */

cli_run_fn cli_run_volume_create;
cli_run_fn cli_run_volume_show;
cli_run_fn cli_run_volume_grow;
cli_run_fn cli_run_volume_remove;
cli_run_fn cli_run_check_copies;
cli_run_fn cli_run_locate;
cli_print_fn cli_print_volume_list;

/* ---- cli_snapshot.c: snapshots (docs/snapshots.md) ---- */

/* snapshot create VOL NAME | snapshot create --group NAME VOL... */
cli_run_fn cli_run_snapshot_create;
/* snapshot list [VOL] */
cli_run_fn cli_run_snapshot_list;
/* snapshot show VOL@NAME */
cli_run_fn cli_run_snapshot_show;
/* snapshot remove VOL@NAME */
cli_run_fn cli_run_snapshot_remove;
/* volume revert VOL --to NAME */
cli_run_fn cli_run_volume_revert;
/* volume clone VOL@SNAP NEWVOL */
cli_run_fn cli_run_volume_clone;
/* volume flatten VOL [--rate MIB/S] [--wait] */
cli_run_fn cli_run_volume_flatten;
/* volume copy SRC[@SNAP] DST [--rate MIB/S] [--wait] */
cli_run_fn cli_run_volume_copy;

/* sdc approve NAME */
cli_run_fn cli_run_sdc_approve;
/* cluster set --restricted-sdc on|off */
cli_run_fn cli_run_cluster_set;

/* ---- cli_print.c ---- */

/* Each prints from a status reply (its map and SDS statuses) to stdout: a
 * table with a header line when json is 0, else JSON. The JSON of the list
 * printers has no trailing newline (cli_print_status() nests them); the
 * status and fault-set printers end theirs with one. */
void cli_print_status(const Cairn__MgmtReply *rep, int json);
void cli_print_sds(const Cairn__MgmtReply *rep, int json);
/* JSON: the SDS list, which nests each SDS's devices. */
void cli_print_devices(const Cairn__MgmtReply *rep, int json);
void cli_print_pools(const Cairn__MgmtReply *rep, int json);
/* only: one volume's name (JSON: that object alone, not a list), or NULL. */
void cli_print_volumes(const Cairn__MgmtReply *rep, const char *only, int json);
void cli_print_sdcs(const Cairn__MgmtReply *rep, int json);
/* s as a JSON string, quoted and escaped, on stdout. */
void cli_print_jstr(const char *s);
void cli_print_fault_sets(const Cairn__MgmtReply *rep, int json);
/* The recent I/O rates the status reports for volume id, or NULL (no recent
 * I/O, or an MDM that does not report them). Points into rep. */
const Cairn__VolumeIoRate *cli_volume_io(const Cairn__MgmtReply *rep, uint64_t id);
/* A rate as the printers show it: a negative or non-finite value from the
 * MDM reads 0. */
double cli_io_value(double x);

/* ---- cli_watch.c ---- */

/* The live views. Each asks the MDM for its status, shows it, sleeps and
 * asks again, and returns the process's exit code. With stdout a terminal
 * it redraws in place (ANSI); otherwise it prints plain text, one block or
 * line at a time, flushed. --json (json) prints one JSON object or array a
 * line, on a terminal or not. SIGINT and SIGTERM end a view with the
 * terminal restored (the cursor shown, the line ended): exit code 0 for
 * status and top, 130 for a wait. */

/* cairn status --watch: the status every interval seconds (> 0), separated
 * by a timestamp line off a terminal. An MDM that does not answer is shown
 * as such, and asked again; runs until a signal. */
int cli_watch_status(const char *mdm, int json, double interval);

/* cairn top: per-volume IOPS, bandwidth and mean latency (the MDM's rates
 * from the SDCs' heartbeats), sorted by total IOPS, every interval seconds;
 * count refreshes (0: until a signal). */
int cli_watch_top(const char *mdm, int json, double interval, long count);

/* cairn rebuild|rebalance wait: poll until cli_progress_assess() says DONE
 * (0), STUCK for a few seconds on end, or timeout seconds pass (> 0; 0: no
 * limit), showing the progress; 1 with the reason on stderr otherwise. */
int cli_watch_wait(const char *mdm, int json, enum cli_work work, double timeout);

/* The handlers of status (--watch), top, and rebuild|rebalance wait. */
cli_run_fn cli_run_status, cli_run_top, cli_run_wait;

/* ---- cli_auth.c ---- */

/* credentials init-ca|issue|show: the cluster's CA and its credentials. */
cli_run_fn cli_run_init_ca, cli_run_issue, cli_run_cred_show;
/* Load the credential at path (or $CAIRN_CREDENTIALS) for every link the
 * CLI opens. 0, or 1 after saying why. */
int cli_auth_setup(const char *path);

#endif
