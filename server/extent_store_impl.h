/* The extent store's insides, shared by its three files and by nothing else:
 *   extent_layout.c  the on-disk layout: superblock, format, load; the
 *                    in-memory index of slots, the granule bitmaps and the
 *                    queries on them;
 *   extent_io.c      the request path: reads, writes, frees, re-keys and
 *                    flushes;
 *   extent_table.c   the table block writes that make them durable, and
 *                    the flush rounds.
 * The contract is in extent_store.h. */
#ifndef CAIRN_EXTENT_STORE_IMPL_H
#define CAIRN_EXTENT_STORE_IMPL_H

#include <stdint.h>

#include "disk.h"
#include "extent_store.h"
#include "pool.h"
#include "util.h"

#define SB_MAGIC "CAIRNDEV"
#define SB_VERSION 3      /* 3: version 2 and a log of first writes (extent_log.c) */
#define ENTRY_SIZE 64u    /* version 2, 3: volume, extent, generation, flags, bitmap */
#define ENTRY_SIZE_V1 32u /* version 1: volume, extent, generation */
#define ENTRY_BITMAP 32u  /* offset of the bitmap in a version 2 entry */
#define ENTRY_ALLOC 24u   /* version 3: the flags word holds the slot's allocation id */
#define LOG_KEY 16u       /* bytes of the log's hash key (in the superblock) */
#define BLK 4096u
#define NO_SLOT UINT32_MAX
#define BM_WORDS (STORE_GRANULES_MAX / 64)

enum slot_state { SLOT_FREE, SLOT_ALLOCATING, SLOT_READY, SLOT_FREEING };

struct sop;

/* One 4 KiB block of the on-disk table, as it is being written. Every table
 * write is FUA. A held block is not written until the flush round that
 * staged granule bits into it has synced the device (their data first).
 * Frees, FUA writes and flushes write blocks with FUA; a first write
 * without FUA writes its entry without (its data went with FUA). */
struct tblock {
    uint8_t inflight;
    uint8_t dirty;       /* another write must follow the one in flight */
    uint8_t dirty_dsync; /* ... with FUA */
    uint8_t held;        /* staged by a flush round whose device sync is in flight */
    uint8_t unsynced;    /* changed in memory since its last write started */
    uint8_t pend;        /* a slot in it has bits (or an entry) not staged yet */
    uint8_t round_cur;   /* the write in flight is one the flush round waits for */
    uint8_t round_next;
    struct sop *waiting; /* completed by the write in flight */
    struct sop *next;    /* completed by the next write */
    struct disk_io io;
    uint8_t *buf;
};

struct extent_store {
    struct disk *d;
    uint32_t version; /* of the on-disk layout: 1 (no bitmaps on disk), 2 or 3 (a log) */
    uint32_t esize;   /* bytes per table entry */
    uint64_t extent_size;
    uint64_t granule;  /* bytes per bit of an extent's bitmap */
    uint32_t ngran;    /* granules per extent, <= STORE_GRANULES_MAX */
    uint32_t bm_words; /* uint64_t words per slot in live[] */
    uint64_t nslots;
    int defer; /* store_set_defer() */
    uint64_t table_off, data_off;
    uint8_t *table;        /* the table as it may go to disk, 4096-aligned: only
                              entries and bits whose data is durable */
    uint64_t *live;        /* per slot: granules written (what reads see); the
                              table's bits are a subset, those made durable */
    uint8_t *state;        /* slot_state per slot */
    uint64_t *kvol, *kext; /* index keys per slot, apart from the table so an
                              entry can be cleared on disk while requests still find the slot */
    uint32_t *hnext;
    uint32_t *buckets;
    uint32_t nbuckets;
    uint32_t *freelist;
    uint64_t nfree;
    uint64_t gen;
    uint64_t enospc;
    uint64_t reserved;    /* free slots promised to thick volumes */
    struct sop **waiters; /* per slot: requests waiting for allocate/free/a fill */
    struct sop *fills;    /* writes of clear granules in flight (few: one list) */
    struct tblock *tblocks;
    uint64_t ntblocks;
    uint32_t *pblocks; /* blocks with pend set */
    uint64_t npblocks;
    uint32_t *hblocks; /* blocks held by the flush round */
    uint64_t nhblocks;
    struct sop *round;   /* the flushes the round in progress completes */
    struct sop *flushq;  /* flushes waiting for the next round */
    uint64_t round_left; /* table writes the round still waits for */
    int round_res;
    struct pool sops; /* struct sop: no allocation per request */
    /* The log of first writes (version 3, 4 KiB granules, not deferred;
     * extent_log.c): one record block per logged write, in a ring. */
    int logged;
    uint64_t log_off;
    uint32_t nlog;            /* record blocks */
    uint8_t log_key[LOG_KEY]; /* keys the records' hashes: another format's never validate */
    uint32_t log_head, log_tail, log_used;
    uint64_t *log_need;  /* per block: the flush round after which it is free (0: free,
                            UINT64_MAX: its write is in flight) */
    uint64_t log_seq;    /* records written since open */
    uint64_t *aid;       /* per slot: its allocation id (version 3) */
    uint64_t alloc_next; /* the next allocation id */
    uint64_t *dur;       /* per slot: the granules whose bits are on disk (logged) */
    uint64_t rounds_started, rounds_ok;
    uint64_t log_fallbacks; /* writes that found the ring full and went with FUA */
};

