/* Raft's transport (struct raft_uv_transport) over authenticated RPC links.
 *
 * Raft wants a uv_stream_t per connection and writes and reads its own
 * byte stream on it. Each connection here is a relay: Raft gets one end of
 * a socketpair, and the relay carries what it reads from the other end to
 * the peer as FT_RAFT_DATA frames, and writes the peer's frames into it.
 *
 *   connecting MDM                           listening MDM
 *   raft stream ~ pipe -> relay == rpc ==> relay -> pipe ~ raft stream
 *
 * The RPC link proves both ends (peer_roles: MDM only, on both sides) and
 * MACs every frame; a peer with any other role, another CA's credential or
 * none is refused and logged by the handshake (proto/rpc_auth.c) before
 * any of this runs. The connecting side then sends FT_RAFT_OPEN with its
 * raft id and address (what libraft's TCP transport sends as its first
 * bytes), and hands its stream to Raft once that is answered; the
 * listening side hands its stream to Raft's accept callback then.
 *
 * Back-pressure: every data frame is a call, acked once its bytes are
 * written into the receiver's pipe (the RPC layer has no one-way frames:
 * each request is answered). The sender stops reading its pipe while
 * LINK_WINDOW bytes or LINK_CALLS frames are unacked, so what waits for a
 * slow reader is bounded at both ends, and Raft's own writes then wait in
 * its stream. A peer that ignored the window would make the receiver stop
 * reading its connection (pipe writes over twice the window, or the
 * request limit). Closing either the link or Raft's stream closes the
 * other; closing the transport closes the listener and every relay and
 * reports closed once each of their handles is. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "raft_link_int.h"
#include "rpc.h"
#include "util.h"

/* ---- relays: lifetime ---- */

/* The transport is closing and nothing of it is open: tell Raft. */
static void link_maybe_closed(struct link *l)
{
    if (!l->closing || l->server_open || l->relays || !l->close_cb)
        return;
    raft_uv_transport_close_cb cb = l->close_cb;
    l->close_cb = NULL;
    cb(l->t);
}

static struct relay *relay_new(struct link *l, int client)
{
    struct relay *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->l = l;
    r->client = client;
    r->next = l->relays;
    if (l->relays)
        l->relays->prev = r;
    l->relays = r;
    return r;
}

/* A relay goes once nothing of it is open and Raft knows how its connect
 * ended; every callback that closes something ends here. */
void relay_maybe_free(struct relay *r)
{
    if (r->conn || r->connecting || r->req || r->pipe_open || r->raft_end || r->writes || r->calls)
        return;
    struct link *l = r->l;
    if (r->prev)
        r->prev->next = r->next;
    else
        l->relays = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r);
    link_maybe_closed(l);
}

/* Tell Raft how its connect ended (once). */
static void connect_done(struct relay *r, uv_stream_t *stream, int status)
{
    if (!r->req)
        return;
    struct raft_uv_connect *req = r->req;
    raft_uv_connect_cb cb = r->cb;
    r->req = NULL;
    cb(req, stream, status);
}

static int connect_failure(const struct relay *r)
{
    return r->l->closing ? RAFT_CANCELED : RAFT_NOCONNECTION;
}

static void pipe_closed_cb(uv_handle_t *h)
{
    struct relay *r = h->data;
    r->pipe_open = 0;
    relay_maybe_free(r);
}

static void raft_end_closed_cb(uv_handle_t *h)
{
    struct relay *r = h->data;
    r->raft_end = NULL;
    raft_free(h);
    relay_maybe_free(r);
}

/* Close everything of r: the link, our end of the pipe (Raft's end reads
 * EOF), an attempt still connecting. Never frees r at once: the callbacks
 * of what it closes do (relay_maybe_free), so callers may still use r. */
void relay_close(struct relay *r)
{
    r->state = R_CLOSING;
    if (r->connecting)
        rpc_close(r->connecting); /* its connect callback runs with a failure */
    if (r->conn)
        rpc_close(r->conn); /* on_close follows */
    if (r->pipe_open && !uv_is_closing((uv_handle_t *)&r->pipe))
        uv_close((uv_handle_t *)&r->pipe, pipe_closed_cb); /* pending writes are cancelled */
    if (r->raft_end && !uv_is_closing((uv_handle_t *)r->raft_end))
        uv_close((uv_handle_t *)r->raft_end, raft_end_closed_cb);
}

