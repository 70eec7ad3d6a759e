/* What the extent store's unit tests share: a mock disk and a store on it,
 * synchronous wrappers of the async calls, a data pattern, the layout. */
#ifndef CAIRN_STORE_TEST_H
#define CAIRN_STORE_TEST_H

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
static inline void done_cb(void *arg, int res)
{
    struct done *dn = arg;
    dn->n++;
    dn->res = res;
}

static inline void *abuf(size_t n)
{
    void *p;
    CHECK(posix_memalign(&p, 4096, n) == 0);
    return p;
}

/* store_set_defer() for every store the tests open */
static int defer_mode;

static inline void reopen(void)
{
    char msg[256];
    store_close(st);
    st = NULL;
    CHECK_EQ(store_open(d, CLUSTER, 7, &st, msg, sizeof(msg)), 0);
    store_set_defer(st, defer_mode);
}

static inline int sync_op(int r, struct done *dn)
{
    if (r == 1)
        return 0;
    if (r < 0)
        return r;
    mock_disk_run(d, 1);
    CHECK_EQ(dn->n, 1);
    return dn->res;
}

static inline int do_write(uint64_t vol, uint64_t ext, uint32_t off, uint32_t len, const void *buf,
                           int flags)
{
    struct done dn = {0};
    return sync_op(store_write(st, vol, ext, off, len, buf, flags, done_cb, &dn), &dn);
}
static inline int do_read(uint64_t vol, uint64_t ext, uint32_t off, uint32_t len, void *buf)
{
    struct done dn = {0};
    return sync_op(store_read(st, vol, ext, off, len, buf, done_cb, &dn), &dn);
}
static inline int do_free(uint64_t vol, uint64_t ext)
{
    struct done dn = {0};
    return sync_op(store_free(st, vol, ext, done_cb, &dn), &dn);
}
static inline int do_flush(void)
{
    struct done dn = {0};
    return sync_op(store_flush(st, done_cb, &dn), &dn);
}

static inline void fill(uint8_t *p, size_t n, uint32_t tag, uint64_t ext, uint64_t byte0)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t pos = byte0 + i;
        p[i] = tag ? (uint8_t)(hash_mix64(((uint64_t)tag << 40) ^ (ext << 24) ^ (pos / 8)) >>
                               (8 * (pos % 8)))
                   : 0;
    }
}

/* 1: the tests' devices are version 2 (no write log: a first write not
 * deferred fills its whole slot); format_dev() makes them. */
static int fmt_v2;

/* The write log's blocks on a device of this size (version 3). */
static inline uint64_t log_blocks_of(uint64_t size)
{
    uint64_t n = size / 128 / 4096;
    return n < 8 ? 8 : (n > 8192 ? 8192 : n);
}

/* Where a device of this size keeps its table and slots (extent_layout.c):
 * version 3 (64-byte entries) has the write log between them. */
static inline void layout_of(uint64_t size, uint64_t ext, uint32_t esize, uint64_t *toff,
                             uint64_t *doff)
{
    uint64_t n = (size - 4096) / (ext + esize);
    uint64_t lbytes = esize == 64 && !fmt_v2 ? log_blocks_of(size) * 4096 : 0;
    for (;;) {
        uint64_t tbytes = (n * esize + 4095) / 4096 * 4096;
        *toff = 4096;
        *doff = (4096 + tbytes + lbytes + ext - 1) / ext * ext;
        if (*doff + n * ext <= size)
            break;
        n--;
    }
}

static inline void raw_read(uint64_t off, void *buf, uint32_t len)
{
    CHECK_EQ(d->ops->pread(d, buf, len, off), 0);
}

/* A version 1 device as store_format wrote it before granules: 32-byte
 * entries (volume, extent, generation), no bitmaps, no granule size. */
static inline void format_v1(struct disk *disk, uint64_t ext)
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

/* A device as store_format writes it, or (fmt_v2) as it wrote version 2:
 * the same table, no write log, the slots from the first extent boundary
 * after the table. */
static inline void format_dev(struct disk *disk, uint64_t ext)
{
    CHECK_EQ(store_format(disk, CLUSTER, 7, ext), 0);
    if (!fmt_v2)
        return;
    uint64_t n = (disk->size - 4096) / (ext + 64);
    while ((4096 + (n * 64 + 4095) / 4096 * 4096 + ext - 1) / ext * ext + n * ext > disk->size)
        n--;
    uint8_t *b = abuf(4096);
    CHECK_EQ(disk->ops->pread(disk, b, 4096, 0), 0);
    put_be32(b + 8, 2);
    put_be64(b + 24, n);
    memset(b + 40, 0, 24);
    CHECK_EQ(disk->ops->pwrite(disk, b, 4096, 0), 0);
    free(b);
}

#endif
