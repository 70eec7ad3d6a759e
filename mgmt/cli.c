/* cairn: the operator's CLI. Every command is one request to the MDM. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capacity.h"
#include "cli_check.h"
#include "cmap.h"
#include "rpc.h"
#include "util.h"

static const char *mdm_addr = "127.0.0.1:6611";
static int json;

struct call {
    int done;
    int status;
    Cairn__MgmtReply *rep;
    Cairn__MgmtRequest *req;
};

static void usage(void)
{
    fprintf(stderr,
        "usage: cairn [--mdm ADDR] [--json] COMMAND\n"
        "\n"
        "  status                                     cluster overview\n"
        "  pool create NAME [--copies 2|3] [--pgs N] [--overcommit PCT]\n"
        "  pool set NAME --overcommit PCT\n"
        "  pool list\n"
        "  sds add --name NAME --addr HOST:PORT --device PATH [--device PATH]...\n"
        "          [--fault-set NAME] [--pool NAME]\n"
        "  sds list\n"
        "  sds maintenance enter|exit NAME            take an SDS out for a reboot without a rebuild\n"
        "  sds remove NAME [--force]                  drain its copies elsewhere, then forget it;\n"
        "                                             --force: forget it now, rebuild its copies\n"
        "  device add --sds NAME --device PATH [--device PATH]... [--pool NAME]\n"
        "  device remove --sds NAME --device PATH [--force]\n"
        "  device list\n"
        "  fault-set add|remove NAME                  SDSs that may fail together (--fault-set)\n"
        "  fault-set list\n"
        "  volume create NAME --size SIZE [--pool NAME] [--thick]\n"
        "  volume list\n"
        "  volume show NAME\n"
        "  volume grow NAME --size SIZE\n"
        "  volume remove NAME\n"
        "  volume check-copies NAME                   compare every copy of every extent\n"
        "  volume locate NAME --offset BYTES          the PG, epoch and copies holding an offset\n"
        "  volume map NAME --sdc SDC [--read-only]\n"
        "  volume unmap NAME --sdc SDC\n"
        "  sdc list\n"
        "\n"
        "SIZE takes K, M, G, T, P suffixes (powers of 1024). --json prints JSON.\n"
        "The MDM address also comes from $CAIRN_MDM.\n");
    exit(2);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cairn: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)payload_len;
    struct call *call = arg;
    rpc_buf_free(payload);
    call->status = status;
    call->done = 1;
    if (msg)
        call->rep = cairn__mgmt_reply__unpack(NULL, msg_len, msg);
    rpc_close(c);
}

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct call *call = arg;
    if (status < 0) {
        call->done = 1;
        call->status = status;
        return;
    }
    int r = rpc_call_pb(c, FT_MGMT, &call->req->base, 30000, reply_cb, call);
    if (r < 0) {
        call->done = 1;
        call->status = r;
        rpc_close(c);
    }
}

static void on_req_unexpected(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *m,
                              uint8_t *p)
{
    (void)h;
    (void)m;
    rpc_buf_free(p);
    rpc_close(c);
}

/* Send one request; exits with a message on any failure. */
static Cairn__MgmtReply *mdm_call(Cairn__MgmtRequest *req)
{
    uv_loop_t *loop = uv_default_loop();
    struct call call = {.req = req};
    static const struct rpc_handlers h = {.on_request = on_req_unexpected};
    int r = rpc_connect(loop, mdm_addr, &h, NULL, connect_cb, &call);
    if (r < 0)
        die("cannot reach the MDM at %s: %s", mdm_addr, uv_strerror(r));
    uv_run(loop, UV_RUN_DEFAULT);
    if (!call.rep) {
        if (call.status == -ECONNREFUSED)
            die("cannot reach the MDM at %s: connection refused (is cairn-mdm running?)",
                mdm_addr);
        die("request to the MDM at %s failed: %s", mdm_addr, strerror(-call.status));
    }
    if (call.status < 0)
        die("%s", call.rep->error[0] ? call.rep->error : strerror(-call.status));
    return call.rep;
}

/* ---- output helpers ---- */

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

static const char *human(uint64_t b, char *buf)
{
    return fmt_bytes(buf, 32, b);
}

