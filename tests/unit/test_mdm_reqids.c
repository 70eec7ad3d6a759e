/* Request ids (mgmt/state_reqids.c): a change applied once per id, a repeat
 * answered with the first outcome (refusals included), ids of another op
 * refused, the table's bound, and the table in snapshots: round trip, the
 * format without it, a corrupt one refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mdm_state.h"
#include "util.h"

static char err[512];

static int once(struct mdm_state *s, int op, const char *fs, const char *vol, uint64_t id,
                bool *repeat)
{
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = op;
    r.fault_set = (char *)(fs ? fs : "");
    r.volume = (char *)(vol ? vol : "");
    r.pool = (char *)(op == CAIRN__MGMT_OP__OP_POOL_CREATE ? fs : "");
    r.size = 1 << 20;
    r.pg_count = 8;
    r.request_id = id;
    bool rep;
    return mdm_state_apply_once(s, &r, err, sizeof(err), repeat ? repeat : &rep);
}

static int fs_add(struct mdm_state *s, const char *name, uint64_t id, bool *repeat)
{
    return once(s, CAIRN__MGMT_OP__OP_FAULT_SET_ADD, name, NULL, id, repeat);
}

/* The snapshot of s, framed as Raft holds it. */
static uint8_t *snap(const struct mdm_state *s, size_t *len)
{
    uint8_t *b;
    CHECK_EQ(mdm_fsm_snapshot(s, &b, len), 0);
    CHECK_EQ(*len % 8, 0);
    return b;
}

static int same(const struct mdm_state *a, const struct mdm_state *b)
{
    size_t la, lb;
    uint8_t *x = snap(a, &la), *y = snap(b, &lb);
    int eq = la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return eq;
}

/* A framed log entry of req, as raft_fsm.c proposes it. */
static uint8_t *entry(const Cairn__MgmtRequest *req, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(&req->base);
    *len = 8 + ((n + 7) & ~(size_t)7);
    uint8_t *b = calloc(1, *len);
    put_be64(b, n);
    protobuf_c_message_pack(&req->base, b + 8);
    return b;
}

