/* Extent store: round trips, holes, unaligned I/O, ENOSPC, device errors,
 * granules (a reused slot's old bytes never show, FUA writes of fresh
 * granules are durable), version 1 devices, and a crash test on a mock disk
 * that drops unsynced writes: after any crash, every sector holds a value the
 * write ordering allows (never another extent's bytes, never an
 * acknowledged-durable write lost), with 4 KiB granules and with granules
 * larger than a block (2 MiB extents: 8 KiB), on version 2 and 1 devices. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "extent_store.h"
#include "mock_disk.h"
#include "util.h"

#define EXT (64u << 10)
#define SECT 512u
#define NEXT 40
#define DISK_SIZE (48ull * EXT)
#define CLUSTER "test-cluster"

static struct disk *d;
static struct extent_store *st;

struct done {
    int n;
    int res;
};
static void done_cb(void *arg, int res)
{
    struct done *dn = arg;
    dn->n++;
    dn->res = res;
}

static void *abuf(size_t n)
{
    void *p;
    CHECK(posix_memalign(&p, 4096, n) == 0);
    return p;
}

static void reopen(void)
{
    char msg[256];
    store_close(st);
    st = NULL;
    CHECK_EQ(store_open(d, CLUSTER, 7, &st, msg, sizeof(msg)), 0);
}

static int sync_op(int r, struct done *dn)
{
    if (r == 1)
        return 0;
    if (r < 0)
        return r;
    mock_disk_run(d, 1);
    CHECK_EQ(dn->n, 1);
    return dn->res;
}

static int do_write(uint64_t vol, uint64_t ext, uint32_t off, uint32_t len, const void *buf,
                    int flags)
{
    struct done dn = {0};
    return sync_op(store_write(st, vol, ext, off, len, buf, flags, done_cb, &dn), &dn);
}
static int do_read(uint64_t vol, uint64_t ext, uint32_t off, uint32_t len, void *buf)
{
    struct done dn = {0};
    return sync_op(store_read(st, vol, ext, off, len, buf, done_cb, &dn), &dn);
}
static int do_free(uint64_t vol, uint64_t ext)
{
    struct done dn = {0};
    return sync_op(store_free(st, vol, ext, done_cb, &dn), &dn);
}
static int do_flush(void)
{
    struct done dn = {0};
    return sync_op(store_flush(st, done_cb, &dn), &dn);
}

static void fill(uint8_t *p, size_t n, uint32_t tag, uint64_t ext, uint64_t byte0)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t pos = byte0 + i;
        p[i] = tag ? (uint8_t)(hash_mix64(((uint64_t)tag << 40) ^ (ext << 24) ^ (pos / 8)) >>
                               (8 * (pos % 8)))
                   : 0;
    }
}

static void test_basic(void)
{
    d = mock_disk_new(DISK_SIZE);
    char msg[256];
    CHECK_EQ(store_open(d, CLUSTER, 7, &st, msg, sizeof(msg)), -ENODATA);
    CHECK_EQ(store_format(d, CLUSTER, 7, EXT), 0);
    CHECK_EQ(store_open(d, "other", 7, &st, msg, sizeof(msg)), -EINVAL);
    CHECK_EQ(store_open(d, CLUSTER, 8, &st, msg, sizeof(msg)), -EINVAL);
    CHECK_EQ(store_open(d, CLUSTER, 7, &st, msg, sizeof(msg)), 0);
    uint64_t used, total;
    store_usage(st, &used, &total);
    CHECK_EQ(used, 0);
    CHECK(total >= 40);

    uint8_t *w = abuf(EXT), *r = abuf(EXT);
    /* hole reads zeroes */
    memset(r, 0xaa, EXT);
    CHECK_EQ(do_read(1, 3, 0, EXT, r), 0);
    for (uint32_t i = 0; i < EXT; i++)
        CHECK_EQ(r[i], 0);
    /* unaligned write into a new extent; rest reads zero */
    fill(w, 1000, 5, 3, 0);
    CHECK_EQ(do_write(1, 3, 777, 1000, w, 0), 0);
    CHECK_EQ(store_allocated(st, 1, 3), 1);
    CHECK_EQ(do_read(1, 3, 0, EXT, r), 0);
    for (uint32_t i = 0; i < EXT; i++)
        CHECK_EQ(r[i], (i >= 777 && i < 1777) ? w[i - 777] : 0);
    /* unaligned read of an unaligned overwrite */
    fill(w, 5000, 6, 3, 0);
    CHECK_EQ(do_write(1, 3, 3000, 5000, w, STORE_FUA), 0);
    CHECK_EQ(do_read(1, 3, 2999, 5002, r), 0);
    CHECK_EQ(r[0], 0);
    CHECK_EQ(memcmp(r + 1, w, 5000), 0);
    CHECK_EQ(r[5001], 0);
    /* survives reopen after flush */
    CHECK_EQ(do_flush(), 0);
    reopen();
    CHECK_EQ(do_read(1, 3, 3000, 5000, r), 0);
    CHECK_EQ(memcmp(r, w, 5000), 0);
    /* free: reads zeroes, survives reopen without flush (free is FUA) */
    CHECK_EQ(do_free(1, 3), 0);
    CHECK_EQ(store_allocated(st, 1, 3), 0);
    reopen();
    CHECK_EQ(store_allocated(st, 1, 3), 0);
    CHECK_EQ(do_read(1, 3, 3000, 5000, r), 0);
    for (uint32_t i = 0; i < 5000; i++)
        CHECK_EQ(r[i], 0);
    /* out-of-range requests are refused */
    CHECK_EQ(store_write(st, 1, 0, EXT - 10, 11, w, 0, done_cb, NULL), -EINVAL);
    CHECK_EQ(store_read(st, 0, 0, 0, 512, r, done_cb, NULL), -EINVAL);

    /* ENOSPC: fill every slot; the next new extent fails, nothing is lost */
    store_usage(st, &used, &total);
    for (uint64_t e = 0; e < total; e++) {
        fill(w, 4096, 100, e, 0);
        CHECK_EQ(do_write(2, e, 0, 4096, w, 0), 0);
    }
    CHECK_EQ(do_write(2, total, 0, 4096, w, 0), -ENOSPC);
    CHECK_EQ(store_enospc(st), 1);
    /* an allocated extent still takes writes */
    fill(w, 4096, 100, 0, 0);
    CHECK_EQ(do_write(2, 0, 0, 4096, w, 0), 0);
    CHECK_EQ(do_flush(), 0);
    reopen();
    for (uint64_t e = 0; e < total; e++) {
        fill(w, 4096, 100, e, 0);
        CHECK_EQ(do_read(2, e, 0, 4096, r), 0);
        CHECK_EQ(memcmp(r, w, 4096), 0);
    }
    /* a device error fails the request, not the store */
    mock_disk_fail(d, 0, DISK_SIZE);
    CHECK_EQ(do_read(2, 1, 0, 4096, r), -EIO);
    CHECK_EQ(do_write(2, 1, 0, 4096, w, 0), -EIO);
    mock_disk_fail(d, 0, 0);
    CHECK_EQ(do_read(2, 1, 0, 4096, r), 0);
    store_close(st);
    st = NULL;
    mock_disk_free(d);
    free(w);
    free(r);
}

