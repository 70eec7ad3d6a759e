/* The SDC's pure request logic (client/sdc_split.c): cutting a request into
 * per-extent pieces, merging BLOCK_STATUS answers into NBD extents, when a
 * zero is fast, and which SDSs a FLUSH must reach. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "layout.h"
#include "nbd_proto.h"
#include "sdc.h"
#include "util.h"

#define MiB (1ull << 20)
#define MAXP 4200

static struct sdc_piece pc[MAXP];

/* Cut and check the invariants every cut must keep: pieces in order, each
 * inside one extent, contiguous, covering [off, off + len) or (capped) its
 * start. Returns the count. */
static uint32_t cut(enum nbd_io_cmd cmd, uint64_t off, uint32_t len, uint64_t es)
{
    uint32_t n = sdc_split_count(cmd, off, len, es);
    CHECK(n <= MAXP);
    memset(pc, 0, sizeof(pc));
    sdc_split(pc, n, off, len, es);
    uint64_t pos = off;
    for (uint32_t i = 0; i < n; i++) {
        CHECK_EQ(pc[i].off, pos);
        CHECK_EQ(pc[i].boff, pos - off);
        CHECK(layout_in_one_extent(pc[i].off, pc[i].len, es)); /* what the SDS accepts */
        pos += pc[i].len;
    }
    CHECK(pos <= off + len);
    if (n == sdc_split_count(NBDIO_READ, off, len, es))
        CHECK_EQ(pos, off + len); /* uncapped: everything covered */
    return n;
}

static void test_inside_one_extent(void)
{
    CHECK_EQ(cut(NBDIO_WRITE, 4096, 8192, MiB), 1);
    CHECK_EQ(pc[0].off, 4096);
    CHECK_EQ(pc[0].len, 8192);
    CHECK_EQ(pc[0].boff, 0);
    /* a whole extent is one piece */
    CHECK_EQ(cut(NBDIO_READ, 5 * MiB, MiB, MiB), 1);
    CHECK_EQ(pc[0].len, MiB);
    /* a single byte at the end of an extent */
    CHECK_EQ(cut(NBDIO_READ, MiB - 1, 1, MiB), 1);
    /* nothing to cut */
    CHECK_EQ(sdc_split_count(NBDIO_TRIM, 0, 0, MiB), 0);
}

static void test_on_a_boundary(void)
{
    /* ending exactly on it: one piece */
    CHECK_EQ(cut(NBDIO_WRITE, MiB - 8192, 8192, MiB), 1);
    /* starting exactly on it: one piece */
    CHECK_EQ(cut(NBDIO_WRITE, MiB, 8192, MiB), 1);
    /* across it: two */
    CHECK_EQ(cut(NBDIO_WRITE, MiB - 4096, 8192, MiB), 2);
    CHECK_EQ(pc[0].off, MiB - 4096);
    CHECK_EQ(pc[0].len, 4096);
    CHECK_EQ(pc[0].boff, 0);
    CHECK_EQ(pc[1].off, MiB);
    CHECK_EQ(pc[1].len, 4096);
    CHECK_EQ(pc[1].boff, 4096);
    /* one byte either side */
    CHECK_EQ(cut(NBDIO_READ, MiB - 1, 2, MiB), 2);
    CHECK_EQ(pc[0].len, 1);
    CHECK_EQ(pc[1].len, 1);
}

static void test_spanning_many_extents(void)
{
    CHECK_EQ(cut(NBDIO_READ, 512 << 10, 3 * MiB, MiB), 4);
    const uint64_t off[] = {512 << 10, MiB, 2 * MiB, 3 * MiB};
    const uint32_t len[] = {512 << 10, MiB, MiB, 512 << 10};
    const uint32_t boff[] = {0, 512 << 10, (3 * MiB) / 2, (5 * MiB) / 2};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(pc[i].off, off[i]);
        CHECK_EQ(pc[i].len, len[i]);
        CHECK_EQ(pc[i].boff, boff[i]);
    }
    /* a small extent size: every piece one extent */
    CHECK_EQ(cut(NBDIO_WRITE, 0, 1 << 20, 64 << 10), 16);
    for (int i = 0; i < 16; i++)
        CHECK_EQ(pc[i].len, 64 << 10);
}

