/* The REST API's calls to the MDMs' request API, and how a follower's are
 * carried out by the leader.
 *
 * A call goes to this MDM's own request API (m->listen_addr), over one
 * persistent RPC connection, made again every REST_RETRY_MS while it is
 * lost; or, when this MDM is a follower that knows the leader, to the
 * leader's request API, over a second persistent connection. An MDM that
 * is not the leader refuses a change (and a status: the leader alone holds
 * the soft state, connections, usage, I/O rates) before proposing
 * anything, and names the leader's request API: the same MgmtRequest, byte
 * for byte, is then sent there. The leader's answer is the HTTP client's.
 *
 * Why the request API and not the leader's HTTP server: it is what the CLI
 * does (mgmt/cli_mdm.c), so a forwarded change goes through the same
 * validation, request ids and audit as any other. The link is made with
 * this MDM's own credential (role mdm), which the leader's audit log trusts
 * with MgmtRequest.via, so the leader's entry names the HTTP client; and
 * every MDM already knows every leader's request API address (the reply's
 * leader_addr), while nothing replicates the MDMs' HTTP addresses. The
 * HTTP token is checked here, before anything is sent (rest.c).
 *
 * Every change carries a request id (the client's Idempotency-Key, or a
 * random one), kept on every resend, so it is applied once. A call is sent
 * again, via this MDM (which names the current leader), when no leader is
 * known yet, when the leader named cannot be reached, or when the leader
 * took it and went away or lost its leadership before answering: the new
 * leader applies the change once or answers with its first outcome. Such
 * waits are bounded: after REST_LEADER_WAIT_MS with no leader the HTTP
 * client gets a 503 "no leader yet; retry". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "mdm.h"
#include "raft_link.h"
#include "rest.h"
#include "util.h"

#define REST_RETRY_MS 500
#define REST_CALL_TIMEOUT_MS 30000
/* HTTP requests waiting for an MDM at once; the HTTP server takes 64
 * connections, so this is only a bound. */
#define REST_MAX_WAITING 256
/* How long a request waits for a leader (an election) before its client is
 * answered 503, and how often it asks again meanwhile: an election takes
 * a second or two, and the dashboard polls every second. */
#define REST_LEADER_WAIT_MS 4000
#define REST_TICK_MS 200
/* Redirects followed in a row, as the CLI does: leaders that name each
 * other are in the middle of a change of leader. */
#define REST_MAX_HOPS 8

static void link_connect(struct rest_link *l);

uint64_t rest_request_id(const char *key)
{
    uint64_t id = 0;
    if (key && key[0]) {
        /* FNV-1a: the same key is the same id on every MDM */
        id = 0xcbf29ce484222325ull;
        for (const unsigned char *p = (const unsigned char *)key; *p; p++)
            id = (id ^ *p) * 0x100000001b3ull;
    } else if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
        id = now_ms() ^ ((uint64_t)getpid() << 32); /* no entropy source: still unique */
    }
    return id ? id : 1;
}

/* ---- the lists: calls in flight, and requests waiting for a leader ---- */

static struct rest_req **list_of(struct mdm_rest *rest, enum rest_req_list l)
{
    return l == REST_Q_WAITING ? &rest->waiting : l == REST_Q_PARKED ? &rest->parked : &rest->later;
}

static void unlist(struct rest_req *q)
{
    struct mdm_rest *rest = q->rest;
    if (q->listed == REST_Q_NONE)
        return;
    if (q->prev)
        q->prev->next = q->next;
    else
        *list_of(rest, q->listed) = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (q->listed == REST_Q_WAITING)
        rest->n_waiting--;
    q->prev = q->next = NULL;
    q->listed = REST_Q_NONE;
}

static void enlist(struct rest_req *q, enum rest_req_list l)
{
    struct rest_req **head = list_of(q->rest, l);
    q->prev = NULL;
    q->next = *head;
    if (*head)
        (*head)->prev = q;
    *head = q;
    q->listed = l;
    if (l == REST_Q_WAITING)
        q->rest->n_waiting++;
}

/* ---- the links ---- */

static void retry_cb(uv_timer_t *t)
{
    struct mdm_rest *rest = t->data;
    if (!rest->stopping && !rest->self.conn && !rest->self.connecting)
        link_connect(&rest->self);
}

