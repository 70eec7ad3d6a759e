/* The replicated write. Every mutation (WRITE, TRIM, ZERO) runs through
 * write_continue(), at the primary and at each copy alike; only the
 * primary forwards, and only the primary undoes a fresh allocation.
 *
 * write_continue() is resumable: r->stage says where it stopped, and each
 * completion (the range lock granted, the last copy answering) calls it
 * again to go on from there. Its body is the whole protocol, in order. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "extent_store.h"
#include "log.h"
#include "sds.h"
#include "util.h"

static void write_continue(struct ioreq *r);

static void granted_cb(struct range_lock *l)
{
    write_continue(container_of(l, struct ioreq, lock));
}

void write_start(struct ioreq *r)
{
    r->stage = WS_LOCK;
    write_continue(r);
}

void write_part_done(struct ioreq *r, int status)
{
    /* the first failure is the request's; while undoing, the ENOSPC stays */
    if (status < 0 && r->status >= 0 && !r->undoing)
        r->status = status;
    if (--r->pending > 0)
        return;
    write_continue(r);
}

static void local_done_cb(void *arg, int res)
{
    struct ioreq *r = arg;
    if (res < 0)
        devices_error(r->t.dev, res);
    if (res < 0 && res != -ENOSPC && res != -EINVAL)
        log_error("device %u: vol %llu extent %llu: %s", r->t.dev->id,
                  (unsigned long long)r->io.volume_id, (unsigned long long)r->t.ext,
                  strerror(-res));
    write_part_done(r, res);
}

/* Apply r->op to this SDS's copy of its layer; write_part_done() follows. */
static void apply_local(struct ioreq *r)
{
    struct sds *s = r->sds;
    struct extent_store *st = r->t.dev->st;
    uint64_t vol = r->t.layer, ext = r->t.ext;
    uint32_t off = r->t.off, len = r->io.length;
    int flags = ((r->io.flags & IO_FLAG_FUA) ? STORE_FUA : 0) | (r->t.thick ? STORE_THICK : 0);
    /* over another layer, clear granules must stay clear (reads take them
     * from below); a rebuild copy keeps the source's bitmap */
    if (r->t.nchain > 1 || r->t.raw)
        flags |= STORE_GRANULES;
    /* the whole extent, or all of a volume's shorter last extent */
    int whole = off == 0 && (len == r->t.extent_size || r->io.offset + len == r->t.vol_size);
    int keep = (r->io.flags & IO_FLAG_NO_HOLE) != 0;
    int rc;
    tracking_note(s, r->io.pool_id, r->io.pg, vol, ext);
    switch (r->op) {
    case FT_IO_WRITE:
        rc = store_write(st, vol, ext, off, len, r->payload, flags, local_done_cb, r);
        break;
    case FT_IO_TRIM:
        /* trim is advisory: partial extents keep their data */
        rc = whole ? store_free(st, vol, ext, local_done_cb, r) : 1;
        break;
    case FT_IO_ZERO:
        if (whole && !keep)
            rc = store_free(st, vol, ext, local_done_cb, r);
        else if (!store_allocated(st, vol, ext) && !keep)
            rc = 1; /* a hole already reads as zeroes */
        else
            rc = store_write(st, vol, ext, off, len, s->zeroes, flags, local_done_cb, r);
        break;
    default: rc = -EINVAL;
    }
    if (rc != 0) /* done already (1) or refused; no callback follows */
        write_part_done(r, rc > 0 ? 0 : rc);
}

/* A write that allocated a fresh extent on some copies and hit ENOSPC on
 * another is undone everywhere, so the copies never disagree about it. */
static int undo_needed(const struct ioreq *r)
{
    return r->status == -ENOSPC && r->fresh && !r->undoing && r->t.role == COPY_PRIMARY &&
           r->hdr.type != FT_IO_TRIM;
}

/* Turn r into a TRIM of the whole extent (still under r's range lock). */
static void undo_prepare(struct ioreq *r)
{
    r->undoing = 1;
    rpc_buf_free(r->payload);
    r->payload = NULL;
    r->op = FT_IO_TRIM;
    r->io.offset = r->t.ext * r->t.extent_size;
    r->io.length = (uint32_t)MIN(r->t.extent_size, r->t.vol_size - r->io.offset);
    r->t.off = 0;
}

