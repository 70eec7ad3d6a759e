/* rpc: payload buffers are reused; and a call that times out before its
 * payload was all sent closes its connection, so no write reads the payload
 * the caller frees when told of the timeout (under ASan, such a read is
 * reported as a use after poison or free). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "frame.h"
#include "rpc.h"

#define LEN (4u << 20)

static uv_loop_t *loop;
static uv_pipe_t srv, peer;
static uv_timer_t later;
static size_t received;
static int eof, cb_status = 1;
static uint8_t *payload;
static char path[64];

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *pl)
{
    (void)c;
    (void)h;
    (void)msg;
    rpc_buf_free(pl);
}

static void rd_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    (void)s;
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof(buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0) {
        eof = 1;
        uv_close((uv_handle_t *)s, NULL);
        uv_close((uv_handle_t *)&srv, NULL);
        return;
    }
    received += (size_t)n;
}

static void start_reading(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    uv_read_start((uv_stream_t *)&peer, rd_alloc, on_read);
}

static void on_conn(uv_stream_t *s, int status)
{
    CHECK_EQ(status, 0);
    uv_pipe_init(loop, &peer, 0);
    CHECK_EQ(uv_accept(s, (uv_stream_t *)&peer), 0);
    /* not reading: the request cannot all be sent */
}

static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *pl, uint32_t pl_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)pl_len;
    (void)arg;
    rpc_buf_free(pl);
    cb_status = status;
    /* the caller's buffer is its own again: scribble on it, then free it */
    memset(payload, 0xAA, LEN);
    rpc_buf_free(payload);
    payload = NULL;
    uv_timer_init(loop, &later);
    uv_timer_start(&later, start_reading, 100, 0);
}

static void connected(struct rpc_conn *c, int status, void *arg)
{
    (void)arg;
    CHECK_EQ(status, 0);
    payload = rpc_buf_alloc(LEN);
    CHECK(payload != NULL);
    memset(payload, 0x55, LEN);
    uint8_t hdr[IO_HDR_SIZE] = {0};
    struct iovec iov = {payload, LEN};
    CHECK_EQ(rpc_call(c, FT_IO_WRITE, hdr, IO_HDR_SIZE, &iov, 1, 300, reply_cb, NULL), 0);
}

int main(void)
{
    /* buffers: aligned for O_DIRECT, big enough, and a freed one comes back */
    uint8_t *a = rpc_buf_alloc(5000);
    CHECK(a && ((uintptr_t)a & 4095) == 0);
    memset(a, 1, 5000);
    rpc_buf_free(a);
    uint8_t *b = rpc_buf_alloc(1u << 20);
    memset(b, 2, 1u << 20);
    rpc_buf_free(b);
    uint8_t *b2 = rpc_buf_alloc((1u << 20) - 100);
    CHECK(b2 == b);
    memset(b2, 3, (1u << 20) - 100);
    rpc_buf_free(b2);

    loop = uv_default_loop();
    snprintf(path, sizeof(path), "/tmp/cairn-test-rpc-%d.sock", (int)getpid());
    unlink(path);
    uv_pipe_init(loop, &srv, 0);
    CHECK_EQ(uv_pipe_bind(&srv, path), 0);
    CHECK_EQ(uv_listen((uv_stream_t *)&srv, 4, on_conn), 0);
    static const struct rpc_handlers h = {.on_request = on_request};
    char addr[80];
    snprintf(addr, sizeof(addr), "unix:%s", path);
    CHECK_EQ(rpc_connect(loop, addr, &h, NULL, connected, NULL), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    unlink(path);
    CHECK_EQ(cb_status, -ETIMEDOUT);
    CHECK(eof);
    /* the frame was cut off by the close, not finished from a freed buffer */
    CHECK(received < FRAME_HDR_SIZE + IO_HDR_SIZE + LEN);
    printf("timed-out call: %zu of %u bytes sent, then the connection closed\n", received,
           FRAME_HDR_SIZE + IO_HDR_SIZE + LEN);
    return 0;
}
