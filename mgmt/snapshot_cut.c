/* The leader's side of a snapshot's cut (docs/snapshots.md, "The cut").
 *
 * A SNAPSHOT_CREATE from the CLI is not proposed as it comes. The leader
 * first asks every serving SDS (up or draining) to pause new changes to
 * the volumes (FT_FREEZE at the map version v it holds), asking again
 * every few milliseconds an SDS that still has changes in progress. Once
 * every one of them is paused, it proposes the SNAPSHOT_CREATE with base
 * version v, and right after it a SNAPSHOT_ABORT: the create applies only
 * at v, and whatever happens to it, the abort's map version lifts every
 * pause. An SDS that does not pause within CUT_PAUSE_MS, or one serving
 * but not connected here, fails the request (and the abort lifts the
 * others); a map that moved past v meanwhile restarts the cut, at most
 * CUT_ATTEMPTS times. One cut runs at a time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmap.h"
#include "log.h"
#include "mdm.h"
#include "util.h"

#define CUT_PAUSE_MS 2000
#define CUT_RETRY_MS 2
#define CUT_ATTEMPTS 3

enum cut_sds { CS_ASK, CS_ASKED, CS_PAUSED };

struct cut_target {
    struct mdm_cut *cut;
    uint32_t sds_id;
    enum cut_sds state;
};

struct mdm_cut {
    struct mdm *mdm;
    struct rpc_conn *cli; /* NULL once it closed */
    struct frame_hdr hdr;
    Cairn__MgmtRequest *req; /* owned */
    uint64_t *vols;
    size_t nvols;
    uint64_t base;
    struct cut_target *t;
    size_t nt;
    int outstanding; /* FREEZE calls not answered yet: the cut lives until 0 */
    int done;        /* answered (or failed): only waits for outstanding */
    int attempts;
    uint64_t deadline;
    uv_timer_t timer;
};

static void cut_step(struct mdm_cut *cut);

static void timer_closed_cb(uv_handle_t *h)
{
    struct mdm_cut *cut = h->data;
    cairn__mgmt_request__free_unpacked(cut->req, NULL);
    free(cut->vols);
    free(cut->t);
    free(cut);
}

static void cut_free_if_idle(struct mdm_cut *cut)
{
    if (!cut->done || cut->outstanding > 0)
        return;
    if (cut->mdm->cut == cut)
        cut->mdm->cut = NULL;
    uv_timer_stop(&cut->timer);
    uv_close((uv_handle_t *)&cut->timer, timer_closed_cb);
}

/* Lift the pause wherever it took hold: a map version above base. */
static void propose_abort(struct mdm_cut *cut)
{
    Cairn__MgmtRequest ab = CAIRN__MGMT_REQUEST__INIT;
    ab.op = CAIRN__MGMT_OP__OP_SNAPSHOT_ABORT;
    ab.base_version = cut->base;
    mdm_propose(cut->mdm, NULL, NULL, &ab, MDM_PROPOSAL_MGMT);
}

static void cut_fail(struct mdm_cut *cut, int status, const char *msg)
{
    if (cut->done)
        return;
    cut->done = 1;
    log_warn("mdm: snapshot '%s' not taken: %s", cut->req->name, msg);
    propose_abort(cut);
    if (cut->cli)
        mdm_reply_error(cut->cli, &cut->hdr, status, msg);
    cut_free_if_idle(cut);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *sds_name(struct mdm *m, uint32_t id)
{
    Cairn__Sds *o = mdm_sds_by_id(&m->st, id);
    return o ? o->name : "?";
}

static void freeze_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                            uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    rpc_buf_free(payload);
    struct cut_target *t = arg;
    struct mdm_cut *cut = t->cut;
    cut->outstanding--;
    if (cut->done) {
        cut_free_if_idle(cut);
        return;
    }
    if (status == 0) {
        t->state = CS_PAUSED;
        cut_step(cut);
    } else if (status == -EBUSY) {
        t->state = CS_ASK; /* changes still in progress there: asked again soon */
    } else if (status == -ESTALE) {
        t->state = CS_ASK; /* it holds a newer map: cut_step() starts over */
        cut->base = 0;
    } else {
        char err[256];
        snprintf(err, sizeof(err), "SDS '%s' could not pause the volumes' writes: %s",
                 sds_name(cut->mdm, t->sds_id), strerror(-status));
        cut_fail(cut, status, err);
    }
}

static struct mdm_conn *sds_session(struct mdm *m, uint32_t sds_id)
{
    for (int i = 0; i < MDM_MAX_SESSIONS; i++)
        if (m->sessions[i] && m->sessions[i]->role == MDM_ROLE_SDS &&
            m->sessions[i]->sds_id == sds_id)
            return m->sessions[i];
    return NULL;
}

