/* The extent store's table blocks and flush rounds: the writes of the
 * on-disk table that make allocations, granule bits and frees durable, one
 * write in flight per block, and the rounds by which a flush syncs the
 * device and then writes the blocks holding bits staged since the last
 * one (extent_store.h gives the order). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extent_store_impl.h"
#include "log.h"

/* ---- table blocks ---- */

static void table_write_cb(struct disk_io *io, int res);
static void round_block_done(struct extent_store *st, int res);

/* The next flush round writes block b (its slots have bits not staged). */
void store_block_pend(struct extent_store *st, uint64_t b)
{
    struct tblock *tb = &st->tblocks[b];
    if (!tb->pend) {
        tb->pend = 1;
        st->pblocks[st->npblocks++] = (uint32_t)b;
    }
}

/* Start the block's next write if it needs one and may have one: never two
 * in flight, never while a flush round holds it. */
static void table_kick(struct extent_store *st, uint64_t b)
{
    struct tblock *tb = &st->tblocks[b];
    if (tb->inflight || tb->held || !tb->dirty)
        return;
    if (!tb->buf && posix_memalign((void **)&tb->buf, BLK, BLK))
        abort();
    memcpy(tb->buf, st->table + b * BLK, BLK);
    int dsync = tb->dirty_dsync;
    tb->inflight = 1;
    tb->dirty = 0;
    tb->dirty_dsync = 0;
    tb->unsynced = !dsync; /* what a write without FUA writes is not durable yet */
    tb->waiting = tb->next;
    tb->next = NULL;
    tb->round_cur = tb->round_next;
    tb->round_next = 0;
    tb->io = (struct disk_io){.op = DISK_WRITE,
                              .dsync = dsync,
                              .off = st->table_off + b * BLK,
                              .buf = tb->buf,
                              .len = BLK,
                              .cb = table_write_cb,
                              .arg = st};
    int r = disk_submit(st->d, &tb->io);
    if (r < 0) {
        /* Never complete from inside the caller (a completion or a fresh
         * request that returns 0), and never drop an ordered write. */
        log_error("%s: table write submit failed: %s", st->d->name, strerror(-r));
        abort();
    }
}

/* Queue op to complete once the table block holding its slot's entry is
 * written as it is now in memory (with FUA if dsync). */
void store_table_update(struct sop *op, int dsync)
{
    struct extent_store *st = op->st;
    uint64_t b = store_slot_block(st, op->slot);
    struct tblock *tb = &st->tblocks[b];
    tb->unsynced = 1;
    op->next = tb->next;
    tb->next = op;
    tb->dirty = 1;
    tb->dirty_dsync |= (uint8_t)dsync;
    table_kick(st, b);
}

/* The block's entries in memory are on disk: nothing changed since its last
 * write, which completed. */
int store_block_clean(const struct extent_store *st, uint32_t slot)
{
    const struct tblock *tb = &st->tblocks[store_slot_block(st, slot)];
    return !tb->unsynced && !tb->inflight && !tb->held && !tb->dirty;
}

static void table_done(struct sop *op, int res);

static void table_write_cb(struct disk_io *io, int res)
{
    struct extent_store *st = io->arg;
    uint64_t b = (io->off - st->table_off) / BLK;
    struct tblock *tb = &st->tblocks[b];
    struct sop *w = tb->waiting;
    int round = tb->round_cur;
    tb->waiting = NULL;
    tb->inflight = 0;
    tb->round_cur = 0;
    int r = res == BLK ? 0 : (res < 0 ? res : -EIO);
    if (r < 0) {
        log_error("%s: extent table write failed: %s", st->d->name, strerror(-r));
        tb->unsynced = 1;
        store_block_pend(st, b); /* the next flush writes it again */
    } else if (io->dsync) {
        store_log_block_durable(st, b, tb->buf); /* before the next write reuses buf */
    }
    table_kick(st, b);
    while (w) {
        struct sop *next = w->next;
        w->next = NULL;
        table_done(w, r);
        w = next;
    }
    if (round)
        round_block_done(st, r);
}

