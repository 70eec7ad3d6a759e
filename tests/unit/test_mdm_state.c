/* The MDM state machine: operations, refusals, atomicity, determinism, snapshots. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
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

/* Report every rebuilding copy complete, as the primaries would. */
static int complete_all(struct mdm_state *s)
{
    int n = 0;
    for (int round = 0; round < 10; round++) {
        int any = 0;
        for (size_t pi = 0; pi < s->m->n_pools; pi++)
            for (size_t gi = 0; gi < s->m->pools[pi]->n_pgs; gi++) {
                Cairn__Pg *g = s->m->pools[pi]->pgs[gi];
                if (!g->n_rebuilding)
                    continue;
                Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
                r.op = CAIRN__MGMT_OP__OP_PG_REBUILT;
                r.pool_id = s->m->pools[pi]->id;
                r.pg = (uint32_t)gi;
                r.device_id = g->rebuilding[0];
                r.epoch = g->epoch;
                CHECK_EQ(apply(s, &r), 0);
                any = 1;
                n++;
            }
        if (!any)
            break;
    }
    return n;
}

static uint32_t copies_on_sds(const struct mdm_state *s, const char *name)
{
    const Cairn__Sds *o = mdm_sds_by_name(s, name);
    uint32_t n = 0;
    for (size_t pi = 0; o && pi < s->m->n_pools; pi++)
        for (size_t gi = 0; gi < s->m->pools[pi]->n_pgs; gi++) {
            const Cairn__Pg *g = s->m->pools[pi]->pgs[gi];
            for (size_t k = 0; k < g->n_devices; k++)
                n += mdm_device_by_id(s, g->devices[k])->sds_id == o->id;
        }
    return n;
}

static int sds_op(struct mdm_state *s, int op, const char *name, int force)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = op;
    r.name = (char *)name;
    r.force = force;
    return apply(s, &r);
}

