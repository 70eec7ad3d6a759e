/* An NBD server (fixed newstyle) on a libuv loop, serving exports that a
 * backend provides. Follows docs/nbd.md: pipelined requests replied out of
 * order, structured replies, base:allocation, requests up to 32 MiB.
 *
 * The backend completes every nbd_io it is given exactly once, with
 * nbd_io_done(), never from inside submit().
 */
#ifndef CAIRN_NBD_SERVER_H
#define CAIRN_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"

#define NBD_MAX_PAYLOAD (32u << 20)
#define NBD_MAX_EXTENTS 64

enum nbd_io_cmd { NBDIO_READ, NBDIO_WRITE, NBDIO_FLUSH, NBDIO_TRIM, NBDIO_ZERO, NBDIO_STATUS };

/* Bits of nbd_io.flags. */
enum nbd_io_flag {
    NBDIO_FUA = 1,       /* durable on every copy before the completion */
    NBDIO_NO_HOLE = 2,   /* ZERO: keep the range allocated */
    NBDIO_FAST_ZERO = 4, /* ZERO: fail with -ENOTSUP unless zeroing is cheap */
};

struct nbd_extent {
    uint32_t len;
    uint32_t flags; /* NBD_STATE_HOLE | NBD_STATE_ZERO */
};

struct nbd_io {
    enum nbd_io_cmd cmd;
    int flags; /* enum nbd_io_flag bits */
    uint64_t off;
    uint32_t len;
    uint8_t *buf; /* READ: filled by the backend (len bytes, 4096-aligned, owned by the
                     server); WRITE: the payload */
    struct nbd_extent ext[NBD_MAX_EXTENTS]; /* STATUS: filled by the backend */
    int next;                               /* STATUS: extents filled */
    void *backend;                          /* backend's own use */
    const void *owner;                      /* its connection (see cancel) */
    uint64_t claim;                         /* its connection's claim (nbd_backend.claim) */
    int cancelled;                          /* its client is gone: no one waits for it */
};

/* The other commands, as counted in nbd_stats.other. */
enum nbd_stat_op {
    NBD_STAT_FLUSH,
    NBD_STAT_TRIM,
    NBD_STAT_ZERO,
    NBD_STAT_CACHE,
    NBD_STAT_BLOCK_STATUS,
    NBD_STAT_OPS
};

/* What the clients of one export did, counted by the server when it queues
 * each reply (a request whose client has gone is not counted: nobody saw
 * its answer). The backend owns the storage (nbd_backend.stats); the server
 * only adds to it, on the loop, so the backend may read it at any time.
 * reads and writes count every READ and WRITE answered, failed ones too, so
 * they always equal the count of their latency histogram; the byte counts
 * are of those that succeeded. Latency runs from when the request's header
 * was parsed to when its reply was queued: what the client sees, less the
 * network. */
struct nbd_stats {
    uint64_t reads, writes;
    uint64_t read_bytes, write_bytes;
    uint64_t errors; /* requests of any command answered with an error */
    uint64_t other[NBD_STAT_OPS];
    struct metrics_hist read_lat, write_lat;
};

/* The backend's functions all receive ctx as their first argument. */
struct nbd_backend {
    void *ctx;
    /* Find an export; returns a handle (with a reference taken) or NULL. */
    void *(*open)(void *ctx, const char *name, uint64_t *size, int *read_only);
    void (*close)(void *ctx, void *exp);
    /* Call emit for every export name. */
    void (*list)(void *ctx, void (*emit)(void *arg, const char *name), void *arg);
    /* Run io on exp (a handle from open). io and its buffer stay valid, and
     * the export open, until the backend calls nbd_io_done(io) - later,
     * from the loop. CACHE and zero-length requests other than FLUSH are
     * answered by the server and never come here. */
    void (*submit)(void *ctx, void *exp, struct nbd_io *io);
    /* The client of owner is gone: its requests in flight have cancelled set,
     * and those the backend has not started may end at once with
     * -ECANCELED (may be NULL). Every io still completes exactly once. */
    void (*cancel)(void *ctx, const void *owner);
    /* Where the requests of exp (a handle from open) are counted, asked once
     * per open; it must stay valid until exp is closed. NULL (or no
     * function): not counted. */
    struct nbd_stats *(*stats)(void *ctx, void *exp);
    /* May this connection write to exp (a handle from open that is not
     * read-only)? Asked when GO or EXPORT_NAME would start transmission;
     * the connection waits. The backend calls done(arg, err, claim, msg)
     * exactly once, later, from the loop: err 0 grants it, and every
     * request of the connection carries claim (nbd_io.claim); -errno
     * refuses it with msg (copied; NBD_REP_ERR_POLICY to the client). NULL:
     * every connection may, with claim 0. */
    void (*claim)(void *ctx, void *exp, void *arg,
                  void (*done)(void *arg, int err, uint64_t claim, const char *msg));
    /* A granted claim is over: its connection closed (called before close). */
    void (*release)(void *ctx, void *exp);
};

