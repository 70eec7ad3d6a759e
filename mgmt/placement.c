#include "placement.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "util.h"

static double draw(uint64_t seed, uint32_t pg, uint32_t dev_id, uint64_t weight)
{
    uint64_t h = hash_mix64(seed ^ hash_mix64(((uint64_t)pg << 32) | dev_id));
    /* u in (0, 1]: 53 random bits, never 0 */
    double u = ((double)(h >> 11) + 1.0) / 9007199254740992.0;
    return log(u) / (double)weight;
}

int placement_pick(const struct placement_dev *devs, int ndev, const uint32_t *used_fs, int nused,
                   uint32_t pg, uint64_t seed)
{
    int best = -1;
    double best_draw = 0;
    for (int i = 0; i < ndev; i++) {
        if (!devs[i].weight)
            continue;
        int taken = 0;
        for (int j = 0; j < nused && !taken; j++)
            taken = used_fs[j] == devs[i].fault_set;
        if (taken)
            continue;
        double d = draw(seed, pg, devs[i].id, devs[i].weight);
        if (best < 0 || d > best_draw) {
            best = i;
            best_draw = d;
        }
    }
    return best < 0 ? -ENOSPC : best;
}

int placement_compute(const struct placement_dev *devs, int ndev, int copies, uint32_t pg_count,
                      uint64_t seed, uint32_t *out)
{
    if (ndev < 0 || copies < 1 || copies > 8 || pg_count == 0)
        return -EINVAL;
    /* Count fault sets that have some capacity. */
    int nfs = 0;
    for (int i = 0; i < ndev; i++) {
        if (!devs[i].weight)
            continue;
        int seen = 0;
        for (int j = 0; j < i; j++)
            if (devs[j].weight && devs[j].fault_set == devs[i].fault_set)
                seen = 1;
        nfs += !seen;
    }
    if (nfs < copies)
        return -ENOSPC;

    for (uint32_t pg = 0; pg < pg_count; pg++) {
        uint32_t used[8];
        for (int k = 0; k < copies; k++) {
            int best = placement_pick(devs, ndev, used, k, pg, seed);
            if (best < 0)
                return -ENOSPC; /* unreachable: nfs >= copies */
            out[pg * (uint32_t)copies + (uint32_t)k] = (uint32_t)best;
            used[k] = devs[best].fault_set;
        }
    }
    return 0;
}
