/* The MDM's Raft FSM: the code its callbacks run (mgmt/mdm_fsm.c, called by
 * fsm_restore and fsm_apply in raft_fsm.c): a snapshot unframed and
 * restored (mdm_fsm_restore), then log entries unframed, unpacked and
 * applied (mdm_fsm_apply). Input: records, kind 0 a snapshot, anything else
 * an entry, each framed as Raft holds it ([u64 length][protobuf][padding]). */
#include "fuzz_common.h"
#include "log.h"
#include "mdm_state.h"

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
        if (rec.kind == 0) {
            mdm_fsm_restore(&s, rec.p, rec.len);
            continue;
        }
        struct mdm_fsm_entry e;
        mdm_fsm_apply(&s, rec.p, rec.len, &e, err, sizeof(err));
        if (!e.corrupt)
            mdm_state_op_name(e.op);
    }
    mdm_state_free(&s);
    return 0;
}
