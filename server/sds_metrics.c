/* The SDS's Prometheus metrics: per device what the device was asked
 * (disk_uring.c counts each operation as it completes, metadata and
 * read-modify-write included) and how full it is; per SDS the requests
 * dispatch answered, their latency, the budget and the rebuild work.
 *
 * Rendering runs on the loop between requests and only reads what the
 * owners count, so the I/O path pays a few increments and, for a client's
 * read or write, two clock reads. */
#include <stdio.h>

#include "extent_store.h"
#include "metrics.h"
#include "sds.h"

/* The op label of each enum sds_op. */
static const char *const op_names[SDS_OPS] = {
    [SDS_OP_READ] = "read",
    [SDS_OP_WRITE] = "write",
    [SDS_OP_TRIM] = "trim",
    [SDS_OP_ZERO] = "zero",
    [SDS_OP_STAT] = "stat",
    [SDS_OP_FLUSH] = "flush",
    [SDS_OP_REPLICA_WRITE] = "replica_write",
    [SDS_OP_REPLICA_TRIM] = "replica_trim",
    [SDS_OP_REPLICA_ZERO] = "replica_zero",
    [SDS_OP_REBUILD_WRITE] = "rebuild_write",
    [SDS_OP_REBUILD_TRIM] = "rebuild_trim",
};

/* The stats of a device that never opened are all zero. */
static const struct disk_stats no_stats;

static const struct disk_stats *dev_stats(const struct dev *d)
{
    return d->disk ? &d->disk->stats : &no_stats;
}

/* Capacity and used bytes of a device's store (0 if it never opened). */
static void dev_usage(const struct dev *d, uint64_t *cap, uint64_t *used)
{
    *cap = *used = 0;
    if (!d->st)
        return;
    uint64_t u, t, es = store_extent_size(d->st);
    store_usage(d->st, &u, &t);
    *cap = t * es;
    *used = u * es;
}

enum dev_value {
    DV_READS,
    DV_WRITES,
    DV_READ_BYTES,
    DV_WRITTEN_BYTES,
    DV_ERRORS,
    DV_QUEUE_DEPTH,
    DV_CAPACITY,
    DV_USED,
    DV_FREE,
    DV_FAILED,
    DV_LOG_FULL,
    DV_COUNT
};

static const struct {
    const char *name, *type, *help;
} dev_families[DV_COUNT] = {
    [DV_READS] = {"cairn_sds_device_reads_total", "counter",
                  "Reads the device completed (data, metadata and read-modify-write)"},
    [DV_WRITES] = {"cairn_sds_device_writes_total", "counter",
                   "Writes the device completed (data, metadata and read-modify-write)"},
    [DV_READ_BYTES] = {"cairn_sds_device_read_bytes_total", "counter",
                       "Bytes the device's successful reads returned"},
    [DV_WRITTEN_BYTES] = {"cairn_sds_device_written_bytes_total", "counter",
                          "Bytes the device's successful writes stored"},
    [DV_ERRORS] = {"cairn_sds_device_errors_total", "counter",
                   "Device operations (reads, writes, syncs) that completed with an error"},
    [DV_QUEUE_DEPTH] = {"cairn_sds_device_queue_depth", "gauge", "Device operations in flight now"},
    [DV_CAPACITY] = {"cairn_sds_device_capacity_bytes", "gauge",
                     "Bytes of extent slots the device holds"},
    [DV_USED] = {"cairn_sds_device_used_bytes", "gauge", "Bytes of extent slots in use"},
    [DV_FREE] = {"cairn_sds_device_free_bytes", "gauge", "Bytes of extent slots free"},
    [DV_FAILED] = {"cairn_sds_device_failed", "gauge",
                   "1 if the device has failed (no I/O goes to it), else 0"},
    [DV_LOG_FULL] = {"cairn_sds_device_log_full_total", "counter",
                     "First writes that found the device's write log full and went with FUA"},
};

static uint64_t dev_value(const struct dev *d, enum dev_value which)
{
    const struct disk_stats *st = dev_stats(d);
    uint64_t cap, used;
    switch (which) {
    case DV_READS: return st->reads;
    case DV_WRITES: return st->writes;
    case DV_READ_BYTES: return st->read_bytes;
    case DV_WRITTEN_BYTES: return st->write_bytes;
    case DV_ERRORS: return st->errors;
    case DV_QUEUE_DEPTH: return st->inflight;
    case DV_CAPACITY: dev_usage(d, &cap, &used); return cap;
    case DV_USED: dev_usage(d, &cap, &used); return used;
    case DV_FREE: dev_usage(d, &cap, &used); return cap - used;
    case DV_FAILED: return d->failed ? 1 : 0;
    case DV_LOG_FULL: return d->st ? store_log_fallbacks(d->st) : 0;
    default: return 0;
    }
}

