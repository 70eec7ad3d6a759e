/* The FSM's side of Raft that needs no Raft: unwrapping a log entry or a
 * snapshot and applying it to the state. raft_fsm.c's callbacks call these
 * with the buffers libraft hands them; keeping them here, in the state
 * machine's library, lets tests/fuzz/fuzz_raft.c reach the very code that
 * reads what a peer or the disk gave Raft, without libraft's I/O. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        e->request_id = 0;
        snprintf(err, errlen, "corrupt log entry");
        log_error("raft: undecodable log entry of %zu bytes ignored", len);
        return -EINVAL;
    }
    e->corrupt = false;
    e->op = req->op;
    e->request_id = req->request_id;
    int r = mdm_state_apply_once(s, req, err, errlen, &e->repeat);
    if (e->repeat)
        log_info("raft: request %016llx (%s) was applied before: not again, answered with its "
                 "outcome (%d)",
                 (unsigned long long)req->request_id, mdm_state_op_name(req->op), r);
    else if (r < 0)
        log_info("refused op %d: %s", req->op, err);
    else
        log_debug("raft: applied %s, map version %llu", mdm_state_op_name(req->op),
                  (unsigned long long)s->m->version);
    cairn__mgmt_request__free_unpacked(req, NULL);
    return r;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static size_t framed_size(size_t len)
{
    return 8 + ((len + 7) & ~(size_t)7);
}

int mdm_fsm_snapshot(const struct mdm_state *s, uint8_t **buf, size_t *len)
{
    uint8_t *map, *ids;
    size_t mlen, ilen;
    if (mdm_state_pack(s, &map, &mlen) < 0)
        return -ENOMEM;
    if (mdm_reqids_pack(s, &ids, &ilen) < 0) {
        free(map);
        return -ENOMEM;
    }
    /* no request ids: the snapshot is what it was before there were any */
    size_t n = framed_size(mlen) + (ilen ? framed_size(ilen) : 0);
    uint8_t *b = calloc(1, n);
    if (b) {
        put_be64(b, mlen);
        memcpy(b + 8, map, mlen);
        if (ilen) {
            put_be64(b + framed_size(mlen), ilen);
            memcpy(b + framed_size(mlen) + 8, ids, ilen);
        }
    }
    free(map);
    free(ids);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *len = n;
    return 0;
}

int mdm_fsm_restore(struct mdm_state *s, const uint8_t *buf, size_t len)
{
    size_t plen = 0, ilen = 0;
    const uint8_t *body = unframe(buf, len, &plen);
    if (!body)
        return -EINVAL;
    /* the request ids' frame follows the map's padding, if there is one */
    size_t at = framed_size(plen);
    const uint8_t *ids = NULL;
    if (at < len && !all_zero(buf + at, len - at) && !(ids = unframe(buf + at, len - at, &ilen)))
        return -EINVAL;
    struct mdm_reqids t;
    if (mdm_reqids_unpack(&t, ids, ilen) < 0) {
        log_error("snapshot refused: its request ids do not decode");
        return -EINVAL;
    }
    if (mdm_state_restore(s, body, plen) < 0) {
        mdm_reqids_free(&t);
        return -EINVAL;
    }
    mdm_reqids_replace(s, &t);
    log_info("state restored from snapshot (map version %llu, %zu request ids)",
             (unsigned long long)s->m->version, s->reqs.n);
    return 0;
}