/* What the NBD connections of a process may hold: one budget shared by its
 * servers. Past a connection's limits its requests are not started (it may
 * read ahead up to conn_readahead bytes of them, then is not read at all,
 * and TCP slows the client); past the totals, no connection starts one. A
 * request's data counts from when it is started (a write's payload, a
 * read's buffer) until its reply is handed to the client's socket. */
struct nbd_limits {
    unsigned conn_requests; /* started and not finished, per connection */
    size_t conn_bytes;      /* their data and the replies the client has not read */
    size_t conn_readahead;  /* requests read and not started */
    size_t total_bytes;     /* data, all connections together */
    size_t total_readahead; /* read-ahead, all connections together */
};
#define NBD_LIMITS_DEFAULT                                                                         \
    {                                                                                              \
        .conn_requests = 256, .conn_bytes = 64u << 20, .conn_readahead = 16u << 20,                \
        .total_bytes = 256u << 20, .total_readahead = 64u << 20                                    \
    }

struct nbd_budget;
/* A budget for the servers of loop. NULL if memory is exhausted. */
struct nbd_budget *nbd_budget_new(uv_loop_t *loop, const struct nbd_limits *l);

/* What the budget counts now: the data of requests in progress and the
 * replies not yet read, every connection together (the --io-memory). */
size_t nbd_budget_held(const struct nbd_budget *b);

/* res: 0 or -errno. For READ, io->buf may be replaced by the backend first
 * (the server frees whatever io->buf holds with rpc_buf_free). */
void nbd_io_done(struct nbd_io *io, int res);

struct nbd_server;
/* TLS (NBD_OPT_STARTTLS; docs/nbd.md, "TLS"). OFF answers STARTTLS with
 * UNSUP; ON lets each client choose (the spec's SELECTIVETLS); REQUIRE
 * refuses every option but STARTTLS and ABORT before TLS (FORCEDTLS). */
enum nbd_tls_mode { NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE };

struct nbd_tls_opts {
    enum nbd_tls_mode mode;
    const char *certs_dir;    /* ca-cert.pem, server-cert.pem, server-key.pem; or NULL */
    const char *psk_file;     /* "identity:hexkey" lines (psktool); or NULL */
    bool verify_peer;         /* require a client certificate signed by ca-cert.pem */
    const char *const *allow; /* nallow "VOLUME=ID[,ID...]": only these identities (a PSK
                                 identity, a certificate's CN or DNS SAN) see VOLUME */
    int nallow;
};

struct nbd_tls;
/* Load the credentials of o (the strings need not outlive the call). With
 * mode OFF *out is NULL (and any credential is an error). 0, or -errno
 * after logging why: no credentials, a key or PSK file that group or
 * others may access, a file that does not parse. The result lives as long
 * as the process. */
int nbd_tls_new(const struct nbd_tls_opts *o, struct nbd_tls **out);
/* "off", "on" or "require" into *mode. 0 or -EINVAL. */
int nbd_tls_mode_parse(const char *s, enum nbd_tls_mode *mode);
/* Serve s's new connections with tls (NULL: off). */
void nbd_server_set_tls(struct nbd_server *s, struct nbd_tls *tls);

/* addr: "host:port" or "unix:/path". 0 or -errno. */
int nbd_server_listen(uv_loop_t *loop, const char *addr, const struct nbd_backend *be,
                      struct nbd_budget *budget, struct nbd_server **out);
/* Connections open now (handshaking or serving), and requests read from
 * them and not yet answered (for metrics; s may be NULL: 0). */
unsigned nbd_server_connections(const struct nbd_server *s);
size_t nbd_server_requests(const struct nbd_server *s);

#endif
