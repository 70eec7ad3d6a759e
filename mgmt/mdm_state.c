/* The apply engine of the MDM's state machine: the table of operations,
 * what runs around every operation (undo copy, rebalance, map version,
 * demotions), snapshots, lookups, and the helpers every operation uses.
 * The operations themselves live in the files state_internal.h lists. */
#include "mdm_state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "log.h"
#include "state_internal.h"
#include "util.h"

/* ---- the table of operations ----
 *
 * One entry per MgmtOp the state machine applies, indexed by its value.
 * Only the operations that may fail after they started changing the state
 * get an undo copy: every other operation checks everything first, and
 * copying the whole state per operation would make a busy rebuild (one
 * operation per PG) stall the MDM. OP_NONE and OP_STATUS have no entry:
 * the MDM answers a status itself and never proposes it. */
static const struct state_op ops[] = {
    [CAIRN__MGMT_OP__OP_POOL_CREATE] = {"POOL_CREATE", state_pools_create, .undo = 1},
    [CAIRN__MGMT_OP__OP_POOL_SET] = {"POOL_SET", state_pools_set},
    [CAIRN__MGMT_OP__OP_SDS_ADD] = {"SDS_ADD", state_sds_add, .undo = 1, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_DEVICE_ADD] = {"DEVICE_ADD", state_sds_device_add, .undo = 1,
                                       .rebalance = 1},
    [CAIRN__MGMT_OP__OP_VOLUME_CREATE] = {"VOLUME_CREATE", state_volumes_create, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_VOLUME_GROW] = {"VOLUME_GROW", state_volumes_grow},
    [CAIRN__MGMT_OP__OP_VOLUME_REMOVE] = {"VOLUME_REMOVE", state_volumes_remove},
    [CAIRN__MGMT_OP__OP_SDC_REGISTER] = {"SDC_REGISTER", state_sdcs_register},
    [CAIRN__MGMT_OP__OP_MAP] = {"MAP", state_volumes_map},
    [CAIRN__MGMT_OP__OP_UNMAP] = {"UNMAP", state_volumes_unmap},
    [CAIRN__MGMT_OP__OP_SDS_REMOVE] = {"SDS_REMOVE", drain_sds_remove, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_SDS_DOWN] = {"SDS_DOWN", pg_membership_sds_down, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_SDS_UP] = {"SDS_UP", pg_membership_sds_up, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_PG_REBUILT] = {"PG_REBUILT", pg_membership_pg_rebuilt, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_DEVICE_FAIL] = {"DEVICE_FAIL", pg_membership_device_fail, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_MAINTENANCE_ENTER] = {"MAINTENANCE_ENTER", pg_membership_maintenance_enter},
    [CAIRN__MGMT_OP__OP_MAINTENANCE_EXIT] = {"MAINTENANCE_EXIT", pg_membership_maintenance_exit,
                                             .rebalance = 1},
    [CAIRN__MGMT_OP__OP_GRACE_EXPIRED] = {"GRACE_EXPIRED", pg_membership_grace_expired,
                                          .rebalance = 1},
    [CAIRN__MGMT_OP__OP_FAULT_SET_ADD] = {"FAULT_SET_ADD", state_fault_sets_add},
    [CAIRN__MGMT_OP__OP_FAULT_SET_REMOVE] = {"FAULT_SET_REMOVE", state_fault_sets_remove},
    [CAIRN__MGMT_OP__OP_DEVICE_REMOVE] = {"DEVICE_REMOVE", drain_device_remove, .rebalance = 1},
    [CAIRN__MGMT_OP__OP_SDC_APPROVE] = {"SDC_APPROVE", state_sdcs_approve},
    [CAIRN__MGMT_OP__OP_CLUSTER_SET] = {"CLUSTER_SET", state_cluster_set},
    [CAIRN__MGMT_OP__OP_CLUSTER_ID] = {"CLUSTER_ID", state_cluster_id},
    [CAIRN__MGMT_OP__OP_WRITER_SET] = {"WRITER_SET", state_volumes_writer_set},
    [CAIRN__MGMT_OP__OP_SNAPSHOT_CREATE] = {"SNAPSHOT_CREATE", state_snapshots_create},
    [CAIRN__MGMT_OP__OP_SNAPSHOT_ABORT] = {"SNAPSHOT_ABORT", state_snapshots_abort},
    [CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE] = {"SNAPSHOT_REMOVE", state_snapshots_remove},
    [CAIRN__MGMT_OP__OP_VOLUME_REVERT] = {"VOLUME_REVERT", state_volumes_revert},
    [CAIRN__MGMT_OP__OP_LAYER_MERGED] = {"LAYER_MERGED", state_snapshots_layer_merged},
    [CAIRN__MGMT_OP__OP_VOLUME_CLONE] = {"VOLUME_CLONE", state_volumes_clone},
    [CAIRN__MGMT_OP__OP_VOLUME_FLATTEN] = {"VOLUME_FLATTEN", state_volumes_flatten},
    [CAIRN__MGMT_OP__OP_VOLUME_FLATTENED] = {"VOLUME_FLATTENED", state_volumes_flattened},
};

