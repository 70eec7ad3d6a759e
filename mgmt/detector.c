/* Failure detection, on the leader only: an SDS silent for sds_timeout_ms
 * is proposed down; so is one whose session closed and whose port then
 * refuses a connection (its process is gone: no need to wait for silence);
 * a down SDS heartbeating again is proposed up; a down SDS's copies kept on
 * record are given up (GRACE_EXPIRED) after grace_ms. The heartbeat history
 * is soft state: a new leader starts it afresh. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mdm.h"
#include "net.h"
#include "util.h"

/* How long a try of a lost SDS's port may take: an answer from a host that
 * is up comes in milliseconds; no answer proves nothing (silence is the
 * heartbeat timeout's to judge). */
#define GONE_CHECK_MS 1000

/* A try of the port of an SDS whose session closed. */
struct mdm_gone_check {
    struct mdm *mdm;
    uint32_t sds_id;
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_timer_t timer;
    int open_handles;
    char buf[64];
};

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

/* down: 1 for silence, 2 for a process seen gone. */
static void propose_sds_state(struct mdm *m, Cairn__Sds *d, int down)
{
    struct mdm_seen *w = seen_of(m, d->id);
    if (!w || w->proposing)
        return;
    Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
    mr.op = down ? CAIRN__MGMT_OP__OP_SDS_DOWN : CAIRN__MGMT_OP__OP_SDS_UP;
    mr.name = d->name;
    mr.sds_gone = down == 2;
    struct mdm_proposal *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->sds_id = d->id;
    if (mdm_raft_propose(m, &mr, p, state_proposal_done) < 0) {
        free(p);
        return;
    }
    w->proposing = 1;
    if (down == 2) {
        w->gone_at = now_ms();
        log_warn("mdm: SDS '%s' is gone (its connection closed, and so did its port %s): "
                 "marking it down",
                 d->name, d->addr);
    } else if (down)
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
    mdm_snapshot_tick(m);
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
        else if (d->state == CAIRN__SDS_STATE__SDS_DOWN && quiet < 1500 && w->last_hb > w->gone_at)
            propose_sds_state(m, d, 0);
        else if (d->state == CAIRN__SDS_STATE__SDS_DOWN && !w->expiring &&
                 now - w->down_since > m->grace_ms && has_departed(m, d->id))
            expire_grace(m, d, w);
    }
}

/* ---- a lost session: is the process gone? ---- */

static void check_closed(uv_handle_t *h)
{
    struct mdm_gone_check *g = h->data;
    if (--g->open_handles == 0)
        free(g);
}

static void check_end(struct mdm_gone_check *g)
{
    struct mdm_seen *w = seen_of(g->mdm, g->sds_id);
    if (w && w->check == g)
        w->check = NULL;
    if (!uv_is_closing((uv_handle_t *)&g->timer)) {
        uv_close((uv_handle_t *)&g->timer, check_closed);
        uv_close((uv_handle_t *)&g->tcp, check_closed);
    }
}

static void check_timeout_cb(uv_timer_t *t)
{
    check_end(t->data); /* the connect's callback comes with UV_ECANCELED */
}

/* The verdict on g's SDS: gone if status says nothing listens. */
static void check_verdict(struct mdm_gone_check *g, int status)
{
    struct mdm *m = g->mdm;
    Cairn__Sds *d = mdm_sds_by_id(&m->st, g->sds_id);
    int gone = status == UV_ECONNREFUSED || status == UV_ECONNRESET || status == UV_EOF;
    /* Not if it is back already (a quick restart): then it heartbeats again. */
    if (gone && d && d->state == CAIRN__SDS_STATE__SDS_UP && mdm_is_leader(m) &&
        !mdm_sessions_find_sds(m, d->addr))
        propose_sds_state(m, d, 2);
    else if (d)
        log_debug("mdm: SDS '%s' lost its session; its port %s: %s", d->name, d->addr,
                  uv_strerror(status));
    check_end(g);
}

static void check_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct mdm_gone_check *g = h->data;
    *buf = uv_buf_init(g->buf, sizeof(g->buf));
}

static void check_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        check_verdict(st->data, (int)nread);
}

/* Refused: nothing listens at its address, on a host that answers. A
 * process being killed may close its MDM session before its listening
 * socket, so a connection it accepted then is reset as it exits: a close
 * before the check's time is up (a live SDS waits for our handshake) counts
 * the same. */
static void check_connect_cb(uv_connect_t *req, int status)
{
    struct mdm_gone_check *g = req->data;
    if (status == UV_ECANCELED)
        return; /* check_end closed it */
    if (status < 0 || uv_read_start((uv_stream_t *)&g->tcp, check_alloc_cb, check_read_cb) < 0)
        check_verdict(g, status);
}

void mdm_detector_lost(struct mdm *m, uint32_t sds_id, const char *addr)
{
    Cairn__Sds *d = mdm_sds_by_id(&m->st, sds_id);
    struct mdm_seen *w = seen_of(m, sds_id);
    struct sockaddr_storage ss;
    if (m->stopping || !mdm_is_leader(m) || !d || d->state != CAIRN__SDS_STATE__SDS_UP || !w ||
        w->check || strcmp(d->addr, addr) || net_resolve(addr, &ss) < 0)
        return;
    struct mdm_gone_check *g = calloc(1, sizeof(*g));
    if (!g)
        return;
    g->mdm = m;
    g->sds_id = sds_id;
    g->req.data = g;
    uv_tcp_init(m->loop, &g->tcp);
    uv_timer_init(m->loop, &g->timer);
    g->tcp.data = g->timer.data = g;
    g->open_handles = 2;
    w->check = g;
    if (uv_tcp_connect(&g->req, &g->tcp, (struct sockaddr *)&ss, check_connect_cb) < 0) {
        check_end(g);
        return;
    }
    uv_timer_start(&g->timer, check_timeout_cb, GONE_CHECK_MS, 0);
}

void mdm_detector_start(struct mdm *m)
{
    uv_timer_init(m->loop, &m->detector);
    m->detector.data = m;
    uv_timer_start(&m->detector, detector_cb, 250, 250);
}

void mdm_detector_cancel_checks(struct mdm *m)
{
    for (size_t i = 0; i < ARRAY_SIZE(m->seen); i++)
        if (m->seen[i].check)
            check_end(m->seen[i].check);
}

void mdm_detector_stop(struct mdm *m)
{
    mdm_detector_cancel_checks(m);
    uv_close((uv_handle_t *)&m->detector, NULL);
}
