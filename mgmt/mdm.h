/* cairn-mdm, the metadata manager: its internal header, a section per file,
 * so that it doubles as an index of the daemon.
 *
 * The cluster state (mdm_state) is a Raft state machine. Every change arrives
 * as a MgmtRequest from the CLI (or an SDC registering, or the leader's own
 * failure detector), is completed by the leader (device capacities probed on
 * the SDS that owns them), then appended to the Raft log; it changes the
 * state only when applied, on every MDM alike. Runtime facts (which SDS is
 * connected, device usage) are not replicated: they are soft state rebuilt
 * from heartbeats.
 *
 *   mdm_main.c   options, startup, signals and shutdown
 *   raft_fsm.c   Raft: startup and close, the FSM (entry framing, apply,
 *                snapshot, restore: entries and snapshots are unwrapped and
 *                applied by mdm_fsm.c, in the state machine's library),
 *                appending proposals
 *   proposals.c  proposals tracked and answered, the leader queries
 *   probe.c      device probes on the SDS before SDS_ADD / DEVICE_ADD
 *   snapshot_cut.c  a snapshot's cut: every SDS paused, then proposed
 *   detector.c   failure detection: up/down proposals, grace expiry
 *   sessions.c   connections: registrations, heartbeats, map fetches,
 *                request dispatch, the removal room check, replies
 *   status.c     the status reply (the map plus soft state)
 *   claims.c     single-writer volumes: SDCs' claims, who holds what open
 *   mdm_members.c the MDM cluster's membership (cairn mdm add, remove,
 *                transfer-leadership) and the cluster id agreed in the log
 *   rest.c       the REST API (/api/v1/...) and the dashboard, over HTTP:
 *                each request becomes a MgmtRequest to this MDM's own
 *                request API, so it shares the CLI's validation and errors;
 *                a follower carries it on to the leader (rest_calls.c)
 *   mdm_metrics.c Prometheus metrics: Raft, changes applied, PG health,
 *                rebuild and rebalance progress, capacity
 *
 * Everything lives in one struct mdm, owned by main; nothing is global.
 * Callbacks find it through their context: the FSM's data, each Raft
 * proposal's raft_apply.data, each connection's session (its rpc data, set
 * by the server's on_accept), each probe, the timers' and signals' data.
 * Everything runs on the one loop of the daemon: no locks.
 */
#ifndef CAIRN_MDM_H
#define CAIRN_MDM_H

/* Requests a session may have waiting for their reply (see sessions.c). */
#define MDM_SESSION_REQUESTS 64

#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "mdm_state.h"
#include "rpc.h"

#define MDM_MAX_SESSIONS 1024
#define MDM_MAX_PROPOSALS 4096
#define MDM_MAX_PROBES 64
#define MDM_MAX_SEEN 1024
#define MDM_METRIC_OPS 64

/* What a connection registered as. */
enum mdm_role {
    MDM_ROLE_UNKNOWN = 0, /* no registration yet (the CLI never registers) */
    MDM_ROLE_SDS = 1,     /* sent FT_SDS_REGISTER */
    MDM_ROLE_SDC = 2,     /* sent FT_SDC_REGISTER */
    MDM_ROLE_CLI = 3,     /* reserved: nothing sets it today */
};

struct mdm;

/* The MDM's side of one connection. Allocated when the connection is
 * accepted (its rpc data from then on), listed in mdm->sessions from its
 * first request, freed in its close callback. */
struct mdm_conn {
    struct mdm *mdm; /* the daemon it belongs to */
    struct rpc_conn *conn;
    int slot; /* its index in mdm->sessions; -1 until its first request */
    enum mdm_role role;
    char sds_name[MDM_NAME_MAX + 1]; /* MDM_ROLE_SDS: as registered */
    char sds_addr[128];
    uint32_t sds_id;   /* 0 until the SDS is added to the cluster */
    char sdc_guid[65]; /* MDM_ROLE_SDC: as registered */
    uint64_t last_hb;
    Cairn__Heartbeat *hb; /* last heartbeat (usage), owned */
    /* MDM_ROLE_SDC: the heartbeat before hb (owned, or NULL) and when each
     * of the two arrived (now_ms()): their volume_io counts, cumulative,
     * give the volumes' I/O rates over that interval (status.c) */
    Cairn__Heartbeat *prev_hb;
    uint64_t hb_at, prev_hb_at;
    /* MDM_ROLE_SDS, MDM_ROLE_SDC: the map version last announced to it
     * (FT_MAP_NOTIFY), and whether that announcement is unanswered (one at
     * a time: a stopped peer never holds more than one) */
    uint64_t notified;
    int notifying;
    struct mdm_audit_rec *audit; /* its changes waiting for their answer (audit.c) */
    /* MDM_ROLE_SDC: the single-writer volumes it holds open (claims.c),
     * and when it last claimed one (now_ms()) */
    uint64_t *holds;
    size_t nholds;
    uint64_t claimed_at;
};

