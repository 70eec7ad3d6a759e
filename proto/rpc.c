#include "rpc.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "pool.h"
#include "util.h"
#include "wqueue.h"

#define RPC_READ_BUF (256u << 10)
#define RPC_BUCKETS 1024u
/* Messages up to these sizes (every data-path header) need no allocation:
 * a received one is read into the connection, a sent one into its frame. */
#define RPC_INLINE_RX_MSG 256u
#define RPC_INLINE_TX_MSG 64u
/* Replies an accepted connection may have waiting for its peer to read
 * before we stop reading its requests (rpc_set_tx_limit changes it). */
#define RPC_TX_LIMIT_DEFAULT (8u << 20)
/* Requests an accepted connection may have unanswered before we stop
 * reading more of them (rpc_set_request_limit changes it). */
#define RPC_REQUEST_LIMIT_DEFAULT 1024
#define RPC_PAUSE_TX (1u << 31)
#define RPC_PAUSE_REQUESTS (1u << 30)

struct rpc_wreq;

struct rpc_pending {
    struct rpc_pending *next;
    uint64_t req_id;
    uint64_t deadline;   /* ms; armed when the request is all written; 0 = none */
    uint64_t written_ms; /* when it was */
    uint32_t timeout_ms;
    rpc_reply_cb cb;
    void *arg;
    struct rpc_wreq *unsent; /* its frame, until it is all written */
};

enum { ST_HDR, ST_MSG, ST_PAYLOAD };

struct rpc_conn {
    union net_stream u;
    uv_timer_t timer;
    uv_loop_t *loop;
    struct rpc_handlers handlers;
    void *data;
    char peer[80];
    int closing;
    int open_handles; /* the stream and the timer */
    int timer_on;
    int fail_status; /* what the calls still pending get when it closes */
    uint64_t last_rx_ms; /* when the peer last sent us anything */

    /* flow control (see rpc_pause): reading stops while any reason is set;
     * bytes already read wait in rest until reading resumes */
    unsigned pause;
    int reading;
    const uint8_t *rest;
    size_t nrest;
    struct rpc_conn *resume_next;
    int resume_queued;
    size_t tx_bytes, tx_limit;                /* frames queued and not yet written */
    unsigned rx_open, rx_limit;               /* requests received and not yet answered */
    unsigned nwreqs;                          /* such frames: each keeps the connection's memory */
    struct rpc_wreq *calls_head, *calls_tail; /* calls' frames not yet written, oldest first */

    /* read state */
    uint8_t *rbuf;
    int stage;
    uint8_t hbuf[FRAME_HDR_SIZE];
    uint32_t have;
    struct frame_hdr hdr;
    uint8_t *msg; /* msg_inline, or malloc'd for a long message */
    uint8_t *payload;
    uint8_t msg_inline[RPC_INLINE_RX_MSG];

    uint64_t next_id;
    unsigned npending;
    struct rpc_pending *pend[RPC_BUCKETS];

    struct wqueue wq; /* frames waiting for this loop turn's writev */
};

struct rpc_server {
    union net_stream u;
    int is_pipe;
    struct rpc_handlers handlers;
    void *data;
    char addr[108];
};

struct rpc_wreq {
    struct wq_item it; /* first: the queue hands it back */
    struct rpc_conn *c;
    size_t bytes; /* header, message and payload */
    rpc_sent_cb cb;
    void *arg;
    struct rpc_pending *pend;       /* the call waiting for this frame's reply, if any */
    uint64_t stall_at;              /* a call's: the peer is stuck if it is not written by then */
    uint32_t timeout_ms;            /* that call's */
    struct rpc_wreq *cprev, *cnext; /* in calls_head/tail while a call's and unwritten */
    int pooled;                     /* from wreq_pool (head has room for a short message) */
    uint8_t head[];                 /* frame header + msg */
};

