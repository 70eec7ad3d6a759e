/* raft_link: Raft's transport over authenticated RPC links, driven the way
 * libraft drives it, with two transports in one loop (A listens, B
 * connects): A is told B's raft id and address; bytes go both ways
 * byte-exact, 16 MiB of them to a slow reader without the relays taking
 * them all in (the writer's own queue holds what the reader has not
 * taken); closing one stream is EOF at the other; a peer with an SDS
 * credential, another CA's MDM credential, plain TCP bytes, or bad frames
 * from a proved MDM get no stream; B will not take a Raft peer that is an
 * SDS; closing both transports with streams open and a connect in flight
 * closes everything (ASan's leak check sees the rest). The refused
 * credentials are a child process's: a process has one credential. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "auth.h"
#include "check.h"
#include "raft_link.h"
#include "rpc.h"
#include "util.h"

#define BIG (16u << 20)

static uv_loop_t *loop;
static char dir[] = "/tmp/cairn-test-raft-link-XXXXXX";
static char path_ca[128], path_ca2[128], path_mdm[128], path_sds[128], path_other[128];

/* ---- helpers ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static uint64_t deadline;
static void guard_cb(uv_timer_t *t)
{
    (void)t;
    if (uv_now(loop) > deadline) {
        fprintf(stderr, "test_raft_link: timed out\n");
        exit(1);
    }
}

/* Run the loop until *flag (within 20 s). */
static void run_until(const int *flag)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    deadline = uv_now(loop) + 20000;
    uv_timer_start(&guard, guard_cb, 50, 50);
    while (!*flag)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* One of Raft's streams, as Raft holds it: read into got, closed and
 * raft_free()d at EOF. */
struct end {
    uv_stream_t *s;
    uint8_t *got;
    size_t ngot, cap;
    int eof, closed, slow, stopped;
    uv_timer_t slow_timer;
};

static void end_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)sz;
    struct end *e = h->data;
    if (e->cap - e->ngot < 65536) {
        e->cap = e->cap ? e->cap * 2 : 1u << 20;
        e->got = realloc(e->got, e->cap);
        CHECK(e->got);
    }
    *b = uv_buf_init((char *)e->got + e->ngot, 65536);
}

static void end_closed(uv_handle_t *h)
{
    struct end *e = h->data;
    e->closed = 1;
    raft_free(h);
}

static void end_close(struct end *e)
{
    if (!uv_is_closing((uv_handle_t *)e->s))
        uv_close((uv_handle_t *)e->s, end_closed);
}

static void end_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void slow_cb(uv_timer_t *t)
{
    struct end *e = t->data;
    e->stopped = 0;
    if (!uv_is_closing((uv_handle_t *)e->s))
        uv_read_start(e->s, end_alloc, end_read);
}

static void end_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct end *e = s->data;
    if (n < 0) {
        e->eof = n == UV_EOF ? 1 : -1;
        end_close(e);
        return;
    }
    e->ngot += (size_t)n;
    if (e->slow && n > 0) {
        /* a slow reader: a pause after every read */
        uv_read_stop(s);
        e->stopped = 1;
        uv_timer_start(&e->slow_timer, slow_cb, 2, 0);
    }
}

static void end_start(struct end *e, uv_stream_t *s)
{
    memset(e, 0, sizeof(*e));
    e->s = s;
    s->data = e;
    uv_timer_init(loop, &e->slow_timer);
    e->slow_timer.data = e;
    CHECK_EQ(uv_read_start(s, end_alloc, end_read), 0);
}

