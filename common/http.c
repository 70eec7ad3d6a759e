/* HTTP on the daemon's loop: libmicrohttpd in external-epoll mode (see
 * http.h). MHD's epoll descriptor is watched by a uv_poll_t, its next
 * timeout by a uv_timer_t; both call MHD_run(). A request is handed to the
 * handler once its body is complete; if the handler does not answer at
 * once, the connection is suspended until http_respond() resumes it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "http.h"
#include "log.h"
#include "util.h"

#define HTTP_MAX_HEADERS 8

struct http_server {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_idle_t idle; /* MHD has work now: run it on the loop's next turn */
    int handles_open;
    int stopping;
    http_handler_cb cb;
    void *data;
    int port;
    struct http_request *waiting; /* suspended requests, a doubly linked list */
};

struct http_request {
    struct http_server *s;
    struct MHD_Connection *conn;
    char *method, *path;
    char peer[INET6_ADDRSTRLEN + 8];
    uint8_t *body;
    size_t len, cap;
    int too_big;
    int handled;   /* given to the handler */
    int suspended; /* listed in s->waiting */
    struct MHD_Response *resp;
    unsigned status;
    char *hdr[HTTP_MAX_HEADERS][2];
    int n_hdr;
    struct http_request *prev, *next;
};

static void run(struct http_server *s);

static void poll_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run(p->data);
}

static void timer_cb(uv_timer_t *t)
{
    run(t->data);
}

static void idle_cb(uv_idle_t *i)
{
    run(i->data);
}

/* Let MHD do what is ready, then arrange for its next deadline. "Now" (a
 * timeout of 0) goes to an idle handle, which runs once per turn of the
 * loop, after its I/O: a 0 ms timer started from a timer callback would
 * run again in the same pass of libuv's timers (1.44), so a server that
 * kept saying "now" would never let the loop poll, and the daemon would
 * stop answering anything. */
static void run(struct http_server *s)
{
    if (!s->d)
        return;
    MHD_run(s->d);
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(s->d, &to) != MHD_YES) {
        uv_idle_stop(&s->idle);
        uv_timer_stop(&s->timer);
    } else if (to == 0) {
        uv_timer_stop(&s->timer);
        uv_idle_start(&s->idle, idle_cb);
    } else {
        uv_idle_stop(&s->idle);
        uv_timer_start(&s->timer, timer_cb, to, 0);
    }
}

static void unlink_waiting(struct http_request *r)
{
    if (!r->suspended)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        r->s->waiting = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->suspended = 0;
}

static void request_free(struct http_request *r)
{
    if (!r)
        return;
    unlink_waiting(r);
    if (r->resp)
        MHD_destroy_response(r->resp);
    for (int i = 0; i < r->n_hdr; i++) {
        free(r->hdr[i][0]);
        free(r->hdr[i][1]);
    }
    free(r->method);
    free(r->path);
    free(r->body);
    free(r);
}

static enum MHD_Result queue(struct http_request *r)
{
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return ret;
}

