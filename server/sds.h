/* cairn-sds internals: the daemon's state and, one section per file, what
 * each file does. Read top to bottom, the sections index the daemon.
 *
 * One libuv loop. Requests arrive as frames (dispatch.c); data goes to the
 * devices through the extent store on io_uring. For a write the primary of
 * the extent's PG orders it against overlapping writes (range_lock.c), so
 * every copy applies them in one order, forwards it in parallel to every
 * other copy (replicate.c), applies it locally, and acknowledges only when
 * all copies have it on their devices (write.c).
 *
 * All state lives in one struct sds (last section). It reaches callbacks
 * through the context pointers of the layers: an accepted connection's data
 * is its struct sds_conn, which points to the sds; the MDM session's ctx is
 * the sds; a request, a forward, a rebuild copy or a ping points to its sds;
 * a uv handle's data is the sds. Nothing here is global, so two SDSs could
 * share one process and one loop.
 */
#ifndef CAIRN_SDS_H
#define CAIRN_SDS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cairn.pb-c.h"
#include "cmap.h"
#include "frame.h"
#include "metrics.h"
#include "pool.h"
#include "range_lock.h"
#include "rpc.h"

#define SDS_MAX_DEVS 64
#define SDS_MAX_PEERS 1024
#define SDS_MAX_COPIES 8 /* other copies of a PG a request forwards to */
/* A copy slower than this is treated as failed; the SDC retries. */
#define SDS_FWD_TIMEOUT_MS 4000

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct sds;
struct ioreq;
struct mdm_session;
struct rpc_peer;
struct rpc_server;
struct uring_ctx;
struct disk;
struct extent_store;
typedef void (*store_cb)(void *arg, int res);

/* 1 if dev is one of the n devices of arr (a PG's copy list). */
static inline int pg_has_dev(const uint32_t *arr, size_t n, uint32_t dev)
{
    for (size_t i = 0; i < n; i++)
        if (arr[i] == dev)
            return 1;
    return 0;
}

/* ---- devices.c: attaching this SDS's devices, failing one on an I/O
 * error, and answering the MDM's probe of a path before it adds a device ---- */

struct dev {
    uint32_t id;
    char path[256];
    struct disk *disk;
    struct extent_store *st; /* NULL while failed at attach */
    int failed;              /* no I/O goes to it any more; the heartbeat says so */
    int bg_flush;            /* a background flush of its store is under way (flush.c) */
    char err[256];
};

/* The device with that id among this SDS's, or NULL. */
struct dev *devices_find(struct sds *s, uint32_t id);
/* Open (formatting it if blank) a device the map gives this SDS; a failure
 * leaves it attached but failed. Does nothing for a device already attached. */
void devices_attach(struct sds *s, const Cairn__Device *md, const Cairn__Pool *pool);
/* A store call on d failed with res: an I/O error fails the device (not the
 * SDS); other errors (ENOSPC, EINVAL) belong to the request. */
void devices_error(struct dev *d, int res);
/* FT_DEVICE_PROBE from the MDM: can this path become a device here? */
void devices_probe(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h,
                   const uint8_t *msg);

/* ---- lease.c: may this SDS serve a PG now? Leases and fences, as pure
 * functions of the times and the map (no clock, no I/O) ----
 *
 * A primary serves reads only while it holds a lease: from the MDM (a
 * heartbeat answered less than lease_ms after it was sent) or from every
 * other in-sync copy of the PG (a ping answered likewise). The MDM marks an
 * SDS down only after a longer silence, so by then its MDM lease is gone, and
 * copies stop granting once their map says it is down. A copy promoted to
 * primary serves no I/O until lease_ms after the last lease it granted the
 * old primary (a fence). So no read is ever served by a deposed primary after
 * its successor starts serving, and when the MDM alone is unreachable, the
 * copies keep each other's leases alive and I/O goes on. */