/* ---- granules ---- */

/* Where a device of this size keeps its table and slots (extent_layout.c). */
static void layout_of(uint64_t size, uint64_t ext, uint32_t esize, uint64_t *toff, uint64_t *doff)
{
    uint64_t n = (size - 4096) / (ext + esize);
    for (;;) {
        uint64_t tbytes = (n * esize + 4095) / 4096 * 4096;
        *toff = 4096;
        *doff = (4096 + tbytes + ext - 1) / ext * ext;
        if (*doff + n * ext <= size)
            break;
        n--;
    }
}

static void raw_read(uint64_t off, void *buf, uint32_t len)
{
    CHECK_EQ(d->ops->pread(d, buf, len, off), 0);
}

/* A version 1 device as store_format wrote it before granules: 32-byte
 * entries (volume, extent, generation), no bitmaps, no granule size. */
static void format_v1(struct disk *disk, uint64_t ext)
{
    uint64_t toff, doff, n = (disk->size - 4096) / (ext + 32);
    layout_of(disk->size, ext, 32, &toff, &doff);
    while (doff + n * ext > disk->size)
        n--;
    uint8_t *b = abuf(4096);
    memset(b, 0, 4096);
    for (uint64_t off = toff; off < doff; off += 4096)
        CHECK_EQ(disk->ops->pwrite(disk, b, 4096, off), 0);
    memcpy(b, "CAIRNDEV", 8);
    put_be32(b + 8, 1);
    put_be32(b + 12, 7);
    put_be64(b + 16, ext);
    put_be64(b + 24, n);
    strcpy((char *)b + 64, CLUSTER);
    CHECK_EQ(disk->ops->pwrite(disk, b, 4096, 0), 0);
    free(b);
}

