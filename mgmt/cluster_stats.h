/* What a status reply (OP_STATUS: the map plus the MDM's soft state) says
 * about the cluster: capacity, PG health and rebuild progress. Shared by the
 * CLI, the MDM's REST API and its metrics, so that every surface shows the
 * same numbers and words. Pure functions; nothing is kept. */
#ifndef CAIRN_CLUSTER_STATS_H
#define CAIRN_CLUSTER_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"

struct cluster_pool_stats {
    uint64_t raw, usable, used, provisioned, thick, enospc;
    int full_devices, failed_devices;
    size_t pgs_full, pgs_degraded, pgs_no_copy, pgs_rebuilding, pgs_moving;
};

/* Rebuild progress summed over the SDSs' last heartbeats. left/done/pgs
 * count every copy being filled (rebuild, rebalance and drain alike); the
 * rebalance_ fields are the part of them that moves copies for balance or
 * a drain. rate is bytes per second; received counts bytes copied in. */
struct cluster_rebuild_stats {
    uint64_t left, rate, done, received;
    uint32_t pgs;
    uint64_t rebalance_left, rebalance_done;
    uint32_t rebalance_pgs;
};

/* The status of SDS id in rep, or NULL. */
const Cairn__SdsStatus *cluster_sds_status(const Cairn__MgmtReply *rep, uint32_t id);
/* Device d's usage from its SDS's last heartbeat, or NULL. */
const Cairn__DeviceUsage *cluster_dev_usage(const Cairn__MgmtReply *rep, const Cairn__Device *d);
/* A PG's in-sync copies on SDSs that are up and devices not failed. */
size_t cluster_live_copies(const Cairn__MgmtReply *rep, const Cairn__Pg *g);
struct cluster_rebuild_stats cluster_rebuild_stats(const Cairn__MgmtReply *rep);
struct cluster_pool_stats cluster_pool_stats(const Cairn__MgmtReply *rep, const Cairn__Pool *p);
/* The pool's health in words: "ok", or what is wrong, worst first. */
const char *cluster_pool_health(const struct cluster_pool_stats *ps, const Cairn__Pool *p);

/* How far the flatten of v is (0..1): the least of the up SDSs' reports. */
double cluster_flatten_progress(const Cairn__MgmtReply *rep, const Cairn__Volume *v);

#endif
