/* The extent store's on-disk layout (superblock, table, slots: see
 * extent_store.h), formatting and loading a device, and the in-memory index
 * of slots and their granule bitmaps with the queries on them. The request
 * path is in extent_io.c.
 *
 * Superblock (big-endian): "CAIRNDEV", version (be32 at 8), device id (12),
 * extent size (16), slot count (24), granule size (32, version 2 on), log
 * blocks (be32 at 40, version 3), the log's hash key (48..63, version 3),
 * cluster id (64..127). Entry (version 2): volume (0), extent (8),
 * generation (16), flags (24, 0), bitmap (32..63: granule g is bit g % 8 of
 * byte g / 8). A cleared entry (volume 0) is a free slot. Version 3: the
 * flags word is the slot's allocation id, kept when the slot is freed; the
 * log of first writes (extent_log.c) lies between the table and the slots. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "extent_store_impl.h"
#include "log.h"

static uint64_t hkey(uint64_t vol, uint64_t ext)
{
    return hash_mix64(vol * 0x9e3779b97f4a7c15ULL + ext);
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

uint32_t store_lookup(const struct extent_store *st, uint64_t vol, uint64_t ext)
{
    uint32_t s = st->buckets[hkey(vol, ext) % st->nbuckets];
    while (s != NO_SLOT) {
        if (st->kvol[s] == vol && st->kext[s] == ext)
            return s;
        s = st->hnext[s];
    }
    return NO_SLOT;
}

void store_hash_insert(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext)
{
    uint32_t b = (uint32_t)(hkey(vol, ext) % st->nbuckets);
    st->kvol[slot] = vol;
    st->kext[slot] = ext;
    st->hnext[slot] = st->buckets[b];
    st->buckets[b] = slot;
}

void store_hash_remove(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext)
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

void store_set_entry(struct extent_store *st, uint32_t slot, uint64_t vol, uint64_t ext)
{
    uint8_t *e = store_entry(st, slot);
    memset(e, 0, st->esize);
    put_be64(e, vol);
    put_be64(e + 8, ext);
    put_be64(e + 16, ++st->gen);
    if (st->version >= 3)
        put_be64(e + ENTRY_ALLOC, st->aid[slot]);
}

void bm_set_range(uint64_t *bm, uint32_t g0, uint32_t g1)
{
    for (uint32_t g = g0; g <= g1; g++)
        bm[g / 64] |= 1ull << (g % 64);
}

int bm_all(const uint64_t *bm, uint32_t g0, uint32_t g1)
{
    for (uint32_t g = g0; g <= g1; g++)
        if (!bm_test(bm, g))
            return 0;
    return 1;
}

int bm_none(const uint64_t *bm, uint32_t g0, uint32_t g1)
{
    for (uint32_t g = g0; g <= g1; g++)
        if (bm_test(bm, g))
            return 0;
    return 1;
}

int store_granule_written(const struct extent_store *st, uint32_t slot, uint32_t g)
{
    return bm_test(store_live(st, slot), g);
}

int store_staged(const struct extent_store *st, uint32_t slot, uint32_t g)
{
    const uint8_t *e = store_entry(st, slot);
    if (e_vol(e) == 0)
        return 0;
    if (st->version == 1)
        return 1;
    return (e[ENTRY_BITMAP + g / 8] >> (g % 8)) & 1;
}

void store_stage(struct extent_store *st, uint32_t slot, const uint64_t *bm)
{
    uint8_t *e = store_entry(st, slot);
    if (e_vol(e) == 0)
        store_set_entry(st, slot, st->kvol[slot], st->kext[slot]);
    if (st->version == 1)
        return;
    /* a byte at a time: a flush stages every slot of a block */
    for (uint32_t k = 0; k < (st->ngran + 7) / 8; k++)
        e[ENTRY_BITMAP + k] |= (uint8_t)(bm[k / 8] >> (8 * (k % 8)));
}