static uint32_t gx = EXT; /* the extent size of the granule tests */

/* Every byte of the extent is zero except [off, off + len), which is want. */
static void check_only(uint64_t vol, uint64_t ext, uint32_t off, uint32_t len, const uint8_t *want)
{
    uint8_t *r = abuf(gx);
    memset(r, 0xaa, gx);
    CHECK_EQ(do_read(vol, ext, 0, gx, r), 0);
    for (uint32_t i = 0; i < gx; i++)
        CHECK_EQ(r[i], (i >= off && i < off + len) ? want[i - off] : 0);
    free(r);
}

/* Fill extents (1, 0..n-1) with a pattern, flush, free them: slots 0..n-1
 * hold another extent's bytes; the next allocation takes slot 0. */
static void dirty_slots(int n)
{
    uint8_t *w = abuf(gx);
    for (int e = 0; e < n; e++) {
        fill(w, gx, 77, (uint64_t)e, 0);
        CHECK_EQ(do_write(1, (uint64_t)e, 0, gx, w, 0), 0);
    }
    CHECK_EQ(do_flush(), 0);
    for (int e = n; e-- > 0;)
        CHECK_EQ(do_free(1, (uint64_t)e), 0);
    free(w);
}

static void crash_reopen(int keep_pct)
{
    mock_disk_crash(d, keep_pct);
    mock_disk_run(d, 0);
    mock_disk_revive(d);
    reopen();
}

/* A reused slot: one 4 KiB write into it, the rest still holds the freed
 * extent's bytes on the device, and none of them is ever read back: not
 * before a crash, not after one (flushed or not). */
