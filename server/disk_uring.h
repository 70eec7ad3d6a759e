/* io_uring disks: one ring per event loop; completions arrive on an eventfd
 * that the loop polls, and submissions queued during a loop iteration go to
 * the kernel in one io_uring_submit() from a check handle. */
#ifndef CAIRN_DISK_URING_H
#define CAIRN_DISK_URING_H

#include <uv.h>

#include "disk.h"

struct uring_ctx;

int uring_ctx_init(uv_loop_t *loop, unsigned entries, struct uring_ctx **out);
/* Stop watching and free once no I/O is in flight (the caller ensures that:
 * a completion that arrives later is never delivered, so its request would
 * be lost, and the kernel may still be writing into its buffer). */
void uring_ctx_close(struct uring_ctx *u);
/* Operations on the ring: queued for the next submit or submitted and not
 * yet completed. */
unsigned uring_ctx_inflight(const struct uring_ctx *u);

/* Open a block device or a preallocated file with O_DIRECT. 0 or -errno. */
int disk_uring_open(struct uring_ctx *u, const char *path, struct disk **out);

/* Size of a path (file or block device) without opening it for I/O. */
int disk_probe_size(const char *path, uint64_t *size);

#endif
