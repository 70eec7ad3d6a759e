/* The extent store's insides, shared by its two files and by nothing else:
 *   extent_layout.c  the on-disk layout: superblock, format, load; the
 *                    in-memory index of slots and the queries on it;
 *   extent_io.c      the request path: reads, writes, frees and flushes,
 *                    and the table block writes that make them durable.
 * The contract is in extent_store.h. */
#ifndef CAIRN_EXTENT_STORE_IMPL_H
#define CAIRN_EXTENT_STORE_IMPL_H

#include <stdint.h>

#include "disk.h"
#include "extent_store.h"
#include "pool.h"
#include "util.h"

#define SB_MAGIC "CAIRNDEV"
#define SB_VERSION 1
#define ENTRY_SIZE 32u
#define BLK 4096u
#define NO_SLOT UINT32_MAX

enum slot_state { SLOT_FREE, SLOT_ALLOCATING, SLOT_READY, SLOT_FREEING };

struct sop;

/* One 4 KiB block of the on-disk table, as it is being written. */
struct tblock {
    int inflight;
    int dirty;
    int dirty_dsync;
    struct sop *waiting; /* completed by the write in flight */
    struct sop *next;    /* completed by the next write */
    struct disk_io io;
    uint8_t *buf;
};

struct extent_store {
    struct disk *d;
    uint64_t extent_size;
    uint64_t nslots;
    uint64_t table_off, data_off;
    uint8_t *table;        /* in-memory copy of the on-disk table, 4096-aligned */
    uint8_t *state;        /* slot_state per slot */
    uint8_t *edirty;       /* entry written without FUA: a FUA write must also sync it */
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
    struct sop **waiters; /* per slot: requests waiting for allocate/free */
    struct tblock *tblocks;
    uint64_t ntblocks;
    struct pool sops; /* struct sop: no allocation per request */
};

enum sop_kind { K_READ, K_WRITE, K_FREE, K_FLUSH };

/* Where a request is (a write goes through several). */
enum sop_stage {
    SOP_START,       /* reads, frees, flushes stay here */
    SOP_ALLOC_DATA,  /* a new slot: the whole slot is being written with FUA */
    SOP_ALLOC_ENTRY, /* ... then its table entry */
    SOP_RMW_READ,    /* unaligned: the covering blocks are being read */
    SOP_RMW_WRITE,   /* ... and written back, merged */
    SOP_OVERWRITE,   /* aligned: written in place */
    SOP_ENTRY_SYNC,  /* FUA on an entry written without: that entry again, with FUA */
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
    uint8_t *bounce; /* rpc buffer, for unaligned I/O and a new slot's first write */
    uint32_t span_off, span_len;
    enum sop_stage stage;
    struct disk_io io;
    struct sop *next;
};

static inline uint8_t *store_entry(const struct extent_store *st, uint32_t slot)
{
    return st->table + (uint64_t)slot * ENTRY_SIZE;
}

/* The slot holding (vol, ext) in the index, or NO_SLOT. */
uint32_t store_lookup(const struct extent_store *st, uint64_t vol, uint64_t ext);
void store_hash_insert(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext);
void store_hash_remove(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext);
/* Fill the in-memory table entry of slot with (vol, ext) and a new generation. */
void store_set_entry(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext);

#endif