struct peer_lease {
    uint32_t sds_id;        /* 0: a free slot */
    uint64_t until;         /* lease this peer granted us */
    uint64_t granted_at;    /* last lease we granted this peer */
    uint64_t suspect_until; /* a forward timed out: fail forwards fast until then */
    uint64_t suspect_since; /* when; a ping sent after it and answered ends it */
};

/* Where this SDS became primary in place of another that may still serve. */
struct fence {
    uint32_t pool_id, pg;
    uint64_t until;
    uint32_t old_primary; /* alive (a planned handover): lifted early once */
    uint64_t version;     /* it shows a map at least this new */
};

struct leases {
    uint64_t lease_ms; /* how long an answered heartbeat or ping counts */
    uint64_t mdm_until;
    struct peer_lease peers[SDS_MAX_PEERS];
    struct fence *fences;
    size_t nfences;
    uint64_t fence_max; /* no fence lasts beyond this: the common check is one compare */
};

/* The slot of a peer, taken if it has none; NULL if the table is full. */
struct peer_lease *lease_peer(struct leases *ls, uint32_t sds_id);
/* The slot of a peer, or NULL. */
const struct peer_lease *lease_peer_find(const struct leases *ls, uint32_t sds_id);
/* 1 if PG pg of the pool is fenced at now: no client I/O, reads or writes (a
 * write we took could be missed by a read the old primary serves). */
int lease_fenced(const struct leases *ls, uint64_t now, uint32_t pool_id, uint32_t pg);
/* 1 if this SDS, primary of g (PG pg of the pool) in map m, may serve a read
 * at now: not fenced, and a lease from the MDM or from every other in-sync copy. */
int lease_held(const struct leases *ls, uint64_t now, const Cairn__ClusterMap *m, uint32_t pool_id,
               uint32_t pg, const Cairn__Pg *g);
/* The MDM answered a heartbeat sent at sent_ms: that is a lease if our map m
 * (NULL: none) has every change that took a primary role from us, that is,
 * it is current or at least demoted_version. */
void lease_mdm_ack(struct leases *ls, const Cairn__ClusterMap *m, uint64_t sent_ms, int map_current,
                   uint64_t demoted_version);
/* A peer answered our ping sent at sent_ms: it granted us a lease. */
void lease_peer_ack(struct leases *ls, uint32_t sds_id, uint64_t sent_ms);
/* SDS from, holding map version, pings us at now. Lifts the fences against it
 * that its map makes moot, then grants it a lease (0) unless our map m says
 * it is down or unknown, or its map still makes it primary where it no
 * longer is (-ESTALE). */
int lease_grant(struct leases *ls, const Cairn__ClusterMap *m, uint32_t from, uint64_t version,
                uint64_t now);
/* After the map changed from old (NULL: none) to m: fence the PGs where
 * my_id became primary in place of another SDS until the leases it may hold
 * have run out. Expired fences are dropped. */
void lease_fence_new_primaries(struct leases *ls, const Cairn__ClusterMap *old,
                               const Cairn__ClusterMap *m, uint32_t my_id, uint64_t now);
void lease_free(struct leases *ls);

/* ---- validate.c: is a data request for us, and what does it touch? A pure
 * function of the map, our id, the leases and the devices ---- */

/* What this SDS is to the PG of a request. */
enum copy_role {
    COPY_PRIMARY,    /* a client's request: serve, forward mutations to the copies */
    COPY_REPLICA,    /* forwarded by the primary to an in-sync copy: apply here only */
    COPY_REBUILDING, /* forwarded to a copy being filled: apply here only, serve no read */
};

/* Validation may find our map behind the sender's. */
enum map_refresh { MAP_REFRESH_NONE, MAP_REFRESH_NOW, MAP_REFRESH_SOON };

struct io_view {
    const Cairn__ClusterMap *map; /* may be NULL */
    uint32_t my_id;
    const struct leases *leases;
    uint64_t now;
    struct dev *devs;
    int ndevs;
};

