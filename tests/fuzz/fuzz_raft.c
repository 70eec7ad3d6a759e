/* The MDM's Raft FSM: a snapshot restored (its [u64 length][ClusterMap]
 * framing unwrapped as fsm_restore does), then log entries applied
 * (unframed and unpacked as fsm_apply does). Input: records, kind 0 a
 * snapshot, anything else an entry. */
#include <stdlib.h>

#include "fuzz_common.h"
#include "log.h"
#include "mdm_state.h"
#include "util.h"

static const uint8_t *unframe(const uint8_t *b, size_t blen, size_t *len)
{
    if (blen < 8)
        return NULL;
    uint64_t n = get_be64(b);
    if (n > blen - 8)
        return NULL;
    *len = (size_t)n;
    return b + 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_init("fuzz", -1);
        init = 1;
    }
    struct mdm_state s;
    mdm_state_init(&s, "fuzz");
    char err[512];
    struct fz_rec rec;
    int n = 0;
    while (fz_next(&data, &size, &rec) && n++ < 16) {
        size_t len = 0;
        const uint8_t *body = unframe(rec.p, rec.len, &len);
        if (!body)
            continue;
        if (rec.kind == 0) {
            mdm_state_restore(&s, body, len);
            continue;
        }
        Cairn__MgmtRequest *req = cairn__mgmt_request__unpack(NULL, len, body);
        if (!req)
            continue;
        mdm_state_apply(&s, req, err, sizeof(err));
        mdm_state_op_name(req->op);
        cairn__mgmt_request__free_unpacked(req, NULL);
    }
    mdm_state_free(&s);
    return 0;
}
