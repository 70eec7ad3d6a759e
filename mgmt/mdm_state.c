#include "mdm_state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "cmap.h"
#include "placement.h"
#include "util.h"

static void errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* Append one element to a protobuf-c repeated field of pointers. */
#define PB_APPEND(arr, n, elem)                                                                    \
    ({                                                                                             \
        void *_na = realloc((arr), sizeof(*(arr)) * ((n) + 1));                                   \
        int _ok = _na != NULL;                                                                     \
        if (_ok) {                                                                                 \
            (arr) = _na;                                                                           \
            (arr)[(n)++] = (elem);                                                                 \
        }                                                                                          \
        _ok;                                                                                       \
    })

int mdm_state_init(struct mdm_state *s, const char *cluster_id)
{
    s->m = malloc(sizeof(*s->m));
    if (!s->m)
        return -ENOMEM;
    cairn__cluster_map__init(s->m);
    s->m->cluster_id = strdup(cluster_id);
    s->m->next_id = 1;
    return s->m->cluster_id ? 0 : -ENOMEM;
}

void mdm_state_free(struct mdm_state *s)
{
    if (s->m)
        protobuf_c_message_free_unpacked(&s->m->base, NULL);
    s->m = NULL;
}

int mdm_state_pack(const struct mdm_state *s, uint8_t **buf, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(&s->m->base);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return -ENOMEM;
    protobuf_c_message_pack(&s->m->base, b);
    *buf = b;
    *len = n;
    return 0;
}

int mdm_state_restore(struct mdm_state *s, const uint8_t *buf, size_t len)
{
    Cairn__ClusterMap *m = cairn__cluster_map__unpack(NULL, len, buf);
    if (!m)
        return -EINVAL;
    mdm_state_free(s);
    s->m = m;
    return 0;
}

Cairn__Sds *mdm_sds_by_name(const struct mdm_state *s, const char *name)
{
    for (size_t i = 0; i < s->m->n_sds; i++)
        if (!strcmp(s->m->sds[i]->name, name))
            return s->m->sds[i];
    return NULL;
}
Cairn__Sds *mdm_sds_by_id(const struct mdm_state *s, uint32_t id)
{
    return cmap_sds(s->m, id);
}
Cairn__Pool *mdm_pool_by_name(const struct mdm_state *s, const char *name)
{
    for (size_t i = 0; i < s->m->n_pools; i++)
        if (!strcmp(s->m->pools[i]->name, name))
            return s->m->pools[i];
    return NULL;
}
Cairn__Pool *mdm_pool_by_id(const struct mdm_state *s, uint32_t id)
{
    return cmap_pool(s->m, id);
}
Cairn__Volume *mdm_volume_by_name(const struct mdm_state *s, const char *name)
{
    return cmap_volume_by_name(s->m, name);
}
Cairn__Sdc *mdm_sdc_by_guid(const struct mdm_state *s, const char *guid)
{
    for (size_t i = 0; i < s->m->n_sdcs; i++)
        if (!strcmp(s->m->sdcs[i]->guid, guid))
            return s->m->sdcs[i];
    return NULL;
}
Cairn__Sdc *mdm_sdc_by_name(const struct mdm_state *s, const char *name)
{
    for (size_t i = 0; i < s->m->n_sdcs; i++)
        if (!strcmp(s->m->sdcs[i]->name, name))
            return s->m->sdcs[i];
    return NULL;
}
Cairn__Device *mdm_device_by_id(const struct mdm_state *s, uint32_t id)
{
    return cmap_device(s->m, id);
}
Cairn__FaultSet *mdm_fault_set_by_name(const struct mdm_state *s, const char *name)
{
    for (size_t i = 0; i < s->m->n_fault_sets; i++)
        if (!strcmp(s->m->fault_sets[i]->name, name))
            return s->m->fault_sets[i];
    return NULL;
}

static int u32_has(const uint32_t *arr, size_t n, uint32_t v);

static int pool_has_volumes(const struct mdm_state *s, const Cairn__Pool *p)
{
    for (size_t i = 0; i < s->m->n_volumes; i++)
        if (s->m->volumes[i]->pool_id == p->id)
            return 1;
    return 0;
}

/* Compute the PG table of a pool that holds no data yet. A pool that has
 * volumes keeps its table: moving PGs needs the copy machinery (rebalance). */
static int pool_place(struct mdm_state *s, Cairn__Pool *p)
{
    if (pool_has_volumes(s, p))
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
                              INT32_MAX) < 0 ? -EINVAL : 0;
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

static int sds_up(const struct mdm_state *s, uint32_t sds_id)
{
    Cairn__Sds *d = mdm_sds_by_id(s, sds_id);
    return d && d->state == CAIRN__SDS_STATE__SDS_UP;
}

static int u32_remove(uint32_t *arr, size_t *n, uint32_t v)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i] == v) {
            memmove(&arr[i], &arr[i + 1], (*n - i - 1) * sizeof(*arr));
            (*n)--;
            return 1;
        }
    return 0;
}

