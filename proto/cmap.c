#include "cmap.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define FIND(arr, n, key)                                                                          \
    do {                                                                                           \
        for (size_t i = 0; m && i < m->n; i++)                                                     \
            if (m->arr[i]->id == (key))                                                            \
                return m->arr[i];                                                                  \
        return NULL;                                                                               \
    } while (0)

Cairn__Sds *cmap_sds(const Cairn__ClusterMap *m, uint32_t id)
{
    FIND(sds, n_sds, id);
}
Cairn__Device *cmap_device(const Cairn__ClusterMap *m, uint32_t id)
{
    FIND(devices, n_devices, id);
}
Cairn__Pool *cmap_pool(const Cairn__ClusterMap *m, uint32_t id)
{
    FIND(pools, n_pools, id);
}
Cairn__Volume *cmap_volume(const Cairn__ClusterMap *m, uint64_t id)
{
    FIND(volumes, n_volumes, id);
}
Cairn__Sdc *cmap_sdc(const Cairn__ClusterMap *m, uint32_t id)
{
    FIND(sdcs, n_sdcs, id);
}

Cairn__Volume *cmap_volume_by_name(const Cairn__ClusterMap *m, const char *name)
{
    for (size_t i = 0; m && i < m->n_volumes; i++)
        if (!strcmp(m->volumes[i]->name, name))
            return m->volumes[i];
    return NULL;
}

Cairn__Snapshot *cmap_snapshot(const Cairn__ClusterMap *m, uint64_t id)
{
    FIND(snapshots, n_snapshots, id);
}

Cairn__Snapshot *cmap_snapshot_by_name(const Cairn__ClusterMap *m, uint64_t volume_id,
                                       const char *name)
{
    for (size_t i = 0; m && i < m->n_snapshots; i++)
        if (m->snapshots[i]->volume_id == volume_id && !strcmp(m->snapshots[i]->name, name))
            return m->snapshots[i];
    return NULL;
}

int cmap_resolve(const Cairn__ClusterMap *m, uint64_t id, struct cmap_obj *o)
{
    o->snap = NULL;
    o->vol = cmap_volume(m, id);
    if (o->vol) {
        o->layer = cmap_head(o->vol);
        o->size = o->vol->size;
        return 0;
    }
    o->snap = cmap_snapshot(m, id);
    o->vol = o->snap ? cmap_volume(m, o->snap->volume_id) : NULL;
    if (!o->vol)
        return -ENOENT;
    o->layer = o->snap->layer;
    o->size = o->snap->size;
    return 0;
}

static Cairn__Snapshot *snapshot_of_layer(const Cairn__ClusterMap *m, uint64_t layer)
{
    for (size_t i = 0; m && i < m->n_snapshots; i++)
        if (m->snapshots[i]->layer == layer)
            return m->snapshots[i];
    return NULL;
}

Cairn__Volume *cmap_layer_volume(const Cairn__ClusterMap *m, uint64_t layer, int *read_only)
{
    for (size_t i = 0; m && i < m->n_volumes; i++)
        if (cmap_head(m->volumes[i]) == layer) {
            if (read_only)
                *read_only = 0;
            return m->volumes[i];
        }
    Cairn__Snapshot *sn = snapshot_of_layer(m, layer);
    if (read_only)
        *read_only = 1;
    if (sn)
        return cmap_volume(m, sn->volume_id);
    for (size_t i = 0; m && i < m->n_merges; i++)
        if (m->merges[i]->from == layer)
            return cmap_volume(m, m->merges[i]->volume_id);
    return NULL;
}

/* Append the layers merged into layer (and those merged into them), in
 * the order they were removed: the newest removed snapshot first. */
static void add_merged(const Cairn__ClusterMap *m, uint64_t layer, uint64_t *out, size_t *n,
                       size_t max)
{
    for (size_t i = 0; m && i < m->n_merges && *n < max; i++)
        if (m->merges[i]->into == layer) {
            out[(*n)++] = m->merges[i]->from;
            add_merged(m, m->merges[i]->from, out, n, max);
        }
}