/* Where a valid request goes (validate_io fills it as far as it gets). */
struct io_target {
    uint64_t vol_id; /* the volume (the request may name one of its snapshots) */
    /* The layer (store key) a change goes to, or a read starts at, and the
     * chain a read walks from it, newest first (chain[0] == layer). A copy
     * for a rebuild (raw) is applied as it comes: its chain is its layer. */
    uint64_t layer;
    uint64_t chain[CMAP_CHAIN_MAX];
    int nchain;
    int raw;
    uint64_t ext; /* extent index in the volume */
    uint32_t off; /* byte offset within the extent */
    uint64_t extent_size, vol_size;
    int thick;
    uint64_t epoch; /* the PG's epoch here: what forwards carry */
    enum copy_role role;
    struct dev *dev;
    uint32_t peers[SDS_MAX_COPIES]; /* the other copies' SDSs (in-sync, then rebuilding) */
    int npeers;
    enum map_refresh refresh; /* set with some errors: fetch the map */
};

/* Check an FT_IO_READ/WRITE/TRIM/ZERO/STAT request (type, payload_len from
 * its frame, io decoded) against the view before it touches any state.
 * Returns 0 (t filled), or: -EAGAIN the sender retries (volume unknown or
 * range beyond it here: our map may be behind; no lease; fenced), -ESTALE
 * its map and ours disagree on the PG (epoch, copy, role) or on a layer,
 * -EROFS a change to a snapshot, -EINVAL a bad request, -EIO our device
 * for it has failed. */
int validate_io(const struct io_view *v, uint16_t type, uint32_t payload_len,
                const struct io_hdr *io, struct io_target *t);
/* FT_PING's message (msg_len bytes): the sender's SDS id and map version.
 * 0, or -EINVAL if it is not 12 bytes. */
int validate_ping(const uint8_t *msg, uint32_t msg_len, uint32_t *from, uint64_t *version);
/* FT_PG_LIST's message: a pool and a PG of it in map m (may be NULL). 0,
 * -EINVAL if it is not 8 bytes or we have no map, -ESTALE if m has no
 * such PG. */
int validate_pg_list(const Cairn__ClusterMap *m, const uint8_t *msg, uint32_t msg_len,
                     uint32_t *pool_id, uint32_t *pg);
/* The reply to our FT_PG_LIST: payload_len bytes of (u64 volume, u64
 * extent) pairs. The number of pairs, or -EINVAL if it is not whole pairs. */
long validate_pg_list_reply(uint32_t payload_len);

/* ---- access.c: which SDC may do what, from the map's SDCs and mappings
 * (pure) ---- */

enum access_mode { ACCESS_NONE = 0, ACCESS_RO = 1, ACCESS_RW = 2 };

struct access_entry {
    uint64_t volume_id;
    uint32_t sdc_id;
    int read_only;
};

/* The mappings of approved SDCs, sorted by (sdc, volume). */
struct access_table {
    struct access_entry *e; /* owned */
    size_t n;
};

/* Replace t's entries with m's (m may be NULL: none). 0, or -1 out of
 * memory (t unchanged). */
int access_build(struct access_table *t, const Cairn__ClusterMap *m);
void access_free(struct access_table *t);
/* The id of the approved SDC of this name in m, or 0 (none, or pending). */
uint32_t access_sdc(const Cairn__ClusterMap *m, const char *name);
/* What SDC sdc_id (0: none) may do to the volume. */
enum access_mode access_lookup(const struct access_table *t, uint32_t sdc_id, uint64_t volume_id);
/* 1 if a request of this frame type is allowed under mode: READ, STAT and
 * FLUSH need a mapping, WRITE, TRIM and ZERO a read-write one. */
int access_allows(enum access_mode mode, uint16_t type);

/* ---- dispatch.c: incoming connections and requests: decode, validate,
 * route by type, and the one place replies to data requests go out ---- */

/* Per accepted connection (set by on_accept): the requests it has in
 * flight, so a closing connection can detach them (their replies are then
 * dropped). */
