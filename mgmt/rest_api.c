/* The REST API (/api/v1/...): a request matched to its route (the table is
 * in rest_routes.c), its body and path turned into the MgmtRequest the CLI
 * sends for the same command, and the answer, rendered from a fresh status
 * (so that a caller sees the result of its change). Checks made here are
 * only those the CLI makes itself before it sends (the shape of the input:
 * JSON, fields, their types, a size, an address), with the CLI's words
 * where it has some; everything else is the MDM's to refuse. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "map_wait.h"
#include "rest.h"
#include "util.h"
#include "web_assets.h"

#define API "/api/v1"
#define MAX_SEGS 8
/* docs/openapi.yaml, built in by the dashboard's generator (CMakeLists.txt):
 * its table names it by its path from mgmt/web. */
#define OPENAPI_ASSET "/openapi.yaml"

void rest_errf(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* ---- matching ---- */

/* Cut path (modified) into its segments after the leading '/'. The number
 * of segments, or -1 if more than max (or an empty one: "//", a trailing
 * '/'). */
static int split(char *path, char **seg, int max)
{
    int n = 0;
    char *p = path + (path[0] == '/');
    for (;;) {
        char *e = strchr(p, '/');
        if (n == max || (!*p && (e || n)))
            return -1;
        seg[n++] = p;
        if (!e)
            return n;
        *e = 0;
        p = e + 1;
    }
}

/* 1 if the route's path matches the segments; names get the '*'s. */
static int match(const struct rest_route *rt, char **seg, int n, const char **names)
{
    const char *p = rt->path + 1;
    int k = 0, nn = 0;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (k == n)
            return 0;
        if (l == 1 && *p == '*') {
            if (nn < 2)
                names[nn++] = seg[k];
        } else if (strlen(seg[k]) != l || strncmp(seg[k], p, l)) {
            return 0;
        }
        k++;
        p += l + (e != NULL);
    }
    return k == n;
}

/* ---- bodies ---- */

static void *req_at(struct rest_ctx *x, size_t off)
{
    return (char *)&x->req + off;
}

/* Fill the request from the body's fields. 0, or -1 with err set. */
static int take_fields(struct rest_ctx *x, const struct rest_field *fields, char *err, size_t len)
{
    const char *key;
    json_t *v;
    json_object_foreach(x->body, key, v)
    {
        const struct rest_field *f = fields;
        while (f->key && strcmp(f->key, key))
            f++;
        if (f->key)
            continue;
        char known[256] = "";
        for (f = fields; f->key; f++)
            snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                     f == fields ? "" : ", ", f->key);
        rest_errf(err, len, "unknown field '%s' (this request takes: %s)", key, known);
        return -1;
    }
    for (const struct rest_field *f = fields; f->key; f++) {
        v = json_object_get(x->body, f->key);
        if (!v || json_is_null(v)) {
            if (f->required) {
                rest_errf(err, len, "missing field '%s'", f->key);
                return -1;
            }
            continue;
        }
        switch (f->type) {
        case REST_F_STR:
            if (!json_is_string(v))
                goto bad;
            *(const char **)req_at(x, f->off) = json_string_value(v);
            break;
        case REST_F_BOOL:
            if (!json_is_boolean(v))
                goto bad;
            *(protobuf_c_boolean *)req_at(x, f->off) = json_is_true(v);
            break;
        case REST_F_OTHER:
            if (!json_is_boolean(v))
                goto bad;
            break;
        case REST_F_U32:
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > UINT32_MAX)
                goto bad;
            *(uint32_t *)req_at(x, f->off) = (uint32_t)json_integer_value(v);
            break;
        case REST_F_SIZE: {
            uint64_t sz;
            if (json_is_integer(v) && json_integer_value(v) >= 0) {
                sz = (uint64_t)json_integer_value(v);
            } else if (json_is_string(v)) {
                if (parse_size(json_string_value(v), &sz) < 0) {
                    /* the CLI's words for the same mistake */
                    rest_errf(err, len, "invalid size '%s' (use e.g. 8G, 512M)",
                              json_string_value(v));
                    return -1;
                }
            } else {
                goto bad;
            }
            *(uint64_t *)req_at(x, f->off) = sz;
            break;
        }
        case REST_F_PATH:
            if (!json_is_string(v))
                goto bad;
            x->one_path[0] = (char *)json_string_value(v);
            x->req.paths = x->one_path;
            x->req.n_paths = 1;
            break;
        case REST_F_PATHS: {
            size_t n = json_array_size(v);
            if (!json_is_array(v))
                goto bad;
            x->paths = calloc(n ? n : 1, sizeof(*x->paths));
            if (!x->paths) {
                rest_errf(err, len, "out of memory");
                return -1;
            }
            for (size_t i = 0; i < n; i++) {
                if (!json_is_string(json_array_get(v, i)))
                    goto bad;
                x->paths[i] = (char *)json_string_value(json_array_get(v, i));
            }
            x->req.paths = x->paths;
            x->req.n_paths = n;
            break;
        }
        }
        continue;
    bad:;
        static const char *const want[] = {
            [REST_F_STR] = "a string",
            [REST_F_BOOL] = "true or false",
            [REST_F_U32] = "an integer from 0 to 4294967295",
            [REST_F_SIZE] = "a number of bytes, or a string such as \"8G\"",
            [REST_F_PATHS] = "a list of strings",
            [REST_F_PATH] = "a string",
            [REST_F_OTHER] = "true or false",
        };
        rest_errf(err, len, "field '%s' must be %s", f->key, want[f->type]);
        return -1;
    }
    return 0;
}