/* Close r for a protocol error of its peer, saying what it was. */
static void __attribute__((format(printf, 2, 3)))
relay_refuse(struct relay *r, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* only a proved MDM gets this far: not rate-limited */
    log_warn("raft link %s: %s; closing the connection", r->conn ? rpc_peer(r->conn) : "?", why);
    relay_close(r);
}

/* ---- frames from the peer ---- */

/* FT_RAFT_OPEN, on the accepting side: the peer's raft id and address. */
static void handle_open(struct relay *r, const struct frame_hdr *h, const uint8_t *msg)
{
    struct link *l = r->l;
    if (r->client) {
        relay_refuse(r, "the listening side sent an open frame");
        return;
    }
    if (r->state != R_OPENING) {
        relay_refuse(r, "a second open frame");
        return;
    }
    if (h->payload_len || h->msg_len <= 8 || h->msg_len > 8 + LINK_ADDR_MAX) {
        relay_refuse(r,
                     "a malformed open frame (%u+%u bytes; want a u64 raft id and a "
                     "1-%d byte address)",
                     h->msg_len, h->payload_len, LINK_ADDR_MAX);
        return;
    }
    raft_id id = get_be64(msg);
    size_t alen = h->msg_len - 8;
    for (size_t i = 0; i < alen; i++)
        if (msg[8 + i] <= ' ' || msg[8 + i] > '~') {
            relay_refuse(r, "a malformed address in its open frame (byte %zu is 0x%02x)", i,
                         msg[8 + i]);
            return;
        }
    if (id == 0) {
        relay_refuse(r, "raft id 0 in its open frame (raft ids start at 1)");
        return;
    }
    if (l->closing) {
        relay_close(r);
        return;
    }
    r->peer_id = id;
    memcpy(r->peer_addr, msg + 8, alen);
    r->peer_addr[alen] = 0;
    if (pipe_make(r) < 0) {
        relay_close(r);
        return;
    }
    /* the answer goes before any byte of ours: the peer takes data only
     * after it */
    if (rpc_reply(r->conn, h, 0, NULL, 0, NULL, 0, NULL, NULL) < 0) {
        relay_close(r);
        return;
    }
    r->state = R_OPEN;
    log_info("raft link %s: raft peer %llu (%s) connected", rpc_peer(r->conn),
             (unsigned long long)id, r->peer_addr);
    pipe_read_start(r);
    l->accept_cb(l->t, id, r->peer_addr, raft_end_take(r));
}

static void note_heard(struct link *l, raft_id id, int heard)
{
    unsigned k = 0; /* its slot, or the oldest */
    for (unsigned i = 0; i < LINK_HEARD; i++) {
        if (l->heard[i].id == id) {
            k = i;
            break;
        }
        if (l->heard[i].at < l->heard[k].at)
            k = i;
    }
    l->heard[k].id = id;
    l->heard[k].at = heard ? uv_now(l->loop) : 0;
}

uint64_t raft_link_heard_ago(struct raft_uv_transport *t, raft_id id)
{
    struct link *l = t->impl;
    for (unsigned i = 0; l && i < LINK_HEARD; i++)
        if (l->heard[i].id == id && l->heard[i].at)
            return uv_now(l->loop) - l->heard[i].at;
    return UINT64_MAX;
}

