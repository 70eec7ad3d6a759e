/* A disk in memory that remembers which writes are not yet durable, so a
 * test can "crash" it: unsynced writes are dropped (or a random subset kept,
 * in order), FUA writes and synced writes survive. Completions run only when
 * the test calls mock_disk_run(), never inside submit(). */
#ifndef CAIRN_MOCK_DISK_H
#define CAIRN_MOCK_DISK_H

#include "disk.h"

struct disk *mock_disk_new(uint64_t size);
/* Complete every submitted request (in random order if shuffle). Returns the count. */
int mock_disk_run(struct disk *d, int shuffle);
/* Complete at most max requests (completions may submit more). */
int mock_disk_run_n(struct disk *d, int shuffle, int max);
/* Power loss: keep each unsynced write with probability keep_pct/100. The
 * requests in flight never reach the medium: like every request submitted
 * after the crash, they complete with -EIO when run, until the disk is
 * revived (so their owners can finish and free them). */
void mock_disk_crash(struct disk *d, int keep_pct);
/* Power back: requests work again. */
void mock_disk_revive(struct disk *d);
/* Fail every later request whose range overlaps [off, off+len). */
void mock_disk_fail(struct disk *d, uint64_t off, uint64_t len);
void mock_disk_free(struct disk *d);

#endif
