/* cairn: the commands about clients and their access: volume map and unmap
 * (each waits until the change is in force where it matters), sdc approve,
 * and the cluster setting of restricted SDC mode. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "map_wait.h"

static int get_status(const struct cli_env *env, Cairn__MgmtReply **rep)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_STATUS;
    return cli_mdm_call(env->mdm, &req, rep);
}

static void print_ok(const struct cli_env *env, const char *what)
{
    if (env->json)
        printf("{\"ok\":true}\n");
    else
        printf("%s\n", what);
}

/* After a map: wait until the SDC serves the export, i.e. its heartbeats say
 * it holds a map at least as new as version (it installs the export with
 * that map), so that a client that connects at once finds it. An SDC that is
 * not connected serves it when it connects: say so rather than wait. */
#define MAP_WAIT_MS 20000

static const char *map_served(const struct cli_env *env, const char *sdc, uint64_t version,
                              char *why, size_t whylen)
{
    for (int waited = 0;; waited += 200) {
        Cairn__MgmtReply *rep;
        if (get_status(env, &rep) < 0)
            return "the MDM did not answer";
        const Cairn__Sdc *sc = NULL;
        for (size_t i = 0; i < rep->map->n_sdcs; i++)
            if (!strcmp(rep->map->sdcs[i]->name, sdc))
                sc = rep->map->sdcs[i];
        const Cairn__SdcStatus *st = NULL;
        for (size_t i = 0; sc && i < rep->n_sdc_status; i++)
            if (rep->sdc_status[i]->sdc_id == sc->id)
                st = rep->sdc_status[i];
        int connected = st && st->connected, held = st ? st->map_version >= version : 0;
        uint64_t has = st ? st->map_version : 0;
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        if (!connected) {
            snprintf(why, whylen, "SDC '%s' is not connected: it serves the export when it does",
                     sdc);
            return why;
        }
        if (held)
            return NULL;
        if (waited >= MAP_WAIT_MS) {
            snprintf(why, whylen,
                     "SDC '%s' does not serve it yet (it holds map version %llu, not %llu)", sdc,
                     (unsigned long long)has, (unsigned long long)version);
            return why;
        }
        usleep(200000);
    }
}

/* After an unmap (or a mapping made read-only, or a takeover): wait until
 * every SDS the MDM is connected to holds a map at least as new as version,
 * i.e. refuses the SDC what it no longer may do (map_wait.h: the REST API
 * waits for the same). An SDS the MDM counts up but cannot reach learns it
 * when it reconnects: named in the warning. */
static const char *sdss_refuse(const struct cli_env *env, uint64_t version, char *why,
                               size_t whylen, int *late)
{
    *late = 1;
    for (int waited = 0;; waited += MAP_WAIT_SDS_POLL_MS) {
        Cairn__MgmtReply *rep;
        if (get_status(env, &rep) < 0)
            return "the MDM did not answer";
        enum map_wait_sds w = map_wait_sdss(rep, version, why, whylen);
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        if (w != MAP_WAIT_SDS_LATE) {
            *late = 0;
            return w == MAP_WAIT_SDS_AWAY ? why : NULL;
        }
        if (waited >= MAP_WAIT_SDS_MS)
            return why;
        usleep(MAP_WAIT_SDS_POLL_MS * 1000);
    }
}

int cli_run_map(const struct cli_command *c, const struct cli_args *a, const struct cli_env *env)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = c->op;
    req.volume = a->args[0];
    req.sdc = cli_args_get(a, "--sdc");
    req.read_only = cli_args_count(a, "--read-only") > 0;
    if (req.op == CAIRN__MGMT_OP__OP_MAP) {
        const char *access = cli_args_get(a, "--access");
        req.access = (char *)(access ? access : "");
        req.takeover = cli_args_count(a, "--takeover") > 0;
    }
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, &req, &rep) < 0)
        return 1;
    uint64_t version = rep->map ? rep->map->version : 0;
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    char why[256];
    const char *late;
    int behind = 0;
    /* what the SDC may no longer do is refused by the SDSs first; after a
     * takeover, every SDS refuses the old writer (docs/attach.md). A
     * takeover that an SDS has not heard of is not a fence yet: an error,
     * as the REST API's 504, so that a script never moves a writer on it */
    late = req.op == CAIRN__MGMT_OP__OP_UNMAP || req.read_only || req.takeover
               ? sdss_refuse(env, version, why, sizeof(why), &behind)
               : NULL;
    if (late && req.takeover && behind)
        return cli_fail("volume '%s' is taken over, but the old writer is not known to be "
                        "fenced: %s; run the command again to wait again",
                        req.volume, late);
    if (late)
        fprintf(stderr, "cairn: volume '%s' is %s, but %s\n", req.volume,
                req.op == CAIRN__MGMT_OP__OP_UNMAP ? "unmapped"
                : req.takeover                     ? "taken over"
                                                   : "mapped read-only",
                late);
    if (req.op == CAIRN__MGMT_OP__OP_MAP &&
        (late = map_served(env, req.sdc, version, why, sizeof(why))))
        fprintf(stderr, "cairn: volume '%s' is mapped, but %s\n", req.volume, late);
    print_ok(env, "ok");
    return 0;
}

int cli_run_sdc_approve(const struct cli_command *c, const struct cli_args *a,
                        const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_SDC_APPROVE;
    req.sdc = a->args[0];
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, &req, &rep) < 0)
        return 1;
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    print_ok(env, "approved: volumes may now be mapped to it");
    return 0;
}

int cli_run_cluster_set(const struct cli_command *c, const struct cli_args *a,
                        const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_CLUSTER_SET;
    req.restricted_sdc = cli_args_get(a, "--restricted-sdc");
    if (strcmp(req.restricted_sdc, "on") && strcmp(req.restricted_sdc, "off"))
        return cli_fail("--restricted-sdc takes on or off, not '%s'", req.restricted_sdc);
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, &req, &rep) < 0)
        return 1;
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    print_ok(env, !strcmp(req.restricted_sdc, "on")
                      ? "restricted SDC mode on: a new SDC waits for 'cairn sdc approve'"
                      : "restricted SDC mode off: a new SDC is approved when it registers");
    return 0;
}
