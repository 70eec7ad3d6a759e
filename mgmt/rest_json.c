/* The REST API's JSON objects, built from a status reply. Their keys are
 * those of the CLI's --json output (cli_print.c), so that a script can move
 * between the two; the few additions (a device's "sds" and "free", a
 * volume's "io", an SDC's connection) are soft state the CLI's lists leave
 * out. Capacity, PG health and rebuild progress come from cluster_stats.h,
 * as for the CLI and the metrics. jansson tolerates NULL everywhere (a
 * failed allocation makes the whole document NULL), so nothing here checks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_stats.h"
#include "cmap.h"
#include "rest.h"
#include "util.h"

static json_t *u64(uint64_t v)
{
    return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static void set(json_t *o, const char *key, json_t *v)
{
    json_object_set_new(o, key, v);
}

json_t *rest_json_str(const char *s)
{
    json_t *j = json_string(s);
    if (j || !s)
        return j;
    /* Not UTF-8 (a device path, or a name as a client sent it): every
     * byte outside ASCII becomes '?', so that the document stays valid. */
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        c[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    j = json_string(c);
    free(c);
    return j;
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

static const char *vol_name(const Cairn__ClusterMap *m, uint64_t id)
{
    for (size_t i = 0; i < m->n_volumes; i++)
        if (m->volumes[i]->id == id)
            return m->volumes[i]->name;
    return "?";
}

/* What an id of a mapping or a hold names, as a JSON string: a volume's
 * name, or a snapshot's as VOLUME@SNAPSHOT (a snapshot is mapped by the
 * id of its own, docs/snapshots.md). */
static json_t *obj_name(const Cairn__ClusterMap *m, uint64_t id)
{
    const Cairn__Snapshot *sn = cmap_volume(m, id) ? NULL : cmap_snapshot(m, id);
    if (!sn)
        return rest_json_str(vol_name(m, id));
    char buf[300];
    snprintf(buf, sizeof(buf), "%s@%s", vol_name(m, sn->volume_id), sn->name);
    return rest_json_str(buf);
}

static const char *sdc_name(const Cairn__ClusterMap *m, uint32_t id)
{
    for (size_t i = 0; i < m->n_sdcs; i++)
        if (m->sdcs[i]->id == id)
            return m->sdcs[i]->name;
    return "?";
}

/* As `cairn sds list --json` states it. */
static const char *sds_state(const Cairn__Sds *s)
{
    return s->state == CAIRN__SDS_STATE__SDS_UP            ? "up"
           : s->state == CAIRN__SDS_STATE__SDS_MAINTENANCE ? "maintenance"
                                                           : "down";
}

json_t *rest_json_device(const Cairn__MgmtReply *rep, const Cairn__Device *d)
{
    const Cairn__ClusterMap *m = rep->map;
    const Cairn__DeviceUsage *u = cluster_dev_usage(rep, d);
    const Cairn__Pool *p = NULL;
    for (size_t k = 0; k < m->n_pools; k++)
        if (m->pools[k]->id == d->pool_id)
            p = m->pools[k];
    uint64_t used = u && p ? u->used_extents * p->extent_size : 0;
    json_t *o = json_object();
    set(o, "id", u64(d->id));
    set(o, "path", rest_json_str(d->path));
    set(o, "pool", rest_json_str(p ? p->name : "?"));
    set(o, "capacity", u64(d->capacity));
    set(o, "used", u64(used));
    set(o, "free", u64(d->capacity > used ? d->capacity - used : 0));
    set(o, "total_extents", u64(u ? u->total_extents : 0));
    set(o, "used_extents", u64(u ? u->used_extents : 0));
    set(o, "removing", json_boolean(d->removing));
    set(o, "failed", json_boolean((u && u->failed) || d->failed));
    set(o, "sds", rest_json_str(sds_name(m, d->sds_id)));
    return o;
}

json_t *rest_json_sds(const Cairn__MgmtReply *rep, const Cairn__Sds *s)
{
    const Cairn__ClusterMap *m = rep->map;
    const Cairn__SdsStatus *st = cluster_sds_status(rep, s->id);
    json_t *o = json_object();
    set(o, "id", u64(s->id));
    set(o, "name", rest_json_str(s->name));
    set(o, "addr", rest_json_str(s->addr));
    set(o, "fault_set", rest_json_str(s->fault_set));
    set(o, "rebuild_bytes_sent", u64(st && st->rebuild ? st->rebuild->bytes_done : 0));
    set(o, "rebuild_bytes_received", u64(st && st->rebuild ? st->rebuild->bytes_received : 0));
    if (st && st->connected)
        set(o, "last_heartbeat_ms_ago", u64(st->last_heartbeat_ms_ago));
    set(o, "connected", json_boolean(st && st->connected));
    set(o, "removing", json_boolean(s->removing));
    set(o, "state", rest_json_str(sds_state(s)));
    json_t *devs = json_array();
    for (size_t j = 0; j < m->n_devices; j++)
        if (m->devices[j]->sds_id == s->id)
            json_array_append_new(devs, rest_json_device(rep, m->devices[j]));
    set(o, "devices", devs);
    return o;
}

json_t *rest_json_sds_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_sds; i++)
        json_array_append_new(a, rest_json_sds(rep, rep->map->sds[i]));
    return a;
}

