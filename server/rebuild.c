/* Rebuild: a primary fills the rebuilding copies of its PGs.
 *
 * A job per (PG, target device) lists the extents to send: all this SDS
 * holds of the PG for a full copy; for a catch-up (the target kept its
 * data) only what changed while it was away, or, when that record is not
 * complete here, what either side holds (the target sends its list). Each
 * extent is copied under the same range lock client writes take, so a copy
 * never lands after (and over) a newer write: writes that start after the
 * target joined are forwarded to it anyway, and a write already running
 * finishes before the copy reads the extent. When every extent is across,
 * the primary reports the PG to the MDM, which makes the target in-sync.
 * Copies are throttled by a token bucket (--rebuild-rate).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "extent_store.h"
#include "layout.h"
#include "log.h"
#include "mdm_session.h"
#include "rpc_peer.h"
#include "sds.h"
#include "util.h"

#define REBUILD_MAX_INFLIGHT 2

struct rjob {
    struct sds *sds;
    struct rjob *next;
    uint32_t pool_id, pg, target_dev, target_sds;
    uint64_t *vols, *exts;
    size_t n, cap, next_i;
    int inflight;
    int reporting;
    int cancelled;
    int fresh;    /* created by this sync: its extents are being listed */
    int catchup;  /* the target keeps its data: sync only what differs */
    int listing;  /* waiting for the target's extent list */
    int unlisted; /* still to get it (asked again at retry_at) */
    uint64_t retry_at;
};

/* The stages of one extent's copy, in the order they run. */
enum rcopy_stage {
    RC_LOCK,   /* about to take the extent's range lock */
    RC_LOCKED, /* waiting for it; then read (or, a hole, tell the target to free) */
    RC_READ,   /* waiting for the local read; then send */
    RC_CLEAR,  /* waiting for the target to free its slot (a partly written extent) */
    RC_SENT,   /* waiting for the target's answer */
};

/* One extent being copied to a job's target; from s->rebuild.copies. */
struct rcopy {
    struct rjob *job;
    struct dev *dev; /* this SDS's copy, read from */
    uint64_t layer;  /* the store key copied (io.layer) */
    uint64_t ext;
    uint64_t extent_size;
    /* The granules written here, sent as runs so that the target's bitmap
     * is this one (a layer's clear granules read from the layer under it):
     * [next_g, ngran) are still to send. */
    uint64_t bm[STORE_GRANULES_MAX / 64];
    uint32_t ngran, next_g;
    uint64_t gs;
    uint32_t len;     /* of the extent (a volume's last one may be shorter) */
    struct io_hdr io; /* what the target applies: REPLICA|REBUILD, in the PG's epoch */
    uint8_t *payload;
    int status; /* of the last step */
    enum rcopy_stage stage;
    struct range_lock lock;
};

static void rebuild_pump(struct sds *s);
static void pg_list_fetch(struct rjob *j);

void rebuild_init(struct sds *s)
{
    s->rebuild.copies = (struct pool)POOL_INIT(struct rcopy, 64);
}

static struct rjob *rjob_find(struct sds *s, uint32_t pool_id, uint32_t pg, uint32_t target)
{
    for (struct rjob *j = s->rebuild.jobs; j; j = j->next)
        if (j->pool_id == pool_id && j->pg == pg && j->target_dev == target && !j->cancelled)
            return j;
    return NULL;
}

static void rjob_unlink_free(struct rjob *j)
{
    struct rjob **pp = &j->sds->rebuild.jobs;
    while (*pp && *pp != j)
        pp = &(*pp)->next;
    if (*pp)
        *pp = j->next;
    free(j->vols);
    free(j->exts);
    free(j);
}

static void rjob_add_extent(struct rjob *j, uint64_t vol, uint64_t ext)
{
    if (j->n == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 64;
        j->vols = realloc(j->vols, j->cap * sizeof(uint64_t));
        j->exts = realloc(j->exts, j->cap * sizeof(uint64_t));
        if (!j->vols || !j->exts)
            abort();
    }
    j->vols[j->n] = vol;
    j->exts[j->n] = ext;
    j->n++;
}