static void link_lost(struct rest_link *l, const char *why)
{
    struct mdm_rest *rest = l->rest;
    if (l != &rest->self) {
        /* during an election, every tick may try a leader that is gone */
        LOG_LIMITED(LOG_INFO, 2000, "mdm: REST API: %s the leader's request API at %s", why,
                    l->trying);
        return; /* made again when a request needs it */
    }
    if (!l->lost)
        log_warn("mdm: REST API: %s the request API at %s; retrying every %d ms", why, l->trying,
                 REST_RETRY_MS);
    l->lost = 1;
    if (!rest->stopping)
        uv_timer_start(&rest->retry, retry_cb, REST_RETRY_MS, 0);
}

/* The MDM never sends its clients requests: such a peer is not our MDM. */
static void on_unexpected_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                                  uint8_t *payload)
{
    (void)h;
    (void)msg;
    rpc_buf_free(payload);
    log_warn("mdm: REST API: unexpected request from %s; closing", rpc_peer(c));
    rpc_close(c);
}

/* Runs after the RPC layer failed every call still waiting on c. */
static void on_conn_close(struct rpc_conn *c)
{
    struct rest_link *l = rpc_data(c);
    struct mdm_rest *rest = l->rest;
    if (l->conn != c) {
        /* closed on purpose: the leader moved, or a connection came late */
        rest->closing--;
        rest_maybe_free(rest);
        return;
    }
    l->conn = NULL;
    if (rest->stopping)
        rest_maybe_free(rest);
    else
        link_lost(l, "lost its connection to");
}

static void tick_pass(struct mdm_rest *rest);
static void tick_cb(uv_timer_t *t);

static void connect_cb(struct rpc_conn *c, int status, void *arg)
{
    struct rest_link *l = arg;
    struct mdm_rest *rest = l->rest;
    l->connecting = 0;
    if (rest->stopping || (c && strcmp(l->trying, l->addr))) {
        if (c) {
            rest->closing++; /* its on_close finds it is not l->conn */
            rpc_close(c);
        }
        if (rest->stopping)
            rest_maybe_free(rest);
        else
            link_connect(l); /* the leader moved meanwhile */
        return;
    }
    if (status < 0) {
        link_lost(l, "cannot connect to");
        /* the requests for that leader ask this MDM again at the next tick:
         * it may know of a new one by then */
        for (struct rest_req *q = rest->parked; l != &rest->self && q; q = q->next)
            if (!strcmp(q->target, l->trying))
                q->target[0] = 0;
        return;
    }
    l->conn = c;
    if (l->lost || l != &rest->self)
        log_info("mdm: REST API: connected to the request API at %s", l->addr);
    l->lost = 0;
    if (l != &rest->self)
        tick_pass(rest); /* the requests waiting for it */
}

static void link_connect(struct rest_link *l)
{
    static const struct rpc_handlers h = {.on_request = on_unexpected_request,
                                          .on_close = on_conn_close,
                                          .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    struct mdm_rest *rest = l->rest;
    snprintf(l->trying, sizeof(l->trying), "%s", l->addr);
    int r = rpc_connect(rest->m->loop, l->addr, &h, l, connect_cb, l);
    if (r < 0) {
        link_lost(l, "cannot connect to");
        return;
    }
    l->connecting = 1;
}

/* Point the leader's link at addr: a connection to another MDM is closed
 * (its calls fail, and are sent again), one to addr made. */
static void leader_want(struct mdm_rest *rest, const char *addr)
{
    struct rest_link *l = &rest->leader;
    if (strcmp(l->addr, addr)) {
        snprintf(l->addr, sizeof(l->addr), "%s", addr);
        if (l->conn) {
            struct rpc_conn *c = l->conn;
            l->conn = NULL;
            rest->closing++;
            rpc_close(c);
        }
    }
    if (!l->conn && !l->connecting)
        link_connect(l);
}

/* ---- calls ---- */

/* The leader's request API, when this MDM is a follower that knows it: a
 * call goes there at once (a stale one answers "not the leader" and names
 * the new leader, or fails, and the call is sent on or again). */
static const char *known_leader(struct mdm_rest *rest)
{
    struct mdm *m = rest->m;
    raft_id id = 0;
    const char *addr = NULL;
    if (mdm_is_leader(m))
        return NULL;
    raft_leader(&m->raft, &id, &addr);
    const char *client = addr && id != m->raft.id ? raft_link_client_addr(addr) : NULL;
    return client && client[0] && strcmp(client, m->listen_addr) ? client : NULL;
}

/* A call in flight at a leader that is no longer the one this MDM knows
 * (it lost its leadership, or was cut off and the others elected another,
 * or none yet) would wait for its timeout: the link is closed instead, and
 * its calls go to the leader known, or wait for one, a bounded time. */
static void leader_check(struct mdm_rest *rest)
{
    struct rest_link *l = &rest->leader;
    if (!l->conn || !rpc_pending(l->conn))
        return;
    const char *to = known_leader(rest);
    if (to && !strcmp(to, l->addr))
        return;
    log_info("mdm: REST API: the MDM at %s no longer leads; its calls are sent again", l->addr);
    struct rpc_conn *c = l->conn;
    l->conn = NULL;
    l->addr[0] = 0;
    rest->closing++;
    rpc_close(c); /* its calls fail: sent again, with their request ids */
}

/* Whether calls wait at the leader: the tick then watches the leader. */
static int leader_calls(const struct mdm_rest *rest)
{
    return rest->leader.conn && rpc_pending(rest->leader.conn);
}

static int send_on(struct rest_req *q, struct rest_link *l);
static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *payload, uint32_t payload_len, void *arg);

