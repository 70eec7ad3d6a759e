/* Flattening a clone (docs/snapshots.md): every SDS copies, into the
 * clone's head layer, the granules the clone still reads from the layers
 * under its head (the snapshot it was cloned from, and what that reads
 * through), extent by extent, under the extent's range lock (client
 * writes wait), on the extents its devices hold in sync. Granules the head
 * has written are the clone's own and stay. The copy is local: every copy
 * of the PG holds the same layers, so each does the same (a copy being
 * rebuilt skips: its primary's rebuild sends it the flattened head); it is
 * noted for catch-up and for the rebuild jobs under way. Throttled by a
 * token bucket (the volume's flatten_rate, or FLATTEN_RATE_DEFAULT, per
 * SDS). Each SDS reports how far it got with its heartbeat; once every
 * serving SDS is through, the MDM leader proposes VOLUME_FLATTENED and the
 * clone reads through nothing any more. FLATTEN_INFLIGHT extents at a
 * time per SDS. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "extent_store.h"
#include "layout.h"
#include "log.h"
#include "sds.h"
#include "util.h"

#define FLATTEN_RATE_DEFAULT (64u << 20) /* bytes per second per SDS */
#define FLATTEN_SCAN 1024                /* extents looked at per kick */
#define FLATTEN_INFLIGHT 4               /* extents being flattened at once per SDS */
#define BM_WORDS (STORE_GRANULES_MAX / 64)

enum fl_stage { FL_LOCK, FL_LOCKED, FL_READ, FL_WRITTEN };

struct flop {
    struct sds *s;
    struct dev *d;
    uint64_t vol, version, ext;
    uint32_t pool_id, pg;
    uint64_t chain[CMAP_CHAIN_MAX]; /* the head first */
    int nchain;
    uint64_t extent_size, gs;
    uint32_t len, ngran, next_g, run_off, run_len;
    uint64_t need[BM_WORDS]; /* granules below the head that the head lacks */
    uint8_t *buf;
    int status;
    enum fl_stage stage;
    struct range_lock lock;
};

/* Granules under the head that the head has not written (need), and the
 * count of granules per extent; 0 if there are none. */
static uint32_t needed(struct extent_store *st, const uint64_t *chain, int nchain, uint64_t ext,
                       uint64_t *need)
{
    uint64_t head[BM_WORDS] = {0}, below[BM_WORDS] = {0}, bm[BM_WORDS];
    int ng = 0;
    for (int i = 1; i < nchain; i++) {
        int n = store_written(st, chain[i], ext, bm, BM_WORDS);
        if (n <= 0)
            continue;
        ng = n;
        for (unsigned k = 0; k < BM_WORDS; k++)
            below[k] |= bm[k];
    }
    if (!ng)
        return 0;
    store_written(st, chain[0], ext, head, BM_WORDS);
    int any = 0;
    for (unsigned k = 0; k < BM_WORDS; k++) {
        need[k] = below[k] & ~head[k];
        any |= need[k] != 0;
    }
    return any ? (uint32_t)ng : 0;
}

static struct flat *flat_of(struct sds *s, uint64_t vol, uint32_t dev)
{
    struct layers *l = &s->layers;
    for (size_t i = 0; i < l->nflat; i++)
        if (l->flat[i].vol == vol && l->flat[i].dev == dev)
            return &l->flat[i];
    struct flat *nf = realloc(l->flat, (l->nflat + 1) * sizeof(*nf));
    if (!nf)
        return NULL;
    l->flat = nf;
    nf[l->nflat] = (struct flat){.vol = vol, .dev = dev};
    return &nf[l->nflat++];
}

/* Forget the flattens the map no longer asks for; start again those of a
 * newer flatten_version. */
static void flat_sync(struct sds *s)
{
    struct layers *l = &s->layers;
    for (size_t i = 0; i < l->nflat;) {
        Cairn__Volume *v = cmap_volume(s->map, l->flat[i].vol);
        if (!v || !v->flattening) {
            l->flat[i] = l->flat[--l->nflat];
            continue;
        }
        if (l->flat[i].version != v->flatten_version) {
            l->flat[i].version = v->flatten_version;
            l->flat[i].cursor = 0;
            l->flat[i].inflight = 0; /* those of the old version no longer count */
        }
        i++;
    }
}

static void fl_continue(struct flop *op);

static void fl_granted_cb(struct range_lock *lk)
{
    fl_continue(container_of(lk, struct flop, lock));
}

