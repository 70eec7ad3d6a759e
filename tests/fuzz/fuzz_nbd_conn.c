/* The NBD server's connection state machines: a real server
 * (nbd_server_listen on a unix socket) accepts a client whose bytes are the
 * input, sent in chunks, so nbd_handshake_input (the client's flags, option
 * haggling: GO, INFO, LIST, EXPORT_NAME, STRUCTURED_REPLY, LIST/SET_META_
 * CONTEXT, STARTTLS, ABORT, unknown options) and then nbd_transmit_input
 * (READ, WRITE and its payload, FLUSH, TRIM, WRITE_ZEROES, BLOCK_STATUS,
 * CACHE, DISC, rejected requests and the payloads skipped), flow control and
 * closing all run as they do in cairn-sdc. Nothing in client/ is changed or
 * mocked but the backend: exports that complete their I/O in memory, on the
 * next loop turn, in an order and with errors the input picks.
 *
 * Input: [chunk size][flags][client bytes...]. The chunk size is how many
 * bytes are sent per loop turn (0: all at once). flags: bits 0-1 the
 * server's TLS mode (0 and 3 off, 1 on with an allow list, 2 require), bit
 * 2 completions newest first, bit 3 backend errors (requests at offsets with
 * bit 12 set fail, the errno from bits 13-15), bit 4 one completion per loop
 * turn, bit 5 the client leaves as soon as it has sent everything (requests
 * still in flight or waiting are cancelled).
 *
 * Every input must end with the connection freed, every export reference
 * given back and no I/O outstanding; a connection that does not close once
 * its client has gone is reported as a hang (abort). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "nbd_internal.h"
#include "rpc.h"

/* ---- the backend ---- */

struct fexp {
    const char *name;
    uint64_t size;
    int ro;
    int refs;
    struct nbd_stats stats;
};

/* "secret" has an allow list under TLS on (only identity "fuzz"). The last
 * is every name that starts with "v/", so the fuzzer can make names long
 * enough for the replies that do not fit a write record. */
static struct fexp exps[] = {
    {.name = "a", .size = 1u << 20},
    {.name = "ro", .size = 64u << 10, .ro = 1},
    {.name = "secret", .size = 8192},
    {.name = "v/", .size = 16384},
};
#define NEXPS (sizeof(exps) / sizeof(exps[0]))

static uv_loop_t loop;
static uv_idle_t completer;
static struct nbd_io *pending[1024];
static int npending;
static uint8_t mode_flags; /* the input's flags byte */

static void *be_open(void *ctx, const char *name, uint64_t *size, int *ro)
{
    (void)ctx;
    for (size_t i = 0; i < NEXPS; i++)
        if (strcmp(exps[i].name, name) == 0 || (i == NEXPS - 1 && strncmp(name, "v/", 2) == 0)) {
            exps[i].refs++;
            *size = exps[i].size;
            *ro = exps[i].ro;
            return &exps[i];
        }
    return NULL;
}

static void be_close(void *ctx, void *exp)
{
    (void)ctx;
    struct fexp *e = exp;
    if (e->refs <= 0)
        abort(); /* closed more often than opened */
    e->refs--;
}

static void be_list(void *ctx, void (*emit)(void *arg, const char *name), void *arg)
{
    (void)ctx;
    static char long_name[600];
    if (!long_name[0]) {
        memset(long_name, 'n', sizeof(long_name) - 1);
        memcpy(long_name, "v/", 2);
    }
    for (size_t i = 0; i < NEXPS; i++)
        emit(arg, exps[i].name);
    emit(arg, long_name);
}

/* The requests of a client that went: they still complete, each once
 * (-ECANCELED under backend errors). */
static void be_cancel(void *ctx, const void *owner)
{
    (void)ctx;
    for (int i = 0; i < npending; i++)
        if (pending[i]->owner == owner && !pending[i]->cancelled)
            abort(); /* the server marks them before it tells the backend */
}

static struct nbd_stats *be_stats(void *ctx, void *exp)
{
    (void)ctx;
    return &((struct fexp *)exp)->stats;
}

/* What io gets: an error when the input asked for them and its offset says
 * so, otherwise success with its data (READ) or extents (STATUS). */
static int complete(struct nbd_io *io)
{
    static const int errs[] = {-EIO,   -ENOSPC, -ENOTSUP,   -EACCES,
                               -EROFS, -ENOMEM, -ESHUTDOWN, -EOVERFLOW};
    if (io->cancelled && (mode_flags & 8))
        return -ECANCELED;
    if ((mode_flags & 8) && (io->off & 4096))
        return errs[(io->off >> 13) & 7];
    if (io->cmd == NBDIO_READ) {
        /* the backend provides the buffer, as sdc_io.c does (the server frees it) */
        if (!io->buf && !(io->buf = rpc_buf_alloc(io->len)))
            return -ENOMEM;
        memset(io->buf, 0xa5, io->len);
    }
    if (io->cmd == NBDIO_STATUS) {
        /* 0 to 3 extents splitting the range (0: a backend that found none) */
        int n = (int)((io->off >> 9) & 3);
        uint32_t left = io->len;
        for (int i = 0; i < n; i++) {
            uint32_t l = i == n - 1 ? left : left / 2;
            io->ext[i].len = l;
            io->ext[i].flags = (uint32_t)i & (NBD_STATE_HOLE | NBD_STATE_ZERO);
            left -= l;
        }
        io->next = n;
    }
    return 0;
}

