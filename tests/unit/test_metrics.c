/* The Prometheus writer (histogram buckets, label escaping, exposition
 * lines) and the HTTP server on a loop: a synchronous answer, an answer
 * given later from a timer (a suspended connection), a request body, 404
 * and 405 of the metrics server, and a request still waiting when the
 * server stops (answered 503). Bearer tokens (http_auth.h): the token
 * files accepted and refused (a mode open to group or others, malformed
 * lines, short tokens), and the role each Authorization header gets. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "http.h"
#include "http_auth.h"
#include "metrics.h"

#define CHECK_HAS(hay, needle)                                                                     \
    do {                                                                                           \
        if (!strstr((hay), (needle))) {                                                            \
            fprintf(stderr, "%s:%d: missing \"%s\" in:\n%s\n", __FILE__, __LINE__, (needle),       \
                    (hay));                                                                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void test_hist(void)
{
    struct metrics_hist h = {0};
    metrics_hist_observe(&h, 500);         /* 0.5 us: le 1 us */
    metrics_hist_observe(&h, 1000);        /* 1 us: le 1 us */
    metrics_hist_observe(&h, 2000);        /* 2 us: le 2 us */
    metrics_hist_observe(&h, 3000);        /* 3 us: le 4 us */
    metrics_hist_observe(&h, 1000000);     /* 1 ms: le 1.024 ms */
    metrics_hist_observe(&h, 20000000000); /* 20 s: +Inf only */
    CHECK_EQ(h.count, 6);
    CHECK_EQ(h.bucket[0], 2);
    CHECK_EQ(h.bucket[1], 1);
    CHECK_EQ(h.bucket[2], 1);
    CHECK_EQ(h.bucket[10], 1);
    CHECK_EQ(h.bucket[METRICS_HIST_BUCKETS], 1);
    struct metrics_out o = METRICS_OUT_INIT;
    metrics_family(&o, "x_seconds", "histogram", "A test.");
    metrics_hist(&o, "x_seconds", "volume=\"v\"", &h);
    size_t len;
    char *t = metrics_out_take(&o, &len);
    CHECK(t && len == strlen(t));
    CHECK_HAS(t, "# TYPE x_seconds histogram\n");
    CHECK_HAS(t, "x_seconds_bucket{volume=\"v\",le=\"1e-06\"} 2\n");
    CHECK_HAS(t, "x_seconds_bucket{volume=\"v\",le=\"4e-06\"} 4\n");
    CHECK_HAS(t, "x_seconds_bucket{volume=\"v\",le=\"0.001024\"} 5\n");
    CHECK_HAS(t, "x_seconds_bucket{volume=\"v\",le=\"+Inf\"} 6\n");
    CHECK_HAS(t, "x_seconds_count{volume=\"v\"} 6\n");
    CHECK_HAS(t, "x_seconds_sum{volume=\"v\"} 20.0010065\n");
    free(t);
}

static void test_labels(void)
{
    char l[64];
    metrics_labels(l, sizeof(l), "volume", "a\"b\\c\nd", "sdc", "h1", NULL);
    CHECK(!strcmp(l, "volume=\"a\\\"b\\\\c\\nd\",sdc=\"h1\""));
    char small[16];
    metrics_labels(small, sizeof(small), "volume", "a-very-long-volume-name", NULL);
    CHECK(strlen(small) < sizeof(small));
    struct metrics_out o = METRICS_OUT_INIT;
    /* grow past the first buffer */
    for (int i = 0; i < 5000; i++)
        metrics_u64(&o, "cairn_test_total", "", (uint64_t)i);
    CHECK(!o.failed);
    CHECK_HAS(o.buf, "cairn_test_total 4999\n");
    metrics_f64(&o, "g", "a=\"1\"", 0.5);
    CHECK_HAS(o.buf, "g{a=\"1\"} 0.5\n");
    metrics_out_free(&o);
}

/* ---- the HTTP server ---- */

struct later {
    uv_timer_t t;
    struct http_request *r;
};

static int stop_waiting; /* the server stops while one request waits */
static struct http_request *parked;

static void later_cb(uv_timer_t *t)
{
    struct later *l = t->data;
    http_respond(l->r, 202, "text/plain", "later", 5);
    uv_close((uv_handle_t *)t, NULL);
}

static struct later later_req;