static void render_devices(struct metrics_out *o, struct sds *s)
{
    char labels[SDS_MAX_DEVS][512];
    for (int i = 0; i < s->ndevs; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%u", s->devs[i].id);
        metrics_labels(labels[i], sizeof(labels[i]), "sds", s->name, "device", s->devs[i].path,
                       "device_id", id, NULL);
    }
    for (int f = 0; f < DV_COUNT; f++) {
        metrics_family(o, dev_families[f].name, dev_families[f].type, dev_families[f].help);
        for (int i = 0; i < s->ndevs; i++)
            metrics_u64(o, dev_families[f].name, labels[i], dev_value(&s->devs[i], f));
    }
}

static void render_requests(struct metrics_out *o, struct sds *s, const char *l)
{
    const struct sds_counters *k = &s->counters;
    char ol[320];
    const char *name = "cairn_sds_requests_total";
    metrics_family(o, name, "counter",
                   "Data requests answered, by op: a client's read, write, trim, zero, stat or "
                   "flush; replica_* forwarded by a PG's primary; rebuild_* copies sent to a copy "
                   "being filled");
    for (int i = 0; i < SDS_OPS; i++) {
        snprintf(ol, sizeof(ol), "%s,op=\"%s\"", l, op_names[i]);
        metrics_u64(o, name, ol, k->requests[i]);
    }
    name = "cairn_sds_request_errors_total";
    metrics_family(o, name, "counter",
                   "Data requests answered with an error, by op (stale epochs and busy replies "
                   "that clients retry included)");
    for (int i = 0; i < SDS_OPS; i++) {
        snprintf(ol, sizeof(ol), "%s,op=\"%s\"", l, op_names[i]);
        metrics_u64(o, name, ol, k->errors[i]);
    }
    name = "cairn_sds_request_latency_seconds";
    metrics_family(o, name, "histogram",
                   "Latency of clients' reads and writes, from arrival to the reply being queued "
                   "(a write's includes its copies)");
    snprintf(ol, sizeof(ol), "%s,op=\"read\"", l);
    metrics_hist(o, name, ol, &k->read_lat);
    snprintf(ol, sizeof(ol), "%s,op=\"write\"", l);
    metrics_hist(o, name, ol, &k->write_lat);
}

static void one(struct metrics_out *o, const char *name, const char *type, const char *help,
                const char *labels, uint64_t v)
{
    metrics_family(o, name, type, help);
    metrics_u64(o, name, labels, v);
}

static void render_rebuild(struct metrics_out *o, struct sds *s, const char *l)
{
    Cairn__RebuildStatus rs;
    rebuild_fill_status(s, &rs);
    char rb[320], ba[320];
    snprintf(rb, sizeof(rb), "%s,kind=\"rebuild\"", l);
    snprintf(ba, sizeof(ba), "%s,kind=\"rebalance\"", l);
    const char *name = "cairn_sds_rebuild_bytes_total";
    metrics_family(o, name, "counter",
                   "Bytes this SDS copied as a PG's primary to copies being filled: rebuild "
                   "restores lost copies, rebalance moves them (balance, drain)");
    metrics_u64(o, name, rb, rs.bytes_done - rs.rebalance_bytes_done);
    metrics_u64(o, name, ba, rs.rebalance_bytes_done);
    name = "cairn_sds_rebuild_bytes_left";
    metrics_family(o, name, "gauge", "Bytes this SDS still has to copy as a primary");
    metrics_u64(o, name, rb, rs.bytes_left - rs.rebalance_bytes_left);
    metrics_u64(o, name, ba, rs.rebalance_bytes_left);
    name = "cairn_sds_rebuild_pgs_left";
    metrics_family(o, name, "gauge", "PG copies this SDS is still filling as a primary");
    metrics_u64(o, name, rb, rs.pgs_left - rs.rebalance_pgs_left);
    metrics_u64(o, name, ba, rs.rebalance_pgs_left);
    one(o, "cairn_sds_rebuild_rate_bytes_per_second", "gauge",
        "Recent rate of copying as a primary (rebuild and rebalance together)", l, rs.rate);
    one(o, "cairn_sds_rebuild_received_bytes_total", "counter",
        "Bytes of copies received as the target of a rebuild or rebalance", l, rs.bytes_received);
}

void sds_metrics_render(struct metrics_out *o, void *data)
{
    struct sds *s = data;
    char l[256];
    metrics_labels(l, sizeof(l), "sds", s->name, NULL);
    render_devices(o, s);
    render_requests(o, s, l);
    one(o, "cairn_sds_requests_in_flight", "gauge", "Data requests taken and not yet answered", l,
        s->ioreqs.nlive);
    one(o, "cairn_sds_io_memory_bytes", "gauge",
        "What the --io-memory budget counts now: data of clients' requests in progress", l,
        s->io_held);
    one(o, "cairn_sds_connections", "gauge", "Accepted connections open (SDCs and other SDSs)", l,
        s->counters.conns);
    render_rebuild(o, s, l);
}