static void end_free(struct end *e)
{
    uv_close((uv_handle_t *)&e->slow_timer, NULL);
    free(e->got);
    e->got = NULL;
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void end_write(struct end *e, const void *p, size_t n)
{
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    CHECK_EQ(uv_write(w, e->s, &b, 1, write_done), 0);
}

/* ---- the transports ---- */

static struct raft_uv_transport ta, tb;
static char addr_a[64], addr_sds[64];
static const char *addr_b = "10.1.2.3:6612"; /* what B says it is; B does not listen */

static int naccepted;
static struct end acc[8];
static raft_id acc_id;
static char acc_addr[64];

static void accept_cb(struct raft_uv_transport *t, raft_id id, const char *address, uv_stream_t *s)
{
    CHECK(t == &ta);
    CHECK(naccepted < 8);
    acc_id = id;
    snprintf(acc_addr, sizeof(acc_addr), "%s", address);
    end_start(&acc[naccepted++], s);
}

struct conn_req {
    struct raft_uv_connect req;
    int done, status;
    struct end e;
};

static void connect_cb(struct raft_uv_connect *req, uv_stream_t *s, int status)
{
    struct conn_req *cr = (struct conn_req *)req;
    cr->done = 1;
    cr->status = status;
    if (status == 0)
        end_start(&cr->e, s);
    else
        CHECK(s == NULL);
}

static int closed_a, closed_b;
static void closed_cb(struct raft_uv_transport *t)
{
    if (t == &ta)
        closed_a = 1;
    else
        closed_b = 1;
}

/* ---- a proved MDM that speaks the protocol badly (this process's own
 * credential, through the RPC layer directly) ---- */

static int bad_closed, bad_connected;
static struct rpc_conn *bad_conn;
static int bad_status;

static void bad_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                        uint8_t *payload)
{
    (void)c;
    (void)h;
    (void)msg;
    rpc_buf_free(payload);
}

static void bad_on_close(struct rpc_conn *c)
{
    (void)c;
    bad_closed = 1;
}

static void bad_connect_cb(struct rpc_conn *c, int status, void *arg)
{
    (void)arg;
    bad_conn = c;
    bad_status = status;
    bad_connected = 1;
}

static void bad_reply(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                      uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    *(int *)arg = status;
    rpc_buf_free(payload);
}

static struct rpc_conn *bad_open(void)
{
    static const struct rpc_handlers h = {.on_request = bad_request,
                                          .on_close = bad_on_close,
                                          .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    bad_connected = bad_closed = 0;
    CHECK_EQ(rpc_connect(loop, addr_a, &h, NULL, bad_connect_cb, NULL), 0);
    run_until(&bad_connected);
    CHECK_EQ(bad_status, 0);
    return bad_conn;
}

static void open_msg(uint8_t *msg, uint64_t id, const char *addr)
{
    put_be64(msg, id);
    memcpy(msg + 8, addr, strlen(addr));
}

/* Frames from a proved MDM that break the protocol close its connection;
 * none reaches Raft as a stream. */
static void test_bad_frames(void)
{
    int before = naccepted, st = 1;
    uint8_t msg[64], data[16] = "0123456789abcdef";
    struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
    /* data before the open frame */
    struct rpc_conn *c = bad_open();
    CHECK_EQ(rpc_call(c, FT_RAFT_DATA, NULL, 0, &iov, 1, 5000, bad_reply, &st), 0);
    run_until(&bad_closed);
    CHECK(st < 0);
    /* raft id 0 */
    c = bad_open();
    open_msg(msg, 0, "127.0.0.1:1");
    CHECK_EQ(rpc_call(c, FT_RAFT_OPEN, msg, 8 + 11, NULL, 0, 5000, bad_reply, &st), 0);
    run_until(&bad_closed);
    /* too short to hold an address; and an address with a NUL in it */
    c = bad_open();
    CHECK_EQ(rpc_call(c, FT_RAFT_OPEN, msg, 5, NULL, 0, 5000, bad_reply, &st), 0);
    run_until(&bad_closed);
    c = bad_open();
    open_msg(msg, 7, "127.0.0.1:1");
    msg[12] = 0;
    CHECK_EQ(rpc_call(c, FT_RAFT_OPEN, msg, 8 + 11, NULL, 0, 5000, bad_reply, &st), 0);
    run_until(&bad_closed);
    /* a frame of another type */
    c = bad_open();
    CHECK_EQ(rpc_call(c, FT_MGMT, NULL, 0, NULL, 0, 5000, bad_reply, &st), 0);
    run_until(&bad_closed);
    CHECK_EQ(naccepted, before);
    /* a second open frame: the first is taken (a stream for Raft), the
     * second closes the connection and so the stream */
    c = bad_open();
    open_msg(msg, 7, "127.0.0.1:7");
    st = 1;
    CHECK_EQ(rpc_call(c, FT_RAFT_OPEN, msg, 8 + 11, NULL, 0, 5000, bad_reply, &st), 0);
    while (st == 1)
        uv_run(loop, UV_RUN_ONCE);
    CHECK_EQ(st, 0);
    CHECK_EQ(naccepted, before + 1);
    CHECK_EQ(acc_id, 7);
    CHECK(!strcmp(acc_addr, "127.0.0.1:7"));
    CHECK_EQ(rpc_call(c, FT_RAFT_OPEN, msg, 8 + 11, NULL, 0, 5000, bad_reply, &st), 0);
    run_until(&bad_closed);
    run_until(&acc[before].closed);
    CHECK_EQ(acc[before].eof, 1);
    CHECK_EQ(acc[before].ngot, 0);
    end_free(&acc[before]);
}

/* Plain TCP bytes on the Raft port: closed, nothing reaches Raft. */
static int plain_done, plain_connected;
static uv_tcp_t plain;
static uv_connect_t plain_req;
static char plain_buf[256];

static void plain_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    (void)s;
    *b = uv_buf_init(plain_buf, sizeof(plain_buf));
}

