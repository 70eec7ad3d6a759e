/* Fault sets in the state machine: declared by name before an SDS may name
 * one; removed once no SDS is declared in it. Placement never puts two
 * copies of a PG in one fault set (capacity_fault_domain). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state_internal.h"

/* Index of the fault set named name, or n_fault_sets. */
static size_t fault_set_index(const struct mdm_state *s, const char *name)
{
    size_t i;
    for (i = 0; i < s->m->n_fault_sets; i++)
        if (!strcmp(s->m->fault_sets[i]->name, name))
            break;
    return i;
}

int state_fault_sets_add(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen)
{
    size_t i = fault_set_index(s, req->fault_set);
    if (!state_valid_name(req->fault_set)) {
        state_errf(err, errlen, "invalid fault set name '%s' (1-%d of [A-Za-z0-9._-])",
                   req->fault_set, MDM_NAME_MAX);
        return -EINVAL;
    }
    if (i < s->m->n_fault_sets) {
        state_errf(err, errlen, "a fault set named '%s' already exists", req->fault_set);
        return -EEXIST;
    }
    Cairn__FaultSet *f = malloc(sizeof(*f));
    cairn__fault_set__init(f);
    f->id = (uint32_t)s->m->next_id++;
    f->name = state_xstrdup(req->fault_set);
    if (!PB_APPEND(s->m->fault_sets, s->m->n_fault_sets, f))
        abort();
    return 0;
}

int state_fault_sets_remove(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                            size_t errlen)
{
    size_t i = fault_set_index(s, req->fault_set);
    if (i == s->m->n_fault_sets) {
        state_errf(err, errlen, "no fault set named '%s'", req->fault_set);
        return -ENOENT;
    }
    for (size_t j = 0; j < s->m->n_sds; j++)
        if (!strcmp(s->m->sds[j]->fault_set, req->fault_set)) {
            state_errf(err, errlen, "fault set '%s' still has SDS '%s'; remove its SDSs first",
                       req->fault_set, s->m->sds[j]->name);
            return -EBUSY;
        }
    protobuf_c_message_free_unpacked(&s->m->fault_sets[i]->base, NULL);
    memmove(&s->m->fault_sets[i], &s->m->fault_sets[i + 1],
            sizeof(*s->m->fault_sets) * (s->m->n_fault_sets - i - 1));
    s->m->n_fault_sets--;
    return 0;
}