static void test_stale(void)
{
    d = mock_disk_new(DISK_SIZE);
    CHECK_EQ(store_format(d, CLUSTER, 7, EXT), 0);
    reopen();
    CHECK_EQ(store_granule_size(st), 4096);
    dirty_slots(1);
    uint8_t *w = abuf(4096), *raw = abuf(EXT), *old = abuf(EXT);
    fill(w, 4096, 5, 5, 8192);
    CHECK_EQ(do_write(2, 5, 8192, 4096, w, 0), 0);
    /* it went to slot 0, whose other blocks are the old extent's */
    uint64_t toff, doff;
    layout_of(DISK_SIZE, EXT, 64, &toff, &doff);
    raw_read(doff, raw, EXT);
    fill(old, EXT, 77, 0, 0);
    CHECK_EQ(memcmp(raw, old, 8192), 0);
    CHECK_EQ(memcmp(raw + 8192, w, 4096), 0);
    CHECK_EQ(memcmp(raw + 12288, old + 12288, EXT - 12288), 0);
    uint64_t bm[4];
    CHECK_EQ(store_written(st, 2, 5, bm, 4), EXT / 4096);
    CHECK_EQ(bm[0], 1u << 2);
    CHECK_EQ(store_written(st, 2, 6, bm, 4), 0);
    CHECK_EQ(store_written(st, 2, 5, bm, 0), -EINVAL);
    check_only(2, 5, 8192, 4096, w);
    /* crash before a flush, every write kept: the extent is a hole */
    crash_reopen(100);
    CHECK_EQ(store_allocated(st, 2, 5), 0);
    check_only(2, 5, 0, 0, w);
    /* again, flushed: only the block */
    CHECK_EQ(do_write(2, 5, 8192, 4096, w, 0), 0);
    CHECK_EQ(do_flush(), 0);
    crash_reopen(0);
    check_only(2, 5, 8192, 4096, w);
    CHECK_EQ(store_written(st, 2, 5, bm, 4), EXT / 4096);
    CHECK_EQ(bm[0], 1u << 2);
    /* an unaligned write into a clear granule: merged into zeroes */
    uint8_t *w2 = abuf(EXT);
    memcpy(w2, w, 4096);
    fill(w2 + 4096, 100, 6, 5, 0);
    CHECK_EQ(do_write(2, 5, 12388, 100, w2 + 4096, 0), 0);
    memset(w2 + 4096, 0, 100);
    fill(w2 + 4096 + 100, 100, 6, 5, 0);
    check_only(2, 5, 8192, 4096 + 200, w2);
    CHECK_EQ(do_flush(), 0);
    crash_reopen(0);
    check_only(2, 5, 8192, 4096 + 200, w2);
    free(w2);
    free(w);
    free(raw);
    free(old);
    store_close(st);
    st = NULL;
    mock_disk_free(d);
}

/* A FUA write into fresh granules is durable when it completes: into a new
 * extent, into a fresh granule of an extent allocated without FUA, and into
 * a granule an unflushed write filled (that write's data is synced first,
 * else the granule's bit would name lost data over another extent's bytes). */
static void test_fua(uint32_t ext)
{
    gx = ext;
    d = mock_disk_new(48ull * ext);
    CHECK_EQ(store_format(d, CLUSTER, 7, ext), 0);
    reopen();
    dirty_slots(3);
    uint8_t *a = abuf(4096), *b = abuf(4096), *c = abuf(4096);
    fill(a, 4096, 11, 0, 4096);
    CHECK_EQ(do_write(2, 0, 4096, 4096, a, STORE_FUA), 0);
    crash_reopen(0);
    check_only(2, 0, 4096, 4096, a);

    fill(b, 4096, 12, 1, 0);
    CHECK_EQ(do_write(2, 1, 0, 4096, b, 0), 0);
    fill(c, 1000, 13, 1, 1000);
    CHECK_EQ(do_write(2, 1, 1000, 1000, c, STORE_FUA), 0);
    memcpy(b + 1000, c, 1000);
    crash_reopen(0);
    check_only(2, 1, 0, 4096, b);

    fill(b, 4096, 14, 2, 0);
    CHECK_EQ(do_write(2, 2, 0, 4096, b, 0), 0);
    fill(c, 4096, 15, 2, 8192);
    CHECK_EQ(do_write(2, 2, 8192, 4096, c, STORE_FUA), 0);
    crash_reopen(0);
    uint8_t *r = abuf(ext);
    CHECK_EQ(do_read(2, 2, 0, ext, r), 0);
    CHECK(memcmp(r, b, 4096) == 0 || !memcmp(r, r + 4096, 4096)); /* zero or the write */
    for (uint32_t i = 4096; i < ext; i++)
        CHECK_EQ(r[i], (i >= 8192 && i < 12288) ? c[i - 8192] : 0);
    free(r);
    free(a);
    free(b);
    free(c);
    store_close(st);
    st = NULL;
    mock_disk_free(d);
    gx = EXT;
}

/* A free that arrives while a write fills a granule of the extent waits for
 * it: completing after the free, the fill would set a bit of the free slot,
 * and the next extent there would read the old extent's bytes. */
