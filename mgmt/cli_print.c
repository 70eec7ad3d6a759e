/* cairn's printers: the cluster's status, SDSs, devices, pools, volumes,
 * SDCs and fault sets, as tables for people or as JSON for scripts. Tests
 * and scripts parse both: keep every byte of them stable. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "capacity.h"
#include "cli.h"
#include "cluster_stats.h"
#include "cmap.h"
#include "util.h"

static void jstr(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

void cli_print_jstr(const char *s)
{
    jstr(s);
}

static const char *human(uint64_t b, char *buf)
{
    return fmt_bytes(buf, 32, b);
}

/* A mapping's volume, or snapshot as VOL@SNAP (in a buffer that the next
 * call reuses: print it before asking again). */
static const char *vol_name(const Cairn__ClusterMap *m, uint64_t id)
{
    static char buf[160];
    struct cmap_obj o;
    if (cmap_resolve(m, id, &o) < 0)
        return "?";
    if (!o.snap)
        return o.vol->name;
    snprintf(buf, sizeof(buf), "%s@%s", o.vol->name, o.snap->name);
    return buf;
}
static const char *sdc_name(const Cairn__ClusterMap *m, uint32_t id)
{
    for (size_t i = 0; i < m->n_sdcs; i++)
        if (m->sdcs[i]->id == id)
            return m->sdcs[i]->name;
    return "?";
}
static const char *pool_name(const Cairn__ClusterMap *m, uint32_t id)
{
    for (size_t i = 0; i < m->n_pools; i++)
        if (m->pools[i]->id == id)
            return m->pools[i]->name;
    return "?";
}
static const char *sds_name(const Cairn__ClusterMap *m, uint32_t id)
{
    for (size_t i = 0; i < m->n_sds; i++)
        if (m->sds[i]->id == id)
            return m->sds[i]->name;
    return "?";
}

void cli_print_sds(const Cairn__MgmtReply *rep, int json)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32], b2[32];
    if (json) {
        printf("[");
        for (size_t i = 0; i < m->n_sds; i++) {
            const Cairn__Sds *s = m->sds[i];
            const Cairn__SdsStatus *st = cluster_sds_status(rep, s->id);
            printf("%s{\"id\":%u,\"name\":", i ? "," : "", s->id);
            jstr(s->name);
            printf(",\"addr\":");
            jstr(s->addr);
            printf(",\"fault_set\":");
            jstr(s->fault_set);
            printf(",\"rebuild_bytes_sent\":%llu,\"rebuild_bytes_received\":%llu",
                   (unsigned long long)(st && st->rebuild ? st->rebuild->bytes_done : 0),
                   (unsigned long long)(st && st->rebuild ? st->rebuild->bytes_received : 0));
            if (st && st->connected)
                printf(",\"last_heartbeat_ms_ago\":%llu",
                       (unsigned long long)st->last_heartbeat_ms_ago);
            printf(",\"connected\":%s,\"removing\":%s,\"state\":\"%s\",\"devices\":[",
                   st && st->connected ? "true" : "false", s->removing ? "true" : "false",
                   s->state == CAIRN__SDS_STATE__SDS_UP            ? "up"
                   : s->state == CAIRN__SDS_STATE__SDS_MAINTENANCE ? "maintenance"
                                                                   : "down");
            int first = 1;
            for (size_t j = 0; j < m->n_devices; j++) {
                const Cairn__Device *d = m->devices[j];
                if (d->sds_id != s->id)
                    continue;
                const Cairn__DeviceUsage *u = cluster_dev_usage(rep, d);
                const Cairn__Pool *p = NULL;
                for (size_t k = 0; k < m->n_pools; k++)
                    if (m->pools[k]->id == d->pool_id)
                        p = m->pools[k];
                printf("%s{\"id\":%u,\"path\":", first ? "" : ",", d->id);
                jstr(d->path);
                printf(",\"pool\":");
                jstr(p ? p->name : "?");
                printf(",\"capacity\":%llu,\"used\":%llu,\"total_extents\":%llu,"
                       "\"used_extents\":%llu,\"removing\":%s,\"failed\":%s}",
                       (unsigned long long)d->capacity,
                       (unsigned long long)(u && p ? u->used_extents * p->extent_size : 0),
                       (unsigned long long)(u ? u->total_extents : 0),
                       (unsigned long long)(u ? u->used_extents : 0),
                       d->removing ? "true" : "false",
                       (u && u->failed) || d->failed ? "true" : "false");
                first = 0;
            }
            printf("]}");
        }
        printf("]");
        return;
    }
    printf("%-12s %-22s %-12s %-13s %7s %11s %11s\n", "SDS", "ADDRESS", "FAULT-SET", "STATE",
           "DEVICES", "CAPACITY", "USED");
    for (size_t i = 0; i < m->n_sds; i++) {
        const Cairn__Sds *s = m->sds[i];
        const Cairn__SdsStatus *st = cluster_sds_status(rep, s->id);
        uint64_t cap = 0, used = 0;
        int nd = 0;
        for (size_t j = 0; j < m->n_devices; j++) {
            const Cairn__Device *d = m->devices[j];
            if (d->sds_id != s->id)
                continue;
            nd++;
            cap += d->capacity;
            const Cairn__DeviceUsage *u = cluster_dev_usage(rep, d);
            for (size_t k = 0; u && k < m->n_pools; k++)
                if (m->pools[k]->id == d->pool_id)
                    used += u->used_extents * m->pools[k]->extent_size;
        }
        printf("%-12s %-22s %-12s %-13s %7d %11s %11s\n", s->name, s->addr,
               s->fault_set[0] ? s->fault_set : "-",
               s->removing && s->state == CAIRN__SDS_STATE__SDS_UP ? "removing"
               : s->state == CAIRN__SDS_STATE__SDS_MAINTENANCE     ? "maintenance"
               : s->state != CAIRN__SDS_STATE__SDS_UP              ? "DOWN"
               : st && st->connected                               ? "up"
                                                                   : "disconnected",
               nd, human(cap, b1), human(used, b2));
    }
}

