/* The MDM cluster's membership: cairn mdm add, remove and
 * transfer-leadership, on the leader, through Raft's configuration changes;
 * and the cluster id, agreed once through the log.
 *
 * One change at a time, cluster-wide (Raft changes one server at a time, and
 * libraft keeps one change in flight): another is refused with -EBUSY until
 * the first is answered. An added MDM joins as a spare, which Raft then
 * catches up (from a snapshot if the log is compacted) before it is made a
 * voter; the CLI hears back once it votes. An add whose promotion was cut
 * short leaves a spare: the same add again makes it a voter. Raft's calls go through
 * raft_fsm.c (mdm_raft_member_*), so that the fuzz target can fake them.
 *
 * libraft 0.22.1 still has the bug docs/raft.md calls B2: a raft_assign
 * that fails leaves its struct raft_change as the change in flight, so the
 * next change would trip libraft's assertion, and a leadership loss calls
 * it back later. Such a change is kept (m->member_stuck) and no other is
 * started until that callback comes; other refusals free theirs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mdm.h"
#include "raft_link.h"

struct mdm_member_change {
    union {
        struct raft_change change;
        struct raft_transfer transfer;
    } u;
    struct mdm *m;
    struct rpc_conn *conn; /* who waits; NULL if it went away */
    struct frame_hdr hdr;
    Cairn__MgmtOp op;
    raft_id id;
    int assigning;  /* OP_MDM_ADD: added as a spare, now being made a voter */
    unsigned tries; /* OP_MDM_TRANSFER: handovers started */
};

static const struct raft_server *server_of(struct mdm *m, raft_id id)
{
    const struct raft_configuration *conf = &m->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id)
            return &conf->servers[i];
    return NULL;
}

static unsigned voters(struct mdm *m)
{
    const struct raft_configuration *conf = &m->raft.configuration;
    unsigned n = 0;
    for (unsigned i = 0; i < conf->n; i++)
        n += conf->servers[i].role == RAFT_VOTER;
    return n;
}

/* A voter the leader counts on: itself, or one it heard from within the
 * last second (ten heartbeats' replies; raft_link.h). */
#define MEMBER_HEARD_MS 1000

static int voter_current(struct mdm *m, const struct raft_server *sv)
{
    return sv->id == m->raft.id || raft_link_heard_ago(&m->transport, sv->id) < MEMBER_HEARD_MS;
}

static void answer(struct mdm_member_change *mc, int status, const char *err)
{
    if (!mc->conn)
        return;
    if (status < 0) {
        mdm_reply_error(mc->conn, &mc->hdr, status, err);
        return;
    }
    Cairn__MgmtReply rep = CAIRN__MGMT_REPLY__INIT;
    rep.info = (char *)err;
    mdm_audit_end(mc->conn, &mc->hdr, 0, NULL);
    rpc_reply_pb(mc->conn, &mc->hdr, 0, &rep.base);
}

static void finish(struct mdm_member_change *mc, int status, const char *msg)
{
    struct mdm *m = mc->m;
    answer(mc, status, msg);
    if (m->member_change == mc)
        m->member_change = NULL;
    if (m->member_stuck == mc)
        m->member_stuck = NULL;
    free(mc);
}

/* Raft refused to start the change (rv): answer; free mc, unless it was a
 * raft_assign, which libraft still holds (B2). */
static void refused(struct mdm_member_change *mc, int rv, const char *what)
{
    struct mdm *m = mc->m;
    char err[512];
    snprintf(err, sizeof(err), "%s: %s (%s)", what, raft_strerror(rv), raft_errmsg(&m->raft));
    log_warn("mdm: %s", err);
    if (!mc->assigning) {
        finish(mc, rv == RAFT_NOTLEADER ? -EAGAIN : -EIO, err);
        return;
    }
    answer(mc, -EIO, err);
    mc->conn = NULL;
    m->member_change = NULL;
    m->member_stuck = mc;
}

static void change_cb(struct raft_change *req, int status)
{
    struct mdm_member_change *mc = (struct mdm_member_change *)req;
    struct mdm *m = mc->m;
    char msg[512];
    if (status != 0) {
        /* not -EAGAIN: the CLI would send it again, and it may yet commit */
        snprintf(msg, sizeof(msg),
                 "MDM %llu: the change was not confirmed (%s); check with 'cairn mdm list'",
                 (unsigned long long)mc->id, raft_strerror(status));
        log_warn("mdm: %s", msg);
        finish(mc, -EIO, msg);
        return;
    }
    if (mc->op == CAIRN__MGMT_OP__OP_MDM_ADD && !mc->assigning) {
        /* a spare now: catch it up, then make it a voter */
        mc->assigning = 1;
        int rv = mdm_raft_member_assign(m, &mc->u.change, mc->id, RAFT_VOTER, change_cb);
        if (rv != 0)
            refused(mc, rv, "making it a voter");
        return;
    }
    if (mc->op == CAIRN__MGMT_OP__OP_MDM_ADD)
        snprintf(msg, sizeof(msg), "MDM %llu is a voter: %u voters", (unsigned long long)mc->id,
                 voters(m));
    else
        snprintf(msg, sizeof(msg), "MDM %llu removed: %u voters", (unsigned long long)mc->id,
                 voters(m));
    log_info("mdm: %s", msg);
    finish(mc, 0, msg);
}