const struct state_op *state_op_find(int op)
{
    if (op < 0 || (size_t)op >= ARRAY_SIZE(ops) || !ops[op].apply)
        return NULL;
    return &ops[op];
}

const char *mdm_state_op_name(int op)
{
    const struct state_op *o = state_op_find(op);
    return o ? o->name : NULL;
}

/* ---- the engine ---- */

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

/* Every applied operation, in this order: keep an undo copy if its entry
 * asks for one; apply; on a refusal restore the copy; on success rebalance
 * (and forget what is drained) if its entry asks for it, bump the map
 * version, and record demoted primaries at the new version. */
int mdm_state_apply(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    err[0] = 0;
    const struct state_op *op = state_op_find(req->op);
    if (!op) {
        state_errf(err, errlen, "unknown operation %d", req->op);
        return -EINVAL;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int r;
    if (op->undo && (r = mdm_state_pack(s, &buf, &len)) < 0)
        return r;
    size_t nprim;
    uint32_t *prim = primaries(s, &nprim);
    r = op->apply(s, req, err, errlen);
    if (r < 0 && buf)
        mdm_state_restore(s, buf, len);
    if (r >= 0) {
        if (op->rebalance) {
            rebalance_all(s);
            drain_forget_removed(s);
        }
        s->m->version++;
        note_demotions(s, prim, nprim);
    }
    free(prim);
    free(buf);
    return r;
}

/* ---- life cycle and snapshots ---- */

int mdm_state_init(struct mdm_state *s, const char *cluster_id)
{
    s->reqs = (struct mdm_reqids){0};
    s->m = malloc(sizeof(*s->m));
    if (!s->m)
        return -ENOMEM;
    cairn__cluster_map__init(s->m);
    s->m->cluster_id = strdup(cluster_id);
    s->m->next_id = 1;
    return s->m->cluster_id ? 0 : -ENOMEM;
}

static void free_map(struct mdm_state *s)
{
    if (s->m)
        protobuf_c_message_free_unpacked(&s->m->base, NULL);
    s->m = NULL;
}

void mdm_state_free(struct mdm_state *s)
{
    free_map(s);
    mdm_reqids_free(&s->reqs);
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

/* What the operations rely on in a state they did not build: the map's own
 * rules, and every reference between objects resolves. */
static int restore_check(const Cairn__ClusterMap *m)
{
    char err[256];
    if (cmap_check(m, err, sizeof(err)) < 0) {
        log_error("snapshot refused: %s", err);
        return -EINVAL;
    }
    for (size_t i = 0; i < m->n_pools; i++)
        if (m->pools[i]->copies < 2 || m->pools[i]->copies > 3 ||
            m->pools[i]->pg_count > CMAP_PGS_MAX) {
            log_error("snapshot refused: pool %u has %u copies and %u PGs", m->pools[i]->id,
                      m->pools[i]->copies, m->pools[i]->pg_count);
            return -EINVAL;
        }
    for (size_t i = 0; i < m->n_devices; i++)
        if (!cmap_sds(m, m->devices[i]->sds_id) || !cmap_pool(m, m->devices[i]->pool_id)) {
            log_error("snapshot refused: device %u names an unknown SDS or pool",
                      m->devices[i]->id);
            return -EINVAL;
        }
    for (size_t i = 0; i < m->n_volumes; i++)
        if (!cmap_pool(m, m->volumes[i]->pool_id)) {
            log_error("snapshot refused: volume %llu names an unknown pool",
                      (unsigned long long)m->volumes[i]->id);
            return -EINVAL;
        }
    for (size_t i = 0; i < m->n_pools; i++)
        for (size_t g = 0; g < m->pools[i]->n_pgs; g++) {
            const Cairn__Pg *pg = m->pools[i]->pgs[g];
            const uint32_t *lists[] = {pg->devices, pg->rebuilding, pg->departed, pg->catchup,
                                       pg->leaving};
            size_t ns[] = {pg->n_devices, pg->n_rebuilding, pg->n_departed, pg->n_catchup,
                           pg->n_leaving};
            for (int l = 0; l < 5; l++)
                for (size_t k = 0; k < ns[l]; k++) {
                    if (ns[l] > 64) { /* a PG has at most 3 copies */
                        log_error("snapshot refused: PG %u.%zu lists %zu devices", m->pools[i]->id,
                                  g, ns[l]);
                        return -EINVAL;
                    }
                    if (!cmap_device(m, lists[l][k])) {
                        log_error("snapshot refused: PG %u.%zu names unknown device %u",
                                  m->pools[i]->id, g, lists[l][k]);
                        return -EINVAL;
                    }
                    for (size_t j = 0; j < k; j++)
                        if (lists[l][j] == lists[l][k]) {
                            log_error("snapshot refused: PG %u.%zu names device %u twice",
                                      m->pools[i]->id, g, lists[l][k]);
                            return -EINVAL;
                        }
                }
        }
    return 0;
}

int mdm_state_restore(struct mdm_state *s, const uint8_t *buf, size_t len)
{
    Cairn__ClusterMap *m = cairn__cluster_map__unpack(NULL, len, buf);
    if (!m)
        return -EINVAL;
    if (restore_check(m) < 0) {
        cairn__cluster_map__free_unpacked(m, NULL);
        return -EINVAL;
    }
    free_map(s);
    s->m = m;
    return 0;
}

/* ---- lookups ---- */

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
Cairn__Sdc *mdm_sdc_by_id(const struct mdm_state *s, uint32_t id)
{
    for (size_t i = 0; i < s->m->n_sdcs; i++)
        if (s->m->sdcs[i]->id == id)
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

/* ---- helpers of the operations ---- */

void state_errf(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

char *state_xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

int state_valid_name(const char *n)
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

int state_sds_up(const struct mdm_state *s, uint32_t sds_id)
{
    Cairn__Sds *d = mdm_sds_by_id(s, sds_id);
    return d && d->state == CAIRN__SDS_STATE__SDS_UP;
}

int state_pool_has_volumes(const struct mdm_state *s, const Cairn__Pool *p)
{
    for (size_t i = 0; i < s->m->n_volumes; i++)
        if (s->m->volumes[i]->pool_id == p->id)
            return 1;
    return 0;
}

Cairn__Sds *state_req_sds(struct mdm_state *s, const char *name, char *err, size_t errlen)
{
    Cairn__Sds *d = mdm_sds_by_name(s, name);
    if (!d)
        state_errf(err, errlen, "no SDS named '%s'", name);
    return d;
}

Cairn__Volume *state_req_volume(struct mdm_state *s, const char *name, char *err, size_t errlen)
{
    Cairn__Volume *v = mdm_volume_by_name(s, name);
    if (!v)
        state_errf(err, errlen, "no volume named '%s'", name);
    return v;
}

Cairn__Pool *state_req_pool(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                            size_t errlen)
{
    const char *name = req->pool[0] ? req->pool : "default";
    Cairn__Pool *p = mdm_pool_by_name(s, name);
    if (!p)
        state_errf(err, errlen, "no storage pool named '%s' (create it with 'cairn pool create')",
                   name);
    return p;
}