void cli_print_devices(const Cairn__MgmtReply *rep, int json)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32], b2[32];
    if (json) {
        cli_print_sds(rep, json);
        return;
    }
    printf("%-6s %-12s %-10s %-40s %11s %11s %s\n", "ID", "SDS", "POOL", "PATH", "CAPACITY", "USED",
           "STATE");
    for (size_t j = 0; j < m->n_devices; j++) {
        const Cairn__Device *d = m->devices[j];
        const Cairn__DeviceUsage *u = cluster_dev_usage(rep, d);
        uint64_t ext = 0;
        for (size_t k = 0; k < m->n_pools; k++)
            if (m->pools[k]->id == d->pool_id)
                ext = m->pools[k]->extent_size;
        printf("%-6u %-12s %-10s %-40s %11s %11s %s\n", d->id, sds_name(m, d->sds_id),
               pool_name(m, d->pool_id), d->path, human(d->capacity, b1),
               human(u ? u->used_extents * ext : 0, b2),
               (u && u->failed) || d->failed ? "FAILED"
               : d->removing                 ? "removing"
               : u                           ? "ok"
                                             : "unknown");
    }
}

void cli_print_pools(const Cairn__MgmtReply *rep, int json)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32], b2[32], b3[32], b4[32];
    if (json) {
        printf("[");
        for (size_t i = 0; i < m->n_pools; i++) {
            const Cairn__Pool *p = m->pools[i];
            struct cluster_pool_stats ps = cluster_pool_stats(rep, p);
            printf("%s{\"id\":%u,\"name\":", i ? "," : "", p->id);
            jstr(p->name);
            printf(",\"copies\":%u,\"extent_size\":%llu,\"pg_count\":%zu,\"overcommit_pct\":%u,"
                   "\"raw_capacity\":%llu,\"usable_capacity\":%llu,\"used\":%llu,"
                   "\"free\":%llu,\"provisioned\":%llu,\"thick_provisioned\":%llu,"
                   "\"full_devices\":%d,\"enospc_errors\":%llu,\"pgs_fully_protected\":%zu,"
                   "\"pgs_degraded\":%zu,\"pgs_no_copy\":%zu,\"pgs_rebuilding\":%zu,"
                   "\"pgs_moving\":%zu,\"health\":",
                   p->copies, (unsigned long long)p->extent_size, p->n_pgs, p->overcommit_pct,
                   (unsigned long long)ps.raw, (unsigned long long)ps.usable,
                   (unsigned long long)ps.used,
                   (unsigned long long)(ps.usable > ps.used ? ps.usable - ps.used : 0),
                   (unsigned long long)ps.provisioned, (unsigned long long)ps.thick,
                   ps.full_devices, (unsigned long long)ps.enospc, ps.pgs_full, ps.pgs_degraded,
                   ps.pgs_no_copy, ps.pgs_rebuilding, ps.pgs_moving);
            jstr(cluster_pool_health(&ps, p));
            printf("}");
        }
        printf("]");
        return;
    }
    printf("%-10s %6s %5s %11s %11s %11s %11s  %s\n", "POOL", "COPIES", "PGS", "USABLE", "USED",
           "FREE", "PROVISIONED", "HEALTH");
    for (size_t i = 0; i < m->n_pools; i++) {
        const Cairn__Pool *p = m->pools[i];
        struct cluster_pool_stats ps = cluster_pool_stats(rep, p);
        printf("%-10s %6u %5zu %11s %11s %11s %11s  %s", p->name, p->copies, p->n_pgs,
               human(ps.usable, b1), human(ps.used, b2),
               human(ps.usable > ps.used ? ps.usable - ps.used : 0, b3), human(ps.provisioned, b4),
               cluster_pool_health(&ps, p));
        if (ps.enospc)
            printf("; %llu writes refused with ENOSPC", (unsigned long long)ps.enospc);
        printf("\n");
        if (p->n_pgs)
            printf("%-10s PGs: %zu fully protected, %zu degraded, %zu with no live copy%s", "",
                   ps.pgs_full, ps.pgs_degraded, ps.pgs_no_copy, ps.pgs_moving ? "; " : "\n");
        if (p->n_pgs && ps.pgs_moving)
            printf("rebalancing: %zu PGs moving a copy\n", ps.pgs_moving);
    }
}