static void test_32m_at_an_unaligned_offset(void)
{
    uint64_t off = 12345;
    CHECK_EQ(cut(NBDIO_WRITE, off, NBD_MAX_PAYLOAD, MiB), 33);
    CHECK_EQ(pc[0].len, MiB - off);
    for (int i = 1; i < 32; i++) {
        CHECK_EQ(pc[i].off, (uint64_t)i * MiB);
        CHECK_EQ(pc[i].len, MiB);
    }
    CHECK_EQ(pc[32].off, 32 * MiB);
    CHECK_EQ(pc[32].len, off);
    CHECK_EQ(pc[32].boff, NBD_MAX_PAYLOAD - off);
    /* the same at 4 MiB extents, from deep in a large volume */
    off = (1ull << 40) + 3 * MiB + 512;
    CHECK_EQ(cut(NBDIO_READ, off, NBD_MAX_PAYLOAD, 4 * MiB), 9);
    CHECK_EQ(pc[0].len, MiB - 512);
    CHECK_EQ(pc[8].len, 3 * MiB + 512);
    /* a 4 GiB - 4 KiB trim, as the kernel sends */
    CHECK_EQ(cut(NBDIO_TRIM, 4096, 0xfffff000u, MiB), 4096);
}

static void test_last_extent_of_an_odd_sized_volume(void)
{
    /* a 10 MiB + 4 KiB volume: its last extent holds 4 KiB */
    uint64_t size = 10 * MiB + 4096;
    CHECK_EQ(cut(NBDIO_WRITE, size - 8192, 8192, MiB), 2);
    CHECK_EQ(pc[0].off, 10 * MiB - 4096);
    CHECK_EQ(pc[0].len, 4096);
    CHECK_EQ(pc[1].off, 10 * MiB);
    CHECK_EQ(pc[1].len, 4096);
    CHECK_EQ(pc[1].off + pc[1].len, size);
    /* the whole volume: 11 pieces, the last short */
    CHECK_EQ(cut(NBDIO_READ, 0, (uint32_t)size, MiB), 11);
    CHECK_EQ(pc[10].len, 4096);
    /* just the tail */
    CHECK_EQ(cut(NBDIO_STATUS, 10 * MiB, 4096, MiB), 1);
}

static void test_block_status_capped(void)
{
    /* 100 extents asked: 64 pieces, covering the first 64 MiB */
    CHECK_EQ(sdc_split_count(NBDIO_READ, 0, 100 * MiB, MiB), 100);
    CHECK_EQ(cut(NBDIO_STATUS, 0, 100 * MiB, MiB), NBD_MAX_EXTENTS);
    CHECK_EQ(pc[NBD_MAX_EXTENTS - 1].off + pc[NBD_MAX_EXTENTS - 1].len, 64 * MiB);
    /* unaligned: the first piece is short, the cap still 64 */
    CHECK_EQ(cut(NBDIO_STATUS, MiB / 2, 0x80000000u, MiB), NBD_MAX_EXTENTS);
    CHECK_EQ(pc[0].len, MiB / 2);
    /* exactly 64 extents: all of it */
    CHECK_EQ(cut(NBDIO_STATUS, 0, 64 * MiB, MiB), NBD_MAX_EXTENTS);
    CHECK_EQ(pc[63].off + pc[63].len, 64 * MiB);
    /* other commands are not capped */
    CHECK_EQ(sdc_split_count(NBDIO_ZERO, 0, 100 * MiB, MiB), 100);
}

