#include "rpc_peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn.pb-c.h"
#include "frame.h"
#include "log.h"
#include "pool.h"

#define CALL_INLINE_MSG 64 /* every data-path header fits */

/* One call, from the moment it is made until its callback has run. */
struct call {
    struct call *next; /* in the waiting FIFO */
    struct rpc_peer *p;
    const void *owner;
    uint16_t type;
    uint32_t msg_len;
    uint8_t *msg; /* msg_inline, or malloc'd for a long message */
    struct iovec pl[4];
    int npl;
    size_t bytes; /* payload */
    uint32_t timeout_ms;
    rpc_reply_cb cb;
    void *arg;
    uint8_t msg_inline[CALL_INLINE_MSG];
};

static __thread struct pool call_pool = POOL_INIT(struct call, 4096);

struct rpc_peer {
    uv_loop_t *loop;
    uint32_t id;
    char addr[128];
    struct rpc_conn *conn;
    int connecting;
    /* a TCP connection to this host, while it is swapped for the peer's unix
     * socket: probe is the TCP one, local the unix one being checked */
    struct rpc_conn *probe, *local;
    uint64_t token;
    struct call *head, **tail; /* waiting to be sent, oldest first */
    unsigned nwaiting;
    unsigned inflight, max_calls;
    size_t inflight_bytes, max_bytes;
    uint64_t last_fail_log;
};

static void call_free(struct call *k)
{
    if (k->msg != k->msg_inline)
        free(k->msg);
    pool_put(&call_pool, k);
}

struct rpc_peer *rpc_peer_new(uv_loop_t *loop, uint32_t id)
{
    struct rpc_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->loop = loop;
    p->id = id;
    p->tail = &p->head;
    p->max_calls = RPC_PEER_WINDOW_CALLS;
    p->max_bytes = RPC_PEER_WINDOW_BYTES;
    return p;
}

void rpc_peer_set_window(struct rpc_peer *p, unsigned calls, size_t bytes)
{
    p->max_calls = calls ? calls : 1;
    p->max_bytes = bytes;
}

unsigned rpc_peer_inflight(const struct rpc_peer *p)
{
    return p->inflight;
}

unsigned rpc_peer_waiting(const struct rpc_peer *p)
{
    return p->nwaiting;
}

uint32_t rpc_peer_id(const struct rpc_peer *p)
{
    return p->id;
}

void rpc_peer_set_addr(struct rpc_peer *p, const char *addr)
{
    if (!strcmp(p->addr, addr))
        return;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    if (p->conn)
        rpc_close(p->conn);
    if (p->probe)
        rpc_close(p->probe);
    if (p->local)
        rpc_close(p->local);
}

static int start_connect(struct rpc_peer *p);

static void on_close(struct rpc_conn *c)
{
    struct rpc_peer *p = rpc_data(c);
    if (p && p->conn == c) {
        p->conn = NULL;
        /* calls still waiting for room in the window go on a new one */
        if (p->head && !p->connecting)
            start_connect(p);
    }
    if (p && p->probe == c)
        p->probe = NULL; /* the swap in progress sees it gone */
    if (p && p->local == c)
        p->local = NULL;
}

/* The TCP connection kept when the local socket is not used, or NULL. */
static struct rpc_conn *usable(struct rpc_conn *c)
{
    return c && !rpc_is_closing(c) ? c : NULL;
}

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    (void)msg;
    rpc_buf_free(payload);
    log_warn("unexpected request type %u from %s", h->type, rpc_peer(c));
    rpc_reply(c, h, -EOPNOTSUPP, NULL, 0, NULL, 0, NULL, NULL);
}

static struct call *pop(struct rpc_peer *p)
{
    struct call *k = p->head;
    p->head = k->next;
    if (!p->head)
        p->tail = &p->head;
    k->next = NULL;
    p->nwaiting--;
    return k;
}

static void pump(struct rpc_peer *p);

static void call_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                          uint8_t *payload, uint32_t payload_len, void *arg)
{
    struct call *k = arg;
    struct rpc_peer *p = k->p;
    p->inflight--;
    p->inflight_bytes -= k->bytes;
    k->cb(c, status, msg, msg_len, payload, payload_len, k->arg);
    call_free(k);
    pump(p);
}

