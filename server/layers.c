/* Snapshots' layers on this SDS (docs/snapshots.md): what they hold, for
 * the heartbeat, and the merge of a removed snapshot's layer into the
 * layer above it.
 *
 * Usage: every few seconds a pass over the stores sums, per snapshot
 * layer, the bytes of written granules on the extents this SDS is primary
 * of (so the SDSs' sums are one copy's), and the part of them the layer
 * above has written over: what removing the snapshot frees. The same pass
 * lists the merge sources it still holds, and frees slots of layers the
 * map no longer has (a layer merged while this SDS was away: its data came
 * back merged with the catch-up).
 *
 * Merge: the map's LayerMerge {from, into} records say a snapshot was
 * removed. Each SDS folds its own slots of `from` into `into`, one extent
 * at a time, under the extent's range lock (client writes wait): a slot
 * `into` lacks is re-keyed (one table entry); otherwise the granules of
 * `from` that `into` has not written are copied into it (with FUA), then
 * `from`'s slot is freed. Reads see the same bytes throughout: they take
 * `into`'s granules before `from`'s. Every copy does the same with the
 * same data, so the copies stay equal; the change is noted for catch-up
 * and for the rebuild jobs under way. When every SDS reports no slot of
 * `from` left, the MDM leader drops the record. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "extent_store.h"
#include "layout.h"
#include "log.h"
#include "sds.h"
#include "util.h"

#define BM_WORDS (STORE_GRANULES_MAX / 64)

enum lm_stage { LM_LOCK, LM_LOCKED, LM_REKEYED, LM_READ, LM_WRITTEN, LM_FREED };

struct lmerge {
    struct sds *s;
    struct dev *d;
    uint64_t vol, from, into, ext;
    uint32_t pool_id, pg;
    uint64_t extent_size, gs;
    uint32_t len, ngran, next_g, run_off, run_len;
    uint64_t bm[BM_WORDS]; /* granules of from that into has not written */
    uint8_t *buf;
    int status;
    enum lm_stage stage;
    struct range_lock lock;
};

static unsigned popcount(const uint64_t *bm)
{
    unsigned n = 0;
    for (unsigned i = 0; i < BM_WORDS; i++)
        n += (unsigned)__builtin_popcountll(bm[i]);
    return n;
}

/* ---- usage ---- */

/* The layer whose parent is layer (the next newer snapshot's, or the
 * head's), or 0. */
static uint64_t child_of(const Cairn__ClusterMap *m, const Cairn__Volume *v, uint64_t layer)
{
    if (v->head_parent == layer)
        return cmap_head(v);
    for (size_t i = 0; i < m->n_snapshots; i++)
        if (m->snapshots[i]->volume_id == v->id && m->snapshots[i]->parent == layer)
            return m->snapshots[i]->layer;
    return 0;
}

static Cairn__LayerUsage *acc_slot(struct layers *l, uint64_t layer)
{
    for (size_t i = 0; i < l->nacc; i++)
        if (l->acc[i].layer == layer)
            return &l->acc[i];
    return NULL;
}

static void merging_add(struct layers *l, uint64_t layer)
{
    for (size_t i = 0; i < l->nacc_merging; i++)
        if (l->acc_merging[i] == layer)
            return;
    uint64_t *nm = realloc(l->acc_merging, (l->nacc_merging + 1) * sizeof(uint64_t));
    if (!nm)
        return;
    l->acc_merging = nm;
    l->acc_merging[l->nacc_merging++] = layer;
}

static void orphan_cb(void *arg, int res)
{
    (void)arg;
    if (res < 0)
        log_warn("freeing an extent of a removed layer failed: %s", strerror(-res));
}

static const Cairn__LayerMerge *merge_of(const Cairn__ClusterMap *m, uint64_t from)
{
    for (size_t i = 0; i < m->n_merges; i++)
        if (m->merges[i]->from == from)
            return m->merges[i];
    return NULL;
}

/* What the layers of the map are, in one number: a pass over the slots
 * after it changes finds the slots of layers it dropped. */
static uint64_t fingerprint(const Cairn__ClusterMap *m)
{
    uint64_t h = m->n_snapshots * 1000003u + m->n_merges * 7919u + m->n_volumes;
    for (size_t i = 0; i < m->n_snapshots; i++)
        h = h * 31 + m->snapshots[i]->layer;
    for (size_t i = 0; i < m->n_merges; i++)
        h = h * 37 + m->merges[i]->from;
    for (size_t i = 0; i < m->n_volumes; i++)
        h = h * 41 + cmap_head(m->volumes[i]);
    return h;
}

