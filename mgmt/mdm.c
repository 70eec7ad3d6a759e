/* cairn-mdm: the metadata manager.
 *
 * The cluster state (mdm_state) is a Raft state machine. Every change arrives
 * as a MgmtRequest from the CLI (or an SDC registering), is completed by the
 * leader (device capacities probed on the SDS that owns them), then appended
 * to the Raft log; it changes the state only when applied, on every MDM alike.
 * Runtime facts (which SDS is connected, device usage) are not replicated:
 * they are soft state rebuilt from heartbeats.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "log.h"
#include "mdm_state.h"
#include "rpc.h"
#include "util.h"

#define MDM_MAX_SESSIONS 1024

struct session {
    struct rpc_conn *conn;
    int role; /* 0 unknown, 1 sds, 2 sdc, 3 cli */
    char sds_name[MDM_NAME_MAX + 1];
    char sds_addr[128];
    uint32_t sds_id;
    uint64_t last_hb;
    Cairn__Heartbeat *hb; /* last heartbeat (usage), owned */
};

struct mdm {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    struct mdm_state st;
    struct rpc_server *server;
    struct session *sessions[MDM_MAX_SESSIONS];
    uv_signal_t sigterm, sigint;
    int stopping;
    unsigned sds_timeout_ms;
    uv_timer_t detector;
    uint64_t leader_since; /* 0 while not leader */
    unsigned grace_ms;
    struct seen {
        uint32_t sds_id;
        uint64_t last_hb;
        uint64_t down_since; /* first seen down by this leader, 0 if up */
        uint64_t away_at;    /* last seen in maintenance: silence before that does not count */
        int proposing;
        int expiring;
    } seen[1024];
    /* result of the last fsm apply, read by the apply callback */
    int apply_status;
    char apply_err[512];
};

static struct mdm M;

/* ---- Raft FSM ---- */

/* Raft entries and snapshots are [u64 length][protobuf][zero padding to a
 * multiple of 8]: libraft 0.15 pads entries on disk but its loader of closed
 * segments steps over the unpadded size, so every payload we give it is
 * already a multiple of 8 bytes. */
static size_t framed_size(size_t len)
{
    return 8 + ((len + 7) & ~(size_t)7);
}

static const uint8_t *unframe(const struct raft_buffer *buf, size_t *len)
{
    if (buf->len < 8)
        return NULL;
    uint64_t n = get_be64(buf->base);
    if (n > buf->len - 8)
        return NULL;
    *len = (size_t)n;
    return (const uint8_t *)buf->base + 8;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct mdm *m = fsm->data;
    size_t len = 0;
    const uint8_t *body = unframe(buf, &len);
    Cairn__MgmtRequest *req = body ? cairn__mgmt_request__unpack(NULL, len, body) : NULL;
    if (!req) {
        m->apply_status = -EINVAL;
        snprintf(m->apply_err, sizeof(m->apply_err), "corrupt log entry");
        log_error("raft: undecodable log entry of %zu bytes ignored", buf->len);
    } else {
        m->apply_status = mdm_state_apply(&m->st, req, m->apply_err, sizeof(m->apply_err));
        if (m->apply_status < 0)
            log_info("refused op %d: %s", req->op, m->apply_err);
        cairn__mgmt_request__free_unpacked(req, NULL);
    }
    *result = m;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct mdm *m = fsm->data;
    uint8_t *buf;
    size_t len;
    int r = mdm_state_pack(&m->st, &buf, &len);
    if (r < 0)
        return RAFT_NOMEM;
    *bufs = raft_malloc(sizeof(**bufs));
    uint8_t *copy = raft_calloc(1, framed_size(len));
    if (!*bufs || !copy) {
        free(buf);
        return RAFT_NOMEM;
    }
    put_be64(copy, len);
    memcpy(copy + 8, buf, len);
    free(buf);
    (*bufs)[0].base = copy;
    (*bufs)[0].len = framed_size(len);
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct mdm *m = fsm->data;
    size_t len = 0;
    const uint8_t *body = unframe(buf, &len);
    if (!body || mdm_state_restore(&m->st, body, len) < 0)
        return RAFT_MALFORMED;
    raft_free(buf->base);
    log_info("state restored from snapshot (map version %llu)",
             (unsigned long long)m->st.m->version);
    return 0;
}

/* ---- proposals ---- */

struct proposal {
    struct raft_apply req;
    struct rpc_conn *conn;
    struct frame_hdr hdr;
    int kind; /* 0 mgmt reply, 1 sdc register reply */
    char guid[80];
};

static void reply_error(struct rpc_conn *c, const struct frame_hdr *h, int status, const char *msg)
{
    if (h->type == FT_MGMT) {
        Cairn__MgmtReply rep = CAIRN__MGMT_REPLY__INIT;
        rep.error = (char *)msg;
        rpc_reply_pb(c, h, status, &rep.base);
    } else {
        Cairn__MapReply rep = CAIRN__MAP_REPLY__INIT;
        rep.error = (char *)msg;
        rpc_reply_pb(c, h, status, &rep.base);
    }
}