static void fl_io_cb(void *arg, int res)
{
    struct flop *op = arg;
    op->status = res;
    fl_continue(op);
}

static void fl_done(struct flop *op, int status)
{
    struct sds *s = op->s;
    if (status < 0) {
        devices_error(op->d, status);
        LOG_LIMITED(LOG_WARN, 5000, "device %u: flattening volume %llu, extent %llu: %s", op->d->id,
                    (unsigned long long)op->vol, (unsigned long long)op->ext, strerror(-status));
    } else {
        tracking_note(s, op->pool_id, op->pg, op->chain[0], op->ext);
        rebuild_note(s, op->pool_id, op->pg, op->chain[0], op->ext);
    }
    /* found again: a new map may have dropped or restarted it meanwhile */
    for (size_t i = 0; i < s->layers.nflat; i++) {
        struct flat *f = &s->layers.flat[i];
        if (f->vol != op->vol || f->dev != op->d->id || f->version != op->version)
            continue;
        f->inflight--;
        if (status < 0 && f->cursor > op->ext)
            f->cursor = op->ext; /* done again from there */
    }
    if (range_lock_is_held(&op->lock))
        range_lock_release(s->locks, &op->lock);
    rpc_buf_free(op->buf);
    free(op);
    s->layers.flat_inflight--;
    if (status >= 0)
        layers_next_soon(s);
}

static int next_run(struct flop *op)
{
    return bm_next_run(op->need, op->ngran, op->gs, op->len, &op->next_g, &op->run_off,
                       &op->run_len);
}

static void fl_continue(struct flop *op)
{
    struct sds *s = op->s;
    struct extent_store *st = op->d->st;
    int rc;
    switch (op->stage) {
    case FL_LOCK: break;
    case FL_LOCKED: goto resume_locked;
    case FL_READ: goto resume_read;
    case FL_WRITTEN: goto resume_written;
    }
    range_lock_init(&op->lock, op->vol, op->ext, 0, op->len, RANGE_LOCK_EXTENT, op->extent_size,
                    fl_granted_cb);
    op->stage = FL_LOCKED;
    rc = range_lock_acquire(s->locks, &op->lock);
    if (rc == 0)
        return;
    if (rc < 0) {
        fl_done(op, rc);
        return;
    }
resume_locked:
    if (op->d->failed || s->stopping) {
        fl_done(op, -ECANCELED);
        return;
    }
    op->ngran = needed(st, op->chain, op->nchain, op->ext, op->need);
    op->gs = store_granule_size(st);
    op->buf = rpc_buf_alloc(op->len);
    if (!op->buf) {
        fl_done(op, -ENOMEM);
        return;
    }
    s->layers.flat_tokens -= (double)op->len;
    while (next_run(op)) {
        op->stage = FL_READ;
        /* what reads of the clone show there now: the layers under the head */
        rc = chain_read(st, op->chain + 1, op->nchain - 1, op->ext, op->run_off, op->run_len,
                        op->buf, fl_io_cb, op);
        if (rc == 0)
            return;
        op->status = rc > 0 ? 0 : rc;
    resume_read:
        if (op->status < 0) {
            fl_done(op, op->status);
            return;
        }
        op->stage = FL_WRITTEN;
        rc = store_write(st, op->chain[0], op->ext, op->run_off, op->run_len, op->buf,
                         STORE_FUA | STORE_GRANULES, fl_io_cb, op);
        if (rc == 0)
            return;
        op->status = rc > 0 ? 0 : rc;
    resume_written:
        if (op->status < 0) {
            fl_done(op, op->status);
            return;
        }
    }
    fl_done(op, 0);
}

/* Start the next extent of a flatten on this SDS; 1 if one started. */
static int kick_one(struct sds *s);

int flatten_kick(struct sds *s)
{
    int n = 0;
    while (s->layers.flat_inflight < FLATTEN_INFLIGHT && !s->stopping && kick_one(s))
        n++;
    return n;
}