static void u32_append(uint32_t **arr, size_t *n, uint32_t v);

static int u32_has(const uint32_t *arr, size_t n, uint32_t v)
{
    for (size_t i = 0; i < n; i++)
        if (arr[i] == v)
            return 1;
    return 0;
}

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
            if (!capacity_device_placeable(d, p) || !sds_up(s, d->sds_id))
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

/* Copies were lost (an SDS went down, a device failed) or may be placeable
 * again (an SDS came back): drop lost copies from every PG that keeps another
 * in-sync copy, promote the next copy where the primary was lost, and choose
 * rebuild targets. A PG whose only in-sync copy is lost keeps it: its data is
 * unavailable, not gone, until that copy returns. */
static void membership_changed(struct mdm_state *s, uint32_t gone_sds, uint32_t gone_dev)
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
                        u32_remove(g->catchup, &g->n_catchup, d->id);
                        changed |= u32_remove(g->rebuilding, &g->n_rebuilding, d->id);
                    } else {
                        k++;
                    }
                }
                for (size_t k = 0; k < g->n_departed;) {
                    Cairn__Device *d = mdm_device_by_id(s, g->departed[k]);
                    if (copy_gone(d, 0, gone_dev))
                        changed |= u32_remove(g->departed, &g->n_departed, d->id);
                    else
                        k++;
                }
                for (size_t k = 0; k < g->n_devices;) {
                    Cairn__Device *d = mdm_device_by_id(s, g->devices[k]);
                    size_t others = 0;
                    for (size_t j = 0; j < g->n_devices; j++) {
                        Cairn__Device *o = mdm_device_by_id(s, g->devices[j]);
                        others += o && !copy_gone(o, gone_sds, gone_dev) && !o->failed &&
                                  sds_up(s, o->sds_id);
                    }
                    if (copy_gone(d, gone_sds, gone_dev) && others > 0) {
                        /* a failed SDS's copy is kept on record: it may catch
                         * up if the SDS returns within the grace window */
                        if (gone_sds)
                            u32_append(&g->departed, &g->n_departed, d->id);
                        u32_remove(g->leaving, &g->n_leaving, d->id);
                        changed |= u32_remove(g->devices, &g->n_devices, d->id);
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

static void u32_append(uint32_t **arr, size_t *n, uint32_t v)
{
    uint32_t *na = realloc(*arr, (*n + 1) * sizeof(uint32_t));
    if (!na)
        abort();
    *arr = na;
    na[(*n)++] = v;
}

/* Planned absence: the SDS's in-sync copies step aside (departed) without a
 * rebuild; the other copies track what changes. Refused if a PG would be left
 * with no in-sync copy, or while the PG is still rebuilding from it. */
static void rejoin_departed(struct mdm_state *s, Cairn__Sds *sds);

static int maintenance_enter(struct mdm_state *s, Cairn__Sds *sds, char *err, size_t errlen)
{
    if (sds->state != CAIRN__SDS_STATE__SDS_UP) {
        errf(err, errlen, "SDS '%s' is not up", sds->name);
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
                else if (d && !d->failed && sds_up(s, d->sds_id))
                    others++;
            }
            if (mine && !others) {
                errf(err, errlen,
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
                    u32_append(&g->departed, &g->n_departed, d->id);
                    u32_remove(g->devices, &g->n_devices, d->id);
                    u32_remove(g->leaving, &g->n_leaving, d->id);
                    changed = 1;
                } else {
                    k++;
                }
            }
            /* a copy it was receiving is incomplete: rebuild it elsewhere */
            for (size_t k = 0; k < g->n_rebuilding;) {
                Cairn__Device *d = mdm_device_by_id(s, g->rebuilding[k]);
                if (d && d->sds_id == sds->id) {
                    u32_remove(g->catchup, &g->n_catchup, d->id);
                    u32_remove(g->rebuilding, &g->n_rebuilding, d->id);
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
                u32_remove(g->departed, &g->n_departed, d->id);
                changed = 1;
                if (d->failed)
                    continue;
                if (g->n_devices + g->n_rebuilding >= p->copies) {
                    /* cancel a full rebuild still under way, if any */
                    for (size_t j = 0; j < g->n_rebuilding; j++)
                        if (!u32_has(g->catchup, g->n_catchup, g->rebuilding[j])) {
                            u32_remove(g->rebuilding, &g->n_rebuilding, g->rebuilding[j]);
                            break;
                        }
                }
                if (g->n_devices + g->n_rebuilding < p->copies) {
                    u32_append(&g->rebuilding, &g->n_rebuilding, d->id);
                    u32_append(&g->catchup, &g->n_catchup, d->id);
                }
            }
            if (changed)
                g->epoch++;
        }
    }
}

static int valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > MDM_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* ---- rebalance, drain and removal ----
 *
 * A pool that holds volumes never has its PG table recomputed: copies move
 * one at a time through the rebuild machinery. placement_balance() decides
 * which copy goes where; each move makes the new device a rebuilding member
 * and marks the copy it replaces as leaving. When the primary reports the new
 * copy complete, it takes the leaving copy's place (and its role: primary
 * stays primary). Devices being removed have no weight, so the same rule
 * drains them; once nothing refers to them they are forgotten.
 */