/* The bits of a loaded entry: its bitmap (version 2), or every granule. */
static void load_bits(struct extent_store *st, uint32_t slot)
{
    uint64_t *bm = store_live(st, slot);
    const uint8_t *e = store_entry(st, slot);
    if (st->version == 1) {
        bm[0] = 1;
        return;
    }
    uint32_t nbytes = (st->ngran + 7) / 8;
    for (uint32_t k = 0; k < nbytes; k++)
        bm[k / 8] |= (uint64_t)e[ENTRY_BITMAP + k] << (8 * (k % 8));
    if (st->ngran < 64)
        bm[0] &= (1ull << st->ngran) - 1; /* bits past the last granule mean nothing */
}

static uint64_t granule_for(uint64_t ext)
{
    return MAX(BLK, ext / STORE_GRANULES_MAX);
}

/* The table from 4 KiB, then nlog log blocks, then the slots from the next
 * extent boundary. */
static void layout(uint64_t size, uint64_t ext, uint32_t esize, uint32_t nlog, uint64_t *nslots,
                   uint64_t *table_off, uint64_t *data_off)
{
    uint64_t n = size > BLK ? (size - BLK) / (ext + esize) : 0;
    for (;;) {
        uint64_t tbytes = (n * esize + BLK - 1) / BLK * BLK;
        uint64_t doff = (BLK + tbytes + (uint64_t)nlog * BLK + ext - 1) / ext * ext;
        if (n == 0 || doff + n * ext <= size) {
            *nslots = n;
            *table_off = BLK;
            *data_off = doff;
            return;
        }
        n--;
    }
}

static void sb_encode(uint8_t *b, const char *cluster, uint32_t dev, uint64_t ext, uint64_t nslots,
                      uint32_t nlog)
{
    memset(b, 0, BLK);
    memcpy(b, SB_MAGIC, 8);
    put_be32(b + 8, SB_VERSION);
    put_be32(b + 12, dev);
    put_be64(b + 16, ext);
    put_be64(b + 24, nslots);
    put_be64(b + 32, granule_for(ext));
    put_be32(b + 40, nlog);
    randombytes_buf(b + 48, LOG_KEY);
    snprintf((char *)b + 64, 64, "%s", cluster);
}