/* Wait for a leader: the tick sends q again (or gives up on it). */
static void park(struct rest_req *q)
{
    struct mdm_rest *rest = q->rest;
    enlist(q, REST_Q_PARKED);
    q->hops = 0;
    if (!uv_is_active((uv_handle_t *)&rest->tick))
        uv_timer_start(&rest->tick, tick_cb, REST_TICK_MS, REST_TICK_MS);
}

/* No leader came in time: 503, and free q. */
static void give_up(struct rest_req *q)
{
    char msg[512];
    if (q->took[0])
        snprintf(msg, sizeof(msg),
                 "no leader yet; retry: the leader at %s took the change and went away before "
                 "answering, and no MDM has led in the %.1f s since; whether it was made is "
                 "unknown (sent again with the same Idempotency-Key header, it is made at most "
                 "once)",
                 q->took, REST_LEADER_WAIT_MS / 1000.0);
    else
        snprintf(msg, sizeof(msg), "no leader yet; retry");
    rest_answer_req_error(q, 503, msg);
    q->free(q);
}

/* Send q again, where it is to go now; or wait on. */
static void resend(struct rest_req *q)
{
    struct mdm_rest *rest = q->rest;
    if (q->target[0]) {
        leader_want(rest, q->target);
        if (!rest->leader.conn) {
            if (!rest->leader.connecting)
                q->target[0] = 0; /* unreachable: ask this MDM who leads */
            if (now_ms() >= q->deadline)
                give_up(q);
            else
                park(q);
            return;
        }
    }
    int r = send_on(q, q->target[0] ? &rest->leader : &rest->self);
    if (r < 0)
        q->cb(q, r, NULL); /* q may be gone */
}

static void tick_cb(uv_timer_t *t)
{
    tick_pass(t->data);
}

static void tick_pass(struct mdm_rest *rest)
{
    leader_check(rest);
    /* take the list: the resends park some again */
    struct rest_req *q = rest->parked;
    rest->parked = NULL;
    uv_timer_stop(&rest->tick);
    for (struct rest_req *p = q; p; p = p->next)
        p->listed = REST_Q_NONE;
    while (q) {
        struct rest_req *next = q->next;
        q->prev = q->next = NULL;
        if (!q->target[0] && now_ms() >= q->deadline)
            give_up(q);
        else
            resend(q);
        q = next;
    }
    if (!uv_is_active((uv_handle_t *)&rest->tick) && leader_calls(rest))
        uv_timer_start(&rest->tick, tick_cb, REST_TICK_MS, REST_TICK_MS);
}

