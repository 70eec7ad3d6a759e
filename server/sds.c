/* cairn-sds: the storage data server.
 *
 * One libuv loop. Requests arrive as frames; data goes to devices through the
 * extent store on io_uring. For a write the primary of the extent's PG orders
 * it against overlapping writes (so every copy applies them in one order),
 * applies it locally and forwards it in parallel to every other copy, and
 * acknowledges only when all copies have it on their devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "cairn.pb-c.h"
#include "cmap.h"
#include "disk_uring.h"
#include "extent_store.h"
#include "log.h"
#include "layout.h"
#include "rpc.h"
#include "mdm_session.h"
#include "rpc_peer.h"
#include "util.h"

#define MAX_DEVS 64
#define MAX_PEERS 1024
#define LOCK_BUCKETS 4096
#define FWD_TIMEOUT_MS 4000 /* a copy slower than this is treated as failed; the SDC retries */

struct dev {
    uint32_t id;
    char path[256];
    struct disk *disk;
    struct extent_store *st;
    int failed;
    char err[256];
};

struct ioreq;
struct rjob;

/* A forward of one request to one other copy. */
struct fwd {
    struct ioreq *req;
    uint32_t sds_id;
};

/* Per client connection: the requests it has in flight, so a closing
 * connection can detach them (their replies are then dropped). */
struct client {
    struct ioreq *reqs;
};

struct ioreq {
    struct rpc_conn *conn;
    struct client *client;
    struct ioreq *cprev, *cnext;
    struct frame_hdr hdr;
    struct io_hdr io;
    uint8_t *payload;
    uint8_t *rbuf;
    struct dev *dev;
    uint64_t ext;
    uint32_t off; /* within the extent */
    uint64_t extent_size;
    uint64_t vol_size;
    int thick;
    int fresh;       /* the extent had no slot here when the write started */
    int rolled_back; /* an ENOSPC write is undoing its fresh allocation */
    uint16_t fwd_type;
    struct rjob *job; /* a rebuild copy, not a client request */
    int pending;
    int status;
    uint32_t peers[8];
    int npeers;
    /* write ordering */
    int locked;
    uint64_t lo, hi;
    struct ioreq *lnext;
};

struct sds {
    uv_loop_t *loop;
    const char *name, *listen, *mdm_addr, *data_dir;
    uint32_t my_id;
    Cairn__ClusterMap *map;
    struct uring_ctx *uring;
    struct dev devs[MAX_DEVS];
    int ndevs;
    struct rpc_peer *peers[MAX_PEERS];
    int npeers;
    struct rpc_server *server;
    struct rpc_server *local_server; /* unix socket for peers on this host */
    char local_addr[128];            /* "unix:PATH", or empty */
    uint64_t local_token;
    struct mdm_session *mdm;
    uv_signal_t sigterm, sigint;
    int stopping;
    int shutdown_flushes;
    uint64_t *purged;
    size_t npurged;
    struct ioreq *locked[LOCK_BUCKETS];
    struct ioreq *lockwait[LOCK_BUCKETS];
    uint8_t *zeroes;
    uint64_t zeroes_len;
    /* rebuild */
    struct rjob *jobs;
    uint64_t rebuild_rate;   /* bytes per second allowed */
    int rebuild_inflight;
    double rebuild_tokens;
    uint64_t rebuild_last_ms;
    uint64_t rebuild_recv_bytes; /* copies received as a rebuild target */
    uint64_t rebuild_done_bytes, rebuild_rate_ewma, rebuild_rate_mark, rebuild_rate_mark_ms;
    uv_timer_t rebuild_timer;
    /* leases: see lease_ok() */
    uint64_t lease_ms;
    uint64_t mdm_lease_until;
    struct lease {
        uint32_t sds_id;
        uint64_t until;      /* lease this peer granted us */
        uint64_t granted_at; /* last lease we granted this peer */
        uint64_t suspect_until; /* a forward timed out: fail fast until then */
    } leases[MAX_PEERS];
    uint64_t last_map_fetch;
    /* change tracking for PGs with departed copies (see dirty_*) */
    struct tracker {
        uint32_t pool_id, pg;
        int complete;
    } *trackers;
    size_t ntrackers;
    struct dirty {
        uint32_t pool_id, pg;
        uint64_t vol, ext;
    } *dirty;
    size_t ndirty, capdirty;
    /* extents changed in the last RECENT_MS: a failure is not announced, so
     * when a copy is found gone, what it may have missed is in here */
    struct recent {
        uint64_t at;
        uint32_t pool_id, pg;
        uint64_t vol, ext;
    } *recent;
    size_t recent_head, recent_len, recent_cap;
    struct fence {
        uint32_t pool_id, pg;
        uint64_t until;
        uint32_t old_primary; /* alive (a planned handover): lifted early once */
        uint64_t version;     /* it shows a map at least this new */
    } *fences;
    size_t nfences;
    uint64_t fence_max;
    uv_timer_t ping_timer;
};

static struct sds S;

/* ---- map ---- */

static struct dev *dev_by_id(uint32_t id)
{
    for (int i = 0; i < S.ndevs; i++)
        if (S.devs[i].id == id)
            return &S.devs[i];
    return NULL;
}

static void attach_device(const Cairn__Device *md, const Cairn__Pool *pool)
{
    if (dev_by_id(md->id) || S.ndevs == MAX_DEVS)
        return;
    struct dev *d = &S.devs[S.ndevs++];
    memset(d, 0, sizeof(*d));
    d->id = md->id;
    snprintf(d->path, sizeof(d->path), "%s", md->path);
    int r = disk_uring_open(S.uring, md->path, &d->disk);
    if (r < 0) {
        snprintf(d->err, sizeof(d->err), "cannot open: %s", strerror(-r));
        goto fail;
    }
    char msg[256];
    r = store_open(d->disk, S.map->cluster_id, d->id, &d->st, msg, sizeof(msg));
    if (r == -ENODATA) {
        log_info("device %u (%s): formatting for cluster %s, %llu-byte extents", d->id, d->path,
                 S.map->cluster_id, (unsigned long long)pool->extent_size);
        r = store_format(d->disk, S.map->cluster_id, d->id, pool->extent_size);
        if (r == 0)
            r = store_open(d->disk, S.map->cluster_id, d->id, &d->st, msg, sizeof(msg));
        else
            snprintf(msg, sizeof(msg), "format failed: %s", strerror(-r));
    }
    if (r < 0) {
        snprintf(d->err, sizeof(d->err), "%s", msg);
        goto fail;
    }
    uint64_t used, total;
    store_usage(d->st, &used, &total);
    log_info("device %u (%s): attached, %llu of %llu extents used", d->id, d->path,
             (unsigned long long)used, (unsigned long long)total);
    return;
fail:
    d->failed = 1;
    log_error("device %u (%s): %s", d->id, d->path, d->err);
}

static void purge_cb(void *arg, int res)
{
    (void)arg;
    if (res < 0)
        log_warn("freeing an extent of a removed volume failed: %s", strerror(-res));
}

/* Free the extents of volumes the MDM has removed. */
static void purge_removed(void)
{
    for (size_t i = 0; i < S.map->n_removed_volumes; i++) {
        uint64_t vol = S.map->removed_volumes[i];
        int done = 0;
        for (size_t j = 0; j < S.npurged && !done; j++)
            done = S.purged[j] == vol;
        if (done)
            continue;
        size_t nfreed = 0;
        for (int k = 0; k < S.ndevs; k++) {
            struct dev *d = &S.devs[k];
            if (d->failed)
                continue;
            uint64_t exts[1024];
            size_t n;
            /* the store forgets freed extents at once, so list until empty */
            while ((n = store_list_volume(d->st, vol, exts, ARRAY_SIZE(exts))) > 0) {
                for (size_t e = 0; e < n; e++)
                    if (store_free(d->st, vol, exts[e], purge_cb, NULL) == 0)
                        nfreed++;
                break; /* frees complete asynchronously; the next tick lists the rest */
            }
        }
        if (nfreed)
            log_info("volume %llu removed: freeing %zu extents",
                     (unsigned long long)vol, nfreed);
        else {
            uint64_t *np = realloc(S.purged, (S.npurged + 1) * sizeof(uint64_t));
            if (np) {
                S.purged = np;
                S.purged[S.npurged++] = vol;
            }
        }
    }
}

/* Keep, on each device, a free slot for every extent of a thick volume that
 * has a copy there and no slot yet: thin volumes can never take them. */
static void update_reservations(void)
{
    for (int k = 0; k < S.ndevs; k++) {
        struct dev *d = &S.devs[k];
        if (d->failed)
            continue;
        uint64_t need = 0;
        for (size_t i = 0; i < S.map->n_volumes; i++) {
            Cairn__Volume *v = S.map->volumes[i];
            Cairn__Pool *p = cmap_pool(S.map, v->pool_id);
            if (!v->thick || !p || !p->n_pgs)
                continue;
            uint64_t next = (v->size + p->extent_size - 1) / p->extent_size;
            for (uint64_t e = 0; e < next; e++) {
                Cairn__Pg *g = p->pgs[layout_pg_of(v->id, e, (uint32_t)p->n_pgs)];
                for (size_t c = 0; c < g->n_devices; c++)
                    if (g->devices[c] == d->id && !store_allocated(d->st, v->id, e))
                        need++;
            }
        }
        store_set_reserved(d->st, need);
    }
}

static void rebuild_sync(void);
static void drop_unowned(const Cairn__ClusterMap *old);
static void fence_new_primaries(const Cairn__ClusterMap *old);
static void trackers_sync(const Cairn__ClusterMap *old);
static void dirty_add(uint32_t pool_id, uint32_t pg, uint64_t vol, uint64_t ext);
static void map_fetch(void);
static void ping_timer_cb(uv_timer_t *t);

