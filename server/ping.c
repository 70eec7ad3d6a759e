/* Leases between copies: every 500 ms (and at once after a map change) this
 * SDS pings every SDS its map says is up; an answer within lease_ms is a
 * lease from that peer. A peer's ping is answered with a lease of ours, or
 * refused (lease.c decides). */
#include <errno.h>
#include <stdlib.h>

#include "cmap.h"
#include "rpc_peer.h"
#include "sds.h"
#include "util.h"

/* One ping in flight (the rpc call's arg). */
struct ping {
    struct sds *sds;
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
    struct sds *s = pg->sds;
    rpc_buf_free(payload);
    if (status == 0)
        lease_peer_ack(&s->leases, pg->sds_id, pg->sent_ms);
    else if (status == -ESTALE)
        map_fetch(s); /* the peer knows a map where we are not up */
    free(pg);
}

void ping_all(struct sds *s)
{
    if (!s->map || !s->my_id)
        return;
    uint8_t msg[12];
    put_be32(msg, s->my_id);
    put_be64(msg + 4, s->map->version);
    for (size_t i = 0; i < s->map->n_sds; i++) {
        Cairn__Sds *o = s->map->sds[i];
        if (o->id == s->my_id || o->state != CAIRN__SDS_STATE__SDS_UP)
            continue;
        struct rpc_peer *p = map_peer(s, o->id);
        struct ping *pg = malloc(sizeof(*pg));
        if (!p || !pg) {
            free(pg);
            continue;
        }
        pg->sds = s;
        pg->sds_id = o->id;
        pg->sent_ms = now_ms();
        if (rpc_peer_call(p, FT_PING, msg, sizeof(msg), NULL, 0, (uint32_t)s->leases.lease_ms,
                          ping_reply_cb, pg) < 0)
            free(pg);
    }
}

void ping_timer_cb(uv_timer_t *t)
{
    ping_all(t->data);
}

void ping_handle(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    uint32_t from;
    uint64_t version;
    if (validate_ping(msg, h->msg_len, &from, &version) < 0) {
        dispatch_status(c, h, -EINVAL);
        return;
    }
    if (s->map && version > s->map->version)
        map_fetch(s);
    dispatch_status(c, h, lease_grant(&s->leases, s->map, from, version, now_ms()));
}
