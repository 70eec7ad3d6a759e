/* The FSM's side of Raft that needs no Raft: unwrapping a log entry or a
 * snapshot and applying it to the state. raft_fsm.c's callbacks call these
 * with the buffers libraft hands them; keeping them here, in the state
 * machine's library, lets tests/fuzz/fuzz_raft.c reach the very code that
 * reads what a peer or the disk gave Raft, without libraft's I/O. */
#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "mdm_state.h"
#include "util.h"

/* The protobuf of a framed buffer, or NULL if its length does not fit. The
 * padding after it is not checked: libraft hands buffers back as they were
 * given, and nothing is read from it. */
static const uint8_t *unframe(const uint8_t *buf, size_t buflen, size_t *len)
{
    if (buflen < 8)
        return NULL;
    uint64_t n = get_be64(buf);
    if (n > buflen - 8)
        return NULL;
    *len = (size_t)n;
    return buf + 8;
}

int mdm_fsm_apply(struct mdm_state *s, const uint8_t *buf, size_t len, struct mdm_fsm_entry *e,
                  char *err, size_t errlen)
{
    size_t plen = 0;
    const uint8_t *body = unframe(buf, len, &plen);
    Cairn__MgmtRequest *req = body ? cairn__mgmt_request__unpack(NULL, plen, body) : NULL;
    if (!req) {
        e->corrupt = true;
        e->op = 0;
        snprintf(err, errlen, "corrupt log entry");
        log_error("raft: undecodable log entry of %zu bytes ignored", len);
        return -EINVAL;
    }
    e->corrupt = false;
    e->op = req->op;
    int r = mdm_state_apply(s, req, err, errlen);
    if (r < 0)
        log_info("refused op %d: %s", req->op, err);
    else
        log_debug("raft: applied %s, map version %llu", mdm_state_op_name(req->op),
                  (unsigned long long)s->m->version);
    cairn__mgmt_request__free_unpacked(req, NULL);
    return r;
}

int mdm_fsm_restore(struct mdm_state *s, const uint8_t *buf, size_t len)
{
    size_t plen = 0;
    const uint8_t *body = unframe(buf, len, &plen);
    if (!body || mdm_state_restore(s, body, plen) < 0)
        return -EINVAL;
    log_info("state restored from snapshot (map version %llu)", (unsigned long long)s->m->version);
    return 0;
}