static void set_response(struct http_request *r, unsigned status, const char *type,
                         struct MHD_Response *resp)
{
    if (!resp) {
        /* Out of memory: an empty 500 is still an answer. */
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = 500;
        type = NULL;
    }
    if (type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (int i = 0; i < r->n_hdr; i++)
        MHD_add_response_header(resp, r->hdr[i][0], r->hdr[i][1]);
    r->resp = resp;
    r->status = status;
    if (r->suspended) {
        unlink_waiting(r);
        MHD_resume_connection(r->conn);
        /* MHD's inter-thread channel wakes the epoll descriptor; the idle
         * handle makes sure the resumed connection runs even if it did not. */
        uv_idle_start(&r->s->idle, idle_cb);
    }
}

void http_respond(struct http_request *r, unsigned status, const char *content_type,
                  const void *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    set_response(r, status, content_type, resp);
}

void http_respond_take(struct http_request *r, unsigned status, const char *content_type,
                       char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(body);
    set_response(r, status, content_type, resp);
}

void http_add_header(struct http_request *r, const char *name, const char *value)
{
    if (r->n_hdr >= HTTP_MAX_HEADERS)
        return;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    r->hdr[r->n_hdr][0] = n;
    r->hdr[r->n_hdr][1] = v;
    r->n_hdr++;
}

static void peer_name(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "?");
    if (!ci || !ci->client_addr)
        return;
    char host[INET6_ADDRSTRLEN], port[8];
    socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in);
    if (getnameinfo(ci->client_addr, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out, n, "%s:%s", host, port);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_len, void **con_cls)
{
    (void)version;
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->s = s;
        r->conn = conn;
        r->method = strdup(method);
        r->path = strdup(url);
        r->body = malloc(1);
        if (!r->method || !r->path || !r->body) {
            request_free(r);
            return MHD_NO;
        }
        peer_name(conn, r->peer, sizeof(r->peer));
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_len) {
        size_t n = *upload_len;
        *upload_len = 0;
        if (r->too_big || r->len + n > HTTP_MAX_BODY) {
            r->too_big = 1;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = MAX(r->cap * 2, r->len + n + 1);
            uint8_t *b = realloc(r->body, cap);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        r->body[r->len] = 0;
        return MHD_YES;
    }
    if (r->resp)
        return queue(r);
    if (r->handled) {
        /* Resumed without an answer: cannot happen (only set_response
         * resumes), but never leave the client hanging. */
        static const char msg[] = "internal error\n";
        http_respond(r, 500, "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
        return queue(r);
    }
    r->handled = 1;
    if (r->too_big) {
        static const char msg[] = "request body too large\n";
        http_respond(r, 413, "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
        return queue(r);
    }
    s->cb(r, s->data);
    if (r->resp)
        return queue(r);
    /* Answered later, from another callback on the loop. */
    r->suspended = 1;
    r->prev = NULL;
    r->next = s->waiting;
    if (s->waiting)
        s->waiting->prev = r;
    s->waiting = r;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)conn;
    (void)code;
    request_free(*con_cls);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = 0;
    log_warn("http: %s", line);
}

/* "host:port" or "[v6]:port"; port 0 lets the kernel pick one. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr)
        return -EINVAL;
    char host[256];
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == 0 || *end || port < 0 || port > 65535)
        return -EINVAL;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

struct http_server *http_start(uv_loop_t *loop, const char *addr, http_handler_cb cb, void *data)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (parse_addr(addr, &ss, &sslen) < 0) {
        log_error("http: bad listen address %s (want host:port)", addr);
        return NULL;
    }
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = loop;
    s->cb = cb;
    s->data = data;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->d =
        MHD_start_daemon(flags, 0, NULL, NULL, access_cb, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
                         completed_cb, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!s->d) {
        log_error("http: cannot listen on %s: %s", addr, strerror(errno ? errno : EADDRINUSE));
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = pi ? pi->port : 0;
    const union MHD_DaemonInfo *ei = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!ei || uv_poll_init(loop, &s->poll, ei->epoll_fd) < 0) {
        log_error("http: cannot watch the server's descriptor on %s", addr);
        MHD_stop_daemon(s->d);
        free(s);
        return NULL;
    }
    uv_timer_init(loop, &s->timer);
    uv_idle_init(loop, &s->idle);
    s->poll.data = s;
    s->timer.data = s;
    s->idle.data = s;
    s->handles_open = 3;
    uv_poll_start(&s->poll, UV_READABLE, poll_cb);
    run(s);
    return s;
}

int http_port(const struct http_server *s)
{
    return s->port;
}

static void handle_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    if (--s->handles_open == 0)
        free(s);
}

void http_stop(struct http_server *s)
{
    if (!s || s->stopping)
        return;
    s->stopping = 1;
    static const char msg[] = "shutting down\n";
    while (s->waiting)
        http_respond(s->waiting, 503, "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
    /* Let the resumed connections leave the suspended list before MHD
     * stops (it refuses to stop with suspended connections). */
    MHD_run(s->d);
    MHD_stop_daemon(s->d);
    s->d = NULL;
    uv_close((uv_handle_t *)&s->poll, handle_closed);
    uv_close((uv_handle_t *)&s->timer, handle_closed);
    uv_close((uv_handle_t *)&s->idle, handle_closed);
}

const char *http_method(const struct http_request *r)
{
    return r->method;
}
const char *http_path(const struct http_request *r)
{
    return r->path;
}
const char *http_query(const struct http_request *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}
const char *http_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}
const uint8_t *http_body(const struct http_request *r, size_t *len)
{
    *len = r->len;
    return r->body;
}
const char *http_peer(const struct http_request *r)
{
    return r->peer;
}
