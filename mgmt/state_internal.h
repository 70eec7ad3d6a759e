/* The MDM state machine's insides, shared by its files; the daemon and the
 * tests of the public API use mdm_state.h alone.
 *
 * The state machine is a table of operations (mdm_state.c): each operation
 * the MDM proposes has one apply function, in the file of its concern. This
 * header has a section per file, so it doubles as an index:
 *
 *   mdm_state.c         the apply engine and its table of operations;
 *                       snapshots; lookups; helpers every operation uses
 *   state_pools.c       storage pools: create, change
 *   state_sds.c         SDSs and their devices: add
 *   state_volumes.c     volumes and their mappings: create, grow, remove,
 *                       map, unmap
 *   state_sdcs.c        SDCs: register (and rename), approve; cluster settings
 *   state_fault_sets.c  fault sets: declare, remove
 *   pg_membership.c     which copies each PG has: copies lost or back,
 *                       rebuild targets, maintenance, rejoin after an
 *                       absence, a rebuilt copy joining, grace expiry
 *   rebalance.c         initial placement of an empty pool; moving copies
 *                       of a pool that holds data towards balance
 *   drain.c             removing SDSs and devices: checks, drain, forced
 *                       removal, forgetting what is drained
 *
 * Rules every apply function keeps (the engine relies on them):
 *  - deterministic: only the state and the request decide the outcome;
 *  - on a refusal, err holds a message for the operator and the return is
 *    -errno; an operation whose table entry has no undo copy must check
 *    everything before it changes anything;
 *  - pointers into the state are not kept across calls that add or remove
 *    objects (arrays are reallocated).
 */
#ifndef CAIRN_STATE_INTERNAL_H
#define CAIRN_STATE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mdm_state.h"

/* ---- mdm_state.c: the engine, the table, helpers ---- */

/* Apply one request to s. 0 or -errno (with err filled). */
typedef int state_apply_fn(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                           size_t errlen);

/* One operation of the state machine. */
struct state_op {
    const char *name;      /* for logs: the MgmtOp's name without OP_ */
    state_apply_fn *apply; /* never NULL in a table entry */
    /* It may fail after it began changing the state: the engine keeps a
     * packed copy of the state to restore on failure. */
    unsigned undo : 1;
    /* Copies may have to move after it (a device came or went, a copy
     * completed, a volume appeared in an empty pool): the engine runs the
     * rebalance of every pool, then forgets what is fully drained. */
    unsigned rebalance : 1;
};

/* The table entry of op, or NULL if the state machine does not apply op
 * (OP_NONE, OP_STATUS, values this build does not know). */
const struct state_op *state_op_find(int op);

/* Format a message for the operator into err. */
void state_errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* strdup that aborts when memory runs out: an apply cannot stop half-way. */
char *state_xstrdup(const char *s);

/* 1 if n is a valid object name: 1 to MDM_NAME_MAX of [A-Za-z0-9._-]. */
int state_valid_name(const char *n);

/* 1 if the SDS exists and is up. */
int state_sds_up(const struct mdm_state *s, uint32_t sds_id);

/* 1 if any volume lives in pool p. */
int state_pool_has_volumes(const struct mdm_state *s, const Cairn__Pool *p);

/* The SDS, volume or pool a request names, or NULL with err set. The pool
 * is req->pool, or "default" when the request names none. */
Cairn__Sds *state_req_sds(struct mdm_state *s, const char *name, char *err, size_t errlen);
Cairn__Volume *state_req_volume(struct mdm_state *s, const char *name, char *err, size_t errlen);
Cairn__Pool *state_req_pool(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                            size_t errlen);

/* Append one element to a protobuf-c repeated field of pointers; 1 on
 * success, 0 (field unchanged) when memory runs out. */
#define PB_APPEND(arr, n, elem)                                                                    \
    ({                                                                                             \
        void *_na = realloc((arr), sizeof(*(arr)) * ((n) + 1));                                    \
        int _ok = _na != NULL;                                                                     \
        if (_ok) {                                                                                 \
            (arr) = _na;                                                                           \
            (arr)[(n)++] = (elem);                                                                 \
        }                                                                                          \
        _ok;                                                                                       \
    })

/* Lists of device ids in a PG (devices, rebuilding, departed, ...). */
static inline int state_u32_has(const uint32_t *arr, size_t n, uint32_t v)
{
    for (size_t i = 0; i < n; i++)
        if (arr[i] == v)
            return 1;
    return 0;
}

