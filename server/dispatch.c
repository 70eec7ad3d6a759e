/* Incoming connections and requests: each accepted connection gets its own
 * struct sds_conn; a request is decoded, validated and routed by type; data
 * requests end in dispatch_reply(), the one place their replies go out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sds.h"
#include "util.h"

int dispatch_accept(struct rpc_conn *c, void *server_data)
{
    struct sds_conn *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    sc->sds = server_data;
    sc->conn = c;
    rpc_set_data(c, sc);
    return 0;
}

void dispatch_close(struct rpc_conn *c)
{
    struct sds_conn *sc = rpc_data(c);
    if (!sc)
        return;
    for (struct ioreq *r = sc->reqs; r; r = r->cnext)
        r->client = NULL;
    /* requests unlink themselves from sc only while r->client is set */
    free(sc);
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

void dispatch_reply(struct ioreq *r)
{
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
    if (rc == 0 && h->type == FT_IO_FLUSH) {
        flush_start(r);
        return;
    }
    if (rc == 0) {
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
        if (rc != -ESTALE && rc != -EAGAIN)
            log_warn("rejecting %s request from %s (vol %llu off %llu len %u): %s",
                     h->type == FT_IO_READ ? "read" : "data", rpc_peer(sc->conn),
                     (unsigned long long)r->io.volume_id, (unsigned long long)r->io.offset,
                     r->io.length, strerror(-rc));
        r->status = rc;
        dispatch_reply(r);
        return;
    }
    r->io.epoch = r->t.epoch; /* a client's older epoch: we serve it in ours */
    if (h->type == FT_IO_WRITE && (r->io.flags & IO_FLAG_REBUILD))
        s->rebuild.recv_bytes += r->io.length;
    switch (h->type) {
    case FT_IO_READ: read_start(r); return;
    case FT_IO_STAT: read_stat(r); return;
    default: write_start(r); /* WRITE, TRIM, ZERO */
    }
}

void dispatch_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                      uint8_t *payload)
{
    struct sds_conn *sc = rpc_data(c);
    struct sds *s = sc->sds;
    if (h->type >= FT_IO_READ && h->type <= FT_IO_STAT) {
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