/* A slot of a removed snapshot's layer, to merge where this device is an
 * in-sync copy of its PG (a copy being rebuilt may not have both layers
 * yet: it merges once in sync). */
static void queue_merge(struct sds *s, struct dev *d, const Cairn__Volume *v, uint64_t from,
                        uint64_t ext)
{
    struct layers *l = &s->layers;
    Cairn__Pool *p = cmap_pool(s->map, v->pool_id);
    if (l->nq == LAYERS_QUEUE || !p || !p->n_pgs || ext * p->extent_size >= v->size)
        return;
    const Cairn__Pg *g = p->pgs[layout_pg_of(cmap_placement(v), ext, (uint32_t)p->n_pgs)];
    if (!pg_has_dev(g->devices, g->n_devices, d->id))
        return;
    l->q[l->nq++] = (struct layer_job){.dev = d->id, .from = from, .ext = ext};
}

static void count_slot(struct sds *s, struct dev *d, uint64_t layer, uint64_t ext)
{
    struct layers *l = &s->layers;
    const Cairn__ClusterMap *m = s->map;
    int ro;
    Cairn__Volume *v = cmap_layer_volume(m, layer, &ro);
    if (!v) {
        /* its layer is gone from the map: a removed snapshot's whose merge
         * ended while this SDS was away (its data came back merged with the
         * catch-up), or a removed volume's */
        if (store_free(d->st, layer, ext, orphan_cb, NULL) == 0)
            l->freed++;
        return;
    }
    if (!ro)
        return; /* a head: counted as the volume's */
    if (merge_of(m, layer)) {
        merging_add(l, layer);
        queue_merge(s, d, v, layer, ext);
        return;
    }
    Cairn__LayerUsage *u = acc_slot(l, layer);
    Cairn__Pool *p = cmap_pool(m, v->pool_id);
    if (!u || !p || !p->n_pgs)
        return;
    Cairn__Pg *g = p->pgs[layout_pg_of(cmap_placement(v), ext, (uint32_t)p->n_pgs)];
    if (!g->n_devices || g->devices[0] != d->id)
        return;
    uint64_t bm[BM_WORDS] = {0}, cb[BM_WORDS] = {0}, gs = store_granule_size(d->st);
    if (store_written(d->st, layer, ext, bm, BM_WORDS) <= 0)
        return;
    u->written += popcount(bm) * gs;
    uint64_t child = child_of(m, v, layer);
    if (child && store_written(d->st, child, ext, cb, BM_WORDS) > 0) {
        for (unsigned k = 0; k < BM_WORDS; k++)
            cb[k] &= bm[k];
        u->own += popcount(cb) * gs;
    }
}

static void pass_start(struct sds *s, uint64_t fp)
{
    struct layers *l = &s->layers;
    const Cairn__ClusterMap *m = s->map;
    free(l->acc);
    l->acc = calloc(m->n_snapshots + 1, sizeof(*l->acc));
    l->nacc = l->acc ? m->n_snapshots : 0;
    for (size_t i = 0; i < l->nacc; i++) {
        cairn__layer_usage__init(&l->acc[i]);
        l->acc[i].layer = m->snapshots[i]->layer;
    }
    l->nacc_merging = 0;
    l->pass_version = m->version;
    l->pass_fp = fp;
    l->pass_dev = 0;
    l->pass_cursor = 0;
    l->walking = 1;
}

/* The pass is over: what it counted is what the heartbeats say. */
static void pass_publish(struct layers *l)
{
    free(l->u);
    free(l->up);
    l->u = l->acc;
    l->n = l->nacc;
    l->acc = NULL;
    l->nacc = 0;
    l->up = calloc(l->n + 1, sizeof(*l->up));
    for (size_t i = 0; l->up && i < l->n; i++)
        l->up[i] = &l->u[i];
    if (!l->up)
        l->n = 0;
    uint64_t *t = l->merging;
    l->merging = l->acc_merging;
    l->nmerging = l->nacc_merging;
    l->acc_merging = t;
    l->nacc_merging = 0;
    l->pub_version = l->pass_version;
    l->done_fp = l->pass_fp;
    l->walking = 0;
    if (l->freed)
        log_info("freed %zu extents of layers the map no longer has", l->freed);
    l->freed = 0;
}

