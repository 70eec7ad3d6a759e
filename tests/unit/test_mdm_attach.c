/* The state machine's part of safe multi-host attach (docs/attach.md):
 * access modes, the writer and its fence (writer_gen), takeover. */
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

static int map(struct mdm_state *s, const char *sdc, int ro, const char *access, int takeover)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_MAP;
    r.volume = "v";
    r.sdc = (char *)sdc;
    r.read_only = ro;
    r.access = (char *)(access ? access : "");
    r.takeover = takeover;
    return apply(s, &r);
}

static int writer_set(struct mdm_state *s, const char *sdc)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_WRITER_SET;
    r.volume = "v";
    r.sdc = (char *)sdc;
    return apply(s, &r);
}

static int unmap(struct mdm_state *s, const char *sdc)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_UNMAP;
    r.volume = "v";
    r.sdc = (char *)sdc;
    return apply(s, &r);
}

static Cairn__Volume *vol(struct mdm_state *s)
{
    return mdm_volume_by_name(s, "v");
}

static void build(struct mdm_state *s)
{
    CHECK_EQ(mdm_state_init(s, "cluster-attach"), 0);
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_POOL_CREATE;
    r.pool = "default";
    r.pg_count = 16;
    CHECK_EQ(apply(s, &r), 0);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.0.%d:7000", i + 1);
        char *paths[] = {"/dev/x"};
        uint64_t caps[] = {4ULL << 30};
        Cairn__MgmtRequest d = CAIRN__MGMT_REQUEST__INIT;
        d.op = CAIRN__MGMT_OP__OP_SDS_ADD;
        d.name = (char *)names[i];
        d.addr = addr;
        d.fault_set = "";
        d.paths = paths;
        d.n_paths = 1;
        d.capacities = caps;
        d.n_capacities = 1;
        CHECK_EQ(apply(s, &d), 0);
    }
    Cairn__MgmtRequest v = CAIRN__MGMT_REQUEST__INIT;
    v.op = CAIRN__MGMT_OP__OP_VOLUME_CREATE;
    v.volume = "v";
    v.size = 1ULL << 30;
    CHECK_EQ(apply(s, &v), 0);
    Cairn__MgmtRequest cs = CAIRN__MGMT_REQUEST__INIT;
    cs.op = CAIRN__MGMT_OP__OP_CLUSTER_SET;
    cs.restricted_sdc = "off";
    CHECK_EQ(apply(s, &cs), 0);
    const char *sdcs[] = {"h1", "h2", "h3"};
    for (int i = 0; i < 3; i++) {
        Cairn__MgmtRequest g = CAIRN__MGMT_REQUEST__INIT;
        char guid[16];
        snprintf(guid, sizeof(guid), "g-%d", i);
        g.op = CAIRN__MGMT_OP__OP_SDC_REGISTER;
        g.guid = guid;
        g.name = (char *)sdcs[i];
        CHECK_EQ(apply(s, &g), 0);
    }
}

int main(void)
{
    struct mdm_state s;
    build(&s);
    uint32_t h1 = mdm_sdc_by_name(&s, "h1")->id, h2 = mdm_sdc_by_name(&s, "h2")->id;

    /* default: single-writer, no writer yet */
    CHECK_EQ(map(&s, "h1", 0, NULL, 0), 0);
    CHECK_EQ(s.m->mappings[0]->access, CAIRN__MAPPING_ACCESS__ACCESS_SINGLE_WRITER);
    CHECK_EQ(vol(&s)->writer_sdc, 0);
    CHECK_EQ(vol(&s)->writer_gen, 0);
    CHECK_EQ(map(&s, "h1", 0, "exclusive", 0), -EINVAL);
    CHECK(strstr(err, "single-writer or shared"));

    /* a claim: h1 writes under a new fence */
    CHECK_EQ(writer_set(&s, "h1"), 0);
    CHECK_EQ(vol(&s)->writer_sdc, h1);
    CHECK_EQ(vol(&s)->writer_gen, 1);
    /* not mapped, or read-only: no claim */
    CHECK_EQ(writer_set(&s, "h2"), -EACCES);
    CHECK_EQ(map(&s, "h2", 1, NULL, 0), 0);
    CHECK_EQ(writer_set(&s, "h2"), -EACCES);
    CHECK_EQ(map(&s, "h2", 1, NULL, 1), -EINVAL); /* a read-only takeover */
    CHECK(strstr(err, "read-only"));
    CHECK_EQ(vol(&s)->writer_gen, 1);

    /* one access mode per volume's read-write mappings */
    CHECK_EQ(map(&s, "h2", 0, "shared", 0), -EINVAL);
    CHECK(strstr(err, "mapped single-writer to SDC 'h1'"));
    CHECK_EQ(map(&s, "h3", 1, "shared", 0), 0); /* read-only: any */

    /* takeover: h2 is the writer under a newer fence */
    CHECK_EQ(map(&s, "h2", 0, NULL, 1), 0);
    CHECK_EQ(vol(&s)->writer_sdc, h2);
    CHECK_EQ(vol(&s)->writer_gen, 2);
    CHECK_EQ(map(&s, "h2", 0, "shared", 1), -EINVAL); /* shared: no takeover */

    /* it survives a snapshot */
    uint8_t *buf;
    size_t len;
    CHECK_EQ(mdm_state_pack(&s, &buf, &len), 0);
    struct mdm_state r;
    CHECK_EQ(mdm_state_init(&r, "x"), 0);
    CHECK_EQ(mdm_state_restore(&r, buf, len), 0);
    free(buf);
    CHECK_EQ(mdm_volume_by_name(&r, "v")->writer_gen, 2);
    CHECK_EQ(mdm_volume_by_name(&r, "v")->writer_sdc, h2);
    mdm_state_free(&r);

    /* the writer made read-only, or unmapped: no writer, a new fence */
    CHECK_EQ(map(&s, "h2", 1, NULL, 0), 0);
    CHECK_EQ(vol(&s)->writer_sdc, 0);
    CHECK_EQ(vol(&s)->writer_gen, 3);
    CHECK_EQ(writer_set(&s, "h1"), 0);
    CHECK_EQ(vol(&s)->writer_gen, 4);
    CHECK_EQ(unmap(&s, "h1"), 0);
    CHECK_EQ(vol(&s)->writer_sdc, 0);
    CHECK_EQ(vol(&s)->writer_gen, 5);
    CHECK_EQ(unmap(&s, "h2"), 0);
    CHECK_EQ(vol(&s)->writer_gen, 5); /* not the writer: nothing to fence */

    /* shared: once no single-writer mapping is left */
    CHECK_EQ(map(&s, "h1", 0, "shared", 0), 0);
    CHECK_EQ(map(&s, "h2", 0, "shared", 0), 0);
    CHECK_EQ(writer_set(&s, "h1"), -EACCES); /* no single writer to be */
    CHECK_EQ(vol(&s)->writer_gen, 5);
    mdm_state_free(&s);
    printf("mdm attach ok\n");
    return 0;
}