#define TRANSFER_TRIES 4

static void transfer_cb(struct raft_transfer *req)
{
    struct mdm_member_change *mc = (struct mdm_member_change *)req;
    struct mdm *m = mc->m;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&m->raft, &lid, &laddr);
    char msg[512];
    if (lid && lid != m->raft.id && (!mc->id || lid == mc->id)) {
        snprintf(msg, sizeof(msg), "MDM %llu leads", (unsigned long long)lid);
        log_info("mdm: leadership handed to %s", msg);
        finish(mc, 0, msg);
        return;
    }
    /* libraft gives the target one election timeout (500 ms) to catch up
     * and take over; under a stream of changes it can still be behind
     * then. This MDM took no change meanwhile, so a new try starts nearer
     * (the callback has run: libraft holds the request no more). */
    if (lid == m->raft.id && mc->tries < TRANSFER_TRIES &&
        mdm_raft_transfer(m, &mc->u.transfer, mc->id, transfer_cb) == 0) {
        mc->tries++;
        log_info("mdm: leadership not handed over in time; trying again (%u of %u)", mc->tries,
                 TRANSFER_TRIES);
        return;
    }
    snprintf(msg, sizeof(msg),
             "leadership was not handed over in %u tries (leader now: %llu); retry", mc->tries,
             (unsigned long long)lid);
    finish(mc, -ETIMEDOUT, msg);
}

/* 0: a new MDM to add; 1: the spare an add that did not finish left, at
 * the same addresses; < 0: refused, err says why. */
static int check_add(struct mdm *m, const Cairn__MgmtRequest *req, char *err, size_t len)
{
    if (!req->mdm_id) {
        snprintf(err, len, "an MDM id (--id N, N from 1) is needed");
        return -EINVAL;
    }
    if (!req->raft_addr[0] || !req->addr[0] || strchr(req->raft_addr, '/') ||
        strchr(req->addr, '/') || strlen(req->raft_addr) + strlen(req->addr) > 250) {
        snprintf(err, len, "the new MDM's --raft-addr and --addr (HOST:PORT each) are needed");
        return -EINVAL;
    }
    const struct raft_configuration *conf = &m->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *sv = &conf->servers[i];
        size_t n = strcspn(sv->address, "/");
        if (sv->id == req->mdm_id) {
            char want[520]; /* the two, each at most 255 */
            snprintf(want, sizeof(want), "%s/%s", req->raft_addr, req->addr);
            if (sv->role == RAFT_SPARE && !strcmp(sv->address, want))
                return 1; /* an add that did not finish: make the spare a voter */
            snprintf(err, len, "MDM %llu is already a %s (at %s)%s", (unsigned long long)sv->id,
                     sv->role == RAFT_SPARE ? "spare" : "member", sv->address,
                     sv->role == RAFT_SPARE ? ": remove it to add it at other addresses" : "");
            return -EEXIST;
        }
        if (n == strlen(req->raft_addr) && !strncmp(sv->address, req->raft_addr, n)) {
            snprintf(err, len, "MDM %llu already uses raft address %s", (unsigned long long)sv->id,
                     req->raft_addr);
            return -EEXIST;
        }
    }
    return 0;
}

static int check_remove(struct mdm *m, const Cairn__MgmtRequest *req, char *err, size_t len)
{
    const struct raft_server *sv = server_of(m, req->mdm_id);
    if (!sv) {
        snprintf(err, len, "no MDM %llu in the cluster", (unsigned long long)req->mdm_id);
        return -ENOENT;
    }
    if (sv->id == m->raft.id) {
        snprintf(err, len,
                 "MDM %llu is the leader: hand leadership over first "
                 "(cairn mdm transfer-leadership), then remove it",
                 (unsigned long long)sv->id);
        return -EBUSY;
    }
    if (sv->role != RAFT_VOTER)
        return 0;
    /* the voters left must still make a majority of themselves */
    const struct raft_configuration *conf = &m->raft.configuration;
    unsigned left = voters(m) - 1, current = 0;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].role == RAFT_VOTER && conf->servers[i].id != sv->id)
            current += voter_current(m, &conf->servers[i]);
    if (current < left / 2 + 1) {
        snprintf(err, len,
                 "removing MDM %llu would lose quorum: of the %u voters left, only %u %s "
                 "answering, and %u are needed",
                 (unsigned long long)sv->id, left, current, current == 1 ? "is" : "are",
                 left / 2 + 1);
        return -EBUSY;
    }
    return 0;
}

