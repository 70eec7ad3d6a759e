/* The status reply: the replicated map plus what only this MDM knows (which
 * SDSs are connected, their last heartbeats and reported usage, its own
 * Raft role). Any MDM answers it, leader or not. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdm.h"
#include "util.h"

/* n zeroed elements of size sz, listed in s->alloc to be freed by
 * mdm_status_clear(); NULL (and s->failed) when memory or slots ran out. */
static void *status_alloc(struct mdm_status *s, size_t n, size_t sz)
{
    if (s->n_alloc >= MDM_STATUS_ALLOCS) {
        s->failed = 1;
        return NULL;
    }
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        s->failed = 1;
        return NULL;
    }
    s->alloc[s->n_alloc++] = p;
    return p;
}

static void fill_sds(struct mdm *m, struct mdm_status *out)
{
    Cairn__MgmtReply *rep = &out->rep;
    size_t n = m->st.m->n_sds;
    Cairn__SdsStatus *st = status_alloc(out, n, sizeof(*st));
    Cairn__SdsStatus **stp = status_alloc(out, n, sizeof(*stp));
    if (!st || !stp)
        return;
    uint64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        cairn__sds_status__init(&st[i]);
        stp[i] = &st[i];
        st[i].sds_id = m->st.m->sds[i]->id;
        st[i].state = m->st.m->sds[i]->state == CAIRN__SDS_STATE__SDS_UP ? "up" : "down";
        for (int j = 0; j < MDM_MAX_SESSIONS; j++) {
            struct mdm_conn *s = m->sessions[j];
            if (s && s->role == MDM_ROLE_SDS && s->sds_id == st[i].sds_id) {
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
    rep->n_sds_status = n;
    rep->sds_status = stp;
}

static void fill_sdcs(struct mdm *m, struct mdm_status *out)
{
    Cairn__MgmtReply *rep = &out->rep;
    size_t nc = m->st.m->n_sdcs;
    Cairn__SdcStatus *cs = status_alloc(out, nc, sizeof(*cs));
    Cairn__SdcStatus **csp = status_alloc(out, nc, sizeof(*csp));
    if (!cs || !csp)
        return;
    uint64_t now = now_ms();
    for (size_t i = 0; i < nc; i++) {
        const Cairn__Sdc *sdc = m->st.m->sdcs[i];
        cairn__sdc_status__init(&cs[i]);
        csp[i] = &cs[i];
        cs[i].sdc_id = sdc->id;
        for (int j = 0; j < MDM_MAX_SESSIONS; j++) {
            struct mdm_conn *s = m->sessions[j];
            if (s && s->role == MDM_ROLE_SDC && !strcmp(s->sdc_guid, sdc->guid)) {
                cs[i].connected = 1;
                cs[i].last_heartbeat_ms_ago = s->last_hb ? now - s->last_hb : 0;
                cs[i].map_version = s->hb ? s->hb->map_version : 0;
            }
        }
    }
    rep->n_sdc_status = nc;
    rep->sdc_status = csp;
}

/* The MDMs: this one from its own Raft state, the others as the
 * configuration lists them (their term and indexes only they know). */
static void fill_mdms(struct mdm *m, struct mdm_status *out, raft_id leader)
{
    const struct raft_configuration *conf = &m->raft.configuration;
    size_t nm = conf->n;
    Cairn__MdmStatus *ms = status_alloc(out, nm, sizeof(*ms));
    Cairn__MdmStatus **msp = status_alloc(out, nm, sizeof(*msp));
    if (!ms || !msp)
        return;
    for (size_t i = 0; i < nm; i++) {
        const struct raft_server *sv = &conf->servers[i];
        cairn__mdm_status__init(&ms[i]);
        msp[i] = &ms[i];
        ms[i].id = sv->id;
        ms[i].raft_addr = (char *)sv->address;
        ms[i].self = sv->id == m->raft.id;
        if (ms[i].self) {
            ms[i].role = (char *)mdm_raft_role(m);
            ms[i].term = m->raft.current_term;
            ms[i].commit_index = m->raft.commit_index;
            ms[i].applied_index = raft_last_applied(&m->raft);
        } else {
            ms[i].role = sv->id == leader ? "leader" : "follower";
        }
    }
    out->rep.n_mdms = nm;
    out->rep.mdms = msp;
}

int mdm_status_fill(struct mdm *m, struct mdm_status *out)
{
    memset(out, 0, sizeof(*out));
    cairn__mgmt_reply__init(&out->rep);
    out->rep.map = m->st.m;
    fill_sds(m, out);
    fill_sdcs(m, out);
    raft_id lid;
    const char *laddr = NULL;
    raft_leader(&m->raft, &lid, &laddr);
    snprintf(out->info, sizeof(out->info), "raft: %s, leader id %llu, applied index %llu",
             mdm_is_leader(m) ? "leader" : "follower", (unsigned long long)lid,
             (unsigned long long)raft_last_applied(&m->raft));
    out->rep.info = out->info;
    fill_mdms(m, out, lid);
    if (out->failed) {
        mdm_status_clear(out);
        return -ENOMEM;
    }
    return 0;
}

void mdm_status_clear(struct mdm_status *s)
{
    for (int i = 0; i < s->n_alloc; i++)
        free(s->alloc[i]);
    s->n_alloc = 0;
    cairn__mgmt_reply__init(&s->rep);
}

void mdm_status_reply(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h)
{
    struct mdm_status st;
    if (mdm_status_fill(m, &st) < 0) {
        Cairn__MgmtReply err = CAIRN__MGMT_REPLY__INIT;
        err.error = "out of memory";
        rpc_reply_pb(c, h, 0, &err.base);
        return;
    }
    rpc_reply_pb(c, h, 0, &st.rep.base);
    mdm_status_clear(&st);
}
