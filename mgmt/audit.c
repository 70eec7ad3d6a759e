/* The audit log: one JSON line for every change asked of this MDM (the CLI's
 * and the REST API's management requests; queries are not changes): when,
 * who (the proved role and name of the peer, and its address; for the REST
 * API's changes, also the HTTP client it acted for), what (the
 * operation and every field it set), and the result (ok, or the error and
 * its message). A change whose requester went away before its answer is
 * written when its session closes, as "unknown".
 *
 * Appended to DATA-DIR/audit.log (mode 0600) with one write per line, so a
 * crash loses at most the line being written. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "mdm.h"

struct mdm_audit_rec {
    struct mdm_audit_rec *next;
    uint64_t req_id;
    json_t *entry; /* time, who, op, request: the result is added at the end */
};

int mdm_audit_open(struct mdm *m, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/audit.log", dir);
    m->audit_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (m->audit_fd < 0) {
        log_error("cannot open the audit log %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void mdm_audit_close(struct mdm *m)
{
    if (m->audit_fd >= 0)
        close(m->audit_fd);
    m->audit_fd = -1;
}

static json_t *now_json(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char buf[64];
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    return json_string(buf);
}

/* Every field the request sets, by its name in cairn.proto. */
static json_t *request_json(const Cairn__MgmtRequest *req)
{
    json_t *o = json_object();
    const ProtobufCMessageDescriptor *d = req->base.descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *p = (const char *)req + f->offset;
        if (!strcmp(f->name, "op") || !strcmp(f->name, "capacities") || !strcmp(f->name, "via"))
            continue;
        json_t *v = NULL;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)req + f->quantifier_offset);
            if (n && f->type == PROTOBUF_C_TYPE_STRING) {
                char *const *arr = *(char **const *)p;
                v = json_array();
                for (size_t k = 0; k < n; k++)
                    json_array_append_new(v, json_string(arr[k] ? arr[k] : ""));
            }
        } else if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *s = *(const char *const *)p;
            if (s && *s)
                v = json_string(s);
        } else if (f->type == PROTOBUF_C_TYPE_BOOL) {
            if (*(const protobuf_c_boolean *)p)
                v = json_true();
        } else if (f->type == PROTOBUF_C_TYPE_UINT32) {
            if (*(const uint32_t *)p)
                v = json_integer(*(const uint32_t *)p);
        } else if (f->type == PROTOBUF_C_TYPE_UINT64) {
            if (*(const uint64_t *)p)
                v = json_integer((json_int_t) * (const uint64_t *)p);
        }
        if (v)
            json_object_set_new(o, f->name, v);
    }
    return o;
}

static void write_entry(struct mdm *m, json_t *e)
{
    char *line = json_dumps(e, JSON_COMPACT);
    if (!line)
        return;
    size_t len = strlen(line);
    char *buf = realloc(line, len + 2);
    if (buf) {
        buf[len] = '\n';
        ssize_t w = m->audit_fd >= 0 ? write(m->audit_fd, buf, len + 1) : (ssize_t)(len + 1);
        /* a short write sets no errno: it is a full disk (the entry is cut) */
        if (w != (ssize_t)(len + 1))
            LOG_LIMITED(LOG_ERROR, 10000, "mdm: cannot write the audit log: %s",
                        w < 0 ? strerror(errno) : "the disk is full (an entry was cut short)");
        line = buf;
    }
    free(line);
}

void mdm_audit_begin(struct mdm_conn *s, const struct frame_hdr *h, const Cairn__MgmtRequest *req)
{
    if (req->op == CAIRN__MGMT_OP__OP_STATUS)
        return; /* a query */
    struct mdm_audit_rec *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    const char *name = mdm_state_op_name((int)req->op);
    char op[64];
    snprintf(op, sizeof(op), "%s", name ? name : "unknown");
    for (char *p = op; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r->req_id = h->req_id;
    r->entry = json_pack("{s:o, s:{s:s, s:s, s:s}, s:s, s:o}", "time", now_json(), "who", "role",
                         auth_role_name(rpc_peer_role(s->conn)), "name", rpc_peer_name(s->conn),
                         "addr", rpc_peer(s->conn), "op", op, "request", request_json(req));
    if (!r->entry) {
        free(r);
        return;
    }
    /* a change the REST API made for an HTTP client: say which (another
     * role's word for it is not taken) */
    if (req->via && req->via[0] && rpc_peer_role(s->conn) == AUTH_ROLE_MDM)
        json_object_set_new(json_object_get(r->entry, "who"), "via", json_string(req->via));
    r->next = s->audit;
    s->audit = r;
}

static void finish(struct mdm *m, struct mdm_audit_rec *r, const char *result, int status,
                   const char *msg)
{
    json_object_set_new(r->entry, "result", json_string(result));
    if (status < 0) {
        json_object_set_new(r->entry, "status", json_integer(status));
        json_object_set_new(r->entry, "message", json_string(msg ? msg : strerror(-status)));
    }
    json_object_set_new(r->entry, "answered", now_json());
    write_entry(m, r->entry);
    json_decref(r->entry);
    free(r);
}

void mdm_audit_end(struct rpc_conn *c, const struct frame_hdr *h, int status, const char *msg)
{
    struct mdm_conn *s = rpc_data(c);
    if (!s || h->type != FT_MGMT)
        return;
    for (struct mdm_audit_rec **pp = &s->audit; *pp; pp = &(*pp)->next) {
        if ((*pp)->req_id == h->req_id) {
            struct mdm_audit_rec *r = *pp;
            *pp = r->next;
            finish(s->mdm, r, status < 0 ? "error" : "ok", status, msg);
            return;
        }
    }
}

void mdm_audit_http_refused(struct mdm *m, const char *addr, const char *method, const char *path,
                            const char *msg)
{
    struct mdm_audit_rec *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    char via[96], p[512], mt[16];
    snprintf(via, sizeof(via), "REST API, monitor token, from %s", addr);
    /* what a client sent, cut short and in printable ASCII (JSON takes
     * only UTF-8) */
    snprintf(p, sizeof(p), "%s", path);
    snprintf(mt, sizeof(mt), "%s", method);
    for (char *c = p; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    for (char *c = mt; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    r->entry =
        json_pack("{s:o, s:{s:s, s:s}, s:s, s:{s:s, s:s}}", "time", now_json(), "who", "role",
                  "monitor", "via", via, "op", "http", "request", "method", mt, "path", p);
    if (!r->entry) {
        free(r);
        return;
    }
    finish(m, r, "error", -EACCES, msg);
}

void mdm_audit_drop(struct mdm_conn *s)
{
    while (s->audit) {
        struct mdm_audit_rec *r = s->audit;
        s->audit = r->next;
        finish(s->mdm, r, "unknown", 0, NULL);
    }
}
