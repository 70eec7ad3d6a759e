/* The MDM state machine: operations, refusals, atomicity, determinism, snapshots. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mdm_state.h"

static char err[512];

static int apply(struct mdm_state *s, Cairn__MgmtRequest *r)
{
    return mdm_state_apply(s, r, err, sizeof(err));
}

static int pool_create(struct mdm_state *s, const char *name, uint32_t copies)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_POOL_CREATE;
    r.pool = (char *)name;
    r.copies = copies;
    r.pg_count = 128;
    return apply(s, &r);
}

static int sds_add(struct mdm_state *s, const char *name, const char *addr, const char *fs,
                   uint64_t cap)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    char *paths[] = {"/dev/x"};
    uint64_t caps[] = {cap};
    r.op = CAIRN__MGMT_OP__OP_SDS_ADD;
    r.name = (char *)name;
    r.addr = (char *)addr;
    r.fault_set = (char *)(fs ? fs : "");
    r.paths = paths;
    r.n_paths = 1;
    r.capacities = caps;
    r.n_capacities = 1;
    return apply(s, &r);
}

static int vol(struct mdm_state *s, int op, const char *name, uint64_t size, int thick)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = op;
    r.volume = (char *)name;
    r.size = size;
    r.thick = thick;
    return apply(s, &r);
}

static int same(const struct mdm_state *a, const struct mdm_state *b)
{
    uint8_t *x, *y;
    size_t lx, ly;
    CHECK_EQ(mdm_state_pack(a, &x, &lx), 0);
    CHECK_EQ(mdm_state_pack(b, &y, &ly), 0);
    int eq = lx == ly && memcmp(x, y, lx) == 0;
    free(x);
    free(y);
    return eq;
}

static void build(struct mdm_state *s)
{
    CHECK_EQ(mdm_state_init(s, "cluster-1"), 0);
    CHECK_EQ(pool_create(s, "default", 2), 0);
    CHECK_EQ(sds_add(s, "a", "10.0.0.1:7000", NULL, 4ULL << 30), 0);
    Cairn__Pool *p = mdm_pool_by_name(s, "default");
    CHECK_EQ(p->n_pgs, 0); /* one fault set cannot hold two copies */
    CHECK_EQ(vol(s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "v", 1 << 30, 0), -ENOSPC);
    CHECK(strstr(err, "fault sets"));
    CHECK_EQ(sds_add(s, "b", "10.0.0.2:7000", NULL, 6ULL << 30), 0);
    CHECK_EQ(sds_add(s, "c", "10.0.0.3:7000", NULL, 8ULL << 30), 0);
    p = mdm_pool_by_name(s, "default"); /* a refused apply restored the state from a copy */
    CHECK_EQ(p->n_pgs, 128);
}

int main(void)
{
    struct mdm_state s, t;
    build(&s);
    build(&t);
    CHECK(same(&s, &t)); /* deterministic */

    /* refusals leave the state unchanged */
    uint8_t *before;
    size_t blen;
    CHECK_EQ(mdm_state_pack(&s, &before, &blen), 0);
    CHECK_EQ(pool_create(&s, "default", 2), -EEXIST);
    CHECK_EQ(pool_create(&s, "p4", 4), -EINVAL);
    CHECK_EQ(sds_add(&s, "a", "10.0.0.9:7000", NULL, 1ULL << 30), -EEXIST);
    CHECK_EQ(sds_add(&s, "d", "10.0.0.1:7000", NULL, 1ULL << 30), -EEXIST); /* address */
    CHECK_EQ(sds_add(&s, "tiny", "10.0.0.5:7000", NULL, 1 << 20), -EINVAL);
    CHECK_EQ(sds_add(&s, "bad name!", "10.0.0.6:7000", NULL, 1ULL << 30), -EINVAL);
    uint8_t *after;
    size_t alen;
    CHECK_EQ(mdm_state_pack(&s, &after, &alen), 0);
    CHECK(blen == alen && memcmp(before, after, blen) == 0);
    free(before);
    free(after);

    /* usable = (4+6+8) / 2 = 9 GiB; overcommit 300% = 27 GiB */
    Cairn__Pool *p = mdm_pool_by_name(&s, "default");
    CHECK_EQ(mdm_pool_usable_capacity(&s, p), 9ULL << 30);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "thick", 10ULL << 30, 1), -ENOSPC);
    CHECK(strstr(err, "thick"));
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "thick", 8ULL << 30, 1), 0);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "thick2", 2ULL << 30, 1), -ENOSPC);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "thin", 19ULL << 30, 0), 0);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "thin2", 1ULL << 30, 0), -ENOSPC);
    CHECK(strstr(err, "overcommit"));
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "thin", 4096, 0), -EEXIST);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "odd", 4097, 0), -EINVAL);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_GROW, "thin", 1ULL << 30, 0), -EINVAL);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_GROW, "thick", 9ULL << 30, 0), -ENOSPC);

    /* a pool with volumes keeps its PG table when devices are added */
    p = mdm_pool_by_name(&s, "default");
    uint64_t epoch0 = p->pgs[0]->epoch;
    uint32_t dev0 = p->pgs[0]->devices[0];
    CHECK_EQ(sds_add(&s, "d", "10.0.0.4:7000", NULL, 8ULL << 30), 0);
    p = mdm_pool_by_name(&s, "default");
    CHECK_EQ(p->pgs[0]->epoch, epoch0);
    CHECK_EQ(p->pgs[0]->devices[0], dev0);

    /* SDCs, mappings, removal */
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_SDC_REGISTER;
    r.guid = "g-1";
    r.name = "host1";
    CHECK_EQ(apply(&s, &r), 0);
    CHECK_EQ(apply(&s, &r), 0); /* idempotent */
    CHECK_EQ(s.m->n_sdcs, 1);
    Cairn__MgmtRequest m = CAIRN__MGMT_REQUEST__INIT;
    m.op = CAIRN__MGMT_OP__OP_MAP;
    m.volume = "thin";
    m.sdc = "host1";
    CHECK_EQ(apply(&s, &m), 0);
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_REMOVE, "thin", 0, 0), -EBUSY);
    m.op = CAIRN__MGMT_OP__OP_UNMAP;
    CHECK_EQ(apply(&s, &m), 0);
    CHECK_EQ(apply(&s, &m), -ENOENT);
    uint64_t id = mdm_volume_by_name(&s, "thin")->id;
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_REMOVE, "thin", 0, 0), 0);
    CHECK(!mdm_volume_by_name(&s, "thin"));
    CHECK_EQ(s.m->n_removed_volumes, 1);
    CHECK_EQ(s.m->removed_volumes[0], id);
    /* ids are never reused */
    CHECK_EQ(vol(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, "thin", 4096, 0), 0);
    CHECK(mdm_volume_by_name(&s, "thin")->id > id);

    /* snapshot round trip */
    uint8_t *snap;
    size_t slen;
    CHECK_EQ(mdm_state_pack(&s, &snap, &slen), 0);
    struct mdm_state u;
    CHECK_EQ(mdm_state_init(&u, "x"), 0);
    CHECK_EQ(mdm_state_restore(&u, snap, slen), 0);
    CHECK(same(&s, &u));
    CHECK_EQ(mdm_state_restore(&u, (const uint8_t *)"\xff\xff\xff", 3), -EINVAL);
    CHECK(same(&s, &u)); /* a bad snapshot leaves the state alone */
    free(snap);
    mdm_state_free(&s);
    mdm_state_free(&t);
    mdm_state_free(&u);
    printf("mdm state ok\n");
    return 0;
}
