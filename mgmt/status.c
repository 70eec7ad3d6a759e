/* The status reply: the replicated map plus what only this MDM knows (which
 * SDSs are connected, their last heartbeats and reported usage, its own
 * Raft role). Any MDM answers it, leader or not. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdm.h"
#include "raft_link.h"
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
                    st[i].map_version = s->hb->map_version;
                    st[i].n_layers = s->hb->n_layers;
                    st[i].layers = s->hb->layers;
                    st[i].n_merging = s->hb->n_merging;
                    st[i].merging = s->hb->merging;
                    st[i].n_flatten = s->hb->n_flatten;
                    st[i].flatten = s->hb->flatten;
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
                cs[i].holds = s->holds; /* borrowed, like the heartbeats */
                cs[i].n_holds = s->nholds;
            }
        }
    }
    rep->n_sdc_status = nc;
    rep->sdc_status = csp;
}

/* ---- the volumes' recent I/O ----
 *
 * Each SDC heartbeats (every second) the I/O its NBD clients did to each
 * volume, cumulative since it started serving it. The rate of one SDC is
 * the difference between its last two heartbeats over the time between
 * them; the reply sums those over every connected SDC. An SDC silent for
 * more than three intervals contributes nothing: its last rates are no
 * longer what is happening. */

/* What every SDC did to one volume over its last interval. */
struct vol_io_sum {
    double reads, writes, read_bytes, write_bytes; /* per second */
    double read_usec, write_usec;                  /* latency sums over the interval */
    double dreads, dwrites;                        /* operations over the interval */
};

/* The increase of a cumulative count; a count that went back was reset
 * (the volume was mapped again on that SDC), and all of it is new. */
static double delta(uint64_t cur, uint64_t prev)
{
    return (double)(cur >= prev ? cur - prev : cur);
}

/* Add to sum what cur, a volume's counts in a heartbeat dt_ms after prev's
 * (prev NULL: the SDC had not reported the volume), says of the interval. */
static void vol_io_add(struct vol_io_sum *sum, const Cairn__VolumeIo *cur,
                       const Cairn__VolumeIo *prev, uint64_t dt_ms)
{
    static const Cairn__VolumeIo zero = CAIRN__VOLUME_IO__INIT;
    if (!prev)
        prev = &zero;
    double sec = (double)dt_ms / 1000.0;
    double dr = delta(cur->reads, prev->reads), dw = delta(cur->writes, prev->writes);
    sum->reads += dr / sec;
    sum->writes += dw / sec;
    sum->read_bytes += delta(cur->read_bytes, prev->read_bytes) / sec;
    sum->write_bytes += delta(cur->write_bytes, prev->write_bytes) / sec;
    sum->read_usec += delta(cur->read_usec, prev->read_usec);
    sum->write_usec += delta(cur->write_usec, prev->write_usec);
    sum->dreads += dr;
    sum->dwrites += dw;
}

/* The entry of hb for volume id: at index hint (the SDC lists its volumes
 * in the same order from one heartbeat to the next, unless the set
 * changed), else searched; NULL if none. */
static const Cairn__VolumeIo *vol_io_find(const Cairn__Heartbeat *hb, uint64_t id, size_t hint)
{
    if (hint < hb->n_volume_io && hb->volume_io[hint]->volume_id == id)
        return hb->volume_io[hint];
    for (size_t i = 0; i < hb->n_volume_io; i++)
        if (hb->volume_io[i]->volume_id == id)
            return hb->volume_io[i];
    return NULL;
}

struct vol_index {
    uint64_t id;
    size_t i; /* in the map's volumes */
};