static void ask(struct cut_target *t)
{
    struct mdm_cut *cut = t->cut;
    struct mdm *m = cut->mdm;
    struct mdm_conn *s = sds_session(m, t->sds_id);
    if (!s) {
        char err[256];
        snprintf(err, sizeof(err),
                 "SDS '%s' serves data but is not connected to this MDM: its writes cannot be "
                 "paused for the snapshot",
                 sds_name(m, t->sds_id));
        cut_fail(cut, -EHOSTUNREACH, err);
        return;
    }
    Cairn__Freeze f = CAIRN__FREEZE__INIT;
    f.volumes = cut->vols;
    f.n_volumes = cut->nvols;
    f.base_version = cut->base;
    t->state = CS_ASKED;
    if (rpc_call_pb(s->conn, FT_FREEZE, &f.base, CUT_PAUSE_MS, freeze_reply_cb, t) < 0) {
        char err[256];
        snprintf(err, sizeof(err), "cannot reach SDS '%s' to pause its writes",
                 sds_name(m, t->sds_id));
        cut_fail(cut, -EHOSTUNREACH, err);
        return;
    }
    cut->outstanding++;
}

/* (Re)start the pause at the map version held now. */
static int cut_begin(struct mdm_cut *cut)
{
    struct mdm *m = cut->mdm;
    const Cairn__ClusterMap *map = m->st.m;
    free(cut->t);
    cut->t = calloc(map->n_sds + 1, sizeof(*cut->t));
    if (!cut->t)
        return -ENOMEM;
    cut->nt = 0;
    for (size_t i = 0; i < map->n_sds; i++) {
        Cairn__SdsState st = map->sds[i]->state;
        if (st != CAIRN__SDS_STATE__SDS_UP && st != CAIRN__SDS_STATE__SDS_DRAINING)
            continue;
        cut->t[cut->nt++] = (struct cut_target){.cut = cut, .sds_id = map->sds[i]->id};
    }
    cut->base = map->version;
    cut->deadline = now_ms() + CUT_PAUSE_MS;
    cut->attempts++;
    return 0;
}

static void cut_step(struct mdm_cut *cut)
{
    struct mdm *m = cut->mdm;
    if (cut->done)
        return;
    if (!mdm_is_leader(m)) {
        cut_fail(cut, -EAGAIN, "this MDM lost the leadership during the snapshot; try again");
        return;
    }
    if (cut->base != m->st.m->version) {
        /* the map moved (or an SDS holds a newer one): start over */
        if (cut->outstanding > 0)
            return; /* once the calls of this round are answered */
        if (cut->attempts >= CUT_ATTEMPTS) {
            cut_fail(cut, -EAGAIN,
                     "the cluster kept changing during the snapshot; nothing was taken: try "
                     "again");
            return;
        }
        if (cut_begin(cut) < 0) {
            cut_fail(cut, -ENOMEM, "out of memory");
            return;
        }
    }
    size_t paused = 0;
    for (size_t i = 0; i < cut->nt && !cut->done; i++) {
        if (cut->t[i].state == CS_ASK)
            ask(&cut->t[i]);
        paused += cut->t[i].state == CS_PAUSED;
    }
    if (cut->done)
        return;
    if (paused < cut->nt) {
        if (now_ms() >= cut->deadline) {
            char err[256] = "";
            for (size_t i = 0; i < cut->nt && !err[0]; i++)
                if (cut->t[i].state != CS_PAUSED)
                    snprintf(err, sizeof(err),
                             "SDS '%s' did not pause the volumes' writes within %d ms; nothing "
                             "was taken",
                             sds_name(m, cut->t[i].sds_id), CUT_PAUSE_MS);
            cut_fail(cut, -ETIMEDOUT, err);
        }
        return; /* the timer asks again */
    }
    /* Every serving SDS is paused at base: the switch. */
    cut->done = 1;
    cut->req->base_version = cut->base;
    cut->req->time_ms = wall_ms();
    if (cut->cli)
        mdm_propose(m, cut->cli, &cut->hdr, cut->req, MDM_PROPOSAL_MGMT);
    else
        mdm_propose(m, NULL, NULL, cut->req, MDM_PROPOSAL_MGMT);
    propose_abort(cut);
    cut_free_if_idle(cut);
}

static void timer_cb(uv_timer_t *tm)
{
    struct mdm_cut *cut = tm->data;
    cut_step(cut);
    if (!cut->done)
        uv_timer_start(&cut->timer, timer_cb, CUT_RETRY_MS, 0);
}

