#include "nbd_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "nbd_proto.h"
#include "net.h"
#include "rpc.h"
#include "wqueue.h"
#include "util.h"

#define OPT_MAX (64u << 10)       /* longest option we accept */
#define DRAIN_MAX (64ull << 20)   /* oversize writes up to this are drained, not fatal */
#define IN_CHUNK (64u << 10)

enum { P_FLAGS, P_OPTS, P_TRANS };

struct nbd_server {
    union net_stream u;
    uv_loop_t *loop;
    struct nbd_backend be;
    int is_pipe;
    char addr[128];
};

struct nbd_conn {
    union net_stream u;
    struct nbd_server *srv;
    int phase;
    uint8_t *in;
    size_t in_len, in_cap;
    struct nreq *rx; /* WRITE whose payload is arriving */
    uint32_t rx_have;
    uint64_t discard; /* bytes of a rejected payload still to skip */
    struct nreq *drain_req; /* its request: answered once the payload is gone,
                               since a client may not expect a reply before it
                               has finished sending */
    int no_zeroes, structured, meta_alloc;
    void *exp;
    uint64_t size;
    int ro;
    int inflight, nwrites;
    int closing, stop_reading, handle_closed;
    char peer[64];
    struct wqueue wq; /* replies waiting for this loop turn's writev */
};

struct nreq {
    struct nbd_io io; /* first: nbd_io_done casts back */
    struct nbd_conn *c;
    uint64_t cookie;
    uint16_t type, flags;
    int drop; /* rejected write: reply error once the payload is drained */
    int err;
};

struct wreq {
    struct wq_item it; /* first: the queue hands it back */
    struct nbd_conn *c;
    void *free_buf;
    uint8_t hdr[];
};

static void conn_maybe_close(struct nbd_conn *c);

/* ---- output ---- */

static void write_cb(struct wq_item *it, int status)
{
    struct wreq *wr = (struct wreq *)it;
    struct nbd_conn *c = wr->c;
    (void)status;
    rpc_buf_free(wr->free_buf);
    free(wr);
    c->nwrites--;
    conn_maybe_close(c);
}

/* Queue hdr (copied) then data (freed with rpc_buf_free after the write if own). */
static void send_bytes(struct nbd_conn *c, const void *hdr, size_t hlen, void *data, size_t dlen,
                       int own)
{
    if (c->handle_closed || c->closing == 2) {
        if (own)
            rpc_buf_free(data);
        return;
    }
    struct wreq *wr = malloc(sizeof(*wr) + hlen);
    if (!wr) {
        if (own)
            rpc_buf_free(data);
        return;
    }
    memcpy(wr->hdr, hdr, hlen);
    wr->c = c;
    wr->free_buf = own ? data : NULL;
    wr->it.bufs[0] = uv_buf_init((char *)wr->hdr, (unsigned)hlen);
    wr->it.bufs[1] = uv_buf_init(data, (unsigned)dlen);
    wr->it.nbufs = dlen ? 2 : 1;
    wr->it.done = write_cb;
    if (!c->wq.stream)
        wq_init(&c->wq, &c->u.s);
    wq_push(&c->wq, &wr->it);
    c->nwrites++;
}

static void opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
                      uint32_t len)
{
    uint8_t h[20 + 512];
    put_be64(h, NBD_REP_MAGIC);
    put_be32(h + 8, opt);
    put_be32(h + 12, type);
    put_be32(h + 16, len);
    if (len <= 512) {
        if (len)
            memcpy(h + 20, data, len);
        send_bytes(c, h, 20 + len, NULL, 0, 0);
    } else {
        uint8_t *copy = rpc_buf_alloc(len);
        memcpy(copy, data, len);
        send_bytes(c, h, 20, copy, len, 1);
    }
}

static void opt_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
    log_debug("nbd %s: option %u: error %#x: %s", c->peer, opt, type, msg);
    opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

