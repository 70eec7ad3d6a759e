/* Incoming connections and requests: each accepted connection gets its own
 * struct sds_conn; a request is decoded, validated and routed by type; data
 * requests end in dispatch_reply(), the one place their replies go out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "log.h"
#include "sds.h"
#include "util.h"

/* Reading stops for these (rpc_pause reasons). */
#define PAUSE_OWN 1u
#define PAUSE_TOTAL 2u

int dispatch_accept(struct rpc_conn *c, void *server_data)
{
    struct sds_conn *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    sc->sds = server_data;
    sc->sds->counters.conns++;
    sc->conn = c;
    rpc_set_data(c, sc);
    rpc_set_request_limit(c, SDS_CONN_REQUESTS);
    return 0;
}

static void budget_unwait(struct sds *s, struct sds_conn *sc)
{
    if (!sc->over_total)
        return;
    if (sc->wprev)
        sc->wprev->wnext = sc->wnext;
    else
        s->budget_waiting = sc->wnext;
    if (sc->wnext)
        sc->wnext->wprev = sc->wprev;
    sc->wprev = sc->wnext = NULL;
    sc->over_total = 0;
}

void dispatch_close(struct rpc_conn *c)
{
    struct sds_conn *sc = rpc_data(c);
    if (!sc)
        return;
    budget_unwait(sc->sds, sc);
    sc->sds->counters.conns--;
    for (struct ioreq *r = sc->reqs; r; r = r->cnext)
        r->client = NULL;
    /* requests unlink themselves from sc only while r->client is set */
    free(sc);
}

/* ---- flow control ----
 *
 * A request holds its data from the moment it is read (a write's payload)
 * or started (a read's buffer) until its reply is queued: that is what a
 * connection's share and the clients' budget count. Past its share a
 * connection is not read; past the budget, neither is any connection that
 * brings another client request, in the order they came to it, until it has
 * drained to three quarters. (Replies not yet read by the peer are bounded
 * by the RPC layer's own limit.) */

static void count_request(struct sds_conn *sc, struct ioreq *r)
{
    struct sds *s = sc->sds;
    if (r->counted)
        return; /* held by a snapshot's pause, and counted then */
    r->counted = 1;
    /* the buffer it holds (a write's payload, a read's data): TRIM and ZERO
     * hold none */
    int data = r->hdr.type == FT_IO_READ || r->hdr.type == FT_IO_WRITE;
    r->held = data ? rpc_buf_size(r->io.length) : 0;
    sc->held += r->held;
    if (sc->held >= SDS_CONN_BYTES && !sc->over_own) {
        sc->over_own = 1;
        rpc_pause(sc->conn, PAUSE_OWN);
    }
    if (r->io.flags & IO_FLAG_REPLICA)
        return;
    r->counted_total = 1;
    s->io_held += r->held;
    if (s->io_held >= s->io_memory && !sc->over_total) {
        sc->over_total = 1;
        sc->wprev = NULL;
        sc->wnext = s->budget_waiting;
        if (s->budget_waiting)
            s->budget_waiting->wprev = sc;
        s->budget_waiting = sc;
        rpc_pause(sc->conn, PAUSE_TOTAL);
    }
}

static void uncount_request(struct ioreq *r)
{
    struct sds *s = r->sds;
    struct sds_conn *sc = r->client;
    if (sc) {
        sc->held -= r->held;
        if (sc->over_own && sc->held <= SDS_CONN_BYTES / 4 * 3) {
            sc->over_own = 0;
            rpc_resume(sc->conn, PAUSE_OWN);
        }
        if (sc->over_total && sc->reqs == r && !r->cnext) {
            /* its last request: a connection waiting for the budget always
             * has one in progress, so it is never left silent (which its
             * peer would take for a failure), and it gets its turn */
            budget_unwait(s, sc);
            rpc_resume(sc->conn, PAUSE_TOTAL);
        }
    }
    if (r->counted_total) {
        s->io_held -= r->held;
        /* the longest waiting first (the list is newest first: go to its end) */
        struct sds_conn *w = s->budget_waiting;
        while (w && w->wnext)
            w = w->wnext;
        while (w && s->io_held <= s->io_memory / 4 * 3) {
            struct sds_conn *prev = w->wprev;
            budget_unwait(s, w);
            rpc_resume(w->conn, PAUSE_TOTAL);
            w = prev;
        }
    }
    r->held = 0;
    r->counted_total = 0;
}