json_t *rest_json_device_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_devices; i++)
        json_array_append_new(a, rest_json_device(rep, rep->map->devices[i]));
    return a;
}

json_t *rest_json_pool(const Cairn__MgmtReply *rep, const Cairn__Pool *p)
{
    struct cluster_pool_stats ps = cluster_pool_stats(rep, p);
    json_t *o = json_object();
    set(o, "id", u64(p->id));
    set(o, "name", rest_json_str(p->name));
    set(o, "copies", u64(p->copies));
    set(o, "extent_size", u64(p->extent_size));
    set(o, "pg_count", u64(p->n_pgs));
    set(o, "overcommit_pct", u64(p->overcommit_pct));
    set(o, "raw_capacity", u64(ps.raw));
    set(o, "usable_capacity", u64(ps.usable));
    set(o, "used", u64(ps.used));
    set(o, "free", u64(ps.usable > ps.used ? ps.usable - ps.used : 0));
    set(o, "provisioned", u64(ps.provisioned));
    set(o, "thick_provisioned", u64(ps.thick));
    set(o, "full_devices", u64((uint64_t)ps.full_devices));
    set(o, "enospc_errors", u64(ps.enospc));
    set(o, "pgs_fully_protected", u64(ps.pgs_full));
    set(o, "pgs_degraded", u64(ps.pgs_degraded));
    set(o, "pgs_no_copy", u64(ps.pgs_no_copy));
    set(o, "pgs_rebuilding", u64(ps.pgs_rebuilding));
    set(o, "pgs_moving", u64(ps.pgs_moving));
    set(o, "health", rest_json_str(cluster_pool_health(&ps, p)));
    return o;
}

json_t *rest_json_pool_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_pools; i++)
        json_array_append_new(a, rest_json_pool(rep, rep->map->pools[i]));
    return a;
}

/* A rate as the CLI shows it: not finite or not positive is 0 (jansson
 * refuses NaN and infinities). */
static json_t *io_rate(double x)
{
    return json_real(isfinite(x) && x > 0 ? x : 0);
}

/* The volume's recent I/O as the MDM summed it over its SDCs; zeros when
 * it had none (the MDM lists only volumes with recent I/O). */
static json_t *volume_io(const Cairn__MgmtReply *rep, uint64_t id)
{
    const Cairn__VolumeIoRate *r = NULL;
    for (size_t i = 0; i < rep->n_volume_io; i++)
        if (rep->volume_io[i]->volume_id == id)
            r = rep->volume_io[i];
    json_t *o = json_object();
    set(o, "read_iops", io_rate(r ? r->read_iops : 0));
    set(o, "write_iops", io_rate(r ? r->write_iops : 0));
    set(o, "read_bytes_per_sec", io_rate(r ? r->read_bytes_per_sec : 0));
    set(o, "write_bytes_per_sec", io_rate(r ? r->write_bytes_per_sec : 0));
    set(o, "read_latency_us", io_rate(r ? r->read_latency_us : 0));
    set(o, "write_latency_us", io_rate(r ? r->write_latency_us : 0));
    return o;
}

