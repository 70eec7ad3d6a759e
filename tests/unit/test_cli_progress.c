/* The CLI's reading of rebuild and rebalance work from a status reply
 * (mgmt/cli_progress.c), on replies built by hand: when it is done, under
 * way, not yet visible to the MDM, or stuck; and how its progress reads. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cli_progress.h"

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (strcmp(_a, _b)) {                                                                      \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__,    \
                    __LINE__, #a, #b, _a, _b);                                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_HAS(hay, needle)                                                                     \
    do {                                                                                           \
        const char *_h = (hay), *_n = (needle);                                                    \
        if (!strstr(_h, _n)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK_HAS failed: \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,  \
                    _h, _n);                                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* A cluster of three SDSs (ids 1..3, names a b c), one device each (ids
 * 11..13), one pool of 2 copies with 3 PGs on {11,12} {12,13} {13,11} and a
 * volume; every SDS connected with a fresh heartbeat. */
#define NSDS 3
#define NPG 3
struct fixture {
    Cairn__MgmtReply rep;
    Cairn__ClusterMap map;
    Cairn__Sds sds[NSDS], *sdsp[NSDS];
    Cairn__Device dev[NSDS], *devp[NSDS];
    Cairn__Pool pool, *poolp;
    Cairn__Pg pg[NPG], *pgp[NPG];
    uint32_t members[NPG][4], rebuilding[NPG][2], leaving[NPG][2], departed[NPG][2];
    Cairn__Volume vol, *volp;
    Cairn__SdsStatus st[NSDS], *stp[NSDS];
    Cairn__DeviceUsage use[NSDS], *usep[NSDS];
    Cairn__RebuildStatus rb[NSDS];
};

static void fixture_init(struct fixture *f)
{
    static const char *const names[] = {"a", "b", "c"};
    memset(f, 0, sizeof(*f));
    cairn__mgmt_reply__init(&f->rep);
    cairn__cluster_map__init(&f->map);
    f->rep.map = &f->map;
    for (int i = 0; i < NSDS; i++) {
        cairn__sds__init(&f->sds[i]);
        f->sds[i].id = (uint32_t)i + 1;
        f->sds[i].name = (char *)names[i];
        f->sdsp[i] = &f->sds[i];
        cairn__device__init(&f->dev[i]);
        f->dev[i].id = (uint32_t)i + 11;
        f->dev[i].sds_id = (uint32_t)i + 1;
        f->dev[i].pool_id = 1;
        f->dev[i].path = "/dev/x";
        f->devp[i] = &f->dev[i];
        cairn__sds_status__init(&f->st[i]);
        f->st[i].sds_id = (uint32_t)i + 1;
        f->st[i].connected = 1;
        f->st[i].last_heartbeat_ms_ago = 100;
        cairn__device_usage__init(&f->use[i]);
        f->use[i].device_id = (uint32_t)i + 11;
        f->use[i].total_extents = 100;
        f->usep[i] = &f->use[i];
        f->st[i].usage = &f->usep[i];
        f->st[i].n_usage = 1;
        cairn__rebuild_status__init(&f->rb[i]);
        f->st[i].rebuild = &f->rb[i];
        f->stp[i] = &f->st[i];
    }
    f->map.sds = f->sdsp;
    f->map.n_sds = NSDS;
    f->map.devices = f->devp;
    f->map.n_devices = NSDS;
    f->rep.sds_status = f->stp;
    f->rep.n_sds_status = NSDS;
    cairn__pool__init(&f->pool);
    f->pool.id = 1;
    f->pool.name = "default";
    f->pool.copies = 2;
    f->pool.extent_size = 1 << 20;
    for (int g = 0; g < NPG; g++) {
        cairn__pg__init(&f->pg[g]);
        f->members[g][0] = 11 + (uint32_t)g;
        f->members[g][1] = 11 + (uint32_t)(g + 1) % 3;
        f->pg[g].devices = f->members[g];
        f->pg[g].n_devices = 2;
        f->pg[g].rebuilding = f->rebuilding[g];
        f->pg[g].leaving = f->leaving[g];
        f->pg[g].departed = f->departed[g];
        f->pgp[g] = &f->pg[g];
    }
    f->pool.pgs = f->pgp;
    f->pool.n_pgs = NPG;
    f->poolp = &f->pool;
    f->map.pools = &f->poolp;
    f->map.n_pools = 1;
    cairn__volume__init(&f->vol);
    f->vol.id = 100;
    f->vol.name = "v";
    f->vol.pool_id = 1;
    f->volp = &f->vol;
    f->map.volumes = &f->volp;
    f->map.n_volumes = 1;
}