static int send_call(struct rpc_peer *p, struct call *k)
{
    int r = rpc_call(p->conn, k->type, k->msg, k->msg_len, k->pl, k->npl, k->timeout_ms,
                     call_reply_cb, k);
    if (r == 0) {
        p->inflight++;
        p->inflight_bytes += k->bytes;
    }
    return r;
}

static int window_open(const struct rpc_peer *p, const struct call *k)
{
    return p->inflight < p->max_calls &&
           (p->inflight == 0 || p->inflight_bytes + k->bytes <= p->max_bytes);
}

/* Send waiting calls while the window has room (from a callback, never
 * from inside rpc_peer_call: a call that cannot be sent fails here). */
static void pump(struct rpc_peer *p)
{
    while (p->head && p->conn && !rpc_is_closing(p->conn) && window_open(p, p->head)) {
        struct call *k = pop(p);
        int r = send_call(p, k);
        if (r < 0) {
            k->cb(NULL, r, NULL, 0, NULL, 0, k->arg);
            call_free(k);
        }
    }
}

/* Complete the calls waiting now with err (connecting failed, or closed).
 * A call a callback makes meanwhile waits for the connection it starts:
 * failing it with this err too would let a callback that calls again at
 * once spin here for ever. */
static void drain(struct rpc_peer *p, int err)
{
    struct call *k = p->head;
    p->head = NULL;
    p->tail = &p->head;
    while (k) {
        struct call *next = k->next;
        k->next = NULL;
        p->nwaiting--;
        k->cb(NULL, err, NULL, 0, NULL, 0, k->arg);
        call_free(k);
        k = next;
    }
}

static void use_conn(struct rpc_peer *p, struct rpc_conn *c)
{
    p->connecting = 0;
    p->conn = c;
    if (c)
        pump(p);
    else
        drain(p, -ECONNRESET);
}

/* An FT_LOCAL reply: the SDS's unix socket and token, or NULL. */
static Cairn__LocalSocket *local_socket_of(int status, const uint8_t *msg, uint32_t msg_len,
                                           uint8_t *payload)
{
    rpc_buf_free(payload);
    return status == 0 ? cairn__local_socket__unpack(NULL, msg_len, msg) : NULL;
}

/* The local socket answered with the same token: it is the same SDS. */
static void local_check_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)payload_len;
    struct rpc_peer *p = arg;
    struct rpc_conn *tcp = p->probe, *local = p->local;
    p->probe = p->local = NULL;
    Cairn__LocalSocket *ls = local_socket_of(status, msg, msg_len, payload);
    int same = ls && ls->token == p->token, ls_ok = ls != NULL;
    if (ls)
        cairn__local_socket__free_unpacked(ls, NULL);
    if (same && usable(local)) {
        if (tcp)
            rpc_close(tcp);
        use_conn(p, local);
        return;
    }
    if (ls_ok && !same)
        log_warn("the unix socket named by %u at %s belongs to another SDS; using TCP", p->id,
                 p->addr);
    if (local)
        rpc_close(local);
    use_conn(p, usable(tcp));
}

static void local_connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct rpc_peer *p = arg;
    struct rpc_conn *tcp = p->probe;
    if (status == 0) {
        p->local = c;
        if (rpc_call(c, FT_LOCAL, NULL, 0, NULL, 0, 2000, local_check_cb, p) == 0)
            return;
        p->local = NULL;
        rpc_close(c);
    }
    p->probe = NULL;
    use_conn(p, usable(tcp));
}

static void local_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)payload_len;
    struct rpc_peer *p = arg;
    struct rpc_conn *tcp = p->probe;
    Cairn__LocalSocket *ls = local_socket_of(status, msg, msg_len, payload);
    if (ls && strncmp(ls->addr, "unix:", 5) == 0 && usable(tcp)) {
        static const struct rpc_handlers h = {.on_request = on_request,
                                              .on_close = on_close,
                                              .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_SDS)};
        p->token = ls->token;
        int r = rpc_connect(p->loop, ls->addr, &h, p, local_connect_cb, p);
        cairn__local_socket__free_unpacked(ls, NULL);
        if (r == 0)
            return;
    } else if (ls) {
        cairn__local_socket__free_unpacked(ls, NULL);
    }
    p->probe = NULL;
    use_conn(p, usable(tcp));
}

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct rpc_peer *p = arg;
    if (status < 0) {
        p->connecting = 0;
        uint64_t now = uv_now(p->loop);
        if (now - p->last_fail_log > 5000) {
            log_warn("cannot connect to %u at %s: %s", p->id, p->addr, uv_strerror(status));
            p->last_fail_log = now;
        }
        drain(p, status == UV_ECONNREFUSED ? -ECONNREFUSED : -EHOSTUNREACH);
        return;
    }
    /* A peer on this host is reached through its unix socket if it has one:
     * the same frames, without the TCP stack. An SDS without one (or an
     * older one) answers FT_LOCAL with an error and TCP is kept. */
    if (rpc_same_host(c)) {
        p->probe = c;
        if (rpc_call(c, FT_LOCAL, NULL, 0, NULL, 0, 2000, local_reply_cb, p) == 0)
            return;
        p->probe = NULL;
    }
    use_conn(p, c);
}

