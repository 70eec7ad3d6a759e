/* Snapshots in the state machine (docs/snapshots.md): create (one volume or
 * a group, at the map version the SDSs paused at), the leader's abort,
 * remove (the layer is merged into the one above it), and revert a volume
 * to a snapshot. No data moves here: a snapshot is a new head layer, a
 * removal a merge record, a revert a new head over the snapshot's layer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "state_internal.h"
#include "util.h"

static void removed_append(struct mdm_state *s, uint64_t layer)
{
    uint64_t *nr = realloc(s->m->removed_volumes, sizeof(uint64_t) * (s->m->n_removed_volumes + 1));
    if (!nr)
        abort();
    s->m->removed_volumes = nr;
    nr[s->m->n_removed_volumes++] = layer;
}

static size_t snapshots_of(const struct mdm_state *s, uint64_t volume_id)
{
    size_t n = 0;
    for (size_t i = 0; i < s->m->n_snapshots; i++)
        n += s->m->snapshots[i]->volume_id == volume_id;
    return n;
}

static int mapped(const struct mdm_state *s, uint64_t id)
{
    for (size_t j = 0; j < s->m->n_mappings; j++)
        if (s->m->mappings[j]->volume_id == id)
            return 1;
    return 0;
}

static void snapshot_drop(struct mdm_state *s, size_t i)
{
    protobuf_c_message_free_unpacked(&s->m->snapshots[i]->base, NULL);
    memmove(&s->m->snapshots[i], &s->m->snapshots[i + 1],
            sizeof(*s->m->snapshots) * (s->m->n_snapshots - i - 1));
    s->m->n_snapshots--;
}

static void merge_drop(struct mdm_state *s, size_t i)
{
    protobuf_c_message_free_unpacked(&s->m->merges[i]->base, NULL);
    memmove(&s->m->merges[i], &s->m->merges[i + 1],
            sizeof(*s->m->merges) * (s->m->n_merges - i - 1));
    s->m->n_merges--;
}

Cairn__Snapshot *state_req_snapshot(struct mdm_state *s, const char *spec, Cairn__Volume **vp,
                                    char *err, size_t errlen)
{
    char vol[MDM_NAME_MAX + 1];
    const char *at = strchr(spec, '@');
    if (!at || (size_t)(at - spec) > MDM_NAME_MAX) {
        state_errf(err, errlen, "name a snapshot as VOLUME@SNAPSHOT, not '%.64s'", spec);
        return NULL;
    }
    memcpy(vol, spec, (size_t)(at - spec));
    vol[at - spec] = 0;
    Cairn__Volume *v = state_req_volume(s, vol, err, errlen);
    if (!v)
        return NULL;
    Cairn__Snapshot *sn = cmap_snapshot_by_name(s->m, v->id, at + 1);
    if (!sn) {
        state_errf(err, errlen, "volume '%s' has no snapshot named '%.64s'", v->name, at + 1);
        return NULL;
    }
    *vp = v;
    return sn;
}

int state_snapshots_create(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                           size_t errlen)
{
    if (!state_valid_name(req->name) || !strcmp(req->name, "ro")) {
        state_errf(err, errlen, "invalid snapshot name '%s' (1-%d of [A-Za-z0-9._-], not 'ro')",
                   req->name, MDM_NAME_MAX);
        return -EINVAL;
    }
    if (req->n_volumes == 0 || req->n_volumes > 64) {
        state_errf(err, errlen, "a snapshot names 1 to 64 volumes");
        return -EINVAL;
    }
    if (req->group[0] && !state_valid_name(req->group)) {
        state_errf(err, errlen, "invalid group name '%s'", req->group);
        return -EINVAL;
    }
    /* The SDSs paused at base_version: at any other version the cut is
     * not known to hold (a primary may have moved, an SDS joined). */
    if (req->base_version != s->m->version) {
        state_errf(err, errlen,
                   "the cluster changed during the snapshot (map version %llu, the pause was at "
                   "%llu); nothing was taken: try again",
                   (unsigned long long)s->m->version, (unsigned long long)req->base_version);
        return -EAGAIN;
    }
    for (size_t i = 0; i < req->n_volumes; i++) {
        Cairn__Volume *v = state_req_volume(s, req->volumes[i], err, errlen);
        if (!v)
            return -ENOENT;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(req->volumes[k], req->volumes[i])) {
                state_errf(err, errlen, "volume '%s' is named twice", v->name);
                return -EINVAL;
            }
        if (cmap_snapshot_by_name(s->m, v->id, req->name)) {
            state_errf(err, errlen, "volume '%s' already has a snapshot named '%s'", v->name,
                       req->name);
            return -EEXIST;
        }
        if (v->flattening) {
            state_errf(err, errlen,
                       "volume '%s' is being flattened: take the snapshot once that is done "
                       "('cairn volume flatten %s --wait')",
                       v->name, v->name);
            return -EBUSY;
        }
        if (snapshots_of(s, v->id) >= CMAP_SNAPSHOTS_MAX) {
            state_errf(err, errlen,
                       "volume '%s' has %d snapshots, the most it may hold; remove one", v->name,
                       CMAP_SNAPSHOTS_MAX);
            return -ENOSPC;
        }
    }
    for (size_t i = 0; i < req->n_volumes; i++) {
        Cairn__Volume *v = mdm_volume_by_name(s, req->volumes[i]);
        Cairn__Snapshot *sn = malloc(sizeof(*sn));
        if (!sn)
            abort();
        cairn__snapshot__init(sn);
        sn->id = s->m->next_id++;
        sn->volume_id = v->id;
        sn->name = state_xstrdup(req->name);
        sn->layer = cmap_head(v);
        sn->parent = v->head_parent;
        sn->size = v->size;
        sn->created_ms = req->time_ms;
        sn->group = state_xstrdup(req->group);
        if (!PB_APPEND(s->m->snapshots, s->m->n_snapshots, sn))
            abort();
        /* the volume's writes go to a new, empty layer over the snapshot */
        v->head_parent = sn->layer;
        v->head_layer = s->m->next_id++;
    }
    return 0;
}

