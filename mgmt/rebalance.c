/* Placement of a pool's PGs and the rebalance that moves copies.
 *
 * A pool that holds no volume gets its PG table computed outright (straw2
 * then balance, placement.c). A pool that holds volumes never has its table
 * recomputed: copies move one at a time through the rebuild machinery.
 * placement_balance() decides which copy goes where; each move makes the new
 * device a rebuilding member and marks the copy it replaces as leaving. When
 * the primary reports the new copy complete (pg_membership.c), it takes the
 * leaving copy's place and role. Devices being removed have no weight, so
 * the same rule drains them (drain.c forgets them once nothing refers to
 * them). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "placement.h"
#include "state_internal.h"
#include "util.h"

/* Empty every membership list of pg but its in-sync devices; 1 if one had
 * members. */
static int pg_lists_clear(Cairn__Pg *pg)
{
    int had = pg->n_rebuilding || pg->n_departed || pg->n_catchup || pg->n_leaving;
    free(pg->rebuilding);
    free(pg->departed);
    free(pg->catchup);
    free(pg->leaving);
    pg->rebuilding = pg->departed = pg->catchup = pg->leaving = NULL;
    pg->n_rebuilding = pg->n_departed = pg->n_catchup = pg->n_leaving = 0;
    return had;
}

int rebalance_place(struct mdm_state *s, Cairn__Pool *p)
{
    if (state_pool_has_volumes(s, p))
        return 0;
    size_t nd = 0;
    struct placement_dev *devs = calloc(s->m->n_devices + 1, sizeof(*devs));
    uint32_t *out = malloc(sizeof(uint32_t) * p->pg_count * p->copies);
    if (!devs || !out) {
        free(devs);
        free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->m->n_devices; i++) {
        Cairn__Device *d = s->m->devices[i];
        if (!capacity_device_placeable(d, p))
            continue;
        Cairn__Sds *sds = mdm_sds_by_id(s, d->sds_id);
        devs[nd].id = d->id;
        devs[nd].fault_set = capacity_fault_domain(s->m, sds);
        devs[nd].weight = d->capacity >> 20;
        nd++;
    }
    int r = placement_compute(devs, (int)nd, (int)p->copies, p->pg_count, p->id, out);
    if (r == 0)
        r = placement_balance(devs, (int)nd, (int)p->copies, p->pg_count, out, NULL, p->id,
                              INT32_MAX) < 0
                ? -EINVAL
                : 0;
    if (r == -ENOSPC) {
        /* Not enough fault sets yet: the pool has no PGs until it does. */
        r = 0;
        goto done;
    }
    if (r < 0)
        goto done;
    if (p->n_pgs != p->pg_count) {
        for (size_t g = 0; g < p->n_pgs; g++)
            protobuf_c_message_free_unpacked(&p->pgs[g]->base, NULL);
        free(p->pgs);
        p->pgs = calloc(p->pg_count, sizeof(*p->pgs));
        if (!p->pgs) {
            p->n_pgs = 0;
            r = -ENOMEM;
            goto done;
        }
        p->n_pgs = p->pg_count;
        for (size_t g = 0; g < p->n_pgs; g++) {
            p->pgs[g] = malloc(sizeof(Cairn__Pg));
            cairn__pg__init(p->pgs[g]);
            p->pgs[g]->devices = calloc(p->copies, sizeof(uint32_t));
            p->pgs[g]->n_devices = p->copies;
        }
    }
    for (size_t g = 0; g < p->n_pgs; g++) {
        Cairn__Pg *pg = p->pgs[g];
        int changed = 0;
        if (pg->n_devices != p->copies) {
            /* copies lost or back while the pool was empty: the new table
             * gives it exactly `copies` again */
            uint32_t *grown = realloc(pg->devices, p->copies * sizeof(uint32_t));
            if (!grown)
                abort();
            for (size_t k = pg->n_devices; k < p->copies; k++)
                grown[k] = 0;
            pg->devices = grown;
            pg->n_devices = p->copies;
            changed = 1;
        }
        /* nothing is stored: nothing to rebuild, catch up or move */
        changed |= pg_lists_clear(pg);
        for (size_t k = 0; k < p->copies; k++) {
            uint32_t dev = devs[out[g * p->copies + k]].id;
            if (pg->devices[k] != dev) {
                pg->devices[k] = dev;
                changed = 1;
            }
        }
        if (changed)
            pg->epoch++;
    }
done:
    free(devs);
    free(out);
    return r;
}