static void handler(struct http_request *r, void *data)
{
    (void)data;
    const char *p = http_path(r);
    if (!strcmp(p, "/now")) {
        const char *q = http_query(r, "x");
        char body[64];
        int n = snprintf(body, sizeof(body), "now %s %s", http_method(r), q ? q : "-");
        http_add_header(r, "X-Test", "yes");
        http_respond(r, 200, "text/plain", body, (size_t)n);
    } else if (!strcmp(p, "/later")) {
        later_req.r = r;
        later_req.t.data = &later_req;
        uv_timer_init(uv_default_loop(), &later_req.t);
        uv_timer_start(&later_req.t, later_cb, 20, 0);
    } else if (!strcmp(p, "/echo")) {
        size_t len;
        const uint8_t *b = http_body(r, &len);
        http_respond(r, 200, "application/octet-stream", b, len);
    } else if (!strcmp(p, "/park")) {
        parked = r; /* answered by http_stop() */
        stop_waiting = 1;
    } else {
        http_respond(r, 404, "text/plain", "no", 2);
    }
}

struct client {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t w;
    char req[512];
    char resp[8192];
    size_t len;
    int done;
};

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)sz;
    struct client *c = h->data;
    buf->base = c->resp + c->len;
    buf->len = sizeof(c->resp) - 1 - c->len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct client *c = s->data;
    if (n > 0) {
        c->len += (size_t)n;
        c->resp[c->len] = 0;
        return;
    }
    if (n < 0) {
        c->done = 1;
        uv_close((uv_handle_t *)s, NULL);
    }
}

static void write_cb(uv_write_t *w, int status)
{
    CHECK_EQ(status, 0);
    (void)w;
}

static void connect_cb(uv_connect_t *req, int status)
{
    CHECK_EQ(status, 0);
    struct client *c = req->data;
    uv_buf_t b = uv_buf_init(c->req, (unsigned)strlen(c->req));
    uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* Send one request to port and run the loop until the answer is complete
 * (the server closes: Connection: close). */
static void http_get(int port, const char *request, struct client *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->req, sizeof(c->req), "%s", request);
    uv_tcp_init(uv_default_loop(), &c->tcp);
    c->tcp.data = c;
    c->conn.data = c;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    CHECK_EQ(uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *)&sa, connect_cb), 0);
    while (!c->done && !stop_waiting)
        uv_run(uv_default_loop(), UV_RUN_ONCE);
}