const Cairn__VolumeIoRate *cli_volume_io(const Cairn__MgmtReply *rep, uint64_t id)
{
    for (size_t i = 0; i < rep->n_volume_io; i++)
        if (rep->volume_io[i]->volume_id == id)
            return rep->volume_io[i];
    return NULL;
}

double cli_io_value(double x)
{
    return isfinite(x) && x > 0 ? x : 0;
}

/* The volume's I/O rates, zeros without recent I/O: appended to the
 * volume's object, after the keys scripts have always parsed. */
static void print_volume_io_json(const Cairn__VolumeIoRate *r)
{
    static const Cairn__VolumeIoRate zero = CAIRN__VOLUME_IO_RATE__INIT;
    if (!r)
        r = &zero;
    printf(",\"io\":{\"read_iops\":%.1f,\"write_iops\":%.1f,\"read_bytes_per_sec\":%.0f,"
           "\"write_bytes_per_sec\":%.0f,\"read_latency_us\":%.1f,\"write_latency_us\":%.1f}",
           cli_io_value(r->read_iops), cli_io_value(r->write_iops),
           cli_io_value(r->read_bytes_per_sec), cli_io_value(r->write_bytes_per_sec),
           cli_io_value(r->read_latency_us), cli_io_value(r->write_latency_us));
}

static void print_volume_json(const Cairn__MgmtReply *rep, const Cairn__Volume *v)
{
    const Cairn__ClusterMap *m = rep->map;
    printf("{\"id\":%llu,\"name\":", (unsigned long long)v->id);
    jstr(v->name);
    printf(",\"pool\":");
    jstr(pool_name(m, v->pool_id));
    printf(",\"size\":%llu,\"thick\":%s,\"mapped_to\":[", (unsigned long long)v->size,
           v->thick ? "true" : "false");
    int first = 1;
    for (size_t j = 0; j < m->n_mappings; j++)
        if (m->mappings[j]->volume_id == v->id) {
            printf("%s{\"sdc\":", first ? "" : ",");
            jstr(sdc_name(m, m->mappings[j]->sdc_id));
            printf(",\"read_only\":%s,\"access\":\"%s\"}",
                   m->mappings[j]->read_only ? "true" : "false",
                   m->mappings[j]->access == CAIRN__MAPPING_ACCESS__ACCESS_SHARED
                       ? "shared"
                       : "single-writer");
            first = 0;
        }
    printf("],\"writer\":");
    jstr(v->writer_sdc ? sdc_name(m, v->writer_sdc) : "");
    printf(",\"writer_generation\":%llu", (unsigned long long)v->writer_gen);
    /* a volume with snapshots, or a clone, says so (before "io", which
     * stays last); one without keeps the keys it always had */
    const Cairn__Snapshot *src = cmap_clone_source(m, v);
    size_t nsnap = cmap_snapshot_count(m, v);
    if (nsnap || src || v->flattening) {
        printf(",\"snapshots\":%zu,\"clone_of\":", nsnap);
        jstr(src ? vol_name(m, src->id) : "");
        printf(",\"flattening\":%s,\"flatten_progress\":%.3f", v->flattening ? "true" : "false",
               v->flattening ? cluster_flatten_progress(rep, v) : (src ? 0.0 : 1.0));
    }
    print_volume_io_json(cli_volume_io(rep, v->id));
    printf("}");
}