void dispatch_status(struct rpc_conn *c, const struct frame_hdr *h, int status)
{
    rpc_reply(c, h, status, NULL, 0, NULL, 0, NULL, NULL);
}

static void read_sent_cb(void *arg, int status)
{
    (void)status;
    rpc_buf_free(arg);
}

static void req_free(struct ioreq *r)
{
    uncount_request(r);
    freeze_mut_end(r->sds, r);
    if (r->client) {
        if (r->cprev)
            r->cprev->cnext = r->cnext;
        else
            r->client->reqs = r->cnext;
        if (r->cnext)
            r->cnext->cprev = r->cprev;
    }
    rpc_buf_free(r->payload);
    pool_put(&r->sds->ioreqs, r);
}

/* How the metrics count a request of this type and these flags. */
static enum sds_op op_of(uint16_t type, uint32_t flags)
{
    int rebuild = (flags & IO_FLAG_REBUILD) != 0, replica = (flags & IO_FLAG_REPLICA) != 0;
    switch (type) {
    case FT_IO_READ: return SDS_OP_READ;
    case FT_IO_WRITE:
        return rebuild ? SDS_OP_REBUILD_WRITE : replica ? SDS_OP_REPLICA_WRITE : SDS_OP_WRITE;
    case FT_IO_TRIM:
        return rebuild ? SDS_OP_REBUILD_TRIM : replica ? SDS_OP_REPLICA_TRIM : SDS_OP_TRIM;
    case FT_IO_ZERO: return replica ? SDS_OP_REPLICA_ZERO : SDS_OP_ZERO;
    case FT_IO_STAT: return SDS_OP_STAT;
    default: return SDS_OP_FLUSH;
    }
}

/* Count r, answered now: a few increments, and for a client's read or
 * write the second clock read of the request (the first at its arrival). */
static void count_reply(struct ioreq *r)
{
    struct sds_counters *k = &r->sds->counters;
    k->requests[r->metric]++;
    if (r->status < 0)
        k->errors[r->metric]++;
    if (r->metric == SDS_OP_READ)
        metrics_hist_observe(&k->read_lat, uv_hrtime() - r->arrived);
    else if (r->metric == SDS_OP_WRITE)
        metrics_hist_observe(&k->write_lat, uv_hrtime() - r->arrived);
}

void dispatch_reply(struct ioreq *r)
{
    count_reply(r);
    struct rpc_conn *c = r->client ? r->client->conn : NULL;
    if (c) {
        if (r->rbuf && r->status >= 0) {
            struct iovec iov = {r->rbuf, r->io.length};
            if (rpc_reply(c, &r->hdr, r->status, NULL, 0, &iov, 1, read_sent_cb, r->rbuf) < 0)
                rpc_buf_free(r->rbuf);
            r->rbuf = NULL;
        } else {
            dispatch_status(c, &r->hdr, r->status);
        }
    }
    rpc_buf_free(r->rbuf);
    r->rbuf = NULL;
    req_free(r);
}

/* May the peer on sc send this request? Only an SDC's requests are checked
 * (SDSs forward, rebuild, ping; admins and monitors read, role_may() says
 * what): its credential's name must be an approved SDC of our map with the
 * volume mapped to it, read-write for a change. The answer for the last
 * volume is kept on the connection until the map changes, so the steady
 * state costs two compares. 0, or -EACCES after a rate-limited log line. */
