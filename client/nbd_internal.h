/* The NBD server's insides, one section per file; read top to bottom it is
 * the index of the server (nbdkit's server/internal.h does the same).
 *
 *   nbd_parse.c      pure: decoding and validating what a client sends
 *   nbd_conn.c       accepting, reading, write batching, closing
 *   nbd_handshake.c  fixed-newstyle option haggling
 *   nbd_transmit.c   requests to the backend, replies to the client
 *   nbd_tls.c        STARTTLS: gnutls between the socket and the parser
 *   nbd_tls_creds.c  TLS credentials (X.509, PSK) and allow lists
 *
 * Everything runs on the loop the server listens on; nothing here locks.
 * The public side (the backend interface) is nbd_server.h.
 */
#ifndef CAIRN_NBD_INTERNAL_H
#define CAIRN_NBD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "nbd_proto.h"
#include "nbd_server.h"
#include "net.h"
#include "pool.h"
#include "wqueue.h"

/* ---- nbd_parse.c: pure decoding and validation ----
 *
 * No I/O, no allocation, no connection: what the client sent and what was
 * negotiated go in, a verdict comes out. Unit-tested on its own
 * (tests/unit/test_nbd_parse.c). */

#define NBD_REQUEST_SIZE 28
#define NBD_NAME_MAX 4096           /* export names and meta context queries */
#define NBD_OPT_MAX (64u << 10)     /* the longest option accepted */
#define NBD_DRAIN_MAX (64ull << 20) /* a rejected WRITE up to this is skipped, not fatal */

/* What the handshake settled for one connection: what validation needs. */
struct nbd_conn_state {
    uint64_t size;   /* of the chosen export */
    bool ro;         /* the export is read-only */
    bool structured; /* STRUCTURED_REPLY negotiated */
    bool meta_alloc; /* base:allocation selected by SET_META_CONTEXT */
};

/* A request header as sent (fields not yet checked). */
struct nbd_request {
    uint16_t flags; /* NBD_CMD_FLAG_* */
    uint16_t type;  /* NBD_CMD_* */
    uint64_t cookie;
    uint64_t off;
    uint32_t len;
};

/* Decode the NBD_REQUEST_SIZE bytes at p into rq. 0, or -EPROTO for a bad
 * magic: the stream has lost its framing and the connection must close. */
int nbd_request_decode(const uint8_t *p, struct nbd_request *rq);

/* May rq run on a connection in state st? (nbdkit's validate_request.)
 * 0, or the -errno its reply carries:
 *  - an unknown command, a flag unknown or not allowed for the command (DF
 *    only on READ with structured replies, NO_HOLE and FAST_ZERO only on
 *    WRITE_ZEROES, REQ_ONE only on BLOCK_STATUS; FUA on every command):
 *    -EINVAL;
 *  - FLUSH with an offset or a length: -EINVAL;
 *  - BLOCK_STATUS before base:allocation was selected: -EINVAL;
 *  - READ or WRITE over NBD_MAX_PAYLOAD: -EINVAL;
 *  - beyond the end of the export: -ENOSPC for WRITE and WRITE_ZEROES,
 *    -EINVAL otherwise;
 *  - WRITE, TRIM or WRITE_ZEROES on a read-only export: -EPERM.
 * DISC is always valid (whatever its fields, the server closes after the
 * requests in flight). A zero length is valid. */
int nbd_request_validate(const struct nbd_conn_state *st, const struct nbd_request *rq);

/* What becomes of the payload that follows a request header. */
enum nbd_payload {
    NBD_PAYLOAD_NONE,       /* none follows */
    NBD_PAYLOAD_RECEIVE,    /* read it into the request's buffer (a rejected
                               request is answered once it is in) */
    NBD_PAYLOAD_DISCARD,    /* too large to buffer: skip it, then answer the error */
    NBD_PAYLOAD_DISCONNECT, /* too large even to skip: close the connection */
};

