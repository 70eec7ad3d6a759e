/* The data path: an NBD request becomes an op, cut into pieces
 * (sdc_split.c); each piece goes to the primary SDS of its extent's PG with
 * the epoch of our map (FLUSH: one piece per SDS of the pool), is retried
 * while the cluster can heal the failure, and the op completes when its last
 * piece is done.
 *
 * The stages below read in the order a request meets them: submit, send,
 * reply, retry, finish. Ops come from the sdc's pool and hold their pieces
 * inline unless the span is long, so a request allocates nothing in steady
 * state. A completion never runs inside sdc_io_submit(): what ends there
 * (an error, a flush with nobody to flush) is finished from the loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "layout.h"
#include "log.h"
#include "rpc.h"
#include "rpc_peer.h"
#include "sdc.h"
#include "util.h"

#define PIECE_TIMEOUT_MS 5000 /* longer than an SDS waits for a copy (4 s) */
#define RETRY_MS 100
#define OP_POOL_KEEP 1024

static void piece_send(struct sdc_piece *pc);
static void op_finish_later(struct sdc_op *o, int err);

/* ---- submit ---- */

static enum frame_type frame_type_of(enum nbd_io_cmd cmd)
{
    switch (cmd) {
    case NBDIO_READ: return FT_IO_READ;
    case NBDIO_WRITE: return FT_IO_WRITE;
    case NBDIO_TRIM: return FT_IO_TRIM;
    case NBDIO_ZERO: return FT_IO_ZERO;
    case NBDIO_STATUS: return FT_IO_STAT;
    default: return FT_IO_FLUSH;
    }
}

static bool sdc_is_change(uint16_t type)
{
    return type == FT_IO_WRITE || type == FT_IO_TRIM || type == FT_IO_ZERO;
}

/* Complete io with -ENOMEM from the loop: no op could be had to carry it. */
static void nomem_later(struct sdc *s, struct nbd_io *io);

void sdc_io_submit(void *ctx, void *exp, struct nbd_io *io)
{
    struct sdc *s = ctx;
    struct sdc_vol *v = exp;
    struct sdc_op *o = pool_get(&s->op_pool);
    if (!o) {
        nomem_later(s, io);
        return;
    }
    o->sdc = s;
    o->io = io;
    o->v = v;
    v->refs++;
    o->type = frame_type_of(io->cmd);
    o->pieces = o->inline_pieces;
    o->deadline = 0; /* the I/O timeout starts when it is sent: see piece_send */
    io->backend = o;

    /* unmapped (or made read-only) while this connection held the export:
     * nothing new goes out (the SDSs would refuse it too) */
    if (!v->present || (v->ro && sdc_is_change(o->type))) {
        op_finish_later(o, -EACCES);
        return;
    }
    /* another SDC claimed the volume after this connection did: it is
     * fenced (the SDSs refuse its writer_gen too; this only saves them
     * the trip) and nothing of it is retried (docs/attach.md) */
    if (sdc_is_change(o->type) && v->writer_gen > io->claim) {
        LOG_LIMITED(LOG_WARN, 5000,
                    "volume %s: a change refused: another SDC took the volume over (this "
                    "connection's writer generation %llu, the map's %llu)",
                    v->name, (unsigned long long)io->claim, (unsigned long long)v->writer_gen);
        op_finish_later(o, -EPERM);
        return;
    }
    Cairn__Pool *p = cmap_pool(s->map, v->pool_id);
    uint64_t es = p ? p->extent_size : 0;
    if (!p || !es) {
        op_finish_later(o, -EIO);
        return;
    }
    if (io->cmd == NBDIO_ZERO && (io->flags & NBDIO_FAST_ZERO) &&
        !sdc_zero_is_fast(io->off, io->len, io->flags, es)) {
        op_finish_later(o, -ENOTSUP);
        return;
    }
    uint32_t n = io->cmd == NBDIO_FLUSH ? sdc_flush_targets(s->map, p->id, NULL, 0)
                                        : sdc_split_count(io->cmd, io->off, io->len, es);
    if (n == 0) {
        op_finish_later(o, 0); /* a pool with no SDS: nothing to flush */
        return;
    }
    if (n > SDC_OP_INLINE_PIECES) {
        o->pieces = calloc(n, sizeof(*o->pieces));
        if (!o->pieces) {
            o->pieces = o->inline_pieces;
            op_finish_later(o, -ENOMEM);
            return;
        }
    }
    o->npieces = n;
    o->pending = (int)n;
    if (io->cmd == NBDIO_FLUSH)
        sdc_flush_targets(s->map, p->id, o->pieces, n);
    else
        sdc_split(o->pieces, n, io->off, io->len, es);
    for (uint32_t i = 0; i < n; i++)
        o->pieces[i].op = o;
    /* No piece completes in here: its target was just taken from this map,
     * and a failure is queued for retry (the deadline is ahead), so the op
     * outlives this loop. */
    for (uint32_t i = 0; i < n; i++)
        piece_send(&o->pieces[i]);
}