/* ---- a change to a layer over others (docs/snapshots.md), at the primary ----
 *
 * The primary decides, and its copies apply what it forwards: a TRIM of an
 * extent that a layer under the head holds does nothing (freeing the head's
 * slot would show the older data); a ZERO of one becomes a write of zeroes;
 * a write that covers part of a granule the head does not have yet, while a
 * layer under it does, is widened to whole granules filled from the chain,
 * so the head's granule holds the rest of the data reads showed before. */

enum prep { PREP_GO, PREP_NOOP, PREP_WAIT, PREP_FAIL };

static void merge_read_cb(void *arg, int res);
static void merge_apply(struct ioreq *r, int res);

static uint64_t ext_len(const struct ioreq *r)
{
    return MIN(r->t.extent_size, r->t.vol_size - r->t.ext * r->t.extent_size);
}

/* The granule-aligned span [*s0, *s1) of r's range within its extent. */
static void granule_span(const struct ioreq *r, uint64_t gs, uint32_t *s0, uint32_t *s1)
{
    uint64_t a = r->t.off / gs * gs, b = ((uint64_t)r->t.off + r->io.length + gs - 1) / gs * gs;
    *s0 = (uint32_t)a;
    *s1 = (uint32_t)MIN(b, ext_len(r));
}

/* 1 if granule g is clear in the head and written in a layer under it. */
static int from_below(struct ioreq *r, uint32_t g)
{
    uint64_t bm[STORE_GRANULES_MAX / 64];
    struct extent_store *st = r->t.dev->st;
    if (store_written(st, r->t.chain[0], r->t.ext, bm, ARRAY_SIZE(bm)) > 0 &&
        ((bm[g / 64] >> (g % 64)) & 1))
        return 0;
    for (int i = 1; i < r->t.nchain; i++)
        if (store_written(st, r->t.chain[i], r->t.ext, bm, ARRAY_SIZE(bm)) > 0 &&
            ((bm[g / 64] >> (g % 64)) & 1))
            return 1;
    return 0;
}

static void merge_read_cb(void *arg, int res)
{
    struct ioreq *r = arg;
    merge_apply(r, res);
    if (r->stage == WS_MERGE)
        write_continue(r);
}

static enum prep prepare_layered(struct ioreq *r)
{
    if (r->t.role != COPY_PRIMARY || r->t.nchain < 2)
        return PREP_GO;
    struct extent_store *st = r->t.dev->st;
    int lower = chain_holds(st, r->t.chain, r->t.nchain, r->t.ext, 1);
    if (!lower)
        return PREP_GO;
    if (r->op == FT_IO_TRIM)
        return PREP_NOOP;
    if (r->op == FT_IO_ZERO) {
        r->payload = rpc_buf_alloc(r->io.length);
        if (!r->payload) {
            r->status = -ENOMEM;
            return PREP_FAIL;
        }
        memset(r->payload, 0, r->io.length);
        r->op = FT_IO_WRITE;
    }
    uint64_t gs = store_granule_size(st);
    uint32_t s0, s1, end = r->t.off + r->io.length;
    granule_span(r, gs, &s0, &s1);
    int head_part = s0 < r->t.off && from_below(r, (uint32_t)(s0 / gs));
    int tail_part = end < s1 && from_below(r, (uint32_t)((s1 - 1) / gs));
    if (!head_part && !tail_part)
        return PREP_GO;
    uint8_t *buf = rpc_buf_alloc(s1 - s0);
    if (!buf) {
        r->status = -ENOMEM;
        return PREP_FAIL;
    }
    r->merge_buf = buf;
    r->merge_off = s0;
    r->merge_len = s1 - s0;
    int rc = chain_read(st, r->t.chain, r->t.nchain, r->t.ext, s0, s1 - s0, buf, merge_read_cb, r);
    if (rc == 0)
        return PREP_WAIT;
    merge_read_cb(r, rc > 0 ? 0 : rc);
    return r->status < 0 ? PREP_FAIL : PREP_GO;
}