/* What to answer when a proposal is applied. */
enum mdm_proposal_kind {
    MDM_PROPOSAL_MGMT = 0,         /* a MgmtReply with the new map */
    MDM_PROPOSAL_SDC_REGISTER = 1, /* a MapReply with the SDC's id */
    MDM_PROPOSAL_CLAIM = 2,        /* a MapReply with the volume's writer_gen (claims.c) */
};

/* The outcome of one applied entry (mdm_outcome_record). */
struct mdm_outcome {
    uint64_t request_id; /* the entry's, 0 if none */
    int status;          /* 0 or -errno */
    char err[512];
};
#define MDM_OUTCOMES 1024 /* entries applied before their callback runs, at most */

/* One change on its way through the Raft log. */
struct mdm_proposal {
    struct raft_apply req; /* first member: Raft's callback gets &req; req.data is the mdm */
    struct rpc_conn *conn; /* who waits for the answer; NULL: nobody (or it went away) */
    struct frame_hdr hdr;  /* the request answered */
    enum mdm_proposal_kind kind;
    uint32_t sds_id;     /* the detector's proposals: the SDS they are about */
    char guid[80];       /* MDM_PROPOSAL_SDC_REGISTER: the SDC */
    uint64_t volume_id;  /* MDM_PROPOSAL_CLAIM: the volume */
    uint64_t request_id; /* the request's: 0 if none */
};

/* The failure detector's record of one SDS (leader only, soft state). */
struct mdm_seen {
    uint32_t sds_id; /* 0: free slot */
    uint64_t last_hb;
    uint64_t down_since;          /* first seen down by this leader, 0 if up */
    uint64_t away_at;             /* last seen in maintenance: silence before that does not count */
    int proposing;                /* an SDS_UP/SDS_DOWN proposal is in flight */
    int expiring;                 /* a GRACE_EXPIRED proposal is in flight */
    uint64_t gone_at;             /* proposed down as gone: only a later heartbeat brings it up */
    struct mdm_gone_check *check; /* its port being tried, or NULL */
};

/* The devices of one SDS_ADD / DEVICE_ADD being probed, one at a time. */
struct mdm_probe {
    struct mdm *mdm;
    struct rpc_conn *cli;    /* the requester; NULL once it went away */
    struct frame_hdr hdr;    /* its request */
    Cairn__MgmtRequest *req; /* owned; capacities filled in as probes answer */
    size_t next;             /* the device probed now */
    char sds_name[MDM_NAME_MAX + 1];
};

/* Raft's election timeout by default (--election-timeout): a follower that
 * hears from no leader for 0.5 to 1 s stands for election. */
#define MDM_ELECTION_MS_DEFAULT 500

struct mdm {
    uv_loop_t *loop;

    /* mdm_main.c */
    uv_signal_t sigterm, sigint;
    int stopping;

    /* raft_fsm.c */
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    /* the guard on libraft 0.22.1's snapshot install (raft_fsm.c): Raft's
     * own receive callback and the io's start, which the guard wraps */
    int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    raft_io_recv_cb raft_recv;
    uint64_t installs_dropped;
    /* Raft's election timeout (--election-timeout), and its stores of a
     * term or a vote that took over a quarter of it */
    unsigned election_ms;
    uint64_t slow_stores;
    int (*io_set_term)(struct raft_io *io, raft_term term);
    int (*io_set_vote)(struct raft_io *io, raft_id id);
    char raft_dir[4096]; /* the data directory, for its free space */
    struct mdm_state st; /* the replicated state: changed only by the FSM */
    /* result of the last fsm apply, read by the apply callback that follows */
    int apply_status;
    char apply_err[512];
    /* and each entry's outcome, for its proposal's callback (libraft's
     * result): libraft 0.22 may run the callbacks of a batch of entries
     * after the whole batch is applied, so the last apply's is not theirs */
    struct mdm_outcome outcomes[MDM_OUTCOMES];
    unsigned outcome_next;
    /* pending proposals point at their connection; a closing connection
     * forgets them */
    struct mdm_proposal *proposals[MDM_MAX_PROPOSALS];
    uv_timer_t stop_fallback;