int main(void)
{
    struct mdm_state s;
    bool rep;
    CHECK_EQ(mdm_state_init(&s, "c"), 0);

    /* applied once; the repeat is answered with the outcome, the map
     * unchanged (not even its version) */
    CHECK_EQ(fs_add(&s, "rack1", 11, &rep), 0);
    CHECK(!rep);
    uint64_t v = s.m->version;
    CHECK_EQ(fs_add(&s, "rack1", 11, &rep), 0);
    CHECK(rep);
    CHECK_EQ(s.m->version, v);
    CHECK_EQ(s.m->n_fault_sets, 1);
    /* a new id is a new change: refused as it would be */
    CHECK_EQ(fs_add(&s, "rack1", 12, &rep), -EEXIST);
    CHECK(!rep && strstr(err, "already exists"));
    /* without an id, as before: applied as it comes */
    CHECK_EQ(fs_add(&s, "rack2", 0, &rep), 0);
    CHECK_EQ(fs_add(&s, "rack2", 0, &rep), -EEXIST);
    CHECK(!rep);
    CHECK(!mdm_reqids_find(&s, 0));

    /* a refusal is an outcome too: a repeat after the state changed (the
     * pool now exists) is still refused, with the first message */
    CHECK(once(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, NULL, "v", 13, &rep) < 0);
    char first[512];
    snprintf(first, sizeof(first), "%s", err);
    CHECK(strstr(first, "no storage pool named 'default'"));
    CHECK_EQ(once(&s, CAIRN__MGMT_OP__OP_POOL_CREATE, "default", NULL, 14, NULL), 0);
    int st = once(&s, CAIRN__MGMT_OP__OP_VOLUME_CREATE, NULL, "v", 13, &rep);
    CHECK(st < 0 && rep && !strcmp(err, first));
    CHECK_EQ(mdm_reqids_find(&s, 13)->status, st);

    /* an id that was another op's is refused, and changes nothing */
    v = s.m->version;
    CHECK_EQ(once(&s, CAIRN__MGMT_OP__OP_FAULT_SET_REMOVE, "rack1", NULL, 11, &rep), -EINVAL);
    CHECK(strstr(err, "used before by another change (FAULT_SET_ADD)"));
    CHECK_EQ(s.m->n_fault_sets, 2);
    CHECK_EQ(s.m->version, v);

    /* the entry path (mdm_fsm_apply) says it was a repeat */
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_FAULT_SET_REMOVE;
    r.fault_set = "rack2";
    r.request_id = 15;
    size_t elen;
    uint8_t *e = entry(&r, &elen);
    struct mdm_fsm_entry fe;
    CHECK_EQ(mdm_fsm_apply(&s, e, elen, &fe, err, sizeof(err)), 0);
    CHECK(!fe.repeat && !fe.corrupt);
    CHECK_EQ(mdm_fsm_apply(&s, e, elen, &fe, err, sizeof(err)), 0);
    CHECK(fe.repeat);
    CHECK(!mdm_fault_set_by_name(&s, "rack2"));
    free(e);

    /* snapshot round trip: the restored state holds the same table and
     * answers a repeat alike */
    size_t len;
    uint8_t *b = snap(&s, &len);
    struct mdm_state u;
    CHECK_EQ(mdm_state_init(&u, "x"), 0);
    CHECK_EQ(mdm_fsm_restore(&u, b, len), 0);
    CHECK(same(&s, &u));
    CHECK_EQ(u.reqs.n, 5);
    CHECK_EQ(fs_add(&u, "rack1", 11, &rep), 0);
    CHECK(rep);
    st = once(&u, CAIRN__MGMT_OP__OP_VOLUME_CREATE, NULL, "v", 13, &rep);
    CHECK(st < 0 && rep && !strcmp(err, first));
    CHECK(same(&s, &u)); /* repeats change nothing */

    /* a table that does not decode refuses the snapshot and leaves the
     * state alone */
    size_t maplen = get_be64(b);
    size_t at = 8 + ((maplen + 7) & ~(size_t)7);
    CHECK(len > at + 8);
    uint8_t keep = b[at + 8];
    b[at + 8] = 0x0f; /* field 1 of wire type 7: there is none */
    CHECK_EQ(mdm_fsm_restore(&u, b, len), -EINVAL);
    CHECK(same(&s, &u));
    b[at + 8] = keep;
    put_be64(b + at, len); /* longer than what is left */
    CHECK_EQ(mdm_fsm_restore(&u, b, len), -EINVAL);
    CHECK(same(&s, &u));
    /* a snapshot from before request ids (the map's frame alone, or with
     * zero padding after it) restores, with no ids */
    CHECK_EQ(mdm_fsm_restore(&u, b, at), 0);
    CHECK_EQ(u.reqs.n, 0);
    CHECK_EQ(u.m->version, s.m->version);
    memset(b + at, 0, len - at);
    CHECK_EQ(mdm_fsm_restore(&u, b, len), 0);
    CHECK_EQ(u.reqs.n, 0);
    CHECK_EQ(fs_add(&u, "rack1", 11, &rep), -EEXIST); /* no record: applied as new */
    free(b);
    /* and a state without ids writes exactly that format */
    struct mdm_state w;
    CHECK_EQ(mdm_state_init(&w, "w"), 0);
    b = snap(&w, &len);
    CHECK_EQ(len, 8 + ((get_be64(b) + 7) & ~(size_t)7));
    free(b);
    mdm_state_free(&w);

    /* the bound: the oldest is forgotten after MDM_REQ_IDS newer ones, in
     * log order, so every replica forgets the same; a snapshot keeps the
     * order, so a restored one forgets the same next */
    mdm_state_free(&u);
    CHECK_EQ(mdm_state_init(&u, "x"), 0);
    for (uint64_t i = 0; i < MDM_REQ_IDS - 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "fs%llu", (unsigned long long)i);
        CHECK_EQ(fs_add(&s, name, 1000 + i, NULL), 0);
    }
    CHECK_EQ(s.reqs.n, MDM_REQ_IDS);
    CHECK(mdm_reqids_find(&s, 11));
    b = snap(&s, &len);
    CHECK_EQ(mdm_fsm_restore(&u, b, len), 0);
    free(b);
    CHECK_EQ(fs_add(&s, "last", 5000, NULL), 0);
    CHECK_EQ(fs_add(&u, "last", 5000, NULL), 0);
    CHECK(same(&s, &u));
    CHECK(!mdm_reqids_find(&s, 11) && !mdm_reqids_find(&u, 11));
    CHECK(mdm_reqids_find(&s, 12) && mdm_reqids_find(&u, 12));
    CHECK_EQ(fs_add(&s, "rack1", 11, &rep), -EEXIST); /* forgotten: applied as new */
    CHECK(!rep);
    CHECK_EQ(s.reqs.n, MDM_REQ_IDS);
    CHECK_EQ(fs_add(&s, "fs0", 1000, &rep), 0);
    CHECK(rep);

    mdm_state_free(&s);
    mdm_state_free(&u);
    printf("mdm request ids ok\n");
    return 0;
}