/* Remove the first v, keeping the order (copy 0 is the primary). 1 if found. */
static inline int state_u32_remove(uint32_t *arr, size_t *n, uint32_t v)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i] == v) {
            memmove(&arr[i], &arr[i + 1], (*n - i - 1) * sizeof(*arr));
            (*n)--;
            return 1;
        }
    return 0;
}

/* Append v; aborts when memory runs out. */
static inline void state_u32_append(uint32_t **arr, size_t *n, uint32_t v)
{
    uint32_t *na = realloc(*arr, (*n + 1) * sizeof(uint32_t));
    if (!na)
        abort();
    *arr = na;
    na[(*n)++] = v;
}

/* ---- state_pools.c: OP_POOL_CREATE, OP_POOL_SET ---- */

/* A new pool, placed at once if devices can hold it (undo: the placement
 * may fail for memory after the pool was appended). */
state_apply_fn state_pools_create;
/* Change a pool's settings (today the overcommit limit). */
state_apply_fn state_pools_set;

/* ---- state_sds.c: OP_SDS_ADD, OP_DEVICE_ADD ---- */

/* A new SDS with its devices (capacities probed by the leader beforehand),
 * in a declared fault set or its own. undo: the SDS is appended before its
 * devices are checked. */
state_apply_fn state_sds_add;
/* More devices for an existing SDS. undo: placement may fail late. */
state_apply_fn state_sds_device_add;

/* ---- state_volumes.c: volumes and mappings ---- */

/* A volume in a pool that has PGs, within its thick reservation and its
 * overcommit limit. */
state_apply_fn state_volumes_create;
/* A larger size, under the same limits. */
state_apply_fn state_volumes_grow;
/* Forget an unmapped volume; its id goes to removed_volumes so that SDSs
 * drop its extents. */
state_apply_fn state_volumes_remove;
/* Map a volume to an SDC (or change a mapping's read-only flag and access
 * mode); refused (-EPERM) while the SDC is pending approval, and (-EINVAL)
 * when the volume's other read-write mappings have another access mode.
 * takeover makes the SDC the volume's writer under a new writer_gen;
 * making the writer's mapping read-only leaves the volume without one
 * (a new writer_gen too). */
state_apply_fn state_volumes_map;
/* Remove a mapping (the writer's: the volume has none, a new writer_gen). */
state_apply_fn state_volumes_unmap;
/* OP_WRITER_SET: req->sdc becomes the writer of req->volume under a new
 * writer_gen; -EACCES unless its mapping is single-writer read-write. */
state_apply_fn state_volumes_writer_set;
/* "single-writer" or "shared". */
const char *state_access_name(Cairn__MappingAccess a);

/* ---- state_snapshots.c: snapshots (docs/snapshots.md) ---- */

/* OP_SNAPSHOT_CREATE: req->name on each of req->volumes (a group's when
 * req->group is set), only at map version req->base_version (-EAGAIN
 * otherwise): each volume's head layer becomes the snapshot's, and the
 * volume writes to a new empty layer over it. */
state_apply_fn state_snapshots_create;
/* OP_SNAPSHOT_ABORT: nothing but a new map version (lifts the pause). */
state_apply_fn state_snapshots_abort;
/* OP_SNAPSHOT_REMOVE (req->volume is VOL@SNAP): the snapshot goes; its
 * layer is merged into the layer above it (a merge record), or dropped if
 * none reads through it. Refused while it is mapped. */
state_apply_fn state_snapshots_remove;
/* OP_VOLUME_REVERT: req->volume gets a new empty head over the layer of
 * its snapshot req->name; the old head is dropped. Refused while the
 * volume is mapped read-write. */
state_apply_fn state_volumes_revert;
/* OP_LAYER_MERGED (the leader's): the merge of layer req->base_version is
 * done everywhere; its record goes (-EBUSY while a merge into it remains). */
state_apply_fn state_snapshots_layer_merged;
/* OP_VOLUME_CLONE: a thin volume req->name of the snapshot req->volume
 * (VOL@SNAP), in its pool, placed as its volume, reading through its layer. */
state_apply_fn state_volumes_clone;
/* OP_VOLUME_FLATTEN: the SDSs copy what the clone req->volume reads through
 * into its head (req->size: bytes per second per SDS, 0 default). */
state_apply_fn state_volumes_flatten;
/* OP_VOLUME_FLATTENED (the leader's, base_version = flatten_version): done
 * everywhere; the clone reads through nothing any more. */
