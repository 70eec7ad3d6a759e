/* Prometheus metrics of the MDM (GET /metrics on --metrics-listen): its Raft
 * state, the changes it applied, and what the cluster looks like from here:
 * SDSs by state, PG health per pool, rebuild and rebalance progress,
 * capacity. Cluster figures come from the same status reply the CLI and
 * the REST API show (mdm_status_fill + cluster_stats.h), so all three agree.
 * Followers serve them too: their map is the replicated one, their soft
 * state (heartbeats) is what reached them. */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_stats.h"
#include "log.h"
#include "mdm.h"
#include "metrics.h"
#include "util.h"

/* An operation as a label value: its name in lower case ("volume_create"). */
static const char *op_label(unsigned op, char *buf, size_t n)
{
    const char *name = mdm_state_op_name((int)op);
    if (!name)
        name = "unknown";
    size_t i = 0;
    for (; name[i] && i + 1 < n; i++)
        buf[i] = (char)tolower((unsigned char)name[i]);
    buf[i] = 0;
    return buf;
}

static void raft_metrics(struct metrics_out *o, struct mdm *m)
{
    char opl[48];
    char l[64];
    static const char *const roles[] = {"leader", "follower", "candidate", "unavailable"};
    const char *role = mdm_raft_role(m);
    metrics_family(o, "cairn_mdm_raft_state", "gauge",
                   "This MDM's Raft role: 1 for the role it has, 0 for the others.");
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        metrics_u64(o, "cairn_mdm_raft_state", metrics_labels(l, sizeof(l), "role", roles[i], NULL),
                    !strcmp(role, roles[i]));
    metrics_family(o, "cairn_mdm_raft_term", "gauge", "Current Raft term.");
    metrics_u64(o, "cairn_mdm_raft_term", "", m->raft.current_term);
    metrics_family(o, "cairn_mdm_raft_commit_index", "gauge", "Highest Raft log index committed.");
    metrics_u64(o, "cairn_mdm_raft_commit_index", "", m->raft.commit_index);
    metrics_family(o, "cairn_mdm_raft_applied_index", "gauge",
                   "Highest Raft log index applied to the cluster state.");
    metrics_u64(o, "cairn_mdm_raft_applied_index", "", raft_last_applied(&m->raft));
    metrics_family(o, "cairn_mdm_raft_elections_total", "counter",
                   "Raft terms begun since this MDM started (each term begins with an election).");
    metrics_u64(o, "cairn_mdm_raft_elections_total", "",
                m->raft.current_term > m->term_at_start ? m->raft.current_term - m->term_at_start
                                                        : 0);
    metrics_family(o, "cairn_mdm_raft_voters", "gauge", "Voters in the Raft configuration.");
    uint64_t voters = 0;
    for (unsigned i = 0; i < m->raft.configuration.n; i++)
        voters += m->raft.configuration.servers[i].role == RAFT_VOTER;
    metrics_u64(o, "cairn_mdm_raft_voters", "", voters);
    metrics_family(o, "cairn_mdm_raft_installs_dropped_total", "counter",
                   "Snapshot installs dropped because they came while this MDM wrote a snapshot "
                   "(libraft 0.22.1 would crash on them; the leader sends them again).");
    metrics_u64(o, "cairn_mdm_raft_installs_dropped_total", "", m->installs_dropped);
    metrics_family(o, "cairn_mdm_raft_slow_stores_total", "counter",
                   "Stores of Raft's term or vote that took over a quarter of the election "
                   "timeout (an election this MDM votes in may not finish).");
    metrics_u64(o, "cairn_mdm_raft_slow_stores_total", "", m->slow_stores);

    metrics_family(o, "cairn_mdm_changes_applied_total", "counter",
                   "Cluster changes applied from the Raft log since start, by operation.");
    for (unsigned op = 0; op < MDM_METRIC_OPS; op++)
        if (m->applied_by_op[op])
            metrics_u64(o, "cairn_mdm_changes_applied_total",
                        metrics_labels(l, sizeof(l), "op", op_label(op, opl, sizeof(opl)), NULL),
                        m->applied_by_op[op]);
    metrics_family(o, "cairn_mdm_changes_refused_total", "counter",
                   "Applied entries the state machine refused (validation), by operation.");
    for (unsigned op = 0; op < MDM_METRIC_OPS; op++)
        if (m->refused_by_op[op])
            metrics_u64(o, "cairn_mdm_changes_refused_total",
                        metrics_labels(l, sizeof(l), "op", op_label(op, opl, sizeof(opl)), NULL),
                        m->refused_by_op[op]);
    metrics_family(o, "cairn_mdm_corrupt_entries_total", "counter",
                   "Raft log entries that could not be decoded.");
    metrics_u64(o, "cairn_mdm_corrupt_entries_total", "", m->corrupt_entries);
    metrics_family(o, "cairn_mdm_map_version", "gauge", "Version of the cluster map.");
    metrics_u64(o, "cairn_mdm_map_version", "", m->st.m->version);
}

