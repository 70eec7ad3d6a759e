/* The MDM's request handlers as cairn-mdm runs them: mgmt/sessions.c's
 * server (mdm_sessions_listen on a unix socket) accepts up to two clients
 * whose frames are the input, so on_request (the payload and role checks),
 * on_mgmt (status, the probe of SDS_ADD / DEVICE_ADD, the removal room
 * check, proposals), on_sds_register, on_heartbeat, FT_MAP_GET,
 * on_sdc_register and on_pg_rebuilt run on a real struct mdm whose state is
 * restored per input (a pool, three SDSs, a volume, an SDC). The probes are
 * the daemon's (probe.c): they ask the session registered with the SDS's
 * address, i.e. one of our clients, which answers them; the map
 * announcements (FT_MAP_NOTIFY) are answered too.
 *
 * Only Raft is faked: mdm_raft_propose (raft_fsm.c, not linked) frames the
 * entry as the daemon does and queues it; on the next loop turn it is
 * "committed": applied with mdm_fsm_apply as fsm_apply does and its
 * callback run, as libraft does on a leader. The rest of the Raft state the
 * handlers read (leader or follower, the leader's address, the
 * configuration) is set in m->raft for libraft's accessors.
 *
 * Links are plain (no credential): every peer has AUTH_ROLE_NONE, so the
 * role refusals are not reached.
 *
 * Input: [flags][records: [kind][u16 length][message]]. flags: bit 0 this
 * MDM is a follower, bit 1 commits fail (leadership lost), bit 2 the Raft
 * log refuses appends, bit 3 probes answered with an error, bit 4 with a
 * message that does not unpack. kind: bit 7 the client (0 or 1), bit 6
 * send the next record at once (the default waits for this one's answer,
 * so the MDM sees the records in order across the clients); bits 0-2
 * FT_MGMT, FT_SDS_REGISTER, FT_HEARTBEAT, FT_MAP_GET, FT_SDC_REGISTER,
 * FT_PG_REBUILT, a raw frame ([u16 type][u8 payload length][payload,
 * message]), or a pause (the loop runs until the MDM is idle).
 *
 * After every input the state must pass cmap_check, and every session,
 * proposal, probe and handle must be gone (ASan reports any leak). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cmap.h"
#include "fuzz_common.h"
#include "fuzz_mdm_base.h"
#include "log.h"
#include "mdm.h"
#include "util.h"

static struct mdm M;
static uv_idle_t committer;
static uint8_t flags;
static char sock_path[108];
static uint8_t *base;
static size_t base_len;

/* ---- the fake Raft: appended entries commit on the next loop turn ---- */

struct entry {
    struct mdm_proposal *p;
    raft_apply_cb cb;
    uint8_t *buf;
    size_t len;
};
static struct entry log_q[MDM_MAX_PROPOSALS];
static int n_log;

static void commit_cb(uv_idle_t *h)
{
    struct mdm *m = h->data;
    /* what was appended while committing waits for the next turn */
    int n = n_log;
    struct entry q[MDM_MAX_PROPOSALS];
    memcpy(q, log_q, sizeof(q[0]) * (size_t)n);
    n_log = 0;
    for (int i = 0; i < n; i++) {
        int status = 0;
        void *res = NULL;
        if (flags & 2) {
            status = RAFT_LEADERSHIPLOST;
        } else {
            /* fsm_apply (raft_fsm.c) */
            struct mdm_fsm_entry e;
            m->apply_status =
                mdm_fsm_apply(&m->st, q[i].buf, q[i].len, &e, m->apply_err, sizeof(m->apply_err));
            res = mdm_outcome_record(m, e.corrupt ? 0 : e.request_id);
            char err[512];
            if (m->apply_status == 0 && cmap_check(m->st.m, err, sizeof(err)) < 0) {
                fprintf(stderr, "an applied entry left a map that fails its check: %s\n", err);
                abort();
            }
        }
        free(q[i].buf);
        q[i].cb(&q[i].p->req, status, res);
    }
    if (n_log == 0)
        uv_idle_stop(h);
}

