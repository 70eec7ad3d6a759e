/* cairn's one request to the MDM: connect, send, wait for the reply on the
 * default loop, close. The CLI is a client of the MDM's request API and
 * nothing more; validation and its messages live in the MDM.
 *
 * --mdm (or $CAIRN_MDM) may list several MDMs, "a,b,c". The request goes to
 * the first that answers; an MDM that is not the leader refuses it before
 * proposing anything and names the leader, and the request is sent there.
 * While no leader is known (an election), the list is tried again every
 * 200 ms. The whole exchange, the election wait and the reply included,
 * ends within the wait (--mdm-timeout, 30 s by default): a try still
 * connecting or waiting for its reply then is abandoned.
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
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli.h"
#include "rpc.h"
#include "util.h"

#define CLI_MAX_MDMS 16
/* A connection (TCP and the handshake) not made within this is given up
 * and the next MDM tried: one unreachable MDM (a cut link drops the SYNs;
 * nothing refuses them) must not hold up the others. */
#define CLI_CONNECT_MS 2000

static unsigned call_timeout_ms = 30000;
static unsigned wait_ms = 30000;
static int local_status;

void cli_mdm_set_wait(unsigned ms)
{
    wait_ms = ms;
}

int cli_mdm_set_wait_arg(const char *v)
{
    if (!v)
        return 0;
    char *end;
    double s = strtod(v, &end);
    if (end == v || *end || !(s >= 0.1 && s <= 3600))
        return -cli_fail("--mdm-timeout takes seconds, from 0.1 to 3600, not '%s'", v);
    cli_mdm_set_wait((unsigned)(s * 1000));
    return 0;
}

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
    int expired; /* the timer ran out before the MDM answered */
    unsigned timeout_ms;
    uint64_t end_ms;       /* the wait's end */
    struct rpc_conn *conn; /* connecting or connected, until done */
    uv_timer_t timer;      /* the connection's limit, then the wait's end */
    Cairn__MgmtReply *rep;
    Cairn__MgmtRequest *req;
};

static void call_finished(struct call *call, int status)
{
    call->done = 1;
    call->status = status;
    call->conn = NULL;
    uv_timer_stop(&call->timer);
}

/* No connection in time, or the wait is over: abandon the connection (its
 * callbacks then finish the call with a failure). */
static void expire_cb(uv_timer_t *t)
{
    struct call *call = t->data;
    if (call->done || !call->conn)
        return;
    call->expired = 1;
    rpc_close(call->conn);
}

