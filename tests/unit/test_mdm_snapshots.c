/* Snapshots in the state machine (mgmt/state_snapshots.c) and the chains
 * of layers the SDSs compute from the map (proto/cmap.c): a snapshot
 * applies only at the map version its pause was taken at; it turns the
 * volume's head into its layer and gives the volume a new empty head over
 * it; removing one merges its layer into the one above (reads of that
 * layer go on through it until the merge record goes), or drops it when
 * nothing reads through it; revert; a removed volume's layers are purged. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cmap.h"
#include "mdm_state.h"
#include "state_internal.h"

static char err[512];

static int apply(struct mdm_state *s, Cairn__MgmtRequest *r)
{
    return mdm_state_apply(s, r, err, sizeof(err));
}

static void build(struct mdm_state *s)
{
    CHECK_EQ(mdm_state_init(s, "cluster-snap"), 0);
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_POOL_CREATE;
    r.pool = "default";
    r.pg_count = 16;
    CHECK_EQ(apply(s, &r), 0);
    const char *names[] = {"a", "b", "c"};
    const char *addrs[] = {"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"};
    for (int i = 0; i < 3; i++) {
        Cairn__MgmtRequest a = CAIRN__MGMT_REQUEST__INIT;
        char *paths[] = {"/dev/x"};
        uint64_t caps[] = {4ULL << 30};
        a.op = CAIRN__MGMT_OP__OP_SDS_ADD;
        a.name = (char *)names[i];
        a.addr = (char *)addrs[i];
        a.paths = paths;
        a.n_paths = 1;
        a.capacities = caps;
        a.n_capacities = 1;
        CHECK_EQ(apply(s, &a), 0);
    }
    for (int i = 0; i < 2; i++) {
        Cairn__MgmtRequest v = CAIRN__MGMT_REQUEST__INIT;
        v.op = CAIRN__MGMT_OP__OP_VOLUME_CREATE;
        v.volume = i ? "w" : "v";
        v.size = 64 << 20;
        CHECK_EQ(apply(s, &v), 0);
    }
}

static int snap(struct mdm_state *s, const char *name, char **vols, size_t n, const char *group,
                uint64_t base)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_SNAPSHOT_CREATE;
    r.name = (char *)name;
    r.volumes = vols;
    r.n_volumes = n;
    r.group = (char *)(group ? group : "");
    r.base_version = base;
    r.time_ms = 1234;
    return apply(s, &r);
}

static int snap1(struct mdm_state *s, const char *vol, const char *name)
{
    char *vols[] = {(char *)vol};
    return snap(s, name, vols, 1, NULL, s->m->version);
}

static int op_on(struct mdm_state *s, int op, const char *volume, const char *name)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = op;
    r.volume = (char *)volume;
    r.name = (char *)(name ? name : "");
    return apply(s, &r);
}

static size_t chain(struct mdm_state *s, const Cairn__Volume *v, uint64_t layer, uint64_t *out)
{
    return cmap_chain(s->m, v, layer, out, CMAP_CHAIN_MAX);
}

static void test_create_at_its_version_only(void)
{
    struct mdm_state s;
    build(&s);
    char *vols[] = {"v"};
    uint64_t v0 = s.m->version;
    CHECK_EQ(snap(&s, "s1", vols, 1, NULL, v0 - 1), -EAGAIN);
    CHECK(strstr(err, "changed during the snapshot") != NULL);
    CHECK_EQ(s.m->version, v0); /* refused: nothing changed, not even the version */
    CHECK_EQ(s.m->n_snapshots, 0);
    Cairn__Volume *v = mdm_volume_by_name(&s, "v");
    uint64_t old_head = cmap_head(v);
    CHECK_EQ(old_head, v->id); /* never snapshotted: its head is its id */
    CHECK_EQ(snap(&s, "s1", vols, 1, NULL, v0), 0);
    CHECK_EQ(s.m->n_snapshots, 1);
    Cairn__Snapshot *sn = s.m->snapshots[0];
    CHECK_EQ(sn->layer, old_head); /* no data moves */
    CHECK_EQ(sn->parent, 0);
    CHECK_EQ(sn->size, v->size);
    CHECK_EQ(sn->created_ms, 1234);
    CHECK(cmap_head(v) != old_head);
    CHECK_EQ(v->head_parent, old_head);
    CHECK(sn->id != v->id && sn->id != cmap_head(v));
    /* requests name the snapshot by its id; its layer is read-only */
    struct cmap_obj o;
    CHECK_EQ(cmap_resolve(s.m, sn->id, &o), 0);
    CHECK(o.vol == v && o.snap == sn && o.layer == sn->layer);
    CHECK_EQ(cmap_resolve(s.m, v->id, &o), 0);
    CHECK(o.snap == NULL && o.layer == cmap_head(v));
    int ro = 0;
    CHECK(cmap_layer_volume(s.m, sn->layer, &ro) == v && ro == 1);
    CHECK(cmap_layer_volume(s.m, cmap_head(v), &ro) == v && ro == 0);
    uint64_t c[CMAP_CHAIN_MAX];
    CHECK_EQ(chain(&s, v, cmap_head(v), c), 2);
    CHECK(c[0] == cmap_head(v) && c[1] == sn->layer);
    CHECK_EQ(chain(&s, v, sn->layer, c), 1);
    /* names: taken, invalid, "ro" (the export suffix), unknown volume */
    CHECK_EQ(snap1(&s, "v", "s1"), -EEXIST);
    CHECK_EQ(snap1(&s, "v", "ro"), -EINVAL);
    CHECK_EQ(snap1(&s, "v", "a/b"), -EINVAL);
    CHECK_EQ(snap1(&s, "nope", "s2"), -ENOENT);
    mdm_state_free(&s);
}

