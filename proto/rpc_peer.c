#include "rpc_peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
}

static void on_close(struct rpc_conn *c)
{
    struct rpc_peer *p = rpc_data(c);
    if (p && p->conn == c)
        p->conn = NULL;
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
            r = rpc_call(p->conn, w->type, w->msg, w->msg_len, w->pl, w->npl, w->timeout_ms,
                         w->cb, w->arg);
        if (r < 0)
            w->cb(NULL, r, NULL, 0, NULL, 0, w->arg);
        free(w);
        w = n;
    }
}

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct rpc_peer *p = arg;
    p->connecting = 0;
    if (status < 0) {
        uint64_t now = uv_now(p->loop);
        if (now - p->last_fail_log > 5000) {
            log_warn("cannot connect to %u at %s: %s", p->id, p->addr, uv_strerror(status));
            p->last_fail_log = now;
        }
        drain(p, status == UV_ECONNREFUSED ? -ECONNREFUSED : -EHOSTUNREACH);
        return;
    }
    p->conn = c;
    drain(p, 0);
}

int rpc_peer_call(struct rpc_peer *p, uint16_t type, const void *msg, uint32_t msg_len,
                  const struct iovec *pl, int npl, uint32_t timeout_ms, rpc_reply_cb cb,
                  void *arg)
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
    if (!p->connecting)
        drain(p, -ECANCELED);
}