static void rjob_add_cb(void *arg, uint64_t vol, uint64_t ext)
{
    rjob_add_extent(arg, vol, ext);
}

static int extent_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] != y[1] ? (x[1] < y[1] ? -1 : 1) : 0);
}

/* Sort a job's extents and drop repeats (an extent changed many times is sent once). */
static void rjob_dedupe(struct rjob *j)
{
    uint64_t *pairs = malloc(j->n * 2 * sizeof(uint64_t) + 1);
    if (!pairs)
        return;
    for (size_t i = 0; i < j->n; i++) {
        pairs[2 * i] = j->vols[i];
        pairs[2 * i + 1] = j->exts[i];
    }
    qsort(pairs, j->n, 2 * sizeof(uint64_t), extent_cmp);
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++) {
        if (n && pairs[2 * i] == j->vols[n - 1] && pairs[2 * i + 1] == j->exts[n - 1])
            continue;
        j->vols[n] = pairs[2 * i];
        j->exts[n] = pairs[2 * i + 1];
        n++;
    }
    j->n = n;
    free(pairs);
}

/* ---- reporting a finished copy to the MDM ---- */

static void report_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                      uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    struct rjob *j = arg;
    rpc_buf_free(payload);
    j->reporting = 0;
    if (status == 0) {
        log_info("PG %u.%u: copy on device %u complete", j->pool_id, j->pg, j->target_dev);
        j->cancelled = 1; /* done: the next map makes the target in-sync */
        return;
    }
    /* The PG moved on (new epoch) or the MDM is away: report again soon. */
    j->retry_at = now_ms() + 500;
    map_fetch(j->sds);
}

static void report(struct rjob *j)
{
    struct sds *s = j->sds;
    Cairn__Pool *p = cmap_pool(s->map, j->pool_id);
    struct rpc_conn *c = mdm_session_conn(s->mdm);
    if (!p || j->pg >= p->n_pgs || !c) {
        j->retry_at = now_ms() + 1000;
        return;
    }
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_PG_REBUILT;
    req.pool_id = j->pool_id;
    req.pg = j->pg;
    req.device_id = j->target_dev;
    req.epoch = p->pgs[j->pg]->epoch;
    if (rpc_call_pb(c, FT_PG_REBUILT, &req.base, 10000, report_cb, j) == 0)
        j->reporting = 1;
    else
        j->retry_at = now_ms() + 1000;
}

/* ---- copying one extent ---- */

static void rcopy_continue(struct rcopy *c);

static void rcopy_granted_cb(struct range_lock *l)
{
    rcopy_continue(container_of(l, struct rcopy, lock));
}

static void rcopy_read_cb(void *arg, int res)
{
    struct rcopy *c = arg;
    c->status = res;
    rcopy_continue(c);
}

static void rcopy_sent_cb(struct rpc_conn *conn, int status, const uint8_t *msg, uint32_t msg_len,
                          uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)conn;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    struct rcopy *c = arg;
    rpc_buf_free(payload);
    c->status = status;
    rcopy_continue(c);
}

/* 1 if j moves a copy rather than restoring one: its PG has a leaving copy
 * (the one j's target replaces, for balance or a drain), in the map now. */
static int rjob_rebalance(const struct rjob *j)
{
    Cairn__Pool *p = cmap_pool(j->sds->map, j->pool_id);
    return p && j->pg < p->n_pgs && p->pgs[j->pg]->n_leaving > 0;
}

static void rcopy_done(struct rcopy *c, int status)
{
    struct rjob *j = c->job;
    struct sds *s = j->sds;
    if (status == 0) {
        s->rebuild.done_bytes += c->len;
        if (rjob_rebalance(j))
            s->rebuild.rebalance_done_bytes += c->len;
    } else if (!j->cancelled) {
        /* try this extent again after a pause (the map may be changing) */
        if (status != -ESTALE && status != -EAGAIN && status != -ECANCELED)
            log_warn("PG %u.%u: copying extent %llu/%llu to device %u failed: %s", j->pool_id,
                     j->pg, (unsigned long long)c->layer, (unsigned long long)c->ext, j->target_dev,
                     strerror(-status));
        rjob_add_extent(j, c->layer, c->ext);
        j->retry_at = now_ms() + 500;
    }
    if (range_lock_is_held(&c->lock))
        range_lock_release(s->locks, &c->lock);
    rpc_buf_free(c->payload);
    pool_put(&s->rebuild.copies, c);
    j->inflight--;
    s->rebuild.inflight--;
    if (j->cancelled && !j->inflight && !j->reporting && !j->listing)
        rjob_unlink_free(j);
    rebuild_pump(s);
}

