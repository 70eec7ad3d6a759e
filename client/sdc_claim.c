/* Claims: may an NBD client of this SDC open a volume read-write? For a
 * single-writer volume only one SDC at a time may (docs/attach.md): before
 * GO or EXPORT_NAME enters transmission on a writable export the SDC asks
 * the MDM (FT_CLAIM), which grants it with the volume's writer generation
 * (the fence every change of that connection carries) or refuses it
 * naming the SDC that holds the volume. The last read-write connection of
 * a volume to close releases it. A session that comes back (an MDM
 * restart, a new leader) holds again what its connections still hold. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "log.h"
#include "sdc.h"
#include "util.h"

#define CLAIM_TIMEOUT_MS 10000 /* a claim may wait for a Raft entry */
/* An MDM that is not the leader (just after an election or a transfer,
 * before the session has moved), or a session being re-made: ask again
 * every RETRY_MS for this long. */
#define CLAIM_RETRY_MS 100
#define CLAIM_PATIENCE_MS 5000

struct claim {
    struct sdc *sdc;
    struct sdc_vol *v; /* a reference, dropped when done */
    void *arg;
    void (*done)(void *arg, int err, uint64_t claim, const char *msg);
    int err;
    uint64_t gen;
    uint64_t deadline; /* now_ms(): no retry after this */
    char msg[320];
    uv_timer_t later;   /* an answer known at once is given from the loop */
    int asked;          /* the volume's claim in flight at the MDM (v->claiming) */
    struct claim *next; /* in v->waiting */
};

static void claim_send(struct claim *c);
static void later_cb(uv_timer_t *t);

static void claim_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void claim_finish(struct claim *c)
{
    struct sdc_vol *v = c->v;
    if (c->err == 0) {
        v->writers++;
        v->claim_gen = c->gen;
    } else {
        log_info("volume %s: read-write open refused: %s", v->name, c->msg);
    }
    if (c->asked) {
        /* the connections that opened while it was asked: granted with it,
         * or each asks in turn */
        v->claiming = 0;
        struct claim *w = v->waiting;
        v->waiting = NULL;
        while (w) {
            struct claim *next = w->next;
            w->next = NULL;
            if (c->err == 0) {
                w->gen = c->gen;
                uv_timer_start(&w->later, later_cb, 0, 0);
            } else {
                claim_send(w);
            }
            w = next;
        }
    }
    c->done(c->arg, c->err, c->gen, c->msg);
    sdc_vol_unref(c->sdc, v);
    uv_close((uv_handle_t *)&c->later, claim_closed_cb);
}

static void later_cb(uv_timer_t *t)
{
    claim_finish(t->data);
}

static void retry_cb(uv_timer_t *t)
{
    claim_send(t->data);
}

static void claim_reply_cb(struct rpc_conn *conn, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)conn;
    (void)payload_len;
    rpc_buf_free(payload);
    struct claim *c = arg;
    if ((status == -EAGAIN || status == -ECONNRESET || status == -ENOTCONN ||
         status == -ECANCELED) &&
        now_ms() < c->deadline) {
        uv_timer_start(&c->later, retry_cb, CLAIM_RETRY_MS, 0); /* the leader, soon */
        return;
    }
    Cairn__MapReply *rep = cairn__map_reply__unpack(NULL, msg_len, msg);
    c->err = status < 0 ? status : 0;
    if (status >= 0 && !rep)
        c->err = -EPROTO;
    if (c->err == 0) {
        c->gen = rep->writer_gen;
    } else if (rep && rep->error[0]) {
        snprintf(c->msg, sizeof(c->msg), "%s", rep->error);
    } else {
        snprintf(c->msg, sizeof(c->msg), "the MDM did not grant it: %s", strerror(-c->err));
    }
    if (rep)
        cairn__map_reply__free_unpacked(rep, NULL);
    claim_finish(c);
}

/* The MDM cannot be asked now: a volume our map says we write may be
 * opened at once (the SDSs fence it if that is no longer so); otherwise
 * ask again until the deadline, then refuse. */