static void test_group_and_limits(void)
{
    struct mdm_state s;
    build(&s);
    char *both[] = {"v", "w"};
    CHECK_EQ(snap(&s, "g", both, 2, "g", s.m->version), 0);
    CHECK_EQ(s.m->n_snapshots, 2);
    CHECK(!strcmp(s.m->snapshots[0]->group, "g") && !strcmp(s.m->snapshots[1]->group, "g"));
    char *twice[] = {"v", "v"};
    CHECK_EQ(snap(&s, "h", twice, 2, "h", s.m->version), -EINVAL);
    /* a refused group changes no volume */
    char *bad[] = {"w", "nope"};
    uint64_t head_w = cmap_head(mdm_volume_by_name(&s, "w"));
    CHECK_EQ(snap(&s, "h", bad, 2, "h", s.m->version), -ENOENT);
    CHECK_EQ(cmap_head(mdm_volume_by_name(&s, "w")), head_w);
    for (int i = 1; i < CMAP_SNAPSHOTS_MAX; i++) {
        char n[16];
        snprintf(n, sizeof(n), "n%d", i);
        CHECK_EQ(snap1(&s, "v", n), 0);
    }
    CHECK_EQ(snap1(&s, "v", "onemore"), -ENOSPC);
    Cairn__Volume *v = mdm_volume_by_name(&s, "v");
    uint64_t c[CMAP_CHAIN_MAX];
    CHECK_EQ(chain(&s, v, cmap_head(v), c), CMAP_SNAPSHOTS_MAX + 1);
    mdm_state_free(&s);
}

static void test_remove_merges_into_the_layer_above(void)
{
    struct mdm_state s;
    build(&s);
    CHECK_EQ(snap1(&s, "v", "s1"), 0);
    CHECK_EQ(snap1(&s, "v", "s2"), 0);
    Cairn__Volume *v = mdm_volume_by_name(&s, "v");
    uint64_t l1 = cmap_snapshot_by_name(s.m, v->id, "s1")->layer;
    uint64_t l2 = cmap_snapshot_by_name(s.m, v->id, "s2")->layer;
    uint64_t head = cmap_head(v);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@nope", NULL), -ENOENT);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v", NULL), -ENOENT);
    /* s1 goes: its layer merges into s2's, which reads through it */
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@s1", NULL), 0);
    CHECK_EQ(s.m->n_snapshots, 1);
    CHECK_EQ(s.m->n_merges, 1);
    CHECK(s.m->merges[0]->from == l1 && s.m->merges[0]->into == l2);
    CHECK_EQ(s.m->merges[0]->version, s.m->version);
    uint64_t c[CMAP_CHAIN_MAX];
    CHECK_EQ(chain(&s, v, head, c), 3);
    CHECK(c[0] == head && c[1] == l2 && c[2] == l1);
    CHECK(cmap_layer_volume(s.m, l1, NULL) == v); /* kept until merged everywhere */
    /* s2 goes too: head, then s2's layer, then s1's (merged into s2's) */
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@s2", NULL), 0);
    CHECK_EQ(chain(&s, v, head, c), 3);
    CHECK(c[0] == head && c[1] == l2 && c[2] == l1);
    CHECK_EQ(v->head_parent, 0);
    /* the leader's LAYER_MERGED: not while a merge still goes into it */
    Cairn__MgmtRequest m = CAIRN__MGMT_REQUEST__INIT;
    m.op = CAIRN__MGMT_OP__OP_LAYER_MERGED;
    m.base_version = l2;
    CHECK_EQ(apply(&s, &m), -EBUSY);
    m.base_version = l1;
    CHECK_EQ(apply(&s, &m), 0);
    m.base_version = l2;
    CHECK_EQ(apply(&s, &m), 0);
    CHECK_EQ(s.m->n_merges, 0);
    CHECK_EQ(chain(&s, v, head, c), 1);
    CHECK(cmap_layer_volume(s.m, l1, NULL) == NULL); /* SDSs free what is left of it */
    CHECK_EQ(apply(&s, &m), -ENOENT);
    mdm_state_free(&s);
}

