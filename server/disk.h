/* A device as the extent store sees it: async reads, writes and syncs, plus
 * synchronous I/O for attach-time work (format, load). Two implementations:
 * io_uring on an O_DIRECT fd (disk_uring.c) and, in tests, a mock that keeps
 * unsynced writes apart so a crash can drop them.
 *
 * Buffers must be 4096-aligned, offsets and lengths multiples of 4096.
 * A completion callback is never called from inside submit().
 */
#ifndef CAIRN_DISK_H
#define CAIRN_DISK_H

#include <stdint.h>

enum disk_op { DISK_READ, DISK_WRITE, DISK_SYNC };

struct disk_io;
typedef void (*disk_cb)(struct disk_io *io, int res); /* res: bytes, or -errno */

struct disk_io {
    int op;
    int dsync; /* WRITE: durable before completion (FUA) */
    uint64_t off;
    void *buf;
    uint32_t len;
    disk_cb cb;
    void *arg;
    struct disk *disk; /* set by the implementation's submit: whose stats count it */
};

struct disk;
struct disk_ops {
    int (*submit)(struct disk *d, struct disk_io *io); /* 0 or -errno (cb not called) */
    int (*pread)(struct disk *d, void *buf, uint32_t len, uint64_t off);
    int (*pwrite)(struct disk *d, const void *buf, uint32_t len, uint64_t off); /* durable */
    void (*close)(struct disk *d);
};

/* What was asked of a device since it was opened, kept by the io_uring
 * implementation on the loop (the mock keeps none): operations counted when
 * they complete, by kind, with their bytes if they succeeded; inflight is
 * what the device has now (submitted or queued for the next submit). */
struct disk_stats {
    uint64_t reads, writes, syncs;
    uint64_t read_bytes, write_bytes;
    uint64_t errors; /* operations that completed with an error */
    uint32_t inflight;
};

struct disk {
    const struct disk_ops *ops;
    uint64_t size;
    char name[256];
    struct disk_stats stats;
};

static inline int disk_submit(struct disk *d, struct disk_io *io)
{
    return d->ops->submit(d, io);
}

#endif
