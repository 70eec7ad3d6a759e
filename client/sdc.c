/* cairn-sdc: the storage data client.
 *
 * Serves every volume mapped to this SDC as an NBD export (named after the
 * volume) and sends each request straight to the primary SDS of each extent
 * it touches, with the PG epoch from its map. A request that fails for a
 * reason the cluster can heal (stale epoch, lost connection, timeout) is
 * retried on a fresh map until the I/O timeout; the NBD client sees an error
 * only when that runs out or the error is final (ENOSPC, EINVAL).
 *
 * FLUSH goes to every SDS of the volume's pool and each makes all its devices
 * durable; reads go to primaries, which hold every acknowledged write. So
 * once FLUSH is answered on any connection, every write answered before it is
 * durable and visible on all connections: CAN_MULTI_CONN holds.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "cairn.pb-c.h"
#include "cmap.h"
#include "log.h"
#include "nbd_proto.h"
#include "nbd_server.h"
#include "layout.h"
#include "rpc.h"
#include "mdm_session.h"
#include "rpc_peer.h"
#include "util.h"

#define MAX_VOLS 4096
#define MAX_SDS 1024
#define SUB_TIMEOUT_MS 5000 /* longer than an SDS waits for a copy (4 s) */
#define RETRY_MS 100

struct vol {
    uint64_t id;
    char name[80];
    uint64_t size;
    uint32_t pool_id;
    int ro;
    int refs;
    int present;
};

struct op;

struct sub {
    struct op *op;
    uint64_t off; /* in the volume */
    uint32_t len;
    uint32_t boff; /* offset in the op's buffer */
    uint16_t type;
    uint32_t sds_id; /* FLUSH target */
    int status;
    struct sub *rnext; /* retry list */
};

struct op {
    struct nbd_io *io;
    struct vol *v;
    int pending;
    int err;
    uint64_t deadline;
    int nsub;
    struct sub subs[];
};

struct sdc {
    uv_loop_t *loop;
    const char *mdm_addr, *data_dir, *name, *nbd_tcp;
    char nbd_unix[512];
    char guid[64];
    uint32_t sdc_id;
    uint32_t io_timeout_ms;
    Cairn__ClusterMap *map;
    struct vol *vols[MAX_VOLS];
    int nvols;
    struct rpc_peer *sds[MAX_SDS];
    int nsds;
    struct mdm_session *mdm;
    uv_timer_t retry_timer;
    struct sub *retry_head;
    int retry_on;
    struct nbd_server *tcp_srv, *unix_srv;
    uv_signal_t sigterm, sigint;
    int stopping;
};

static struct sdc D;

/* ---- map lookups ---- */

static struct rpc_peer *sds_peer(uint32_t id)
{
    Cairn__Sds *s = cmap_sds(D.map, id);
    if (!s)
        return NULL;
    struct rpc_peer *p = NULL;
    for (int i = 0; i < D.nsds && !p; i++)
        if (rpc_peer_id(D.sds[i]) == id)
            p = D.sds[i];
    if (!p) {
        if (D.nsds == MAX_SDS)
            return NULL;
        p = rpc_peer_new(D.loop, id);
        if (!p)
            return NULL;
        D.sds[D.nsds++] = p;
    }
    rpc_peer_set_addr(p, s->addr);
    return p;
}

/* ---- volumes / exports ---- */

static struct vol *vol_by_name(const char *name)
{
    for (int i = 0; i < D.nvols; i++)
        if (D.vols[i]->present && !strcmp(D.vols[i]->name, name))
            return D.vols[i];
    return NULL;
}

static void vol_unref(struct vol *v)
{
    if (--v->refs > 0 || v->present)
        return;
    for (int i = 0; i < D.nvols; i++)
        if (D.vols[i] == v) {
            D.vols[i] = D.vols[--D.nvols];
            break;
        }
    free(v);
}

static void *be_open(void *ctx, const char *name, uint64_t *size, int *ro)
{
    (void)ctx;
    struct vol *v = vol_by_name(name);
    if (!v)
        return NULL;
    v->refs++;
    *size = v->size;
    *ro = v->ro;
    return v;
}

static void be_close(void *ctx, void *exp)
{
    (void)ctx;
    vol_unref(exp);
}

static void be_list(void *ctx, void (*emit)(void *arg, const char *name), void *arg)
{
    (void)ctx;
    for (int i = 0; i < D.nvols; i++)
        if (D.vols[i]->present)
            emit(arg, D.vols[i]->name);
}