static void status_pieces(const int *st, const uint32_t *len, int n)
{
    memset(pc, 0, sizeof(pc));
    for (int i = 0; i < n; i++) {
        pc[i].status = st[i];
        pc[i].len = len[i];
    }
}

static void test_merge_adjacent_equal_flags(void)
{
    struct nbd_extent ext[NBD_MAX_EXTENTS];
    const uint32_t HOLE_ZERO = NBD_STATE_HOLE | NBD_STATE_ZERO;
    const int st[] = {1, 1, 0, 0, 0, 1};
    const uint32_t len[] = {100, MiB, MiB, MiB, MiB, 4096};
    status_pieces(st, len, 6);
    CHECK_EQ(sdc_merge_status(pc, 6, ext, NBD_MAX_EXTENTS), 3);
    CHECK_EQ(ext[0].len, MiB + 100);
    CHECK_EQ(ext[0].flags, 0);
    CHECK_EQ(ext[1].len, 3 * MiB);
    CHECK_EQ(ext[1].flags, HOLE_ZERO);
    CHECK_EQ(ext[2].len, 4096);
    CHECK_EQ(ext[2].flags, 0);
    /* all holes: one extent */
    const int holes[] = {0, 0, 0};
    status_pieces(holes, len, 3);
    CHECK_EQ(sdc_merge_status(pc, 3, ext, NBD_MAX_EXTENTS), 1);
    CHECK_EQ(ext[0].len, 100 + 2 * MiB);
    CHECK_EQ(ext[0].flags, HOLE_ZERO);
    /* a single piece */
    status_pieces(st, len, 1);
    CHECK_EQ(sdc_merge_status(pc, 1, ext, NBD_MAX_EXTENTS), 1);
    CHECK_EQ(ext[0].len, 100);
}

static void test_merge_alternating_and_capped(void)
{
    struct nbd_extent ext[NBD_MAX_EXTENTS];
    memset(pc, 0, sizeof(pc));
    for (int i = 0; i < NBD_MAX_EXTENTS; i++) {
        pc[i].status = i % 2;
        pc[i].len = (uint32_t)MiB;
    }
    /* nothing merges: one extent per piece, at most NBD_MAX_EXTENTS */
    CHECK_EQ(sdc_merge_status(pc, NBD_MAX_EXTENTS, ext, NBD_MAX_EXTENTS), NBD_MAX_EXTENTS);
    for (int i = 0; i < NBD_MAX_EXTENTS; i++) {
        CHECK_EQ(ext[i].len, MiB);
        CHECK_EQ(ext[i].flags, i % 2 ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO);
    }
    /* a smaller room is never overrun */
    CHECK_EQ(sdc_merge_status(pc, NBD_MAX_EXTENTS, ext, 3), 3);
}

static void test_zero_is_fast(void)
{
    CHECK(sdc_zero_is_fast(0, (uint32_t)MiB, NBDIO_FAST_ZERO, MiB));
    CHECK(sdc_zero_is_fast(2 * MiB, (uint32_t)(3 * MiB), NBDIO_FAST_ZERO, MiB));
    CHECK(!sdc_zero_is_fast(0, (uint32_t)MiB, NBDIO_FAST_ZERO | NBDIO_NO_HOLE, MiB));
    CHECK(!sdc_zero_is_fast(4096, (uint32_t)MiB - 4096, NBDIO_FAST_ZERO, MiB));
    CHECK(!sdc_zero_is_fast(0, (uint32_t)MiB + 4096, NBDIO_FAST_ZERO, MiB));
}

/* A map: SDSs in states, devices in pools. */
static Cairn__Sds sds[5];
static Cairn__Sds *sdsp[5];
static Cairn__Device dev[6];
static Cairn__Device *devp[6];

