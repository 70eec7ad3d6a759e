/* RPC connections: frames over TCP or unix sockets on a libuv loop.
 *
 * Either side may send requests; replies carry the request's id and type with
 * FRAME_REPLY set. A connection belongs to the loop that made it; nothing here
 * is thread-safe.
 *
 * Ownership:
 *  - msg bytes handed to a callback are valid only during that callback.
 *  - payload buffers handed to a callback belong to the callee; release them
 *    with rpc_buf_free(). They are 4096-aligned, so they can go to O_DIRECT I/O.
 *  - payload iovecs given to rpc_call()/rpc_reply() must stay valid until the
 *    sent callback (or the reply callback, for rpc_call) runs.
 *  - a connection is freed after its close callback returns.
 */
#ifndef CAIRN_RPC_H
#define CAIRN_RPC_H

#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

#include "auth.h"
#include "frame.h"

#include <protobuf-c/protobuf-c.h>

struct rpc_conn;
struct rpc_server;

typedef void (*rpc_request_cb)(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                               uint8_t *payload);
/* status: the peer's frame status, or -ECONNRESET / -ETIMEDOUT (msg NULL). */
typedef void (*rpc_reply_cb)(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                             uint8_t *payload, uint32_t payload_len, void *arg);
typedef void (*rpc_close_cb)(struct rpc_conn *c);
/* On failure c is NULL and status is -errno. */
typedef void (*rpc_connect_cb)(struct rpc_conn *c, int status, void *arg);
typedef void (*rpc_sent_cb)(void *arg, int status);

struct rpc_handlers {
    rpc_request_cb on_request;
    rpc_close_cb on_close; /* may be NULL */
    /* A listening server accepted c (may be NULL). c's data is the server's
     * data until this sets its own (a per-connection object, say); it runs
     * before any request of c. Returns 0, or -errno to close c at once. */
    int (*on_accept)(struct rpc_conn *c, void *server_data);
    /* On authenticated links: the roles the peer may have (AUTH_ROLE_BIT
     * of each). A peer with another role is refused in the handshake. */
    uint32_t peer_roles;
};

/* Authenticate every link of this process with cred (kept, not copied):
 * each connection, accepted or made, proves both ends' credentials before
 * any request is handed on (on_accept runs, connect callbacks report
 * success, only then), and every frame after carries a MAC. Without it
 * (tests of this layer alone) links are plain. Call once, before any
 * connection; 0 or -errno. */
int rpc_auth_init(const struct auth_cred *cred);
/* The peer's proved role and name (AUTH_ROLE_NONE and "" on plain links). */
enum auth_role rpc_peer_role(const struct rpc_conn *c);
/* A daemon's start: load its credential (option, else $CAIRN_CREDENTIALS)
 * into cred, check it is of role want, and rpc_auth_init() it. 0, or
 * -errno after logging why. */
int rpc_auth_setup(const char *option, enum auth_role want, struct auth_cred *cred);
const char *rpc_peer_name(const struct rpc_conn *c);

/* addr: "host:port" or "unix:/path". 0 or -errno. */
int rpc_listen(uv_loop_t *loop, const char *addr, const struct rpc_handlers *h, void *data,
               struct rpc_server **out);
/* Stop listening. Connections accepted and still in their handshake are
 * closed too (they never reach on_accept, so nothing runs with the
 * server's data after this); those accepted are the caller's. */
void rpc_server_close(struct rpc_server *s);
/* The same, and cb(arg) runs once the listening handle is closed and the
 * server's memory gone (for an owner that must know when its handles are). */
void rpc_server_close_cb(struct rpc_server *s, void (*cb)(void *arg), void *arg);

/* Start connecting; cb runs later, exactly once. 0 or -errno (cb not called). */
int rpc_connect(uv_loop_t *loop, const char *addr, const struct rpc_handlers *h, void *data,
                rpc_connect_cb cb, void *arg);