    /* sessions.c */
    struct rpc_server *server;
    struct mdm_conn *sessions[MDM_MAX_SESSIONS];
    /* after every loop turn that changed the map, its SDSs and SDCs are
     * told (FT_MAP_NOTIFY) so that they fetch it at once */
    uv_check_t notify_check;
    uint64_t notify_version;

    /* probe.c: one per CLI request in flight; a closing connection orphans
     * its probe */
    struct mdm_probe *probes[MDM_MAX_PROBES];

    /* snapshot_cut.c: the snapshot being cut (NULL: none); when the last
     * LAYER_MERGED was proposed */
    struct mdm_cut *cut;
    uint64_t merge_proposed_at;

    /* detector.c */
    unsigned sds_timeout_ms; /* silence after which an SDS is marked down */
    unsigned grace_ms;       /* how long a down SDS's copies stay on record */
    uv_timer_t detector;
    uint64_t leader_since; /* 0 while not leader */
    uint64_t last_tick;    /* the detector's previous run, to spot stalls */
    struct mdm_seen seen[MDM_MAX_SEEN];

    /* mdm_members.c: the one membership change in flight (NULL: none), and
     * whether this leader has proposed the cluster id */
    struct mdm_member_change *member_change;
    struct mdm_member_change *member_stuck; /* a failed raft_assign's (B2) */
    int cluster_id_proposed;

    /* audit.c */
    int audit_fd; /* DATA-DIR/audit.log; -1 before it is open */

    /* rest.c */
    struct mdm_rest *rest; /* NULL unless --http-listen */
    char listen_addr[128]; /* the request API's address, which rest.c calls */

    /* mdm_metrics.c */
    struct metrics_server *metrics; /* NULL unless --metrics-listen */
    /* FSM entries applied since start, by MgmtOp (the last slot: any op
     * beyond the table), and of those the ones the state machine refused */
    uint64_t applied_by_op[MDM_METRIC_OPS];
    uint64_t refused_by_op[MDM_METRIC_OPS];
    uint64_t corrupt_entries;
    uint64_t term_at_start; /* elections since start: current term minus this */
};

/* ---- audit.c: the audit log of changes ---- */

struct mdm_audit_rec;
/* Open dir/audit.log for appending (mode 0600). 0, or -1 after logging why. */
int mdm_audit_open(struct mdm *m, const char *dir);
void mdm_audit_close(struct mdm *m);
/* A management request arrived on s: if it is a change, remember who asked
 * what until its answer. */
void mdm_audit_begin(struct mdm_conn *s, const struct frame_hdr *h, const Cairn__MgmtRequest *req);
/* Request h on c is answered with status (and msg if it failed): write its
 * line. Nothing for a request not begun (a query, another frame type). */
void mdm_audit_end(struct rpc_conn *c, const struct frame_hdr *h, int status, const char *msg);
/* s closes: its unanswered changes are written with the result unknown. */
void mdm_audit_drop(struct mdm_conn *s);
/* The REST API refused a monitor token's change (method, path) from the
 * HTTP client at addr: write its line, with status -EACCES. */
void mdm_audit_http_refused(struct mdm *m, const char *addr, const char *method, const char *path,
                            const char *msg);

/* ---- raft_fsm.c: Raft, the FSM, proposals ---- */

/* Open the Raft log in dir, bootstrap a single-voter configuration if it is
 * new (unless join: then wait to be added), start Raft. raft_addr is
 * "RAFT/CLIENT" (raft_link.h). 0, or -1 after logging why. */
int mdm_raft_start(struct mdm *m, const char *dir, raft_id id, const char *raft_addr,
                   unsigned snap_threshold, int join);
/* Close Raft and its I/O; the loop then runs dry (a timer stops it after
 * 2 s if handles linger). */
void mdm_raft_close(struct mdm *m);
/* Frame req as a Raft entry and append it; p (calloc'd, owned by the caller
 * until this returns 0, then freed by mdm_proposal_done_cb, which cb must
 * end with) is tracked until cb runs. 0 or -errno: -EAGAIN if this MDM does
 * not lead (any more, or it is handing leadership over), -ENOSPC if its
 * data directory has no room for the log, -EIO for another refusal. */
