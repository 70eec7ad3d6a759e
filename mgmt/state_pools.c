/* Storage pools in the state machine: create one, change its settings. */
#include <errno.h>
#include <stdlib.h>

#include "state_internal.h"

int state_pools_create(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    if (!state_valid_name(req->pool)) {
        state_errf(err, errlen, "invalid pool name '%s'", req->pool);
        return -EINVAL;
    }
    if (mdm_pool_by_name(s, req->pool)) {
        state_errf(err, errlen, "a pool named '%s' already exists", req->pool);
        return -EEXIST;
    }
    uint32_t copies = req->copies ? req->copies : MDM_DEFAULT_COPIES;
    if (copies < 2 || copies > 3) {
        state_errf(err, errlen, "copies must be 2 or 3 (got %u)", copies);
        return -EINVAL;
    }
    uint64_t ext = req->extent_size ? req->extent_size : MDM_DEFAULT_EXTENT;
    if (ext < 65536 || ext > (32u << 20) || (ext & (ext - 1))) {
        state_errf(err, errlen, "extent size must be a power of two from 64 KiB to 32 MiB");
        return -EINVAL;
    }
    uint32_t pgs = req->pg_count ? req->pg_count : MDM_DEFAULT_PGS;
    if (pgs > 65536) {
        state_errf(err, errlen, "at most 65536 PGs per pool");
        return -EINVAL;
    }
    Cairn__Pool *p = malloc(sizeof(*p));
    cairn__pool__init(p);
    p->id = (uint32_t)s->m->next_id++;
    p->name = state_xstrdup(req->pool);
    p->copies = copies;
    p->extent_size = ext;
    p->pg_count = pgs;
    p->overcommit_pct = req->overcommit_pct ? req->overcommit_pct : MDM_DEFAULT_OVERCOMMIT;
    if (!PB_APPEND(s->m->pools, s->m->n_pools, p))
        abort();
    return rebalance_place(s, p);
}

int state_pools_set(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    Cairn__Pool *p = state_req_pool(s, req, err, errlen);
    if (!p)
        return -ENOENT;
    if (req->overcommit_pct) {
        if (req->overcommit_pct < 100) {
            state_errf(err, errlen, "overcommit must be at least 100%%");
            return -EINVAL;
        }
        p->overcommit_pct = req->overcommit_pct;
    }
    return 0;
}