/* SDS b (id 2, device 12) marked down: PGs 0 {11,12} and 1 {12,13} lose a
 * copy; PG 0 rebuilds onto 13, PG 1 onto 11 (what pg_membership does). */
static void sds_b_down(struct fixture *f)
{
    f->sds[1].state = CAIRN__SDS_STATE__SDS_DOWN;
    f->st[1].connected = 0;
    f->st[1].rebuild = NULL;
    f->st[1].n_usage = 0;
    f->members[0][1] = 0;
    f->pg[0].n_devices = 1; /* {11} */
    f->members[1][0] = 13;
    f->pg[1].n_devices = 1; /* {13} */
    f->rebuilding[0][0] = 13;
    f->pg[0].n_rebuilding = 1;
    f->rebuilding[1][0] = 11;
    f->pg[1].n_rebuilding = 1;
}

static struct cli_work_view assess(struct fixture *f, enum cli_work w, uint64_t since)
{
    struct cli_work_view v;
    cli_progress_assess(&f->rep, w, since, &v);
    return v;
}

static void test_healthy(void)
{
    struct fixture f;
    fixture_init(&f);
    struct cli_work_view v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_DONE);
    CHECK_STR(v.why, "");
    v = assess(&f, CLI_WORK_REBALANCE, 5000);
    CHECK_EQ(v.state, CLI_WORK_DONE);
    /* a heartbeat older than the wait says nothing about it */
    v = assess(&f, CLI_WORK_REBUILD, 50);
    CHECK_EQ(v.state, CLI_WORK_PENDING);
    CHECK_HAS(v.why, "heartbeat from SDS 'a'");
    /* an SDS silent for long: the MDM may be about to mark it down */
    f.st[2].last_heartbeat_ms_ago = CLI_PROGRESS_HB_STALE_MS + 1;
    v = assess(&f, CLI_WORK_REBUILD, 60000);
    CHECK_EQ(v.state, CLI_WORK_PENDING);
    CHECK_HAS(v.why, "SDS 'c' (no heartbeat for");
    f.st[2].last_heartbeat_ms_ago = 100;
    /* connected, but no heartbeat yet */
    f.st[2].n_usage = 0;
    CHECK_EQ(assess(&f, CLI_WORK_REBUILD, 5000).state, CLI_WORK_PENDING);
}

/* Killed, not yet marked down: every copy still counts as live in the map,
 * and nothing is rebuilding; it must not read as done. */
static void test_death_not_yet_seen(void)
{
    struct fixture f;
    fixture_init(&f);
    f.st[1].connected = 0;
    f.st[1].rebuild = NULL;
    struct cli_work_view v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_PENDING);
    CHECK_HAS(v.why, "mark SDS 'b' down");
    CHECK_EQ(assess(&f, CLI_WORK_REBALANCE, 5000).state, CLI_WORK_PENDING);
    /* a device failed in a heartbeat, not yet in the map: the same */
    fixture_init(&f);
    f.use[0].failed = 1;
    v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_PENDING);
    CHECK_HAS(v.why, "device /dev/x of SDS 'a' failed");
    f.dev[0].failed = 1; /* marked: now the map has it (PGs 0 and 2 degraded) */
    v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.pgs_degraded, 2);
}

