/* cairn: the operator's CLI. The command table, the usage text made from
 * it, the handlers, and main(): find the command words, parse the rest
 * against that command's options, run its handler. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmap.h"
#include "log.h"
#include "util.h"
#include "version.h"

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cairn: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static int usage(void);

/* ---- handlers ---- */

/* A request whose reply means "done": print what, or {"ok":true}. */
int cli_request(const struct cli_env *env, Cairn__MgmtRequest *req, const char *what)
{
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, req, &rep) < 0)
        return 1;
    if (env->json)
        printf("{\"ok\":true}\n");
    else
        printf("%s\n", what);
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return 0;
}

int cli_get_status(const struct cli_env *env, Cairn__MgmtReply **rep)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_STATUS;
    return cli_mdm_call(env->mdm, &req, rep);
}

/* The value of a size option the spec requires (so it is there): 0, or
 * -EINVAL after saying why. */
int cli_size_arg(const struct cli_args *a, const char *name, uint64_t *v)
{
    const char *s = cli_args_get(a, name);
    if (parse_size(s, v) < 0) {
        cli_fail("invalid size '%s' (use e.g. 8G, 512M)", s);
        return -EINVAL;
    }
    return 0;
}

/* A list from the status: the JSON printers leave its line open. */
static int run_list(const struct cli_command *c, const struct cli_args *a,
                    const struct cli_env *env)
{
    (void)a;
    Cairn__MgmtReply *rep;
    if (cli_get_status(env, &rep) < 0)
        return 1;
    c->print(rep, env->json);
    if (env->json)
        printf("\n");
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return 0;
}

int cli_run_report(const struct cli_command *c, const struct cli_args *a, const struct cli_env *env)
{
    (void)a;
    Cairn__MgmtReply *rep;
    if (cli_get_status(env, &rep) < 0)
        return 1;
    c->print(rep, env->json);
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return 0;
}

static int run_pool(const struct cli_command *c, const struct cli_args *a,
                    const struct cli_env *env)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = c->op;
    req.pool = a->args[0];
    /* atoi as always: the MDM refuses what makes no sense, 0 means its default */
    if (cli_args_get(a, "--copies"))
        req.copies = (uint32_t)atoi(cli_args_get(a, "--copies"));
    if (cli_args_get(a, "--pgs"))
        req.pg_count = (uint32_t)atoi(cli_args_get(a, "--pgs"));
    if (cli_args_get(a, "--overcommit"))
        req.overcommit_pct = (uint32_t)atoi(cli_args_get(a, "--overcommit"));
    if (req.op == CAIRN__MGMT_OP__OP_POOL_SET && !req.overcommit_pct)
        return cli_fail("pool set needs --overcommit PCT");
    return cli_request(env, &req, "ok");
}

static int run_sds_add(const struct cli_command *c, const struct cli_args *a,
                       const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_SDS_ADD;
    req.name = cli_args_get(a, "--name");
    req.addr = cli_args_get(a, "--addr");
    char host[256];
    int port;
    if (addr_split(req.addr, host, sizeof(host), &port) < 0)
        return cli_fail("invalid address '%s' (want HOST:PORT)", req.addr);
    if (cli_args_get(a, "--fault-set"))
        req.fault_set = cli_args_get(a, "--fault-set");
    if (cli_args_get(a, "--pool"))
        req.pool = cli_args_get(a, "--pool");
    req.paths = cli_args_all(a, "--device", &req.n_paths);
    return cli_request(env, &req, "ok");
}

static int run_maintenance(const struct cli_command *c, const struct cli_args *a,
                           const struct cli_env *env)
{
    (void)c;
    const char *what = a->args[0];
    if (strcmp(what, "enter") && strcmp(what, "exit")) {
        cli_fail("sds maintenance takes enter or exit, not '%s'", what);
        return usage();
    }
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = !strcmp(what, "enter") ? CAIRN__MGMT_OP__OP_MAINTENANCE_ENTER
                                    : CAIRN__MGMT_OP__OP_MAINTENANCE_EXIT;
    req.name = a->args[1];
    return cli_request(env, &req, "ok");
}

static int run_sds_remove(const struct cli_command *c, const struct cli_args *a,
                          const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_SDS_REMOVE;
    req.name = a->args[0];
    req.force = cli_args_count(a, "--force") > 0;
    return cli_request(env, &req,
                       req.force ? "forgotten; its copies are rebuilt from the others"
                                 : "draining: its copies move to other SDSs, then it is "
                                   "forgotten (see 'cairn status')");
}

