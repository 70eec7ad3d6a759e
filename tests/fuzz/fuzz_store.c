/* The extent store's loader: the input is the start of a device (its
 * superblock and extent table) on a mock disk; store_open must load it or
 * refuse it, and a loaded store must answer its queries and take a write. */
#include <stdlib.h>
#include <string.h>

#include "extent_store.h"
#include "log.h"
#include "mock_disk.h"

static void done_cb(void *arg, int res)
{
    (void)arg, (void)res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_init("fuzz", -1);
        init = 1;
    }
    if (size < 1)
        return 0;
    uint64_t dsize = (uint64_t)(1 + data[0] % 8) << 20; /* 1 to 8 MiB */
    data++, size--;
    struct disk *d = mock_disk_new(dsize);
    static uint8_t blk[4096] __attribute__((aligned(4096)));
    for (size_t off = 0; off < size && off < dsize; off += 4096) {
        size_t k = size - off < 4096 ? size - off : 4096;
        memset(blk, 0, sizeof(blk));
        memcpy(blk, data + off, k);
        d->ops->pwrite(d, blk, 4096, off);
    }
    struct extent_store *st;
    char msg[256];
    if (store_open(d, "fuzz", 1, &st, msg, sizeof(msg)) == 0) {
        uint64_t used, total, cur = 0, vols[64], exts[64];
        store_usage(st, &used, &total);
        while (store_list_all(st, &cur, vols, exts, 64) > 0)
            store_allocated(st, vols[0], exts[0]);
        store_list_volume(st, 1, vols, 64);
        if (store_write(st, 7, 0, 0, 4096, blk, STORE_FUA, done_cb, NULL) == 0)
            mock_disk_run(d, 0);
        mock_disk_run(d, 0);
        store_close(st);
    }
    mock_disk_free(d);
    return 0;
}
