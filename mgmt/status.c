/* The status reply: the replicated map plus what only this MDM knows (which
 * SDSs are connected, their last heartbeats and reported usage, its own
 * Raft role). Any MDM answers it, leader or not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdm.h"
#include "util.h"

void mdm_status_reply(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h)
{
    Cairn__MgmtReply rep = CAIRN__MGMT_REPLY__INIT;
    rep.map = m->st.m;
    size_t n = m->st.m->n_sds;
    Cairn__SdsStatus *st = calloc(n ? n : 1, sizeof(*st));
    Cairn__SdsStatus **stp = calloc(n ? n : 1, sizeof(*stp));
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
    rep.n_sds_status = n;
    rep.sds_status = stp;
    size_t nc = m->st.m->n_sdcs;
    Cairn__SdcStatus *cs = calloc(nc ? nc : 1, sizeof(*cs));
    Cairn__SdcStatus **csp = calloc(nc ? nc : 1, sizeof(*csp));
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
    rep.n_sdc_status = nc;
    rep.sdc_status = csp;
    char info[256];
    raft_id lid;
    const char *laddr = NULL;
    raft_leader(&m->raft, &lid, &laddr);
    snprintf(info, sizeof(info), "raft: %s, leader id %llu, applied index %llu",
             mdm_is_leader(m) ? "leader" : "follower", (unsigned long long)lid,
             (unsigned long long)raft_last_applied(&m->raft));
    rep.info = info;
    /* The MDMs: this one from its own Raft state, the others as the
     * configuration lists them (their term and indexes only they know). */
    const struct raft_configuration *conf = &m->raft.configuration;
    size_t nm = conf->n;
    Cairn__MdmStatus *ms = calloc(nm ? nm : 1, sizeof(*ms));
    Cairn__MdmStatus **msp = calloc(nm ? nm : 1, sizeof(*msp));
    for (size_t i = 0; ms && msp && i < nm; i++) {
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
            ms[i].role = sv->id == lid ? "leader" : "follower";
        }
    }
    rep.n_mdms = ms && msp ? nm : 0;
    rep.mdms = msp;
    rpc_reply_pb(c, h, 0, &rep.base);
    free(ms);
    free(msp);
    free(st);
    free(stp);
    free(cs);
    free(csp);
}