static void test_http(void)
{
    uv_loop_t *loop = uv_default_loop();
    CHECK(http_start(loop, "bad address", handler, NULL) == NULL);
    struct http_server *s = http_start(loop, "127.0.0.1:0", handler, NULL);
    CHECK(s != NULL);
    int port = http_port(s);
    CHECK(port > 0);
    struct client c;
    http_get(port, "GET /now?x=42 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c);
    CHECK_HAS(c.resp, "HTTP/1.1 200");
    CHECK_HAS(c.resp, "X-Test: yes");
    CHECK_HAS(c.resp, "now GET 42");

    http_get(port, "GET /later HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c);
    CHECK_HAS(c.resp, "HTTP/1.1 202");
    CHECK_HAS(c.resp, "later");

    http_get(port,
             "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 11\r\n\r\n"
             "hello world",
             &c);
    CHECK_HAS(c.resp, "HTTP/1.1 200");
    CHECK_HAS(c.resp, "hello world");

    /* A request the handler keeps is answered 503 when the server stops. */
    http_get(port, "GET /park HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c);
    CHECK(parked != NULL);
    http_stop(s);
    while (!c.done)
        uv_run(loop, UV_RUN_ONCE);
    CHECK_HAS(c.resp, "HTTP/1.1 503");
}

static void render(struct metrics_out *o, void *data)
{
    (void)data;
    metrics_family(o, "cairn_test_total", "counter", "A test counter.");
    metrics_u64(o, "cairn_test_total", "", 7);
}

/* ---- bearer tokens ---- */

#define ADMIN_TOK "0123456789abcdef0123456789abcdef"
#define MONITOR_TOK "fedcba9876543210fedcba9876543210"

static char tmpdir[] = "/tmp/cairn-test-auth-XXXXXX";

/* tmpdir/name holding text, with mode; its path (static). */
static const char *token_file(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
    CHECK_EQ(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void remove_file(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    CHECK_EQ(unlink(path), 0);
}

static int loads(const char *text, mode_t mode, int roles)
{
    struct http_auth *a = http_auth_load(token_file("t", text, mode), roles, "--test");
    http_auth_free(a);
    return a != NULL;
}

static struct http_auth *auth;

static void auth_handler(struct http_request *r, void *data)
{
    (void)data;
    const char *why;
    enum http_role role = http_auth_check(auth, r, &why);
    char body[64];
    int n = snprintf(body, sizeof(body), "role %d why %s", (int)role, why ? why : "-");
    if (!role)
        http_auth_refuse(r, 401, why);
    http_respond(r, role ? 200 : 401, "text/plain", body, (size_t)n);
}

static void get_with(int port, const char *auth_line, struct client *c)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
             auth_line);
    http_get(port, req, c);
}

static void test_auth(void)
{
    /* the files */
    CHECK(loads("# tokens\n\nadmin " ADMIN_TOK "\n  monitor\t" MONITOR_TOK "  \r\n", 0600, 1));
    CHECK(loads("monitor " MONITOR_TOK "\n", 0400, 1));
    CHECK(!loads("admin " ADMIN_TOK "\n", 0644, 1)); /* others may read it */
    CHECK(!loads("admin " ADMIN_TOK "\n", 0640, 1));
    CHECK(!loads("admin " ADMIN_TOK "\n", 0620, 1));
    CHECK(!loads("# nothing\n", 0600, 1));
    CHECK(!loads("root " ADMIN_TOK "\n", 0600, 1));
    CHECK(!loads("admin\n", 0600, 1));
    CHECK(!loads("admin " ADMIN_TOK " more\n", 0600, 1));
    CHECK(!loads("admin short\n", 0600, 1));
    CHECK(!loads("admin " ADMIN_TOK "\"\n", 0600, 1));
    CHECK(loads(ADMIN_TOK "\n", 0600, 0));
    CHECK(loads("  " ADMIN_TOK "==", 0600, 0));
    CHECK(!loads(ADMIN_TOK "\n", 0604, 0));
    CHECK(!loads(ADMIN_TOK " " MONITOR_TOK "\n", 0600, 0));
    CHECK(!loads("\n", 0600, 0));
    CHECK(!loads("admin " ADMIN_TOK "\n", 0600, 0)); /* a roles file is not one token */
    CHECK(http_auth_load("/nonexistent/tokens", 1, "--test") == NULL);
    CHECK(metrics_serve(uv_default_loop(), "127.0.0.1:0", NULL, render, NULL) == NULL);

    /* the requests */
    auth = http_auth_load(
        token_file("roles", "admin " ADMIN_TOK "\nmonitor " MONITOR_TOK "\n", 0600), 1, "--test");
    CHECK(auth != NULL);
    struct http_server *s = http_start(uv_default_loop(), "127.0.0.1:0", auth_handler, NULL);
    CHECK(s != NULL);
    int port = http_port(s);
    struct client c;
    stop_waiting = 0;
    get_with(port, "", &c);
    CHECK_HAS(c.resp, "HTTP/1.1 401");
    CHECK_HAS(c.resp, "WWW-Authenticate: Bearer realm=\"cairn\"\r\n");
    CHECK_HAS(c.resp, "role 0 why no bearer token");
    get_with(port, "Authorization: Basic " ADMIN_TOK "\r\n", &c);
    CHECK_HAS(c.resp, "role 0 why no bearer token");
    get_with(port, "Authorization: Bearer " ADMIN_TOK "x\r\n", &c);
    CHECK_HAS(c.resp, "HTTP/1.1 401");
    CHECK_HAS(c.resp, "error=\"invalid_token\"");
    CHECK_HAS(c.resp, "role 0 why wrong token");
    get_with(port, "Authorization: Bearer 0123456789abcdef\r\n", &c); /* a prefix */
    CHECK_HAS(c.resp, "role 0 why wrong token");
    get_with(port, "Authorization: Bearer " ADMIN_TOK " " ADMIN_TOK "\r\n", &c);
    CHECK_HAS(c.resp, "role 0 why wrong token");
    get_with(port, "Authorization: Bearer " ADMIN_TOK "\r\n", &c);
    CHECK_HAS(c.resp, "HTTP/1.1 200");
    CHECK_HAS(c.resp, "role 2 why -");
    get_with(port, "authorization: bearer   " MONITOR_TOK "  \r\n", &c);
    CHECK_HAS(c.resp, "role 1 why -");
    http_stop(s);
    http_auth_free(auth);
    remove_file("t");
    remove_file("roles");
}

static void test_metrics_server(void)
{
    struct metrics_server *m =
        metrics_serve(uv_default_loop(), "127.0.0.1:0", "/dev/null", render, NULL);
    CHECK(m == NULL); /* not a regular file */
    m = metrics_serve(uv_default_loop(), "127.0.0.1:0", token_file("m", ADMIN_TOK, 0600), render,
                      NULL);
    CHECK(m != NULL);
    metrics_server_stop(m);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* its handles close */
    remove_file("m");
}

int main(void)
{
    test_hist();
    test_labels();
    test_http();
    CHECK(mkdtemp(tmpdir) != NULL);
    test_auth();
    test_metrics_server();
    CHECK_EQ(rmdir(tmpdir), 0);
    CHECK_EQ(uv_run(uv_default_loop(), UV_RUN_DEFAULT), 0);
    CHECK_EQ(uv_loop_close(uv_default_loop()), 0);
    printf("test_metrics: ok\n");
    return 0;
}