int mdm_raft_propose(struct mdm *m, const Cairn__MgmtRequest *req, struct mdm_proposal *p,
                     raft_apply_cb cb);

/* Raft's membership calls, for mdm_members.c (the fuzz target fakes them):
 * raft_add, raft_assign, raft_remove, raft_transfer on m's Raft. */
int mdm_raft_member_add(struct mdm *m, struct raft_change *req, raft_id id, const char *addr,
                        raft_change_cb cb);
int mdm_raft_member_assign(struct mdm *m, struct raft_change *req, raft_id id, int role,
                           raft_change_cb cb);
int mdm_raft_member_remove(struct mdm *m, struct raft_change *req, raft_id id, raft_change_cb cb);
int mdm_raft_transfer(struct mdm *m, struct raft_transfer *req, raft_id id, raft_transfer_cb cb);

/* ---- mdm_members.c: the MDM cluster's membership, the cluster id ---- */

/* OP_MDM_ADD, OP_MDM_REMOVE, OP_MDM_TRANSFER from c: checked, started on
 * the leader, answered once Raft's configuration has changed. */
void mdm_members_request(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                         const Cairn__MgmtRequest *req);
void mdm_members_forget_conn(struct mdm *m, struct rpc_conn *c);
/* The leader's timer: propose the cluster id if the log has not agreed one. */
void mdm_members_tick(struct mdm *m);

/* ---- proposals.c: proposals tracked and answered, leader queries ---- */

/* 1 if this MDM leads. */
int mdm_is_leader(struct mdm *m);
/* Refuse c's request h: this MDM does not lead. The reply names the
 * leader's client address when this MDM knows it (MgmtReply.leader_addr). */
void mdm_reply_not_leader(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h);
/* This MDM's Raft role: "leader", "follower", "candidate" or "unavailable". */
const char *mdm_raft_role(struct mdm *m);

/* Propose req and answer c's request h with its outcome (kind) once it is
 * applied; c NULL: nobody waits (then a follower returns -EAGAIN quietly).
 * Not the leader: answers with the leader's address at once. Any failure
 * is answered too. 0 or -errno. req is copied: the caller keeps it. */
int mdm_propose(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                const Cairn__MgmtRequest *req, enum mdm_proposal_kind kind);
/* Track p (mdm_raft_propose, once its entry is appended). */
void mdm_proposal_track(struct mdm *m, struct mdm_proposal *p);
/* Keep the outcome of the entry just applied (m->apply_status, apply_err)
 * in the next of m->outcomes: the result to hand its proposal's callback. */
struct mdm_outcome *mdm_outcome_record(struct mdm *m, uint64_t request_id);
/* Stop tracking p, answer its requester if any (with result, the outcome
 * mdm_outcome_record kept, when status is 0), free p. */
void mdm_proposal_done_cb(struct raft_apply *req, int status, void *result);
/* c is closing: its pending proposals will answer nobody. */
void mdm_proposals_forget_conn(struct mdm *m, struct rpc_conn *c);
/* A change sent again with the request id of one already applied: the
 * leader answers it at once with the recorded outcome (state_reqids.c) and
 * returns 1; 0 if req is to be handled as it comes (no id, not known yet,
 * not the leader, or the id was used by another op: the apply refuses that). */
int mdm_answer_repeat(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                      const Cairn__MgmtRequest *req);

/* ---- snapshot_cut.c: a snapshot's cut: pause the SDSs, then propose ---- */

/* OP_SNAPSHOT_CREATE from c: pause every serving SDS's changes to the
 * volumes, then propose it at the paused map version (req is owned). */
void mdm_snapshot_start(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                        Cairn__MgmtRequest *req);
/* c is closing: the cut under way answers nobody. */
void mdm_snapshot_forget_conn(struct mdm *m, struct rpc_conn *c);
/* The leader's tick: propose LAYER_MERGED for a merge every SDS is done with. */
void mdm_snapshot_tick(struct mdm *m);

/* ---- probe.c: device probes before SDS_ADD / DEVICE_ADD ---- */

/* Ask the SDS (connected from req->addr; for DEVICE_ADD, the SDS's
 * registered address) for the capacity of each device of req, then propose
 * req with them. Takes ownership of req. Every outcome answers c's h. */
void mdm_probe_start(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                     Cairn__MgmtRequest *req);
/* c is closing: its probes stop at their next step. */
void mdm_probes_forget_conn(struct mdm *m, struct rpc_conn *c);