static void sync_volumes(void)
{
    for (int i = 0; i < D.nvols; i++)
        D.vols[i]->present = 0;
    for (size_t j = 0; j < D.map->n_mappings; j++) {
        Cairn__Mapping *m = D.map->mappings[j];
        if (m->sdc_id != D.sdc_id || !D.sdc_id)
            continue;
        Cairn__Volume *mv = NULL;
        for (size_t k = 0; k < D.map->n_volumes; k++)
            if (D.map->volumes[k]->id == m->volume_id)
                mv = D.map->volumes[k];
        if (!mv)
            continue;
        struct vol *v = NULL;
        for (int i = 0; i < D.nvols && !v; i++)
            if (D.vols[i]->id == mv->id)
                v = D.vols[i];
        if (!v) {
            if (D.nvols == MAX_VOLS)
                continue;
            v = calloc(1, sizeof(*v));
            if (!v)
                continue;
            v->id = mv->id;
            v->refs = 0;
            D.vols[D.nvols++] = v;
            log_info("volume '%s' (%llu bytes) is mapped here: export '%s'", mv->name,
                     (unsigned long long)mv->size, mv->name);
        }
        snprintf(v->name, sizeof(v->name), "%s", mv->name);
        v->size = mv->size;
        v->pool_id = mv->pool_id;
        v->ro = m->read_only;
        v->present = 1;
    }
    for (int i = 0; i < D.nvols;) {
        struct vol *v = D.vols[i];
        if (!v->present && v->refs == 0) {
            log_info("volume '%s' is no longer mapped here", v->name);
            D.vols[i] = D.vols[--D.nvols];
            free(v);
        } else {
            i++;
        }
    }
}

/* ---- MDM session ---- */

static void session_on_map(void *ctx, Cairn__MapReply *rep)
{
    (void)ctx;
    if (rep->sdc_id && rep->sdc_id != D.sdc_id) {
        D.sdc_id = rep->sdc_id;
        log_info("registered with the MDM as SDC %u ('%s')", D.sdc_id, D.name);
    }
    if (!D.map || rep->map->version >= D.map->version) {
        if (D.map)
            cairn__cluster_map__free_unpacked(D.map, NULL);
        D.map = rep->map;
        rep->map = NULL;
        sync_volumes();
    }
    cairn__map_reply__free_unpacked(rep, NULL);
}

static uint64_t session_map_version(void *ctx)
{
    (void)ctx;
    return D.map ? D.map->version : 0;
}

static const ProtobufCMessage *session_registration(void *ctx)
{
    (void)ctx;
    static Cairn__SdcRegister reg = CAIRN__SDC_REGISTER__INIT;
    reg.guid = D.guid;
    reg.name = (char *)D.name;
    return &reg.base;
}

static void map_refresh(void)
{
    mdm_session_fetch_map(D.mdm);
}

/* ---- the data path ---- */

static void sub_send(struct sub *s);
static int flush_target(const Cairn__Sds *sds, const Cairn__Pool *p);

static void op_finish(struct op *o)
{
    struct nbd_io *io = o->io;
    int err = o->err;
    if (!err && io->cmd == NBDIO_STATUS) {
        io->next = 0;
        for (int i = 0; i < o->nsub; i++) {
            uint32_t fl = o->subs[i].status > 0 ? 0 : (NBD_STATE_HOLE | NBD_STATE_ZERO);
            if (io->next && io->ext[io->next - 1].flags == fl)
                io->ext[io->next - 1].len += o->subs[i].len;
            else {
                io->ext[io->next].len = o->subs[i].len;
                io->ext[io->next].flags = fl;
                io->next++;
            }
        }
    }
    vol_unref(o->v);
    free(o);
    nbd_io_done(io, err);
}

static void sub_done(struct sub *s, int err)
{
    struct op *o = s->op;
    if (err < 0 && !o->err)
        o->err = err;
    if (--o->pending == 0)
        op_finish(o);
}

static int transient(int err)
{
    switch (-err) {
    case ESTALE: case EAGAIN: case ECONNRESET: case ETIMEDOUT: case EHOSTUNREACH:
    case ECONNREFUSED: case ECANCELED: case ENOTCONN: case EPIPE: case EIO:
        return 1;
    default:
        return 0;
    }
}

static void retry_timer_cb(uv_timer_t *t)
{
    (void)t;
    struct sub *s = D.retry_head;
    D.retry_head = NULL;
    uv_timer_stop(&D.retry_timer);
    D.retry_on = 0;
    while (s) {
        struct sub *n = s->rnext;
        s->rnext = NULL;
        sub_send(s);
        s = n;
    }
}

