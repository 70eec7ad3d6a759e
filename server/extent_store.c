#include "extent_store.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define SB_MAGIC "CAIRNDEV"
#define SB_VERSION 1
#define ENTRY_SIZE 32u
#define BLK 4096u
#define NO_SLOT UINT32_MAX

enum slot_state { SLOT_FREE, SLOT_ALLOCATING, SLOT_READY, SLOT_FREEING };

struct sop;

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
    uint8_t *table; /* in-memory copy of the on-disk table, 4096-aligned */
    uint8_t *state; /* slot_state per slot */
    uint8_t *edirty; /* entry written without FUA: a FUA write must also sync it */
    uint64_t *kvol, *kext; /* index keys per slot, apart from the table so an
                              entry can be cleared on disk while requests still find the slot */
    uint32_t *hnext;
    uint32_t *buckets;
    uint32_t nbuckets;
    uint32_t *freelist;
    uint64_t nfree;
    uint64_t gen;
    uint64_t enospc;
    uint64_t reserved; /* free slots promised to thick volumes */
    struct sop **waiters; /* per slot: requests waiting for allocate/free */
    struct tblock *tblocks;
    uint64_t ntblocks;
};

enum sop_kind { K_READ, K_WRITE, K_FREE, K_FLUSH };

struct sop {
    struct extent_store *st;
    int kind;
    uint64_t vol, ext;
    uint32_t off, len;
    void *ubuf;
    int flags;
    store_cb cb;
    void *arg;
    uint32_t slot;
    uint8_t *bounce;
    uint32_t span_off, span_len;
    int stage;
    struct disk_io io;
    struct sop *next;
};

static uint64_t hkey(uint64_t vol, uint64_t ext)
{
    return hash_mix64(vol * 0x9e3779b97f4a7c15ULL + ext);
}

static uint8_t *entry(const struct extent_store *st, uint32_t slot)
{
    return st->table + (uint64_t)slot * ENTRY_SIZE;
}

static uint64_t e_vol(const uint8_t *e)
{
    return get_be64(e);
}
static uint64_t e_ext(const uint8_t *e)
{
    return get_be64(e + 8);
}
static uint64_t e_gen(const uint8_t *e)
{
    return get_be64(e + 16);
}

static uint32_t lookup(const struct extent_store *st, uint64_t vol, uint64_t ext)
{
    uint32_t s = st->buckets[hkey(vol, ext) % st->nbuckets];
    while (s != NO_SLOT) {
        if (st->kvol[s] == vol && st->kext[s] == ext)
            return s;
        s = st->hnext[s];
    }
    return NO_SLOT;
}

static void hash_insert(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext)
{
    uint32_t b = (uint32_t)(hkey(vol, ext) % st->nbuckets);
    st->kvol[slot] = vol;
    st->kext[slot] = ext;
    st->hnext[slot] = st->buckets[b];
    st->buckets[b] = slot;
}

static void hash_remove(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext)
{
    uint32_t *pp = &st->buckets[hkey(vol, ext) % st->nbuckets];
    while (*pp != NO_SLOT) {
        if (*pp == slot) {
            *pp = st->hnext[slot];
            st->kvol[slot] = 0;
            st->kext[slot] = 0;
            return;
        }
        pp = &st->hnext[*pp];
    }
    assert(!"slot not in hash");
}

static void set_entry(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext)
{
    uint8_t *e = entry(st, slot);
    memset(e, 0, ENTRY_SIZE);
    put_be64(e, vol);
    put_be64(e + 8, ext);
    put_be64(e + 16, ++st->gen);
}

static void layout(uint64_t size, uint64_t ext, uint64_t *nslots, uint64_t *table_off,
                   uint64_t *data_off)
{
    uint64_t n = size > BLK ? (size - BLK) / (ext + ENTRY_SIZE) : 0;
    for (;;) {
        uint64_t tbytes = (n * ENTRY_SIZE + BLK - 1) / BLK * BLK;
        uint64_t doff = (BLK + tbytes + ext - 1) / ext * ext;
        if (n == 0 || doff + n * ext <= size) {
            *nslots = n;
            *table_off = BLK;
            *data_off = doff;
            return;
        }
        n--;
    }
}

static void sb_encode(uint8_t *b, const char *cluster, uint32_t dev, uint64_t ext, uint64_t nslots)
{
    memset(b, 0, BLK);
    memcpy(b, SB_MAGIC, 8);
    put_be32(b + 8, SB_VERSION);
    put_be32(b + 12, dev);
    put_be64(b + 16, ext);
    put_be64(b + 24, nslots);
    snprintf((char *)b + 64, 64, "%s", cluster);
}

