/* SDSs and their devices in the state machine: add an SDS with its devices,
 * add devices to an SDS. The leader probed every device's capacity before it
 * proposed the request; removal is drain.c's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state_internal.h"

/* "host" part of host:port, for spotting two SDSs on one host. */
static int same_host(const char *a, const char *b)
{
    const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');
    size_t la = ca ? (size_t)(ca - a) : strlen(a), lb = cb ? (size_t)(cb - b) : strlen(b);
    return la == lb && !strncmp(a, b, la);
}

/* Check every device of req, then append them all to sds in pool and place
 * the pool again if it is still empty. */
static int add_devices(struct mdm_state *s, const Cairn__MgmtRequest *req, Cairn__Sds *sds,
                       Cairn__Pool *pool, char *err, size_t errlen)
{
    if (req->n_paths != req->n_capacities) {
        state_errf(err, errlen, "internal: %zu paths but %zu capacities", req->n_paths,
                   req->n_capacities);
        return -EINVAL;
    }
    for (size_t i = 0; i < req->n_paths; i++) {
        for (size_t j = 0; j < s->m->n_devices; j++) {
            Cairn__Device *d = s->m->devices[j];
            Cairn__Sds *owner = mdm_sds_by_id(s, d->sds_id);
            if (owner && same_host(owner->addr, sds->addr) && !strcmp(d->path, req->paths[i])) {
                state_errf(err, errlen, "device %s is already part of SDS %s on the same host",
                           req->paths[i], owner->name);
                return -EEXIST;
            }
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(req->paths[i], req->paths[j])) {
                state_errf(err, errlen, "device %s is named twice", req->paths[i]);
                return -EINVAL;
            }
        if (req->capacities[i] < 16 * pool->extent_size) {
            state_errf(err, errlen, "device %s is too small (%llu bytes; at least %llu needed)",
                       req->paths[i], (unsigned long long)req->capacities[i],
                       (unsigned long long)(16 * pool->extent_size));
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < req->n_paths; i++) {
        Cairn__Device *d = malloc(sizeof(*d));
        cairn__device__init(d);
        d->id = (uint32_t)s->m->next_id++;
        d->sds_id = sds->id;
        d->pool_id = pool->id;
        d->path = state_xstrdup(req->paths[i]);
        d->capacity = req->capacities[i];
        if (!PB_APPEND(s->m->devices, s->m->n_devices, d))
            abort();
    }
    return rebalance_place(s, pool);
}

int state_sds_add(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    if (!state_valid_name(req->name)) {
        state_errf(err, errlen, "invalid SDS name '%s'", req->name);
        return -EINVAL;
    }
    if (mdm_sds_by_name(s, req->name)) {
        state_errf(err, errlen, "an SDS named '%s' already exists", req->name);
        return -EEXIST;
    }
    for (size_t i = 0; i < s->m->n_sds; i++)
        if (!strcmp(s->m->sds[i]->addr, req->addr)) {
            state_errf(err, errlen, "SDS '%s' already uses address %s", s->m->sds[i]->name,
                       req->addr);
            return -EEXIST;
        }
    if (req->fault_set[0]) {
        if (!mdm_fault_set_by_name(s, req->fault_set)) {
            state_errf(err, errlen,
                       "no fault set named '%s' (declare it with 'cairn fault-set add %s')",
                       req->fault_set, req->fault_set);
            return -ENOENT;
        }
    }
    Cairn__Pool *p = state_req_pool(s, req, err, errlen);
    if (!p)
        return -ENOENT;
    Cairn__Sds *d = malloc(sizeof(*d));
    cairn__sds__init(d);
    d->id = (uint32_t)s->m->next_id++;
    d->name = state_xstrdup(req->name);
    d->addr = state_xstrdup(req->addr);
    d->fault_set = state_xstrdup(req->fault_set);
    if (!PB_APPEND(s->m->sds, s->m->n_sds, d))
        abort();
    int r = add_devices(s, req, d, p, err, errlen);
    if (r < 0) {
        s->m->n_sds--;
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    return r;
}

int state_sds_device_add(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen)
{
    Cairn__Sds *d = state_req_sds(s, req->name, err, errlen);
    if (!d)
        return -ENOENT;
    Cairn__Pool *p = state_req_pool(s, req, err, errlen);
    if (!p)
        return -ENOENT;
    return add_devices(s, req, d, p, err, errlen);
}
