/* cairn snapshot create|list|show|remove and cairn volume revert
 * (docs/snapshots.md). A snapshot is named VOLUME@SNAPSHOT. The sizes come
 * from the SDSs' heartbeats (LayerUsage): written is the data of the
 * snapshot's own layer, own the part of it the volume (or the next newer
 * snapshot) has written over since, which is what removing it frees. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cluster_stats.h"
#include "cmap.h"
#include "util.h"

int cli_run_snapshot_create(const struct cli_command *c, const struct cli_args *a,
                            const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_SNAPSHOT_CREATE;
    char *group = cli_args_get(a, "--group");
    char *vols[CLI_ARGS_MAX_ARGS];
    size_t n = 0;
    if (group) {
        /* --group NAME VOL...: the same name on every volume, one cut */
        for (int i = 0; i < a->n_args; i++)
            vols[n++] = a->args[i];
        req.name = group;
        req.group = group;
    } else {
        if (a->n_args != 2)
            return cli_fail("snapshot create VOLUME NAME, or snapshot create --group NAME "
                            "VOLUME...");
        vols[n++] = a->args[0];
        req.name = a->args[1];
    }
    req.volumes = vols;
    req.n_volumes = n;
    char what[256];
    snprintf(what, sizeof(what), "snapshot '%s' taken of %zu volume%s", req.name, n,
             n == 1 ? "" : "s");
    return cli_request(env, &req, what);
}

int cli_run_snapshot_remove(const struct cli_command *c, const struct cli_args *a,
                            const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE;
    req.volume = a->args[0];
    if (!strchr(req.volume, '@'))
        return cli_fail("name the snapshot as VOLUME@SNAPSHOT, not '%s'", req.volume);
    return cli_request(env, &req, "removed; its space is freed as the SDSs merge it");
}

int cli_run_volume_revert(const struct cli_command *c, const struct cli_args *a,
                          const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_VOLUME_REVERT;
    req.volume = a->args[0];
    req.name = cli_args_get(a, "--to");
    return cli_request(env, &req, "reverted");
}

int cli_run_volume_clone(const struct cli_command *c, const struct cli_args *a,
                         const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_VOLUME_CLONE;
    req.volume = a->args[0];
    req.name = a->args[1];
    if (!strchr(req.volume, '@'))
        return cli_fail("clone a snapshot, VOLUME@SNAPSHOT, not '%s'", req.volume);
    return cli_request(env, &req, "cloned: writable now, sharing the snapshot's data");
}

int cli_run_volume_flatten(const struct cli_command *c, const struct cli_args *a,
                           const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_VOLUME_FLATTEN;
    req.volume = a->args[0];
    const char *rate = cli_args_get(a, "--rate");
    if (rate) {
        char *end;
        double mib = strtod(rate, &end);
        if (*end || mib <= 0)
            return cli_fail("--rate takes MiB per second per SDS, not '%s'", rate);
        req.size = (uint64_t)(mib * 1048576.0);
    }
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, &req, &rep) < 0)
        return 1;
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    if (!cli_args_count(a, "--wait")) {
        printf(env->json ? "{\"ok\":true}\n"
                         : "flattening in the background ('cairn volume show %s' says how far)\n",
               req.volume);
        return 0;
    }
    /* --wait: until the volume reads through nothing, with progress */
    double last = -1;
    for (;;) {
        Cairn__MgmtRequest st = CAIRN__MGMT_REQUEST__INIT;
        st.op = CAIRN__MGMT_OP__OP_STATUS;
        if (cli_mdm_call(env->mdm, &st, &rep) < 0)
            return 1;
        const Cairn__Volume *v = cmap_volume_by_name(rep->map, req.volume);
        if (!v) {
            cairn__mgmt_reply__free_unpacked(rep, NULL);
            return cli_fail("volume '%s' is gone", req.volume);
        }
        int done = !v->flattening && !v->head_parent;
        double f = done ? 1.0 : cluster_flatten_progress(rep, v);
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        if (!env->json && f != last)
            fprintf(stderr, "flattening %s: %.0f%%\n", req.volume, f * 100);
        last = f;
        if (done)
            break;
        usleep(200000);
    }
    printf(env->json ? "{\"ok\":true}\n" : "flattened: it shares no data any more\n");
    return 0;
}

/* volume copy SRC[@SNAP] DST: a clone flattened at once. The copy is made
 * by the SDSs, each on its own devices (DST is placed as SRC), so no byte
 * crosses a client or the network. From a volume, a snapshot named
 * copy-to-DST is taken first (the copy is of that instant) and, with
 * --wait, removed once the copy stands alone. */
int cli_run_volume_copy(const struct cli_command *c, const struct cli_args *a,
                        const struct cli_env *env)
{
    (void)c;
    const char *src = a->args[0], *dst = a->args[1];
    char spec[256], snap[128];
    int temp = !strchr(src, '@');
    if (temp) {
        snprintf(snap, sizeof(snap), "copy-to-%s", dst);
        Cairn__MgmtRequest sr = CAIRN__MGMT_REQUEST__INIT;
        char *vols[] = {(char *)src};
        sr.op = CAIRN__MGMT_OP__OP_SNAPSHOT_CREATE;
        sr.name = snap;
        sr.volumes = vols;
        sr.n_volumes = 1;
        Cairn__MgmtReply *rep;
        if (cli_mdm_call(env->mdm, &sr, &rep) < 0)
            return 1;
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        snprintf(spec, sizeof(spec), "%s@%s", src, snap);
    } else {
        snprintf(spec, sizeof(spec), "%s", src);
    }
    Cairn__MgmtRequest cr = CAIRN__MGMT_REQUEST__INIT;
    cr.op = CAIRN__MGMT_OP__OP_VOLUME_CLONE;
    cr.volume = spec;
    cr.name = (char *)dst;
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, &cr, &rep) < 0)
        return 1;
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    struct cli_args fa = *a;
    fa.args[0] = (char *)dst;
    int rc = cli_run_volume_flatten(c, &fa, env);
    if (rc || !temp)
        return rc;
    if (!cli_args_count(a, "--wait")) {
        if (!env->json)
            printf("remove snapshot '%s' once the copy is flattened\n", spec);
        return 0;
    }
    Cairn__MgmtRequest rr = CAIRN__MGMT_REQUEST__INIT;
    rr.op = CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE;
    rr.volume = spec;
    if (cli_mdm_call(env->mdm, &rr, &rep) < 0)
        return cli_fail("the copy is done, but snapshot '%s' is left: remove it", spec);
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return 0;
}

