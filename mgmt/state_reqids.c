/* Request ids: the state machine applies a change that carries one
 * (MgmtRequest.request_id, non-zero) once. The outcome of each such change
 * (its status and refusal message) is recorded in a table of the last
 * MDM_REQ_IDS, oldest evicted first; a request whose id is in the table is
 * answered with that outcome and not applied again. The table is replicated
 * state: every MDM records and evicts in the order of the log, it is in
 * every snapshot (as a RequestLog, mdm_fsm.c), and an MDM restored from a
 * snapshot holds the same one. It is not part of the ClusterMap, which is
 * served to every SDS and SDC. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdm_state.h"
#include "state_internal.h"

static struct mdm_req_outcome *slot(const struct mdm_reqids *t, size_t i)
{
    return &t->ring[(t->head + i) % MDM_REQ_IDS];
}

/* Append one outcome, evicting the oldest when the table is full. */
static void push(struct mdm_reqids *t, uint64_t id, int op, int status, const char *err)
{
    if (!t->ring) {
        t->ring = calloc(MDM_REQ_IDS, sizeof(*t->ring));
        if (!t->ring)
            abort();
    }
    struct mdm_req_outcome *o;
    if (t->n < MDM_REQ_IDS) {
        o = slot(t, t->n++);
    } else {
        o = slot(t, 0);
        free(o->err);
        t->head = (t->head + 1) % MDM_REQ_IDS;
    }
    o->id = id;
    o->op = op;
    o->status = status;
    o->err = status < 0 ? state_xstrdup(err ? err : "") : NULL;
}

void mdm_reqids_free(struct mdm_reqids *t)
{
    for (size_t i = 0; t->ring && i < t->n; i++)
        free(slot(t, i)->err);
    free(t->ring);
    *t = (struct mdm_reqids){0};
}

const struct mdm_req_outcome *mdm_reqids_find(const struct mdm_state *s, uint64_t id)
{
    if (!id)
        return NULL;
    for (size_t i = s->reqs.n; i-- > 0;)
        if (slot(&s->reqs, i)->id == id)
            return slot(&s->reqs, i);
    return NULL;
}

int mdm_state_apply_once(struct mdm_state *s, const Cairn__MgmtRequest *req, char *err,
                         size_t errlen, bool *repeat)
{
    *repeat = false;
    const struct mdm_req_outcome *o = mdm_reqids_find(s, req->request_id);
    if (o && o->op != (int)req->op) {
        const char *was = mdm_state_op_name(o->op);
        state_errf(err, errlen, "request id %016llx was used before by another change (%s)",
                   (unsigned long long)req->request_id, was ? was : "?");
        return -EINVAL;
    }
    if (o) {
        *repeat = true;
        state_errf(err, errlen, "%s", o->err ? o->err : "");
        return o->status;
    }
    int r = mdm_state_apply(s, req, err, errlen);
    if (req->request_id)
        push(&s->reqs, req->request_id, req->op, r, err);
    return r;
}

int mdm_reqids_pack(const struct mdm_state *s, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    const struct mdm_reqids *t = &s->reqs;
    if (!t->n)
        return 0;
    Cairn__RequestOutcome *outs = calloc(t->n, sizeof(*outs));
    Cairn__RequestOutcome **ptrs = calloc(t->n, sizeof(*ptrs));
    if (!outs || !ptrs) {
        free(outs);
        free(ptrs);
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct mdm_req_outcome *o = slot(t, i);
        cairn__request_outcome__init(&outs[i]);
        outs[i].request_id = o->id;
        outs[i].op = o->op;
        outs[i].status = o->status;
        if (o->err)
            outs[i].error = o->err;
        ptrs[i] = &outs[i];
    }
    Cairn__RequestLog rl = CAIRN__REQUEST_LOG__INIT;
    rl.outcomes = ptrs;
    rl.n_outcomes = t->n;
    size_t n = cairn__request_log__get_packed_size(&rl);
    uint8_t *b = malloc(n ? n : 1);
    if (b)
        cairn__request_log__pack(&rl, b);
    free(outs);
    free(ptrs);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *len = n;
    return 0;
}

int mdm_reqids_unpack(struct mdm_reqids *t, const uint8_t *buf, size_t len)
{
    *t = (struct mdm_reqids){0};
    if (!len)
        return 0;
    Cairn__RequestLog *rl = cairn__request_log__unpack(NULL, len, buf);
    if (!rl)
        return -EINVAL;
    /* the newest MDM_REQ_IDS, in their order: what the writer held */
    size_t from = rl->n_outcomes > MDM_REQ_IDS ? rl->n_outcomes - MDM_REQ_IDS : 0;
    for (size_t i = from; i < rl->n_outcomes; i++) {
        const Cairn__RequestOutcome *o = rl->outcomes[i];
        if (o->request_id)
            push(t, o->request_id, o->op, o->status > 0 ? -EIO : o->status, o->error);
    }
    cairn__request_log__free_unpacked(rl, NULL);
    return 0;
}

void mdm_reqids_replace(struct mdm_state *s, struct mdm_reqids *t)
{
    mdm_reqids_free(&s->reqs);
    s->reqs = *t;
    *t = (struct mdm_reqids){0};
}
