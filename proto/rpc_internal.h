/* The RPC layer's insides, shared by its files (one section each):
 *
 *   rpc.c       connections: accepting, connecting, reading frames, closing
 *   rpc_send.c  frames out: calls, replies, their timeouts
 *   rpc_flow.c  flow control: pausing and resuming reading, the limits
 *   rpc_auth.c  the link handshake and the MACs of frames
 *
 * Nothing outside proto/ includes this: rpc.h is the interface. */
#ifndef CAIRN_RPC_INTERNAL_H
#define CAIRN_RPC_INTERNAL_H

#include "auth.h"
#include "net.h"
#include "pool.h"
#include "rpc.h"
#include "wqueue.h"

#define RPC_READ_BUF (256u << 10)
#define RPC_BUCKETS 1024u
/* Messages up to these sizes (every data-path header) need no allocation:
 * a received one is read into the connection, a sent one into its frame. */
#define RPC_INLINE_RX_MSG 256u
#define RPC_INLINE_TX_MSG 64u
/* Replies an accepted connection may have waiting for its peer to read
 * before we stop reading its requests (rpc_set_tx_limit changes it). */
#define RPC_TX_LIMIT_DEFAULT (8u << 20)
/* Requests an accepted connection may have unanswered before we stop
 * reading more of them (rpc_set_request_limit changes it). */
#define RPC_REQUEST_LIMIT_DEFAULT 1024
#define RPC_PAUSE_TX (1u << 31)
#define RPC_PAUSE_REQUESTS (1u << 30)

struct rpc_wreq;

struct rpc_pending {
    struct rpc_pending *next;
    uint64_t req_id;
    uint64_t deadline;   /* ms; armed when the request is all written; 0 = none */
    uint64_t written_ms; /* when it was */
    uint32_t timeout_ms;
    rpc_reply_cb cb;
    void *arg;
    struct rpc_wreq *unsent; /* its frame, until it is all written */
};

enum { ST_HDR, ST_MSG, ST_PAYLOAD, ST_TAG };

/* Where a connection is in authenticating its peer. */
enum { RPC_AUTH_OFF = 0, RPC_AUTH_HANDSHAKE = 1, RPC_AUTH_ON = 2 };
/* frame MACs (AuthHello.macs, AuthProof.mac; rpc_auth.c) */
enum { RPC_MAC_POLY1305 = 1, RPC_MAC_GMAC = 2 };

struct rpc_handshake;

struct rpc_conn {
    union net_stream u;
    uv_timer_t timer;
    uv_loop_t *loop;
    struct rpc_handlers handlers;
    void *data;
    char peer[80];
    int closing;
    int open_handles; /* the stream and the timer */
    int timer_on;
    int fail_status;     /* what the calls still pending get when it closes */
    uint64_t last_rx_ms; /* when the peer last sent us anything */

    /* flow control (see rpc_pause): reading stops while any reason is set;
     * bytes already read wait in rest until reading resumes */
    unsigned pause;
    int reading;
    const uint8_t *rest;
    size_t nrest;
    struct rpc_conn *resume_next;
    int resume_queued;
    size_t tx_bytes, tx_limit;                /* frames queued and not yet written */
    unsigned rx_open, rx_limit;               /* requests received and not yet answered */
    unsigned nwreqs;                          /* such frames: each keeps the connection's memory */
    struct rpc_wreq *calls_head, *calls_tail; /* calls' frames not yet written, oldest first */

    /* read state */
    uint8_t *rbuf;
    int stage;
    uint8_t hbuf[FRAME_HDR_SIZE];
    uint32_t have;
    struct frame_hdr hdr;
    uint8_t *msg; /* msg_inline, or malloc'd for a long message */
    uint8_t *payload;
    uint8_t msg_inline[RPC_INLINE_RX_MSG];

    uint64_t next_id;
    unsigned npending;
    struct rpc_pending *pend[RPC_BUCKETS];

    struct wqueue wq; /* frames waiting for this loop turn's writev */

