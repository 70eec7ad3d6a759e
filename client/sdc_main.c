/* cairn-sdc's entry: options, its identity on disk, startup of the NBD
 * listeners and the MDM session, and shutdown on SIGTERM/SIGINT. The
 * daemon itself is described in sdc.h. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <uv.h>

#include "config.h"
#include "log.h"
#include "mdm_session.h"
#include "metrics.h"
#include "nbd_server.h"
#include "sdc.h"
#include "util.h"
#include "version.h"

/* The SDC's stable id: DATA-DIR/sdc.guid, made from a fresh UUID on first
 * start. 0 or -errno. */
static int load_guid(struct sdc *s)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/sdc.guid", s->data_dir);
    char *buf;
    size_t len;
    if (file_read_all(path, &buf, &len) == 0) {
        snprintf(s->guid, sizeof(s->guid), "%.*s", (int)strcspn(buf, "\n"), buf);
        free(buf);
        if (s->guid[0])
            return 0;
    }
    FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");
    if (!f || !fgets(s->guid, sizeof(s->guid), f)) {
        if (f)
            fclose(f);
        return -EIO;
    }
    fclose(f);
    s->guid[strcspn(s->guid, "\n")] = 0;
    char line[80];
    snprintf(line, sizeof(line), "%s\n", s->guid);
    return file_write_atomic(path, line, strlen(line));
}

/* The handlers are one-shot (main): the kernel put back the signal's
 * default action when it delivered this one, and closing both handles does
 * the same for the other, so a second SIGTERM or SIGINT kills a shutdown
 * that hangs. */
static void signal_cb(uv_signal_t *sig, int signum)
{
    struct sdc *s = sig->data;
    if (s->stopping)
        return;
    s->stopping = true;
    sd_notify(0, "STOPPING=1");
    log_info("signal %d: shutting down", signum);
    /* its handles close in this loop turn, before uv_run() returns */
    metrics_server_stop(s->metrics);
    s->metrics = NULL;
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_stop(s->loop);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cairn-sdc [--config FILE] --mdm HOST:PORT --data-dir DIR [--name NAME]\n"
            "                 [--nbd-listen HOST:PORT] [--nbd-socket PATH]\n"
            "                 [--io-timeout SECONDS] [--io-memory MIB] [--queue-depth N]\n"
            "                 [--metrics-listen HOST:PORT --metrics-token-file FILE]\n"
            "                 [--pidfile FILE] [-v]\n"
            "  --version      print 'cairn-sdc VERSION' and exit\n"
            "  --config FILE  read options from FILE first: 'key = value' lines, keys the long\n"
            "                 options ('tls-verify-peer = true' for a flag); the command\n"
            "                 line's override the file's\n"
            "  --mdm          the MDM, or every MDM of the cluster (HOST:PORT,HOST:PORT,...):\n"
            "                 the SDC keeps its session with the leader\n"
            "  --nbd-listen   NBD over TCP (default 127.0.0.1:10809; 'none' to disable)\n"
            "  --nbd-socket   NBD over a unix socket (default DATA-DIR/nbd.sock)\n"
            "  --io-timeout   how long to retry a request the cluster can heal, from when\n"
            "                 it is first sent to an SDS (default 60)\n"
            "  --io-memory    MiB that NBD requests in progress and replies not yet read by\n"
            "                 their clients may hold, all connections together (default 256;\n"
            "                 a connection at most 64, plus 16 of requests read ahead)\n"
            "  --queue-depth  requests one NBD connection may have in progress (default 256)\n"
            "  --credentials  this SDC's credential (default: $CAIRN_CREDENTIALS); --name\n"
            "                 defaults to the name it was issued for\n"
            "  --metrics-listen  serve Prometheus metrics at http://HOST:PORT/metrics (default: "
            "off)\n"
            "  --metrics-token-file  the token scrapers must send (one token; mode 0600)\n");
    fprintf(stderr, "NBD over TLS (docs/nbd.md, \"TLS\"):\n"
                    "  --tls off|on|require  STARTTLS refused (default), offered, or required\n"
                    "  --tls-certs DIR       X.509: ca-cert.pem, server-cert.pem, server-key.pem\n"
                    "  --tls-verify-peer     require a client certificate signed by that CA\n"
                    "  --tls-psk FILE        pre-shared keys, 'identity:hexkey' lines (psktool)\n"
                    "  --tls-allow VOLUME=ID[,ID...]  only these identities (PSK identity,\n"
                    "                        certificate CN or DNS name) may use VOLUME\n");
    exit(2);
}