static void sub_retry(struct sub *s, int err)
{
    if (now_ms() >= s->op->deadline) {
        log_warn("volume %s: %u bytes at %llu: giving up after %u ms: %s", s->op->v->name,
                 s->len, (unsigned long long)s->off, D.io_timeout_ms, strerror(-err));
        sub_done(s, -EIO);
        return;
    }
    if (err == -ESTALE || err == -EAGAIN)
        map_refresh();
    s->rnext = D.retry_head;
    D.retry_head = s;
    if (!D.retry_on) {
        D.retry_on = 1;
        uv_timer_start(&D.retry_timer, retry_timer_cb, RETRY_MS, 0);
    }
}

static void sub_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                         uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)msg;
    (void)msg_len;
    struct sub *s = arg;
    struct op *o = s->op;
    if (status < 0 && transient(status)) {
        rpc_buf_free(payload);
        sub_retry(s, status);
        return;
    }
    if (status >= 0 && s->type == FT_IO_READ) {
        if (payload_len != s->len) {
            log_warn("volume %s: SDS returned %u bytes for a %u-byte read; retrying",
                     o->v->name, payload_len, s->len);
            rpc_buf_free(payload);
            sub_retry(s, -EIO);
            return;
        }
        if (o->nsub == 1 && !o->io->buf) {
            o->io->buf = payload; /* the reply goes out from this buffer */
            payload = NULL;
        } else {
            if (!o->io->buf)
                o->io->buf = rpc_buf_alloc(o->io->len);
            if (o->io->buf)
                memcpy(o->io->buf + s->boff, payload, s->len);
            else
                status = -ENOMEM;
        }
    }
    rpc_buf_free(payload);
    s->status = status;
    sub_done(s, status < 0 ? status : 0);
}

static void sub_send(struct sub *s)
{
    struct op *o = s->op;
    struct vol *v = o->v;
    struct rpc_peer *peer;
    struct io_hdr h = {.volume_id = v->id, .offset = s->off, .length = s->len};
    if (o->io->flags & NBDIO_FUA)
        h.flags |= IO_FLAG_FUA;
    if (o->io->flags & NBDIO_NO_HOLE)
        h.flags |= IO_FLAG_NO_HOLE;
    Cairn__Pool *p = cmap_pool(D.map, v->pool_id);
    if (!p || !p->n_pgs) {
        sub_retry(s, -ESTALE);
        return;
    }
    h.pool_id = p->id;
    if (s->type == FT_IO_FLUSH) {
        Cairn__Sds *target = cmap_sds(D.map, s->sds_id);
        if (!target || !flush_target(target, p)) {
            /* it left (down, maintenance) since the flush began: it holds no
             * copy any more, and the copies that took its writes are flushed */
            sub_done(s, 0);
            return;
        }
        peer = sds_peer(s->sds_id);
    } else {
        uint64_t ext = s->off / p->extent_size;
        h.pg = layout_pg_of(v->id, ext, (uint32_t)p->n_pgs);
        Cairn__Pg *g = p->pgs[h.pg];
        h.epoch = g->epoch;
        Cairn__Device *d = g->n_devices ? cmap_device(D.map, g->devices[0]) : NULL;
        peer = d ? sds_peer(d->sds_id) : NULL;
    }
    if (!peer) {
        sub_retry(s, -ESTALE);
        return;
    }
    uint8_t msg[IO_HDR_SIZE];
    io_hdr_encode(&h, msg);
    struct iovec iov = {o->io->buf + s->boff, s->len};
    int npl = s->type == FT_IO_WRITE ? 1 : 0;
    int r = rpc_peer_call(peer, s->type, msg, IO_HDR_SIZE, &iov, npl, SUB_TIMEOUT_MS,
                          sub_reply_cb, s);
    if (r < 0)
        sub_retry(s, r);
}

static uint16_t frame_type(int cmd)
{
    switch (cmd) {
    case NBDIO_READ: return FT_IO_READ;
    case NBDIO_WRITE: return FT_IO_WRITE;
    case NBDIO_TRIM: return FT_IO_TRIM;
    case NBDIO_ZERO: return FT_IO_ZERO;
    case NBDIO_STATUS: return FT_IO_STAT;
    default: return FT_IO_FLUSH;
    }
}

static void fail_later_cb(uv_timer_t *t);

/* FLUSH goes to every SDS that is up and has a device in the pool: an SDS
 * that is down or in maintenance holds no copy a write could have reached. */
