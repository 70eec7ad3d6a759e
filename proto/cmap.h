/* Lookups in a cluster map (the MDM's state, or the copy an SDS or SDC holds).
 * Returned pointers live as long as the map they came from. NULL if absent. */
#ifndef CAIRN_CMAP_H
#define CAIRN_CMAP_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"

Cairn__Sds *cmap_sds(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Device *cmap_device(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Pool *cmap_pool(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Volume *cmap_volume(const Cairn__ClusterMap *m, uint64_t id);
Cairn__Sdc *cmap_sdc(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Volume *cmap_volume_by_name(const Cairn__ClusterMap *m, const char *name);
/* ---- layers and snapshots (docs/snapshots.md) ---- */

/* Layers a read walks at most, and so the snapshots a volume may hold. */
#define CMAP_SNAPSHOTS_MAX 32
/* ... and what it walks at most, the layers of removed snapshots still
 * being merged included: a removal is refused beyond it. */
#define CMAP_CHAIN_MAX 48
/* The layer (store key) v's writes go to. */
static inline uint64_t cmap_head(const Cairn__Volume *v)
{
    return v->head_layer ? v->head_layer : v->id;
}
/* What a volume's extents are placed by (layout_pg_of): every layer of it
 * lives on the same copies. */
static inline uint64_t cmap_placement(const Cairn__Volume *v)
{
    return v->placement ? v->placement : v->id;
}
Cairn__Snapshot *cmap_snapshot(const Cairn__ClusterMap *m, uint64_t id);
Cairn__Snapshot *cmap_snapshot_by_name(const Cairn__ClusterMap *m, uint64_t volume_id,
                                       const char *name);
/* What a data request's volume id names: a volume (writes go to its head
 * layer) or one of its snapshots (read-only); layer is where reads start. */
struct cmap_obj {
    Cairn__Volume *vol;
    Cairn__Snapshot *snap; /* NULL: the volume itself */
    uint64_t layer, size;
};
/* 0, or -ENOENT if m names nothing with that id. */
int cmap_resolve(const Cairn__ClusterMap *m, uint64_t id, struct cmap_obj *o);
/* The volume a layer (a store key) belongs to, or NULL if m has no such
 * layer (its volume or snapshot was removed and merged). *read_only (may be
 * NULL) is 1 for a snapshot's layer or one being merged. */
Cairn__Volume *cmap_layer_volume(const Cairn__ClusterMap *m, uint64_t layer, int *read_only);
/* The layers a read of layer (of v) walks, newest first: layer, its
 * parent, ... Fills out (max entries) and returns the count (0 if layer is
 * not v's). */
size_t cmap_chain(const Cairn__ClusterMap *m, const Cairn__Volume *v, uint64_t layer, uint64_t *out,
                  size_t max);

/* The snapshot (of another volume) clone v reads through, or NULL. */
const Cairn__Snapshot *cmap_clone_source(const Cairn__ClusterMap *m, const Cairn__Volume *v);
/* How many snapshots v has. */
size_t cmap_snapshot_count(const Cairn__ClusterMap *m, const Cairn__Volume *v);

/* The SDS that holds copy k of a PG, or 0. */
uint32_t cmap_copy_sds(const Cairn__ClusterMap *m, const Cairn__Pg *pg, size_t k);

/* What every holder of a map relies on when it computes with one (the
 * layout rules of layout.h, the extent store's format): a pool's extent size
 * is a power of two from CMAP_EXTENT_MIN to CMAP_EXTENT_MAX, it has at most
 * CMAP_PGS_MAX PGs, a volume's size is a multiple of 4 KiB below 2^63. A map
 * from the MDM or from a file is checked before it is used. 0, or -EINVAL
 * with a message naming the object in err. */
#define CMAP_EXTENT_MIN 4096u
#define CMAP_EXTENT_MAX (32u << 20)
#define CMAP_PGS_MAX 65536u
int cmap_check(const Cairn__ClusterMap *m, char *err, size_t errlen);

/* The map an SDS saves in its data directory: [u32 its id][packed
 * ClusterMap]. Decodes and checks buf[0..len); on success *out is a map the
 * caller frees with cairn__cluster_map__free_unpacked and *my_id the id.
 * -EINVAL (err says why) if it is short, undecodable or fails cmap_check. */
int cmap_saved_decode(const uint8_t *buf, size_t len, Cairn__ClusterMap **out, uint32_t *my_id,
                      char *err, size_t errlen);

#endif