static const char *access_name(Cairn__MappingAccess a)
{
    return a == CAIRN__MAPPING_ACCESS__ACCESS_SHARED ? "shared" : "single-writer";
}

json_t *rest_json_volume(const Cairn__MgmtReply *rep, const Cairn__Volume *v)
{
    const Cairn__ClusterMap *m = rep->map;
    json_t *o = json_object();
    set(o, "id", u64(v->id));
    set(o, "name", rest_json_str(v->name));
    set(o, "pool", rest_json_str(pool_name(m, v->pool_id)));
    set(o, "size", u64(v->size));
    set(o, "thick", json_boolean(v->thick));
    json_t *to = json_array();
    for (size_t j = 0; j < m->n_mappings; j++)
        if (m->mappings[j]->volume_id == v->id) {
            json_t *e = json_object();
            set(e, "sdc", rest_json_str(sdc_name(m, m->mappings[j]->sdc_id)));
            set(e, "read_only", json_boolean(m->mappings[j]->read_only));
            set(e, "access", json_string(access_name(m->mappings[j]->access)));
            json_array_append_new(to, e);
        }
    set(o, "mapped_to", to);
    set(o, "writer", rest_json_str(v->writer_sdc ? sdc_name(m, v->writer_sdc) : ""));
    set(o, "writer_generation", u64(v->writer_gen));
    /* as `cairn --json volume show`: only a volume with snapshots, or a clone */
    const Cairn__Snapshot *src = cmap_clone_source(m, v);
    size_t nsnap = cmap_snapshot_count(m, v);
    if (nsnap || src || v->flattening) {
        set(o, "snapshots", u64(nsnap));
        set(o, "clone_of", src ? obj_name(m, src->id) : rest_json_str(""));
        set(o, "flattening", json_boolean(v->flattening));
        set(o, "flatten_progress",
            json_real(v->flattening ? cluster_flatten_progress(rep, v) : (src ? 0.0 : 1.0)));
    }
    set(o, "io", volume_io(rep, v->id));
    return o;
}

json_t *rest_json_volume_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_volumes; i++)
        json_array_append_new(a, rest_json_volume(rep, rep->map->volumes[i]));
    return a;
}

json_t *rest_json_sdc(const Cairn__MgmtReply *rep, const Cairn__Sdc *c)
{
    const Cairn__ClusterMap *m = rep->map;
    const Cairn__SdcStatus *st = NULL;
    for (size_t i = 0; i < rep->n_sdc_status; i++)
        if (rep->sdc_status[i]->sdc_id == c->id)
            st = rep->sdc_status[i];
    json_t *o = json_object();
    set(o, "id", u64(c->id));
    set(o, "name", rest_json_str(c->name));
    set(o, "guid", rest_json_str(c->guid));
    set(o, "state", json_string(c->pending ? "pending" : "approved"));
    set(o, "connected", json_boolean(st && st->connected));
    set(o, "map_version", u64(st ? st->map_version : 0));
    if (st && st->connected)
        set(o, "last_heartbeat_ms_ago", u64(st->last_heartbeat_ms_ago));
    json_t *vols = json_array();
    for (size_t j = 0; j < m->n_mappings; j++)
        if (m->mappings[j]->sdc_id == c->id)
            json_array_append_new(vols, obj_name(m, m->mappings[j]->volume_id));
    set(o, "volumes", vols);
    json_t *writing = json_array();
    for (size_t k = 0; st && k < st->n_holds; k++)
        json_array_append_new(writing, obj_name(m, st->holds[k]));
    set(o, "writing", writing);
    return o;
}

json_t *rest_json_sdc_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_sdcs; i++)
        json_array_append_new(a, rest_json_sdc(rep, rep->map->sdcs[i]));
    return a;
}