/* Send c's header (and payload, if any) to the target as a type request. */
static void rcopy_send(struct rcopy *c, uint16_t type)
{
    struct rpc_peer *p = map_peer(c->job->sds, c->job->target_sds);
    if (!p) {
        rcopy_done(c, -EHOSTUNREACH);
        return;
    }
    uint8_t msg[IO_HDR_MAX];
    uint32_t mlen = io_hdr_encode(&c->io, msg);
    int data = type == FT_IO_WRITE;
    struct iovec iov = {data ? c->payload + (c->io.offset - c->ext * c->extent_size) : NULL,
                        data ? c->io.length : 0};
    int rc = rpc_peer_call(p, type, msg, mlen, data ? &iov : NULL, data ? 1 : 0, SDS_FWD_TIMEOUT_MS,
                           rcopy_sent_cb, c);
    if (rc < 0)
        rcopy_done(c, rc);
}

static int gbit(const struct rcopy *c, uint32_t g)
{
    return (int)((c->bm[g / 64] >> (g % 64)) & 1);
}

static int granules_all(const struct rcopy *c)
{
    for (uint32_t g = 0; g < c->ngran; g++)
        if (!gbit(c, g) && (uint64_t)g * c->gs < c->len)
            return 0;
    return 1;
}

static void set_range(struct rcopy *c, uint32_t off, uint32_t len)
{
    c->io.offset = c->ext * c->extent_size + off;
    c->io.length = len;
}

/* The next run of written granules from next_g into c->io; 0 if none. */
static int next_run(struct rcopy *c)
{
    uint32_t off, len;
    if (!bm_next_run(c->bm, c->ngran, c->gs, c->len, &c->next_g, &off, &len))
        return 0;
    set_range(c, off, len);
    return 1;
}

static void rcopy_continue(struct rcopy *c)
{
    struct rjob *j = c->job;
    struct sds *s = j->sds;
    switch (c->stage) {
    case RC_LOCK: break;
    case RC_LOCKED: goto resume_locked;
    case RC_READ: goto resume_read;
    case RC_CLEAR: goto resume_cleared;
    case RC_SENT: goto resume_sent;
    }

    /* 1. The extent's range lock, as client writes take it. */
    range_lock_init(&c->lock, c->io.volume_id, c->ext, 0, c->len, RANGE_LOCK_BLOCKS, c->extent_size,
                    rcopy_granted_cb);
    c->stage = RC_LOCKED;
    int rc = range_lock_acquire(s->locks, &c->lock);
    if (rc == 0)
        return; /* rcopy_granted_cb() resumes below */
    if (rc < 0) {
        rcopy_done(c, rc);
        return;
    }
resume_locked:
    if (j->cancelled) {
        rcopy_done(c, 0);
        return;
    }
    if (s->stopping) {
        /* shutting down: no new store read or send for this copy; the
         * jobs end with the daemon and are planned again from the map
         * when it (or the next primary) starts */
        rcopy_done(c, -ECANCELED);
        return;
    }
    int ng = store_written(c->dev->st, c->layer, c->ext, c->bm, ARRAY_SIZE(c->bm));
    if (j->catchup && ng <= 0) {
        /* 2a. Catching up, and a hole here: the target frees its copy. */
        c->stage = RC_SENT;
        rcopy_send(c, FT_IO_TRIM);
        return;
    }
    c->ngran = ng > 0 ? (uint32_t)ng : 0;
    c->gs = store_granule_size(c->dev->st);
    c->next_g = 0;
    /* 2. Read the extent. */
    c->payload = rpc_buf_alloc(c->len);
    if (!c->payload) {
        rcopy_done(c, -ENOMEM);
        return;
    }
    c->stage = RC_READ;
    rc = store_read(c->dev->st, c->layer, c->ext, 0, c->len, c->payload, rcopy_read_cb, c);
    if (rc == 1)
        rcopy_done(c, 0); /* freed since it was listed: the target got the free */
    else if (rc < 0)
        rcopy_done(c, rc);
    return;
resume_read:
    if (c->status < 0)
        devices_error(c->dev, c->status);
    if (c->status < 0 || j->cancelled) {
        rcopy_done(c, c->status < 0 ? c->status : 0);
        return;
    }
    if (!granules_all(c)) {
        /* 3a. Partly written: the target's slot starts empty, so that it
         * ends with exactly the granules written here. */
        c->stage = RC_CLEAR;
        set_range(c, 0, c->len);
        rcopy_send(c, FT_IO_TRIM);
        return;
    }
resume_cleared:
    if (c->stage == RC_CLEAR && c->status < 0) {
        rcopy_done(c, c->status);
        return;
    }
    /* 3. Send it to the target, one run of written granules at a time. */
    for (;;) {
        if (!next_run(c)) {
            rcopy_done(c, 0);
            return;
        }
        c->stage = RC_SENT;
        rcopy_send(c, FT_IO_WRITE);
        return;
    resume_sent:
        /* 4. The target has it on its device (or not: the extent goes again). */
        if (c->status < 0) {
            rcopy_done(c, c->status);
            return;
        }
    }
}

