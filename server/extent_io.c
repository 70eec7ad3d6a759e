/* The extent store's request path: reads, writes (allocating a slot on an
 * extent's first write, reading-modifying-writing unaligned ranges), frees
 * and flushes, and the table block writes that make allocations and frees
 * durable, in the order extent_store.h gives. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extent_store_impl.h"
#include "log.h"
#include "rpc.h"

static uint64_t slot_off(const struct extent_store *st, uint32_t slot)
{
    return st->data_off + (uint64_t)slot * st->extent_size;
}

/* ---- request machinery ---- */

static int dispatch(struct sop *op);

/* Buffers and request objects come from caches (rpc_buf_alloc's size
 * classes, the store's pool): a request allocates nothing in steady state. */
static void sop_put(struct sop *op)
{
    rpc_buf_free(op->bounce);
    pool_put(&op->st->sops, op);
}

static void finish(struct sop *op, int res)
{
    rpc_buf_free(op->bounce);
    op->bounce = NULL;
    op->cb(op->arg, res);
    pool_put(&op->st->sops, op);
}

/* Re-run the requests that waited for a slot to settle. */
static void wake(struct extent_store *st, uint32_t slot)
{
    struct sop *w = st->waiters[slot];
    st->waiters[slot] = NULL;
    while (w) {
        struct sop *next = w->next;
        w->next = NULL;
        int r = dispatch(w);
        if (r != 0)
            finish(w, r > 0 ? 0 : r);
        w = next;
    }
}

static void table_write_cb(struct disk_io *io, int res);

static void table_start(struct extent_store *st, uint64_t b, int dsync)
{
    struct tblock *tb = &st->tblocks[b];
    if (!tb->buf && posix_memalign((void **)&tb->buf, BLK, BLK))
        abort();
    memcpy(tb->buf, st->table + b * BLK, BLK);
    tb->inflight = 1;
    tb->io = (struct disk_io){.op = DISK_WRITE,
                              .dsync = dsync,
                              .off = st->table_off + b * BLK,
                              .buf = tb->buf,
                              .len = BLK,
                              .cb = table_write_cb,
                              .arg = st};
    int r = disk_submit(st->d, &tb->io);
    if (r < 0) {
        /* Complete through the normal path, but never from inside the caller:
         * the caller is always a completion or a fresh request that returns 0. */
        log_error("%s: table write submit failed: %s", st->d->name, strerror(-r));
        abort();
    }
}

/* Queue op to complete once the table block holding its slot's entry is written. */
static void table_update(struct sop *op, int dsync)
{
    struct extent_store *st = op->st;
    uint64_t b = (uint64_t)op->slot * ENTRY_SIZE / BLK;
    struct tblock *tb = &st->tblocks[b];
    if (!tb->inflight) {
        op->next = tb->waiting;
        tb->waiting = op;
        table_start(st, b, dsync);
    } else {
        op->next = tb->next;
        tb->next = op;
        tb->dirty = 1;
        tb->dirty_dsync |= dsync;
    }
}

static void table_done(struct sop *op, int res);

static void table_write_cb(struct disk_io *io, int res)
{
    struct extent_store *st = io->arg;
    uint64_t b = (io->off - st->table_off) / BLK;
    struct tblock *tb = &st->tblocks[b];
    struct sop *w = tb->waiting;
    tb->waiting = NULL;
    tb->inflight = 0;
    if (tb->dirty) {
        tb->waiting = tb->next;
        tb->next = NULL;
        tb->dirty = 0;
        int ds = tb->dirty_dsync;
        tb->dirty_dsync = 0;
        table_start(st, b, ds);
    }
    int r = res == BLK ? 0 : (res < 0 ? res : -EIO);
    if (r < 0)
        log_error("%s: extent table write failed: %s", st->d->name, strerror(-r));
    while (w) {
        struct sop *next = w->next;
        w->next = NULL;
        table_done(w, r);
        w = next;
    }
}

static void table_done(struct sop *op, int res)
{
    struct extent_store *st = op->st;
    uint32_t slot = op->slot;
    if (op->kind == K_WRITE && op->stage == SOP_ENTRY_SYNC) {
        /* FUA write: its extent's entry is durable now too */
        if (res == 0)
            st->edirty[slot] = 0;
        finish(op, res);
        return;
    }
    if (op->kind == K_WRITE) {
        /* allocation: the entry is written (or failed) */
        if (res < 0) {
            store_hash_remove(st, slot, op->vol, op->ext);
            memset(store_entry(st, slot), 0, ENTRY_SIZE);
            st->state[slot] = SLOT_FREE;
            st->freelist[st->nfree++] = slot;
        } else {
            st->state[slot] = SLOT_READY;
            st->edirty[slot] = !(op->flags & STORE_FUA);
        }
    } else {
        /* free: the cleared entry is durable; the slot may be reused */
        if (res < 0) {
            /* keep the extent: restore its entry in memory */
            store_set_entry(st, slot, op->vol, op->ext);
            st->state[slot] = SLOT_READY;
        } else {
            store_hash_remove(st, slot, op->vol, op->ext);
            st->state[slot] = SLOT_FREE;
            st->freelist[st->nfree++] = slot;
        }
    }
    finish(op, res);
    wake(st, slot);
}

