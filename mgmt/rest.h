/* The REST API's insides, shared by its files (mdm.h has its public face,
 * mdm_rest_start() and mdm_rest_stop()):
 *
 *   rest.c       the server: HTTP requests in, the dashboard's static
 *                files, tokens, answers and errors
 *   rest_calls.c the calls: the persistent connections to this MDM's own
 *                request API and, on a follower, to the leader's, the
 *                requests waiting on them or for a leader
 *   rest_api.c   the API: requests matched to routes, request bodies
 *                turned into the MgmtRequests the CLI sends, the calls
 *                (change, then status) and their answers
 *   rest_routes.c  the route table: each route's fields, what the CLI
 *                adds to its request, and how its answer is rendered
 *   rest_json.c  the JSON objects, built from a status reply with the keys
 *                of the CLI's --json output
 *
 * Every REST request is one or two calls to the MDM's request API (the
 * change, then a status to show its result), exactly as the CLI makes
 * them, so validation and error messages are the MDM's; on a follower they
 * are carried to the leader. Everything runs on the MDM's loop.
 */
#ifndef CAIRN_REST_H
#define CAIRN_REST_H

#include <stddef.h>

#include <jansson.h>

#include <uv.h>

#include "cairn.pb-c.h"
#include "http.h"

struct mdm_rest;
struct rest_req;

/* ---- rest_calls.c: the calls to the request API, here or at the leader ---- */

/* The MDM's answer to a request sent with rest_send(): status is the
 * reply's (< 0: refused, with rep->error), or -ECONNRESET / -ETIMEDOUT with
 * rep NULL when the MDM could not answer. rep is valid during the call.
 * The callback either sends again or answers (rest_answer*) and frees its
 * request. */
typedef void rest_reply_fn(struct rest_req *q, int status, const Cairn__MgmtReply *rep);

/* One persistent RPC connection to an MDM's request API: this MDM's own,
 * or the leader's (for the requests this MDM, a follower, refuses). */
struct rest_link {
    struct mdm_rest *rest;
    char addr[128];        /* the MDM it is for */
    char trying[128];      /* the address being connected to */
    struct rpc_conn *conn; /* NULL while disconnected */
    int connecting;        /* an rpc_connect() is in flight */
    int lost;              /* the connection is down and that was logged */
};

enum rest_req_list { REST_Q_NONE, REST_Q_WAITING, REST_Q_PARKED, REST_Q_LATER };

/* One HTTP request in flight, embedded in rest_api.c's context of it. */
struct rest_req {
    struct mdm_rest *rest;
    struct http_request *http; /* NULL once answered */
    rest_reply_fn *cb;         /* the reply to the request being sent */
    void (*free)(struct rest_req *q);
    struct rest_req *prev, *next; /* on the list of 'listed' */
    enum rest_req_list listed;
    /* the request being sent, packed, for its resends to the leader */
    uint8_t *msg;
    size_t msg_len;
    int op;
    uint64_t request_id;
    uint64_t deadline;     /* now_ms() past which no leader is waited for */
    uint64_t not_before;   /* on the later list: when it is sent */
    int hops;              /* redirects followed since the last wait */
    char target[128];      /* the leader it goes to; "": this MDM */
    char sent_to[128];     /* the MDM its call in flight went to */
    char took[128];        /* a leader that took the change and gave no outcome */
    char answered_by[128]; /* the MDM whose answer it got */
    struct rest_link *link;
};

struct mdm_rest {
    struct mdm *m;
    struct http_server *http;
    struct http_auth *auth;
    struct rest_link self;   /* this MDM's request API (m->listen_addr) */
    struct rest_link leader; /* the leader's, while this MDM is not it */
    uv_timer_t retry;        /* reconnects self */
    uv_timer_t tick;         /* resends the parked requests */
    uv_timer_t later_timer;  /* sends the requests of rest_send_later() */
    int timers_open;
    int closing; /* connections closed on purpose, their on_close to come */
    int stopping;
    struct rest_req *waiting; /* calls in flight */
    unsigned n_waiting;
    struct rest_req *parked; /* waiting for a leader */
    struct rest_req *later;  /* waiting to be sent (rest_send_later()) */
};