static void install_map(Cairn__ClusterMap *m, uint32_t my_id)
{
    if (S.map && m->version < S.map->version) {
        cairn__cluster_map__free_unpacked(m, NULL);
        return;
    }
    Cairn__ClusterMap *old = S.map;
    uint64_t old_version = old ? old->version : 0;
    S.map = m;
    if (!my_id)
        for (size_t i = 0; i < m->n_sds; i++)
            if (!strcmp(m->sds[i]->name, S.name)) /* added since it registered */
                my_id = m->sds[i]->id;
    if (my_id && my_id != S.my_id)
        log_info("this SDS is '%s', id %u", S.name, my_id);
    if (my_id)
        S.my_id = my_id;
    if (S.data_dir) {
        size_t len = cairn__cluster_map__get_packed_size(m);
        uint8_t *buf = malloc(len + 4);
        if (buf) {
            put_be32(buf, S.my_id);
            cairn__cluster_map__pack(m, buf + 4);
            char path[4096];
            snprintf(path, sizeof(path), "%s/map.pb", S.data_dir);
            if (file_write_atomic(path, buf, len + 4) < 0)
                log_warn("cannot save the map to %s", path);
            free(buf);
        }
    }
    for (size_t i = 0; i < m->n_devices; i++) {
        const Cairn__Device *md = m->devices[i];
        if (md->sds_id != S.my_id || !S.my_id)
            continue;
        const Cairn__Pool *p = cmap_pool(S.map, md->pool_id);
        if (p)
            attach_device(md, p);
    }
    for (int i = 0; i < S.npeers; i++) {
        Cairn__Sds *s = cmap_sds(S.map, rpc_peer_id(S.peers[i]));
        if (s)
            rpc_peer_set_addr(S.peers[i], s->addr);
    }
    drop_unowned(old);
    fence_new_primaries(old);
    trackers_sync(old);
    if (old)
        cairn__cluster_map__free_unpacked(old, NULL);
    purge_removed();
    update_reservations();
    rebuild_sync();
    /* tell the peers at once which map we hold: a new primary waiting for a
     * moved one to learn of the move lifts its fence on our ping */
    if (old_version != m->version)
        ping_timer_cb(NULL);
    log_debug("map version %llu installed", (unsigned long long)m->version);
}

static void load_saved_map(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/map.pb", S.data_dir);
    char *buf;
    size_t len;
    if (file_read_all(path, &buf, &len) < 0)
        return;
    if (len >= 4) {
        Cairn__ClusterMap *m = cairn__cluster_map__unpack(NULL, len - 4, (uint8_t *)buf + 4);
        if (m) {
            log_info("serving from the saved map (version %llu) until the MDM answers",
                     (unsigned long long)m->version);
            install_map(m, get_be32((uint8_t *)buf));
        }
    }
    free(buf);
}

/* ---- replies ---- */

static void req_free(struct ioreq *r)
{
    if (r->client) {
        if (r->cprev)
            r->cprev->cnext = r->cnext;
        else
            r->client->reqs = r->cnext;
        if (r->cnext)
            r->cnext->cprev = r->cprev;
    }
    rpc_buf_free(r->payload);
    free(r);
}

static void read_sent_cb(void *arg, int status)
{
    (void)status;
    rpc_buf_free(arg);
}

static void req_reply(struct ioreq *r)
{
    if (r->conn) {
        if (r->rbuf && r->status >= 0) {
            struct iovec iov = {r->rbuf, r->io.length};
            if (rpc_reply(r->conn, &r->hdr, r->status, NULL, 0, &iov, 1, read_sent_cb, r->rbuf) <
                0)
                rpc_buf_free(r->rbuf);
            r->rbuf = NULL;
        } else {
            rpc_reply(r->conn, &r->hdr, r->status, NULL, 0, NULL, 0, NULL, NULL);
        }
    }
    rpc_buf_free(r->rbuf);
    r->rbuf = NULL;
    req_free(r);
}

static void reply_now(struct rpc_conn *c, const struct frame_hdr *h, int status)
{
    rpc_reply(c, h, status, NULL, 0, NULL, 0, NULL, NULL);
}

/* ---- write ordering at the primary ---- */

static uint32_t lock_bucket(uint64_t vol, uint64_t ext)
{
    return (uint32_t)(hash_mix64(vol * 31 + ext) % LOCK_BUCKETS);
}

static int overlaps(const struct ioreq *a, const struct ioreq *b)
{
    return a->io.volume_id == b->io.volume_id && a->ext == b->ext && a->lo < b->hi &&
           b->lo < a->hi;
}

static void start_mutation(struct ioreq *r);

/* Take the range lock, or queue behind whatever overlaps (in arrival order). */
static int lock_or_wait(struct ioreq *r)
{
    uint32_t b = lock_bucket(r->io.volume_id, r->ext);
    /* 4 KiB granularity: unaligned writes read-modify-write whole blocks */
    r->lo = r->off / 4096 * 4096;
    r->hi = (r->off + r->io.length + 4095) / 4096 * 4096;
    if (r->hdr.type == FT_IO_TRIM || r->hdr.type == FT_IO_ZERO) {
        r->lo = 0;
        r->hi = r->extent_size; /* may free the whole extent */
    }
    for (struct ioreq *o = S.locked[b]; o; o = o->lnext)
        if (overlaps(o, r))
            goto wait;
    for (struct ioreq *o = S.lockwait[b]; o; o = o->lnext)
        if (overlaps(o, r))
            goto wait;
    r->locked = 1;
    r->lnext = S.locked[b];
    S.locked[b] = r;
    return 1;
wait: {
    struct ioreq **pp = &S.lockwait[b];
    while (*pp)
        pp = &(*pp)->lnext;
    r->lnext = NULL;
    *pp = r;
    return 0;
}
}

static void unlock(struct ioreq *r)
{
    if (!r->locked)
        return;
    uint32_t b = lock_bucket(r->io.volume_id, r->ext);
    struct ioreq **pp = &S.locked[b];
    while (*pp != r)
        pp = &(*pp)->lnext;
    *pp = r->lnext;
    r->locked = 0;
    /* Start waiters that no longer overlap anything ahead of them. */
    struct ioreq **wp = &S.lockwait[b];
    while (*wp) {
        struct ioreq *w = *wp;
        int blocked = 0;
        for (struct ioreq *o = S.locked[b]; o && !blocked; o = o->lnext)
            blocked = overlaps(o, w);
        for (struct ioreq *o = S.lockwait[b]; o != w && !blocked; o = o->lnext)
            blocked = overlaps(o, w);
        if (blocked) {
            wp = &w->lnext;
            continue;
        }
        *wp = w->lnext;
        w->locked = 1;
        w->lnext = S.locked[b];
        S.locked[b] = w;
        start_mutation(w);
    }
}

/* ---- peers (other copies) ---- */

/* The connection to an SDS of the current map (NULL if the map has no such
 * SDS). install_map() keeps the addresses of known peers current. */
static struct rpc_peer *peer_get(uint32_t sds_id)
{
    Cairn__Sds *ms = S.map ? cmap_sds(S.map, sds_id) : NULL;
    if (!ms)
        return NULL;
    for (int i = 0; i < S.npeers; i++)
        if (rpc_peer_id(S.peers[i]) == sds_id)
            return S.peers[i];
    if (S.npeers == MAX_PEERS)
        return NULL;
    struct rpc_peer *p = rpc_peer_new(S.loop, sds_id);
    if (!p)
        return NULL;
    rpc_peer_set_addr(p, ms->addr);
    S.peers[S.npeers++] = p;
    return p;
}

static void req_part_done(struct ioreq *r, int status);
static struct lease *lease_of(uint32_t sds_id);
static void map_fetch(void);

/* A copy that did not answer in time is probably down: until the MDM says so
 * (a new map), fail forwards to it at once, so clients retry quickly instead
 * of each waiting out another timeout, and look for that new map. */
#define SUSPECT_MS 1500

static void map_fetch_soon(void)
{
    uint64_t now = now_ms();
    if (now - S.last_map_fetch < 250)
        return;
    S.last_map_fetch = now;
    map_fetch();
}

static void peer_trouble(uint32_t sds_id, int status)
{
    struct lease *l = lease_of(sds_id);
    if (status == -ETIMEDOUT && l) {
        if (now_ms() >= l->suspect_until)
            log_warn("SDS %u did not answer a copy in %u ms; failing copies to it fast for %u ms",
                     sds_id, FWD_TIMEOUT_MS, SUSPECT_MS);
        l->suspect_until = now_ms() + SUSPECT_MS;
    } else {
        log_warn("copy on SDS %u failed: %s", sds_id, strerror(-status));
    }
    map_fetch_soon();
}

static int peer_suspected(uint32_t sds_id)
{
    struct lease *l = lease_of(sds_id);
    if (!l || now_ms() >= l->suspect_until)
        return 0;
    map_fetch_soon();
    return 1;
}

static void fwd_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                         uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    struct fwd *f = arg;
    struct ioreq *r = f->req;
    rpc_buf_free(payload);
    if (status < 0 && status != -ESTALE && status != -EAGAIN)
        peer_trouble(f->sds_id, status);
    free(f);
    req_part_done(r, status);
}

static void forward(struct ioreq *r, uint32_t sds_id)
{
    if (peer_suspected(sds_id)) {
        req_part_done(r, -EHOSTUNREACH);
        return;
    }
    struct fwd *f = calloc(1, sizeof(*f));
    struct rpc_peer *p = peer_get(sds_id);
    if (!f || !p) {
        free(f);
        req_part_done(r, -EHOSTUNREACH);
        return;
    }
    f->req = r;
    f->sds_id = sds_id;
    struct io_hdr h = r->io;
    h.flags |= IO_FLAG_REPLICA;
    uint8_t msg[IO_HDR_SIZE];
    io_hdr_encode(&h, msg);
    struct iovec iov = {r->payload, r->payload ? r->io.length : 0};
    int rc = rpc_peer_call(p, r->fwd_type, msg, IO_HDR_SIZE, &iov, r->payload ? 1 : 0,
                           FWD_TIMEOUT_MS, fwd_reply_cb, f);
    if (rc < 0) {
        free(f);
        req_part_done(r, rc);
    }
}

