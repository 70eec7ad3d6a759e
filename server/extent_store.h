/* The extent store of one device.
 *
 * On disk: a 4 KiB superblock, a table of 32-byte entries (one per extent
 * slot: volume id, extent index, generation), then the slots. An extent gets
 * a slot on its first write. The write order is what makes kill -9 and power
 * loss safe:
 *   1. the whole slot is written (data merged into zeroes) with FUA, so a
 *      slot that a table entry names never holds another extent's bytes;
 *   2. then the table entry is written (with FUA if the request had FUA;
 *      otherwise the next flush makes it durable, which is all NBD promises
 *      for a write without FUA);
 *   3. only then is the request completed.
 * Freeing a slot writes its cleared entry with FUA before the slot can be
 * reused. One table block has at most one write in flight; updates that
 * arrive meanwhile go in the next write of that block, so a later write can
 * never be overtaken by an older copy of the block.
 *
 * Requests need not be 4 KiB aligned: unaligned ones read-modify-write the
 * covering blocks. The caller must not issue overlapping writes to one extent
 * concurrently (the SDS orders them); the store itself orders allocation and
 * freeing of an extent against other requests to it.
 *
 * Return convention of the async calls: 0 = submitted, cb runs later;
 * 1 = completed now (cb not called); < 0 = -errno (cb not called).
 */
#ifndef CAIRN_EXTENT_STORE_H
#define CAIRN_EXTENT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "disk.h"

struct extent_store;
typedef void (*store_cb)(void *arg, int res);

#define STORE_FUA 1
#define STORE_THICK 2 /* may take a slot kept in reserve for thick volumes */

/* The largest extent size a device may be formatted with (a pool's). */
#define STORE_EXTENT_MAX (32u << 20)

/* Write a fresh superblock and an empty table (synchronous, durable). */
int store_format(struct disk *d, const char *cluster_id, uint32_t device_id, uint64_t extent_size);
/* Load a formatted device. -ENODATA: not formatted; -EINVAL: another cluster
 * or device id (msg says which); -EIO: unreadable. The store uses d until
 * store_close(). */
int store_open(struct disk *d, const char *cluster_id, uint32_t device_id,
               struct extent_store **out, char *msg, size_t msglen);
/* Close; no request may be in flight. Does not close the disk. */
void store_close(struct extent_store *st);
/* Requests accepted (their call returned 0) whose cb has not run yet:
 * on the device, or queued here behind a slot being allocated or freed or
 * behind a table block write. Each ends by itself while the loop runs; 0
 * means no completion of this store is pending (the daemon's shutdown
 * waits for that before it closes the ring). */
uint64_t store_busy(const struct extent_store *st);

/* 1 if the extent has a slot, else 0. */
int store_allocated(const struct extent_store *st, uint64_t vol, uint64_t ext);
void store_usage(const struct extent_store *st, uint64_t *used, uint64_t *total);
/* The extent (slot) size it was formatted with, in bytes. */
uint64_t store_extent_size(const struct extent_store *st);
/* Keep n free slots for thick volumes: a write without STORE_THICK gets
 * -ENOSPC rather than take one of them. */
void store_set_reserved(struct extent_store *st, uint64_t n);
/* Number of writes refused with -ENOSPC since open. */
uint64_t store_enospc(const struct extent_store *st);
/* Copy up to max extent indexes of a volume into out; returns the count. */
size_t store_list_volume(const struct extent_store *st, uint64_t vol, uint64_t *out, size_t max);

/* Iterate allocated extents from *cursor (start at 0): fills up to max pairs
 * and advances *cursor; returns the count (0 at the end). */
size_t store_list_all(const struct extent_store *st, uint64_t *cursor, uint64_t *vols,
                      uint64_t *exts, size_t max);

int store_read(struct extent_store *st, uint64_t vol, uint64_t ext, uint32_t off, uint32_t len,
               void *buf, store_cb cb, void *arg);
/* buf must stay valid until cb. -ENOSPC when a new slot is needed and none is free. */
int store_write(struct extent_store *st, uint64_t vol, uint64_t ext, uint32_t off, uint32_t len,
                const void *buf, int flags, store_cb cb, void *arg);
/* Deallocate the extent (it then reads as zeroes). */
int store_free(struct extent_store *st, uint64_t vol, uint64_t ext, store_cb cb, void *arg);
/* Everything completed before this call is durable when cb runs. */
int store_flush(struct extent_store *st, store_cb cb, void *arg);

#endif
