/* The MDM's replicated state machine.
 *
 * The state is a Cairn__ClusterMap held in memory with the system allocator
 * (as protobuf-c's default allocator does), so it packs into a snapshot and
 * into the maps served to SDSs and SDCs without conversion. Every mutation
 * goes through mdm_state_apply(), which must be deterministic: the same
 * sequence of requests gives the same state on every MDM.
 */
#ifndef CAIRN_MDM_STATE_H
#define CAIRN_MDM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"

#define MDM_DEFAULT_COPIES 2
#define MDM_DEFAULT_EXTENT (1u << 20)
#define MDM_DEFAULT_PGS 1024
#define MDM_DEFAULT_OVERCOMMIT 300
#define MDM_NAME_MAX 64

struct mdm_state {
    Cairn__ClusterMap *m; /* owned; never NULL after init */
};

int mdm_state_init(struct mdm_state *s, const char *cluster_id);
void mdm_state_free(struct mdm_state *s);

/* Apply one request (a committed Raft entry). Returns 0 or -errno; on error
 * the state is unchanged and err holds a message for the operator.
 * Every pointer into the state (from the lookups below) is invalid after an
 * apply or a restore, successful or not: look objects up again. */
int mdm_state_apply(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen);

/* The name of an operation for logs ("SDS_ADD"), or NULL if the state
 * machine does not apply op (mdm_state_apply refuses it). Static string. */
const char *mdm_state_op_name(int op);

/* Snapshot: packed ClusterMap in a malloc'd buffer (caller frees). */
int mdm_state_pack(const struct mdm_state *s, uint8_t **buf, size_t *len);
/* Replace the state by a packed snapshot. 0 or -EINVAL (state unchanged). */
int mdm_state_restore(struct mdm_state *s, const uint8_t *buf, size_t len);

/* ---- Raft's entries and snapshots (mdm_fsm.c) ----
 *
 * Both are framed [u64 length][protobuf][zero padding]: a MgmtRequest for an
 * entry, a ClusterMap for a snapshot. These unwrap and apply them, so the
 * MDM's FSM callbacks (raft_fsm.c) and the fuzz target run the same code. */

/* What a committed entry was, for the MDM's counters. */
struct mdm_fsm_entry {
    bool corrupt; /* it did not unframe or unpack: nothing was applied */
    int op;       /* otherwise the request's op (any value the peer wrote) */
};

/* Apply the framed entry buf[0..len). Returns mdm_state_apply's result (0
 * or -errno, err saying why), or -EINVAL for a corrupt entry; logs either. */
int mdm_fsm_apply(struct mdm_state *s, const uint8_t *buf, size_t len, struct mdm_fsm_entry *e,
                  char *err, size_t errlen);
/* Replace the state by the framed snapshot buf[0..len). 0 or -EINVAL
 * (state unchanged). */
int mdm_fsm_restore(struct mdm_state *s, const uint8_t *buf, size_t len);

Cairn__Sds *mdm_sds_by_name(const struct mdm_state *s, const char *name);
Cairn__Sds *mdm_sds_by_id(const struct mdm_state *s, uint32_t id);
Cairn__Pool *mdm_pool_by_name(const struct mdm_state *s, const char *name);
Cairn__Pool *mdm_pool_by_id(const struct mdm_state *s, uint32_t id);
Cairn__Volume *mdm_volume_by_name(const struct mdm_state *s, const char *name);
Cairn__Sdc *mdm_sdc_by_guid(const struct mdm_state *s, const char *guid);
Cairn__Sdc *mdm_sdc_by_name(const struct mdm_state *s, const char *name);
Cairn__Device *mdm_device_by_id(const struct mdm_state *s, uint32_t id);
Cairn__FaultSet *mdm_fault_set_by_name(const struct mdm_state *s, const char *name);

#endif