static int flush_target(const Cairn__Sds *sds, const Cairn__Pool *p)
{
    if (sds->state != CAIRN__SDS_STATE__SDS_UP)
        return 0;
    for (size_t j = 0; j < D.map->n_devices; j++)
        if (D.map->devices[j]->sds_id == sds->id && D.map->devices[j]->pool_id == p->id)
            return 1;
    return 0;
}

static void be_submit(void *ctx, void *exp, struct nbd_io *io)
{
    (void)ctx;
    struct vol *v = exp;
    Cairn__Pool *p = cmap_pool(D.map, v->pool_id);
    int n = 0;
    int err = 0;
    uint64_t es = p ? p->extent_size : 0;
    if (!p || !es) {
        err = -EIO;
    } else if (io->cmd == NBDIO_FLUSH) {
        for (size_t i = 0; i < D.map->n_sds; i++)
            n += flush_target(D.map->sds[i], p);
    } else {
        uint64_t first = io->off / es, last = (io->off + io->len - 1) / es;
        n = (int)(last - first + 1);
        if (io->cmd == NBDIO_STATUS && n > NBD_MAX_EXTENTS)
            n = NBD_MAX_EXTENTS;
        if (io->cmd == NBDIO_ZERO && (io->flags & NBDIO_FAST_ZERO) &&
            ((io->flags & NBDIO_NO_HOLE) || io->off % es || (io->off + io->len) % es))
            err = -ENOTSUP; /* zeroing partial extents writes data: not fast */
    }
    struct op *o = err ? NULL : calloc(1, sizeof(*o) + (size_t)(n ? n : 1) * sizeof(struct sub));
    if (!o) {
        /* complete from the loop, never from inside submit */
        uv_timer_t *t = malloc(sizeof(*t));
        uv_timer_init(D.loop, t);
        io->backend = (void *)(intptr_t)(err ? err : -ENOMEM);
        t->data = io;
        uv_timer_start(t, fail_later_cb, 0, 0);
        return;
    }
    o->io = io;
    o->v = v;
    v->refs++;
    o->nsub = n;
    o->pending = n;
    o->deadline = now_ms() + D.io_timeout_ms;
    if (io->cmd == NBDIO_FLUSH) {
        int k = 0;
        for (size_t i = 0; i < D.map->n_sds; i++)
            if (flush_target(D.map->sds[i], p)) {
                o->subs[k].op = o;
                o->subs[k].type = FT_IO_FLUSH;
                o->subs[k].sds_id = D.map->sds[i]->id;
                k++;
            }
    } else {
        uint64_t off = io->off, end = io->off + io->len;
        for (int i = 0; i < n; i++) {
            struct sub *s = &o->subs[i];
            uint64_t ext_end = (off / es + 1) * es;
            s->op = o;
            s->off = off;
            s->len = (uint32_t)(MIN(end, ext_end) - off);
            s->boff = (uint32_t)(off - io->off);
            s->type = frame_type(io->cmd);
            off += s->len;
        }
    }
    if (n == 0) {
        /* a pool with no SDS: nothing to flush; complete from the loop */
        free(o);
        vol_unref(v);
        uv_timer_t *t = malloc(sizeof(*t));
        uv_timer_init(D.loop, t);
        io->backend = (void *)(intptr_t)0;
        t->data = io;
        uv_timer_start(t, fail_later_cb, 0, 0);
        return;
    }
    for (int i = 0; i < n; i++)
        sub_send(&o->subs[i]);
}

static void timer_free_cb(uv_handle_t *h)
{
    free(h);
}

static void fail_later_cb(uv_timer_t *t)
{
    struct nbd_io *io = t->data;
    uv_close((uv_handle_t *)t, timer_free_cb);
    nbd_io_done(io, (int)(intptr_t)io->backend);
}

/* ---- startup ---- */

static int load_guid(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/sdc.guid", D.data_dir);
    char *buf;
    size_t len;
    if (file_read_all(path, &buf, &len) == 0) {
        snprintf(D.guid, sizeof(D.guid), "%.*s", (int)strcspn(buf, "\n"), buf);
        free(buf);
        if (D.guid[0])
            return 0;
    }
    FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");
    if (!f || !fgets(D.guid, sizeof(D.guid), f)) {
        if (f)
            fclose(f);
        return -EIO;
    }
    fclose(f);
    D.guid[strcspn(D.guid, "\n")] = 0;
    char line[80];
    snprintf(line, sizeof(line), "%s\n", D.guid);
    return file_write_atomic(path, line, strlen(line));
}

