/* Extent store granules: a reused slot's old bytes never show (before and
 * after a crash), FUA writes into fresh granules are durable, a free waits for
 * a fill in flight, two fills of one granule are ordered, a version 1
 * device loads and stays version 1, and the write log brings first writes
 * back after a kill -9. */
#include "store_test.h"

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
    format_dev(d, EXT);
    reopen();
    CHECK_EQ(store_granule_size(st), 4096);
    dirty_slots(1);
    int whole = !defer_mode && fmt_v2; /* a first write fills its slot */
    uint8_t *w = abuf(4096), *raw = abuf(EXT), *old = abuf(EXT);
    fill(w, 4096, 5, 5, 8192);
    CHECK_EQ(store_unflushed(st), 0);
    CHECK_EQ(do_write(2, 5, 8192, 4096, w, 0), 0);
    CHECK_EQ(store_unflushed(st), whole ? 0 : 1); /* deferred or logged: they wait for a flush */
    /* it went to slot 0: deferred or logged, its other blocks are still the
     * old extent's; else the whole slot was written (zeroes around the block) */
    uint64_t toff, doff;
    layout_of(DISK_SIZE, EXT, 64, &toff, &doff);
    raw_read(doff, raw, EXT);
    fill(old, EXT, 77, 0, 0);
    if (whole)
        memset(old, 0, EXT);
    CHECK_EQ(memcmp(raw, old, 8192), 0);
    CHECK_EQ(memcmp(raw + 8192, w, 4096), 0);
    CHECK_EQ(memcmp(raw + 12288, old + 12288, EXT - 12288), 0);
    uint64_t bm[4], bits = whole ? (1u << (EXT / 4096)) - 1 : 1u << 2;
    CHECK_EQ(store_written(st, 2, 5, bm, 4), EXT / 4096);
    CHECK_EQ(bm[0], bits);
    CHECK_EQ(store_written(st, 2, 6, bm, 4), 0);
    CHECK_EQ(store_written(st, 2, 5, bm, 0), -EINVAL);
    check_only(2, 5, 8192, 4096, w);
    /* crash before a flush, every write issued kept (what a kill -9 of the
     * daemon does): deferred, the extent is a hole; else it holds the block
     * (logged: the write log's record gives its bits back) */
    crash_reopen(100);
    CHECK_EQ(store_allocated(st, 2, 5), !defer_mode);
    check_only(2, 5, defer_mode ? 0 : 8192, defer_mode ? 0 : 4096, w);
    if (!defer_mode) {
        /* a power loss before a flush: the entry (written without FUA) or
         * the record may be lost, but never shows the old bytes */
        CHECK_EQ(do_free(2, 5), 0);
        CHECK_EQ(do_write(2, 5, 8192, 4096, w, 0), 0);
        crash_reopen(0);
        check_only(2, 5, store_allocated(st, 2, 5) ? 8192 : 0, store_allocated(st, 2, 5) ? 4096 : 0,
                   w);
    }
    /* again, flushed: only the block */
    CHECK_EQ(do_write(2, 5, 8192, 4096, w, 0), 0);
    CHECK_EQ(do_flush(), 0);
    CHECK_EQ(store_unflushed(st), 0);
    crash_reopen(0);
    check_only(2, 5, 8192, 4096, w);
    CHECK_EQ(store_written(st, 2, 5, bm, 4), EXT / 4096);
    CHECK_EQ(bm[0], bits);
    /* an unaligned write into a clear granule (deferred): merged into zeroes */
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
    format_dev(d, ext);
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
        format_dev(d, EXT);
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
        format_dev(d, gx);
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
    crash_reopen(100); /* not flushed: deferred, a hole; else the block */
    check_only(4, 0, defer_mode ? 0 : 8192, defer_mode ? 0 : 4096, w);
    if (!defer_mode)
        CHECK_EQ(do_free(4, 0), 0);
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

/* The write log (version 3, not deferred): more first writes at once than
 * the ring has blocks (the rest go with FUA), a re-key of bits not flushed
 * yet; after a kill -9 (every write issued kept) all of it reads back, under
 * the new key. */
static void test_log(void)
{
    d = mock_disk_new(DISK_SIZE);
    format_dev(d, EXT);
    reopen();
    enum { N = 12 }; /* the ring of a device this small has 8 blocks */
    uint8_t *w[N];
    struct done dn[N];
    for (int i = 0; i < N; i++) {
        w[i] = abuf(4096);
        fill(w[i], 4096, 40 + i, (uint64_t)i, 4096);
        memset(&dn[i], 0, sizeof(dn[i]));
        CHECK_EQ(store_write(st, 5, (uint64_t)i, 4096, 4096, w[i], 0, done_cb, &dn[i]), 0);
    }
    mock_disk_run(d, 1);
    for (int i = 0; i < N; i++)
        CHECK(dn[i].n == 1 && dn[i].res == 0);
    struct done rk = {0};
    CHECK_EQ(sync_op(store_rekey(st, 5, 3, 6, done_cb, &rk), &rk), 0);
    crash_reopen(100);
    for (int i = 0; i < N; i++)
        check_only(i == 3 ? 6 : 5, (uint64_t)i, 4096, 4096, w[i]);
    CHECK_EQ(store_allocated(st, 5, 3), 0);
    /* a power loss now loses nothing: the replay made it durable */
    crash_reopen(0);
    for (int i = 0; i < N; i++) {
        check_only(i == 3 ? 6 : 5, (uint64_t)i, 4096, 4096, w[i]);
        free(w[i]);
    }
    store_close(st);
    st = NULL;
    mock_disk_free(d);
}

int main(void)
{
    test_log();
    /* version 3: logged, then deferred; version 2: whole slots, deferred */
    for (int mode = 0; mode < 4; mode++) {
        fmt_v2 = mode >= 2;
        defer_mode = mode % 2;
        test_stale();
        test_fua(EXT);      /* 4 KiB granules */
        test_fua(2u << 20); /* 8 KiB granules: a FUA write into a filled one syncs it */
        test_free_fill();
        test_fill_conflict();
        test_v1();
    }
    printf("extent store granules: log, stale, fua, free-fill, fill-conflict, v1 ok, "
           "logged, deferred, version 2 both ways\n");
    return 0;
}