struct sds_conn {
    struct sds *sds;
    struct rpc_conn *conn;
    struct ioreq *reqs;
    /* flow control: the bytes its requests in progress hold, and whether
     * it waits (not read) for its own share or for the SDS-wide budget */
    size_t held;
    int over_own, over_total;
    struct sds_conn *wprev, *wnext; /* in sds->budget_waiting while over_total */
    /* an SDC peer's access (access.c) to acc_volume, as of map acc_version
     * (0: not computed); acc_sdc is its approved SDC id then, or 0 */
    uint64_t acc_version, acc_volume;
    uint32_t acc_sdc;
    enum access_mode acc_mode;
};

/* What one connection's requests in progress may hold (data of writes
 * received and reads being read), and how many of them may be open; past
 * either it is not read until they drain (TCP then slows the sender). */
#define SDS_CONN_REQUESTS 256
#define SDS_CONN_BYTES (64u << 20)
/* Clients' requests of all connections together (--io-memory); requests
 * forwarded by other copies are not counted, so a copy never stops taking
 * its primaries' writes because its own clients are busy (two primaries
 * waiting on each other's copies would deadlock). */
#define SDS_IO_MEMORY_DEFAULT (256u << 20)

/* A forward of one request to one other copy (replicate.c; the rpc call's
 * arg), embedded in the request. */
struct fwd {
    struct ioreq *req;
    uint32_t sds_id;
};

/* The stages of a mutation (write.c), in the order they run. */
enum write_stage {
    WS_LOCK,   /* about to take the range lock */
    WS_LOCKED, /* waiting for it; then forward and apply */
    WS_MERGE,  /* waiting for the chain read that widens it to whole granules */
    WS_COPIES, /* waiting for every copy to answer */
    WS_UNDO,   /* ENOSPC: waiting for every copy to drop a fresh allocation */
    WS_DONE,
};

/* What a data request is, as the metrics count it: a client's (an SDC's)
 * request by its type; a mutation forwarded by a PG's primary to an
 * in-sync copy (replica_*); a copy sent to a copy being filled by rebuild,
 * rebalance or drain (rebuild_*: TRIM frees an extent the source does not
 * hold). */
enum sds_op {
    SDS_OP_READ,
    SDS_OP_WRITE,
    SDS_OP_TRIM,
    SDS_OP_ZERO,
    SDS_OP_STAT,
    SDS_OP_FLUSH,
    SDS_OP_REPLICA_WRITE,
    SDS_OP_REPLICA_TRIM,
    SDS_OP_REPLICA_ZERO,
    SDS_OP_REBUILD_WRITE,
    SDS_OP_REBUILD_TRIM,
    SDS_OPS
};

/* What dispatch counts of the requests answered, for the metrics
 * (sds_metrics.c): by kind, failed ones (any status < 0, the ESTALE and
 * EAGAIN that clients retry included), and the latency of clients' reads
 * and writes from their arrival to their reply being queued. */
struct sds_counters {
    uint64_t requests[SDS_OPS];
    uint64_t errors[SDS_OPS];
    struct metrics_hist read_lat, write_lat;
    unsigned conns; /* accepted connections open now (SDCs and SDSs) */
};

/* A data request from a client or a peer; from sds->ioreqs. */
struct ioreq {
    struct sds *sds;
    uint64_t arrived;        /* uv_hrtime() when dispatch took it */
    enum sds_op metric;      /* how the metrics count it */
    struct sds_conn *client; /* NULL once its connection closed: no reply */
    struct ioreq *cprev, *cnext;
    struct frame_hdr hdr;
    struct io_hdr io;
    uint8_t *payload; /* a write's data (rpc buffer, ours) */
    uint8_t *rbuf;    /* a read's data (rpc buffer, ours until the reply is sent) */
    struct io_target t;
    enum frame_type op; /* the mutation applied and forwarded (TRIM while undoing) */
    enum write_stage stage;
    int fresh;   /* the extent had no slot here when the write started */
    int undoing; /* an ENOSPC write is undoing its fresh allocation */
    int pending; /* parts (copies, devices) not yet answered */
    int status;  /* the first failure of a part, or 0 */
    struct range_lock lock;
    uint8_t *merge_buf; /* WS_MERGE: the granules it is widened to, being read */
    uint32_t merge_off, merge_len;
    struct ioreq *mprev, *mnext; /* in sds->muts: a primary's change in progress (freeze.c) */
    int in_muts;
    struct ioreq *fnext; /* in sds->freeze.held: waiting for a snapshot's pause to end */
    int counted;         /* count_request() has counted it */
    struct fwd fwd[SDS_MAX_COPIES];
    size_t held;       /* bytes counted against its connection's share */
    int counted_total; /* ... and against the SDS-wide budget (a client's) */
};