static void plain_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n >= 0)
        return; /* nothing is expected: it must close */
    uv_close((uv_handle_t *)s, NULL);
    plain_done = 1;
}

static int plain_quiet; /* sends nothing: a peer that never authenticates */
static void plain_connect_cb(uv_connect_t *r, int status)
{
    CHECK_EQ(status, 0);
    static char garbage[64] = "GET / HTTP/1.0\r\n\r\nnot a cairn frame at all, just bytes";
    uv_buf_t b = uv_buf_init(garbage, sizeof(garbage));
    CHECK(plain_quiet || uv_try_write(r->handle, &b, 1) > 0);
    uv_read_start(r->handle, plain_alloc, plain_read);
    plain_connected = 1;
}

static void test_plain_tcp_start(void)
{
    plain_done = plain_connected = 0;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", atoi(strrchr(addr_a, ':') + 1), &sa);
    uv_tcp_init(loop, &plain);
    CHECK_EQ(uv_tcp_connect(&plain_req, &plain, (struct sockaddr *)&sa, plain_connect_cb), 0);
}

static void test_plain_tcp(void)
{
    int before = naccepted;
    test_plain_tcp_start();
    run_until(&plain_done);
    CHECK_EQ(naccepted, before);
}

/* ---- the child: credentials that are not this cluster's MDMs' ---- */

static int child_status;
static int child_got;

static void child_connect_cb(struct rpc_conn *c, int status, void *arg)
{
    (void)arg;
    child_status = status;
    child_got = 1;
    if (c)
        rpc_close(c);
}

static void child_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                          uint8_t *payload)
{
    (void)msg;
    rpc_buf_free(payload);
    rpc_reply(c, h, 0, NULL, 0, NULL, 0, NULL, NULL);
}

/* Connects to A with an SDS credential, then with another CA's MDM
 * credential (each must fail), then listens as an SDS until the parent
 * closes cmd; exits 0 if all went as expected. */
static int child_main(int cmd, int ack)
{
    char line[160] = "";
    size_t n = 0;
    while (n < sizeof(line) - 1 && read(cmd, line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = 0;
    char a[64], s[64];
    if (sscanf(line, "%63s %63s", a, s) != 2)
        return 2;
    loop = uv_default_loop();
    static struct auth_cred cred;
    char err[256];
    static const struct rpc_handlers h = {.on_request = child_request,
                                          .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_MDM)};
    const char *paths[2] = {path_sds, path_other};
    for (int i = 0; i < 2; i++) {
        if (auth_cred_load(paths[i], &cred, err, sizeof(err)) < 0 || rpc_auth_init(&cred) < 0)
            return 3;
        child_got = 0;
        if (rpc_connect(loop, a, &h, NULL, child_connect_cb, NULL) < 0)
            return 4;
        while (!child_got)
            uv_run(loop, UV_RUN_ONCE);
        if (child_status != -EACCES) {
            fprintf(stderr, "child: credential %d: status %d, want -EACCES\n", i, child_status);
            return 5;
        }
    }
    /* an SDS where B thinks a Raft peer is */
    if (auth_cred_load(path_sds, &cred, err, sizeof(err)) < 0 || rpc_auth_init(&cred) < 0)
        return 3;
    struct rpc_server *srv;
    if (rpc_listen(loop, s, &h, NULL, &srv) < 0)
        return 6;
    if (write(ack, "ready\n", 6) != 6)
        return 7;
    /* until the parent closes cmd */
    uv_pipe_t p;
    uv_pipe_init(loop, &p, 0);
    uv_pipe_open(&p, cmd);
    p.data = srv;
    uv_read_start((uv_stream_t *)&p, plain_alloc, plain_read);
    while (!plain_done)
        uv_run(loop, UV_RUN_ONCE);
    rpc_server_close(srv);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

static int child_ready;
static void ack_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    CHECK(n > 0 && !memcmp(b->base, "ready\n", 6));
    child_ready = 1;
    uv_read_stop(s);
}

static pid_t child;
static int child_cmd, child_ack;

static void child_start(void)
{
    int c[2], a[2];
    CHECK(pipe(c) == 0 && pipe(a) == 0);
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        close(c[1]);
        close(a[0]);
        _exit(child_main(c[0], a[1]));
    }
    close(c[0]);
    close(a[1]);
    child_cmd = c[1];
    child_ack = a[0];
}