/* ---- send ---- */

/* The connection to SDS id (made on first use, its address kept current),
 * or NULL if the map does not know it. */
static struct rpc_peer *sds_peer(struct sdc *s, uint32_t id)
{
    Cairn__Sds *sds = cmap_sds(s->map, id);
    if (!sds)
        return NULL;
    struct rpc_peer *p = NULL;
    for (int i = 0; i < s->nsds && !p; i++)
        if (rpc_peer_id(s->sds[i]) == id)
            p = s->sds[i];
    if (!p) {
        if (s->nsds == SDC_MAX_SDS)
            return NULL;
        p = rpc_peer_new(s->loop, id);
        if (!p)
            return NULL;
        s->sds[s->nsds++] = p;
    }
    rpc_peer_set_addr(p, sds->addr);
    return p;
}

static void piece_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg);
static void piece_retry(struct sdc_piece *pc, int err);
static void piece_done(struct sdc_piece *pc, int err);

/* Send pc on the current map: to its extent's primary with the PG's epoch,
 * or for FLUSH to its SDS. */
static void piece_send(struct sdc_piece *pc)
{
    struct sdc_op *o = pc->op;
    struct sdc *s = o->sdc;
    struct sdc_vol *v = o->v;
    struct rpc_peer *peer;
    if (o->io->cancelled) {
        piece_done(pc, -ECANCELED); /* its client is gone */
        return;
    }
    /* A request that waits because the cluster is busy is not failing: its
     * time counts from when it first goes to an SDS, not from when the
     * client queued it. */
    if (!o->deadline)
        o->deadline = now_ms() + s->io_timeout_ms;
    struct io_hdr h = {.volume_id = v->id, .offset = pc->off, .length = pc->len};
    if (o->io->flags & NBDIO_FUA)
        h.flags |= IO_FLAG_FUA;
    if (o->io->flags & NBDIO_NO_HOLE)
        h.flags |= IO_FLAG_NO_HOLE;
    /* the fence of the claim its connection was opened under, however long
     * it waits or is retried: a takeover since then makes it fail */
    if (sdc_is_change(o->type))
        h.writer_gen = o->io->claim;
    Cairn__Pool *p = cmap_pool(s->map, v->pool_id);
    if (!p || !p->n_pgs) {
        piece_retry(pc, -ESTALE);
        return;
    }
    h.pool_id = p->id;
    if (o->type == FT_IO_FLUSH) {
        Cairn__Sds *target = cmap_sds(s->map, pc->sds_id);
        if (!target || !sdc_flush_target(s->map, target, p->id)) {
            /* it left (down, maintenance) since the flush began: it holds no
             * copy any more, and the copies that took its writes are flushed */
            piece_done(pc, 0);
            return;
        }
        peer = sds_peer(s, pc->sds_id);
    } else {
        uint64_t ext = layout_extent_of(pc->off, p->extent_size);
        h.pg = layout_pg_of(v->placement, ext, (uint32_t)p->n_pgs);
        Cairn__Pg *g = p->pgs[h.pg];
        h.epoch = g->epoch;
        Cairn__Device *d = g->n_devices ? cmap_device(s->map, g->devices[0]) : NULL;
        peer = d ? sds_peer(s, d->sds_id) : NULL;
    }
    if (!peer) {
        piece_retry(pc, -ESTALE);
        return;
    }
    uint8_t msg[IO_HDR_MAX];
    uint32_t mlen = io_hdr_encode(&h, msg);
    /* a write's payload goes from the NBD request's buffer, which stays
     * until the op completes, after every call's reply */
    struct iovec iov = {0};
    int npl = 0;
    if (o->type == FT_IO_WRITE) {
        iov = (struct iovec){o->io->buf + pc->boff, pc->len};
        npl = 1;
    }
    int r = rpc_peer_call_owned(peer, o->io->owner, o->type, msg, mlen, &iov, npl, PIECE_TIMEOUT_MS,
                                piece_reply_cb, pc);
    if (r < 0)
        piece_retry(pc, r);
}