/* The same, and *out is the connection being made. Until cb runs its only
 * use is rpc_close(), which abandons the attempt: cb then runs, from the
 * loop, with a failure (-ECANCELED, or -ECONNRESET in the handshake). */
int rpc_connect_cancelable(uv_loop_t *loop, const char *addr, const struct rpc_handlers *h,
                           void *data, rpc_connect_cb cb, void *arg, struct rpc_conn **out);

void *rpc_data(struct rpc_conn *c);
void rpc_set_data(struct rpc_conn *c, void *data);
const char *rpc_peer(const struct rpc_conn *c);
int rpc_is_closing(const struct rpc_conn *c);
/* 1 if c is a TCP connection to another socket of this host. */
int rpc_same_host(const struct rpc_conn *c);
/* Number of calls waiting for a reply. */
unsigned rpc_pending(const struct rpc_conn *c);

/* Send a request; cb runs exactly once, later (reply, close, or timeout).
 * timeout_ms counts from when the request is all written (0: none); a peer
 * that has taken no request for that long is stuck, and its connection is
 * closed (its calls get -ETIMEDOUT). 0 or -errno (cb not called). */
int rpc_call(struct rpc_conn *c, uint16_t type, const void *msg, uint32_t msg_len,
             const struct iovec *pl, int npl, uint32_t timeout_ms, rpc_reply_cb cb, void *arg);
int rpc_call_pb(struct rpc_conn *c, uint16_t type, const ProtobufCMessage *m, uint32_t timeout_ms,
                rpc_reply_cb cb, void *arg);

/* Reply to request h. sent (may be NULL) runs once the bytes are handed to the
 * kernel or the connection dies; 0 or -errno (sent not called). */
int rpc_reply(struct rpc_conn *c, const struct frame_hdr *h, int status, const void *msg,
              uint32_t msg_len, const struct iovec *pl, int npl, rpc_sent_cb sent, void *arg);
int rpc_reply_pb(struct rpc_conn *c, const struct frame_hdr *h, int status,
                 const ProtobufCMessage *m);

/* Close; pending calls fail with -ECONNRESET, then on_close runs. Idempotent. */
void rpc_close(struct rpc_conn *c);

/* Flow control. Reading from c stops while any of the caller's reason bits
 * (bits 0-29) is set with rpc_pause(), and resumes on the next loop turn
 * once rpc_resume() has cleared the last; bytes already read wait, and no
 * request is dispatched in between (a frame begun is finished). An
 * accepted connection also stops reading by itself while more than its tx
 * limit (8 MiB unless set) of replies waits for the peer to read them, and
 * resumes below half of it: a peer that does not read what it asked for
 * is not read from. */
void rpc_pause(struct rpc_conn *c, unsigned reasons);
void rpc_resume(struct rpc_conn *c, unsigned reasons);
int rpc_paused(const struct rpc_conn *c);
/* The bytes of frames queued on c and not yet written; 0 = no limit. */
void rpc_set_tx_limit(struct rpc_conn *c, size_t bytes);
size_t rpc_tx_queued(const struct rpc_conn *c);
/* An accepted connection also stops reading while n of its requests (1024
 * unless set; 0: no limit) have no reply yet, and resumes at half: every
 * request gets exactly one rpc_reply(), so this bounds what a peer can make
 * us hold. */
void rpc_set_request_limit(struct rpc_conn *c, unsigned n);
unsigned rpc_requests_open(const struct rpc_conn *c);

uint8_t *rpc_buf_alloc(size_t len);
/* The memory rpc_buf_alloc(len) takes: a whole size class (a power of two
 * from 512 bytes) and, from 4 KiB on, the page that aligning it to 4096
 * costs malloc (the piece before an aligned chunk is left free, and only
 * smaller allocations fit there: a 4 KiB buffer takes 8 KiB of the heap).
 * What flow control counts for len bytes. */
size_t rpc_buf_size(size_t len);
void rpc_buf_free(void *buf);

#endif
