/* cairn's one request to the MDM: connect, send, wait for the reply on the
 * default loop, close. The CLI is a client of the MDM's request API and
 * nothing more; validation and its messages live in the MDM. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "rpc.h"

struct call {
    int done;
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
    int r = rpc_call_pb(c, FT_MGMT, &call->req->base, 30000, reply_cb, call);
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

int cli_mdm_call_quiet(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **out, char *err,
                       size_t errlen)
{
    uv_loop_t *loop = uv_default_loop();
    struct call call = {.req = req};
    static const struct rpc_handlers h = {.on_request = on_req_unexpected,
                                          .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    *out = NULL;
    err[0] = 0;
    int r = rpc_connect(loop, addr, &h, NULL, connect_cb, &call);
    if (r < 0) {
        snprintf(err, errlen, "cannot reach the MDM at %s: %s", addr, uv_strerror(r));
        return r;
    }
    /* runs until the connection is closed: by reply_cb, or on a failure */
    uv_run(loop, UV_RUN_DEFAULT);
    if (!call.rep) {
        if (call.status == -ECONNREFUSED)
            snprintf(err, errlen,
                     "cannot reach the MDM at %s: connection refused (is cairn-mdm running?)",
                     addr);
        else
            snprintf(err, errlen, "request to the MDM at %s failed: %s", addr,
                     strerror(-call.status));
        return call.status < 0 ? call.status : -EPROTO;
    }
    if (call.status < 0) {
        /* the MDM's own words first: they name the object and the reason */
        snprintf(err, errlen, "%s", call.rep->error[0] ? call.rep->error : strerror(-call.status));
        cairn__mgmt_reply__free_unpacked(call.rep, NULL);
        return call.status;
    }
    *out = call.rep;
    return 0;
}

int cli_mdm_call(const char *addr, Cairn__MgmtRequest *req, Cairn__MgmtReply **out)
{
    char err[512];
    int r = cli_mdm_call_quiet(addr, req, out, err, sizeof(err));
    if (r < 0)
        cli_fail("%s", err);
    return r;
}