/* Start copying the next extent of j; 0 if it has none ready. */
static int start_one(struct rjob *j)
{
    struct sds *s = j->sds;
    Cairn__Pool *p = cmap_pool(s->map, j->pool_id);
    if (!p || j->pg >= p->n_pgs)
        return 0;
    Cairn__Pg *g = p->pgs[j->pg];
    struct dev *d = g->n_devices ? devices_find(s, g->devices[0]) : NULL;
    while (j->next_i < j->n) {
        uint64_t layer = j->vols[j->next_i], ext = j->exts[j->next_i];
        j->next_i++;
        Cairn__Volume *v = cmap_layer_volume(s->map, layer, NULL);
        if (!v || !d || ext * p->extent_size >= v->size)
            continue; /* volume or layer removed since listing */
        struct rcopy *c = pool_get(&s->rebuild.copies);
        if (!c) {
            j->next_i--; /* no memory now: this extent is the next one again */
            return 0;
        }
        c->job = j;
        c->dev = d;
        c->layer = layer;
        c->ext = ext;
        c->extent_size = p->extent_size;
        c->len = (uint32_t)MIN(p->extent_size, v->size - ext * p->extent_size);
        c->io = (struct io_hdr){.volume_id = v->id,
                                .offset = ext * p->extent_size,
                                .length = c->len,
                                .flags = IO_FLAG_REPLICA | IO_FLAG_REBUILD,
                                .pool_id = p->id,
                                .pg = j->pg,
                                .epoch = g->epoch,
                                .layer = layer};
        j->inflight++;
        s->rebuild.inflight++;
        s->rebuild.tokens -= (double)c->len;
        c->stage = RC_LOCK;
        rcopy_continue(c);
        return 1;
    }
    return 0;
}

static void rebuild_pump_once(struct sds *s);

/* Start what the throttle allows. A copy that ends at once inside the loop
 * (its target unreachable, say) pumps again: that runs after the loop, not
 * inside it, which may then be holding a job the inner pump would free. */
static void rebuild_pump(struct sds *s)
{
    struct rebuild *rb = &s->rebuild;
    if (rb->pumping) {
        rb->repump = 1;
        return;
    }
    rb->pumping = 1;
    do {
        rb->repump = 0;
        rebuild_pump_once(s);
    } while (rb->repump);
    rb->pumping = 0;
}