static void reply_map(struct rpc_conn *c, const struct frame_hdr *h, uint32_t sds_id,
                      uint32_t sdc_id)
{
    Cairn__MapReply rep = CAIRN__MAP_REPLY__INIT;
    rep.map = M.st.m;
    rep.sds_id = sds_id;
    rep.sdc_id = sdc_id;
    rpc_reply_pb(c, h, 0, &rep.base);
}

static struct session *session_of(struct rpc_conn *c)
{
    return rpc_data(c);
}

static void apply_done_cb(struct raft_apply *req, int status, void *result)
{
    struct proposal *p = (struct proposal *)req;
    struct mdm *m = result;
    int st = status ? -EIO : m->apply_status;
    const char *err = status ? raft_strerror(status) : m->apply_err;
    if (p->conn) {
        if (st < 0) {
            reply_error(p->conn, &p->hdr, st, err);
        } else if (p->kind == 1) {
            Cairn__Sdc *sdc = mdm_sdc_by_guid(&M.st, p->guid);
            reply_map(p->conn, &p->hdr, 0, sdc ? sdc->id : 0);
        } else {
            Cairn__MgmtReply rep = CAIRN__MGMT_REPLY__INIT;
            rep.map = M.st.m;
            rpc_reply_pb(p->conn, &p->hdr, 0, &rep.base);
        }
    }
    free(p);
}

/* Pending proposals point at their connection; a closing connection forgets them. */
#define MAX_PROPOSALS 4096
static struct proposal *proposals[MAX_PROPOSALS];

static void proposal_track(struct proposal *p)
{
    for (int i = 0; i < MAX_PROPOSALS; i++)
        if (!proposals[i]) {
            proposals[i] = p;
            return;
        }
}

static void proposals_forget_conn(struct rpc_conn *c)
{
    for (int i = 0; i < MAX_PROPOSALS; i++)
        if (proposals[i] && proposals[i]->conn == c)
            proposals[i]->conn = NULL;
}

static void proposal_done_cb(struct raft_apply *req, int status, void *result)
{
    for (int i = 0; i < MAX_PROPOSALS; i++)
        if (proposals[i] == (struct proposal *)req)
            proposals[i] = NULL;
    apply_done_cb(req, status, result);
}

/* Frame req as a Raft entry and append it; p (owned by the caller until this
 * returns 0, then by Raft's callback) is tracked until cb runs. 0 or -errno. */
static int raft_propose(const Cairn__MgmtRequest *req, struct proposal *p, raft_apply_cb cb)
{
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    struct raft_buffer buf = {.base = raft_calloc(1, framed_size(len)), .len = framed_size(len)};
    if (!buf.base)
        return -ENOMEM;
    put_be64(buf.base, len);
    protobuf_c_message_pack(&req->base, (uint8_t *)buf.base + 8);
    int r = raft_apply(&M.raft, &p->req, &buf, 1, cb);
    if (r != 0) {
        raft_free(buf.base);
        log_warn("mdm: raft_apply: %s", raft_strerror(r));
        return -EIO;
    }
    proposal_track(p);
    return 0;
}

static int propose(struct rpc_conn *c, const struct frame_hdr *h, const Cairn__MgmtRequest *req,
                   int kind)
{
    if (raft_state(&M.raft) != RAFT_LEADER && !c)
        return -EAGAIN;
    if (raft_state(&M.raft) != RAFT_LEADER) {
        raft_id id;
        const char *addr = NULL;
        raft_leader(&M.raft, &id, &addr);
        char msg[256];
        snprintf(msg, sizeof(msg), "this MDM is not the leader%s%s; retry there",
                 addr ? " (leader's raft address: " : "", addr ? addr : "");
        if (addr)
            strncat(msg, ")", sizeof(msg) - strlen(msg) - 1);
        reply_error(c, h, -EAGAIN, msg);
        return -EAGAIN;
    }
    struct proposal *p = calloc(1, sizeof(*p));
    if (!p) {
        if (c)
            reply_error(c, h, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    p->conn = c;
    if (h)
        p->hdr = *h;
    p->kind = kind;
    if (req->guid)
        snprintf(p->guid, sizeof(p->guid), "%s", req->guid);
    int r = raft_propose(req, p, proposal_done_cb);
    if (r < 0) {
        free(p);
        if (c)
            reply_error(c, h, r, r == -ENOMEM ? "out of memory" : "the Raft log refused the change");
    }
    return r;
}

/* ---- device probing before SDS_ADD / DEVICE_ADD ---- */

struct probe {
    struct rpc_conn *cli;
    struct frame_hdr hdr;
    Cairn__MgmtRequest *req; /* owned */
    size_t next;
    char sds_name[MDM_NAME_MAX + 1];
};

static struct session *sds_session_by_addr(const char *addr)
{
    for (int i = 0; i < MDM_MAX_SESSIONS; i++)
        if (M.sessions[i] && M.sessions[i]->role == 1 && !strcmp(M.sessions[i]->sds_addr, addr))
            return M.sessions[i];
    return NULL;
}

static void probe_next(struct probe *pr);

/* One probe per CLI request in flight; a closing connection orphans its probe. */
static struct probe *probes[64];

static void probe_free(struct probe *pr)
{
    for (size_t i = 0; i < ARRAY_SIZE(probes); i++)
        if (probes[i] == pr)
            probes[i] = NULL;
    cairn__mgmt_request__free_unpacked(pr->req, NULL);
    free(pr);
}

static void probe_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)payload_len;
    struct probe *pr = arg;
    rpc_buf_free(payload);
    Cairn__DeviceProbeReply *rep =
        msg ? cairn__device_probe_reply__unpack(NULL, msg_len, msg) : NULL;
    if (!pr->cli) {
        /* client went away */
    } else if (status < 0 || !rep) {
        char err[512];
        snprintf(err, sizeof(err), "SDS '%s': device %s: %s", pr->sds_name,
                 pr->req->paths[pr->next],
                 rep && rep->error[0] ? rep->error : strerror(-status));
        reply_error(pr->cli, &pr->hdr, status < 0 ? status : -EIO, err);
    } else {
        pr->req->capacities[pr->next] = rep->capacity;
        pr->next++;
        if (rep)
            cairn__device_probe_reply__free_unpacked(rep, NULL);
        probe_next(pr);
        return;
    }
    if (rep)
        cairn__device_probe_reply__free_unpacked(rep, NULL);
    probe_free(pr);
}