/* One copy's bytes of a layer, summed over the SDSs' reports. */
static void layer_usage(const Cairn__MgmtReply *rep, uint64_t layer, uint64_t *written,
                        uint64_t *own)
{
    *written = *own = 0;
    for (size_t i = 0; i < rep->n_sds_status; i++) {
        const Cairn__SdsStatus *st = rep->sds_status[i];
        for (size_t k = 0; k < st->n_layers; k++)
            if (st->layers[k]->layer == layer) {
                *written += st->layers[k]->written;
                *own += st->layers[k]->own;
            }
    }
}

static const char *when(uint64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!ms || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, len, "-");
    return buf;
}

static void print_one(const Cairn__MgmtReply *rep, const Cairn__Snapshot *sn, int json, int first)
{
    const Cairn__Volume *v = cmap_volume(rep->map, sn->volume_id);
    uint64_t written, own;
    layer_usage(rep, sn->layer, &written, &own);
    char t[32], b1[32], b2[32], b3[32];
    if (json) {
        printf("%s{\"volume\":", first ? "" : ",");
        cli_print_jstr(v ? v->name : "?");
        printf(",\"name\":");
        cli_print_jstr(sn->name);
        printf(",\"id\":%llu,\"size\":%llu,\"written\":%llu,\"own\":%llu,\"created\":",
               (unsigned long long)sn->id, (unsigned long long)sn->size,
               (unsigned long long)written, (unsigned long long)own);
        cli_print_jstr(when(sn->created_ms, t, sizeof(t)));
        printf(",\"group\":");
        cli_print_jstr(sn->group);
        printf(",\"mapped_to\":[");
        int f = 1;
        for (size_t j = 0; j < rep->map->n_mappings; j++)
            if (rep->map->mappings[j]->volume_id == sn->id) {
                const Cairn__Sdc *c = cmap_sdc(rep->map, rep->map->mappings[j]->sdc_id);
                printf("%s", f ? "" : ",");
                cli_print_jstr(c ? c->name : "?");
                f = 0;
            }
        printf("]}");
        return;
    }
    char name[160];
    snprintf(name, sizeof(name), "%s@%s", v ? v->name : "?", sn->name);
    printf("%-32s %10s %10s %10s  %-20s %s\n", name, fmt_bytes(b1, sizeof(b1), sn->size),
           fmt_bytes(b2, sizeof(b2), written), fmt_bytes(b3, sizeof(b3), own),
           when(sn->created_ms, t, sizeof(t)), sn->group[0] ? sn->group : "-");
}

static int list(const struct cli_env *env, const char *vol, const char *only)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_STATUS;
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, &req, &rep) < 0)
        return 1;
    const Cairn__Volume *v = vol ? cmap_volume_by_name(rep->map, vol) : NULL;
    if (vol && !v) {
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        return cli_fail("no volume named '%s'", vol);
    }
    const Cairn__Snapshot *one = v && only ? cmap_snapshot_by_name(rep->map, v->id, only) : NULL;
    if (only && !one) {
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        return cli_fail("volume '%s' has no snapshot named '%s'", vol, only);
    }
    if (one) {
        print_one(rep, one, env->json, 1);
        if (env->json)
            printf("\n");
        else
            printf("%s\n", "(size: the volume's when taken; written: its own layer's data; "
                           "own: what removing it frees)");
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        return 0;
    }
    if (env->json)
        printf("[");
    else
        printf("%-32s %10s %10s %10s  %-20s %s\n", "SNAPSHOT", "SIZE", "WRITTEN", "OWN", "CREATED",
               "GROUP");
    int first = 1;
    for (size_t i = 0; i < rep->map->n_snapshots; i++) {
        const Cairn__Snapshot *sn = rep->map->snapshots[i];
        if (v && sn->volume_id != v->id)
            continue;
        print_one(rep, sn, env->json, first);
        first = 0;
    }
    if (env->json)
        printf("]\n");
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return 0;
}

int cli_run_snapshot_list(const struct cli_command *c, const struct cli_args *a,
                          const struct cli_env *env)
{
    (void)c;
    return list(env, a->n_args > 0 ? a->args[0] : NULL, NULL);
}

int cli_run_snapshot_show(const struct cli_command *c, const struct cli_args *a,
                          const struct cli_env *env)
{
    (void)c;
    char vol[256];
    const char *at = strchr(a->args[0], '@');
    if (!at || (size_t)(at - a->args[0]) >= sizeof(vol))
        return cli_fail("name the snapshot as VOLUME@SNAPSHOT, not '%s'", a->args[0]);
    memcpy(vol, a->args[0], (size_t)(at - a->args[0]));
    vol[at - a->args[0]] = 0;
    return list(env, vol, at + 1);
}