/* ---- leases ----
 *
 * A primary serves reads only while it holds a lease: from the MDM (a
 * heartbeat answered less than lease_ms after it was sent) or from every
 * other in-sync copy of the PG (a ping answered likewise). The MDM marks an
 * SDS down only after a longer silence, so by then its MDM lease is gone, and
 * copies stop granting once their map says it is down. A copy promoted to
 * primary serves no read until lease_ms after the last lease it granted the
 * old primary (a fence). So no read is ever served by a deposed primary after
 * its successor starts serving, and when the MDM alone is unreachable, the
 * copies keep each other's leases alive and I/O goes on.
 */

static struct lease *lease_of(uint32_t sds_id)
{
    struct lease *free_slot = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(S.leases); i++) {
        if (S.leases[i].sds_id == sds_id)
            return &S.leases[i];
        if (!S.leases[i].sds_id && !free_slot)
            free_slot = &S.leases[i];
    }
    if (free_slot)
        *free_slot = (struct lease){.sds_id = sds_id};
    return free_slot;
}

/* Is a PG fenced: just taken over from a primary that may still serve? No
 * client I/O then, reads or writes: a write we took could be missed by a
 * read the old primary serves. */
static int fenced(const Cairn__Pool *p, uint32_t pg)
{
    uint64_t now = now_ms();
    if (now < S.fence_max)
        for (size_t i = 0; i < S.nfences; i++)
            if (S.fences[i].pool_id == p->id && S.fences[i].pg == pg && now < S.fences[i].until)
                return 1;
    return 0;
}

static int lease_ok(const Cairn__Pool *p, uint32_t pg, const Cairn__Pg *g)
{
    uint64_t now = now_ms();
    if (fenced(p, pg))
        return 0;
    if (now < S.mdm_lease_until)
        return 1;
    for (size_t k = 1; k < g->n_devices; k++) {
        Cairn__Device *d = cmap_device(S.map, g->devices[k]);
        struct lease *l = d ? lease_of(d->sds_id) : NULL;
        if (!l || now >= l->until)
            return 0;
    }
    return 1;
}

/* The MDM answered a heartbeat: we were alive to it at sent_ms. That is a
 * lease if our map has every change that took a primary role from us (a map
 * that is merely behind on other changes is fine: while a rebalance runs,
 * the map changes every few milliseconds). */
static void session_heartbeat_ack(void *ctx, uint64_t sent_ms, int map_current,
                                  uint64_t demoted_version)
{
    (void)ctx;
    int ok = map_current || (S.map && S.map->version >= demoted_version);
    if (ok && sent_ms + S.lease_ms > S.mdm_lease_until)
        S.mdm_lease_until = sent_ms + S.lease_ms;
}

struct ping {
    uint32_t sds_id;
    uint64_t sent_ms;
};

static void ping_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                          uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    struct ping *pg = arg;
    rpc_buf_free(payload);
    struct lease *l = lease_of(pg->sds_id);
    if (status == 0 && l && pg->sent_ms + S.lease_ms > l->until)
        l->until = pg->sent_ms + S.lease_ms;
    else if (status == -ESTALE)
        map_fetch(); /* the peer knows a map where we are not up */
    free(pg);
}

static void ping_timer_cb(uv_timer_t *t)
{
    (void)t;
    if (!S.map || !S.my_id)
        return;
    uint8_t msg[12];
    put_be32(msg, S.my_id);
    put_be64(msg + 4, S.map->version);
    for (size_t i = 0; i < S.map->n_sds; i++) {
        Cairn__Sds *o = S.map->sds[i];
        if (o->id == S.my_id || o->state != CAIRN__SDS_STATE__SDS_UP)
            continue;
        struct rpc_peer *p = peer_get(o->id);
        struct ping *pg = malloc(sizeof(*pg));
        if (!p || !pg) {
            free(pg);
            continue;
        }
        pg->sds_id = o->id;
        pg->sent_ms = now_ms();
        if (rpc_peer_call(p, FT_PING, msg, sizeof(msg), NULL, 0, S.lease_ms, ping_reply_cb, pg) < 0)
            free(pg);
    }
}

/* Grant a lease to a peer our map says is up. */
static void handle_ping(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    if (h->msg_len != 12) {
        reply_now(c, h, -EINVAL);
        return;
    }
    uint32_t from = get_be32(msg);
    uint64_t version = get_be64(msg + 4);
    Cairn__Sds *o = cmap_sds(S.map, from);
    if (S.map && version > S.map->version)
        map_fetch();
    /* A map this new no longer makes it primary where we took over: it
     * serves none of those PGs any more, so our fences against it can go. */
    for (size_t i = 0; i < S.nfences; i++)
        if (S.fences[i].old_primary == from && version >= S.fences[i].version)
            S.fences[i].until = 0;

    /* no lease for an SDS that is down, or whose map still makes it primary
     * of a PG that has moved on */
    if (!o || o->state != CAIRN__SDS_STATE__SDS_UP || version < o->demoted_version) {
        reply_now(c, h, -ESTALE);
        return;
    }
    struct lease *l = lease_of(from);
    if (l)
        l->granted_at = now_ms();
    reply_now(c, h, 0);
}

/* After a map change: where this SDS became primary in place of another,
 * fence reads until the leases we granted that SDS have run out. */
static void fence_new_primaries(const Cairn__ClusterMap *old)
{
    uint64_t now = now_ms();
    size_t keep = 0;
    for (size_t i = 0; i < S.nfences; i++)
        if (S.fences[i].until > now)
            S.fences[keep++] = S.fences[i];
    S.nfences = keep;
    if (!old)
        return;
    for (size_t pi = 0; pi < S.map->n_pools; pi++) {
        Cairn__Pool *p = S.map->pools[pi];
        Cairn__Pool *op = cmap_pool(old, p->id);
        for (size_t gi = 0; op && gi < p->n_pgs && gi < op->n_pgs; gi++) {
            uint32_t now_prim = cmap_copy_sds(S.map, p->pgs[gi], 0);
            uint32_t was_prim = cmap_copy_sds(old, op->pgs[gi], 0);
            if (now_prim != S.my_id || !was_prim || was_prim == S.my_id)
                continue;
            /* A primary that was moved (rebalance, drain) is alive and may
             * hold an MDM lease from before the change, up to lease_ms old:
             * wait all of it out. One that failed lost its MDM lease before
             * it was marked down; only what we granted it remains. */
            Cairn__Sds *old_sds = cmap_sds(S.map, was_prim);
            struct lease *l = lease_of(was_prim);
            uint64_t until = (l ? l->granted_at : now) + S.lease_ms + 100;
            /* removed from the cluster counts as alive: it may not know yet */
            int alive = !old_sds || old_sds->state == CAIRN__SDS_STATE__SDS_UP;
            if (alive)
                until = now + S.lease_ms + 100;
            if (until <= now)
                continue;
            struct fence *nf = realloc(S.fences, (S.nfences + 1) * sizeof(*nf));
            if (!nf)
                continue;
            S.fences = nf;
            S.fences[S.nfences++] = (struct fence){(uint32_t)p->id, (uint32_t)gi, until,
                                                   alive ? was_prim : 0, S.map->version};
            S.fence_max = MAX(S.fence_max, until);
        }
    }
}

/* ---- the data path ---- */

/* A write that allocated a fresh extent on some copies and hit ENOSPC on
 * another is undone everywhere, so the copies never disagree about it. */
static int rollback_fresh(struct ioreq *r)
{
    if (r->status != -ENOSPC || !r->fresh || r->rolled_back || (r->io.flags & IO_FLAG_REPLICA) ||
        r->hdr.type == FT_IO_TRIM)
        return 0;
    r->rolled_back = 1;
    rpc_buf_free(r->payload);
    r->payload = NULL;
    r->fwd_type = FT_IO_TRIM;
    r->io.offset = r->ext * r->extent_size;
    r->io.length = (uint32_t)MIN(r->extent_size, r->vol_size - r->io.offset);
    r->off = 0;
    start_mutation(r);
    return 1;
}

static void req_part_done(struct ioreq *r, int status)
{
    if (status < 0 && r->status >= 0 && !r->rolled_back)
        r->status = status;
    if (--r->pending > 0)
        return;
    if (rollback_fresh(r))
        return;
    unlock(r);
    req_reply(r);
}

/* An I/O error from a device fails that device, not the SDS: its requests get
 * EIO from now on (clients retry), and the next heartbeat tells the MDM, which
 * moves its copies elsewhere. */
static void device_error(struct dev *d, int res)
{
    if (d->failed || (res != -EIO && res != -ENXIO && res != -ENODEV && res != -EROFS))
        return;
    d->failed = 1;
    snprintf(d->err, sizeof(d->err), "I/O error: %s", strerror(-res));
    log_error("device %u (%s): %s; no longer used", d->id, d->path, d->err);
}

static void local_done_cb(void *arg, int res)
{
    struct ioreq *r = arg;
    if (res < 0)
        device_error(r->dev, res);
    if (res < 0 && res != -ENOSPC && res != -EINVAL)
        log_error("device %u: vol %llu extent %llu: %s", r->dev->id,
                  (unsigned long long)r->io.volume_id, (unsigned long long)r->ext,
                  strerror(-res));
    req_part_done(r, res);
}

static void local_result(struct ioreq *r, int rc)
{
    if (rc == 0)
        return; /* callback follows */
    req_part_done(r, rc > 0 ? 0 : rc);
}

static void start_local(struct ioreq *r)
{
    struct extent_store *st = r->dev->st;
    uint64_t vol = r->io.volume_id;
    int flags = ((r->io.flags & IO_FLAG_FUA) ? STORE_FUA : 0) | (r->thick ? STORE_THICK : 0);
    /* the whole extent, or all of a volume's shorter last extent */
    int whole = r->off == 0 && (r->io.length == r->extent_size ||
                                r->io.offset + r->io.length == r->vol_size);
    int rc;
    dirty_add(r->io.pool_id, r->io.pg, vol, r->ext);
    switch (r->fwd_type) {
    case FT_IO_WRITE:
        rc = store_write(st, vol, r->ext, r->off, r->io.length, r->payload, flags, local_done_cb,
                         r);
        break;
    case FT_IO_TRIM:
        rc = whole ? store_free(st, vol, r->ext, local_done_cb, r)
                   : 1; /* trim is advisory: partial extents keep their data */
        break;
    case FT_IO_ZERO:
        if (whole && !(r->io.flags & IO_FLAG_NO_HOLE))
            rc = store_free(st, vol, r->ext, local_done_cb, r);
        else if (!store_allocated(st, vol, r->ext) && !(r->io.flags & IO_FLAG_NO_HOLE))
            rc = 1; /* a hole already reads as zeroes */
        else
            rc = store_write(st, vol, r->ext, r->off, r->io.length, S.zeroes, flags,
                             local_done_cb, r);
        break;
    default:
        rc = -EINVAL;
    }
    local_result(r, rc);
}