/* FT_RAFT_DATA: the next bytes of the peer's stream, into the pipe. */
static void handle_data(struct relay *r, const struct frame_hdr *h, uint8_t *payload)
{
    if (r->state != R_OPEN) {
        rpc_buf_free(payload);
        relay_refuse(r, "a data frame before its open frame");
        return;
    }
    if (h->msg_len) {
        rpc_buf_free(payload);
        relay_refuse(r, "a malformed data frame (a %u-byte message)", h->msg_len);
        return;
    }
    note_heard(r->l, r->peer_id, 1);
    if (!h->payload_len) {
        rpc_reply(r->conn, h, 0, NULL, 0, NULL, 0, NULL, NULL);
        return;
    }
    struct pipe_write *w = malloc(sizeof(*w));
    if (!w) {
        rpc_buf_free(payload);
        log_error("raft link %s: out of memory; closing", rpc_peer(r->conn));
        relay_close(r);
        return;
    }
    w->r = r;
    w->hdr = *h;
    w->payload = payload;
    uv_buf_t b = uv_buf_init((char *)payload, h->payload_len);
    int e = uv_write(&w->req, (uv_stream_t *)&r->pipe, &b, 1, pipe_write_cb);
    if (e < 0) {
        rpc_buf_free(payload);
        free(w);
        log_info("raft link %s: writing raft's stream: %s; closing", rpc_peer(r->conn),
                 uv_strerror(e));
        relay_close(r);
        return;
    }
    r->writes++;
    r->writing += h->payload_len;
    if (r->writing > 2 * (size_t)LINK_WINDOW && !r->paused) {
        /* more than a peer keeping to the window sends: wait for Raft */
        r->paused = 1;
        rpc_pause(r->conn, LINK_PAUSE_PIPE);
    }
}

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    struct relay *r = rpc_data(c);
    if (r->state == R_CLOSING) {
        rpc_buf_free(payload);
        return;
    }
    switch (h->type) {
    case FT_RAFT_OPEN:
        rpc_buf_free(payload);
        handle_open(r, h, msg);
        break;
    case FT_RAFT_DATA: handle_data(r, h, payload); break;
    default: rpc_buf_free(payload); relay_refuse(r, "a frame of type %u on the Raft port", h->type);
    }
}

static void on_close(struct rpc_conn *c)
{
    struct relay *r = rpc_data(c);
    r->conn = NULL;
    if (r->state == R_OPEN)
        log_debug("raft link %s: closed (raft peer %llu)", rpc_peer(c),
                  (unsigned long long)r->peer_id);
    if (r->state == R_OPEN && !r->client)
        note_heard(r->l, r->peer_id, 0); /* its stream is gone: not heard since */
    relay_close(r);
    connect_done(r, NULL, connect_failure(r));
    relay_maybe_free(r);
}

/* A peer proved an MDM credential (the handshake refused any other). */
static int on_accept(struct rpc_conn *c, void *server_data)
{
    struct link *l = server_data;
    if (l->closing)
        return -ECANCELED;
    if (rpc_peer_role(c) != AUTH_ROLE_MDM) {
        /* only on a link without credentials: the MDM never runs one */
        log_warn("raft link %s: refused: the peer is not a proved MDM (role %s)", rpc_peer(c),
                 auth_role_name(rpc_peer_role(c)));
        return -EACCES;
    }
    struct relay *r = relay_new(l, 0);
    if (!r)
        return -ENOMEM;
    r->conn = c;
    r->state = R_OPENING;
    rpc_set_data(c, r);
    /* a peer that keeps to the window never has this many unacked */
    rpc_set_request_limit(c, 2 * LINK_CALLS);
    return 0;
}

/* ---- the connecting side ---- */

static void open_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                          uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)msg, (void)msg_len, (void)payload_len;
    struct relay *r = arg;
    rpc_buf_free(payload);
    if (status < 0 || r->state != R_OPENING || r->l->closing) {
        if (status < 0 && !rpc_is_closing(c))
            log_warn("raft link %s: raft peer %llu refused our open frame: %s", rpc_peer(c),
                     (unsigned long long)r->peer_id, strerror(-status));
        relay_close(r); /* on_close tells Raft */
        return;
    }
    if (pipe_make(r) < 0) {
        relay_close(r);
        return;
    }
    r->state = R_OPEN;
    log_debug("raft link %s: connected to raft peer %llu", rpc_peer(c),
              (unsigned long long)r->peer_id);
    pipe_read_start(r);
    connect_done(r, raft_end_take(r), 0);
}

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct relay *r = arg;
    struct link *l = r->l;
    r->connecting = NULL;
    if (status < 0) {
        if (!l->closing && r->state != R_CLOSING)
            LOG_LIMITED(LOG_WARN, 5000, "raft link: cannot reach raft peer %llu at %s: %s",
                        (unsigned long long)r->peer_id, r->peer_addr, strerror(-status));
        connect_done(r, NULL, connect_failure(r));
        relay_maybe_free(r);
        return;
    }
    r->conn = c;
    rpc_set_request_limit(c, 2 * LINK_CALLS); /* as on_accept: data goes both ways */
    if (l->closing || r->state == R_CLOSING) {
        relay_close(r);
        return;
    }
    if (rpc_peer_role(c) != AUTH_ROLE_MDM) {
        log_warn("raft link %s: the peer is not a proved MDM (role %s); closing", rpc_peer(c),
                 auth_role_name(rpc_peer_role(c)));
        relay_close(r);
        return;
    }
    uint8_t msg[8 + LINK_ADDR_MAX];
    size_t alen = strlen(l->addr);
    put_be64(msg, l->id);
    memcpy(msg + 8, l->addr, alen);
    r->state = R_OPENING;
    if (rpc_call(c, FT_RAFT_OPEN, msg, (uint32_t)(8 + alen), NULL, 0, LINK_TIMEOUT_MS,
                 open_reply_cb, r) < 0)
        relay_close(r);
}

