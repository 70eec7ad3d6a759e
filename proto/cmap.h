/* Lookups in a cluster map (the MDM's state, or the copy an SDS or SDC holds).
 * Returned pointers live as long as the map they came from. NULL if absent. */
#ifndef CAIRN_CMAP_H
#define CAIRN_CMAP_H

#include <stdint.h>

#include "cairn.pb-c.h"

Cairn__Sds *cmap_sds(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Device *cmap_device(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Pool *cmap_pool(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Volume *cmap_volume(const Cairn__ClusterMap *m, uint64_t id);
Cairn__Sdc *cmap_sdc(const Cairn__ClusterMap *m, uint32_t id);
Cairn__Volume *cmap_volume_by_name(const Cairn__ClusterMap *m, const char *name);
/* The SDS that holds copy k of a PG, or 0. */
uint32_t cmap_copy_sds(const Cairn__ClusterMap *m, const Cairn__Pg *pg, size_t k);

#endif
