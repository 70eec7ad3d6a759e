/* Volumes and their mappings in the state machine: create, grow and remove
 * a volume (within the pool's usable capacity, thick reservations and
 * overcommit limit, from capacity.c); map a volume to an SDC (its access
 * mode, a takeover), unmap it; make an SDC a volume's writer (its claim,
 * docs/attach.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "cmap.h"
#include "state_internal.h"
#include "util.h"

int state_volumes_create(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen)
{
    if (!state_valid_name(req->volume)) {
        state_errf(err, errlen, "invalid volume name '%s' (1-%d of [A-Za-z0-9._-])", req->volume,
                   MDM_NAME_MAX);
        return -EINVAL;
    }
    if (mdm_volume_by_name(s, req->volume)) {
        state_errf(err, errlen, "a volume named '%s' already exists", req->volume);
        return -EEXIST;
    }
    Cairn__Pool *p = state_req_pool(s, req, err, errlen);
    if (!p)
        return -ENOENT;
    if (req->size == 0 || req->size % 4096) {
        state_errf(err, errlen, "volume size must be a positive multiple of 4 KiB");
        return -EINVAL;
    }
    if (p->n_pgs == 0) {
        state_errf(err, errlen,
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
            state_errf(err, errlen,
                       "thick volume '%s' needs %s but pool '%s' has only %s free (after %u "
                       "copies and existing thick volumes)",
                       req->volume, a, p->name, b, p->copies);
            return -ENOSPC;
        }
    }
    uint64_t limit = (uint64_t)((unsigned __int128)usable * p->overcommit_pct / 100);
    uint64_t prov = capacity_pool_provisioned(s->m, p, 0);
    if (prov + req->size > limit) {
        fmt_bytes(a, sizeof(a), prov + req->size);
        fmt_bytes(b, sizeof(b), limit);
        state_errf(err, errlen,
                   "volume '%s' would bring pool '%s' to %s provisioned, over its overcommit "
                   "limit of %s (%u%% of usable capacity)",
                   req->volume, p->name, a, b, p->overcommit_pct);
        return -ENOSPC;
    }
    Cairn__Volume *v = malloc(sizeof(*v));
    cairn__volume__init(v);
    v->id = s->m->next_id++;
    v->name = state_xstrdup(req->volume);
    v->pool_id = p->id;
    v->size = req->size;
    v->thick = req->thick;
    if (!PB_APPEND(s->m->volumes, s->m->n_volumes, v))
        abort();
    return 0;
}

int state_volumes_grow(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    Cairn__Volume *v = state_req_volume(s, req->volume, err, errlen);
    if (!v)
        return -ENOENT;
    if (req->size <= v->size || req->size % 4096) {
        state_errf(err, errlen,
                   "new size must be larger than the current size and a multiple of 4 KiB");
        return -EINVAL;
    }
    Cairn__Pool *p = mdm_pool_by_id(s, v->pool_id);
    uint64_t usable = capacity_pool_usable(s->m, p);
    uint64_t grow = req->size - v->size;
    if (v->thick && capacity_pool_provisioned(s->m, p, 1) + grow > usable) {
        state_errf(err, errlen, "pool '%s' has no room to grow thick volume '%s'", p->name,
                   v->name);
        return -ENOSPC;
    }
    if (capacity_pool_provisioned(s->m, p, 0) + grow >
        (uint64_t)((unsigned __int128)usable * p->overcommit_pct / 100)) {
        state_errf(err, errlen, "growing '%s' would exceed pool '%s' overcommit limit (%u%%)",
                   v->name, p->name, p->overcommit_pct);
        return -ENOSPC;
    }
    v->size = req->size;
    return 0;
}

int state_volumes_remove(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen)
{
    size_t i;
    for (i = 0; i < s->m->n_volumes; i++)
        if (!strcmp(s->m->volumes[i]->name, req->volume))
            break;
    if (i == s->m->n_volumes) {
        state_errf(err, errlen, "no volume named '%s'", req->volume);
        return -ENOENT;
    }
    Cairn__Volume *v = s->m->volumes[i];
    for (size_t j = 0; j < s->m->n_mappings; j++)
        if (s->m->mappings[j]->volume_id == v->id) {
            state_errf(err, errlen, "volume '%s' is still mapped; unmap it first", v->name);
            return -EBUSY;
        }
    Cairn__Volume *clone = state_snapshots_clone_of(s, v);
    if (clone) {
        state_errf(err, errlen,
                   "volume '%s' is a clone of a snapshot of '%s': flatten it first ('cairn volume "
                   "flatten %s'), or remove it",
                   clone->name, v->name, clone->name);
        return -EBUSY;
    }
    if (state_snapshots_mapped(s, v->id)) {
        state_errf(err, errlen, "a snapshot of volume '%s' is still mapped; unmap it first",
                   v->name);
        return -EBUSY;
    }
    /* removed_volumes lists store keys: its head layer and its snapshots' */
    uint64_t *nr = realloc(s->m->removed_volumes, sizeof(uint64_t) * (s->m->n_removed_volumes + 1));
    if (!nr)
        abort();
    s->m->removed_volumes = nr;
    nr[s->m->n_removed_volumes++] = cmap_head(v);
    state_snapshots_volume_removed(s, v->id);
    protobuf_c_message_free_unpacked(&v->base, NULL);
    memmove(&s->m->volumes[i], &s->m->volumes[i + 1],
            sizeof(*s->m->volumes) * (s->m->n_volumes - i - 1));
    s->m->n_volumes--;
    return 0;
}

