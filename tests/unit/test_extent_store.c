/* Extent store: round trips, holes, unaligned I/O, ENOSPC, device errors,
 * and a crash test on a mock disk that drops unsynced writes: after any crash, every sector holds a
 * value the write ordering allows (never another extent's bytes, never an acknowledged-durable
 * write lost), with 4 KiB granules and with granules larger than a block (2 MiB extents: 8 KiB), on
 * version 2 and 1 devices (more on granules: test_extent_granules.c). */
#include "store_test.h"

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
#define model(e, s) cmodel[(e)*csect + (s)]

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
        format_dev(d, cx);
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
    /* Some crashes are a kill -9 of the daemon: every write issued stays
     * on the device, and then every acknowledged write must read back
     * (unless deferred: its bits are in memory until a flush). */
    int kill9 = !crashed_mid && !defer_mode && rand() % 3 == 0;
    mock_disk_crash(d, kill9 ? 100 : rand() % 101);
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
                if (kill9 && c->tag[i] != c->latest)
                    continue;
                fill(want, SECT, c->tag[i], e, (uint64_t)s * SECT);
                ok = memcmp(want, buf + s * SECT, SECT) == 0;
            }
            if (!ok) {
                fprintf(stderr,
                        "seed %u (extent %u%s%s): extent %llu sector %u holds none of its %d "
                        "allowed values%s\n",
                        seed, cx, v1 ? ", v1" : "", fmt_v2 ? ", v2" : "", (unsigned long long)e, s,
                        c->n, kill9 ? " (kill -9: the last acknowledged)" : "");
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
    unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 300;
    for (defer_mode = 0; defer_mode < 2; defer_mode++) {
        crash_rounds(EXT, NEXT, 0, rounds);         /* 4 KiB granules (logged) */
        crash_rounds(2u << 20, 12, 0, rounds / 10); /* 8 KiB granules (not logged) */
        crash_rounds(EXT, NEXT, 1, rounds / 3);     /* version 1: one granule */
        fmt_v2 = 1;
        crash_rounds(EXT, NEXT, 0, rounds / 3); /* version 2: no log */
        fmt_v2 = 0;
    }
    printf("extent store: basic, busy ok; %u + %u + %u + %u crash rounds ok, logged, deferred "
           "and neither\n",
           rounds, rounds / 10, rounds / 3, rounds / 3);
    return 0;
}