size_t cmap_chain(const Cairn__ClusterMap *m, const Cairn__Volume *v, uint64_t layer, uint64_t *out,
                  size_t max)
{
    size_t n = 0;
    while (layer && n < max) {
        uint64_t parent;
        if (layer == cmap_head(v)) {
            parent = v->head_parent;
        } else {
            /* a snapshot of v, or (a clone's chain) of the volume it was
             * cloned from */
            Cairn__Snapshot *sn = snapshot_of_layer(m, layer);
            if (!sn) {
                /* a removed snapshot's layer still being merged: only its
                 * own data (reads of the layer it merges into come here
                 * through add_merged) */
                for (size_t i = 0; m && i < m->n_merges && !n; i++)
                    if (m->merges[i]->from == layer)
                        out[n++] = layer;
                break;
            }
            parent = sn->parent;
        }
        out[n++] = layer;
        add_merged(m, layer, out, &n, max);
        layer = parent;
    }
    return n;
}

const Cairn__Snapshot *cmap_clone_source(const Cairn__ClusterMap *m, const Cairn__Volume *v)
{
    for (size_t i = 0; v->head_parent && i < m->n_snapshots; i++)
        if (m->snapshots[i]->layer == v->head_parent && m->snapshots[i]->volume_id != v->id)
            return m->snapshots[i];
    return NULL;
}

size_t cmap_snapshot_count(const Cairn__ClusterMap *m, const Cairn__Volume *v)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_snapshots; i++)
        n += m->snapshots[i]->volume_id == v->id;
    return n;
}

uint32_t cmap_copy_sds(const Cairn__ClusterMap *m, const Cairn__Pg *pg, size_t k)
{
    if (k >= pg->n_devices)
        return 0;
    Cairn__Device *d = cmap_device(m, pg->devices[k]);
    return d ? d->sds_id : 0;
}

int cmap_check(const Cairn__ClusterMap *m, char *err, size_t errlen)
{
    for (size_t i = 0; i < m->n_pools; i++) {
        const Cairn__Pool *p = m->pools[i];
        uint64_t es = p->extent_size;
        if (es < CMAP_EXTENT_MIN || es > CMAP_EXTENT_MAX || (es & (es - 1))) {
            snprintf(err, errlen,
                     "pool %u: extent size %llu is not a power of two from 4 KiB to 32 MiB", p->id,
                     (unsigned long long)es);
            return -EINVAL;
        }
        if (p->n_pgs > CMAP_PGS_MAX) {
            snprintf(err, errlen, "pool %u: %zu PGs (at most %u)", p->id, p->n_pgs, CMAP_PGS_MAX);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < m->n_volumes; i++) {
        const Cairn__Volume *v = m->volumes[i];
        if (v->size % 4096 || v->size >> 63) {
            snprintf(err, errlen, "volume %llu: size %llu is not a multiple of 4 KiB below 2^63",
                     (unsigned long long)v->id, (unsigned long long)v->size);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < m->n_snapshots; i++) {
        const Cairn__Snapshot *sn = m->snapshots[i];
        if (sn->size % 4096 || sn->size >> 63 || !sn->layer || !cmap_volume(m, sn->volume_id)) {
            snprintf(err, errlen,
                     "snapshot %llu: size %llu is not a multiple of 4 KiB below 2^63, or it "
                     "has no layer or volume",
                     (unsigned long long)sn->id, (unsigned long long)sn->size);
            return -EINVAL;
        }
    }
    return 0;
}

int cmap_saved_decode(const uint8_t *buf, size_t len, Cairn__ClusterMap **out, uint32_t *my_id,
                      char *err, size_t errlen)
{
    if (len < 4) {
        snprintf(err, errlen, "%zu bytes: too short", len);
        return -EINVAL;
    }
    Cairn__ClusterMap *m = cairn__cluster_map__unpack(NULL, len - 4, buf + 4);
    if (!m) {
        snprintf(err, errlen, "not a packed map");
        return -EINVAL;
    }
    if (cmap_check(m, err, errlen) < 0) {
        cairn__cluster_map__free_unpacked(m, NULL);
        return -EINVAL;
    }
    *my_id = get_be32(buf);
    *out = m;
    return 0;
}
