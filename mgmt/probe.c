/* Device probes before SDS_ADD / DEVICE_ADD: the leader asks the SDS that
 * will own the devices (it must be connected) for each device's capacity,
 * one device at a time, then proposes the request with the capacities filled
 * in. Only the leader's probe ever fills them (sessions.c clears any a peer
 * sent), so the state machine can trust them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdm.h"
#include "util.h"

static void probe_next(struct mdm_probe *pr);

static void probe_free(struct mdm_probe *pr)
{
    struct mdm *m = pr->mdm;
    for (size_t i = 0; i < ARRAY_SIZE(m->probes); i++)
        if (m->probes[i] == pr)
            m->probes[i] = NULL;
    cairn__mgmt_request__free_unpacked(pr->req, NULL);
    free(pr);
}

static void probe_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)c;
    (void)payload_len;
    struct mdm_probe *pr = arg;
    rpc_buf_free(payload);
    Cairn__DeviceProbeReply *rep =
        msg ? cairn__device_probe_reply__unpack(NULL, msg_len, msg) : NULL;
    if (!pr->cli) {
        /* client went away */
    } else if (status < 0 || !rep) {
        char err[512];
        snprintf(err, sizeof(err), "SDS '%s': device %s: %s", pr->sds_name,
                 pr->req->paths[pr->next], rep && rep->error[0] ? rep->error : strerror(-status));
        mdm_reply_error(pr->cli, &pr->hdr, status < 0 ? status : -EIO, err);
    } else {
        pr->req->capacities[pr->next] = rep->capacity;
        pr->next++;
        if (rep)
            cairn__device_probe_reply__free_unpacked(rep, NULL);
        probe_next(pr);
        return;
    }
    if (rep)
        cairn__device_probe_reply__free_unpacked(rep, NULL);
    probe_free(pr);
}

/* Probe the next device, or propose once every device answered. */
static void probe_next(struct mdm_probe *pr)
{
    struct mdm *m = pr->mdm;
    if (!pr->cli) {
        probe_free(pr);
        return;
    }
    if (pr->next == pr->req->n_paths) {
        mdm_propose(m, pr->cli, &pr->hdr, pr->req, MDM_PROPOSAL_MGMT);
        probe_free(pr);
        return;
    }
    const char *addr = pr->req->addr;
    struct mdm_conn *s = mdm_sessions_find_sds(m, addr);
    if (!s) {
        char err[512];
        snprintf(err, sizeof(err),
                 "no cairn-sds is connected from address %s; start it with --listen %s "
                 "--mdm <this MDM> first",
                 addr, addr);
        mdm_reply_error(pr->cli, &pr->hdr, -EHOSTUNREACH, err);
        probe_free(pr);
        return;
    }
    Cairn__DeviceProbe dp = CAIRN__DEVICE_PROBE__INIT;
    dp.path = pr->req->paths[pr->next];
    dp.cluster_id = m->st.m->cluster_id;
    int r = rpc_call_pb(s->conn, FT_DEVICE_PROBE, &dp.base, 10000, probe_reply_cb, pr);
    if (r < 0) {
        mdm_reply_error(pr->cli, &pr->hdr, r, "cannot reach the SDS");
        probe_free(pr);
    }
}

void mdm_probes_forget_conn(struct mdm *m, struct rpc_conn *c)
{
    for (size_t i = 0; i < ARRAY_SIZE(m->probes); i++)
        if (m->probes[i] && m->probes[i]->cli == c)
            m->probes[i]->cli = NULL;
}

void mdm_probe_start(struct mdm *m, struct rpc_conn *c, const struct frame_hdr *h,
                     Cairn__MgmtRequest *req)
{
    if (req->op == CAIRN__MGMT_OP__OP_DEVICE_ADD) {
        Cairn__Sds *sds = mdm_sds_by_name(&m->st, req->name);
        if (!sds) {
            char err[128];
            snprintf(err, sizeof(err), "no SDS named '%s'", req->name);
            mdm_reply_error(c, h, -ENOENT, err);
            cairn__mgmt_request__free_unpacked(req, NULL);
            return;
        }
        /* an absent string is protobuf-c's static "", never freed */
        if (req->addr != protobuf_c_empty_string)
            free(req->addr);
        req->addr = strdup(sds->addr);
    }
    if (req->n_paths == 0 || req->n_paths > 64) {
        mdm_reply_error(c, h, -EINVAL, "name 1 to 64 devices");
        cairn__mgmt_request__free_unpacked(req, NULL);
        return;
    }
    struct mdm_probe *pr = calloc(1, sizeof(*pr));
    pr->mdm = m;
    pr->cli = c;
    pr->hdr = *h;
    pr->req = req;
    snprintf(pr->sds_name, sizeof(pr->sds_name), "%s", req->name);
    free(req->capacities);
    req->capacities = calloc(req->n_paths, sizeof(uint64_t));
    req->n_capacities = req->n_paths;
    size_t slot = ARRAY_SIZE(m->probes);
    for (size_t i = 0; i < ARRAY_SIZE(m->probes) && slot == ARRAY_SIZE(m->probes); i++)
        if (!m->probes[i])
            slot = i;
    if (slot == ARRAY_SIZE(m->probes)) {
        mdm_reply_error(c, h, -EBUSY, "too many device probes in flight; retry");
        cairn__mgmt_request__free_unpacked(req, NULL);
        free(pr);
        return;
    }
    m->probes[slot] = pr;
    probe_next(pr);
}