void cli_print_volumes(const Cairn__MgmtReply *rep, const char *only, int json)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32];
    if (json) {
        if (!only)
            printf("[");
        int first = 1;
        for (size_t i = 0; i < m->n_volumes; i++) {
            if (only && strcmp(only, m->volumes[i]->name))
                continue;
            if (!first)
                printf(",");
            print_volume_json(rep, m->volumes[i]);
            first = 0;
        }
        if (!only)
            printf("]");
        return;
    }
    printf("%-20s %-10s %11s %-6s %s\n", "VOLUME", "POOL", "SIZE", "TYPE", "MAPPED TO");
    for (size_t i = 0; i < m->n_volumes; i++) {
        const Cairn__Volume *v = m->volumes[i];
        if (only && strcmp(only, v->name))
            continue;
        printf("%-20s %-10s %11s %-6s ", v->name, pool_name(m, v->pool_id), human(v->size, b1),
               v->thick ? "thick" : "thin");
        int first = 1;
        for (size_t j = 0; j < m->n_mappings; j++)
            if (m->mappings[j]->volume_id == v->id) {
                const Cairn__Mapping *mp = m->mappings[j];
                printf("%s%s%s", first ? "" : ", ", sdc_name(m, mp->sdc_id),
                       mp->read_only                                        ? " (ro)"
                       : mp->access == CAIRN__MAPPING_ACCESS__ACCESS_SHARED ? " (shared)"
                       : v->writer_sdc == mp->sdc_id                        ? " (writer)"
                                                                            : "");
                first = 0;
            }
        printf("%s\n", first ? "-" : "");
        if (!only)
            continue;
        const Cairn__Snapshot *src = cmap_clone_source(m, v);
        printf("  snapshots: %zu\n", cmap_snapshot_count(m, v));
        if (src)
            printf("  clone of: %s\n", vol_name(m, src->id));
        if (v->flattening)
            printf("  flattening: %.0f%%\n", cluster_flatten_progress(rep, v) * 100);
    }
}

void cli_print_sdcs(const Cairn__MgmtReply *rep, int json)
{
    const Cairn__ClusterMap *m = rep->map;
    if (json) {
        printf("[");
        for (size_t i = 0; i < m->n_sdcs; i++) {
            printf("%s{\"id\":%u,\"name\":", i ? "," : "", m->sdcs[i]->id);
            jstr(m->sdcs[i]->name);
            printf(",\"guid\":");
            jstr(m->sdcs[i]->guid);
            printf(",\"state\":\"%s\",\"volumes\":[", m->sdcs[i]->pending ? "pending" : "approved");
            int first = 1;
            for (size_t j = 0; j < m->n_mappings; j++)
                if (m->mappings[j]->sdc_id == m->sdcs[i]->id) {
                    if (!first)
                        printf(",");
                    jstr(vol_name(m, m->mappings[j]->volume_id));
                    first = 0;
                }
            printf("],\"writing\":[");
            for (size_t j = 0; j < rep->n_sdc_status; j++)
                for (size_t k = 0; rep->sdc_status[j]->sdc_id == m->sdcs[i]->id &&
                                   k < rep->sdc_status[j]->n_holds;
                     k++) {
                    printf("%s", k ? "," : "");
                    jstr(vol_name(m, rep->sdc_status[j]->holds[k]));
                }
            printf("]}");
        }
        printf("]");
        return;
    }
    printf("%-20s %-38s %-9s %s\n", "SDC", "GUID", "STATE", "VOLUMES");
    for (size_t i = 0; i < m->n_sdcs; i++) {
        printf("%-20s %-38s %-9s ", m->sdcs[i]->name, m->sdcs[i]->guid,
               m->sdcs[i]->pending ? "pending" : "approved");
        int first = 1;
        for (size_t j = 0; j < m->n_mappings; j++)
            if (m->mappings[j]->sdc_id == m->sdcs[i]->id) {
                printf("%s%s", first ? "" : ", ", vol_name(m, m->mappings[j]->volume_id));
                first = 0;
            }
        printf("%s\n", first ? "-" : "");
    }
}