/* Calls and frames in flight come from these (one loop per thread). */
static __thread struct pool pending_pool = POOL_INIT(struct rpc_pending, 4096);
static __thread struct pool wreq_pool = {
    .size = sizeof(struct rpc_wreq) + FRAME_HDR_SIZE + RPC_INLINE_TX_MSG, .max_free = 4096};

static void msg_free(struct rpc_conn *c, uint8_t *msg)
{
    if (msg != c->msg_inline)
        free(msg);
}

void *rpc_data(struct rpc_conn *c)
{
    return c->data;
}
void rpc_set_data(struct rpc_conn *c, void *data)
{
    c->data = data;
}
const char *rpc_peer(const struct rpc_conn *c)
{
    return c->peer;
}
int rpc_same_host(const struct rpc_conn *c)
{
    return net_same_host(&c->u);
}
int rpc_is_closing(const struct rpc_conn *c)
{
    return c->closing;
}
unsigned rpc_pending(const struct rpc_conn *c)
{
    return c->npending;
}

static void resume_forget(struct rpc_conn *c);

/* The memory of a connection goes once its handles are closed and no frame
 * of it is still being written (done callbacks may run a turn later). */
static void conn_release(struct rpc_conn *c)
{
    if (c->open_handles > 0 || c->nwreqs > 0)
        return;
    resume_forget(c);
    free(c->rbuf);
    msg_free(c, c->msg);
    rpc_buf_free(c->payload);
    free(c);
}

static void conn_free_cb(uv_handle_t *h)
{
    struct rpc_conn *c = h->data;
    c->open_handles--;
    conn_release(c);
}

static void pending_free(struct rpc_pending *p)
{
    if (p->unsent)
        p->unsent->pend = NULL;
    pool_put(&pending_pool, p);
}

static void conn_stream_closed_cb(uv_handle_t *h)
{
    struct rpc_conn *c = h->data;
    /* Fail every pending call: the peer can no longer answer. */
    for (unsigned b = 0; b < RPC_BUCKETS; b++) {
        while (c->pend[b]) {
            struct rpc_pending *p = c->pend[b];
            c->pend[b] = p->next;
            c->npending--;
            p->cb(c, c->fail_status, NULL, 0, NULL, 0, p->arg);
            pending_free(p);
        }
    }
    if (c->handlers.on_close)
        c->handlers.on_close(c);
    conn_free_cb(h);
}

void rpc_close(struct rpc_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->wq.stream)
        wq_flush(&c->wq); /* queued frames go, or are cancelled by the close */
    uv_read_stop(&c->u.s);
    c->reading = 0;
    uv_close((uv_handle_t *)&c->timer, conn_free_cb);
    uv_close(&c->u.h, conn_stream_closed_cb);
}

static struct rpc_pending *pending_take(struct rpc_conn *c, uint64_t id)
{
    struct rpc_pending **pp = &c->pend[id % RPC_BUCKETS];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->req_id == id) {
            struct rpc_pending *p = *pp;
            *pp = p->next;
            c->npending--;
            return p;
        }
    }
    return NULL;
}

/* Timeouts are for peers that fail, not for peers that are busy. A call's
 * time runs from when its request is all written, not from when it was
 * queued, and it runs out only while the peer is silent: a peer that still
 * sends us replies (to other calls) is alive and working through a queue,
 * and the call waits on, up to RPC_PATIENCE times its timeout (a peer that
 * answers others but never this one). A peer that takes no request and says
 * nothing within a call's timeout is stuck (stopped, cut off): the
 * connection closes and every call pending on it fails with -ETIMEDOUT.
 * (A call times out only once its frame is written, so no write can read a
 * payload the caller frees when told; a stuck connection's writes are
 * cancelled by the close before its calls are failed.) */
#define RPC_PATIENCE 8

