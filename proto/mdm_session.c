#include "mdm_session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define SESSION_MAX_MDMS 16
/* A heartbeat unanswered for this long means the MDM is gone (stopped, cut
 * off: nothing resets the connection), and the session tries the others. It
 * must be well under the MDM's --sds-timeout (2 s at least), which a new
 * leader gives every SDS from its election (itself 1-2.5 s after the old
 * leader went silent): the session must be with the new leader before that
 * runs out. A false alarm (a leader too busy to answer) costs a reconnect. */
#define SESSION_HB_TIMEOUT_MS 1500
/* A connection not made within this is abandoned for the next MDM. */
#define SESSION_CONNECT_MS 1000

struct mdm_session {
    uv_loop_t *loop;
    char addr[128];  /* the MDM connected or being tried */
    char list[1024]; /* every MDM given, "a,b,c" */
    char *mdms[SESSION_MAX_MDMS];
    int n_mdms, next; /* the list, and where the next try starts */
    char leader[128]; /* named by an MDM that is not the leader: try it first */
    int tries;        /* connects this tick: each MDM once, then wait */
    struct mdm_session_ops ops;
    void *ctx;
    uv_timer_t timer;
    struct rpc_conn *conn;
    struct rpc_conn *pending; /* the connection being made */
    uint64_t connect_at;      /* when it started */
    int connecting, registered, fetching, stopping;
    uint64_t announced; /* the newest version the MDM announced */
};

static void send_heartbeat(struct mdm_session *s);
static void try_connect(struct mdm_session *s);

/* This MDM is not the leader (status -EAGAIN, with the leader's address if
 * it named one in its MapReply): leave it and try the leader, or the next
 * MDM of the list. */
static void not_leader(struct mdm_session *s, struct rpc_conn *c, const uint8_t *msg,
                       uint32_t msg_len)
{
    Cairn__MapReply *rep = msg ? cairn__map_reply__unpack(NULL, msg_len, msg) : NULL;
    if (rep && rep->leader_addr[0] && strcmp(rep->leader_addr, s->addr))
        snprintf(s->leader, sizeof(s->leader), "%s", rep->leader_addr);
    LOG_LIMITED(LOG_INFO, 5000, "the MDM at %s is not the leader%s%s", s->addr,
                s->leader[0] ? "; going to " : " (no leader yet)", s->leader);
    if (rep)
        cairn__map_reply__free_unpacked(rep, NULL);
    if (s->conn == c) {
        s->conn = NULL;
        s->registered = 0;
        s->fetching = 0;
        rpc_set_data(c, NULL);
        rpc_close(c);
    }
    try_connect(s);
}

static void map_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                         uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)payload_len;
    struct mdm_session *s = arg;
    rpc_buf_free(payload);
    s->fetching = 0;
    if (status == -EAGAIN) {
        not_leader(s, c, msg, msg_len);
        return;
    }
    Cairn__MapReply *rep = msg ? cairn__map_reply__unpack(NULL, msg_len, msg) : NULL;
    if (status < 0) {
        if (status != -ECONNRESET)
            log_warn("the MDM refused us: %s",
                     rep && rep->error[0] ? rep->error : strerror(-status));
    } else if (!rep || !rep->map) {
        log_warn("malformed map from the MDM at %s", s->addr);
    } else {
        int first = !s->registered; /* the registration's answer */
        s->registered = 1;
        s->ops.on_map(s->ctx, rep);
        if (s->ops.map_version(s->ctx) < s->announced) {
            /* announced while this was on its way: once more (only once,
             * whatever the MDM announced; heartbeats do the rest) */
            s->announced = 0;
            mdm_session_fetch_map(s);
        } else if ((first || s->ops.report_map_at_once) && s->conn) {
            send_heartbeat(s); /* the MDM learns at once which map we hold */
        }
        return;
    }
    if (rep)
        cairn__map_reply__free_unpacked(rep, NULL);
}

void mdm_session_fetch_map(struct mdm_session *s)
{
    if (!s->conn || s->fetching)
        return;
    if (rpc_call(s->conn, FT_MAP_GET, NULL, 0, NULL, 0, 10000, map_reply_cb, s) == 0)
        s->fetching = 1;
}

static void do_register(struct mdm_session *s)
{
    if (s->fetching)
        return;
    if (rpc_call_pb(s->conn, s->ops.register_type, s->ops.registration(s->ctx), 10000, map_reply_cb,
                    s) == 0)
        s->fetching = 1;
}

struct hb_call {
    struct mdm_session *s;
    uint64_t sent_ms;
};

static void hb_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                        uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)payload_len;
    struct hb_call *call = arg;
    struct mdm_session *s = call->s;
    uint64_t sent = call->sent_ms;
    free(call);
    rpc_buf_free(payload);
    if (status == -EAGAIN && s->conn == c) {
        not_leader(s, c, msg, msg_len); /* it stepped down */
        return;
    }
    if (status == -ETIMEDOUT && s->conn == c) {
        log_warn("the MDM at %s did not answer for %d ms; trying the others", s->addr,
                 SESSION_HB_TIMEOUT_MS);
        s->conn = NULL;
        s->registered = 0;
        s->fetching = 0;
        rpc_set_data(c, NULL);
        rpc_close(c);
        try_connect(s);
        return;
    }
    if (status < 0 || !msg)
        return;
    Cairn__HeartbeatReply *rep = cairn__heartbeat_reply__unpack(NULL, msg_len, msg);
    int current = rep && rep->map_version == s->ops.map_version(s->ctx);
    if (rep && s->ops.on_heartbeat_ack)
        s->ops.on_heartbeat_ack(s->ctx, sent, current, rep->demoted_version);
    if (rep && !current)
        mdm_session_fetch_map(s);
    if (rep)
        cairn__heartbeat_reply__free_unpacked(rep, NULL);
}