/* A mutation holding its range lock: apply here and on every other copy. */
static void rebuild_copy_locked(struct ioreq *r);

static void start_mutation(struct ioreq *r)
{
    if (r->job) {
        rebuild_copy_locked(r);
        return;
    }
    if (!r->rolled_back && !(r->io.flags & IO_FLAG_REPLICA))
        r->fresh = !store_allocated(r->dev->st, r->io.volume_id, r->ext);
    r->pending = 1 + ((r->io.flags & IO_FLAG_REPLICA) ? 0 : r->npeers);
    if (!(r->io.flags & IO_FLAG_REPLICA))
        for (int i = 0; i < r->npeers; i++)
            forward(r, r->peers[i]);
    start_local(r);
}

static void flush_done_cb(void *arg, int res)
{
    req_part_done(arg, res);
}

static void handle_flush(struct ioreq *r)
{
    r->pending = 1;
    for (int i = 0; i < S.ndevs; i++) {
        if (S.devs[i].failed)
            continue;
        r->pending++;
        int rc = store_flush(S.devs[i].st, flush_done_cb, r);
        if (rc < 0)
            req_part_done(r, rc);
    }
    req_part_done(r, 0);
}


static int h_type_reads(const struct ioreq *r)
{
    return r->hdr.type == FT_IO_READ || r->hdr.type == FT_IO_STAT;
}

/* Check everything a peer sent before it touches state. Returns 0 or -errno. */
static int validate(struct ioreq *r)
{
    const struct io_hdr *io = &r->io;
    Cairn__Volume *v = cmap_volume(S.map, io->volume_id);
    if (!v) {
        /* The sender may know a volume created after our map: refresh and
         * let it retry (it gives up after its I/O timeout). */
        map_fetch();
        return -EAGAIN;
    }
    Cairn__Pool *p = cmap_pool(S.map, v->pool_id);
    if (!p || p->id != io->pool_id || p->n_pgs == 0)
        return -EINVAL;
    r->extent_size = p->extent_size;
    r->vol_size = v->size;
    r->thick = v->thick;
    if (io->length == 0)
        return -EINVAL;
    if (io->offset > v->size || io->length > v->size - io->offset) {
        /* The sender may know the volume grown; our map may be behind. It
         * retries until its I/O timeout, so a truly bad range still fails. */
        map_fetch_soon();
        return -EAGAIN;
    }
    r->ext = io->offset / p->extent_size;
    r->off = (uint32_t)(io->offset % p->extent_size);
    if (r->off + (uint64_t)io->length > p->extent_size)
        return -EINVAL; /* a request never spans extents */
    uint32_t pg = layout_pg_of(io->volume_id, r->ext, (uint32_t)p->n_pgs);
    if (io->pg != pg)
        return -EINVAL;
    Cairn__Pg *g = p->pgs[pg];
    if (io->epoch > g->epoch) {
        map_fetch(); /* the sender knows a newer map */
        return -ESTALE;
    }
    if (io->epoch < g->epoch) {
        /* A copy must hear from the primary of its own epoch: that is what
         * stops a deposed primary. A client with an older map may still be
         * served by whoever is primary in ours (leases guard its reads), so
         * I/O goes on while the MDM cannot hand out the newest map; its
         * forwards carry our epoch. */
        if (io->flags & IO_FLAG_REPLICA)
            return -ESTALE;
        r->io.epoch = g->epoch;
    }
    /* In-sync copies serve (the first is the primary); rebuilding copies take
     * every write but serve no read. Forward to every other member of both. */
    int mine = -1;
    uint32_t mydev = 0;
    r->npeers = 0;
    for (size_t k = 0; k < g->n_devices + g->n_rebuilding; k++) {
        uint32_t devid = k < g->n_devices ? g->devices[k] : g->rebuilding[k - g->n_devices];
        Cairn__Device *d = cmap_device(S.map, devid);
        if (!d)
            return -ESTALE;
        if (d->sds_id == S.my_id) {
            mine = (int)k;
            mydev = devid;
        } else if (r->npeers < 8) {
            r->peers[r->npeers++] = d->sds_id;
        }
    }
    if (mine < 0 || (mine != 0 && !(io->flags & IO_FLAG_REPLICA)))
        return -ESTALE; /* not a copy here, or not the primary */
    if ((size_t)mine >= g->n_devices && h_type_reads(r))
        return -ESTALE; /* a rebuilding copy serves no read */
    if (mine == 0 && !(io->flags & IO_FLAG_REPLICA) &&
        (h_type_reads(r) ? !lease_ok(p, pg, g) : fenced(p, pg)))
        return -EAGAIN; /* no lease (or fenced): the client retries */
    r->dev = dev_by_id(mydev);
    if (!r->dev || r->dev->failed)
        return -EIO;
    return 0;
}

static void read_done_cb(void *arg, int res)
{
    struct ioreq *r = arg;
    if (res < 0)
        device_error(r->dev, res);
    if (res < 0)
        log_error("device %u: read vol %llu extent %llu: %s", r->dev->id,
                  (unsigned long long)r->io.volume_id, (unsigned long long)r->ext,
                  strerror(-res));
    r->status = res < 0 ? res : 0;
    req_reply(r);
}

static void client_close_cb(struct rpc_conn *c)
{
    struct client *cl = rpc_data(c);
    if (!cl)
        return;
    for (struct ioreq *r = cl->reqs; r; r = r->cnext) {
        r->conn = NULL;
        r->client = NULL;
    }
    /* requests unlink themselves from cl only while r->client is set */
    free(cl);
}

static void handle_io(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                      uint8_t *payload)
{
    struct client *cl = rpc_data(c);
    if (!cl) {
        cl = calloc(1, sizeof(*cl));
        if (!cl) {
            rpc_buf_free(payload);
            rpc_close(c);
            return;
        }
        rpc_set_data(c, cl);
    }
    struct ioreq *r = calloc(1, sizeof(*r));
    if (!r) {
        rpc_buf_free(payload);
        reply_now(c, h, -ENOMEM);
        return;
    }
    r->conn = c;
    r->hdr = *h;
    r->fwd_type = h->type;
    r->payload = payload;
    r->client = cl;
    r->cnext = cl->reqs;
    if (cl->reqs)
        cl->reqs->cprev = r;
    cl->reqs = r;
    int rc = io_hdr_decode(msg, h->msg_len, &r->io);
    if (rc == 0 && h->type == FT_IO_FLUSH) {
        handle_flush(r);
        return;
    }
    if (rc == 0)
        rc = validate(r);
    if (rc == 0 && (h->type == FT_IO_WRITE) != (h->payload_len != 0))
        rc = -EINVAL;
    if (rc == 0 && h->type == FT_IO_WRITE && h->payload_len != r->io.length)
        rc = -EINVAL;
    if (rc < 0) {
        if (rc != -ESTALE && rc != -EAGAIN)
            log_warn("rejecting %s request from %s (vol %llu off %llu len %u): %s",
                     h->type == FT_IO_READ ? "read" : "data", rpc_peer(c),
                     (unsigned long long)r->io.volume_id, (unsigned long long)r->io.offset,
                     r->io.length, strerror(-rc));
        r->status = rc;
        req_reply(r);
        return;
    }
    if (h->type == FT_IO_WRITE && (r->io.flags & IO_FLAG_REBUILD))
        S.rebuild_recv_bytes += r->io.length;
    switch (h->type) {
    case FT_IO_READ:
        r->rbuf = rpc_buf_alloc(r->io.length);
        if (!r->rbuf) {
            r->status = -ENOMEM;
            req_reply(r);
            return;
        }
        rc = store_read(r->dev->st, r->io.volume_id, r->ext, r->off, r->io.length, r->rbuf,
                        read_done_cb, r);
        if (rc != 0) {
            r->status = rc > 0 ? 0 : rc;
            req_reply(r);
        }
        return;
    case FT_IO_STAT:
        r->status = store_allocated(r->dev->st, r->io.volume_id, r->ext);
        req_reply(r);
        return;
    default:
        /* Replicas order overlapping writes too, in arrival order: one TCP
         * connection from the primary carries them in the primary's order, but
         * a write whose forward timed out at the primary may still be queued
         * here ahead of the next one, and two overlapping writes in flight at
         * once could land in either order. */
        if (lock_or_wait(r))
            start_mutation(r);
    }
}

/* ---- MDM session ---- */

/* ---- change tracking while copies are away ----
 *
 * While a PG has departed copies (an SDS in maintenance), every in-sync copy
 * records which extents change, so that the returning copy is sent only
 * those. A record is complete only if this SDS saw the copy leave; otherwise
 * (it restarted meanwhile) the primary compares extent lists instead. */

static struct tracker *tracker_of(uint32_t pool_id, uint32_t pg)
{
    for (size_t i = 0; i < S.ntrackers; i++)
        if (S.trackers[i].pool_id == pool_id && S.trackers[i].pg == pg)
            return &S.trackers[i];
    return NULL;
}

#define RECENT_MS 30000

