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
 *
 * No globals: main() hands each handler the MDM's address and the --json
 * choice; the printers take the choice as an argument.
 */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include "cairn.pb-c.h"
#include "cli_args.h"
#include "cli_check.h"

/* ---- cli.c ---- */

/* Print "cairn: <message>" on stderr. Returns 1, the exit code of a failed
 * command, so that a handler can end with `return cli_fail(...)`. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cli_mdm.c ---- */

/* Send req to the MDM at addr ("host:port" or "unix:/path") and wait for
 * its reply on the default loop. Returns 0 with *rep set (the caller frees
 * it with cairn__mgmt_reply__free_unpacked()), or -errno with *rep NULL
 * after printing why on stderr: the MDM unreachable, the request failed,
 * or the MDM refused it (then its own message). req is only read. */
int cli_mdm_call(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **rep);

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
void cli_print_fault_sets(const Cairn__MgmtReply *rep, int json);

#endif