static void test_rebuild(void)
{
    struct fixture f;
    fixture_init(&f);
    sds_b_down(&f);
    /* the map has it before any primary reports a byte */
    struct cli_work_view v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_RUNNING);
    CHECK_EQ(v.pgs_degraded, 2);
    CHECK_EQ(v.pgs_rebuilding, 2);
    CHECK_EQ(v.copies_left, 2);
    CHECK_EQ(v.bytes_left, 0);
    /* the rebalance waits for it, and for b: down, it holds a device */
    v = assess(&f, CLI_WORK_REBALANCE, 5000);
    CHECK_EQ(v.state, CLI_WORK_STUCK);
    CHECK_HAS(v.why, "cannot rebalance: SDS 'b' is down");
    /* the primaries report */
    f.rb[0].pgs_left = 1;
    f.rb[0].bytes_left = 3 << 20;
    f.rb[0].bytes_done = 5 << 20;
    f.rb[0].rate = 1 << 20;
    f.rb[2].pgs_left = 1;
    f.rb[2].bytes_left = 1 << 20;
    v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_RUNNING);
    CHECK_EQ(v.bytes_left, 4 << 20);
    CHECK_EQ(v.bytes_done, 5 << 20);
    char line[256];
    CHECK_STR(cli_progress_line(line, sizeof(line), &v),
              "rebuild: 2 PG copies, 4.0 MiB left, 1.0 MiB/s, ETA 4 s");
    /* the map says rebuilt, a heartbeat still reports a copy: not yet */
    f.members[0][1] = 13;
    f.pg[0].n_devices = 2;
    f.pg[0].n_rebuilding = 0;
    f.members[1][1] = 11;
    f.pg[1].n_devices = 2;
    f.pg[1].n_rebuilding = 0;
    v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_RUNNING);
    CHECK_EQ(v.pgs_degraded, 0);
    f.rb[0].pgs_left = f.rb[2].pgs_left = 0;
    f.rb[0].bytes_left = f.rb[2].bytes_left = 0;
    CHECK_EQ(assess(&f, CLI_WORK_REBUILD, 5000).state, CLI_WORK_DONE);
    /* b is still down: the rebalance cannot resume until it is back or gone */
    CHECK_EQ(assess(&f, CLI_WORK_REBALANCE, 5000).state, CLI_WORK_STUCK);
}

static void test_stuck(void)
{
    struct fixture f;
    fixture_init(&f);
    sds_b_down(&f);
    /* nowhere to rebuild to */
    f.pg[0].n_rebuilding = f.pg[1].n_rebuilding = 0;
    struct cli_work_view v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_STUCK);
    CHECK_STR(v.why, "cannot rebuild: 2 degraded PGs have nowhere to rebuild to (too few fault "
                     "sets with an SDS up)");
}

static void test_stuck_no_copy(void)
{
    struct fixture f;
    fixture_init(&f);
    sds_b_down(&f);
    /* c down as well: PG 1 {13} has no live copy; PG 0 {11} and PG 2
     * {13,11} keep one on a */
    f.sds[2].state = CAIRN__SDS_STATE__SDS_DOWN;
    f.st[2].connected = 0;
    f.pg[0].n_rebuilding = f.pg[1].n_rebuilding = 0;
    struct cli_work_view v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_STUCK);
    CHECK_EQ(v.pgs_no_copy, 1);
    CHECK_STR(v.why, "cannot rebuild: 1 PG has no live copy");
}

static void test_maintenance(void)
{
    struct fixture f;
    fixture_init(&f);
    /* b in maintenance: its copies step aside (departed), nothing rebuilds */
    f.sds[1].state = CAIRN__SDS_STATE__SDS_MAINTENANCE;
    f.members[0][1] = 0;
    f.pg[0].n_devices = 1;
    f.departed[0][0] = 12;
    f.pg[0].n_departed = 1;
    f.members[1][0] = 13;
    f.pg[1].n_devices = 1;
    f.departed[1][0] = 12;
    f.pg[1].n_departed = 1;
    struct cli_work_view v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_STUCK);
    CHECK_HAS(v.why, "wait for SDS 'b' to leave maintenance");
    CHECK_HAS(v.why, "cannot rebuild: 2 PGs wait for");
}