void mdm_members_request(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                         const Cairn__MgmtRequest *req)
{
    char err[512];
    if (!mdm_is_leader(m)) {
        mdm_reply_not_leader(m, c, h);
        return;
    }
    if (m->member_stuck) {
        mdm_reply_error(c, h, -EBUSY,
                        "a failed change of the MDM cluster is still held by Raft on this "
                        "leader: restart this MDM (another takes over), then retry");
        return;
    }
    if (m->member_change) {
        mdm_reply_error(c, h, -EBUSY,
                        "another change of the MDM cluster is in progress; retry when it is done");
        return;
    }
    int r = 0;
    if (req->op == CAIRN__MGMT_OP__OP_MDM_ADD)
        r = check_add(m, req, err, sizeof(err));
    else if (req->op == CAIRN__MGMT_OP__OP_MDM_REMOVE)
        r = check_remove(m, req, err, sizeof(err));
    else if (req->mdm_id) {
        const struct raft_server *sv = server_of(m, req->mdm_id);
        if (!sv || sv->role != RAFT_VOTER || sv->id == m->raft.id) {
            snprintf(err, sizeof(err), "MDM %llu is not another voter",
                     (unsigned long long)req->mdm_id);
            r = -EINVAL;
        }
    } else if (voters(m) < 2) {
        snprintf(err, sizeof(err), "no other voter to hand leadership to");
        r = -EINVAL;
    }
    if (r < 0) {
        mdm_reply_error(c, h, r, err);
        return;
    }
    struct mdm_member_change *mc = calloc(1, sizeof(*mc));
    if (!mc) {
        mdm_reply_error(c, h, -ENOMEM, "out of memory");
        return;
    }
    mc->m = m;
    mc->conn = c;
    mc->hdr = *h;
    mc->op = req->op;
    mc->id = req->mdm_id;
    m->member_change = mc;
    int rv;
    const char *what;
    if (req->op == CAIRN__MGMT_OP__OP_MDM_ADD && r == 1) {
        /* left a spare by an add whose promotion was cut short (its leader
         * died, or lost the majority): Raft catches it up, then it votes */
        log_info("mdm: MDM %llu is a spare, from an add that did not finish: making it a voter",
                 (unsigned long long)mc->id);
        mc->assigning = 1;
        rv = mdm_raft_member_assign(m, &mc->u.change, mc->id, RAFT_VOTER, change_cb);
        what = "making it a voter";
    } else if (req->op == CAIRN__MGMT_OP__OP_MDM_ADD) {
        char addr[300];
        snprintf(addr, sizeof(addr), "%s/%s", req->raft_addr, req->addr);
        log_info("mdm: adding MDM %llu at %s", (unsigned long long)mc->id, addr);
        rv = mdm_raft_member_add(m, &mc->u.change, mc->id, addr, change_cb);
        what = "adding it";
    } else if (req->op == CAIRN__MGMT_OP__OP_MDM_REMOVE) {
        log_info("mdm: removing MDM %llu", (unsigned long long)mc->id);
        rv = mdm_raft_member_remove(m, &mc->u.change, mc->id, change_cb);
        what = "removing it";
    } else {
        rv = mdm_raft_transfer(m, &mc->u.transfer, mc->id, transfer_cb);
        mc->tries = 1;
        what = "handing leadership over";
    }
    if (rv != 0)
        refused(mc, rv, what);
}

void mdm_members_forget_conn(struct mdm *m, struct rpc_conn *c)
{
    if (m->member_change && m->member_change->conn == c)
        m->member_change->conn = NULL;
}

/* ---- the cluster id ---- */

static void cluster_id_done(struct raft_apply *req, int status, void *result)
{
    struct mdm *m = req->data;
    if (status != 0 || !m->st.m->cluster_id_agreed)
        m->cluster_id_proposed = 0; /* the next leader tick tries again */
    mdm_proposal_done_cb(req, status, result);
}

void mdm_members_tick(struct mdm *m)
{
    if (m->st.m->cluster_id_agreed || m->cluster_id_proposed || !m->st.m->cluster_id[0])
        return;
    Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
    mr.op = CAIRN__MGMT_OP__OP_CLUSTER_ID;
    mr.name = m->st.m->cluster_id;
    struct mdm_proposal *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    if (mdm_raft_propose(m, &mr, p, cluster_id_done) < 0) {
        free(p);
        return;
    }
    m->cluster_id_proposed = 1;
}