static void probe_next(struct probe *pr)
{
    if (!pr->cli) {
        probe_free(pr);
        return;
    }
    if (pr->next == pr->req->n_paths) {
        propose(pr->cli, &pr->hdr, pr->req, 0);
        probe_free(pr);
        return;
    }
    const char *addr = pr->req->addr;
    struct session *s = sds_session_by_addr(addr);
    if (!s) {
        char err[512];
        snprintf(err, sizeof(err),
                 "no cairn-sds is connected from address %s; start it with --listen %s "
                 "--mdm <this MDM> first",
                 addr, addr);
        reply_error(pr->cli, &pr->hdr, -EHOSTUNREACH, err);
        probe_free(pr);
        return;
    }
    Cairn__DeviceProbe dp = CAIRN__DEVICE_PROBE__INIT;
    dp.path = pr->req->paths[pr->next];
    dp.cluster_id = M.st.m->cluster_id;
    int r = rpc_call_pb(s->conn, FT_DEVICE_PROBE, &dp.base, 10000, probe_reply_cb, pr);
    if (r < 0) {
        reply_error(pr->cli, &pr->hdr, r, "cannot reach the SDS");
        probe_free(pr);
    }
}

static void probes_forget_conn(struct rpc_conn *c)
{
    for (size_t i = 0; i < ARRAY_SIZE(probes); i++)
        if (probes[i] && probes[i]->cli == c)
            probes[i]->cli = NULL;
}

static void start_probe(struct rpc_conn *c, const struct frame_hdr *h, Cairn__MgmtRequest *req)
{
    if (req->op == CAIRN__MGMT_OP__OP_DEVICE_ADD) {
        Cairn__Sds *sds = mdm_sds_by_name(&M.st, req->name);
        if (!sds) {
            char err[128];
            snprintf(err, sizeof(err), "no SDS named '%s'", req->name);
            reply_error(c, h, -ENOENT, err);
            cairn__mgmt_request__free_unpacked(req, NULL);
            return;
        }
        /* an absent string is protobuf-c's static "", never freed */
        if (req->addr != protobuf_c_empty_string)
            free(req->addr);
        req->addr = strdup(sds->addr);
    }
    if (req->n_paths == 0 || req->n_paths > 64) {
        reply_error(c, h, -EINVAL, "name 1 to 64 devices");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    struct probe *pr = calloc(1, sizeof(*pr));
    pr->cli = c;
    pr->hdr = *h;
    pr->req = req;
    snprintf(pr->sds_name, sizeof(pr->sds_name), "%s", req->name);
    free(req->capacities);
    req->capacities = calloc(req->n_paths, sizeof(uint64_t));
    req->n_capacities = req->n_paths;
    size_t slot = ARRAY_SIZE(probes);
    for (size_t i = 0; i < ARRAY_SIZE(probes) && slot == ARRAY_SIZE(probes); i++)
        if (!probes[i])
            slot = i;
    if (slot == ARRAY_SIZE(probes)) {
        reply_error(c, h, -EBUSY, "too many device probes in flight; retry");
        cairn__mgmt_request__free_unpacked(req, NULL);
        free(pr);
        return;
    }
    probes[slot] = pr;
    probe_next(pr);
}

/* ---- status ---- */

static void reply_status(struct rpc_conn *c, const struct frame_hdr *h)
{
    Cairn__MgmtReply rep = CAIRN__MGMT_REPLY__INIT;
    rep.map = M.st.m;
    size_t n = M.st.m->n_sds;
    Cairn__SdsStatus *st = calloc(n ? n : 1, sizeof(*st));
    Cairn__SdsStatus **stp = calloc(n ? n : 1, sizeof(*stp));
    uint64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        cairn__sds_status__init(&st[i]);
        stp[i] = &st[i];
        st[i].sds_id = M.st.m->sds[i]->id;
        st[i].state = M.st.m->sds[i]->state == CAIRN__SDS_STATE__SDS_UP ? "up" : "down";
        for (int j = 0; j < MDM_MAX_SESSIONS; j++) {
            struct session *s = M.sessions[j];
            if (s && s->role == 1 && s->sds_id == st[i].sds_id) {
                st[i].connected = 1;
                st[i].last_heartbeat_ms_ago = s->last_hb ? now - s->last_hb : 0;
                if (s->hb) {
                    st[i].n_usage = s->hb->n_usage;
                    st[i].usage = s->hb->usage;
                    st[i].enospc_count = s->hb->enospc_count;
                    st[i].rebuild = s->hb->rebuild;
                }
            }
        }
    }
    rep.n_sds_status = n;
    rep.sds_status = stp;
    char info[256];
    raft_id lid;
    const char *laddr = NULL;
    raft_leader(&M.raft, &lid, &laddr);
    snprintf(info, sizeof(info), "raft: %s, leader id %llu, applied index %llu",
             raft_state(&M.raft) == RAFT_LEADER ? "leader" : "follower",
             (unsigned long long)lid, (unsigned long long)raft_last_applied(&M.raft));
    rep.info = info;
    rpc_reply_pb(c, h, 0, &rep.base);
    free(st);
    free(stp);
}