static void timer_cb(uv_timer_t *t)
{
    struct rpc_conn *c = t->data;
    uint64_t now = now_ms();
    struct rpc_wreq *oldest = c->calls_head;
    if (oldest && oldest->stall_at && oldest->stall_at <= now &&
        now - c->last_rx_ms >= oldest->timeout_ms) {
        LOG_LIMITED(LOG_WARN, 5000,
                    "rpc %s: the peer took no request within %u ms; closing the connection",
                    c->peer, oldest->timeout_ms);
        c->fail_status = -ETIMEDOUT;
        rpc_close(c);
        return;
    }
    for (unsigned b = 0; b < RPC_BUCKETS && !c->closing; b++) {
        struct rpc_pending **pp = &c->pend[b];
        while (*pp) {
            struct rpc_pending *p = *pp;
            uint64_t quiet = MAX(p->written_ms, c->last_rx_ms);
            if (p->deadline && p->deadline <= now && quiet + p->timeout_ms > now &&
                now < p->written_ms + (uint64_t)RPC_PATIENCE * p->timeout_ms) {
                p->deadline = quiet + p->timeout_ms; /* it is talking: wait on */
                pp = &p->next;
            } else if (p->deadline && p->deadline <= now) {
                *pp = p->next;
                c->npending--;
                p->cb(c, -ETIMEDOUT, NULL, 0, NULL, 0, p->arg);
                pending_free(p);
            } else {
                pp = &p->next;
            }
        }
    }
}

static void dispatch(struct rpc_conn *c)
{
    struct frame_hdr h = c->hdr;
    uint8_t *msg = c->msg;
    uint8_t *payload = c->payload;
    c->msg = NULL;
    c->payload = NULL;
    c->stage = ST_HDR;
    c->have = 0;
    if (h.type & FRAME_REPLY) {
        struct rpc_pending *p = pending_take(c, h.req_id);
        if (p) {
            p->cb(c, h.status, msg, h.msg_len, payload, h.payload_len, p->arg);
            pending_free(p);
        } else {
            log_debug("rpc %s: reply to unknown request %llu (timed out?)", c->peer,
                      (unsigned long long)h.req_id);
            rpc_buf_free(payload);
        }
    } else {
        c->rx_open++;
        if (c->rx_limit && c->rx_open >= c->rx_limit)
            rpc_pause(c, RPC_PAUSE_REQUESTS); /* from the next frame on */
        c->handlers.on_request(c, &h, msg, payload);
    }
    /* the callbacks are done with msg: the next frame may reuse the buffer */
    msg_free(c, msg);
}

static void begin_body(struct rpc_conn *c)
{
    if (c->hdr.msg_len) {
        c->stage = ST_MSG;
        c->msg = c->hdr.msg_len <= RPC_INLINE_RX_MSG ? c->msg_inline : malloc(c->hdr.msg_len);
    } else if (c->hdr.payload_len) {
        c->stage = ST_PAYLOAD;
    }
    if (c->hdr.payload_len)
        c->payload = rpc_buf_alloc(c->hdr.payload_len);
    if ((c->hdr.msg_len && !c->msg) || (c->hdr.payload_len && !c->payload)) {
        log_error("rpc %s: out of memory for a %u+%u byte frame", c->peer, c->hdr.msg_len,
                  c->hdr.payload_len);
        rpc_close(c);
        return;
    }
    c->have = 0;
    if (!c->hdr.msg_len && !c->hdr.payload_len)
        dispatch(c);
}