/* A PG that is already changing: it keeps its copies until that is done. */
static int pg_in_flux(const Cairn__Pool *p, const Cairn__Pg *g)
{
    return g->n_rebuilding || g->n_departed || g->n_leaving || g->n_devices != p->copies;
}

/* Plan moves for one pool; returns the number of copies set moving. */
static int pool_rebalance(struct mdm_state *s, Cairn__Pool *p)
{
    if (!state_pool_has_volumes(s, p)) {
        rebalance_place(s, p); /* nothing stored: recompute the table outright */
        return 0;
    }
    if (!p->n_pgs)
        return 0;
    /* A move whose target was lost: the leaving copy simply stays. */
    for (size_t gi = 0; gi < p->n_pgs; gi++) {
        Cairn__Pg *g = p->pgs[gi];
        if (g->n_leaving && !g->n_rebuilding) {
            g->n_leaving = 0;
            g->epoch++;
        }
    }
    /* While an SDS of the pool is down or away, its copies are in question:
     * wait (the drain and the rebalance resume when it is back or gone). */
    for (size_t i = 0; i < s->m->n_devices; i++) {
        Cairn__Device *d = s->m->devices[i];
        if (d->pool_id == p->id && !d->failed && !state_sds_up(s, d->sds_id))
            return 0;
    }
    size_t nd = 0;
    struct placement_dev *devs = calloc(s->m->n_devices + 1, sizeof(*devs));
    uint32_t *table = malloc(sizeof(uint32_t) * p->n_pgs * p->copies);
    uint8_t *frozen = calloc(p->n_pgs, 1);
    if (!devs || !table || !frozen)
        abort();
    for (size_t i = 0; i < s->m->n_devices; i++) {
        Cairn__Device *d = s->m->devices[i];
        if (d->pool_id != p->id || d->failed)
            continue;
        devs[nd].id = d->id;
        devs[nd].fault_set = capacity_fault_domain(s->m, mdm_sds_by_id(s, d->sds_id));
        devs[nd].weight = d->removing ? 0 : MAX(d->capacity >> 20, 1);
        nd++;
    }
    /* a PG being changed counts with the members it will have, and stays put */
    for (size_t gi = 0; gi < p->n_pgs; gi++) {
        Cairn__Pg *g = p->pgs[gi];
        uint32_t *row = &table[gi * p->copies];
        size_t k = 0;
        for (size_t j = 0; j < g->n_devices + g->n_rebuilding && k < p->copies; j++) {
            uint32_t id = j < g->n_devices ? g->devices[j] : g->rebuilding[j - g->n_devices];
            if (state_u32_has(g->leaving, g->n_leaving, id))
                continue;
            size_t x;
            for (x = 0; x < nd && devs[x].id != id; x++)
                ;
            if (x == nd) {
                frozen[gi] = 1;
                continue;
            }
            row[k++] = (uint32_t)x;
        }
        for (; k < p->copies; k++)
            row[k] = PLACEMENT_NONE;
        if (pg_in_flux(p, g))
            frozen[gi] = 1;
    }
    uint32_t *before = malloc(sizeof(uint32_t) * p->n_pgs * p->copies);
    if (!before)
        abort();
    memcpy(before, table, sizeof(uint32_t) * p->n_pgs * p->copies);
    int moves = placement_balance(devs, (int)nd, (int)p->copies, (uint32_t)p->n_pgs, table, frozen,
                                  p->id, INT32_MAX);
    int started = 0;
    for (size_t gi = 0; moves > 0 && gi < p->n_pgs; gi++) {
        Cairn__Pg *g = p->pgs[gi];
        if (frozen[gi])
            continue;
        int changed = 0;
        for (size_t k = 0; k < p->copies; k++) {
            uint32_t was = before[gi * p->copies + k], now = table[gi * p->copies + k];
            if (was == now)
                continue;
            state_u32_append(&g->leaving, &g->n_leaving, devs[was].id);
            state_u32_append(&g->rebuilding, &g->n_rebuilding, devs[now].id);
            changed = 1;
            started++;
        }
        if (changed)
            g->epoch++;
    }
    free(devs);
    free(table);
    free(frozen);
    free(before);
    return started;
}

void rebalance_all(struct mdm_state *s)
{
    for (size_t pi = 0; pi < s->m->n_pools; pi++)
        pool_rebalance(s, s->m->pools[pi]);
}
