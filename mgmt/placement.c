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

/* try_move's candidates for moving a copy from device o to device u: the
 * PGs o held when they were listed, by rising hash, valid while o gains no
 * PG (gained[o]). The first of them that o still holds and u can take is
 * the one a scan of all o's PGs would choose. Those before it stay out of
 * the running until a copy leaves u's fault set (lost[], which alone can
 * make a PG u could not take one it can), so the next scan starts after
 * them, and a move costs a few steps, not one per PG on o. (The balancer
 * of a 65536-PG pool on four devices made thousands of moves over 32768
 * PGs each, and stalled the MDM's loop for seconds.) */
struct cand {
    uint64_t h;
    uint32_t pg;
};

struct cands {
    int o, u; /* -1: unused */
    uint64_t gained, lost;
    uint32_t n, head; /* entries before head are out of the running */
    struct cand *c;
};

#define BAL_CANDS 16

struct bal {
    const struct placement_dev *devs;
    int ndev, copies;
    uint32_t pg_count;
    uint32_t *table;
    const uint8_t *frozen;
    double *ideal;
    uint32_t *count;
    uint32_t **pgs; /* per device: the copies it holds, pg * copies + k (unordered) */
    uint32_t *npgs, *cap;
    uint32_t *pos;    /* per copy: where it is in its device's pgs */
    uint64_t *gained; /* per device: PGs added to it */
    uint64_t *lost;   /* per fault set (fs[]): copies moved off its devices */
    uint32_t *fs;     /* per device: its fault set's first device */
    struct cands cands[BAL_CANDS];
    unsigned next_cands; /* the entry to reuse next */
};

static void bal_add(struct bal *b, uint32_t dev, uint32_t slot)
{
    if (b->npgs[dev] == b->cap[dev]) {
        b->cap[dev] = b->cap[dev] ? b->cap[dev] * 2 : 16;
        b->pgs[dev] = realloc(b->pgs[dev], b->cap[dev] * sizeof(uint32_t));
        if (!b->pgs[dev])
            abort();
    }
    b->pos[slot] = b->npgs[dev];
    b->pgs[dev][b->npgs[dev]++] = slot;
    b->count[dev]++;
    b->gained[dev]++;
}

static void bal_del(struct bal *b, uint32_t dev, uint32_t slot)
{
    uint32_t i = b->pos[slot], last = b->pgs[dev][--b->npgs[dev]];
    b->pgs[dev][i] = last;
    b->pos[last] = i;
    b->count[dev]--;
}

/* How overfull a device is, relative to its ideal, after giving up half a
 * copy (give) or taking half a copy (take). Moving one copy from o to u lowers
 * the sum over devices of ideal * (relative error)^2 exactly when
 * give(o) > take(u): the balancer's only rule, so it always ends. A device
 * that should hold nothing but holds something gives first, the fullest
 * first, and takes nothing: were its take finite, two such devices could
 * pass copies back and forth for ever (1e18 + count rounds). */
static double give(const struct bal *b, int d)
{
    if (b->ideal[d] <= 0)
        return b->count[d] ? 1e18 + b->count[d] : -1e18;
    return ((double)b->count[d] - 0.5 - b->ideal[d]) / b->ideal[d];
}