json_t *rest_json_fault_set(const Cairn__MgmtReply *rep, const Cairn__FaultSet *f)
{
    const Cairn__ClusterMap *m = rep->map;
    uint64_t cap = 0;
    json_t *members = json_array();
    for (size_t j = 0; j < m->n_sds; j++) {
        if (strcmp(m->sds[j]->fault_set, f->name))
            continue;
        json_array_append_new(members, rest_json_str(m->sds[j]->name));
        for (size_t k = 0; k < m->n_devices; k++)
            if (m->devices[k]->sds_id == m->sds[j]->id && !m->devices[k]->removing)
                cap += m->devices[k]->capacity;
    }
    json_t *o = json_object();
    set(o, "id", u64(f->id));
    set(o, "name", rest_json_str(f->name));
    set(o, "sds_count", u64(json_array_size(members)));
    set(o, "capacity", u64(cap));
    set(o, "sds", members);
    return o;
}

json_t *rest_json_fault_set_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_fault_sets; i++)
        json_array_append_new(a, rest_json_fault_set(rep, rep->map->fault_sets[i]));
    return a;
}

json_t *rest_json_mapping(const Cairn__MgmtReply *rep, const Cairn__Mapping *mp)
{
    json_t *o = json_object();
    set(o, "volume", obj_name(rep->map, mp->volume_id));
    /* a snapshot's mapping: which volume and snapshot it is */
    const Cairn__Snapshot *sn = cmap_snapshot(rep->map, mp->volume_id);
    if (sn && !cmap_volume(rep->map, mp->volume_id)) {
        set(o, "snapshot_of", rest_json_str(vol_name(rep->map, sn->volume_id)));
        set(o, "snapshot", rest_json_str(sn->name));
    }
    set(o, "sdc", rest_json_str(sdc_name(rep->map, mp->sdc_id)));
    set(o, "read_only", json_boolean(mp->read_only));
    set(o, "access", json_string(access_name(mp->access)));
    /* the volume's, as in its object: whom a takeover made the writer */
    const Cairn__Volume *v = cmap_volume(rep->map, mp->volume_id);
    set(o, "writer", rest_json_str(v && v->writer_sdc ? sdc_name(rep->map, v->writer_sdc) : ""));
    set(o, "writer_generation", u64(v ? v->writer_gen : 0));
    return o;
}

json_t *rest_json_mapping_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_mappings; i++)
        json_array_append_new(a, rest_json_mapping(rep, rep->map->mappings[i]));
    return a;
}

/* As `cairn --json snapshot list` gives it (cli_snapshot.c): sizes are
 * one copy's bytes of its layer, summed over the SDSs' heartbeats. */
json_t *rest_json_snapshot(const Cairn__MgmtReply *rep, const Cairn__Snapshot *sn)
{
    const Cairn__ClusterMap *m = rep->map;
    uint64_t written = 0, own = 0;
    for (size_t i = 0; i < rep->n_sds_status; i++) {
        const Cairn__SdsStatus *st = rep->sds_status[i];
        for (size_t k = 0; k < st->n_layers; k++)
            if (st->layers[k]->layer == sn->layer) {
                written += st->layers[k]->written;
                own += st->layers[k]->own;
            }
    }
    char t[32] = "-";
    time_t secs = (time_t)(sn->created_ms / 1000);
    struct tm tm;
    if (!sn->created_ms || !gmtime_r(&secs, &tm) ||
        !strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(t, sizeof(t), "-");
    json_t *o = json_object();
    set(o, "volume", rest_json_str(vol_name(m, sn->volume_id)));
    set(o, "name", rest_json_str(sn->name));
    set(o, "id", u64(sn->id));
    set(o, "size", u64(sn->size));
    set(o, "written", u64(written));
    set(o, "own", u64(own));
    set(o, "created", json_string(t));
    set(o, "group", rest_json_str(sn->group));
    json_t *to = json_array();
    for (size_t j = 0; j < m->n_mappings; j++)
        if (m->mappings[j]->volume_id == sn->id)
            json_array_append_new(to, rest_json_str(sdc_name(m, m->mappings[j]->sdc_id)));
    set(o, "mapped_to", to);
    return o;
}

json_t *rest_json_snapshot_list(const Cairn__MgmtReply *rep, uint64_t volume_id)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->map->n_snapshots; i++)
        if (!volume_id || rep->map->snapshots[i]->volume_id == volume_id)
            json_array_append_new(a, rest_json_snapshot(rep, rep->map->snapshots[i]));
    return a;
}