/* 1 if the request says its body is JSON. Requiring it is what keeps a web
 * page of another origin from changing the cluster through an operator's
 * browser: a cross-origin POST of application/json needs a CORS preflight,
 * which this server never grants, while text/plain or a form needs none. */
static int body_is_json(struct http_request *r)
{
    const char *t = http_header(r, "Content-Type");
    static const char want[] = "application/json";
    if (!t || strncasecmp(t, want, sizeof(want) - 1))
        return 0;
    char next = t[sizeof(want) - 1];
    return next == 0 || next == ';' || next == ' ';
}

/* Parse the body as a JSON object. 0, or -1 with err set (*code too when it
 * is not 400). */
static int parse_body(struct rest_ctx *x, struct http_request *r, char *err, size_t len,
                      unsigned *code)
{
    if (!body_is_json(r)) {
        *code = 415;
        rest_errf(err, len, "send the request body as JSON, with Content-Type: application/json");
        return -1;
    }
    size_t n;
    const uint8_t *b = http_body(r, &n);
    json_error_t je;
    x->body = json_loadb((const char *)b, n, JSON_REJECT_DUPLICATES, &je);
    if (!x->body) {
        rest_errf(err, len, "invalid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return -1;
    }
    if (!json_is_object(x->body)) {
        rest_errf(err, len, "the request body must be a JSON object");
        return -1;
    }
    return 0;
}

/* ---- the flow: change, status, answer ---- */

static void ctx_free(struct rest_req *q)
{
    struct rest_ctx *x = (struct rest_ctx *)q;
    rest_req_clear(q);
    json_decref(x->body);
    free(x->paths);
    free(x->path);
    free(x);
}

/* The MDM could not answer, or refused: say so with its words. */
static void answer_failure(struct rest_ctx *x, int status, const Cairn__MgmtReply *rep)
{
    char msg[512];
    unsigned code;
    if (rep) {
        code = rest_http_status(status, rep->error);
        snprintf(msg, sizeof(msg), "%s", rep->error[0] ? rep->error : strerror(-status));
    } else {
        code = 503;
        snprintf(msg, sizeof(msg), "the MDM's request API at %s did not answer: %s",
                 x->q.sent_to[0] ? x->q.sent_to : rest_mdm_addr(x->q.rest), strerror(-status));
        if (x->q.op != CAIRN__MGMT_OP__OP_STATUS && (status == -ECONNRESET || status == -ETIMEDOUT))
            snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
                     "; whether the change was made is unknown (sent again with the same "
                     "Idempotency-Key header, it is made at most once)");
    }
    rest_answer_req_error(&x->q, code, msg);
}

/* Send req for x; on failure answer 503 and free x. */
static void send_or_fail(struct rest_ctx *x, const Cairn__MgmtRequest *req)
{
    int r = rest_send(&x->q, req);
    if (r == 0)
        return;
    char msg[256];
    if (r == -EBUSY)
        snprintf(msg, sizeof(msg), "too many requests are waiting for the MDM; retry");
    else if (r == -ENOMEM)
        snprintf(msg, sizeof(msg), "out of memory");
    else
        snprintf(msg, sizeof(msg), "not connected to the MDM's request API at %s (reconnecting)",
                 rest_mdm_addr(x->q.rest));
    rest_answer_error(x->q.rest, x->q.http, 503, msg);
    ctx_free(&x->q);
}

/* Answer x with its route's rendering of rep, a status (with warning, if
 * any, in the object), and free it. */
static void answer_rendered(struct rest_ctx *x, const Cairn__MgmtReply *rep, const char *warning)
{
    char err[512] = "";
    json_t *doc = x->rt->render(x, rep, err, sizeof(err));
    if (doc && warning && json_object_set_new(doc, "warning", rest_json_str(warning)) < 0) {
        json_decref(doc);
        doc = NULL;
    }
    if (doc)
        rest_answer_json(&x->q, x->rt->ok, doc);
    else if (err[0])
        rest_answer_req_error(&x->q, 404, err);
    else
        rest_answer_json(&x->q, 500, NULL);
    ctx_free(&x->q);
}

