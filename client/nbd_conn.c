/* NBD connections: accepting, reading (with payloads read straight into
 * their buffers), write batching and closing.
 *
 * Lifetime: a connection closes only once every request it took has been
 * answered (inflight == 0), so no backend completion can find it gone; it
 * is freed once its handle is closed and the last of its write records is
 * done (a record's done callback may run a loop turn after the close). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbd_internal.h"
#include "rpc.h"
#include "util.h"

#define IN_CHUNK (64u << 10)

/* Objects kept for reuse per server: enough for a few connections at the
 * kernel's 128 requests each. */
#define REQ_POOL_KEEP 1024
#define WREQ_SMALL_POOL_KEEP 1024
#define WREQ_LARGE_POOL_KEEP 64

/* ---- output ---- */

static void conn_free(struct nbd_conn *c);

static void write_cb(struct wq_item *it, int status)
{
    struct nbd_wreq *wr = (struct nbd_wreq *)it;
    struct nbd_conn *c = wr->c;
    (void)status;
    rpc_buf_free(wr->free_buf);
    nbd_flow_tx(c, -(long)wr->bytes);
    pool_put(wr->large ? &c->srv->wreq_large_pool : &c->srv->wreq_small_pool, wr);
    c->nwrites--;
    if (c->handle_gone) {
        if (c->nwrites == 0)
            conn_free(c);
        return;
    }
    nbd_conn_maybe_close(c);
}

/* Queue a write record: hdr copied, data (if own, an rpc_buf freed once
 * written) sent from where it is; bytes is the memory it keeps. */
static void queue(struct nbd_conn *c, const void *hdr, size_t hlen, void *data, size_t dlen,
                  bool own, size_t bytes)
{
    bool large = hlen > NBD_WREQ_HDR_SMALL;
    struct nbd_wreq *wr = pool_get(large ? &c->srv->wreq_large_pool : &c->srv->wreq_small_pool);
    if (!wr) {
        if (own)
            rpc_buf_free(data);
        return;
    }
    wr->c = c;
    wr->large = large;
    wr->free_buf = own ? data : NULL;
    if (hlen) {
        memcpy(wr->hdr, hdr, hlen);
        wr->it.bufs[0] = uv_buf_init((char *)wr->hdr, (unsigned)hlen);
        wr->it.bufs[1] = uv_buf_init(data, (unsigned)dlen);
        wr->it.nbufs = dlen ? 2 : 1;
    } else {
        wr->it.bufs[0] = uv_buf_init(data, (unsigned)dlen);
        wr->it.nbufs = 1;
    }
    wr->it.done = write_cb;
    wr->bytes = bytes;
    if (!c->wq.stream)
        wq_init(&c->wq, &c->u.s);
    wq_push(&c->wq, &wr->it);
    c->nwrites++;
    nbd_flow_tx(c, (long)wr->bytes);
}

void nbd_conn_send(struct nbd_conn *c, const void *hdr, size_t hlen, void *data, size_t dlen,
                   bool own)
{
    if (c->handle_closed) {
        if (own)
            rpc_buf_free(data);
        return;
    }
    if (c->tls) {
        /* a copy: the records are what waits for the socket */
        nbd_tls_send(c, hdr, hlen, data, dlen);
        if (own)
            rpc_buf_free(data);
        return;
    }
    queue(c, hdr, hlen, data, dlen, own, hlen + (own ? rpc_buf_size(dlen) : dlen));
}

void nbd_conn_send_raw(struct nbd_conn *c, uint8_t *buf, size_t len, size_t cap)
{
    /* nbd_tls_bye() queues its close_notify just before handle_closed is set */
    if (c->handle_closed) {
        rpc_buf_free(buf);
        return;
    }
    queue(c, NULL, 0, buf, len, true, rpc_buf_size(cap));
}

/* ---- input ---- */

