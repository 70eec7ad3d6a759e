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

/* ---- balancing ---- */

void placement_ideal(const struct placement_dev *devs, int ndev, int copies, uint32_t pg_count,
                     double *ideal)
{
    /* Fault sets, with their total weight; a fault set holds at most one copy
     * of each PG, so its share is capped at pg_count and the rest is spread
     * over the others (water filling). */
    double *fsw = calloc((size_t)ndev + 1, sizeof(double));
    double *share = calloc((size_t)ndev + 1, sizeof(double));
    int *first = calloc((size_t)ndev + 1, sizeof(int)); /* index of the fault set's first device */
    char *capped = calloc((size_t)ndev + 1, 1);
    if (!fsw || !share || !first || !capped)
        abort();
    int nfs = 0;
    int *fs_of = calloc((size_t)ndev + 1, sizeof(int));
    if (!fs_of)
        abort();
    for (int i = 0; i < ndev; i++) {
        int f;
        for (f = 0; f < nfs; f++)
            if (devs[first[f]].fault_set == devs[i].fault_set)
                break;
        if (f == nfs)
            first[nfs++] = i;
        fs_of[i] = f;
        fsw[f] += (double)devs[i].weight;
    }
    double total = (double)copies * pg_count;
    for (;;) {
        double left = total, wleft = 0;
        for (int f = 0; f < nfs; f++) {
            if (capped[f])
                left -= pg_count;
            else
                wleft += fsw[f];
        }
        int again = 0;
        for (int f = 0; f < nfs; f++) {
            if (capped[f])
                continue;
            share[f] = wleft > 0 ? left * fsw[f] / wleft : 0;
            if (share[f] > pg_count) {
                capped[f] = 1;
                share[f] = pg_count;
                again = 1;
            }
        }
        if (!again)
            break;
    }
    for (int i = 0; i < ndev; i++) {
        int f = fs_of[i];
        ideal[i] = fsw[f] > 0 ? share[f] * (double)devs[i].weight / fsw[f] : 0;
    }
    free(fsw);
    free(share);
    free(first);
    free(capped);
    free(fs_of);
}

struct bal {
    const struct placement_dev *devs;
    int ndev, copies;
    uint32_t pg_count;
    uint32_t *table;
    const uint8_t *frozen;
    double *ideal;
    uint32_t *count;
    uint32_t **pgs; /* per device: the PGs it holds (unordered) */
    uint32_t *npgs, *cap;
};

static void bal_add(struct bal *b, uint32_t dev, uint32_t pg)
{
    if (b->npgs[dev] == b->cap[dev]) {
        b->cap[dev] = b->cap[dev] ? b->cap[dev] * 2 : 16;
        b->pgs[dev] = realloc(b->pgs[dev], b->cap[dev] * sizeof(uint32_t));
        if (!b->pgs[dev])
            abort();
    }
    b->pgs[dev][b->npgs[dev]++] = pg;
    b->count[dev]++;
}

static void bal_del(struct bal *b, uint32_t dev, uint32_t pg)
{
    for (uint32_t i = 0; i < b->npgs[dev]; i++)
        if (b->pgs[dev][i] == pg) {
            b->pgs[dev][i] = b->pgs[dev][--b->npgs[dev]];
            b->count[dev]--;
            return;
        }
}

/* How overfull a device is, relative to its ideal, after giving up half a
 * copy (give) or taking half a copy (take). Moving one copy from o to u lowers
 * the sum over devices of ideal * (relative error)^2 exactly when
 * give(o) > take(u): the balancer's only rule, so it always ends. A device
 * that should hold nothing but holds something gives first. */
static double give(const struct bal *b, int d)
{
    if (b->ideal[d] <= 0)
        return b->count[d] ? 1e18 + b->count[d] : -1e18;
    return ((double)b->count[d] - 0.5 - b->ideal[d]) / b->ideal[d];
}

static double take(const struct bal *b, int d)
{
    if (b->ideal[d] <= 0)
        return 1e18;
    return ((double)b->count[d] + 0.5 - b->ideal[d]) / b->ideal[d];
}

/* Can copy k of pg move to device u? */
static int can_take(const struct bal *b, uint32_t pg, int k, int u)
{
    const uint32_t *row = &b->table[(size_t)pg * (size_t)b->copies];
    for (int j = 0; j < b->copies; j++) {
        if (row[j] == (uint32_t)u)
            return 0;
        if (j != k && row[j] != PLACEMENT_NONE && b->devs[row[j]].fault_set == b->devs[u].fault_set)
            return 0;
    }
    return 1;
}