static int access_check(struct sds_conn *sc, uint16_t type, uint64_t volume_id)
{
    struct sds *s = sc->sds;
    if (rpc_peer_role(sc->conn) != AUTH_ROLE_SDC)
        return 0;
    uint64_t version = s->map ? s->map->version : 0;
    if (sc->acc_version != version || sc->acc_volume != volume_id || !version) {
        if (sc->acc_version != version)
            sc->acc_sdc = access_sdc(s->map, rpc_peer_name(sc->conn));
        sc->acc_version = version;
        sc->acc_volume = volume_id;
        sc->acc_mode = access_lookup(&s->access, sc->acc_sdc, volume_id);
    }
    if (access_allows(sc->acc_mode, type))
        return 0;
    const Cairn__Volume *v = s->map ? cmap_volume(s->map, volume_id) : NULL;
    LOG_LIMITED(LOG_WARN, 5000,
                "refused %s from SDC '%s' at %s for volume %llu ('%s'): %s (map version %llu)",
                type == FT_IO_READ || type == FT_IO_STAT ? "a read"
                : type == FT_IO_FLUSH                    ? "a flush"
                                                         : "a change",
                rpc_peer_name(sc->conn), rpc_peer(sc->conn), (unsigned long long)volume_id,
                v ? v->name : "?",
                !sc->acc_sdc                ? "not an approved SDC"
                : sc->acc_mode == ACCESS_RO ? "mapped read-only"
                                            : "not mapped to it",
                (unsigned long long)version);
    map_fetch_soon(s); /* in case ours is the older map (the SDC retries then) */
    return -EACCES;
}

static void io_request(struct sds_conn *sc, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    struct sds *s = sc->sds;
    struct ioreq *r = pool_get(&s->ioreqs);
    if (!r) {
        rpc_buf_free(payload);
        dispatch_status(sc->conn, h, -ENOMEM);
        return;
    }
    r->sds = s;
    r->hdr = *h;
    r->op = h->type;
    r->payload = payload;
    r->client = sc;
    r->cnext = sc->reqs;
    if (sc->reqs)
        sc->reqs->cprev = r;
    sc->reqs = r;
    int rc = io_hdr_decode(msg, h->msg_len, &r->io);
    r->metric = op_of(h->type, rc == 0 ? r->io.flags : 0);
    /* the clock is read only for what the latency histograms time */
    if (r->metric == SDS_OP_READ || r->metric == SDS_OP_WRITE)
        r->arrived = uv_hrtime();
    /* an SDC's I/O is never a replica's or a rebuild's */
    if (rc == 0 && rpc_peer_role(sc->conn) == AUTH_ROLE_SDC &&
        (r->io.flags & (IO_FLAG_REPLICA | IO_FLAG_REBUILD))) {
        LOG_LIMITED(LOG_WARN, 1000, "SDC '%s' at %s sent a replica's or rebuild's request; refused",
                    rpc_peer_name(sc->conn), rpc_peer(sc->conn));
        rc = -EACCES;
    }
    if (rc == 0 && (rc = access_check(sc, h->type, r->io.volume_id)) < 0) {
        r->status = rc;
        dispatch_reply(r);
        return;
    }
    if (rc == 0 && h->type == FT_IO_FLUSH) {
        flush_start(r);
        return;
    }
    if (rc < 0) {
        if (rc != -EACCES) /* refusals of access are logged by access_check */
            log_warn("rejecting a request from %s: %s", rpc_peer(sc->conn), strerror(-rc));
        r->status = rc;
        dispatch_reply(r);
        return;
    }
    dispatch_start(r);
}