/* rpc handlers of the SDS's listening sockets (server data: the sds). */
int dispatch_accept(struct rpc_conn *c, void *server_data);
void dispatch_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                      uint8_t *payload);
void dispatch_close(struct rpc_conn *c);
/* Validate a decoded, access-checked request and start it (again, for
 * one held by a snapshot's pause: freeze.c). */
void dispatch_start(struct ioreq *r);
/* Send r's status (and a read's data) if its connection is still there,
 * and free r. */
void dispatch_reply(struct ioreq *r);
/* A status-only reply to h. */
void dispatch_status(struct rpc_conn *c, const struct frame_hdr *h, int status);

/* ---- write.c: the replicated write, one resumable function for every
 * WRITE, TRIM and ZERO at the primary and at each copy ---- */

/* Run a validated mutation to its reply. */
void write_start(struct ioreq *r);
/* One part of the current stage (a copy, the local device) answered. */
void write_part_done(struct ioreq *r, int status);

/* ---- read.c: reads and allocation queries, served by the primary; reads
 * through a chain of layers ---- */

/* Read [off, off + len) of extent ext through the chain (newest first):
 * each granule from the first layer that has it written, else zeroes. The
 * store's return convention (0: cb follows, 1: done now, < 0: -errno). */
int chain_read(struct extent_store *st, const uint64_t *chain, int nchain, uint64_t ext,
               uint32_t off, uint32_t len, uint8_t *buf, store_cb cb, void *arg);
/* The next run of set bits of bm (ngran granules of gs bytes, an extent of
 * len bytes) from *next_g: its byte range in *off, *rlen, and *next_g past
 * it. 0 when there is none left. */
int bm_next_run(const uint64_t *bm, uint32_t ngran, uint64_t gs, uint32_t len, uint32_t *next_g,
                uint32_t *off, uint32_t *rlen);
/* 1 if a layer of chain[from..nchain) has a slot for ext. */
int chain_holds(struct extent_store *st, const uint64_t *chain, int nchain, uint64_t ext, int from);

void read_start(struct ioreq *r);
void read_stat(struct ioreq *r);

/* ---- flush.c: FLUSH: every device of this SDS durable ---- */

void flush_start(struct ioreq *r);
/* Every second (flush_timer): flush each device whose store holds granule
 * bits or entries only a flush makes durable, so that a kill -9 loses at
 * most the last second or so of first writes without FUA on this copy (the
 * primaries' 30 s ring of changed extents covers them at catch-up). */
void flush_timer_cb(uv_timer_t *t);

/* ---- replicate.c: forwarding a mutation to the other copies ---- */

/* Forward r (its current op) to copy i of r->t.peers; write_part_done()
 * follows, later or at once. */
void replicate_forward(struct ioreq *r, int i);

/* ---- map.c: installing a map, the saved map, fetching a newer one, and
 * the connections to the SDSs it names ---- */

/* Install m (ours now) unless older than the one held; my_id, if not 0, is
 * our id as the MDM sent it. Attaches devices, fences, tracks, reclaims and
 * plans rebuilds for the change. */
