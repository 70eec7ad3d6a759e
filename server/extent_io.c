/* The extent store's request path: reads (clear granules read as zeroes),
 * writes (allocating a slot on an extent's first write, filling clear
 * granules whole, reading-modifying-writing unaligned ranges), frees,
 * re-keys and flushes. The table block writes that make allocations, bits
 * and frees durable, and the flush rounds, are extent_table.c's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extent_store_impl.h"
#include "log.h"
#include "rpc.h"

/* ---- request machinery ---- */

static int dispatch(struct sop *op);
static void data_cb(struct disk_io *io, int res);
static int submit_data(struct sop *op, uint32_t off, void *buf, uint32_t len, int dsync);

/* Buffers and request objects come from caches (rpc_buf_alloc's size
 * classes, the store's pool): a request allocates nothing in steady state. */
static void sop_put(struct sop *op)
{
    store_log_release(op);
    rpc_buf_free(op->lbuf);
    rpc_buf_free(op->bounce);
    pool_put(&op->st->sops, op);
}

void store_op_finish(struct sop *op, int res)
{
    store_log_release(op);
    rpc_buf_free(op->lbuf);
    op->lbuf = NULL;
    rpc_buf_free(op->bounce);
    op->bounce = NULL;
    op->cb(op->arg, res);
    pool_put(&op->st->sops, op);
}

/* Re-run the requests that waited for a slot to settle. */
void store_op_wake(struct extent_store *st, uint32_t slot)
{
    struct sop *w = st->waiters[slot];
    st->waiters[slot] = NULL;
    while (w) {
        struct sop *next = w->next;
        w->next = NULL;
        int r = dispatch(w);
        if (r != 0)
            store_op_finish(w, r > 0 ? 0 : r);
        w = next;
    }
}

static void park(struct sop *op, uint32_t slot)
{
    op->next = op->st->waiters[slot];
    op->st->waiters[slot] = op;
}

/* ---- data ---- */

static void fill_unlink(struct sop *op)
{
    struct sop **pp = &op->st->fills;
    while (*pp != op)
        pp = &(*pp)->fnext;
    *pp = op->fnext;
    op->fnext = NULL;
}

/* A FUA write's data is on the device: make its bits and entry durable. */
static void fua_entry(struct sop *op)
{
    struct extent_store *st = op->st;
    uint64_t bm[BM_WORDS] = {0};
    bm_set_range(bm, op->g0, op->g1);
    int staged = 1;
    for (uint32_t g = op->g0; g <= op->g1 && staged; g++)
        staged = store_staged(st, op->slot, g);
    if (staged && store_block_clean(st, op->slot)) {
        store_op_finish(op, 0);
        return;
    }
    store_stage(st, op->slot, bm);
    op->stage = SOP_ENTRY;
    store_table_update(op, op->flags & STORE_FUA);
}

/* A fill (maybe an allocation) that could not be submitted: undo it. */
static void fill_abort(struct sop *op)
{
    struct extent_store *st = op->st;
    fill_unlink(op);
    op->fill = 0;
    if (op->alloc) {
        store_hash_remove(st, op->slot, op->vol, op->ext);
        st->state[op->slot] = SLOT_FREE;
        st->freelist[st->nfree++] = op->slot;
        op->alloc = 0;
    }
}

static void write_done(struct sop *op, int r)
{
    struct extent_store *st = op->st;
    uint32_t slot = op->slot;
    int woke = op->fill;
    if (op->fill) {
        fill_unlink(op);
        op->fill = 0;
        if (r == 0)
            bm_set_range(store_live(st, slot), op->g0, op->g1);
    }
    if (op->alloc) {
        op->alloc = 0;
        if (r == 0) {
            st->state[slot] = SLOT_READY;
        } else {
            store_hash_remove(st, slot, op->vol, op->ext);
            st->state[slot] = SLOT_FREE;
            st->freelist[st->nfree++] = slot;
        }
    }
    /* New bits go to the table now with FUA, or without it when the data
     * went with FUA (neither deferred nor logged); else the next flush
     * writes them. */
    int entry = r == 0 && ((op->flags & STORE_FUA) || (woke && !st->defer && !op->logged));
    if (!entry) {
        if (r == 0 && woke)
            store_block_pend(st, store_slot_block(st, slot));
        store_op_finish(op, r);
    } else if (op->needsync) {
        /* it touched granules an earlier write filled: their data first */
        op->stage = SOP_FUA_SYNC;
        op->io = (struct disk_io){.op = DISK_SYNC, .cb = data_cb, .arg = op};
        int s = disk_submit(st->d, &op->io);
        if (s < 0)
            store_op_finish(op, s);
    } else {
        fua_entry(op);
    }
    if (woke)
        store_op_wake(st, slot);
}