/* ---- failure detection (leader only) ---- */

static struct seen *seen_of(uint32_t sds_id)
{
    struct seen *free_slot = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(M.seen); i++) {
        if (M.seen[i].sds_id == sds_id)
            return &M.seen[i];
        if (!M.seen[i].sds_id && !free_slot)
            free_slot = &M.seen[i];
    }
    if (free_slot) {
        free_slot->sds_id = sds_id;
        free_slot->last_hb = 0;
        free_slot->proposing = 0;
    }
    return free_slot;
}

static void state_proposal_done(struct raft_apply *req, int status, void *result)
{
    (void)status;
    (void)result;
    uint32_t sds_id = (uint32_t)(uintptr_t)req->data;
    struct seen *w = seen_of(sds_id);
    if (w)
        w->proposing = 0;
    proposal_done_cb(req, status, result);
}

static void propose_sds_state(Cairn__Sds *d, int down)
{
    struct seen *w = seen_of(d->id);
    if (!w || w->proposing)
        return;
    Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
    mr.op = down ? CAIRN__MGMT_OP__OP_SDS_DOWN : CAIRN__MGMT_OP__OP_SDS_UP;
    mr.name = d->name;
    struct proposal *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->req.data = (void *)(uintptr_t)d->id;
    if (raft_propose(&mr, p, state_proposal_done) < 0) {
        free(p);
        return;
    }
    w->proposing = 1;
    if (down)
        log_warn("mdm: SDS '%s' missed its heartbeats for %u ms: marking it down", d->name,
                 M.sds_timeout_ms);
    else
        log_info("mdm: SDS '%s' is heartbeating again: marking it up", d->name);
}

static int has_departed(uint32_t sds_id)
{
    for (size_t pi = 0; pi < M.st.m->n_pools; pi++) {
        Cairn__Pool *p = M.st.m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++)
            for (size_t k = 0; k < p->pgs[gi]->n_departed; k++) {
                Cairn__Device *d = mdm_device_by_id(&M.st, p->pgs[gi]->departed[k]);
                if (d && d->sds_id == sds_id)
                    return 1;
            }
    }
    return 0;
}

static void grace_done(struct raft_apply *req, int status, void *result)
{
    struct seen *w = seen_of((uint32_t)(uintptr_t)req->data);
    if (w)
        w->expiring = 0;
    proposal_done_cb(req, status, result);
}

/* A down SDS's copies stay on record for the grace window, so that it can
 * catch up if it returns; after that they are given up. */
static void expire_grace(Cairn__Sds *d, struct seen *w)
{
    Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
    mr.op = CAIRN__MGMT_OP__OP_GRACE_EXPIRED;
    mr.name = d->name;
    struct proposal *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->req.data = (void *)(uintptr_t)d->id;
    if (raft_propose(&mr, p, grace_done) < 0) {
        free(p);
        return;
    }
    w->expiring = 1;
    log_info("mdm: SDS '%s' has been down for %u s: its old copies are given up", d->name,
             M.grace_ms / 1000);
}

