/* A daemon's session with the MDM, shared by the SDS and the SDC: connect
 * (and reconnect after a loss), register, heartbeat every interval, and fetch
 * the map whenever the MDM reports a version other than the one held: in a
 * heartbeat reply, or at once when it announces one (FT_MAP_NOTIFY, handled
 * here before ops.on_request sees any request).
 * Callbacks run on the loop, never from inside the call that started them. */
#ifndef CAIRN_MDM_SESSION_H
#define CAIRN_MDM_SESSION_H

#include "cairn.pb-c.h"
#include "rpc.h"

struct mdm_session;

/* The timing of an SDS's failure detection, which the MDM and the SDS must
 * agree on. The SDS heartbeats every SDS_HEARTBEAT_MS; an answered heartbeat
 * is a lease of SDS_LEASE_MS from when it was sent; the MDM marks an SDS down
 * after --sds-timeout (SDS_TIMEOUT_DEFAULT_MS) of silence, and refuses a
 * timeout that would not outlast the lease with room to spare: so an SDS
 * marked down for silence has lost its lease by then, whichever clock runs
 * ahead. */
#define SDS_HEARTBEAT_MS 250
#define SDS_LEASE_MS 1500
#define SDS_TIMEOUT_DEFAULT_MS 2000
#define SDS_TIMEOUT_MIN_MS 2000

struct mdm_session_ops {
    uint16_t register_type; /* FT_SDS_REGISTER or FT_SDC_REGISTER */
    /* The registration message; it must stay valid for the call. */
    const ProtobufCMessage *(*registration)(void *ctx);
    /* Fill what the heartbeat reports (the session sets map_version). */
    void (*heartbeat)(void *ctx, Cairn__Heartbeat *hb);
    /* A map arrived; the callee owns rep (free with cairn__map_reply__free_unpacked). */
    void (*on_map)(void *ctx, Cairn__MapReply *rep);
    /* The version of the map held now (0: none). */
    uint64_t (*map_version)(void *ctx);
    /* A heartbeat sent at sent_ms (monotonic) was answered; map_current is 1
     * if the MDM's map version equals ours; demoted_version is the version
     * at which this SDS last stopped being some PG's primary. May be NULL. */
    void (*on_heartbeat_ack)(void *ctx, uint64_t sent_ms, int map_current,
                             uint64_t demoted_version);
    /* Requests the MDM sends us (may be NULL: they are refused). They arrive
     * on a connection whose rpc_data() is the session: mdm_session_ctx()
     * gives the ctx back. */
    rpc_request_cb on_request;
    /* 1: heartbeat at once after installing any map, so that the MDM (and
     * a CLI waiting on the status) learns without a second's delay that
     * this map is held (the SDS: an unmap waits for every SDS to hold it).
     * Every session heartbeats at once after registering. */
    int report_map_at_once;
};

/* addr: one MDM, or several, "a,b,c": the session keeps itself with the
 * leader. An MDM that is not the leader refuses with -EAGAIN and names the
 * leader; the session goes there, or on through the list (each MDM at most
 * once per interval). NULL if addr names none, or out of memory. */
struct mdm_session *mdm_session_start(uv_loop_t *loop, const char *addr,
                                      const struct mdm_session_ops *ops, void *ctx,
                                      unsigned interval_ms);
/* The ctx given to mdm_session_start(). */
void *mdm_session_ctx(const struct mdm_session *s);
/* Ask for the map now (e.g. after a stale epoch). */
void mdm_session_fetch_map(struct mdm_session *s);
/* The connection, or NULL while disconnected. */
struct rpc_conn *mdm_session_conn(const struct mdm_session *s);
void mdm_session_stop(struct mdm_session *s);

#endif