static int pg_in_flux(const Cairn__Pool *p, const Cairn__Pg *g)
{
    return g->n_rebuilding || g->n_departed || g->n_leaving || g->n_devices != p->copies;
}

/* Plan moves for one pool; returns the number of copies set moving. */
static int pool_rebalance(struct mdm_state *s, Cairn__Pool *p)
{
    if (!pool_has_volumes(s, p)) {
        pool_place(s, p); /* nothing stored: recompute the table outright */
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
        if (d->pool_id == p->id && !d->failed && !sds_up(s, d->sds_id))
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
            if (u32_has(g->leaving, g->n_leaving, id))
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
            u32_append(&g->leaving, &g->n_leaving, devs[was].id);
            u32_append(&g->rebuilding, &g->n_rebuilding, devs[now].id);
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

static int device_referenced(const struct mdm_state *s, uint32_t dev)
{
    for (size_t pi = 0; pi < s->m->n_pools; pi++) {
        Cairn__Pool *p = s->m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            if (u32_has(g->devices, g->n_devices, dev) ||
                u32_has(g->rebuilding, g->n_rebuilding, dev) ||
                u32_has(g->departed, g->n_departed, dev))
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

/* Forget devices being removed that no PG refers to any more, then SDSs
 * being removed that have no device left. */
static void forget_removed(struct mdm_state *s)
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

static void rebalance_all(struct mdm_state *s)
{
    for (size_t pi = 0; pi < s->m->n_pools; pi++)
        pool_rebalance(s, s->m->pools[pi]);
    forget_removed(s);
}

/* Remove the devices of an SDS (dev_id 0) or one device: check that every
 * pool they serve keeps enough fault sets and room for its thick volumes,
 * then mark them removing (a drain) or, forced, drop their copies at once
 * (rebuilt elsewhere from the other copies). */
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
        errf(err, errlen,
             "SDS '%s' is down, so its copies cannot be drained; 'cairn sds remove %s --force' "
             "forgets it and rebuilds its copies from the others",
             sds->name, sds->name);
        return -EINVAL;
    }
    if (!force && sds->state == CAIRN__SDS_STATE__SDS_MAINTENANCE) {
        errf(err, errlen, "SDS '%s' is in maintenance; take it out of maintenance first",
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
            if (!u32_has(fsl, nfs, f) && nfs < 256)
                fsl[nfs++] = f;
        }
        uint64_t usable = capacity_pool_usable(s->m, p);
        for (size_t i = 0; i < s->m->n_devices; i++)
            s->m->devices[i]->removing = was[i];
        free(was);
        if (p->pg_count && nfs < p->copies && pool_has_volumes(s, p)) {
            errf(err, errlen,
                 "removing %s would leave pool '%s' with %zu fault set%s for its %u copies; add "
                 "an SDS in another fault set first",
                 what, p->name, nfs, nfs == 1 ? "" : "s", p->copies);
            return -ENOSPC;
        }
        uint64_t thick = capacity_pool_provisioned(s->m, p, 1);
        if (thick > usable) {
            char a[32], b[32];
            fmt_bytes(a, sizeof(a), thick);
            fmt_bytes(b, sizeof(b), usable);
            errf(err, errlen,
                 "removing %s would leave pool '%s' %s usable, less than its thick volumes "
                 "reserve (%s)",
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
                else if (d && !d->failed && sds_up(s, d->sds_id))
                    left++;
            }
            if (had && !left) {
                errf(err, errlen,
                     "%s holds the only live copy of PG %u.%zu: removing it would lose data "
                     "(bring it back, or wait for the PG's rebuild)",
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
                            changed |= u32_remove(lists[l], ns[l], d->id);
                        else
                            k++;
                    }
                if (changed)
                    g->epoch++;
            }
        }
        membership_changed(s, 0, 0);
    }
#undef GOING
    return 0;
}

/* A rebuilding copy is complete: it joins the in-sync copies, in the place
 * (and role) of a copy leaving the PG if there is one. */
static int pg_rebuilt(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    Cairn__Pool *p = mdm_pool_by_id(s, req->pool_id);
    if (!p || req->pg >= p->n_pgs) {
        errf(err, errlen, "no PG %u in pool %u", req->pg, req->pool_id);
        return -ENOENT;
    }
    Cairn__Pg *g = p->pgs[req->pg];
    if (g->epoch != req->epoch || !u32_has(g->rebuilding, g->n_rebuilding, req->device_id)) {
        errf(err, errlen, "PG %u.%u changed (epoch %llu, reported %llu); rebuild again", p->id,
             req->pg, (unsigned long long)g->epoch, (unsigned long long)req->epoch);
        return -ESTALE;
    }
    u32_remove(g->rebuilding, &g->n_rebuilding, req->device_id);
    u32_remove(g->catchup, &g->n_catchup, req->device_id);
    size_t slot = g->n_devices;
    if (g->n_leaving && g->n_devices + 1 > p->copies) {
        uint32_t gone = g->leaving[0];
        u32_remove(g->leaving, &g->n_leaving, gone);
        for (size_t k = 0; k < g->n_devices; k++)
            if (g->devices[k] == gone)
                slot = k;
    }
    if (slot == g->n_devices)
        u32_append(&g->devices, &g->n_devices, req->device_id);
    else
        g->devices[slot] = req->device_id;
    g->epoch++;
    return 0;
}

/* The SDS holding each PG's primary copy, for spotting demotions. */
static uint32_t *primaries(const struct mdm_state *s, size_t *n)
{
    size_t total = 0;
    for (size_t pi = 0; pi < s->m->n_pools; pi++)
        total += s->m->pools[pi]->n_pgs;
    uint32_t *out = calloc(total + 1, sizeof(uint32_t));
    if (!out)
        abort();
    size_t i = 0;
    for (size_t pi = 0; pi < s->m->n_pools; pi++)
        for (size_t gi = 0; gi < s->m->pools[pi]->n_pgs; gi++)
            out[i++] = cmap_copy_sds(s->m, s->m->pools[pi]->pgs[gi], 0);
    *n = total;
    return out;
}

/* An SDS that stopped being some PG's primary may serve reads again only
 * with a map that says so: its leases need at least this version. */
static void note_demotions(struct mdm_state *s, const uint32_t *before, size_t nbefore)
{
    size_t i = 0;
    for (size_t pi = 0; pi < s->m->n_pools; pi++)
        for (size_t gi = 0; gi < s->m->pools[pi]->n_pgs; gi++, i++) {
            if (i >= nbefore || !before[i])
                continue;
            uint32_t now = cmap_copy_sds(s->m, s->m->pools[pi]->pgs[gi], 0);
            Cairn__Sds *o = mdm_sds_by_id(s, before[i]);
            if (now != before[i] && o)
                o->demoted_version = s->m->version;
        }
}

static int apply_fault_set(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                           size_t errlen)
{
    size_t i;
    for (i = 0; i < s->m->n_fault_sets; i++)
        if (!strcmp(s->m->fault_sets[i]->name, req->fault_set))
            break;
    if (req->op == CAIRN__MGMT_OP__OP_FAULT_SET_ADD) {
        if (!valid_name(req->fault_set)) {
            errf(err, errlen, "invalid fault set name '%s' (1-%d of [A-Za-z0-9._-])",
                 req->fault_set, MDM_NAME_MAX);
            return -EINVAL;
        }
        if (i < s->m->n_fault_sets) {
            errf(err, errlen, "a fault set named '%s' already exists", req->fault_set);
            return -EEXIST;
        }
        Cairn__FaultSet *f = malloc(sizeof(*f));
        cairn__fault_set__init(f);
        f->id = (uint32_t)s->m->next_id++;
        f->name = xstrdup(req->fault_set);
        if (!PB_APPEND(s->m->fault_sets, s->m->n_fault_sets, f))
            abort();
        return 0;
    }
    if (i == s->m->n_fault_sets) {
        errf(err, errlen, "no fault set named '%s'", req->fault_set);
        return -ENOENT;
    }
    for (size_t j = 0; j < s->m->n_sds; j++)
        if (!strcmp(s->m->sds[j]->fault_set, req->fault_set)) {
            errf(err, errlen, "fault set '%s' still has SDS '%s'; remove its SDSs first",
                 req->fault_set, s->m->sds[j]->name);
            return -EBUSY;
        }
    protobuf_c_message_free_unpacked(&s->m->fault_sets[i]->base, NULL);
    memmove(&s->m->fault_sets[i], &s->m->fault_sets[i + 1],
            sizeof(*s->m->fault_sets) * (s->m->n_fault_sets - i - 1));
    s->m->n_fault_sets--;
    return 0;
}

/* "host" part of host:port, for spotting two SDSs on one host. */
static int same_host(const char *a, const char *b)
{
    const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');
    size_t la = ca ? (size_t)(ca - a) : strlen(a), lb = cb ? (size_t)(cb - b) : strlen(b);
    return la == lb && !strncmp(a, b, la);
}

static int add_devices(struct mdm_state *s, const Cairn__MgmtRequest *req, Cairn__Sds *sds,
                       Cairn__Pool *pool, char *err, size_t errlen)
{
    if (req->n_paths != req->n_capacities) {
        errf(err, errlen, "internal: %zu paths but %zu capacities", req->n_paths,
             req->n_capacities);
        return -EINVAL;
    }
    for (size_t i = 0; i < req->n_paths; i++) {
        for (size_t j = 0; j < s->m->n_devices; j++) {
            Cairn__Device *d = s->m->devices[j];
            Cairn__Sds *owner = mdm_sds_by_id(s, d->sds_id);
            if (owner && same_host(owner->addr, sds->addr) && !strcmp(d->path, req->paths[i])) {
                errf(err, errlen, "device %s is already part of SDS %s on the same host",
                     req->paths[i], owner->name);
                return -EEXIST;
            }
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(req->paths[i], req->paths[j])) {
                errf(err, errlen, "device %s is named twice", req->paths[i]);
                return -EINVAL;
            }
        if (req->capacities[i] < 16 * pool->extent_size) {
            errf(err, errlen, "device %s is too small (%llu bytes; at least %llu needed)",
                 req->paths[i], (unsigned long long)req->capacities[i],
                 (unsigned long long)(16 * pool->extent_size));
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < req->n_paths; i++) {
        Cairn__Device *d = malloc(sizeof(*d));
        cairn__device__init(d);
        d->id = (uint32_t)s->m->next_id++;
        d->sds_id = sds->id;
        d->pool_id = pool->id;
        d->path = xstrdup(req->paths[i]);
        d->capacity = req->capacities[i];
        if (!PB_APPEND(s->m->devices, s->m->n_devices, d))
            abort();
    }
    return pool_place(s, pool);
}

/* The SDS or volume a request names, or NULL with a message for the operator. */
static Cairn__Sds *req_sds(struct mdm_state *s, const char *name, char *err, size_t errlen)
{
    Cairn__Sds *d = mdm_sds_by_name(s, name);
    if (!d)
        errf(err, errlen, "no SDS named '%s'", name);
    return d;
}

static Cairn__Volume *req_volume(struct mdm_state *s, const char *name, char *err, size_t errlen)
{
    Cairn__Volume *v = mdm_volume_by_name(s, name);
    if (!v)
        errf(err, errlen, "no volume named '%s'", name);
    return v;
}

static Cairn__Pool *req_pool(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                             size_t errlen)
{
    const char *name = req->pool[0] ? req->pool : "default";
    Cairn__Pool *p = mdm_pool_by_name(s, name);
    if (!p)
        errf(err, errlen, "no storage pool named '%s' (create it with 'cairn pool create')",
             name);
    return p;
}

static int apply_volume_create(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                               size_t errlen)
{
    if (!valid_name(req->volume)) {
        errf(err, errlen, "invalid volume name '%s' (1-%d of [A-Za-z0-9._-])", req->volume,
             MDM_NAME_MAX);
        return -EINVAL;
    }
    if (mdm_volume_by_name(s, req->volume)) {
        errf(err, errlen, "a volume named '%s' already exists", req->volume);
        return -EEXIST;
    }
    Cairn__Pool *p = req_pool(s, req, err, errlen);
    if (!p)
        return -ENOENT;
    if (req->size == 0 || req->size % 4096) {
        errf(err, errlen, "volume size must be a positive multiple of 4 KiB");
        return -EINVAL;
    }
    if (p->n_pgs == 0) {
        errf(err, errlen,
             "pool '%s' cannot hold data yet: it needs devices in at least %u fault sets",
             p->name, p->copies);
        return -ENOSPC;
    }
    uint64_t usable = capacity_pool_usable(s->m, p);
    char a[32], b[32];
    if (req->thick) {
        uint64_t reserved = capacity_pool_provisioned(s->m, p, 1);
        uint64_t free_cap = usable > reserved ? usable - reserved : 0;
        if (req->size > free_cap) {
            fmt_bytes(a, sizeof(a), req->size);
            fmt_bytes(b, sizeof(b), free_cap);
            errf(err, errlen,
                 "thick volume '%s' needs %s but pool '%s' has only %s free (after %u copies "
                 "and existing thick volumes)",
                 req->volume, a, p->name, b, p->copies);
            return -ENOSPC;
        }
    }
    uint64_t limit = (uint64_t)((unsigned __int128)usable * p->overcommit_pct / 100);
    uint64_t prov = capacity_pool_provisioned(s->m, p, 0);
    if (prov + req->size > limit) {
        fmt_bytes(a, sizeof(a), prov + req->size);
        fmt_bytes(b, sizeof(b), limit);
        errf(err, errlen,
             "volume '%s' would bring pool '%s' to %s provisioned, over its overcommit limit "
             "of %s (%u%% of usable capacity)",
             req->volume, p->name, a, b, p->overcommit_pct);
        return -ENOSPC;
    }
    Cairn__Volume *v = malloc(sizeof(*v));
    cairn__volume__init(v);
    v->id = s->m->next_id++;
    v->name = xstrdup(req->volume);
    v->pool_id = p->id;
    v->size = req->size;
    v->thick = req->thick;
    if (!PB_APPEND(s->m->volumes, s->m->n_volumes, v))
        abort();
    return 0;
}

static int apply(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    switch (req->op) {
    case CAIRN__MGMT_OP__OP_POOL_CREATE: {
        if (!valid_name(req->pool)) {
            errf(err, errlen, "invalid pool name '%s'", req->pool);
            return -EINVAL;
        }
        if (mdm_pool_by_name(s, req->pool)) {
            errf(err, errlen, "a pool named '%s' already exists", req->pool);
            return -EEXIST;
        }
        uint32_t copies = req->copies ? req->copies : MDM_DEFAULT_COPIES;
        if (copies < 2 || copies > 3) {
            errf(err, errlen, "copies must be 2 or 3 (got %u)", copies);
            return -EINVAL;
        }
        uint64_t ext = req->extent_size ? req->extent_size : MDM_DEFAULT_EXTENT;
        if (ext < 65536 || ext > (32u << 20) || (ext & (ext - 1))) {
            errf(err, errlen, "extent size must be a power of two from 64 KiB to 32 MiB");
            return -EINVAL;
        }
        uint32_t pgs = req->pg_count ? req->pg_count : MDM_DEFAULT_PGS;
        if (pgs > 65536) {
            errf(err, errlen, "at most 65536 PGs per pool");
            return -EINVAL;
        }
        Cairn__Pool *p = malloc(sizeof(*p));
        cairn__pool__init(p);
        p->id = (uint32_t)s->m->next_id++;
        p->name = xstrdup(req->pool);
        p->copies = copies;
        p->extent_size = ext;
        p->pg_count = pgs;
        p->overcommit_pct = req->overcommit_pct ? req->overcommit_pct : MDM_DEFAULT_OVERCOMMIT;
        if (!PB_APPEND(s->m->pools, s->m->n_pools, p))
            abort();
        return pool_place(s, p);
    }
    case CAIRN__MGMT_OP__OP_POOL_SET: {
        Cairn__Pool *p = req_pool(s, req, err, errlen);
        if (!p)
            return -ENOENT;
        if (req->overcommit_pct) {
            if (req->overcommit_pct < 100) {
                errf(err, errlen, "overcommit must be at least 100%%");
                return -EINVAL;
            }
            p->overcommit_pct = req->overcommit_pct;
        }
        return 0;
    }
    case CAIRN__MGMT_OP__OP_SDS_ADD: {
        if (!valid_name(req->name)) {
            errf(err, errlen, "invalid SDS name '%s'", req->name);
            return -EINVAL;
        }
        if (mdm_sds_by_name(s, req->name)) {
            errf(err, errlen, "an SDS named '%s' already exists", req->name);
            return -EEXIST;
        }
        for (size_t i = 0; i < s->m->n_sds; i++)
            if (!strcmp(s->m->sds[i]->addr, req->addr)) {
                errf(err, errlen, "SDS '%s' already uses address %s", s->m->sds[i]->name,
                     req->addr);
                return -EEXIST;
            }
        if (req->fault_set[0]) {
            if (!mdm_fault_set_by_name(s, req->fault_set)) {
                errf(err, errlen, "no fault set named '%s' (declare it with 'cairn fault-set add %s')",
                     req->fault_set, req->fault_set);
                return -ENOENT;
            }
        }
        Cairn__Pool *p = req_pool(s, req, err, errlen);
        if (!p)
            return -ENOENT;
        Cairn__Sds *d = malloc(sizeof(*d));
        cairn__sds__init(d);
        d->id = (uint32_t)s->m->next_id++;
        d->name = xstrdup(req->name);
        d->addr = xstrdup(req->addr);
        d->fault_set = xstrdup(req->fault_set);
        if (!PB_APPEND(s->m->sds, s->m->n_sds, d))
            abort();
        int r = add_devices(s, req, d, p, err, errlen);
        if (r < 0) {
            s->m->n_sds--;
            protobuf_c_message_free_unpacked(&d->base, NULL);
        }
        return r;
    }
    case CAIRN__MGMT_OP__OP_DEVICE_ADD: {
        Cairn__Sds *d = req_sds(s, req->name, err, errlen);
        if (!d)
            return -ENOENT;
        Cairn__Pool *p = req_pool(s, req, err, errlen);
        if (!p)
            return -ENOENT;
        return add_devices(s, req, d, p, err, errlen);
    }
    case CAIRN__MGMT_OP__OP_VOLUME_CREATE:
        return apply_volume_create(s, req, err, errlen);
    case CAIRN__MGMT_OP__OP_VOLUME_GROW: {
        Cairn__Volume *v = req_volume(s, req->volume, err, errlen);
        if (!v)
            return -ENOENT;
        if (req->size <= v->size || req->size % 4096) {
            errf(err, errlen, "new size must be larger than the current size and a multiple of 4 KiB");
            return -EINVAL;
        }
        Cairn__Pool *p = mdm_pool_by_id(s, v->pool_id);
        uint64_t usable = capacity_pool_usable(s->m, p);
        uint64_t grow = req->size - v->size;
        if (v->thick && capacity_pool_provisioned(s->m, p, 1) + grow > usable) {
            errf(err, errlen, "pool '%s' has no room to grow thick volume '%s'", p->name, v->name);
            return -ENOSPC;
        }
        if (capacity_pool_provisioned(s->m, p, 0) + grow > (uint64_t)((unsigned __int128)usable * p->overcommit_pct / 100)) {
            errf(err, errlen, "growing '%s' would exceed pool '%s' overcommit limit (%u%%)",
                 v->name, p->name, p->overcommit_pct);
            return -ENOSPC;
        }
        v->size = req->size;
        return 0;
    }
    case CAIRN__MGMT_OP__OP_VOLUME_REMOVE: {
        size_t i;
        for (i = 0; i < s->m->n_volumes; i++)
            if (!strcmp(s->m->volumes[i]->name, req->volume))
                break;
        if (i == s->m->n_volumes) {
            errf(err, errlen, "no volume named '%s'", req->volume);
            return -ENOENT;
        }
        Cairn__Volume *v = s->m->volumes[i];
        for (size_t j = 0; j < s->m->n_mappings; j++)
            if (s->m->mappings[j]->volume_id == v->id) {
                errf(err, errlen, "volume '%s' is still mapped; unmap it first", v->name);
                return -EBUSY;
            }
        uint64_t *nr = realloc(s->m->removed_volumes,
                               sizeof(uint64_t) * (s->m->n_removed_volumes + 1));
        if (!nr)
            abort();
        s->m->removed_volumes = nr;
        nr[s->m->n_removed_volumes++] = v->id;
        protobuf_c_message_free_unpacked(&v->base, NULL);
        memmove(&s->m->volumes[i], &s->m->volumes[i + 1],
                sizeof(*s->m->volumes) * (s->m->n_volumes - i - 1));
        s->m->n_volumes--;
        return 0;
    }
    case CAIRN__MGMT_OP__OP_SDC_REGISTER: {
        if (!req->guid[0] || strlen(req->guid) > 64) {
            errf(err, errlen, "an SDC needs a guid of 1-64 bytes");
            return -EINVAL;
        }
        if (req->name[0] && !valid_name(req->name)) {
            errf(err, errlen, "invalid SDC name '%s'", req->name);
            return -EINVAL;
        }
        Cairn__Sdc *c = mdm_sdc_by_guid(s, req->guid);
        const char *name = req->name[0] ? req->name : req->guid;
        Cairn__Sdc *other = mdm_sdc_by_name(s, name);
        if (other && other != c) {
            errf(err, errlen, "another SDC is already named '%s'", name);
            return -EEXIST;
        }
        if (c) {
            char *old = c->name;
            c->name = xstrdup(name);
            if (old != protobuf_c_empty_string)
                free(old);
            return 0;
        }
        c = malloc(sizeof(*c));
        cairn__sdc__init(c);
        c->id = (uint32_t)s->m->next_id++;
        c->guid = xstrdup(req->guid);
        c->name = xstrdup(name);
        if (!PB_APPEND(s->m->sdcs, s->m->n_sdcs, c))
            abort();
        return 0;
    }
    case CAIRN__MGMT_OP__OP_MAP:
    case CAIRN__MGMT_OP__OP_UNMAP: {
        Cairn__Volume *v = req_volume(s, req->volume, err, errlen);
        if (!v)
            return -ENOENT;
        Cairn__Sdc *c = mdm_sdc_by_name(s, req->sdc);
        if (!c) {
            errf(err, errlen, "no SDC named '%s' (an SDC registers when it starts)", req->sdc);
            return -ENOENT;
        }
        size_t j;
        for (j = 0; j < s->m->n_mappings; j++)
            if (s->m->mappings[j]->volume_id == v->id && s->m->mappings[j]->sdc_id == c->id)
                break;
        if (req->op == CAIRN__MGMT_OP__OP_MAP) {
            if (j < s->m->n_mappings) {
                s->m->mappings[j]->read_only = req->read_only;
                return 0;
            }
            Cairn__Mapping *mp = malloc(sizeof(*mp));
            cairn__mapping__init(mp);
            mp->volume_id = v->id;
            mp->sdc_id = c->id;
            mp->read_only = req->read_only;
            if (!PB_APPEND(s->m->mappings, s->m->n_mappings, mp))
                abort();
            return 0;
        }
        if (j == s->m->n_mappings) {
            errf(err, errlen, "volume '%s' is not mapped to SDC '%s'", v->name, c->name);
            return -ENOENT;
        }
        protobuf_c_message_free_unpacked(&s->m->mappings[j]->base, NULL);
        memmove(&s->m->mappings[j], &s->m->mappings[j + 1],
                sizeof(*s->m->mappings) * (s->m->n_mappings - j - 1));
        s->m->n_mappings--;
        return 0;
    }
    case CAIRN__MGMT_OP__OP_SDS_DOWN:
    case CAIRN__MGMT_OP__OP_SDS_UP: {
        Cairn__Sds *d = req_sds(s, req->name, err, errlen);
        if (!d)
            return -ENOENT;
        int down = req->op == CAIRN__MGMT_OP__OP_SDS_DOWN;
        Cairn__SdsState want = down ? CAIRN__SDS_STATE__SDS_DOWN : CAIRN__SDS_STATE__SDS_UP;
        if (d->state == want)
            return 0;
        d->state = want;
        if (!down)
            rejoin_departed(s, d);
        membership_changed(s, down ? d->id : 0, 0);
        return 0;
    }
    case CAIRN__MGMT_OP__OP_GRACE_EXPIRED: {
        Cairn__Sds *d = req_sds(s, req->name, err, errlen);
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
                        changed |= u32_remove(g->departed, &g->n_departed, dv->id);
                    else
                        k++;
                }
                if (changed)
                    g->epoch++;
            }
        }
        return 0;
    }
    case CAIRN__MGMT_OP__OP_MAINTENANCE_ENTER:
    case CAIRN__MGMT_OP__OP_MAINTENANCE_EXIT: {
        Cairn__Sds *d = req_sds(s, req->name, err, errlen);
        if (!d)
            return -ENOENT;
        if (req->op == CAIRN__MGMT_OP__OP_MAINTENANCE_ENTER)
            return maintenance_enter(s, d, err, errlen);
        if (d->state != CAIRN__SDS_STATE__SDS_MAINTENANCE) {
            errf(err, errlen, "SDS '%s' is not in maintenance", d->name);
            return -EINVAL;
        }
        d->state = CAIRN__SDS_STATE__SDS_UP;
        rejoin_departed(s, d);
        membership_changed(s, 0, 0);
        return 0;
    }
    case CAIRN__MGMT_OP__OP_DEVICE_FAIL: {
        Cairn__Device *d = mdm_device_by_id(s, req->device_id);
        if (!d) {
            errf(err, errlen, "no device %u", req->device_id);
            return -ENOENT;
        }
        if (d->failed)
            return 0;
        d->failed = 1;
        membership_changed(s, 0, d->id);
        return 0;
    }
    case CAIRN__MGMT_OP__OP_PG_REBUILT:
        return pg_rebuilt(s, req, err, errlen);
    case CAIRN__MGMT_OP__OP_SDS_REMOVE:
    case CAIRN__MGMT_OP__OP_DEVICE_REMOVE: {
        Cairn__Sds *d = req_sds(s, req->name, err, errlen);
        if (!d)
            return -ENOENT;
        uint32_t dev_id = 0;
        if (req->op == CAIRN__MGMT_OP__OP_DEVICE_REMOVE) {
            for (size_t i = 0; i < s->m->n_devices && req->n_paths == 1; i++)
                if (s->m->devices[i]->sds_id == d->id &&
                    !strcmp(s->m->devices[i]->path, req->paths[0]))
                    dev_id = s->m->devices[i]->id;
            if (!dev_id) {
                errf(err, errlen, "SDS '%s' has no device %s", d->name,
                     req->n_paths == 1 ? req->paths[0] : "(name one device)");
                return -ENOENT;
            }
        }
        return remove_devices(s, d, dev_id, req->force, err, errlen);
    }
    case CAIRN__MGMT_OP__OP_FAULT_SET_ADD:
    case CAIRN__MGMT_OP__OP_FAULT_SET_REMOVE:
        return apply_fault_set(s, req, err, errlen);
    default:
        errf(err, errlen, "unknown operation %d", req->op);
        return -EINVAL;
    }
}