static const Cairn__SdsStatus *sds_status(const Cairn__MgmtReply *rep, uint32_t id)
{
    for (size_t i = 0; i < rep->n_sds_status; i++)
        if (rep->sds_status[i]->sds_id == id)
            return rep->sds_status[i];
    return NULL;
}

static const Cairn__DeviceUsage *dev_usage(const Cairn__MgmtReply *rep, const Cairn__Device *d)
{
    const Cairn__SdsStatus *s = sds_status(rep, d->sds_id);
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->n_usage; i++)
        if (s->usage[i]->device_id == d->id)
            return s->usage[i];
    return NULL;
}

struct pool_stats {
    uint64_t raw, usable, used, provisioned, thick, enospc;
    int full_devices, failed_devices;
    size_t pgs_full, pgs_degraded, pgs_no_copy, pgs_rebuilding, pgs_moving;
};

/* A PG's in-sync copies on SDSs that are up. */
static size_t live_copies(const Cairn__MgmtReply *rep, const Cairn__Pg *g)
{
    size_t n = 0;
    for (size_t k = 0; k < g->n_devices; k++) {
        const Cairn__Device *d = cmap_device(rep->map, g->devices[k]);
        const Cairn__Sds *s = d ? cmap_sds(rep->map, d->sds_id) : NULL;
        n += s && s->state == CAIRN__SDS_STATE__SDS_UP && !d->failed;
    }
    return n;
}

struct rebuild_stats {
    uint64_t left, rate, done, received;
    uint32_t pgs;
};

static struct rebuild_stats rebuild_stats(const Cairn__MgmtReply *rep)
{
    struct rebuild_stats r = {0};
    for (size_t i = 0; i < rep->n_sds_status; i++) {
        const Cairn__RebuildStatus *b = rep->sds_status[i]->rebuild;
        if (!b)
            continue;
        r.left += b->bytes_left;
        r.done += b->bytes_done;
        r.received += b->bytes_received;
        r.rate += b->rate;
        r.pgs += b->pgs_left;
    }
    return r;
}