static void detector_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = now_ms();
    if (raft_state(&M.raft) != RAFT_LEADER) {
        M.leader_since = 0;
        return;
    }
    static uint64_t last_tick;
    uint64_t stall_ms = last_tick ? now - last_tick : 0;
    int stalled = stall_ms > M.sds_timeout_ms / 2;
    last_tick = now;
    if (stalled)
        log_warn("mdm: the failure detector itself stalled for %llu ms; restarting its clock",
                 (unsigned long long)stall_ms);
    if (!M.leader_since || stalled) {
        /* A new leader has no heartbeat history, and a stalled MDM (paused,
         * starved) heard nothing while it was stalled: either way, give every
         * SDS a full timeout before judging it. */
        M.leader_since = now;
        for (size_t i = 0; i < ARRAY_SIZE(M.seen); i++)
            if (M.seen[i].sds_id && M.seen[i].last_hb < now)
                M.seen[i].last_hb = now;
    }
    for (size_t i = 0; i < M.st.m->n_sds; i++) {
        Cairn__Sds *d = M.st.m->sds[i];
        struct seen *w = seen_of(d->id);
        if (!w)
            continue;
        if (!w->last_hb)
            w->last_hb = now;
        if (d->state == CAIRN__SDS_STATE__SDS_MAINTENANCE)
            w->away_at = now;
        uint64_t quiet = now - MAX(w->last_hb, w->away_at);
        if (d->state != CAIRN__SDS_STATE__SDS_DOWN)
            w->down_since = 0;
        else if (!w->down_since)
            w->down_since = now;
        if (d->state == CAIRN__SDS_STATE__SDS_UP && quiet > M.sds_timeout_ms)
            propose_sds_state(d, 1);
        else if (d->state == CAIRN__SDS_STATE__SDS_DOWN && quiet < 1500)
            propose_sds_state(d, 0);
        else if (d->state == CAIRN__SDS_STATE__SDS_DOWN && !w->expiring &&
                 now - w->down_since > M.grace_ms && has_departed(d->id))
            expire_grace(d, w);
    }
}