void nbd_conn_expect_payload(struct nbd_conn *c, struct nbd_req *r)
{
    c->rx = r;
    c->rx_have = 0;
}

void nbd_conn_discard_payload(struct nbd_conn *c, struct nbd_req *r, uint64_t len)
{
    c->discard = len;
    c->drain_req = r;
}

/* The payload of c->rx is complete: run its request. */
static void rx_complete(struct nbd_conn *c)
{
    struct nbd_req *r = c->rx;
    c->rx = NULL;
    nbd_transmit_dispatch(c, r);
}

/* Consume c->in; returns -1 when the connection must close, 1 when TLS
 * started and took bytes that were read as plaintext. A request that may
 * not start yet (flow control) stops it: the rest waits in c->in until
 * nbd_conn_kick(). */
static int process_input(struct nbd_conn *c)
{
    size_t pos = 0;
    int ret = 0;
    while (pos < c->in_len && !c->stop_reading) {
        uint8_t *p = c->in + c->in_off + pos;
        size_t n = c->in_len - pos;
        if (c->discard) {
            size_t k = (size_t)MIN((uint64_t)n, c->discard);
            c->discard -= k;
            pos += k;
            if (c->discard == 0 && c->drain_req) {
                struct nbd_req *r = c->drain_req;
                c->drain_req = NULL;
                nbd_transmit_dispatch(c, r);
            }
            continue;
        }
        if (c->rx) {
            size_t k = MIN(n, (size_t)(c->rx->io.len - c->rx_have));
            memcpy(c->rx->io.buf + c->rx_have, p, k);
            c->rx_have += (uint32_t)k;
            pos += k;
            if (c->rx_have == c->rx->io.len)
                rx_complete(c);
            continue;
        }
        if (c->phase == NBD_PHASE_TRANS && n >= NBD_REQUEST_SIZE &&
            !nbd_flow_may_start(c, nbd_flow_cost(get_be16(p + 6), get_be32(p + 24))))
            break;
        int k = c->phase == NBD_PHASE_TRANS ? nbd_transmit_input(c, p, n)
                                            : nbd_handshake_input(c, p, n);
        if (k < 0) {
            ret = -1;
            break;
        }
        if (k == 0)
            break;
        pos += (size_t)k;
        if (nbd_tls_handshaking(c)) {
            /* STARTTLS: what follows it is TLS's (a client should have
             * waited for the ACK, but nothing is lost if it did not) */
            if (pos < c->in_len) {
                if (nbd_tls_adopt(c, c->in + c->in_off + pos, c->in_len - pos) < 0)
                    ret = -1;
                else
                    ret = 1;
                pos = c->in_len;
            }
            break;
        }
    }
    c->in_off += pos;
    c->in_len -= pos;
    if (c->in_len == 0) {
        c->in_off = 0;
    } else if (c->in_off >= IN_CHUNK && c->in_off >= c->in_len / 4) {
        /* The parsed prefix has grown to a quarter of what is left: move
         * the rest down. Moving it at every request would cost the whole
         * read-ahead per request; this way each parsed byte costs at most
         * four moved, and the buffer stays within 1.25 times its data. */
        memmove(c->in, c->in + c->in_off, c->in_len);
        c->in_off = 0;
    }
    return ret;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* After input was consumed or read: count the read-ahead, stop reading
 * while it is full, read again once there is room. */
static void update_reading(struct nbd_conn *c)
{
    bool room = nbd_flow_readahead(c);
    if (c->stop_reading || c->handle_closed)
        return;
    if (!room && !c->read_stopped) {
        uv_read_stop(&c->u.s);
        c->read_stopped = true;
    } else if (room && c->read_stopped) {
        uv_read_start(&c->u.s, alloc_cb, read_cb);
        c->read_stopped = false;
    }
    /* Keep the buffer small once a burst is parsed. */
    if (c->in_len == 0 && c->in_cap > 4 * IN_CHUNK) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void conn_close(struct nbd_conn *c);

/* Parse what c->in holds (and, when STARTTLS handed bytes over to TLS,
 * what they decrypt to), then adjust reading. */
static void run_input(struct nbd_conn *c)
{
    int r;
    while ((r = process_input(c)) == 1) {
        int t = nbd_tls_input(c, 0);
        if (t < 0) {
            if (t == -EPIPE)
                conn_close(c);
            else
                nbd_conn_stop(c);
            return;
        }
    }
    if (r < 0)
        nbd_conn_stop(c);
    update_reading(c);
}

static void kick_cb(uv_idle_t *h)
{
    struct nbd_budget *b = h->data;
    while (b->kick_head) {
        struct nbd_conn *c = b->kick_head;
        b->kick_head = c->knext;
        c->kick_queued = false;
        if (c->stop_reading || c->handle_closed)
            continue;
        run_input(c);
    }
    uv_idle_stop(h);
}

void nbd_conn_kick(struct nbd_conn *c)
{
    struct nbd_budget *b = c->srv->budget;
    if (c->kick_queued || c->stop_reading || c->handle_closed)
        return;
    c->kick_queued = true;
    c->knext = b->kick_head;
    b->kick_head = c;
    uv_idle_start(&b->kick, kick_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct nbd_conn *c = h->data;
    if (c->tls) {
        nbd_tls_alloc(c, buf); /* raw bytes: decrypted into c->in */
        return;
    }
    /* A large payload goes straight into its buffer. */
    if (c->rx && c->in_len == 0 && c->rx->io.len - c->rx_have >= IN_CHUNK) {
        buf->base = (char *)c->rx->io.buf + c->rx_have;
        buf->len = c->rx->io.len - c->rx_have;
        return;
    }
    if (c->in_cap - c->in_off - c->in_len < IN_CHUNK) {
        size_t cap = c->in_off + c->in_len + IN_CHUNK;
        uint8_t *n = realloc(c->in, cap);
        if (!n) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        c->in = n;
        c->in_cap = cap;
    }
    buf->base = (char *)c->in + c->in_off + c->in_len;
    buf->len = c->in_cap - c->in_off - c->in_len;
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
    if (c->tls) {
        int r = nbd_tls_input(c, (size_t)n);
        if (r == -EPIPE) {
            conn_close(c);
            return;
        }
        if (r < 0) {
            nbd_conn_stop(c); /* an alert may be queued: let it go */
            return;
        }
        run_input(c);
        return;
    }
    if (c->rx && buf->base == (char *)c->rx->io.buf + c->rx_have) {
        c->rx_have += (uint32_t)n;
        if (c->rx_have == c->rx->io.len)
            rx_complete(c);
        return;
    }
    c->in_len += (size_t)n;
    run_input(c);
}

/* ---- closing ---- */

static void conn_free(struct nbd_conn *c)
{
    struct nbd_server *srv = c->srv;
    if (c->claim_state == NBD_CLAIM_PENDING) {
        c->free_pending = true; /* the backend still holds it: see nbd_conn_claim_done */
        return;
    }
    if (c->claimed && srv->be.release)
        srv->be.release(srv->be.ctx, c->exp);
    c->claimed = false;
    if (c->exp)
        srv->be.close(srv->be.ctx, c->exp);
    if (c->rx)
        nbd_flow_finish(c, c->rx);
    nbd_req_release(srv, c->rx);
    if (c->drain_req)
        nbd_flow_finish(c, c->drain_req);
    nbd_req_release(srv, c->drain_req);
    nbd_flow_forget(c);
    nbd_tls_conn_free(c);
    srv->nconns--;
    free(c->in);
    free(c);
}

static void free_cb(uv_handle_t *h)
{
    struct nbd_conn *c = h->data;
    c->handle_gone = true;
    if (c->nwrites == 0)
        conn_free(c);
}

void nbd_conn_claim_done(struct nbd_conn *c)
{
    if (c->free_pending) {
        c->claim_state = NBD_CLAIM_NONE;
        conn_free(c); /* releases a granted claim */
        return;
    }
    nbd_conn_kick(c);
}

void nbd_conn_stop(struct nbd_conn *c)
{
    if (!c->stop_reading) {
        c->stop_reading = true;
        uv_read_stop(&c->u.s);
    }
    nbd_conn_maybe_close(c);
}

/* The peer is gone (or must be): queued replies are cancelled by the close,
 * and its requests still in flight are of no use to anyone: the backend
 * may drop those it has not started. */
static void conn_close(struct nbd_conn *c)
{
    if (!c->closing && c->reqs) {
        for (struct nbd_req *r = c->reqs; r; r = r->cnext)
            r->io.cancelled = 1;
        if (c->srv->be.cancel)
            c->srv->be.cancel(c->srv->be.ctx, c);
    }
    c->closing = true;
    nbd_conn_stop(c);
}

void nbd_conn_abort(struct nbd_conn *c)
{
    conn_close(c);
}

/* Close once nothing is in flight: every request gets its one reply (or the
 * peer is gone), and DISC finishes in-flight requests before the socket goes. */
void nbd_conn_maybe_close(struct nbd_conn *c)
{
    if (c->handle_closed || !c->stop_reading)
        return;
    if (c->inflight > 0)
        return;
    if (c->nwrites > 0 && !c->closing)
        return; /* let replies drain (ABORT ack, DISC, bad handshake) */
    if (!c->closing)
        nbd_tls_bye(c);
    c->handle_closed = true;
    if (c->wq.stream)
        wq_flush(&c->wq); /* queued replies go, or are cancelled by the close */
    uv_close(&c->u.h, free_cb);
}

/* ---- accepting ---- */

static void accept_cb(uv_stream_t *ls, int status)
{
    struct nbd_server *s = ls->data;
    if (status < 0)
        return;
    struct nbd_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = s;
    s->nconns++; /* until conn_free(), which every path below reaches */
    if (s->is_pipe)
        uv_pipe_init(s->loop, &c->u.pipe, 0);
    else
        uv_tcp_init(s->loop, &c->u.tcp);
    c->u.h.data = c;
    if (uv_accept(ls, &c->u.s) < 0) {
        c->handle_closed = true;
        uv_close(&c->u.h, free_cb);
        return;
    }
    if (!s->is_pipe)
        uv_tcp_nodelay(&c->u.tcp, 1);
    net_peer_name(&c->u, c->peer, sizeof(c->peer));
    nbd_handshake_greet(c);
    uv_read_start(&c->u.s, alloc_cb, read_cb);
}

int nbd_server_listen(uv_loop_t *loop, const char *addr, const struct nbd_backend *be,
                      struct nbd_budget *budget, struct nbd_server **out)
{
    struct nbd_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->be = *be;
    s->budget = budget;
    budget->kick.data = budget;
    s->req_pool = (struct pool)POOL_INIT(struct nbd_req, REQ_POOL_KEEP);
    s->wreq_small_pool = (struct pool){.size = sizeof(struct nbd_wreq) + NBD_WREQ_HDR_SMALL,
                                       .max_free = WREQ_SMALL_POOL_KEEP};
    s->wreq_large_pool = (struct pool){.size = sizeof(struct nbd_wreq) + NBD_WREQ_HDR_LARGE,
                                       .max_free = WREQ_LARGE_POOL_KEEP};
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

void nbd_server_set_tls(struct nbd_server *s, struct nbd_tls *tls)
{
    s->tls = tls;
}

unsigned nbd_server_connections(const struct nbd_server *s)
{
    return s ? s->nconns : 0;
}

size_t nbd_server_requests(const struct nbd_server *s)
{
    return s ? s->req_pool.nlive : 0;
}
