/* Claims of single-writer volumes (docs/attach.md): an SDC asks before an
 * NBD client of it opens a volume read-write (FT_CLAIM). The leader grants
 * it when the volume's writer (Volume.writer_sdc, replicated) is that SDC,
 * or when the writer's session does not hold it open; a change of writer
 * is a Raft entry (OP_WRITER_SET) that bumps the volume's writer_gen, the
 * fence SDSs check on every change. Who holds a volume open is soft state
 * of the leader: the volumes each SDC session claimed and has not
 * released. A session that closes holds nothing, so a crashed host does not
 * lock its volumes; if it was only cut off, its writes still carry the old
 * writer_gen, which the SDSs refuse once a new writer is granted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "log.h"
#include "mdm.h"
#include "util.h"

/* An SDC heartbeats every second. One silent this long (its host crashed
 * without closing the connection, its link is cut, it is stopped) holds
 * nothing: another SDC's claim is granted, and fences it. */
#define CLAIM_SILENCE_MS 5000

static int holds(const struct mdm_conn *s, uint64_t volume_id)
{
    for (size_t i = 0; i < s->nholds; i++)
        if (s->holds[i] == volume_id)
            return 1;
    return 0;
}

static void hold_add(struct mdm_conn *s, uint64_t volume_id)
{
    s->claimed_at = now_ms();
    if (holds(s, volume_id))
        return;
    uint64_t *n = realloc(s->holds, sizeof(*n) * (s->nholds + 1));
    if (!n)
        return; /* unrecorded: a second SDC is not refused, only fenced */
    s->holds = n;
    s->holds[s->nholds++] = volume_id;
}

static void hold_drop(struct mdm_conn *s, uint64_t volume_id)
{
    for (size_t i = 0; i < s->nholds; i++)
        if (s->holds[i] == volume_id) {
            s->holds[i] = s->holds[--s->nholds];
            return;
        }
}

void mdm_claims_forget(struct mdm_conn *s)
{
    free(s->holds);
    s->holds = NULL;
    s->nholds = 0;
}

/* The session of v's writer, if it holds v open and is not silent; NULL
 * otherwise. */
static struct mdm_conn *holder_of(struct mdm *m, const Cairn__Volume *v)
{
    if (!v->writer_sdc)
        return NULL;
    const Cairn__Sdc *w = mdm_sdc_by_id(&m->st, v->writer_sdc);
    uint64_t now = now_ms();
    for (int i = 0; w && i < MDM_MAX_SESSIONS; i++) {
        struct mdm_conn *s = m->sessions[i];
        if (s && s->role == MDM_ROLE_SDC && !strcmp(s->sdc_guid, w->guid) && holds(s, v->id) &&
            now - MAX(s->last_hb, s->claimed_at) < CLAIM_SILENCE_MS)
            return s;
    }
    return NULL;
}

static void reply_gen(struct rpc_conn *c, const struct frame_hdr *h, uint64_t gen)
{
    Cairn__MapReply rep = CAIRN__MAP_REPLY__INIT;
    rep.writer_gen = gen;
    rpc_reply_pb(c, h, 0, &rep.base);
}

static const Cairn__Mapping *mapping_of(const struct mdm *m, uint64_t volume_id, uint32_t sdc_id)
{
    for (size_t i = 0; i < m->st.m->n_mappings; i++) {
        const Cairn__Mapping *mp = m->st.m->mappings[i];
        if (mp->volume_id == volume_id && mp->sdc_id == sdc_id)
            return mp;
    }
    return NULL;
}