/* Send req (only read) for q, to this MDM, and on to the leader if this
 * MDM is not it; q->cb runs later, exactly once, unless this fails:
 * -ENOTCONN (no connection), -EBUSY (too many requests waiting) or the RPC
 * layer's error. Then q is untouched: answer it. After a shutdown, q is
 * answered 503 and freed (q->free) when the reply would have come. */
int rest_send(struct rest_req *q, const Cairn__MgmtRequest *req);
/* rest_send() ms milliseconds from now, for a request that asks again (a
 * wait): the same contract, except that a failure to send then comes as
 * q->cb with that error and rep NULL. Until it is sent, q is answered 503
 * and freed at shutdown, as a request waiting for a leader is. */
int rest_send_later(struct rest_req *q, const Cairn__MgmtRequest *req, unsigned ms);
/* Free what rest_send() kept of q (its free function calls it). */
void rest_req_clear(struct rest_req *q);
/* Start and end the calls: rest_calls_init() at the start, before the first
 * rest_send(); rest_calls_stop() at shutdown, which answers every request
 * waiting (503); rest_calls_idle() is 1 once nothing can call back. */
void rest_calls_init(struct mdm_rest *rest);
void rest_calls_stop(struct mdm_rest *rest);
int rest_calls_idle(const struct mdm_rest *rest);
/* A 64-bit request id from a client's Idempotency-Key, or a random one
 * (key NULL); never 0. */
uint64_t rest_request_id(const char *key);

/* ---- rest.c: the server and the answers ---- */

/* After a shutdown, rest goes once nothing can call back into it. */
void rest_maybe_free(struct mdm_rest *rest);
/* Answer q with a JSON document (stolen; NULL: memory ran out, 500), and
 * name the MDM whose answer it is (header Cairn-Answered-By). */
void rest_answer_json(struct rest_req *q, unsigned code, json_t *doc);
/* Answer q as rest_answer_error() does, naming the MDM that answered. */
void rest_answer_req_error(struct rest_req *q, unsigned code, const char *msg);
/* Answer r with {"error": msg}; a 503 also with "leader" (the leader's Raft
 * address) when this MDM knows a leader other than itself, and a
 * Retry-After header (every 503 of this API is one to retry). */
void rest_answer_error(struct mdm_rest *rest, struct http_request *r, unsigned code,
                       const char *msg);
/* The HTTP status of the MDM's refusal (status < 0, msg its words). The
 * one translation of the request API's errors to HTTP. */
unsigned rest_http_status(int status, const char *msg);
/* The request API's address, for messages. */
const char *rest_mdm_addr(const struct mdm_rest *rest);

/* ---- rest_api.c and rest_routes.c: the routes ---- */

/* One HTTP request through the API. */
enum { REST_WAIT_NONE, REST_WAIT_TAKEOVER, REST_WAIT_READ_ONLY, REST_WAIT_UNMAP };

struct rest_ctx {
    struct rest_req q; /* first: the callbacks get &q */
    const struct rest_route *rt;
    char *path;        /* a copy of the path, cut into its segments */
    json_t *body;      /* the parsed body: req's strings point into it */
    char **paths;      /* req.paths, when from a list */
    char *one_path[1]; /* req.paths, when from one string */
    Cairn__MgmtRequest req;
    const char *info; /* a removal's answer, as the CLI words it */
    char via[96];     /* req.via: who asked, for the audit log */
    /* a takeover, an unmap, a mapping made read-only (REST_WAIT_*):
     * answered once every SDS the MDM is connected to holds the change's
     * map (wait_version), or at wait_until (rest_api.c) */
    int wait_sds;
    uint64_t wait_version, wait_until;
};