static void recent_add(uint32_t pool_id, uint32_t pg, uint64_t vol, uint64_t ext)
{
    uint64_t now = now_ms();
    /* drop what is older than the window */
    while (S.recent_len && now - S.recent[S.recent_head].at > RECENT_MS) {
        S.recent_head = (S.recent_head + 1) % S.recent_cap;
        S.recent_len--;
    }
    for (size_t i = 0; i < S.recent_len && i < 32; i++) {
        struct recent *r = &S.recent[(S.recent_head + S.recent_len - 1 - i) % S.recent_cap];
        if (r->vol == vol && r->ext == ext && r->pg == pg && r->pool_id == pool_id) {
            r->at = now; /* still inside the window: refresh in place is enough */
            return;
        }
    }
    if (S.recent_len == S.recent_cap) {
        size_t ncap = S.recent_cap ? S.recent_cap * 2 : 4096;
        struct recent *nr = malloc(ncap * sizeof(*nr));
        if (!nr)
            abort();
        for (size_t i = 0; i < S.recent_len; i++)
            nr[i] = S.recent[(S.recent_head + i) % S.recent_cap];
        free(S.recent);
        S.recent = nr;
        S.recent_cap = ncap;
        S.recent_head = 0;
    }
    S.recent[(S.recent_head + S.recent_len) % S.recent_cap] =
        (struct recent){now, pool_id, pg, vol, ext};
    S.recent_len++;
}

static void dirty_record(uint32_t pool_id, uint32_t pg, uint64_t vol, uint64_t ext);

/* A mutation is about to be applied here. */
static void dirty_add(uint32_t pool_id, uint32_t pg, uint64_t vol, uint64_t ext)
{
    recent_add(pool_id, pg, vol, ext);
    dirty_record(pool_id, pg, vol, ext);
}

static void dirty_record(uint32_t pool_id, uint32_t pg, uint64_t vol, uint64_t ext)
{
    if (!S.ntrackers || !tracker_of(pool_id, pg))
        return;
    for (size_t i = S.ndirty; i-- > 0 && i + 64 >= S.ndirty;)
        if (S.dirty[i].vol == vol && S.dirty[i].ext == ext && S.dirty[i].pg == pg &&
            S.dirty[i].pool_id == pool_id)
            return; /* recently recorded: the common case of repeated writes */
    if (S.ndirty == S.capdirty) {
        S.capdirty = S.capdirty ? S.capdirty * 2 : 1024;
        S.dirty = realloc(S.dirty, S.capdirty * sizeof(*S.dirty));
        if (!S.dirty)
            abort();
    }
    S.dirty[S.ndirty++] = (struct dirty){pool_id, pg, vol, ext};
}

static int pg_has_dev(const uint32_t *arr, size_t n, uint32_t dev)
{
    for (size_t i = 0; i < n; i++)
        if (arr[i] == dev)
            return 1;
    return 0;
}

/* Start, keep or end tracking after a map change. */
static void trackers_sync(const Cairn__ClusterMap *old)
{
    size_t keep = 0;
    for (size_t i = 0; i < S.ntrackers; i++) {
        struct tracker *t = &S.trackers[i];
        Cairn__Pool *p = cmap_pool(S.map, t->pool_id);
        Cairn__Pg *g = p && t->pg < p->n_pgs ? p->pgs[t->pg] : NULL;
        if (g && (g->n_departed || g->n_catchup))
            S.trackers[keep++] = *t;
    }
    if (keep != S.ntrackers) {
        S.ntrackers = keep;
        size_t dk = 0;
        for (size_t i = 0; i < S.ndirty; i++)
            if (tracker_of(S.dirty[i].pool_id, S.dirty[i].pg))
                S.dirty[dk++] = S.dirty[i];
        S.ndirty = dk;
    }
    for (size_t pi = 0; pi < S.map->n_pools; pi++) {
        Cairn__Pool *p = S.map->pools[pi];
        Cairn__Pool *op = old ? cmap_pool(old, p->id) : NULL;
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            if (!g->n_departed || tracker_of(p->id, (uint32_t)gi))
                continue;
            uint32_t mine = 0;
            for (size_t k = 0; k < g->n_devices; k++) {
                Cairn__Device *d = cmap_device(S.map, g->devices[k]);
                if (d && d->sds_id == S.my_id)
                    mine = d->id;
            }
            if (!mine)
                continue;
            /* complete if this SDS saw the departure: in the old map the
             * departed copies and ours were all in-sync */
            Cairn__Pg *og = op && gi < op->n_pgs ? op->pgs[gi] : NULL;
            int complete = og && pg_has_dev(og->devices, og->n_devices, mine);
            for (size_t k = 0; k < g->n_departed && complete; k++)
                complete = pg_has_dev(og->devices, og->n_devices, g->departed[k]);
            struct tracker *nt = realloc(S.trackers, (S.ntrackers + 1) * sizeof(*nt));
            if (!nt)
                abort();
            S.trackers = nt;
            S.trackers[S.ntrackers++] = (struct tracker){p->id, (uint32_t)gi, complete};
            /* A copy that failed (rather than leaving for maintenance) may
             * have missed what changed just before: add that too. */
            int unannounced = 0;
            for (size_t k = 0; k < g->n_departed; k++) {
                Cairn__Device *dd = cmap_device(S.map, g->departed[k]);
                Cairn__Sds *ds = dd ? cmap_sds(S.map, dd->sds_id) : NULL;
                unannounced |= !ds || ds->state != CAIRN__SDS_STATE__SDS_MAINTENANCE;
            }
            for (size_t i = 0; unannounced && i < S.recent_len; i++) {
                struct recent *r = &S.recent[(S.recent_head + i) % S.recent_cap];
                if (r->pool_id == p->id && r->pg == gi)
                    dirty_record(p->id, (uint32_t)gi, r->vol, r->ext);
            }
        }
    }
}

/* FT_PG_LIST: the extents this SDS holds of a PG (for a catch-up compare). */
static void handle_pg_list(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    if (h->msg_len != 8 || !S.map) {
        reply_now(c, h, -EINVAL);
        return;
    }
    uint32_t pool_id = get_be32(msg), pg = get_be32(msg + 4);
    Cairn__Pool *p = cmap_pool(S.map, pool_id);
    if (!p || pg >= p->n_pgs) {
        reply_now(c, h, -ESTALE);
        return;
    }
    size_t n = 0, cap = 1024;
    uint8_t *out = rpc_buf_alloc(cap * 16);
    uint64_t vols[1024], exts[1024];
    for (int di = 0; di < S.ndevs && out; di++) {
        if (S.devs[di].failed)
            continue;
        uint64_t cursor = 0;
        size_t k;
        while ((k = store_list_all(S.devs[di].st, &cursor, vols, exts, 1024)) > 0) {
            for (size_t i = 0; i < k; i++) {
                Cairn__Volume *v = cmap_volume(S.map, vols[i]);
                if (!v || v->pool_id != pool_id ||
                    layout_pg_of(vols[i], exts[i], (uint32_t)p->n_pgs) != pg)
                    continue;
                if (n == cap) {
                    uint8_t *bigger = rpc_buf_alloc(cap * 2 * 16);
                    if (!bigger || cap * 2 * 16 > FRAME_MAX_PAYLOAD) {
                        rpc_buf_free(bigger);
                        rpc_buf_free(out);
                        reply_now(c, h, -E2BIG);
                        return;
                    }
                    memcpy(bigger, out, n * 16);
                    rpc_buf_free(out);
                    out = bigger;
                    cap *= 2;
                }
                put_be64(out + n * 16, vols[i]);
                put_be64(out + n * 16 + 8, exts[i]);
                n++;
            }
        }
    }
    if (!out) {
        reply_now(c, h, -ENOMEM);
        return;
    }
    struct iovec iov = {out, n * 16};
    if (rpc_reply(c, h, 0, NULL, 0, &iov, 1, read_sent_cb, out) < 0)
        rpc_buf_free(out);
}

/* ---- rebuild: a primary fills the rebuilding copies of its PGs ----
 *
 * Each extent is copied under the same range lock client writes take, so a
 * copy never lands after (and over) a newer write: writes that start after
 * the target joined are forwarded to it anyway, and a write already running
 * finishes before the copy reads the extent. When every extent is across,
 * the primary reports the PG to the MDM, which makes the target in-sync.
 */

#define REBUILD_MAX_INFLIGHT 2

struct rjob {
    struct rjob *next;
    uint32_t pool_id, pg, target_dev, target_sds;
    uint64_t *vols, *exts;
    size_t n, cap, next_i;
    int inflight;
    int reporting;
    int cancelled;
    int fresh; /* created by this sync: its extents are being listed */
    int catchup;  /* the target keeps its data: sync only what differs */
    int listing;  /* waiting for the target's extent list */
    uint64_t retry_at;
};

static struct rjob *rjob_find(uint32_t pool_id, uint32_t pg, uint32_t target)
{
    for (struct rjob *j = S.jobs; j; j = j->next)
        if (j->pool_id == pool_id && j->pg == pg && j->target_dev == target && !j->cancelled)
            return j;
    return NULL;
}

static void rjob_unlink_free(struct rjob *j)
{
    struct rjob **pp = &S.jobs;
    while (*pp && *pp != j)
        pp = &(*pp)->next;
    if (*pp)
        *pp = j->next;
    free(j->vols);
    free(j->exts);
    free(j);
}

static void rjob_add_extent(struct rjob *j, uint64_t vol, uint64_t ext)
{
    if (j->n == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 64;
        j->vols = realloc(j->vols, j->cap * sizeof(uint64_t));
        j->exts = realloc(j->exts, j->cap * sizeof(uint64_t));
        if (!j->vols || !j->exts)
            abort();
    }
    j->vols[j->n] = vol;
    j->exts[j->n] = ext;
    j->n++;
}

static void rebuild_pump(void);
static void pg_list_fetch(struct rjob *j);

static int extent_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] != y[1] ? (x[1] < y[1] ? -1 : 1) : 0);
}

/* Sort a job's extents and drop repeats (an extent changed many times is sent once). */
static void rjob_dedupe(struct rjob *j)
{
    uint64_t *pairs = malloc(j->n * 2 * sizeof(uint64_t) + 1);
    if (!pairs)
        return;
    for (size_t i = 0; i < j->n; i++) {
        pairs[2 * i] = j->vols[i];
        pairs[2 * i + 1] = j->exts[i];
    }
    qsort(pairs, j->n, 2 * sizeof(uint64_t), extent_cmp);
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++) {
        if (n && pairs[2 * i] == j->vols[n - 1] && pairs[2 * i + 1] == j->exts[n - 1])
            continue;
        j->vols[n] = pairs[2 * i];
        j->exts[n] = pairs[2 * i + 1];
        n++;
    }
    j->n = n;
    free(pairs);
}

