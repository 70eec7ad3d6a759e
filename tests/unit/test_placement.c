/* Placement: deterministic, capacity-weighted, fault-set safe, minimal movement. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "layout.h"
#include "placement.h"
#include "util.h"

#define PGS 4096

static void shares(const struct placement_dev *d, int n, int copies, const uint32_t *out,
                   double *share)
{
    memset(share, 0, sizeof(double) * (size_t)n);
    for (uint32_t i = 0; i < PGS * (uint32_t)copies; i++)
        share[out[i]] += 1.0 / (PGS * copies);
    (void)d;
}

static void test_basic(void)
{
    struct placement_dev d[3] = {{1, 0, 4096}, {2, 1, 6144}, {3, 2, 8192}};
    static uint32_t a[PGS * 3], b[PGS * 3];
    CHECK_EQ(placement_compute(d, 3, 2, PGS, 7, a), 0);
    CHECK_EQ(placement_compute(d, 3, 2, PGS, 7, b), 0);
    CHECK(memcmp(a, b, sizeof(uint32_t) * PGS * 2) == 0); /* deterministic */
    for (uint32_t pg = 0; pg < PGS; pg++)
        CHECK(d[a[pg * 2]].fault_set != d[a[pg * 2 + 1]].fault_set);
    /* 3 copies need 3 fault sets */
    CHECK_EQ(placement_compute(d, 3, 3, PGS, 7, a), 0);
    d[2].fault_set = 1;
    CHECK_EQ(placement_compute(d, 3, 3, PGS, 7, a), -ENOSPC);
    CHECK_EQ(placement_compute(d, 3, 2, PGS, 7, a), 0);
    for (uint32_t pg = 0; pg < PGS; pg++)
        CHECK(d[a[pg * 2]].fault_set != d[a[pg * 2 + 1]].fault_set);
    /* a device with no capacity takes nothing */
    d[2].fault_set = 2;
    d[1].weight = 0;
    CHECK_EQ(placement_compute(d, 3, 2, PGS, 7, a), 0);
    for (uint32_t i = 0; i < PGS * 2; i++)
        CHECK(a[i] != 1);
    CHECK_EQ(placement_compute(d, 3, 0, PGS, 7, a), -EINVAL);
    CHECK_EQ(placement_compute(d, 3, 2, 0, 7, a), -EINVAL);
    /* the PG of an extent is a fixed function */
    CHECK_EQ(layout_pg_of(5, 9, 1024), layout_pg_of(5, 9, 1024));
    CHECK(layout_pg_of(5, 9, 1024) < 1024);
}

/* Equal devices: every device's share within 15% of the mean. */
static void test_balance_equal(void)
{
    enum { N = 12 };
    struct placement_dev d[N];
    for (int i = 0; i < N; i++)
        d[i] = (struct placement_dev){(uint32_t)i + 100, (uint32_t)i, 1000};
    static uint32_t out[PGS * 2];
    CHECK_EQ(placement_compute(d, N, 2, PGS, 1, out), 0);
    double s[N];
    shares(d, N, 2, out, s);
    for (int i = 0; i < N; i++) {
        double dev = fabs(s[i] * N - 1.0);
        if (dev > 0.15) {
            fprintf(stderr, "device %d share %.4f (%.1f%% off the mean)\n", i, s[i], dev * 100);
            exit(1);
        }
    }
}

/* Weighted: with many fault sets, shares follow capacity within 15%. */
static void test_balance_weighted(void)
{
    enum { N = 16 };
    struct placement_dev d[N];
    double total = 0;
    srand(3);
    for (int i = 0; i < N; i++) {
        d[i] =
            (struct placement_dev){(uint32_t)i + 1, (uint32_t)i, (uint64_t)(1000 + rand() % 3000)};
        total += (double)d[i].weight;
    }
    static uint32_t out[PGS * 2];
    CHECK_EQ(placement_compute(d, N, 2, PGS, 9, out), 0);
    double s[N], worst = 0;
    shares(d, N, 2, out, s);
    for (int i = 0; i < N; i++) {
        double want = (double)d[i].weight / total;
        double dev = fabs(s[i] / want - 1.0);
        worst = dev > worst ? dev : worst;
    }
    printf("weighted balance over %d devices: worst device %.1f%% off its capacity share\n", N,
           worst * 100);
    CHECK(worst < 0.15);
}

