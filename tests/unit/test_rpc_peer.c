/* rpc_peer: a call made from the callback of a call that failed to connect
 * waits for a connection of its own, rather than failing in the same
 * breath (a caller that retries from its callback, as the rebuild's extent
 * list did, spun there for ever: an SDS that stopped answering its MDM). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "frame.h"
#include "rpc_peer.h"

#define TRIES 5

static uv_loop_t *loop;
static uv_prepare_t turn;
static struct rpc_peer *peer;
static unsigned turns, calls, turn_of[TRIES];

static void on_turn(uv_prepare_t *h)
{
    (void)h;
    turns++;
}

static void failed_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                      uint8_t *pl, uint32_t pl_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)pl_len;
    (void)arg;
    rpc_buf_free(pl);
    CHECK(status < 0);
    turn_of[calls++] = turns;
    if (calls < TRIES) { /* again at once, as a retrying caller does */
        CHECK_EQ(rpc_peer_call(peer, FT_PING, NULL, 0, NULL, 0, 1000, failed_cb, NULL), 0);
        return;
    }
    uv_prepare_stop(&turn);
    uv_close((uv_handle_t *)&turn, NULL);
}

int main(void)
{
    loop = uv_default_loop();
    /* a port bound and not listened on: connecting is refused */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    char addr[80];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
    peer = rpc_peer_new(loop, 7);
    rpc_peer_set_addr(peer, addr);
    uv_prepare_init(loop, &turn);
    uv_prepare_start(&turn, on_turn);
    CHECK_EQ(rpc_peer_call(peer, FT_PING, NULL, 0, NULL, 0, 1000, failed_cb, NULL), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ(calls, TRIES);
    for (int i = 1; i < TRIES; i++)
        CHECK(turn_of[i] > turn_of[i - 1]); /* each failed on a later turn: its own try */
    CHECK_EQ(rpc_peer_waiting(peer), 0);
    close(fd);
    printf("%d calls to an address that refuses: each failed on a connect of its own\n", TRIES);
    return 0;
}