static const char *sds_state_name(const Cairn__Sds *s)
{
    if (s->removing)
        return "draining";
    switch (s->state) {
    case CAIRN__SDS_STATE__SDS_UP: return "up";
    case CAIRN__SDS_STATE__SDS_DOWN: return "down";
    case CAIRN__SDS_STATE__SDS_MAINTENANCE: return "maintenance";
    case CAIRN__SDS_STATE__SDS_DRAINING: return "draining";
    default: return "removed";
    }
}

static void sds_metrics(struct metrics_out *o, const Cairn__MgmtReply *rep)
{
    char l[256];
    static const char *const states[] = {"up", "down", "maintenance", "draining"};
    metrics_family(o, "cairn_cluster_sds", "gauge", "SDSs in the cluster map, by state.");
    for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
        uint64_t n = 0;
        for (size_t i = 0; i < rep->map->n_sds; i++)
            n += !strcmp(sds_state_name(rep->map->sds[i]), states[k]);
        metrics_u64(o, "cairn_cluster_sds", metrics_labels(l, sizeof(l), "state", states[k], NULL),
                    n);
    }
    metrics_family(o, "cairn_cluster_sds_up", "gauge",
                   "1 if the SDS is up in the cluster map, else 0.");
    for (size_t i = 0; i < rep->map->n_sds; i++)
        metrics_u64(o, "cairn_cluster_sds_up",
                    metrics_labels(l, sizeof(l), "sds", rep->map->sds[i]->name, NULL),
                    rep->map->sds[i]->state == CAIRN__SDS_STATE__SDS_UP);
    metrics_family(o, "cairn_cluster_sds_connected", "gauge",
                   "1 if the SDS has a session with this MDM, else 0.");
    for (size_t i = 0; i < rep->map->n_sds; i++) {
        const Cairn__SdsStatus *st = cluster_sds_status(rep, rep->map->sds[i]->id);
        metrics_u64(o, "cairn_cluster_sds_connected",
                    metrics_labels(l, sizeof(l), "sds", rep->map->sds[i]->name, NULL),
                    st && st->connected);
    }
    metrics_family(o, "cairn_cluster_sdc_connected", "gauge",
                   "1 if the SDC has a session with this MDM, else 0.");
    for (size_t i = 0; i < rep->map->n_sdcs; i++) {
        int up = 0;
        for (size_t j = 0; j < rep->n_sdc_status; j++)
            if (rep->sdc_status[j]->sdc_id == rep->map->sdcs[i]->id)
                up = rep->sdc_status[j]->connected;
        metrics_u64(o, "cairn_cluster_sdc_connected",
                    metrics_labels(l, sizeof(l), "sdc", rep->map->sdcs[i]->name, NULL), up);
    }
}

