/* Raft in the MDM: startup and close, the state machine's FSM callbacks,
 * and appending a proposal (a change framed as a log entry; proposals.c
 * tracks it and answers once it is applied).
 *
 * Raft entries and snapshots are [u64 length][protobuf][zero padding to a
 * multiple of 8]: libraft 0.15's loader of closed segments stepped over the
 * unpadded size, and later releases refuse an entry that is not a multiple
 * of 8 bytes (docs/raft.md, C5), so every payload we give it is one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "log.h"
#include "mdm.h"
#include "raft_link.h"
#include "util.h"

/* ---- entry framing ---- */

static size_t framed_size(size_t len)
{
    return 8 + ((len + 7) & ~(size_t)7);
}

/* ---- the FSM ---- */

/* Apply one committed entry (mdm_fsm.c unwraps and applies it). The outcome
 * goes to the apply callback of the proposal (if this MDM made it) as its
 * result: Raft may run that callback after further entries are applied. */
static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct mdm *m = fsm->data;
    struct mdm_fsm_entry e;
    m->apply_status =
        mdm_fsm_apply(&m->st, buf->base, buf->len, &e, m->apply_err, sizeof(m->apply_err));
    if (e.corrupt) {
        m->corrupt_entries++;
    } else {
        unsigned op = (unsigned)e.op < MDM_METRIC_OPS ? (unsigned)e.op : MDM_METRIC_OPS - 1;
        m->applied_by_op[op]++;
        if (m->apply_status < 0)
            m->refused_by_op[op]++;
    }
    *result = mdm_outcome_record(m, e.corrupt ? 0 : e.request_id);
    return 0;
}

/* B4 (docs/raft.md): libraft 0.22.1 takes a snapshot in the same step that
 * applies entries, before it marks a configuration entry among them
 * committed; the snapshot then records the configuration before that entry
 * (a new MDM still a spare), and every MDM that later restores it forgets
 * that MDM is a voter. A committed configuration entry not yet marked so:
 * refuse this snapshot (libraft tries again after the next apply). */
static int snapshot_would_miss_a_configuration(const struct raft *r)
{
    return r->configuration_uncommitted_index != 0 &&
           r->configuration_uncommitted_index <= r->commit_index;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct mdm *m = fsm->data;
    uint8_t *buf;
    size_t len;
    if (snapshot_would_miss_a_configuration(&m->raft)) {
        log_debug("raft: snapshot at %llu put off: configuration entry %llu is committed but "
                  "not yet marked so (B4)",
                  (unsigned long long)m->raft.commit_index,
                  (unsigned long long)m->raft.configuration_uncommitted_index);
        return RAFT_BUSY;
    }
    /* framed already (mdm_fsm.c): the map, then the request ids */
    int r = mdm_fsm_snapshot(&m->st, &buf, &len);
    if (r < 0)
        return RAFT_NOMEM;
    *bufs = raft_malloc(sizeof(**bufs));
    uint8_t *copy = raft_malloc(len);
    if (!*bufs || !copy) {
        raft_free(*bufs);
        raft_free(copy);
        free(buf);
        return RAFT_NOMEM;
    }
    memcpy(copy, buf, len);
    free(buf);
    (*bufs)[0].base = copy;
    (*bufs)[0].len = len;
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct mdm *m = fsm->data;
    if (mdm_fsm_restore(&m->st, buf->base, buf->len) < 0)
        return RAFT_MALFORMED;
    raft_free(buf->base); /* ours once the restore succeeded */
    return 0;
}

/* ---- a guard on libraft 0.22.1's snapshot install ---- */

/* A follower that gets an InstallSnapshot while it writes a snapshot of its
 * own holds the install until its write is done, and then libraft 0.22.1
 * (takeSnapshotCb in src/legacy.c) clears the held pointer before it reads
 * it and starts the install from NULL: the MDM dies (docs/raft.md, C6).
 * So an install that comes while this MDM writes a snapshot never reaches
 * Raft: it is dropped, as a lossy link would. Raft is built for that: the
 * leader's next heartbeat is rejected at the snapshot's index, which makes
 * the leader send the install again (progressMaybeDecrement), a heartbeat
 * (100 ms) later; by then the write (a few ms) is done. */
static void guarded_recv(struct raft_io *io, struct raft_message *msg)
{
    struct raft *r = io->data;
    struct mdm *m = r->data;
    if (msg->type == RAFT_INSTALL_SNAPSHOT && r->legacy.snapshot_taking) {
        m->installs_dropped++;
        log_info("raft: an install of the snapshot at %llu from MDM %llu came while this MDM "
                 "writes its own; dropped, for the leader to send again (%llu so far)",
                 (unsigned long long)msg->install_snapshot.last_index,
                 (unsigned long long)msg->server_id, (unsigned long long)m->installs_dropped);
        /* what Raft frees of a message it takes (legacy.c's recvCb on close) */
        raft_configuration_close(&msg->install_snapshot.conf);
        raft_free(msg->install_snapshot.data.base);
        return;
    }
    m->raft_recv(io, msg);
}