/* ---- the tests ---- */

static void make_credentials(void)
{
    char err[256];
    CHECK(mkdtemp(dir));
    snprintf(path_ca, sizeof(path_ca), "%s/ca.key", dir);
    snprintf(path_ca2, sizeof(path_ca2), "%s/other-ca.key", dir);
    snprintf(path_mdm, sizeof(path_mdm), "%s/mdm1.cred", dir);
    snprintf(path_sds, sizeof(path_sds), "%s/sds1.cred", dir);
    snprintf(path_other, sizeof(path_other), "%s/other-mdm.cred", dir);
    CHECK_EQ(auth_ca_create(path_ca, err, sizeof(err)), 0);
    CHECK_EQ(auth_ca_create(path_ca2, err, sizeof(err)), 0);
    CHECK_EQ(auth_cred_issue(path_ca, AUTH_ROLE_MDM, "mdm1", path_mdm, err, sizeof(err)), 0);
    CHECK_EQ(auth_cred_issue(path_ca, AUTH_ROLE_SDS, "sds1", path_sds, err, sizeof(err)), 0);
    CHECK_EQ(auth_cred_issue(path_ca2, AUTH_ROLE_MDM, "mdm1", path_other, err, sizeof(err)), 0);
}

static void remove_credentials(void)
{
    unlink(path_ca);
    unlink(path_ca2);
    unlink(path_mdm);
    unlink(path_sds);
    unlink(path_other);
    rmdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    make_credentials();
    child_start(); /* before this process has a loop: the child makes its own */
    static struct auth_cred cred;
    char err[256];
    CHECK_EQ(auth_cred_load(path_mdm, &cred, err, sizeof(err)), 0);
    CHECK_EQ(rpc_auth_init(&cred), 0);
    loop = uv_default_loop();
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%d", free_port());
    snprintf(addr_sds, sizeof(addr_sds), "127.0.0.1:%d", free_port());

    /* as raft_uv_init and raft_start use a transport */
    CHECK_EQ(raft_link_init(&ta, loop), 0);
    CHECK_EQ(raft_link_init(&tb, loop), 0);
    CHECK_EQ(ta.init(&ta, 1, addr_a), 0);
    CHECK_EQ(tb.init(&tb, 2, addr_b), 0);
    CHECK(ta.init(&ta, 0, addr_a) != 0);
    CHECK_EQ(ta.listen(&ta, accept_cb), 0);

    /* B connects: A is told who B is */
    static struct conn_req b1;
    CHECK_EQ(tb.connect(&tb, &b1.req, 1, addr_a, connect_cb), 0);
    run_until(&b1.done);
    CHECK_EQ(b1.status, 0);
    while (naccepted < 1)
        uv_run(loop, UV_RUN_ONCE);
    CHECK_EQ(acc_id, 2);
    CHECK(!strcmp(acc_addr, addr_b));
    struct end *a1 = &acc[0], *e1 = &b1.e;

    /* both ways, byte-exact */
    end_write(e1, "ping from B", 11);
    end_write(a1, "pong from A!", 12);
    while (a1->ngot < 11 || e1->ngot < 12)
        uv_run(loop, UV_RUN_ONCE);
    CHECK(!memcmp(a1->got, "ping from B", 11));
    CHECK(!memcmp(e1->got, "pong from A!", 12));

    /* 16 MiB to a slow reader: the relays hold a window of it, the rest
     * waits in the writer's own queue (Raft's, in the MDM) */
    uint8_t *big = malloc(BIG);
    CHECK(big);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < BIG; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        big[i] = (uint8_t)x;
    }
    a1->ngot = 0;
    a1->slow = 1;
    for (size_t off = 0; off < BIG; off += 1u << 20)
        end_write(e1, big + off, 1u << 20);
    /* once the reader has 2 MiB, the rest of what the relays took in is at
     * most a window and the socket buffers: the writer still holds more */
    size_t queued_at_2m = 0;
    while (a1->ngot < BIG) {
        uv_run(loop, UV_RUN_ONCE);
        if (!queued_at_2m && a1->ngot >= (2u << 20))
            queued_at_2m = uv_stream_get_write_queue_size(e1->s) + 1;
    }
    CHECK_EQ(a1->ngot, BIG);
    CHECK(!memcmp(a1->got, big, BIG));
    fprintf(stderr,
            "16 MiB to a slow reader: at 2 MiB read, %zu bytes waited in the writer's "
            "queue\n",
            queued_at_2m - 1);
    CHECK(queued_at_2m > (4u << 20));
    free(big);
    a1->slow = 0;

    /* B's stream closes: A's reads EOF */
    end_close(e1);
    run_until(&a1->eof);
    CHECK_EQ(a1->eof, 1);
    run_until(&a1->closed);
    run_until(&e1->closed);
    end_free(a1);
    end_free(e1);

    test_bad_frames();
    test_plain_tcp();

    /* the child's credentials; then B to an SDS's port */
    dprintf(child_cmd, "%s %s\n", addr_a, addr_sds);
    /* A's loop runs while the child tries */
    uv_pipe_t ack;
    uv_pipe_init(loop, &ack, 0);
    CHECK_EQ(uv_pipe_open(&ack, child_ack), 0);
    plain_done = 0;
    uv_read_start((uv_stream_t *)&ack, plain_alloc, ack_read);
    run_until(&child_ready);
    uv_close((uv_handle_t *)&ack, NULL);
    static struct conn_req b2;
    CHECK_EQ(tb.connect(&tb, &b2.req, 9, addr_sds, connect_cb), 0);
    run_until(&b2.done);
    CHECK_EQ(b2.status, RAFT_NOCONNECTION);
    close(child_cmd);
    int ws;
    CHECK(waitpid(child, &ws, 0) == child);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    CHECK_EQ(naccepted, 2);

    /* close both transports with a stream open and a connect in flight */
    static struct conn_req b3, b4;
    CHECK_EQ(tb.connect(&tb, &b3.req, 1, addr_a, connect_cb), 0);
    run_until(&b3.done);
    CHECK_EQ(b3.status, 0);
    while (naccepted < 3)
        uv_run(loop, UV_RUN_ONCE);
    end_write(&b3.e, "last words", 10);
    while (acc[2].ngot < 10)
        uv_run(loop, UV_RUN_ONCE);
    /* and a peer still in its handshake: closed with the listener, not
     * 10 s later by the handshake's timeout */
    plain_quiet = 1;
    test_plain_tcp_start();
    run_until(&plain_connected);
    for (int i = 0; i < 20; i++)
        uv_run(loop, UV_RUN_NOWAIT); /* A accepts it */
    uint64_t t0 = uv_now(loop);
    CHECK_EQ(tb.connect(&tb, &b4.req, 1, addr_a, connect_cb), 0);
    ta.close(&ta, closed_cb);
    tb.close(&tb, closed_cb);
    run_until(&closed_a);
    run_until(&closed_b);
    CHECK(b4.done && b4.status == RAFT_CANCELED);
    run_until(&acc[2].closed);
    run_until(&b3.e.closed);
    run_until(&plain_done);
    CHECK(uv_now(loop) - t0 < 5000);
    end_free(&acc[2]);
    end_free(&b3.e);
    raft_link_close(&ta);
    raft_link_close(&tb);
    CHECK(ta.impl == NULL && tb.impl == NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    remove_credentials();
    printf("test_raft_link: ok\n");
    return 0;
}