static uint32_t nbd_errno(int err)
{
    switch (-err) {
    case 0: return 0;
    case EPERM: case EROFS: return NBD_EPERM;
    case ENOMEM: return NBD_ENOMEM;
    case EINVAL: return NBD_EINVAL;
    case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

static void reply_simple(struct nbd_conn *c, uint64_t cookie, int err, void *data, uint32_t len)
{
    uint8_t h[16];
    put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
    put_be32(h + 4, nbd_errno(err));
    put_be64(h + 8, cookie);
    send_bytes(c, h, 16, data, data ? len : 0, data != NULL);
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
    send_bytes(c, h, 26 + ml, NULL, 0, 0);
}

/* ---- handshake ---- */

static uint16_t trans_flags(const struct nbd_conn *c)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
                 NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;
    if (c->ro)
        f |= NBD_FLAG_READ_ONLY;
    if (c->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

static int open_export(struct nbd_conn *c, const char *name)
{
    uint64_t size;
    int ro;
    void *e = c->srv->be.open(c->srv->be.ctx, name, &size, &ro);
    if (!e)
        return -ENOENT;
    if (c->exp)
        c->srv->be.close(c->srv->be.ctx, c->exp);
    c->exp = e;
    c->size = size;
    c->ro = ro;
    return 0;
}

struct list_ctx {
    struct nbd_conn *c;
};
static void list_emit(void *arg, const char *name)
{
    struct list_ctx *lc = arg;
    uint8_t buf[4 + 4096];
    uint32_t n = (uint32_t)MIN(strlen(name), 4096);
    put_be32(buf, n);
    memcpy(buf + 4, name, n);
    opt_reply(lc->c, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + n);
}

static void enter_transmission(struct nbd_conn *c)
{
    c->phase = P_TRANS;
    log_info("nbd %s: serving export (%llu bytes%s%s)", c->peer, (unsigned long long)c->size,
             c->ro ? ", read-only" : "", c->structured ? ", structured replies" : "");
}

static void do_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    if (len < 6) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
        return;
    }
    uint32_t nl = get_be32(d);
    if (nl > len - 6 || nl > 4096) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "name length out of range");
        return;
    }
    uint16_t nreq = get_be16(d + 4 + nl);
    if (len != 4 + nl + 2 + 2u * nreq) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "option length does not match its requests");
        return;
    }
    char name[4097];
    memcpy(name, d + 4, nl);
    name[nl] = 0;
    if (memchr(name, 0, nl)) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "name contains NUL");
        return;
    }
    if (open_export(c, name) < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "no export named '%.64s' is mapped to this SDC", name);
        opt_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
        return;
    }
    uint8_t b[12 + 4096 + 2];
    put_be16(b, NBD_INFO_EXPORT);
    put_be64(b + 2, c->size);
    put_be16(b + 10, trans_flags(c));
    opt_reply(c, opt, NBD_REP_INFO, b, 12);
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t t = get_be16(d + 4 + nl + 2 + 2 * i);
        if (t == NBD_INFO_NAME) {
            put_be16(b, NBD_INFO_NAME);
            memcpy(b + 2, name, nl);
            opt_reply(c, opt, NBD_REP_INFO, b, 2 + nl);
        } else if (t == NBD_INFO_DESCRIPTION) {
            const char *desc = "Cairn volume";
            put_be16(b, NBD_INFO_DESCRIPTION);
            memcpy(b + 2, desc, strlen(desc));
            opt_reply(c, opt, NBD_REP_INFO, b, 2 + (uint32_t)strlen(desc));
        }
    }
    /* Block sizes go out whether asked or not: minimum 1 (the SDSs do
     * read-modify-write), preferred 4 KiB, at most 32 MiB a request. */
    put_be16(b, NBD_INFO_BLOCK_SIZE);
    put_be32(b + 2, 1);
    put_be32(b + 6, 4096);
    put_be32(b + 10, NBD_MAX_PAYLOAD);
    opt_reply(c, opt, NBD_REP_INFO, b, 14);
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
    if (opt == NBD_OPT_GO)
        enter_transmission(c);
}

