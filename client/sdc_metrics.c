/* The SDC's Prometheus metrics: per volume what its NBD clients did (the
 * NBD server counts into each volume's struct nbd_stats as it queues the
 * replies), and the SDC as a whole: connections, requests in flight, the
 * memory budget, the map and the data path's retries.
 *
 * Rendering runs on the loop, between requests, and only reads: the I/O
 * path pays nothing for it. Volumes no longer mapped here are left out (a
 * connection may still hold one); a volume mapped again starts from zero,
 * which Prometheus takes for a counter reset. */
#include <stdio.h>

#include "metrics.h"
#include "sdc.h"

/* The volumes shown: those the current map maps here. */
static bool shown(const struct sdc_vol *v)
{
    return v->present;
}

/* One counter family with a sample per volume, read at offset off of its
 * struct nbd_stats. */
static void per_volume(struct metrics_out *o, struct sdc *s, char (*labels)[256], const char *name,
                       const char *help, size_t off)
{
    metrics_family(o, name, "counter", help);
    for (int i = 0; i < s->nvols; i++)
        if (shown(s->vols[i]))
            metrics_u64(o, name, labels[i],
                        *(const uint64_t *)((const char *)&s->vols[i]->io + off));
}

static void render_volumes(struct metrics_out *o, struct sdc *s)
{
    /* the label list of each volume, made once per scrape */
    static char labels[SDC_MAX_VOLS][256];
    for (int i = 0; i < s->nvols; i++)
        metrics_labels(labels[i], sizeof(labels[i]), "volume", s->vols[i]->name, "sdc", s->name,
                       NULL);
    per_volume(o, s, labels, "cairn_sdc_volume_reads_total",
               "NBD READ requests answered (failed ones too)", offsetof(struct nbd_stats, reads));
    per_volume(o, s, labels, "cairn_sdc_volume_writes_total",
               "NBD WRITE requests answered (failed ones too)", offsetof(struct nbd_stats, writes));
    per_volume(o, s, labels, "cairn_sdc_volume_read_bytes_total", "Bytes of successful reads",
               offsetof(struct nbd_stats, read_bytes));
    per_volume(o, s, labels, "cairn_sdc_volume_written_bytes_total", "Bytes of successful writes",
               offsetof(struct nbd_stats, write_bytes));
    per_volume(o, s, labels, "cairn_sdc_volume_errors_total",
               "NBD requests of any command answered with an error",
               offsetof(struct nbd_stats, errors));

    static const char *const ops[NBD_STAT_OPS] = {
        [NBD_STAT_FLUSH] = "flush",
        [NBD_STAT_TRIM] = "trim",
        [NBD_STAT_ZERO] = "zero",
        [NBD_STAT_CACHE] = "cache",
        [NBD_STAT_BLOCK_STATUS] = "block_status",
    };
    const char *name = "cairn_sdc_volume_other_requests_total";
    metrics_family(o, name, "counter",
                   "NBD requests other than READ and WRITE answered, by command");
    for (int i = 0; i < s->nvols; i++) {
        if (!shown(s->vols[i]))
            continue;
        for (int k = 0; k < NBD_STAT_OPS; k++) {
            char l[320];
            snprintf(l, sizeof(l), "%s,op=\"%s\"", labels[i], ops[k]);
            metrics_u64(o, name, l, s->vols[i]->io.other[k]);
        }
    }

    name = "cairn_sdc_volume_read_latency_seconds";
    metrics_family(o, name, "histogram",
                   "NBD READ latency, from the request's arrival to its reply being queued");
    for (int i = 0; i < s->nvols; i++)
        if (shown(s->vols[i]))
            metrics_hist(o, name, labels[i], &s->vols[i]->io.read_lat);
    name = "cairn_sdc_volume_write_latency_seconds";
    metrics_family(o, name, "histogram",
                   "NBD WRITE latency, from the request's arrival to its reply being queued");
    for (int i = 0; i < s->nvols; i++)
        if (shown(s->vols[i]))
            metrics_hist(o, name, labels[i], &s->vols[i]->io.write_lat);
}

static void gauge(struct metrics_out *o, const char *labels, const char *name, const char *help,
                  uint64_t v)
{
    metrics_family(o, name, "gauge", help);
    metrics_u64(o, name, labels, v);
}

static void counter(struct metrics_out *o, const char *labels, const char *name, const char *help,
                    uint64_t v)
{
    metrics_family(o, name, "counter", help);
    metrics_u64(o, name, labels, v);
}

void sdc_metrics_render(struct metrics_out *o, void *data)
{
    struct sdc *s = data;
    char l[128];
    metrics_labels(l, sizeof(l), "sdc", s->name, NULL);
    render_volumes(o, s);
    gauge(o, l, "cairn_sdc_nbd_connections", "NBD connections open (handshaking or serving)",
          nbd_server_connections(s->tcp_srv) + nbd_server_connections(s->unix_srv));
    gauge(o, l, "cairn_sdc_requests_in_flight", "NBD requests read and not yet answered",
          nbd_server_requests(s->tcp_srv) + nbd_server_requests(s->unix_srv));
    gauge(o, l, "cairn_sdc_io_memory_bytes",
          "What the --io-memory budget counts now: data of requests in progress and replies not "
          "yet read by their clients",
          s->budget ? nbd_budget_held(s->budget) : 0);
    gauge(o, l, "cairn_sdc_map_version", "Version of the cluster map this SDC holds (0: none)",
          s->map ? s->map->version : 0);
    counter(o, l, "cairn_sdc_retries_total",
            "Pieces of requests sent again after a failure the cluster heals (stale map, lost or "
            "slow SDS)",
            s->retries);
    counter(o, l, "cairn_sdc_sds_timeouts_total",
            "Pieces an SDS did not answer in time (then retried)", s->sds_timeouts);
    counter(o, l, "cairn_sdc_io_timeouts_total",
            "Pieces given up with an I/O error once the --io-timeout ran out", s->io_timeouts);
}
