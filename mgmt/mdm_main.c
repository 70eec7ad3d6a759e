/* cairn-mdm: options, startup, signals and shutdown. The daemon's one
 * struct mdm lives here; mdm.h says how every other part reaches it. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "mdm.h"
#include "mdm_session.h"
#include "util.h"
#include "version.h"

/* Shutdown: stop taking requests, close every connection and timer, then
 * Raft; the loop runs dry once Raft's handles are closed. The handlers are
 * one-shot (main): the kernel put back the signal's default action when it
 * delivered this one, and closing both handles does the same for the other,
 * so a second SIGTERM or SIGINT (an operator's, systemd's) kills a shutdown
 * that hangs, however soon it comes. */
static void signal_cb(uv_signal_t *sig, int signum)
{
    struct mdm *m = sig->data;
    if (m->stopping)
        return;
    m->stopping = 1;
    sd_notify(0, "STOPPING=1");
    log_info("mdm: signal %d: shutting down", signum);
    mdm_rest_stop(m);
    mdm_metrics_stop(m);
    mdm_sessions_close(m);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    mdm_detector_stop(m);
    mdm_raft_close(m);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cairn-mdm [--config FILE] --data-dir DIR [--listen ADDR] [--raft-addr ADDR]\n"
            "                 [--id N] [-v]\n"
            "  --version         print 'cairn-mdm VERSION' and exit\n"
            "  --config FILE     read options from FILE first: 'key = value' lines, keys the\n"
            "                    long options ('join = true' for a flag); the command line's\n"
            "                    options override the file's\n"
            "  --listen ADDR     address for CLI, SDS and SDC connections (default "
            "127.0.0.1:6611)\n"
            "  --raft-addr ADDR  address for Raft peers (default 127.0.0.1:6612)\n"
            "  --id N            this MDM's Raft id (default 1)\n"
            "  --join            do not start a cluster of one on an empty data directory:\n"
            "                    wait to be added by the leader (cairn mdm add)\n"
            "  --credentials FILE  this MDM's credential (default: $CAIRN_CREDENTIALS)\n"
            "  --pidfile FILE    write the PID once ready\n"
            "  --http-listen ADDR     serve the REST API and the dashboard (default: off)\n"
            "  --http-tokens FILE     its tokens, lines 'admin TOKEN' or 'monitor TOKEN'\n"
            "                         (required with --http-listen; mode 0600)\n"
            "  --metrics-listen ADDR  serve Prometheus metrics at /metrics (default: off)\n"
            "  --metrics-token-file FILE  the token scrapers must send (required with\n"
            "                         --metrics-listen; one token; mode 0600)\n"
            "  --snapshot-threshold N  snapshot the state every N log entries (default 1024)\n"
            "  --election-timeout MS   stand for election after MS to 2*MS ms without a leader\n"
            "                          (default 500; more than 4 syncs of the slowest MDM's disk;\n"
            "                          the same on every MDM)\n"
            "  --sds-timeout SECONDS   mark an SDS down after this long without heartbeats "
            "(default 2, at least 2)\n"
            "  --grace SECONDS         a down SDS that returns within this catches up instead "
            "of\n"
            "                          being rebuilt from scratch (default 60)\n");
    exit(2);
}

/* 1 if dir holds Raft's state: this MDM has been in a cluster. */
static int has_raft_state(const char *dir)
{
    char path[4096];
    for (int i = 1; i <= 2; i++) { /* libraft's uv metadata files */
        snprintf(path, sizeof(path), "%s/metadata%d", dir, i);
        if (access(path, F_OK) == 0)
            return 1;
    }
    return 0;
}

/* The cluster's id: read from dir/cluster_id, or made (a random UUID) and
 * written there on the first start of the cluster's first MDM. With join,
 * or with Raft state in dir (an MDM that joined, restarted without
 * --join), "" if there is none: such an MDM learns it from the cluster's
 * OP_CLUSTER_ID entry, and must not make up one of its own. 0 or -errno. */
static int load_cluster_id(const char *dir, int join, char *out, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/cluster_id", dir);
    char *buf;
    size_t n;
    if (file_read_all(path, &buf, &n) == 0) {
        snprintf(out, len, "%.*s", (int)strcspn(buf, "\n"), buf);
        free(buf);
        return 0;
    }
    if (join || has_raft_state(dir)) {
        out[0] = 0;
        return 0;
    }
    FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");
    if (!f || !fgets(out, (int)len, f)) {
        if (f)
            fclose(f);
        return -EIO;
    }
    fclose(f);
    out[strcspn(out, "\n")] = 0;
    char line[128];
    snprintf(line, sizeof(line), "%s\n", out);
    return file_write_atomic(path, line, strlen(line));
}