static int kick_one(struct sds *s)
{
    struct layers *l = &s->layers;
    const Cairn__ClusterMap *m = s->map;
    flat_sync(s);
    uint64_t now = now_ms();
    for (size_t vi = 0; vi < m->n_volumes; vi++) {
        const Cairn__Volume *v = m->volumes[vi];
        Cairn__Pool *p = v->flattening ? cmap_pool(m, v->pool_id) : NULL;
        if (!p || !p->n_pgs)
            continue;
        uint64_t rate = v->flatten_rate ? v->flatten_rate : FLATTEN_RATE_DEFAULT;
        if (l->flat_last)
            l->flat_tokens += (double)rate * (double)(now - l->flat_last) / 1000.0;
        if (l->flat_tokens > (double)rate / 4)
            l->flat_tokens = (double)rate / 4;
        l->flat_last = now;
        if (l->flat_tokens <= 0)
            return 0; /* the next heartbeat tries again */
        uint64_t chain[CMAP_CHAIN_MAX];
        int nchain = (int)cmap_chain(m, v, cmap_head(v), chain, CMAP_CHAIN_MAX);
        uint64_t next = (v->size + p->extent_size - 1) / p->extent_size;
        for (int di = 0; di < s->ndevs; di++) {
            struct dev *d = &s->devs[di];
            Cairn__Device *md = cmap_device(m, d->id);
            struct flat *f = md && md->pool_id == p->id ? flat_of(s, v->id, d->id) : NULL;
            if (!f || d->failed || !d->st)
                continue;
            if (f->version != v->flatten_version) {
                f->version = v->flatten_version;
                f->cursor = 0;
                f->inflight = 0;
            }
            for (int k = 0; k < FLATTEN_SCAN && f->cursor < next; k++, f->cursor++) {
                uint64_t e = f->cursor, need[BM_WORDS];
                const Cairn__Pg *g = p->pgs[layout_pg_of(cmap_placement(v), e, (uint32_t)p->n_pgs)];
                if (!pg_has_dev(g->devices, g->n_devices, d->id) || nchain < 2 ||
                    !needed(d->st, chain, nchain, e, need))
                    continue;
                struct flop *op = calloc(1, sizeof(*op));
                if (!op)
                    return 0;
                op->s = s;
                op->d = d;
                op->vol = v->id;
                op->version = v->flatten_version;
                op->ext = e;
                op->pool_id = p->id;
                op->pg = layout_pg_of(cmap_placement(v), e, (uint32_t)p->n_pgs);
                memcpy(op->chain, chain, sizeof(chain));
                op->nchain = nchain;
                op->extent_size = p->extent_size;
                op->len = (uint32_t)MIN(p->extent_size, v->size - e * p->extent_size);
                op->stage = FL_LOCK;
                l->flat_inflight++;
                f->inflight++;
                f->cursor++; /* the next kick looks on from the next extent */
                fl_continue(op);
                return 1;
            }
            if (f->cursor < next)
                return 0; /* more to look at: the next kick goes on */
        }
    }
    return 0;
}

void flatten_report(struct sds *s, Cairn__Heartbeat *hb)
{
    struct layers *l = &s->layers;
    const Cairn__ClusterMap *m = s->map;
    flat_sync(s);
    size_t n = 0;
    for (size_t vi = 0; vi < m->n_volumes; vi++)
        n += m->volumes[vi]->flattening;
    if (n > l->capfp) {
        Cairn__FlattenProgress *nf = realloc(l->fp, n * sizeof(*nf));
        Cairn__FlattenProgress **np = realloc(l->fpp, n * sizeof(*np));
        if (nf)
            l->fp = nf;
        if (np)
            l->fpp = np;
        if (!nf || !np)
            return;
        l->capfp = n;
    }
    size_t k = 0;
    for (size_t vi = 0; vi < m->n_volumes && k < n; vi++) {
        const Cairn__Volume *v = m->volumes[vi];
        Cairn__Pool *p = v->flattening ? cmap_pool(m, v->pool_id) : NULL;
        if (!p)
            continue;
        uint64_t next = (v->size + p->extent_size - 1) / p->extent_size, done = next;
        for (int di = 0; di < s->ndevs; di++) {
            Cairn__Device *md = cmap_device(m, s->devs[di].id);
            if (!md || md->pool_id != p->id || s->devs[di].failed)
                continue;
            struct flat *f = flat_of(s, v->id, s->devs[di].id);
            uint64_t c = f && f->version == v->flatten_version ? f->cursor : 0;
            if (f && f->inflight && c >= next)
                c = next - 1; /* through, but not done until the last ones are */
            done = MIN(done, c);
        }
        cairn__flatten_progress__init(&l->fp[k]);
        l->fp[k].volume_id = v->id;
        l->fp[k].done = done;
        l->fp[k].total = next;
        l->fp[k].map_version = m->version;
        l->fpp[k] = &l->fp[k];
        k++;
    }
    hb->n_flatten = k;
    hb->flatten = l->fpp;
}