int state_snapshots_abort(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                          size_t errlen)
{
    (void)s;
    (void)req;
    (void)err;
    (void)errlen;
    return 0; /* its map version, above the pause's, lifts it at every SDS */
}

/* The layers whose parent is sn's layer: the next newer snapshot's, or the
 * head's; after a revert, or for a clone, there are several. *child is the
 * last snapshot among them, *clone a volume other than v among them. */
static size_t children(struct mdm_state *s, const Cairn__Volume *v, const Cairn__Snapshot *sn,
                       Cairn__Snapshot **child, Cairn__Volume **clone)
{
    size_t n = 0;
    *child = NULL;
    *clone = NULL;
    for (size_t i = 0; i < s->m->n_volumes; i++)
        if (s->m->volumes[i]->head_parent == sn->layer) {
            n++;
            if (s->m->volumes[i] != v)
                *clone = s->m->volumes[i];
        }
    for (size_t i = 0; i < s->m->n_snapshots; i++)
        if (s->m->snapshots[i]->parent == sn->layer) {
            *child = s->m->snapshots[i];
            if (s->m->snapshots[i]->volume_id != v->id)
                *clone = cmap_volume(s->m, s->m->snapshots[i]->volume_id);
            n++;
        }
    return n;
}

/* The clone (a volume other than v) that reads through a layer of v, or NULL. */
static Cairn__Volume *clone_of(struct mdm_state *s, const Cairn__Volume *v)
{
    for (size_t i = 0; i < s->m->n_snapshots; i++) {
        if (s->m->snapshots[i]->volume_id != v->id)
            continue;
        Cairn__Snapshot *child;
        Cairn__Volume *clone;
        children(s, v, s->m->snapshots[i], &child, &clone);
        if (clone)
            return clone;
    }
    return NULL;
}