static void on_status(struct rest_req *q, int status, const Cairn__MgmtReply *rep)
{
    struct rest_ctx *x = (struct rest_ctx *)q;
    if (status < 0 || !rep->map) {
        answer_failure(x, status < 0 ? status : -EPROTO, status < 0 ? rep : NULL);
        ctx_free(q);
        return;
    }
    answer_rendered(x, rep, NULL);
}

static void send_status(struct rest_ctx *x)
{
    Cairn__MgmtRequest st = CAIRN__MGMT_REQUEST__INIT;
    st.op = CAIRN__MGMT_OP__OP_STATUS;
    x->q.cb = on_status;
    send_or_fail(x, &st);
}

/* The answer to a change that waited for the SDSs: the resource it renders
 * (or, for a route that renders none, or with no status to render it
 * from, {"info": "ok"}), with a warning if given. */
static void answer_waited(struct rest_ctx *x, const Cairn__MgmtReply *rep, const char *warning)
{
    if (x->rt->render && rep) {
        answer_rendered(x, rep, warning);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "info", json_string("ok"));
    if (warning)
        json_object_set_new(o, "warning", rest_json_str(warning));
    rest_answer_json(&x->q, x->rt->ok, o);
    ctx_free(&x->q);
}

/* What the change waited for was: */
static const char *waited_what(const struct rest_ctx *x)
{
    return x->wait_sds == REST_WAIT_UNMAP ? "unmapped" : "mapped read-only";
}

/* After a takeover, an unmap or a mapping made read-only: a status every
 * MAP_WAIT_SDS_POLL_MS until every SDS the MDM is connected to holds the
 * change's map, and so refuses what the SDC may no longer do (docs/attach.md),
 * as the CLI waits (map_wait.h). After a takeover only then is the answer a
 * success: a caller that starts the new writer on it must be able to rely on
 * the fence. After an unmap or a read-only mapping, an SDS that lags past
 * the wait is a warning in the answer, as the CLI's. An SDS the MDM counts
 * up but cannot reach is named in the answer's warning, as the CLI names it. */
static void on_fence_status(struct rest_req *q, int status, const Cairn__MgmtReply *rep)
{
    struct rest_ctx *x = (struct rest_ctx *)q;
    int fence = x->wait_sds == REST_WAIT_TAKEOVER;
    char why[256], msg[512];
    if (status < 0 || !rep || !rep->map) {
        const char *err =
            rep && rep->error[0] ? rep->error : strerror(status < 0 ? -status : EPROTO);
        if (!fence) {
            snprintf(msg, sizeof(msg),
                     "the MDM did not answer while this waited for the SDSs to refuse the SDC "
                     "(%s)",
                     err);
            answer_waited(x, NULL, msg);
            return;
        }
        snprintf(msg, sizeof(msg),
                 "volume '%s' is taken over, but the old writer is not known to be fenced: the "
                 "MDM did not answer while this waited for the SDSs (%s); map it again with "
                 "takeover to wait again",
                 x->req.volume, err);
        rest_answer_req_error(q, 504, msg);
        ctx_free(q);
        return;
    }
    if (!x->wait_version)
        x->wait_version = rep->map->version; /* the change's reply had no map: this is newer */
    enum map_wait_sds w = map_wait_sdss(rep, x->wait_version, why, sizeof(why));
    if (w != MAP_WAIT_SDS_LATE) {
        answer_waited(x, rep, w == MAP_WAIT_SDS_AWAY ? why : NULL);
        return;
    }
    if (now_ms() >= x->wait_until) {
        if (!fence) {
            snprintf(msg, sizeof(msg), "volume '%s' is %s, but %s after %d s", x->req.volume,
                     waited_what(x), why, MAP_WAIT_SDS_MS / 1000);
            answer_waited(x, rep, msg);
            return;
        }
        snprintf(msg, sizeof(msg),
                 "volume '%s' is taken over, but the old writer is not known to be fenced: %s "
                 "after %d s, and may still accept what it sends; map it again with takeover "
                 "to wait again",
                 x->req.volume, why, MAP_WAIT_SDS_MS / 1000);
        rest_answer_req_error(q, 504, msg);
        ctx_free(q);
        return;
    }
    Cairn__MgmtRequest st = CAIRN__MGMT_REQUEST__INIT;
    st.op = CAIRN__MGMT_OP__OP_STATUS;
    int r = rest_send_later(q, &st, MAP_WAIT_SDS_POLL_MS);
    if (r < 0)
        on_fence_status(q, r, NULL);
}