static void table_done(struct sop *op, int res)
{
    struct extent_store *st = op->st;
    uint32_t slot = op->slot;
    if (op->kind == K_WRITE || op->kind == K_REKEY) {
        /* FUA write: its entry and bits are durable now too (or failed);
         * a rekey's entry is durable (a failed write is retried by the next
         * flush: the slot has its new key in memory) */
        store_op_finish(op, res);
        return;
    }
    /* free: the cleared entry is durable; the slot may be reused */
    if (res < 0) {
        /* keep the extent: restore its entry in memory */
        memcpy(store_entry(st, slot), op->saved, st->esize);
        st->state[slot] = SLOT_READY;
        store_block_pend(st, store_slot_block(st, slot));
    } else {
        store_hash_remove(st, slot, op->vol, op->ext);
        memset(store_live(st, slot), 0, st->bm_words * sizeof(uint64_t));
        memset(st->dur + (uint64_t)slot * st->bm_words, 0, st->bm_words * sizeof(uint64_t));
        st->state[slot] = SLOT_FREE;
        st->freelist[st->nfree++] = slot;
    }
    store_op_finish(op, res);
    store_op_wake(st, slot);
}

/* ---- flush rounds ----
 * One round at a time: stage the bits of every pending block into the
 * table and hold those blocks (no write of them may start), sync the device
 * (the data of the staged bits, all written before the sync began), then
 * write the held blocks with FUA. Flushes that arrive during a round wait
 * for the next one. */

static void round_synced(struct extent_store *st, int res);

/* The round's device sync is done (len 0: a sync returns 0 or -errno). */
static void sync_cb(struct disk_io *io, int res)
{
    struct sop *op = io->arg;
    struct extent_store *st = op->st;
    int r = res == (int)io->len ? 0 : (res < 0 ? res : -EIO);
    if (r < 0)
        log_error("%s: sync failed: %s", st->d->name, strerror(-r));
    round_synced(st, r);
}

void store_round_start(struct extent_store *st)
{
    st->round = st->flushq;
    st->flushq = NULL;
    st->round_res = 0;
    st->rounds_started++;
    uint32_t per = BLK / st->esize;
    for (uint64_t i = 0; i < st->npblocks; i++) {
        uint32_t b = st->pblocks[i];
        struct tblock *tb = &st->tblocks[b];
        tb->pend = 0;
        for (uint32_t s = b * per; s < (b + 1) * per && s < st->nslots; s++)
            if (st->state[s] == SLOT_READY)
                store_stage(st, s, store_live(st, s));
        tb->unsynced = 1;
        if (!tb->held) {
            tb->held = 1;
            st->hblocks[st->nhblocks++] = b;
        }
    }
    st->npblocks = 0;
    struct sop *op = st->round;
    op->stage = SOP_FLUSH_SYNC;
    op->io = (struct disk_io){.op = DISK_SYNC, .cb = sync_cb, .arg = op};
    int r = disk_submit(st->d, &op->io);
    if (r < 0) {
        log_error("%s: sync submit failed: %s", st->d->name, strerror(-r));
        abort(); /* as for a table write: the round's flushes must complete later */
    }
}

static void round_end(struct extent_store *st)
{
    struct sop *w = st->round;
    int res = st->round_res;
    st->round = NULL;
    store_log_round_end(st, res);
    while (w) {
        struct sop *next = w->next;
        store_op_finish(w, res);
        w = next;
    }
    if (st->flushq && !st->round)
        store_round_start(st);
}

static void round_block_done(struct extent_store *st, int res)
{
    if (res < 0 && st->round_res == 0)
        st->round_res = res;
    if (--st->round_left == 0)
        round_end(st);
}

/* The round's device sync is done: the held blocks may be written. */
static void round_synced(struct extent_store *st, int res)
{
    uint64_t n = st->nhblocks;
    st->nhblocks = 0;
    if (res < 0)
        st->round_res = res;
    st->round_left = 1; /* ours, so that no block ends the round under us */
    for (uint64_t i = 0; i < n; i++) {
        uint32_t b = st->hblocks[i];
        struct tblock *tb = &st->tblocks[b];
        tb->held = 0;
        if (res < 0) {
            /* The staged bits stay in memory; the next round syncs before
             * it writes them (a later free in the block may write them
             * first: the device failed a sync, its durability is lost). */
            store_block_pend(st, b);
            table_kick(st, b);
            continue;
        }
        st->round_left++;
        tb->round_next = 1;
        tb->dirty = 1;
        tb->dirty_dsync = 1;
        table_kick(st, b);
    }
    round_block_done(st, 0);
}