/* Try to move one copy from o to u: the first eligible PG in an order fixed
 * by (seed, o), so the choice is deterministic but not biased to low PGs. */
static int try_move(struct bal *b, int o, int u, uint64_t seed)
{
    uint32_t n = b->npgs[o];
    if (!n)
        return 0;
    uint32_t best_i = UINT32_MAX;
    uint64_t best_h = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pg = b->pgs[o][i];
        if (b->frozen && b->frozen[pg])
            continue;
        int k;
        for (k = 0; k < b->copies; k++)
            if (b->table[(size_t)pg * (size_t)b->copies + (size_t)k] == (uint32_t)o)
                break;
        if (k == b->copies || !can_take(b, pg, k, u))
            continue;
        uint64_t h = hash_mix64(seed ^ hash_mix64(((uint64_t)pg << 32) | (uint32_t)u));
        if (best_i == UINT32_MAX || h < best_h) {
            best_i = i;
            best_h = h;
        }
    }
    if (best_i == UINT32_MAX)
        return 0;
    uint32_t pg = b->pgs[o][best_i];
    for (int k = 0; k < b->copies; k++)
        if (b->table[(size_t)pg * (size_t)b->copies + (size_t)k] == (uint32_t)o)
            b->table[(size_t)pg * (size_t)b->copies + (size_t)k] = (uint32_t)u;
    bal_del(b, (uint32_t)o, pg);
    bal_add(b, (uint32_t)u, pg);
    return 1;
}

static const struct bal *sort_ctx;
static int by_give_desc(const void *x, const void *y)
{
    int a = *(const int *)x, c = *(const int *)y;
    double da = give(sort_ctx, a), dc = give(sort_ctx, c);
    if (da != dc)
        return da > dc ? -1 : 1;
    return a - c;
}
static int by_take_asc(const void *x, const void *y)
{
    int a = *(const int *)x, c = *(const int *)y;
    double da = take(sort_ctx, a), dc = take(sort_ctx, c);
    if (da != dc)
        return da < dc ? -1 : 1;
    return a - c;
}

int placement_balance(const struct placement_dev *devs, int ndev, int copies, uint32_t pg_count,
                      uint32_t *table, const uint8_t *frozen, uint64_t seed, int max_moves)
{
    if (ndev <= 0 || copies < 1 || copies > 8 || pg_count == 0)
        return -EINVAL;
    struct bal b = {devs, ndev, copies, pg_count, table, frozen, NULL, NULL, NULL, NULL, NULL};
    b.ideal = calloc((size_t)ndev, sizeof(double));
    b.count = calloc((size_t)ndev, sizeof(uint32_t));
    b.pgs = calloc((size_t)ndev, sizeof(uint32_t *));
    b.npgs = calloc((size_t)ndev, sizeof(uint32_t));
    b.cap = calloc((size_t)ndev, sizeof(uint32_t));
    int *src = calloc((size_t)ndev, sizeof(int));
    int *dst = calloc((size_t)ndev, sizeof(int));
    if (!b.ideal || !b.count || !b.pgs || !b.npgs || !b.cap || !src || !dst)
        abort();
    placement_ideal(devs, ndev, copies, pg_count, b.ideal);
    for (uint32_t pg = 0; pg < pg_count; pg++)
        for (int k = 0; k < copies; k++) {
            uint32_t d = table[(size_t)pg * (size_t)copies + (size_t)k];
            if (d != PLACEMENT_NONE && d < (uint32_t)ndev)
                bal_add(&b, d, pg);
        }
    int moves = 0;
    while (moves < max_moves) {
        for (int i = 0; i < ndev; i++)
            src[i] = dst[i] = i;
        sort_ctx = &b;
        qsort(src, (size_t)ndev, sizeof(int), by_give_desc);
        qsort(dst, (size_t)ndev, sizeof(int), by_take_asc);
        int moved = 0;
        /* the most overfull source that has a PG the most underfull
         * destination can take */
        for (int si = 0; si < ndev && !moved; si++) {
            int o = src[si];
            double go = give(&b, o);
            if (take(&b, dst[0]) >= go - 1e-12)
                break;
            for (int di = 0; di < ndev && !moved; di++) {
                int u = dst[di];
                if (take(&b, u) >= go - 1e-12)
                    break;
                if (u != o)
                    moved = try_move(&b, o, u, seed);
            }
        }
        if (!moved)
            break;
        moves++;
    }
    for (int i = 0; i < ndev; i++)
        free(b.pgs[i]);
    free(b.pgs);
    free(b.npgs);
    free(b.cap);
    free(b.ideal);
    free(b.count);
    free(src);
    free(dst);
    return moves;
}