/* 0, or -errno (nothing started: the calls waiting stay for the next try). */
static int start_connect(struct rpc_peer *p)
{
    static const struct rpc_handlers h = {
        .on_request = on_request, .on_close = on_close, .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_SDS)};
    p->connecting = 1;
    int r = rpc_connect(p->loop, p->addr, &h, p, connect_cb, p);
    if (r < 0)
        p->connecting = 0;
    return r;
}

int rpc_peer_call_owned(struct rpc_peer *p, const void *owner, uint16_t type, const void *msg,
                        uint32_t msg_len, const struct iovec *pl, int npl, uint32_t timeout_ms,
                        rpc_reply_cb cb, void *arg)
{
    if (npl < 0 || npl > 4 || !p->addr[0])
        return -EINVAL;
    struct call *k = pool_get(&call_pool);
    if (!k)
        return -ENOMEM;
    k->msg = msg_len <= CALL_INLINE_MSG ? k->msg_inline : malloc(msg_len);
    if (!k->msg) {
        pool_put(&call_pool, k);
        return -ENOMEM;
    }
    k->p = p;
    k->owner = owner;
    k->type = type;
    k->msg_len = msg_len;
    if (msg_len)
        memcpy(k->msg, msg, msg_len);
    for (int i = 0; i < npl; i++) {
        k->pl[i] = pl[i];
        k->bytes += pl[i].iov_len;
    }
    k->npl = npl;
    k->timeout_ms = timeout_ms;
    k->cb = cb;
    k->arg = arg;
    int usable = p->conn && !rpc_is_closing(p->conn);
    if (usable && !p->head && window_open(p, k)) {
        int r = send_call(p, k);
        if (r < 0)
            call_free(k);
        return r;
    }
    if (!usable && !p->connecting) {
        int r = start_connect(p);
        if (r < 0) {
            call_free(k);
            return r;
        }
    }
    /* behind the calls already waiting: order is kept */
    *p->tail = k;
    p->tail = &k->next;
    p->nwaiting++;
    return 0;
}

int rpc_peer_call(struct rpc_peer *p, uint16_t type, const void *msg, uint32_t msg_len,
                  const struct iovec *pl, int npl, uint32_t timeout_ms, rpc_reply_cb cb, void *arg)
{
    return rpc_peer_call_owned(p, NULL, type, msg, msg_len, pl, npl, timeout_ms, cb, arg);
}

unsigned rpc_peer_cancel(struct rpc_peer *p, const void *owner)
{
    struct call *mine = NULL, **mt = &mine;
    unsigned n = 0;
    for (struct call **pp = &p->head; *pp;) {
        struct call *k = *pp;
        if (k->owner == owner) {
            *pp = k->next;
            k->next = NULL;
            *mt = k;
            mt = &k->next;
            p->nwaiting--;
            n++;
        } else {
            pp = &k->next;
        }
    }
    p->tail = &p->head;
    while (*p->tail)
        p->tail = &(*p->tail)->next;
    while (mine) {
        struct call *k = mine;
        mine = k->next;
        k->cb(NULL, -ECANCELED, NULL, 0, NULL, 0, k->arg);
        call_free(k);
    }
    return n;
}

void rpc_peer_close(struct rpc_peer *p)
{
    if (p->conn)
        rpc_close(p->conn);
    if (p->local)
        rpc_close(p->local);
    if (p->probe)
        rpc_close(p->probe);
    if (!p->connecting)
        drain(p, -ECANCELED);
}
