/* cairn: the commands about the MDM cluster: mdm list, add, remove and
 * transfer-leadership.
 *
 * mdm list asks the MDM it reaches first for Raft's configuration, then
 * every MDM in it for its own view (its role, term and indexes only it
 * knows), each with a 2 s limit, so that a stopped MDM shows as
 * unreachable rather than holding the list up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LIST_TIMEOUT_MS 2000

static int status_of(const char *addr, Cairn__MgmtReply **rep, char *err, size_t errlen)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_STATUS;
    return cli_mdm_call_quiet(addr, &req, rep, err, errlen);
}

static const Cairn__MdmStatus *self_of(const Cairn__MgmtReply *rep)
{
    for (size_t i = 0; rep && i < rep->n_mdms; i++)
        if (rep->mdms[i]->self)
            return rep->mdms[i];
    return NULL;
}

int cli_run_mdm_list(const struct cli_command *c, const struct cli_args *a,
                     const struct cli_env *env)
{
    (void)c, (void)a;
    Cairn__MgmtReply *rep;
    char err[512];
    cli_mdm_set_local(1); /* each MDM's own view, the leader's or not */
    if (status_of(env->mdm, &rep, err, sizeof(err)) < 0)
        return cli_fail("%s", err);
    const Cairn__MdmStatus *me = self_of(rep);
    cli_mdm_set_call_timeout(LIST_TIMEOUT_MS);
    size_t n = rep->n_mdms;
    Cairn__MgmtReply **views = calloc(n ? n : 1, sizeof(*views));
    if (!views)
        return cli_fail("out of memory");
    for (size_t i = 0; i < n; i++) {
        const Cairn__MdmStatus *s = rep->mdms[i];
        if (s->self) {
            views[i] = NULL; /* rep itself */
            continue;
        }
        char e[512];
        if (!s->addr[0] || status_of(s->addr, &views[i], e, sizeof(e)) < 0)
            views[i] = NULL;
    }
    /* the leader's view, for when it last heard each */
    const Cairn__MgmtReply *lv = me && !strcmp(me->role, "leader") ? rep : NULL;
    for (size_t i = 0; !lv && i < n; i++)
        if (views[i] && self_of(views[i]) && !strcmp(self_of(views[i])->role, "leader"))
            lv = views[i];
    if (!env->json)
        printf("%-4s %-21s %-21s %-7s %-11s %6s %9s %9s %s\n", "ID", "ADDRESS", "RAFT ADDRESS",
               "MEMBER", "ROLE", "TERM", "COMMIT", "APPLIED", "LEADER HEARD");
    else
        printf("[");
    for (size_t i = 0; i < n; i++) {
        const Cairn__MdmStatus *s = rep->mdms[i];
        /* its own word if it answered; the asked MDM's otherwise */
        const Cairn__MdmStatus *own = s->self ? me : self_of(views[i]);
        int reachable = s->self || own;
        const char *role = own ? own->role : "unreachable";
        int64_t contact = -1;
        for (size_t j = 0; lv && j < lv->n_mdms; j++)
            if (lv->mdms[j]->id == s->id)
                contact = lv->mdms[j]->last_contact_ms;
        if (env->json) {
            printf("%s{\"id\":%llu,\"addr\":", i ? "," : "", (unsigned long long)s->id);
            cli_print_jstr(s->addr);
            printf(",\"raft_addr\":");
            cli_print_jstr(s->raft_addr);
            printf(",\"member\":\"%s\",\"role\":\"%s\",\"reachable\":%s", s->member, role,
                   reachable ? "true" : "false");
            if (contact >= 0)
                printf(",\"leader_heard_ms_ago\":%lld", (long long)contact);
            if (own)
                printf(",\"term\":%llu,\"commit_index\":%llu,\"applied_index\":%llu",
                       (unsigned long long)own->term, (unsigned long long)own->commit_index,
                       (unsigned long long)own->applied_index);
            printf("}");
            continue;
        }
        char term[24] = "-", commit[24] = "-", applied[24] = "-";
        if (own) {
            snprintf(term, sizeof(term), "%llu", (unsigned long long)own->term);
            snprintf(commit, sizeof(commit), "%llu", (unsigned long long)own->commit_index);
            snprintf(applied, sizeof(applied), "%llu", (unsigned long long)own->applied_index);
        }
        char heard[32] = "-";
        if (contact >= 0)
            snprintf(heard, sizeof(heard), "%.1f s ago", (double)contact / 1000);
        printf("%-4llu %-21s %-21s %-7s %-11s %6s %9s %9s %s\n", (unsigned long long)s->id,
               s->addr[0] ? s->addr : "-", s->raft_addr, s->member, role, term, commit, applied,
               heard);
    }
    if (env->json)
        printf("]\n");
    for (size_t i = 0; i < n; i++)
        if (views[i])
            cairn__mgmt_reply__free_unpacked(views[i], NULL);
    free(views);
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return 0;
}

static int parse_id(const char *s, uint64_t *id)
{
    char *end;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || !*s || *end || v == 0)
        return cli_fail("an MDM id is a number from 1, not '%s'", s ? s : "");
    *id = v;
    return 0;
}

static int change(const struct cli_env *env, Cairn__MgmtRequest *req)
{
    Cairn__MgmtReply *rep;
    if (cli_mdm_call(env->mdm, req, &rep) < 0)
        return 1;
    if (env->json) {
        printf("{\"ok\":true,\"info\":");
        cli_print_jstr(rep->info);
        printf("}\n");
    } else {
        printf("%s\n", rep->info);
    }
    cairn__mgmt_reply__free_unpacked(rep, NULL);
    return 0;
}

int cli_run_mdm_add(const struct cli_command *c, const struct cli_args *a,
                    const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_MDM_ADD;
    if (parse_id(cli_args_get(a, "--id"), &req.mdm_id))
        return 1;
    req.addr = (char *)cli_args_get(a, "--addr");
    req.raft_addr = (char *)cli_args_get(a, "--raft-addr");
    return change(env, &req);
}

int cli_run_mdm_remove(const struct cli_command *c, const struct cli_args *a,
                       const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_MDM_REMOVE;
    if (parse_id(a->args[0], &req.mdm_id))
        return 1;
    return change(env, &req);
}

int cli_run_mdm_transfer(const struct cli_command *c, const struct cli_args *a,
                         const struct cli_env *env)
{
    (void)c;
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_MDM_TRANSFER;
    if (a->n_args > 0 && parse_id(a->args[0], &req.mdm_id))
        return 1;
    return change(env, &req);
}