void map_install(struct sds *s, Cairn__ClusterMap *m, uint32_t my_id);
/* Serve from the map saved in the data directory until the MDM answers. */
void map_load_saved(struct sds *s);
/* Ask the MDM for the map now / unless asked in the last 250 ms. */
void map_fetch(struct sds *s);
void map_fetch_soon(struct sds *s);
/* The connection to an SDS of the current map (NULL if the map has no such
 * SDS). map_install() keeps the addresses of known peers current. */
struct rpc_peer *map_peer(struct sds *s, uint32_t sds_id);

/* ---- ping.c: leases between copies: ping every up SDS, grant theirs ---- */

void ping_all(struct sds *s);
void ping_timer_cb(uv_timer_t *t);
/* FT_PING: u32 sender id, u64 its map version. */
void ping_handle(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg);

/* ---- tracking.c: change tracking while copies are away, and the ring of
 * recent changes ----
 *
 * While a PG has departed copies (an SDS in maintenance), every in-sync copy
 * records which extents change, so that the returning copy is sent only
 * those. A record is complete only if this SDS saw the copy leave; otherwise
 * (it restarted meanwhile) the primary compares extent lists instead. */

struct tracker {
    uint32_t pool_id, pg;
    int complete;
};

struct dirty {
    uint32_t pool_id, pg;
    uint64_t vol, ext;
};

/* extents changed in the last RECENT_MS: a failure is not announced, so when
 * a copy is found gone, what it may have missed is in here */
struct recent {
    uint64_t at;
    uint32_t pool_id, pg;
    uint64_t vol, ext;
};

struct tracking {
    struct tracker *trackers;
    size_t ntrackers;
    struct dirty *dirty;
    size_t ndirty, capdirty;
    struct recent *recent;
    size_t recent_head, recent_len, recent_cap;
};

/* A mutation of (vol, ext) in PG pg of the pool is about to be applied here. */
void tracking_note(struct sds *s, uint32_t pool_id, uint32_t pg, uint64_t vol, uint64_t ext);
/* Start, keep or end tracking after the map changed from old. */
void tracking_sync(struct sds *s, const Cairn__ClusterMap *old);
/* 1 if the PG's changes since its copies left are all recorded here. */
int tracking_complete(struct sds *s, uint32_t pool_id, uint32_t pg);
/* Call add for every extent of the PG recorded as changed. */
void tracking_changes(struct sds *s, uint32_t pool_id, uint32_t pg,
                      void (*add)(void *arg, uint64_t vol, uint64_t ext), void *arg);

/* ---- rebuild.c: a primary fills the rebuilding copies of its PGs (full
 * copies and catch-ups); the extent list a catching-up target sends ---- */

struct rjob;

struct rebuild {
    struct rjob *jobs;
    uint64_t rate; /* bytes per second allowed */
    int inflight;
    double tokens;
    uint64_t last_ms;
    uint64_t recv_bytes; /* copies received as a rebuild target */
    uint64_t done_bytes, rate_ewma, rate_mark, rate_mark_ms;
    uint64_t rebalance_done_bytes; /* the part of done_bytes that was rebalance */
    uv_timer_t timer;
    struct pool copies;  /* struct rcopy */
    int pumping, repump; /* rebuild_pump() running; asked again meanwhile */
};

void rebuild_init(struct sds *s);
/* After a map change: start, keep or drop the jobs of the PGs this SDS leads. */
void rebuild_sync(struct sds *s);
void rebuild_timer_cb(uv_timer_t *t);
/* FT_PG_LIST (pg_list.c): the extents this SDS holds of a PG (for a
 * catch-up compare). */
void rebuild_serve_pg_list(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h,
                           const uint8_t *msg);
/* An extent of the PG changed here without a client write (a layer merge):
 * the jobs under way for the PG send it too. */
void rebuild_note(struct sds *s, uint32_t pool_id, uint32_t pg, uint64_t layer, uint64_t ext);
/* What the heartbeat (and the metrics) report of the jobs. A job counts as
 * rebalance when its PG has a leaving copy (the target replaces it: balance
 * or a drain), else as rebuild (lost redundancy restored); the rebalance_*
 * fields are the rebalance part of the totals. */
