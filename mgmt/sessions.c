/* The MDM's connections: CLIs, SDSs and SDCs all connect to the one listening
 * address. Each connection gets a session when it is accepted (its rpc data,
 * pointing back to the mdm); requests are validated and dispatched from here:
 * registrations, heartbeats, map fetches, rebuild reports, and management
 * requests (answered directly, probed first, or proposed to Raft); and
 * the announcement of every new map to the SDSs and SDCs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mdm.h"
#include "util.h"

/* ---- replies ---- */

void mdm_reply_error_at(struct rpc_conn *c, const struct frame_hdr *h, int status, const char *msg,
                        const char *leader)
{
    if (h->type == FT_MGMT) {
        mdm_audit_end(c, h, status, msg);
        Cairn__MgmtReply rep = CAIRN__MGMT_REPLY__INIT;
        rep.error = (char *)msg;
        if (leader)
            rep.leader_addr = (char *)leader;
        rpc_reply_pb(c, h, status, &rep.base);
    } else {
        Cairn__MapReply rep = CAIRN__MAP_REPLY__INIT;
        rep.error = (char *)msg;
        if (leader)
            rep.leader_addr = (char *)leader;
        rpc_reply_pb(c, h, status, &rep.base);
    }
}

void mdm_reply_error(struct rpc_conn *c, const struct frame_hdr *h, int status, const char *msg)
{
    mdm_reply_error_at(c, h, status, msg, NULL);
}

void mdm_reply_map(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h, uint32_t sds_id,
                   uint32_t sdc_id)
{
    Cairn__MapReply rep = CAIRN__MAP_REPLY__INIT;
    rep.map = m->st.m;
    rep.sds_id = sds_id;
    rep.sdc_id = sdc_id;
    /* An SDC's map holds its own mappings only (none while it is pending,
     * as the state machine makes none): what other clients may reach is
     * none of its business. SDSs need them all (server/access.c). */
    Cairn__ClusterMap own;
    Cairn__Mapping **mine = NULL;
    if (sdc_id) {
        own = *m->st.m;
        mine = calloc(own.n_mappings + 1, sizeof(*mine));
        if (!mine) {
            mdm_reply_error(c, h, -ENOMEM, "out of memory");
            return;
        }
        size_t n = 0;
        for (size_t i = 0; i < own.n_mappings; i++)
            if (own.mappings[i]->sdc_id == sdc_id)
                mine[n++] = own.mappings[i];
        own.mappings = mine;
        own.n_mappings = n;
        rep.map = &own;
    }
    rpc_reply_pb(c, h, 0, &rep.base);
    free(mine);
}

static struct mdm_conn *session_of(struct rpc_conn *c)
{
    return rpc_data(c);
}

struct mdm_conn *mdm_sessions_find_sds(struct mdm *m, const char *addr)
{
    for (int i = 0; i < MDM_MAX_SESSIONS; i++)
        if (m->sessions[i] && m->sessions[i]->role == MDM_ROLE_SDS &&
            !strcmp(m->sessions[i]->sds_addr, addr))
            return m->sessions[i];
    return NULL;
}

/* ---- SDS reports ---- */

