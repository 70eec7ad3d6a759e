/* Change tracking while copies are away (see sds.h), and the ring of recent
 * changes that covers a failure nobody announced. */
#include <stdlib.h>

#include "cmap.h"
#include "sds.h"
#include "util.h"

#define RECENT_MS 30000

static struct tracker *tracker_of(struct tracking *tk, uint32_t pool_id, uint32_t pg)
{
    for (size_t i = 0; i < tk->ntrackers; i++)
        if (tk->trackers[i].pool_id == pool_id && tk->trackers[i].pg == pg)
            return &tk->trackers[i];
    return NULL;
}

int tracking_complete(struct sds *s, uint32_t pool_id, uint32_t pg)
{
    struct tracker *t = tracker_of(&s->tracking, pool_id, pg);
    return t && t->complete;
}

void tracking_changes(struct sds *s, uint32_t pool_id, uint32_t pg,
                      void (*add)(void *arg, uint64_t vol, uint64_t ext), void *arg)
{
    struct tracking *tk = &s->tracking;
    for (size_t i = 0; i < tk->ndirty; i++)
        if (tk->dirty[i].pool_id == pool_id && tk->dirty[i].pg == pg)
            add(arg, tk->dirty[i].vol, tk->dirty[i].ext);
}

static void recent_add(struct tracking *tk, uint32_t pool_id, uint32_t pg, uint64_t vol,
                       uint64_t ext)
{
    uint64_t now = now_ms();
    /* drop what is older than the window */
    while (tk->recent_len && now - tk->recent[tk->recent_head].at > RECENT_MS) {
        tk->recent_head = (tk->recent_head + 1) % tk->recent_cap;
        tk->recent_len--;
    }
    for (size_t i = 0; i < tk->recent_len && i < 32; i++) {
        struct recent *r = &tk->recent[(tk->recent_head + tk->recent_len - 1 - i) % tk->recent_cap];
        if (r->vol == vol && r->ext == ext && r->pg == pg && r->pool_id == pool_id) {
            r->at = now; /* still inside the window: refresh in place is enough */
            return;
        }
    }
    if (tk->recent_len == tk->recent_cap) {
        size_t ncap = tk->recent_cap ? tk->recent_cap * 2 : 4096;
        struct recent *nr = malloc(ncap * sizeof(*nr));
        if (!nr)
            abort();
        for (size_t i = 0; i < tk->recent_len; i++)
            nr[i] = tk->recent[(tk->recent_head + i) % tk->recent_cap];
        free(tk->recent);
        tk->recent = nr;
        tk->recent_cap = ncap;
        tk->recent_head = 0;
    }
    tk->recent[(tk->recent_head + tk->recent_len) % tk->recent_cap] =
        (struct recent){now, pool_id, pg, vol, ext};
    tk->recent_len++;
}

static void dirty_record(struct tracking *tk, uint32_t pool_id, uint32_t pg, uint64_t vol,
                         uint64_t ext)
{
    if (!tk->ntrackers || !tracker_of(tk, pool_id, pg))
        return;
    for (size_t i = tk->ndirty; i-- > 0 && i + 64 >= tk->ndirty;)
        if (tk->dirty[i].vol == vol && tk->dirty[i].ext == ext && tk->dirty[i].pg == pg &&
            tk->dirty[i].pool_id == pool_id)
            return; /* recently recorded: the common case of repeated writes */
    if (tk->ndirty == tk->capdirty) {
        tk->capdirty = tk->capdirty ? tk->capdirty * 2 : 1024;
        tk->dirty = realloc(tk->dirty, tk->capdirty * sizeof(*tk->dirty));
        if (!tk->dirty)
            abort();
    }
    tk->dirty[tk->ndirty++] = (struct dirty){pool_id, pg, vol, ext};
}

void tracking_note(struct sds *s, uint32_t pool_id, uint32_t pg, uint64_t vol, uint64_t ext)
{
    recent_add(&s->tracking, pool_id, pg, vol, ext);
    dirty_record(&s->tracking, pool_id, pg, vol, ext);
}

/* The ring's changes of a PG go into its new record: a copy that failed
 * (rather than leaving for maintenance) may have missed what changed just
 * before the failure was noticed. */
static void add_recent(struct tracking *tk, uint32_t pool_id, uint32_t pg)
{
    for (size_t i = 0; i < tk->recent_len; i++) {
        struct recent *r = &tk->recent[(tk->recent_head + i) % tk->recent_cap];
        if (r->pool_id == pool_id && r->pg == pg)
            dirty_record(tk, pool_id, pg, r->vol, r->ext);
    }
}

void tracking_sync(struct sds *s, const Cairn__ClusterMap *old)
{
    struct tracking *tk = &s->tracking;
    size_t keep = 0;
    for (size_t i = 0; i < tk->ntrackers; i++) {
        struct tracker *t = &tk->trackers[i];
        Cairn__Pool *p = cmap_pool(s->map, t->pool_id);
        Cairn__Pg *g = p && t->pg < p->n_pgs ? p->pgs[t->pg] : NULL;
        if (g && (g->n_departed || g->n_catchup))
            tk->trackers[keep++] = *t;
    }
    if (keep != tk->ntrackers) {
        tk->ntrackers = keep;
        size_t dk = 0;
        for (size_t i = 0; i < tk->ndirty; i++)
            if (tracker_of(tk, tk->dirty[i].pool_id, tk->dirty[i].pg))
                tk->dirty[dk++] = tk->dirty[i];
        tk->ndirty = dk;
    }
    for (size_t pi = 0; pi < s->map->n_pools; pi++) {
        Cairn__Pool *p = s->map->pools[pi];
        Cairn__Pool *op = old ? cmap_pool(old, p->id) : NULL;
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            Cairn__Pg *g = p->pgs[gi];
            if (!g->n_departed || tracker_of(tk, p->id, (uint32_t)gi))
                continue;
            uint32_t mine = 0;
            for (size_t k = 0; k < g->n_devices; k++) {
                Cairn__Device *d = cmap_device(s->map, g->devices[k]);
                if (d && d->sds_id == s->my_id)
                    mine = d->id;
            }
            if (!mine)
                continue;
            /* complete if this SDS saw the departure: in the old map the
             * departed copies and ours were all in-sync */
            Cairn__Pg *og = op && gi < op->n_pgs ? op->pgs[gi] : NULL;
            int complete = og && pg_has_dev(og->devices, og->n_devices, mine);
            for (size_t k = 0; k < g->n_departed && complete; k++)
                complete = pg_has_dev(og->devices, og->n_devices, g->departed[k]);
            struct tracker *nt = realloc(tk->trackers, (tk->ntrackers + 1) * sizeof(*nt));
            if (!nt)
                abort();
            tk->trackers = nt;
            tk->trackers[tk->ntrackers++] = (struct tracker){p->id, (uint32_t)gi, complete};
            int unannounced = 0;
            for (size_t k = 0; k < g->n_departed; k++) {
                Cairn__Device *dd = cmap_device(s->map, g->departed[k]);
                Cairn__Sds *ds = dd ? cmap_sds(s->map, dd->sds_id) : NULL;
                unannounced |= !ds || ds->state != CAIRN__SDS_STATE__SDS_MAINTENANCE;
            }
            if (unannounced)
                add_recent(tk, p->id, (uint32_t)gi);
        }
    }
}
