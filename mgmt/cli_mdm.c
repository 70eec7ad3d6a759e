/* cairn's one request to the MDM: connect, send, wait for the reply on the
 * default loop, close. The CLI is a client of the MDM's request API and
 * nothing more; validation and its messages live in the MDM.
 *
 * --mdm (or $CAIRN_MDM) may list several MDMs, "a,b,c". The request goes to
 * the first that answers; an MDM that is not the leader refuses it before
 * proposing anything and names the leader, and the request is sent there.
 * While no leader is known (an election), the list is tried again every
 * 200 ms for up to CLI_LEADER_WAIT_MS.
 *
 * Every change the state machine applies carries a request id, random and
 * non-zero, the same on every resend: the MDMs apply an id once and answer
 * a repeat with the first outcome (mgmt/state_reqids.c). So a change is
 * sent again not only when no MDM took it (refused as not the leader, its
 * connection never made) but also when one took it and did not answer (its
 * connection broke, it timed out, or it stopped leading before the change
 * was committed): it may have been applied, and then the repeat is answered
 * with that outcome. A change without an id (the MDM membership changes,
 * which are not entries of the state machine) is not sent again once an MDM
 * took it: the CLI says that its outcome is unknown. A status query is
 * always sent again. So no change is ever applied twice. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli.h"
#include "rpc.h"
#include "util.h"

#define CLI_LEADER_WAIT_MS 30000
#define CLI_MAX_MDMS 16

static unsigned call_timeout_ms = 30000;
static int local_status;

void cli_mdm_set_call_timeout(unsigned ms)
{
    call_timeout_ms = ms;
}

void cli_mdm_set_local(int local)
{
    local_status = local;
}

struct call {
    int done;
    int sent; /* the request left: its outcome is the MDM's */
    int status;
    Cairn__MgmtReply *rep;
    Cairn__MgmtRequest *req;
};

static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)payload_len;
    struct call *call = arg;
    rpc_buf_free(payload);
    call->status = status;
    call->done = 1;
    if (msg)
        call->rep = cairn__mgmt_reply__unpack(NULL, msg_len, msg);
    rpc_close(c);
}

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct call *call = arg;
    if (status < 0) {
        call->done = 1;
        call->status = status;
        return;
    }
    call->req->local = local_status && call->req->op == CAIRN__MGMT_OP__OP_STATUS;
    int r = rpc_call_pb(c, FT_MGMT, &call->req->base, call_timeout_ms, reply_cb, call);
    call->sent = r >= 0;
    if (r < 0) {
        call->done = 1;
        call->status = r;
        rpc_close(c);
    }
}

/* The MDM never sends the CLI a request: such a peer is not our MDM. */
static void on_req_unexpected(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *m,
                              uint8_t *p)
{
    (void)h;
    (void)m;
    rpc_buf_free(p);
    rpc_close(c);
}

/* One try at one MDM. 0 with *out set; else -errno with err set, *sent 0
 * if the request never left, 1 if it left and no answer came, 2 if the MDM
 * answered; and leader[] the leader's address if the MDM refused it as not
 * the leader and named one. */