static void data_cb(struct disk_io *io, int res)
{
    struct sop *op = io->arg;
    struct extent_store *st = op->st;
    int r = res == (int)io->len ? 0 : (res < 0 ? res : -EIO);
    if (r < 0)
        log_error("%s: %s of %u bytes at %llu failed: %s", st->d->name,
                  io->op == DISK_READ ? "read" : "write", io->len, (unsigned long long)io->off,
                  strerror(-r));
    if (op->kind == K_READ) {
        if (r == 0 && op->bounce)
            memcpy(op->ubuf, op->bounce + (op->off - op->span_off), op->len);
        finish(op, r);
        return;
    }
    if (op->kind == K_FLUSH) {
        finish(op, res < 0 ? res : 0);
        return;
    }
    /* K_WRITE */
    if (op->stage == SOP_ALLOC_DATA) {
        /* allocation data written with FUA; now the table entry */
        if (r < 0) {
            table_done(op, r);
            return;
        }
        store_set_entry(st, op->slot, op->vol, op->ext);
        op->stage = SOP_ALLOC_ENTRY;
        table_update(op, op->flags & STORE_FUA);
        return;
    }
    if (op->stage == SOP_RMW_READ) {
        /* read-modify-write: covering blocks read; merge and write */
        if (r < 0) {
            finish(op, r);
            return;
        }
        memcpy(op->bounce + (op->off - op->span_off), op->ubuf, op->len);
        op->stage = SOP_RMW_WRITE;
        op->io.op = DISK_WRITE;
        op->io.dsync = op->flags & STORE_FUA;
        int s = disk_submit(st->d, &op->io);
        if (s < 0)
            finish(op, s);
        return;
    }
    /* SOP_RMW_WRITE or SOP_OVERWRITE: data written in place */
    if (r == 0 && (op->flags & STORE_FUA) && st->edirty[op->slot]) {
        /* The entry naming this slot was written without FUA: a FUA write is
         * durable only once that entry is too. */
        op->stage = SOP_ENTRY_SYNC;
        table_update(op, 1);
        return;
    }
    finish(op, r);
}

static int submit_io(struct sop *op, int dop, uint64_t off, void *buf, uint32_t len, int dsync)
{
    op->io = (struct disk_io){
        .op = dop, .dsync = dsync, .off = off, .buf = buf, .len = len, .cb = data_cb, .arg = op};
    return disk_submit(op->st->d, &op->io);
}

static int aligned(const struct sop *op)
{
    return op->off % BLK == 0 && op->len % BLK == 0 && ((uintptr_t)op->ubuf % BLK) == 0;
}

static int prepare_bounce(struct sop *op)
{
    op->span_off = op->off / BLK * BLK;
    op->span_len = (op->off + op->len + BLK - 1) / BLK * BLK - op->span_off;
    rpc_buf_free(op->bounce);
    op->bounce = rpc_buf_alloc(op->span_len);
    return op->bounce ? 0 : -ENOMEM;
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
        op->next = st->waiters[slot];
        st->waiters[slot] = op;
        return 0;
    }
    op->slot = slot;
    switch (op->kind) {
    case K_READ:
        if (slot == NO_SLOT) {
            memset(op->ubuf, 0, op->len);
            return 1;
        }
        if (aligned(op))
            return submit_io(op, DISK_READ, slot_off(st, slot) + op->off, op->ubuf, op->len, 0);
        if (prepare_bounce(op) < 0)
            return -ENOMEM;
        return submit_io(op, DISK_READ, slot_off(st, slot) + op->span_off, op->bounce, op->span_len,
                         0);
    case K_WRITE:
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
            st->state[slot] = SLOT_ALLOCATING;
            /* The entry stays cleared until the data is durable; the index
             * finds the slot meanwhile, so later requests wait for it. */
            store_hash_insert(st, slot, op->vol, op->ext);
            rpc_buf_free(op->bounce);
            op->bounce = rpc_buf_alloc(st->extent_size);
            if (!op->bounce) {
                store_hash_remove(st, slot, op->vol, op->ext);
                st->state[slot] = SLOT_FREE;
                st->freelist[st->nfree++] = slot;
                return -ENOMEM;
            }
            memset(op->bounce, 0, st->extent_size);
            memcpy(op->bounce + op->off, op->ubuf, op->len);
            op->stage = SOP_ALLOC_DATA;
            int r = submit_io(op, DISK_WRITE, slot_off(st, slot), op->bounce,
                              (uint32_t)st->extent_size, 1);
            if (r < 0) {
                store_hash_remove(st, slot, op->vol, op->ext);
                st->state[slot] = SLOT_FREE;
                st->freelist[st->nfree++] = slot;
            }
            return r;
        }
        if (aligned(op)) {
            op->stage = SOP_OVERWRITE;
            return submit_io(op, DISK_WRITE, slot_off(st, slot) + op->off, op->ubuf, op->len,
                             op->flags & STORE_FUA);
        }
        if (prepare_bounce(op) < 0)
            return -ENOMEM;
        op->stage = SOP_RMW_READ;
        return submit_io(op, DISK_READ, slot_off(st, slot) + op->span_off, op->bounce, op->span_len,
                         0);
    case K_FREE: {
        if (slot == NO_SLOT)
            return 1;
        /* Clear the entry and write it with FUA; the index keeps the slot
         * (state FREEING) so requests for the extent wait until it is free. */
        st->state[slot] = SLOT_FREEING;
        memset(store_entry(st, slot), 0, ENTRY_SIZE);
        op->slot = slot;
        table_update(op, 1);
        return 0;
    }
    case K_FLUSH: break; /* flushes go straight to the disk (store_flush) */
    }
    return -EINVAL;
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

/* Every request, from sop_new() until finish() or sop_put(), is a live
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
    op->io = (struct disk_io){.op = DISK_SYNC, .cb = data_cb, .arg = op};
    int r = disk_submit(st->d, &op->io);
    if (r < 0)
        sop_put(op);
    return r;
}