static void test_free_fill(void)
{
    uint8_t *w = abuf(4096);
    for (unsigned trial = 0; trial < 20; trial++) {
        srand(trial);
        d = mock_disk_new(DISK_SIZE);
        CHECK_EQ(store_format(d, CLUSTER, 7, EXT), 0);
        reopen();
        fill(w, 4096, 21, 1, 0);
        CHECK_EQ(do_write(1, 1, 0, 4096, w, 0), 0);
        struct done wr = {0}, fr = {0};
        fill(w, 4096, 22, 1, 8192);
        CHECK_EQ(store_write(st, 1, 1, 8192, 4096, w, 0, done_cb, &wr), 0);
        CHECK_EQ(store_free(st, 1, 1, done_cb, &fr), 0);
        mock_disk_run(d, 1);
        CHECK_EQ(wr.n + fr.n, 2);
        fill(w, 4096, 23, 0, 0);
        CHECK_EQ(do_write(2, 0, 0, 4096, w, 0), 0); /* takes the freed slot */
        check_only(2, 0, 0, 4096, w);
        store_close(st);
        st = NULL;
        mock_disk_free(d);
    }
    free(w);
}

/* Two writes into one clear 8 KiB granule at once, each 4 KiB: the second
 * waits for the first (each fills the rest of the granule with zeroes). */
static void test_fill_conflict(void)
{
    gx = 2u << 20;
    uint8_t *w = abuf(8192);
    for (unsigned trial = 0; trial < 10; trial++) {
        srand(trial);
        d = mock_disk_new(16ull * gx);
        CHECK_EQ(store_format(d, CLUSTER, 7, gx), 0);
        reopen();
        CHECK_EQ(store_granule_size(st), 8192);
        fill(w, 8192, 31, 0, 0);
        CHECK_EQ(do_write(1, 0, 0, 4096, w, 0), 0);
        struct done a = {0}, b = {0};
        CHECK_EQ(store_write(st, 1, 0, 8192, 4096, w, 0, done_cb, &a), 0);
        CHECK_EQ(store_write(st, 1, 0, 12288, 4096, w + 4096, 0, done_cb, &b), 0);
        mock_disk_run(d, 1);
        CHECK_EQ(a.n + b.n, 2);
        uint8_t *want = abuf(16384);
        memset(want, 0, 16384);
        memcpy(want, w, 4096);
        memcpy(want + 8192, w, 8192);
        check_only(1, 0, 0, 16384, want);
        free(want);
        store_close(st);
        st = NULL;
        mock_disk_free(d);
    }
    free(w);
    gx = EXT;
}

/* A version 1 device loads: its extents read whole (one granule, written),
 * it stays version 1 (32-byte entries), and a first write there writes the
 * whole slot, so another extent's bytes still never show. */
