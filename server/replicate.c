/* Forwarding a mutation to the other copies of its PG. Each forward is a
 * record embedded in the request (no allocation); its reply ends one part of
 * the write's current stage (write_part_done). */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "rpc_peer.h"
#include "sds.h"
#include "util.h"

/* A copy that did not answer in time is probably down: until the MDM says so
 * (a new map), fail forwards to it at once, so clients retry quickly instead
 * of each waiting out another timeout, and look for that new map. */
#define SUSPECT_MS 1500

static void peer_trouble(struct sds *s, uint32_t sds_id, int status)
{
    struct peer_lease *l = lease_peer(&s->leases, sds_id);
    if (status == -ETIMEDOUT && l) {
        if (now_ms() >= l->suspect_until)
            log_warn("SDS %u did not answer a copy in %u ms; failing copies to it fast for %u ms",
                     sds_id, SDS_FWD_TIMEOUT_MS, SUSPECT_MS);
        l->suspect_since = now_ms();
        l->suspect_until = l->suspect_since + SUSPECT_MS;
    } else {
        log_warn("copy on SDS %u failed: %s", sds_id, strerror(-status));
    }
    map_fetch_soon(s);
}

static int peer_suspected(struct sds *s, uint32_t sds_id)
{
    struct peer_lease *l = lease_peer(&s->leases, sds_id);
    if (!l || now_ms() >= l->suspect_until)
        return 0;
    map_fetch_soon(s);
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
    /* a copy with another map (ESTALE) or no room for us yet (EAGAIN) is not in trouble */
    if (status < 0 && status != -ESTALE && status != -EAGAIN)
        peer_trouble(r->sds, f->sds_id, status);
    write_part_done(r, status);
}

void replicate_forward(struct ioreq *r, int i)
{
    struct sds *s = r->sds;
    uint32_t sds_id = r->t.peers[i];
    if (peer_suspected(s, sds_id)) {
        write_part_done(r, -EHOSTUNREACH);
        return;
    }
    struct rpc_peer *p = map_peer(s, sds_id);
    if (!p) {
        write_part_done(r, -EHOSTUNREACH);
        return;
    }
    struct fwd *f = &r->fwd[i];
    f->req = r;
    f->sds_id = sds_id;
    /* the copy applies it only; the epoch is the PG's here (validate_io) */
    struct io_hdr h = r->io;
    h.flags |= IO_FLAG_REPLICA;
    /* The primary alone judges the writer's fence: a copy that refused what
     * its primary took would leave the copies disagreeing (docs/attach.md) */
    h.writer_gen = 0;
    /* the layer it goes to, as this primary resolved it (docs/snapshots.md) */
    h.layer = r->t.layer;
    uint8_t msg[IO_HDR_MAX];
    uint32_t mlen = io_hdr_encode(&h, msg);
    struct iovec iov = {r->payload, r->payload ? r->io.length : 0};
    int rc = rpc_peer_call(p, r->op, msg, mlen, &iov, r->payload ? 1 : 0, SDS_FWD_TIMEOUT_MS,
                           fwd_reply_cb, f);
    if (rc < 0)
        write_part_done(r, rc);
}