/* ---- reply ---- */

/* Failures the cluster heals (a new map, a restarted or replaced SDS):
 * retried until the deadline. */
static bool transient(int err)
{
    switch (-err) {
    case ESTALE:
    case EAGAIN:
    case ECONNRESET:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ECONNREFUSED:
    case ECANCELED:
    case ENOTCONN:
    case EPIPE:
    case EIO: return true;
    default: return false;
    }
}

/* An SDS refused us this volume (-EACCES). If our own map still grants it,
 * the SDS's map is older (a mapping just made, an SDS that restarted on its
 * saved map) and it is fetching a newer one: retry. If ours does not, the
 * volume was unmapped or made read-only: that is final. */
static bool access_may_heal(const struct sdc_op *o)
{
    return o->v->present && !(o->v->ro && sdc_is_change(o->type));
}

static void piece_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    struct sdc_piece *pc = arg;
    struct sdc_op *o = pc->op;
    if (o->io->cancelled) {
        rpc_buf_free(payload);
        piece_done(pc, status < 0 ? status : -ECANCELED);
        return;
    }
    if (status < 0 && (transient(status) || (status == -EACCES && access_may_heal(o)))) {
        if (status == -ETIMEDOUT)
            o->sdc->sds_timeouts++;
        rpc_buf_free(payload);
        piece_retry(pc, status);
        return;
    }
    if (status >= 0 && o->type == FT_IO_READ) {
        if (payload_len != pc->len) {
            LOG_LIMITED(LOG_WARN, 5000,
                        "volume %s: SDS returned %u bytes for a %u-byte read; retrying", o->v->name,
                        payload_len, pc->len);
            rpc_buf_free(payload);
            piece_retry(pc, -EIO);
            return;
        }
        if (o->npieces == 1 && !o->io->buf) {
            o->io->buf = payload; /* the reply goes out from this buffer */
            payload = NULL;
        } else {
            /* pieces assemble in one buffer of the request's size (from
             * the RPC layer's size-class cache, so no allocation either) */
            if (!o->io->buf)
                o->io->buf = rpc_buf_alloc(o->io->len);
            if (o->io->buf)
                memcpy(o->io->buf + pc->boff, payload, pc->len);
            else
                status = -ENOMEM;
        }
    }
    rpc_buf_free(payload);
    pc->status = status;
    piece_done(pc, status < 0 ? status : 0);
}

/* ---- retry ---- */

static void retry_timer_cb(uv_timer_t *t)
{
    struct sdc *s = t->data;
    struct sdc_piece *pc = s->retry_head;
    s->retry_head = NULL;
    uv_timer_stop(&s->retry_timer);
    s->retry_on = false;
    while (pc) {
        struct sdc_piece *next = pc->rnext;
        pc->rnext = NULL;
        piece_send(pc);
        pc = next;
    }
}

/* Send pc again after RETRY_MS (on a fresh map if the epoch was stale), or
 * give up with -EIO once the op's deadline has passed. */
