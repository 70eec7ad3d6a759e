/* cairn-sdc: the storage data client. Its insides, one section per file;
 * read top to bottom this is the index of the daemon.
 *
 *   sdc_main.c     options, startup, shutdown
 *   sdc_volumes.c  which volumes are mapped here: exports, the MDM session
 *   sdc_claim.c    who may open a volume read-write: claims at the MDM
 *   sdc_io.c       routing each piece to its primary, retries, flush fan-out
 *   sdc_split.c    pure: cutting requests into pieces, merging block status
 *   sdc_metrics.c  Prometheus metrics (--metrics-listen)
 *
 * Serves every volume mapped to this SDC as an NBD export (named after the
 * volume) and sends each request straight to the primary SDS of each extent
 * it touches, with the PG epoch from its map. A request that fails for a
 * reason the cluster can heal (stale epoch, lost connection, timeout) is
 * retried on a fresh map until the I/O timeout; the NBD client sees an error
 * only when that runs out or the error is final (ENOSPC, EINVAL).
 *
 * FLUSH goes to every SDS of the volume's pool and each makes all its devices
 * durable; reads go to primaries, which hold every acknowledged write. So
 * once FLUSH is answered on any connection, every write answered before it is
 * durable and visible on all connections: CAN_MULTI_CONN holds.
 *
 * State: everything lives in one struct sdc (main's one instance), which
 * every callback reaches through the context it is given: the NBD backend's
 * and the MDM session's ctx, a piece's rpc call arg (piece -> op -> sdc), a
 * uv handle's data. One loop; nothing locks.
 */
#ifndef CAIRN_SDC_H
#define CAIRN_SDC_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cairn.pb-c.h"
#include "frame.h"
#include "mdm_session.h"
#include "metrics.h"
#include "nbd_server.h"
#include "pool.h"

#define SDC_MAX_VOLS 4096
#define SDC_MAX_SDS 1024
/* Pieces an op holds without allocating: a request across a few extents, a
 * flush of a small pool. Longer spans (large TRIMs and zeroes, 32 MiB at a
 * small extent size) allocate their pieces. */
#define SDC_OP_INLINE_PIECES 8

/* A volume mapped here (or one that was, while an export still holds it). */
struct claim;

struct sdc_vol {
    uint64_t id;        /* the volume's, or a snapshot's (docs/snapshots.md) */
    uint64_t placement; /* what its extents are placed by (cmap_placement) */
    char name[80];      /* the export: the volume's name, or VOL@SNAPSHOT */
    uint64_t size;
    uint32_t pool_id;
    bool ro;      /* mapped read-only */
    int refs;     /* open exports and ops in flight */
    bool present; /* in the current map, mapped to this SDC */
    /* single-writer (sdc_claim.c): the map's writer generation (a change
     * of a connection claimed under an older one is fenced), the
     * read-write connections whose claim is granted, and their claim's */
    uint64_t writer_gen;
    int writers;
    uint64_t claim_gen;
    int claiming;          /* a claim of it is being asked of the MDM */
    struct claim *waiting; /* claims of connections opened meanwhile */
    /* what its NBD clients did since it was mapped here (the NBD server
     * counts into it: see nbd_backend.stats); the metrics and the
     * heartbeat's VolumeIo read it */
    struct nbd_stats io;
};

struct sdc_op;

/* The part of a request that one SDS serves: inside one extent, or for
 * FLUSH one SDS. */
struct sdc_piece {
    struct sdc_op *op;
    uint64_t off; /* in the volume */
    uint32_t len;
    uint32_t boff;           /* offset in the op's buffer */
    uint32_t sds_id;         /* FLUSH: the SDS to flush */
    int status;              /* the SDS's reply; STAT: 1 allocated, 0 a hole */
    struct sdc_piece *rnext; /* on the retry list */
};

/* One NBD request in flight: its pieces go out in parallel and it completes
 * when the last is done. From the sdc's op pool. */
struct sdc_op {
    struct sdc *sdc;
    struct nbd_io *io;
    struct sdc_vol *v;    /* a reference, dropped when the op ends */
    enum frame_type type; /* of every piece: FT_IO_* */
    int pending;          /* pieces not done */
    int err;              /* the first error of a piece, or 0 */
    uint64_t deadline;    /* monotonic ms: no retry after this; 0 until first sent */
    uint32_t npieces;
    struct sdc_piece *pieces;  /* inline_pieces, or malloc'd for a long span */
    struct sdc_op *later_next; /* on the complete-from-the-loop list */
    struct sdc_piece inline_pieces[SDC_OP_INLINE_PIECES];
};

struct rpc_peer;
struct nbd_server;

struct sdc {
    uv_loop_t *loop;
    /* options */
    const char *mdm_addr, *data_dir, *name, *nbd_tcp;
    char nbd_unix[512];
    uint32_t io_timeout_ms;
    /* who we are to the MDM */
    char guid[64];
    uint32_t sdc_id; /* 0 until registered */
    Cairn__SdcRegister reg;
    struct mdm_session *mdm;
    struct rpc_conn *claims_conn; /* the MDM connection our claims were last held on */
    /* the map, and what follows from it */
    Cairn__ClusterMap *map;
    struct sdc_vol *vols[SDC_MAX_VOLS];
    int nvols;
    struct rpc_peer *sds[SDC_MAX_SDS]; /* connections to SDSs, made on first use */
    int nsds;
    /* the data path */
    struct pool op_pool;
    uv_timer_t retry_timer; /* data: this sdc */
    struct sdc_piece *retry_head;
    bool retry_on;
    uv_timer_t later_timer; /* data: this sdc */
    struct sdc_op *later_head, **later_tail;
    struct nbd_io *nomem_head; /* failed without an op, linked through io->backend */
    struct nbd_server *tcp_srv, *unix_srv;
    struct nbd_budget *budget;
    /* what the retries of the data path did since start (sdc_io.c) */
    uint64_t retries;      /* pieces sent again after a failure the cluster heals */
    uint64_t sds_timeouts; /* pieces an SDS did not answer within PIECE_TIMEOUT_MS */
    uint64_t io_timeouts;  /* pieces given up (-EIO) when the I/O timeout ran out */
    /* the heartbeat's VolumeIo, one per volume (sdc_volumes.c): kept here,
     * grown as volumes come, so that a heartbeat allocates nothing */
    Cairn__VolumeIo *hb_io;
    Cairn__VolumeIo **hb_iop;
    int hb_cap;
    const char *metrics_listen;
    struct metrics_server *metrics; /* NULL unless --metrics-listen */
    uv_signal_t sigterm, sigint;    /* data: this sdc */
    bool stopping;
};