static int vol_index_cmp(const void *a, const void *b)
{
    const struct vol_index *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Index in the map's volumes of volume id, or -1. */
static long vol_lookup(const struct vol_index *idx, size_t n, uint64_t id)
{
    struct vol_index key = {.id = id};
    const struct vol_index *f = bsearch(&key, idx, n, sizeof(*idx), vol_index_cmp);
    return f ? (long)f->i : -1;
}

/* One entry per volume of the map that a connected SDC serves (reports in
 * its heartbeat) or has mapped, in map order; rates 0 when idle. */
static void fill_volume_io(struct mdm *m, struct mdm_status *out)
{
    const Cairn__ClusterMap *map = m->st.m;
    size_t nv = map->n_volumes;
    struct vol_index *idx = status_alloc(out, nv, sizeof(*idx));
    struct vol_io_sum *sum = status_alloc(out, nv, sizeof(*sum));
    char *served = status_alloc(out, nv, 1);
    if (!idx || !sum || !served)
        return;
    for (size_t i = 0; i < nv; i++)
        idx[i] = (struct vol_index){map->volumes[i]->id, i};
    qsort(idx, nv, sizeof(*idx), vol_index_cmp);
    uint64_t now = now_ms();
    for (int j = 0; j < MDM_MAX_SESSIONS; j++) {
        const struct mdm_conn *s = m->sessions[j];
        if (!s || s->role != MDM_ROLE_SDC)
            continue;
        const Cairn__Sdc *sdc = mdm_sdc_by_guid(&m->st, s->sdc_guid);
        for (size_t k = 0; sdc && k < map->n_mappings; k++) {
            long vi = map->mappings[k]->sdc_id == sdc->id
                          ? vol_lookup(idx, nv, map->mappings[k]->volume_id)
                          : -1;
            if (vi >= 0)
                served[vi] = 1;
        }
        if (!s->hb)
            continue;
        uint64_t dt = s->prev_hb && s->hb_at > s->prev_hb_at ? s->hb_at - s->prev_hb_at : 0;
        int fresh = dt && now - s->hb_at <= 3 * dt;
        for (size_t k = 0; k < s->hb->n_volume_io; k++) {
            const Cairn__VolumeIo *cur = s->hb->volume_io[k];
            long vi = vol_lookup(idx, nv, cur->volume_id);
            if (vi < 0)
                continue; /* removed since */
            served[vi] = 1;
            if (fresh)
                vol_io_add(&sum[vi], cur, vol_io_find(s->prev_hb, cur->volume_id, k), dt);
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < nv; i++)
        n += served[i];
    Cairn__VolumeIoRate *r = status_alloc(out, n, sizeof(*r));
    Cairn__VolumeIoRate **rp = status_alloc(out, n, sizeof(*rp));
    if (!r || !rp)
        return;
    size_t o = 0;
    for (size_t i = 0; i < nv; i++) {
        if (!served[i])
            continue;
        const struct vol_io_sum *v = &sum[i];
        cairn__volume_io_rate__init(&r[o]);
        r[o].volume_id = map->volumes[i]->id;
        r[o].read_iops = v->reads;
        r[o].write_iops = v->writes;
        r[o].read_bytes_per_sec = v->read_bytes;
        r[o].write_bytes_per_sec = v->write_bytes;
        r[o].read_latency_us = v->dreads > 0 ? v->read_usec / v->dreads : 0;
        r[o].write_latency_us = v->dwrites > 0 ? v->write_usec / v->dwrites : 0;
        rp[o] = &r[o];
        o++;
    }
    out->rep.n_volume_io = n;
    out->rep.volume_io = rp;
}

/* The MDMs: this one from its own Raft state, the others as the
 * configuration lists them (their term and indexes only they know). */
static void fill_mdms(struct mdm *m, struct mdm_status *out, raft_id leader)
{
    const struct raft_configuration *conf = &m->raft.configuration;
    size_t nm = conf->n;
    Cairn__MdmStatus *ms = status_alloc(out, nm, sizeof(*ms));
    Cairn__MdmStatus **msp = status_alloc(out, nm, sizeof(*msp));
    char(*raft_addrs)[256] = status_alloc(out, nm, sizeof(*raft_addrs));
    if (!ms || !msp || !raft_addrs)
        return;
    for (size_t i = 0; i < nm; i++) {
        const struct raft_server *sv = &conf->servers[i];
        cairn__mdm_status__init(&ms[i]);
        msp[i] = &ms[i];
        ms[i].id = sv->id;
        /* Raft's address is "RAFT/CLIENT" (raft_link.h) */
        snprintf(raft_addrs[i], sizeof(raft_addrs[i]), "%.*s", (int)strcspn(sv->address, "/"),
                 sv->address);
        ms[i].raft_addr = raft_addrs[i];
        const char *client = raft_link_client_addr(sv->address);
        ms[i].addr = (char *)(client ? client : "");
        ms[i].member = sv->role == RAFT_VOTER     ? "voter"
                       : sv->role == RAFT_STANDBY ? "standby"
                                                  : "spare";
        ms[i].last_contact_ms = sv->id == m->raft.id ? 0 : -1;
        if (mdm_is_leader(m) && sv->id != m->raft.id) {
            uint64_t ago = raft_link_heard_ago(&m->transport, sv->id);
            if (ago != UINT64_MAX)
                ms[i].last_contact_ms = (int64_t)ago;
        }
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
    fill_volume_io(m, out);
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