static int run_device_add(const struct cli_command *c, const struct cli_args *a,
                          const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_DEVICE_ADD;
    req.name = cli_args_get(a, "--sds");
    if (cli_args_get(a, "--pool"))
        req.pool = cli_args_get(a, "--pool");
    req.paths = cli_args_all(a, "--device", &req.n_paths);
    return cli_request(env, &req, "ok");
}

static int run_device_remove(const struct cli_command *c, const struct cli_args *a,
                             const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_DEVICE_REMOVE;
    req.name = cli_args_get(a, "--sds");
    char *path = cli_args_get(a, "--device");
    req.paths = &path;
    req.n_paths = 1;
    req.force = cli_args_count(a, "--force") > 0;
    return cli_request(env, &req,
                       req.force ? "forgotten; its copies are rebuilt from the others"
                                 : "draining: its copies move to other devices");
}

static int run_fault_set(const struct cli_command *c, const struct cli_args *a,
                         const struct cli_env *env)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = c->op;
    req.fault_set = a->args[0];
    return cli_request(env, &req, "ok");
}

/* ---- the command table ---- */

/* Shorthands for the table's option lists and its one positional NAME. */
// clang-format off
#define OPTS(...) ((const struct cli_opt[]){__VA_ARGS__, {NULL, 0, NULL}})
#define VALUE(name) {name, CLI_OPT_VALUE, NULL}
#define NEEDED(name) {name, CLI_OPT_VALUE | CLI_OPT_REQUIRED, NULL}
#define FLAG(name) {name, 0, NULL}
#define DEVICES {"--device", CLI_OPT_VALUE | CLI_OPT_REPEAT | CLI_OPT_REQUIRED, \
                 "at least one --device PATH is required"}
#define NAME .args = {"NAME"}, .n_args = 1, .n_required = 1
// clang-format on

/* Accepted by every command, before, between or after its words. */
static const struct cli_opt globals[] = {
    VALUE("--mdm"),  VALUE("--mdm-timeout"), VALUE("--credentials"), FLAG("--json"),
    FLAG("--local"), FLAG("--help"),         {NULL, 0, NULL},
};

/* In the order of the usage text. Options that every command takes are in
 * globals; .op is for the handlers that serve two commands, .print for the
 * ones that show a part of the status. */
