/* Transmission: each request header is decoded and validated (nbd_parse.c),
 * its payload received or skipped (nbd_conn.c), then it is run by the
 * backend or answered here; every request gets exactly one reply, in the
 * order the completions come (docs/nbd.md, "Transmission").
 *
 * Requests come from the server's pool: none is allocated per I/O once the
 * pool has grown to the queue depth. */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "nbd_internal.h"
#include "rpc.h"
#include "util.h"

/* ---- replies ---- */

/* The one translation of internal errors to NBD error codes. */
static uint32_t nbd_errno(int err)
{
    switch (-err) {
    case 0: return 0;
    case EPERM:
    case EACCES: /* the volume was unmapped, or made read-only */
    case EROFS: return NBD_EPERM;
    case ENOMEM: return NBD_ENOMEM;
    case EINVAL: return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return NBD_ENOSPC;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

/* A simple reply; data (len bytes, or NULL) is the server's and is freed
 * once written. */
static void reply_simple(struct nbd_conn *c, uint64_t cookie, int err, void *data, uint32_t len)
{
    uint8_t h[16];
    put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
    put_be32(h + 4, nbd_errno(err));
    put_be64(h + 8, cookie);
    nbd_conn_send(c, h, 16, data, data ? len : 0, data != NULL);
}

static void reply_chunk_error(struct nbd_conn *c, uint64_t cookie, int err, const char *msg)
{
    uint8_t h[20 + 6 + 128];
    size_t ml = MIN(strlen(msg), 128);
    put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
    put_be16(h + 4, NBD_REPLY_FLAG_DONE);
    put_be16(h + 6, NBD_REPLY_TYPE_ERROR);
    put_be64(h + 8, cookie);
    put_be32(h + 16, (uint32_t)(6 + ml));
    put_be32(h + 20, nbd_errno(err) ? nbd_errno(err) : NBD_EIO);
    put_be16(h + 24, (uint16_t)ml);
    memcpy(h + 26, msg, ml);
    nbd_conn_send(c, h, 26 + ml, NULL, 0, false);
}

/* A chunk header with DONE set, of the given type and payload length. */
static void chunk_header(uint8_t *h, uint64_t cookie, uint16_t type, uint32_t len)
{
    put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
    put_be16(h + 4, NBD_REPLY_FLAG_DONE);
    put_be16(h + 6, type);
    put_be64(h + 8, cookie);
    put_be32(h + 16, len);
}

static void reply_read(struct nbd_conn *c, struct nbd_req *r, int res)
{
    struct nbd_io *io = &r->io;
    if (res < 0) {
        if (c->st.structured)
            reply_chunk_error(c, r->cookie, res, "read failed");
        else
            reply_simple(c, r->cookie, res, NULL, 0);
        rpc_buf_free(io->buf);
    } else if (c->st.structured && io->len == 0) {
        uint8_t h[20];
        chunk_header(h, r->cookie, NBD_REPLY_TYPE_NONE, 0);
        nbd_conn_send(c, h, 20, NULL, 0, false);
        rpc_buf_free(io->buf);
    } else if (c->st.structured) {
        /* one OFFSET_DATA chunk: what DF asks for, so DF needs nothing more */
        uint8_t h[28];
        chunk_header(h, r->cookie, NBD_REPLY_TYPE_OFFSET_DATA, io->len + 8);
        put_be64(h + 20, io->off);
        nbd_conn_send(c, h, 28, io->buf, io->len, true);
    } else {
        reply_simple(c, r->cookie, 0, io->buf, io->len);
    }
    io->buf = NULL; /* the reply owns it now */
}

static void reply_status(struct nbd_conn *c, struct nbd_req *r, int res)
{
    struct nbd_io *io = &r->io;
    if (res < 0 || io->next == 0) {
        reply_chunk_error(c, r->cookie, res < 0 ? res : -EIO, "block status failed");
        return;
    }
    int n = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : io->next;
    uint8_t h[20 + 4 + 8 * NBD_MAX_EXTENTS];
    chunk_header(h, r->cookie, NBD_REPLY_TYPE_BLOCK_STATUS, (uint32_t)(4 + 8 * n));
    put_be32(h + 20, 1); /* context id of base:allocation */
    for (int i = 0; i < n; i++) {
        put_be32(h + 24 + 8 * i, io->ext[i].len);
        put_be32(h + 28 + 8 * i, io->ext[i].flags);
    }
    nbd_conn_send(c, h, 24 + 8 * (size_t)n, NULL, 0, false);
}

/* Count r, answered with res, in its export's stats: two increments and, for
 * READ and WRITE, one histogram observation (the second clock read of the
 * request; the first was at its arrival). */
static void count_reply(struct nbd_stats *st, const struct nbd_req *r, int res)
{
    if (res < 0)
        st->errors++;
    switch (r->type) {
    case NBD_CMD_READ:
        st->reads++;
        if (res >= 0)
            st->read_bytes += r->io.len;
        metrics_hist_observe(&st->read_lat, uv_hrtime() - r->arrived);
        break;
    case NBD_CMD_WRITE:
        st->writes++;
        if (res >= 0)
            st->write_bytes += r->io.len;
        metrics_hist_observe(&st->write_lat, uv_hrtime() - r->arrived);
        break;
    case NBD_CMD_FLUSH: st->other[NBD_STAT_FLUSH]++; break;
    case NBD_CMD_TRIM: st->other[NBD_STAT_TRIM]++; break;
    case NBD_CMD_WRITE_ZEROES: st->other[NBD_STAT_ZERO]++; break;
    case NBD_CMD_CACHE: st->other[NBD_STAT_CACHE]++; break;
    case NBD_CMD_BLOCK_STATUS: st->other[NBD_STAT_BLOCK_STATUS]++; break;
    default: break; /* an unknown command: only its error counts */
    }
}

void nbd_io_done(struct nbd_io *io, int res)
{
    struct nbd_req *r = (struct nbd_req *)io;
    struct nbd_conn *c = r->c;
    if (res < 0 && res != -ENOSPC && res != -ENOTSUP && !io->cancelled)
        LOG_LIMITED(LOG_WARN, 5000, "nbd %s: %s at %llu+%u failed: %s", c->peer,
                    io->cmd == NBDIO_READ    ? "read"
                    : io->cmd == NBDIO_WRITE ? "write"
                                             : "request",
                    (unsigned long long)io->off, io->len, strerror(-res));
    if (io->cmd == NBDIO_READ) {
        reply_read(c, r, res);
    } else if (io->cmd == NBDIO_STATUS) {
        reply_status(c, r, res);
    } else {
        reply_simple(c, r->cookie, res, NULL, 0);
        rpc_buf_free(io->buf);
        io->buf = NULL;
    }
    if (c->stats && !io->cancelled)
        count_reply(c->stats, r, res);
    if (r->cprev)
        r->cprev->cnext = r->cnext;
    else
        c->reqs = r->cnext;
    if (r->cnext)
        r->cnext->cprev = r->cprev;
    nbd_flow_finish(c, r);
    nbd_req_release(c->srv, r);
    c->inflight--;
    nbd_conn_maybe_close(c);
}

/* ---- requests ---- */

void nbd_req_release(struct nbd_server *srv, struct nbd_req *r)
{
    if (!r)
        return;
    rpc_buf_free(r->io.buf);
    pool_put(&srv->req_pool, r);
}

/* The backend's command for a validated NBD command. */
static enum nbd_io_cmd io_cmd(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ: return NBDIO_READ;
    case NBD_CMD_WRITE: return NBDIO_WRITE;
    case NBD_CMD_TRIM: return NBDIO_TRIM;
    case NBD_CMD_WRITE_ZEROES: return NBDIO_ZERO;
    case NBD_CMD_BLOCK_STATUS: return NBDIO_STATUS;
    default: return NBDIO_FLUSH; /* FLUSH, and CACHE (answered here) */
    }
}

void nbd_transmit_dispatch(struct nbd_conn *c, struct nbd_req *r)
{
    struct nbd_io *io = &r->io;
    c->inflight++;
    io->owner = c;
    io->claim = c->claim;
    r->cprev = NULL;
    r->cnext = c->reqs;
    if (c->reqs)
        c->reqs->cprev = r;
    c->reqs = r;
    if (r->err) {
        /* answer later in order with other completions: go through
         * nbd_io_done, with the reply shape of the command */
        if (r->type == NBD_CMD_READ)
            io->cmd = NBDIO_READ;
        else if (r->type == NBD_CMD_BLOCK_STATUS)
            io->cmd = NBDIO_STATUS;
        else
            io->cmd = NBDIO_FLUSH;
        rpc_buf_free(io->buf);
        io->buf = NULL;
        nbd_io_done(io, r->err);
        return;
    }
    if (io->len == 0 && r->type != NBD_CMD_FLUSH) {
        /* zero length: nothing to do, reply success */
        io->cmd = r->type == NBD_CMD_READ ? NBDIO_READ : NBDIO_FLUSH;
        if (r->type == NBD_CMD_BLOCK_STATUS) {
            nbd_io_done(io, -EINVAL);
            return;
        }
        if (io->cmd == NBDIO_READ)
            io->buf = rpc_buf_alloc(0);
        nbd_io_done(io, 0);
        return;
    }
    io->cmd = io_cmd(r->type);
    if (r->type == NBD_CMD_CACHE) {
        nbd_io_done(io, 0); /* a hint; nothing to prefetch into */
        return;
    }
    if (r->flags & NBD_CMD_FLAG_FUA)
        io->flags |= NBDIO_FUA;
    if (r->flags & NBD_CMD_FLAG_NO_HOLE)
        io->flags |= NBDIO_NO_HOLE;
    if (r->flags & NBD_CMD_FLAG_FAST_ZERO)
        io->flags |= NBDIO_FAST_ZERO;
    c->srv->be.submit(c->srv->be.ctx, c->exp, io);
}

int nbd_transmit_input(struct nbd_conn *c, const uint8_t *p, size_t n)
{
    if (n < NBD_REQUEST_SIZE)
        return 0;
    struct nbd_request rq;
    if (nbd_request_decode(p, &rq) < 0) {
        log_warn("nbd %s: bad request magic; closing", c->peer);
        return -1;
    }
    if (rq.type == NBD_CMD_DISC) {
        log_info("nbd %s: disconnect requested", c->peer);
        nbd_conn_stop(c); /* after the requests in flight are answered */
        return NBD_REQUEST_SIZE;
    }
    struct nbd_req *r = pool_get(&c->srv->req_pool);
    if (!r)
        return -1;
    r->c = c;
    r->arrived = uv_hrtime();
    r->cookie = rq.cookie;
    r->type = rq.type;
    r->flags = rq.flags;
    r->io.off = rq.off;
    r->io.len = rq.len;
    r->err = nbd_request_validate(&c->st, &rq);
    nbd_flow_start(c, r, r->err ? 0 : nbd_flow_cost(rq.type, rq.len));
    if (r->err)
        log_info("nbd %s: rejecting command %u flags %#x at %llu+%u: %s", c->peer, rq.type,
                 rq.flags, (unsigned long long)rq.off, rq.len, strerror(-r->err));
    switch (nbd_request_payload(&rq, r->err)) {
    case NBD_PAYLOAD_NONE: nbd_transmit_dispatch(c, r); break;
    case NBD_PAYLOAD_DISCONNECT:
        nbd_flow_finish(c, r);
        nbd_req_release(c->srv, r);
        return -1;
    case NBD_PAYLOAD_DISCARD: nbd_conn_discard_payload(c, r, rq.len); break;
    case NBD_PAYLOAD_RECEIVE:
        r->io.buf = rpc_buf_alloc(rq.len);
        if (!r->io.buf) {
            nbd_flow_finish(c, r);
            nbd_req_release(c->srv, r);
            return -1;
        }
        if (rq.len == 0)
            nbd_transmit_dispatch(c, r);
        else
            nbd_conn_expect_payload(c, r);
        break;
    }
    return NBD_REQUEST_SIZE;
}
