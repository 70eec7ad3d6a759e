/* Removing SDSs and devices: the checks (fault sets, thick reservations,
 * last live copies), the drain (the devices are marked removing: rebalance.c
 * gives them no weight, so their copies move away), forced removal (their
 * copies go at once and are rebuilt elsewhere from the others), and
 * forgetting what is fully drained. How much data the SDSs hold is known
 * only to the leader: it checks that before proposing (sessions.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "state_internal.h"
#include "util.h"

/* Remove the devices of an SDS (dev_id 0) or one device: check that every
 * pool they serve keeps enough fault sets and room for its thick volumes,
 * then mark them removing (a drain) or, forced, drop their copies at once
 * (rebuilt elsewhere from the other copies). Checks everything before it
 * changes anything (its table entry has no undo copy). */
static int remove_devices(struct mdm_state *s, Cairn__Sds *sds, uint32_t dev_id, int force,
                          char *err, size_t errlen)
{
    const char *what = sds->name;
    char whatbuf[160];
    if (dev_id) {
        Cairn__Device *d = mdm_device_by_id(s, dev_id);
        snprintf(whatbuf, sizeof(whatbuf), "device %s of SDS '%s'", d->path, sds->name);
        what = whatbuf;
    }
    if (!force && sds->state == CAIRN__SDS_STATE__SDS_DOWN) {
        state_errf(err, errlen,
                   "SDS '%s' is down, so its copies cannot be drained; 'cairn sds remove %s "
                   "--force' forgets it and rebuilds its copies from the others",
                   sds->name, sds->name);
        return -EINVAL;
    }
    if (!force && sds->state == CAIRN__SDS_STATE__SDS_MAINTENANCE) {
        state_errf(err, errlen, "SDS '%s' is in maintenance; take it out of maintenance first",
                   sds->name);
        return -EINVAL;
    }
#define GOING(d) ((d)->sds_id == sds->id && (!dev_id || (d)->id == dev_id))
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        int affected = 0;
        for (size_t i = 0; i < s->m->n_devices; i++)
            affected |= s->m->devices[i]->pool_id == p->id && GOING(s->m->devices[i]);
        if (!affected)
            continue;
        /* count what remains: mark the going devices removing on a trial basis */
        uint8_t *was = calloc(s->m->n_devices + 1, 1);
        if (!was)
            abort();
        for (size_t i = 0; i < s->m->n_devices; i++) {
            was[i] = s->m->devices[i]->removing;
            if (GOING(s->m->devices[i]))
                s->m->devices[i]->removing = 1;
        }
        uint32_t fsl[256];
        size_t nfs = 0;
        for (size_t i = 0; i < s->m->n_devices; i++) {
            Cairn__Device *d = s->m->devices[i];
            if (!capacity_device_placeable(d, p))
                continue;
            uint32_t f = capacity_fault_domain(s->m, mdm_sds_by_id(s, d->sds_id));
            if (!state_u32_has(fsl, nfs, f) && nfs < 256)
                fsl[nfs++] = f;
        }
        uint64_t usable = capacity_pool_usable(s->m, p);
        for (size_t i = 0; i < s->m->n_devices; i++)
            s->m->devices[i]->removing = was[i];
        free(was);
        if (p->pg_count && nfs < p->copies && state_pool_has_volumes(s, p)) {
            state_errf(err, errlen,
                       "removing %s would leave pool '%s' with %zu fault set%s for its %u "
                       "copies; add an SDS in another fault set first",
                       what, p->name, nfs, nfs == 1 ? "" : "s", p->copies);
            return -ENOSPC;
        }
        uint64_t thick = capacity_pool_provisioned(s->m, p, 1);
        if (thick > usable) {
            char a[32], b[32];
            fmt_bytes(a, sizeof(a), thick);
            fmt_bytes(b, sizeof(b), usable);
            state_errf(err, errlen,
                       "removing %s would leave pool '%s' %s usable, less than its thick "
                       "volumes reserve (%s)",
                       what, p->name, b, a);
            return -ENOSPC;
        }
        if (!force)
            continue;
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            size_t left = 0, had = 0;
            for (size_t k = 0; k < g->n_devices; k++) {
                Cairn__Device *d = mdm_device_by_id(s, g->devices[k]);
                if (d && GOING(d))
                    had++;
                else if (d && !d->failed && state_sds_up(s, d->sds_id))
                    left++;
            }
            if (had && !left) {
                state_errf(err, errlen,
                           "%s holds the only live copy of PG %u.%zu: removing it would lose "
                           "data (bring it back, or wait for the PG's rebuild)",
                           what, p->id, gi);
                return -EBUSY;
            }
        }
    }
    for (size_t i = 0; i < s->m->n_devices; i++)
        if (GOING(s->m->devices[i]))
            s->m->devices[i]->removing = 1;
    if (!dev_id)
        sds->removing = 1;
    if (force) {
        for (size_t pi = 0; pi < s->m->n_pools; pi++) {
            Cairn__Pool *p = s->m->pools[pi];
            for (size_t gi = 0; gi < p->n_pgs; gi++) {
                Cairn__Pg *g = p->pgs[gi];
                int changed = 0;
                uint32_t *lists[] = {g->devices, g->rebuilding, g->departed, g->catchup,
                                     g->leaving};
                size_t *ns[] = {&g->n_devices, &g->n_rebuilding, &g->n_departed, &g->n_catchup,
                                &g->n_leaving};
                for (size_t l = 0; l < 5; l++)
                    for (size_t k = 0; k < *ns[l];) {
                        Cairn__Device *d = mdm_device_by_id(s, lists[l][k]);
                        if (d && GOING(d))
                            changed |= state_u32_remove(lists[l], ns[l], d->id);
                        else
                            k++;
                    }
                if (changed)
                    g->epoch++;
            }
        }
        pg_membership_changed(s, 0, 0);
    }