static void piece_retry(struct sdc_piece *pc, int err)
{
    struct sdc_op *o = pc->op;
    struct sdc *s = o->sdc;
    if (o->io->cancelled) {
        piece_done(pc, -ECANCELED);
        return;
    }
    if (o->deadline && now_ms() >= o->deadline) {
        LOG_LIMITED(LOG_WARN, 5000, "volume %s: %u bytes at %llu: giving up after %u ms: %s",
                    o->v->name, pc->len, (unsigned long long)pc->off, s->io_timeout_ms,
                    strerror(-err));
        s->io_timeouts++;
        piece_done(pc, -EIO);
        return;
    }
    s->retries++;
    if (err == -ESTALE || err == -EAGAIN || err == -EACCES)
        sdc_map_refresh(s);
    pc->rnext = s->retry_head;
    s->retry_head = pc;
    if (!s->retry_on) {
        s->retry_on = true;
        uv_timer_start(&s->retry_timer, retry_timer_cb, RETRY_MS, 0);
    }
}

/* ---- finish ---- */

/* The op is over: merge block status, give everything back, answer. */
static void op_finish(struct sdc_op *o)
{
    struct sdc *s = o->sdc;
    struct nbd_io *io = o->io;
    int err = o->err;
    if (!err && io->cmd == NBDIO_STATUS)
        io->next = sdc_merge_status(o->pieces, o->npieces, io->ext, NBD_MAX_EXTENTS);
    if (o->pieces != o->inline_pieces)
        free(o->pieces);
    sdc_vol_unref(s, o->v);
    pool_put(&s->op_pool, o);
    io->backend = NULL;
    nbd_io_done(io, err);
}

static void piece_done(struct sdc_piece *pc, int err)
{
    struct sdc_op *o = pc->op;
    if (err < 0 && !o->err)
        o->err = err;
    if (--o->pending == 0)
        op_finish(o);
}

static void later_cb(uv_timer_t *t)
{
    struct sdc *s = t->data;
    struct sdc_op *o = s->later_head;
    struct nbd_io *io = s->nomem_head;
    s->later_head = NULL;
    s->later_tail = &s->later_head;
    s->nomem_head = NULL;
    while (o) {
        struct sdc_op *next = o->later_next;
        op_finish(o);
        o = next;
    }
    while (io) {
        struct nbd_io *next = io->backend;
        io->backend = NULL;
        nbd_io_done(io, -ENOMEM);
        io = next;
    }
}

static void later_start(struct sdc *s)
{
    if (!uv_is_active((uv_handle_t *)&s->later_timer))
        uv_timer_start(&s->later_timer, later_cb, 0, 0);
}

/* Finish o (with no piece in flight) with err on the next loop turn. */
static void op_finish_later(struct sdc_op *o, int err)
{
    struct sdc *s = o->sdc;
    o->err = err;
    o->later_next = NULL;
    *s->later_tail = o;
    s->later_tail = &o->later_next;
    later_start(s);
}

static void nomem_later(struct sdc *s, struct nbd_io *io)
{
    io->backend = s->nomem_head;
    s->nomem_head = io;
    later_start(s);
}

/* ---- setup ---- */

void sdc_io_init(struct sdc *s)
{
    s->op_pool = (struct pool)POOL_INIT(struct sdc_op, OP_POOL_KEEP);
    uv_timer_init(s->loop, &s->retry_timer);
    s->retry_timer.data = s;
    uv_timer_init(s->loop, &s->later_timer);
    s->later_timer.data = s;
    s->later_tail = &s->later_head;
}

void sdc_io_cancel(void *ctx, const void *owner)
{
    struct sdc *s = ctx;
    unsigned n = 0;
    for (int i = 0; i < s->nsds; i++)
        n += rpc_peer_cancel(s->sds[i], owner);
    if (n)
        log_debug("a client went away: %u of its requests not sent", n);
}

void sdc_io_shutdown(struct sdc *s)
{
    pool_drain(&s->op_pool);
}