static void pool_metrics(struct metrics_out *o, const Cairn__MgmtReply *rep)
{
    const Cairn__ClusterMap *map = rep->map;
    char l[256];
    struct cluster_pool_stats *ps = calloc(map->n_pools ? map->n_pools : 1, sizeof(*ps));
    if (!ps) {
        o->failed = 1;
        return;
    }
    for (size_t i = 0; i < map->n_pools; i++)
        ps[i] = cluster_pool_stats(rep, map->pools[i]);
    metrics_family(o, "cairn_cluster_pgs", "gauge",
                   "PGs per pool by protection: protected (every copy live), degraded (fewer "
                   "live copies than the pool keeps), no_copy (no live copy: data unavailable).");
    for (size_t i = 0; i < map->n_pools; i++) {
        const char *name = map->pools[i]->name;
        metrics_u64(o, "cairn_cluster_pgs",
                    metrics_labels(l, sizeof(l), "pool", name, "state", "protected", NULL),
                    ps[i].pgs_full);
        metrics_u64(o, "cairn_cluster_pgs",
                    metrics_labels(l, sizeof(l), "pool", name, "state", "degraded", NULL),
                    ps[i].pgs_degraded);
        metrics_u64(o, "cairn_cluster_pgs",
                    metrics_labels(l, sizeof(l), "pool", name, "state", "no_copy", NULL),
                    ps[i].pgs_no_copy);
    }
    metrics_family(o, "cairn_cluster_pgs_rebuilding", "gauge",
                   "PGs with a copy being filled (rebuild, rebalance or drain).");
    for (size_t i = 0; i < map->n_pools; i++)
        metrics_u64(o, "cairn_cluster_pgs_rebuilding",
                    metrics_labels(l, sizeof(l), "pool", map->pools[i]->name, NULL),
                    ps[i].pgs_rebuilding);
    metrics_family(o, "cairn_cluster_pgs_moving", "gauge",
                   "PGs moving a copy for balance or a drain (they have a leaving copy).");
    for (size_t i = 0; i < map->n_pools; i++)
        metrics_u64(o, "cairn_cluster_pgs_moving",
                    metrics_labels(l, sizeof(l), "pool", map->pools[i]->name, NULL),
                    ps[i].pgs_moving);
    metrics_family(o, "cairn_cluster_pool_healthy", "gauge",
                   "1 if the pool's health is ok, else 0 (cairn status says why).");
    for (size_t i = 0; i < map->n_pools; i++)
        metrics_u64(o, "cairn_cluster_pool_healthy",
                    metrics_labels(l, sizeof(l), "pool", map->pools[i]->name, NULL),
                    !strcmp(cluster_pool_health(&ps[i], map->pools[i]), "ok"));

    static const struct {
        const char *name, *help;
        size_t off;
    } cap[] = {
        {"cairn_cluster_pool_raw_capacity_bytes", "Raw capacity of the pool's devices.",
         offsetof(struct cluster_pool_stats, raw)},
        {"cairn_cluster_pool_usable_capacity_bytes",
         "Capacity for data after the pool's copies (raw / copies, placeable).",
         offsetof(struct cluster_pool_stats, usable)},
        {"cairn_cluster_pool_used_bytes", "Data stored (one copy counted).",
         offsetof(struct cluster_pool_stats, used)},
        {"cairn_cluster_pool_provisioned_bytes", "Sum of the pool's volume sizes.",
         offsetof(struct cluster_pool_stats, provisioned)},
        {"cairn_cluster_pool_thick_provisioned_bytes", "Sum of the pool's thick volume sizes.",
         offsetof(struct cluster_pool_stats, thick)},
    };
    for (size_t k = 0; k < sizeof(cap) / sizeof(cap[0]); k++) {
        metrics_family(o, cap[k].name, "gauge", cap[k].help);
        for (size_t i = 0; i < map->n_pools; i++)
            metrics_u64(o, cap[k].name,
                        metrics_labels(l, sizeof(l), "pool", map->pools[i]->name, NULL),
                        *(const uint64_t *)((const char *)&ps[i] + cap[k].off));
    }
    metrics_family(o, "cairn_cluster_pool_free_bytes", "gauge",
                   "Usable capacity not yet used by data.");
    for (size_t i = 0; i < map->n_pools; i++)
        metrics_u64(o, "cairn_cluster_pool_free_bytes",
                    metrics_labels(l, sizeof(l), "pool", map->pools[i]->name, NULL),
                    ps[i].usable > ps[i].used ? ps[i].usable - ps[i].used : 0);
    metrics_family(o, "cairn_cluster_pool_full_devices", "gauge",
                   "Devices of the pool with no free extent.");
    for (size_t i = 0; i < map->n_pools; i++)
        metrics_u64(o, "cairn_cluster_pool_full_devices",
                    metrics_labels(l, sizeof(l), "pool", map->pools[i]->name, NULL),
                    (uint64_t)ps[i].full_devices);
    free(ps);

    metrics_family(o, "cairn_cluster_volumes", "gauge", "Volumes in the cluster map.");
    metrics_u64(o, "cairn_cluster_volumes", "", map->n_volumes);
    metrics_family(o, "cairn_cluster_volume_size_bytes", "gauge", "Size of each volume.");
    for (size_t i = 0; i < map->n_volumes; i++)
        metrics_u64(o, "cairn_cluster_volume_size_bytes",
                    metrics_labels(l, sizeof(l), "volume", map->volumes[i]->name, NULL),
                    map->volumes[i]->size);
}