int state_snapshots_remove(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                           size_t errlen)
{
    Cairn__Volume *v;
    Cairn__Snapshot *sn = state_req_snapshot(s, req->volume, &v, err, errlen);
    if (!sn)
        return -ENOENT;
    if (mapped(s, sn->id)) {
        state_errf(err, errlen, "snapshot '%s' is mapped; unmap it first", req->volume);
        return -EBUSY;
    }
    Cairn__Snapshot *child;
    Cairn__Volume *clone;
    size_t nc = children(s, v, sn, &child, &clone);
    uint64_t chain[CMAP_CHAIN_MAX];
    if (clone) {
        state_errf(err, errlen,
                   "volume '%s' is a clone of snapshot '%s': flatten it first ('cairn volume "
                   "flatten %s'), or remove it",
                   clone->name, req->volume, clone->name);
        return -EBUSY;
    }
    if (nc > 1) {
        state_errf(err, errlen,
                   "snapshot '%s' is the base of a revert and of newer snapshots; remove the "
                   "newer snapshots taken before the revert first",
                   req->volume);
        return -EBUSY;
    }
    if (cmap_chain(s->m, v, cmap_head(v), chain, CMAP_CHAIN_MAX) >= CMAP_CHAIN_MAX) {
        state_errf(err, errlen,
                   "volume '%s' has too many removed snapshots still being merged; try again "
                   "when they are done",
                   v->name);
        return -EBUSY;
    }
    size_t i;
    for (i = 0; s->m->snapshots[i] != sn; i++)
        ;
    uint64_t layer = sn->layer, parent = sn->parent;
    if (nc == 0) {
        /* nothing reads through it: its data goes with it */
        removed_append(s, layer);
        for (size_t k = 0; k < s->m->n_merges;) {
            if (s->m->merges[k]->into == layer) {
                removed_append(s, s->m->merges[k]->from);
                merge_drop(s, k);
            } else {
                k++;
            }
        }
        snapshot_drop(s, i);
        return 0;
    }
    uint64_t into = child ? child->layer : cmap_head(v);
    if (child)
        child->parent = parent;
    else
        v->head_parent = parent;
    Cairn__LayerMerge *mg = malloc(sizeof(*mg));
    if (!mg)
        abort();
    cairn__layer_merge__init(mg);
    mg->from = layer;
    mg->into = into;
    mg->volume_id = v->id;
    mg->version = s->m->version + 1; /* the engine's bump after this apply */
    if (!PB_APPEND(s->m->merges, s->m->n_merges, mg))
        abort();
    snapshot_drop(s, i);
    return 0;
}

int state_snapshots_layer_merged(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                                 size_t errlen)
{
    size_t k;
    for (k = 0; k < s->m->n_merges && s->m->merges[k]->from != req->base_version; k++)
        ;
    if (k == s->m->n_merges) {
        state_errf(err, errlen, "no layer %llu is being merged",
                   (unsigned long long)req->base_version);
        return -ENOENT;
    }
    /* a layer merged into this one first: its data may come here yet */
    for (size_t i = 0; i < s->m->n_merges; i++)
        if (s->m->merges[i]->into == req->base_version) {
            state_errf(err, errlen, "layer %llu still takes a merge",
                       (unsigned long long)req->base_version);
            return -EBUSY;
        }
    merge_drop(s, k);
    return 0;
}

/* Drop layer (a volume's old head) with the merges into it. */
static void layer_forget(struct mdm_state *s, uint64_t layer)
{
    removed_append(s, layer);
    for (size_t k = 0; k < s->m->n_merges;) {
        if (s->m->merges[k]->into == layer) {
            uint64_t from = s->m->merges[k]->from;
            merge_drop(s, k);
            layer_forget(s, from);
            k = 0;
        } else {
            k++;
        }
    }
}

int state_volumes_revert(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen)
{
    Cairn__Volume *v = state_req_volume(s, req->volume, err, errlen);
    if (!v)
        return -ENOENT;
    Cairn__Snapshot *sn = cmap_snapshot_by_name(s->m, v->id, req->name);
    if (!sn) {
        state_errf(err, errlen, "volume '%s' has no snapshot named '%s'", v->name, req->name);
        return -ENOENT;
    }
    for (size_t j = 0; j < s->m->n_mappings; j++) {
        const Cairn__Mapping *mp = s->m->mappings[j];
        if (mp->volume_id == v->id && !mp->read_only) {
            const Cairn__Sdc *c = mdm_sdc_by_id(s, mp->sdc_id);
            state_errf(err, errlen,
                       "volume '%s' is mapped read-write to SDC '%s': unmap it (or map it "
                       "read-only) before reverting it",
                       v->name, c ? c->name : "?");
            return -EBUSY;
        }
    }
    if (v->flattening) {
        state_errf(err, errlen, "volume '%s' is being flattened: revert it once that is done",
                   v->name);
        return -EBUSY;
    }
    uint64_t old = cmap_head(v);
    v->head_layer = s->m->next_id++;
    v->head_parent = sn->layer;
    layer_forget(s, old);
    return 0;
}