static void close_cb(struct rpc_conn *c)
{
    struct mdm_session *s = rpc_data(c);
    if (!s || s->conn != c)
        return;
    s->conn = NULL;
    s->registered = 0;
    s->fetching = 0;
    if (!s->stopping)
        log_warn("lost the MDM at %s; I/O continues on map version %llu", s->addr,
                 (unsigned long long)s->ops.map_version(s->ctx));
}

/* Requests from the MDM: a new map announced (fetched now unless held or
 * on its way), or the daemon's own (ops.on_request). */
static void request_cb(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                       uint8_t *payload)
{
    struct mdm_session *s = rpc_data(c);
    if (s && h->type == FT_MAP_NOTIFY) {
        rpc_buf_free(payload);
        if (h->msg_len != 8) {
            rpc_reply(c, h, -EINVAL, NULL, 0, NULL, 0, NULL, NULL);
            return;
        }
        uint64_t v = get_be64(msg);
        rpc_reply(c, h, 0, NULL, 0, NULL, 0, NULL, NULL);
        if (v > s->announced)
            s->announced = v;
        if (s->registered && v > s->ops.map_version(s->ctx))
            mdm_session_fetch_map(s);
        return;
    }
    if (s && s->ops.on_request) {
        s->ops.on_request(c, h, msg, payload);
        return;
    }
    rpc_buf_free(payload);
    rpc_reply(c, h, -EOPNOTSUPP, NULL, 0, NULL, 0, NULL, NULL);
}

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct mdm_session *s = arg;
    s->connecting = 0;
    s->pending = NULL;
    if (status < 0) {
        try_connect(s); /* the next MDM, if this tick has not tried them all */
        return;
    }
    if (s->stopping) {
        rpc_set_data(c, NULL);
        rpc_close(c);
        return;
    }
    s->conn = c;
    log_info("connected to the MDM at %s", s->addr);
    do_register(s);
}

/* Connect to the leader an MDM named, else to the next MDM of the list;
 * at most once per MDM (and the leader) each tick. */
static void try_connect(struct mdm_session *s)
{
    if (s->connecting || s->conn || s->stopping || s->tries > s->n_mdms)
        return;
    s->tries++;
    if (s->leader[0]) {
        snprintf(s->addr, sizeof(s->addr), "%s", s->leader);
        s->leader[0] = 0;
    } else {
        snprintf(s->addr, sizeof(s->addr), "%s", s->mdms[s->next]);
        s->next = (s->next + 1) % s->n_mdms;
    }
    static const struct rpc_handlers h = {
        .on_request = request_cb, .on_close = close_cb, .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    s->connecting = 1;
    s->connect_at = now_ms();
    if (rpc_connect_cancelable(s->loop, s->addr, &h, s, connect_cb, s, &s->pending) < 0) {
        s->connecting = 0;
        s->pending = NULL;
    }
}

static void tick_cb(uv_timer_t *t)
{
    struct mdm_session *s = t->data;
    s->tries = 0;
    if (s->connecting && s->pending && now_ms() - s->connect_at >= SESSION_CONNECT_MS) {
        /* no answer (a cut link drops the SYNs): connect_cb runs with a
         * failure, and tries the next */
        rpc_close(s->pending);
        return;
    }
    if (!s->conn) {
        try_connect(s);
        return;
    }
    if (!s->registered) {
        do_register(s); /* refused earlier: try again */
        return;
    }
    send_heartbeat(s);
}

static void send_heartbeat(struct mdm_session *s)
{
    Cairn__Heartbeat hb = CAIRN__HEARTBEAT__INIT;
    if (s->ops.heartbeat)
        s->ops.heartbeat(s->ctx, &hb);
    hb.map_version = s->ops.map_version(s->ctx);
    struct hb_call *call = malloc(sizeof(*call));
    if (!call)
        return;
    call->s = s;
    call->sent_ms = now_ms();
    if (rpc_call_pb(s->conn, FT_HEARTBEAT, &hb.base, SESSION_HB_TIMEOUT_MS, hb_reply_cb, call) < 0)
        free(call);
}

struct mdm_session *mdm_session_start(uv_loop_t *loop, const char *addr,
                                      const struct mdm_session_ops *ops, void *ctx,
                                      unsigned interval_ms)
{
    struct mdm_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = loop;
    snprintf(s->list, sizeof(s->list), "%s", addr);
    s->n_mdms = addr_list_split(s->list, s->mdms, SESSION_MAX_MDMS);
    if (s->n_mdms == 0) {
        free(s);
        return NULL;
    }
    snprintf(s->addr, sizeof(s->addr), "%s", s->mdms[0]);
    s->ops = *ops;
    s->ctx = ctx;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, tick_cb, 0, interval_ms);
    return s;
}

void *mdm_session_ctx(const struct mdm_session *s)
{
    return s->ctx;
}

struct rpc_conn *mdm_session_conn(const struct mdm_session *s)
{
    return s->conn;
}

void mdm_session_stop(struct mdm_session *s)
{
    /* The session object outlives the loop's last callbacks: it is small and
     * freed with the process. */
    s->stopping = 1;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
    if (s->conn)
        rpc_close(s->conn);
}