/* Rebuild and rebalance progress, as the SDSs' last heartbeats report it. */
static void rebuild_metrics(struct metrics_out *o, const Cairn__MgmtReply *rep)
{
    struct cluster_rebuild_stats rb = cluster_rebuild_stats(rep);
    char l[64];
    uint64_t left[2] = {rb.left - MIN(rb.left, rb.rebalance_left), rb.rebalance_left};
    uint64_t done[2] = {rb.done - MIN(rb.done, rb.rebalance_done), rb.rebalance_done};
    uint64_t pgs[2] = {rb.pgs - MIN(rb.pgs, rb.rebalance_pgs), rb.rebalance_pgs};
    static const char *const kinds[] = {"rebuild", "rebalance"};
    metrics_family(o, "cairn_cluster_rebuild_bytes_left", "gauge",
                   "Bytes still to copy: rebuild (lost redundancy) or rebalance (balance, "
                   "drain).");
    for (int k = 0; k < 2; k++)
        metrics_u64(o, "cairn_cluster_rebuild_bytes_left",
                    metrics_labels(l, sizeof(l), "kind", kinds[k], NULL), left[k]);
    metrics_family(o, "cairn_cluster_rebuild_bytes_done", "gauge",
                   "Bytes copied by the copies in progress, as the SDSs report them.");
    for (int k = 0; k < 2; k++)
        metrics_u64(o, "cairn_cluster_rebuild_bytes_done",
                    metrics_labels(l, sizeof(l), "kind", kinds[k], NULL), done[k]);
    metrics_family(o, "cairn_cluster_rebuild_pg_copies_left", "gauge",
                   "PG copies still being filled.");
    for (int k = 0; k < 2; k++)
        metrics_u64(o, "cairn_cluster_rebuild_pg_copies_left",
                    metrics_labels(l, sizeof(l), "kind", kinds[k], NULL), pgs[k]);
    metrics_family(o, "cairn_cluster_rebuild_rate_bytes_per_second", "gauge",
                   "Recent copy rate summed over the SDSs (rebuild and rebalance together).");
    metrics_u64(o, "cairn_cluster_rebuild_rate_bytes_per_second", "", rb.rate);
}

static void render(struct metrics_out *o, void *data)
{
    struct mdm *m = data;
    raft_metrics(o, m);
    struct mdm_status st;
    if (mdm_status_fill(m, &st) < 0) {
        o->failed = 1;
        return;
    }
    sds_metrics(o, &st.rep);
    pool_metrics(o, &st.rep);
    rebuild_metrics(o, &st.rep);
    mdm_status_clear(&st);
}

int mdm_metrics_start(struct mdm *m, const char *addr, const char *token_file)
{
    m->term_at_start = m->raft.current_term;
    m->metrics = metrics_serve(m->loop, addr, token_file, render, m);
    return m->metrics ? 0 : -1;
}

void mdm_metrics_stop(struct mdm *m)
{
    metrics_server_stop(m->metrics);
    m->metrics = NULL;
}
