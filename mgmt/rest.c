/* The REST API and the dashboard over HTTP (--http-listen): the server.
 *
 * An HTTP request for /api/ goes to rest_api.c, which turns it into the
 * MgmtRequest the CLI would send and sends it with rest_send()
 * (rest_calls.c) to this MDM's own request API, exactly as a CLI would:
 * the MDM validates it and words its refusals, for every surface alike. On
 * a follower it is carried on to the leader's request API, so that any MDM
 * serves the whole API. Any other GET is one of the dashboard's built-in
 * files.
 *
 * Every /api/ request but the OpenAPI document carries a bearer token of
 * --http-tokens (http_auth.h), checked here before anything else looks at
 * it, and before anything is forwarded: none or a wrong one is answered
 * 401, a monitor token's change 403.
 * The dashboard's files are served to anyone: they hold no cluster data,
 * and the page asks for a token before its first call.
 *
 * Every HTTP request is answered exactly once: by its route, by its reply
 * callback, with 503 when no MDM could answer it (no leader in time, the
 * connection down), or with 503 at shutdown (the RPC layer's late
 * callbacks then only free it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_auth.h"
#include "log.h"
#include "mdm.h"
#include "rest.h"
#include "util.h"
#include "web_assets.h"

/* After a shutdown, rest goes once nothing can call back into it. */
void rest_maybe_free(struct mdm_rest *rest)
{
    if (rest->stopping && rest_calls_idle(rest))
        free(rest);
}

static void on_http(struct http_request *r, void *data);

int mdm_rest_start(struct mdm *m, const char *addr, const char *tokens_file)
{
    if (!tokens_file) {
        log_error("mdm: --http-listen %s needs --http-tokens FILE: lines 'admin TOKEN' and "
                  "'monitor TOKEN' (mode 0600); every API call must send one of them",
                  addr);
        return -1;
    }
    struct mdm_rest *rest = calloc(1, sizeof(*rest));
    if (!rest) {
        log_error("mdm: --http-listen %s: out of memory", addr);
        return -1;
    }
    rest->m = m;
    rest->auth = http_auth_load(tokens_file, 1, "--http-tokens");
    if (rest->auth)
        rest->http = http_start(m->loop, addr, on_http, rest);
    if (!rest->http) {
        http_auth_free(rest->auth);
        free(rest);
        return -1;
    }
    rest_calls_init(rest);
    m->rest = rest;
    log_info("mdm: REST API and dashboard on http://%s/ (API at /api/v1/)", addr);
    return 0;
}

void mdm_rest_stop(struct mdm *m)
{
    struct mdm_rest *rest = m->rest;
    if (!rest)
        return;
    m->rest = NULL;
    rest->stopping = 1;
    rest_calls_stop(rest);
    http_stop(rest->http);
    rest->http = NULL;
    http_auth_free(rest->auth);
    rest->auth = NULL;
}

const char *rest_mdm_addr(const struct mdm_rest *rest)
{
    return rest->m->listen_addr;
}

/* ---- answers ---- */

static void respond_json(struct http_request *r, unsigned code, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!s) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        http_respond(r, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    http_respond_take(r, code, "application/json", s, strlen(s));
}

/* Which MDM's answer q has: this one's, or the leader's (rest_calls.c). */
static void answered_by(struct rest_req *q)
{
    if (q->answered_by[0])
        http_add_header(q->http, "Cairn-Answered-By", q->answered_by);
}

void rest_answer_json(struct rest_req *q, unsigned code, json_t *doc)
{
    answered_by(q);
    respond_json(q->http, code, doc);
    q->http = NULL;
}

void rest_answer_req_error(struct rest_req *q, unsigned code, const char *msg)
{
    answered_by(q);
    rest_answer_error(q->rest, q->http, code, msg);
    q->http = NULL;
}

void rest_answer_error(struct mdm_rest *rest, struct http_request *r, unsigned code,
                       const char *msg)
{
    json_t *o = json_object();
    json_object_set_new(o, "error", rest_json_str(msg));
    if (code == 503) {
        struct mdm *m = rest->m;
        http_add_header(r, "Retry-After", "1");
        raft_id id = 0;
        const char *addr = NULL;
        raft_leader(&m->raft, &id, &addr);
        if (addr && id != m->raft.id)
            json_object_set_new(o, "leader", rest_json_str(addr));
    }
    respond_json(r, code, o);
}

/* The MDM's errors are -errno values chosen per refusal (state_*.c,
 * mdm_state.c, drain.c, pg_membership.c, sessions.c, probe.c, raft_fsm.c);
 * their words were read to check each pairing. Only EINVAL mixes bad input
 * with a state that forbids the change ("SDS 'x' is not up", "... is in
 * maintenance"); those words make it a conflict. */
