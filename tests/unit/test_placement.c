/* Placement: deterministic, capacity-weighted, fault-set safe, minimal movement. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "placement.h"

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
    CHECK_EQ(placement_pg_of(5, 9, 1024), placement_pg_of(5, 9, 1024));
    CHECK(placement_pg_of(5, 9, 1024) < 1024);
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
        d[i] = (struct placement_dev){(uint32_t)i + 1, (uint32_t)i, (uint64_t)(1000 + rand() % 3000)};
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

int main(void)
{
    test_basic();
    test_balance_equal();
    test_balance_weighted();
    test_movement();
    printf("placement ok\n");
    return 0;
}