static const struct cli_command commands[] = {
    {.obj = "status",
     .usage = "status [--watch [--interval SECONDS]]",
     .help = "cluster overview;\n"
             "--watch: redrawn every SECONDS (2)",
     .spec = {.opts = OPTS(FLAG("--watch"), VALUE("--interval"))},
     .run = cli_run_status,
     .print = cli_print_status},
    {.obj = "top",
     .usage = "top [--interval SECONDS] [--count N]",
     .help = "live per-volume IOPS, bandwidth, latency;\n"
             "--count: stop after N refreshes",
     .spec = {.opts = OPTS(VALUE("--interval"), VALUE("--count"))},
     .run = cli_run_top},
    {.obj = "rebuild",
     .verb = "wait",
     .usage = "rebuild wait [--timeout SECONDS]",
     .help = "until every PG has all its copies",
     .spec = {.opts = OPTS(VALUE("--timeout"))},
     .run = cli_run_wait,
     .op = CLI_WORK_REBUILD},
    {.obj = "rebalance",
     .verb = "wait",
     .usage = "rebalance wait [--timeout SECONDS]",
     .help = "until no copy is left to move",
     .spec = {.opts = OPTS(VALUE("--timeout"))},
     .run = cli_run_wait,
     .op = CLI_WORK_REBALANCE},

    {.obj = "credentials",
     .verb = "init-ca",
     .usage = "credentials init-ca FILE",
     .help = "make the cluster's CA key (once; keep it safe)",
     .spec = {.args = {"FILE"}, .n_args = 1, .n_required = 1},
     .run = cli_run_init_ca},
    {.obj = "credentials",
     .verb = "issue",
     .usage = "credentials issue --ca FILE --role ROLE --name NAME --out FILE",
     .help = "a credential signed by the CA;\n"
             "ROLE: mdm, sds, sdc, admin or monitor",
     .spec = {.opts = OPTS(NEEDED("--ca"), NEEDED("--role"), NEEDED("--name"), NEEDED("--out"))},
     .run = cli_run_issue},
    {.obj = "credentials",
     .verb = "show",
     .usage = "credentials show FILE",
     .spec = {.args = {"FILE"}, .n_args = 1, .n_required = 1},
     .run = cli_run_cred_show},

    {.obj = "pool",
     .verb = "create",
     .usage = "pool create NAME [--copies 2|3] [--pgs N] [--overcommit PCT]",
     .spec = {.opts = OPTS(VALUE("--copies"), VALUE("--pgs"), VALUE("--overcommit")), NAME},
     .run = run_pool,
     .op = CAIRN__MGMT_OP__OP_POOL_CREATE},
    /* --copies and --pgs have always been accepted here, and are ignored */
    {.obj = "pool",
     .verb = "set",
     .usage = "pool set NAME --overcommit PCT",
     .spec = {.opts = OPTS(VALUE("--copies"), VALUE("--pgs"),
                           {"--overcommit", CLI_OPT_VALUE | CLI_OPT_REQUIRED,
                            "pool set needs --overcommit PCT"}),
              NAME},
     .run = run_pool,
     .op = CAIRN__MGMT_OP__OP_POOL_SET},
    {.obj = "pool",
     .verb = "list",
     .usage = "pool list",
     .run = run_list,
     .print = cli_print_pools},

    {.obj = "sds",
     .verb = "add",
     .usage = "sds add --name NAME --addr HOST:PORT --device PATH [--device PATH]... "
              "[--fault-set NAME] [--pool NAME]",
     .spec = {.opts = OPTS(NEEDED("--name"), NEEDED("--addr"), DEVICES, VALUE("--fault-set"),
                           VALUE("--pool"))},
     .run = run_sds_add},
    {.obj = "sds", .verb = "list", .usage = "sds list", .run = run_list, .print = cli_print_sds},
    {.obj = "sds",
     .verb = "maintenance",
     .usage = "sds maintenance enter|exit NAME",
     .help = "take an SDS out for a reboot without a rebuild",
     .spec = {.args = {"enter|exit", "NAME"}, .n_args = 2, .n_required = 2},
     .run = run_maintenance},
    {.obj = "sds",
     .verb = "remove",
     .usage = "sds remove NAME [--force]",
     .help = "drain its copies elsewhere, then forget it;\n"
             "--force: forget it now, rebuild its copies",
     .spec = {.opts = OPTS(FLAG("--force")), NAME},
     .run = run_sds_remove},

    {.obj = "device",
     .verb = "add",
     .usage = "device add --sds NAME --device PATH [--device PATH]... [--pool NAME]",
     .spec = {.opts = OPTS(NEEDED("--sds"), DEVICES, VALUE("--pool"))},
     .run = run_device_add},
    {.obj = "device",
     .verb = "remove",
     .usage = "device remove --sds NAME --device PATH [--force]",
     .spec = {.opts = OPTS(
                  {"--sds", CLI_OPT_VALUE | CLI_OPT_REQUIRED, "--sds and --device are required"},
                  {"--device", CLI_OPT_VALUE | CLI_OPT_REQUIRED, "--sds and --device are required"},
                  FLAG("--force"))},
     .run = run_device_remove},
    {.obj = "device",
     .verb = "list",
     .usage = "device list",
     .run = run_list,
     .print = cli_print_devices},

    {.obj = "fault-set",
     .verb = "add",
     .usage = "fault-set add|remove NAME",
     .help = "SDSs that may fail together (--fault-set)",
     .spec = {NAME},
     .run = run_fault_set,
     .op = CAIRN__MGMT_OP__OP_FAULT_SET_ADD},
    {.obj = "fault-set",
     .verb = "remove",
     .spec = {NAME},
     .run = run_fault_set,
     .op = CAIRN__MGMT_OP__OP_FAULT_SET_REMOVE},
    {.obj = "fault-set",
     .verb = "list",
     .usage = "fault-set list",
     .run = cli_run_report,
     .print = cli_print_fault_sets},

    {.obj = "volume",
     .verb = "create",
     .usage = "volume create NAME --size SIZE [--pool NAME] [--thick]",
     .spec = {.opts = OPTS(NEEDED("--size"), VALUE("--pool"), FLAG("--thick")), NAME},
     .run = cli_run_volume_create},
    {.obj = "volume",
     .verb = "list",
     .usage = "volume list",
     .run = run_list,
     .print = cli_print_volume_list},
    {.obj = "volume",
     .verb = "show",
     .usage = "volume show NAME",
     .spec = {NAME},
     .run = cli_run_volume_show},
    {.obj = "volume",
     .verb = "grow",
     .usage = "volume grow NAME --size SIZE",
     .spec = {.opts = OPTS(NEEDED("--size")), NAME},
     .run = cli_run_volume_grow},
    {.obj = "volume",
     .verb = "remove",
     .usage = "volume remove NAME",
     .spec = {NAME},
     .run = cli_run_volume_remove},
    {.obj = "volume",
     .verb = "check-copies",
     .usage = "volume check-copies NAME",
     .help = "compare every copy of every extent",
     .spec = {NAME},
     .run = cli_run_check_copies},
    {.obj = "volume",
     .verb = "locate",
     .usage = "volume locate NAME --offset BYTES",
     .help = "the PG, epoch and copies holding an offset",
     .spec = {.opts = OPTS(NEEDED("--offset")), NAME},
     .run = cli_run_locate},
    {.obj = "volume",
     .verb = "map",
     .usage = "volume map NAME --sdc SDC [--read-only] [--access MODE] [--takeover]",
     .help = "MODE: single-writer (default) or shared",
     .spec = {.opts =
                  OPTS(NEEDED("--sdc"), FLAG("--read-only"), VALUE("--access"), FLAG("--takeover")),
              NAME},
     .run = cli_run_map,
     .op = CAIRN__MGMT_OP__OP_MAP},
    /* --read-only has always been accepted here, and means nothing */
    {.obj = "volume",
     .verb = "unmap",
     .usage = "volume unmap NAME --sdc SDC",
     .spec = {.opts = OPTS(NEEDED("--sdc"), FLAG("--read-only")), NAME},
     .run = cli_run_map,
     .op = CAIRN__MGMT_OP__OP_UNMAP},

    {.obj = "volume",
     .verb = "revert",
     .usage = "volume revert NAME --to SNAPSHOT",
     .help = "back to a snapshot's data (not mapped read-write)",
     .spec = {.opts = OPTS(NEEDED("--to")), NAME},
     .run = cli_run_volume_revert},
    {.obj = "volume",
     .verb = "clone",
     .usage = "volume clone VOLUME@SNAPSHOT NEWVOL",
     .help = "writable at once, sharing the snapshot's data",
     .spec = {.args = {"VOLUME@SNAPSHOT", "NEWVOL"}, .n_args = 2, .n_required = 2},
     .run = cli_run_volume_clone},
    {.obj = "volume",
     .verb = "flatten",
     .usage = "volume flatten NAME [--rate MIB/S] [--wait]",
     .help = "copy what a clone shares into it, in the background;\n"
             "--rate: per SDS (64); --wait: with progress, until done",
     .spec = {.opts = OPTS(VALUE("--rate"), FLAG("--wait")), NAME},
     .run = cli_run_volume_flatten},
    {.obj = "volume",
     .verb = "copy",
     .usage = "volume copy SRC[@SNAPSHOT] DST [--rate MIB/S] [--wait]",
     .help = "made by the SDSs (no client); of SRC now, or of a snapshot",
     .spec = {.opts = OPTS(VALUE("--rate"), FLAG("--wait")),
              .args = {"SRC", "DST"},
              .n_args = 2,
              .n_required = 2},
     .run = cli_run_volume_copy},

    {.obj = "snapshot",
     .verb = "create",
     .usage = "snapshot create VOLUME NAME | --group NAME VOLUME...",
     .help = "crash-consistent; --group: one cut across the volumes",
     .spec = {.opts = OPTS(VALUE("--group")),
              .args = {"VOLUME", "NAME"},
              .n_args = CLI_ARGS_MAX_ARGS,
              .n_required = 1},
     .run = cli_run_snapshot_create},
    {.obj = "snapshot",
     .verb = "list",
     .usage = "snapshot list [VOLUME]",
     .spec = {.args = {"VOLUME"}, .n_args = 1},
     .run = cli_run_snapshot_list},
    {.obj = "snapshot",
     .verb = "show",
     .usage = "snapshot show VOLUME@NAME",
     .spec = {NAME},
     .run = cli_run_snapshot_show},
    {.obj = "snapshot",
     .verb = "remove",
     .usage = "snapshot remove VOLUME@NAME",
     .help = "its data is merged into the next newer layer",
     .spec = {NAME},
     .run = cli_run_snapshot_remove},

    {.obj = "sdc", .verb = "list", .usage = "sdc list", .run = run_list, .print = cli_print_sdcs},
    {.obj = "sdc",
     .verb = "approve",
     .usage = "sdc approve NAME",
     .help = "let a new SDC be mapped (restricted mode)",
     .spec = {NAME},
     .run = cli_run_sdc_approve},

    {.obj = "mdm",
     .verb = "list",
     .usage = "mdm list",
     .help = "the MDM cluster: each MDM's role, term, indexes",
     .run = cli_run_mdm_list},
    {.obj = "mdm",
     .verb = "add",
     .usage = "mdm add --id N --addr HOST:PORT --raft-addr HOST:PORT",
     .help = "add an MDM started with --join;\n"
             "returns once it is a voter",
     .spec = {.opts = OPTS(NEEDED("--id"), NEEDED("--addr"), NEEDED("--raft-addr"))},
     .run = cli_run_mdm_add},
    {.obj = "mdm",
     .verb = "remove",
     .usage = "mdm remove ID",
     .help = "refused if it would lose quorum",
     .spec = {.args = {"ID"}, .n_args = 1, .n_required = 1},
     .run = cli_run_mdm_remove},
    {.obj = "mdm",
     .verb = "transfer-leadership",
     .usage = "mdm transfer-leadership [ID]",
     .help = "hand leadership to ID (or the most\n"
             "up-to-date voter)",
     .spec = {.args = {"ID"}, .n_args = 1},
     .run = cli_run_mdm_transfer},

    {.obj = "cluster",
     .verb = "set",
     .usage = "cluster set --restricted-sdc on|off",
     .help = "on: a new SDC waits for sdc approve",
     .spec = {.opts = OPTS(NEEDED("--restricted-sdc"))},
     .run = cli_run_cluster_set},
};