int store_format(struct disk *d, const char *cluster_id, uint32_t device_id,
                 uint64_t extent_size)
{
    uint64_t nslots, toff, doff;
    layout(d->size, extent_size, &nslots, &toff, &doff);
    if (nslots < 1)
        return -ENOSPC;
    uint8_t *b = NULL;
    size_t chunk = 1u << 20;
    if (posix_memalign((void **)&b, BLK, chunk))
        return -ENOMEM;
    memset(b, 0, chunk);
    int r = 0;
    /* Table first, superblock last: a half-formatted device is not formatted. */
    for (uint64_t off = toff; off < doff && r == 0; off += chunk) {
        uint32_t n = (uint32_t)MIN(chunk, doff - off);
        r = d->ops->pwrite(d, b, n, off);
    }
    if (r == 0) {
        sb_encode(b, cluster_id, device_id, extent_size, nslots);
        r = d->ops->pwrite(d, b, BLK, 0);
    }
    free(b);
    return r;
}

int store_open(struct disk *d, const char *cluster_id, uint32_t device_id,
               struct extent_store **out, char *msg, size_t msglen)
{
    uint8_t *sb;
    if (posix_memalign((void **)&sb, BLK, BLK))
        return -ENOMEM;
    int r = d->ops->pread(d, sb, BLK, 0);
    if (r < 0) {
        snprintf(msg, msglen, "cannot read superblock: %s", strerror(-r));
        free(sb);
        return -EIO;
    }
    if (memcmp(sb, SB_MAGIC, 8)) {
        free(sb);
        snprintf(msg, msglen, "not formatted");
        return -ENODATA;
    }
    char cl[65];
    snprintf(cl, sizeof(cl), "%.*s", 63, (char *)sb + 64);
    uint32_t dev = get_be32(sb + 12);
    uint64_t ext = get_be64(sb + 16), nslots = get_be64(sb + 24);
    uint32_t ver = get_be32(sb + 8);
    free(sb);
    if (strcmp(cl, cluster_id) || dev != device_id) {
        snprintf(msg, msglen, "belongs to cluster %s as device %u, not cluster %s device %u", cl,
                 dev, cluster_id, device_id);
        return -EINVAL;
    }
    uint64_t n2, toff, doff;
    if (ver != SB_VERSION || ext < BLK || (ext & (ext - 1)))
        goto corrupt;
    layout(d->size, ext, &n2, &toff, &doff);
    if (n2 != nslots || nslots >= NO_SLOT)
        goto corrupt;

    struct extent_store *st = calloc(1, sizeof(*st));
    st->d = d;
    st->extent_size = ext;
    st->nslots = nslots;
    st->table_off = toff;
    st->data_off = doff;
    uint64_t tbytes = doff - toff;
    st->ntblocks = (nslots * ENTRY_SIZE + BLK - 1) / BLK;
    st->nbuckets = (uint32_t)MAX(nslots, 64);
    if (posix_memalign((void **)&st->table, BLK, tbytes))
        st->table = NULL;
    st->state = calloc(nslots, 1);
    st->edirty = calloc(nslots, 1);
    st->hnext = malloc(nslots * sizeof(uint32_t));
    st->kvol = calloc(nslots, sizeof(uint64_t));
    st->kext = calloc(nslots, sizeof(uint64_t));
    st->buckets = malloc(st->nbuckets * sizeof(uint32_t));
    st->freelist = malloc(nslots * sizeof(uint32_t));
    st->waiters = calloc(nslots, sizeof(struct sop *));
    st->tblocks = calloc(st->ntblocks, sizeof(struct tblock));
    if (!st->table || !st->state || !st->edirty || !st->hnext || !st->kvol || !st->kext || !st->buckets || !st->freelist || !st->waiters ||
        !st->tblocks) {
        store_close(st);
        return -ENOMEM;
    }
    for (uint64_t off = 0; off < tbytes; off += 1u << 20) {
        uint32_t n = (uint32_t)MIN(1u << 20, tbytes - off);
        r = d->ops->pread(d, st->table + off, n, toff + off);
        if (r < 0) {
            snprintf(msg, msglen, "cannot read extent table: %s", strerror(-r));
            store_close(st);
            return -EIO;
        }
    }
    for (uint32_t b = 0; b < st->nbuckets; b++)
        st->buckets[b] = NO_SLOT;
    /* Build the index; free slots are pushed so that low slots come out first. */
    for (uint64_t i = nslots; i-- > 0;) {
        uint8_t *e = entry(st, (uint32_t)i);
        uint64_t vol = e_vol(e);
        if (vol == 0) {
            st->freelist[st->nfree++] = (uint32_t)i;
            continue;
        }
        st->gen = MAX(st->gen, e_gen(e));
        uint32_t other = lookup(st, vol, e_ext(e));
        if (other != NO_SLOT) {
            /* Two slots claim one extent: the newer generation wins. */
            uint32_t loser = e_gen(entry(st, other)) > e_gen(e) ? (uint32_t)i : other;
            log_warn("%s: extent %llu/%llu in slots %u and %llu; keeping the newer", d->name,
                     (unsigned long long)vol, (unsigned long long)e_ext(e), other,
                     (unsigned long long)i);
            if (loser == other) {
                hash_remove(st, other, vol, e_ext(e));
                st->state[other] = SLOT_FREE;
                memset(entry(st, other), 0, ENTRY_SIZE);
                st->freelist[st->nfree++] = other;
            } else {
                memset(e, 0, ENTRY_SIZE);
                st->freelist[st->nfree++] = (uint32_t)i;
                continue;
            }
        }
        hash_insert(st, (uint32_t)i, vol, e_ext(e));
        st->state[i] = SLOT_READY;
    }
    *out = st;
    return 0;
corrupt:
    snprintf(msg, msglen, "superblock is corrupt or from an unsupported version");
    return -EIO;
}