static void do_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    if (!c->structured) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "structured replies must be negotiated first");
        return;
    }
    if (len < 8) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
        return;
    }
    uint32_t nl = get_be32(d);
    if (nl > len - 8 || nl > 4096) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "name length out of range");
        return;
    }
    char name[4097];
    memcpy(name, d + 4, nl);
    name[nl] = 0;
    uint32_t nq = get_be32(d + 4 + nl);
    uint32_t pos = 8 + nl;
    /* validate all queries first */
    for (uint32_t i = 0; i < nq; i++) {
        if (pos + 4 > len || get_be32(d + pos) > len - pos - 4 || get_be32(d + pos) > 4096) {
            opt_error(c, opt, NBD_REP_ERR_INVALID, "query length out of range");
            return;
        }
        pos += 4 + get_be32(d + pos);
    }
    if (pos != len) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "trailing bytes after queries");
        return;
    }
    uint64_t size;
    int ro;
    void *e = c->srv->be.open(c->srv->be.ctx, name, &size, &ro);
    if (!e) {
        opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export");
        return;
    }
    c->srv->be.close(c->srv->be.ctx, e);
    uint8_t b[4 + 32];
    const char *ctxname = "base:allocation";
    put_be32(b, 1);
    memcpy(b + 4, ctxname, strlen(ctxname));
    int selected = 0;
    if (opt == NBD_OPT_LIST_META_CONTEXT && nq == 0) {
        opt_reply(c, opt, NBD_REP_META_CONTEXT, b, 4 + (uint32_t)strlen(ctxname));
    }
    pos = 8 + nl;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t ql = get_be32(d + pos);
        const char *q = (const char *)d + pos + 4;
        pos += 4 + ql;
        int match = (ql == strlen(ctxname) && !memcmp(q, ctxname, ql)) ||
                    (opt == NBD_OPT_LIST_META_CONTEXT && ql == 5 && !memcmp(q, "base:", 5));
        if (match && !selected) {
            opt_reply(c, opt, NBD_REP_META_CONTEXT, b, 4 + (uint32_t)strlen(ctxname));
            selected = 1;
        }
    }
    if (opt == NBD_OPT_SET_META_CONTEXT)
        c->meta_alloc = selected;
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* Handle one complete option. Returns 0, or -1 when the connection ends. */
static int do_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: {
        char name[4097];
        if (len > 4096)
            return -1;
        memcpy(name, d, len);
        name[len] = 0;
        if (open_export(c, name) < 0) {
            log_info("nbd %s: EXPORT_NAME '%.64s' is not mapped here; closing", c->peer, name);
            return -1;
        }
        uint8_t b[10 + 124] = {0};
        put_be64(b, c->size);
        put_be16(b + 8, trans_flags(c));
        send_bytes(c, b, c->no_zeroes ? 10 : 134, NULL, 0, 0);
        enter_transmission(c);
        return 0;
    }
    case NBD_OPT_ABORT:
        opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        return -1;
    case NBD_OPT_LIST:
        if (len) {
            opt_error(c, opt, NBD_REP_ERR_INVALID, "LIST takes no data");
            return 0;
        }
        {
            struct list_ctx lc = {c};
            c->srv->be.list(c->srv->be.ctx, list_emit, &lc);
        }
        opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        return 0;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        do_info_go(c, opt, d, len);
        return 0;
    case NBD_OPT_STRUCTURED_REPLY:
        if (len)
            opt_error(c, opt, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
        else if (c->structured)
            opt_error(c, opt, NBD_REP_ERR_INVALID, "structured replies already negotiated");
        else {
            c->structured = 1;
            opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        }
        return 0;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        do_meta(c, opt, d, len);
        return 0;
    case NBD_OPT_STARTTLS:
        opt_error(c, opt, NBD_REP_ERR_UNSUP, "TLS is not supported by this SDC yet");
        return 0;
    default:
        opt_error(c, opt, NBD_REP_ERR_UNSUP, "unsupported option");
        return 0;
    }
}

/* ---- transmission ---- */

static void conn_ref_exp_done(struct nbd_conn *c)
{
    c->inflight--;
    conn_maybe_close(c);
}

