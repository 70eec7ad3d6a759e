/* The log of first writes (layout version 3, docs/extent-store.md).
 *
 * A write without FUA that touches a granule whose bit is not on disk yet
 * (a first write to it, or a write over one whose first write is not
 * flushed) writes, beside its data and at the same time, one 4 KiB record:
 * the slot, its key and allocation id, the granules, and a keyed hash of
 * each granule's new contents. It completes when both are on the device,
 * after one write's time, and its bits go to the table at the next flush
 * round (the device sync, then the table blocks with FUA), as deferred
 * bits do. A kill -9 of the daemon leaves data and record on the device;
 * at the next open a record whose granules hash as it says sets their bits.
 * A power loss may keep the record and not the data: the hashes then differ
 * and the bits stay clear, so no granule shows bytes it was not written.
 *
 * Records are never cleared. One stays harmless once its bits are on disk:
 * it applies only to the allocation it names (the entry's allocation id,
 * kept in a freed entry too, grows with every allocation), and bits within
 * an allocation are only ever set. A record block is reused once a flush
 * round that began after its write completed has ended well. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extent_store_impl.h"
#include "log.h"
#include "rpc.h"

#define REC_MAGIC "CAIRNLOG"
#define REC_HASHES 48u /* offset of the granules' hashes */
#define REC_HASH 8u    /* crypto_shorthash_BYTES */
#define REC_SUM (BLK - REC_HASH)

_Static_assert(crypto_shorthash_BYTES == REC_HASH, "shorthash is 8 bytes");
_Static_assert(crypto_shorthash_KEYBYTES == LOG_KEY, "shorthash key is 16 bytes");
_Static_assert(REC_HASHES + STORE_GRANULES_MAX * REC_HASH <= REC_SUM, "a record fits a block");

uint32_t store_log_blocks(uint64_t size)
{
    /* 1/128 of the device, 8 to 8192 blocks (32 MiB) */
    uint64_t n = size / 128 / BLK;
    return (uint32_t)MIN(MAX(n, 8), 8192);
}

int store_log_needed(const struct sop *op)
{
    const struct extent_store *st = op->st;
    if (op->alloc)
        return 1;
    return !bm_all(st->dur + (uint64_t)op->slot * st->bm_words, op->g0, op->g1);
}

static void round_cb(void *arg, int res)
{
    struct extent_store *st = arg;
    if (res < 0) /* the SDS's own flushes fail the device; the ring waits for one that works */
        log_error("%s: flush for the write log failed: %s", st->d->name, strerror(-res));
}

/* A flush round frees the ring: ask for one if none is waiting. */
static void kick_round(struct extent_store *st)
{
    if (!st->flushq && store_flush(st, round_cb, st) < 0)
        log_warn("%s: cannot start a flush for the write log", st->d->name);
}

int store_log_take(struct sop *op)
{
    struct extent_store *st = op->st;
    if (st->log_used == st->nlog) {
        st->log_fallbacks++;
        kick_round(st);
        return 0;
    }
    if (!op->lbuf && !(op->lbuf = rpc_buf_alloc(BLK)))
        return 0;
    op->lblk = st->log_head;
    st->log_head = (st->log_head + 1) % st->nlog;
    st->log_used++;
    st->log_need[op->lblk] = UINT64_MAX;
    op->logged = 1;
    op->lparts = 0;
    op->lres = 0;
    if (st->log_used * 2 >= st->nlog)
        kick_round(st);
    return 1;
}

static void log_cb(struct disk_io *io, int res);

int store_log_submit(struct sop *op, const uint8_t *buf, uint32_t span_off)
{
    struct extent_store *st = op->st;
    uint8_t *r = op->lbuf;
    memset(r, 0, BLK);
    memcpy(r, REC_MAGIC, 8);
    put_be64(r + 8, ++st->log_seq);
    put_be32(r + 16, op->slot);
    put_be16(r + 20, (uint16_t)op->g0);
    put_be16(r + 22, (uint16_t)op->g1);
    put_be64(r + 24, st->kvol[op->slot]);
    put_be64(r + 32, st->kext[op->slot]);
    put_be64(r + 40, st->aid[op->slot]);
    for (uint32_t g = op->g0; g <= op->g1; g++)
        crypto_shorthash(r + REC_HASHES + (g - op->g0) * REC_HASH,
                         buf + ((uint64_t)g * BLK - span_off), BLK, st->log_key);
    crypto_shorthash(r + REC_SUM, r, REC_SUM, st->log_key);
    op->lio = (struct disk_io){.op = DISK_WRITE,
                               .off = st->log_off + (uint64_t)op->lblk * BLK,
                               .buf = r,
                               .len = BLK,
                               .cb = log_cb,
                               .arg = op};
    op->lparts++;
    int s = disk_submit(st->d, &op->lio);
    if (s < 0) {
        op->lparts--;
        return s;
    }
    return 0;
}