/* Consume bytes from the read buffer; returns 0, or -1 if the conn closed. */
static int consume(struct rpc_conn *c, const uint8_t *p, size_t n)
{
    while (n && !c->closing) {
        if (c->pause && c->stage == ST_HDR && c->have == 0) {
            /* paused between frames: the rest waits for rpc_resume() */
            c->rest = p;
            c->nrest = n;
            return 0;
        }
        if (c->stage == ST_HDR) {
            size_t k = MIN(n, FRAME_HDR_SIZE - c->have);
            memcpy(c->hbuf + c->have, p, k);
            c->have += (uint32_t)k;
            p += k;
            n -= k;
            if (c->have < FRAME_HDR_SIZE)
                continue;
            int r = frame_hdr_decode(c->hbuf, &c->hdr);
            if (r < 0) {
                log_warn("rpc %s: %s frame header; closing connection", c->peer,
                         r == -EMSGSIZE ? "oversize" : "malformed");
                rpc_close(c);
                return -1;
            }
            begin_body(c);
        } else if (c->stage == ST_MSG) {
            size_t k = MIN(n, c->hdr.msg_len - c->have);
            memcpy(c->msg + c->have, p, k);
            c->have += (uint32_t)k;
            p += k;
            n -= k;
            if (c->have == c->hdr.msg_len) {
                c->have = 0;
                if (c->hdr.payload_len)
                    c->stage = ST_PAYLOAD;
                else
                    dispatch(c);
            }
        } else {
            size_t k = MIN(n, c->hdr.payload_len - c->have);
            memcpy(c->payload + c->have, p, k);
            c->have += (uint32_t)k;
            p += k;
            n -= k;
            if (c->have == c->hdr.payload_len)
                dispatch(c);
        }
    }
    return c->closing ? -1 : 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct rpc_conn *c = h->data;
    /* A large payload is read straight into its final buffer. */
    if (c->stage == ST_PAYLOAD && c->hdr.payload_len - c->have >= 16384) {
        buf->base = (char *)c->payload + c->have;
        buf->len = c->hdr.payload_len - c->have;
        return;
    }
    buf->base = (char *)c->rbuf;
    buf->len = RPC_READ_BUF;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct rpc_conn *c = s->data;
    if (n < 0) {
        if (n != UV_EOF)
            log_info("rpc %s: read: %s", c->peer, uv_strerror((int)n));
        rpc_close(c);
        return;
    }
    if (n == 0)
        return;
    c->last_rx_ms = now_ms(); /* the peer is alive (see timer_cb) */
    if (buf->base != (char *)c->rbuf) {
        c->have += (uint32_t)n;
        if (c->have == c->hdr.payload_len)
            dispatch(c);
        return;
    }
    consume(c, (const uint8_t *)buf->base, (size_t)n);
}