/* The payload rule for rq, whose validation gave err (0 or -errno). */
enum nbd_payload nbd_request_payload(const struct nbd_request *rq, int err);

/* The client's flags after the greeting. 0 (and *no_zeroes set), or -EINVAL
 * for an unknown bit or no FIXED_NEWSTYLE: the connection must close. */
int nbd_client_flags_parse(uint32_t flags, bool *no_zeroes);

/* The transmission flags of an export in state st (the same for INFO, GO
 * and EXPORT_NAME, so computed in one place). */
uint16_t nbd_export_flags(const struct nbd_conn_state *st);

/* NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count of
 * information requests, the requests (u16 each). */
struct nbd_opt_go {
    const uint8_t *name; /* not NUL-terminated; no NUL inside */
    uint32_t name_len;   /* <= NBD_NAME_MAX */
    uint16_t ninfo;
    const uint8_t *info; /* ninfo big-endian u16 NBD_INFO_* */
};

/* Parse INFO/GO data d[0..len). 0, or -EINVAL with *why naming the fault (the
 * message of an NBD_REP_ERR_INVALID reply). Pointers in go point into d. */
int nbd_opt_go_parse(const uint8_t *d, uint32_t len, struct nbd_opt_go *go, const char **why);
/* The i-th information request (i < go->ninfo). */
uint16_t nbd_opt_go_info(const struct nbd_opt_go *go, uint16_t i);

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data: u32 name
 * length, export name, u32 count of queries, queries (u32 length, bytes). */
struct nbd_opt_meta {
    const uint8_t *name; /* not NUL-terminated */
    uint32_t name_len;   /* <= NBD_NAME_MAX */
    uint32_t nqueries;
    const uint8_t *queries; /* checked: each fits, none over NBD_NAME_MAX, none left over */
};

/* Parse meta context data d[0..len). 0, or -EINVAL with *why set, as above. */
int nbd_opt_meta_parse(const uint8_t *d, uint32_t len, struct nbd_opt_meta *m, const char **why);
/* Does the reply name base:allocation (our one context)? For LIST: with no
 * query, or when a query is it or the "base:" wildcard. For SET: when a query
 * is exactly it (zero queries select nothing). It is named at most once. */
bool nbd_opt_meta_selects_alloc(const struct nbd_opt_meta *m, bool list);

/* ---- nbd_conn.c: accepting, reading, write batching, closing ---- */

/* Write records come in two sizes: the replies of the I/O path (a simple
 * reply is 16 bytes, a structured read header 28) fit a small one; option
 * replies (20 + up to 512 inline), error chunks and block status replies
 * (24 + 8 * NBD_MAX_EXTENTS) a large one. */
#define NBD_WREQ_HDR_SMALL 32
#define NBD_WREQ_HDR_LARGE (24 + 8 * NBD_MAX_EXTENTS)

struct nbd_server {
    union net_stream u;
    uv_loop_t *loop;
    struct nbd_backend be;
    struct nbd_budget *budget; /* shared with the process's other servers */
    struct nbd_tls *tls;       /* credentials and policy, or NULL (TLS off) */
    int is_pipe;
    char addr[128];
    /* per-I/O objects of every connection of this server (which outlives
     * them all: servers are never closed) */
    struct pool req_pool;        /* struct nbd_req */
    struct pool wreq_small_pool; /* struct nbd_wreq + NBD_WREQ_HDR_SMALL */
    struct pool wreq_large_pool; /* struct nbd_wreq + NBD_WREQ_HDR_LARGE */
    unsigned nconns;             /* accepted and not yet freed */
};

enum nbd_phase {
    NBD_PHASE_FLAGS, /* greeting sent, waiting for the client's flags */
    NBD_PHASE_OPTS,  /* option haggling */
    NBD_PHASE_TRANS, /* transmission */
};

