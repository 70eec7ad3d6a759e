#include "cli_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmap.h"
#include "layout.h"
#include "rpc.h"
#include "util.h"

struct result {
    int done;
    int status;
    uint8_t *payload;
    uint32_t len;
};

static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    struct result *r = arg;
    r->done = 1;
    r->status = status;
    r->payload = payload;
    r->len = payload_len;
}

static void conn_cb(struct rpc_conn *c, int status, void *arg)
{
    struct rpc_conn **out = arg;
    *out = status < 0 ? NULL : c;
}

static void on_req(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *m, uint8_t *p)
{
    (void)h;
    (void)m;
    rpc_buf_free(p);
    rpc_close(c);
}

struct sds_conn {
    uint32_t id;
    struct rpc_conn *c;
};

static struct rpc_conn *conn_to(const Cairn__ClusterMap *map, struct sds_conn *cs, size_t *n,
                                uint32_t sds_id)
{
    for (size_t i = 0; i < *n; i++)
        if (cs[i].id == sds_id)
            return cs[i].c;
    const char *addr = NULL;
    for (size_t i = 0; i < map->n_sds; i++)
        if (map->sds[i]->id == sds_id)
            addr = map->sds[i]->addr;
    struct rpc_conn *c = NULL;
    static const struct rpc_handlers h = {.on_request = on_req,
                                          .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_SDS)};
    if (addr && rpc_connect(uv_default_loop(), addr, &h, NULL, conn_cb, &c) == 0)
        uv_run(uv_default_loop(), UV_RUN_ONCE);
    while (addr && !c && uv_run(uv_default_loop(), UV_RUN_NOWAIT))
        ;
    cs[*n].id = sds_id;
    cs[*n].c = c;
    (*n)++;
    return c;
}

static int call(struct rpc_conn *c, uint16_t type, const struct io_hdr *h, struct result *r)
{
    uint8_t msg[IO_HDR_MAX];
    uint32_t mlen = io_hdr_encode(h, msg);
    memset(r, 0, sizeof(*r));
    if (!c)
        return -ENOTCONN;
    int rc = rpc_call(c, type, msg, mlen, NULL, 0, 30000, reply_cb, r);
    if (rc < 0)
        return rc;
    while (!r->done)
        uv_run(uv_default_loop(), UV_RUN_ONCE);
    return r->status;
}

struct counts {
    uint64_t checked, holes, mismatches, errors, stale;
};

/* Compare every copy of each extent of what id names (a volume, or one of
 * its snapshots: the copies read it through its chain of layers). */