/* Called with SDSs a (4G), b (6G), c (8G) holding volumes, d (8G) just added. */
static void test_rebalance(struct mdm_state *s)
{
    Cairn__Pool *p = mdm_pool_by_name(s, "default");
    size_t moving = 0;
    for (size_t gi = 0; gi < p->n_pgs; gi++) {
        Cairn__Pg *g = p->pgs[gi];
        CHECK_EQ(g->n_leaving, g->n_rebuilding);
        CHECK_EQ(g->n_devices, 2u);
        moving += g->n_leaving;
    }
    /* d's fair share: 256 copies * 8/26 = 78.8 */
    CHECK(moving >= 76 && moving <= 82);
    CHECK_EQ(copies_on_sds(s, "d"), 0u);
    /* a stale report is refused */
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_PG_REBUILT;
    for (size_t gi = 0; gi < p->n_pgs; gi++)
        if (p->pgs[gi]->n_rebuilding) {
            r.pool_id = p->id;
            r.pg = (uint32_t)gi;
            r.device_id = p->pgs[gi]->rebuilding[0];
            r.epoch = p->pgs[gi]->epoch - 1;
            break;
        }
    CHECK_EQ(apply(s, &r), -ESTALE);
    CHECK_EQ(complete_all(s), (int)moving);
    p = mdm_pool_by_name(s, "default");
    uint32_t on_d = copies_on_sds(s, "d");
    CHECK(on_d >= 77 && on_d <= 80);
    for (size_t gi = 0; gi < p->n_pgs; gi++) {
        Cairn__Pg *g = p->pgs[gi];
        CHECK(!g->n_leaving && !g->n_rebuilding && g->n_devices == 2);
        CHECK(mdm_device_by_id(s, g->devices[0])->sds_id !=
              mdm_device_by_id(s, g->devices[1])->sds_id);
    }
    CHECK_EQ(complete_all(s), 0); /* balanced: nothing more moves */

    /* draining c: refused while it would leave too few fault sets? no: a, b,
     * d remain. Its copies move, then it is forgotten. */
    uint32_t on_c = copies_on_sds(s, "c");
    CHECK_EQ(sds_op(s, CAIRN__MGMT_OP__OP_SDS_REMOVE, "c", 0), 0);
    CHECK(mdm_sds_by_name(s, "c")->removing);
    int moved = complete_all(s);
    printf("drain of an SDS holding %u copies: %d moved\n", on_c, moved);
    CHECK(moved >= (int)on_c && moved <= (int)on_c * 12 / 10);
    CHECK(!mdm_sds_by_name(s, "c"));
    CHECK_EQ(copies_on_sds(s, "c"), 0u);
    /* usable now: a 4 + b 6 + d 8 = 18 / 2 = 9 GiB, the thick volume's 8 fit */
    CHECK_EQ(capacity_pool_usable(s->m, mdm_pool_by_name(s, "default")), 9ULL << 30);

    /* removing b too would leave 12 GiB raw: a and d, 4 and 8 GiB: usable 4
     * GiB, below the 8 GiB thick volume */
    CHECK_EQ(sds_op(s, CAIRN__MGMT_OP__OP_SDS_REMOVE, "b", 0), -ENOSPC);
    CHECK(strstr(err, "thick"));

    /* fault sets: declared first, then used; never two copies in one */
    Cairn__MgmtRequest f = CAIRN__MGMT_REQUEST__INIT;
    f.op = CAIRN__MGMT_OP__OP_FAULT_SET_ADD;
    f.fault_set = "rack1";
    CHECK_EQ(sds_add(s, "e", "10.0.0.5:7000", "rack1", 8ULL << 30), -ENOENT);
    CHECK(strstr(err, "fault-set add"));
    CHECK_EQ(apply(s, &f), 0);
    CHECK_EQ(apply(s, &f), -EEXIST);
    CHECK_EQ(sds_add(s, "e", "10.0.0.5:7000", "rack1", 8ULL << 30), 0);
    CHECK_EQ(sds_add(s, "f", "10.0.0.6:7000", "rack1", 8ULL << 30), 0);
    complete_all(s);
    p = mdm_pool_by_name(s, "default");
    uint32_t e = mdm_sds_by_name(s, "e")->id, ff = mdm_sds_by_name(s, "f")->id;
    for (size_t gi = 0; gi < p->n_pgs; gi++) {
        Cairn__Pg *g = p->pgs[gi];
        uint32_t s0 = mdm_device_by_id(s, g->devices[0])->sds_id;
        uint32_t s1 = mdm_device_by_id(s, g->devices[1])->sds_id;
        CHECK(!((s0 == e || s0 == ff) && (s1 == e || s1 == ff)));
    }
    f.op = CAIRN__MGMT_OP__OP_FAULT_SET_REMOVE;
    CHECK_EQ(apply(s, &f), -EBUSY);

    /* one device drains like an SDS; the SDS stays */
    Cairn__MgmtRequest dr = CAIRN__MGMT_REQUEST__INIT;
    char *path = "/dev/x";
    dr.op = CAIRN__MGMT_OP__OP_DEVICE_REMOVE;
    dr.name = "e";
    dr.paths = &path;
    dr.n_paths = 1;
    uint32_t on_e = copies_on_sds(s, "e");
    CHECK(on_e > 0);
    CHECK_EQ(apply(s, &dr), 0);
    complete_all(s);
    CHECK_EQ(copies_on_sds(s, "e"), 0u);
    CHECK(mdm_sds_by_name(s, "e"));
    CHECK_EQ(apply(s, &dr), -ENOENT); /* forgotten */

    /* forced removal of a down SDS: its copies go at once, rebuilt elsewhere */
    CHECK_EQ(sds_op(s, CAIRN__MGMT_OP__OP_SDS_DOWN, "d", 0), 0);
    CHECK_EQ(sds_op(s, CAIRN__MGMT_OP__OP_SDS_REMOVE, "d", 0), -EINVAL);
    CHECK(strstr(err, "--force"));
    CHECK_EQ(sds_op(s, CAIRN__MGMT_OP__OP_SDS_REMOVE, "d", 1), 0);
    CHECK(!mdm_sds_by_name(s, "d"));
    p = mdm_pool_by_name(s, "default");
    for (size_t gi = 0; gi < p->n_pgs; gi++)
        CHECK_EQ(p->pgs[gi]->n_devices + p->pgs[gi]->n_rebuilding, 2u);
    complete_all(s);
}

static int sds_state(struct mdm_state *s, int op, const char *name)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = op;
    r.name = (char *)name;
    return apply(s, &r);
}

/* An empty pool's table is recomputed outright on every change: each PG
 * ends with exactly `copies` in-sync devices and nothing to rebuild, catch
 * up or move (there is no data), even after an SDS went down and came back
 * across a snapshot restore, which sizes every list exactly. This wrote past
 * the end of a PG's device list before. */