enum sop_kind { K_READ, K_WRITE, K_FREE, K_FLUSH, K_REKEY };

/* Where a request is (a write goes through several). */
enum sop_stage {
    SOP_START,       /* reads, frees stay here */
    SOP_RMW_READ,    /* unaligned: the covering blocks are being read */
    SOP_WRITE,       /* data being written (overwrite, merged, or a fill) */
    SOP_FUA_SYNC,    /* FUA on a granule an earlier write filled: device sync */
    SOP_ENTRY,       /* FUA: the entry with the new bits, being written */
    SOP_FLUSH_SYNC,  /* flush round: the device sync */
    SOP_FLUSH_TABLE, /* ... then the staged table blocks */
};

/* One request to the store; from st->sops. */
struct sop {
    struct extent_store *st;
    enum sop_kind kind;
    uint64_t vol, ext;
    uint32_t off, len;
    void *ubuf;
    int flags;
    store_cb cb;
    void *arg;
    uint32_t slot;
    uint8_t *bounce; /* rpc buffer, for unaligned I/O and partial granules */
    uint32_t span_off, span_len;
    uint32_t g0, g1;           /* granules the request touches */
    int fill;                  /* a write that fills clear granules (on st->fills) */
    int alloc;                 /* ... the slot's first write */
    int mixed;                 /* a read over written and clear granules */
    int needsync;              /* a FUA write over granules filled but not yet staged */
    int logged;                /* its data and its log record go at once (extent_log.c) */
    int lparts;                /* ... of which this many are still on the device */
    int lres;                  /* ... the first error of either */
    uint32_t lblk;             /* ... its record block */
    uint64_t rbits[BM_WORDS];  /* a read: the granules written when dispatched */
    uint8_t saved[ENTRY_SIZE]; /* a free: the entry, restored if its write fails */
    uint64_t nvol;             /* a rekey: the slot's new volume (layer) */
    enum sop_stage stage;
    struct disk_io io;
    struct disk_io lio; /* a logged write's record */
    uint8_t *lbuf;
    struct sop *next;
    struct sop *fnext; /* on st->fills */
};

static inline uint8_t *store_entry(const struct extent_store *st, uint32_t slot)
{
    return st->table + (uint64_t)slot * st->esize;
}
/* Where the slot's data starts on the device. */
static inline uint64_t store_slot_off(const struct extent_store *st, uint32_t slot)
{
    return st->data_off + (uint64_t)slot * st->extent_size;
}
static inline uint64_t *store_live(const struct extent_store *st, uint32_t slot)
{
    return st->live + (uint64_t)slot * st->bm_words;
}
static inline int bm_test(const uint64_t *bm, uint32_t g)
{
    return (int)((bm[g / 64] >> (g % 64)) & 1);
}