/* ---- usage ---- */

#define USAGE_WIDTH 80    /* a synopsis wraps rather than pass this column */
#define USAGE_HELP_COL 45 /* where the description column starts */

/* One command's lines: its synopsis, wrapped at the spaces outside [...]
 * with the continuation under its first argument, then its description. */
static void usage_line(const struct cli_command *c)
{
    int indent = 2 + (int)strlen(c->obj) + 1 + (c->verb ? (int)strlen(c->verb) + 1 : 0);
    int col = fprintf(stderr, "  ");
    int line_start = 1;
    for (const char *s = c->usage; *s;) {
        const char *e = s;
        for (int depth = 0; *e && (*e != ' ' || depth); e++)
            depth += (*e == '[') - (*e == ']');
        int len = (int)(e - s);
        if (!line_start && col + 1 + len > USAGE_WIDTH) {
            fprintf(stderr, "\n%*s", indent, "");
            col = indent;
            line_start = 1;
        }
        col += fprintf(stderr, "%s%.*s", line_start ? "" : " ", len, s);
        line_start = 0;
        s = *e ? e + 1 : e;
    }
    for (const char *h = c->help; h;) {
        const char *nl = strchr(h, '\n');
        int len = nl ? (int)(nl - h) : (int)strlen(h);
        if (col >= USAGE_HELP_COL) {
            fprintf(stderr, "\n");
            col = 0;
        }
        fprintf(stderr, "%*s%.*s", USAGE_HELP_COL - col, "", len, h);
        col = USAGE_HELP_COL + len;
        h = nl ? nl + 1 : NULL;
    }
    fprintf(stderr, "\n");
}

