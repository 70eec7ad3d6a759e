/* Small cluster maps for the SDS's unit tests, built from protobuf-c structs
 * in static storage (nothing to free): NSDS SDSs with ids 1..NSDS, each with
 * one device, id 10 + its SDS id; one pool (id 1, 1 MiB extents, NPG PGs),
 * every PG held by devices 11 (primary) and 12 at epoch 5; one volume, id
 * 100, 64 MiB. Tests change whatever they need after tmap_init(). */
#ifndef CAIRN_TEST_SDS_MAP_H
#define CAIRN_TEST_SDS_MAP_H

#include <stdint.h>
#include <string.h>

#include "cairn.pb-c.h"

#define TMAP_NSDS 4
#define TMAP_NPG 8
#define TMAP_EXT (1u << 20)
#define TMAP_VOL 100
#define TMAP_VOL_SIZE (64u << 20)
#define TMAP_EPOCH 5

struct tmap {
    Cairn__ClusterMap m;
    Cairn__Sds sds[TMAP_NSDS], *sdsp[TMAP_NSDS];
    Cairn__Device dev[TMAP_NSDS], *devp[TMAP_NSDS];
    Cairn__Pool pool, *poolp[1];
    Cairn__Pg pg[TMAP_NPG], *pgp[TMAP_NPG];
    uint32_t pgdev[TMAP_NPG][4], pgreb[TMAP_NPG][2];
    Cairn__Volume vol, *volp[1];
};

static inline void tmap_init(struct tmap *t, uint64_t version)
{
    memset(t, 0, sizeof(*t));
    cairn__cluster_map__init(&t->m);
    t->m.version = version;
    t->m.cluster_id = (char *)"test";
    for (int i = 0; i < TMAP_NSDS; i++) {
        cairn__sds__init(&t->sds[i]);
        t->sds[i].id = (uint32_t)i + 1;
        t->sds[i].state = CAIRN__SDS_STATE__SDS_UP;
        t->sdsp[i] = &t->sds[i];
        cairn__device__init(&t->dev[i]);
        t->dev[i].id = 11 + (uint32_t)i;
        t->dev[i].sds_id = (uint32_t)i + 1;
        t->dev[i].pool_id = 1;
        t->devp[i] = &t->dev[i];
    }
    t->m.n_sds = TMAP_NSDS;
    t->m.sds = t->sdsp;
    t->m.n_devices = TMAP_NSDS;
    t->m.devices = t->devp;
    cairn__pool__init(&t->pool);
    t->pool.id = 1;
    t->pool.copies = 2;
    t->pool.extent_size = TMAP_EXT;
    t->pool.pg_count = TMAP_NPG;
    for (int i = 0; i < TMAP_NPG; i++) {
        cairn__pg__init(&t->pg[i]);
        t->pg[i].epoch = TMAP_EPOCH;
        t->pgdev[i][0] = 11;
        t->pgdev[i][1] = 12;
        t->pg[i].devices = t->pgdev[i];
        t->pg[i].n_devices = 2;
        t->pg[i].rebuilding = t->pgreb[i];
        t->pgp[i] = &t->pg[i];
    }
    t->pool.n_pgs = TMAP_NPG;
    t->pool.pgs = t->pgp;
    t->poolp[0] = &t->pool;
    t->m.n_pools = 1;
    t->m.pools = t->poolp;
    cairn__volume__init(&t->vol);
    t->vol.id = TMAP_VOL;
    t->vol.pool_id = 1;
    t->vol.size = TMAP_VOL_SIZE;
    t->volp[0] = &t->vol;
    t->m.n_volumes = 1;
    t->m.volumes = t->volp;
}

/* Copy k of PG pg is device dev (k may be the next one: the PG grows). */
static inline void tmap_set_copy(struct tmap *t, uint32_t pg, size_t k, uint32_t dev)
{
    t->pgdev[pg][k] = dev;
    if (k >= t->pg[pg].n_devices)
        t->pg[pg].n_devices = k + 1;
}

#endif
