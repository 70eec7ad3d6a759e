/* Leases and fences: whether this SDS may serve a PG now (see sds.h for the
 * argument). Pure functions of the times given, the map and the table: the
 * callers (ping.c, mdm_link.c, validate.c, map.c) bring the clock and the
 * messages. */
#include <errno.h>
#include <stdlib.h>

#include "cmap.h"
#include "sds.h"
#include "util.h"

struct peer_lease *lease_peer(struct leases *ls, uint32_t sds_id)
{
    struct peer_lease *free_slot = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(ls->peers); i++) {
        if (ls->peers[i].sds_id == sds_id)
            return &ls->peers[i];
        if (!ls->peers[i].sds_id && !free_slot)
            free_slot = &ls->peers[i];
    }
    if (free_slot)
        *free_slot = (struct peer_lease){.sds_id = sds_id};
    return free_slot;
}

const struct peer_lease *lease_peer_find(const struct leases *ls, uint32_t sds_id)
{
    for (size_t i = 0; i < ARRAY_SIZE(ls->peers); i++)
        if (ls->peers[i].sds_id == sds_id)
            return &ls->peers[i];
    return NULL;
}

int lease_fenced(const struct leases *ls, uint64_t now, uint32_t pool_id, uint32_t pg)
{
    if (now < ls->fence_max)
        for (size_t i = 0; i < ls->nfences; i++)
            if (ls->fences[i].pool_id == pool_id && ls->fences[i].pg == pg &&
                now < ls->fences[i].until)
                return 1;
    return 0;
}

int lease_held(const struct leases *ls, uint64_t now, const Cairn__ClusterMap *m, uint32_t pool_id,
               uint32_t pg, const Cairn__Pg *g)
{
    if (lease_fenced(ls, now, pool_id, pg))
        return 0;
    if (now < ls->mdm_until)
        return 1;
    for (size_t k = 1; k < g->n_devices; k++) {
        Cairn__Device *d = cmap_device(m, g->devices[k]);
        const struct peer_lease *l = d ? lease_peer_find(ls, d->sds_id) : NULL;
        if (!l || now >= l->until)
            return 0;
    }
    return 1;
}

/* A map that is merely behind on other changes is fine: while a rebalance
 * runs, the map changes every few milliseconds. */
void lease_mdm_ack(struct leases *ls, const Cairn__ClusterMap *m, uint64_t sent_ms, int map_current,
                   uint64_t demoted_version)
{
    int ok = map_current || (m && m->version >= demoted_version);
    if (ok && sent_ms + ls->lease_ms > ls->mdm_until)
        ls->mdm_until = sent_ms + ls->lease_ms;
}

void lease_peer_ack(struct leases *ls, uint32_t sds_id, uint64_t sent_ms)
{
    struct peer_lease *l = lease_peer(ls, sds_id);
    if (l && sent_ms + ls->lease_ms > l->until)
        l->until = sent_ms + ls->lease_ms;
    /* It answers: the forward that timed out did so for another reason (we
     * were the one stopped, say), so forwards to it need not fail fast. */
    if (l && l->suspect_until && sent_ms >= l->suspect_since)
        l->suspect_until = 0;
}

int lease_grant(struct leases *ls, const Cairn__ClusterMap *m, uint32_t from, uint64_t version,
                uint64_t now)
{
    Cairn__Sds *o = cmap_sds(m, from);
    /* A map this new no longer makes it primary where we took over: it
     * serves none of those PGs any more, so our fences against it can go. */
    for (size_t i = 0; from && i < ls->nfences; i++) /* 0 marks a failed primary's fence */
        if (ls->fences[i].old_primary == from && version >= ls->fences[i].version)
            ls->fences[i].until = 0;

    /* no lease for an SDS that is down, or whose map still makes it primary
     * of a PG that has moved on */
    if (!o || o->state != CAIRN__SDS_STATE__SDS_UP || version < o->demoted_version)
        return -ESTALE;
    struct peer_lease *l = lease_peer(ls, from);
    if (l)
        l->granted_at = now;
    return 0;
}

void lease_fence_new_primaries(struct leases *ls, const Cairn__ClusterMap *old,
                               const Cairn__ClusterMap *m, uint32_t my_id, uint64_t now)
{
    size_t keep = 0;
    for (size_t i = 0; i < ls->nfences; i++)
        if (ls->fences[i].until > now)
            ls->fences[keep++] = ls->fences[i];
    ls->nfences = keep;
    if (!old)
        return;
    for (size_t pi = 0; pi < m->n_pools; pi++) {
        Cairn__Pool *p = m->pools[pi];
        Cairn__Pool *op = cmap_pool(old, p->id);
        for (size_t gi = 0; op && gi < p->n_pgs && gi < op->n_pgs; gi++) {
            uint32_t now_prim = cmap_copy_sds(m, p->pgs[gi], 0);
            uint32_t was_prim = cmap_copy_sds(old, op->pgs[gi], 0);
            if (now_prim != my_id || !was_prim || was_prim == my_id)
                continue;
            /* A primary that was moved (rebalance, drain) is alive and may
             * hold an MDM lease from before the change, up to lease_ms old:
             * wait all of it out. One that fell silent lost its MDM lease
             * before it was marked down; only what we granted it remains. */
            Cairn__Sds *old_sds = cmap_sds(m, was_prim);
            struct peer_lease *l = lease_peer(ls, was_prim);
            uint64_t until = (l ? l->granted_at : now) + ls->lease_ms + 100;
            /* removed from the cluster counts as alive: it may not know yet */
            int alive = !old_sds || old_sds->state == CAIRN__SDS_STATE__SDS_UP;
            /* One whose process the MDM saw gone (connection closed, port
             * refusing) serves nothing, whatever lease it was granted. */
            if (!alive && old_sds->gone)
                continue;
            if (alive)
                until = now + ls->lease_ms + 100;
            if (until <= now)
                continue;
            struct fence *nf = realloc(ls->fences, (ls->nfences + 1) * sizeof(*nf));
            if (!nf)
                continue;
            ls->fences = nf;
            ls->fences[ls->nfences++] = (struct fence){(uint32_t)p->id, (uint32_t)gi, until,
                                                       alive ? was_prim : 0, m->version};
            ls->fence_max = MAX(ls->fence_max, until);
        }
    }
}

void lease_free(struct leases *ls)
{
    free(ls->fences);
    ls->fences = NULL;
    ls->nfences = 0;
}
