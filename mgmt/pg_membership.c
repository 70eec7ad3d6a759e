/* PG membership: which copies each PG has, and what happens to them when
 * an SDS or a device goes away or comes back.
 *
 * A PG lists its in-sync copies (devices, primary first), the copies being
 * built (rebuilding; those that only catch up on what changed are also in
 * catchup), the copies of an absent SDS kept on record (departed) and, during
 * a rebalance, the copies a rebuilding one will replace (leaving). Every
 * change of these lists bumps the PG's epoch, so that SDSs and SDCs holding
 * an older map are refused and refresh it. */
#include <errno.h>
#include <stdlib.h>

#include "capacity.h"
#include "placement.h"
#include "state_internal.h"

/* Give a PG rebuild targets until it has `copies` members, each in a fault
 * set of its own, on devices of SDSs that are up. Deterministic: the same
 * straw2 draw as initial placement, over the devices that are eligible now.
 * Returns 1 if the PG changed. */
static int pg_replenish(struct mdm_state *s, const Cairn__Pool *p, uint32_t pgno, Cairn__Pg *g)
{
    int changed = 0;
    for (;;) {
        /* copies away for maintenance hold their place; copies of a failed
         * SDS do not (their rebuild starts at once; the old copy may still
         * catch up if it returns first) */
        size_t held = 0;
        for (size_t k = 0; k < g->n_departed; k++) {
            Cairn__Device *d = mdm_device_by_id(s, g->departed[k]);
            Cairn__Sds *o = d ? mdm_sds_by_id(s, d->sds_id) : NULL;
            held += o && o->state == CAIRN__SDS_STATE__SDS_MAINTENANCE;
        }
        if (g->n_devices + g->n_rebuilding + held >= p->copies)
            break;
        uint32_t used[8];
        int nused = 0;
        for (size_t k = 0; k < g->n_devices && nused < 8; k++) {
            Cairn__Device *d = mdm_device_by_id(s, g->devices[k]);
            Cairn__Sds *o = d ? mdm_sds_by_id(s, d->sds_id) : NULL;
            if (o)
                used[nused++] = capacity_fault_domain(s->m, o);
        }
        for (size_t k = 0; k < g->n_rebuilding + g->n_departed && nused < 8; k++) {
            uint32_t id = k < g->n_rebuilding ? g->rebuilding[k] : g->departed[k - g->n_rebuilding];
            Cairn__Device *d = mdm_device_by_id(s, id);
            Cairn__Sds *o = d ? mdm_sds_by_id(s, d->sds_id) : NULL;
            if (o)
                used[nused++] = capacity_fault_domain(s->m, o);
        }
        struct placement_dev devs[256];
        int nd = 0;
        for (size_t i = 0; i < s->m->n_devices && nd < 256; i++) {
            Cairn__Device *d = s->m->devices[i];
            if (!capacity_device_placeable(d, p) || !state_sds_up(s, d->sds_id))
                continue;
            Cairn__Sds *o = mdm_sds_by_id(s, d->sds_id);
            devs[nd].id = d->id;
            devs[nd].fault_set = capacity_fault_domain(s->m, o);
            devs[nd].weight = d->capacity >> 20;
            nd++;
        }
        int pick = placement_pick(devs, nd, used, nused, pgno, p->id);
        if (pick < 0)
            break; /* no eligible fault set left: stays degraded until one returns */
        uint32_t *nr = realloc(g->rebuilding, (g->n_rebuilding + 1) * sizeof(uint32_t));
        if (!nr)
            abort();
        g->rebuilding = nr;
        g->rebuilding[g->n_rebuilding++] = devs[pick].id;
        changed = 1;
    }
    return changed;
}

/* Is this copy lost: on the SDS going down (gone_sds), or the failed device? */
static int copy_gone(const Cairn__Device *d, uint32_t gone_sds, uint32_t gone_dev)
{
    return d && ((gone_sds && d->sds_id == gone_sds) || (gone_dev && d->id == gone_dev));
}

/* A PG whose only in-sync copy is lost keeps it: its data is unavailable,
 * not gone, until that copy returns. */