/* Data goes with FUA if asked, and a fill's unless its bits are deferred
 * or logged: its entry follows at once, and must never be durable before
 * it. */
static int data_fua(const struct sop *op)
{
    return (op->flags & STORE_FUA) || (op->fill && !op->st->defer && !op->logged);
}

void store_data_done(struct sop *op, int res)
{
    write_done(op, res);
}

static int rekey_now(struct sop *op);

static void data_cb(struct disk_io *io, int res)
{
    struct sop *op = io->arg;
    struct extent_store *st = op->st;
    int r = res == (int)io->len ? 0 : (res < 0 ? res : -EIO);
    if (r < 0)
        log_error("%s: %s of %u bytes at %llu failed: %s", st->d->name,
                  io->op == DISK_READ ? "read" : (io->op == DISK_SYNC ? "sync" : "write"), io->len,
                  (unsigned long long)io->off, strerror(-r));
    if (op->kind == K_REKEY) {
        /* the device sync before a re-key of bits only in memory */
        if (r == 0)
            r = rekey_now(op);
        if (r != 0)
            store_op_finish(op, r > 0 ? 0 : r);
        return;
    }
    if (op->kind == K_READ) {
        if (r == 0 && op->bounce)
            memcpy(op->ubuf, op->bounce + (op->off - op->span_off), op->len);
        if (r == 0 && op->mixed)
            store_zero_clear(st, op->rbits, op->off, op->len, op->ubuf);
        store_op_finish(op, r);
        return;
    }
    /* K_WRITE */
    if (op->stage == SOP_RMW_READ) {
        /* covering blocks read; clear granules in it are zeroes; merge, write */
        if (r < 0) {
            write_done(op, r);
            return;
        }
        if (op->fill)
            store_zero_clear(st, store_live(st, op->slot), op->span_off, op->span_len, op->bounce);
        memcpy(op->bounce + (op->off - op->span_off), op->ubuf, op->len);
        op->stage = SOP_WRITE;
        int s = submit_data(op, op->span_off, op->bounce, op->span_len, data_fua(op));
        if (s < 0)
            write_done(op, s);
        return;
    }
    if (op->stage == SOP_FUA_SYNC) {
        if (r < 0)
            store_op_finish(op, r);
        else
            fua_entry(op);
        return;
    }
    /* SOP_WRITE: data written (a logged write: and its record?) */
    if (op->logged && !store_log_part(op, r))
        return;
    write_done(op, op->logged ? op->lres : r);
}

static int submit_io(struct sop *op, int dop, uint64_t off, void *buf, uint32_t len, int dsync)
{
    op->io = (struct disk_io){
        .op = dop, .dsync = dsync, .off = off, .buf = buf, .len = len, .cb = data_cb, .arg = op};
    return disk_submit(op->st->d, &op->io);
}

/* Write len bytes of buf at off of the op's slot; a logged write's record
 * goes beside it (both whole granules). */
static int submit_data(struct sop *op, uint32_t off, void *buf, uint32_t len, int dsync)
{
    int r = submit_io(op, DISK_WRITE, store_slot_off(op->st, op->slot) + off, buf, len, dsync);
    if (r < 0 || !op->logged)
        return r;
    op->lparts = 1;
    int s = store_log_submit(op, buf, off);
    if (s < 0)
        op->lres = s; /* the write fails when its data is written */
    return 0;
}

static int aligned(const struct sop *op)
{
    return op->off % BLK == 0 && op->len % BLK == 0 && ((uintptr_t)op->ubuf % BLK) == 0;
}

static int prepare_bounce(struct sop *op, uint32_t s0, uint32_t s1)
{
    op->span_off = s0;
    op->span_len = s1 - s0;
    rpc_buf_free(op->bounce);
    op->bounce = rpc_buf_alloc(op->span_len);
    return op->bounce ? 0 : -ENOMEM;
}

static uint32_t up(uint32_t x, uint64_t a)
{
    return (uint32_t)((x + a - 1) / a * a);
}