void nbd_io_done(struct nbd_io *io, int res)
{
    struct nreq *r = (struct nreq *)io;
    struct nbd_conn *c = r->c;
    if (res < 0 && res != -ENOSPC && res != -ENOTSUP)
        log_warn("nbd %s: %s at %llu+%u failed: %s", c->peer,
                 io->cmd == NBDIO_READ ? "read" : io->cmd == NBDIO_WRITE ? "write" : "request",
                 (unsigned long long)io->off, io->len, strerror(-res));
    if (io->cmd == NBDIO_READ) {
        if (res < 0) {
            if (c->structured)
                reply_chunk_error(c, r->cookie, res, "read failed");
            else
                reply_simple(c, r->cookie, res, NULL, 0);
            rpc_buf_free(io->buf);
        } else if (c->structured && io->len == 0) {
            uint8_t h[20];
            put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
            put_be16(h + 4, NBD_REPLY_FLAG_DONE);
            put_be16(h + 6, NBD_REPLY_TYPE_NONE);
            put_be64(h + 8, r->cookie);
            put_be32(h + 16, 0);
            send_bytes(c, h, 20, NULL, 0, 0);
            rpc_buf_free(io->buf);
        } else if (c->structured) {
            uint8_t h[28];
            put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
            put_be16(h + 4, NBD_REPLY_FLAG_DONE);
            put_be16(h + 6, NBD_REPLY_TYPE_OFFSET_DATA);
            put_be64(h + 8, r->cookie);
            put_be32(h + 16, io->len + 8);
            put_be64(h + 20, io->off);
            send_bytes(c, h, 28, io->buf, io->len, 1);
        } else {
            reply_simple(c, r->cookie, 0, io->buf, io->len);
        }
        io->buf = NULL;
    } else if (io->cmd == NBDIO_STATUS) {
        if (res < 0 || io->next == 0) {
            reply_chunk_error(c, r->cookie, res < 0 ? res : -EIO, "block status failed");
        } else {
            int n = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : io->next;
            uint8_t h[20 + 4 + 8 * NBD_MAX_EXTENTS];
            put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
            put_be16(h + 4, NBD_REPLY_FLAG_DONE);
            put_be16(h + 6, NBD_REPLY_TYPE_BLOCK_STATUS);
            put_be64(h + 8, r->cookie);
            put_be32(h + 16, (uint32_t)(4 + 8 * n));
            put_be32(h + 20, 1); /* context id of base:allocation */
            for (int i = 0; i < n; i++) {
                put_be32(h + 24 + 8 * i, io->ext[i].len);
                put_be32(h + 28 + 8 * i, io->ext[i].flags);
            }
            send_bytes(c, h, 24 + 8 * (size_t)n, NULL, 0, 0);
        }
    } else {
        reply_simple(c, r->cookie, res, NULL, 0);
        rpc_buf_free(io->buf);
    }
    free(r);
    conn_ref_exp_done(c);
}

/* Validate a request (nbdkit's validate_request). 0 or -errno for the reply. */
static int validate(struct nbd_conn *c, uint16_t type, uint16_t flags, uint64_t off, uint32_t len)
{
    uint16_t allowed = NBD_CMD_FLAG_FUA;
    switch (type) {
    case NBD_CMD_READ:
        if (c->structured)
            allowed |= NBD_CMD_FLAG_DF;
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
        break;
    default:
        return -EINVAL;
    }
    if (flags & ~allowed)
        return -EINVAL;
    if (type == NBD_CMD_FLUSH)
        return (off || len) ? -EINVAL : 0;
    if (type == NBD_CMD_BLOCK_STATUS && !c->meta_alloc)
        return -EINVAL;
    if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && len > NBD_MAX_PAYLOAD)
        return type == NBD_CMD_WRITE ? -EINVAL : -EINVAL;
    if (off > c->size || len > c->size - off)
        return (type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES) ? -ENOSPC : -EINVAL;
    if (c->ro && (type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES))
        return -EPERM;
    return 0;
}

