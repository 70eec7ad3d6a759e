/* The pipe of each relay of the Raft transport: Raft's end of a socketpair,
 * read into FT_RAFT_DATA frames to the peer (with the window of
 * raft_link.c's comment) and written with the peer's frames. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "raft_link_int.h"
#include "util.h"

/* ---- the pipe: Raft's stream ---- */

static void pipe_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct relay *r = h->data;
    *buf = uv_buf_init((char *)r->rbuf, sizeof(r->rbuf));
}

static void pipe_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

void pipe_read_start(struct relay *r)
{
    if (r->reading || r->state != R_OPEN || !r->pipe_open || !r->conn)
        return;
    if (uv_read_start((uv_stream_t *)&r->pipe, pipe_alloc_cb, pipe_read_cb) == 0)
        r->reading = 1;
}

static void data_ack_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                        uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)msg, (void)msg_len, (void)payload_len;
    struct chunk *k = arg;
    struct relay *r = k->r;
    size_t n = k->n;
    free(k);
    rpc_buf_free(payload);
    r->calls--;
    r->unacked -= n + LINK_OVERHEAD;
    if (status < 0) {
        /* a hole in Raft's stream: it must start over on a new connection */
        if (r->state != R_CLOSING && !rpc_is_closing(c))
            log_warn("raft link %s: raft peer %llu did not take %zu bytes: %s; closing",
                     rpc_peer(c), (unsigned long long)r->peer_id, n, strerror(-status));
        relay_close(r);
        return;
    }
    if (r->unacked <= LINK_WINDOW / 2 && r->calls <= LINK_CALLS / 2)
        pipe_read_start(r);
}

/* Raft wrote n bytes: they go to the peer as one data frame. */
static void pipe_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct relay *r = s->data;
    if (n == 0)
        return;
    if (n < 0) {
        /* Raft closed its stream (or it broke): the link goes too */
        if (n != UV_EOF)
            log_info("raft link %s: reading raft's stream: %s", r->conn ? rpc_peer(r->conn) : "?",
                     uv_strerror((int)n));
        relay_close(r);
        return;
    }
    if (r->state != R_OPEN || !r->conn)
        return;
    struct chunk *k = malloc(sizeof(*k) + (size_t)n);
    if (!k) {
        log_error("raft link %s: out of memory for %zd bytes of raft's stream; closing",
                  rpc_peer(r->conn), n);
        relay_close(r);
        return;
    }
    k->r = r;
    k->n = (size_t)n;
    memcpy(k->data, buf->base, k->n);
    struct iovec iov = {.iov_base = k->data, .iov_len = k->n};
    int e = rpc_call(r->conn, FT_RAFT_DATA, NULL, 0, &iov, 1, LINK_TIMEOUT_MS, data_ack_cb, k);
    if (e < 0) {
        free(k);
        if (e != -ECONNRESET)
            log_warn("raft link %s: cannot send raft's bytes: %s; closing", rpc_peer(r->conn),
                     strerror(-e));
        relay_close(r);
        return;
    }
    r->calls++;
    r->unacked += k->n + LINK_OVERHEAD;
    if (r->unacked >= LINK_WINDOW || r->calls >= LINK_CALLS) {
        uv_read_stop(s); /* until the peer has taken half */
        r->reading = 0;
    }
}

void pipe_write_cb(uv_write_t *req, int status)
{
    struct pipe_write *w = (struct pipe_write *)req;
    struct relay *r = w->r;
    r->writes--;
    r->writing -= w->hdr.payload_len;
    rpc_buf_free(w->payload);
    if (status < 0) {
        if (status != UV_ECANCELED && r->state != R_CLOSING)
            log_info("raft link %s: writing raft's stream: %s; closing",
                     r->conn ? rpc_peer(r->conn) : "?", uv_strerror(status));
        relay_close(r);
    } else if (r->conn) {
        rpc_reply(r->conn, &w->hdr, 0, NULL, 0, NULL, 0, NULL, NULL); /* the ack */
    }
    free(w);
    if (r->paused && r->conn && r->writing <= LINK_WINDOW) {
        r->paused = 0;
        rpc_resume(r->conn, LINK_PAUSE_PIPE);
    }
    relay_maybe_free(r);
}

/* Make the socketpair: our end in r->pipe, Raft's in r->raft_end. On a
 * failure what was made is left for relay_close() to close. */
int pipe_make(struct relay *r)
{
    uv_os_sock_t fds[2];
    int e = uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE);
    if (e < 0) {
        log_error("raft link: socketpair: %s", uv_strerror(e));
        return e;
    }
    uv_pipe_t *re = raft_malloc(sizeof(*re)); /* Raft frees it with raft_free */
    if (!re) {
        close(fds[0]);
        close(fds[1]);
        return UV_ENOMEM;
    }
    uv_pipe_init(r->l->loop, &r->pipe, 0);
    r->pipe.data = r;
    r->pipe_open = 1;
    uv_pipe_init(r->l->loop, re, 0);
    re->data = r;
    r->raft_end = re;
    int e0 = uv_pipe_open(&r->pipe, fds[0]);
    int e1 = uv_pipe_open(re, fds[1]);
    if (e0 < 0 || e1 < 0) {
        /* a handle that did not take its fd does not close it */
        if (e0 < 0)
            close(fds[0]);
        if (e1 < 0)
            close(fds[1]);
        log_error("raft link: opening the socketpair: %s", uv_strerror(e0 < 0 ? e0 : e1));
        return e0 < 0 ? e0 : e1;
    }
    return 0;
}

/* Raft's end, for Raft to own from now on. */
uv_stream_t *raft_end_take(struct relay *r)
{
    uv_stream_t *s = (uv_stream_t *)r->raft_end;
    r->raft_end = NULL;
    s->data = NULL;
    return s;
}
