/* cairn-sds: the storage data server. Options, startup, shutdown, signals.
 * sds.h indexes the rest of the daemon. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.h"
#include "disk_uring.h"
#include "extent_store.h"
#include "log.h"
#include "mdm_session.h"
#include "metrics.h"
#include "rpc_peer.h"
#include "sds.h"
#include "util.h"
#include "version.h"

static const struct rpc_handlers handlers = {
    .on_request = dispatch_request,
    .on_close = dispatch_close,
    .on_accept = dispatch_accept,
    .peer_roles = AUTH_ROLE_BIT(AUTH_ROLE_SDS) | AUTH_ROLE_BIT(AUTH_ROLE_SDC) |
                  AUTH_ROLE_BIT(AUTH_ROLE_ADMIN) | AUTH_ROLE_BIT(AUTH_ROLE_MONITOR)};

/* How long shutdown waits for the work under way: a store operation takes
 * milliseconds, a forward or a copy fails within SDS_FWD_TIMEOUT_MS once its
 * peer is gone; past this a device must be hung, and the daemon stops
 * anyway (it says what it leaves behind) rather than never. */
#define SDS_SHUTDOWN_DRAIN_MS 12000
#define SDS_SHUTDOWN_TICK_MS 5

static void shutdown_flush_cb(void *arg, int res)
{
    struct sds *s = arg;
    if (res < 0)
        log_error("final flush failed: %s", strerror(-res));
    /* Nothing else is on the ring (shutdown_tick_cb waited for that, and
     * nothing new started since), so closing it loses no completion. */
    if (--s->shutdown_flushes == 0) {
        uring_ctx_close(s->uring);
        uv_stop(s->loop);
    }
}

/* Store operations not yet completed, over every device. */
static uint64_t stores_busy(const struct sds *s)
{
    uint64_t n = 0;
    for (int i = 0; i < s->ndevs; i++)
        if (s->devs[i].st)
            n += store_busy(s->devs[i].st);
    return n;
}

/* A tick of shutdown: once the requests, copies and store operations under
 * way have all completed (their callbacks run, their objects given back),
 * the last flush. Checked from a timer rather than from the completions
 * themselves, so that it never runs inside a callback of the objects it
 * waits for. */