void dispatch_start(struct ioreq *r)
{
    struct sds *s = r->sds;
    struct sds_conn *sc = r->client;
    const struct frame_hdr *h = &r->hdr;
    int rc = 0;
    if (!sc || s->stopping) {
        /* held by a snapshot's pause meanwhile: its client is gone, or the
         * SDS is stopping (the sender retries elsewhere) */
        r->status = sc ? -EAGAIN : -ECANCELED;
        dispatch_reply(r);
        return;
    }
    {
        struct io_view v = {.map = s->map,
                            .my_id = s->my_id,
                            .leases = &s->leases,
                            .now = now_ms(),
                            .devs = s->devs,
                            .ndevs = s->ndevs};
        rc = validate_io(&v, h->type, h->payload_len, &r->io, &r->t);
        if (r->t.refresh == MAP_REFRESH_NOW)
            map_fetch(s);
        else if (r->t.refresh == MAP_REFRESH_SOON)
            map_fetch_soon(s);
    }
    if (rc < 0) {
        const Cairn__Volume *fv = rc == -EPERM ? cmap_volume(s->map, r->io.volume_id) : NULL;
        if (fv) /* the writer's fence (docs/attach.md) */
            LOG_LIMITED(LOG_WARN, 1000,
                        "refused a change from %s for volume %llu ('%s'): fenced, another SDC "
                        "took the volume over (writer generation %llu, the map's %llu)",
                        rpc_peer(sc->conn), (unsigned long long)fv->id, fv->name,
                        (unsigned long long)r->io.writer_gen, (unsigned long long)fv->writer_gen);
        else if (rc != -ESTALE && rc != -EAGAIN)
            log_warn("rejecting %s request from %s (vol %llu off %llu len %u): %s",
                     h->type == FT_IO_READ ? "read" : "data", rpc_peer(sc->conn),
                     (unsigned long long)r->io.volume_id, (unsigned long long)r->io.offset,
                     r->io.length, strerror(-rc));
        r->status = rc;
        dispatch_reply(r);
        return;
    }
    if (freeze_refuses(s, r)) {
        /* a snapshot's cut is pausing this volume's changes (freeze.c):
         * held until it is lifted, then validated again (the volume has a
         * new head layer by then), or refused if too many wait already */
        if (freeze_hold(s, r)) {
            count_request(sc, r);
            return;
        }
        r->status = -EAGAIN;
        dispatch_reply(r);
        return;
    }
    if (r->t.role == COPY_PRIMARY && h->type != FT_IO_READ && h->type != FT_IO_STAT)
        freeze_mut_start(s, r);
    r->io.epoch = r->t.epoch; /* a client's older epoch: we serve it in ours */
    count_request(sc, r);
    if (h->type == FT_IO_WRITE && (r->io.flags & IO_FLAG_REBUILD))
        s->rebuild.recv_bytes += r->io.length;
    switch (h->type) {
    case FT_IO_READ: read_start(r); return;
    case FT_IO_STAT: read_stat(r); return;
    default: write_start(r); /* WRITE, TRIM, ZERO */
    }
}

/* Which proved roles may send a request: SDSs anything; SDCs their I/O;
 * the CLI (check-copies) reads and allocation queries of any copy. Any, on
 * a plain link. */
static int role_may(const struct rpc_conn *c, const struct frame_hdr *h)
{
    enum auth_role role = rpc_peer_role(c);
    if (role == AUTH_ROLE_NONE || role == AUTH_ROLE_SDS)
        return 1;
    int io = h->type >= FT_IO_READ && h->type <= FT_IO_STAT;
    if (role == AUTH_ROLE_ADMIN || role == AUTH_ROLE_MONITOR)
        return h->type == FT_IO_READ || h->type == FT_IO_STAT;
    if (role != AUTH_ROLE_SDC)
        return 0;
    /* its I/O flags are checked once decoded (io_request) */
    return io || h->type == FT_LOCAL;
}

void dispatch_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                      uint8_t *payload)
{
    struct sds_conn *sc = rpc_data(c);
    struct sds *s = sc->sds;
    if (!role_may(c, h)) {
        LOG_LIMITED(LOG_WARN, 1000, "%s '%s' at %s may not send request type %u; refused",
                    auth_role_name(rpc_peer_role(c)), rpc_peer_name(c), rpc_peer(c), h->type);
        rpc_buf_free(payload);
        dispatch_status(c, h, -EACCES);
        return;
    }
    if (h->type >= FT_IO_READ && h->type <= FT_IO_STAT) {
        if (s->stopping) {
            /* Shutting down: the requests under way drain, no new one
             * starts (under steady load they never would), and the sender
             * retries, by then elsewhere. */
            rpc_buf_free(payload);
            dispatch_status(c, h, -EAGAIN);
            return;
        }
        io_request(sc, h, msg, payload);
        return;
    }
    rpc_buf_free(payload);
    switch (h->type) {
    case FT_PING: ping_handle(s, c, h, msg); return;
    case FT_PG_LIST: rebuild_serve_pg_list(s, c, h, msg); return;
    case FT_LOCAL:
        if (s->local_server) {
            Cairn__LocalSocket ls = CAIRN__LOCAL_SOCKET__INIT;
            ls.addr = s->local_addr;
            ls.token = s->local_token;
            rpc_reply_pb(c, h, 0, &ls.base);
            return;
        }
        break;
    default: break;
    }
    log_warn("unknown request type %u from %s", h->type, rpc_peer(c));
    dispatch_status(c, h, -EOPNOTSUPP);
}
