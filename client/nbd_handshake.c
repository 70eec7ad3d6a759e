/* Fixed-newstyle handshake: the greeting, the client's flags, then option
 * haggling until GO or EXPORT_NAME enters transmission (docs/nbd.md,
 * "Handshake"). Options are parsed by the pure functions of nbd_parse.c;
 * this file decides what to answer and keeps the connection's state. TLS:
 * STARTTLS and the modes' rules (FORCEDTLS under --tls require) are
 * answered here, allow lists are asked of nbd_tls.c; the handshake itself
 * and the encryption are nbd_tls.c's. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "nbd_internal.h"
#include "rpc.h"
#include "util.h"

/* Option replies up to this go in the write record; longer ones in a buffer. */
#define OPT_REPLY_INLINE 512
_Static_assert(20 + OPT_REPLY_INLINE <= NBD_WREQ_HDR_LARGE, "option reply fits a write record");

static void opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
                      uint32_t len)
{
    uint8_t h[20 + OPT_REPLY_INLINE];
    put_be64(h, NBD_REP_MAGIC);
    put_be32(h + 8, opt);
    put_be32(h + 12, type);
    put_be32(h + 16, len);
    if (len <= OPT_REPLY_INLINE) {
        if (len)
            memcpy(h + 20, data, len);
        nbd_conn_send(c, h, 20 + len, NULL, 0, false);
    } else {
        uint8_t *copy = rpc_buf_alloc(len);
        memcpy(copy, data, len);
        nbd_conn_send(c, h, 20, copy, len, true);
    }
}

static void opt_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
    log_debug("nbd %s: option %u: error %#x: %s", c->peer, opt, type, msg);
    opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

void nbd_handshake_greet(struct nbd_conn *c)
{
    uint8_t g[18];
    put_be64(g, NBD_MAGIC);
    put_be64(g + 8, NBD_IHAVEOPT);
    put_be16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    nbd_conn_send(c, g, 18, NULL, 0, false);
}

/* Choose export name for this connection (a reference to it is held until
 * another is chosen or the connection is freed). 0 or -ENOENT. */
static int open_export(struct nbd_conn *c, const char *name)
{
    struct nbd_backend *be = &c->srv->be;
    uint64_t size;
    int ro;
    void *e = be->open(be->ctx, name, &size, &ro);
    if (!e)
        return -ENOENT;
    if (c->claimed && be->release) /* not reached: a claim ends the options */
        be->release(be->ctx, c->exp);
    c->claimed = false;
    if (c->exp)
        be->close(be->ctx, c->exp);
    c->exp = e;
    c->stats = be->stats ? be->stats(be->ctx, e) : NULL;
    c->st.size = size;
    c->st.ro = ro;
    return 0;
}

static void claim_done_cb(void *arg, int err, uint64_t claim, const char *msg)
{
    struct nbd_conn *c = arg;
    c->claim_state = NBD_CLAIM_DONE;
    c->claim_err = err;
    c->claim = err ? 0 : claim;
    /* held by the connection from now on, whatever becomes of the option
     * (the connection may be closing): released when it is freed */
    c->claimed = err == 0;
    snprintf(c->claim_msg, sizeof(c->claim_msg), "%s", msg ? msg : "");
    nbd_conn_claim_done(c);
}

/* GO or EXPORT_NAME on a writable export: does the backend let this
 * connection write (single-writer volumes, docs/attach.md)? 1: yes, go
 * on; 0: asked, the option waits and is parsed again once answered; -1:
 * refused (c->claim_msg says why). */
static int claim_step(struct nbd_conn *c)
{
    struct nbd_backend *be = &c->srv->be;
    if (c->st.ro || !be->claim)
        return 1;
    if (c->claim_state == NBD_CLAIM_NONE) {
        c->claim_state = NBD_CLAIM_PENDING;
        be->claim(be->ctx, c->exp, c, claim_done_cb);
        return 0;
    }
    c->claim_state = NBD_CLAIM_NONE;
    if (c->claim_err < 0) {
        log_info("nbd %s: may not write to the export: %s", c->peer, c->claim_msg);
        return -1;
    }
    return 1;
}

static void enter_transmission(struct nbd_conn *c)
{
    c->phase = NBD_PHASE_TRANS;
    log_info("nbd %s: serving export (%llu bytes%s%s)", c->peer, (unsigned long long)c->st.size,
             c->st.ro ? ", read-only" : "", c->st.structured ? ", structured replies" : "");
}

/* May c see export name? Otherwise answer opt with the error (TLS_REQD or
 * POLICY) and return false. */
static bool export_allowed(struct nbd_conn *c, uint32_t opt, const char *name)
{
    uint32_t err = nbd_tls_check_export(c, name);
    if (err == 0)
        return true;
    char msg[160];
    if (err == NBD_REP_ERR_TLS_REQD) {
        snprintf(msg, sizeof(msg), "export '%.64s' requires TLS", name);
    } else {
        log_info("nbd %s: identity '%.64s' may not use export '%.64s': refused", c->peer,
                 nbd_tls_identity(c), name);
        snprintf(msg, sizeof(msg), "export '%.64s' is not available to this client", name);
    }
    opt_error(c, opt, err, msg);
    return false;
}