static int send_on(struct rest_req *q, struct rest_link *l)
{
    struct mdm_rest *rest = q->rest;
    if (rest->stopping || !l->conn || rpc_is_closing(l->conn))
        return -ENOTCONN;
    if (rest->n_waiting >= REST_MAX_WAITING)
        return -EBUSY;
    int r = rpc_call(l->conn, FT_MGMT, q->msg, (uint32_t)q->msg_len, NULL, 0, REST_CALL_TIMEOUT_MS,
                     reply_cb, q);
    if (r < 0)
        return r;
    q->link = l;
    snprintf(q->sent_to, sizeof(q->sent_to), "%s", l->addr);
    enlist(q, REST_Q_WAITING);
    if (l == &rest->leader && !uv_is_active((uv_handle_t *)&rest->tick))
        uv_timer_start(&rest->tick, tick_cb, REST_TICK_MS, REST_TICK_MS);
    return 0;
}

/* Whether a call may be sent again after an MDM took it: a query, or a
 * change with its request id (applied once). */
static int resendable(const struct rest_req *q)
{
    return q->op == CAIRN__MGMT_OP__OP_STATUS || q->request_id;
}

/* What to do with a reply: 1 if q was sent on (or parked), 0 to deliver. */
static int follow(struct rest_req *q, int status, const Cairn__MgmtReply *rep)
{
    struct mdm_rest *rest = q->rest;
    int from_leader = q->link == &rest->leader;
    if (status == -EAGAIN && rep) {
        /* not the leader: it names one, or none during an election */
        const char *to = rep->leader_addr;
        if (to[0] && strcmp(to, q->sent_to) && q->hops < REST_MAX_HOPS) {
            q->hops++;
            snprintf(q->target, sizeof(q->target), "%s",
                     strcmp(to, rest->m->listen_addr) ? to : "");
            resend(q);
            return 1;
        }
        q->target[0] = 0;
        park(q);
        return 1;
    }
    if (!resendable(q))
        return 0;
    if (status == -ECANCELED && rep) {
        /* the leader stopped leading before the change was committed */
        snprintf(q->took, sizeof(q->took), "%s", q->sent_to);
        q->target[0] = 0;
        park(q);
        return 1;
    }
    if (!rep && from_leader && (status == -ECONNRESET || status == -ETIMEDOUT)) {
        /* the leader went away with the call: ask again who leads */
        if (q->op != CAIRN__MGMT_OP__OP_STATUS)
            snprintf(q->took, sizeof(q->took), "%s", q->sent_to);
        q->target[0] = 0;
        park(q);
        return 1;
    }
    return 0;
}

static void reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                     uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)payload_len;
    struct rest_req *q = arg;
    struct mdm_rest *rest = q->rest;
    rpc_buf_free(payload);
    unlist(q);
    if (!q->http) {
        /* answered at shutdown */
        q->free(q);
        rest_maybe_free(rest);
        return;
    }
    Cairn__MgmtReply *rep = msg ? cairn__mgmt_reply__unpack(NULL, msg_len, msg) : NULL;
    if (!rep && status >= 0)
        status = -EPROTO;
    if (!rep && msg)
        log_warn("mdm: REST API: malformed reply from the request API at %s", q->sent_to);
    if (rest->stopping || !follow(q, status, rep)) {
        snprintf(q->answered_by, sizeof(q->answered_by), "%s", q->sent_to);
        /* "self" in a status is the MDM that answered; for the HTTP client
         * it is the one serving it (the dashboard's "serving this page") */
        for (size_t i = 0; rep && q->link == &rest->leader && i < rep->n_mdms; i++)
            rep->mdms[i]->self = rep->mdms[i]->id == rest->m->raft.id;
        q->cb(q, status, rep); /* q may be gone now */
    }
    if (rep)
        cairn__mgmt_reply__free_unpacked(rep, NULL);
}

/* Keep req, packed, in q for its sends. 0 or -ENOMEM. */
static int pack(struct rest_req *q, const Cairn__MgmtRequest *req)
{
    size_t len = cairn__mgmt_request__get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    cairn__mgmt_request__pack(req, buf);
    free(q->msg);
    q->msg = buf;
    q->msg_len = len;
    q->op = (int)req->op;
    q->request_id = req->request_id;
    return 0;
}

/* Send q's packed request: to the leader this MDM knows, or to this MDM. */
static int dispatch(struct rest_req *q)
{
    struct mdm_rest *rest = q->rest;
    q->deadline = now_ms() + REST_LEADER_WAIT_MS;
    q->hops = 0;
    q->target[0] = q->took[0] = 0;
    const char *to = known_leader(rest);
    if (to) {
        snprintf(q->target, sizeof(q->target), "%s", to);
        leader_want(rest, to);
        if (!rest->leader.conn && rest->leader.connecting) {
            park(q); /* sent once connected */
            return 0;
        }
        if (send_on(q, &rest->leader) == 0)
            return 0;
        q->target[0] = 0; /* this MDM names the leader, or says why not */
    }
    return send_on(q, &rest->self);
}