/* Adding one device moves about its fair share, not a reshuffle. */
static void test_movement(void)
{
    enum { N = 10 };
    struct placement_dev d[N + 1];
    for (int i = 0; i <= N; i++)
        d[i] = (struct placement_dev){(uint32_t)i + 1, (uint32_t)i, 1000};
    static uint32_t before[PGS * 2], after[PGS * 2];
    CHECK_EQ(placement_compute(d, N, 2, PGS, 5, before), 0);
    CHECK_EQ(placement_compute(d, N + 1, 2, PGS, 5, after), 0);
    int moved = 0;
    for (uint32_t pg = 0; pg < PGS; pg++)
        for (int k = 0; k < 2; k++) {
            uint32_t dev = d[after[pg * 2 + k]].id;
            int had = d[before[pg * 2]].id == dev || d[before[pg * 2 + 1]].id == dev;
            moved += !had;
        }
    double ideal = 2.0 * PGS / (N + 1);
    printf("adding 1 device to %d: %d copies moved, ideal %.0f (%.2fx)\n", N, moved, ideal,
           moved / ideal);
    CHECK(moved <= 1.3 * ideal);
}

/* ---- balancing on simulated clusters ---- */

struct sim {
    int n;
    struct placement_dev *d;
    uint32_t pgs;
    int copies;
    uint32_t *table;
};

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Worst |copies / ideal - 1| over devices: a device's fill minus the mean
 * fill when the pool is written full (a PG holds the same data everywhere). */
static double worst_error(const struct sim *s, int *capped)
{
    double *ideal = calloc((size_t)s->n, sizeof(double));
    uint32_t *cnt = calloc((size_t)s->n, sizeof(uint32_t));
    for (uint32_t i = 0; i < s->pgs * (uint32_t)s->copies; i++)
        cnt[s->table[i]]++;
    placement_ideal(s->d, s->n, s->copies, s->pgs, ideal);
    double worst = 0, wsum = 0, isum = 0;
    for (int i = 0; i < s->n; i++)
        wsum += (double)s->d[i].weight;
    *capped = 0;
    for (int i = 0; i < s->n; i++) {
        isum += ideal[i];
        double raw = (double)s->copies * s->pgs * (double)s->d[i].weight / wsum;
        if (ideal[i] < raw - 1e-6)
            *capped = 1;
        if (ideal[i] > 0) {
            double e = fabs(cnt[i] / ideal[i] - 1);
            worst = e > worst ? e : worst;
        }
    }
    CHECK(fabs(isum - (double)s->copies * s->pgs) < 1e-3);
    free(ideal);
    free(cnt);
    return worst;
}

static void check_fault_sets(const struct sim *s)
{
    for (uint32_t pg = 0; pg < s->pgs; pg++)
        for (int a = 0; a < s->copies; a++)
            for (int b = a + 1; b < s->copies; b++)
                CHECK(s->d[s->table[pg * s->copies + a]].fault_set !=
                      s->d[s->table[pg * s->copies + b]].fault_set);
}

static uint32_t count_moved(const struct sim *s, const uint32_t *before)
{
    uint32_t moved = 0;
    for (uint32_t pg = 0; pg < s->pgs; pg++)
        for (int k = 0; k < s->copies; k++) {
            uint32_t dev = s->table[pg * s->copies + k];
            int had = 0;
            for (int j = 0; j < s->copies; j++)
                had |= before[pg * s->copies + j] == dev;
            moved += !had;
        }
    return moved;
}

/* nsds SDSs (one fault set each) with 1-3 devices of random capacity (1 to
 * 4 units): balance after placement, then adding an SDS, then draining one. */