/* Operations that may fail after they started changing the state. Every
 * other operation checks everything first, so it needs no undo copy (copying
 * the whole state per operation would make a busy rebuild, with one
 * operation per PG, stall the MDM). */
static int needs_undo(int op)
{
    return op == CAIRN__MGMT_OP__OP_POOL_CREATE || op == CAIRN__MGMT_OP__OP_SDS_ADD ||
           op == CAIRN__MGMT_OP__OP_DEVICE_ADD;
}

/* Operations after which copies may have to move (or a drain may be done). */
static int moves_copies(int op)
{
    switch (op) {
    case CAIRN__MGMT_OP__OP_SDS_ADD:
    case CAIRN__MGMT_OP__OP_DEVICE_ADD:
    case CAIRN__MGMT_OP__OP_SDS_REMOVE:
    case CAIRN__MGMT_OP__OP_DEVICE_REMOVE:
    case CAIRN__MGMT_OP__OP_SDS_UP:
    case CAIRN__MGMT_OP__OP_SDS_DOWN:
    case CAIRN__MGMT_OP__OP_MAINTENANCE_EXIT:
    case CAIRN__MGMT_OP__OP_GRACE_EXPIRED:
    case CAIRN__MGMT_OP__OP_PG_REBUILT:
    case CAIRN__MGMT_OP__OP_DEVICE_FAIL:
    case CAIRN__MGMT_OP__OP_VOLUME_CREATE:
        return 1;
    default:
        return 0;
    }
}

int mdm_state_apply(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    err[0] = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int r;
    if (needs_undo(req->op) && (r = mdm_state_pack(s, &buf, &len)) < 0)
        return r;
    size_t nprim;
    uint32_t *prim = primaries(s, &nprim);
    r = apply(s, req, err, errlen);
    if (r < 0 && buf)
        mdm_state_restore(s, buf, len);
    if (r >= 0) {
        if (moves_copies(req->op))
            rebalance_all(s);
        s->m->version++;
        note_demotions(s, prim, nprim);
    }
    free(prim);
    free(buf);
    return r;
}
