/* The Prometheus text exposition writer and the /metrics server (see
 * metrics.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_auth.h"
#include "log.h"
#include "metrics.h"

static void put(struct metrics_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct metrics_out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        size_t room = o->cap - o->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 16384;
        while (cap - o->len <= (size_t)n)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->failed = 1;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_name(struct metrics_out *o, const char *name, const char *labels)
{
    if (labels && *labels)
        put(o, "%s{%s} ", name, labels);
    else
        put(o, "%s ", name);
}

void metrics_u64(struct metrics_out *o, const char *name, const char *labels, uint64_t v)
{
    sample_name(o, name, labels);
    put(o, "%" PRIu64 "\n", v);
}

void metrics_f64(struct metrics_out *o, const char *name, const char *labels, double v)
{
    sample_name(o, name, labels);
    put(o, "%.9g\n", v);
}

void metrics_hist(struct metrics_out *o, const char *name, const char *labels,
                  const struct metrics_hist *h)
{
    const char *sep = labels && *labels ? "," : "";
    const char *l = labels ? labels : "";
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        put(o, "%s_bucket{%s%sle=\"%.6g\"} %" PRIu64 "\n", name, l, sep, (double)(1ull << i) / 1e6,
            cum);
    }
    cum += h->bucket[METRICS_HIST_BUCKETS];
    put(o, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, l, sep, cum);
    put(o, "%s_sum%s%s%s %.9g\n", name, *l ? "{" : "", l, *l ? "}" : "", (double)h->sum_ns / 1e9);
    put(o, "%s_count%s%s%s %" PRIu64 "\n", name, *l ? "{" : "", l, *l ? "}" : "", h->count);
}

char *metrics_labels(char *dst, size_t n, ...)
{
    size_t len = 0;
    if (n == 0)
        return dst;
    dst[0] = 0;
    va_list ap;
    va_start(ap, n);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        if (!v)
            v = "";
        int w = snprintf(dst + len, n - len, "%s%s=\"", len ? "," : "", k);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
        for (; *v && len + 3 < n; v++) {
            if (*v == '\\' || *v == '"') {
                dst[len++] = '\\';
                dst[len++] = *v;
            } else if (*v == '\n') {
                dst[len++] = '\\';
                dst[len++] = 'n';
            } else {
                dst[len++] = *v;
            }
        }
        if (len + 2 > n)
            break;
        dst[len++] = '"';
        dst[len] = 0;
    }
    va_end(ap);
    dst[len < n ? len : n - 1] = 0;
    return dst;
}

char *metrics_out_take(struct metrics_out *o, size_t *len)
{
    char *b = o->buf;
    *len = o->len;
    o->buf = NULL;
    o->len = o->cap = 0;
    return b;
}

void metrics_out_free(struct metrics_out *o)
{
    free(o->buf);
    o->buf = NULL;
    o->len = o->cap = 0;
}

struct metrics_server {
    struct http_server *http;
    struct http_auth *auth;
    metrics_render_cb render;
    void *data;
};

static void metrics_request(struct http_request *r, void *data)
{
    struct metrics_server *s = data;
    static const char text[] = "text/plain; charset=utf-8";
    const char *why;
    /* before anything else: without the token, not even a 404 */
    if (!http_auth_check(s->auth, r, &why)) {
        static const char msg[] = "unauthorized: send Authorization: Bearer TOKEN, the token of "
                                  "--metrics-token-file\n";
        http_auth_refuse(r, 401, why);
        http_respond(r, 401, text, msg, sizeof(msg) - 1);
        return;
    }
    if (strcmp(http_path(r), "/metrics") != 0) {
        static const char msg[] = "not found: metrics are at /metrics\n";
        http_respond(r, 404, text, msg, sizeof(msg) - 1);
        return;
    }
    if (strcmp(http_method(r), "GET") != 0 && strcmp(http_method(r), "HEAD") != 0) {
        static const char msg[] = "method not allowed\n";
        http_add_header(r, "Allow", "GET, HEAD");
        http_respond(r, 405, text, msg, sizeof(msg) - 1);
        return;
    }
    struct metrics_out o = METRICS_OUT_INIT;
    s->render(&o, s->data);
    if (o.failed) {
        metrics_out_free(&o);
        static const char msg[] = "out of memory\n";
        http_respond(r, 500, text, msg, sizeof(msg) - 1);
        return;
    }
    size_t len;
    char *body = metrics_out_take(&o, &len);
    if (!body) {
        http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", "", 0);
        return;
    }
    http_respond_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

struct metrics_server *metrics_serve(uv_loop_t *loop, const char *addr, const char *token_file,
                                     metrics_render_cb render, void *data)
{
    if (!token_file) {
        log_error("--metrics-listen %s needs --metrics-token-file FILE: a file holding the one "
                  "token scrapers must send (Authorization: Bearer TOKEN), mode 0600",
                  addr);
        return NULL;
    }
    struct metrics_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->render = render;
    s->data = data;
    s->auth = http_auth_load(token_file, 0, "--metrics-token-file");
    if (s->auth)
        s->http = http_start(loop, addr, metrics_request, s);
    if (!s->http) {
        http_auth_free(s->auth);
        free(s);
        return NULL;
    }
    log_info("metrics: serving http://%s/metrics", addr);
    return s;
}

void metrics_server_stop(struct metrics_server *s)
{
    if (!s)
        return;
    http_stop(s->http);
    http_auth_free(s->auth);
    free(s);
}