struct nbd_conn {
    union net_stream u; /* u.h.data is this connection */
    struct nbd_server *srv;
    enum nbd_phase phase;
    uint8_t *in;   /* bytes read: in[in_off, in_off + in_len) not yet parsed */
    size_t in_off; /* parsed bytes before them (moved out once they are a
                      quarter of the rest, not at every request) */
    size_t in_len, in_cap;
    struct nbd_req *rx; /* WRITE whose payload is arriving */
    uint32_t rx_have;
    uint64_t discard;          /* bytes of a rejected payload still to skip */
    struct nbd_req *drain_req; /* its request: answered once the payload is gone,
                                  since a client may not expect a reply before it
                                  has finished sending */
    struct nbd_conn_state st;
    bool no_zeroes;
    void *exp;               /* the backend's export handle (a reference), or NULL */
    struct nbd_stats *stats; /* where exp's requests are counted, or NULL */
    int inflight;            /* requests taken and not yet answered */
    int nwrites;             /* write records queued or being written */
    struct nbd_req *reqs;    /* those requests (for cancelling when the client goes) */
    /* flow control (nbd_flow.c) */
    unsigned started;       /* requests started (payload or buffer taken), not finished */
    size_t held;            /* their data */
    size_t tx;              /* reply bytes queued, not yet in the socket */
    size_t counted_in;      /* in_off + in_len as counted in the read-ahead */
    bool blocked;           /* a request waits to be started */
    bool on_total;          /* ... for the totals (in the budget's waiting list) */
    bool read_stopped;      /* not read: the read-ahead is full */
    bool kick_queued;       /* on the budget's list to run again */
    struct nbd_conn *wnext; /* in the budget's waiting list */
    struct nbd_conn *knext; /* in the budget's kick list */
    bool stop_reading;      /* no more requests are read (DISC, an error, EOF) */
    bool closing;           /* the peer is gone: close without letting replies drain */
    bool handle_closed;     /* uv_close() called: nothing more is sent */
    bool handle_gone;       /* its close callback ran: freed with its last write record */
    char peer[64];
    struct wqueue wq;         /* replies waiting for this loop turn's writev */
    struct nbd_tls_conn *tls; /* from STARTTLS on, or NULL */
    bool plain_refused;       /* "TLS required" logged for it */
    /* the backend's claim (nbd_backend.claim) of a GO or EXPORT_NAME: while
     * PENDING no input is parsed and the connection is not freed; DONE:
     * the option is parsed again and takes the answer */
    enum { NBD_CLAIM_NONE, NBD_CLAIM_PENDING, NBD_CLAIM_DONE } claim_state;
    bool claimed;        /* granted (from the answer on): released when it is freed */
    bool free_pending;   /* closed while PENDING: freed once the answer comes */
    int claim_err;       /* DONE: 0 or -errno */
    uint64_t claim;      /* granted: what its requests carry */
    char claim_msg[320]; /* DONE with an error: why */
};

/* One queued write: a header copied in, and maybe data sent from where it is. */
struct nbd_wreq {
    struct wq_item it; /* first: the queue hands it back */
    struct nbd_conn *c;
    void *free_buf; /* rpc_buf_free()d once written, or NULL */
    size_t bytes;   /* counted in c->tx until written */
    bool large;     /* from wreq_large_pool */
    uint8_t hdr[];  /* NBD_WREQ_HDR_SMALL or NBD_WREQ_HDR_LARGE bytes */
};

/* Queue hdr[0..hlen) (copied; hlen <= NBD_WREQ_HDR_LARGE) then data[0..dlen)
 * for this loop turn's writev. If own, data is rpc_buf_free()d once written
 * (or at once, when the connection is gone); otherwise it must stay valid
 * until then. Nothing is sent on a closed connection. */
void nbd_conn_send(struct nbd_conn *c, const void *hdr, size_t hlen, void *data, size_t dlen,
                   bool own);
/* The backend answered c's claim: parse its option again (or free c, if it
 * closed meanwhile). */
void nbd_conn_claim_done(struct nbd_conn *c);
/* Queue buf[0..len) (an rpc_buf of cap bytes, freed once written) as it
 * is: TLS records (nbd_tls.c); nothing else goes around the encryption. */