/* A move: PG 0 moves its copy on 12 to 13. */
static void test_rebalance(void)
{
    struct fixture f;
    fixture_init(&f);
    f.rebuilding[0][0] = 13;
    f.pg[0].n_rebuilding = 1;
    f.leaving[0][0] = 12;
    f.pg[0].n_leaving = 1;
    f.rb[0].pgs_left = 1;
    f.rb[0].bytes_left = 2 << 20;
    f.rb[0].bytes_done = 7 << 20;
    /* nothing to rebuild: the SDSs do not split the bytes, but the map has
     * only moves */
    struct cli_work_view v = assess(&f, CLI_WORK_REBUILD, 5000);
    CHECK_EQ(v.state, CLI_WORK_DONE);
    CHECK_EQ(v.bytes_left, 0);
    v = assess(&f, CLI_WORK_REBALANCE, 5000);
    CHECK_EQ(v.state, CLI_WORK_RUNNING);
    CHECK_EQ(v.pgs_moving, 1);
    CHECK_EQ(v.copies_left, 1);
    CHECK_EQ(v.bytes_left, 2 << 20);
    /* SDSs that split them */
    f.rb[0].rebalance_pgs_left = 1;
    f.rb[0].rebalance_bytes_left = 2 << 20;
    f.rb[0].rebalance_bytes_done = 1 << 20;
    v = assess(&f, CLI_WORK_REBALANCE, 5000);
    CHECK_EQ(v.bytes_left, 2 << 20);
    CHECK_EQ(v.bytes_done, 1 << 20);
    /* the move done in the map, the heartbeat behind: not yet */
    f.members[0][1] = 13;
    f.pg[0].n_rebuilding = f.pg[0].n_leaving = 0;
    CHECK_EQ(assess(&f, CLI_WORK_REBALANCE, 5000).state, CLI_WORK_RUNNING);
    memset(&f.rb[0], 0, sizeof(f.rb[0]));
    cairn__rebuild_status__init(&f.rb[0]);
    CHECK_EQ(assess(&f, CLI_WORK_REBALANCE, 5000).state, CLI_WORK_DONE);
    /* a PG still rebuilding holds the rebalance back (it replans after) */
    f.pg[1].n_devices = 1;
    f.rebuilding[1][0] = 11;
    f.pg[1].n_rebuilding = 1;
    v = assess(&f, CLI_WORK_REBALANCE, 5000);
    CHECK_EQ(v.state, CLI_WORK_RUNNING);
    CHECK_HAS(v.why, "the rebuild first");
}

static void test_progress(void)
{
    struct cli_progress p = {0};
    struct cli_work_view v = {.work = CLI_WORK_REBUILD, .state = CLI_WORK_RUNNING};
    v.bytes_done = 1000; /* since the SDS started: not ours */
    CHECK_EQ(cli_progress_update(&p, &v), 0);
    v.bytes_done = 1500;
    CHECK_EQ(cli_progress_update(&p, &v), 500);
    v.bytes_done = 200; /* an SDS restarted: nothing undone */
    CHECK_EQ(cli_progress_update(&p, &v), 500);
    v.bytes_done = 700;
    CHECK_EQ(cli_progress_update(&p, &v), 1000);
    v.bytes_left = 1000;
    CHECK_EQ(cli_progress_percent(&v, 1000), 50);
    CHECK_EQ(cli_progress_percent(&v, 0), 0);
    v.bytes_left = 0;
    CHECK_EQ(cli_progress_percent(&v, 1000), 99); /* 100 is for done */
    v.state = CLI_WORK_DONE;
    CHECK_EQ(cli_progress_percent(&v, 0), 100);
}