static void simulate(int nsds, int copies, uint32_t pgs)
{
    struct sim s = {0};
    int maxdev = nsds * 3 + 3;
    s.d = calloc((size_t)maxdev, sizeof(*s.d));
    s.copies = copies;
    s.pgs = pgs;
    for (int i = 0; i < nsds; i++) {
        int nd = nsds > 100 ? 1 : 1 + (int)(rnd() % 3);
        for (int k = 0; k < nd; k++) {
            s.d[s.n] = (struct placement_dev){(uint32_t)s.n + 1, (uint32_t)i,
                                              (uint64_t)(1000 + rnd() % 3000)};
            s.n++;
        }
    }
    size_t tsz = (size_t)pgs * (size_t)copies;
    s.table = malloc(tsz * sizeof(uint32_t));
    uint32_t *before = malloc(tsz * sizeof(uint32_t));
    CHECK_EQ(placement_compute(s.d, s.n, copies, pgs, 11, s.table), 0);
    int capped;
    double straw = worst_error(&s, &capped);
    int moves = placement_balance(s.d, s.n, copies, pgs, s.table, NULL, 11, 1 << 30);
    CHECK(moves >= 0);
    double bal = worst_error(&s, &capped);
    check_fault_sets(&s);

    /* add an SDS with one device */
    memcpy(before, s.table, tsz * sizeof(uint32_t));
    s.d[s.n] =
        (struct placement_dev){(uint32_t)s.n + 1, (uint32_t)nsds, (uint64_t)(1000 + rnd() % 3000)};
    s.n++;
    double *ideal = calloc((size_t)s.n, sizeof(double));
    placement_ideal(s.d, s.n, copies, pgs, ideal);
    double need_add = ideal[s.n - 1];
    CHECK(placement_balance(s.d, s.n, copies, pgs, s.table, NULL, 11, 1 << 30) >= 0);
    uint32_t moved_add = count_moved(&s, before);
    double bal_add = worst_error(&s, &capped);
    check_fault_sets(&s);

    /* drain the first device */
    memcpy(before, s.table, tsz * sizeof(uint32_t));
    uint32_t held = 0;
    for (size_t i = 0; i < tsz; i++)
        held += s.table[i] == 0;
    s.d[0].weight = 0;
    CHECK(placement_balance(s.d, s.n, copies, pgs, s.table, NULL, 11, 1 << 30) >= 0);
    uint32_t moved_rm = count_moved(&s, before);
    for (size_t i = 0; i < tsz; i++)
        CHECK(s.table[i] != 0);
    double bal_rm = worst_error(&s, &capped);
    check_fault_sets(&s);

    printf("%5d SDSs %5d devices %dx %6u PGs | worst device off its share: straw2 %5.1f%%, "
           "balanced %4.1f%% | add 1 SDS: moved %.2fx its share, then %4.1f%% | drain 1 device: "
           "moved %.2fx its copies, then %4.1f%%%s\n",
           nsds, s.n - 1, copies, pgs, straw * 100, bal * 100, moved_add / need_add, bal_add * 100,
           held ? (double)moved_rm / held : 1.0, bal_rm * 100,
           capped ? " (a fault set is capped)" : "");
    fflush(stdout);
    CHECK(bal <= 0.05 && bal_add <= 0.05 && bal_rm <= 0.05);
    CHECK(moved_add <= 1.2 * need_add);
    CHECK(moved_rm <= 1.2 * held);
    free(ideal);
    free(before);
    free(s.table);
    free(s.d);
}

/* A fault set bigger than 1/copies of the pool: it holds one copy of every
 * PG and no more, the rest is shared by the others. */
static void test_capped(void)
{
    struct placement_dev d[3] = {{1, 0, 8000}, {2, 1, 1000}, {3, 2, 1000}};
    double ideal[3];
    placement_ideal(d, 3, 2, 1000, ideal);
    CHECK(fabs(ideal[0] - 1000) < 1e-6 && fabs(ideal[1] - 500) < 1e-6);
    static uint32_t t[2000];
    CHECK_EQ(placement_compute(d, 3, 2, 1000, 3, t), 0);
    CHECK(placement_balance(d, 3, 2, 1000, t, NULL, 3, 1 << 30) >= 0);
    uint32_t c[3] = {0};
    for (int i = 0; i < 2000; i++)
        c[t[i]]++;
    CHECK_EQ(c[0], 1000u);
    CHECK(c[1] >= 490 && c[1] <= 510);
}

/* Frozen PGs keep their copies. */
static void test_frozen(void)
{
    struct placement_dev d[4] = {{1, 0, 1000}, {2, 1, 1000}, {3, 2, 1000}, {4, 3, 1000}};
    static uint32_t t[2048], before[2048];
    static uint8_t frozen[1024];
    CHECK_EQ(placement_compute(d, 3, 2, 1024, 3, t), 0);
    for (int i = 0; i < 1024; i += 2)
        frozen[i] = 1;
    memcpy(before, t, sizeof(t));
    int moves = placement_balance(d, 4, 2, 1024, t, frozen, 3, 1 << 30);
    CHECK(moves > 400);
    for (int i = 0; i < 1024; i += 2)
        CHECK(t[2 * i] == before[2 * i] && t[2 * i + 1] == before[2 * i + 1]);
}