/* Go on with the pass over every slot, LAYERS_BUDGET slots a call, so
 * that a device of millions of slots never holds the loop long. A pass
 * runs while the map has snapshots or merges, and once after its layers
 * change. */
static void walk(struct sds *s)
{
    struct layers *l = &s->layers;
    const Cairn__ClusterMap *m = s->map;
    uint64_t fp = fingerprint(m);
    if (!l->walking) {
        if (!m->n_snapshots && !m->n_merges && fp == l->done_fp) {
            l->n = l->nmerging = 0;
            l->pub_version = m->version;
            return;
        }
        pass_start(s, fp);
    }
    size_t budget = LAYERS_BUDGET;
    while (budget > 0 && l->pass_dev < s->ndevs) {
        struct dev *d = &s->devs[l->pass_dev];
        uint64_t vols[256], exts[256];
        size_t n = d->failed || !d->st ? 0
                                       : store_list_all(d->st, &l->pass_cursor, vols, exts,
                                                        MIN(budget, ARRAY_SIZE(vols)));
        if (n == 0) {
            l->pass_dev++;
            l->pass_cursor = 0;
            continue;
        }
        budget -= n;
        for (size_t i = 0; i < n; i++)
            count_slot(s, d, vols[i], exts[i]);
    }
    if (l->pass_dev >= s->ndevs)
        pass_publish(l);
}

void layers_heartbeat(struct sds *s, Cairn__Heartbeat *hb)
{
    struct layers *l = &s->layers;
    if (!s->map)
        return;
    walk(s);
    hb->n_layers = l->n;
    hb->layers = l->up;
    hb->n_merging = l->nmerging;
    hb->merging = l->merging;
    hb->layers_version = l->pub_version;
    flatten_report(s, hb);
    layers_merge_kick(s);
}

/* ---- merge ---- */

static void lm_continue(struct lmerge *op);

static void lm_granted_cb(struct range_lock *lk)
{
    lm_continue(container_of(lk, struct lmerge, lock));
}

static void lm_io_cb(void *arg, int res)
{
    struct lmerge *op = arg;
    op->status = res;
    lm_continue(op);
}

static void next_cb(uv_timer_t *t)
{
    layers_merge_kick(t->data);
}

static void lm_done(struct lmerge *op, int status)
{
    struct sds *s = op->s;
    if (status < 0) {
        devices_error(op->d, status);
        LOG_LIMITED(LOG_WARN, 5000, "device %u: merging layer %llu into %llu, extent %llu: %s",
                    op->d->id, (unsigned long long)op->from, (unsigned long long)op->into,
                    (unsigned long long)op->ext, strerror(-status));
    } else {
        /* the copies away (catch-up) and the rebuilds under way get it */
        tracking_note(s, op->pool_id, op->pg, op->into, op->ext);
        rebuild_note(s, op->pool_id, op->pg, op->into, op->ext);
    }
    if (range_lock_is_held(&op->lock))
        range_lock_release(s->locks, &op->lock);
    rpc_buf_free(op->buf);
    free(op);
    s->layers.busy = 0;
    /* the next one from the loop, not from inside this completion; after
     * a failure, at the next heartbeat */
    if (status >= 0)
        layers_next_soon(s);
}

void layers_next_soon(struct sds *s)
{
    if (!s->stopping)
        uv_timer_start(&s->layers.next, next_cb, 0, 0);
}

/* The next run of granules to copy into op->run_off/len; 0 if none. */
static int next_run(struct lmerge *op)
{
    return bm_next_run(op->bm, op->ngran, op->gs, op->len, &op->next_g, &op->run_off, &op->run_len);
}