static void test_revert_and_volume_remove(void)
{
    struct mdm_state s;
    build(&s);
    CHECK_EQ(snap1(&s, "v", "s1"), 0);
    CHECK_EQ(snap1(&s, "v", "s2"), 0);
    Cairn__Volume *v = mdm_volume_by_name(&s, "v");
    uint64_t l1 = cmap_snapshot_by_name(s.m, v->id, "s1")->layer;
    uint64_t old = cmap_head(v);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_REVERT, "v", "nope"), -ENOENT);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_REVERT, "v", "s1"), 0);
    v = mdm_volume_by_name(&s, "v");
    CHECK(cmap_head(v) != old);
    CHECK_EQ(v->head_parent, l1);
    /* the old head's slots go */
    CHECK_EQ(s.m->removed_volumes[s.m->n_removed_volumes - 1], old);
    /* s1 now has two children (s2 and the new head): not removable */
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@s1", NULL), -EBUSY);
    /* s2 has none left: dropped, not merged */
    uint64_t l2 = cmap_snapshot_by_name(s.m, v->id, "s2")->layer;
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@s2", NULL), 0);
    CHECK_EQ(s.m->n_merges, 0);
    CHECK_EQ(s.m->removed_volumes[s.m->n_removed_volumes - 1], l2);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@s1", NULL), 0);
    CHECK_EQ(s.m->n_merges, 1);
    /* removing the volume purges every layer: head, snapshots, merges */
    CHECK_EQ(snap1(&s, "v", "s3"), 0);
    uint64_t l3 = cmap_snapshot_by_name(s.m, v->id, "s3")->layer;
    uint64_t head = cmap_head(mdm_volume_by_name(&s, "v"));
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_REMOVE, "v", NULL), 0);
    CHECK_EQ(s.m->n_snapshots, 0);
    CHECK_EQ(s.m->n_merges, 0);
    int seen = 0;
    for (size_t i = 0; i < s.m->n_removed_volumes; i++)
        seen |= (s.m->removed_volumes[i] == head) | (s.m->removed_volumes[i] == l3) << 1 |
                (s.m->removed_volumes[i] == l1) << 2;
    CHECK_EQ(seen, 7);
    mdm_state_free(&s);
}

static void test_clone_and_flatten(void)
{
    struct mdm_state s;
    build(&s);
    CHECK_EQ(snap1(&s, "v", "s1"), 0);
    Cairn__Volume *v = mdm_volume_by_name(&s, "v");
    uint64_t vid = v->id, l1 = cmap_snapshot_by_name(s.m, v->id, "s1")->layer;
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_CLONE, "v", "c"), -ENOENT); /* not VOL@SNAP */
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_CLONE, "v@s1", "w"), -EEXIST);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_CLONE, "v@s1", "c"), 0);
    Cairn__Volume *c = mdm_volume_by_name(&s, "c");
    v = mdm_volume_by_name(&s, "v");
    CHECK(c && c->id != vid);
    CHECK_EQ(cmap_placement(c), cmap_placement(v)); /* on the same copies as its source */
    CHECK_EQ(c->head_parent, l1);
    CHECK_EQ(c->size, v->size);
    uint64_t ch[CMAP_CHAIN_MAX];
    CHECK_EQ(chain(&s, c, cmap_head(c), ch), 2);
    CHECK(ch[0] == c->id && ch[1] == l1);
    int ro;
    CHECK(cmap_layer_volume(s.m, c->id, &ro) == c && ro == 0);
    /* the snapshot, and its volume, stay while the clone shares them */
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@s1", NULL), -EBUSY);
    CHECK(strstr(err, "flatten") != NULL);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_REMOVE, "v", NULL), -EBUSY);
    /* flatten: only a clone; done only at its own version */
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_FLATTEN, "v", NULL), -EINVAL);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_FLATTEN, "c", NULL), 0);
    c = mdm_volume_by_name(&s, "c");
    CHECK(c->flattening && c->flatten_version == s.m->version);
    /* no new layer over it while it flattens */
    CHECK_EQ(snap1(&s, "c", "cs"), -EBUSY);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_REVERT, "c", "cs"), -ENOENT);
    Cairn__MgmtRequest f = CAIRN__MGMT_REQUEST__INIT;
    f.op = CAIRN__MGMT_OP__OP_VOLUME_FLATTENED;
    f.volume = "c";
    f.base_version = c->flatten_version - 1;
    CHECK_EQ(apply(&s, &f), -EINVAL);
    f.base_version = c->flatten_version;
    CHECK_EQ(apply(&s, &f), 0);
    c = mdm_volume_by_name(&s, "c");
    CHECK(!c->flattening && c->head_parent == 0);
    CHECK_EQ(chain(&s, c, cmap_head(c), ch), 1);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_SNAPSHOT_REMOVE, "v@s1", NULL), 0);
    CHECK_EQ(op_on(&s, CAIRN__MGMT_OP__OP_VOLUME_REMOVE, "v", NULL), 0);
    mdm_state_free(&s);
}

int main(void)
{
    test_clone_and_flatten();
    test_create_at_its_version_only();
    test_group_and_limits();
    test_remove_merges_into_the_layer_above();
    test_revert_and_volume_remove();
    printf("mdm snapshots: ok\n");
    return 0;
}
