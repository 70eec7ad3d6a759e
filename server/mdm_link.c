/* The session with the MDM (proto/mdm_session.c does the connecting,
 * registering and heartbeating): what this SDS registers and reports, the
 * maps it receives, the leases answered heartbeats give, and the requests
 * the MDM sends. The session's ctx is the sds. */
#include <errno.h>
#include <stdlib.h>

#include "cmap.h"
#include "extent_store.h"
#include "log.h"
#include "mdm_session.h"
#include "sds.h"

static const ProtobufCMessage *registration(void *ctx)
{
    struct sds *s = ctx;
    cairn__sds_register__init(&s->reg);
    s->reg.name = (char *)s->name;
    s->reg.addr = (char *)s->listen;
    return &s->reg.base;
}

/* The message points into s: it stays valid until the next heartbeat. */
static void heartbeat(void *ctx, Cairn__Heartbeat *hb)
{
    struct sds *s = ctx;
    hb->sds_id = s->my_id;
    for (int i = 0; i < s->ndevs; i++) {
        Cairn__DeviceUsage *u = &s->hb_usage[i];
        cairn__device_usage__init(u);
        s->hb_usagep[i] = u;
        u->device_id = s->devs[i].id;
        u->failed = s->devs[i].failed;
        if (!s->devs[i].failed) {
            store_usage(s->devs[i].st, &u->used_extents, &u->total_extents);
            hb->enospc_count += store_enospc(s->devs[i].st);
        }
    }
    hb->n_usage = (size_t)s->ndevs;
    hb->usage = s->hb_usagep;
    rebuild_fill_status(s, &s->hb_rebuild);
    hb->rebuild = &s->hb_rebuild;
    if (s->map)
        reclaim_purge_removed(s); /* continue freeing removed volumes, 1024 extents a tick */
    layers_heartbeat(s, hb);
}

/* Fault injection for the snapshot tests (CAIRN_TEST_SNAPSHOT_MAP_DELAY_MS,
 * read at start): a map that adds or drops a snapshot is installed that
 * much later here, as if this SDS were slow to hear of it, so that a test
 * can show the pause of the cut is what keeps the snapshot a cut. */
struct delayed_map {
    uv_timer_t t;
    struct sds *s;
    Cairn__ClusterMap *m;
    uint32_t id;
};

static void delayed_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void delayed_cb(uv_timer_t *t)
{
    struct delayed_map *d = t->data;
    if (!d->s->stopping)
        map_install(d->s, d->m, d->id);
    else
        cairn__cluster_map__free_unpacked(d->m, NULL);
    uv_close((uv_handle_t *)t, delayed_closed_cb);
}

static void delay_map(struct sds *s, Cairn__ClusterMap *m, uint32_t id)
{
    struct delayed_map *d = calloc(1, sizeof(*d));
    if (!d) {
        map_install(s, m, id);
        return;
    }
    d->s = s;
    d->m = m;
    d->id = id;
    uv_timer_init(s->loop, &d->t);
    d->t.data = d;
    uv_timer_start(&d->t, delayed_cb, s->test_snapshot_map_delay_ms, 0);
}

static void on_map(void *ctx, Cairn__MapReply *rep)
{
    char err[256];
    if (cmap_check(rep->map, err, sizeof(err)) < 0) {
        log_error("refusing map version %llu from the MDM: %s",
                  (unsigned long long)rep->map->version, err);
        cairn__map_reply__free_unpacked(rep, NULL);
        return;
    }
    Cairn__ClusterMap *m = rep->map;
    uint32_t id = rep->sds_id;
    rep->map = NULL;
    cairn__map_reply__free_unpacked(rep, NULL);
    struct sds *s = ctx;
    if (s->test_snapshot_map_delay_ms && s->map && m->n_snapshots != s->map->n_snapshots &&
        m->version > s->map->version) {
        delay_map(s, m, id);
        return;
    }
    map_install(s, m, id);
}

static uint64_t map_version(void *ctx)
{
    struct sds *s = ctx;
    return s->map ? s->map->version : 0;
}

/* The MDM answered a heartbeat: we were alive to it at sent_ms. */
static void heartbeat_ack(void *ctx, uint64_t sent_ms, int map_current, uint64_t demoted_version)
{
    struct sds *s = ctx;
    lease_mdm_ack(&s->leases, s->map, sent_ms, map_current, demoted_version);
}

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    struct sds *s = mdm_session_ctx(rpc_data(c));
    rpc_buf_free(payload);
    if (h->type == FT_DEVICE_PROBE) {
        devices_probe(s, c, h, msg);
        return;
    }
    if (h->type == FT_FREEZE) {
        freeze_handle(s, c, h, msg);
        return;
    }
    log_warn("unknown request type %u from the MDM", h->type);
    dispatch_status(c, h, -EOPNOTSUPP);
}

void mdm_link_start(struct sds *s)
{
    static const struct mdm_session_ops ops = {.register_type = FT_SDS_REGISTER,
                                               .registration = registration,
                                               .heartbeat = heartbeat,
                                               .on_map = on_map,
                                               .map_version = map_version,
                                               .on_heartbeat_ack = heartbeat_ack,
                                               .on_request = on_request,
                                               .report_map_at_once = 1};
    s->mdm = mdm_session_start(s->loop, s->mdm_addr, &ops, s, SDS_HEARTBEAT_MS);
}