/* A write of clear granules of the slot is in flight over [g0, g1]. */
static int fill_conflict(const struct sop *op)
{
    for (const struct sop *f = op->st->fills; f; f = f->fnext)
        if (f->slot == op->slot && f->g0 <= op->g1 && op->g0 <= f->g1)
            return 1;
    return 0;
}

/* A write touching clear granules writes them whole: the span runs to the
 * granule edge where the edge granule is clear (zeroes), to the 4 KiB edge
 * where it is written (read-modify-write if unaligned). */
static int start_fill(struct sop *op)
{
    struct extent_store *st = op->st;
    const uint64_t *live = store_live(st, op->slot);
    uint64_t gs = st->granule;
    int hc = !bm_test(live, op->g0), tc = !bm_test(live, op->g1);
    uint32_t s0 = hc ? (uint32_t)(op->g0 * gs) : op->off / BLK * BLK;
    uint32_t s1 = tc ? (uint32_t)((op->g1 + 1) * gs) : up(op->off + op->len, BLK);
    op->fill = 1;
    int fua = data_fua(op);
    op->fnext = st->fills;
    st->fills = op;
    op->stage = SOP_WRITE;
    if (s0 == op->off && s1 == op->off + op->len && aligned(op))
        return submit_data(op, op->off, op->ubuf, op->len, fua);
    if (prepare_bounce(op, s0, s1) < 0)
        return -ENOMEM;
    if ((!hc && op->off % BLK) || (!tc && (op->off + op->len) % BLK)) {
        op->stage = SOP_RMW_READ;
        return submit_io(op, DISK_READ, store_slot_off(st, op->slot) + s0, op->bounce, s1 - s0, 0);
    }
    memset(op->bounce, 0, op->off - s0);
    memset(op->bounce + (op->off + op->len - s0), 0, s1 - (op->off + op->len));
    memcpy(op->bounce + (op->off - s0), op->ubuf, op->len);
    return submit_data(op, s0, op->bounce, s1 - s0, fua);
}

static int dispatch_write(struct sop *op)
{
    struct extent_store *st = op->st;
    uint32_t slot = op->slot;
    if (slot == NO_SLOT) {
        int thick = op->flags & STORE_THICK;
        if (st->nfree == 0 || (!thick && st->nfree <= st->reserved)) {
            st->enospc++;
            return -ENOSPC;
        }
        if (thick && st->reserved)
            st->reserved--;
        slot = st->freelist[--st->nfree];
        op->slot = slot;
        op->alloc = 1;
        st->aid[slot] = st->alloc_next++;
        st->state[slot] = SLOT_ALLOCATING;
        /* The entry stays cleared until the data is durable; the index
         * finds the slot meanwhile, so later requests wait for it. */
        store_hash_insert(st, slot, op->vol, op->ext);
    }
    if (op->alloc && !st->defer && !st->logged && !(op->flags & STORE_GRANULES)) {
        /* Neither deferred nor logged, a fill costs a FUA write and an
         * entry write: fill the whole slot at once, as version 1 did, rather
         * than pay that again for each of its granules later. */
        op->g0 = 0;
        op->g1 = st->ngran - 1;
    }
    /* A write over bits not on disk yet has a record beside it, or, the
     * ring full, goes with FUA and writes its entry before it completes. */
    if (st->logged && !(op->flags & STORE_FUA) && !op->logged && store_log_needed(op) &&
        !store_log_take(op))
        op->flags |= STORE_FUA;
    const uint64_t *live = store_live(st, slot);
    /* A FUA write over a granule an unflushed write filled makes its bit
     * durable: the rest of that granule (the earlier write's data) must be
     * synced first. Granules of one block are rewritten whole (RMW). */
    int fua_gran = (op->flags & STORE_FUA) && st->granule > BLK;
    if (!bm_all(live, op->g0, op->g1)) {
        if (fill_conflict(op)) {
            park(op, slot);
            return 0;
        }
        for (uint32_t g = op->g0; g <= op->g1 && fua_gran; g++)
            op->needsync |= bm_test(live, g) && !store_staged(st, slot, g);
        int r = start_fill(op);
        if (r < 0)
            fill_abort(op);
        return r;
    }
    for (uint32_t g = op->g0; g <= op->g1 && fua_gran; g++)
        op->needsync |= !store_staged(st, slot, g);
    if (aligned(op)) {
        op->stage = SOP_WRITE;
        return submit_data(op, op->off, op->ubuf, op->len, op->flags & STORE_FUA);
    }
    if (prepare_bounce(op, op->off / BLK * BLK, up(op->off + op->len, BLK)) < 0)
        return -ENOMEM;
    op->stage = SOP_RMW_READ;
    return submit_io(op, DISK_READ, store_slot_off(st, slot) + op->span_off, op->bounce,
                     op->span_len, 0);
}