static int call_one(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **out, char *err,
                    size_t errlen, int *sent, char *leader, size_t leaderlen)
{
    uv_loop_t *loop = uv_default_loop();
    struct call call = {.req = req};
    static const struct rpc_handlers h = {.on_request = on_req_unexpected,
                                          .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    *out = NULL;
    *sent = 0;
    err[0] = 0;
    leader[0] = 0;
    int r = rpc_connect(loop, addr, &h, NULL, connect_cb, &call);
    if (r < 0) {
        snprintf(err, errlen, "cannot reach the MDM at %s: %s", addr, uv_strerror(r));
        return r;
    }
    /* runs until the connection is closed: by reply_cb, or on a failure */
    uv_run(loop, UV_RUN_DEFAULT);
    *sent = call.rep ? 2 : call.sent;
    if (!call.rep) {
        if (call.status == -ECONNREFUSED)
            snprintf(err, errlen,
                     "cannot reach the MDM at %s: connection refused (is cairn-mdm running?)",
                     addr);
        else if (call.sent && req->op != CAIRN__MGMT_OP__OP_STATUS)
            snprintf(err, errlen,
                     "request to the MDM at %s failed: %s; whether the change was made is "
                     "unknown (check with 'cairn status')",
                     addr, strerror(-call.status));
        else
            snprintf(err, errlen, "request to the MDM at %s failed: %s", addr,
                     strerror(-call.status));
        return call.status < 0 ? call.status : -EPROTO;
    }
    if (call.status < 0) {
        /* the MDM's own words first: they name the object and the reason */
        snprintf(err, errlen, "%s", call.rep->error[0] ? call.rep->error : strerror(-call.status));
        if (call.status == -EAGAIN && call.rep->leader_addr)
            snprintf(leader, leaderlen, "%s", call.rep->leader_addr);
        cairn__mgmt_reply__free_unpacked(call.rep, NULL);
        return call.status;
    }
    *out = call.rep;
    return 0;
}

/* A change the MDMs' state machine applies (so it takes a request id): not
 * a query, not a change of the MDM cluster's membership (Raft's own). */
static int takes_request_id(int op)
{
    switch (op) {
    case CAIRN__MGMT_OP__OP_NONE:
    case CAIRN__MGMT_OP__OP_STATUS:
    case CAIRN__MGMT_OP__OP_MDM_ADD:
    case CAIRN__MGMT_OP__OP_MDM_REMOVE:
    case CAIRN__MGMT_OP__OP_MDM_TRANSFER: return 0;
    default: return 1;
    }
}

static uint64_t random_request_id(void)
{
    uint64_t id = 0;
    while (!id)
        if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
            id = now_ms() ^ ((uint64_t)getpid() << 32); /* no entropy source: still unique */
    return id;
}

int cli_mdm_call_quiet(const char *addrs, Cairn__MgmtRequest *req, Cairn__MgmtReply **out,
                       char *err, size_t errlen)
{
    char list[1024], *mdms[CLI_MAX_MDMS];
    snprintf(list, sizeof(list), "%s", addrs);
    int n = addr_list_split(list, mdms, CLI_MAX_MDMS);
    if (n == 0) {
        snprintf(err, errlen, "no MDM address given (--mdm HOST:PORT[,HOST:PORT...])");
        return -EINVAL;
    }
    if (takes_request_id(req->op) && !req->request_id)
        req->request_id = random_request_id(); /* kept on every resend */
    /* a repeat is harmless: a query, or a change the MDMs apply once */
    int resend = req->op == CAIRN__MGMT_OP__OP_STATUS || req->request_id;
    uint64_t deadline = now_ms() + CLI_LEADER_WAIT_MS;
    char leader[256] = "", named[256], took[256] = "";
    int hops = 0, r = -EAGAIN;
    for (;;) {
        int electing = 0;
        for (int i = leader[0] ? -1 : 0; i < n; i++) {
            const char *a = i < 0 ? leader : mdms[i];
            int sent;
            r = call_one(a, req, out, err, errlen, &sent, named, sizeof(named));
            if (r == 0)
                return 0;
            if (r == -EAGAIN && named[0] && strcmp(named, a) && hops++ < 8) {
                snprintf(leader, sizeof(leader), "%s", named); /* go there */
                i = -2;
                continue;
            }
            /* it took the request and has no outcome: no answer, or it
             * stopped leading before the change was committed */
            int lost = resend && (sent == 1 || r == -ECANCELED);
            if (lost && req->op != CAIRN__MGMT_OP__OP_STATUS)
                snprintf(took, sizeof(took), "%s", a);
            if (r == -EAGAIN || (i < 0 && sent == 0) || lost) {
                /* no leader yet, or the one named is gone, or the leader
                 * lost the change: an election is due; ask the next, then
                 * all again */
                electing = 1;
                continue;
            }
            if (sent == 2 || sent == 1)
                return r; /* the MDM's answer, or a change whose outcome is unknown */
            /* this MDM never took it: the next */
        }
        leader[0] = 0;
        if (!electing || now_ms() >= deadline)
            break;
        hops = 0;
        uv_sleep(200);
    }
    if (took[0] && r < 0)
        snprintf(err, errlen,
                 "the MDM at %s took the change but did not answer, and no MDM answered it in "
                 "the %d s after: whether the change was made is unknown (check with 'cairn "
                 "status'; sent again, it would be made at most once)",
                 took, CLI_LEADER_WAIT_MS / 1000);
    return r;
}

int cli_mdm_call(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **out)
{
    char err[512];
    int r = cli_mdm_call_quiet(addr, req, out, err, sizeof(err));
    if (r < 0)
        cli_fail("%s", err);
    return r;
}