void pg_membership_changed(struct mdm_state *s, uint32_t gone_sds, uint32_t gone_dev)
{
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            int changed = 0;
            if (gone_sds || gone_dev) {
                for (size_t k = 0; k < g->n_rebuilding;) {
                    Cairn__Device *d = mdm_device_by_id(s, g->rebuilding[k]);
                    if (copy_gone(d, gone_sds, gone_dev)) {
                        state_u32_remove(g->catchup, &g->n_catchup, d->id);
                        changed |= state_u32_remove(g->rebuilding, &g->n_rebuilding, d->id);
                    } else {
                        k++;
                    }
                }
                for (size_t k = 0; k < g->n_departed;) {
                    Cairn__Device *d = mdm_device_by_id(s, g->departed[k]);
                    if (copy_gone(d, 0, gone_dev))
                        changed |= state_u32_remove(g->departed, &g->n_departed, d->id);
                    else
                        k++;
                }
                for (size_t k = 0; k < g->n_devices;) {
                    Cairn__Device *d = mdm_device_by_id(s, g->devices[k]);
                    size_t others = 0;
                    for (size_t j = 0; j < g->n_devices; j++) {
                        Cairn__Device *o = mdm_device_by_id(s, g->devices[j]);
                        others += o && !copy_gone(o, gone_sds, gone_dev) && !o->failed &&
                                  state_sds_up(s, o->sds_id);
                    }
                    if (copy_gone(d, gone_sds, gone_dev) && others > 0) {
                        /* a failed SDS's copy is kept on record: it may catch
                         * up if the SDS returns within the grace window */
                        if (gone_sds)
                            state_u32_append(&g->departed, &g->n_departed, d->id);
                        state_u32_remove(g->leaving, &g->n_leaving, d->id);
                        changed |= state_u32_remove(g->devices, &g->n_devices, d->id);
                    } else {
                        k++;
                    }
                }
            }
            changed |= pg_replenish(s, p, (uint32_t)gi, g);
            if (changed)
                g->epoch++;
        }
    }
}

/* Back from maintenance, or back from a failure within the grace window:
 * each departed copy rejoins as a catch-up member. Where a rebuild to a new
 * copy is still running for the PG, the returning copy replaces it (catching
 * up costs only what changed); where the PG is complete again, the old copy
 * is not needed and its record goes. */
static void rejoin_departed(struct mdm_state *s, Cairn__Sds *sds)
{
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            int changed = 0;
            for (size_t k = 0; k < g->n_departed;) {
                Cairn__Device *d = mdm_device_by_id(s, g->departed[k]);
                if (!d || d->sds_id != sds->id) {
                    k++;
                    continue;
                }
                state_u32_remove(g->departed, &g->n_departed, d->id);
                changed = 1;
                if (d->failed)
                    continue;
                if (g->n_devices + g->n_rebuilding >= p->copies) {
                    /* cancel a full rebuild still under way, if any */
                    for (size_t j = 0; j < g->n_rebuilding; j++)
                        if (!state_u32_has(g->catchup, g->n_catchup, g->rebuilding[j])) {
                            state_u32_remove(g->rebuilding, &g->n_rebuilding, g->rebuilding[j]);
                            break;
                        }
                }
                if (g->n_devices + g->n_rebuilding < p->copies) {
                    state_u32_append(&g->rebuilding, &g->n_rebuilding, d->id);
                    state_u32_append(&g->catchup, &g->n_catchup, d->id);
                }
            }
            if (changed)
                g->epoch++;
        }
    }
}

/* The failure detector's verdict on an SDS: down (its copies are lost,
 * kept on record as departed) or up again (departed copies rejoin). */
static int sds_set_state(struct mdm_state *s, const Cairn__MgmtRequest *req, int down, char *err,
                         size_t errlen)
{
    Cairn__Sds *d = state_req_sds(s, req->name, err, errlen);
    if (!d)
        return -ENOENT;
    Cairn__SdsState want = down ? CAIRN__SDS_STATE__SDS_DOWN : CAIRN__SDS_STATE__SDS_UP;
    /* gone: down because its process is seen gone, which a later silence
     * verdict does not undo; up clears it */
    if (!down)
        d->gone = 0;
    else if (req->sds_gone)
        d->gone = 1;
    if (d->state == want)
        return 0;
    d->state = want;
    if (!down)
        rejoin_departed(s, d);
    pg_membership_changed(s, down ? d->id : 0, 0);
    return 0;
}

int pg_membership_sds_down(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                           size_t errlen)
{
    return sds_set_state(s, req, 1, err, errlen);
}

int pg_membership_sds_up(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen)
{
    return sds_set_state(s, req, 0, err, errlen);
}

int pg_membership_grace_expired(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                                size_t errlen)
{
    Cairn__Sds *d = state_req_sds(s, req->name, err, errlen);
    if (!d)
        return -ENOENT;
    if (d->state != CAIRN__SDS_STATE__SDS_DOWN)
        return 0;
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            int changed = 0;
            for (size_t k = 0; k < g->n_departed;) {
                Cairn__Device *dv = mdm_device_by_id(s, g->departed[k]);
                if (dv && dv->sds_id == d->id)
                    changed |= state_u32_remove(g->departed, &g->n_departed, dv->id);
                else
                    k++;
            }
            if (changed)
                g->epoch++;
        }
    }
    return 0;
}

/* Planned absence: the SDS's in-sync copies step aside (departed) without a
 * rebuild; the other copies track what changes. Refused if a PG would be left
 * with no in-sync copy, or while the PG is still rebuilding from it. */