int rest_send(struct rest_req *q, const Cairn__MgmtRequest *req)
{
    int r = pack(q, req);
    return r < 0 ? r : dispatch(q);
}

static void later_cb(uv_timer_t *t)
{
    struct mdm_rest *rest = t->data;
    uint64_t now = now_ms(), next = 0;
    /* take the list: the ones not due yet go back on it */
    struct rest_req *q = rest->later;
    rest->later = NULL;
    for (struct rest_req *p = q; p; p = p->next)
        p->listed = REST_Q_NONE;
    while (q) {
        struct rest_req *nx = q->next;
        q->prev = q->next = NULL;
        if (q->not_before > now) {
            enlist(q, REST_Q_LATER);
            next = next && next < q->not_before ? next : q->not_before;
        } else {
            int r = dispatch(q);
            if (r < 0)
                q->cb(q, r, NULL); /* q may be gone */
        }
        q = nx;
    }
    if (next)
        uv_timer_start(&rest->later_timer, later_cb, next - now, 0);
}

int rest_send_later(struct rest_req *q, const Cairn__MgmtRequest *req, unsigned ms)
{
    struct mdm_rest *rest = q->rest;
    if (rest->stopping)
        return -ENOTCONN;
    int r = pack(q, req);
    if (r < 0)
        return r;
    q->not_before = now_ms() + ms;
    enlist(q, REST_Q_LATER);
    /* every delay is one of a few short ones: the timer set for the first
     * one waiting serves, and sets itself again for the rest */
    if (!uv_is_active((uv_handle_t *)&rest->later_timer))
        uv_timer_start(&rest->later_timer, later_cb, ms, 0);
    return 0;
}

void rest_req_clear(struct rest_req *q)
{
    free(q->msg);
    q->msg = NULL;
}

/* ---- life cycle ---- */

static void timer_closed_cb(uv_handle_t *h)
{
    struct mdm_rest *rest = h->data;
    rest->timers_open--;
    rest_maybe_free(rest);
}

void rest_calls_init(struct mdm_rest *rest)
{
    rest->self.rest = rest->leader.rest = rest;
    snprintf(rest->self.addr, sizeof(rest->self.addr), "%s", rest->m->listen_addr);
    uv_timer_init(rest->m->loop, &rest->retry);
    uv_timer_init(rest->m->loop, &rest->tick);
    uv_timer_init(rest->m->loop, &rest->later_timer);
    rest->retry.data = rest->tick.data = rest->later_timer.data = rest;
    rest->timers_open = 3;
    link_connect(&rest->self);
}

void rest_calls_stop(struct mdm_rest *rest)
{
    /* Answer every request now: a waiting one's call fails (and frees it)
     * when its connection's close has run; a parked one, or one to be sent
     * later, has none. */
    for (struct rest_req *q = rest->waiting; q; q = q->next)
        if (q->http) {
            rest_answer_error(rest, q->http, 503, "the MDM is shutting down");
            q->http = NULL;
        }
    while (rest->parked || rest->later) {
        struct rest_req *q = rest->parked ? rest->parked : rest->later;
        unlist(q);
        rest_answer_error(rest, q->http, 503, "the MDM is shutting down");
        q->http = NULL;
        q->free(q);
    }
    struct rest_link *links[] = {&rest->self, &rest->leader};
    for (size_t i = 0; i < ARRAY_SIZE(links); i++)
        if (links[i]->conn)
            rpc_close(links[i]->conn);
    uv_close((uv_handle_t *)&rest->retry, timer_closed_cb);
    uv_close((uv_handle_t *)&rest->tick, timer_closed_cb);
    uv_close((uv_handle_t *)&rest->later_timer, timer_closed_cb);
}

int rest_calls_idle(const struct mdm_rest *rest)
{
    return !rest->self.conn && !rest->self.connecting && !rest->leader.conn &&
           !rest->leader.connecting && !rest->closing && !rest->timers_open && !rest->waiting;
}
