/* The link handshake's server side (rpc_auth.c: the hello and the proof a
 * peer sends before it is authenticated) and, with the first byte odd, the
 * MAC check of an authenticated link (every frame then fails its check: the
 * fuzzer cannot forge a MAC, but the tag's framing and the close are
 * exercised). The server's credential is made in memory, signed by a CA of
 * its own. Input after the first byte is fed to rpc_consume in one piece
 * per 97 bytes, so frames split across reads are parsed too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "rpc_internal.h"

static uv_loop_t loop;
static struct auth_cred cred;

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    (void)msg;
    rpc_buf_free(payload);
    rpc_reply(c, h, 0, NULL, 0, NULL, 0, NULL, NULL);
}

static void make_credential(void)
{
    uint8_t ca_sk[AUTH_SK_LEN], cert[AUTH_CERT_MAX];
    crypto_sign_keypair(cred.ca_pk, ca_sk);
    crypto_sign_keypair(cred.pk, cred.sk);
    cred.role = AUTH_ROLE_MDM;
    strcpy(cred.name, "fuzz-mdm");
    size_t n = auth_cert_bytes(cred.role, cred.name, cred.pk, cert);
    crypto_sign_detached(cred.sig, NULL, cert, n, ca_sk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        uv_loop_init(&loop);
        log_init("fuzz", -1);
        if (sodium_init() < 0)
            abort();
        make_credential();
        rpc_auth_init(&cred);
        init = 1;
    }
    if (size < 1)
        return 0;
    int authenticated = data[0] & 1;
    data++, size--;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    struct rpc_conn *c = calloc(1, sizeof(*c));
    c->rbuf = malloc(RPC_READ_BUF);
    c->loop = &loop;
    c->handlers.on_request = on_request;
    c->handlers.peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_ADMIN) | AUTH_ROLE_BIT(AUTH_ROLE_SDS);
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
    if (authenticated) {
        c->auth = RPC_AUTH_ON; /* keys all zero: what a peer cannot know */
        c->mac = 1;
    } else {
        rpc_auth_server_start(c);
    }
    for (size_t off = 0; off < size && !c->closing;) {
        size_t k = size - off < 97 ? size - off : 97;
        if (c->pause) {
            c->pause = 0;
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
    return 0;
}