static void test_v1(void)
{
    d = mock_disk_new(DISK_SIZE);
    format_v1(d, EXT);
    uint64_t toff, doff;
    layout_of(DISK_SIZE, EXT, 32, &toff, &doff);
    /* slot 0: extent 3/0; slot 1: free, old bytes; slot 2: extent 3/1 */
    uint8_t *w = abuf(EXT), *t = abuf(4096), *r = abuf(EXT);
    for (uint32_t s = 0; s < 3; s++) {
        fill(w, EXT, 90 + s, s, 0);
        CHECK_EQ(d->ops->pwrite(d, w, EXT, doff + s * EXT), 0);
    }
    raw_read(toff, t, 4096);
    put_be64(t, 3), put_be64(t + 8, 0), put_be64(t + 16, 1);
    put_be64(t + 64, 3), put_be64(t + 72, 1), put_be64(t + 80, 2);
    CHECK_EQ(d->ops->pwrite(d, t, 4096, toff), 0);
    reopen();
    CHECK_EQ(store_granule_size(st), EXT);
    uint64_t bm[4];
    CHECK_EQ(store_written(st, 3, 1, bm, 4), 1);
    CHECK_EQ(bm[0], 1);
    for (uint32_t s = 0; s < 3; s += 2) {
        fill(w, EXT, 90 + s, s, 0);
        CHECK_EQ(do_read(3, s / 2, 0, EXT, r), 0);
        CHECK_EQ(memcmp(r, w, EXT), 0);
    }
    fill(w, 4096, 95, 0, 0);
    CHECK_EQ(do_write(4, 0, 8192, 4096, w, 0), 0);
    check_only(4, 0, 8192, 4096, w);
    crash_reopen(100); /* not flushed: a hole */
    check_only(4, 0, 0, 0, w);
    CHECK_EQ(do_write(4, 0, 8192, 4096, w, 0), 0);
    CHECK_EQ(do_flush(), 0);
    crash_reopen(0);
    check_only(4, 0, 8192, 4096, w);
    /* still version 1: the superblock, and slot 1's entry 32 bytes in */
    raw_read(0, t, 4096);
    CHECK_EQ(get_be32(t + 8), 1);
    raw_read(toff, t, 4096);
    CHECK_EQ(get_be64(t + 32), 4);
    CHECK_EQ(get_be64(t + 64), 3);
    free(w);
    free(t);
    free(r);
    store_close(st);
    st = NULL;
    mock_disk_free(d);
}

/* ---- crash test ---- */

#define MAXC 24
struct cand {
    uint8_t n;
    uint32_t tag[MAXC];
    uint32_t latest;
};
/* The crash test's shape: extent size, extents used, v1 layout or not. */
static uint32_t cx = EXT, cnext = NEXT, csect = EXT / SECT;
static struct cand *cmodel;
#define model(e, s) cmodel[(e) * csect + (s)]

static void cand_add(struct cand *c, uint32_t tag)
{
    for (int i = 0; i < c->n; i++)
        if (c->tag[i] == tag)
            return;
    CHECK(c->n < MAXC);
    c->tag[c->n++] = tag;
}
static void cand_set(struct cand *c, uint32_t tag)
{
    c->n = 1;
    c->tag[0] = tag;
    c->latest = tag;
}

struct wop {
    struct done dn;
    int kind; /* 0 write, 1 free */
    uint64_t ext;
    uint32_t off, len, tag;
    int fua;
    uint8_t *buf;
};