void rebuild_fill_status(struct sds *s, Cairn__RebuildStatus *rs);

/* ---- reclaim.c: giving space back: extents of PGs no longer held here,
 * removed volumes, and the slots kept for thick volumes ---- */

void reclaim_drop_unowned(struct sds *s, const Cairn__ClusterMap *old);
/* Free the extents of volumes the MDM has removed (some per call). */
void reclaim_purge_removed(struct sds *s);
void reclaim_update_reservations(struct sds *s);

/* ---- freeze.c: the pause of a snapshot's cut: no new change to the
 * frozen volumes as a primary until a newer map ---- */

struct freeze {
    uint64_t *vols; /* frozen now (none: NULL, 0) */
    size_t nvols;
    uint64_t base_version;           /* lifted by the first map above it */
    uint64_t since;                  /* now_ms() when it began */
    struct ioreq *held, **held_tail; /* clients' changes waiting for the lift */
    size_t nheld;
    uv_timer_t timer; /* while frozen: the time limit; after: starts what it held */
};

/* FT_FREEZE from the MDM: Freeze / 0 once paused, -EBUSY while changes
 * started before it are still in progress (asked again). */
void freeze_handle(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h,
                   const uint8_t *msg);
/* 1 if validated request r is a primary's change to a frozen volume. */
int freeze_refuses(struct sds *s, const struct ioreq *r);
/* Hold such a request until the freeze is lifted (then dispatch_start()
 * takes it again); 0 if too many are held already (the client gets
 * -EAGAIN and retries). */
int freeze_hold(struct sds *s, struct ioreq *r);
void freeze_init(struct sds *s);
/* A primary's change starts / ends (its reply): s->muts. */
void freeze_mut_start(struct sds *s, struct ioreq *r);
void freeze_mut_end(struct sds *s, struct ioreq *r);
/* After a map is installed: lift a freeze the map is newer than. */
void freeze_map_installed(struct sds *s);
void freeze_lift(struct sds *s);

/* ---- layers.c: snapshots' layers here: their usage (heartbeat), the
 * merge of removed snapshots' layers, slots of layers the map dropped ---- */

/* A flatten on one device (flatten.c): extents below cursor are done. */
struct flat {
    uint64_t vol, version;
    uint32_t dev;
    uint64_t cursor; /* the next extent to look at */
    int inflight;    /* extents below cursor being flattened now */
};

/* A slot of a removed snapshot's layer found to merge (layers.c). */
struct layer_job {
    uint32_t dev;
    uint64_t from, ext;
};

#define LAYERS_BUDGET 16384 /* slots a heartbeat's walk looks at */
#define LAYERS_QUEUE 64     /* slots found to merge, waiting */

struct layers {
    /* what the last complete pass over the slots found, which the
     * heartbeats report: per snapshot layer (u, up, n), the merge sources
     * held here (merging), the map version the pass began at */
    Cairn__LayerUsage *u, **up;
    size_t n;
    uint64_t *merging;
    size_t nmerging;
    uint64_t pub_version, done_fp;
    /* the pass under way */
    int walking;
    Cairn__LayerUsage *acc;
    size_t nacc;
    uint64_t *acc_merging;
    size_t nacc_merging;
    uint64_t pass_version, pass_fp, pass_cursor;
    int pass_dev;
    size_t freed;
    struct layer_job q[LAYERS_QUEUE];
    size_t nq;
    int busy;          /* a merge of one extent is under way */
    uv_timer_t next;   /* starts the next one from the loop */
    struct flat *flat; /* flatten.c */
    size_t nflat;
    int flat_inflight;
    double flat_tokens;
    uint64_t flat_last;
    Cairn__FlattenProgress *fp, **fpp;
    size_t capfp;
};

void layers_init(struct sds *s);
/* Fill the heartbeat's layers and merging (pointing into s until the next
 * heartbeat); go on merging. */