static void dispatch_req(struct nbd_conn *c, struct nreq *r)
{
    struct nbd_io *io = &r->io;
    c->inflight++;
    if (r->err) {
        /* answer later in order with other completions: go through nbd_io_done */
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
    switch (r->type) {
    case NBD_CMD_READ:
        io->cmd = NBDIO_READ;
        break;
    case NBD_CMD_WRITE:
        io->cmd = NBDIO_WRITE;
        break;
    case NBD_CMD_FLUSH:
        io->cmd = NBDIO_FLUSH;
        break;
    case NBD_CMD_TRIM:
        io->cmd = NBDIO_TRIM;
        break;
    case NBD_CMD_WRITE_ZEROES:
        io->cmd = NBDIO_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        io->cmd = NBDIO_STATUS;
        break;
    case NBD_CMD_CACHE:
        /* a hint; nothing to prefetch into */
        io->cmd = NBDIO_FLUSH;
        nbd_io_done(io, 0);
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

static void conn_close(struct nbd_conn *c);

/* Parse one request header from c->in. Returns bytes consumed, 0 if more
 * bytes are needed, -1 to drop the connection. */
static int parse_request(struct nbd_conn *c, const uint8_t *p, size_t n)
{
    if (n < 28)
        return 0;
    if (get_be32(p) != NBD_REQUEST_MAGIC) {
        log_warn("nbd %s: bad request magic; closing", c->peer);
        return -1;
    }
    uint16_t flags = get_be16(p + 4), type = get_be16(p + 6);
    uint64_t cookie = get_be64(p + 8), off = get_be64(p + 16);
    uint32_t len = get_be32(p + 24);
    if (type == NBD_CMD_DISC) {
        log_info("nbd %s: disconnect requested", c->peer);
        c->stop_reading = 1;
        uv_read_stop(&c->u.s);
        conn_maybe_close(c);
        return 28;
    }
    struct nreq *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->c = c;
    r->cookie = cookie;
    r->type = type;
    r->flags = flags;
    r->io.off = off;
    r->io.len = len;
    r->err = validate(c, type, flags, off, len);
    if (r->err)
        log_info("nbd %s: rejecting command %u flags %#x at %llu+%u: %s", c->peer, type, flags,
                 (unsigned long long)off, len, strerror(-r->err));
    if (type == NBD_CMD_WRITE) {
        if (r->err && len > NBD_MAX_PAYLOAD) {
            if (len > DRAIN_MAX) {
                free(r);
                return -1;
            }
            c->discard = len;
            c->drain_req = r;
            return 28;
        }
        r->io.buf = rpc_buf_alloc(len);
        if (!r->io.buf) {
            free(r);
            return -1;
        }
        c->rx = r;
        c->rx_have = 0;
        if (len == 0) {
            c->rx = NULL;
            dispatch_req(c, r);
        }
        return 28;
    }
    dispatch_req(c, r);
    return 28;
}

/* Consume c->in; returns -1 when the connection must close. */
static int process_input(struct nbd_conn *c)
{
    size_t pos = 0;
    int ret = 0;
    while (pos < c->in_len && !c->stop_reading) {
        uint8_t *p = c->in + pos;
        size_t n = c->in_len - pos;
        if (c->discard) {
            size_t k = (size_t)MIN((uint64_t)n, c->discard);
            c->discard -= k;
            pos += k;
            if (c->discard == 0 && c->drain_req) {
                struct nreq *r = c->drain_req;
                c->drain_req = NULL;
                dispatch_req(c, r);
            }
            continue;
        }
        if (c->rx) {
            size_t k = MIN(n, (size_t)(c->rx->io.len - c->rx_have));
            memcpy(c->rx->io.buf + c->rx_have, p, k);
            c->rx_have += (uint32_t)k;
            pos += k;
            if (c->rx_have == c->rx->io.len) {
                struct nreq *r = c->rx;
                c->rx = NULL;
                dispatch_req(c, r);
            }
            continue;
        }
        if (c->phase == P_FLAGS) {
            if (n < 4)
                break;
            uint32_t f = get_be32(p);
            if (f & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) ||
                !(f & NBD_FLAG_C_FIXED_NEWSTYLE)) {
                log_info("nbd %s: unsupported client flags %#x; closing", c->peer, f);
                ret = -1;
                break;
            }
            c->no_zeroes = !!(f & NBD_FLAG_C_NO_ZEROES);
            c->phase = P_OPTS;
            pos += 4;
            continue;
        }
        if (c->phase == P_OPTS) {
            if (n < 16)
                break;
            if (get_be64(p) != NBD_IHAVEOPT) {
                log_info("nbd %s: bad option magic; closing", c->peer);
                ret = -1;
                break;
            }
            uint32_t opt = get_be32(p + 8), len = get_be32(p + 12);
            if (len > OPT_MAX) {
                log_warn("nbd %s: option %u of %u bytes is too long; closing", c->peer, opt, len);
                ret = -1;
                break;
            }
            if (n < 16 + (size_t)len)
                break;
            pos += 16 + len;
            if (do_option(c, opt, p + 16, len) < 0) {
                ret = -1;
                break;
            }
            continue;
        }
        int k = parse_request(c, p, n);
        if (k < 0) {
            ret = -1;
            break;
        }
        if (k == 0)
            break;
        pos += (size_t)k;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return ret;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct nbd_conn *c = h->data;
    /* A large payload goes straight into its buffer. */
    if (c->rx && c->in_len == 0 && c->rx->io.len - c->rx_have >= IN_CHUNK) {
        buf->base = (char *)c->rx->io.buf + c->rx_have;
        buf->len = c->rx->io.len - c->rx_have;
        return;
    }
    if (c->in_cap - c->in_len < IN_CHUNK) {
        size_t cap = c->in_len + IN_CHUNK;
        uint8_t *n = realloc(c->in, cap);
        if (!n) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        c->in = n;
        c->in_cap = cap;
    }
    buf->base = (char *)c->in + c->in_len;
    buf->len = c->in_cap - c->in_len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct nbd_conn *c = s->data;
    if (n < 0) {
        if (n != UV_EOF && n != UV_ECONNRESET)
            log_info("nbd %s: read: %s", c->peer, uv_strerror((int)n));
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    if (c->rx && buf->base == (char *)c->rx->io.buf + c->rx_have) {
        c->rx_have += (uint32_t)n;
        if (c->rx_have == c->rx->io.len) {
            struct nreq *r = c->rx;
            c->rx = NULL;
            dispatch_req(c, r);
        }
        return;
    }
    c->in_len += (size_t)n;
    if (process_input(c) < 0) {
        c->stop_reading = 1;
        uv_read_stop(&c->u.s);
        conn_maybe_close(c);
    }
    /* Keep the buffer small once a burst is parsed. */
    if (c->in_len == 0 && c->in_cap > 4 * IN_CHUNK) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void free_cb(uv_handle_t *h)
{
    struct nbd_conn *c = h->data;
    if (c->exp)
        c->srv->be.close(c->srv->be.ctx, c->exp);
    if (c->rx) {
        rpc_buf_free(c->rx->io.buf);
        free(c->rx);
    }
    free(c->drain_req);
    free(c->in);
    free(c);
}

static void conn_close(struct nbd_conn *c)
{
    if (!c->stop_reading) {
        c->stop_reading = 1;
        uv_read_stop(&c->u.s);
    }
    c->closing = 1;
    conn_maybe_close(c);
}

/* Close once nothing is in flight: every request gets its one reply (or the
 * peer is gone), and DISC finishes in-flight requests before the socket goes. */
static void conn_maybe_close(struct nbd_conn *c)
{
    if (c->handle_closed || !c->stop_reading)
        return;
    if (c->inflight > 0)
        return;
    if (c->nwrites > 0 && !c->closing)
        return; /* let replies drain (ABORT ack, DISC, bad handshake) */
    c->handle_closed = 1;
    if (c->wq.stream)
        wq_flush(&c->wq); /* queued replies go, or are cancelled by the close */
    uv_close(&c->u.h, free_cb);
}

static void accept_cb(uv_stream_t *ls, int status)
{
    struct nbd_server *s = ls->data;
    if (status < 0)
        return;
    struct nbd_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = s;
    if (s->is_pipe)
        uv_pipe_init(s->loop, &c->u.pipe, 0);
    else
        uv_tcp_init(s->loop, &c->u.tcp);
    c->u.h.data = c;
    if (uv_accept(ls, &c->u.s) < 0) {
        c->handle_closed = 1;
        uv_close(&c->u.h, free_cb);
        return;
    }
    if (!s->is_pipe)
        uv_tcp_nodelay(&c->u.tcp, 1);
    net_peer_name(&c->u, c->peer, sizeof(c->peer));
    uint8_t g[18];
    put_be64(g, NBD_MAGIC);
    put_be64(g + 8, NBD_IHAVEOPT);
    put_be16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    send_bytes(c, g, 18, NULL, 0, 0);
    uv_read_start(&c->u.s, alloc_cb, read_cb);
}

int nbd_server_listen(uv_loop_t *loop, const char *addr, const struct nbd_backend *be,
                      struct nbd_server **out)
{
    struct nbd_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->be = *be;
    snprintf(s->addr, sizeof(s->addr), "%s", addr);
    int r = net_listen(loop, addr, &s->u, &s->is_pipe, accept_cb);
    s->u.h.data = s;
    if (r < 0) {
        uv_close(&s->u.h, (uv_close_cb)free);
        return r;
    }
    *out = s;
    return 0;
}