static void crash_round(unsigned seed, int v1)
{
    srand(seed);
    d = mock_disk_new((uint64_t)(cnext + 8) * cx);
    if (v1)
        format_v1(d, cx);
    else
        CHECK_EQ(store_format(d, CLUSTER, 7, cx), 0);
    reopen();
    uint8_t *buf = abuf(cx);
    /* Phase A: fill 3/4 of the extents and free a third of those, so free
     * slots hold old bytes. */
    uint64_t nfull = cnext / 2, nfilled = cnext * 3 / 4;
    for (uint64_t e = 0; e < nfilled; e++) {
        fill(buf, cx, 1000000 + (uint32_t)e, e, 0);
        CHECK_EQ(do_write(1, e, 0, cx, buf, 0), 0);
    }
    for (uint64_t e = nfull; e < nfilled; e++)
        CHECK_EQ(do_free(1, e), 0);
    CHECK_EQ(do_flush(), 0);
    for (uint64_t e = 0; e < cnext; e++)
        for (uint32_t s = 0; s < csect; s++)
            cand_set(&model(e, s), e < nfull ? 1000000 + (uint32_t)e : 0);

    /* Phase B: batches of concurrent requests to distinct extents; crash at a
     * random point, possibly with requests in flight. */
    uint32_t tag = 1;
    int batches = 3 + rand() % 8;
    struct wop ops[4];
    struct done fdn;
    int crashed_mid = 0, last_nops = 0;
    for (int b = 0; b < batches && !crashed_mid; b++) {
        int nops = 1 + rand() % 4;
        last_nops = nops;
        uint64_t used_ext[4];
        for (int i = 0; i < nops; i++) {
            struct wop *o = &ops[i];
            memset(o, 0, sizeof(*o));
            uint64_t e;
            int dup;
            do {
                e = (uint64_t)(rand() % cnext);
                dup = 0;
                for (int j = 0; j < i; j++)
                    dup |= used_ext[j] == e;
            } while (dup);
            used_ext[i] = e;
            o->ext = e;
            o->kind = rand() % 10 == 0;
            o->fua = rand() % 4 == 0;
            o->tag = tag++;
            o->off = (uint32_t)(rand() % csect) * SECT;
            o->len = (uint32_t)(1 + rand() % 32) * SECT;
            if (o->off + o->len > cx)
                o->len = cx - o->off;
            o->buf = abuf(o->len);
            fill(o->buf, o->len, o->tag, e, o->off);
            /* an unacknowledged request may land: its values are possible */
            for (uint32_t s = 0; s < csect; s++) {
                if (o->kind == 1)
                    cand_add(&model(e, s), 0);
                else if (s * SECT >= o->off && s * SECT < o->off + o->len)
                    cand_add(&model(e, s), o->tag);
            }
            int r = o->kind ? store_free(st, 1, e, done_cb, &o->dn)
                            : store_write(st, 1, e, o->off, o->len, o->buf, o->fua ? STORE_FUA : 0,
                                          done_cb, &o->dn);
            CHECK(r >= 0);
            if (r == 1)
                o->dn.n = 1;
        }
        /* A flush alongside: it covers what completed before it (so a crash
         * may fall between its device sync and its table writes). */
        int flushing = rand() % 3 == 0;
        memset(&fdn, 0, sizeof(fdn));
        if (flushing)
            CHECK_EQ(store_flush(st, done_cb, &fdn), 0);
        if (rand() % 4 == 0) {
            /* crash with requests in flight */
            mock_disk_run_n(d, 1, rand() % 6);
            crashed_mid = 1;
        } else {
            mock_disk_run(d, 1);
        }
        for (int i = 0; i < nops; i++) {
            struct wop *o = &ops[i];
            if (!o->dn.n)
                continue; /* not acknowledged */
            CHECK_EQ(o->dn.res, 0);
            for (uint32_t s = 0; s < csect; s++) {
                struct cand *c = &model(o->ext, s);
                if (o->kind == 1) {
                    cand_set(c, 0); /* free is durable when acknowledged */
                } else if (s * SECT >= o->off && s * SECT < o->off + o->len) {
                    if (o->fua)
                        cand_set(c, o->tag);
                    else
                        c->latest = o->tag;
                }
            }
        }
        if (flushing && fdn.n && fdn.res == 0)
            for (uint64_t e = 0; e < cnext; e++) {
                int busy = 0;
                for (int i = 0; i < nops; i++)
                    busy |= used_ext[i] == e;
                for (uint32_t s = 0; s < csect && !busy; s++)
                    cand_set(&model(e, s), model(e, s).latest);
            }
        if (!crashed_mid && rand() % 5 == 0) {
            CHECK_EQ(do_flush(), 0);
            for (uint64_t e = 0; e < cnext; e++)
                for (uint32_t s = 0; s < csect; s++)
                    cand_set(&model(e, s), model(e, s).latest);
        }
        if (!crashed_mid)
            for (int i = 0; i < nops; i++)
                free(ops[i].buf);
    }
    mock_disk_crash(d, rand() % 101);
    /* The requests in flight at the power loss fail; once the store has
     * finished them it holds none, and their buffers can go. */
    mock_disk_run(d, 0);
    if (crashed_mid)
        for (int i = 0; i < last_nops; i++) {
            CHECK(ops[i].dn.n == 1);
            free(ops[i].buf);
        }
    store_close(st);
    st = NULL;
    mock_disk_revive(d);
    char msg[256];
    CHECK_EQ(store_open(d, CLUSTER, 7, &st, msg, sizeof(msg)), 0);
    uint8_t *want = abuf(SECT);
    for (uint64_t e = 0; e < cnext; e++) {
        CHECK_EQ(do_read(1, e, 0, cx, buf), 0);
        for (uint32_t s = 0; s < csect; s++) {
            struct cand *c = &model(e, s);
            int ok = 0;
            for (int i = 0; i < c->n && !ok; i++) {
                fill(want, SECT, c->tag[i], e, (uint64_t)s * SECT);
                ok = memcmp(want, buf + s * SECT, SECT) == 0;
            }
            if (!ok) {
                fprintf(stderr,
                        "seed %u (extent %u%s): extent %llu sector %u holds none of its %d "
                        "allowed values\n",
                        seed, cx, v1 ? ", v1" : "", (unsigned long long)e, s, c->n);
                exit(1);
            }
        }
    }
    free(want);
    free(buf);
    store_close(st);
    st = NULL;
    mock_disk_free(d);
}