static void list_emit(void *arg, const char *name)
{
    struct nbd_conn *c = arg;
    if (nbd_tls_check_export(c, name))
        return; /* not shown to whom may not use it */
    uint8_t buf[4 + NBD_NAME_MAX];
    uint32_t n = (uint32_t)MIN(strlen(name), NBD_NAME_MAX);
    put_be32(buf, n);
    memcpy(buf + 4, name, n);
    opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + n);
}

/* Returns 1 when the option waits for the backend's claim (not consumed). */
static int do_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    struct nbd_opt_go go;
    const char *why;
    if (nbd_opt_go_parse(d, len, &go, &why) < 0) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, why);
        return 0;
    }
    char name[NBD_NAME_MAX + 1];
    memcpy(name, go.name, go.name_len);
    name[go.name_len] = 0;
    /* parsed again with the claim's answer: the export is chosen already */
    if (c->claim_state != NBD_CLAIM_DONE) {
        if (!export_allowed(c, opt, name))
            return 0;
        if (open_export(c, name) < 0) {
            char msg[128];
            snprintf(msg, sizeof(msg), "no export named '%.64s' is mapped to this SDC", name);
            opt_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
            return 0;
        }
    }
    if (opt == NBD_OPT_GO) {
        int k = claim_step(c);
        if (k == 0)
            return 1;
        if (k < 0) {
            opt_error(c, opt, NBD_REP_ERR_POLICY, c->claim_msg);
            return 0;
        }
    }
    uint8_t b[12 + NBD_NAME_MAX + 2];
    put_be16(b, NBD_INFO_EXPORT);
    put_be64(b + 2, c->st.size);
    put_be16(b + 10, nbd_export_flags(&c->st));
    opt_reply(c, opt, NBD_REP_INFO, b, 12);
    for (uint16_t i = 0; i < go.ninfo; i++) {
        uint16_t t = nbd_opt_go_info(&go, i);
        if (t == NBD_INFO_NAME) {
            put_be16(b, NBD_INFO_NAME);
            memcpy(b + 2, name, go.name_len);
            opt_reply(c, opt, NBD_REP_INFO, b, 2 + go.name_len);
        } else if (t == NBD_INFO_DESCRIPTION) {
            const char *desc = "Cairn volume";
            put_be16(b, NBD_INFO_DESCRIPTION);
            memcpy(b + 2, desc, strlen(desc));
            opt_reply(c, opt, NBD_REP_INFO, b, 2 + (uint32_t)strlen(desc));
        }
    }
    /* Block sizes go out whether asked or not: minimum 1 (the SDSs do
     * read-modify-write), preferred 4 KiB, at most 32 MiB a request. */
    put_be16(b, NBD_INFO_BLOCK_SIZE);
    put_be32(b + 2, 1);
    put_be32(b + 6, 4096);
    put_be32(b + 10, NBD_MAX_PAYLOAD);
    opt_reply(c, opt, NBD_REP_INFO, b, 14);
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
    if (opt == NBD_OPT_GO)
        enter_transmission(c);
    return 0;
}

static void do_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    if (!c->st.structured) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, "structured replies must be negotiated first");
        return;
    }
    struct nbd_opt_meta m;
    const char *why;
    if (nbd_opt_meta_parse(d, len, &m, &why) < 0) {
        opt_error(c, opt, NBD_REP_ERR_INVALID, why);
        return;
    }
    char name[NBD_NAME_MAX + 1];
    memcpy(name, m.name, m.name_len);
    name[m.name_len] = 0;
    if (!export_allowed(c, opt, name))
        return;
    /* the export must exist, but is not chosen by this */
    struct nbd_backend *be = &c->srv->be;
    uint64_t size;
    int ro;
    void *e = be->open(be->ctx, name, &size, &ro);
    if (!e) {
        opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export");
        return;
    }
    be->close(be->ctx, e);
    bool list = opt == NBD_OPT_LIST_META_CONTEXT;
    bool selected = nbd_opt_meta_selects_alloc(&m, list);
    if (selected) {
        static const char ctxname[] = "base:allocation";
        uint8_t b[4 + sizeof(ctxname)];
        put_be32(b, 1); /* its context id, the one BLOCK_STATUS replies carry */
        memcpy(b + 4, ctxname, sizeof(ctxname) - 1);
        opt_reply(c, opt, NBD_REP_META_CONTEXT, b, 4 + (uint32_t)sizeof(ctxname) - 1);
    }
    if (!list)
        c->st.meta_alloc = selected;
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* Returns 0, or -1 when the connection must close. */
static int do_starttls(struct nbd_conn *c, uint32_t len)
{
    if (nbd_tls_mode(c->srv) == NBD_TLS_OFF) {
        opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, "TLS is not enabled on this SDC");
    } else if (c->tls) {
        opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already negotiated");
    } else if (len) {
        opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
    } else {
        /* the ACK goes in plaintext, queued before anything TLS sends */
        opt_reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
        if (nbd_tls_start(c) < 0) {
            log_warn("nbd %s: out of memory for TLS; closing", c->peer);
            return -1;
        }
    }
    return 0;
}