static void shutdown_tick_cb(uv_timer_t *t)
{
    struct sds *s = t->data;
    size_t reqs = s->ioreqs.nlive;
    int copies = s->rebuild.inflight;
    uint64_t ops = stores_busy(s);
    unsigned ring = uring_ctx_inflight(s->uring);
    if (reqs || copies || ops || ring || s->layers.busy || s->layers.flat_inflight) {
        if (now_ms() < s->shutdown_deadline)
            return;
        log_error("shutdown: still %zu requests, %d rebuild copies, %llu store operations and "
                  "%u device operations under way after %d ms; stopping without them",
                  reqs, copies, (unsigned long long)ops, ring, SDS_SHUTDOWN_DRAIN_MS);
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    /* Acknowledged data is already on the devices (O_DIRECT); a last flush
     * makes the device caches durable too. The loop stops when it is done. */
    s->shutdown_flushes = 1;
    for (int i = 0; i < s->ndevs; i++)
        if (!s->devs[i].failed && store_flush(s->devs[i].st, shutdown_flush_cb, s) == 0)
            s->shutdown_flushes++;
    shutdown_flush_cb(s, 0);
}

/* The handlers are one-shot (main): the kernel put back the signal's
 * default action when it delivered this one, and closing both handles does
 * the same for the other, so a second SIGTERM or SIGINT kills a shutdown
 * stuck on a hung device at once, rather than after SDS_SHUTDOWN_DRAIN_MS. */
static void signal_cb(uv_signal_t *sig, int signum)
{
    struct sds *s = sig->data;
    if (s->stopping)
        return;
    s->stopping = 1;
    sd_notify(0, "STOPPING=1");
    log_info("signal %d: shutting down", signum);
    if (s->server)
        rpc_server_close(s->server);
    if (s->local_server) {
        rpc_server_close(s->local_server);
        unlink(s->local_addr + 5);
    }
    mdm_session_stop(s->mdm);
    metrics_server_stop(s->metrics);
    s->metrics = NULL;
    uv_timer_stop(&s->rebuild.timer);
    uv_close((uv_handle_t *)&s->rebuild.timer, NULL);
    uv_timer_stop(&s->ping_timer);
    uv_close((uv_handle_t *)&s->ping_timer, NULL);
    uv_timer_stop(&s->flush_timer);
    uv_close((uv_handle_t *)&s->flush_timer, NULL);
    uv_timer_stop(&s->layers.next);
    uv_close((uv_handle_t *)&s->layers.next, NULL);
    /* what a snapshot's pause holds is refused now (dispatch_start) */
    freeze_lift(s);
    for (int i = 0; i < s->npeers; i++)
        rpc_peer_close(s->peers[i]);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    /* What is under way still completes: writes queued behind a range lock,
     * rebuild copies, reclaim's frees, their store operations on the ring.
     * The final flush waits for all of it (shutdown_tick_cb). */
    s->shutdown_deadline = now_ms() + SDS_SHUTDOWN_DRAIN_MS;
    uv_timer_init(s->loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    uv_timer_start(&s->shutdown_timer, shutdown_tick_cb, 0, SDS_SHUTDOWN_TICK_MS);
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: cairn-sds [--config FILE] --name NAME --listen HOST:PORT --mdm HOST:PORT\n"
        "                 --data-dir DIR\n"
        "                 [--rebuild-rate MIB_PER_S] [--local-socket PATH|none]\n"
        "                 [--io-memory MIB] [--defer-first-writes] [--pidfile FILE] [-v]\n"
        "                 [--metrics-listen HOST:PORT --metrics-token-file FILE]\n"
        "  --version       print 'cairn-sds VERSION' and exit\n"
        "  --config FILE   read options from FILE first: 'key = value' lines, keys the long\n"
        "                  options ('verbose = true' for a flag); the command line's win\n"
        "  --mdm           the MDM, or every MDM of the cluster (HOST:PORT,HOST:PORT,...):\n"
        "                  the SDS keeps its session with the leader\n"
        "  --rebuild-rate  bandwidth this SDS spends copying data to new copies (default 64)\n"
        "  --io-memory     MiB that clients' requests in progress may hold, all connections\n"
        "                  together (default 256; each connection at most 64)\n"
        "  --defer-first-writes  a first write to a granule without FUA writes no record in\n"
        "                  the device's write log: its bit reaches the disk at the next flush\n"
        "                  (at most a second later), and a kill -9 meanwhile loses it on this\n"
        "                  copy (docs/extent-store.md; for comparison only)\n"
        "  --local-socket  unix socket that SDCs and SDSs on this host use instead of TCP\n"
        "                  (default DATA-DIR/sds.sock)\n"
        "  --metrics-listen serve Prometheus metrics at http://HOST:PORT/metrics (default: off)\n"
        "  --credentials FILE  this SDS's credential, issued for NAME (default: "
        "$CAIRN_CREDENTIALS)\n"
        "  --metrics-token-file  the token scrapers must send (one token; mode 0600)\n");
    exit(2);
}

/* Peers on this host find the unix socket through FT_LOCAL on their TCP
 * connection and move to it; without one they stay on TCP. */
static void listen_local(struct sds *s, const char *path)
{
    char def[512];
    if (path && !strcmp(path, "none"))
        return;
    if (!path) {
        snprintf(def, sizeof(def), "%s/sds.sock", s->data_dir);
        path = def;
    }
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        log_warn("local socket path %s is too long for a unix socket; peers on this host use TCP",
                 path);
        return;
    }
    snprintf(s->local_addr, sizeof(s->local_addr), "unix:%s", path);
    if (getrandom(&s->local_token, sizeof(s->local_token), 0) != sizeof(s->local_token))
        s->local_token = ((uint64_t)getpid() << 32) ^ now_ms();
    int r = rpc_listen(s->loop, s->local_addr, &handlers, s, &s->local_server);
    if (r < 0) {
        log_warn("cannot listen on %s: %s; peers on this host use TCP", s->local_addr,
                 uv_strerror(r));
        s->local_server = NULL;
        s->local_addr[0] = 0;
        return;
    }
    chmod(path, 0600);
}