static void on_pg_rebuilt(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct session *s = session_of(c);
    Cairn__MgmtRequest *req = cairn__mgmt_request__unpack(NULL, h->msg_len, msg);
    if (!req || req->op != CAIRN__MGMT_OP__OP_PG_REBUILT || s->role != 1) {
        log_warn("mdm: malformed rebuild report from %s", rpc_peer(c));
        reply_error(c, h, -EINVAL, "malformed rebuild report");
        if (req)
            cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    /* Only the PG's primary drives its rebuild. */
    Cairn__Pool *p = mdm_pool_by_id(&M.st, req->pool_id);
    Cairn__Pg *g = p && req->pg < p->n_pgs ? p->pgs[req->pg] : NULL;
    Cairn__Device *prim = g && g->n_devices ? mdm_device_by_id(&M.st, g->devices[0]) : NULL;
    if (!prim || prim->sds_id != s->sds_id) {
        reply_error(c, h, -ESTALE, "not the primary of that PG");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    propose(c, h, req, 0);
    cairn__mgmt_request__free_unpacked(req, NULL);
}

/* Would the data the pools hold now (as the SDSs last reported it) still
 * fit without what is being removed? The state machine checks fault sets and
 * thick reservations; only the leader knows how much is written. Data must
 * fit in 90% of what remains. */
static int removal_lacks_room(const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    Cairn__Sds *sds = mdm_sds_by_name(&M.st, req->name);
    if (!sds)
        return 0; /* the state machine says so */
    for (size_t pi = 0; pi < M.st.m->n_pools; pi++) {
        Cairn__Pool *p = M.st.m->pools[pi];
        uint64_t used = 0, left = 0;
        int affected = 0;
        for (size_t i = 0; i < M.st.m->n_devices; i++) {
            Cairn__Device *d = M.st.m->devices[i];
            if (d->pool_id != p->id || d->failed)
                continue;
            int going = d->sds_id == sds->id &&
                        (req->op == CAIRN__MGMT_OP__OP_SDS_REMOVE ||
                         (req->n_paths == 1 && !strcmp(d->path, req->paths[0])));
            affected |= going;
            if (!going && !d->removing)
                left += d->capacity;
        }
        if (!affected)
            continue;
        for (int j = 0; j < MDM_MAX_SESSIONS; j++) {
            struct session *s = M.sessions[j];
            if (!s || s->role != 1 || !s->hb)
                continue;
            for (size_t u = 0; u < s->hb->n_usage; u++) {
                Cairn__Device *d = mdm_device_by_id(&M.st, s->hb->usage[u]->device_id);
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

/* ---- request dispatch ---- */

static void on_mgmt(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    Cairn__MgmtRequest *req = cairn__mgmt_request__unpack(NULL, h->msg_len, msg);
    if (!req) {
        log_warn("mdm: malformed management request from %s", rpc_peer(c));
        reply_error(c, h, -EINVAL, "malformed request");
        return;
    }
    switch (req->op) {
    case CAIRN__MGMT_OP__OP_STATUS:
        reply_status(c, h);
        break;
    case CAIRN__MGMT_OP__OP_SDS_ADD:
    case CAIRN__MGMT_OP__OP_DEVICE_ADD:
        if (raft_state(&M.raft) != RAFT_LEADER) {
            propose(c, h, req, 0); /* replies "not leader" */
            break;
        }
        if (req->op == CAIRN__MGMT_OP__OP_SDS_ADD && mdm_sds_by_name(&M.st, req->name)) {
            char err[128];
            snprintf(err, sizeof(err), "an SDS named '%s' already exists", req->name);
            reply_error(c, h, -EEXIST, err);
            break;
        }
        if (req->op == CAIRN__MGMT_OP__OP_SDS_ADD && req->fault_set[0] &&
            !mdm_fault_set_by_name(&M.st, req->fault_set)) {
            char err[256];
            snprintf(err, sizeof(err),
                     "no fault set named '%s' (declare it with 'cairn fault-set add %s')",
                     req->fault_set, req->fault_set);
            reply_error(c, h, -ENOENT, err);
            break;
        }
        start_probe(c, h, req);
        return; /* req now owned by the probe */
    case CAIRN__MGMT_OP__OP_SDS_REMOVE:
    case CAIRN__MGMT_OP__OP_DEVICE_REMOVE: {
        char err[512];
        if (!req->force && removal_lacks_room(req, err, sizeof(err))) {
            reply_error(c, h, -ENOSPC, err);
            break;
        }
        req->n_capacities = 0;
        propose(c, h, req, 0);
        break;
    }
    default:
        /* Capacities are only ever filled in by the leader's probe. */
        req->n_capacities = 0;
        propose(c, h, req, 0);
        break;
    }
    cairn__mgmt_request__free_unpacked(req, NULL);
}

static void on_sds_register(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct session *s = session_of(c);
    Cairn__SdsRegister *req = cairn__sds_register__unpack(NULL, h->msg_len, msg);
    if (!req || !req->name[0] || strlen(req->name) > MDM_NAME_MAX || strlen(req->addr) >= 128) {
        log_warn("mdm: malformed SDS registration from %s", rpc_peer(c));
        reply_error(c, h, -EINVAL, "malformed registration");
        if (req)
            cairn__sds_register__free_unpacked(req, NULL);
        return;
    }
    Cairn__Sds *sds = mdm_sds_by_name(&M.st, req->name);
    if (sds && strcmp(sds->addr, req->addr)) {
        char err[256];
        snprintf(err, sizeof(err), "SDS '%s' is registered with address %s, not %s", sds->name,
                 sds->addr, req->addr);
        log_warn("mdm: %s (from %s)", err, rpc_peer(c));
        reply_error(c, h, -EINVAL, err);
        cairn__sds_register__free_unpacked(req, NULL);
        return;
    }
    s->role = 1;
    snprintf(s->sds_name, sizeof(s->sds_name), "%s", req->name);
    snprintf(s->sds_addr, sizeof(s->sds_addr), "%s", req->addr);
    s->sds_id = sds ? sds->id : 0;
    s->last_hb = now_ms();
    log_info("mdm: SDS '%s' (%s) connected from %s%s", req->name, req->addr, rpc_peer(c),
             sds ? "" : " (not yet added to the cluster)");
    reply_map(c, h, s->sds_id, 0);
    cairn__sds_register__free_unpacked(req, NULL);
}

static void on_heartbeat(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct session *s = session_of(c);
    Cairn__Heartbeat *hb = cairn__heartbeat__unpack(NULL, h->msg_len, msg);
    if (!hb) {
        log_warn("mdm: malformed heartbeat from %s", rpc_peer(c));
        reply_error(c, h, -EINVAL, "malformed heartbeat");
        return;
    }
    s->last_hb = now_ms();
    if (s->role == 1) {
        /* An SDS added after it connected learns its id here. */
        Cairn__Sds *sds = mdm_sds_by_name(&M.st, s->sds_name);
        s->sds_id = sds ? sds->id : 0;
        struct seen *w = s->sds_id ? seen_of(s->sds_id) : NULL;
        if (w)
            w->last_hb = s->last_hb;
    }
    if (s->role == 1 && s->sds_id && raft_state(&M.raft) == RAFT_LEADER) {
        for (size_t i = 0; i < hb->n_usage; i++) {
            Cairn__Device *d = mdm_device_by_id(&M.st, hb->usage[i]->device_id);
            if (!hb->usage[i]->failed || !d || d->failed || d->sds_id != s->sds_id)
                continue;
            log_warn("mdm: SDS '%s' reports device %u (%s) failed: failing its copies over",
                     s->sds_name, d->id, d->path);
            Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
            mr.op = CAIRN__MGMT_OP__OP_DEVICE_FAIL;
            mr.device_id = d->id;
            propose(NULL, NULL, &mr, 0);
        }
    }
    if (s->hb)
        cairn__heartbeat__free_unpacked(s->hb, NULL);
    s->hb = hb;
    Cairn__HeartbeatReply rep = CAIRN__HEARTBEAT_REPLY__INIT;
    rep.map_version = M.st.m->version;
    Cairn__Sds *me = s->role == 1 && s->sds_id ? mdm_sds_by_id(&M.st, s->sds_id) : NULL;
    /* an SDS the cluster does not know (removed) needs the newest map */
    rep.demoted_version = me ? me->demoted_version : M.st.m->version;
    rpc_reply_pb(c, h, 0, &rep.base);
}

static void on_sdc_register(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct session *s = session_of(c);
    Cairn__SdcRegister *req = cairn__sdc_register__unpack(NULL, h->msg_len, msg);
    if (!req) {
        log_warn("mdm: malformed SDC registration from %s", rpc_peer(c));
        reply_error(c, h, -EINVAL, "malformed registration");
        return;
    }
    s->role = 2;
    Cairn__Sdc *sdc = mdm_sdc_by_guid(&M.st, req->guid);
    const char *want = req->name[0] ? req->name : req->guid;
    if (sdc && !strcmp(sdc->name, want)) {
        reply_map(c, h, 0, sdc->id);
    } else {
        Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
        mr.op = CAIRN__MGMT_OP__OP_SDC_REGISTER;
        mr.guid = req->guid;
        mr.name = req->name;
        propose(c, h, &mr, 1);
    }
    log_info("mdm: SDC '%s' connected from %s", want, rpc_peer(c));
    cairn__sdc_register__free_unpacked(req, NULL);
}

static void on_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    rpc_buf_free(payload);
    if (h->payload_len) {
        log_warn("mdm: unexpected payload from %s; closing", rpc_peer(c));
        rpc_close(c);
        return;
    }
    if (!session_of(c)) {
        struct session *s = calloc(1, sizeof(*s));
        int slot = -1;
        for (int i = 0; i < MDM_MAX_SESSIONS && s; i++)
            if (!M.sessions[i]) {
                slot = i;
                break;
            }
        if (!s || slot < 0) {
            free(s);
            log_warn("mdm: too many connections; dropping %s", rpc_peer(c));
            rpc_close(c);
            return;
        }
        s->conn = c;
        M.sessions[slot] = s;
        rpc_set_data(c, s);
    }
    switch (h->type) {
    case FT_MGMT:
        on_mgmt(c, h, msg);
        break;
    case FT_SDS_REGISTER:
        on_sds_register(c, h, msg);
        break;
    case FT_HEARTBEAT:
        on_heartbeat(c, h, msg);
        break;
    case FT_MAP_GET: {
        struct session *s = session_of(c);
        reply_map(c, h, s->sds_id, 0);
        break;
    }
    case FT_SDC_REGISTER:
        on_sdc_register(c, h, msg);
        break;
    case FT_PG_REBUILT:
        on_pg_rebuilt(c, h, msg);
        break;
    default:
        log_warn("mdm: unknown request type %u from %s", h->type, rpc_peer(c));
        rpc_reply(c, h, -EOPNOTSUPP, NULL, 0, NULL, 0, NULL, NULL);
    }
}

static void on_close(struct rpc_conn *c)
{
    struct session *s = session_of(c);
    proposals_forget_conn(c);
    probes_forget_conn(c);
    if (!s)
        return;
    if (s->role == 1)
        log_info("mdm: SDS '%s' disconnected", s->sds_name);
    for (int i = 0; i < MDM_MAX_SESSIONS; i++)
        if (M.sessions[i] == s)
            M.sessions[i] = NULL;
    if (s->hb)
        cairn__heartbeat__free_unpacked(s->hb, NULL);
    free(s);
}

/* ---- startup and shutdown ---- */

static void stop_fallback_cb(uv_timer_t *t)
{
    (void)t;
    log_warn("mdm: handles still open 2 s after shutdown; stopping the loop");
    uv_stop(M.loop);
}

static void raft_closed_cb(struct raft *r)
{
    (void)r;
    /* Let the loop run dry so raft's own close callbacks free its memory;
     * an unreferenced timer stops it anyway if something lingers. */
    raft_uv_close(&M.io);
    raft_uv_tcp_close(&M.transport);
    static uv_timer_t fallback;
    uv_timer_init(M.loop, &fallback);
    uv_timer_start(&fallback, stop_fallback_cb, 2000, 0);
    uv_unref((uv_handle_t *)&fallback);
}

static void signal_cb(uv_signal_t *sig, int signum)
{
    (void)sig;
    if (M.stopping)
        return;
    M.stopping = 1;
    log_info("mdm: signal %d: shutting down", signum);
    if (M.server)
        rpc_server_close(M.server);
    for (int i = 0; i < MDM_MAX_SESSIONS; i++)
        if (M.sessions[i])
            rpc_close(M.sessions[i]->conn);
    uv_close((uv_handle_t *)&M.sigterm, NULL);
    uv_close((uv_handle_t *)&M.sigint, NULL);
    uv_close((uv_handle_t *)&M.detector, NULL);
    raft_close(&M.raft, raft_closed_cb);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cairn-mdm --data-dir DIR [--listen ADDR] [--raft-addr ADDR] [--id N] [-v]\n"
            "  --listen ADDR     address for CLI, SDS and SDC connections (default 127.0.0.1:6611)\n"
            "  --raft-addr ADDR  address for Raft peers (default 127.0.0.1:6612)\n"
            "  --id N            this MDM's Raft id (default 1)\n"
            "  --pidfile FILE    write the PID once ready\n"
            "  --snapshot-threshold N  snapshot the state every N log entries (default 1024)\n"
            "  --sds-timeout SECONDS   mark an SDS down after this long without heartbeats (default 4)\n"
            "  --grace SECONDS         a down SDS that returns within this catches up instead of\n"
            "                          being rebuilt from scratch (default 60)\n");
    exit(2);
}

static int load_cluster_id(const char *dir, char *out, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/cluster_id", dir);
    char *buf;
    size_t n;
    if (file_read_all(path, &buf, &n) == 0) {
        snprintf(out, len, "%.*s", (int)strcspn(buf, "\n"), buf);
        free(buf);
        return 0;
    }
    FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");
    if (!f || !fgets(out, (int)len, f)) {
        if (f)
            fclose(f);
        return -EIO;
    }
    fclose(f);
    out[strcspn(out, "\n")] = 0;
    char line[128];
    snprintf(line, sizeof(line), "%s\n", out);
    return file_write_atomic(path, line, strlen(line));
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *listen = "127.0.0.1:6611", *raft_addr = "127.0.0.1:6612";
    const char *pidfile = NULL;
    unsigned long long id = 1;
    unsigned snap_threshold = 1024;
    M.sds_timeout_ms = 4000;
    M.grace_ms = 60000;
    int verbose = 0;
    static const struct option opts[] = {{"data-dir", 1, 0, 'd'}, {"listen", 1, 0, 'l'},
                                         {"raft-addr", 1, 0, 'r'}, {"id", 1, 0, 'i'},
                                         {"pidfile", 1, 0, 'p'},   {"verbose", 0, 0, 'v'},
                                         {"snapshot-threshold", 1, 0, 's'},
                                         {"sds-timeout", 1, 0, 't'},
                                         {"grace", 1, 0, 'g'},
                                         {"help", 0, 0, 'h'},      {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "d:l:r:i:p:s:t:g:vh", opts, NULL)) != -1) {
        switch (o) {
        case 'd': dir = optarg; break;
        case 'l': listen = optarg; break;
        case 'r': raft_addr = optarg; break;
        case 'i': id = strtoull(optarg, NULL, 10); break;
        case 'p': pidfile = optarg; break;
        case 's': snap_threshold = (unsigned)atoi(optarg); break;
        case 't': M.sds_timeout_ms = (unsigned)(atof(optarg) * 1000); break;
        case 'g': M.grace_ms = (unsigned)(atof(optarg) * 1000); break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    if (!dir || optind != argc || id == 0 || snap_threshold < 2 || M.sds_timeout_ms < 500)
        usage();
    log_init("cairn-mdm", verbose ? LOG_DEBUG : LOG_INFO);
    signal(SIGPIPE, SIG_IGN);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create data directory %s: %s", dir, strerror(errno));
        return 1;
    }
    char cluster_id[64];
    if (load_cluster_id(dir, cluster_id, sizeof(cluster_id)) < 0) {
        log_error("cannot read or create %s/cluster_id", dir);
        return 1;
    }
    M.loop = uv_default_loop();
    if (mdm_state_init(&M.st, cluster_id) < 0)
        return 1;
    int r = raft_uv_tcp_init(&M.transport, M.loop);
    if (r == 0)
        r = raft_uv_init(&M.io, M.loop, dir, &M.transport);
    if (r != 0) {
        log_error("raft storage in %s: %s", dir, raft_strerror(r));
        return 1;
    }
    M.fsm.version = 1;
    M.fsm.data = &M;
    M.fsm.apply = fsm_apply;
    M.fsm.snapshot = fsm_snapshot;
    M.fsm.restore = fsm_restore;
    r = raft_init(&M.raft, &M.io, &M.fsm, id, raft_addr);
    if (r != 0) {
        log_error("raft_init: %s", raft_strerror(r));
        return 1;
    }
    raft_set_election_timeout(&M.raft, 500);
    raft_set_heartbeat_timeout(&M.raft, 100);
    raft_set_snapshot_threshold(&M.raft, snap_threshold);
    raft_set_snapshot_trailing(&M.raft, snap_threshold / 2);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    raft_configuration_add(&conf, id, raft_addr, RAFT_VOTER);
    r = raft_bootstrap(&M.raft, &conf);
    if (r != 0 && r != RAFT_CANTBOOTSTRAP) {
        log_error("raft_bootstrap: %s", raft_strerror(r));
        return 1;
    }
    raft_configuration_close(&conf);
    r = raft_start(&M.raft);
    if (r != 0) {
        log_error("raft_start: %s (%s)", raft_strerror(r), raft_errmsg(&M.raft));
        return 1;
    }
    static const struct rpc_handlers h = {.on_request = on_request, .on_close = on_close};
    r = rpc_listen(M.loop, listen, &h, NULL, &M.server);
    if (r < 0) {
        log_error("cannot listen on %s: %s", listen, uv_strerror(r));
        return 1;
    }
    uv_timer_init(M.loop, &M.detector);
    uv_timer_start(&M.detector, detector_cb, 250, 250);
    uv_signal_init(M.loop, &M.sigterm);
    uv_signal_init(M.loop, &M.sigint);
    uv_signal_start(&M.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&M.sigint, signal_cb, SIGINT);
    log_info("mdm: cluster %s, listening on %s, raft id %llu at %s, data in %s", cluster_id,
             listen, id, raft_addr, dir);
    if (pidfile) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        file_write_atomic(pidfile, buf, strlen(buf));
    }
    uv_run(M.loop, UV_RUN_DEFAULT);
    mdm_state_free(&M.st);
    log_info("mdm: stopped");
    return 0;
}
