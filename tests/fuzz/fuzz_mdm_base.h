/* The MDM targets' base cluster (fuzz_mdm_msgs, fuzz_mdm_sessions): a pool,
 * three SDSs, a volume and an SDC, packed once and restored per input. */
#ifndef CAIRN_FUZZ_MDM_BASE_H
#define CAIRN_FUZZ_MDM_BASE_H

#include <stdio.h>
#include <stdlib.h>

#include "mdm_state.h"

static void fz_base_apply(struct mdm_state *s, Cairn__MgmtRequest *r)
{
    char why[512];
    if (mdm_state_apply(s, r, why, sizeof(why)) < 0) {
        fprintf(stderr, "base state: %s\n", why);
        abort();
    }
}

static void fz_mdm_base(uint8_t **base, size_t *base_len)
{
    struct mdm_state s;
    mdm_state_init(&s, "fuzz");
    Cairn__MgmtRequest r = CAIRN__MGMT_REQUEST__INIT;
    r.op = CAIRN__MGMT_OP__OP_POOL_CREATE;
    r.pool = "default";
    r.pg_count = 16;
    fz_base_apply(&s, &r);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        Cairn__MgmtRequest a = CAIRN__MGMT_REQUEST__INIT;
        char addr[32];
        char *paths[] = {"/dev/x"};
        uint64_t caps[] = {4ULL << 30};
        snprintf(addr, sizeof(addr), "10.0.0.%d:7000", i + 1);
        a.op = CAIRN__MGMT_OP__OP_SDS_ADD;
        a.name = (char *)names[i];
        a.addr = addr;
        a.paths = paths;
        a.n_paths = 1;
        a.capacities = caps;
        a.n_capacities = 1;
        fz_base_apply(&s, &a);
    }
    Cairn__MgmtRequest v = CAIRN__MGMT_REQUEST__INIT;
    v.op = CAIRN__MGMT_OP__OP_VOLUME_CREATE;
    v.volume = "v";
    v.size = 1ULL << 30;
    fz_base_apply(&s, &v);
    Cairn__MgmtRequest c = CAIRN__MGMT_REQUEST__INIT;
    c.op = CAIRN__MGMT_OP__OP_SDC_REGISTER;
    c.guid = "guid-1";
    c.name = "h1";
    fz_base_apply(&s, &c);
    mdm_state_pack(&s, base, base_len);
    mdm_state_free(&s);
}

#endif
