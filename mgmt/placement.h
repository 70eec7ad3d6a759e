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
 * Straw2 alone leaves devices some 10-15% off their share; placement_balance
 * then moves single copies from overfull to underfull devices (like Ceph's
 * upmap balancer) until every device is within about one copy of its ideal.
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

#define PLACEMENT_NONE UINT32_MAX

/* Each device's fair number of PG copies: pg_count * copies shared by weight,
 * except that a fault set holds at most one copy of each PG (its excess goes
 * to the others). ideal[i] for devs[i]. */
void placement_ideal(const struct placement_dev *devs, int ndev, int copies, uint32_t pg_count,
                     double *ideal);

/* Move copies in table (table[pg * copies + k] = index into devs, or
 * PLACEMENT_NONE) from devices over their ideal to devices under it, one at
 * a time, until no move brings the two closer; a device of weight 0 gives up
 * every copy it can. PGs with frozen[pg] set are counted but not moved.
 * Never puts two copies of a PG in one fault set. Starting from the current
 * table, the moves are about the minimum needed: adding a device moves about
 * its fair share. Deterministic. Returns the number of copies moved (at most
 * max_moves) or -EINVAL. */
int placement_balance(const struct placement_dev *devs, int ndev, int copies, uint32_t pg_count,
                      uint32_t *table, const uint8_t *frozen, uint64_t seed, int max_moves);

#endif