int main(int argc, char **argv)
{
    static struct mdm mdm; /* the daemon's state: large, and alive until exit */
    struct mdm *m = &mdm;
    const char *dir = NULL, *listen = "127.0.0.1:6611", *raft_addr = "127.0.0.1:6612";
    const char *pidfile = NULL, *http_listen = NULL, *metrics_listen = NULL, *cred_path = NULL;
    static struct auth_cred cred;
    const char *http_tokens = NULL, *metrics_token = NULL;
    unsigned long long id = 1;
    unsigned snap_threshold = 1024;
    m->election_ms = MDM_ELECTION_MS_DEFAULT;
    m->sds_timeout_ms = SDS_TIMEOUT_DEFAULT_MS;
    m->audit_fd = -1;
    m->grace_ms = 60000;
    int verbose = 0, join = 0;
    static const struct option opts[] = {{"data-dir", 1, 0, 'd'},
                                         {"join", 0, 0, 'J'},
                                         {"listen", 1, 0, 'l'},
                                         {"raft-addr", 1, 0, 'r'},
                                         {"id", 1, 0, 'i'},
                                         {"pidfile", 1, 0, 'p'},
                                         {"verbose", 0, 0, 'v'},
                                         {"snapshot-threshold", 1, 0, 's'},
                                         {"sds-timeout", 1, 0, 't'},
                                         {"election-timeout", 1, 0, 'E'},
                                         {"grace", 1, 0, 'g'},
                                         {"http-listen", 1, 0, 'H'},
                                         {"metrics-listen", 1, 0, 'M'},
                                         {"credentials", 1, 0, 'C'},
                                         {"http-tokens", 1, 0, 'T'},
                                         {"metrics-token-file", 1, 0, 'K'},
                                         {"help", 0, 0, 'h'},
                                         {"version", 0, 0, CAIRN_OPT_VERSION},
                                         {0, 0, 0, 0}};
    /* --config FILE: its options go ahead of the command line's, which win */
    if (config_apply("cairn-mdm", argc, argv, opts, &argc, &argv) < 0)
        return 2;
    int o;
    while ((o = getopt_long(argc, argv, "d:l:r:i:p:s:t:g:vh", opts, NULL)) != -1) {
        switch (o) {
        case 'd': dir = optarg; break;
        case 'l': listen = optarg; break;
        case 'r': raft_addr = optarg; break;
        case 'i': id = strtoull(optarg, NULL, 10); break;
        case 'p': pidfile = optarg; break;
        case 's': snap_threshold = (unsigned)atoi(optarg); break;
        case 't': m->sds_timeout_ms = (unsigned)(atof(optarg) * 1000); break;
        case 'E': m->election_ms = (unsigned)atoi(optarg); break;
        case 'g': m->grace_ms = (unsigned)(atof(optarg) * 1000); break;
        case 'H': http_listen = optarg; break;
        case 'M': metrics_listen = optarg; break;
        case 'C': cred_path = optarg; break;
        case 'T': http_tokens = optarg; break;
        case 'K': metrics_token = optarg; break;
        case 'v': verbose = 1; break;
        case 'J': join = 1; break;
        case CAIRN_OPT_VERSION: printf("cairn-mdm %s\n", CAIRN_VERSION); return 0;
        default: usage();
        }
    }
    if (!dir || optind != argc || id == 0 || snap_threshold < 2 ||
        m->sds_timeout_ms < SDS_TIMEOUT_MIN_MS)
        usage();
    if (m->election_ms < 100 || m->election_ms > 60000) {
        fprintf(stderr, "cairn-mdm: --election-timeout %u: want 100 to 60000 (ms)\n",
                m->election_ms);
        return 2;
    }
    log_init("cairn-mdm", verbose ? LOG_DEBUG : LOG_INFO);
    log_info("cairn-mdm %s starting", CAIRN_VERSION);
    signal(SIGPIPE, SIG_IGN);
    if (rpc_auth_setup(cred_path, AUTH_ROLE_MDM, &cred) < 0)
        return 1;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create data directory %s: %s", dir, strerror(errno));
        return 1;
    }
    char cluster_id[64];
    if (load_cluster_id(dir, join, cluster_id, sizeof(cluster_id)) < 0) {
        log_error("cannot read or create %s/cluster_id", dir);
        return 1;
    }
    if (mdm_audit_open(m, dir) < 0)
        return 1;
    m->loop = uv_default_loop();
    if (mdm_state_init(&m->st, cluster_id) < 0)
        return 1;
    /* Raft knows this MDM as "RAFT/CLIENT" (raft_link.h) */
    char raft_full[300];
    if (strchr(raft_addr, '/') || strchr(listen, '/') ||
        snprintf(raft_full, sizeof(raft_full), "%s/%s", raft_addr, listen) >=
            (int)sizeof(raft_full)) {
        log_error("--raft-addr '%s' and --listen '%s': want HOST:PORT each", raft_addr, listen);
        return 1;
    }
    if (mdm_raft_start(m, dir, id, raft_full, snap_threshold, join) < 0)
        return 1;
    int r = mdm_sessions_listen(m, listen);
    if (r < 0) {
        log_error("cannot listen on %s: %s", listen, uv_strerror(r));
        return 1;
    }
    snprintf(m->listen_addr, sizeof(m->listen_addr), "%s", listen);
    if (metrics_listen && mdm_metrics_start(m, metrics_listen, metrics_token) < 0)
        return 1;
    if (http_listen && mdm_rest_start(m, http_listen, http_tokens) < 0)
        return 1;
    mdm_detector_start(m);
    uv_signal_init(m->loop, &m->sigterm);
    uv_signal_init(m->loop, &m->sigint);
    m->sigterm.data = m;
    m->sigint.data = m;
    uv_signal_start_oneshot(&m->sigterm, signal_cb, SIGTERM);
    uv_signal_start_oneshot(&m->sigint, signal_cb, SIGINT);
    log_info("mdm: cluster %s, listening on %s, raft id %llu at %s, data in %s", cluster_id, listen,
             id, raft_addr, dir);
    if (pidfile) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        file_write_atomic(pidfile, buf, strlen(buf));
    }
    /* serving now: tell systemd (Type=notify); nothing without NOTIFY_SOCKET */
    sd_notify(0, "READY=1");
    uv_run(m->loop, UV_RUN_DEFAULT);
    mdm_state_free(&m->st);
    mdm_audit_close(m);
    log_info("mdm: stopped");
    return 0;
}