int pg_membership_maintenance_enter(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                                    size_t errlen)
{
    Cairn__Sds *sds = state_req_sds(s, req->name, err, errlen);
    if (!sds)
        return -ENOENT;
    if (sds->state != CAIRN__SDS_STATE__SDS_UP) {
        state_errf(err, errlen, "SDS '%s' is not up", sds->name);
        return -EINVAL;
    }
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            size_t mine = 0, others = 0;
            for (size_t k = 0; k < g->n_devices; k++) {
                Cairn__Device *d = mdm_device_by_id(s, g->devices[k]);
                if (d && d->sds_id == sds->id)
                    mine++;
                else if (d && !d->failed && state_sds_up(s, d->sds_id))
                    others++;
            }
            if (mine && !others) {
                state_errf(err, errlen,
                           "SDS '%s' holds the only live copy of PG %u.%zu; wait for its rebuild",
                           sds->name, p->id, gi);
                return -EBUSY;
            }
        }
    }
    sds->state = CAIRN__SDS_STATE__SDS_MAINTENANCE;
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            int changed = 0;
            for (size_t k = 0; k < g->n_devices;) {
                Cairn__Device *d = mdm_device_by_id(s, g->devices[k]);
                if (d && d->sds_id == sds->id) {
                    state_u32_append(&g->departed, &g->n_departed, d->id);
                    state_u32_remove(g->devices, &g->n_devices, d->id);
                    state_u32_remove(g->leaving, &g->n_leaving, d->id);
                    changed = 1;
                } else {
                    k++;
                }
            }
            /* a copy it was receiving is incomplete: rebuild it elsewhere */
            for (size_t k = 0; k < g->n_rebuilding;) {
                Cairn__Device *d = mdm_device_by_id(s, g->rebuilding[k]);
                if (d && d->sds_id == sds->id) {
                    state_u32_remove(g->catchup, &g->n_catchup, d->id);
                    state_u32_remove(g->rebuilding, &g->n_rebuilding, d->id);
                    changed = 1;
                } else {
                    k++;
                }
            }
            if (changed)
                g->epoch++;
        }
    }
    return 0;
}

int pg_membership_maintenance_exit(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                                   size_t errlen)
{
    Cairn__Sds *d = state_req_sds(s, req->name, err, errlen);
    if (!d)
        return -ENOENT;
    if (d->state != CAIRN__SDS_STATE__SDS_MAINTENANCE) {
        state_errf(err, errlen, "SDS '%s' is not in maintenance", d->name);
        return -EINVAL;
    }
    d->state = CAIRN__SDS_STATE__SDS_UP;
    rejoin_departed(s, d);
    pg_membership_changed(s, 0, 0);
    return 0;
}

int pg_membership_device_fail(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                              size_t errlen)
{
    Cairn__Device *d = mdm_device_by_id(s, req->device_id);
    if (!d) {
        state_errf(err, errlen, "no device %u", req->device_id);
        return -ENOENT;
    }
    if (d->failed)
        return 0;
    d->failed = 1;
    pg_membership_changed(s, 0, d->id);
    return 0;
}

/* The copy takes the place (and role: primary stays primary) of a copy
 * leaving the PG if there is one; otherwise it is appended. */
int pg_membership_pg_rebuilt(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                             size_t errlen)
{
    Cairn__Pool *p = mdm_pool_by_id(s, req->pool_id);
    if (!p || req->pg >= p->n_pgs) {
        state_errf(err, errlen, "no PG %u in pool %u", req->pg, req->pool_id);
        return -ENOENT;
    }
    Cairn__Pg *g = p->pgs[req->pg];
    if (g->epoch != req->epoch || !state_u32_has(g->rebuilding, g->n_rebuilding, req->device_id)) {
        state_errf(err, errlen, "PG %u.%u changed (epoch %llu, reported %llu); rebuild again",
                   p->id, req->pg, (unsigned long long)g->epoch, (unsigned long long)req->epoch);
        return -ESTALE;
    }
    state_u32_remove(g->rebuilding, &g->n_rebuilding, req->device_id);
    state_u32_remove(g->catchup, &g->n_catchup, req->device_id);
    size_t slot = g->n_devices;
    if (g->n_leaving && g->n_devices + 1 > p->copies) {
        uint32_t gone = g->leaving[0];
        state_u32_remove(g->leaving, &g->n_leaving, gone);
        for (size_t k = 0; k < g->n_devices; k++)
            if (g->devices[k] == gone)
                slot = k;
    }
    if (slot == g->n_devices)
        state_u32_append(&g->devices, &g->n_devices, req->device_id);
    else
        g->devices[slot] = req->device_id;
    g->epoch++;
    return 0;
}