void store_close(struct extent_store *st)
{
    if (!st)
        return;
    for (uint64_t i = 0; st->tblocks && i < st->ntblocks; i++)
        free(st->tblocks[i].buf);
    free(st->table);
    free(st->state);
    free(st->edirty);
    free(st->hnext);
    free(st->kvol);
    free(st->kext);
    free(st->buckets);
    free(st->freelist);
    free(st->waiters);
    free(st->tblocks);
    free(st);
}

int store_allocated(const struct extent_store *st, uint64_t vol, uint64_t ext)
{
    uint32_t s = lookup(st, vol, ext);
    return s != NO_SLOT && st->state[s] != SLOT_ALLOCATING;
}

void store_usage(const struct extent_store *st, uint64_t *used, uint64_t *total)
{
    *used = st->nslots - st->nfree;
    *total = st->nslots;
}

void store_set_reserved(struct extent_store *st, uint64_t n)
{
    st->reserved = n;
}

uint64_t store_enospc(const struct extent_store *st)
{
    return st->enospc;
}

size_t store_list_volume(const struct extent_store *st, uint64_t vol, uint64_t *out, size_t max)
{
    size_t n = 0;
    for (uint64_t i = 0; i < st->nslots && n < max; i++)
        if (st->state[i] == SLOT_READY && st->kvol[i] == vol)
            out[n++] = st->kext[i];
    return n;
}

size_t store_list_all(const struct extent_store *st, uint64_t *cursor, uint64_t *vols,
                      uint64_t *exts, size_t max)
{
    size_t n = 0;
    for (; *cursor < st->nslots && n < max; (*cursor)++) {
        if (st->state[*cursor] != SLOT_READY)
            continue;
        vols[n] = st->kvol[*cursor];
        exts[n] = st->kext[*cursor];
        n++;
    }
    return n;
}

static uint64_t slot_off(const struct extent_store *st, uint32_t slot)
{
    return st->data_off + (uint64_t)slot * st->extent_size;
}

/* ---- request machinery ---- */

static int dispatch(struct sop *op);

