/* Proposals: a change on its way through the Raft log, tracked until it is
 * applied and then answered (a MgmtReply with the new map, or an SDC's
 * MapReply); and the leader queries every handler asks. Apart from
 * raft_fsm.c, which appends entries and runs the FSM, so that the request
 * handlers can be driven without Raft's I/O (tests/fuzz/fuzz_mdm_sessions.c
 * links this file and fakes mdm_raft_propose only). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mdm.h"
#include "raft_link.h"

int mdm_is_leader(struct mdm *m)
{
    return raft_state(&m->raft) == RAFT_LEADER;
}

void mdm_reply_not_leader(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h)
{
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&m->raft, &id, &addr);
    const char *client = raft_link_client_addr(addr);
    char msg[512];
    if (client)
        snprintf(msg, sizeof(msg), "this MDM is not the leader; the leader, MDM %llu, is at %s",
                 (unsigned long long)id, client);
    else if (addr)
        snprintf(msg, sizeof(msg),
                 "this MDM is not the leader; the leader is MDM %llu (raft address %s)",
                 (unsigned long long)id, addr);
    else
        snprintf(msg, sizeof(msg),
                 "this MDM is not the leader, and no leader is known yet "
                 "(an election is under way); retry");
    mdm_reply_error_at(c, h, -EAGAIN, msg, client);
}

const char *mdm_raft_role(struct mdm *m)
{
    switch (raft_state(&m->raft)) {
    case RAFT_LEADER: return "leader";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_FOLLOWER: return "follower";
    default: return "unavailable";
    }
}

/* ---- proposals ---- */

void mdm_proposal_track(struct mdm *m, struct mdm_proposal *p)
{
    for (int i = 0; i < MDM_MAX_PROPOSALS; i++)
        if (!m->proposals[i]) {
            m->proposals[i] = p;
            return;
        }
}

void mdm_proposals_forget_conn(struct mdm *m, struct rpc_conn *c)
{
    for (int i = 0; i < MDM_MAX_PROPOSALS; i++)
        if (m->proposals[i] && m->proposals[i]->conn == c)
            m->proposals[i]->conn = NULL;
}

/* A change is made: the MgmtReply with the map it is in. */
static void reply_done(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h)
{
    Cairn__MgmtReply rep = CAIRN__MGMT_REPLY__INIT;
    rep.map = m->st.m;
    mdm_audit_end(c, h, 0, NULL);
    rpc_reply_pb(c, h, 0, &rep.base);
}

struct mdm_outcome *mdm_outcome_record(struct mdm *m, uint64_t request_id)
{
    struct mdm_outcome *o = &m->outcomes[m->outcome_next++ % MDM_OUTCOMES];
    o->request_id = request_id;
    o->status = m->apply_status;
    snprintf(o->err, sizeof(o->err), "%s", m->apply_err);
    return o;
}

/* Answer the requester (if it is still there) with the outcome: its
 * entry's (o), or Raft's failure (status). A change Raft did not confirm
 * (this MDM lost the leadership, or shut down) is not known to be lost: it
 * may be in other MDMs' logs, and a new leader may yet commit it. With a
 * request id it is safe to send again (-ECANCELED, which the CLI does);
 * without one the answer says its outcome is unknown, and is -EIO, which
 * the CLI does not send again. */