json_t *rest_json_mdm_list(const Cairn__MgmtReply *rep)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rep->n_mdms; i++) {
        const Cairn__MdmStatus *s = rep->mdms[i];
        json_t *o = json_object();
        set(o, "id", u64(s->id));
        set(o, "raft_addr", rest_json_str(s->raft_addr));
        set(o, "role", rest_json_str(s->role));
        set(o, "term", u64(s->term));
        set(o, "commit_index", u64(s->commit_index));
        set(o, "applied_index", u64(s->applied_index));
        set(o, "self", json_boolean(s->self));
        json_array_append_new(a, o);
    }
    return a;
}

/* One kind of copy work: its PG copies, bytes left and done, and the ETA
 * at the SDSs' one summed copy rate (they report no split of it), as the
 * CLI's status computes it. */
static json_t *progress(uint32_t pgs, uint64_t left, uint64_t done, uint64_t rate)
{
    json_t *o = json_object();
    set(o, "pg_copies_left", u64(pgs));
    set(o, "bytes_left", u64(left));
    set(o, "bytes_done", u64(done));
    set(o, "rate", u64(rate));
    set(o, "eta_seconds", u64(rate && left ? left / rate + 1 : 0));
    return o;
}

/* "error" if some data is unreachable (a PG with no live copy, or a pool
 * with no placement), "degraded" if anything else is not well (a pool's
 * health is not "ok", an SDS is down), else "ok". */
static const char *cluster_health(const Cairn__MgmtReply *rep)
{
    const char *h = "ok";
    for (size_t i = 0; i < rep->map->n_pools; i++) {
        const Cairn__Pool *p = rep->map->pools[i];
        struct cluster_pool_stats ps = cluster_pool_stats(rep, p);
        if (ps.pgs_no_copy || !p->n_pgs)
            return "error";
        if (strcmp(cluster_pool_health(&ps, p), "ok"))
            h = "degraded";
    }
    for (size_t i = 0; i < rep->map->n_sds; i++)
        if (rep->map->sds[i]->state == CAIRN__SDS_STATE__SDS_DOWN)
            h = "degraded";
    return h;
}

json_t *rest_json_status(const Cairn__MgmtReply *rep)
{
    struct cluster_rebuild_stats rb = cluster_rebuild_stats(rep);
    uint64_t bal_left = MIN(rb.left, rb.rebalance_left);
    uint64_t bal_done = MIN(rb.done, rb.rebalance_done);
    uint32_t bal_pgs = MIN(rb.pgs, rb.rebalance_pgs);
    json_t *o = json_object();
    set(o, "cluster_id", rest_json_str(rep->map->cluster_id));
    set(o, "map_version", u64(rep->map->version));
    set(o, "mdm", rest_json_str(rep->info));
    set(o, "health", rest_json_str(cluster_health(rep)));
    set(o, "rebuild", progress(rb.pgs - bal_pgs, rb.left - bal_left, rb.done - bal_done, rb.rate));
    set(o, "rebalance", progress(bal_pgs, bal_left, bal_done, rb.rate));
    set(o, "sds", rest_json_sds_list(rep));
    set(o, "pools", rest_json_pool_list(rep));
    set(o, "volumes", rest_json_volume_list(rep));
    set(o, "sdcs", rest_json_sdc_list(rep));
    set(o, "fault_sets", rest_json_fault_set_list(rep));
    set(o, "mappings", rest_json_mapping_list(rep));
    set(o, "mdms", rest_json_mdm_list(rep));
    return o;
}