static int dispatch_read(struct sop *op)
{
    struct extent_store *st = op->st;
    uint32_t slot = op->slot;
    const uint64_t *live = slot == NO_SLOT ? NULL : store_live(st, slot);
    if (!live || bm_none(live, op->g0, op->g1)) {
        /* a hole, or granules never written: zeroes, no device I/O */
        memset(op->ubuf, 0, op->len);
        return 1;
    }
    if (!bm_all(live, op->g0, op->g1)) {
        /* Zero the clear granules after the read, as they were now: one
         * filled meanwhile may have been read before its data landed. */
        op->mixed = 1;
        memcpy(op->rbits, live, st->bm_words * sizeof(uint64_t));
    }
    if (aligned(op))
        return submit_io(op, DISK_READ, store_slot_off(st, slot) + op->off, op->ubuf, op->len, 0);
    if (prepare_bounce(op, op->off / BLK * BLK, up(op->off + op->len, BLK)) < 0)
        return -ENOMEM;
    return submit_io(op, DISK_READ, store_slot_off(st, slot) + op->span_off, op->bounce,
                     op->span_len, 0);
}

static int has_fill(const struct extent_store *st, uint32_t slot)
{
    for (const struct sop *f = st->fills; f; f = f->fnext)
        if (f->slot == slot)
            return 1;
    return 0;
}

/* Returns 0 submitted, 1 done (no cb), <0 error (no cb). */
static int dispatch(struct sop *op)
{
    struct extent_store *st = op->st;
    uint32_t slot = store_lookup(st, op->vol, op->ext);
    if (slot != NO_SLOT &&
        (st->state[slot] == SLOT_ALLOCATING || st->state[slot] == SLOT_FREEING)) {
        if (op->kind == K_READ && st->state[slot] == SLOT_ALLOCATING) {
            /* The allocating write is not acknowledged yet: a hole is a valid answer. */
            memset(op->ubuf, 0, op->len);
            return 1;
        }
        park(op, slot);
        return 0;
    }
    op->slot = slot;
    if (op->len) {
        op->g0 = (uint32_t)(op->off / st->granule);
        op->g1 = (uint32_t)((op->off + op->len - 1) / st->granule);
    }
    switch (op->kind) {
    case K_READ: return dispatch_read(op);
    case K_WRITE: return dispatch_write(op);
    case K_FREE:
        if (slot == NO_SLOT)
            return 1;
        if (has_fill(st, slot)) {
            /* a fill completing after the free would set bits of a free slot */
            park(op, slot);
            return 0;
        }
        /* Clear the entry and write it with FUA; the index keeps the slot
         * (state FREEING) so requests for the extent wait until it is free. */
        st->state[slot] = SLOT_FREEING;
        memcpy(op->saved, store_entry(st, slot), st->esize);
        memset(store_entry(st, slot), 0, st->esize);
        if (st->version >= 3) /* the log's records of this allocation are void */
            put_be64(store_entry(st, slot) + ENTRY_ALLOC, st->aid[slot]);
        store_table_update(op, 1);
        return 0;
    case K_REKEY: {
        if (slot == NO_SLOT)
            return 1;
        if (has_fill(st, slot)) {
            park(op, slot);
            return 0;
        }
        if (store_lookup(st, op->nvol, op->ext) != NO_SLOT)
            return -EEXIST;
        const uint64_t *live = store_live(st, slot);
        int unstaged = 0;
        for (uint32_t g = 0; g < st->ngran && !unstaged; g++)
            unstaged = bm_test(live, g) && !store_staged(st, slot, g);
        if (unstaged) {
            /* Bits only in memory (deferred or logged): a crash before the
             * next flush would lose them under the old key. Sync their data,
             * then write them with the new key. */
            memcpy(op->rbits, live, st->bm_words * sizeof(uint64_t));
            op->stage = SOP_FUA_SYNC;
            op->io = (struct disk_io){.op = DISK_SYNC, .cb = data_cb, .arg = op};
            return disk_submit(st->d, &op->io);
        }
        return rekey_now(op);
    }
    case K_FLUSH: break; /* flushes go in rounds (store_flush) */
    }
    return -EINVAL;
}

