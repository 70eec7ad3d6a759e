/* Failure detection, on the leader only: an SDS silent for sds_timeout_ms
 * is proposed down; a down SDS heartbeating again is proposed up; a down
 * SDS's copies kept on record are given up (GRACE_EXPIRED) after grace_ms.
 * The heartbeat history is soft state: a new leader starts it afresh. */
#include <stdlib.h>

#include "log.h"
#include "mdm.h"
#include "util.h"

/* The record of sds_id, or a free slot made its record; NULL if full. */
static struct mdm_seen *seen_of(struct mdm *m, uint32_t sds_id)
{
    struct mdm_seen *free_slot = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(m->seen); i++) {
        if (m->seen[i].sds_id == sds_id)
            return &m->seen[i];
        if (!m->seen[i].sds_id && !free_slot)
            free_slot = &m->seen[i];
    }
    if (free_slot) {
        free_slot->sds_id = sds_id;
        free_slot->last_hb = 0;
        free_slot->proposing = 0;
    }
    return free_slot;
}

void mdm_detector_heard(struct mdm *m, uint32_t sds_id, uint64_t when)
{
    struct mdm_seen *w = seen_of(m, sds_id);
    if (w)
        w->last_hb = when;
}

static void state_proposal_done(struct raft_apply *req, int status, void *result)
{
    struct mdm_proposal *p = (struct mdm_proposal *)req;
    struct mdm_seen *w = seen_of(req->data, p->sds_id);
    if (w)
        w->proposing = 0;
    mdm_proposal_done_cb(req, status, result);
}

static void propose_sds_state(struct mdm *m, Cairn__Sds *d, int down)
{
    struct mdm_seen *w = seen_of(m, d->id);
    if (!w || w->proposing)
        return;
    Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
    mr.op = down ? CAIRN__MGMT_OP__OP_SDS_DOWN : CAIRN__MGMT_OP__OP_SDS_UP;
    mr.name = d->name;
    struct mdm_proposal *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->sds_id = d->id;
    if (mdm_raft_propose(m, &mr, p, state_proposal_done) < 0) {
        free(p);
        return;
    }
    w->proposing = 1;
    if (down)
        log_warn("mdm: SDS '%s' missed its heartbeats for %u ms: marking it down", d->name,
                 m->sds_timeout_ms);
    else
        log_info("mdm: SDS '%s' is heartbeating again: marking it up", d->name);
}

/* Does some PG still keep a copy of this SDS on record? */
static int has_departed(struct mdm *m, uint32_t sds_id)
{
    for (size_t pi = 0; pi < m->st.m->n_pools; pi++) {
        Cairn__Pool *p = m->st.m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++)
            for (size_t k = 0; k < p->pgs[gi]->n_departed; k++) {
                Cairn__Device *d = mdm_device_by_id(&m->st, p->pgs[gi]->departed[k]);
                if (d && d->sds_id == sds_id)
                    return 1;
            }
    }
    return 0;
}

static void grace_done(struct raft_apply *req, int status, void *result)
{
    struct mdm_proposal *p = (struct mdm_proposal *)req;
    struct mdm_seen *w = seen_of(req->data, p->sds_id);
    if (w)
        w->expiring = 0;
    mdm_proposal_done_cb(req, status, result);
}

/* A down SDS's copies stay on record for the grace window, so that it can
 * catch up if it returns; after that they are given up. */
static void expire_grace(struct mdm *m, Cairn__Sds *d, struct mdm_seen *w)
{
    Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
    mr.op = CAIRN__MGMT_OP__OP_GRACE_EXPIRED;
    mr.name = d->name;
    struct mdm_proposal *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->sds_id = d->id;
    if (mdm_raft_propose(m, &mr, p, grace_done) < 0) {
        free(p);
        return;
    }
    w->expiring = 1;
    log_info("mdm: SDS '%s' has been down for %u s: its old copies are given up", d->name,
             m->grace_ms / 1000);
}

static void detector_cb(uv_timer_t *t)
{
    struct mdm *m = t->data;
    uint64_t now = now_ms();
    if (!mdm_is_leader(m)) {
        m->leader_since = 0;
        return;
    }
    mdm_members_tick(m);
    uint64_t stall_ms = m->last_tick ? now - m->last_tick : 0;
    int stalled = stall_ms > m->sds_timeout_ms / 2;
    m->last_tick = now;
    if (stalled)
        log_warn("mdm: the failure detector itself stalled for %llu ms; restarting its clock",
                 (unsigned long long)stall_ms);
    if (!m->leader_since || stalled) {
        /* A new leader has no heartbeat history, and a stalled MDM (paused,
         * starved) heard nothing while it was stalled: either way, give every
         * SDS a full timeout before judging it. */
        m->leader_since = now;
        for (size_t i = 0; i < ARRAY_SIZE(m->seen); i++)
            if (m->seen[i].sds_id && m->seen[i].last_hb < now)
                m->seen[i].last_hb = now;
    }
    for (size_t i = 0; i < m->st.m->n_sds; i++) {
        Cairn__Sds *d = m->st.m->sds[i];
        struct mdm_seen *w = seen_of(m, d->id);
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
        if (d->state == CAIRN__SDS_STATE__SDS_UP && quiet > m->sds_timeout_ms)
            propose_sds_state(m, d, 1);
        else if (d->state == CAIRN__SDS_STATE__SDS_DOWN && quiet < 1500)
            propose_sds_state(m, d, 0);
        else if (d->state == CAIRN__SDS_STATE__SDS_DOWN && !w->expiring &&
                 now - w->down_since > m->grace_ms && has_departed(m, d->id))
            expire_grace(m, d, w);
    }
}

void mdm_detector_start(struct mdm *m)
{
    uv_timer_init(m->loop, &m->detector);
    m->detector.data = m;
    uv_timer_start(&m->detector, detector_cb, 250, 250);
}

void mdm_detector_stop(struct mdm *m)
{
    uv_close((uv_handle_t *)&m->detector, NULL);
}
