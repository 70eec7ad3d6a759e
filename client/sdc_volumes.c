/* Which volumes are mapped to this SDC: the NBD exports, their sync with
 * every new map, and the MDM session that brings the maps.
 *
 * A volume unmapped while an NBD connection still has it open stays (not
 * present: no new connection finds it) until its last reference goes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "log.h"
#include "mdm_session.h"
#include "rpc_peer.h"
#include "sdc.h"

/* ---- exports ---- */

static struct sdc_vol *vol_by_name(struct sdc *s, const char *name)
{
    for (int i = 0; i < s->nvols; i++)
        if (s->vols[i]->present && !strcmp(s->vols[i]->name, name))
            return s->vols[i];
    return NULL;
}

void sdc_vol_unref(struct sdc *s, struct sdc_vol *v)
{
    if (--v->refs > 0 || v->present)
        return;
    for (int i = 0; i < s->nvols; i++)
        if (s->vols[i] == v) {
            s->vols[i] = s->vols[--s->nvols];
            break;
        }
    free(v);
}

/* Export "VOL" is the volume as mapped; "VOL@ro" the same read-only, which
 * claims nothing (docs/attach.md); "VOL@SNAP" a snapshot mapped here, always
 * read-only (docs/snapshots.md). Volume names have no '@', and no snapshot
 * is named "ro". */
void *sdc_export_open(void *ctx, const char *name, uint64_t *size, int *ro)
{
    char base[sizeof(((struct sdc_vol *)0)->name)];
    size_t n = strlen(name);
    bool want_ro = n > 3 && !strcmp(name + n - 3, "@ro");
    if (want_ro) {
        if (n - 3 >= sizeof(base))
            return NULL;
        memcpy(base, name, n - 3);
        base[n - 3] = 0;
        name = base;
    }
    struct sdc_vol *v = vol_by_name(ctx, name);
    if (!v)
        return NULL;
    v->refs++;
    *size = v->size;
    *ro = v->ro || want_ro;
    return v;
}

void sdc_export_close(void *ctx, void *exp)
{
    sdc_vol_unref(ctx, exp);
}

struct nbd_stats *sdc_export_stats(void *ctx, void *exp)
{
    (void)ctx;
    struct sdc_vol *v = exp;
    return &v->io;
}

void sdc_export_list(void *ctx, void (*emit)(void *arg, const char *name), void *arg)
{
    struct sdc *s = ctx;
    for (int i = 0; i < s->nvols; i++)
        if (s->vols[i]->present)
            emit(arg, s->vols[i]->name);
}

/* The volumes of a new map: mappings to this SDC appear as exports, those
 * gone disappear (once no connection holds them). */
static void sync_volumes(struct sdc *s)
{
    for (int i = 0; i < s->nvols; i++)
        s->vols[i]->present = false;
    for (size_t j = 0; j < s->map->n_mappings; j++) {
        Cairn__Mapping *m = s->map->mappings[j];
        if (m->sdc_id != s->sdc_id || !s->sdc_id)
            continue;
        struct cmap_obj o;
        if (cmap_resolve(s->map, m->volume_id, &o) < 0)
            continue;
        Cairn__Volume *mv = o.vol;
        char name[sizeof(((struct sdc_vol *)0)->name)];
        if (o.snap)
            snprintf(name, sizeof(name), "%s@%s", mv->name, o.snap->name);
        else
            snprintf(name, sizeof(name), "%s", mv->name);
        struct sdc_vol *v = NULL;
        for (int i = 0; i < s->nvols && !v; i++)
            if (s->vols[i]->id == m->volume_id)
                v = s->vols[i];
        if (!v) {
            if (s->nvols == SDC_MAX_VOLS)
                continue;
            v = calloc(1, sizeof(*v));
            if (!v)
                continue;
            v->id = m->volume_id;
            v->refs = 0;
            s->vols[s->nvols++] = v;
            log_info("%s '%s' (%llu bytes) is mapped here: export '%s'",
                     o.snap ? "snapshot" : "volume", name, (unsigned long long)o.size, name);
        }
        snprintf(v->name, sizeof(v->name), "%s", name);
        v->placement = cmap_placement(mv);
        v->size = o.size;
        v->pool_id = mv->pool_id;
        v->ro = m->read_only || o.snap;
        v->writer_gen = mv->writer_gen;
        v->present = true;
    }
    for (int i = 0; i < s->nvols;) {
        struct sdc_vol *v = s->vols[i];
        if (!v->present && v->refs == 0) {
            log_info("volume '%s' is no longer mapped here", v->name);
            s->vols[i] = s->vols[--s->nvols];
            free(v);
        } else {
            i++;
        }
    }
}