static void check_one(const Cairn__ClusterMap *map, const Cairn__Pool *p, const Cairn__Volume *v,
                      uint64_t id, uint64_t size, struct sds_conn *cs, size_t *ncs,
                      struct counts *n)
{
    uint64_t next = (size + p->extent_size - 1) / p->extent_size;
    for (uint64_t e = 0; e < next; e++) {
        uint32_t pg = layout_pg_of(cmap_placement(v), e, (uint32_t)p->n_pgs);
        const Cairn__Pg *g = p->pgs[pg];
        uint64_t off = e * p->extent_size;
        struct io_hdr h = {.volume_id = id,
                           .offset = off,
                           .length = (uint32_t)MIN(p->extent_size, size - off),
                           .flags = IO_FLAG_REPLICA,
                           .pool_id = p->id,
                           .pg = pg,
                           .epoch = g->epoch};
        int alloc[8] = {0};
        uint8_t *data[8] = {0};
        int bad = 0;
        for (size_t k = 0; k < g->n_devices && k < 8; k++) {
            uint32_t sds_id = 0;
            for (size_t d = 0; d < map->n_devices; d++)
                if (map->devices[d]->id == g->devices[k])
                    sds_id = map->devices[d]->sds_id;
            struct rpc_conn *c = conn_to(map, cs, ncs, sds_id);
            struct result r;
            alloc[k] = call(c, FT_IO_STAT, &h, &r);
            rpc_buf_free(r.payload);
            if (alloc[k] == -ESTALE || alloc[k] == -EAGAIN) {
                n->stale++; /* our map or theirs is changing: the caller tries again */
                bad = 1;
                continue;
            }
            if (alloc[k] < 0) {
                fprintf(stderr, "extent %llu copy %zu on SDS %u: %s\n", (unsigned long long)e, k,
                        sds_id, strerror(-alloc[k]));
                bad = 1;
                continue;
            }
            if (alloc[k] > 0) {
                int rc = call(c, FT_IO_READ, &h, &r);
                if (rc == -ESTALE || rc == -EAGAIN) {
                    rpc_buf_free(r.payload);
                    n->stale++;
                    bad = 1;
                    continue;
                }
                if (rc < 0 || r.len != h.length) {
                    fprintf(stderr, "extent %llu copy %zu: read failed: %s\n",
                            (unsigned long long)e, k, strerror(rc < 0 ? -rc : EIO));
                    rpc_buf_free(r.payload);
                    bad = 1;
                    continue;
                }
                data[k] = r.payload;
            }
        }
        int any = 0, mism = 0;
        for (size_t k = 0; k < g->n_devices && k < 8; k++)
            any |= alloc[k] > 0;
        for (size_t k = 1; k < g->n_devices && k < 8 && !bad; k++) {
            const uint8_t *a = data[0], *b = data[k];
            /* a hole equals an allocated copy only if that copy is all zeroes */
            for (uint32_t i = 0; i < h.length && !mism; i++)
                mism = (a ? a[i] : 0) != (b ? b[i] : 0);
        }
        if (bad)
            n->errors++;
        else if (mism) {
            n->mismatches++;
            fprintf(stderr, "extent %llu (PG %u): copies differ\n", (unsigned long long)e, pg);
        }
        if (any)
            n->checked++;
        else
            n->holes++;
        for (int k = 0; k < 8; k++)
            rpc_buf_free(data[k]);
    }
}

int cli_check_copies(const Cairn__ClusterMap *map, const char *volume, int json,
                     int quiet_retry_done)
{
    const Cairn__Volume *v = cmap_volume_by_name(map, volume);
    if (!v) {
        fprintf(stderr, "cairn: no volume named '%s'\n", volume);
        return 1;
    }
    const Cairn__Pool *p = cmap_pool(map, v->pool_id);
    if (!p || !p->n_pgs) {
        fprintf(stderr, "cairn: the pool of '%s' has no placement\n", volume);
        return 1;
    }
    struct sds_conn *cs = calloc(map->n_sds + 1, sizeof(*cs));
    size_t ncs = 0;
    struct counts vc = {0};
    check_one(map, p, v, v->id, v->size, cs, &ncs, &vc);
    /* and each of its snapshots, as read through its layers */
    size_t nsnap = 0;
    for (size_t i = 0; i < map->n_snapshots; i++)
        nsnap += map->snapshots[i]->volume_id == v->id;
    struct counts *sc = calloc(nsnap + 1, sizeof(*sc));
    const Cairn__Snapshot **sn = calloc(nsnap + 1, sizeof(*sn));
    size_t k = 0;
    uint64_t stale = vc.stale, bad = vc.mismatches + vc.errors, mism = vc.mismatches;
    for (size_t i = 0; i < map->n_snapshots && sc && sn; i++) {
        if (map->snapshots[i]->volume_id != v->id)
            continue;
        sn[k] = map->snapshots[i];
        check_one(map, p, v, sn[k]->id, sn[k]->size, cs, &ncs, &sc[k]);
        stale += sc[k].stale;
        bad += sc[k].mismatches + sc[k].errors;
        mism += sc[k].mismatches;
        k++;
    }
    for (size_t i = 0; i < ncs; i++)
        if (cs[i].c)
            rpc_close(cs[i].c);
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    free(cs);
    if (stale && !mism && !quiet_retry_done) {
        free(sc);
        free(sn);
        return 2;
    }
    if (json) {
        printf("{\"volume\":\"%s\",\"extents_checked\":%llu,\"holes\":%llu,\"copies_per_extent\":"
               "%u,\"mismatches\":%llu,\"errors\":%llu,\"snapshots\":[",
               v->name, (unsigned long long)vc.checked, (unsigned long long)vc.holes, p->copies,
               (unsigned long long)vc.mismatches, (unsigned long long)vc.errors);
        for (size_t i = 0; i < k; i++) {
            printf("%s{\"name\":", i ? "," : "");
            cli_print_jstr(sn[i]->name);
            printf(",\"extents_checked\":%llu,\"holes\":%llu,\"mismatches\":%llu,\"errors\":%llu}",
                   (unsigned long long)sc[i].checked, (unsigned long long)sc[i].holes,
                   (unsigned long long)sc[i].mismatches, (unsigned long long)sc[i].errors);
        }
        printf("]}\n");
    } else {
        printf("volume %s: %llu allocated extents checked on %u copies each, %llu holes: "
               "%llu mismatched, %llu unreadable\n",
               v->name, (unsigned long long)vc.checked, p->copies, (unsigned long long)vc.holes,
               (unsigned long long)vc.mismatches, (unsigned long long)vc.errors);
        for (size_t i = 0; i < k; i++)
            printf("snapshot %s@%s: %llu allocated extents checked on %u copies each, %llu "
                   "holes: %llu mismatched, %llu unreadable\n",
                   v->name, sn[i]->name, (unsigned long long)sc[i].checked, p->copies,
                   (unsigned long long)sc[i].holes, (unsigned long long)sc[i].mismatches,
                   (unsigned long long)sc[i].errors);
    }
    free(sc);
    free(sn);
    return bad ? 1 : 0;
}

