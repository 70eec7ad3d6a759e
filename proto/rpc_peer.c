#include "rpc_peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn.pb-c.h"
#include "frame.h"
#include "log.h"

struct waiting {
    struct waiting *next;
    uint16_t type;
    uint32_t msg_len;
    struct iovec pl[4];
    int npl;
    uint32_t timeout_ms;
    rpc_reply_cb cb;
    void *arg;
    uint8_t msg[];
};

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
    struct waiting *head, **tail;
    uint64_t last_fail_log;
};

struct rpc_peer *rpc_peer_new(uv_loop_t *loop, uint32_t id)
{
    struct rpc_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->loop = loop;
    p->id = id;
    p->tail = &p->head;
    return p;
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

static void on_close(struct rpc_conn *c)
{
    struct rpc_peer *p = rpc_data(c);
    if (p && p->conn == c)
        p->conn = NULL;
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

static void drain(struct rpc_peer *p, int err)
{
    struct waiting *w = p->head;
    p->head = NULL;
    p->tail = &p->head;
    while (w) {
        struct waiting *n = w->next;
        int r = err;
        if (!r)
            r = rpc_call(p->conn, w->type, w->msg, w->msg_len, w->pl, w->npl, w->timeout_ms, w->cb,
                         w->arg);
        if (r < 0)
            w->cb(NULL, r, NULL, 0, NULL, 0, w->arg);
        free(w);
        w = n;
    }
}

static void use_conn(struct rpc_peer *p, struct rpc_conn *c)
{
    p->connecting = 0;
    p->conn = c;
    drain(p, c ? 0 : -ECONNRESET);
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
        static const struct rpc_handlers h = {.on_request = on_request, .on_close = on_close};
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

int rpc_peer_call(struct rpc_peer *p, uint16_t type, const void *msg, uint32_t msg_len,
                  const struct iovec *pl, int npl, uint32_t timeout_ms, rpc_reply_cb cb, void *arg)
{
    if (p->conn && !rpc_is_closing(p->conn))
        return rpc_call(p->conn, type, msg, msg_len, pl, npl, timeout_ms, cb, arg);
    if (npl > 4 || !p->addr[0])
        return -EINVAL;
    struct waiting *w = malloc(sizeof(*w) + msg_len);
    if (!w)
        return -ENOMEM;
    w->next = NULL;
    w->type = type;
    w->msg_len = msg_len;
    memcpy(w->msg, msg, msg_len);
    for (int i = 0; i < npl; i++)
        w->pl[i] = pl[i];
    w->npl = npl;
    w->timeout_ms = timeout_ms;
    w->cb = cb;
    w->arg = arg;
    *p->tail = w;
    p->tail = &w->next;
    if (!p->connecting) {
        static const struct rpc_handlers h = {.on_request = on_request, .on_close = on_close};
        p->connecting = 1;
        int r = rpc_connect(p->loop, p->addr, &h, p, connect_cb, p);
        if (r < 0) {
            p->connecting = 0;
            /* fail later, never from inside the call: unlink ours and report */
            p->head = NULL;
            p->tail = &p->head;
            free(w);
            return r;
        }
    }
    return 0;
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
