/* Capacity of a pool, computed from a cluster map alone: what the MDM checks
 * before it accepts a volume or a removal, and what the CLI prints. Pure
 * functions of the map; no state machine needed. */
#ifndef CAIRN_CAPACITY_H
#define CAIRN_CAPACITY_H

#include <stdint.h>

#include "cairn.pb-c.h"

/* The fault domain placement uses for an SDS: its declared fault set's id
 * (high bit set), or, for an SDS declared in none, a domain of its own. */
uint32_t capacity_fault_domain(const Cairn__ClusterMap *m, const Cairn__Sds *sds);

/* 1 if a device may take copies of pool p: in the pool, working, not being
 * removed. */
int capacity_device_placeable(const Cairn__Device *d, const Cairn__Pool *p);

/* Raw capacity of the placeable devices of p (every copy counted). */
uint64_t capacity_pool_raw(const Cairn__ClusterMap *m, const Cairn__Pool *p);

/* What p can store with its copies policy: the largest D with the sum over
 * fault domains of min(capacity, D) >= copies * D (a domain holds at most
 * one copy of a PG, so a domain bigger than the rest cannot be filled). */
uint64_t capacity_pool_usable(const Cairn__ClusterMap *m, const Cairn__Pool *p);

/* Sum of the sizes of p's volumes (thick ones only if thick_only). */
uint64_t capacity_pool_provisioned(const Cairn__ClusterMap *m, const Cairn__Pool *p,
                                   int thick_only);

#endif