void mdm_snapshot_start(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                        Cairn__MgmtRequest *req)
{
    if (!mdm_is_leader(m)) {
        mdm_propose(m, c, h, req, MDM_PROPOSAL_MGMT); /* replies "not leader" */
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    if (m->cut) {
        mdm_reply_error(c, h, -EBUSY, "another snapshot is being taken; try again");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    if (req->n_volumes == 0 || req->n_volumes > 64) {
        mdm_reply_error(c, h, -EINVAL, "a snapshot names 1 to 64 volumes");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    struct mdm_cut *cut = calloc(1, sizeof(*cut));
    uint64_t *vols = calloc(req->n_volumes, sizeof(uint64_t));
    if (!cut || !vols) {
        free(cut);
        free(vols);
        mdm_reply_error(c, h, -ENOMEM, "out of memory");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    for (size_t i = 0; i < req->n_volumes; i++) {
        Cairn__Volume *v = mdm_volume_by_name(&m->st, req->volumes[i]);
        if (!v) {
            char err[256];
            snprintf(err, sizeof(err), "no volume named '%.64s'", req->volumes[i]);
            mdm_reply_error(c, h, -ENOENT, err);
            cairn__mgmt_request__free_unpacked(req, NULL);
            free(cut);
            free(vols);
            return;
        }
        vols[i] = v->id;
    }
    cut->mdm = m;
    cut->cli = c;
    cut->hdr = *h;
    cut->req = req;
    cut->vols = vols;
    cut->nvols = req->n_volumes;
    uv_timer_init(m->loop, &cut->timer);
    cut->timer.data = cut;
    m->cut = cut;
    if (cut_begin(cut) < 0) {
        cut_fail(cut, -ENOMEM, "out of memory");
        return;
    }
    cut_step(cut);
    if (!cut->done)
        uv_timer_start(&cut->timer, timer_cb, CUT_RETRY_MS, 0);
}

void mdm_snapshot_forget_conn(struct mdm *m, struct rpc_conn *c)
{
    if (m->cut && m->cut->cli == c)
        m->cut->cli = NULL;
}

/* ---- the end of a removed snapshot's merge ----
 *
 * A LayerMerge record goes once every serving SDS has reported, from a map
 * that has the record, that it holds no slot of its layer any more, and no
 * other merge goes into that layer. An SDS away meanwhile (down, in
 * maintenance) gets the merged data with its catch-up, and frees what it
 * kept of the layer once its map no longer has it (server/layers.c). */

static int merge_done_everywhere(struct mdm *m, const Cairn__LayerMerge *mg)
{
    const Cairn__ClusterMap *map = m->st.m;
    for (size_t i = 0; i < map->n_merges; i++)
        if (map->merges[i]->into == mg->from)
            return 0;
    for (size_t i = 0; i < map->n_sds; i++) {
        Cairn__SdsState st = map->sds[i]->state;
        if (st != CAIRN__SDS_STATE__SDS_UP && st != CAIRN__SDS_STATE__SDS_DRAINING)
            continue;
        struct mdm_conn *s = sds_session(m, map->sds[i]->id);
        if (!s || !s->hb || s->hb->layers_version < mg->version)
            return 0;
        for (size_t k = 0; k < s->hb->n_merging; k++)
            if (s->hb->merging[k] == mg->from)
                return 0;
    }
    return 1;
}

/* 1 if every serving SDS has gone through all of v's extents at a map of
 * its flatten (or later). */
static int flatten_done_everywhere(struct mdm *m, const Cairn__Volume *v)
{
    const Cairn__ClusterMap *map = m->st.m;
    for (size_t i = 0; i < map->n_sds; i++) {
        Cairn__SdsState st = map->sds[i]->state;
        if (st != CAIRN__SDS_STATE__SDS_UP && st != CAIRN__SDS_STATE__SDS_DRAINING)
            continue;
        struct mdm_conn *s = sds_session(m, map->sds[i]->id);
        if (!s || !s->hb)
            return 0;
        int done = 0;
        for (size_t k = 0; k < s->hb->n_flatten; k++) {
            const Cairn__FlattenProgress *f = s->hb->flatten[k];
            if (f->volume_id == v->id && f->map_version >= v->flatten_version &&
                f->done >= f->total)
                done = 1;
        }
        if (!done)
            return 0;
    }
    return 1;
}

void mdm_snapshot_tick(struct mdm *m)
{
    uint64_t now = now_ms();
    if (now - m->merge_proposed_at < 1000)
        return;
    const Cairn__ClusterMap *map = m->st.m;
    for (size_t i = 0; i < map->n_volumes; i++) {
        const Cairn__Volume *v = map->volumes[i];
        if (!v->flattening || !flatten_done_everywhere(m, v))
            continue;
        Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
        req.op = CAIRN__MGMT_OP__OP_VOLUME_FLATTENED;
        req.volume = v->name;
        req.base_version = v->flatten_version;
        log_info("mdm: volume '%s' is flattened on every SDS", v->name);
        mdm_propose(m, NULL, NULL, &req, MDM_PROPOSAL_MGMT);
        m->merge_proposed_at = now;
        return;
    }
    for (size_t i = 0; i < map->n_merges; i++) {
        if (!merge_done_everywhere(m, map->merges[i]))
            continue;
        Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
        req.op = CAIRN__MGMT_OP__OP_LAYER_MERGED;
        req.base_version = map->merges[i]->from;
        log_info("mdm: layer %llu of volume %llu is merged on every SDS",
                 (unsigned long long)map->merges[i]->from,
                 (unsigned long long)map->merges[i]->volume_id);
        mdm_propose(m, NULL, NULL, &req, MDM_PROPOSAL_MGMT);
        m->merge_proposed_at = now;
        return; /* one a second: the next after this one applied */
    }
}