static void rebuild_report_cb(struct rpc_conn *c, int status, const uint8_t *msg,
                              uint32_t msg_len, uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    struct rjob *j = arg;
    rpc_buf_free(payload);
    j->reporting = 0;
    if (status == 0) {
        log_info("PG %u.%u: copy on device %u complete", j->pool_id, j->pg, j->target_dev);
        j->cancelled = 1; /* done: the next map makes the target in-sync */
        return;
    }
    /* The PG moved on (new epoch) or the MDM is away: report again soon. */
    j->retry_at = now_ms() + 500;
    map_fetch();
}

static void rebuild_report(struct rjob *j)
{
    Cairn__Pool *p = cmap_pool(S.map, j->pool_id);
    struct rpc_conn *c = mdm_session_conn(S.mdm);
    if (!p || j->pg >= p->n_pgs || !c) {
        j->retry_at = now_ms() + 1000;
        return;
    }
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_PG_REBUILT;
    req.pool_id = j->pool_id;
    req.pg = j->pg;
    req.device_id = j->target_dev;
    req.epoch = p->pgs[j->pg]->epoch;
    if (rpc_call_pb(c, FT_PG_REBUILT, &req.base, 10000, rebuild_report_cb, j) == 0)
        j->reporting = 1;
    else
        j->retry_at = now_ms() + 1000;
}

static void rebuild_copy_done(struct ioreq *r, int status)
{
    struct rjob *j = r->job;
    if (status == 0) {
        S.rebuild_done_bytes += r->io.length;
    } else if (!j->cancelled) {
        /* try this extent again after a pause (the map may be changing) */
        if (status != -ESTALE && status != -EAGAIN)
            log_warn("PG %u.%u: copying extent %llu/%llu to device %u failed: %s", j->pool_id,
                     j->pg, (unsigned long long)r->io.volume_id, (unsigned long long)r->ext,
                     j->target_dev, strerror(-status));
        rjob_add_extent(j, r->io.volume_id, r->ext);
        j->retry_at = now_ms() + 500;
    }
    unlock(r);
    rpc_buf_free(r->payload);
    free(r);
    j->inflight--;
    S.rebuild_inflight--;
    if (j->cancelled && !j->inflight && !j->reporting && !j->listing)
        rjob_unlink_free(j);
    rebuild_pump();
}

static void rebuild_sent_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                            uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    rpc_buf_free(payload);
    rebuild_copy_done(arg, status);
}

static void rebuild_read_cb(void *arg, int res)
{
    struct ioreq *r = arg;
    struct rjob *j = r->job;
    if (res < 0)
        device_error(r->dev, res);
    if (res < 0 || j->cancelled) {
        rebuild_copy_done(r, res < 0 ? res : 0);
        return;
    }
    struct rpc_peer *p = peer_get(j->target_sds);
    if (!p) {
        rebuild_copy_done(r, -EHOSTUNREACH);
        return;
    }
    uint8_t msg[IO_HDR_SIZE];
    io_hdr_encode(&r->io, msg);
    struct iovec iov = {r->payload, r->io.length};
    int rc = rpc_peer_call(p, FT_IO_WRITE, msg, IO_HDR_SIZE, &iov, 1, FWD_TIMEOUT_MS,
                           rebuild_sent_cb, r);
    if (rc < 0)
        rebuild_copy_done(r, rc);
}

/* The extent's range lock is held: read it and send it to the target (or,
 * catching up, tell the target to free an extent that is a hole here). */
static void rebuild_copy_locked(struct ioreq *r)
{
    if (r->job->cancelled) {
        rebuild_copy_done(r, 0);
        return;
    }
    if (r->job->catchup && !store_allocated(r->dev->st, r->io.volume_id, r->ext)) {
        struct rpc_peer *p = peer_get(r->job->target_sds);
        if (!p) {
            rebuild_copy_done(r, -EHOSTUNREACH);
            return;
        }
        uint8_t msg[IO_HDR_SIZE];
        io_hdr_encode(&r->io, msg);
        int rc = rpc_peer_call(p, FT_IO_TRIM, msg, IO_HDR_SIZE, NULL, 0, FWD_TIMEOUT_MS,
                               rebuild_sent_cb, r);
        if (rc < 0)
            rebuild_copy_done(r, rc);
        return;
    }
    r->payload = rpc_buf_alloc(r->io.length);
    if (!r->payload) {
        rebuild_copy_done(r, -ENOMEM);
        return;
    }
    int rc = store_read(r->dev->st, r->io.volume_id, r->ext, 0, r->io.length, r->payload,
                        rebuild_read_cb, r);
    if (rc == 1)
        rebuild_copy_done(r, 0); /* freed since it was listed: the target got the free */
    else if (rc < 0)
        rebuild_copy_done(r, rc);
}

/* Start copying the next extent of j; 0 if it has none ready. */
static int rebuild_start_one(struct rjob *j)
{
    Cairn__Pool *p = cmap_pool(S.map, j->pool_id);
    if (!p || j->pg >= p->n_pgs)
        return 0;
    Cairn__Pg *g = p->pgs[j->pg];
    struct dev *d = g->n_devices ? dev_by_id(g->devices[0]) : NULL;
    while (j->next_i < j->n) {
        uint64_t vol = j->vols[j->next_i], ext = j->exts[j->next_i];
        j->next_i++;
        Cairn__Volume *v = cmap_volume(S.map, vol);
        if (!v || !d || ext * p->extent_size >= v->size)
            continue; /* volume removed or shrunk away since listing */
        struct ioreq *r = calloc(1, sizeof(*r));
        if (!r)
            return 0;
        r->job = j;
        r->dev = d;
        r->ext = ext;
        r->off = 0;
        r->extent_size = p->extent_size;
        r->vol_size = v->size;
        r->thick = v->thick;
        r->hdr.type = FT_IO_WRITE;
        r->fwd_type = FT_IO_WRITE;
        r->io = (struct io_hdr){.volume_id = vol,
                                .offset = ext * p->extent_size,
                                .length = (uint32_t)MIN(p->extent_size, v->size - ext * p->extent_size),
                                .flags = IO_FLAG_REPLICA | IO_FLAG_REBUILD,
                                .pool_id = p->id,
                                .pg = j->pg,
                                .epoch = g->epoch};
        j->inflight++;
        S.rebuild_inflight++;
        S.rebuild_tokens -= (double)r->io.length;
        if (lock_or_wait(r))
            rebuild_copy_locked(r);
        return 1;
    }
    return 0;
}

static void rebuild_pump(void)
{
    uint64_t now = now_ms();
    if (S.rebuild_last_ms) {
        S.rebuild_tokens += (double)S.rebuild_rate * (double)(now - S.rebuild_last_ms) / 1000.0;
        if (S.rebuild_tokens > (double)S.rebuild_rate / 4)
            S.rebuild_tokens = (double)S.rebuild_rate / 4; /* at most a quarter second's burst */
    }
    S.rebuild_last_ms = now;
    for (struct rjob *j = S.jobs, *next; j; j = next) {
        next = j->next;
        if (j->cancelled) {
            if (!j->inflight && !j->reporting && !j->listing)
                rjob_unlink_free(j);
            continue;
        }
        if (j->retry_at > now)
            continue;
        if (j->listing)
            continue;
        while (S.rebuild_inflight < REBUILD_MAX_INFLIGHT && S.rebuild_tokens > 0 &&
               rebuild_start_one(j))
            ;
        if (j->next_i == j->n && !j->inflight && !j->reporting)
            rebuild_report(j);
    }
}

static void rebuild_timer_cb(uv_timer_t *t)
{
    (void)t;
    /* recent rate, for the CLI's ETA */
    uint64_t now = now_ms();
    if (now - S.rebuild_rate_mark_ms >= 2000) {
        uint64_t rate = (S.rebuild_done_bytes - S.rebuild_rate_mark) * 1000 /
                        (now - S.rebuild_rate_mark_ms);
        S.rebuild_rate_ewma = (S.rebuild_rate_ewma + rate) / 2;
        S.rebuild_rate_mark = S.rebuild_done_bytes;
        S.rebuild_rate_mark_ms = now;
    }
    if (S.jobs)
        rebuild_pump();
}

static void pg_list_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                       uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    struct rjob *j = arg;
    j->listing = 0;
    if (status < 0 || payload_len % 16) {
        j->retry_at = now_ms() + 1000;
        rpc_buf_free(payload);
        if (!j->cancelled)
            pg_list_fetch(j); /* try again; the job cannot finish without it */
        else if (!j->inflight && !j->reporting)
            rjob_unlink_free(j);
        return;
    }
    for (uint32_t i = 0; i < payload_len / 16; i++)
        rjob_add_extent(j, get_be64(payload + i * 16), get_be64(payload + i * 16 + 8));
    rpc_buf_free(payload);
    rjob_dedupe(j);
    log_info("PG %u.%u: catching device %u up by comparing %zu extents", j->pool_id, j->pg,
             j->target_dev, j->n);
    rebuild_pump();
}

static void pg_list_fetch(struct rjob *j)
{
    struct rpc_peer *p = peer_get(j->target_sds);
    if (!p)
        return;
    uint8_t msg[8];
    put_be32(msg, j->pool_id);
    put_be32(msg + 4, j->pg);
    j->listing = 1;
    if (rpc_peer_call(p, FT_PG_LIST, msg, 8, NULL, 0, 30000, pg_list_cb, j) < 0)
        j->listing = 0;
}

/* After a map change: start, keep or drop rebuild jobs for the PGs this SDS
 * leads, listing the extents of new jobs in one pass over the stores. */