state_apply_fn state_volumes_flattened;
/* A volume other than v that reads through one of v's snapshots, or NULL. */
Cairn__Volume *state_snapshots_clone_of(struct mdm_state *s, const Cairn__Volume *v);
/* The snapshot "VOL@SNAP" names (and its volume in *vp), or NULL, err set. */
Cairn__Snapshot *state_req_snapshot(struct mdm_state *s, const char *spec, Cairn__Volume **vp,
                                    char *err, size_t errlen);
/* A volume is being removed: its snapshots and merges go, their layers to
 * removed_volumes. */
void state_snapshots_volume_removed(struct mdm_state *s, uint64_t volume_id);
/* 1 if a snapshot of the volume is mapped. */
int state_snapshots_mapped(const struct mdm_state *s, uint64_t volume_id);

/* ---- state_sdcs.c: OP_SDC_REGISTER, OP_SDC_APPROVE, OP_CLUSTER_SET ---- */

/* Register an SDC by guid, or rename a registered one. Idempotent. A new
 * SDC is pending approval unless restricted SDC mode is off. */
state_apply_fn state_sdcs_register;
/* Approve the SDC named req->sdc (idempotent); -ENOENT if there is none. */
state_apply_fn state_sdcs_approve;
/* Cluster settings: req->restricted_sdc "on" or "off" (-EINVAL otherwise,
 * or if no setting is given). Turning it off approves no SDC already
 * pending: each is approved by name. */
state_apply_fn state_cluster_set;
state_apply_fn state_cluster_id;

/* ---- state_fault_sets.c: OP_FAULT_SET_ADD, OP_FAULT_SET_REMOVE ---- */

state_apply_fn state_fault_sets_add;
/* Refused while an SDS is declared in the fault set. */
state_apply_fn state_fault_sets_remove;

/* ---- pg_membership.c: copies lost, back, rebuilt ---- */

/* Copies were lost (an SDS went down: gone_sds; a device failed: gone_dev)
 * or may be placeable again (both 0): drop lost copies from every PG that
 * keeps another in-sync copy, promote the next copy where the primary was
 * lost, choose rebuild targets; bump the epoch of every PG that changed. */
void pg_membership_changed(struct mdm_state *s, uint32_t gone_sds, uint32_t gone_dev);

/* OP_SDS_DOWN, OP_SDS_UP (the leader's failure detector): no-ops if the SDS
 * is in that state already. Up: its departed copies rejoin as catch-ups. */
state_apply_fn pg_membership_sds_down;
state_apply_fn pg_membership_sds_up;
/* OP_GRACE_EXPIRED: a down SDS's departed copies are given up. */
state_apply_fn pg_membership_grace_expired;
/* OP_MAINTENANCE_ENTER: an up SDS's copies step aside without a rebuild;
 * refused (-EBUSY) while it holds some PG's only live copy. */
state_apply_fn pg_membership_maintenance_enter;
/* OP_MAINTENANCE_EXIT: its copies rejoin as catch-ups. */
state_apply_fn pg_membership_maintenance_exit;
/* OP_DEVICE_FAIL: an SDS reported a device error; its copies are lost. */
state_apply_fn pg_membership_device_fail;
/* OP_PG_REBUILT: a rebuilding copy is complete (-ESTALE if the PG changed
 * since the primary started it). */
state_apply_fn pg_membership_pg_rebuilt;

/* ---- rebalance.c: placement and balance ---- */

/* Compute the PG table of a pool that holds no data yet (a pool with
 * volumes keeps its table). A pool whose devices span fewer fault sets than
 * its copies gets no PGs until they do. 0 or -ENOMEM. */
int rebalance_place(struct mdm_state *s, Cairn__Pool *p);

/* Every pool: recompute an empty pool's table; in a pool with data, set
 * copies moving from overfull (or removed) devices to underfull ones, one
 * rebuilding copy per move. */
void rebalance_all(struct mdm_state *s);

/* ---- drain.c: OP_SDS_REMOVE, OP_DEVICE_REMOVE ---- */

/* Remove an SDS (all its devices) or one device (req->paths[0]): refused if
 * a pool would keep too few fault sets or too little room for its thick
 * volumes; then a drain (the devices lose their weight and rebalance moves
 * their copies), or with req->force their copies go at once. */
state_apply_fn drain_sds_remove;
state_apply_fn drain_device_remove;

/* Forget devices being removed that no PG refers to any more, then SDSs
 * being removed that have no device left. */
void drain_forget_removed(struct mdm_state *s);

#endif