static void test_empty_pool_recomputed_after_down_restore_up(void)
{
    struct mdm_state s, u;
    CHECK_EQ(mdm_state_init(&s, "cluster-1"), 0);
    CHECK_EQ(pool_create(&s, "default", 2), 0);
    CHECK_EQ(sds_add(&s, "a", "10.0.0.1:1", NULL, 8ULL << 30), 0);
    CHECK_EQ(sds_add(&s, "b", "10.0.0.2:1", NULL, 8ULL << 30), 0);
    CHECK_EQ(sds_add(&s, "c", "10.0.0.3:1", NULL, 8ULL << 30), 0);
    CHECK_EQ(sds_state(&s, CAIRN__MGMT_OP__OP_SDS_DOWN, "b"), 0);
    uint8_t *snap;
    size_t slen;
    CHECK_EQ(mdm_state_pack(&s, &snap, &slen), 0);
    CHECK_EQ(mdm_state_init(&u, "x"), 0);
    CHECK_EQ(mdm_state_restore(&u, snap, slen), 0);
    free(snap);
    CHECK_EQ(sds_state(&u, CAIRN__MGMT_OP__OP_SDS_UP, "b"), 0);
    CHECK_EQ(sds_state(&s, CAIRN__MGMT_OP__OP_SDS_UP, "b"), 0);
    CHECK(same(&s, &u)); /* a restored follower applies it alike */
    Cairn__Pool *p = mdm_pool_by_name(&u, "default");
    CHECK_EQ(p->n_pgs, 128);
    for (size_t g = 0; g < p->n_pgs; g++) {
        Cairn__Pg *pg = p->pgs[g];
        CHECK_EQ(pg->n_devices, 2);
        CHECK(pg->devices[0] != pg->devices[1]);
        CHECK_EQ(pg->n_rebuilding + pg->n_departed + pg->n_catchup + pg->n_leaving, 0);
    }
    mdm_state_free(&s);
    mdm_state_free(&u);
}

int main(void)
{
    test_empty_pool_recomputed_after_down_restore_up();
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
    CHECK_EQ(capacity_pool_usable(s.m, p), 9ULL << 30);
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

    /* a pool with volumes keeps its copies where they are when devices are
     * added: moves start, and complete one PG at a time */
    CHECK_EQ(sds_add(&s, "d", "10.0.0.4:7000", NULL, 8ULL << 30), 0);
    test_rebalance(&s);

    /* SDCs, mappings, removal */
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_SDC_REGISTER;
    r.guid = "g-1";
    r.name = "host1";
    CHECK_EQ(apply(&s, &r), 0);
    CHECK_EQ(apply(&s, &r), 0); /* idempotent */
    CHECK_EQ(s.m->n_sdcs, 1);
    /* restricted SDC mode (the default): pending, not mappable, until approved */
    CHECK(s.m->sdcs[0]->pending);
    Cairn__MgmtRequest m = CAIRN__MGMT_REQUEST__INIT;
    m.op = CAIRN__MGMT_OP__OP_MAP;
    m.volume = "thin";
    m.sdc = "host1";
    CHECK_EQ(apply(&s, &m), -EPERM);
    CHECK(strstr(err, "pending approval") && strstr(err, "cairn sdc approve host1"));
    CHECK_EQ(s.m->n_mappings, 0);
    Cairn__MgmtRequest ap = CAIRN__MGMT_REQUEST__INIT;
    ap.op = CAIRN__MGMT_OP__OP_SDC_APPROVE;
    ap.sdc = "nosuch";
    CHECK_EQ(apply(&s, &ap), -ENOENT);
    ap.sdc = "host1";
    CHECK_EQ(apply(&s, &ap), 0);
    CHECK_EQ(apply(&s, &ap), 0); /* idempotent */
    CHECK(!s.m->sdcs[0]->pending);
    CHECK_EQ(apply(&s, &r), 0); /* registering again keeps it approved */
    CHECK(!s.m->sdcs[0]->pending);
    /* restricted mode off: a new SDC is approved as it registers */
    Cairn__MgmtRequest cs = CAIRN__MGMT_REQUEST__INIT;
    cs.op = CAIRN__MGMT_OP__OP_CLUSTER_SET;
    CHECK_EQ(apply(&s, &cs), -EINVAL);
    cs.restricted_sdc = "maybe";
    CHECK_EQ(apply(&s, &cs), -EINVAL);
    cs.restricted_sdc = "off";
    CHECK_EQ(apply(&s, &cs), 0);
    Cairn__MgmtRequest r2 = r;
    r2.guid = "g-2";
    r2.name = "host2";
    CHECK_EQ(apply(&s, &r2), 0);
    CHECK(!mdm_sdc_by_name(&s, "host2")->pending);
    cs.restricted_sdc = "on";
    CHECK_EQ(apply(&s, &cs), 0);
    r2.guid = "g-3";
    r2.name = "host3";
    CHECK_EQ(apply(&s, &r2), 0);
    CHECK(mdm_sdc_by_name(&s, "host3")->pending);
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
    /* a PG naming one device twice (which made the balancer loop) */
    Cairn__Pg *g = s.m->pools[0]->pgs[0];
    CHECK(g->n_devices >= 2);
    uint32_t other = g->devices[1];
    g->devices[1] = g->devices[0];
    CHECK_EQ(mdm_state_pack(&s, &snap, &slen), 0);
    CHECK_EQ(mdm_state_restore(&u, snap, slen), -EINVAL);
    g->devices[1] = other;
    CHECK(same(&s, &u));
    free(snap);
    mdm_state_free(&s);
    mdm_state_free(&t);
    mdm_state_free(&u);
    printf("mdm state ok\n");
    return 0;
}