/* store_busy() counts every request until its callback, wherever it waits:
 * on the disk, behind a slot being allocated, behind a table write. A flush
 * that completes says nothing about the requests around it (the SDS's
 * shutdown once closed the ring when its final flush completed, and lost
 * the writes and frees still in flight). */
static void test_busy(void)
{
    d = mock_disk_new(DISK_SIZE);
    char msg[256];
    CHECK_EQ(store_format(d, CLUSTER, 7, EXT), 0);
    CHECK_EQ(store_open(d, CLUSTER, 7, &st, msg, sizeof(msg)), 0);
    uint8_t *w = abuf(EXT);
    fill(w, EXT, 9, 1, 0);
    struct done wr = {0}, fr = {0}, fl = {0};
    CHECK_EQ(store_busy(st), 0);
    CHECK_EQ(store_write(st, 1, 1, 0, EXT, w, 0, done_cb, &wr), 0); /* allocates */
    CHECK_EQ(store_free(st, 1, 1, done_cb, &fr), 0);                /* waits for the slot */
    CHECK_EQ(store_busy(st), 2);
    CHECK_EQ(store_flush(st, done_cb, &fl), 0);
    CHECK_EQ(store_busy(st), 3);
    while (!fl.n)
        CHECK(mock_disk_run_n(d, 0, 1) > 0);
    CHECK(wr.n + fr.n < 2);
    CHECK(store_busy(st) > 0); /* the flush is done, the store is not */
    mock_disk_run(d, 0);
    CHECK_EQ(wr.n, 1);
    CHECK_EQ(wr.res, 0);
    CHECK_EQ(fr.n, 1);
    CHECK_EQ(fr.res, 0);
    CHECK_EQ(store_busy(st), 0);
    CHECK_EQ(store_allocated(st, 1, 1), 0);
    free(w);
    store_close(st);
    st = NULL;
    mock_disk_free(d);
}

static void crash_rounds(uint32_t ext, uint32_t next, int v1, unsigned rounds)
{
    cx = ext;
    cnext = next;
    csect = ext / SECT;
    cmodel = calloc((size_t)next * csect, sizeof(*cmodel));
    for (unsigned i = 0; i < rounds; i++)
        crash_round(i + 1, v1);
    free(cmodel);
    cmodel = NULL;
}

int main(int argc, char **argv)
{
    test_basic();
    test_busy();
    test_stale();
    test_fua(EXT);     /* 4 KiB granules */
    test_fua(2u << 20); /* 8 KiB granules: a FUA write into a filled one syncs it */
    test_free_fill();
    test_fill_conflict();
    test_v1();
    unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 300;
    crash_rounds(EXT, NEXT, 0, rounds);          /* 4 KiB granules */
    crash_rounds(2u << 20, 12, 0, rounds / 10);  /* 8 KiB granules */
    crash_rounds(EXT, NEXT, 1, rounds / 3);      /* version 1: one granule */
    printf("extent store: basic, busy, stale, fua, free-fill, fill-conflict, v1 ok; %u + %u + %u crash rounds ok\n",
           rounds, rounds / 10, rounds / 3);
    return 0;
}