static double take(const struct bal *b, int d)
{
    if (b->ideal[d] <= 0)
        return INFINITY;
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

static int by_hash(const void *x, const void *y)
{
    uint64_t a = ((const struct cand *)x)->h, c = ((const struct cand *)y)->h;
    return a < c ? -1 : a > c;
}

/* o's candidates for u, listed again if o has gained a PG since. */
static struct cands *cands_of(struct bal *b, int o, int u, uint64_t seed)
{
    struct cands *e = NULL;
    for (int i = 0; i < BAL_CANDS; i++)
        if (b->cands[i].o == o && b->cands[i].u == u)
            e = &b->cands[i];
    if (e && e->gained == b->gained[o]) {
        if (e->lost != b->lost[b->fs[u]]) {
            e->lost = b->lost[b->fs[u]];
            e->head = 0; /* u may take some it could not: look at all again */
        }
        return e;
    }
    if (!e) {
        e = &b->cands[b->next_cands++ % BAL_CANDS];
        e->o = o;
        e->u = u;
    }
    free(e->c);
    e->c = malloc(((size_t)b->npgs[o] + 1) * sizeof(*e->c));
    if (!e->c)
        abort();
    e->n = e->head = 0;
    e->gained = b->gained[o];
    e->lost = b->lost[b->fs[u]];
    for (uint32_t i = 0; i < b->npgs[o]; i++) {
        uint32_t pg = b->pgs[o][i] / (uint32_t)b->copies;
        if (b->frozen && b->frozen[pg])
            continue;
        /* (seed, pg, u) fixes the order: deterministic, not biased to low
         * PGs; distinct PGs never tie (hash_mix64 is a bijection) */
        e->c[e->n].h = hash_mix64(seed ^ hash_mix64(((uint64_t)pg << 32) | (uint32_t)u));
        e->c[e->n++].pg = pg;
    }
    qsort(e->c, e->n, sizeof(*e->c), by_hash);
    return e;
}

/* The copy of pg on device o, or copies if it has none there. */
static int copy_on(const struct bal *b, uint32_t pg, int o)
{
    int k;
    for (k = 0; k < b->copies; k++)
        if (b->table[(size_t)pg * (size_t)b->copies + (size_t)k] == (uint32_t)o)
            break;
    return k;
}

/* Try to move one copy from o to u: of the PGs on o that u can take, the
 * one of least hash (cands_of). */
static int try_move(struct bal *b, int o, int u, uint64_t seed)
{
    if (!b->npgs[o])
        return 0;
    struct cands *e = cands_of(b, o, u, seed);
    uint32_t pg = UINT32_MAX;
    for (; e->head < e->n; e->head++) {
        uint32_t p = e->c[e->head].pg;
        int k = copy_on(b, p, o);
        if (k < b->copies && can_take(b, p, k, u)) {
            pg = p; /* gone from o once moved: the next scan starts after it */
            break;
        }
    }
    if (pg == UINT32_MAX)
        return 0;
    /* one copy only, even of a PG a damaged map has twice on o: the rule
     * in give() holds for one copy, and moving two let a 7-PG pool swing
     * between two states for ever */
    uint32_t slot = pg * (uint32_t)b->copies + (uint32_t)copy_on(b, pg, o);
    b->lost[b->fs[o]]++;
    b->table[slot] = (uint32_t)u;
    bal_del(b, (uint32_t)o, slot);
    bal_add(b, (uint32_t)u, slot);
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
    struct bal b = {.devs = devs,
                    .ndev = ndev,
                    .copies = copies,
                    .pg_count = pg_count,
                    .table = table,
                    .frozen = frozen};
    b.gained = calloc((size_t)ndev, sizeof(uint64_t));
    b.lost = calloc((size_t)ndev, sizeof(uint64_t));
    b.fs = calloc((size_t)ndev, sizeof(uint32_t));
    b.pos = calloc((size_t)pg_count * (size_t)copies, sizeof(uint32_t));
    for (int i = 0; i < BAL_CANDS; i++)
        b.cands[i] = (struct cands){.o = -1, .u = -1};
    b.ideal = calloc((size_t)ndev, sizeof(double));
    b.count = calloc((size_t)ndev, sizeof(uint32_t));
    b.pgs = calloc((size_t)ndev, sizeof(uint32_t *));
    b.npgs = calloc((size_t)ndev, sizeof(uint32_t));
    b.cap = calloc((size_t)ndev, sizeof(uint32_t));
    int *src = calloc((size_t)ndev, sizeof(int));
    int *dst = calloc((size_t)ndev, sizeof(int));
    if (!b.ideal || !b.count || !b.pgs || !b.npgs || !b.cap || !b.gained || !b.pos || !b.lost ||
        !b.fs || !src || !dst)
        abort();
    placement_ideal(devs, ndev, copies, pg_count, b.ideal);
    for (int i = 0; i < ndev; i++) {
        int f = 0;
        while (devs[f].fault_set != devs[i].fault_set)
            f++;
        b.fs[i] = (uint32_t)f;
    }
    for (uint32_t pg = 0; pg < pg_count; pg++)
        for (int k = 0; k < copies; k++) {
            uint32_t d = table[(size_t)pg * (size_t)copies + (size_t)k];
            if (d != PLACEMENT_NONE && d < (uint32_t)ndev)
                bal_add(&b, d, pg * (uint32_t)copies + (uint32_t)k);
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
    for (int i = 0; i < BAL_CANDS; i++)
        free(b.cands[i].c);
    free(b.gained);
    free(b.lost);
    free(b.fs);
    free(b.pos);
    free(b.pgs);
    free(b.npgs);
    free(b.cap);
    free(b.ideal);
    free(b.count);
    free(src);
    free(dst);
    return moves;
}