static int guarded_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                         raft_io_recv_cb recv)
{
    struct raft *r = io->data;
    struct mdm *m = r->data;
    m->raft_recv = recv;
    return m->io_start(io, msecs, tick, guarded_recv);
}

/* ---- how long storing a term or a vote takes ---- */

/* A voter stores its term and its vote (a write and a sync each, on this
 * loop) before it answers a candidate. If that takes longer than the
 * candidate's election timeout, the candidate gives up first, stands again
 * in a new term, and the voter must store that one too: while the disk is
 * that slow, no election it is needed for ever finishes (docs/raft.md C9).
 * Say so when a store takes more than a quarter of the timeout. */
static void timed_store(struct mdm *m, const char *what, uint64_t t0)
{
    uint64_t took = now_ms() - t0;
    if (took * 4 <= m->election_ms)
        return;
    m->slow_stores++;
    LOG_LIMITED(LOG_WARN, 5000,
                "raft: storing the %s took %llu ms, over a quarter of the election timeout "
                "(%u ms): while this MDM's disk is that slow, an election it votes in may never "
                "finish; give every MDM --election-timeout %llu or more",
                what, (unsigned long long)took, m->election_ms,
                (unsigned long long)((took * 4 + 999) / 1000 * 1000));
}

static int timed_set_term(struct raft_io *io, raft_term term)
{
    struct mdm *m = ((struct raft *)io->data)->data;
    uint64_t t0 = now_ms();
    int rv = m->io_set_term(io, term);
    timed_store(m, "term", t0);
    return rv;
}

static int timed_set_vote(struct raft_io *io, raft_id id)
{
    struct mdm *m = ((struct raft *)io->data)->data;
    uint64_t t0 = now_ms();
    int rv = m->io_set_vote(io, id);
    timed_store(m, "vote", t0);
    return rv;
}

/* ---- startup and close ---- */

int mdm_raft_start(struct mdm *m, const char *dir, raft_id id, const char *raft_addr,
                   unsigned snap_threshold, int join)
{
    /* Raft's peers reach it over authenticated links (raft_link.h), not
     * libraft's TCP transport, which takes anyone */
    int r = raft_link_init(&m->transport, m->loop);
    if (r != 0) {
        log_error("raft transport: %s", raft_strerror(r));
        return -1;
    }
    snprintf(m->raft_dir, sizeof(m->raft_dir), "%s", dir);
    m->io.errmsg[0] = 0;
    r = raft_uv_init(&m->io, m->loop, dir, &m->transport);
    if (r != 0) {
        log_error("raft storage in %s: %s", dir, m->io.errmsg[0] ? m->io.errmsg : raft_strerror(r));
        raft_link_close(&m->transport);
        return -1;
    }
    m->fsm.version = 1;
    m->fsm.data = m;
    m->fsm.apply = fsm_apply;
    m->fsm.snapshot = fsm_snapshot;
    m->fsm.restore = fsm_restore;
    r = raft_init(&m->raft, &m->io, &m->fsm, id, raft_addr);
    if (r != 0) {
        log_error("raft_init: %s", raft_strerror(r));
        return -1;
    }
    m->raft.data = m;
    m->io_start = m->io.start;
    m->io.start = guarded_start;
    m->io_set_term = m->io.set_term;
    m->io.set_term = timed_set_term;
    m->io_set_vote = m->io.set_vote;
    m->io.set_vote = timed_set_vote;
    raft_set_election_timeout(&m->raft, m->election_ms);
    raft_set_heartbeat_timeout(&m->raft, 100);
    /* An MDM cut off from the others asks whether it could win before it
     * stands (Raft's pre-vote, section 9.6 of Ongaro's thesis), so it does
     * not raise its term while it is alone and does not depose the leader
     * when it comes back (docs/raft.md C8). */
    raft_set_pre_vote(&m->raft, true);
    raft_set_snapshot_threshold(&m->raft, snap_threshold);
    raft_set_snapshot_trailing(&m->raft, snap_threshold / 2);
    /* An empty data directory starts a cluster of one, unless this MDM is
     * to join one: then it waits for a leader to add it (mdm_members.c). */
    if (!join) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        r = raft_configuration_add(&conf, id, raft_addr, RAFT_VOTER);
        if (r == 0)
            r = raft_bootstrap(&m->raft, &conf);
        raft_configuration_close(&conf);
        if (r == 0)
            log_info("mdm: started a new MDM cluster of one (raft id %llu)",
                     (unsigned long long)id);
        else if (r != RAFT_CANTBOOTSTRAP) {
            log_error("raft_bootstrap: %s", raft_strerror(r));
            return -1;
        }
    }
    r = raft_start(&m->raft);
    if (r != 0) {
        log_error("raft_start: %s (%s)", raft_strerror(r), raft_errmsg(&m->raft));
        return -1;
    }
    return 0;
}