/* The volume and SDC a MAP or UNMAP request names, and the index of their
 * mapping (n_mappings if there is none). 0, or -ENOENT with err set. */
static int find_mapping(struct mdm_state *s, const Cairn__MgmtRequest *req, Cairn__Volume **vp,
                        Cairn__Sdc **cp, size_t *jp, uint64_t *idp, char *err, size_t errlen)
{
    Cairn__Snapshot *sn = NULL;
    Cairn__Volume *v;
    if (strchr(req->volume, '@'))
        sn = state_req_snapshot(s, req->volume, &v, err, errlen);
    else
        v = state_req_volume(s, req->volume, err, errlen);
    if (!v || (strchr(req->volume, '@') && !sn))
        return -ENOENT;
    /* a snapshot's mapping names it by its id */
    uint64_t id = sn ? sn->id : v->id;
    Cairn__Sdc *c = mdm_sdc_by_name(s, req->sdc);
    if (!c) {
        state_errf(err, errlen, "no SDC named '%s' (an SDC registers when it starts)", req->sdc);
        return -ENOENT;
    }
    size_t j;
    for (j = 0; j < s->m->n_mappings; j++)
        if (s->m->mappings[j]->volume_id == id && s->m->mappings[j]->sdc_id == c->id)
            break;
    *vp = v;
    *cp = c;
    *jp = j;
    *idp = id;
    return 0;
}

/* The access mode a MAP request names. 0, or -EINVAL with err set. */
static int parse_access(const Cairn__MgmtRequest *req, Cairn__MappingAccess *a, char *err,
                        size_t errlen)
{
    if (!req->access[0] || !strcmp(req->access, "single-writer"))
        *a = CAIRN__MAPPING_ACCESS__ACCESS_SINGLE_WRITER;
    else if (!strcmp(req->access, "shared"))
        *a = CAIRN__MAPPING_ACCESS__ACCESS_SHARED;
    else {
        state_errf(err, errlen, "--access takes single-writer or shared, not '%.64s'", req->access);
        return -EINVAL;
    }
    return 0;
}

const char *state_access_name(Cairn__MappingAccess a)
{
    return a == CAIRN__MAPPING_ACCESS__ACCESS_SHARED ? "shared" : "single-writer";
}

/* v's writer sdc_id (0: none) from now on, under a new fence: whatever an
 * SDC was granted before is refused by the SDSs once they hold this map
 * (docs/attach.md). */
static void set_writer(Cairn__Volume *v, uint32_t sdc_id)
{
    v->writer_sdc = sdc_id;
    v->writer_gen++;
}