static void rebuild_pump_once(struct sds *s)
{
    struct rebuild *rb = &s->rebuild;
    /* Shutting down: the copies under way end, no new one starts, so the
     * work the shutdown waits for only shrinks. */
    if (s->stopping)
        return;
    uint64_t now = now_ms();
    if (rb->last_ms) {
        rb->tokens += (double)rb->rate * (double)(now - rb->last_ms) / 1000.0;
        if (rb->tokens > (double)rb->rate / 4)
            rb->tokens = (double)rb->rate / 4; /* at most a quarter second's burst */
    }
    rb->last_ms = now;
    for (struct rjob *j = rb->jobs, *next; j; j = next) {
        next = j->next;
        if (j->cancelled) {
            if (!j->inflight && !j->reporting && !j->listing)
                rjob_unlink_free(j);
            continue;
        }
        if (j->retry_at > now)
            continue;
        if (j->listing)
            continue;
        if (j->unlisted) {
            pg_list_fetch(j);
            continue;
        }
        while (rb->inflight < REBUILD_MAX_INFLIGHT && rb->tokens > 0 && start_one(j))
            ;
        if (j->next_i == j->n && !j->inflight && !j->reporting)
            report(j);
    }
}

void rebuild_timer_cb(uv_timer_t *t)
{
    struct sds *s = t->data;
    struct rebuild *rb = &s->rebuild;
    /* recent rate, for the CLI's ETA */
    uint64_t now = now_ms();
    if (now - rb->rate_mark_ms >= 2000) {
        uint64_t rate = (rb->done_bytes - rb->rate_mark) * 1000 / (now - rb->rate_mark_ms);
        rb->rate_ewma = (rb->rate_ewma + rate) / 2;
        rb->rate_mark = rb->done_bytes;
        rb->rate_mark_ms = now;
    }
    if (rb->jobs)
        rebuild_pump(s);
}

void rebuild_note(struct sds *s, uint32_t pool_id, uint32_t pg, uint64_t layer, uint64_t ext)
{
    for (struct rjob *j = s->rebuild.jobs; j; j = j->next)
        if (!j->cancelled && j->pool_id == pool_id && j->pg == pg)
            rjob_add_extent(j, layer, ext);
}

void rebuild_fill_status(struct sds *s, Cairn__RebuildStatus *rs)
{
    cairn__rebuild_status__init(rs);
    for (struct rjob *j = s->rebuild.jobs; j; j = j->next) {
        if (j->cancelled)
            continue;
        Cairn__Pool *p = cmap_pool(s->map, j->pool_id);
        uint64_t left = (j->n - j->next_i + (size_t)j->inflight) * (p ? p->extent_size : 0);
        rs->pgs_left++;
        rs->bytes_left += left;
        if (rjob_rebalance(j)) {
            rs->rebalance_pgs_left++;
            rs->rebalance_bytes_left += left;
        }
    }
    rs->bytes_done = s->rebuild.done_bytes;
    rs->rebalance_bytes_done = s->rebuild.rebalance_done_bytes;
    rs->bytes_received = s->rebuild.recv_bytes;
    rs->rate = s->rebuild.rate_ewma;
}

/* ---- catch-up compare: the target's extent list ---- */

static void pg_list_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                       uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    struct rjob *j = arg;
    j->listing = 0;
    long npairs = status < 0 ? -EINVAL : validate_pg_list_reply(payload_len);
    if (npairs < 0) {
        /* asked again in a second (rebuild_pump): the job cannot finish
         * without it */
        j->retry_at = now_ms() + 1000;
        rpc_buf_free(payload);
        if ((j->cancelled || j->sds->stopping) && !j->inflight && !j->reporting)
            rjob_unlink_free(j);
        return;
    }
    j->unlisted = 0;
    for (long i = 0; i < npairs; i++)
        rjob_add_extent(j, get_be64(payload + i * 16), get_be64(payload + i * 16 + 8));
    rpc_buf_free(payload);
    rjob_dedupe(j);
    log_info("PG %u.%u: catching device %u up by comparing %zu extents", j->pool_id, j->pg,
             j->target_dev, j->n);
    rebuild_pump(j->sds);
}

static void pg_list_fetch(struct rjob *j)
{
    j->unlisted = 1;
    struct rpc_peer *p = map_peer(j->sds, j->target_sds);
    uint8_t msg[8];
    put_be32(msg, j->pool_id);
    put_be32(msg + 4, j->pg);
    j->listing = 1;
    if (!p || rpc_peer_call(p, FT_PG_LIST, msg, 8, NULL, 0, 30000, pg_list_cb, j) < 0) {
        j->listing = 0;
        j->retry_at = now_ms() + 1000;
    }
}