void cli_print_fault_sets(const Cairn__MgmtReply *rep, int json)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32];
    if (!json)
        printf("%-16s %-5s %11s %s\n", "FAULT-SET", "SDSS", "CAPACITY", "MEMBERS");
    else
        printf("[");
    for (size_t i = 0; i < m->n_fault_sets; i++) {
        const Cairn__FaultSet *f = m->fault_sets[i];
        uint64_t cap = 0;
        int n = 0;
        for (size_t j = 0; j < m->n_sds; j++) {
            if (strcmp(m->sds[j]->fault_set, f->name))
                continue;
            n++;
            for (size_t k = 0; k < m->n_devices; k++)
                if (m->devices[k]->sds_id == m->sds[j]->id && !m->devices[k]->removing)
                    cap += m->devices[k]->capacity;
        }
        if (json) {
            printf("%s{\"id\":%u,\"name\":", i ? "," : "", f->id);
            jstr(f->name);
            printf(",\"sds_count\":%d,\"capacity\":%llu,\"sds\":[", n, (unsigned long long)cap);
        } else {
            printf("%-16s %-5d %11s ", f->name, n, human(cap, b1));
        }
        int first = 1;
        for (size_t j = 0; j < m->n_sds; j++)
            if (!strcmp(m->sds[j]->fault_set, f->name)) {
                if (json) {
                    printf("%s", first ? "" : ",");
                    jstr(m->sds[j]->name);
                } else {
                    printf("%s%s", first ? "" : ", ", m->sds[j]->name);
                }
                first = 0;
            }
        if (json)
            printf("]}");
        else
            printf("%s\n", first ? "-" : "");
    }
    if (json)
        printf("]\n");
    else
        printf("(an SDS added without --fault-set is a fault set of its own)\n");
}

void cli_print_status(const Cairn__MgmtReply *rep, int json)
{
    if (json) {
        printf("{\"cluster_id\":");
        jstr(rep->map->cluster_id);
        printf(",\"map_version\":%llu,\"mdm\":", (unsigned long long)rep->map->version);
        jstr(rep->info);
        struct cluster_rebuild_stats rb = cluster_rebuild_stats(rep);
        printf(",\"rebuild\":{\"pg_copies_left\":%u,\"bytes_left\":%llu,\"rate\":%llu,"
               "\"bytes_copied_total\":%llu,\"bytes_received_total\":%llu,\"eta_seconds\":%llu}",
               rb.pgs, (unsigned long long)rb.left, (unsigned long long)rb.rate,
               (unsigned long long)rb.done, (unsigned long long)rb.received,
               (unsigned long long)(rb.rate ? rb.left / rb.rate + 1 : 0));
        printf(",\"sds\":");
        cli_print_sds(rep, json);
        printf(",\"pools\":");
        cli_print_pools(rep, json);
        printf(",\"volumes\":");
        cli_print_volumes(rep, NULL, json);
        printf(",\"sdcs\":");
        cli_print_sdcs(rep, json);
        printf("}\n");
        return;
    }
    printf("Cluster %s (map version %llu; %s)\n", rep->map->cluster_id,
           (unsigned long long)rep->map->version, rep->info);
    struct cluster_rebuild_stats rb = cluster_rebuild_stats(rep);
    if (rb.pgs) {
        char b1[32], b2[32];
        printf("Rebuild: %u PG copies, %s left at %s/s, ETA ", rb.pgs, human(rb.left, b1),
               human(rb.rate, b2));
        if (rb.rate)
            printf("%llu s\n", (unsigned long long)(rb.left / rb.rate + 1));
        else
            printf("unknown\n");
    }
    printf("\n");
    cli_print_sds(rep, json);
    printf("\n");
    cli_print_pools(rep, json);
    printf("\n");
    cli_print_volumes(rep, NULL, json);
    printf("\n");
    cli_print_sdcs(rep, json);
}