int state_volumes_map(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    Cairn__Volume *v;
    Cairn__Sdc *c;
    size_t j;
    uint64_t id;
    int r = find_mapping(s, req, &v, &c, &j, &id, err, errlen);
    if (r < 0)
        return r;
    if (c->pending) {
        state_errf(err, errlen,
                   "SDC '%s' is pending approval: approve it first with 'cairn sdc approve %s'",
                   c->name, c->name);
        return -EPERM;
    }
    Cairn__MappingAccess access;
    if ((r = parse_access(req, &access, err, errlen)) < 0)
        return r;
    int snap = id != v->id; /* a snapshot: mapped read-only, always */
    int read_only = req->read_only || snap;
    if (req->takeover && snap) {
        state_errf(err, errlen, "--takeover is for a volume: a snapshot is mapped read-only");
        return -EINVAL;
    }
    if (req->takeover && (read_only || access != CAIRN__MAPPING_ACCESS__ACCESS_SINGLE_WRITER)) {
        state_errf(err, errlen,
                   "--takeover is for a single-writer read-write mapping: a %s mapping has no "
                   "single writer to take over from",
                   req->read_only ? "read-only" : "shared");
        return -EINVAL;
    }
    /* one volume's read-write mappings share one mode: a single writer
     * among shared ones would be fenced by none of them */
    for (size_t k = 0; !read_only && k < s->m->n_mappings; k++) {
        const Cairn__Mapping *o = s->m->mappings[k];
        if (o->volume_id != v->id || o->sdc_id == c->id || o->read_only || o->access == access)
            continue;
        const Cairn__Sdc *oc = mdm_sdc_by_id(s, o->sdc_id);
        state_errf(err, errlen,
                   "volume '%s' is mapped %s to SDC '%s': every read-write mapping of a volume "
                   "has the same access mode (map it with --access %s, or unmap it there first)",
                   v->name, state_access_name(o->access), oc ? oc->name : "?",
                   state_access_name(o->access));
        return -EINVAL;
    }
    if (j == s->m->n_mappings) {
        Cairn__Mapping *mp = malloc(sizeof(*mp));
        if (!mp)
            abort();
        cairn__mapping__init(mp);
        mp->volume_id = id;
        mp->sdc_id = c->id;
        if (!PB_APPEND(s->m->mappings, s->m->n_mappings, mp))
            abort();
    }
    Cairn__Mapping *mp = s->m->mappings[j];
    mp->read_only = read_only;
    mp->access = read_only ? CAIRN__MAPPING_ACCESS__ACCESS_SINGLE_WRITER : access;
    if (req->takeover)
        set_writer(v, c->id);
    else if (read_only && !snap && v->writer_sdc == c->id)
        set_writer(v, 0); /* made read-only: its writer's connections are fenced too */
    return 0;
}

int state_volumes_writer_set(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                             size_t errlen)
{
    Cairn__Volume *v;
    Cairn__Sdc *c;
    size_t j;
    uint64_t id;
    int r = find_mapping(s, req, &v, &c, &j, &id, err, errlen);
    if (r < 0)
        return r;
    /* checked by the leader when it proposed this; the log may have
     * changed the mapping since */
    if (j == s->m->n_mappings || s->m->mappings[j]->read_only ||
        s->m->mappings[j]->access != CAIRN__MAPPING_ACCESS__ACCESS_SINGLE_WRITER || c->pending) {
        state_errf(err, errlen, "volume '%s' is not mapped single-writer read-write to SDC '%s'",
                   v->name, c->name);
        return -EACCES;
    }
    set_writer(v, c->id);
    return 0;
}

int state_volumes_unmap(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                        size_t errlen)
{
    Cairn__Volume *v;
    Cairn__Sdc *c;
    size_t j;
    uint64_t id;
    int r = find_mapping(s, req, &v, &c, &j, &id, err, errlen);
    if (r < 0)
        return r;
    if (j == s->m->n_mappings) {
        state_errf(err, errlen, "volume '%s' is not mapped to SDC '%s'", v->name, c->name);
        return -ENOENT;
    }
    if (id == v->id && v->writer_sdc == c->id)
        set_writer(v, 0); /* unmapped: its writer's connections are fenced */
    protobuf_c_message_free_unpacked(&s->m->mappings[j]->base, NULL);
    memmove(&s->m->mappings[j], &s->m->mappings[j + 1],
            sizeof(*s->m->mappings) * (s->m->n_mappings - j - 1));
    s->m->n_mappings--;
    return 0;
}