static struct pool_stats pool_stats(const Cairn__MgmtReply *rep, const Cairn__Pool *p)
{
    struct pool_stats ps = {0};
    ps.raw = capacity_pool_raw(rep->map, p);
    ps.usable = capacity_pool_usable(rep->map, p);
    ps.provisioned = capacity_pool_provisioned(rep->map, p, 0);
    ps.thick = capacity_pool_provisioned(rep->map, p, 1);
    uint64_t used_raw = 0;
    for (size_t i = 0; i < rep->map->n_devices; i++) {
        const Cairn__Device *d = rep->map->devices[i];
        if (d->pool_id != p->id)
            continue;
        const Cairn__DeviceUsage *u = dev_usage(rep, d);
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
        size_t live = live_copies(rep, p->pgs[g]);
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

static const char *pool_health(const struct pool_stats *ps, const Cairn__Pool *p)
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

static const char *vol_name(const Cairn__ClusterMap *m, uint64_t id)
{
    for (size_t i = 0; i < m->n_volumes; i++)
        if (m->volumes[i]->id == id)
            return m->volumes[i]->name;
    return "?";
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

static void print_sds(const Cairn__MgmtReply *rep)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32], b2[32];
    if (json) {
        printf("[");
        for (size_t i = 0; i < m->n_sds; i++) {
            const Cairn__Sds *s = m->sds[i];
            const Cairn__SdsStatus *st = sds_status(rep, s->id);
            printf("%s{\"id\":%u,\"name\":", i ? "," : "", s->id);
            jstr(s->name);
            printf(",\"addr\":");
            jstr(s->addr);
            printf(",\"fault_set\":");
            jstr(s->fault_set);
            printf(",\"rebuild_bytes_sent\":%llu,\"rebuild_bytes_received\":%llu",
                   (unsigned long long)(st && st->rebuild ? st->rebuild->bytes_done : 0),
                   (unsigned long long)(st && st->rebuild ? st->rebuild->bytes_received : 0));
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
                const Cairn__DeviceUsage *u = dev_usage(rep, d);
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
        const Cairn__SdsStatus *st = sds_status(rep, s->id);
        uint64_t cap = 0, used = 0;
        int nd = 0;
        for (size_t j = 0; j < m->n_devices; j++) {
            const Cairn__Device *d = m->devices[j];
            if (d->sds_id != s->id)
                continue;
            nd++;
            cap += d->capacity;
            const Cairn__DeviceUsage *u = dev_usage(rep, d);
            for (size_t k = 0; u && k < m->n_pools; k++)
                if (m->pools[k]->id == d->pool_id)
                    used += u->used_extents * m->pools[k]->extent_size;
        }
        printf("%-12s %-22s %-12s %-13s %7d %11s %11s\n", s->name, s->addr,
               s->fault_set[0] ? s->fault_set : "-",
               s->removing && s->state == CAIRN__SDS_STATE__SDS_UP ? "removing"
               : s->state == CAIRN__SDS_STATE__SDS_MAINTENANCE     ? "maintenance"
               : s->state != CAIRN__SDS_STATE__SDS_UP        ? "DOWN"
               : st && st->connected                         ? "up"
                                                             : "disconnected",
               nd, human(cap, b1), human(used, b2));
    }
}

static void print_devices(const Cairn__MgmtReply *rep)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32], b2[32];
    if (json) {
        print_sds(rep);
        return;
    }
    printf("%-6s %-12s %-10s %-40s %11s %11s %s\n", "ID", "SDS", "POOL", "PATH", "CAPACITY",
           "USED", "STATE");
    for (size_t j = 0; j < m->n_devices; j++) {
        const Cairn__Device *d = m->devices[j];
        const Cairn__DeviceUsage *u = dev_usage(rep, d);
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

static void print_pools(const Cairn__MgmtReply *rep)
{
    const Cairn__ClusterMap *m = rep->map;
    char b1[32], b2[32], b3[32], b4[32];
    if (json) {
        printf("[");
        for (size_t i = 0; i < m->n_pools; i++) {
            const Cairn__Pool *p = m->pools[i];
            struct pool_stats ps = pool_stats(rep, p);
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
            jstr(pool_health(&ps, p));
            printf("}");
        }
        printf("]");
        return;
    }
    printf("%-10s %6s %5s %11s %11s %11s %11s  %s\n", "POOL", "COPIES", "PGS", "USABLE", "USED",
           "FREE", "PROVISIONED", "HEALTH");
    for (size_t i = 0; i < m->n_pools; i++) {
        const Cairn__Pool *p = m->pools[i];
        struct pool_stats ps = pool_stats(rep, p);
        printf("%-10s %6u %5zu %11s %11s %11s %11s  %s", p->name, p->copies, p->n_pgs,
               human(ps.usable, b1), human(ps.used, b2),
               human(ps.usable > ps.used ? ps.usable - ps.used : 0, b3),
               human(ps.provisioned, b4), pool_health(&ps, p));
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

static void print_volume_json(const Cairn__ClusterMap *m, const Cairn__Volume *v)
{
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
            printf(",\"read_only\":%s}", m->mappings[j]->read_only ? "true" : "false");
            first = 0;
        }
    printf("]}");
}

static void print_volumes(const Cairn__MgmtReply *rep, const char *only)
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
            print_volume_json(m, m->volumes[i]);
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
                printf("%s%s%s", first ? "" : ", ", sdc_name(m, m->mappings[j]->sdc_id),
                       m->mappings[j]->read_only ? " (ro)" : "");
                first = 0;
            }
        printf("%s\n", first ? "-" : "");
    }
}

