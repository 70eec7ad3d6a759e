#include "cmap.h"

#include <stddef.h>
#include <string.h>

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