int state_volumes_clone(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                        size_t errlen)
{
    Cairn__Volume *src;
    Cairn__Snapshot *sn = state_req_snapshot(s, req->volume, &src, err, errlen);
    if (!sn)
        return -ENOENT;
    Cairn__Pool *p = mdm_pool_by_id(s, src->pool_id);
    uint64_t chain[CMAP_CHAIN_MAX];
    if (cmap_chain(s->m, src, sn->layer, chain, CMAP_CHAIN_MAX) >= CMAP_CHAIN_MAX - 1) {
        state_errf(err, errlen, "snapshot '%s' has too many layers under it to be cloned",
                   req->volume);
        return -ENOSPC;
    }
    uint64_t placement = cmap_placement(src), parent = sn->layer;
    /* a thin volume of the snapshot's size in the source's pool, under the
     * same checks as a new one */
    Cairn__MgmtRequest cr = CAIRN__MGMT_REQUEST__INIT;
    cr.op = CAIRN__MGMT_OP__OP_VOLUME_CREATE;
    cr.volume = req->name;
    cr.pool = p ? p->name : "";
    cr.size = sn->size;
    int r = state_volumes_create(s, &cr, err, errlen);
    if (r < 0)
        return r;
    Cairn__Volume *v = s->m->volumes[s->m->n_volumes - 1];
    v->placement = placement;
    v->head_parent = parent;
    return 0;
}

int state_volumes_flatten(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                          size_t errlen)
{
    Cairn__Volume *v = state_req_volume(s, req->volume, err, errlen);
    if (!v)
        return -ENOENT;
    if (!v->head_parent) {
        state_errf(err, errlen, "volume '%s' reads through no layer: nothing to flatten", v->name);
        return -EINVAL;
    }
    if (!v->placement || v->placement == v->id) {
        state_errf(err, errlen,
                   "volume '%s' is not a clone: its snapshots hold its older data (remove them "
                   "to free it)",
                   v->name);
        return -EINVAL;
    }
    v->flattening = 1;
    v->flatten_version = s->m->version + 1; /* the engine's bump after this apply */
    v->flatten_rate = req->size;
    return 0;
}

int state_volumes_flattened(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                            size_t errlen)
{
    Cairn__Volume *v = state_req_volume(s, req->volume, err, errlen);
    if (!v)
        return -ENOENT;
    if (!v->flattening || req->base_version != v->flatten_version) {
        state_errf(err, errlen, "volume '%s' is not being flattened (since map version %llu)",
                   v->name, (unsigned long long)req->base_version);
        return -EINVAL;
    }
    /* every copy's head holds what it read through: it stands alone */
    v->head_parent = 0;
    v->flattening = 0;
    v->flatten_version = 0;
    return 0;
}

Cairn__Volume *state_snapshots_clone_of(struct mdm_state *s, const Cairn__Volume *v)
{
    return clone_of(s, v);
}

void state_snapshots_volume_removed(struct mdm_state *s, uint64_t volume_id)
{
    for (size_t i = 0; i < s->m->n_snapshots;) {
        if (s->m->snapshots[i]->volume_id == volume_id) {
            removed_append(s, s->m->snapshots[i]->layer);
            snapshot_drop(s, i);
        } else {
            i++;
        }
    }
    for (size_t k = 0; k < s->m->n_merges;) {
        if (s->m->merges[k]->volume_id == volume_id) {
            removed_append(s, s->m->merges[k]->from);
            merge_drop(s, k);
        } else {
            k++;
        }
    }
}

int state_snapshots_mapped(const struct mdm_state *s, uint64_t volume_id)
{
    for (size_t i = 0; i < s->m->n_snapshots; i++)
        if (s->m->snapshots[i]->volume_id == volume_id && mapped(s, s->m->snapshots[i]->id))
            return 1;
    return 0;
}
