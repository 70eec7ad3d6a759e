/* Giving space back: the extents of PGs this SDS no longer holds, those of
 * volumes and layers the MDM removed (the map's removed_volumes lists store
 * keys: a removed volume's layers, a reverted volume's old head), and the
 * free slots kept for thick volumes. */
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "extent_store.h"
#include "layout.h"
#include "log.h"
#include "sds.h"
#include "util.h"

static void purge_cb(void *arg, int res)
{
    (void)arg;
    if (res < 0)
        log_warn("freeing an extent of a removed volume failed: %s", strerror(-res));
}

void reclaim_purge_removed(struct sds *s)
{
    for (size_t i = 0; i < s->map->n_removed_volumes; i++) {
        uint64_t vol = s->map->removed_volumes[i];
        int done = 0;
        for (size_t j = 0; j < s->npurged && !done; j++)
            done = s->purged[j] == vol;
        if (done)
            continue;
        size_t nfreed = 0;
        for (int k = 0; k < s->ndevs; k++) {
            struct dev *d = &s->devs[k];
            if (d->failed)
                continue;
            uint64_t exts[1024];
            size_t n;
            /* the store forgets freed extents at once, so list until empty */
            while ((n = store_list_volume(d->st, vol, exts, ARRAY_SIZE(exts))) > 0) {
                for (size_t e = 0; e < n; e++)
                    if (store_free(d->st, vol, exts[e], purge_cb, NULL) == 0)
                        nfreed++;
                break; /* frees complete asynchronously; the next tick lists the rest */
            }
        }
        if (nfreed)
            log_info("volume %llu removed: freeing %zu extents", (unsigned long long)vol, nfreed);
        else {
            uint64_t *np = realloc(s->purged, (s->npurged + 1) * sizeof(uint64_t));
            if (np) {
                s->purged = np;
                s->purged[s->npurged++] = vol;
            }
        }
    }
}

/* Keep, on each device, a free slot for every extent of a thick volume that
 * has a copy there and no slot yet: thin volumes can never take them. */
void reclaim_update_reservations(struct sds *s)
{
    for (int k = 0; k < s->ndevs; k++) {
        struct dev *d = &s->devs[k];
        if (d->failed)
            continue;
        uint64_t need = 0;
        for (size_t i = 0; i < s->map->n_volumes; i++) {
            Cairn__Volume *v = s->map->volumes[i];
            Cairn__Pool *p = cmap_pool(s->map, v->pool_id);
            if (!v->thick || !p || !p->n_pgs)
                continue;
            uint64_t next = (v->size + p->extent_size - 1) / p->extent_size;
            for (uint64_t e = 0; e < next; e++) {
                Cairn__Pg *g = p->pgs[layout_pg_of(cmap_placement(v), e, (uint32_t)p->n_pgs)];
                for (size_t c = 0; c < g->n_devices; c++)
                    if (g->devices[c] == d->id && !store_allocated(d->st, cmap_head(v), e))
                        need++;
            }
        }
        store_set_reserved(d->st, need);
    }
}

static int pg_member(const Cairn__Pg *g, uint32_t dev)
{
    return pg_has_dev(g->devices, g->n_devices, dev) ||
           pg_has_dev(g->rebuilding, g->n_rebuilding, dev) ||
           pg_has_dev(g->departed, g->n_departed, dev);
}

static int pg_full_target(const Cairn__Pg *g, uint32_t dev)
{
    return pg_has_dev(g->rebuilding, g->n_rebuilding, dev) &&
           !pg_has_dev(g->catchup, g->n_catchup, dev);
}

/* Should this device drop what it holds of PG pg of pool p? Yes if the PG no
 * longer counts it as a copy (moved away by a rebalance or drain, given up
 * after a failure), or if it just became a full-rebuild target (whatever it
 * kept from an earlier membership is stale: the copy starts empty). */
static int pg_drops(const Cairn__ClusterMap *old, const Cairn__Pool *p, uint32_t pg, uint32_t dev)
{
    const Cairn__Pg *g = p->pgs[pg];
    if (!pg_member(g, dev))
        return 1;
    const Cairn__Pool *op = old ? cmap_pool(old, p->id) : NULL;
    int before = op && pg < op->n_pgs && pg_full_target(op->pgs[pg], dev);
    return pg_full_target(g, dev) && !before;
}

/* A pass over the stores is needed only if some PG changed that way for us. */
static int any_drops(struct sds *s, const Cairn__ClusterMap *old)
{
    int any = !old;
    for (size_t pi = 0; pi < s->map->n_pools && !any; pi++) {
        Cairn__Pool *p = s->map->pools[pi];
        const Cairn__Pool *op = old ? cmap_pool(old, p->id) : NULL;
        for (size_t gi = 0; gi < p->n_pgs && !any; gi++)
            for (int di = 0; di < s->ndevs && !any; di++) {
                uint32_t id = s->devs[di].id;
                int was = op && gi < op->n_pgs && pg_member(op->pgs[gi], id);
                any = pg_drops(old, p, (uint32_t)gi, id) && (was || pg_member(p->pgs[gi], id));
            }
    }
    return any;
}

void reclaim_drop_unowned(struct sds *s, const Cairn__ClusterMap *old)
{
    if (!any_drops(s, old))
        return;
    for (int di = 0; di < s->ndevs; di++) {
        struct dev *d = &s->devs[di];
        Cairn__Device *md = cmap_device(s->map, d->id);
        if (d->failed || !md)
            continue;
        uint64_t vols[1024], exts[1024];
        uint64_t cursor = 0;
        size_t n, dropped = 0;
        while ((n = store_list_all(d->st, &cursor, vols, exts, 1024)) > 0) {
            for (size_t i = 0; i < n; i++) {
                Cairn__Volume *v = cmap_layer_volume(s->map, vols[i], NULL);
                Cairn__Pool *p = v ? cmap_pool(s->map, v->pool_id) : NULL;
                if (!p || !p->n_pgs || p->id != md->pool_id)
                    continue;
                uint32_t pg = layout_pg_of(cmap_placement(v), exts[i], (uint32_t)p->n_pgs);
                if (pg_drops(old, p, pg, d->id) &&
                    store_free(d->st, vols[i], exts[i], purge_cb, NULL) == 0)
                    dropped++;
            }
        }
        if (dropped)
            log_info("device %u: dropped %zu extents of PGs it no longer holds or rebuilds "
                     "afresh",
                     d->id, dropped);
    }
}