int cli_locate(const Cairn__ClusterMap *map, const char *volume, uint64_t offset, int json)
{
    const Cairn__Volume *v = cmap_volume_by_name(map, volume);
    if (!v) {
        fprintf(stderr, "cairn: no volume named '%s'\n", volume);
        return 1;
    }
    const Cairn__Pool *p = cmap_pool(map, v->pool_id);
    if (!p || !p->n_pgs || offset >= v->size) {
        fprintf(stderr, "cairn: offset %llu is outside volume '%s' (%llu bytes)\n",
                (unsigned long long)offset, volume, (unsigned long long)v->size);
        return 1;
    }
    uint64_t ext = offset / p->extent_size;
    uint32_t pg = layout_pg_of(cmap_placement(v), ext, (uint32_t)p->n_pgs);
    const Cairn__Pg *g = p->pgs[pg];
    if (json)
        printf("{\"volume_id\":%llu,\"pool_id\":%u,\"extent\":%llu,\"pg\":%u,\"epoch\":%llu,"
               "\"copies\":[",
               (unsigned long long)v->id, p->id, (unsigned long long)ext, pg,
               (unsigned long long)g->epoch);
    else
        printf("volume %s offset %llu: extent %llu, PG %u.%u, epoch %llu\n", volume,
               (unsigned long long)offset, (unsigned long long)ext, p->id, pg,
               (unsigned long long)g->epoch);
    for (size_t k = 0; k < g->n_devices + g->n_rebuilding; k++) {
        uint32_t devid = k < g->n_devices ? g->devices[k] : g->rebuilding[k - g->n_devices];
        const Cairn__Device *d = cmap_device(map, devid);
        const Cairn__Sds *s = d ? cmap_sds(map, d->sds_id) : NULL;
        int leaving = 0;
        for (size_t j = 0; j < g->n_leaving; j++)
            leaving |= k < g->n_devices && g->leaving[j] == devid;
        const char *role = leaving            ? (k == 0 ? "primary, leaving" : "secondary, leaving")
                           : k == 0           ? "primary"
                           : k < g->n_devices ? "secondary"
                                              : "rebuilding";
        if (json) {
            printf("%s{\"role\":\"%s\",\"device\":%u,\"sds\":\"%s\",\"addr\":\"%s\"}", k ? "," : "",
                   role, devid, s ? s->name : "?", s ? s->addr : "?");
        } else {
            printf("  %-10s device %u on %s (%s)\n", role, devid, s ? s->name : "?",
                   s ? s->addr : "?");
        }
    }
    if (json)
        printf("]}\n");
    return 0;
}
