/* cairn volume create|list|show|grow|remove|check-copies|locate: the
 * volume commands other than map and unmap (cli_sdc.c) and those of
 * snapshots (cli_snapshot.c). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_check.h"
#include "cmap.h"
#include "util.h"

void cli_print_volume_list(const Cairn__MgmtReply *rep, int json)
{
    cli_print_volumes(rep, NULL, json);
}

int cli_run_volume_show(const struct cli_command *c, const struct cli_args *a,
                        const struct cli_env *env)
{
    (void)c;
    const char *name = a->args[0];
    Cairn__MgmtReply *rep;
    if (cli_get_status(env, &rep) < 0)
        return 1;
    int rc = 0;
    if (!cmap_volume_by_name(rep->map, name)) {
        rc = cli_fail("no volume named '%s'", name);
    } else {
        cli_print_volumes(rep, name, env->json);
        if (env->json)
            printf("\n");
    }
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return rc;
}

int cli_run_volume_create(const struct cli_command *c, const struct cli_args *a,
                          const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_VOLUME_CREATE;
    req.volume = a->args[0];
    if (cli_size_arg(a, "--size", &req.size) < 0)
        return 1;
    req.thick = cli_args_count(a, "--thick") > 0;
    if (cli_args_get(a, "--pool"))
        req.pool = cli_args_get(a, "--pool");
    return cli_request(env, &req, "ok");
}

int cli_run_volume_grow(const struct cli_command *c, const struct cli_args *a,
                        const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_VOLUME_GROW;
    req.volume = a->args[0];
    if (cli_size_arg(a, "--size", &req.size) < 0)
        return 1;
    return cli_request(env, &req, "ok");
}

int cli_run_volume_remove(const struct cli_command *c, const struct cli_args *a,
                          const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_VOLUME_REMOVE;
    req.volume = a->args[0];
    return cli_request(env, &req, "ok");
}

int cli_run_check_copies(const struct cli_command *c, const struct cli_args *a,
                         const struct cli_env *env)
{
    (void)c;
    /* A map that changes during the check (a failover, a rebuild finishing)
     * makes some copies answer "stale": fetch the map again and recheck. */
    for (int attempt = 0;; attempt++) {
        Cairn__MgmtReply *rep;
        if (cli_get_status(env, &rep) < 0)
            return 1;
        int rc = cli_check_copies(rep->map, a->args[0], env->json, attempt >= 20);
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        if (rc != 2)
            return rc;
        usleep(500000);
    }
}

int cli_run_locate(const struct cli_command *c, const struct cli_args *a, const struct cli_env *env)
{
    (void)c;
    uint64_t off;
    if (cli_size_arg(a, "--offset", &off) < 0)
        return 1;
    Cairn__MgmtReply *rep;
    if (cli_get_status(env, &rep) < 0)
        return 1;
    int rc = cli_locate(rep->map, a->args[0], off, env->json);
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return rc;
}