/* ---- planning: jobs after a map change ---- */

/* Drop the jobs whose PG this SDS no longer leads or whose target is no
 * longer rebuilding. */
static void cancel_moot(struct sds *s)
{
    for (struct rjob *j = s->rebuild.jobs; j; j = j->next) {
        Cairn__Pool *p = cmap_pool(s->map, j->pool_id);
        Cairn__Pg *g = p && j->pg < p->n_pgs ? p->pgs[j->pg] : NULL;
        Cairn__Device *prim = g && g->n_devices ? cmap_device(s->map, g->devices[0]) : NULL;
        int still = prim && prim->sds_id == s->my_id;
        int target = 0;
        for (size_t k = 0; g && k < g->n_rebuilding; k++)
            target |= g->rebuilding[k] == j->target_dev;
        if (!still || !target)
            j->cancelled = 1;
    }
}

/* One pass over the stores lists the extents of every new full job. */
static void list_fresh(struct sds *s)
{
    uint64_t vols[1024], exts[1024];
    for (int di = 0; di < s->ndevs; di++) {
        if (s->devs[di].failed)
            continue;
        uint64_t cursor = 0;
        size_t n;
        while ((n = store_list_all(s->devs[di].st, &cursor, vols, exts, 1024)) > 0) {
            for (size_t i = 0; i < n; i++) {
                Cairn__Volume *v = cmap_layer_volume(s->map, vols[i], NULL);
                Cairn__Pool *p = v ? cmap_pool(s->map, v->pool_id) : NULL;
                if (!p || !p->n_pgs)
                    continue;
                uint32_t pg = layout_pg_of(cmap_placement(v), exts[i], (uint32_t)p->n_pgs);
                if (p->pgs[pg]->n_devices && p->pgs[pg]->devices[0] != s->devs[di].id)
                    continue;
                for (struct rjob *j = s->rebuild.jobs; j; j = j->next)
                    if (j->fresh && j->pool_id == p->id && j->pg == pg)
                        rjob_add_extent(j, vols[i], exts[i]);
            }
        }
    }
    for (struct rjob *j = s->rebuild.jobs; j; j = j->next)
        j->fresh = 0;
}

void rebuild_sync(struct sds *s)
{
    cancel_moot(s);
    int added = 0;
    for (size_t pi = 0; pi < s->map->n_pools; pi++) {
        Cairn__Pool *p = s->map->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            if (!g->n_rebuilding || !g->n_devices)
                continue;
            Cairn__Device *prim = cmap_device(s->map, g->devices[0]);
            struct dev *d = prim ? devices_find(s, prim->id) : NULL;
            if (!prim || prim->sds_id != s->my_id || !d || d->failed)
                continue;
            for (size_t k = 0; k < g->n_rebuilding; k++) {
                if (rjob_find(s, p->id, (uint32_t)gi, g->rebuilding[k]))
                    continue;
                Cairn__Device *t = cmap_device(s->map, g->rebuilding[k]);
                struct rjob *j = calloc(1, sizeof(*j));
                if (!t || !j) {
                    free(j);
                    continue;
                }
                j->sds = s;
                j->pool_id = p->id;
                j->pg = (uint32_t)gi;
                j->target_dev = t->id;
                j->target_sds = t->sds_id;
                j->next = s->rebuild.jobs;
                s->rebuild.jobs = j;
                j->catchup = pg_has_dev(g->catchup, g->n_catchup, t->id);
                if (j->catchup && tracking_complete(s, p->id, (uint32_t)gi)) {
                    /* only what changed while it was away */
                    tracking_changes(s, p->id, (uint32_t)gi, rjob_add_cb, j);
                    rjob_dedupe(j);
                    log_info("PG %u.%zu: catching device %u up: %zu changed extents", p->id, gi,
                             t->id, j->n);
                } else {
                    /* everything here, plus whatever the target has that we do not */
                    j->fresh = 1;
                    if (j->catchup)
                        pg_list_fetch(j);
                    added++;
                }
            }
        }
    }
    if (added) {
        list_fresh(s);
        log_info("rebuild: leading %d new PG copies", added);
    }
    rebuild_pump(s);
}