void nbd_conn_send_raw(struct nbd_conn *c, uint8_t *buf, size_t len, size_t cap);
/* The payload of WRITE r (r->io.buf of r->io.len bytes) follows: read it
 * into the buffer, then dispatch r. */
void nbd_conn_expect_payload(struct nbd_conn *c, struct nbd_req *r);
/* len payload bytes of rejected request r follow: skip them, then dispatch r
 * (which answers its error). */
void nbd_conn_discard_payload(struct nbd_conn *c, struct nbd_req *r, uint64_t len);
/* Read no more; close once every request in flight has been answered and
 * the replies queued have gone (DISC, ABORT, a bad handshake). */
void nbd_conn_stop(struct nbd_conn *c);
/* The connection is unusable (a TLS failure while sending): close it
 * without letting replies drain; requests in flight are cancelled. */
void nbd_conn_abort(struct nbd_conn *c);
/* Close now if nothing holds the connection open any more; call whenever
 * inflight or nwrites drops. */
void nbd_conn_maybe_close(struct nbd_conn *c);

/* Run c's input again on the next loop turn (a request it could not start
 * may be startable now), and read again if it stopped. */
void nbd_conn_kick(struct nbd_conn *c);

/* ---- nbd_flow.c: what a connection, and all of them, may hold ----
 *
 * See struct nbd_limits. The budget is one per process (its servers share
 * it); every counter below is kept by the functions here only. */

struct nbd_budget {
    uv_loop_t *loop;
    struct nbd_limits l;
    size_t held;                                  /* data and queued replies of every connection */
    size_t readahead;                             /* input read and not started, every connection */
    struct nbd_conn *waiting_head, *waiting_tail; /* blocked on the totals, oldest first */
    struct nbd_conn *kick_head;                   /* to run again on the next loop turn */
    uv_idle_t kick;
};

/* The data a request holds: a READ's or WRITE's length, else nothing. */
size_t nbd_flow_cost(uint16_t type, uint32_t len);
/* May c start a request of that cost now? If not, c is blocked (and, when
 * the totals are why, queued behind the others blocked on them) until
 * something is released. */
bool nbd_flow_may_start(struct nbd_conn *c, size_t cost);
/* Count a started request r / release it when its backend completion came. */
void nbd_flow_start(struct nbd_conn *c, struct nbd_req *r, size_t cost);
void nbd_flow_finish(struct nbd_conn *c, struct nbd_req *r);
/* Reply bytes queued (> 0) or written (< 0). */
void nbd_flow_tx(struct nbd_conn *c, long delta);
/* c->in_len changed: count it; returns whether c may read more. */
bool nbd_flow_readahead(struct nbd_conn *c);
/* c is closing: take it off the budget's lists, give back what it counts. */
void nbd_flow_forget(struct nbd_conn *c);

/* ---- nbd_handshake.c: fixed-newstyle option haggling ---- */

/* Queue the server's greeting (on accept). */
void nbd_handshake_greet(struct nbd_conn *c);
/* Consume client bytes p[0..n) in the FLAGS or OPTS phase. Returns the bytes
 * consumed (one client flags word or one whole option), 0 if more are needed,
 * -1 if the connection must close. May move c to NBD_PHASE_TRANS. */
int nbd_handshake_input(struct nbd_conn *c, const uint8_t *p, size_t n);

/* ---- nbd_tls_creds.c: credentials and policy (struct nbd_tls) ---- */

struct gnutls_session_int; /* gnutls_session_t points to it */

#define NBD_TLS_NAME_MAX 256 /* an identity (PSK identity, CN, DNS name), NUL included */

/* The mode of s's connections (OFF when it has no TLS). */
enum nbd_tls_mode nbd_tls_mode(const struct nbd_server *s);
/* Give a new server session t's priorities and credentials (and, with
 * --tls-verify-peer, the certificate check the handshake fails on). */