/* ---- detector.c: failure detection (leader only) ---- */

/* Run the detector every 250 ms on m->loop. */
void mdm_detector_start(struct mdm *m);
void mdm_detector_stop(struct mdm *m);
/* End the port checks under way (of SDSs whose session closed) with no
 * verdict: at shutdown, and in the fuzz harness, whose SDSs have no port. */
void mdm_detector_cancel_checks(struct mdm *m);
/* SDS sds_id heartbeated at `when` (now_ms()). */
void mdm_detector_heard(struct mdm *m, uint32_t sds_id, uint64_t when);
/* The session of SDS sds_id (listening on addr) closed: try its port, and if
 * nothing listens there (refused) its process is gone: mark it down now,
 * without waiting out its heartbeat timeout. Leader only. */
void mdm_detector_lost(struct mdm *m, uint32_t sds_id, const char *addr);

/* ---- rest.c: the REST API and the dashboard (its files: rest.h) ---- */

/* Serve the REST API and the dashboard on addr ("host:port"), with the
 * tokens of tokens_file (--http-tokens: required, NULL is refused; roles as
 * in http_auth.h). 0, or -1 after logging why. */
int mdm_rest_start(struct mdm *m, const char *addr, const char *tokens_file);
/* Stop (shutdown): requests waiting for the MDM are answered 503. */
void mdm_rest_stop(struct mdm *m);

/* ---- mdm_metrics.c: Prometheus metrics ---- */

/* Serve GET /metrics on addr to holders of token_file's token (see
 * metrics_serve()). 0, or -1 after logging why. */
int mdm_metrics_start(struct mdm *m, const char *addr, const char *token_file);
void mdm_metrics_stop(struct mdm *m);

/* ---- sessions.c: connections and request dispatch ---- */

/* Listen for CLI, SDS and SDC connections. 0 or a libuv error. */
int mdm_sessions_listen(struct mdm *m, const char *addr);
/* Stop listening and close every listed session, i.e. every connection
 * that sent a request (shutdown). */
void mdm_sessions_close(struct mdm *m);
/* The session of the SDS connected with this registered address, or NULL.
 * Valid until that connection's close callback: do not keep it across
 * loop iterations. */
struct mdm_conn *mdm_sessions_find_sds(struct mdm *m, const char *addr);
/* Answer h with an error (a MgmtReply or a MapReply, as h's type wants). */
void mdm_reply_error(struct rpc_conn *c, const struct frame_hdr *h, int status, const char *msg);
/* The same, naming the leader's client address (leader_addr in the
 * MgmtReply or MapReply) when leader is not NULL. */
void mdm_reply_error_at(struct rpc_conn *c, const struct frame_hdr *h, int status, const char *msg,
                        const char *leader);
/* Answer h with the current map and the peer's ids; an SDC's (sdc_id set)
 * lists only its own mappings. */
void mdm_reply_map(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h, uint32_t sds_id,
                   uint32_t sdc_id);

/* ---- claims.c ---- */

/* An SDC's FT_CLAIM request h on c: answered at once, or after the Raft
 * entry that makes the SDC the volume's writer (MDM_PROPOSAL_CLAIM). */
void mdm_claim_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg);
/* Answer a claim whose entry was applied (status 0) or failed (-errno,
 * msg: why). */
void mdm_claim_answer(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                      uint64_t volume_id, int status, const char *msg);
/* The session s closes: it holds nothing any more. */
void mdm_claims_forget(struct mdm_conn *s);

/* ---- status.c ---- */

#define MDM_STATUS_ALLOCS 16

/* A status reply being built: rep borrows the map and the sessions' last
 * heartbeats (valid until the loop runs again), and owns what alloc lists. */
struct mdm_status {
    Cairn__MgmtReply rep;
    char info[256];
    void *alloc[MDM_STATUS_ALLOCS];
    int n_alloc;
    int failed;
};

/* Fill s with the status: the map, every SDS's and SDC's connection and
 * last heartbeat as this MDM sees them, the volumes' recent I/O, and the
 * MDMs. 0, or -ENOMEM (nothing to clear). Use it before the loop runs
 * again, then mdm_status_clear(). */
int mdm_status_fill(struct mdm *m, struct mdm_status *s);
void mdm_status_clear(struct mdm_status *s);
/* Answer an OP_STATUS with mdm_status_fill()'s reply. */
void mdm_status_reply(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h);

#endif