unsigned rest_http_status(int status, const char *msg)
{
    static const char *const state_words[] = {" is not up", " is down", " is in maintenance",
                                              " is not in maintenance"};
    size_t n = msg ? strlen(msg) : 0;
    if (n >= 7 && !strcmp(msg + n - 7, "; retry"))
        return 503; /* "too many device probes in flight; retry" */
    switch (status) {
    case -ENOENT: return 404;
    case -EEXIST:       /* already exists, already uses that address */
    case -EBUSY:        /* still mapped, still has SDSs, holds the only copy */
    case -ENOSPC:       /* no room, no placement yet, overcommit limit */
    case -ESTALE:       /* the PG changed */
    case -EHOSTUNREACH: /* no cairn-sds connected from that address */
    case -EPERM: /* the SDC is pending approval */ return 409;
    case -EINVAL:
        for (size_t i = 0; msg && i < ARRAY_SIZE(state_words); i++)
            if (strstr(msg, state_words[i]))
                return 409;
        return 400;
    case -EAGAIN:     /* not the leader */
    case -ENOMEM:     /* out of memory */
    case -EIO:        /* the Raft log refused the change */
    case -ECONNRESET: /* the SDS probed or the MDM went away */
    case -ETIMEDOUT:
    case -ENOTCONN:
    case -EPROTO: return 503;
    default: return 400; /* what an SDS said of a device it probed */
    }
}

/* ---- HTTP ---- */

/* The dashboard's files: GET (or HEAD) of any path outside /api/. */
static void serve_static(struct mdm_rest *rest, struct http_request *r)
{
    const char *method = http_method(r);
    const char *path = http_path(r);
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        http_add_header(r, "Allow", "GET, HEAD");
        rest_answer_error(rest, r, 405, "only GET and HEAD are served outside /api/");
        return;
    }
    /* the table holds files of mgmt/web alone; a path that climbs out of
     * it never names one */
    const struct web_asset *a = strstr(path, "/..") ? NULL : web_asset_find(path);
    if (!a) {
        static const char msg[] = "not found\n";
        http_respond(r, 404, "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
        return;
    }
    http_respond(r, 200, a->content_type, a->data, a->len);
}

/* The role r's token grants, if it grants r's method; else r is answered
 * (401, 403) and HTTP_ROLE_NONE returned. */
static enum http_role authorize(struct mdm_rest *rest, struct http_request *r)
{
    const char *why, *method = http_method(r);
    char msg[256];
    enum http_role role = http_auth_check(rest->auth, r, &why);
    if (!role) {
        http_auth_refuse(r, 401, why);
        snprintf(msg, sizeof(msg),
                 "unauthorized (%s): send 'Authorization: Bearer TOKEN' with a token of the "
                 "MDM's --http-tokens file",
                 why);
        rest_answer_error(rest, r, 401, msg);
        return HTTP_ROLE_NONE;
    }
    if (role == HTTP_ROLE_MONITOR && strcmp(method, "GET") && strcmp(method, "HEAD")) {
        http_auth_refuse(r, 403, "a monitor token may only read");
        snprintf(msg, sizeof(msg),
                 "forbidden: this is a monitor token, which may only read (GET); %.16s needs an "
                 "admin token",
                 method);
        mdm_audit_http_refused(rest->m, http_peer(r), method, http_path(r), msg);
        rest_answer_error(rest, r, 403, msg);
        return HTTP_ROLE_NONE;
    }
    return role;
}

/* GET /api/v1/whoami: what the token may do, for the dashboard. */
static void serve_whoami(struct mdm_rest *rest, struct http_request *r, enum http_role role)
{
    if (strcmp(http_method(r), "GET") && strcmp(http_method(r), "HEAD")) {
        http_add_header(r, "Allow", "GET, HEAD");
        rest_answer_error(rest, r, 405, "method not allowed");
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "role", json_string(role == HTTP_ROLE_ADMIN ? "admin" : "monitor"));
    respond_json(r, 200, o);
}

static void on_http(struct http_request *r, void *data)
{
    struct mdm_rest *rest = data;
    const char *path = http_path(r);
    enum http_role role;
    if (strncmp(path, "/api/", 5) && strcmp(path, "/api"))
        serve_static(rest, r);
    else if (!strcmp(path, "/api/v1/openapi.yaml")) /* public, like the page */
        rest_api_handle(rest, r);
    else if (!(role = authorize(rest, r)))
        return;
    else if (!strcmp(path, "/api/v1/whoami"))
        serve_whoami(rest, r, role);
    else
        rest_api_handle(rest, r);
}