/* ---- the transport ---- */

static const struct rpc_handlers listen_handlers = {.on_request = on_request,
                                                    .on_close = on_close,
                                                    .on_accept = on_accept,
                                                    .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
/* the connecting side insists on an MDM too: a Raft address that leads to
 * an SDS (or anything else) is no Raft peer */
static const struct rpc_handlers connect_handlers = {
    .on_request = on_request, .on_close = on_close, .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};

static int link_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct link *l = t->impl;
    size_t n = strlen(address);
    if (id == 0 || n == 0 || n > LINK_ADDR_MAX) {
        snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE,
                 "raft id %llu, address '%.100s': want an id from 1 "
                 "and a 1-%d byte address",
                 (unsigned long long)id, address, LINK_ADDR_MAX);
        return RAFT_INVALID;
    }
    l->id = id;
    memcpy(l->addr, address, n + 1);
    return 0;
}

static int link_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct link *l = t->impl;
    l->accept_cb = cb;
    char at[LINK_ADDR_MAX + 1];
    raft_link_sock_addr(l->addr, at, sizeof(at));
    int e = rpc_listen(l->loop, at, &listen_handlers, l, &l->server);
    if (e < 0) {
        snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "cannot listen on %.200s: %s", at,
                 uv_strerror(e));
        return RAFT_IOERR;
    }
    l->server_open = 1;
    return 0;
}

static int link_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                        const char *address, raft_uv_connect_cb cb)
{
    struct link *l = t->impl;
    if (l->closing)
        return RAFT_CANCELED;
    struct relay *r = relay_new(l, 1);
    if (!r) {
        snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "out of memory");
        return RAFT_NOMEM;
    }
    r->req = req;
    r->cb = cb;
    r->peer_id = id;
    snprintf(r->peer_addr, sizeof(r->peer_addr), "%s", address); /* for logs */
    r->state = R_CONNECTING;
    char at[LINK_ADDR_MAX + 1];
    raft_link_sock_addr(address, at, sizeof(at));
    int e =
        rpc_connect_cancelable(l->loop, at, &connect_handlers, r, connect_cb, r, &r->connecting);
    if (e < 0) {
        r->req = NULL; /* Raft hears it from the return value */
        r->connecting = NULL;
        relay_maybe_free(r);
        snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "cannot connect to %.200s: %s", address,
                 strerror(-e));
        return RAFT_NOCONNECTION;
    }
    return 0;
}

static void server_closed_cb(void *arg)
{
    struct link *l = arg;
    l->server_open = 0;
    link_maybe_closed(l);
}

static void link_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct link *l = t->impl;
    l->closing = 1;
    l->close_cb = cb;
    if (l->server) {
        rpc_server_close_cb(l->server, server_closed_cb, l);
        l->server = NULL;
    }
    /* relay_close frees nothing at once: the list stays as it is */
    for (struct relay *r = l->relays; r; r = r->next)
        relay_close(r);
    link_maybe_closed(l);
}

int raft_link_init(struct raft_uv_transport *t, uv_loop_t *loop)
{
    /* t->data is Raft's (raft_uv_init sets it); ours is t->impl */
    struct link *l = calloc(1, sizeof(*l));
    if (!l)
        return RAFT_NOMEM;
    l->t = t;
    l->loop = loop;
    t->version = 1; /* libraft 0.22 refuses a transport of version 0 */
    t->impl = l;
    t->errmsg[0] = 0;
    t->init = link_init;
    t->listen = link_listen;
    t->connect = link_connect;
    t->close = link_close;
    return 0;
}

void raft_link_close(struct raft_uv_transport *t)
{
    struct link *l = t->impl;
    if (!l)
        return;
    if (l->server_open || l->relays) {
        /* Raft did not close it: its handles still point here */
        log_error("raft link: freed while still open; leaking it");
        return;
    }
    free(l);
    t->impl = NULL;
}
