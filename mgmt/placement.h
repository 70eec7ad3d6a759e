/* PG placement: which devices hold each placement group's copies.
 *
 * Weighted rendezvous hashing (Ceph's straw2): for each PG, every device draws
 * ln(u)/weight with u a hash of (seed, pg, device id); the best draw wins, then
 * the next copy is drawn among devices of the remaining fault sets. Properties
 * the rest of the system relies on:
 *  - deterministic: the same inputs give the same table on every host;
 *  - weighted by capacity: a device's share of PGs follows its capacity;
 *  - never two copies of one PG in one fault set;
 *  - minimal movement: adding or removing a device changes only the PGs that
 *    device wins or loses.
 */
#ifndef CAIRN_PLACEMENT_H
#define CAIRN_PLACEMENT_H

#include <stdint.h>

struct placement_dev {
    uint32_t id;        /* stable device id: part of the hash */
    uint32_t fault_set; /* devices sharing a value never hold two copies of a PG */
    uint64_t weight;    /* capacity; 0 = takes no PGs */
};

/* Fill out[pg * copies + k] with the index (into devs) of copy k of every PG;
 * copy 0 is the primary. Returns 0, or -EINVAL for bad arguments, or -ENOSPC
 * when fewer than `copies` fault sets have capacity. */
int placement_compute(const struct placement_dev *devs, int ndev, int copies, uint32_t pg_count,
                      uint64_t seed, uint32_t *out);

/* Choose one more copy for a PG: the best draw among devices with capacity
 * whose fault set is not in used_fs. Returns the index into devs, or -ENOSPC. */
int placement_pick(const struct placement_dev *devs, int ndev, const uint32_t *used_fs, int nused,
                   uint32_t pg, uint64_t seed);

/* The PG of an extent: a fixed hash of (volume id, extent index). */
static inline uint32_t placement_pg_of(uint64_t volume_id, uint64_t extent, uint32_t pg_count)
{
    uint64_t x = volume_id * 0x9e3779b97f4a7c15ULL ^ (extent + 0x632be59bd9b4e019ULL);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (uint32_t)(x % pg_count);
}

#endif