static void test_format(void)
{
    char b[512];
    CHECK_STR(cli_fmt_duration(b, sizeof(b), 0), "0 s");
    CHECK_STR(cli_fmt_duration(b, sizeof(b), 59), "59 s");
    CHECK_STR(cli_fmt_duration(b, sizeof(b), 200), "3 min 20 s");
    CHECK_STR(cli_fmt_duration(b, sizeof(b), 7500), "2 h 5 min");

    struct cli_work_view v = {.work = CLI_WORK_REBUILD, .state = CLI_WORK_RUNNING};
    CHECK_STR(cli_progress_line(b, sizeof(b), &v), "rebuild: no copy being filled");
    v.copies_left = 12;
    v.bytes_left = 340ull << 20;
    v.rate = 85ull << 20;
    CHECK_STR(cli_progress_line(b, sizeof(b), &v),
              "rebuild: 12 PG copies, 340.0 MiB left, 85.0 MiB/s, ETA 4 s");
    v.rate = 0;
    CHECK_STR(cli_progress_line(b, sizeof(b), &v),
              "rebuild: 12 PG copies, 340.0 MiB left, 0 B/s, ETA unknown");
    v.rate = 85ull << 20;
    v.work = CLI_WORK_REBALANCE;
    snprintf(v.why, sizeof(v.why), "the rebuild first (1 PG degraded or rebuilding)");
    CHECK_STR(cli_progress_line(b, sizeof(b), &v),
              "rebalance: 12 PG copies, 340.0 MiB left, 85.0 MiB/s, ETA 4 s; the rebuild first "
              "(1 PG degraded or rebuilding)");
    v.why[0] = 0;
    v.work = CLI_WORK_REBUILD;

    /* the bar: within the width, at every width */
    for (int w = 1; w < 200; w++) {
        cli_progress_bar(b, sizeof(b), w, &v, 340ull << 20);
        CHECK((int)strlen(b) <= (w > 1 ? w - 1 : (int)strlen(b)));
    }
    CHECK_STR(cli_progress_bar(b, sizeof(b), 100, &v, 340ull << 20),
              "rebuild [================>                ]  50%  12 PG copies  340.0 MiB left"
              "  85.0 MiB/s  ETA 4 s");
    /* narrow: the bar goes first */
    CHECK_STR(cli_progress_bar(b, sizeof(b), 70, &v, 340ull << 20),
              "rebuild  50%  12 PG copies  340.0 MiB left  85.0 MiB/s  ETA 4 s");
    /* a reason takes the bar's room */
    snprintf(v.why, sizeof(v.why), "waiting for SDS 'x'");
    cli_progress_bar(b, sizeof(b), 100, &v, 340ull << 20);
    CHECK_HAS(b, "ETA 4 s  waiting for SDS 'x'");
    CHECK((int)strlen(b) <= 99);

    v.state = CLI_WORK_PENDING;
    snprintf(v.why, sizeof(v.why), "say \"hi\"\\");
    CHECK_STR(cli_progress_json(b, sizeof(b), &v, 1 << 20, 2.5),
              "{\"work\":\"rebuild\",\"state\":\"pending\",\"done\":false,\"elapsed\":2.5,"
              "\"percent\":0,\"pg_copies_left\":12,\"bytes_left\":356515840,\"bytes_copied\":"
              "1048576,\"rate\":89128960,\"eta_seconds\":4,\"pgs_degraded\":0,\"pgs_no_copy\":0,"
              "\"pgs_rebuilding\":0,\"pgs_moving\":0,\"why\":\"say \\\"hi\\\"\\\\\"}");
    v.state = CLI_WORK_DONE;
    v.bytes_left = 0;
    v.copies_left = 0;
    v.why[0] = 0;
    CHECK_HAS(cli_progress_json(b, sizeof(b), &v, 0, 1), "\"done\":true,");
    CHECK_HAS(b, "\"percent\":100,");
    CHECK_HAS(b, "\"eta_seconds\":0,");
}

int main(void)
{
    test_healthy();
    test_death_not_yet_seen();
    test_rebuild();
    test_stuck();
    test_stuck_no_copy();
    test_maintenance();
    test_rebalance();
    test_progress();
    test_format();
    printf("ok\n");
    return 0;
}