int mdm_raft_propose(struct mdm *m, const Cairn__MgmtRequest *req, struct mdm_proposal *p,
                     raft_apply_cb cb)
{
    if ((flags & 4) || n_log == MDM_MAX_PROPOSALS)
        return -EIO; /* raft_apply refused (as when leadership is being lost) */
    /* framed as raft_fsm.c frames entries: [u64 length][protobuf][padding to 8] */
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    size_t framed = 8 + ((len + 7) & ~(size_t)7);
    uint8_t *buf = calloc(1, framed);
    if (!buf)
        return -ENOMEM;
    put_be64(buf, len);
    protobuf_c_message_pack(&req->base, buf + 8);
    p->req.data = m;
    log_q[n_log++] = (struct entry){.p = p, .cb = cb, .buf = buf, .len = framed};
    uv_idle_start(&committer, commit_cb);
    mdm_proposal_track(m, p);
    return 0;
}

/* Raft's membership calls: refused as a libraft without the change would
 * (mdm_members.c's checks before them are what is fuzzed) */
int mdm_raft_member_add(struct mdm *m, struct raft_change *req, raft_id id, const char *addr,
                        raft_change_cb cb)
{
    (void)m, (void)req, (void)id, (void)addr, (void)cb;
    return RAFT_NOTLEADER;
}

int mdm_raft_member_assign(struct mdm *m, struct raft_change *req, raft_id id, int role,
                           raft_change_cb cb)
{
    (void)m, (void)req, (void)id, (void)role, (void)cb;
    return RAFT_NOTLEADER;
}

int mdm_raft_member_remove(struct mdm *m, struct raft_change *req, raft_id id, raft_change_cb cb)
{
    (void)m, (void)req, (void)id, (void)cb;
    return RAFT_NOTLEADER;
}

int mdm_raft_transfer(struct mdm *m, struct raft_transfer *req, raft_id id, raft_transfer_cb cb)
{
    (void)m, (void)req, (void)id, (void)cb;
    return RAFT_NOTLEADER;
}

/* ---- the MDM ---- */

static void unlink_path(void)
{
    unlink(sock_path);
}

static void setup(void)
{
    log_init("fuzz", -1);
    fz_mdm_base(&base, &base_len);
    M.loop = malloc(sizeof(*M.loop));
    uv_loop_init(M.loop);
    mdm_state_init(&M.st, "fuzz");
    /* a two-voter configuration: this MDM (1) and another (2) */
    raft_configuration_init(&M.raft.configuration);
    raft_configuration_add(&M.raft.configuration, 1, "127.0.0.1:7101", RAFT_VOTER);
    raft_configuration_add(&M.raft.configuration, 2, "127.0.0.2:7101", RAFT_VOTER);
    M.raft.id = 1;
    M.raft.address = "127.0.0.1:7101";
    M.sds_timeout_ms = 3000;
    M.grace_ms = 60000;
    /* the audit log's lines are built and written, to nowhere */
    M.audit_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    uv_idle_init(M.loop, &committer);
    committer.data = &M;
    snprintf(sock_path, sizeof(sock_path), "/tmp/cairn-fuzz-mdm-%d.sock", (int)getpid());
    unlink(sock_path);
    atexit(unlink_path);
    char addr[128];
    snprintf(addr, sizeof(addr), "unix:%s", sock_path);
    if (mdm_sessions_listen(&M, addr) < 0)
        abort();
}

static void restore(void)
{
    mdm_state_free(&M.st);
    mdm_state_init(&M.st, "fuzz");
    if (mdm_state_restore(&M.st, base, base_len) < 0)
        abort();
    memset(M.seen, 0, sizeof(M.seen));
    M.notify_version = M.st.m->version;
    if (flags & 1) {
        M.raft.state = RAFT_FOLLOWER;
        M.raft.follower_state.current_leader.id = 2;
        M.raft.follower_state.current_leader.address = "127.0.0.2:7101";
    } else {
        M.raft.state = RAFT_LEADER;
        M.raft.transfer = NULL;
    }
    M.raft.current_term = 3;
    M.raft.commit_index = M.raft.last_applied = M.st.m->version;
}

/* ---- the clients ---- */

struct client {
    int fd;
    uint64_t next_id;
    uint8_t in[1 << 16]; /* a frame being received; larger ones are skipped */
    size_t have;
    size_t skip;             /* bytes of a large frame still to drop */
    unsigned sent, answered; /* requests sent, replies received */
};
static struct client cl[2];