/* The slot holding (vol, ext) in the index, or NO_SLOT. */
uint32_t store_lookup(const struct extent_store *st, uint64_t vol, uint64_t ext);
void store_hash_insert(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext);
void store_hash_remove(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext);
/* Fill the in-memory table entry of slot with (vol, ext) and a new generation. */
void store_set_entry(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext);
/* Stage granules of bm into the slot's table entry, first filling the entry
 * (kvol, kext, a new generation) if it is cleared. Only for granules whose
 * data is durable, or will be before the entry's block is next written.
 * Version 1 has no bits on disk: an entry there means the whole slot. */
void store_stage(struct extent_store *st, uint32_t slot, const uint64_t *bm);
/* 1 if granule g's bit is in the slot's table entry (may go to disk). */
int store_staged(const struct extent_store *st, uint32_t slot, uint32_t g);
/* 1 if granule g of the slot reads as written (its live bit), else 0. This
 * is the query snapshot copy-on-write will ask of a layer. */
int store_granule_written(const struct extent_store *st, uint32_t slot, uint32_t g);
/* Zero the bytes of [off, off + len) of the extent, held in buf (buf[0] is
 * byte off), whose granules are clear in bm. */
void store_zero_clear(const struct extent_store *st, const uint64_t *bm, uint32_t off, uint32_t len,
                      uint8_t *buf);
/* Set or test granules [g0, g1] of a bitmap. */
void bm_set_range(uint64_t *bm, uint32_t g0, uint32_t g1);
int bm_all(const uint64_t *bm, uint32_t g0, uint32_t g1);
int bm_none(const uint64_t *bm, uint32_t g0, uint32_t g1);

/* The table block (of BLK bytes) that holds a slot's entry. */
static inline uint64_t store_slot_block(const struct extent_store *st, uint32_t slot)
{
    return (uint64_t)slot * st->esize / BLK;
}

/* ---- extent_io.c: the request machinery the table's writes complete ---- */

/* Complete op with res (its callback runs) and give it back. */
void store_op_finish(struct sop *op, int res);
/* Dispatch again the requests parked on slot (an allocation, a free or a
 * fill of it ended). */
void store_op_wake(struct extent_store *st, uint32_t slot);

/* ---- extent_table.c: table blocks and flush rounds ---- */

/* Block b holds bits or an entry a flush must write. */
void store_block_pend(struct extent_store *st, uint64_t b);
/* Write op's slot's table block (FUA if dsync), after the write of it in
 * flight if any; op completes (table_done) when its update is on disk. */
void store_table_update(struct sop *op, int dsync);
/* 1 if the block of slot's entry is on disk as it is in memory. */
int store_block_clean(const struct extent_store *st, uint32_t slot);
/* Start a flush round for the flushes queued in st->flushq. */
void store_round_start(struct extent_store *st);

/* ---- extent_log.c: the log of first writes ---- */

/* 1 if op (a write without FUA, its slot known) must have a record: it
 * touches a granule whose bit is not on disk. */
int store_log_needed(const struct sop *op);
/* Take a record block for op (op->logged set), or 0 if the ring is full
 * (then the write goes with FUA: its entry before it completes). */
int store_log_take(struct sop *op);
/* Submit op's record for the data it writes now: span_len bytes at
 * span_off of the extent, from buf (whole granules). 0 or -errno. */
int store_log_submit(struct sop *op, const uint8_t *buf, uint32_t span_off);
/* op's data and record are both on the device: on with the write (extent_io.c). */
void store_data_done(struct sop *op, int res);
/* op's data or record is done; 1 when both are (op->lres their result). */
int store_log_part(struct sop *op, int res);
/* op is done: its block is free after the next flush round. */
void store_log_release(struct sop *op);
/* A flush round ended with res: free the blocks it made obsolete. */
void store_log_round_end(struct extent_store *st, int res);
/* A FUA table write of block b completed: its bits are on disk. */
void store_log_block_durable(struct extent_store *st, uint64_t b, const uint8_t *buf);
/* At open: apply the records whose data is on the device (their hashes
 * match) and whose bits are not, and make that durable. 0 or -errno. */
int store_log_replay(struct extent_store *st, char *msg, size_t msglen);
/* The record blocks a device of this size gets (version 3). */
uint32_t store_log_blocks(uint64_t size);

#endif