static void signal_cb(uv_signal_t *sig, int signum)
{
    (void)sig;
    if (D.stopping)
        return;
    D.stopping = 1;
    log_info("signal %d: shutting down", signum);
    uv_stop(D.loop);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cairn-sdc --mdm HOST:PORT --data-dir DIR [--name NAME]\n"
            "                 [--nbd-listen HOST:PORT] [--nbd-socket PATH]\n"
            "                 [--io-timeout SECONDS] [--pidfile FILE] [-v]\n"
            "  --nbd-listen  NBD over TCP (default 127.0.0.1:10809; 'none' to disable)\n"
            "  --nbd-socket  NBD over a unix socket (default DATA-DIR/nbd.sock)\n"
            "  --io-timeout  how long to retry a request the cluster can heal (default 60)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *pidfile = NULL, *sock = NULL;
    int verbose = 0;
    D.nbd_tcp = "127.0.0.1:10809";
    D.io_timeout_ms = 60000;
    static const struct option opts[] = {
        {"mdm", 1, 0, 'm'},        {"data-dir", 1, 0, 'd'},   {"name", 1, 0, 'n'},
        {"nbd-listen", 1, 0, 'l'}, {"nbd-socket", 1, 0, 's'}, {"io-timeout", 1, 0, 't'},
        {"pidfile", 1, 0, 'p'},    {"verbose", 0, 0, 'v'},    {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "m:d:n:l:s:t:p:vh", opts, NULL)) != -1) {
        switch (o) {
        case 'm': D.mdm_addr = optarg; break;
        case 'd': D.data_dir = optarg; break;
        case 'n': D.name = optarg; break;
        case 'l': D.nbd_tcp = optarg; break;
        case 's': sock = optarg; break;
        case 't': D.io_timeout_ms = (uint32_t)atoi(optarg) * 1000; break;
        case 'p': pidfile = optarg; break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    if (!D.mdm_addr || !D.data_dir || optind != argc || D.io_timeout_ms == 0)
        usage();
    log_init("cairn-sdc", verbose ? LOG_DEBUG : LOG_INFO);
    signal(SIGPIPE, SIG_IGN);
    if (mkdir(D.data_dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", D.data_dir, strerror(errno));
        return 1;
    }
    if (load_guid() < 0) {
        log_error("cannot read or create %s/sdc.guid", D.data_dir);
        return 1;
    }
    static char hostname[65];
    if (!D.name) {
        gethostname(hostname, sizeof(hostname) - 1);
        for (char *p = hostname; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                *p = '-';
        D.name = hostname;
    }
    snprintf(D.nbd_unix, sizeof(D.nbd_unix), "unix:%s", sock ? sock : "");
    if (!sock)
        snprintf(D.nbd_unix, sizeof(D.nbd_unix), "unix:%s/nbd.sock", D.data_dir);
    D.loop = uv_default_loop();
    struct nbd_backend be = {.ctx = &D, .open = be_open, .close = be_close, .list = be_list,
                             .submit = be_submit};
    int r;
    if (strcmp(D.nbd_tcp, "none")) {
        r = nbd_server_listen(D.loop, D.nbd_tcp, &be, &D.tcp_srv);
        if (r < 0) {
            log_error("cannot listen for NBD on %s: %s", D.nbd_tcp, uv_strerror(r));
            return 1;
        }
    }
    r = nbd_server_listen(D.loop, D.nbd_unix, &be, &D.unix_srv);
    if (r < 0) {
        log_error("cannot listen for NBD on %s: %s", D.nbd_unix, uv_strerror(r));
        return 1;
    }
    static const struct mdm_session_ops ops = {.register_type = FT_SDC_REGISTER,
                                               .registration = session_registration,
                                               .on_map = session_on_map,
                                               .map_version = session_map_version};
    D.mdm = mdm_session_start(D.loop, D.mdm_addr, &ops, NULL, 1000);
    uv_timer_init(D.loop, &D.retry_timer);
    uv_signal_init(D.loop, &D.sigterm);
    uv_signal_init(D.loop, &D.sigint);
    uv_signal_start(&D.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&D.sigint, signal_cb, SIGINT);
    log_info("SDC '%s' (%s): NBD on %s and %s, MDM %s", D.name, D.guid, D.nbd_tcp,
             D.nbd_unix, D.mdm_addr);
    if (pidfile) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        file_write_atomic(pidfile, buf, strlen(buf));
    }
    uv_run(D.loop, UV_RUN_DEFAULT);
    if (D.map)
        cairn__cluster_map__free_unpacked(D.map, NULL);
    log_info("SDC stopped");
    return 0;
}
