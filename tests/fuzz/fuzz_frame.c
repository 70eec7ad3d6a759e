/* Frame headers, io headers, and the RPC layer's frame stream parser
 * (rpc_consume) on a real rpc_conn whose stream is one end of a socketpair.
 * The input is fed in chunks whose sizes come from its first byte, so frames
 * split across reads are parsed too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "rpc_internal.h"

static uv_loop_t loop;
static int requests;

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    (void)msg;
    requests++;
    rpc_buf_free(payload);
    rpc_reply(c, h, 0, NULL, 0, NULL, 0, NULL, NULL);
}

static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c, (void)status, (void)msg, (void)msg_len, (void)payload_len, (void)arg;
    rpc_buf_free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        uv_loop_init(&loop);
        log_init("fuzz", -1);
        init = 1;
    }
    struct io_hdr io;
    struct frame_hdr fh;
    if (size >= FRAME_HDR_SIZE)
        frame_hdr_decode(data, &fh);
    io_hdr_decode(data, (uint32_t)(size < 64 ? size : 40), &io);
    if (size < 1)
        return 0;
    size_t chunk = data[0] ? data[0] : 4096;
    data++, size--;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    struct rpc_conn *c = calloc(1, sizeof(*c));
    c->rbuf = malloc(RPC_READ_BUF);
    c->loop = &loop;
    c->handlers.on_request = on_request;
    c->next_id = 1;
    c->fail_status = -ECONNRESET;
    uv_pipe_init(&loop, &c->u.pipe, 0);
    uv_pipe_open(&c->u.pipe, sv[0]);
    c->u.h.data = c;
    uv_timer_init(&loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->rx_limit = RPC_REQUEST_LIMIT_DEFAULT;
    c->tx_limit = RPC_TX_LIMIT_DEFAULT;
    strcpy(c->peer, "fuzz");
    /* two calls waiting, so replies to ids 1 and 2 reach a reply callback */
    rpc_call(c, FT_MAP_GET, NULL, 0, NULL, 0, 0, reply_cb, NULL);
    rpc_call(c, FT_MAP_GET, NULL, 0, NULL, 0, 0, reply_cb, NULL);
    for (size_t off = 0; off < size && !c->closing;) {
        size_t k = size - off < chunk ? size - off : chunk;
        if (c->pause) {
            c->pause = 0; /* the request limit: as if every reply went out */
            c->rx_open = 0;
        }
        if (c->nrest) {
            const uint8_t *r = c->rest;
            size_t n = c->nrest;
            c->nrest = 0;
            rpc_consume(c, r, n);
            continue;
        }
        rpc_consume(c, data + off, k);
        off += k;
    }
    rpc_close(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    close(sv[1]);
    (void)requests;
    return 0;
}