    /* authentication (rpc_auth.c): off when the process has no credential */
    int auth;                 /* RPC_AUTH_* */
    int mac;                  /* RPC_AUTH_ON: frames carry MACs (not on unix sockets) */
    unsigned mac_alg;         /* the one the handshake chose: RPC_MAC_* */
    struct rpc_handshake *hs; /* while RPC_AUTH_HANDSHAKE */
    enum auth_role peer_role; /* once RPC_AUTH_ON */
    char peer_name[AUTH_NAME_MAX + 1];
    uint8_t tx_key[32], rx_key[32]; /* each direction's MAC key */
    void *tx_gmac, *rx_gmac;        /* RPC_MAC_GMAC: gnutls_hmac_hd_t keyed with them */
    uint64_t tx_seq, rx_seq;        /* frames sent and received since */
    uint8_t rx_tag[FRAME_TAG_SIZE];

    /* an accepted connection still proving itself: on its server's list,
     * so that closing the server closes it before on_accept can run */
    struct rpc_server *srv;
    struct rpc_conn *srv_prev, *srv_next;
};

struct rpc_server {
    union net_stream u;
    int is_pipe;
    struct rpc_handlers handlers;
    void *data;
    char addr[108];
    struct rpc_conn *authenticating; /* accepted, handshake not done */
    void (*closed_cb)(void *arg);    /* rpc_server_close_cb's */
    void *closed_arg;
};

struct rpc_wreq {
    struct wq_item it; /* first: the queue hands it back */
    struct rpc_conn *c;
    size_t bytes; /* header, message and payload */
    rpc_sent_cb cb;
    void *arg;
    struct rpc_pending *pend;       /* the call waiting for this frame's reply, if any */
    uint64_t stall_at;              /* a call's: the peer is stuck if it is not written by then */
    uint32_t timeout_ms;            /* that call's */
    struct rpc_wreq *cprev, *cnext; /* in calls_head/tail while a call's and unwritten */
    int pooled;                     /* from wreq_pool (head has room for a short message) */
    uint8_t tag[FRAME_TAG_SIZE];    /* its MAC, on an authenticated link */
    uint8_t head[];                 /* frame header + msg */
};

/* ---- rpc.c ---- */

/* A connection's memory goes once its handles are closed and no frame of it
 * is still being written. */
void rpc_conn_release(struct rpc_conn *c);
void rpc_pending_free(struct rpc_pending *p);
/* c proved itself (or closes): it is no longer its server's to close. */
void rpc_server_forget(struct rpc_conn *c);
/* Consume bytes read (stops between frames while paused: the rest is kept
 * in c->rest). 0, or -1 if the connection closed. */
int rpc_consume(struct rpc_conn *c, const uint8_t *p, size_t n);
/* The libuv read callbacks of every connection. */
void rpc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void rpc_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* The frame is all read (and its MAC, if any): hand it to its handler. */
void rpc_dispatch(struct rpc_conn *c);

/* ---- rpc_auth.c ---- */

/* The credential of this process, or NULL: links are not authenticated. */
const struct auth_cred *rpc_auth_cred(void);
/* A connection is open: begin its handshake. The server waits for the
 * client's hello; the client sends it, and cb runs once the peer is proved
 * (c) or refused (NULL, -EACCES and the like). */
void rpc_auth_server_start(struct rpc_conn *c);
void rpc_auth_client_start(struct rpc_conn *c, rpc_connect_cb cb, void *arg);
/* A request frame during the handshake (the server's side). */
void rpc_auth_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                      uint8_t *payload);
/* The MAC of a frame (header+message, payload pieces) on c's next frame
 * out; and the check of one in. */
void rpc_auth_tag_tx(struct rpc_conn *c, const uint8_t *head, size_t head_len,
                     const struct iovec *pl, int npl, uint8_t tag[FRAME_TAG_SIZE]);
int rpc_auth_check_rx(struct rpc_conn *c);
/* c closes: forget its handshake. */
void rpc_auth_free(struct rpc_conn *c);
/* the MAC keys and state, when the connection goes */
void rpc_auth_forget(struct rpc_conn *c);

/* ---- rpc_send.c ---- */

/* Calls and frames in flight come from these (one loop per thread). */
extern __thread struct pool rpc_pending_pool, rpc_wreq_pool;
/* The connection's timer: call timeouts, stuck peers. */
void rpc_timer_cb(uv_timer_t *t);

/* ---- rpc_flow.c ---- */

/* c is freed: take it off the list of connections to resume. */
void rpc_resume_forget(struct rpc_conn *c);

#endif