static void rebuild_sync(void)
{
    for (struct rjob *j = S.jobs; j; j = j->next) {
        Cairn__Pool *p = cmap_pool(S.map, j->pool_id);
        Cairn__Pg *g = p && j->pg < p->n_pgs ? p->pgs[j->pg] : NULL;
        Cairn__Device *prim = g && g->n_devices ? cmap_device(S.map, g->devices[0]) : NULL;
        int still = prim && prim->sds_id == S.my_id;
        int target = 0;
        for (size_t k = 0; g && k < g->n_rebuilding; k++)
            target |= g->rebuilding[k] == j->target_dev;
        if (!still || !target)
            j->cancelled = 1;
    }
    int added = 0;
    for (size_t pi = 0; pi < S.map->n_pools; pi++) {
        Cairn__Pool *p = S.map->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            if (!g->n_rebuilding || !g->n_devices)
                continue;
            Cairn__Device *prim = cmap_device(S.map, g->devices[0]);
            struct dev *d = prim ? dev_by_id(prim->id) : NULL;
            if (!prim || prim->sds_id != S.my_id || !d || d->failed)
                continue;
            for (size_t k = 0; k < g->n_rebuilding; k++) {
                if (rjob_find(p->id, (uint32_t)gi, g->rebuilding[k]))
                    continue;
                Cairn__Device *t = cmap_device(S.map, g->rebuilding[k]);
                struct rjob *j = calloc(1, sizeof(*j));
                if (!t || !j) {
                    free(j);
                    continue;
                }
                j->pool_id = p->id;
                j->pg = (uint32_t)gi;
                j->target_dev = t->id;
                j->target_sds = t->sds_id;
                j->next = S.jobs;
                S.jobs = j;
                j->catchup = pg_has_dev(g->catchup, g->n_catchup, t->id);
                struct tracker *tr = tracker_of(p->id, (uint32_t)gi);
                if (j->catchup && tr && tr->complete) {
                    /* only what changed while it was away */
                    for (size_t i = 0; i < S.ndirty; i++)
                        if (S.dirty[i].pool_id == p->id && S.dirty[i].pg == gi)
                            rjob_add_extent(j, S.dirty[i].vol, S.dirty[i].ext);
                    rjob_dedupe(j);
                    log_info("PG %u.%zu: catching device %u up: %zu changed extents", p->id, gi,
                             t->id, j->n);
                } else {
                    /* everything here, plus whatever the target has that we do not */
                    j->fresh = 1;
                    if (j->catchup)
                        pg_list_fetch(j);
                    added++;
                }
            }
        }
    }
    if (added) {
        uint64_t vols[1024], exts[1024];
        for (int di = 0; di < S.ndevs; di++) {
            if (S.devs[di].failed)
                continue;
            uint64_t cursor = 0;
            size_t n;
            while ((n = store_list_all(S.devs[di].st, &cursor, vols, exts, 1024)) > 0) {
                for (size_t i = 0; i < n; i++) {
                    Cairn__Volume *v = cmap_volume(S.map, vols[i]);
                    Cairn__Pool *p = v ? cmap_pool(S.map, v->pool_id) : NULL;
                    if (!p || !p->n_pgs)
                        continue;
                    uint32_t pg = layout_pg_of(vols[i], exts[i], (uint32_t)p->n_pgs);
                    if (p->pgs[pg]->n_devices && p->pgs[pg]->devices[0] != S.devs[di].id)
                        continue;
                    for (struct rjob *j = S.jobs; j; j = j->next)
                        if (j->fresh && j->pool_id == p->id && j->pg == pg)
                            rjob_add_extent(j, vols[i], exts[i]);
                }
            }
        }
        for (struct rjob *j = S.jobs; j; j = j->next)
            j->fresh = 0;
        log_info("rebuild: leading %d new PG copies", added);
    }
    rebuild_pump();
}

static int pg_member(const Cairn__Pg *g, uint32_t dev)
{
    return pg_has_dev(g->devices, g->n_devices, dev) ||
           pg_has_dev(g->rebuilding, g->n_rebuilding, dev) ||
           pg_has_dev(g->departed, g->n_departed, dev);
}

static int pg_full_target(const Cairn__Pg *g, uint32_t dev)
{
    return pg_has_dev(g->rebuilding, g->n_rebuilding, dev) &&
           !pg_has_dev(g->catchup, g->n_catchup, dev);
}

/* Should this device drop what it holds of PG pg of pool p? Yes if the PG no
 * longer counts it as a copy (moved away by a rebalance or drain, given up
 * after a failure), or if it just became a full-rebuild target (whatever it
 * kept from an earlier membership is stale: the copy starts empty). */
static int pg_drops(const Cairn__ClusterMap *old, const Cairn__Pool *p, uint32_t pg, uint32_t dev)
{
    const Cairn__Pg *g = p->pgs[pg];
    if (!pg_member(g, dev))
        return 1;
    const Cairn__Pool *op = old ? cmap_pool(old, p->id) : NULL;
    int before = op && pg < op->n_pgs && pg_full_target(op->pgs[pg], dev);
    return pg_full_target(g, dev) && !before;
}

static void drop_unowned(const Cairn__ClusterMap *old)
{
    /* a pass over the stores only if some PG changed that way for us */
    int any = !old;
    for (size_t pi = 0; pi < S.map->n_pools && !any; pi++) {
        Cairn__Pool *p = S.map->pools[pi];
        const Cairn__Pool *op = old ? cmap_pool(old, p->id) : NULL;
        for (size_t gi = 0; gi < p->n_pgs && !any; gi++)
            for (int di = 0; di < S.ndevs && !any; di++) {
                uint32_t id = S.devs[di].id;
                int was = op && gi < op->n_pgs && pg_member(op->pgs[gi], id);
                any = pg_drops(old, p, (uint32_t)gi, id) && (was || pg_member(p->pgs[gi], id));
            }
    }
    if (!any)
        return;
    for (int di = 0; di < S.ndevs; di++) {
        struct dev *d = &S.devs[di];
        Cairn__Device *md = cmap_device(S.map, d->id);
        if (d->failed || !md)
            continue;
        uint64_t vols[1024], exts[1024];
        uint64_t cursor = 0;
        size_t n, dropped = 0;
        while ((n = store_list_all(d->st, &cursor, vols, exts, 1024)) > 0) {
            for (size_t i = 0; i < n; i++) {
                Cairn__Volume *v = cmap_volume(S.map, vols[i]);
                Cairn__Pool *p = v ? cmap_pool(S.map, v->pool_id) : NULL;
                if (!p || !p->n_pgs || p->id != md->pool_id)
                    continue;
                uint32_t pg = layout_pg_of(vols[i], exts[i], (uint32_t)p->n_pgs);
                if (pg_drops(old, p, pg, d->id) &&
                    store_free(d->st, vols[i], exts[i], purge_cb, NULL) == 0)
                    dropped++;
            }
        }
        if (dropped)
            log_info("device %u: dropped %zu extents of PGs it no longer holds or rebuilds "
                     "afresh",
                     d->id, dropped);
    }
}

static void handle_probe(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    Cairn__DeviceProbe *p = cairn__device_probe__unpack(NULL, h->msg_len, msg);
    Cairn__DeviceProbeReply rep = CAIRN__DEVICE_PROBE_REPLY__INIT;
    char err[512] = "";
    int status = 0;
    uint64_t size = 0;
    if (!p) {
        snprintf(err, sizeof(err), "malformed probe");
        status = -EINVAL;
        goto out;
    }
    int r = disk_probe_size(p->path, &size);
    if (r == -ENOENT) {
        snprintf(err, sizeof(err), "%s does not exist on this host", p->path);
        status = r;
    } else if (r == -ENOTBLK) {
        snprintf(err, sizeof(err), "%s is not a regular file or a block device", p->path);
        status = r;
    } else if (r < 0) {
        snprintf(err, sizeof(err), "cannot inspect %s: %s", p->path, strerror(-r));
        status = r;
    } else if (size < (64u << 20)) {
        snprintf(err, sizeof(err), "%s is too small (%llu bytes; at least 64 MiB)", p->path,
                 (unsigned long long)size);
        status = -EINVAL;
    } else {
        for (int i = 0; i < S.ndevs; i++)
            if (!strcmp(S.devs[i].path, p->path)) {
                snprintf(err, sizeof(err), "%s is already attached as device %u", p->path,
                         S.devs[i].id);
                status = -EEXIST;
            }
        int fd = status ? -1 : open(p->path, O_RDWR | O_DIRECT | O_CLOEXEC);
        if (!status && fd < 0) {
            snprintf(err, sizeof(err), "cannot open %s for direct I/O: %s", p->path,
                     strerror(errno));
            status = -errno;
        }
        if (fd >= 0) {
            void *sb = NULL;
            if (posix_memalign(&sb, 4096, 4096) == 0 && pread(fd, sb, 4096, 0) == 4096 &&
                !memcmp(sb, "CAIRNDEV", 8)) {
                snprintf(err, sizeof(err),
                         "%s already holds a Cairn device (cluster %.40s, device %u); wipe "
                         "it before reuse",
                         p->path, (char *)sb + 64, get_be32((uint8_t *)sb + 12));
                status = -EEXIST;
            }
            free(sb);
            close(fd);
        }
    }
out:
    rep.error = err;
    rep.capacity = size & ~(uint64_t)4095;
    rpc_reply_pb(c, h, status, &rep.base);
    if (p)
        cairn__device_probe__free_unpacked(p, NULL);
}

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    if (h->type >= FT_IO_READ && h->type <= FT_IO_STAT) {
        handle_io(c, h, msg, payload);
        return;
    }
    if (h->type == FT_PING) {
        rpc_buf_free(payload);
        handle_ping(c, h, msg);
        return;
    }
    if (h->type == FT_PG_LIST) {
        rpc_buf_free(payload);
        handle_pg_list(c, h, msg);
        return;
    }
    if (h->type == FT_LOCAL && S.local_server) {
        rpc_buf_free(payload);
        Cairn__LocalSocket ls = CAIRN__LOCAL_SOCKET__INIT;
        ls.addr = S.local_addr;
        ls.token = S.local_token;
        rpc_reply_pb(c, h, 0, &ls.base);
        return;
    }
    (void)msg;
    rpc_buf_free(payload);
    log_warn("unknown request type %u from %s", h->type, rpc_peer(c));
    reply_now(c, h, -EOPNOTSUPP);
}

