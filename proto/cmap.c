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