void mdm_claim_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct mdm_conn *s = rpc_data(c);
    struct mdm *m = s->mdm;
    char err[512];
    Cairn__VolumeClaim *req = cairn__volume_claim__unpack(NULL, h->msg_len, msg);
    if (!req) {
        log_warn("mdm: malformed claim from %s", rpc_peer(c));
        mdm_reply_error(c, h, -EINVAL, "malformed claim");
        return;
    }
    const Cairn__Sdc *sdc = s->role == MDM_ROLE_SDC ? mdm_sdc_by_guid(&m->st, s->sdc_guid) : NULL;
    Cairn__Volume *v = cmap_volume(m->st.m, req->volume_id);
    const Cairn__Mapping *mp = v && sdc ? mapping_of(m, v->id, sdc->id) : NULL;
    if (!sdc) {
        LOG_LIMITED(LOG_WARN, 1000, "mdm: a claim from %s, which is not a registered SDC: refused",
                    rpc_peer(c));
        mdm_reply_error(c, h, -EPERM, "only a registered SDC may claim a volume");
    } else if (req->release) {
        hold_drop(s, req->volume_id);
        reply_gen(c, h, 0);
    } else if (!v) {
        snprintf(err, sizeof(err), "no volume with id %llu", (unsigned long long)req->volume_id);
        mdm_reply_error(c, h, -ENOENT, err);
    } else if (!mp || mp->read_only || sdc->pending) {
        snprintf(err, sizeof(err), "volume '%s' is not mapped read-write to SDC '%s'", v->name,
                 sdc->name);
        LOG_LIMITED(LOG_WARN, 1000, "mdm: claim from %s refused: %s", rpc_peer(c), err);
        mdm_reply_error(c, h, -EACCES, err);
    } else if (mp->access == CAIRN__MAPPING_ACCESS__ACCESS_SHARED) {
        reply_gen(c, h, v->writer_gen); /* no single writer: nothing to hold */
    } else if (req->writer_gen) {
        /* a session back: hold again only what is still ours */
        if (v->writer_sdc == sdc->id && v->writer_gen == req->writer_gen) {
            hold_add(s, v->id);
            reply_gen(c, h, v->writer_gen);
        } else {
            mdm_reply_error(c, h, -ESTALE, "the volume was taken over since");
        }
    } else if (v->writer_sdc == sdc->id) {
        hold_add(s, v->id);
        reply_gen(c, h, v->writer_gen);
    } else {
        struct mdm_conn *holder = holder_of(m, v);
        const Cairn__Sdc *w = holder ? mdm_sdc_by_id(&m->st, v->writer_sdc) : NULL;
        if (w) {
            snprintf(err, sizeof(err),
                     "volume '%s' is open read-write on SDC '%s' (single-writer): take it over "
                     "with 'cairn volume map %s --sdc %s --takeover', or open it read-only "
                     "(export '%s@ro')",
                     v->name, w->name, v->name, sdc->name, v->name);
            log_info("mdm: claim of SDC '%s' refused: %s", sdc->name, err);
            mdm_reply_error(c, h, -EBUSY, err);
        } else {
            /* the writer changes: a new fence, through the log. Held from
             * now, so that a second claimant waits for this one's outcome
             * rather than racing it. */
            hold_add(s, v->id);
            Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
            mr.op = CAIRN__MGMT_OP__OP_WRITER_SET;
            mr.volume = v->name;
            mr.sdc = sdc->name;
            uint64_t vid = v->id;
            if (mdm_propose(m, c, h, &mr, MDM_PROPOSAL_CLAIM) < 0)
                hold_drop(s, vid); /* answered already */
        }
    }
    cairn__volume_claim__free_unpacked(req, NULL);
}

void mdm_claim_answer(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                      uint64_t volume_id, int status, const char *msg)
{
    struct mdm_conn *s = rpc_data(c);
    const Cairn__Sdc *sdc = mdm_sdc_by_guid(&m->st, s->sdc_guid);
    const Cairn__Volume *v = cmap_volume(m->st.m, volume_id);
    if (status == 0 && (!sdc || !v || v->writer_sdc != sdc->id)) {
        status = -EBUSY;
        msg = "another SDC claimed the volume at the same time";
    }
    if (status < 0) {
        hold_drop(s, volume_id);
        mdm_reply_error(c, h, status, msg);
        return;
    }
    log_info("mdm: SDC '%s' is the writer of volume '%s' (writer generation %llu)", sdc->name,
             v->name, (unsigned long long)v->writer_gen);
    reply_gen(c, h, v->writer_gen);
}
