/* The state machine's table of operations: every operation the MDM can
 * propose has an entry; anything else is refused with a clear message and
 * leaves the state alone; a refused operation never changes the state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mdm_state.h"
#include "state_internal.h"

static char err[512];

/* The MDM proposes every MgmtOp a peer sends except OP_STATUS (which it
 * answers itself) and the MDM cluster's membership changes (Raft's own
 * configuration changes, mdm_members.c); OP_NONE is what a request that
 * names no operation carries. Every other value of the enum must be in the
 * table, under its own name. */
static int proposable(int op)
{
    switch (op) {
    case CAIRN__MGMT_OP__OP_NONE:
    case CAIRN__MGMT_OP__OP_STATUS:
    case CAIRN__MGMT_OP__OP_MDM_ADD:
    case CAIRN__MGMT_OP__OP_MDM_REMOVE:
    case CAIRN__MGMT_OP__OP_MDM_TRANSFER: return 0;
    default: return 1;
    }
}

static void test_every_proposable_op_has_an_entry(void)
{
    const ProtobufCEnumDescriptor *d = &cairn__mgmt_op__descriptor;
    CHECK(d->n_values > 20);
    for (unsigned i = 0; i < d->n_values; i++) {
        const ProtobufCEnumValue *v = &d->values[i];
        const struct state_op *op = state_op_find(v->value);
        if (!proposable(v->value)) {
            CHECK(op == NULL);
            CHECK(mdm_state_op_name(v->value) == NULL);
            continue;
        }
        if (!op || !op->apply) {
            fprintf(stderr, "%s (%d) has no entry in the table of operations\n", v->name, v->value);
            exit(1);
        }
        /* the name for logs is the enum's name without "OP_" */
        CHECK(!strncmp(v->name, "OP_", 3));
        if (strcmp(op->name, v->name + 3)) {
            fprintf(stderr, "%s is named '%s' in the table\n", v->name, op->name);
            exit(1);
        }
        CHECK(mdm_state_op_name(v->value) == op->name);
    }
}

/* What the table promises the engine; a change here is a change of the
 * state machine's behaviour (and of the Raft log's meaning). */
static void test_flags(void)
{
    static const int undo[] = {CAIRN__MGMT_OP__OP_POOL_CREATE, CAIRN__MGMT_OP__OP_SDS_ADD,
                               CAIRN__MGMT_OP__OP_DEVICE_ADD};
    static const int rebalance[] = {
        CAIRN__MGMT_OP__OP_SDS_ADD,          CAIRN__MGMT_OP__OP_DEVICE_ADD,
        CAIRN__MGMT_OP__OP_SDS_REMOVE,       CAIRN__MGMT_OP__OP_DEVICE_REMOVE,
        CAIRN__MGMT_OP__OP_SDS_UP,           CAIRN__MGMT_OP__OP_SDS_DOWN,
        CAIRN__MGMT_OP__OP_MAINTENANCE_EXIT, CAIRN__MGMT_OP__OP_GRACE_EXPIRED,
        CAIRN__MGMT_OP__OP_PG_REBUILT,       CAIRN__MGMT_OP__OP_DEVICE_FAIL,
        CAIRN__MGMT_OP__OP_VOLUME_CREATE};
    for (int op = 0; op < 64; op++) {
        const struct state_op *o = state_op_find(op);
        if (!o)
            continue;
        int want_undo = 0, want_rebalance = 0;
        for (size_t i = 0; i < sizeof(undo) / sizeof(undo[0]); i++)
            want_undo |= undo[i] == op;
        for (size_t i = 0; i < sizeof(rebalance) / sizeof(rebalance[0]); i++)
            want_rebalance |= rebalance[i] == op;
        if (o->undo != want_undo || o->rebalance != want_rebalance) {
            fprintf(stderr, "%s: undo %d rebalance %d, expected %d %d\n", o->name, o->undo,
                    o->rebalance, want_undo, want_rebalance);
            exit(1);
        }
    }
}

static int sds_add(struct mdm_state *s, const char *name, const char *addr, uint64_t cap)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    char *paths[] = {"/dev/x"};
    uint64_t caps[] = {cap};
    r.op = CAIRN__MGMT_OP__OP_SDS_ADD;
    r.name = (char *)name;
    r.addr = (char *)addr;
    r.paths = paths;
    r.n_paths = 1;
    r.capacities = caps;
    r.n_capacities = 1;
    return mdm_state_apply(s, &r, err, sizeof(err));
}

/* A small cluster with a volume, so that every operation has something to
 * work on. */
static void build(struct mdm_state *s)
{
    CHECK_EQ(mdm_state_init(s, "cluster-ops"), 0);
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_POOL_CREATE;
    r.pool = "default";
    r.pg_count = 64;
    CHECK_EQ(mdm_state_apply(s, &r, err, sizeof(err)), 0);
    CHECK_EQ(sds_add(s, "a", "10.0.0.1:7000", 4ULL << 30), 0);
    CHECK_EQ(sds_add(s, "b", "10.0.0.2:7000", 4ULL << 30), 0);
    CHECK_EQ(sds_add(s, "c", "10.0.0.3:7000", 4ULL << 30), 0);
    Cairn__MgmtRequest v = CAIRN__MGMT_REQUEST__INIT;
    v.op = CAIRN__MGMT_OP__OP_VOLUME_CREATE;
    v.volume = "v";
    v.size = 1ULL << 30;
    CHECK_EQ(mdm_state_apply(s, &v, err, sizeof(err)), 0);
}