/* A JSON field of a body, and where it goes in the request. */
enum rest_field_type {
    REST_F_STR,   /* string */
    REST_F_BOOL,  /* true or false */
    REST_F_U32,   /* integer from 0 to 2^32 - 1 */
    REST_F_SIZE,  /* bytes: an integer, or a string with a K/M/G/T/P suffix */
    REST_F_PATHS, /* list of strings: req.paths */
    REST_F_PATH,  /* one string: req.paths */
    REST_F_OTHER, /* a bool the route's build reads itself */
};

struct rest_field {
    const char *key;
    enum rest_field_type type;
    int required;
    size_t off; /* in Cairn__MgmtRequest (REST_F_STR, REST_F_BOOL, REST_F_U32, REST_F_SIZE) */
};

#define REST_REQ_OFF(member) offsetof(Cairn__MgmtRequest, member)
#define REST_NO_PARAM ((size_t)-1)

/* Renders the answer from a status reply; NULL with err set: the object
 * is not there (404); NULL with err empty: out of memory. */
typedef json_t *rest_render_fn(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err,
                               size_t len);
/* Completes the request beyond its fields; 0, or -1 with err set (400). */
typedef int rest_build_fn(struct rest_ctx *x, struct http_request *r, char *err, size_t len);

struct rest_route {
    const char *method;
    const char *path;                /* "*" stands for one name */
    int op;                          /* the change; 0: none, only a status */
    const struct rest_field *fields; /* NULL: no body */
    size_t params[2];                /* where the path's names go in the request */
    rest_build_fn *build;
    unsigned ok;            /* 200, or 201 for a creation */
    rest_render_fn *render; /* NULL: {"info": ctx.info} */
};

/* The routes (rest_routes.c), in the order docs/openapi.yaml lists them. */
extern const struct rest_route rest_routes[];
extern const size_t rest_n_routes;

/* printf into err (len bytes). */
void rest_errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Serve r, a request for /api/ or below: at once or through rest_send().
 * Every path leads to exactly one answer. */
void rest_api_handle(struct mdm_rest *rest, struct http_request *r);

/* ---- rest_json.c: objects from a status reply ---- */

/* A JSON string of s, with bytes that are not UTF-8 replaced (s comes from
 * clients and the map). New reference; NULL if s is or memory ran out. */
json_t *rest_json_str(const char *s);
/* Each returns a new reference, or NULL when memory ran out. The object
 * functions take an object of rep->map. */
json_t *rest_json_status(const Cairn__MgmtReply *rep);
json_t *rest_json_sds(const Cairn__MgmtReply *rep, const Cairn__Sds *s);
json_t *rest_json_sds_list(const Cairn__MgmtReply *rep);
json_t *rest_json_device(const Cairn__MgmtReply *rep, const Cairn__Device *d);
json_t *rest_json_device_list(const Cairn__MgmtReply *rep);
json_t *rest_json_pool(const Cairn__MgmtReply *rep, const Cairn__Pool *p);
json_t *rest_json_pool_list(const Cairn__MgmtReply *rep);
json_t *rest_json_volume(const Cairn__MgmtReply *rep, const Cairn__Volume *v);
json_t *rest_json_volume_list(const Cairn__MgmtReply *rep);
json_t *rest_json_sdc(const Cairn__MgmtReply *rep, const Cairn__Sdc *c);
json_t *rest_json_sdc_list(const Cairn__MgmtReply *rep);
json_t *rest_json_fault_set(const Cairn__MgmtReply *rep, const Cairn__FaultSet *f);
json_t *rest_json_fault_set_list(const Cairn__MgmtReply *rep);
json_t *rest_json_mapping(const Cairn__MgmtReply *rep, const Cairn__Mapping *mp);
json_t *rest_json_mapping_list(const Cairn__MgmtReply *rep);
json_t *rest_json_mdm_list(const Cairn__MgmtReply *rep);
json_t *rest_json_snapshot(const Cairn__MgmtReply *rep, const Cairn__Snapshot *sn);
/* volume_id 0: every volume's */
json_t *rest_json_snapshot_list(const Cairn__MgmtReply *rep, uint64_t volume_id);

#endif
