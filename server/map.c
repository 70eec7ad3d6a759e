/* The map: installing a new one (and everything a change sets off), the copy
 * saved in the data directory, asking the MDM for a newer one, and the
 * connections to the SDSs it names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "log.h"
#include "mdm_session.h"
#include "rpc_peer.h"
#include "sds.h"
#include "util.h"

void map_fetch(struct sds *s)
{
    mdm_session_fetch_map(s->mdm);
}

void map_fetch_soon(struct sds *s)
{
    uint64_t now = now_ms();
    if (now - s->last_map_fetch < 250)
        return;
    s->last_map_fetch = now;
    map_fetch(s);
}

struct rpc_peer *map_peer(struct sds *s, uint32_t sds_id)
{
    Cairn__Sds *ms = s->map ? cmap_sds(s->map, sds_id) : NULL;
    if (!ms)
        return NULL;
    for (int i = 0; i < s->npeers; i++)
        if (rpc_peer_id(s->peers[i]) == sds_id)
            return s->peers[i];
    if (s->npeers == SDS_MAX_PEERS)
        return NULL;
    struct rpc_peer *p = rpc_peer_new(s->loop, sds_id);
    if (!p)
        return NULL;
    rpc_peer_set_addr(p, ms->addr);
    s->peers[s->npeers++] = p;
    return p;
}

/* The map goes to DATA-DIR/map.pb with our id in front, so a restarted SDS
 * serves at once, before the MDM answers (or while it cannot). */
static void save(struct sds *s, const Cairn__ClusterMap *m)
{
    size_t len = cairn__cluster_map__get_packed_size(m);
    uint8_t *buf = malloc(len + 4);
    if (!buf)
        return;
    put_be32(buf, s->my_id);
    cairn__cluster_map__pack(m, buf + 4);
    char path[4096];
    snprintf(path, sizeof(path), "%s/map.pb", s->data_dir);
    if (file_write_atomic(path, buf, len + 4) < 0)
        log_warn("cannot save the map to %s", path);
    free(buf);
}

void map_install(struct sds *s, Cairn__ClusterMap *m, uint32_t my_id)
{
    if (s->map && m->version < s->map->version) {
        cairn__cluster_map__free_unpacked(m, NULL);
        return;
    }
    Cairn__ClusterMap *old = s->map;
    uint64_t old_version = old ? old->version : 0;
    s->map = m;
    /* from here on SDC requests are checked against this map's mappings
     * (dispatch.c): an unmapped volume is refused to its next request */
    if (access_build(&s->access, m) < 0) {
        log_warn("out of memory building the access table: SDCs are refused until the next map");
        access_free(&s->access);
    }
    if (!my_id)
        for (size_t i = 0; i < m->n_sds; i++)
            if (!strcmp(m->sds[i]->name, s->name)) /* added since it registered */
                my_id = m->sds[i]->id;
    if (my_id && my_id != s->my_id)
        log_info("this SDS is '%s', id %u", s->name, my_id);
    if (my_id)
        s->my_id = my_id;
    if (s->data_dir)
        save(s, m);
    for (size_t i = 0; i < m->n_devices; i++) {
        const Cairn__Device *md = m->devices[i];
        if (md->sds_id != s->my_id || !s->my_id)
            continue;
        const Cairn__Pool *p = cmap_pool(s->map, md->pool_id);
        if (p)
            devices_attach(s, md, p);
    }
    for (int i = 0; i < s->npeers; i++) {
        Cairn__Sds *o = cmap_sds(s->map, rpc_peer_id(s->peers[i]));
        if (o)
            rpc_peer_set_addr(s->peers[i], o->addr);
        /* Marked down: what we sent it will not be answered (it is stopped,
         * cut off or gone), so fail it now rather than at its timeout, and
         * let the writes go on with the copies this map names. */
        Cairn__Sds *was = old ? cmap_sds(old, rpc_peer_id(s->peers[i])) : NULL;
        if (o && was && o->state == CAIRN__SDS_STATE__SDS_DOWN &&
            was->state != CAIRN__SDS_STATE__SDS_DOWN)
            rpc_peer_close(s->peers[i]);
    }
    reclaim_drop_unowned(s, old);
    lease_fence_new_primaries(&s->leases, old, s->map, s->my_id, now_ms());
    tracking_sync(s, old);
    if (old)
        cairn__cluster_map__free_unpacked(old, NULL);
    freeze_map_installed(s);
    reclaim_purge_removed(s);
    reclaim_update_reservations(s);
    rebuild_sync(s);
    /* tell the peers at once which map we hold: a new primary waiting for a
     * moved one to learn of the move lifts its fence on our ping */
    if (old_version != m->version)
        ping_all(s);
    log_debug("map version %llu installed", (unsigned long long)m->version);
}

void map_load_saved(struct sds *s)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/map.pb", s->data_dir);
    char *buf;
    size_t len;
    if (file_read_all(path, &buf, &len) < 0)
        return;
    Cairn__ClusterMap *m;
    uint32_t id;
    char err[256];
    if (cmap_saved_decode((const uint8_t *)buf, len, &m, &id, err, sizeof(err)) < 0) {
        log_warn("ignoring the saved map %s: %s; waiting for the MDM's", path, err);
    } else {
        log_info("serving from the saved map (version %llu) until the MDM answers",
                 (unsigned long long)m->version);
        map_install(s, m, id);
    }
    free(buf);
}