static struct rpc_conn *conn_new(uv_loop_t *loop, const struct rpc_handlers *h, void *data)
{
    struct rpc_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->rbuf = malloc(RPC_READ_BUF);
    if (!c->rbuf) {
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->handlers = *h;
    c->data = data;
    c->next_id = 1;
    c->fail_status = -ECONNRESET;
    c->last_rx_ms = now_ms();
    c->u.h.data = c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    return c;
}

static void conn_start(struct rpc_conn *c)
{
    if (c->u.h.type == UV_TCP)
        uv_tcp_nodelay(&c->u.tcp, 1);
    net_peer_name(&c->u, c->peer, sizeof(c->peer));
    if (!c->pause) {
        uv_read_start(&c->u.s, alloc_cb, read_cb);
        c->reading = 1;
    }
}

static void accept_cb(uv_stream_t *ls, int status)
{
    struct rpc_server *s = ls->data;
    if (status < 0) {
        log_warn("rpc %s: accept: %s", s->addr, uv_strerror(status));
        return;
    }
    struct rpc_conn *c = conn_new(ls->loop, &s->handlers, s->data);
    if (!c)
        return;
    if (s->is_pipe)
        uv_pipe_init(ls->loop, &c->u.pipe, 0);
    else
        uv_tcp_init(ls->loop, &c->u.tcp);
    c->u.h.data = c;
    c->tx_limit = RPC_TX_LIMIT_DEFAULT; /* its peer must read what it asked for */
    c->rx_limit = RPC_REQUEST_LIMIT_DEFAULT;
    if (uv_accept(ls, &c->u.s) < 0) {
        rpc_close(c);
        return;
    }
    if (s->handlers.on_accept && s->handlers.on_accept(c, s->data) < 0) {
        c->handlers.on_close = NULL; /* it never became the server's connection */
        rpc_close(c);
        return;
    }
    conn_start(c);
}

int rpc_listen(uv_loop_t *loop, const char *addr, const struct rpc_handlers *h, void *data,
               struct rpc_server **out)
{
    struct rpc_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->handlers = *h;
    s->data = data;
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

void rpc_server_close(struct rpc_server *s)
{
    uv_close(&s->u.h, (uv_close_cb)free);
}

struct connect_req {
    uv_connect_t req;
    struct rpc_conn *c;
    rpc_connect_cb cb;
    void *arg;
};

static void connect_done_cb(uv_connect_t *req, int status)
{
    struct connect_req *cr = (struct connect_req *)req;
    struct rpc_conn *c = cr->c;
    if (status < 0) {
        c->handlers.on_close = NULL;
        rpc_close(c);
        cr->cb(NULL, status, cr->arg);
    } else {
        conn_start(c);
        cr->cb(c, 0, cr->arg);
    }
    free(cr);
}

int rpc_connect(uv_loop_t *loop, const char *addr, const struct rpc_handlers *h, void *data,
                rpc_connect_cb cb, void *arg)
{
    struct connect_req *cr = calloc(1, sizeof(*cr));
    if (!cr)
        return -ENOMEM;
    struct rpc_conn *c = conn_new(loop, h, data);
    if (!c) {
        free(cr);
        return -ENOMEM;
    }
    cr->c = c;
    cr->cb = cb;
    cr->arg = arg;
    int r;
    if (strncmp(addr, "unix:", 5) == 0) {
        uv_pipe_init(loop, &c->u.pipe, 0);
        c->u.h.data = c;
        uv_pipe_connect(&cr->req, &c->u.pipe, addr + 5, connect_done_cb);
        r = 0;
    } else {
        struct sockaddr_storage ss;
        r = net_resolve(addr, &ss);
        uv_tcp_init(loop, &c->u.tcp);
        c->u.h.data = c;
        if (r == 0)
            r = uv_tcp_connect(&cr->req, &c->u.tcp, (struct sockaddr *)&ss, connect_done_cb);
    }
    if (r < 0) {
        c->handlers.on_close = NULL;
        rpc_close(c);
        free(cr);
        return r;
    }
    snprintf(c->peer, sizeof(c->peer), "%s", addr);
    return 0;
}

static void calls_unlink(struct rpc_conn *c, struct rpc_wreq *wr)
{
    if (wr->cprev)
        wr->cprev->cnext = wr->cnext;
    else if (c->calls_head == wr)
        c->calls_head = wr->cnext;
    if (wr->cnext)
        wr->cnext->cprev = wr->cprev;
    else if (c->calls_tail == wr)
        c->calls_tail = wr->cprev;
    wr->cprev = wr->cnext = NULL;
}

static void write_done_cb(struct wq_item *it, int status)
{
    struct rpc_wreq *wr = (struct rpc_wreq *)it;
    struct rpc_conn *c = wr->c;
    if (wr->pend) {
        /* the request is all with the peer: its time starts now */
        wr->pend->unsent = NULL;
        wr->pend->written_ms = now_ms();
        if (status == 0 && wr->pend->timeout_ms)
            wr->pend->deadline = wr->pend->written_ms + wr->pend->timeout_ms;
    }
    if (wr->stall_at)
        calls_unlink(c, wr);
    if (wr->cb)
        wr->cb(wr->arg, status);
    c->tx_bytes -= wr->bytes;
    c->nwreqs--;
    if (wr->pooled)
        pool_put(&wreq_pool, wr);
    else
        free(wr);
    if ((c->pause & RPC_PAUSE_TX) && c->tx_bytes <= c->tx_limit / 2)
        rpc_resume(c, RPC_PAUSE_TX);
    conn_release(c);
}

static int send_frame(struct rpc_conn *c, uint16_t type, uint64_t id, int status, const void *msg,
                      uint32_t msg_len, const struct iovec *pl, int npl, rpc_sent_cb cb, void *arg,
                      struct rpc_wreq **out)
{
    if (c->closing)
        return -ECONNRESET;
    if (npl < 0 || npl > 7 || msg_len > FRAME_MAX_MSG)
        return -EINVAL;
    uint64_t plen = 0;
    for (int i = 0; i < npl; i++)
        plen += pl[i].iov_len;
    if (plen > FRAME_MAX_PAYLOAD)
        return -EMSGSIZE;
    int pooled = msg_len <= RPC_INLINE_TX_MSG;
    struct rpc_wreq *wr =
        pooled ? pool_get(&wreq_pool) : malloc(sizeof(*wr) + FRAME_HDR_SIZE + msg_len);
    if (!wr)
        return -ENOMEM;
    wr->pooled = pooled;
    struct frame_hdr h = {.version = FRAME_VERSION_MAX,
                          .type = type,
                          .req_id = id,
                          .msg_len = msg_len,
                          .payload_len = (uint32_t)plen,
                          .status = status};
    frame_hdr_encode(&h, wr->head);
    if (msg_len)
        memcpy(wr->head + FRAME_HDR_SIZE, msg, msg_len);
    wr->c = c;
    wr->bytes = FRAME_HDR_SIZE + msg_len + plen;
    wr->cb = cb;
    wr->arg = arg;
    wr->pend = NULL;
    wr->stall_at = 0;
    wr->cprev = wr->cnext = NULL;
    if (out)
        *out = wr;
    wr->it.bufs[0] = uv_buf_init((char *)wr->head, FRAME_HDR_SIZE + msg_len);
    int nb = 1;
    for (int i = 0; i < npl; i++)
        if (pl[i].iov_len)
            wr->it.bufs[nb++] = uv_buf_init(pl[i].iov_base, (unsigned)pl[i].iov_len);
    wr->it.nbufs = nb;
    wr->it.done = write_done_cb;
    if (!c->wq.stream)
        wq_init(&c->wq, &c->u.s);
    wq_push(&c->wq, &wr->it);
    c->nwreqs++;
    c->tx_bytes += wr->bytes;
    if (c->tx_limit && c->tx_bytes > c->tx_limit && !(c->pause & RPC_PAUSE_TX))
        rpc_pause(c, RPC_PAUSE_TX); /* the peer is not reading what it asked for */
    return 0;
}

int rpc_call(struct rpc_conn *c, uint16_t type, const void *msg, uint32_t msg_len,
             const struct iovec *pl, int npl, uint32_t timeout_ms, rpc_reply_cb cb, void *arg)
{
    struct rpc_pending *p = pool_get(&pending_pool);
    if (!p)
        return -ENOMEM;
    uint64_t id = c->next_id++;
    struct rpc_wreq *wr;
    int r = send_frame(c, type, id, 0, msg, msg_len, pl, npl, NULL, NULL, &wr);
    if (r < 0) {
        pool_put(&pending_pool, p);
        return r;
    }
    p->unsent = wr;
    wr->pend = p;
    p->req_id = id;
    p->cb = cb;
    p->arg = arg;
    p->timeout_ms = timeout_ms;
    p->deadline = 0; /* armed once the request is written: see timer_cb */
    if (timeout_ms) {
        wr->stall_at = now_ms() + timeout_ms;
        wr->timeout_ms = timeout_ms;
        wr->cprev = c->calls_tail;
        if (c->calls_tail)
            c->calls_tail->cnext = wr;
        else
            c->calls_head = wr;
        c->calls_tail = wr;
    }
    p->next = c->pend[id % RPC_BUCKETS];
    c->pend[id % RPC_BUCKETS] = p;
    c->npending++;
    if (timeout_ms && !c->timer_on) {
        c->timer_on = 1;
        uv_timer_start(&c->timer, timer_cb, 100, 100);
    }
    return 0;
}

int rpc_call_pb(struct rpc_conn *c, uint16_t type, const ProtobufCMessage *m, uint32_t timeout_ms,
                rpc_reply_cb cb, void *arg)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    protobuf_c_message_pack(m, buf);
    int r = rpc_call(c, type, buf, (uint32_t)len, NULL, 0, timeout_ms, cb, arg);
    free(buf);
    return r;
}

/* A request is answered: one fewer open (see rpc_set_request_limit). */
static void request_answered(struct rpc_conn *c)
{
    if (c->rx_open)
        c->rx_open--;
    if ((c->pause & RPC_PAUSE_REQUESTS) && c->rx_open <= c->rx_limit / 2)
        rpc_resume(c, RPC_PAUSE_REQUESTS);
}

int rpc_reply(struct rpc_conn *c, const struct frame_hdr *h, int status, const void *msg,
              uint32_t msg_len, const struct iovec *pl, int npl, rpc_sent_cb sent, void *arg)
{
    request_answered(c);
    return send_frame(c, (uint16_t)(h->type | FRAME_REPLY), h->req_id, status, msg, msg_len, pl,
                      npl, sent, arg, NULL);
}

int rpc_reply_pb(struct rpc_conn *c, const struct frame_hdr *h, int status,
                 const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    protobuf_c_message_pack(m, buf);
    int r = rpc_reply(c, h, status, buf, (uint32_t)len, NULL, 0, NULL, NULL);
    free(buf);
    return r;
}

/* ---- flow control ---- */

/* Connections whose reading resumes on the next loop turn (one loop per
 * thread): the bytes they hold are consumed from there, never from inside
 * rpc_resume(), whose caller may be in the middle of a completion. */
static __thread struct rpc_conn *resume_head;
static __thread uv_idle_t resume_idle;
static __thread int resume_idle_ready;

static void resume_forget(struct rpc_conn *c)
{
    if (!c->resume_queued)
        return;
    for (struct rpc_conn **pp = &resume_head; *pp; pp = &(*pp)->resume_next)
        if (*pp == c) {
            *pp = c->resume_next;
            break;
        }
    c->resume_queued = 0;
}

static void resume_cb(uv_idle_t *h)
{
    while (resume_head) {
        struct rpc_conn *c = resume_head;
        resume_head = c->resume_next;
        c->resume_queued = 0;
        if (c->closing || c->pause)
            continue;
        if (c->nrest) {
            const uint8_t *p = c->rest;
            size_t n = c->nrest;
            c->rest = NULL;
            c->nrest = 0;
            if (consume(c, p, n) < 0 || c->pause)
                continue;
        }
        if (!c->reading) {
            uv_read_start(&c->u.s, alloc_cb, read_cb);
            c->reading = 1;
        }
    }
    uv_idle_stop(h);
}

void rpc_pause(struct rpc_conn *c, unsigned reasons)
{
    c->pause |= reasons;
    if (c->reading) {
        uv_read_stop(&c->u.s);
        c->reading = 0;
    }
}

void rpc_resume(struct rpc_conn *c, unsigned reasons)
{
    c->pause &= ~reasons;
    if (c->pause || c->closing || c->resume_queued)
        return;
    if (!resume_idle_ready) {
        uv_idle_init(c->loop, &resume_idle);
        uv_unref((uv_handle_t *)&resume_idle);
        resume_idle_ready = 1;
    }
    c->resume_next = resume_head;
    resume_head = c;
    c->resume_queued = 1;
    uv_idle_start(&resume_idle, resume_cb);
}

int rpc_paused(const struct rpc_conn *c)
{
    return c->pause != 0;
}

void rpc_set_tx_limit(struct rpc_conn *c, size_t bytes)
{
    c->tx_limit = bytes;
}

void rpc_set_request_limit(struct rpc_conn *c, unsigned n)
{
    c->rx_limit = n;
}

unsigned rpc_requests_open(const struct rpc_conn *c)
{
    return c->rx_open;
}

size_t rpc_tx_queued(const struct rpc_conn *c)
{
    return c->tx_bytes;
}