#undef GOING
    return 0;
}

int drain_sds_remove(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    Cairn__Sds *d = state_req_sds(s, req->name, err, errlen);
    if (!d)
        return -ENOENT;
    return remove_devices(s, d, 0, req->force, err, errlen);
}

int drain_device_remove(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                        size_t errlen)
{
    Cairn__Sds *d = state_req_sds(s, req->name, err, errlen);
    if (!d)
        return -ENOENT;
    uint32_t dev_id = 0;
    for (size_t i = 0; i < s->m->n_devices && req->n_paths == 1; i++)
        if (s->m->devices[i]->sds_id == d->id && !strcmp(s->m->devices[i]->path, req->paths[0]))
            dev_id = s->m->devices[i]->id;
    if (!dev_id) {
        state_errf(err, errlen, "SDS '%s' has no device %s", d->name,
                   req->n_paths == 1 ? req->paths[0] : "(name one device)");
        return -ENOENT;
    }
    return remove_devices(s, d, dev_id, req->force, err, errlen);
}

/* Does any PG still hold, build or keep on record a copy on dev? */
static int device_referenced(const struct mdm_state *s, uint32_t dev)
{
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            if (state_u32_has(g->devices, g->n_devices, dev) ||
                state_u32_has(g->rebuilding, g->n_rebuilding, dev) ||
                state_u32_has(g->departed, g->n_departed, dev))
                return 1;
        }
    }
    return 0;
}

static void device_delete(struct mdm_state *s, size_t i)
{
    protobuf_c_message_free_unpacked(&s->m->devices[i]->base, NULL);
    memmove(&s->m->devices[i], &s->m->devices[i + 1],
            sizeof(*s->m->devices) * (s->m->n_devices - i - 1));
    s->m->n_devices--;
}

void drain_forget_removed(struct mdm_state *s)
{
    for (size_t i = 0; i < s->m->n_devices;) {
        Cairn__Device *d = s->m->devices[i];
        if (d->removing && !device_referenced(s, d->id))
            device_delete(s, i);
        else
            i++;
    }
    for (size_t i = 0; i < s->m->n_sds;) {
        Cairn__Sds *o = s->m->sds[i];
        int has = 0;
        for (size_t j = 0; j < s->m->n_devices && !has; j++)
            has = s->m->devices[j]->sds_id == o->id;
        if (o->removing && !has) {
            protobuf_c_message_free_unpacked(&o->base, NULL);
            memmove(&s->m->sds[i], &s->m->sds[i + 1], sizeof(*s->m->sds) * (s->m->n_sds - i - 1));
            s->m->n_sds--;
        } else {
            i++;
        }
    }
}