/* Give the slot its new key; its entry is written with FUA. */
static int rekey_now(struct sop *op)
{
    struct extent_store *st = op->st;
    uint32_t slot = op->slot;
    if (store_lookup(st, op->vol, op->ext) != slot || st->state[slot] != SLOT_READY)
        return 1; /* freed meanwhile: nothing to move */
    if (store_lookup(st, op->nvol, op->ext) != NO_SLOT)
        return -EEXIST;
    if (op->stage == SOP_FUA_SYNC)
        store_stage(st, slot, op->rbits); /* their data is durable now */
    store_hash_remove(st, slot, op->vol, op->ext);
    store_hash_insert(st, slot, op->nvol, op->ext);
    uint8_t *e = store_entry(st, slot);
    if (get_be64(e) != 0) { /* else the first flush writes it, with its key */
        put_be64(e, op->nvol);
        put_be64(e + 16, ++st->gen);
    }
    store_table_update(op, 1);
    return 0;
}

static struct sop *sop_new(struct extent_store *st, enum sop_kind kind, uint64_t vol, uint64_t ext,
                           uint32_t off, uint32_t len, void *buf, int flags, store_cb cb, void *arg)
{
    struct sop *op = pool_get(&st->sops);
    if (!op)
        return NULL;
    *op = (struct sop){.st = st,
                       .kind = kind,
                       .vol = vol,
                       .ext = ext,
                       .off = off,
                       .len = len,
                       .ubuf = buf,
                       .flags = flags,
                       .cb = cb,
                       .arg = arg,
                       .slot = NO_SLOT};
    return op;
}

static int start(struct sop *op)
{
    if (!op)
        return -ENOMEM;
    int r = dispatch(op);
    if (r != 0)
        sop_put(op);
    return r;
}

static int check_range(const struct extent_store *st, uint64_t vol, uint32_t off, uint32_t len)
{
    if (vol == 0 || len == 0 || off > st->extent_size || len > st->extent_size - off)
        return -EINVAL;
    return 0;
}

int store_read(struct extent_store *st, uint64_t vol, uint64_t ext, uint32_t off, uint32_t len,
               void *buf, store_cb cb, void *arg)
{
    int r = check_range(st, vol, off, len);
    if (r < 0)
        return r;
    return start(sop_new(st, K_READ, vol, ext, off, len, buf, 0, cb, arg));
}

int store_write(struct extent_store *st, uint64_t vol, uint64_t ext, uint32_t off, uint32_t len,
                const void *buf, int flags, store_cb cb, void *arg)
{
    int r = check_range(st, vol, off, len);
    if (r < 0)
        return r;
    return start(sop_new(st, K_WRITE, vol, ext, off, len, (void *)buf, flags, cb, arg));
}

int store_free(struct extent_store *st, uint64_t vol, uint64_t ext, store_cb cb, void *arg)
{
    if (vol == 0)
        return -EINVAL;
    return start(sop_new(st, K_FREE, vol, ext, 0, 0, NULL, 0, cb, arg));
}

int store_rekey(struct extent_store *st, uint64_t vol, uint64_t ext, uint64_t nvol, store_cb cb,
                void *arg)
{
    if (vol == 0 || nvol == 0)
        return -EINVAL;
    struct sop *op = sop_new(st, K_REKEY, vol, ext, 0, 0, NULL, 0, cb, arg);
    if (op)
        op->nvol = nvol;
    return start(op);
}

/* Every request, from sop_new() until store_op_finish() or sop_put(), is a live
 * object of the pool: that count is what is still to complete. */
uint64_t store_busy(const struct extent_store *st)
{
    return st->sops.nlive;
}

int store_flush(struct extent_store *st, store_cb cb, void *arg)
{
    struct sop *op = sop_new(st, K_FLUSH, 0, 0, 0, 0, NULL, 0, cb, arg);
    if (!op)
        return -ENOMEM;
    op->next = st->flushq;
    st->flushq = op;
    if (!st->round)
        store_round_start(st);
    return 0;
}
