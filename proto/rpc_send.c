/* Frames out: calls and replies, batched per loop turn (wqueue.c); and the
 * timeouts of calls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rpc_internal.h"
#include "util.h"

__thread struct pool rpc_pending_pool = POOL_INIT(struct rpc_pending, 4096);
__thread struct pool rpc_wreq_pool = {
    .size = sizeof(struct rpc_wreq) + FRAME_HDR_SIZE + RPC_INLINE_TX_MSG, .max_free = 4096};

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

void rpc_timer_cb(uv_timer_t *t)
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
                rpc_pending_free(p);
            } else {
                pp = &p->next;
            }
        }
    }
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
        pool_put(&rpc_wreq_pool, wr);
    else
        free(wr);
    if ((c->pause & RPC_PAUSE_TX) && c->tx_bytes <= c->tx_limit / 2)
        rpc_resume(c, RPC_PAUSE_TX);
    rpc_conn_release(c);
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
        pooled ? pool_get(&rpc_wreq_pool) : malloc(sizeof(*wr) + FRAME_HDR_SIZE + msg_len);
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
    if (c->auth == RPC_AUTH_ON && c->mac) {
        rpc_auth_tag_tx(c, wr->head, FRAME_HDR_SIZE + msg_len, pl, npl, wr->tag);
        wr->it.bufs[nb++] = uv_buf_init((char *)wr->tag, FRAME_TAG_SIZE);
        wr->bytes += FRAME_TAG_SIZE;
    }
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
    struct rpc_pending *p = pool_get(&rpc_pending_pool);
    if (!p)
        return -ENOMEM;
    uint64_t id = c->next_id++;
    struct rpc_wreq *wr;
    int r = send_frame(c, type, id, 0, msg, msg_len, pl, npl, NULL, NULL, &wr);
    if (r < 0) {
        pool_put(&rpc_pending_pool, p);
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
        uv_timer_start(&c->timer, rpc_timer_cb, 100, 100);
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