static void completer_cb(uv_idle_t *h)
{
    /* one at a time when asked, so more stay in flight meanwhile */
    int k = (mode_flags & 16) ? 1 : npending;
    while (k-- > 0 && npending > 0) {
        struct nbd_io *io;
        if (mode_flags & 4) {
            io = pending[--npending];
        } else {
            io = pending[0];
            memmove(pending, pending + 1, sizeof(pending[0]) * (size_t)--npending);
        }
        nbd_io_done(io, complete(io));
    }
    if (npending == 0)
        uv_idle_stop(h);
}

static void be_submit(void *ctx, void *exp, struct nbd_io *io)
{
    (void)ctx;
    if (exp < (void *)exps || exp >= (void *)(exps + NEXPS) || ((struct fexp *)exp)->refs <= 0)
        abort(); /* submitted on an export the connection does not hold */
    if (npending == (int)(sizeof(pending) / sizeof(pending[0])))
        abort(); /* more in flight than the flow limits allow */
    pending[npending++] = io;
    uv_idle_start(&completer, completer_cb); /* later, from the loop */
}

/* ---- the servers: one per TLS mode, made once (servers never close) ---- */

static struct nbd_server *servers[3];
static char paths[3][108];

static void unlink_paths(void)
{
    for (int i = 0; i < 3; i++)
        if (paths[i][0])
            unlink(paths[i]);
}

/* TLS credentials: a PSK (no certificates to make), in a file only we may
 * read, as nbd_tls_new insists. */
static struct nbd_tls *make_tls(enum nbd_tls_mode mode)
{
    char psk[108];
    snprintf(psk, sizeof(psk), "/tmp/cairn-fuzz-nbd-%d.psk", (int)getpid());
    FILE *f = fopen(psk, "w");
    if (!f)
        abort();
    chmod(psk, 0600);
    fprintf(f, "fuzz:00112233445566778899aabbccddeeff\n");
    fclose(f);
    const char *allow[] = {"secret=fuzz"};
    struct nbd_tls_opts o = {.mode = mode, .psk_file = psk};
    if (mode == NBD_TLS_ON)
        o.allow = allow, o.nallow = 1;
    struct nbd_tls *t;
    if (nbd_tls_new(&o, &t) < 0)
        abort();
    unlink(psk);
    return t;
}

static void setup(void)
{
    uv_loop_init(&loop);
    log_init("fuzz", -1);
    uv_idle_init(&loop, &completer);
    /* limits the daemon can be given (-Q 4, --io-memory 1): small, so the
     * flow control's waits are reached by a few requests */
    struct nbd_limits l = NBD_LIMITS_DEFAULT;
    l.conn_requests = 4;
    l.total_bytes = 1u << 20;
    l.conn_bytes = l.total_bytes / 4;
    l.total_readahead = l.total_bytes / 4;
    struct nbd_budget *b = nbd_budget_new(&loop, &l);
    struct nbd_backend be = {.open = be_open,
                             .close = be_close,
                             .list = be_list,
                             .submit = be_submit,
                             .cancel = be_cancel,
                             .stats = be_stats};
    static const enum nbd_tls_mode modes[3] = {NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE};
    atexit(unlink_paths);
    for (int i = 0; i < 3; i++) {
        char addr[128];
        snprintf(paths[i], sizeof(paths[i]), "/tmp/cairn-fuzz-nbd-%d-%d.sock", (int)getpid(), i);
        snprintf(addr, sizeof(addr), "unix:%s", paths[i]);
        if (!b || nbd_server_listen(&loop, addr, &be, b, &servers[i]) < 0)
            abort();
        if (modes[i] != NBD_TLS_OFF)
            nbd_server_set_tls(servers[i], make_tls(modes[i]));
    }
}

/* ---- the client ---- */

/* One loop turn, then read (and drop) what the server sent, so its replies
 * never wait on a full socket. */
static void step(int fd)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    char buf[64 << 10];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        setup();
        init = 1;
    }
    if (size < 2)
        return 0;
    size_t chunk = data[0] ? data[0] : SIZE_MAX;
    mode_flags = data[1];
    data += 2, size -= 2;
    int mi = (mode_flags & 3) == 3 ? 0 : mode_flags & 3;
    struct nbd_server *srv = servers[mi];

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", paths[mi]);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    for (int i = 0; i < 4 && nbd_server_connections(srv) == 0; i++)
        step(fd); /* accepted, greeting sent */
    if (nbd_server_connections(srv) != 1)
        abort();

    int stuck = 0;
    for (size_t off = 0; off < size && nbd_server_connections(srv) > 0;) {
        size_t k = size - off < chunk ? size - off : chunk;
        ssize_t w = send(fd, data + off, k, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            stuck = 0;
        } else if (w < 0 && errno != EAGAIN) {
            break; /* the server closed */
        } else if (++stuck > 64) {
            break; /* it stopped reading (after DISC, say): the rest is not read */
        }
        step(fd);
        step(fd);
    }
    /* Let the server run what it holds (requests waiting on the flow limits
     * start as completions come) before it sees EOF, which would drop them. */
    for (int i = 0, idle = 0;
         i < 10000 && idle < 3 && nbd_server_connections(srv) > 0 && !(mode_flags & 32); i++) {
        idle = npending ? 0 : idle + 1;
        step(fd);
    }
    /* The client is done sending: the server sees EOF (unless it stopped
     * reading already) and must close once its requests are answered. */
    shutdown(fd, SHUT_WR);
    for (int i = 0; nbd_server_connections(srv) > 0; i++) {
        if (i > 10000)
            abort(); /* a connection that never closes */
        step(fd);
    }
    close(fd);
    if (npending)
        abort(); /* I/O outstanding on a freed connection */
    for (size_t i = 0; i < NEXPS; i++)
        if (exps[i].refs)
            abort(); /* a reference not given back */
    return 0;
}