static void print_sdcs(const Cairn__MgmtReply *rep)
{
    const Cairn__ClusterMap *m = rep->map;
    if (json) {
        printf("[");
        for (size_t i = 0; i < m->n_sdcs; i++) {
            printf("%s{\"id\":%u,\"name\":", i ? "," : "", m->sdcs[i]->id);
            jstr(m->sdcs[i]->name);
            printf(",\"guid\":");
            jstr(m->sdcs[i]->guid);
            printf(",\"volumes\":[");
            int first = 1;
            for (size_t j = 0; j < m->n_mappings; j++)
                if (m->mappings[j]->sdc_id == m->sdcs[i]->id) {
                    if (!first)
                        printf(",");
                    jstr(vol_name(m, m->mappings[j]->volume_id));
                    first = 0;
                }
            printf("]}");
        }
        printf("]");
        return;
    }
    printf("%-20s %-38s %s\n", "SDC", "GUID", "VOLUMES");
    for (size_t i = 0; i < m->n_sdcs; i++) {
        printf("%-20s %-38s ", m->sdcs[i]->name, m->sdcs[i]->guid);
        int first = 1;
        for (size_t j = 0; j < m->n_mappings; j++)
            if (m->mappings[j]->sdc_id == m->sdcs[i]->id) {
                printf("%s%s", first ? "" : ", ", vol_name(m, m->mappings[j]->volume_id));
                first = 0;
            }
        printf("%s\n", first ? "-" : "");
    }
}

static void print_fault_sets(const Cairn__MgmtReply *rep)
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
            printf(",\"sds_count\":%d,\"capacity\":%llu,\"sds\":[", n,
                   (unsigned long long)cap);
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

static void print_status(const Cairn__MgmtReply *rep)
{
    if (json) {
        printf("{\"cluster_id\":");
        jstr(rep->map->cluster_id);
        printf(",\"map_version\":%llu,\"mdm\":", (unsigned long long)rep->map->version);
        jstr(rep->info);
        struct rebuild_stats rb = rebuild_stats(rep);
        printf(",\"rebuild\":{\"pg_copies_left\":%u,\"bytes_left\":%llu,\"rate\":%llu,"
               "\"bytes_copied_total\":%llu,\"bytes_received_total\":%llu,\"eta_seconds\":%llu}",
               rb.pgs, (unsigned long long)rb.left, (unsigned long long)rb.rate,
               (unsigned long long)rb.done, (unsigned long long)rb.received,
               (unsigned long long)(rb.rate ? rb.left / rb.rate + 1 : 0));
        printf(",\"sds\":");
        print_sds(rep);
        printf(",\"pools\":");
        print_pools(rep);
        printf(",\"volumes\":");
        print_volumes(rep, NULL);
        printf(",\"sdcs\":");
        print_sdcs(rep);
        printf("}\n");
        return;
    }
    printf("Cluster %s (map version %llu; %s)\n", rep->map->cluster_id,
           (unsigned long long)rep->map->version, rep->info);
    struct rebuild_stats rb = rebuild_stats(rep);
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
    print_sds(rep);
    printf("\n");
    print_pools(rep);
    printf("\n");
    print_volumes(rep, NULL);
    printf("\n");
    print_sdcs(rep);
}

/* ---- argument parsing ---- */

struct args {
    int argc;
    char **argv;
    int pos;
};

/* Options after the verb: --key value or --flag. */
static const char *opt(struct args *a, const char *key)
{
    for (int i = a->pos; i < a->argc; i++)
        if (!strcmp(a->argv[i], key)) {
            if (i + 1 >= a->argc || !strncmp(a->argv[i + 1], "--", 2))
                die("%s needs a value", key);
            return a->argv[i + 1];
        }
    return NULL;
}
static int flag(struct args *a, const char *key)
{
    for (int i = a->pos; i < a->argc; i++)
        if (!strcmp(a->argv[i], key))
            return 1;
    return 0;
}
static void check_opts(struct args *a, const char *const *known, const char *const *flags,
                       int npositional)
{
    int positional = 0;
    for (int i = a->pos; i < a->argc; i++) {
        const char *s = a->argv[i];
        int ok = 0;
        if (strncmp(s, "--", 2)) {
            if (++positional > npositional) {
                fprintf(stderr, "cairn: unexpected argument '%s'\n", s);
                usage();
            }
            continue;
        }
        for (const char *const *k = known; *k; k++)
            if (!strcmp(s, *k)) {
                ok = 1;
                i++;
            }
        for (const char *const *k = flags; *k; k++)
            if (!strcmp(s, *k))
                ok = 1;
        if (!ok) {
            fprintf(stderr, "cairn: unknown option '%s'\n", s);
            usage();
        }
    }
}
static const char *positional(struct args *a)
{
    for (int i = a->pos; i < a->argc; i++) {
        if (!strncmp(a->argv[i], "--", 2)) {
            i++; /* skip the value of a known key; flags are handled by check_opts */
            if (i < a->argc && !strncmp(a->argv[i - 1], "--thick", 7))
                i--;
            if (i < a->argc && !strncmp(a->argv[i - 1], "--read-only", 11))
                i--;
            if (i < a->argc && !strncmp(a->argv[i - 1], "--force", 7))
                i--;
            continue;
        }
        return a->argv[i];
    }
    return NULL;
}
static uint64_t size_opt(struct args *a, const char *key)
{
    const char *s = opt(a, key);
    uint64_t v;
    if (!s)
        die("%s is required", key);
    if (parse_size(s, &v) < 0)
        die("invalid size '%s' (use e.g. 8G, 512M)", s);
    return v;
}
static char **multi(struct args *a, const char *key, size_t *n)
{
    char **out = calloc((size_t)a->argc, sizeof(char *));
    *n = 0;
    for (int i = a->pos; i + 1 < a->argc; i++)
        if (!strcmp(a->argv[i], key))
            out[(*n)++] = a->argv[++i];
    return out;
}