static void send_all(struct client *k, const uint8_t *b, size_t n);

static void send_frame(struct client *k, uint16_t type, uint64_t id, int32_t status,
                       const uint8_t *msg, uint32_t msg_len, const uint8_t *pl, uint32_t pl_len)
{
    struct frame_hdr h = {.version = 1,
                          .type = type,
                          .req_id = id,
                          .msg_len = msg_len,
                          .payload_len = pl_len,
                          .status = status};
    uint8_t hb[FRAME_HDR_SIZE];
    frame_hdr_encode(&h, hb);
    send_all(k, hb, sizeof(hb));
    send_all(k, msg, msg_len);
    send_all(k, pl, pl_len);
}

/* The MDM asked something: answer as an SDS does. */
static void answer(struct client *k, const struct frame_hdr *h)
{
    if (h->type == FT_DEVICE_PROBE) {
        Cairn__DeviceProbeReply rep = CAIRN__DEVICE_PROBE_REPLY__INIT;
        uint8_t msg[64];
        if (flags & 16) {
            memset(msg, 0xff, 8); /* does not unpack */
            send_frame(k, h->type | FRAME_REPLY, h->req_id, 0, msg, 8, NULL, 0);
            return;
        }
        if (flags & 8)
            rep.error = "no such device";
        else
            rep.capacity = 8ULL << 30;
        size_t n = cairn__device_probe_reply__pack(&rep, msg);
        send_frame(k, h->type | FRAME_REPLY, h->req_id, (flags & 8) ? -ENOENT : 0, msg, (uint32_t)n,
                   NULL, 0);
    } else {
        send_frame(k, h->type | FRAME_REPLY, h->req_id, 0, NULL, 0, NULL, 0);
    }
}

/* Read what the MDM sent: replies are dropped, its requests answered. 1 if
 * anything came. */
static int receive(struct client *k)
{
    uint8_t buf[1 << 16];
    ssize_t r;
    int got = 0;
    while (k->fd >= 0 && (r = read(k->fd, buf, sizeof(buf))) != 0) {
        if (r < 0) {
            if (errno == EAGAIN)
                break;
            r = 0; /* reset: as EOF */
        }
        if (r == 0) {
            close(k->fd); /* the MDM closed the connection */
            k->fd = -1;
            break;
        }
        got = 1;
        for (size_t off = 0; off < (size_t)r;) {
            if (k->skip) {
                size_t n = MIN(k->skip, (size_t)r - off);
                k->skip -= n, off += n;
                continue;
            }
            size_t n = MIN(sizeof(k->in) - k->have, (size_t)r - off);
            memcpy(k->in + k->have, buf + off, n);
            k->have += n, off += n;
            while (k->have >= FRAME_HDR_SIZE) {
                struct frame_hdr h;
                if (frame_hdr_decode(k->in, &h) < 0)
                    abort(); /* the MDM sent a bad frame */
                size_t whole = FRAME_HDR_SIZE + (size_t)h.msg_len + h.payload_len;
                if (whole > sizeof(k->in)) {
                    /* a big map reply: drop it */
                    k->skip = whole - k->have;
                    k->have = 0;
                    if (!(h.type & FRAME_REPLY))
                        abort(); /* the MDM's requests are small */
                    k->answered++;
                    break;
                }
                if (k->have < whole)
                    break;
                if (!(h.type & FRAME_REPLY))
                    answer(k, &h);
                else
                    k->answered++;
                memmove(k->in, k->in + whole, k->have - whole);
                k->have -= whole;
            }
        }
    }
    return got;
}

static void step(void)
{
    uv_run(M.loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 2; i++)
        receive(&cl[i]);
}

static void send_all(struct client *k, const uint8_t *b, size_t n)
{
    int stuck = 0;
    while (n > 0 && k->fd >= 0) {
        ssize_t w = send(k->fd, b, n, MSG_NOSIGNAL);
        if (w > 0) {
            b += w, n -= (size_t)w;
            stuck = 0;
            continue;
        }
        if ((w < 0 && errno != EAGAIN) || ++stuck > 256) {
            /* the MDM closed, or stopped reading: this client is done */
            close(k->fd);
            k->fd = -1;
            return;
        }
        step();
    }
}

