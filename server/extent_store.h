/* The extent store of one device.
 *
 * On disk (layout version 3): a 4 KiB superblock (it records the version,
 * the granule size and the write log's size and hash key), a table of
 * 64-byte entries (one per extent slot: volume id, extent index,
 * generation, the slot's allocation id, a 32-byte bitmap of written
 * granules), the write log, then the slots. A granule is max(4 KiB, extent
 * size / 256), so an extent has at most 256. An extent gets a slot on its
 * first write.
 *
 * The invariant: a granule whose bit is set on disk holds data written to
 * this extent since its slot was allocated; a granule whose bit is clear
 * reads as zeroes without device I/O. So another extent's old bytes in a
 * reused slot are never visible. The write order that keeps it across
 * kill -9 and power loss (docs/extent-store.md):
 *   - logged (the default with 4 KiB granules on version 3): a write
 *     without FUA over granules whose bits are not on disk writes its data
 *     and a record of it (the granules' keyed hashes) at once, and completes
 *     when both are on the device; the bits go to the table at the next
 *     flush round (device sync, then the table blocks with FUA). After a
 *     kill -9, store_open sets the bits of every record whose data hashes
 *     as it says; after a power loss that lost the data, none;
 *   - not logged (version 2, larger granules, the log's ring full): a write
 *     that touches clear granules writes them whole with FUA and sets their
 *     bits in memory (reads see them from then on); then the entry with its
 *     bits is written before the request completes. Since that costs a FUA
 *     write and an entry write per fill, an allocating write there fills
 *     the whole slot (as version 1 did);
 *   - or, deferred (store_set_defer): a write without FUA fills only the
 *     granules it touches, without FUA, and completes; their bits go to disk
 *     at the next flush. Until then a kill -9 of the daemon loses them, as a
 *     power loss would;
 *   - writes to set granules are overwrites in place (with FUA if asked; a
 *     FUA write whose entry is not yet durable writes it too);
 *   - freeing a slot writes its cleared entry with FUA before the slot can be
 *     reused.
 * Table writes are FUA but a first write's without FUA (not logged). One
 * table block has at most one write in flight;
 * updates that arrive meanwhile go in the next write of that block, so a
 * later write can never be overtaken by an older copy of the block.
 *
 * Version 1 devices (32-byte entries, no bitmaps) load with every granule of
 * an allocated extent written and a granule the size of the extent: a first
 * write there writes the whole slot, as version 1 always did. Version 2
 * devices (no log) load and stay version 2.
 *
 * Requests need not be 4 KiB aligned: unaligned ones read-modify-write the
 * covering blocks. The caller must not issue overlapping writes to one extent
 * concurrently (the SDS orders them); the store itself orders allocation and
 * freeing of an extent, and writes that fill one clear granule, against other
 * requests to it.
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
/* A first write fills only the granules it touches, never the whole slot:
 * for a layer over another (docs/snapshots.md), whose clear granules reads
 * take from the layer under it, and for rebuild copies, which keep the
 * source's bitmap. */
#define STORE_GRANULES 4

/* The largest extent size a device may be formatted with (a pool's). */
#define STORE_EXTENT_MAX (32u << 20)
/* Granules per extent at most (bits in an entry's bitmap). */
#define STORE_GRANULES_MAX 256u

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
/* The granule size, in bytes: extent size / granule size granules per extent. */
uint64_t store_granule_size(const struct extent_store *st);
/* The extent's written granules as reads see them: bit g of bm[g / 64] is
 * granule g (bm has nwords words, all written). Returns the number of
 * granules per extent, 0 if the extent has no slot (bm all clear), -EINVAL
 * if nwords is too small. */
int store_written(const struct extent_store *st, uint64_t vol, uint64_t ext, uint64_t *bm,
                  size_t nwords);
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
/* Give the slot of (vol, ext), data and bitmap, to (nvol, ext), which
 * must have none (-EEXIST): a snapshot's layer merged into the one above it
 * (docs/snapshots.md). Its entry is written with FUA; until then a crash
 * leaves the old key, and the merge is done again. 1: (vol, ext) has no slot. */
int store_rekey(struct extent_store *st, uint64_t vol, uint64_t ext, uint64_t nvol, store_cb cb,
                void *arg);
/* on = 1: defer a first write's bits to the next flush (see above); 0, the
 * default: log them (version 3, 4 KiB granules) or write them before the
 * request completes. Set before any request. */
void store_set_defer(struct extent_store *st, int on);
/* 1 if first writes go through the write log. */
int store_logged(const struct extent_store *st);
/* Writes that found the write log's ring full (they went with FUA). */
uint64_t store_log_fallbacks(const struct extent_store *st);
/* Table blocks holding bits or entries that only a flush will write (0:
 * none; always 0 unless deferred or logged, but after a failed table
 * write). Deferred, a kill -9 of the daemon loses them until then, like a
 * power loss; logged, the log brings them back, but its ring fills: the SDS
 * flushes a store that has any once a second (flush.c). */
uint64_t store_unflushed(const struct extent_store *st);
/* Everything completed before this call is durable when cb runs: a device
 * sync, then the table blocks with the bits and entries written since the
 * last flush (FUA), when there are any. */
int store_flush(struct extent_store *st, store_cb cb, void *arg);

#endif