int main(int argc, char **argv)
{
    /* the daemon; static so that what it holds at exit is still reachable */
    static struct sds sds;
    struct sds *s = &sds;
    const char *pidfile = NULL;
    int verbose = 0;
    static const struct option opts[] = {{"name", 1, 0, 'n'},
                                         {"listen", 1, 0, 'l'},
                                         {"mdm", 1, 0, 'm'},
                                         {"data-dir", 1, 0, 'd'},
                                         {"pidfile", 1, 0, 'p'},
                                         {"verbose", 0, 0, 'v'},
                                         {"help", 0, 0, 'h'},
                                         {"rebuild-rate", 1, 0, 'r'},
                                         {"local-socket", 1, 0, 'L'},
                                         {"io-memory", 1, 0, 'M'},
                                         {"metrics-listen", 1, 0, 'X'},
                                         {"credentials", 1, 0, 'C'},
                                         {"metrics-token-file", 1, 0, 'T'},
                                         {"defer-first-writes", 0, 0, 'D'},
                                         {"version", 0, 0, CAIRN_OPT_VERSION},
                                         {0, 0, 0, 0}};
    /* --config FILE: its options go ahead of the command line's, which win */
    if (config_apply("cairn-sds", argc, argv, opts, &argc, &argv) < 0)
        return 2;
    const char *local = NULL, *cred_path = NULL, *metrics_token = NULL;
    static struct auth_cred cred;
    int o;
    while ((o = getopt_long(argc, argv, "n:l:m:d:p:r:vh", opts, NULL)) != -1) {
        switch (o) {
        case 'n': s->name = optarg; break;
        case 'l': s->listen = optarg; break;
        case 'm': s->mdm_addr = optarg; break;
        case 'd': s->data_dir = optarg; break;
        case 'p': pidfile = optarg; break;
        case 'r': s->rebuild.rate = (uint64_t)atof(optarg) << 20; break;
        case 'L': local = optarg; break;
        case 'M': s->io_memory = (size_t)atof(optarg) << 20; break;
        case 'X': s->metrics_listen = optarg; break;
        case 'C': cred_path = optarg; break;
        case 'T': metrics_token = optarg; break;
        case 'v': verbose = 1; break;
        case 'D': s->defer_bits = 1; break;
        case CAIRN_OPT_VERSION: printf("cairn-sds %s\n", CAIRN_VERSION); return 0;
        default: usage();
        }
    }
    if (!s->rebuild.rate)
        s->rebuild.rate = 64ull << 20;
    if (!s->io_memory)
        s->io_memory = SDS_IO_MEMORY_DEFAULT;
    s->leases.lease_ms = SDS_LEASE_MS;
    if (!s->name || !s->listen || !s->mdm_addr || !s->data_dir || optind != argc ||
        !s->mdm_addr[strspn(s->mdm_addr, ",")])
        usage();
    log_init("cairn-sds", verbose ? LOG_DEBUG : LOG_INFO);
    log_info("cairn-sds %s starting", CAIRN_VERSION);
    signal(SIGPIPE, SIG_IGN);
    if (rpc_auth_setup(cred_path, AUTH_ROLE_SDS, &cred) < 0)
        return 1;
    if (strcmp(cred.name, s->name) != 0) {
        log_error("the credential is for SDS '%s', not '%s'", cred.name, s->name);
        return 1;
    }
    if (mkdir(s->data_dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", s->data_dir, strerror(errno));
        return 1;
    }
    s->loop = uv_default_loop();
    s->ioreqs = (struct pool)POOL_INIT(struct ioreq, 4096);
    rebuild_init(s);
    const char *delay = getenv("CAIRN_TEST_SNAPSHOT_MAP_DELAY_MS");
    if (delay) {
        s->test_snapshot_map_delay_ms = strtoull(delay, NULL, 10);
        log_warn("test mode: maps that change snapshots are installed %llu ms late",
                 (unsigned long long)s->test_snapshot_map_delay_ms);
    }
    layers_init(s);
    freeze_init(s);
    s->locks = range_locks_new();
    s->zeroes_len = 32u << 20;
    s->zeroes = rpc_buf_alloc(s->zeroes_len);
    if (!s->locks || !s->zeroes) {
        log_error("out of memory");
        return 1;
    }
    memset(s->zeroes, 0, s->zeroes_len);
    int r = uring_ctx_init(s->loop, 512, &s->uring);
    if (r < 0) {
        log_error("io_uring setup failed: %s", strerror(-r));
        return 1;
    }
    /* The session first (it only arms a timer): installing the saved map may
     * already want to reach the MDM (a finished rebuild to report). */
    mdm_link_start(s);
    map_load_saved(s);
    r = rpc_listen(s->loop, s->listen, &handlers, s, &s->server);
    if (r < 0) {
        log_error("cannot listen on %s: %s", s->listen, uv_strerror(r));
        return 1;
    }
    listen_local(s, local);
    if (s->metrics_listen) {
        s->metrics =
            metrics_serve(s->loop, s->metrics_listen, metrics_token, sds_metrics_render, s);
        if (!s->metrics)
            return 1; /* metrics_serve() said why */
    }
    uv_timer_init(s->loop, &s->rebuild.timer);
    s->rebuild.timer.data = s;
    uv_timer_start(&s->rebuild.timer, rebuild_timer_cb, 100, 100);
    uv_timer_init(s->loop, &s->ping_timer);
    s->ping_timer.data = s;
    uv_timer_start(&s->ping_timer, ping_timer_cb, 0, 500);
    uv_timer_init(s->loop, &s->flush_timer);
    s->flush_timer.data = s;
    uv_timer_start(&s->flush_timer, flush_timer_cb, 1000, 1000);
    uv_signal_init(s->loop, &s->sigterm);
    uv_signal_init(s->loop, &s->sigint);
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start_oneshot(&s->sigterm, signal_cb, SIGTERM);
    uv_signal_start_oneshot(&s->sigint, signal_cb, SIGINT);
    log_info("SDS '%s' listening on %s%s%s, MDM %s", s->name, s->listen,
             s->local_addr[0] ? " and " : "", s->local_addr + (s->local_addr[0] ? 5 : 0),
             s->mdm_addr);
    if (pidfile) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        file_write_atomic(pidfile, buf, strlen(buf));
    }
    /* serving now: tell systemd (Type=notify); nothing without NOTIFY_SOCKET */
    sd_notify(0, "READY=1");
    uv_run(s->loop, UV_RUN_DEFAULT);
    log_info("SDS '%s' stopped", s->name);
    return 0;
}