/* Print the usage text (on stderr) and return its exit code, 2. */
static int usage(void)
{
    fprintf(stderr, "usage: cairn [--mdm ADDR[,ADDR...]] [--mdm-timeout SECONDS] [--local]\n"
                    "             [--credentials FILE] [--json] COMMAND\n"
                    "       cairn --help | --version\n\n");
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (commands[i].usage)
            usage_line(&commands[i]);
    fprintf(stderr, "\n"
                    "SIZE takes K, M, G, T, P suffixes (powers of 1024). --json prints JSON.\n"
                    "The MDM address also comes from $CAIRN_MDM; given several (a,b,c),\n"
                    "cairn finds the leader; --mdm-timeout: how long it waits for a leader\n"
                    "(an election) and its answer, in all (30). --local: a query is answered\n"
                    "by the MDM asked, from its own copy of the state. The credential\n"
                    "(--credentials FILE) comes from $CAIRN_CREDENTIALS.\n");
    return 2;
}

/* ---- main ---- */

static const struct cli_command *lookup(const char *obj, const char *verb)
{
    for (size_t i = 0; obj && i < ARRAY_SIZE(commands); i++) {
        const struct cli_command *c = &commands[i];
        if (!strcmp(c->obj, obj) && (!c->verb || (verb && !strcmp(c->verb, verb))))
            return c;
    }
    return NULL;
}

