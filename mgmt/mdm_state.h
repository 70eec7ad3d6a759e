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

/* Request ids (state_reqids.c): the outcome of the last MDM_REQ_IDS changes
 * applied with a non-zero MgmtRequest.request_id, so that a change sent
 * again (the CLI's resend after a failover) is applied once and answered
 * with its first outcome. Replicated like the map: in every snapshot. */
#define MDM_REQ_IDS 1024

struct mdm_req_outcome {
    uint64_t id;
    int op;     /* the MgmtOp applied */
    int status; /* 0 or -errno */
    char *err;  /* the refusal's message (malloc'd), NULL on success */
};

struct mdm_reqids {
    struct mdm_req_outcome *ring; /* MDM_REQ_IDS slots, NULL until the first */
    size_t n, head;               /* how many, and the oldest's slot */
};

struct mdm_state {
    Cairn__ClusterMap *m;   /* owned; never NULL after init */
    struct mdm_reqids reqs; /* not part of m: never served in a map */
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

/* The map packed (a ClusterMap) in a malloc'd buffer (caller frees). */
int mdm_state_pack(const struct mdm_state *s, uint8_t **buf, size_t *len);
/* Replace the map by a packed one. 0 or -EINVAL (state unchanged). The
 * request ids are left alone: a snapshot holds both (mdm_fsm_snapshot). */
int mdm_state_restore(struct mdm_state *s, const uint8_t *buf, size_t len);

/* ---- request ids (state_reqids.c) ---- */

/* mdm_state_apply, once per request id: a request whose non-zero id was
 * applied before is not applied again; it returns the recorded status and
 * err (and *repeat is set). A request without an id is applied as it comes.
 * One whose id was recorded for another op is refused (-EINVAL). */
int mdm_state_apply_once(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen, bool *repeat);
/* The recorded outcome of id, or NULL. Invalid after the next apply. */
const struct mdm_req_outcome *mdm_reqids_find(const struct mdm_state *s, uint64_t id);
/* The table packed as a RequestLog, oldest first (malloc'd; *len 0 and *buf
 * NULL when it is empty). */
int mdm_reqids_pack(const struct mdm_state *s, uint8_t **buf, size_t *len);
/* A table from a packed RequestLog (len 0: empty) into *t, the last
 * MDM_REQ_IDS of it. 0 or -EINVAL. */
int mdm_reqids_unpack(struct mdm_reqids *t, const uint8_t *buf, size_t len);
/* Replace the state's table by *t (taken; *t is emptied). */
void mdm_reqids_replace(struct mdm_state *s, struct mdm_reqids *t);
void mdm_reqids_free(struct mdm_reqids *t);

/* ---- Raft's entries and snapshots (mdm_fsm.c) ----
 *
 * Both are framed [u64 length][protobuf][zero padding to a multiple of 8]:
 * a MgmtRequest for an entry; a ClusterMap for a snapshot, followed by a
 * second frame holding the RequestLog when there are request ids to keep
 * (a snapshot written before request ids has none, and one without it
 * restores an empty table). These unwrap and apply them, so the MDM's FSM
 * callbacks (raft_fsm.c) and the fuzz target run the same code. */

/* What a committed entry was, for the MDM's counters. */
struct mdm_fsm_entry {
    bool corrupt;        /* it did not unframe or unpack: nothing was applied */
    bool repeat;         /* its request id was applied before: answered, not applied */
    int op;              /* otherwise the request's op (any value the peer wrote) */
    uint64_t request_id; /* and its request id (0: none) */
};

/* Apply the framed entry buf[0..len). Returns mdm_state_apply_once's result
 * (0 or -errno, err saying why), or -EINVAL for a corrupt entry; logs either. */
int mdm_fsm_apply(struct mdm_state *s, const uint8_t *buf, size_t len, struct mdm_fsm_entry *e,
                  char *err, size_t errlen);
/* The state framed as a snapshot, in a malloc'd buffer (caller frees). */
int mdm_fsm_snapshot(const struct mdm_state *s, uint8_t **buf, size_t *len);
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
Cairn__Sdc *mdm_sdc_by_id(const struct mdm_state *s, uint32_t id);
Cairn__Device *mdm_device_by_id(const struct mdm_state *s, uint32_t id);
Cairn__FaultSet *mdm_fault_set_by_name(const struct mdm_state *s, const char *name);

#endif