int main(int argc, char **argv)
{
    /* The daemon's one instance: static, so what it holds stays reachable
     * (for LeakSanitizer) after main returns. */
    static struct sdc sdc = {
        .nbd_tcp = "127.0.0.1:10809", .io_timeout_ms = 60000, .reg = CAIRN__SDC_REGISTER__INIT};
    struct sdc *s = &sdc;
    const char *pidfile = NULL, *sock = NULL, *cred_path = NULL, *metrics_token = NULL;
    static struct auth_cred cred;
    int verbose = 0;
    /* clang-format off */
    static const struct option opts[] = {{"mdm", 1, 0, 'm'},
                                         {"data-dir", 1, 0, 'd'},
                                         {"name", 1, 0, 'n'},
                                         {"nbd-listen", 1, 0, 'l'},
                                         {"nbd-socket", 1, 0, 's'},
                                         {"io-timeout", 1, 0, 't'},
                                         {"pidfile", 1, 0, 'p'},
                                         {"verbose", 0, 0, 'v'},
                                         {"help", 0, 0, 'h'},
                                         {"io-memory", 1, 0, 'M'},
                                         {"queue-depth", 1, 0, 'Q'},
                                         {"metrics-listen", 1, 0, 'X'},
                                         {"tls", 1, 0, 'T'},
                                         {"tls-certs", 1, 0, 'C'},
                                         {"tls-verify-peer", 0, 0, 'V'},
                                         {"tls-psk", 1, 0, 'K'},
                                         {"tls-allow", 1, 0, 'A'},
                                         {"credentials", 1, 0, 'R'},
                                         {"metrics-token-file", 1, 0, 'W'},
                                         {"version", 0, 0, CAIRN_OPT_VERSION},
                                         {0, 0, 0, 0}};
    /* clang-format on */
    /* --config FILE: its options go ahead of the command line's, which win */
    if (config_apply("cairn-sdc", argc, argv, opts, &argc, &argv) < 0)
        return 2;
    struct nbd_limits limits = NBD_LIMITS_DEFAULT;
    /* NBD TLS: its options here, the rest in client/nbd_tls*.c */
    struct nbd_tls_opts tls_opts = {.mode = NBD_TLS_OFF};
    const char **tls_allow = calloc((size_t)argc, sizeof(*tls_allow));
    static struct nbd_tls *tls; /* static: reachable for LeakSanitizer */
    int o;
    while ((o = getopt_long(argc, argv, "m:d:n:l:s:t:p:vh", opts, NULL)) != -1) {
        switch (o) {
        case 'm': s->mdm_addr = optarg; break;
        case 'd': s->data_dir = optarg; break;
        case 'n': s->name = optarg; break;
        case 'l': s->nbd_tcp = optarg; break;
        case 's': sock = optarg; break;
        case 't': s->io_timeout_ms = (uint32_t)atoi(optarg) * 1000; break;
        case 'p': pidfile = optarg; break;
        case 'M': limits.total_bytes = (size_t)atof(optarg) << 20; break;
        case 'Q': limits.conn_requests = (unsigned)atoi(optarg); break;
        case 'X': s->metrics_listen = optarg; break;
        case 'R': cred_path = optarg; break;
        case 'T':
            if (nbd_tls_mode_parse(optarg, &tls_opts.mode) < 0)
                usage();
            break;
        case 'C': tls_opts.certs_dir = optarg; break;
        case 'V': tls_opts.verify_peer = true; break;
        case 'K': tls_opts.psk_file = optarg; break;
        case 'A': tls_allow[tls_opts.nallow++] = optarg; break;
        case 'W': metrics_token = optarg; break;
        case 'v': verbose = 1; break;
        case CAIRN_OPT_VERSION:
            free(tls_allow);
            printf("cairn-sdc %s\n", CAIRN_VERSION);
            return 0;
        default: usage();
        }
    }
    if (!s->mdm_addr || !s->mdm_addr[strspn(s->mdm_addr, ",")] || !s->data_dir || optind != argc ||
        s->io_timeout_ms == 0 || limits.total_bytes < (1u << 20) || limits.conn_requests == 0)
        usage();
    /* a connection may take a quarter of the whole at most; read-ahead, a
     * quarter of the whole in all */
    if (limits.conn_bytes > limits.total_bytes / 4)
        limits.conn_bytes = limits.total_bytes / 4;
    limits.total_readahead = limits.total_bytes / 4;
    log_init("cairn-sdc", verbose ? LOG_DEBUG : LOG_INFO);
    log_info("cairn-sdc %s starting", CAIRN_VERSION);
    tls_opts.allow = tls_allow;
    int tr = nbd_tls_new(&tls_opts, &tls);
    free(tls_allow);
    if (tr < 0)
        return 1; /* nbd_tls_new() said why */
    signal(SIGPIPE, SIG_IGN);
    if (mkdir(s->data_dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", s->data_dir, strerror(errno));
        return 1;
    }
    if (load_guid(s) < 0) {
        log_error("cannot read or create %s/sdc.guid", s->data_dir);
        return 1;
    }
    if (rpc_auth_setup(cred_path, AUTH_ROLE_SDC, &cred) < 0)
        return 1;
    /* the SDC is the one its credential names */
    if (!s->name)
        s->name = cred.name;
    if (strcmp(cred.name, s->name) != 0) {
        log_error("the credential is for SDC '%s', not '%s'", cred.name, s->name);
        return 1;
    }
    if (sock)
        snprintf(s->nbd_unix, sizeof(s->nbd_unix), "unix:%s", sock);
    else
        snprintf(s->nbd_unix, sizeof(s->nbd_unix), "unix:%s/nbd.sock", s->data_dir);
    s->loop = uv_default_loop();
    sdc_io_init(s);

    const struct nbd_backend be = {.ctx = s,
                                   .open = sdc_export_open,
                                   .close = sdc_export_close,
                                   .list = sdc_export_list,
                                   .submit = sdc_io_submit,
                                   .cancel = sdc_io_cancel,
                                   .stats = sdc_export_stats,
                                   .claim = sdc_export_claim,
                                   .release = sdc_export_release};
    struct nbd_budget *budget = nbd_budget_new(s->loop, &limits);
    s->budget = budget;
    if (!budget) {
        log_error("out of memory");
        return 1;
    }
    int r;
    if (strcmp(s->nbd_tcp, "none")) {
        r = nbd_server_listen(s->loop, s->nbd_tcp, &be, budget, &s->tcp_srv);
        if (r < 0) {
            log_error("cannot listen for NBD on %s: %s", s->nbd_tcp, uv_strerror(r));
            return 1;
        }
        nbd_server_set_tls(s->tcp_srv, tls);
    }
    r = nbd_server_listen(s->loop, s->nbd_unix, &be, budget, &s->unix_srv);
    if (r < 0) {
        log_error("cannot listen for NBD on %s: %s", s->nbd_unix, uv_strerror(r));
        return 1;
    }
    nbd_server_set_tls(s->unix_srv, tls);
    /* every second: the MDM's live view of volume I/O is as fresh as this */
    s->mdm = mdm_session_start(s->loop, s->mdm_addr, &sdc_session_ops, s, 1000);
    if (s->metrics_listen) {
        s->metrics =
            metrics_serve(s->loop, s->metrics_listen, metrics_token, sdc_metrics_render, s);
        if (!s->metrics)
            return 1; /* metrics_serve() said why */
    }
    uv_signal_init(s->loop, &s->sigterm);
    uv_signal_init(s->loop, &s->sigint);
    s->sigterm.data = s;
    s->sigint.data = s;
    uv_signal_start_oneshot(&s->sigterm, signal_cb, SIGTERM);
    uv_signal_start_oneshot(&s->sigint, signal_cb, SIGINT);
    log_info("SDC '%s' (%s): NBD on %s and %s, MDM %s", s->name, s->guid, s->nbd_tcp, s->nbd_unix,
             s->mdm_addr);
    if (pidfile) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        file_write_atomic(pidfile, buf, strlen(buf));
    }
    /* serving now: tell systemd (Type=notify); nothing without NOTIFY_SOCKET */
    sd_notify(0, "READY=1");
    uv_run(s->loop, UV_RUN_DEFAULT);

    sdc_io_shutdown(s);
    sdc_volumes_shutdown(s);
    if (s->map)
        cairn__cluster_map__free_unpacked(s->map, NULL);
    log_info("SDC stopped");
    return 0;
}