/* ---- sdc_volumes.c: the volumes mapped here ---- */

/* The NBD backend's export functions (ctx: the sdc). An export handle is a
 * struct sdc_vol with a reference taken; sdc_export_close drops it. */
void *sdc_export_open(void *ctx, const char *name, uint64_t *size, int *read_only);
void sdc_export_close(void *ctx, void *exp);
void sdc_export_list(void *ctx, void (*emit)(void *arg, const char *name), void *arg);
/* Drop a reference to v; a volume no longer mapped is freed with its last. */
void sdc_vol_unref(struct sdc *s, struct sdc_vol *v);
/* The MDM session's callbacks (ctx: the sdc): registration, new maps. */
extern const struct mdm_session_ops sdc_session_ops;
/* Ask the MDM for the map now (after a stale epoch, say). */
void sdc_map_refresh(struct sdc *s);
/* The NBD backend's stats: where an export's requests are counted. */
struct nbd_stats *sdc_export_stats(void *ctx, void *exp);
/* Free what the heartbeat keeps (after the loop stopped). */
void sdc_volumes_shutdown(struct sdc *s);

/* ---- sdc_claim.c: claims for read-write connections ---- */

/* The NBD backend's claim and release (ctx: the sdc, exp: a struct
 * sdc_vol): ask the MDM whether a connection may write to exp; done runs
 * later with the writer generation its changes carry, or -errno and why. */
void sdc_export_claim(void *ctx, void *exp, void *arg,
                      void (*done)(void *arg, int err, uint64_t claim, const char *msg));
void sdc_export_release(void *ctx, void *exp);
/* After a map: if the MDM session is a new connection, hold again there
 * the volumes that read-write connections still hold. */
void sdc_claims_renew(struct sdc *s);

/* ---- sdc_io.c: the data path ---- */

/* Set up the data path's timers and pool (before the loop runs). */
void sdc_io_init(struct sdc *s);
/* Free what the data path keeps for reuse (after the loop stopped). */
void sdc_io_shutdown(struct sdc *s);
/* The NBD backend's submit (ctx: the sdc, exp: a struct sdc_vol): split io
 * into pieces, send each to its SDS, retry what the cluster can heal until
 * the I/O timeout, complete io with nbd_io_done() from the loop. */
void sdc_io_submit(void *ctx, void *exp, struct nbd_io *io);
/* The NBD backend's cancel: the pieces of owner's requests not yet sent go
 * no further (their requests end with -ECANCELED, answered to nobody). */
void sdc_io_cancel(void *ctx, const void *owner);

/* ---- sdc_metrics.c: Prometheus metrics ---- */

/* Write every family of the SDC (the metrics server's render callback;
 * data: the sdc). Runs on the loop, so it reads the counters directly. */
void sdc_metrics_render(struct metrics_out *o, void *data);

/* ---- sdc_split.c: pure request cutting and merging ---- */

/* How many pieces a cmd over [off, off + len) is cut into at extent_size
 * (> 0): one per extent it touches; for NBDIO_STATUS at most
 * NBD_MAX_EXTENTS (the reply may cover less than was asked). 0 if len is 0. */
uint32_t sdc_split_count(enum nbd_io_cmd cmd, uint64_t off, uint32_t len, uint64_t extent_size);
/* Cut [off, off + len) at extent boundaries into pc[0..n) (n from
 * sdc_split_count): sets each piece's off, len and boff (its offset in the
 * request's buffer); the n pieces cover the start of the range in order. */
void sdc_split(struct sdc_piece *pc, uint32_t n, uint64_t off, uint32_t len, uint64_t extent_size);
/* Merge the replies of STAT pieces pc[0..n) (status > 0: allocated, else a
 * hole that reads as zeroes) into at most max NBD extents: adjacent pieces
 * with equal flags become one. Returns the number of extents. */
int sdc_merge_status(const struct sdc_piece *pc, uint32_t n, struct nbd_extent *ext, int max);
/* Whether zeroing [off, off + len) honours FAST_ZERO: only whole extents
 * without NO_HOLE are dropped without writing data. */
bool sdc_zero_is_fast(uint64_t off, uint32_t len, int flags, uint64_t extent_size);
/* Whether a FLUSH of pool pool_id must reach sds: it is up and has a device
 * in the pool (one down or in maintenance holds no copy a write could have
 * reached). */
bool sdc_flush_target(const Cairn__ClusterMap *m, const Cairn__Sds *sds, uint32_t pool_id);
/* The flush targets of pool pool_id, in map order: the first max of them go
 * to pc[i].sds_id (pc may be NULL when max is 0). Returns how many there are. */
uint32_t sdc_flush_targets(const Cairn__ClusterMap *m, uint32_t pool_id, struct sdc_piece *pc,
                           uint32_t max);

#endif