static void claim_offline(struct claim *c)
{
    struct sdc *s = c->sdc;
    Cairn__Volume *mv = s->map ? cmap_volume(s->map, c->v->id) : NULL;
    if (mv && s->sdc_id && mv->writer_sdc == s->sdc_id && mv->writer_gen) {
        c->err = 0;
        c->gen = mv->writer_gen;
    } else if (now_ms() < c->deadline) {
        uv_timer_start(&c->later, retry_cb, CLAIM_RETRY_MS, 0);
        return;
    } else {
        c->err = -EAGAIN;
        snprintf(c->msg, sizeof(c->msg),
                 "the MDM is not reachable: volume '%s' cannot be claimed for writing now",
                 c->v->name);
    }
    uv_timer_start(&c->later, later_cb, 0, 0);
}

void sdc_export_claim(void *ctx, void *exp, void *arg,
                      void (*done)(void *arg, int err, uint64_t claim, const char *msg))
{
    struct sdc *s = ctx;
    struct sdc_vol *v = exp;
    struct claim *c = calloc(1, sizeof(*c));
    if (!c)
        abort(); /* the NBD server waits for an answer: none can be given */
    c->sdc = s;
    c->v = v;
    v->refs++;
    c->arg = arg;
    c->done = done;
    uv_timer_init(s->loop, &c->later);
    c->later.data = c;
    c->deadline = now_ms() + CLAIM_PATIENCE_MS;
    claim_send(c);
}

/* One claim of a volume at a time goes to the MDM: two at once would each
 * make this SDC the writer under a new generation, and the first
 * connection's writes would be fenced by the second's. A connection that
 * opens while this SDC holds the volume shares its claim. */
static void claim_send(struct claim *c)
{
    struct sdc *s = c->sdc;
    struct sdc_vol *v = c->v;
    if (!c->asked && v->claiming) {
        c->next = v->waiting;
        v->waiting = c;
        return;
    }
    if (!c->asked && v->writers > 0 && v->claim_gen && v->claim_gen >= v->writer_gen) {
        c->gen = v->claim_gen;
        uv_timer_start(&c->later, later_cb, 0, 0);
        return;
    }
    c->asked = 1;
    v->claiming = 1;
    struct rpc_conn *conn = mdm_session_conn(s->mdm);
    Cairn__VolumeClaim vc = CAIRN__VOLUME_CLAIM__INIT;
    vc.volume_id = c->v->id;
    if (conn && rpc_call_pb(conn, FT_CLAIM, &vc.base, CLAIM_TIMEOUT_MS, claim_reply_cb, c) == 0)
        return;
    claim_offline(c);
}

static void release_reply_cb(struct rpc_conn *conn, int status, const uint8_t *msg,
                             uint32_t msg_len, uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)conn;
    (void)msg;
    (void)msg_len;
    (void)payload_len;
    (void)arg;
    rpc_buf_free(payload);
    if (status < 0 && status != -ECONNRESET && status != -ECANCELED)
        log_debug("a claim's release or renewal was refused: %s", strerror(-status));
}

void sdc_export_release(void *ctx, void *exp)
{
    struct sdc *s = ctx;
    struct sdc_vol *v = exp;
    if (--v->writers > 0)
        return;
    /* a session that is gone has released it already */
    struct rpc_conn *conn = mdm_session_conn(s->mdm);
    Cairn__VolumeClaim vc = CAIRN__VOLUME_CLAIM__INIT;
    vc.volume_id = v->id;
    vc.release = 1;
    if (conn)
        rpc_call_pb(conn, FT_CLAIM, &vc.base, CLAIM_TIMEOUT_MS, release_reply_cb, NULL);
}

void sdc_claims_renew(struct sdc *s)
{
    struct rpc_conn *conn = s->mdm ? mdm_session_conn(s->mdm) : NULL;
    if (!conn || conn == s->claims_conn)
        return;
    s->claims_conn = conn;
    for (int i = 0; i < s->nvols; i++) {
        struct sdc_vol *v = s->vols[i];
        if (v->writers <= 0 || !v->claim_gen)
            continue;
        Cairn__VolumeClaim vc = CAIRN__VOLUME_CLAIM__INIT;
        vc.volume_id = v->id;
        vc.writer_gen = v->claim_gen;
        rpc_call_pb(conn, FT_CLAIM, &vc.base, CLAIM_TIMEOUT_MS, release_reply_cb, NULL);
    }
}