void nbd_tls_setup_session(const struct nbd_tls *t, struct gnutls_session_int *s);
/* Does export name have an allow list? May identity id use it (true when
 * it has no list)? */
bool nbd_tls_restricted(const struct nbd_tls *t, const char *name);
bool nbd_tls_permits(const struct nbd_tls *t, const char *name, const char *id);

/* ---- nbd_tls.c: STARTTLS with gnutls ----
 *
 * A connection's TLS state (c->tls) lives from its STARTTLS to its free.
 * While it is set, every byte read is raw (nbd_tls_alloc, nbd_tls_input)
 * and every reply is encrypted (nbd_conn_send calls nbd_tls_send). */

struct nbd_tls_conn;

/* STARTTLS was acknowledged (the ACK is queued in plaintext): from now on
 * the client speaks TLS. Resets what was negotiated before. 0 or -ENOMEM. */
int nbd_tls_start(struct nbd_conn *c);
/* TLS is up (handshake done) / TLS was started and its handshake is not done. */
bool nbd_tls_active(const struct nbd_conn *c);
bool nbd_tls_handshaking(const struct nbd_conn *c);
/* Where the next raw read goes. */
void nbd_tls_alloc(struct nbd_conn *c, uv_buf_t *buf);
/* Bytes the client sent before the handshake that were read as plaintext:
 * they are TLS's. 0 or -ENOMEM. */
int nbd_tls_adopt(struct nbd_conn *c, const uint8_t *p, size_t n);
/* n raw bytes arrived where nbd_tls_alloc said (n may be 0: run on what is
 * held): the handshake goes on, records are decrypted into c->in. 0; -EPIPE
 * when the peer is gone; another -errno (logged) when the connection must
 * close. */
int nbd_tls_input(struct nbd_conn *c, size_t n);
/* Encrypt hdr[0..hlen) (hlen <= NBD_WREQ_HDR_LARGE) then data[0..dlen) and
 * queue the records; a failure aborts the connection. */
void nbd_tls_send(struct nbd_conn *c, const void *hdr, size_t hlen, const uint8_t *data,
                  size_t dlen);
/* Queue TLS's close_notify (a clean close of an active session). */
void nbd_tls_bye(struct nbd_conn *c);
void nbd_tls_conn_free(struct nbd_conn *c);
/* May c use export name? 0; NBD_REP_ERR_TLS_REQD when the export has an
 * allow list and c has no TLS; NBD_REP_ERR_POLICY when c's identity is not
 * on it. */
uint32_t nbd_tls_check_export(const struct nbd_conn *c, const char *name);
/* For messages: the client's identity. */
const char *nbd_tls_identity(const struct nbd_conn *c);

/* ---- nbd_transmit.c: requests to the backend, replies to the client ---- */

struct nbd_req {
    struct nbd_io io; /* first: nbd_io_done() casts back */
    struct nbd_conn *c;
    struct nbd_req *cprev, *cnext; /* in c->reqs while dispatched */
    size_t held;                   /* its data, counted by nbd_flow_start */
    bool started;                  /* counted by nbd_flow_start */
    uint64_t cookie;
    uint64_t arrived;     /* uv_hrtime() when its header was parsed */
    uint16_t type, flags; /* as sent (NBD_CMD_*, NBD_CMD_FLAG_*) */
    int err;              /* validation's verdict, answered instead of running it */
};

/* Consume bytes p[0..n) in the TRANS phase: one request header. Returns the
 * bytes consumed, 0 if more are needed, -1 if the connection must close. */
int nbd_transmit_input(struct nbd_conn *c, const uint8_t *p, size_t n);
/* Run request r, whose payload (if any) is in: hand it to the backend, or
 * answer it (its error, a zero length, CACHE). Counts it in flight until
 * nbd_io_done(). */
void nbd_transmit_dispatch(struct nbd_conn *c, struct nbd_req *r);
/* Give back a request that will never be dispatched (its connection went),
 * with its buffer. */
void nbd_req_release(struct nbd_server *srv, struct nbd_req *r);

#endif
