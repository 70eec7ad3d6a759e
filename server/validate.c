/* Request validation: everything a peer sent is checked against our map,
 * leases and devices before it touches any state. A pure function: the
 * caller fetches a map when asked to (t->refresh) and logs the refusal. */
#include <errno.h>

#include "cmap.h"
#include "layout.h"
#include "sds.h"
#include "util.h"

static int reads(uint16_t type)
{
    return type == FT_IO_READ || type == FT_IO_STAT;
}

static struct dev *view_dev(const struct io_view *v, uint32_t id)
{
    for (int i = 0; i < v->ndevs; i++)
        if (v->devs[i].id == id)
            return &v->devs[i];
    return NULL;
}

int validate_io(const struct io_view *v, uint16_t type, uint32_t payload_len,
                const struct io_hdr *io, struct io_target *t)
{
    t->refresh = MAP_REFRESH_NONE;
    int replica = (io->flags & IO_FLAG_REPLICA) != 0;
    struct cmap_obj o;
    if (cmap_resolve(v->map, io->volume_id, &o) < 0) {
        /* The sender may know a volume created after our map: refresh and
         * let it retry (it gives up after its I/O timeout). */
        t->refresh = MAP_REFRESH_NOW;
        return -EAGAIN;
    }
    Cairn__Volume *vol = o.vol;
    t->vol_id = vol->id;
    t->layer = o.layer;
    t->raw = replica && (io->flags & IO_FLAG_REBUILD);
    if (io->layer && !replica)
        return -EINVAL; /* only SDSs name layers */
    if (o.snap && !reads(type) && type != FT_IO_FLUSH)
        return -EROFS;
    if (replica && io->layer) {
        /* the layer the primary applies it to: one of the volume's in our
         * map too, or our map is behind (a layer made since) or ahead (the
         * primary's head is a snapshot's layer here: only a rebuild copy
         * may write a snapshot's layer) */
        int ro;
        if (o.snap || cmap_layer_volume(v->map, io->layer, &ro) != vol) {
            t->refresh = MAP_REFRESH_NOW;
            return -EAGAIN;
        }
        if (ro && !t->raw) {
            t->refresh = MAP_REFRESH_NOW;
            return -ESTALE;
        }
        t->layer = io->layer;
    }
    t->nchain = t->raw ? 1 : (int)cmap_chain(v->map, vol, t->layer, t->chain, CMAP_CHAIN_MAX);
    t->chain[0] = t->layer;
    if (t->nchain < 1)
        t->nchain = 1;
    Cairn__Pool *p = cmap_pool(v->map, vol->pool_id);
    if (!p || p->id != io->pool_id || p->n_pgs == 0)
        return -EINVAL;
    t->extent_size = p->extent_size;
    t->vol_size = o.size;
    t->thick = vol->thick;
    if (io->length == 0)
        return -EINVAL;
    if (io->offset > t->vol_size || io->length > t->vol_size - io->offset) {
        /* The sender may know the volume grown; our map may be behind. It
         * retries until its I/O timeout, so a truly bad range still fails. */
        t->refresh = MAP_REFRESH_SOON;
        return -EAGAIN;
    }
    t->ext = layout_extent_of(io->offset, p->extent_size);
    t->off = (uint32_t)(io->offset % p->extent_size);
    if (!layout_in_one_extent(io->offset, io->length, p->extent_size))
        return -EINVAL; /* a request never spans extents */
    uint32_t pg = layout_pg_of(cmap_placement(vol), t->ext, (uint32_t)p->n_pgs);
    if (io->pg != pg)
        return -EINVAL;
    Cairn__Pg *g = p->pgs[pg];
    if (io->epoch > g->epoch) {
        t->refresh = MAP_REFRESH_NOW; /* the sender knows a newer map */
        return -ESTALE;
    }
    /* A copy must hear from the primary of its own epoch: that is what
     * stops a deposed primary. A client with an older map may still be
     * served by whoever is primary in ours (leases guard its reads), so
     * I/O goes on while the MDM cannot hand out the newest map; its
     * forwards carry our epoch. */
    if (io->epoch < g->epoch && (io->flags & IO_FLAG_REPLICA))
        return -ESTALE;
    t->epoch = g->epoch;
    /* In-sync copies serve (the first is the primary); rebuilding copies take
     * every write but serve no read. Forward to every other member of both. */
    int mine = -1;
    uint32_t mydev = 0;
    t->npeers = 0;
    for (size_t k = 0; k < g->n_devices + g->n_rebuilding; k++) {
        uint32_t devid = k < g->n_devices ? g->devices[k] : g->rebuilding[k - g->n_devices];
        Cairn__Device *d = cmap_device(v->map, devid);
        if (!d)
            return -ESTALE;
        if (d->sds_id == v->my_id) {
            mine = (int)k;
            mydev = devid;
        } else if (t->npeers < SDS_MAX_COPIES) {
            t->peers[t->npeers++] = d->sds_id;
        }
    }
    if (mine < 0 || (mine != 0 && !replica))
        return -ESTALE; /* not a copy here, or not the primary */
    if ((size_t)mine >= g->n_devices && reads(type))
        return -ESTALE; /* a rebuilding copy serves no read */
    /* The writer's fence (docs/attach.md): a change from an SDC carries the
     * writer generation its connection was granted. Older than the map's:
     * another SDC has taken the volume over since, and this one may write
     * nothing more (final: the SDC does not retry). Newer: our map is
     * behind (the claim was just granted): refresh, and it retries. Copies
     * take what their primary took: it alone judges. */
    if (!replica && !reads(type) && type != FT_IO_FLUSH) {
        if (io->writer_gen > vol->writer_gen) {
            t->refresh = MAP_REFRESH_NOW;
            return -ESTALE;
        }
        if (io->writer_gen < vol->writer_gen)
            return -EPERM;
    }
    if (mine == 0 && !replica &&
        (reads(type) ? !lease_held(v->leases, v->now, v->map, p->id, pg, g)
                     : lease_fenced(v->leases, v->now, p->id, pg)))
        return -EAGAIN; /* no lease (or fenced): the client retries */
    t->role = !replica                      ? COPY_PRIMARY
              : (size_t)mine < g->n_devices ? COPY_REPLICA
                                            : COPY_REBUILDING;
    t->dev = view_dev(v, mydev);
    if (!t->dev || t->dev->failed)
        return -EIO;
    /* the payload is a write's data, exactly its length */
    if ((type == FT_IO_WRITE) != (payload_len != 0))
        return -EINVAL;
    if (type == FT_IO_WRITE && payload_len != io->length)
        return -EINVAL;
    return 0;
}

int validate_ping(const uint8_t *msg, uint32_t msg_len, uint32_t *from, uint64_t *version)
{
    if (msg_len != 12)
        return -EINVAL;
    *from = get_be32(msg);
    *version = get_be64(msg + 4);
    return 0;
}

int validate_pg_list(const Cairn__ClusterMap *m, const uint8_t *msg, uint32_t msg_len,
                     uint32_t *pool_id, uint32_t *pg)
{
    if (msg_len != 8 || !m)
        return -EINVAL;
    *pool_id = get_be32(msg);
    *pg = get_be32(msg + 4);
    Cairn__Pool *p = cmap_pool(m, *pool_id);
    if (!p || *pg >= p->n_pgs)
        return -ESTALE;
    return 0;
}

long validate_pg_list_reply(uint32_t payload_len)
{
    return payload_len % 16 ? -EINVAL : (long)(payload_len / 16);
}