int store_log_part(struct sop *op, int res)
{
    if (res < 0 && op->lres == 0)
        op->lres = res;
    return --op->lparts == 0;
}

static void log_cb(struct disk_io *io, int res)
{
    struct sop *op = io->arg;
    int r = res == (int)io->len ? 0 : (res < 0 ? res : -EIO);
    if (r < 0)
        log_error("%s: write log record at %llu failed: %s", op->st->d->name,
                  (unsigned long long)io->off, strerror(-r));
    if (store_log_part(op, r))
        store_data_done(op, op->lres);
}

static void advance_tail(struct extent_store *st)
{
    while (st->log_used) {
        uint64_t need = st->log_need[st->log_tail];
        if (need == UINT64_MAX || need > st->rounds_ok)
            return;
        st->log_need[st->log_tail] = 0;
        st->log_tail = (st->log_tail + 1) % st->nlog;
        st->log_used--;
    }
}

void store_log_release(struct sop *op)
{
    struct extent_store *st = op->st;
    if (!op->logged)
        return;
    op->logged = 0;
    /* a round that begins from now on stages the write's bits */
    st->log_need[op->lblk] = st->rounds_started + 1;
    rpc_buf_free(op->lbuf);
    op->lbuf = NULL;
}

void store_log_round_end(struct extent_store *st, int res)
{
    if (!st->logged || res < 0)
        return;
    st->rounds_ok = st->rounds_started;
    advance_tail(st);
}

void store_log_block_durable(struct extent_store *st, uint64_t b, const uint8_t *buf)
{
    if (!st->logged)
        return;
    uint32_t per = BLK / st->esize;
    for (uint32_t i = 0; i < per; i++) {
        uint64_t s = b * per + i;
        const uint8_t *e = buf + (uint64_t)i * st->esize;
        if (s >= st->nslots || st->state[s] != SLOT_READY || get_be64(e) == 0)
            continue;
        uint64_t *dur = st->dur + s * st->bm_words;
        for (uint32_t k = 0; k < (st->ngran + 7) / 8; k++)
            dur[k / 8] |= (uint64_t)e[ENTRY_BITMAP + k] << (8 * (k % 8));
    }
}

/* ---- replay at open ---- */

struct replay {
    struct extent_store *st;
    uint8_t *gran;    /* one granule, read back */
    uint8_t *changed; /* per table block */
    uint64_t applied, records;
};

static int rec_valid(const struct extent_store *st, const uint8_t *r)
{
    uint8_t sum[REC_HASH];
    if (memcmp(r, REC_MAGIC, 8))
        return 0;
    crypto_shorthash(sum, r, REC_SUM, st->log_key);
    if (memcmp(sum, r + REC_SUM, REC_HASH))
        return 0;
    uint32_t slot = get_be32(r + 16);
    uint32_t g0 = get_be16(r + 20), g1 = get_be16(r + 22);
    return slot < st->nslots && g0 <= g1 && g1 < st->ngran && get_be64(r + 24) != 0;
}

/* The granules of record r whose bits are clear and whose data on the
 * device hashes as r says, into bm. 0 or -errno. */
static int rec_matches(struct replay *rp, const uint8_t *r, uint32_t slot, uint64_t *bm)
{
    struct extent_store *st = rp->st;
    uint32_t g0 = get_be16(r + 20), g1 = get_be16(r + 22);
    const uint64_t *live = store_live(st, slot);
    for (uint32_t g = g0; g <= g1; g++) {
        if (bm_test(live, g))
            continue;
        int e =
            st->d->ops->pread(st->d, rp->gran, BLK, store_slot_off(st, slot) + (uint64_t)g * BLK);
        if (e < 0)
            return e;
        uint8_t h[REC_HASH];
        crypto_shorthash(h, rp->gran, BLK, st->log_key);
        if (!memcmp(h, r + REC_HASHES + (g - g0) * REC_HASH, REC_HASH))
            bm_set_range(bm, g, g);
    }
    return 0;
}