static void lm_continue(struct lmerge *op)
{
    struct sds *s = op->s;
    struct extent_store *st = op->d->st;
    int rc;
    switch (op->stage) {
    case LM_LOCK: break;
    case LM_LOCKED: goto resume_locked;
    case LM_REKEYED: goto resume_rekeyed;
    case LM_READ: goto resume_read;
    case LM_WRITTEN: goto resume_written;
    case LM_FREED: goto resume_freed;
    }
    range_lock_init(&op->lock, op->vol, op->ext, 0, op->len, RANGE_LOCK_EXTENT, op->extent_size,
                    lm_granted_cb);
    op->stage = LM_LOCKED;
    rc = range_lock_acquire(s->locks, &op->lock);
    if (rc == 0)
        return;
    if (rc < 0) {
        lm_done(op, rc);
        return;
    }
resume_locked:
    if (op->d->failed || s->stopping) {
        lm_done(op, -ECANCELED);
        return;
    }
    if (!store_allocated(st, op->into, op->ext)) {
        /* 1a. The layer above has nothing here: the slot becomes its. */
        op->stage = LM_REKEYED;
        rc = store_rekey(st, op->from, op->ext, op->into, lm_io_cb, op);
        if (rc == 0)
            return;
        op->status = rc > 0 ? 0 : rc;
    resume_rekeyed:
        lm_done(op, op->status);
        return;
    }
    /* 1b. Copy what `into` has not written, a run at a time. */
    uint64_t ib[BM_WORDS] = {0};
    int ng = store_written(st, op->from, op->ext, op->bm, BM_WORDS);
    store_written(st, op->into, op->ext, ib, BM_WORDS);
    for (unsigned k = 0; k < BM_WORDS; k++)
        op->bm[k] &= ~ib[k];
    op->ngran = ng > 0 ? (uint32_t)ng : 0;
    op->gs = store_granule_size(st);
    op->buf = rpc_buf_alloc(op->len);
    if (!op->buf) {
        lm_done(op, -ENOMEM);
        return;
    }
    while (next_run(op)) {
        op->stage = LM_READ;
        rc = store_read(st, op->from, op->ext, op->run_off, op->run_len, op->buf, lm_io_cb, op);
        if (rc == 0)
            return;
        op->status = rc > 0 ? 0 : rc;
    resume_read:
        if (op->status < 0) {
            lm_done(op, op->status);
            return;
        }
        op->stage = LM_WRITTEN;
        rc = store_write(st, op->into, op->ext, op->run_off, op->run_len, op->buf,
                         STORE_FUA | STORE_GRANULES, lm_io_cb, op);
        if (rc == 0)
            return;
        op->status = rc > 0 ? 0 : rc;
    resume_written:
        if (op->status < 0) {
            lm_done(op, op->status);
            return;
        }
    }
    /* 2. Everything of `from` is in `into` now, durably: free it. */
    op->stage = LM_FREED;
    rc = store_free(st, op->from, op->ext, lm_io_cb, op);
    if (rc == 0)
        return;
    op->status = rc > 0 ? 0 : rc;
resume_freed:
    lm_done(op, op->status);
}

static void merge_kick(struct sds *s);

void layers_merge_kick(struct sds *s)
{
    if (s->stopping || !s->map)
        return;
    if (!s->layers.busy)
        merge_kick(s);
    flatten_kick(s);
}

static void merge_kick(struct sds *s)
{
    struct layers *l = &s->layers;
    const Cairn__ClusterMap *m = s->map;
    while (l->nq > 0) {
        struct layer_job jb = l->q[0];
        memmove(&l->q[0], &l->q[1], (l->nq - 1) * sizeof(l->q[0]));
        l->nq--;
        const Cairn__LayerMerge *mg = merge_of(m, jb.from);
        Cairn__Volume *v = mg ? cmap_volume(m, mg->volume_id) : NULL;
        Cairn__Pool *p = v ? cmap_pool(m, v->pool_id) : NULL;
        struct dev *d = devices_find(s, jb.dev);
        if (!p || !p->n_pgs || !d || d->failed || !d->st ||
            !store_allocated(d->st, jb.from, jb.ext))
            continue; /* done meanwhile, or no longer asked for */
        const Cairn__Pg *g = p->pgs[layout_pg_of(cmap_placement(v), jb.ext, (uint32_t)p->n_pgs)];
        if (!pg_has_dev(g->devices, g->n_devices, d->id) || jb.ext * p->extent_size >= v->size)
            continue;
        struct lmerge *op = calloc(1, sizeof(*op));
        if (!op)
            return;
        op->s = s;
        op->d = d;
        op->vol = v->id;
        op->from = mg->from;
        op->into = mg->into;
        op->ext = jb.ext;
        op->pool_id = p->id;
        op->pg = layout_pg_of(cmap_placement(v), jb.ext, (uint32_t)p->n_pgs);
        op->extent_size = p->extent_size;
        op->len = (uint32_t)MIN(p->extent_size, v->size - jb.ext * p->extent_size);
        op->stage = LM_LOCK;
        l->busy = 1;
        lm_continue(op);
        return;
    }
}

void layers_init(struct sds *s)
{
    uv_timer_init(s->loop, &s->layers.next);
    s->layers.next.data = s;
}
