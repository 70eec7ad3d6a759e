/* The MDM's control messages against a real state machine: every record is
 * a MgmtRequest (applied as the leader would: capacities only for the ops it
 * probes), an SdsRegister, a Heartbeat or an SdcRegister (unpacked and
 * checked as sessions.c does; an SDC registration and a heartbeat's failed
 * device become the proposals the leader makes). After each successful apply
 * the state must still pass cmap_check: the SDSs and SDCs refuse a map that
 * does not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "fuzz_common.h"
#include "fuzz_mdm_base.h"
#include "log.h"
#include "mdm_state.h"

static uint8_t *base;
static size_t base_len;
static char err[512];

static void req_apply(struct mdm_state *s, Cairn__MgmtRequest *r)
{
    if (mdm_state_apply(s, r, err, sizeof(err)) == 0 && cmap_check(s->m, err, sizeof(err)) < 0) {
        fprintf(stderr, "op %d left a map that fails its check: %s\n", r->op, err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base) {
        log_init("fuzz", -1);
        fz_mdm_base(&base, &base_len);
    }
    struct mdm_state s = {0};
    mdm_state_init(&s, "fuzz");
    if (mdm_state_restore(&s, base, base_len) < 0)
        abort();
    struct fz_rec rec;
    int n = 0;
    while (fz_next(&data, &size, &rec) && n++ < 16) {
        switch (rec.kind % 4) {
        case 0: {
            Cairn__MgmtRequest *r = cairn__mgmt_request__unpack(NULL, rec.len, rec.p);
            if (!r)
                break;
            if (r->op != CAIRN__MGMT_OP__OP_SDS_ADD && r->op != CAIRN__MGMT_OP__OP_DEVICE_ADD)
                r->n_capacities = 0; /* only the leader's probe fills them */
            req_apply(&s, r);
            cairn__mgmt_request__free_unpacked(r, NULL);
            break;
        }
        case 1: {
            Cairn__SdsRegister *r = cairn__sds_register__unpack(NULL, rec.len, rec.p);
            if (r && r->name[0] && strlen(r->name) <= MDM_NAME_MAX && strlen(r->addr) < 128) {
                Cairn__Sds *sds = mdm_sds_by_name(&s, r->name);
                (void)(sds && strcmp(sds->addr, r->addr));
            }
            if (r)
                cairn__sds_register__free_unpacked(r, NULL);
            break;
        }
        case 2: {
            Cairn__Heartbeat *hb = cairn__heartbeat__unpack(NULL, rec.len, rec.p);
            if (!hb)
                break;
            Cairn__Sds *sds = mdm_sds_by_id(&s, hb->sds_id);
            for (size_t i = 0; sds && i < hb->n_usage; i++) {
                Cairn__Device *d = mdm_device_by_id(&s, hb->usage[i]->device_id);
                if (!hb->usage[i]->failed || !d || d->failed || d->sds_id != sds->id)
                    continue;
                Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
                mr.op = CAIRN__MGMT_OP__OP_DEVICE_FAIL;
                mr.device_id = d->id;
                req_apply(&s, &mr);
                sds = mdm_sds_by_id(&s, hb->sds_id); /* pointers die with an apply */
            }
            cairn__heartbeat__free_unpacked(hb, NULL);
            break;
        }
        case 3: {
            Cairn__SdcRegister *r = cairn__sdc_register__unpack(NULL, rec.len, rec.p);
            if (!r)
                break;
            Cairn__Sdc *sdc = mdm_sdc_by_guid(&s, r->guid);
            const char *want = r->name[0] ? r->name : r->guid;
            if (!sdc || strcmp(sdc->name, want)) {
                Cairn__MgmtRequest mr = CAIRN__MGMT_REQUEST__INIT;
                mr.op = CAIRN__MGMT_OP__OP_SDC_REGISTER;
                mr.guid = r->guid;
                mr.name = r->name;
                req_apply(&s, &mr);
            }
            cairn__sdc_register__free_unpacked(r, NULL);
            break;
        }
        }
    }
    mdm_state_free(&s);
    return 0;
}
