/* What a status reply says about the cluster, computed once for every
 * surface that shows it: the CLI's tables and JSON, the MDM's REST API and
 * dashboard, its metrics. Pure functions of the reply. */
#include <stdio.h>
#include <string.h>

#include "capacity.h"
#include "cluster_stats.h"
#include "cmap.h"

const Cairn__SdsStatus *cluster_sds_status(const Cairn__MgmtReply *rep, uint32_t id)
{
    for (size_t i = 0; i < rep->n_sds_status; i++)
        if (rep->sds_status[i]->sds_id == id)
            return rep->sds_status[i];
    return NULL;
}

const Cairn__DeviceUsage *cluster_dev_usage(const Cairn__MgmtReply *rep, const Cairn__Device *d)
{
    const Cairn__SdsStatus *s = cluster_sds_status(rep, d->sds_id);
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->n_usage; i++)
        if (s->usage[i]->device_id == d->id)
            return s->usage[i];
    return NULL;
}

size_t cluster_live_copies(const Cairn__MgmtReply *rep, const Cairn__Pg *g)
{
    size_t n = 0;
    for (size_t k = 0; k < g->n_devices; k++) {
        const Cairn__Device *d = cmap_device(rep->map, g->devices[k]);
        const Cairn__Sds *s = d ? cmap_sds(rep->map, d->sds_id) : NULL;
        n += s && s->state == CAIRN__SDS_STATE__SDS_UP && !d->failed;
    }
    return n;
}

struct cluster_rebuild_stats cluster_rebuild_stats(const Cairn__MgmtReply *rep)
{
    struct cluster_rebuild_stats r = {0};
    for (size_t i = 0; i < rep->n_sds_status; i++) {
        const Cairn__RebuildStatus *b = rep->sds_status[i]->rebuild;
        if (!b)
            continue;
        r.left += b->bytes_left;
        r.done += b->bytes_done;
        r.received += b->bytes_received;
        r.rate += b->rate;
        r.pgs += b->pgs_left;
        r.rebalance_left += b->rebalance_bytes_left;
        r.rebalance_done += b->rebalance_bytes_done;
        r.rebalance_pgs += b->rebalance_pgs_left;
    }
    return r;
}

struct cluster_pool_stats cluster_pool_stats(const Cairn__MgmtReply *rep, const Cairn__Pool *p)
{
    struct cluster_pool_stats ps = {0};
    ps.raw = capacity_pool_raw(rep->map, p);
    ps.usable = capacity_pool_usable(rep->map, p);
    ps.provisioned = capacity_pool_provisioned(rep->map, p, 0);
    ps.thick = capacity_pool_provisioned(rep->map, p, 1);
    uint64_t used_raw = 0;
    for (size_t i = 0; i < rep->map->n_devices; i++) {
        const Cairn__Device *d = rep->map->devices[i];
        if (d->pool_id != p->id)
            continue;
        const Cairn__DeviceUsage *u = cluster_dev_usage(rep, d);
        if (u) {
            used_raw += u->used_extents * p->extent_size;
            if (!u->failed && u->used_extents >= u->total_extents)
                ps.full_devices++;
            if (u->failed)
                ps.failed_devices++;
        }
    }
    for (size_t i = 0; i < rep->n_sds_status; i++)
        ps.enospc += rep->sds_status[i]->enospc_count;
    ps.used = p->copies ? used_raw / p->copies : 0;
    for (size_t g = 0; g < p->n_pgs; g++) {
        size_t live = cluster_live_copies(rep, p->pgs[g]);
        if (live == 0)
            ps.pgs_no_copy++;
        else if (live < p->copies)
            ps.pgs_degraded++;
        else
            ps.pgs_full++;
        ps.pgs_rebuilding += p->pgs[g]->n_rebuilding > 0;
        ps.pgs_moving += p->pgs[g]->n_leaving > 0;
    }
    return ps;
}

const char *cluster_pool_health(const struct cluster_pool_stats *ps, const Cairn__Pool *p)
{
    if (p->n_pgs == 0)
        return "NO PLACEMENT (too few fault sets)";
    if (ps->pgs_no_copy)
        return "DATA UNAVAILABLE (PGs with no live copy)";
    if (ps->pgs_degraded)
        return ps->pgs_rebuilding ? "DEGRADED (rebuilding)" : "DEGRADED";
    if (ps->full_devices)
        return "OUT OF SPACE (writes needing new space fail)";
    if (ps->failed_devices)
        return "DEGRADED (failed devices)";
    return "ok";
}

double cluster_flatten_progress(const Cairn__MgmtReply *rep, const Cairn__Volume *v)
{
    double least = 1.0;
    for (size_t i = 0; i < rep->n_sds_status; i++) {
        const Cairn__SdsStatus *st = rep->sds_status[i];
        if (strcmp(st->state, "up"))
            continue;
        double f = 0;
        for (size_t k = 0; k < st->n_flatten; k++)
            if (st->flatten[k]->volume_id == v->id && st->flatten[k]->total)
                f = (double)st->flatten[k]->done / (double)st->flatten[k]->total;
        if (f < least)
            least = f;
    }
    return least;
}