static int connect_client(struct client *k)
{
    memset(k, 0, sizeof(*k));
    k->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (k->fd < 0 || connect(k->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    k->next_id = 1;
    return 0;
}

/* A connection's handles (its stream and timer): the rpc layer's own
 * per-loop handles, made with the first connection, stay. */
static void count_handle(uv_handle_t *h, void *arg)
{
    if (h->type == UV_NAMED_PIPE || h->type == UV_TIMER)
        (*(int *)arg)++;
}

static int handles(void)
{
    int n = 0;
    uv_walk(M.loop, count_handle, &n);
    return n;
}

/* Run until nothing moves: no commit waiting, nothing received for a few
 * turns. */
static void settle(void)
{
    for (int i = 0, idle = 0; i < 2000 && idle < 4; i++) {
        uv_run(M.loop, UV_RUN_NOWAIT);
        int got = receive(&cl[0]) | receive(&cl[1]);
        idle = got || n_log ? 0 : idle + 1;
    }
}

static const uint16_t types[] = {FT_MGMT,    FT_SDS_REGISTER, FT_HEARTBEAT,
                                 FT_MAP_GET, FT_SDC_REGISTER, FT_PG_REBUILT};

static void run_record(const struct fz_rec *r)
{
    struct client *k = &cl[r->kind >> 7];
    if (k->fd < 0)
        return;
    unsigned t = r->kind & 7;
    k->sent++;
    if (t < ARRAY_SIZE(types)) {
        send_frame(k, types[t], k->next_id++, 0, r->p, r->len, NULL, 0);
    } else if (t == 6) {
        if (r->len < 3)
            return;
        uint16_t type = (uint16_t)(r->p[0] << 8 | r->p[1]);
        uint32_t pl = MIN(r->p[2], r->len - 3);
        send_frame(k, type, k->next_id++, 0, r->p + 3 + pl, r->len - 3 - pl, r->p + 3, pl);
    } else {
        k->sent--;
        settle();
        return;
    }
    /* Unless the record says otherwise, wait for the answer (a commit, a
     * probe), so that the order of the records is the order in which the
     * MDM sees them, across the clients too. */
    for (int i = 0; i < 64 && !(r->kind & 0x40) && k->fd >= 0 && k->answered < k->sent; i++)
        step();
    step();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int baseline = -1;
    if (baseline < 0) {
        setup();
        baseline = handles();
    }
    if (size < 1)
        return 0;
    flags = data[0];
    data++, size--;
    restore();
    connect_client(&cl[0]);
    connect_client(&cl[1]);
    struct fz_rec rec;
    for (int n = 0; fz_next(&data, &size, &rec) && n < 64; n++)
        run_record(&rec);
    settle();
    /* The clients leave: their sessions close, their probes and proposals
     * are orphaned, and what is queued still commits. */
    for (int i = 0; i < 2; i++)
        if (cl[i].fd >= 0) {
            close(cl[i].fd);
            cl[i].fd = -1;
        }
    for (int i = 0;; i++) {
        int busy = n_log > 0 || handles() != baseline;
        for (size_t j = 0; !busy && j < ARRAY_SIZE(M.sessions); j++)
            busy = M.sessions[j] != NULL;
        for (size_t j = 0; !busy && j < ARRAY_SIZE(M.proposals); j++)
            busy = M.proposals[j] != NULL;
        for (size_t j = 0; !busy && j < ARRAY_SIZE(M.probes); j++)
            busy = M.probes[j] != NULL;
        if (!busy)
            break;
        if (i > 10000) {
            fprintf(stderr, "the MDM holds sessions, proposals, probes or handles of clients "
                            "that left\n");
            abort();
        }
        mdm_detector_cancel_checks(&M); /* its SDSs have no port to check */
        uv_run(M.loop, UV_RUN_NOWAIT);
    }
    char err[512];
    if (cmap_check(M.st.m, err, sizeof(err)) < 0) {
        fprintf(stderr, "the map fails its check: %s\n", err);
        abort();
    }
    return 0;
}