static void map_init(Cairn__ClusterMap *m)
{
    const uint32_t ids[] = {1, 2, 3, 4, 5};
    const Cairn__SdsState states[] = {CAIRN__SDS_STATE__SDS_UP, CAIRN__SDS_STATE__SDS_UP,
                                      CAIRN__SDS_STATE__SDS_DOWN, CAIRN__SDS_STATE__SDS_MAINTENANCE,
                                      CAIRN__SDS_STATE__SDS_UP};
    for (int i = 0; i < 5; i++) {
        cairn__sds__init(&sds[i]);
        sds[i].id = ids[i];
        sds[i].state = states[i];
        sdsp[i] = &sds[i];
    }
    /* (device, sds, pool): sds 1 and 5 in pool 1 (5 twice), 2 only in
     * pool 2, 3 (down) and 4 (maintenance) in pool 1 */
    const uint32_t dv[6][3] = {{10, 1, 1}, {11, 2, 2}, {12, 3, 1},
                               {13, 4, 1}, {14, 5, 1}, {15, 5, 1}};
    for (int i = 0; i < 6; i++) {
        cairn__device__init(&dev[i]);
        dev[i].id = dv[i][0];
        dev[i].sds_id = dv[i][1];
        dev[i].pool_id = dv[i][2];
        devp[i] = &dev[i];
    }
    cairn__cluster_map__init(m);
    m->n_sds = 5;
    m->sds = sdsp;
    m->n_devices = 6;
    m->devices = devp;
}

static void test_flush_targets(void)
{
    Cairn__ClusterMap m;
    map_init(&m);
    CHECK(sdc_flush_target(&m, &sds[0], 1));
    CHECK(!sdc_flush_target(&m, &sds[1], 1)); /* no device in the pool */
    CHECK(sdc_flush_target(&m, &sds[1], 2));
    CHECK(!sdc_flush_target(&m, &sds[2], 1)); /* down */
    CHECK(!sdc_flush_target(&m, &sds[3], 1)); /* maintenance */
    CHECK(sdc_flush_target(&m, &sds[4], 1));

    memset(pc, 0, sizeof(pc));
    CHECK_EQ(sdc_flush_targets(&m, 1, NULL, 0), 2);
    CHECK_EQ(sdc_flush_targets(&m, 1, pc, MAXP), 2); /* SDS 5 once, for two devices */
    CHECK_EQ(pc[0].sds_id, 1);
    CHECK_EQ(pc[1].sds_id, 5);
    CHECK_EQ(pc[2].sds_id, 0);
    CHECK_EQ(sdc_flush_targets(&m, 2, pc, MAXP), 1);
    CHECK_EQ(pc[0].sds_id, 2);
    CHECK_EQ(sdc_flush_targets(&m, 3, pc, MAXP), 0); /* an empty pool: nothing to flush */
    /* fewer slots than targets: the count is still all of them */
    memset(pc, 0, sizeof(pc));
    CHECK_EQ(sdc_flush_targets(&m, 1, pc, 1), 2);
    CHECK_EQ(pc[0].sds_id, 1);
    CHECK_EQ(pc[1].sds_id, 0);
    /* the one it was waiting for comes back up */
    sds[2].state = CAIRN__SDS_STATE__SDS_UP;
    CHECK_EQ(sdc_flush_targets(&m, 1, NULL, 0), 3);
}

int main(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"inside_one_extent", test_inside_one_extent},
        {"on_a_boundary", test_on_a_boundary},
        {"spanning_many_extents", test_spanning_many_extents},
        {"32m_at_an_unaligned_offset", test_32m_at_an_unaligned_offset},
        {"last_extent_of_an_odd_sized_volume", test_last_extent_of_an_odd_sized_volume},
        {"block_status_capped", test_block_status_capped},
        {"merge_adjacent_equal_flags", test_merge_adjacent_equal_flags},
        {"merge_alternating_and_capped", test_merge_alternating_and_capped},
        {"zero_is_fast", test_zero_is_fast},
        {"flush_targets", test_flush_targets},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        cases[i].fn();
        printf("ok %s\n", cases[i].name);
    }
    return 0;
}