static void stop_fallback_cb(uv_timer_t *t)
{
    struct mdm *m = t->data;
    log_warn("mdm: handles still open 2 s after shutdown; stopping the loop");
    uv_stop(m->loop);
}

static void raft_closed_cb(struct raft *r)
{
    struct mdm *m = r->data;
    /* Let the loop run dry so raft's own close callbacks free its memory;
     * an unreferenced timer stops it anyway if something lingers. */
    raft_uv_close(&m->io);
    raft_link_close(&m->transport);
    uv_timer_init(m->loop, &m->stop_fallback);
    m->stop_fallback.data = m;
    uv_timer_start(&m->stop_fallback, stop_fallback_cb, 2000, 0);
    uv_unref((uv_handle_t *)&m->stop_fallback);
}

void mdm_raft_close(struct mdm *m)
{
    raft_close(&m->raft, raft_closed_cb);
}

/* ---- proposals (tracked and answered by proposals.c) ---- */

/* libraft's segments (raft_uv_set_segment_size, left at its default) */
#define RAFT_SEGMENT_BYTES (8u << 20)

/* 1 if this MDM's log has no room of its own (libraft's count, in KiB)
 * while its data directory has room for two segments: libraft's count is
 * stale (mdm_raft_propose). */
static int log_room_back(struct mdm *m)
{
    struct statvfs fs;
    if (m->io.capacity >= RAFT_SEGMENT_BYTES / 1024 || statvfs(m->raft_dir, &fs) < 0)
        return 0;
    return (uint64_t)fs.f_bavail * fs.f_frsize >= 2ull * RAFT_SEGMENT_BYTES;
}

int mdm_raft_propose(struct mdm *m, const Cairn__MgmtRequest *req, struct mdm_proposal *p,
                     raft_apply_cb cb)
{
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    struct raft_buffer buf = {.base = raft_calloc(1, framed_size(len)), .len = framed_size(len)};
    if (!buf.base)
        return -ENOMEM;
    put_be64(buf.base, len);
    protobuf_c_message_pack(&req->base, (uint8_t *)buf.base + 8);
    p->req.data = m;
    int r = raft_apply(&m->raft, &p->req, &buf, 1, cb);
    if (r == RAFT_NOSPACE && log_room_back(m)) {
        /* libraft allocates its first log segments once, when it starts
         * (UvPrepareStart); if the disk had no room then, its log's room
         * stays 0 and every change is refused before the append that would
         * allocate one (which retries until it can), even once the disk
         * has room: the MDM took no change until restarted. With room on
         * the disk now, this one change goes past the check. */
        unsigned short threshold = m->raft.capacity_threshold;
        raft_set_capacity_threshold(&m->raft, 0);
        r = raft_apply(&m->raft, &p->req, &buf, 1, cb);
        raft_set_capacity_threshold(&m->raft, threshold);
        log_info("mdm: the data directory has room for the Raft log again: a change went past "
                 "libraft's stale capacity check (%s)",
                 r == 0 ? "taken" : raft_strerror(r));
    }
    if (r != 0) {
        raft_free(buf.base);
        /* the failure detector proposes every few hundred ms: a full disk
         * would log each of them */
        LOG_LIMITED(LOG_WARN, 5000, "mdm: raft_apply: %s", raft_strerror(r));
        /* not the leader any more, or handing leadership over: nothing
         * was appended, and the next leader takes it */
        if (r == RAFT_NOTLEADER)
            return -EAGAIN;
        /* libraft refuses before it appends when it cannot make room for
         * the log's next segment (its free-space check) */
        return r == RAFT_NOSPACE ? -ENOSPC : -EIO;
    }
    mdm_proposal_track(m, p);
    return 0;
}

/* ---- membership (mdm_members.c) ---- */

int mdm_raft_member_add(struct mdm *m, struct raft_change *req, raft_id id, const char *addr,
                        raft_change_cb cb)
{
    return raft_add(&m->raft, req, id, addr, cb);
}

int mdm_raft_member_assign(struct mdm *m, struct raft_change *req, raft_id id, int role,
                           raft_change_cb cb)
{
    return raft_assign(&m->raft, req, id, role, cb);
}

int mdm_raft_member_remove(struct mdm *m, struct raft_change *req, raft_id id, raft_change_cb cb)
{
    return raft_remove(&m->raft, req, id, cb);
}

int mdm_raft_transfer(struct mdm *m, struct raft_transfer *req, raft_id id, raft_transfer_cb cb)
{
    return raft_transfer(&m->raft, req, id, cb);
}