/* A parse failed: say why, with the usage when the shape was wrong. Returns
 * the exit code. */
static int bad_args(const struct cli_args *a, int r)
{
    if (r == -ENOMEM)
        return cli_fail("out of memory");
    cli_fail("%s", a->err);
    return a->err_usage ? usage() : 1;
}

/* No command matched the words obj and verb (either may be NULL); r is the
 * parse of the other arguments. Returns the exit code. */
static int no_command(const char *obj, const char *verb, const struct cli_args *a, int r)
{
    /* A word is missing when an option stopped the search for them: then
     * that option is to blame. With both words there, the command is. */
    if (!verb && r < 0)
        return bad_args(a, r);
    if (obj)
        fprintf(stderr, "cairn: unknown command '%s %s'\n", obj, verb ? verb : "");
    return usage();
}

int main(int argc, char **argv)
{
    struct cli_env env = {.mdm = "127.0.0.1:6611"};
    /* the RPC layer's notes (a peer's reset) are for daemons' logs: the
     * CLI says what failed in its own words */
    log_init("cairn", LOG_WARN);
    if (getenv("CAIRN_MDM"))
        env.mdm = getenv("CAIRN_MDM");
    /* A value is never "--help" or "--version" ("--key --help" is a missing
     * value), so each is the option wherever it stands, and asks for the
     * usage or the version alone. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help"))
            return usage();
        if (!strcmp(argv[i], "--version"))
            return printf("cairn %s\n", CAIRN_VERSION) < 0;
    }

    /* the command words, which global options may precede or separate */
    int w[2];
    int nw = cli_args_words(globals, argc - 1, argv + 1, 2, w);
    const char *obj = nw > 0 ? argv[1 + w[0]] : NULL;
    const char *verb = nw > 1 ? argv[1 + w[1]] : NULL;
    const struct cli_command *cmd = lookup(obj, verb);
    int nwords = cmd ? (cmd->verb ? 2 : 1) : nw;

    /* the command's own arguments: all the others, in their order */
    char **rest = calloc((size_t)argc, sizeof(*rest));
    if (!rest)
        return cli_fail("out of memory");
    int nrest = 0;
    for (int i = 1; i < argc; i++)
        if (!(nwords > 0 && i == 1 + w[0]) && !(nwords > 1 && i == 1 + w[1]))
            rest[nrest++] = argv[i];

    static const struct cli_args_spec no_spec = {0};
    struct cli_args a;
    int r = cli_args_parse(&a, cmd ? &cmd->spec : &no_spec, globals, nrest, rest);
    int rc;
    if (!cmd) {
        rc = no_command(obj, verb, &a, r);
    } else if (r < 0) {
        rc = bad_args(&a, r);
    } else {
        env.json = cli_args_count(&a, "--json") > 0;
        cli_mdm_set_local(cli_args_count(&a, "--local") > 0);
        if (cli_args_get(&a, "--mdm"))
            env.mdm = cli_args_get(&a, "--mdm");
        if (cli_mdm_set_wait_arg(cli_args_get(&a, "--mdm-timeout")) < 0)
            rc = 1;
        /* every command but these talks to the cluster, with a credential */
        else if (!strcmp(cmd->obj, "credentials") ||
                 !cli_auth_setup(cli_args_get(&a, "--credentials")))
            rc = cmd->run(cmd, &a, &env);
        else
            rc = 1;
    }
    cli_args_free(&a);
    free(rest);
    return rc;
}