/* ---- the balancer against the plain scan it replaced ----
 *
 * placement_balance keeps per-(source, destination) candidate lists so a
 * move does not scan every PG on the source. Its choices must be the plain
 * scan's exactly (placements are part of the replicated map): this is that
 * scan, the balancer as it was before the lists. */

struct ref {
    const struct placement_dev *d;
    int n, copies;
    uint32_t pgs, *table;
    const uint8_t *frozen;
    double *ideal;
    uint32_t *count;
};

static double ref_give(const struct ref *b, int d)
{
    if (b->ideal[d] <= 0)
        return b->count[d] ? 1e18 + b->count[d] : -1e18;
    return ((double)b->count[d] - 0.5 - b->ideal[d]) / b->ideal[d];
}

static double ref_take(const struct ref *b, int d)
{
    if (b->ideal[d] <= 0)
        return INFINITY;
    return ((double)b->count[d] + 0.5 - b->ideal[d]) / b->ideal[d];
}

static int ref_try(struct ref *b, int o, int u, uint64_t seed)
{
    uint32_t best = UINT32_MAX;
    uint64_t best_h = 0;
    for (uint32_t pg = 0; pg < b->pgs; pg++) {
        uint32_t *row = &b->table[(size_t)pg * (size_t)b->copies];
        int k = 0, ok = 1;
        while (k < b->copies && row[k] != (uint32_t)o)
            k++;
        if (k == b->copies || (b->frozen && b->frozen[pg]))
            continue;
        for (int j = 0; j < b->copies; j++)
            if (row[j] == (uint32_t)u ||
                (j != k && row[j] != PLACEMENT_NONE && b->d[row[j]].fault_set == b->d[u].fault_set))
                ok = 0;
        uint64_t h = hash_mix64(seed ^ hash_mix64(((uint64_t)pg << 32) | (uint32_t)u));
        if (ok && (best == UINT32_MAX || h < best_h)) {
            best = pg;
            best_h = h;
        }
    }
    if (best == UINT32_MAX)
        return 0;
    for (int k = 0; k < b->copies; k++)
        if (b->table[(size_t)best * (size_t)b->copies + (size_t)k] == (uint32_t)o) {
            b->table[(size_t)best * (size_t)b->copies + (size_t)k] = (uint32_t)u;
            break; /* one copy */
        }
    b->count[o]--;
    b->count[u]++;
    return 1;
}

static int ref_balance(struct ref *b, uint64_t seed, int max_moves)
{
    b->ideal = calloc((size_t)b->n, sizeof(double));
    b->count = calloc((size_t)b->n, sizeof(uint32_t));
    placement_ideal(b->d, b->n, b->copies, b->pgs, b->ideal);
    for (size_t i = 0; i < (size_t)b->pgs * (size_t)b->copies; i++)
        if (b->table[i] != PLACEMENT_NONE)
            b->count[b->table[i]]++;
    int moves = 0;
    while (moves < max_moves) {
        /* the most overfull source that has a PG the most underfull
         * destination can take, ties to the lower index */
        int moved = 0;
        int *src = calloc((size_t)b->n, sizeof(int)), *dst = calloc((size_t)b->n, sizeof(int));
        for (int i = 0; i < b->n; i++)
            src[i] = dst[i] = i;
        for (int i = 0; i < b->n; i++) /* insertion sorts: n is small */
            for (int j = i; j > 0; j--) {
                double a = ref_give(b, src[j - 1]), c = ref_give(b, src[j]);
                if (a < c || (a == c && src[j - 1] > src[j])) {
                    int t = src[j];
                    src[j] = src[j - 1];
                    src[j - 1] = t;
                }
                a = ref_take(b, dst[j - 1]), c = ref_take(b, dst[j]);
                if (a > c || (a == c && dst[j - 1] > dst[j])) {
                    int t = dst[j];
                    dst[j] = dst[j - 1];
                    dst[j - 1] = t;
                }
            }
        for (int si = 0; si < b->n && !moved; si++) {
            int o = src[si];
            double go = ref_give(b, o);
            if (ref_take(b, dst[0]) >= go - 1e-12)
                break;
            for (int di = 0; di < b->n && !moved; di++) {
                if (ref_take(b, dst[di]) >= go - 1e-12)
                    break;
                if (dst[di] != o)
                    moved = ref_try(b, o, dst[di], seed);
            }
        }
        free(src);
        free(dst);
        if (!moved)
            break;
        moves++;
    }
    free(b->ideal);
    free(b->count);
    return moves;
}