static void finish(struct sop *op, int res)
{
    free(op->bounce);
    op->cb(op->arg, res);
    free(op);
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
    if (op->kind == K_WRITE && op->stage == 6) {
        /* FUA write: its extent's entry is durable now too */
        if (res == 0)
            st->edirty[slot] = 0;
        finish(op, res);
        return;
    }
    if (op->kind == K_WRITE) {
        /* allocation: the entry is written (or failed) */
        if (res < 0) {
            hash_remove(st, slot, op->vol, op->ext);
            memset(entry(st, slot), 0, ENTRY_SIZE);
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
            set_entry(st, slot, op->vol, op->ext);
            st->state[slot] = SLOT_READY;
        } else {
            hash_remove(st, slot, op->vol, op->ext);
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
                  io->op == DISK_READ ? "read" : "write", io->len,
                  (unsigned long long)io->off, strerror(-r));
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
    if (op->stage == 1) {
        /* allocation data written with FUA; now the table entry */
        if (r < 0) {
            table_done(op, r);
            return;
        }
        set_entry(st, op->slot, op->vol, op->ext);
        op->stage = 2;
        table_update(op, op->flags & STORE_FUA);
        return;
    }
    if (op->stage == 3) {
        /* read-modify-write: covering blocks read; merge and write */
        if (r < 0) {
            finish(op, r);
            return;
        }
        memcpy(op->bounce + (op->off - op->span_off), op->ubuf, op->len);
        op->stage = 4;
        op->io.op = DISK_WRITE;
        op->io.dsync = op->flags & STORE_FUA;
        int s = disk_submit(st->d, &op->io);
        if (s < 0)
            finish(op, s);
        return;
    }
    /* stage 4 or 5: data written in place */
    if (r == 0 && (op->flags & STORE_FUA) && st->edirty[op->slot]) {
        /* The entry naming this slot was written without FUA: a FUA write is
         * durable only once that entry is too. */
        op->stage = 6;
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
    free(op->bounce);
    op->bounce = NULL;
    if (posix_memalign((void **)&op->bounce, BLK, op->span_len))
        return -ENOMEM;
    return 0;
}

/* Returns 0 submitted, 1 done (no cb), <0 error (no cb). */
static int dispatch(struct sop *op)
{
    struct extent_store *st = op->st;
    uint32_t slot = lookup(st, op->vol, op->ext);
    if (slot != NO_SLOT && (st->state[slot] == SLOT_ALLOCATING || st->state[slot] == SLOT_FREEING)) {
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
        return submit_io(op, DISK_READ, slot_off(st, slot) + op->span_off, op->bounce,
                         op->span_len, 0);
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
            hash_insert(st, slot, op->vol, op->ext);
            free(op->bounce);
            if (posix_memalign((void **)&op->bounce, BLK, st->extent_size)) {
                op->bounce = NULL;
                hash_remove(st, slot, op->vol, op->ext);
                st->state[slot] = SLOT_FREE;
                st->freelist[st->nfree++] = slot;
                return -ENOMEM;
            }
            memset(op->bounce, 0, st->extent_size);
            memcpy(op->bounce + op->off, op->ubuf, op->len);
            op->stage = 1;
            int r = submit_io(op, DISK_WRITE, slot_off(st, slot), op->bounce,
                              (uint32_t)st->extent_size, 1);
            if (r < 0) {
                hash_remove(st, slot, op->vol, op->ext);
                st->state[slot] = SLOT_FREE;
                st->freelist[st->nfree++] = slot;
            }
            return r;
        }
        if (aligned(op)) {
            op->stage = 5;
            return submit_io(op, DISK_WRITE, slot_off(st, slot) + op->off, op->ubuf, op->len,
                             op->flags & STORE_FUA);
        }
        if (prepare_bounce(op) < 0)
            return -ENOMEM;
        op->stage = 3;
        return submit_io(op, DISK_READ, slot_off(st, slot) + op->span_off, op->bounce,
                         op->span_len, 0);
    case K_FREE: {
        if (slot == NO_SLOT)
            return 1;
        /* Clear the entry and write it with FUA; the index keeps the slot
         * (state FREEING) so requests for the extent wait until it is free. */
        st->state[slot] = SLOT_FREEING;
        memset(entry(st, slot), 0, ENTRY_SIZE);
        op->slot = slot;
        table_update(op, 1);
        return 0;
    }
    }
    return -EINVAL;
}

static struct sop *sop_new(struct extent_store *st, int kind, uint64_t vol, uint64_t ext,
                           uint32_t off, uint32_t len, void *buf, int flags, store_cb cb,
                           void *arg)
{
    struct sop *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    *op = (struct sop){.st = st, .kind = kind, .vol = vol, .ext = ext, .off = off, .len = len,
                       .ubuf = buf, .flags = flags, .cb = cb, .arg = arg, .slot = NO_SLOT};
    return op;
}

static int start(struct sop *op)
{
    if (!op)
        return -ENOMEM;
    int r = dispatch(op);
    if (r != 0) {
        free(op->bounce);
        free(op);
    }
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

int store_flush(struct extent_store *st, store_cb cb, void *arg)
{
    struct sop *op = sop_new(st, K_FLUSH, 0, 0, 0, 0, NULL, 0, cb, arg);
    if (!op)
        return -ENOMEM;
    op->io = (struct disk_io){.op = DISK_SYNC, .cb = data_cb, .arg = op};
    int r = disk_submit(st->d, &op->io);
    if (r < 0)
        free(op);
    return r;
}
