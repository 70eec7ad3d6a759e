/* RPC connections: accepting, connecting, reading frames (a payload straight
 * into its final buffer), dispatching them, closing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "rpc_internal.h"
#include "util.h"

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

/* The memory of a connection goes once its handles are closed and no frame
 * of it is still being written (done callbacks may run a turn later). */
void rpc_conn_release(struct rpc_conn *c)
{
    if (c->open_handles > 0 || c->nwreqs > 0)
        return;
    rpc_resume_forget(c);
    rpc_auth_free(c);
    rpc_auth_forget(c);
    free(c->rbuf);
    msg_free(c, c->msg);
    rpc_buf_free(c->payload);
    free(c);
}

static void conn_free_cb(uv_handle_t *h)
{
    struct rpc_conn *c = h->data;
    c->open_handles--;
    rpc_conn_release(c);
}

void rpc_pending_free(struct rpc_pending *p)
{
    if (p->unsent)
        p->unsent->pend = NULL;
    pool_put(&rpc_pending_pool, p);
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
            rpc_pending_free(p);
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
    rpc_server_forget(c);
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

void rpc_dispatch(struct rpc_conn *c)
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
            rpc_pending_free(p);
        } else {
            log_debug("rpc %s: reply to unknown request %llu (timed out?)", c->peer,
                      (unsigned long long)h.req_id);
            rpc_buf_free(payload);
        }
    } else {
        c->rx_open++;
        if (c->rx_limit && c->rx_open >= c->rx_limit)
            rpc_pause(c, RPC_PAUSE_REQUESTS); /* from the next frame on */
        if (c->auth == RPC_AUTH_HANDSHAKE)
            rpc_auth_request(c, &h, msg, payload);
        else
            c->handlers.on_request(c, &h, msg, payload);
    }
    /* the callbacks are done with msg: the next frame may reuse the buffer */
    msg_free(c, msg);
}

/* Header, message and payload are in: the MAC follows on an authenticated
 * link, else the frame is complete. */
static void body_done(struct rpc_conn *c)
{
    if (c->auth == RPC_AUTH_ON && c->mac) {
        c->stage = ST_TAG;
        c->have = 0;
    } else {
        rpc_dispatch(c);
    }
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
        body_done(c);
}

/* Consume bytes from the read buffer; returns 0, or -1 if the conn closed. */
int rpc_consume(struct rpc_conn *c, const uint8_t *p, size_t n)
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
                    body_done(c);
            }
        } else if (c->stage == ST_PAYLOAD) {
            size_t k = MIN(n, c->hdr.payload_len - c->have);
            memcpy(c->payload + c->have, p, k);
            c->have += (uint32_t)k;
            p += k;
            n -= k;
            if (c->have == c->hdr.payload_len)
                body_done(c);
        } else {
            size_t k = MIN(n, FRAME_TAG_SIZE - c->have);
            memcpy(c->rx_tag + c->have, p, k);
            c->have += (uint32_t)k;
            p += k;
            n -= k;
            if (c->have < FRAME_TAG_SIZE)
                continue;
            if (rpc_auth_check_rx(c) < 0) {
                rpc_close(c);
                return -1;
            }
            rpc_dispatch(c);
        }
    }
    return c->closing ? -1 : 0;
}

void rpc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
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

void rpc_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
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
            body_done(c);
        return;
    }
    rpc_consume(c, (const uint8_t *)buf->base, (size_t)n);
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
        uv_read_start(&c->u.s, rpc_alloc_cb, rpc_read_cb);
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
    if (rpc_auth_cred()) {
        /* on_accept runs once the peer is proved (rpc_auth.c); until then
         * closing the server closes it */
        c->srv = s;
        c->srv_next = s->authenticating;
        if (s->authenticating)
            s->authenticating->srv_prev = c;
        s->authenticating = c;
        conn_start(c);
        rpc_auth_server_start(c);
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

void rpc_server_forget(struct rpc_conn *c)
{
    struct rpc_server *s = c->srv;
    if (!s)
        return;
    if (c->srv_prev)
        c->srv_prev->srv_next = c->srv_next;
    else
        s->authenticating = c->srv_next;
    if (c->srv_next)
        c->srv_next->srv_prev = c->srv_prev;
    c->srv = NULL;
    c->srv_prev = c->srv_next = NULL;
}

static void server_closed_cb(uv_handle_t *h)
{
    struct rpc_server *s = h->data;
    void (*cb)(void *) = s->closed_cb;
    void *arg = s->closed_arg;
    free(s);
    if (cb)
        cb(arg);
}

void rpc_server_close_cb(struct rpc_server *s, void (*cb)(void *arg), void *arg)
{
    /* a peer still proving itself is not the server's owner's yet: once the
     * server is gone, nothing may hand it over (on_accept takes its data) */
    while (s->authenticating)
        rpc_close(s->authenticating); /* takes it off the list */
    s->closed_cb = cb;
    s->closed_arg = arg;
    uv_close(&s->u.h, server_closed_cb);
}

void rpc_server_close(struct rpc_server *s)
{
    rpc_server_close_cb(s, NULL, NULL);
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
    } else if (rpc_auth_cred()) {
        conn_start(c);
        rpc_auth_client_start(c, cr->cb, cr->arg);
    } else {
        conn_start(c);
        cr->cb(c, 0, cr->arg);
    }
    free(cr);
}

int rpc_connect(uv_loop_t *loop, const char *addr, const struct rpc_handlers *h, void *data,
                rpc_connect_cb cb, void *arg)
{
    struct rpc_conn *c;
    return rpc_connect_cancelable(loop, addr, h, data, cb, arg, &c);
}

int rpc_connect_cancelable(uv_loop_t *loop, const char *addr, const struct rpc_handlers *h,
                           void *data, rpc_connect_cb cb, void *arg, struct rpc_conn **out)
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
    *out = c;
    return 0;
}
