/* SDCs in the state machine: an SDC registers by its stable guid when it
 * starts (the leader proposes it), under a name of its choice or its guid;
 * registering again renames it. In restricted SDC mode (the default) a new
 * SDC is pending until an operator approves it; a pending SDC cannot be
 * mapped (state_volumes.c) and SDSs serve it nothing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state_internal.h"

int state_sdcs_register(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                        size_t errlen)
{
    if (!req->guid[0] || strlen(req->guid) > 64) {
        state_errf(err, errlen, "an SDC needs a guid of 1-64 bytes");
        return -EINVAL;
    }
    if (req->name[0] && !state_valid_name(req->name)) {
        state_errf(err, errlen, "invalid SDC name '%s'", req->name);
        return -EINVAL;
    }
    Cairn__Sdc *c = mdm_sdc_by_guid(s, req->guid);
    const char *name = req->name[0] ? req->name : req->guid;
    Cairn__Sdc *other = mdm_sdc_by_name(s, name);
    if (other && other != c) {
        state_errf(err, errlen, "another SDC is already named '%s'", name);
        return -EEXIST;
    }
    if (c) {
        char *old = c->name;
        c->name = state_xstrdup(name);
        /* an absent string is protobuf-c's static "", never freed */
        if (old != protobuf_c_empty_string)
            free(old);
        return 0;
    }
    c = malloc(sizeof(*c));
    cairn__sdc__init(c);
    c->id = (uint32_t)s->m->next_id++;
    c->guid = state_xstrdup(req->guid);
    c->name = state_xstrdup(name);
    c->pending = !s->m->sdc_unrestricted;
    if (!PB_APPEND(s->m->sdcs, s->m->n_sdcs, c))
        abort();
    return 0;
}

int state_sdcs_approve(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    Cairn__Sdc *c = mdm_sdc_by_name(s, req->sdc);
    if (!c) {
        state_errf(err, errlen, "no SDC named '%s' (an SDC registers when it starts)", req->sdc);
        return -ENOENT;
    }
    c->pending = 0;
    return 0;
}

int state_cluster_set(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    if (!strcmp(req->restricted_sdc, "on")) {
        s->m->sdc_unrestricted = 0;
    } else if (!strcmp(req->restricted_sdc, "off")) {
        s->m->sdc_unrestricted = 1;
    } else {
        state_errf(err, errlen, "--restricted-sdc takes on or off%s%s%s",
                   req->restricted_sdc[0] ? ", not '" : "", req->restricted_sdc,
                   req->restricted_sdc[0] ? "'" : "");
        return -EINVAL;
    }
    return 0;
}

/* The cluster's id, once for all MDMs: proposed by a leader that finds it
 * not yet agreed (mdm_members.c), from the first MDM's cluster_id file. A
 * later proposal (a second leader's, before it applied the first) changes
 * nothing. */
int state_cluster_id(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err, size_t errlen)
{
    if (s->m->cluster_id_agreed)
        return 0;
    if (!req->name[0] || strlen(req->name) > 64) {
        state_errf(err, errlen, "a cluster id of 1 to 64 bytes is needed");
        return -EINVAL;
    }
    char *id = strdup(req->name);
    if (!id)
        return -ENOMEM;
    free(s->m->cluster_id);
    s->m->cluster_id = id;
    s->m->cluster_id_agreed = 1;
    return 0;
}