/* Under --tls require, before TLS: what the spec's FORCEDTLS mode answers.
 * Returns 1 if opt may go on, 0 if it was refused, -1 to close. */
static int forced_tls(struct nbd_conn *c, uint32_t opt)
{
    if (nbd_tls_mode(c->srv) != NBD_TLS_REQUIRE || c->tls || opt == NBD_OPT_STARTTLS ||
        opt == NBD_OPT_ABORT)
        return 1;
    if (!c->plain_refused) {
        log_info("nbd %s: plaintext client refused: TLS is required (option %u before STARTTLS)",
                 c->peer, opt);
        c->plain_refused = true;
    }
    if (opt == NBD_OPT_EXPORT_NAME) {
        log_info("nbd %s: EXPORT_NAME without TLS; closing", c->peer);
        return -1; /* it has no error reply */
    }
    opt_error(c, opt, NBD_REP_ERR_TLS_REQD, "TLS is required: send NBD_OPT_STARTTLS first");
    return 0;
}

/* Handle one complete option. Returns 0, 1 when it waits for the backend's
 * claim (it is parsed again then), or -1 when the connection ends. */
static int do_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    int f = forced_tls(c, opt);
    if (f <= 0)
        return f;
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: {
        char name[NBD_NAME_MAX + 1];
        if (len > NBD_NAME_MAX)
            return -1;
        memcpy(name, d, len);
        name[len] = 0;
        if (c->claim_state != NBD_CLAIM_DONE) {
            if (nbd_tls_check_export(c, name)) {
                log_info(
                    "nbd %s: EXPORT_NAME '%.64s' is not available to identity '%.64s'; closing",
                    c->peer, name, nbd_tls_identity(c));
                return -1;
            }
            if (open_export(c, name) < 0) {
                log_info("nbd %s: EXPORT_NAME '%.64s' is not mapped here; closing", c->peer, name);
                return -1;
            }
        }
        int k = claim_step(c);
        if (k <= 0)
            return k == 0 ? 1 : -1; /* EXPORT_NAME has no error reply: close */
        uint8_t b[10 + 124] = {0};
        put_be64(b, c->st.size);
        put_be16(b + 8, nbd_export_flags(&c->st));
        nbd_conn_send(c, b, c->no_zeroes ? 10 : 134, NULL, 0, false);
        enter_transmission(c);
        return 0;
    }
    case NBD_OPT_ABORT: opt_reply(c, opt, NBD_REP_ACK, NULL, 0); return -1;
    case NBD_OPT_LIST:
        if (len) {
            opt_error(c, opt, NBD_REP_ERR_INVALID, "LIST takes no data");
            return 0;
        }
        c->srv->be.list(c->srv->be.ctx, list_emit, c);
        opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        return 0;
    case NBD_OPT_INFO:
    case NBD_OPT_GO: return do_info_go(c, opt, d, len);
    case NBD_OPT_STRUCTURED_REPLY:
        if (len)
            opt_error(c, opt, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
        else if (c->st.structured)
            opt_error(c, opt, NBD_REP_ERR_INVALID, "structured replies already negotiated");
        else {
            c->st.structured = true;
            opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        }
        return 0;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT: do_meta(c, opt, d, len); return 0;
    case NBD_OPT_STARTTLS: return do_starttls(c, len);
    default:
        /* its data was consumed with it, so the stream stays in sync */
        opt_error(c, opt, NBD_REP_ERR_UNSUP, "unsupported option");
        return 0;
    }
}

int nbd_handshake_input(struct nbd_conn *c, const uint8_t *p, size_t n)
{
    if (c->phase == NBD_PHASE_FLAGS) {
        if (n < 4)
            return 0;
        uint32_t f = get_be32(p);
        if (nbd_client_flags_parse(f, &c->no_zeroes) < 0) {
            log_info("nbd %s: unsupported client flags %#x; closing", c->peer, f);
            return -1;
        }
        c->phase = NBD_PHASE_OPTS;
        return 4;
    }
    if (c->claim_state == NBD_CLAIM_PENDING)
        return 0; /* nothing more until the backend answers */
    if (n < 16)
        return 0;
    if (get_be64(p) != NBD_IHAVEOPT) {
        log_info("nbd %s: bad option magic; closing", c->peer);
        return -1;
    }
    uint32_t opt = get_be32(p + 8), len = get_be32(p + 12);
    if (len > NBD_OPT_MAX) {
        log_warn("nbd %s: option %u of %u bytes is too long; closing", c->peer, opt, len);
        return -1;
    }
    if (n < 16 + (size_t)len)
        return 0;
    int r = do_option(c, opt, p + 16, len);
    if (r < 0)
        return -1;
    return r == 1 ? 0 : (int)(16 + len);
}