static void on_pg_rebuilt(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct mdm_conn *s = session_of(c);
    struct mdm *m = s->mdm;
    Cairn__MgmtRequest *req = cairn__mgmt_request__unpack(NULL, h->msg_len, msg);
    if (!req || req->op != CAIRN__MGMT_OP__OP_PG_REBUILT || s->role != MDM_ROLE_SDS) {
        log_warn("mdm: malformed rebuild report from %s", rpc_peer(c));
        mdm_reply_error(c, h, -EINVAL, "malformed rebuild report");
        if (req)
            cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    /* Only the PG's primary drives its rebuild. */
    Cairn__Pool *p = mdm_pool_by_id(&m->st, req->pool_id);
    Cairn__Pg *g = p && req->pg < p->n_pgs ? p->pgs[req->pg] : NULL;
    Cairn__Device *prim = g && g->n_devices ? mdm_device_by_id(&m->st, g->devices[0]) : NULL;
    if (!prim || prim->sds_id != s->sds_id) {
        mdm_reply_error(c, h, -ESTALE, "not the primary of that PG");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    mdm_propose(m, c, h, req, MDM_PROPOSAL_MGMT);
    cairn__mgmt_request__free_unpacked(req, NULL);
}

/* ---- management requests ---- */

/* Would the data the pools hold now (as the SDSs last reported it) still
 * fit without what is being removed? The state machine checks fault sets and
 * thick reservations; only the leader knows how much is written. Data must
 * fit in 90% of what remains. */
static int removal_lacks_room(struct mdm *m, const Cairn__MgmtRequest *req, char *err,
                              size_t errlen)
{
    Cairn__Sds *sds = mdm_sds_by_name(&m->st, req->name);
    if (!sds)
        return 0; /* the state machine says so */
    for (size_t pi = 0; pi < m->st.m->n_pools; pi++) {
        Cairn__Pool *p = m->st.m->pools[pi];
        uint64_t used = 0, left = 0;
        int affected = 0;
        for (size_t i = 0; i < m->st.m->n_devices; i++) {
            Cairn__Device *d = m->st.m->devices[i];
            if (d->pool_id != p->id || d->failed)
                continue;
            int going =
                d->sds_id == sds->id && (req->op == CAIRN__MGMT_OP__OP_SDS_REMOVE ||
                                         (req->n_paths == 1 && !strcmp(d->path, req->paths[0])));
            affected |= going;
            if (!going && !d->removing)
                left += d->capacity;
        }
        if (!affected)
            continue;
        for (int j = 0; j < MDM_MAX_SESSIONS; j++) {
            struct mdm_conn *s = m->sessions[j];
            if (!s || s->role != MDM_ROLE_SDS || !s->hb)
                continue;
            for (size_t u = 0; u < s->hb->n_usage; u++) {
                Cairn__Device *d = mdm_device_by_id(&m->st, s->hb->usage[u]->device_id);
                if (d && d->pool_id == p->id && !d->failed)
                    used += s->hb->usage[u]->used_extents * p->extent_size;
            }
        }
        if (used > left / 10 * 9) {
            char a[32], b[32];
            fmt_bytes(a, sizeof(a), used);
            fmt_bytes(b, sizeof(b), left);
            snprintf(err, errlen,
                     "pool '%s' holds %s (all copies) and would have only %s of devices left "
                     "without %s%s%s: not enough room to move its copies (add capacity first)",
                     p->name, a, b, req->op == CAIRN__MGMT_OP__OP_SDS_REMOVE ? "SDS '" : "device ",
                     req->op == CAIRN__MGMT_OP__OP_SDS_REMOVE ? sds->name : req->paths[0],
                     req->op == CAIRN__MGMT_OP__OP_SDS_REMOVE ? "'" : "");
            return 1;
        }
    }
    return 0;
}

static void on_mgmt(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct mdm *m = session_of(c)->mdm;
    Cairn__MgmtRequest *req = cairn__mgmt_request__unpack(NULL, h->msg_len, msg);
    if (!req) {
        log_warn("mdm: malformed management request from %s", rpc_peer(c));
        mdm_reply_error(c, h, -EINVAL, "malformed request");
        return;
    }
    mdm_audit_begin(session_of(c), h, req);
    enum auth_role role = rpc_peer_role(c);
    if (role == AUTH_ROLE_MONITOR && req->op != CAIRN__MGMT_OP__OP_STATUS) {
        LOG_LIMITED(LOG_WARN, 1000, "mdm: refused a change from monitor '%s' at %s",
                    rpc_peer_name(c), rpc_peer(c));
        mdm_reply_error(c, h, -EACCES,
                        "permission denied: a monitor credential may query, not change");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    if (mdm_answer_repeat(m, c, h, req)) { /* request ids: applied once */
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    switch (req->op) {
    case CAIRN__MGMT_OP__OP_STATUS:
        if (!req->local && !mdm_is_leader(m))
            mdm_reply_not_leader(m, c, h);
        else
            mdm_status_reply(m, c, h);
        break;
    case CAIRN__MGMT_OP__OP_SDS_ADD:
    case CAIRN__MGMT_OP__OP_DEVICE_ADD:
        if (!mdm_is_leader(m)) {
            mdm_propose(m, c, h, req, MDM_PROPOSAL_MGMT); /* replies "not leader" */
            break;
        }
        if (req->op == CAIRN__MGMT_OP__OP_SDS_ADD && mdm_sds_by_name(&m->st, req->name)) {
            char err[128];
            snprintf(err, sizeof(err), "an SDS named '%s' already exists", req->name);
            mdm_reply_error(c, h, -EEXIST, err);
            break;
        }
        if (req->op == CAIRN__MGMT_OP__OP_SDS_ADD && req->fault_set[0] &&
            !mdm_fault_set_by_name(&m->st, req->fault_set)) {
            char err[256];
            snprintf(err, sizeof(err),
                     "no fault set named '%s' (declare it with 'cairn fault-set add %s')",
                     req->fault_set, req->fault_set);
            mdm_reply_error(c, h, -ENOENT, err);
            break;
        }
        mdm_probe_start(m, c, h, req);
        return; /* req now owned by the probe */
    case CAIRN__MGMT_OP__OP_SNAPSHOT_CREATE:
        mdm_snapshot_start(m, c, h, req);
        return; /* req now owned by the cut */
    case CAIRN__MGMT_OP__OP_SNAPSHOT_ABORT:
    case CAIRN__MGMT_OP__OP_LAYER_MERGED:
    case CAIRN__MGMT_OP__OP_VOLUME_FLATTENED:
        mdm_reply_error(c, h, -EINVAL, "proposed by the MDM leader only");
        break;
    case CAIRN__MGMT_OP__OP_MDM_ADD:
    case CAIRN__MGMT_OP__OP_MDM_REMOVE:
    case CAIRN__MGMT_OP__OP_MDM_TRANSFER: mdm_members_request(m, c, h, req); break;
    case CAIRN__MGMT_OP__OP_CLUSTER_ID:
        /* the leader's own: a client's would rename the cluster */
        mdm_reply_error(c, h, -EINVAL, "the cluster id is set by the MDM leader only");
        break;
    case CAIRN__MGMT_OP__OP_SDS_REMOVE:
    case CAIRN__MGMT_OP__OP_DEVICE_REMOVE: {
        char err[512];
        if (!req->force && removal_lacks_room(m, req, err, sizeof(err))) {
            mdm_reply_error(c, h, -ENOSPC, err);
            break;
        }
        req->n_capacities = 0;
        mdm_propose(m, c, h, req, MDM_PROPOSAL_MGMT);
        break;
    }
    default:
        /* Capacities are only ever filled in by the leader's probe. */
        req->n_capacities = 0;
        mdm_propose(m, c, h, req, MDM_PROPOSAL_MGMT);
        break;
    }
    cairn__mgmt_request__free_unpacked(req, NULL);
}

/* ---- registrations and heartbeats ---- */

static void on_sds_register(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct mdm_conn *s = session_of(c);
    struct mdm *m = s->mdm;
    Cairn__SdsRegister *req = cairn__sds_register__unpack(NULL, h->msg_len, msg);
    if (!req || !req->name[0] || strlen(req->name) > MDM_NAME_MAX || strlen(req->addr) >= 128) {
        log_warn("mdm: malformed SDS registration from %s", rpc_peer(c));
        mdm_reply_error(c, h, -EINVAL, "malformed registration");
        if (req)
            cairn__sds_register__free_unpacked(req, NULL);
        return;
    }
    if (rpc_peer_role(c) != AUTH_ROLE_NONE && strcmp(req->name, rpc_peer_name(c)) != 0) {
        char err[256];
        snprintf(err, sizeof(err), "the credential of SDS '%s' cannot register SDS '%s'",
                 rpc_peer_name(c), req->name);
        log_warn("mdm: %s (from %s)", err, rpc_peer(c));
        mdm_reply_error(c, h, -EACCES, err);
        cairn__sds_register__free_unpacked(req, NULL);
        return;
    }
    Cairn__Sds *sds = mdm_sds_by_name(&m->st, req->name);
    if (sds && strcmp(sds->addr, req->addr)) {
        char err[256];
        snprintf(err, sizeof(err), "SDS '%s' is registered with address %s, not %s", sds->name,
                 sds->addr, req->addr);
        log_warn("mdm: %s (from %s)", err, rpc_peer(c));
        mdm_reply_error(c, h, -EINVAL, err);
        cairn__sds_register__free_unpacked(req, NULL);
        return;
    }
    s->role = MDM_ROLE_SDS;
    snprintf(s->sds_name, sizeof(s->sds_name), "%s", req->name);
    snprintf(s->sds_addr, sizeof(s->sds_addr), "%s", req->addr);
    s->sds_id = sds ? sds->id : 0;
    s->last_hb = now_ms();
    log_info("mdm: SDS '%s' (%s) connected from %s%s", req->name, req->addr, rpc_peer(c),
             sds ? "" : " (not yet added to the cluster)");
    mdm_reply_map(m, c, h, s->sds_id, 0);
    cairn__sds_register__free_unpacked(req, NULL);
}

static void on_heartbeat(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct mdm_conn *s = session_of(c);
    struct mdm *m = s->mdm;
    Cairn__Heartbeat *hb = cairn__heartbeat__unpack(NULL, h->msg_len, msg);
    if (!hb) {
        log_warn("mdm: malformed heartbeat from %s", rpc_peer(c));
        mdm_reply_error(c, h, -EINVAL, "malformed heartbeat");
        return;
    }
    s->last_hb = now_ms();
    if (s->role == MDM_ROLE_SDS) {
        /* An SDS added after it connected learns its id here. */
        Cairn__Sds *sds = mdm_sds_by_name(&m->st, s->sds_name);
        s->sds_id = sds ? sds->id : 0;
        if (s->sds_id)
            mdm_detector_heard(m, s->sds_id, s->last_hb);
    }
    if (s->role == MDM_ROLE_SDS && s->sds_id && mdm_is_leader(m)) {
        for (size_t i = 0; i < hb->n_usage; i++) {
            Cairn__Device *d = mdm_device_by_id(&m->st, hb->usage[i]->device_id);
            if (!hb->usage[i]->failed || !d || d->failed || d->sds_id != s->sds_id)
                continue;
            log_warn("mdm: SDS '%s' reports device %u (%s) failed: failing its copies over",
                     s->sds_name, d->id, d->path);
            Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
            mr.op = CAIRN__MGMT_OP__OP_DEVICE_FAIL;
            mr.device_id = d->id;
            mdm_propose(m, NULL, NULL, &mr, MDM_PROPOSAL_MGMT);
        }
    }
    if (s->role == MDM_ROLE_SDC) {
        /* keep one heartbeat more: rates need two */
        if (s->prev_hb)
            cairn__heartbeat__free_unpacked(s->prev_hb, NULL);
        s->prev_hb = s->hb;
        s->prev_hb_at = s->hb_at;
    } else if (s->hb) {
        cairn__heartbeat__free_unpacked(s->hb, NULL);
    }
    s->hb = hb;
    s->hb_at = s->last_hb;
    Cairn__HeartbeatReply rep = CAIRN__HEARTBEAT_REPLY__INIT;
    rep.map_version = m->st.m->version;
    Cairn__Sds *me = s->role == MDM_ROLE_SDS && s->sds_id ? mdm_sds_by_id(&m->st, s->sds_id) : NULL;
    /* an SDS the cluster does not know (removed) needs the newest map */
    rep.demoted_version = me ? me->demoted_version : m->st.m->version;
    rpc_reply_pb(c, h, 0, &rep.base);
}

static void on_sdc_register(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct mdm_conn *s = session_of(c);
    struct mdm *m = s->mdm;
    Cairn__SdcRegister *req = cairn__sdc_register__unpack(NULL, h->msg_len, msg);
    if (!req) {
        log_warn("mdm: malformed SDC registration from %s", rpc_peer(c));
        mdm_reply_error(c, h, -EINVAL, "malformed registration");
        return;
    }
    if (rpc_peer_role(c) != AUTH_ROLE_NONE &&
        strcmp(req->name[0] ? req->name : req->guid, rpc_peer_name(c)) != 0) {
        char err[256];
        snprintf(err, sizeof(err), "the credential of SDC '%s' cannot register SDC '%s'",
                 rpc_peer_name(c), req->name[0] ? req->name : req->guid);
        log_warn("mdm: %s (from %s)", err, rpc_peer(c));
        mdm_reply_error(c, h, -EACCES, err);
        cairn__sdc_register__free_unpacked(req, NULL);
        return;
    }
    s->role = MDM_ROLE_SDC;
    snprintf(s->sdc_guid, sizeof(s->sdc_guid), "%s", req->guid);
    Cairn__Sdc *sdc = mdm_sdc_by_guid(&m->st, req->guid);
    const char *want = req->name[0] ? req->name : req->guid;
    /* a new SDC is pending in restricted mode (state_sdcs.c decides alike) */
    if (sdc ? sdc->pending : !m->st.m->sdc_unrestricted)
        log_warn("mdm: SDC '%s' from %s is pending approval: cairn sdc approve %s", want,
                 rpc_peer(c), want);
    if (sdc && !strcmp(sdc->name, want)) {
        mdm_reply_map(m, c, h, 0, sdc->id);
    } else {
        Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
        mr.op = CAIRN__MGMT_OP__OP_SDC_REGISTER;
        mr.guid = req->guid;
        mr.name = req->name;
        mdm_propose(m, c, h, &mr, MDM_PROPOSAL_SDC_REGISTER);
    }
    log_info("mdm: SDC '%s' connected from %s", want, rpc_peer(c));
    cairn__sdc_register__free_unpacked(req, NULL);
}

/* ---- announcing new maps ----
 *
 * SDSs and SDCs fetch the map when a heartbeat reply shows a new version,
 * i.e. up to a second late. A change an operator waits on (an unmap, which
 * must stop the SDC's I/O on every SDS) should not wait that long, so once
 * per loop turn in which the version moved every SDS and SDC session gets
 * FT_MAP_NOTIFY with it, and fetches at once (proto/mdm_session.c). */

static void notify_session(struct mdm_conn *s, uint64_t version);

static void notify_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                            uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)status;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    rpc_buf_free(payload);
    /* runs before the connection's close callback frees the session */
    struct mdm_conn *s = arg;
    s->notifying = 0;
    if (status >= 0 && s->notified != s->mdm->st.m->version)
        notify_session(s, s->mdm->st.m->version);
}

static void notify_session(struct mdm_conn *s, uint64_t version)
{
    if (s->notifying || s->notified == version)
        return;
    uint8_t msg[8];
    put_be64(msg, version);
    /* no timeout: a stopped peer keeps this one call, and the heartbeats
     * decide whether it is alive */
    if (rpc_call(s->conn, FT_MAP_NOTIFY, msg, sizeof(msg), NULL, 0, 0, notify_reply_cb, s) == 0) {
        s->notifying = 1;
        s->notified = version;
    }
}

static void notify_check_cb(uv_check_t *h)
{
    struct mdm *m = h->data;
    uint64_t v = m->st.m->version;
    if (v == m->notify_version)
        return;
    m->notify_version = v;
    for (int i = 0; i < MDM_MAX_SESSIONS; i++) {
        struct mdm_conn *s = m->sessions[i];
        if (s && (s->role == MDM_ROLE_SDS || s->role == MDM_ROLE_SDC))
            notify_session(s, v);
    }
}

/* ---- connections ---- */

/* A new connection gets its session at once, so that every callback finds
 * the mdm through it; it takes a place in m->sessions with its first
 * request (when its peer's address is known for the log). */
static int on_accept(struct rpc_conn *c, void *server_data)
{
    struct mdm_conn *s = calloc(1, sizeof(*s));
    if (!s) {
        log_warn("mdm: out of memory; dropping a new connection");
        return -ENOMEM;
    }
    s->mdm = server_data;
    s->conn = c;
    s->slot = -1;
    rpc_set_data(c, s);
    /* A session's requests wait for Raft or a probe at most this many at a
     * time; a peer that sends more is not read until they are answered (and
     * one that does not read its replies, maps included, is not read past
     * the RPC layer's limit of unread replies). */
    rpc_set_request_limit(c, MDM_SESSION_REQUESTS);
    return 0;
}

/* 1 if s has a place in m->sessions (taking a free one if needed). */
static int session_listed(struct mdm *m, struct mdm_conn *s)
{
    if (s->slot >= 0)
        return 1;
    for (int i = 0; i < MDM_MAX_SESSIONS; i++)
        if (!m->sessions[i]) {
            m->sessions[i] = s;
            s->slot = i;
            return 1;
        }
    return 0;
}

/* Which proved roles may send each request (any, on a plain link). */
static int role_may(const struct rpc_conn *c, uint16_t type)
{
    uint32_t r = AUTH_ROLE_BIT(rpc_peer_role(c)), allowed;
    switch (type) {
    case FT_MGMT:
        allowed = AUTH_ROLE_BIT(AUTH_ROLE_ADMIN) | AUTH_ROLE_BIT(AUTH_ROLE_MONITOR) |
                  AUTH_ROLE_BIT(AUTH_ROLE_MDM); /* the REST API, which checks its own users */
        break;
    case FT_SDS_REGISTER:
    case FT_PG_REBUILT: allowed = AUTH_ROLE_BIT(AUTH_ROLE_SDS); break;
    case FT_SDC_REGISTER: allowed = AUTH_ROLE_BIT(AUTH_ROLE_SDC); break;
    case FT_CLAIM: allowed = AUTH_ROLE_BIT(AUTH_ROLE_SDC); break;
    case FT_HEARTBEAT:
    case FT_MAP_GET: allowed = AUTH_ROLE_BIT(AUTH_ROLE_SDS) | AUTH_ROLE_BIT(AUTH_ROLE_SDC); break;
    default: return 1; /* answered as unknown */
    }
    return rpc_peer_role(c) == AUTH_ROLE_NONE || (r & allowed);
}

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    struct mdm_conn *s = session_of(c);
    rpc_buf_free(payload);
    if (h->payload_len) {
        log_warn("mdm: unexpected payload from %s; closing", rpc_peer(c));
        rpc_close(c);
        return;
    }
    if (!session_listed(s->mdm, s)) {
        log_warn("mdm: too many connections; dropping %s", rpc_peer(c));
        rpc_close(c);
        return;
    }
    if (!role_may(c, h->type)) {
        LOG_LIMITED(LOG_WARN, 1000, "mdm: %s '%s' at %s may not send request type %u; refused",
                    auth_role_name(rpc_peer_role(c)), rpc_peer_name(c), rpc_peer(c), h->type);
        mdm_reply_error(c, h, -EACCES, "permission denied for this credential's role");
        return;
    }
    /* SDSs and SDCs keep their session with the leader, which detects
     * failures and announces maps: a follower sends them on to it */
    if (h->type != FT_MGMT && !mdm_is_leader(s->mdm)) {
        mdm_reply_not_leader(s->mdm, c, h);
        return;
    }
    switch (h->type) {
    case FT_MGMT: on_mgmt(c, h, msg); break;
    case FT_SDS_REGISTER: on_sds_register(c, h, msg); break;
    case FT_HEARTBEAT: on_heartbeat(c, h, msg); break;
    case FT_MAP_GET: {
        const Cairn__Sdc *sdc =
            s->role == MDM_ROLE_SDC ? mdm_sdc_by_guid(&s->mdm->st, s->sdc_guid) : NULL;
        mdm_reply_map(s->mdm, c, h, s->sds_id, sdc ? sdc->id : 0);
        break;
    }
    case FT_SDC_REGISTER: on_sdc_register(c, h, msg); break;
    case FT_PG_REBUILT: on_pg_rebuilt(c, h, msg); break;
    case FT_CLAIM: mdm_claim_request(c, h, msg); break;
    default:
        log_warn("mdm: unknown request type %u from %s", h->type, rpc_peer(c));
        rpc_reply(c, h, -EOPNOTSUPP, NULL, 0, NULL, 0, NULL, NULL);
    }
}

static void on_close(struct rpc_conn *c)
{
    struct mdm_conn *s = session_of(c);
    struct mdm *m = s->mdm;
    mdm_proposals_forget_conn(m, c);
    mdm_probes_forget_conn(m, c);
    mdm_snapshot_forget_conn(m, c);
    mdm_members_forget_conn(m, c);
    if (s->role == MDM_ROLE_SDS) {
        log_info("mdm: SDS '%s' disconnected", s->sds_name);
        if (s->sds_id)
            mdm_detector_lost(m, s->sds_id, s->sds_addr);
    }
    mdm_audit_drop(s);
    mdm_claims_forget(s);
    if (s->slot >= 0)
        m->sessions[s->slot] = NULL;
    if (s->hb)
        cairn__heartbeat__free_unpacked(s->hb, NULL);
    if (s->prev_hb)
        cairn__heartbeat__free_unpacked(s->prev_hb, NULL);
    free(s);
}

int mdm_sessions_listen(struct mdm *m, const char *addr)
{
    static const struct rpc_handlers h = {
        .on_request = on_request,
        .on_close = on_close,
        .on_accept = on_accept,
        .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_SDS) | AUTH_ROLE_BIT(AUTH_ROLE_SDC) |
                      AUTH_ROLE_BIT(AUTH_ROLE_ADMIN) | AUTH_ROLE_BIT(AUTH_ROLE_MONITOR) |
                      AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    int r = rpc_listen(m->loop, addr, &h, m, &m->server);
    if (r < 0)
        return r;
    m->notify_version = m->st.m->version;
    uv_check_init(m->loop, &m->notify_check);
    m->notify_check.data = m;
    uv_check_start(&m->notify_check, notify_check_cb);
    uv_unref((uv_handle_t *)&m->notify_check);
    return 0;
}

void mdm_sessions_close(struct mdm *m)
{
    if (m->server) {
        rpc_server_close(m->server);
        uv_close((uv_handle_t *)&m->notify_check, NULL);
    }
    for (int i = 0; i < MDM_MAX_SESSIONS; i++)
        if (m->sessions[i])
            rpc_close(m->sessions[i]->conn);
}