static void on_change(struct rest_req *q, int status, const Cairn__MgmtReply *rep)
{
    struct rest_ctx *x = (struct rest_ctx *)q;
    if (status < 0) {
        answer_failure(x, status, rep);
    } else if (x->wait_sds) {
        x->wait_version = rep->map ? rep->map->version : 0;
        x->wait_until = now_ms() + MAP_WAIT_SDS_MS;
        Cairn__MgmtRequest st = CAIRN__MGMT_REQUEST__INIT;
        st.op = CAIRN__MGMT_OP__OP_STATUS;
        x->q.cb = on_fence_status;
        int r = rest_send(q, &st);
        if (r < 0)
            on_fence_status(q, r, NULL);
        return;
    } else if (x->rt->render) {
        send_status(x); /* show the result */
        return;
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "info", json_string(x->info ? x->info : "ok"));
        rest_answer_json(q, x->rt->ok, o);
    }
    ctx_free(q);
}

/* The Allow header of the routes whose path matches. */
static void allow(struct http_request *r, uint64_t ok)
{
    char buf[64] = "";
    for (size_t i = 0; i < rest_n_routes; i++)
        if ((ok >> i & 1) && !strstr(buf, rest_routes[i].method))
            snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", buf[0] ? ", " : "",
                     rest_routes[i].method);
    http_add_header(r, "Allow", buf);
}

static void serve_openapi(struct mdm_rest *rest, struct http_request *r)
{
    if (strcmp(http_method(r), "GET") && strcmp(http_method(r), "HEAD")) {
        http_add_header(r, "Allow", "GET, HEAD");
        rest_answer_error(rest, r, 405, "method not allowed");
        return;
    }
    const struct web_asset *a = web_asset_find(OPENAPI_ASSET);
    if (!a) {
        rest_answer_error(rest, r, 404, "the OpenAPI document is not built in");
        return;
    }
    http_respond(r, 200, "application/yaml", a->data, a->len);
}

void rest_api_handle(struct mdm_rest *rest, struct http_request *r)
{
    if (!strcmp(http_path(r), API "/openapi.yaml")) {
        serve_openapi(rest, r);
        return;
    }
    struct rest_ctx *x = calloc(1, sizeof(*x));
    char *seg[MAX_SEGS];
    int n;
    if (!x || !(x->path = strdup(http_path(r)))) {
        free(x);
        rest_answer_error(rest, r, 500, "out of memory");
        return;
    }
    x->q.rest = rest;
    x->q.http = r;
    x->q.free = ctx_free;
    cairn__mgmt_request__init(&x->req);
    n = split(x->path, seg, MAX_SEGS);
    uint64_t path_ok = 0; /* the routes whose path matches, by index */
    assert(rest_n_routes <= 64);
    const char *names[2] = {NULL, NULL};
    for (size_t i = 0; n > 0 && i < rest_n_routes; i++) {
        const char *nm[2] = {NULL, NULL};
        if (!match(&rest_routes[i], seg, n, nm))
            continue;
        path_ok |= 1ull << i;
        if (!strcmp(rest_routes[i].method, http_method(r))) {
            x->rt = &rest_routes[i];
            names[0] = nm[0];
            names[1] = nm[1];
        }
    }
    char err[512] = "";
    unsigned code = 400;
    if (!path_ok) {
        code = 404;
        rest_errf(err, sizeof(err), "no such API path: %s %s", http_method(r), http_path(r));
    } else if (!x->rt) {
        allow(r, path_ok);
        code = 405;
        rest_errf(err, sizeof(err), "method %s not allowed here", http_method(r));
    } else {
        for (int k = 0; k < 2; k++)
            if (x->rt->params[k] != REST_NO_PARAM)
                *(const char **)req_at(x, x->rt->params[k]) = names[k];
        x->req.op = x->rt->op;
        if (x->rt->fields && (parse_body(x, r, err, sizeof(err), &code) < 0 ||
                              take_fields(x, x->rt->fields, err, sizeof(err)) < 0)) {
            /* err says why */
        } else if (x->rt->build) {
            x->rt->build(x, r, err, sizeof(err));
        }
    }
    if (err[0]) {
        rest_answer_error(rest, r, code, err);
        ctx_free(&x->q);
        return;
    }
    if (!x->rt->op) {
        send_status(x);
        return;
    }
    x->q.cb = on_change;
    /* only an admin token reaches a change (rest.c refuses a monitor's) */
    snprintf(x->via, sizeof(x->via), "REST API, admin token, from %s", http_peer(r));
    x->req.via = x->via;
    /* applied once, even when sent again to a new leader: with the client's
     * Idempotency-Key, even when the client sends it again */
    x->req.request_id = rest_request_id(http_header(r, "Idempotency-Key"));
    send_or_fail(x, &x->req);
}