void layers_heartbeat(struct sds *s, Cairn__Heartbeat *hb);
/* Start merging the next extent of a removed snapshot's layer, or else
 * flattening the next extent of a clone, if any. */
void layers_merge_kick(struct sds *s);
/* ... from the loop, soon. */
void layers_next_soon(struct sds *s);

/* ---- flatten.c: copying what a clone reads through into its head ---- */

/* Start flattening the next extent that needs it; 1 if one started. */
int flatten_kick(struct sds *s);
/* The heartbeat's flatten progress (pointing into s until the next one). */
void flatten_report(struct sds *s, Cairn__Heartbeat *hb);

/* ---- mdm_link.c: the session with the MDM: registration, heartbeat
 * content, maps, leases from heartbeats, the MDM's requests ---- */

void mdm_link_start(struct sds *s);

/* ---- sds_metrics.c: Prometheus metrics (--metrics-listen) ---- */

/* Write every family of the SDS (the metrics server's render callback;
 * data: the sds). Runs on the loop, so it reads the counters directly. */
void sds_metrics_render(struct metrics_out *o, void *data);

/* ---- sds_main.c: options, startup, shutdown, signals; the daemon ---- */

struct sds {
    uv_loop_t *loop;
    const char *name, *listen, *mdm_addr, *data_dir;
    uint32_t my_id;
    Cairn__ClusterMap *map;     /* NULL until one is loaded or fetched */
    struct access_table access; /* built from map when it is installed */
    uint64_t last_map_fetch;
    struct uring_ctx *uring;
    struct dev devs[SDS_MAX_DEVS];
    int ndevs;
    struct rpc_peer *peers[SDS_MAX_PEERS];
    int npeers;

    /* serving */
    struct rpc_server *server;
    struct rpc_server *local_server; /* unix socket for peers on this host */
    char local_addr[128];            /* "unix:PATH", or empty */
    uint64_t local_token;
    struct pool ioreqs;              /* struct ioreq */
    size_t io_memory, io_held;       /* the clients' budget, and what it holds now */
    struct sds_conn *budget_waiting; /* connections not read until it drains */
    struct range_locks *locks;
    uint8_t *zeroes; /* what a ZERO that keeps its allocation writes */
    uint64_t zeroes_len;

    /* the MDM */
    struct mdm_session *mdm;
    Cairn__SdsRegister reg;
    Cairn__DeviceUsage hb_usage[SDS_MAX_DEVS];
    Cairn__DeviceUsage *hb_usagep[SDS_MAX_DEVS];
    Cairn__RebuildStatus hb_rebuild;

    struct leases leases;
    uv_timer_t ping_timer;
    uv_timer_t flush_timer;
    int defer_bits; /* --defer-first-writes: store_set_defer() on every device */
    struct tracking tracking;
    struct rebuild rebuild;
    uint64_t *purged; /* removed volumes whose extents are all freed */
    struct freeze freeze;
    struct layers layers;
    /* CAIRN_TEST_SNAPSHOT_MAP_DELAY_MS (mdm_link.c): a test's slow SDS */
    uint64_t test_snapshot_map_delay_ms;
    struct ioreq *muts; /* primaries' changes in progress */
    size_t npurged;

    /* metrics */
    struct sds_counters counters;
    const char *metrics_listen;
    struct metrics_server *metrics; /* NULL unless --metrics-listen */

    /* Shutdown (sds_main.c): on SIGTERM no new work is taken (data
     * requests are refused, rebuild starts no copy), then the loop runs on
     * until every request, copy and store operation under way has
     * completed, checked at each tick of shutdown_timer; only then the
     * final flush, and the ring is closed once it is done. Stopping the loop
     * with an operation on the ring loses its completion, and with it the
     * operation and its caller. */
    uv_signal_t sigterm, sigint;
    int stopping;
    uv_timer_t shutdown_timer;
    uint64_t shutdown_deadline; /* now_ms() past which it stops regardless */
    int shutdown_flushes;
};

#endif