static void proposal_answer(struct mdm *m, struct mdm_proposal *p, int status,
                            const struct mdm_outcome *o)
{
    if (!p->conn)
        return;
    if (p->kind == MDM_PROPOSAL_CLAIM) {
        int st = status ? -EIO : o ? o->status : -EIO;
        mdm_claim_answer(m, p->conn, &p->hdr, p->volume_id, st,
                         status ? "the MDM lost the leadership before granting the claim: retry"
                         : o    ? o->err
                                : "outcome unknown");
        return;
    }
    const char *lost = NULL;
    char msg[256];
    if (!status && p->request_id && (!o || o->request_id != p->request_id)) {
        /* the outcome kept for it is another entry's (MDM_OUTCOMES more
         * were applied before its callback ran): it is unknown */
        log_warn("mdm: the outcome of request %016llx was not kept; asking its client to send it "
                 "again",
                 (unsigned long long)p->request_id);
        lost = "the MDM lost track of the change's outcome";
    } else if (status && p->request_id) {
        /* Raft gave up on the entry (leadership lost): a new leader may
         * still commit it */
        snprintf(msg, sizeof(msg), "this MDM stopped leading before the change was committed (%s)",
                 raft_strerror(status));
        lost = msg;
    }
    if (lost) {
        /* With its request id the change is safe to send again, to the
         * leader, which applies it once or answers with its outcome (the
         * CLI does) */
        char full[512];
        snprintf(full, sizeof(full), "%s; send it again with the same request id", lost);
        mdm_reply_error(p->conn, &p->hdr, -ECANCELED, full);
        return;
    }
    int st = status ? -EIO : o ? o->status : -EIO;
    if (st < 0) {
        char unconfirmed[256];
        if (status)
            snprintf(unconfirmed, sizeof(unconfirmed),
                     "the change was not confirmed (%s); whether it is made is unknown (another "
                     "leader may yet commit it): check with 'cairn status'",
                     raft_strerror(status));
        mdm_reply_error(p->conn, &p->hdr, st,
                        status ? unconfirmed
                        : o    ? o->err
                               : "outcome unknown");
        return;
    }
    switch (p->kind) {
    case MDM_PROPOSAL_SDC_REGISTER: {
        Cairn__Sdc *sdc = mdm_sdc_by_guid(&m->st, p->guid);
        mdm_reply_map(m, p->conn, &p->hdr, 0, sdc ? sdc->id : 0);
        break;
    }
    case MDM_PROPOSAL_MGMT: reply_done(m, p->conn, &p->hdr); break;
    case MDM_PROPOSAL_CLAIM: break; /* answered above */
    }
}

void mdm_proposal_done_cb(struct raft_apply *req, int status, void *result)
{
    struct mdm_proposal *p = (struct mdm_proposal *)req;
    struct mdm *m = req->data;
    for (int i = 0; i < MDM_MAX_PROPOSALS; i++)
        if (m->proposals[i] == p)
            m->proposals[i] = NULL;
    proposal_answer(m, p, status, status ? NULL : result);
    free(p);
}

int mdm_answer_repeat(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                      const Cairn__MgmtRequest *req)
{
    if (!req->request_id || !mdm_is_leader(m))
        return 0;
    const struct mdm_req_outcome *o = mdm_reqids_find(&m->st, req->request_id);
    if (!o || o->op != (int)req->op)
        return 0;
    log_info("mdm: request %016llx (%s) from %s was applied before: answered with its outcome",
             (unsigned long long)req->request_id, mdm_state_op_name(o->op), rpc_peer(c));
    if (o->status < 0)
        mdm_reply_error(c, h, o->status, o->err);
    else
        reply_done(m, c, h);
    return 1;
}

int mdm_propose(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                const Cairn__MgmtRequest *req, enum mdm_proposal_kind kind)
{
    if (!mdm_is_leader(m) && !c)
        return -EAGAIN;
    if (!mdm_is_leader(m)) {
        mdm_reply_not_leader(m, c, h);
        return -EAGAIN;
    }
    struct mdm_proposal *p = calloc(1, sizeof(*p));
    if (!p) {
        if (c)
            mdm_reply_error(c, h, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    p->conn = c;
    if (h)
        p->hdr = *h;
    p->kind = kind;
    p->request_id = req->request_id;
    if (req->guid)
        snprintf(p->guid, sizeof(p->guid), "%s", req->guid);
    if (kind == MDM_PROPOSAL_CLAIM) {
        const Cairn__Volume *v = mdm_volume_by_name(&m->st, req->volume);
        p->volume_id = v ? v->id : 0;
    }
    int r = mdm_raft_propose(m, req, p, mdm_proposal_done_cb);
    if (r < 0) {
        free(p);
        if (c && r == -EAGAIN) /* the CLI tries again: the next leader takes it */
            mdm_reply_error(c, h, r,
                            "this MDM is handing leadership over (or stopped leading): the "
                            "change was not taken; retry");
        else if (c)
            mdm_reply_error(c, h, r == -ENOSPC ? -EIO : r,
                            r == -ENOMEM ? "out of memory"
                            : r == -ENOSPC
                                ? "the MDM's data directory is out of space (its Raft log "
                                  "cannot grow): the change was not made; free space there"
                                : "the Raft log refused the change");
        if (r == -ENOSPC)
            r = -EIO;
    }
    return r;
}