int store_format(struct disk *d, const char *cluster_id, uint32_t device_id, uint64_t extent_size)
{
    uint64_t nslots, toff, doff;
    if (extent_size < BLK || extent_size > STORE_EXTENT_MAX || (extent_size & (extent_size - 1)))
        return -EINVAL;
    if (sodium_init() < 0)
        return -ENOMEM;
    uint32_t nlog = store_log_blocks(d->size);
    layout(d->size, extent_size, ENTRY_SIZE, nlog, &nslots, &toff, &doff);
    if (nslots < 1)
        return -ENOSPC;
    uint8_t *b = NULL;
    size_t chunk = 1u << 20;
    if (posix_memalign((void **)&b, BLK, chunk))
        return -ENOMEM;
    memset(b, 0, chunk);
    int r = 0;
    /* Table (and log) first, superblock last: a half-formatted device is
     * not formatted. */
    for (uint64_t off = toff; off < doff && r == 0; off += chunk) {
        uint32_t n = (uint32_t)MIN(chunk, doff - off);
        r = d->ops->pwrite(d, b, n, off);
    }
    if (r == 0) {
        sb_encode(b, cluster_id, device_id, extent_size, nslots, nlog);
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
    uint64_t ext = get_be64(sb + 16), nslots = get_be64(sb + 24), gran = get_be64(sb + 32);
    uint32_t ver = get_be32(sb + 8), nlog = ver >= 3 ? get_be32(sb + 40) : 0;
    uint8_t key[LOG_KEY];
    memcpy(key, sb + 48, LOG_KEY);
    free(sb);
    if (strcmp(cl, cluster_id) || dev != device_id) {
        snprintf(msg, msglen, "belongs to cluster %s as device %u, not cluster %s device %u", cl,
                 dev, cluster_id, device_id);
        return -EINVAL;
    }
    uint64_t n2, toff, doff;
    /* Bounded like a pool's extent size (which store_format was given):
     * else a corrupt superblock sizes the table read below (it spans up to
     * the first slot, one extent in). A formatted device has a slot. */
    if (ver < 1 || ver > SB_VERSION || ext < BLK || ext > STORE_EXTENT_MAX || (ext & (ext - 1)))
        goto corrupt;
    if (ver >= 3 && (nlog < 8 || nlog > 8192))
        goto corrupt;
    if (ver >= 3 && sodium_init() < 0)
        return -ENOMEM;
    /* Version 1 has no bitmaps: one granule, the whole extent, written in
     * every allocated slot (which is what version 1 guaranteed). */
    if (ver == 1)
        gran = ext;
    else if (gran != granule_for(ext))
        goto corrupt;
    uint32_t esize = ver == 1 ? ENTRY_SIZE_V1 : ENTRY_SIZE;
    layout(d->size, ext, esize, nlog, &n2, &toff, &doff);
    if (n2 != nslots || nslots == 0 || nslots >= NO_SLOT)
        goto corrupt;

    struct extent_store *st = calloc(1, sizeof(*st));
    st->d = d;
    st->extent_size = ext;
    st->version = ver;
    st->esize = esize;
    st->granule = gran;
    st->ngran = (uint32_t)(ext / gran);
    st->bm_words = (st->ngran + 63) / 64;
    st->nslots = nslots;
    st->table_off = toff;
    st->data_off = doff;
    st->nlog = nlog;
    st->log_off = toff + (nslots * esize + BLK - 1) / BLK * BLK;
    memcpy(st->log_key, key, LOG_KEY);
    uint64_t tbytes = st->log_off - toff;
    st->ntblocks = (nslots * esize + BLK - 1) / BLK;
    st->nbuckets = (uint32_t)MAX(nslots, 64);
    if (posix_memalign((void **)&st->table, BLK, tbytes))
        st->table = NULL;
    st->state = calloc(nslots, 1);
    st->live = calloc(nslots * st->bm_words, sizeof(uint64_t));
    st->pblocks = malloc(st->ntblocks * sizeof(uint32_t));
    st->hblocks = malloc(st->ntblocks * sizeof(uint32_t));
    st->hnext = malloc(nslots * sizeof(uint32_t));
    st->kvol = calloc(nslots, sizeof(uint64_t));
    st->kext = calloc(nslots, sizeof(uint64_t));
    st->buckets = malloc(st->nbuckets * sizeof(uint32_t));
    st->freelist = malloc(nslots * sizeof(uint32_t));
    st->waiters = calloc(nslots, sizeof(struct sop *));
    st->tblocks = calloc(st->ntblocks, sizeof(struct tblock));
    st->sops = (struct pool)POOL_INIT(struct sop, 4096);
    st->aid = calloc(nslots, sizeof(uint64_t));
    st->dur = calloc(nslots * st->bm_words, sizeof(uint64_t));
    st->log_need = calloc(MAX(nlog, 1), sizeof(uint64_t));
    if (!st->table || !st->state || !st->live || !st->pblocks || !st->hblocks || !st->hnext ||
        !st->kvol || !st->kext || !st->buckets || !st->freelist || !st->waiters || !st->tblocks ||
        !st->aid || !st->dur || !st->log_need) {
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
        uint8_t *e = store_entry(st, (uint32_t)i);
        uint64_t vol = e_vol(e);
        if (ver >= 3) {
            st->aid[i] = get_be64(e + ENTRY_ALLOC);
            st->alloc_next = MAX(st->alloc_next, st->aid[i] + 1);
        }
        if (vol == 0) {
            st->freelist[st->nfree++] = (uint32_t)i;
            continue;
        }
        st->gen = MAX(st->gen, e_gen(e));
        uint32_t other = store_lookup(st, vol, e_ext(e));
        if (other != NO_SLOT) {
            /* Two slots claim one extent: the newer generation wins. */
            uint32_t loser = e_gen(store_entry(st, other)) > e_gen(e) ? (uint32_t)i : other;
            log_warn("%s: extent %llu/%llu in slots %u and %llu; keeping the newer", d->name,
                     (unsigned long long)vol, (unsigned long long)e_ext(e), other,
                     (unsigned long long)i);
            if (loser == other) {
                store_hash_remove(st, other, vol, e_ext(e));
                st->state[other] = SLOT_FREE;
                memset(store_entry(st, other), 0, esize);
                memset(store_live(st, other), 0, st->bm_words * sizeof(uint64_t));
                memset(st->dur + (uint64_t)other * st->bm_words, 0,
                       st->bm_words * sizeof(uint64_t));
                st->freelist[st->nfree++] = other;
            } else {
                memset(e, 0, esize);
                st->freelist[st->nfree++] = (uint32_t)i;
                continue;
            }
        }
        store_hash_insert(st, (uint32_t)i, vol, e_ext(e));
        st->state[i] = SLOT_READY;
        load_bits(st, (uint32_t)i); /* what is on disk is durable: reads see it */
        memcpy(st->dur + i * st->bm_words, store_live(st, (uint32_t)i),
               st->bm_words * sizeof(uint64_t));
    }
    if (nlog && (r = store_log_replay(st, msg, msglen)) < 0) {
        store_close(st);
        return -EIO;
    }
    st->alloc_next = MAX(st->alloc_next, 1);
    store_set_defer(st, 0);
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
    free(st->live);
    free(st->pblocks);
    free(st->hblocks);
    free(st->hnext);
    free(st->kvol);
    free(st->kext);
    free(st->buckets);
    free(st->freelist);
    free(st->waiters);
    free(st->tblocks);
    free(st->aid);
    free(st->dur);
    free(st->log_need);
    pool_drain(&st->sops);
    free(st);
}

int store_allocated(const struct extent_store *st, uint64_t vol, uint64_t ext)
{
    uint32_t s = store_lookup(st, vol, ext);
    return s != NO_SLOT && st->state[s] != SLOT_ALLOCATING;
}

void store_usage(const struct extent_store *st, uint64_t *used, uint64_t *total)
{
    *used = st->nslots - st->nfree;
    *total = st->nslots;
}

uint64_t store_extent_size(const struct extent_store *st)
{
    return st->extent_size;
}

void store_zero_clear(const struct extent_store *st, const uint64_t *bm, uint32_t off, uint32_t len,
                      uint8_t *buf)
{
    uint64_t gs = st->granule, end = (uint64_t)off + len;
    for (uint64_t g = off / gs; g * gs < end; g++) {
        if (bm_test(bm, (uint32_t)g))
            continue;
        uint64_t a = MAX(g * gs, off), b = MIN((g + 1) * gs, end);
        memset(buf + (a - off), 0, b - a);
    }
}

void store_set_defer(struct extent_store *st, int on)
{
    st->defer = on;
    /* the log needs whole 4 KiB granules in every write it records */
    st->logged = !on && st->nlog && st->granule == BLK;
}

int store_logged(const struct extent_store *st)
{
    return st->logged;
}

uint64_t store_log_fallbacks(const struct extent_store *st)
{
    return st->log_fallbacks;
}

uint64_t store_unflushed(const struct extent_store *st)
{
    return st->npblocks;
}

uint64_t store_granule_size(const struct extent_store *st)
{
    return st->granule;
}

int store_written(const struct extent_store *st, uint64_t vol, uint64_t ext, uint64_t *bm,
                  size_t nwords)
{
    if (nwords < st->bm_words)
        return -EINVAL;
    memset(bm, 0, nwords * sizeof(uint64_t));
    uint32_t s = store_lookup(st, vol, ext);
    if (s == NO_SLOT || st->state[s] == SLOT_ALLOCATING)
        return 0;
    memcpy(bm, store_live(st, s), st->bm_words * sizeof(uint64_t));
    return (int)st->ngran;
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