static void take_free_slot(struct extent_store *st, uint32_t slot)
{
    for (uint64_t i = 0; i < st->nfree; i++)
        if (st->freelist[i] == slot) {
            memmove(st->freelist + i, st->freelist + i + 1, (st->nfree - i - 1) * sizeof(uint32_t));
            st->nfree--;
            return;
        }
}

static int replay_one(struct replay *rp, const uint8_t *r)
{
    struct extent_store *st = rp->st;
    uint32_t slot = get_be32(r + 16);
    uint64_t vol = get_be64(r + 24), ext = get_be64(r + 32), aid = get_be64(r + 40);
    uint8_t *e = store_entry(st, slot);
    st->alloc_next = MAX(st->alloc_next, aid + 1);
    rp->records++;
    if (get_be64(e) != 0) {
        if (st->aid[slot] != aid || st->state[slot] != SLOT_READY)
            return 0; /* another allocation of the slot */
    } else if (aid <= st->aid[slot] || store_lookup(st, vol, ext) != NO_SLOT) {
        return 0; /* freed since, or the extent is elsewhere */
    }
    uint64_t bm[BM_WORDS] = {0};
    int err = rec_matches(rp, r, slot, bm);
    if (err < 0)
        return err;
    int any = 0;
    for (uint32_t k = 0; k < st->bm_words; k++)
        any |= bm[k] != 0;
    if (!any)
        return 0;
    if (get_be64(e) == 0) {
        /* an allocation whose entry a flush had not written yet */
        take_free_slot(st, slot);
        st->aid[slot] = aid;
        store_hash_insert(st, slot, vol, ext);
        st->state[slot] = SLOT_READY;
        store_set_entry(st, slot, vol, ext);
    }
    store_stage(st, slot, bm);
    for (uint32_t k = 0; k < st->bm_words; k++) {
        store_live(st, slot)[k] |= bm[k];
        st->dur[(uint64_t)slot * st->bm_words + k] |= bm[k];
    }
    rp->changed[store_slot_block(st, slot)] = 1;
    rp->applied++;
    return 0;
}

int store_log_replay(struct extent_store *st, char *msg, size_t msglen)
{
    struct replay rp = {.st = st};
    size_t chunk = 256 * BLK;
    uint8_t *buf = NULL;
    int err = 0;
    if (posix_memalign((void **)&buf, BLK, chunk) || posix_memalign((void **)&rp.gran, BLK, BLK) ||
        !(rp.changed = calloc(st->ntblocks, 1))) {
        err = -ENOMEM;
        goto out;
    }
    for (uint64_t b0 = 0; b0 < st->nlog && err == 0; b0 += chunk / BLK) {
        uint32_t n = (uint32_t)MIN(chunk / BLK, st->nlog - b0);
        err = st->d->ops->pread(st->d, buf, n * BLK, st->log_off + b0 * BLK);
        for (uint32_t i = 0; i < n && err == 0; i++)
            if (rec_valid(st, buf + (uint64_t)i * BLK))
                err = replay_one(&rp, buf + (uint64_t)i * BLK);
    }
    if (err == 0 && rp.applied) {
        /* The data first: a write of a table block as it is on disk syncs
         * the device (pwrite is durable), then the blocks with the bits. */
        uint64_t first = 0;
        while (!rp.changed[first])
            first++;
        err = st->d->ops->pread(st->d, rp.gran, BLK, st->table_off + first * BLK);
        if (err == 0)
            err = st->d->ops->pwrite(st->d, rp.gran, BLK, st->table_off + first * BLK);
        for (uint64_t b = first; b < st->ntblocks && err == 0; b++)
            if (rp.changed[b])
                err = st->d->ops->pwrite(st->d, st->table + b * BLK, BLK, st->table_off + b * BLK);
        if (err == 0)
            log_info("%s: write log: %llu of %llu records applied", st->d->name,
                     (unsigned long long)rp.applied, (unsigned long long)rp.records);
    }
out:
    if (err < 0)
        snprintf(msg, msglen, "cannot replay the write log: %s", strerror(-err));
    free(buf);
    free(rp.gran);
    free(rp.changed);
    return err;
}