static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)payload_len;
    struct call *call = arg;
    rpc_buf_free(payload);
    call_finished(call, status);
    if (msg)
        call->rep = cairn__mgmt_reply__unpack(NULL, msg_len, msg);
    rpc_close(c);
}

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct call *call = arg;
    if (status < 0) {
        call_finished(call, status);
        return;
    }
    call->conn = c;
    /* connected: the rest of the wait is the reply's */
    uint64_t now = now_ms();
    uv_timer_start(&call->timer, expire_cb, call->end_ms > now ? call->end_ms - now : 0, 0);
    call->req->local = local_status && call->req->op == CAIRN__MGMT_OP__OP_STATUS;
    int r = rpc_call_pb(c, FT_MGMT, &call->req->base, call->timeout_ms, reply_cb, call);
    call->sent = r >= 0;
    if (r < 0) {
        call_finished(call, r);
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

/* One try at one MDM, given left_ms of the wait. 0 with *out set; else
 * -errno with err set, *sent 0 if the request never left, 1 if it left and
 * no answer came, 2 if the MDM answered; and leader[] the leader's address
 * if the MDM refused it as not the leader and named one. */
static int call_one(const char *addr, Cairn__MgmtRequest *req, unsigned left_ms,
                    Cairn__MgmtReply **out, char *err, size_t errlen, int *sent, char *leader,
                    size_t leaderlen)
{
    uv_loop_t *loop = uv_default_loop();
    struct call call = {.req = req,
                        .timeout_ms = left_ms < call_timeout_ms ? left_ms : call_timeout_ms,
                        .end_ms = now_ms() + left_ms};
    static const struct rpc_handlers h = {.on_request = on_req_unexpected,
                                          .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    *out = NULL;
    *sent = 0;
    err[0] = 0;
    leader[0] = 0;
    int r = rpc_connect_cancelable(loop, addr, &h, NULL, connect_cb, &call, &call.conn);
    if (r < 0) {
        snprintf(err, errlen, "cannot reach the MDM at %s: %s", addr, uv_strerror(r));
        return r;
    }
    uv_timer_init(loop, &call.timer);
    call.timer.data = &call;
    uv_timer_start(&call.timer, expire_cb, left_ms < CLI_CONNECT_MS ? left_ms : CLI_CONNECT_MS, 0);
    /* runs until the connection is closed (by reply_cb, or on a failure)
     * and the timer stopped */
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&call.timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    *sent = call.rep ? 2 : call.sent;
    if (!call.rep && (call.expired || call.status == -ETIMEDOUT)) {
        if (call.sent && req->op != CAIRN__MGMT_OP__OP_STATUS)
            snprintf(err, errlen,
                     "no answer from the MDM at %s within %.1f s; whether the change was made "
                     "is unknown (check with 'cairn status')",
                     addr, (double)call.timeout_ms / 1000);
        else if (call.sent)
            snprintf(err, errlen, "no answer from the MDM at %s within %.1f s", addr,
                     (double)call.timeout_ms / 1000);
        else
            snprintf(err, errlen, "cannot reach the MDM at %s: no connection within %.1f s", addr,
                     (double)(left_ms < CLI_CONNECT_MS ? left_ms : CLI_CONNECT_MS) / 1000);
        return -ETIMEDOUT;
    }
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
    uint64_t start = now_ms(), deadline = start + wait_ms;
    char leader[256] = "", named[256], took[256] = "";
    char no_leader[512] = ""; /* the last refusal naming no leader */
    int hops = 0, r = -EAGAIN;
    for (;;) {
        int electing = 0;
        for (int i = leader[0] ? -1 : 0; i < n; i++) {
            const char *a = i < 0 ? leader : mdms[i];
            int sent;
            uint64_t now = now_ms();
            if (now >= deadline)
                break;
            r = call_one(a, req, (unsigned)(deadline - now), out, err, errlen, &sent, named,
                         sizeof(named));
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
                if (r == -EAGAIN)
                    snprintf(no_leader, sizeof(no_leader), "%s", err);
                continue;
            }
            if (sent == 2 || sent == 1)
                return r; /* the MDM's answer, or a change whose outcome is unknown */
            /* this MDM never took it: the next */
        }
        leader[0] = 0;
        uint64_t now = now_ms();
        if (took[0] && r < 0 && (!electing || now + 200 >= deadline)) {
            snprintf(err, errlen,
                     "the MDM at %s took the change but gave no outcome (it stopped leading, or "
                     "its connection broke), and no MDM answered it in the %.1f s after: whether "
                     "the change was made is unknown (check with 'cairn status'; sent again, it "
                     "would be made at most once)",
                     took, (double)(now - start) / 1000);
            return r;
        }
        if (now + 200 >= deadline && (electing || no_leader[0])) {
            /* out of time waiting for a leader (the last pass may have been
             * cut short: say what the MDMs said, not that it was) */
            char last[512];
            snprintf(last, sizeof(last), "%s", no_leader[0] ? no_leader : err);
            snprintf(err, errlen,
                     "no MDM leads after %.1f s (an election under way, or too few MDMs "
                     "reachable for a majority); the last answer: %s",
                     (double)(now - start) / 1000, last);
            return r < 0 ? r : -EAGAIN;
        }
        if (!electing)
            return r;
        hops = 0;
        uv_sleep(200);
    }
}

int cli_mdm_call(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **out)
{
    char err[512];
    int r = cli_mdm_call_quiet(addr, req, out, err, sizeof(err));
    if (r < 0)
        cli_fail("%s", err);
    return r;
}