static void packed(const struct mdm_state *s, uint8_t **buf, size_t *len)
{
    CHECK_EQ(mdm_state_pack(s, buf, len), 0);
}

static void test_unknown_ops_are_refused(void)
{
    struct mdm_state s;
    build(&s);
    uint8_t *before, *after;
    size_t blen, alen;
    packed(&s, &before, &blen);
    static const int bad[] = {CAIRN__MGMT_OP__OP_NONE,
                              CAIRN__MGMT_OP__OP_STATUS,
                              -1,
                              CAIRN__MGMT_OP__OP_MDM_ADD,
                              CAIRN__MGMT_OP__OP_MDM_REMOVE,
                              CAIRN__MGMT_OP__OP_MDM_TRANSFER,
                              CAIRN__MGMT_OP__OP_VOLUME_FLATTENED + 1,
                              64,
                              1000000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
        r.op = bad[i];
        r.name = "a";
        CHECK(state_op_find(bad[i]) == NULL);
        CHECK(mdm_state_op_name(bad[i]) == NULL);
        CHECK_EQ(mdm_state_apply(&s, &r, err, sizeof(err)), -EINVAL);
        char want[64];
        snprintf(want, sizeof(want), "unknown operation %d", bad[i]);
        if (strcmp(err, want)) {
            fprintf(stderr, "op %d refused with '%s', expected '%s'\n", bad[i], err, want);
            exit(1);
        }
    }
    packed(&s, &after, &alen);
    /* not even the map version moved */
    CHECK(blen == alen && memcmp(before, after, blen) == 0);
    free(before);
    free(after);
    mdm_state_free(&s);
}

/* The engine's contract: on error the state is unchanged. Requests that
 * name nothing (or nothing that exists) are refused by every operation that
 * needs a name, and a device too small is refused only after an SDS_ADD
 * appended its SDS; whatever an operation refuses, the packed state must be
 * the same afterwards, with or without an undo copy. */
static void test_refusals_leave_the_state_unchanged(void)
{
    struct mdm_state s;
    build(&s);
    int refused = 0;
    for (int op = 0; op < 64; op++) {
        if (!state_op_find(op))
            continue;
        for (int variant = 0; variant < 3; variant++) {
            Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
            char *paths[] = {"/dev/nosuch"};
            uint64_t tiny[] = {1 << 20};
            r.op = op;
            if (variant == 2) {
                /* a new SDS (or a device of a) that is refused only once
                 * it was half added: its device is too small */
                r.name = op == CAIRN__MGMT_OP__OP_SDS_ADD ? "d" : "a";
                r.addr = "10.0.0.4:7000";
                r.paths = paths;
                r.n_paths = 1;
                r.capacities = tiny;
                r.n_capacities = 1;
            } else if (variant) {
                r.name = "nosuch";
                r.volume = "nosuch";
                r.pool = "nosuch";
                r.fault_set = "nosuch";
                r.sdc = "nosuch";
                r.paths = paths;
                r.n_paths = 1;
                r.pool_id = 999;
                r.device_id = 999;
            }
            uint8_t *before, *after;
            size_t blen, alen;
            packed(&s, &before, &blen);
            int rc = mdm_state_apply(&s, &r, err, sizeof(err));
            packed(&s, &after, &alen);
            if (rc < 0) {
                refused++;
                CHECK(err[0]);
                if (blen != alen || memcmp(before, after, blen)) {
                    fprintf(stderr, "%s refused ('%s') but changed the state\n",
                            mdm_state_op_name(op), err);
                    exit(1);
                }
            }
            free(before);
            free(after);
        }
    }
    CHECK(refused >= 20);
    mdm_state_free(&s);
}

/* The cluster id is agreed once: a joining MDM starts with none, the first
 * OP_CLUSTER_ID sets it on every MDM, and a later one (a second leader's)
 * changes nothing. */
static void test_cluster_id_is_agreed_once(void)
{
    struct mdm_state s;
    CHECK_EQ(mdm_state_init(&s, ""), 0);
    CHECK(!s.m->cluster_id_agreed);
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_CLUSTER_ID;
    r.name = "";
    CHECK_EQ(mdm_state_apply(&s, &r, err, sizeof(err)), -EINVAL);
    CHECK(!s.m->cluster_id_agreed);
    r.name = "first";
    CHECK_EQ(mdm_state_apply(&s, &r, err, sizeof(err)), 0);
    CHECK(s.m->cluster_id_agreed && !strcmp(s.m->cluster_id, "first"));
    r.name = "second";
    CHECK_EQ(mdm_state_apply(&s, &r, err, sizeof(err)), 0);
    CHECK(!strcmp(s.m->cluster_id, "first"));
    mdm_state_free(&s);
}

int main(void)
{
    test_cluster_id_is_agreed_once();
    test_every_proposable_op_has_an_entry();
    test_flags();
    test_unknown_ops_are_refused();
    test_refusals_leave_the_state_unchanged();
    printf("mdm ops ok\n");
    return 0;
}