static void test_balance_matches_plain_scan(void)
{
    static const struct {
        uint32_t pgs;
        int n, copies, fs_per, limit, freeze;
    } cases[] = {{256, 3, 2, 1, 1 << 30, 0},  {1024, 4, 2, 1, 1 << 30, 0},
                 {1024, 7, 3, 1, 300, 1},     {4096, 5, 2, 1, 1 << 30, 1},
                 {300, 9, 3, 3, 1 << 30, 0},  {2048, 16, 2, 2, 1 << 30, 0},
                 {8192, 4, 2, 2, 1 << 30, 0}, {8192, 6, 3, 2, 1 << 30, 1}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int n = cases[c].n, copies = cases[c].copies;
        uint32_t pgs = cases[c].pgs;
        struct placement_dev d[16];
        for (int i = 0; i < n; i++)
            d[i] = (struct placement_dev){(uint32_t)i + 1, (uint32_t)(i / cases[c].fs_per),
                                          (uint64_t)((i * 7 + (int)c) % 5 + 1) * 1000};
        size_t len = (size_t)pgs * (size_t)copies;
        uint32_t *a = malloc(len * sizeof(uint32_t)), *b = malloc(len * sizeof(uint32_t));
        uint8_t *frozen = calloc(pgs, 1);
        for (uint32_t pg = 0; pg < pgs && cases[c].freeze; pg += 7)
            frozen[pg] = 1;
        CHECK(placement_compute(d, n, copies, pgs, 5 + c, a) == 0);
        /* a device added: it holds nothing yet, so there is work to do */
        d[n - 1].weight *= 3;
        memcpy(b, a, len * sizeof(uint32_t));
        int m1 = placement_balance(d, n, copies, pgs, a, cases[c].freeze ? frozen : NULL, 9,
                                   cases[c].limit);
        struct ref r = {d, n, copies, pgs, b, cases[c].freeze ? frozen : NULL, NULL, NULL};
        int m2 = ref_balance(&r, 9, cases[c].limit);
        CHECK(m1 == m2 && m1 > 0);
        CHECK(memcmp(a, b, len * sizeof(uint32_t)) == 0);
        free(a);
        free(b);
        free(frozen);
    }
}

/* The balancer ends on any map, even one a bug or a bad entry damaged:
 * every move must lower the same measure. Two found by fuzz_raft: a PG
 * held twice by one device (both copies moved, and back), and two devices
 * of no weight passing copies between them. */
static void test_balance_ends(void)
{
    struct placement_dev d[3] = {{1, 1, 4096}, {2, 2, 20480}, {3, 3, 4096}};
    uint32_t t[14] = {1, 1, 0, 1, 1, 0, 1, 2, 0, 1, 1, 2, 0, 1};
    int m = placement_balance(d, 3, 2, 7, t, NULL, 1, 1 << 20);
    CHECK(m > 0 && m < 100);
    uint32_t n[3] = {0};
    for (int i = 0; i < 14; i++)
        n[t[i]]++;
    CHECK(n[0] == 3 || n[0] == 4);
    CHECK(n[1] == 7 && n[0] + n[2] == 7);

    struct placement_dev z[3] = {{1, 1, 0}, {2, 2, 0}, {3, 3, 1000}};
    uint32_t *u = malloc(400 * sizeof(uint32_t));
    for (int pg = 0; pg < 200; pg++) { /* one copy on 3, one on 1 or 2 */
        u[pg * 2] = 2;
        u[pg * 2 + 1] = pg < 150 ? 0 : 1;
    }
    m = placement_balance(z, 3, 2, 200, u, NULL, 1, 1 << 20);
    CHECK(m == 0); /* nowhere to go: 3 holds a copy of every PG */
    free(u);
}

int main(void)
{
    test_basic();
    test_balance_equal();
    test_balance_weighted();
    test_movement();
    test_capped();
    test_frozen();
    test_balance_matches_plain_scan();
    test_balance_ends();
    static const struct {
        int sds, copies;
        uint32_t pgs;
    } sims[] = {{3, 2, 1024},  {3, 3, 1024},    {4, 2, 1024},    {5, 2, 1024},    {8, 3, 2048},
                {20, 2, 4096}, {100, 3, 16384}, {300, 2, 16384}, {1000, 2, 32768}};
    for (size_t i = 0; i < sizeof(sims) / sizeof(sims[0]); i++)
        simulate(sims[i].sds, sims[i].copies, sims[i].pgs);
    printf("placement ok\n");
    return 0;
}