static void session_on_map(void *ctx, Cairn__MapReply *rep)
{
    (void)ctx;
    Cairn__ClusterMap *m = rep->map;
    uint32_t id = rep->sds_id;
    rep->map = NULL;
    cairn__map_reply__free_unpacked(rep, NULL);
    install_map(m, id);
}

static void map_fetch(void)
{
    mdm_session_fetch_map(S.mdm);
}

static uint64_t session_map_version(void *ctx)
{
    (void)ctx;
    return S.map ? S.map->version : 0;
}

static const ProtobufCMessage *session_registration(void *ctx)
{
    (void)ctx;
    static Cairn__SdsRegister reg = CAIRN__SDS_REGISTER__INIT;
    reg.name = (char *)S.name;
    reg.addr = (char *)S.listen;
    return &reg.base;
}

static void session_heartbeat(void *ctx, Cairn__Heartbeat *hb)
{
    (void)ctx;
    static Cairn__DeviceUsage u[MAX_DEVS];
    static Cairn__DeviceUsage *up[MAX_DEVS];
    hb->sds_id = S.my_id;
    for (int i = 0; i < S.ndevs; i++) {
        cairn__device_usage__init(&u[i]);
        up[i] = &u[i];
        u[i].device_id = S.devs[i].id;
        u[i].failed = S.devs[i].failed;
        if (!S.devs[i].failed) {
            store_usage(S.devs[i].st, &u[i].used_extents, &u[i].total_extents);
            hb->enospc_count += store_enospc(S.devs[i].st);
        }
    }
    hb->n_usage = (size_t)S.ndevs;
    hb->usage = up;
    static Cairn__RebuildStatus rs;
    cairn__rebuild_status__init(&rs);
    for (struct rjob *j = S.jobs; j; j = j->next) {
        if (j->cancelled)
            continue;
        Cairn__Pool *p = cmap_pool(S.map, j->pool_id);
        rs.pgs_left++;
        rs.bytes_left += (j->n - j->next_i + (size_t)j->inflight) * (p ? p->extent_size : 0);
    }
    rs.bytes_done = S.rebuild_done_bytes;
    rs.bytes_received = S.rebuild_recv_bytes;
    rs.rate = S.rebuild_rate_ewma;
    hb->rebuild = &rs;
    if (S.map)
        purge_removed(); /* continue freeing removed volumes, 1024 extents a tick */
}

static void session_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                            uint8_t *payload)
{
    rpc_buf_free(payload);
    if (h->type == FT_DEVICE_PROBE) {
        handle_probe(c, h, msg);
        return;
    }
    log_warn("unknown request type %u from the MDM", h->type);
    reply_now(c, h, -EOPNOTSUPP);
}

/* ---- startup and shutdown ---- */

static void shutdown_flush_cb(void *arg, int res)
{
    (void)arg;
    if (res < 0)
        log_error("final flush failed: %s", strerror(-res));
    if (--S.shutdown_flushes == 0) {
        uring_ctx_close(S.uring);
        uv_stop(S.loop);
    }
}

static void signal_cb(uv_signal_t *sig, int signum)
{
    (void)sig;
    if (S.stopping)
        return;
    S.stopping = 1;
    log_info("signal %d: shutting down", signum);
    if (S.server)
        rpc_server_close(S.server);
    if (S.local_server) {
        rpc_server_close(S.local_server);
        unlink(S.local_addr + 5);
    }
    mdm_session_stop(S.mdm);
    uv_timer_stop(&S.rebuild_timer);
    uv_close((uv_handle_t *)&S.rebuild_timer, NULL);
    uv_timer_stop(&S.ping_timer);
    uv_close((uv_handle_t *)&S.ping_timer, NULL);
    for (int i = 0; i < S.npeers; i++)
        rpc_peer_close(S.peers[i]);
    uv_close((uv_handle_t *)&S.sigterm, NULL);
    uv_close((uv_handle_t *)&S.sigint, NULL);
    /* Acknowledged data is already on the devices (O_DIRECT); a last flush
     * makes the device caches durable too. The loop stops when it is done. */
    S.shutdown_flushes = 1;
    for (int i = 0; i < S.ndevs; i++)
        if (!S.devs[i].failed && store_flush(S.devs[i].st, shutdown_flush_cb, NULL) == 0)
            S.shutdown_flushes++;
    shutdown_flush_cb(NULL, 0);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cairn-sds --name NAME --listen HOST:PORT --mdm HOST:PORT --data-dir DIR\n"
            "                 [--rebuild-rate MIB_PER_S] [--local-socket PATH|none] [--pidfile FILE] [-v]\n"
            "  --rebuild-rate  bandwidth this SDS spends copying data to new copies (default 64)\n"
            "  --local-socket  unix socket that SDCs and SDSs on this host use instead of TCP\n"
            "                  (default DATA-DIR/sds.sock)\n");
    exit(2);
}

static void accept_close_cb(struct rpc_conn *c);

/* Peers on this host find the unix socket through FT_LOCAL on their TCP
 * connection and move to it; without one they stay on TCP. */
static void listen_local(const char *path, const struct rpc_handlers *h)
{
    char def[512];
    if (path && !strcmp(path, "none"))
        return;
    if (!path) {
        snprintf(def, sizeof(def), "%s/sds.sock", S.data_dir);
        path = def;
    }
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        log_warn("local socket path %s is too long for a unix socket; peers on this host use TCP",
                 path);
        return;
    }
    snprintf(S.local_addr, sizeof(S.local_addr), "unix:%s", path);
    if (getrandom(&S.local_token, sizeof(S.local_token), 0) != sizeof(S.local_token))
        S.local_token = ((uint64_t)getpid() << 32) ^ now_ms();
    int r = rpc_listen(S.loop, S.local_addr, h, NULL, &S.local_server);
    if (r < 0) {
        log_warn("cannot listen on %s: %s; peers on this host use TCP", S.local_addr,
                 uv_strerror(r));
        S.local_server = NULL;
        S.local_addr[0] = 0;
        return;
    }
    chmod(path, 0600);
}

static void accept_close_cb(struct rpc_conn *c)
{
    client_close_cb(c);
}

int main(int argc, char **argv)
{
    const char *pidfile = NULL;
    int verbose = 0;
    static const struct option opts[] = {
        {"name", 1, 0, 'n'},    {"listen", 1, 0, 'l'}, {"mdm", 1, 0, 'm'}, {"data-dir", 1, 0, 'd'},
        {"pidfile", 1, 0, 'p'}, {"verbose", 0, 0, 'v'}, {"help", 0, 0, 'h'},
        {"rebuild-rate", 1, 0, 'r'}, {"local-socket", 1, 0, 'L'}, {0, 0, 0, 0}};
    const char *local = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "n:l:m:d:p:r:vh", opts, NULL)) != -1) {
        switch (o) {
        case 'n': S.name = optarg; break;
        case 'l': S.listen = optarg; break;
        case 'm': S.mdm_addr = optarg; break;
        case 'd': S.data_dir = optarg; break;
        case 'p': pidfile = optarg; break;
        case 'r': S.rebuild_rate = (uint64_t)atof(optarg) << 20; break;
        case 'L': local = optarg; break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    if (!S.rebuild_rate)
        S.rebuild_rate = 64ull << 20;
    S.lease_ms = 2000; /* must stay below the MDM's --sds-timeout (default 4 s) */
    if (!S.name || !S.listen || !S.mdm_addr || !S.data_dir || optind != argc)
        usage();
    log_init("cairn-sds", verbose ? LOG_DEBUG : LOG_INFO);
    signal(SIGPIPE, SIG_IGN);
    if (mkdir(S.data_dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", S.data_dir, strerror(errno));
        return 1;
    }
    S.loop = uv_default_loop();
    S.zeroes_len = 32u << 20;
    S.zeroes = rpc_buf_alloc(S.zeroes_len);
    memset(S.zeroes, 0, S.zeroes_len);
    int r = uring_ctx_init(S.loop, 512, &S.uring);
    if (r < 0) {
        log_error("io_uring setup failed: %s", strerror(-r));
        return 1;
    }
    load_saved_map();
    static const struct rpc_handlers h = {.on_request = on_request, .on_close = accept_close_cb};
    r = rpc_listen(S.loop, S.listen, &h, NULL, &S.server);
    if (r < 0) {
        log_error("cannot listen on %s: %s", S.listen, uv_strerror(r));
        return 1;
    }
    listen_local(local, &h);
    static const struct mdm_session_ops ops = {.register_type = FT_SDS_REGISTER,
                                               .registration = session_registration,
                                               .heartbeat = session_heartbeat,
                                               .on_map = session_on_map,
                                               .map_version = session_map_version,
                                               .on_heartbeat_ack = session_heartbeat_ack,
                                               .on_request = session_request};
    S.mdm = mdm_session_start(S.loop, S.mdm_addr, &ops, NULL, 1000);
    uv_timer_init(S.loop, &S.rebuild_timer);
    uv_timer_start(&S.rebuild_timer, rebuild_timer_cb, 100, 100);
    uv_timer_init(S.loop, &S.ping_timer);
    uv_timer_start(&S.ping_timer, ping_timer_cb, 0, 500);
    uv_signal_init(S.loop, &S.sigterm);
    uv_signal_init(S.loop, &S.sigint);
    uv_signal_start(&S.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&S.sigint, signal_cb, SIGINT);
    log_info("SDS '%s' listening on %s%s%s, MDM %s", S.name, S.listen, S.local_addr[0] ? " and " : "",
             S.local_addr + (S.local_addr[0] ? 5 : 0), S.mdm_addr);
    if (pidfile) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        file_write_atomic(pidfile, buf, strlen(buf));
    }
    uv_run(S.loop, UV_RUN_DEFAULT);
    log_info("SDS '%s' stopped", S.name);
    return 0;
}