/* ---- the MDM session ---- */

/* A peer the new map marks down is closed: its requests in flight fail now
 * and are sent on to another copy, not at their timeout. */
static void close_peers_marked_down(struct sdc *s, const Cairn__ClusterMap *old)
{
    for (int i = 0; old && i < s->nsds; i++) {
        uint32_t id = rpc_peer_id(s->sds[i]);
        Cairn__Sds *now = cmap_sds(s->map, id), *was = cmap_sds(old, id);
        if (now && was && now->state == CAIRN__SDS_STATE__SDS_DOWN &&
            was->state != CAIRN__SDS_STATE__SDS_DOWN) {
            log_debug("SDS %u is marked down: its requests in flight are retried", id);
            rpc_peer_close(s->sds[i]); /* they fail now, and piece_retry sends them on */
        }
    }
}

static void session_on_map(void *ctx, Cairn__MapReply *rep)
{
    struct sdc *s = ctx;
    char err[256];
    if (cmap_check(rep->map, err, sizeof(err)) < 0) {
        log_error("refusing map version %llu from the MDM: %s",
                  (unsigned long long)rep->map->version, err);
        cairn__map_reply__free_unpacked(rep, NULL);
        return;
    }
    if (rep->sdc_id && rep->sdc_id != s->sdc_id) {
        s->sdc_id = rep->sdc_id;
        log_info("registered with the MDM as SDC %u ('%s')", s->sdc_id, s->name);
    }
    /* an older map (a reply overtaken by a newer one) is dropped */
    if (!s->map || rep->map->version >= s->map->version) {
        Cairn__ClusterMap *old = s->map;
        s->map = rep->map;
        rep->map = NULL;
        close_peers_marked_down(s, old);
        if (old)
            cairn__cluster_map__free_unpacked(old, NULL);
        sync_volumes(s);
    }
    cairn__map_reply__free_unpacked(rep, NULL);
    sdc_claims_renew(s);
}

static uint64_t session_map_version(void *ctx)
{
    struct sdc *s = ctx;
    return s->map ? s->map->version : 0;
}

/* What the volumes' clients did, cumulative since each was mapped here (the
 * MDM turns two heartbeats into rates; a count that goes back means the
 * volume was mapped again). Every volume still held is reported, unmapped
 * ones whose connections linger too: they are still being served. The
 * message points into s->hb_io, valid until the next heartbeat. */
static void session_heartbeat(void *ctx, Cairn__Heartbeat *hb)
{
    struct sdc *s = ctx;
    if (s->nvols > s->hb_cap) {
        int cap = s->nvols + 16;
        Cairn__VolumeIo *io = realloc(s->hb_io, (size_t)cap * sizeof(*io));
        if (io)
            s->hb_io = io;
        Cairn__VolumeIo **iop = realloc(s->hb_iop, (size_t)cap * sizeof(*iop));
        if (iop)
            s->hb_iop = iop;
        if (!io || !iop)
            return; /* this heartbeat goes without; the next tries again */
        s->hb_cap = cap;
    }
    for (int i = 0; i < s->nvols; i++) {
        const struct sdc_vol *v = s->vols[i];
        Cairn__VolumeIo *io = &s->hb_io[i];
        cairn__volume_io__init(io);
        io->volume_id = v->id;
        io->reads = v->io.reads;
        io->writes = v->io.writes;
        io->read_bytes = v->io.read_bytes;
        io->write_bytes = v->io.write_bytes;
        io->read_usec = v->io.read_lat.sum_ns / 1000;
        io->write_usec = v->io.write_lat.sum_ns / 1000;
        io->errors = v->io.errors;
        s->hb_iop[i] = io;
    }
    hb->n_volume_io = (size_t)s->nvols;
    hb->volume_io = s->hb_iop;
}

void sdc_volumes_shutdown(struct sdc *s)
{
    free(s->hb_io);
    free(s->hb_iop);
    s->hb_io = NULL;
    s->hb_iop = NULL;
    s->hb_cap = 0;
}

static const ProtobufCMessage *session_registration(void *ctx)
{
    struct sdc *s = ctx;
    s->reg.guid = s->guid;
    s->reg.name = (char *)s->name;
    return &s->reg.base;
}

const struct mdm_session_ops sdc_session_ops = {.register_type = FT_SDC_REGISTER,
                                                .registration = session_registration,
                                                .heartbeat = session_heartbeat,
                                                .on_map = session_on_map,
                                                .map_version = session_map_version};

void sdc_map_refresh(struct sdc *s)
{
    mdm_session_fetch_map(s->mdm);
}