/* The span is read: the request becomes a write of all of it. */
static void merge_apply(struct ioreq *r, int res)
{
    uint8_t *buf = r->merge_buf;
    r->merge_buf = NULL;
    if (res < 0) {
        devices_error(r->t.dev, res);
        rpc_buf_free(buf);
        r->status = res;
        return;
    }
    uint32_t s0 = r->merge_off, span = r->merge_len;
    memcpy(buf + (r->t.off - s0), r->payload, r->io.length);
    rpc_buf_free(r->payload);
    r->payload = buf;
    r->io.offset = r->t.ext * r->t.extent_size + s0;
    r->io.length = span;
    r->t.off = s0;
}

static void write_continue(struct ioreq *r)
{
    struct sds *s = r->sds;
    switch (r->stage) {
    case WS_LOCK: break;
    case WS_LOCKED: goto resume_locked;
    case WS_MERGE: goto resume_merged;
    case WS_COPIES: goto resume_copies;
    case WS_UNDO: goto resume_undone;
    case WS_DONE: assert(!"write resumed after its reply"); return;
    }

    /* 1. Order. Overlapping mutations of an extent apply in arrival order.
     * Replicas order them too: one connection from the primary carries them
     * in the primary's order, but a write whose forward timed out at the
     * primary may still be queued here ahead of the next one, and two
     * overlapping writes in flight at once could land in either order.
     * TRIM and ZERO lock the whole extent (they may free it). */
    int whole = r->hdr.type == FT_IO_TRIM || r->hdr.type == FT_IO_ZERO;
    uint32_t l0 = r->t.off, l1 = r->t.off + r->io.length;
    if (r->t.nchain > 1) /* a write may be widened to whole granules */
        granule_span(r, store_granule_size(r->t.dev->st), &l0, &l1);
    range_lock_init(&r->lock, r->t.vol_id, r->t.ext, l0, l1 - l0,
                    whole ? RANGE_LOCK_EXTENT : RANGE_LOCK_BLOCKS, r->t.extent_size, granted_cb);
    r->stage = WS_LOCKED;
    int rc = range_lock_acquire(s->locks, &r->lock);
    if (rc == 0)
        return; /* granted_cb() resumes below */
    if (rc < 0) {
        r->status = rc;
        goto reply;
    }
resume_locked:
    if (r->t.role == COPY_PRIMARY && !r->client) {
        /* its client went away while it waited: nobody is there to be told,
         * so it is not served (a client that reconnects sends it again) */
        r->status = -ECANCELED;
        goto resume_undone;
    }
    switch (prepare_layered(r)) {
    case PREP_GO: break;
    case PREP_NOOP: goto resume_undone;
    case PREP_FAIL: goto resume_undone;
    case PREP_WAIT: r->stage = WS_MERGE; return; /* merge_read_cb() resumes below */
    }
resume_merged:
    if (r->status < 0)
        goto resume_undone;
    if (r->t.role == COPY_PRIMARY)
        r->fresh = !store_allocated(r->t.dev->st, r->t.layer, r->t.ext);

    r->stage = WS_COPIES;
copies:
    /* A count of our own while the parts start, so that none of them,
     * ending at once, ends the stage under us. */
    r->pending = 1;
    /* 2. Forward to every other copy (the primary only), in parallel... */
    if (r->t.role == COPY_PRIMARY)
        for (int i = 0; i < r->t.npeers; i++) {
            r->pending++;
            replicate_forward(r, i);
        }
    /* 3. ...with applying it here. */
    r->pending++;
    apply_local(r);
    /* 4. Wait for every copy: write_part_done() resumes below once the last
     * one answered (here at once if all have already). */
    if (--r->pending > 0)
        return;
resume_copies:
    /* Every copy has answered: the data is on every device, or the request
     * failed (the client retries). */
    if (undo_needed(r)) {
        /* 5. ENOSPC on a fresh extent: free it again everywhere, with the
         * same two steps, as a TRIM of the whole extent. */
        undo_prepare(r);
        r->stage = WS_UNDO;
        goto copies;
    }
resume_undone:
    /* 6. Release the lock: the next overlapping mutation may start. */
    range_lock_release(s->locks, &r->lock);
reply:
    /* 7. Acknowledge, only now that every copy has persisted it: an
     * acknowledgement is a durability promise. */
    r->stage = WS_DONE;
    dispatch_reply(r);
}