static void done(Cairn__MgmtReply *rep, const char *what)
{
    if (json)
        printf("{\"ok\":true}\n");
    else
        printf("%s\n", what);
    cairn__mgmt_reply__free_unpacked(rep, NULL);
}

int main(int argc, char **argv)
{
    int i = 1;
    if (getenv("CAIRN_MDM"))
        mdm_addr = getenv("CAIRN_MDM");
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--mdm") && i + 1 < argc)
            mdm_addr = argv[++i];
        else if (!strcmp(argv[i], "--help"))
            usage();
        else {
            fprintf(stderr, "cairn: unknown option '%s'\n", argv[i]);
            usage();
        }
    }
    if (i >= argc)
        usage();
    const char *obj = argv[i++];
    const char *verb = i < argc ? argv[i++] : "";
    struct args a = {argc, argv, i};
    /* --json is accepted after the command too */
    for (int k = i; k < argc; k++)
        if (!strcmp(argv[k], "--json"))
            json = 1;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    static const char *const none[] = {NULL};
    static const char *const json_flag[] = {"--json", NULL};

    if (!strcmp(obj, "status") || (!strcmp(obj, "sds") && !strcmp(verb, "list")) ||
        (!strcmp(obj, "pool") && !strcmp(verb, "list")) ||
        (!strcmp(obj, "device") && !strcmp(verb, "list")) ||
        (!strcmp(obj, "volume") && (!strcmp(verb, "list") || !strcmp(verb, "show"))) ||
        (!strcmp(obj, "sdc") && !strcmp(verb, "list"))) {
        const char *name = NULL;
        if (!strcmp(obj, "status")) {
            a.pos = i - 1;
            if (verb[0] && strcmp(verb, "--json"))
                usage();
        } else if (!strcmp(verb, "show")) {
            check_opts(&a, none, json_flag, 1);
            name = positional(&a);
            if (!name)
                usage();
        } else {
            check_opts(&a, none, json_flag, 0);
        }
        req.op = CAIRN__MGMT_OP__OP_STATUS;
        Cairn__MgmtReply *rep = mdm_call(&req);
        if (!strcmp(obj, "status"))
            print_status(rep);
        else if (!strcmp(obj, "sds"))
            print_sds(rep);
        else if (!strcmp(obj, "pool"))
            print_pools(rep);
        else if (!strcmp(obj, "device"))
            print_devices(rep);
        else if (!strcmp(obj, "sdc"))
            print_sdcs(rep);
        else {
            if (name && !cmap_volume_by_name(rep->map, name))
                die("no volume named '%s'", name);
            print_volumes(rep, name);
        }
        if (json && strcmp(obj, "status"))
            printf("\n");
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        return 0;
    }
    if (!strcmp(obj, "sds") && !strcmp(verb, "maintenance")) {
        check_opts(&a, none, json_flag, 2);
        const char *what = positional(&a);
        a.pos++;
        const char *name = positional(&a);
        if (!what || !name || (strcmp(what, "enter") && strcmp(what, "exit")))
            usage();
        req.op = !strcmp(what, "enter") ? CAIRN__MGMT_OP__OP_MAINTENANCE_ENTER
                                        : CAIRN__MGMT_OP__OP_MAINTENANCE_EXIT;
        req.name = (char *)name;
        done(mdm_call(&req), "ok");
        return 0;
    }
    if (!strcmp(obj, "sds") && !strcmp(verb, "remove")) {
        static const char *const f[] = {"--force", "--json", NULL};
        check_opts(&a, none, f, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        req.op = CAIRN__MGMT_OP__OP_SDS_REMOVE;
        req.name = (char *)name;
        req.force = flag(&a, "--force");
        done(mdm_call(&req), req.force ? "forgotten; its copies are rebuilt from the others"
                                        : "draining: its copies move to other SDSs, then it is "
                                          "forgotten (see 'cairn status')");
        return 0;
    }
    if (!strcmp(obj, "device") && !strcmp(verb, "remove")) {
        static const char *const k[] = {"--sds", "--device", NULL};
        static const char *const f[] = {"--force", "--json", NULL};
        check_opts(&a, k, f, 0);
        req.op = CAIRN__MGMT_OP__OP_DEVICE_REMOVE;
        req.name = (char *)opt(&a, "--sds");
        char *path = (char *)opt(&a, "--device");
        if (!req.name || !path)
            die("--sds and --device are required");
        req.paths = &path;
        req.n_paths = 1;
        req.force = flag(&a, "--force");
        done(mdm_call(&req), req.force ? "forgotten; its copies are rebuilt from the others"
                                        : "draining: its copies move to other devices");
        return 0;
    }
    if (!strcmp(obj, "fault-set")) {
        if (!strcmp(verb, "list")) {
            check_opts(&a, none, json_flag, 0);
            req.op = CAIRN__MGMT_OP__OP_STATUS;
            Cairn__MgmtReply *rep = mdm_call(&req);
            print_fault_sets(rep);
            cairn__mgmt_reply__free_unpacked(rep, NULL);
            return 0;
        }
        if (strcmp(verb, "add") && strcmp(verb, "remove"))
            usage();
        check_opts(&a, none, json_flag, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        req.op = !strcmp(verb, "add") ? CAIRN__MGMT_OP__OP_FAULT_SET_ADD
                                      : CAIRN__MGMT_OP__OP_FAULT_SET_REMOVE;
        req.fault_set = (char *)name;
        done(mdm_call(&req), "ok");
        return 0;
    }
    if (!strcmp(obj, "volume") && !strcmp(verb, "locate")) {
        static const char *const k[] = {"--offset", NULL};
        check_opts(&a, k, json_flag, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        uint64_t off = size_opt(&a, "--offset");
        req.op = CAIRN__MGMT_OP__OP_STATUS;
        Cairn__MgmtReply *rep = mdm_call(&req);
        int rc = cli_locate(rep->map, name, off, json);
        cairn__mgmt_reply__free_unpacked(rep, NULL);
        return rc;
    }
    if (!strcmp(obj, "volume") && !strcmp(verb, "check-copies")) {
        check_opts(&a, none, json_flag, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        req.op = CAIRN__MGMT_OP__OP_STATUS;
        /* A map that changes during the check (a failover, a rebuild finishing)
         * makes some copies answer "stale": fetch the map again and recheck. */
        for (int attempt = 0;; attempt++) {
            Cairn__MgmtReply *rep = mdm_call(&req);
            int rc = cli_check_copies(rep->map, name, json, attempt >= 20);
            cairn__mgmt_reply__free_unpacked(rep, NULL);
            if (rc != 2)
                return rc;
            usleep(500000);
        }
    }
    if (!strcmp(obj, "pool") && (!strcmp(verb, "create") || !strcmp(verb, "set"))) {
        static const char *const k[] = {"--copies", "--pgs", "--overcommit", NULL};
        check_opts(&a, k, json_flag, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        req.op = !strcmp(verb, "create") ? CAIRN__MGMT_OP__OP_POOL_CREATE
                                         : CAIRN__MGMT_OP__OP_POOL_SET;
        req.pool = (char *)name;
        if (opt(&a, "--copies"))
            req.copies = (uint32_t)atoi(opt(&a, "--copies"));
        if (opt(&a, "--pgs"))
            req.pg_count = (uint32_t)atoi(opt(&a, "--pgs"));
        if (opt(&a, "--overcommit"))
            req.overcommit_pct = (uint32_t)atoi(opt(&a, "--overcommit"));
        if (req.op == CAIRN__MGMT_OP__OP_POOL_SET && !req.overcommit_pct)
            die("pool set needs --overcommit PCT");
        done(mdm_call(&req), "ok");
        return 0;
    }
    if ((!strcmp(obj, "sds") && !strcmp(verb, "add")) ||
        (!strcmp(obj, "device") && !strcmp(verb, "add"))) {
        int is_sds = !strcmp(obj, "sds");
        static const char *const ks[] = {"--name", "--addr", "--device", "--fault-set", "--pool",
                                         NULL};
        static const char *const kd[] = {"--sds", "--device", "--pool", NULL};
        check_opts(&a, is_sds ? ks : kd, json_flag, 0);
        req.op = is_sds ? CAIRN__MGMT_OP__OP_SDS_ADD : CAIRN__MGMT_OP__OP_DEVICE_ADD;
        req.name = (char *)opt(&a, is_sds ? "--name" : "--sds");
        if (!req.name)
            die("%s is required", is_sds ? "--name" : "--sds");
        if (is_sds) {
            req.addr = (char *)opt(&a, "--addr");
            if (!req.addr)
                die("--addr is required");
            char host[256];
            int port;
            if (addr_split(req.addr, host, sizeof(host), &port) < 0)
                die("invalid address '%s' (want HOST:PORT)", req.addr);
            if (opt(&a, "--fault-set"))
                req.fault_set = (char *)opt(&a, "--fault-set");
        }
        if (opt(&a, "--pool"))
            req.pool = (char *)opt(&a, "--pool");
        req.paths = multi(&a, "--device", &req.n_paths);
        if (!req.n_paths)
            die("at least one --device PATH is required");
        done(mdm_call(&req), "ok");
        free(req.paths);
        return 0;
    }
    if (!strcmp(obj, "volume") && !strcmp(verb, "create")) {
        static const char *const k[] = {"--size", "--pool", NULL};
        static const char *const f[] = {"--thick", "--json", NULL};
        check_opts(&a, k, f, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        req.op = CAIRN__MGMT_OP__OP_VOLUME_CREATE;
        req.volume = (char *)name;
        req.size = size_opt(&a, "--size");
        req.thick = flag(&a, "--thick");
        if (opt(&a, "--pool"))
            req.pool = (char *)opt(&a, "--pool");
        done(mdm_call(&req), "ok");
        return 0;
    }
    if (!strcmp(obj, "volume") && (!strcmp(verb, "grow") || !strcmp(verb, "remove"))) {
        static const char *const k[] = {"--size", NULL};
        check_opts(&a, !strcmp(verb, "grow") ? k : none, json_flag, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        req.volume = (char *)name;
        if (!strcmp(verb, "grow")) {
            req.op = CAIRN__MGMT_OP__OP_VOLUME_GROW;
            req.size = size_opt(&a, "--size");
        } else {
            req.op = CAIRN__MGMT_OP__OP_VOLUME_REMOVE;
        }
        done(mdm_call(&req), "ok");
        return 0;
    }
    if (!strcmp(obj, "volume") && (!strcmp(verb, "map") || !strcmp(verb, "unmap"))) {
        static const char *const k[] = {"--sdc", NULL};
        static const char *const f[] = {"--read-only", "--json", NULL};
        check_opts(&a, k, f, 1);
        const char *name = positional(&a);
        if (!name)
            usage();
        req.op = !strcmp(verb, "map") ? CAIRN__MGMT_OP__OP_MAP : CAIRN__MGMT_OP__OP_UNMAP;
        req.volume = (char *)name;
        req.sdc = (char *)opt(&a, "--sdc");
        if (!req.sdc)
            die("--sdc is required");
        req.read_only = flag(&a, "--read-only");
        done(mdm_call(&req), "ok");
        return 0;
    }
    fprintf(stderr, "cairn: unknown command '%s %s'\n", obj, verb);
    usage();
}
