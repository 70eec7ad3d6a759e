/* TLS for the NBD server (NBD_OPT_STARTTLS; docs/nbd.md, "TLS"), with gnutls.
 *
 * The socket stays a libuv stream: libuv reads raw bytes into the
 * connection's raw buffer, gnutls pulls them from there (pull_cb) and the
 * plaintext it returns goes into c->in, where the parser of nbd_conn.c finds
 * it as if it had been read. Output goes the other way: nbd_conn_send()
 * hands plaintext to gnutls_record_send(), whose records (push_cb) are
 * copied into buffers queued with nbd_conn_send_raw(), so they take the
 * same write batching and count as reply bytes for flow control.
 *
 * Bounds: every raw read is decrypted at once (a read is at most one input
 * chunk, plus a partial record), so gnutls never holds plaintext of its own
 * and c->in grows by one read at a time, as without TLS; the read-ahead
 * limits of nbd_flow.c stop reading as before. Ciphertext queued counts in
 * c->tx until written, so a client that stops reading is stopped as before.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "nbd_internal.h"
#include "rpc.h"
#include "util.h"

#define RAW_CHUNK (64u << 10) /* a raw read */
#define RECORD_MAX 16384      /* plaintext in one TLS record */
#define OUT_MAX (1u << 20)    /* the largest ciphertext buffer */
#define NAMES_MAX 8           /* identities kept per client: CN and DNS SANs */
_Static_assert(NBD_WREQ_HDR_LARGE < RECORD_MAX, "a reply header fits a record");

struct nbd_tls_conn {
    gnutls_session_t s;
    bool handshaking;
    bool failed;  /* a send failed: the connection is closing, nothing more goes */
    uint8_t *raw; /* raw[raw_off, raw_len): read, not yet pulled by gnutls */
    size_t raw_off, raw_len, raw_cap;
    uint8_t *out; /* ciphertext being gathered (an rpc_buf), or NULL */
    size_t out_len, out_cap;
    size_t want; /* ciphertext still expected from this send (buffer sizing) */
    char names[NAMES_MAX][NBD_TLS_NAME_MAX]; /* the client's identities */
    int nnames;
};

/* ---- the transport: raw bytes in, records out ---- */

static ssize_t pull_cb(gnutls_transport_ptr_t p, void *data, size_t len)
{
    struct nbd_conn *c = p;
    struct nbd_tls_conn *t = c->tls;
    size_t k = MIN(len, t->raw_len - t->raw_off);
    if (k == 0) {
        gnutls_transport_set_errno(t->s, EAGAIN);
        return -1;
    }
    memcpy(data, t->raw + t->raw_off, k);
    t->raw_off += k;
    if (t->raw_off == t->raw_len)
        t->raw_off = t->raw_len = 0;
    return (ssize_t)k;
}

static int pull_timeout_cb(gnutls_transport_ptr_t p, unsigned ms)
{
    struct nbd_conn *c = p;
    (void)ms;
    return c->tls->raw_len > c->tls->raw_off; /* never waits: the loop does */
}

/* Queue the ciphertext gathered so far. */
static void out_flush(struct nbd_conn *c)
{
    struct nbd_tls_conn *t = c->tls;
    if (t->out && t->out_len)
        nbd_conn_send_raw(c, t->out, t->out_len, t->out_cap);
    else
        rpc_buf_free(t->out);
    t->out = NULL;
    t->out_len = t->out_cap = 0;
}

static ssize_t push_cb(gnutls_transport_ptr_t p, const void *data, size_t len)
{
    struct nbd_conn *c = p;
    struct nbd_tls_conn *t = c->tls;
    const uint8_t *d = data;
    for (size_t left = len; left;) {
        if (!t->out) {
            size_t cap = MIN(MAX(left, t->want), (size_t)OUT_MAX);
            t->out = rpc_buf_alloc(cap);
            if (!t->out) {
                gnutls_transport_set_errno(t->s, ENOMEM);
                return -1;
            }
            t->out_cap = cap;
            t->want = t->want > cap ? t->want - cap : 0;
        }
        size_t k = MIN(left, t->out_cap - t->out_len);
        memcpy(t->out + t->out_len, d, k);
        t->out_len += k;
        d += k;
        left -= k;
        if (t->out_len == t->out_cap)
            out_flush(c);
    }
    return (ssize_t)len;
}

int nbd_tls_start(struct nbd_conn *c)
{
    struct nbd_tls_conn *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    if (gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0) {
        free(t);
        return -ENOMEM;
    }
    c->tls = t;
    t->handshaking = true;
    nbd_tls_setup_session(c->srv->tls, t->s);
    gnutls_session_set_ptr(t->s, c);
    gnutls_transport_set_ptr(t->s, c);
    gnutls_transport_set_pull_function(t->s, pull_cb);
    gnutls_transport_set_pull_timeout_function(t->s, pull_timeout_cb);
    gnutls_transport_set_push_function(t->s, push_cb);
    /* What was negotiated in plaintext does not carry over (docs/nbd.md, "TLS"). */
    c->st.structured = false;
    c->st.meta_alloc = false;
    return 0;
}

bool nbd_tls_active(const struct nbd_conn *c)
{
    return c->tls && !c->tls->handshaking;
}

bool nbd_tls_handshaking(const struct nbd_conn *c)
{
    return c->tls && c->tls->handshaking;
}

static int raw_room(struct nbd_tls_conn *t, size_t need)
{
    if (t->raw_off && t->raw_off == t->raw_len)
        t->raw_off = t->raw_len = 0;
    if (t->raw_cap - t->raw_len >= need)
        return 0;
    if (t->raw_off) {
        memmove(t->raw, t->raw + t->raw_off, t->raw_len - t->raw_off);
        t->raw_len -= t->raw_off;
        t->raw_off = 0;
        if (t->raw_cap - t->raw_len >= need)
            return 0;
    }
    uint8_t *n = realloc(t->raw, t->raw_len + need);
    if (!n)
        return -ENOMEM;
    t->raw = n;
    t->raw_cap = t->raw_len + need;
    return 0;
}

void nbd_tls_alloc(struct nbd_conn *c, uv_buf_t *buf)
{
    struct nbd_tls_conn *t = c->tls;
    if (raw_room(t, RAW_CHUNK) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)t->raw + t->raw_len, (unsigned)(t->raw_cap - t->raw_len));
}

int nbd_tls_adopt(struct nbd_conn *c, const uint8_t *p, size_t n)
{
    struct nbd_tls_conn *t = c->tls;
    if (raw_room(t, n) < 0)
        return -ENOMEM;
    memcpy(t->raw + t->raw_len, p, n);
    t->raw_len += n;
    return 0;
}

/* The names a verified client certificate gives: its CN, its DNS SANs. */
static void cert_names(struct nbd_conn *c, struct nbd_tls_conn *t)
{
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(t->s, &n);
    if (!certs || n == 0)
        return;
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(t->s, &status) < 0 || status != 0) {
        gnutls_datum_t why = {0};
        gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
        log_info("nbd %s: TLS: client certificate not verified (%s): no identity", c->peer,
                 why.data ? (char *)why.data : "error");
        gnutls_free(why.data);
        return;
    }
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
        size_t len = NBD_TLS_NAME_MAX;
        if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0,
                                          t->names[t->nnames], &len) == 0)
            t->nnames++;
        if (t->nnames && strlen(t->names[0]) != len)
            t->nnames = 0; /* a NUL inside: not a name */
        for (unsigned i = 0; t->nnames < NAMES_MAX; i++) {
            len = NBD_TLS_NAME_MAX - 1;
            int type =
                gnutls_x509_crt_get_subject_alt_name(crt, i, t->names[t->nnames], &len, NULL);
            if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
                continue; /* too long to be one of ours */
            if (type < 0)
                break;
            t->names[t->nnames][len] = 0;
            if (type == GNUTLS_SAN_DNSNAME && strlen(t->names[t->nnames]) == len)
                t->nnames++;
        }
    }
    gnutls_x509_crt_deinit(crt);
}

static const char *identity(const struct nbd_tls_conn *t)
{
    return t->nnames ? t->names[0] : "(none)";
}

static int handshake(struct nbd_conn *c)
{
    struct nbd_tls_conn *t = c->tls;
    int r;
    do
        r = gnutls_handshake(t->s);
    while (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(r));
    if (r == GNUTLS_E_AGAIN) {
        out_flush(c);
        return 0;
    }
    if (r < 0) {
        log_warn("nbd %s: TLS handshake failed: %s", c->peer, gnutls_strerror(r));
        gnutls_alert_send_appropriate(t->s, r);
        out_flush(c);
        return -1;
    }
    out_flush(c);
    t->handshaking = false;
    if (gnutls_auth_get_type(t->s) == GNUTLS_CRD_PSK) {
        const char *u = gnutls_psk_server_get_username(t->s);
        if (u)
            snprintf(t->names[t->nnames++], NBD_TLS_NAME_MAX, "%s", u);
    } else {
        cert_names(c, t);
    }
    char *desc = gnutls_session_get_desc(t->s);
    log_info("nbd %s: TLS established (%s), client identity %s", c->peer, desc ? desc : "?",
             identity(t));
    gnutls_free(desc);
    return 0;
}

int nbd_tls_input(struct nbd_conn *c, size_t n)
{
    struct nbd_tls_conn *t = c->tls;
    t->raw_len += n;
    if (t->handshaking && (handshake(c) < 0))
        return -EPROTO;
    /* until gnutls asks for more than the raw buffer holds: it may have
     * pulled several records at once, so what is left in raw says nothing */
    while (!t->handshaking) {
        /* room for a whole record, as nbd_conn.c's own reads would take */
        if (c->in_cap - c->in_off - c->in_len < RECORD_MAX) {
            size_t cap = c->in_off + c->in_len + RECORD_MAX;
            uint8_t *b = realloc(c->in, cap);
            if (!b)
                return -ENOMEM;
            c->in = b;
            c->in_cap = cap;
        }
        ssize_t k = gnutls_record_recv(t->s, c->in + c->in_off + c->in_len,
                                       c->in_cap - c->in_off - c->in_len);
        if (k > 0) {
            c->in_len += (size_t)k;
        } else if (k == 0 || k == GNUTLS_E_PREMATURE_TERMINATION) {
            return -EPIPE; /* close_notify, or gone without it: the peer is gone */
        } else if (k == GNUTLS_E_AGAIN) {
            break;
        } else if (k == GNUTLS_E_REHANDSHAKE) {
            /* TLS 1.2 renegotiation: not offered (the session keeps going) */
            gnutls_alert_send(t->s, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
        } else if (gnutls_error_is_fatal((int)k)) {
            log_warn("nbd %s: TLS: %s; closing", c->peer, gnutls_strerror((int)k));
            return -EPROTO;
        }
    }
    out_flush(c); /* a key update or alert gnutls answered */
    return 0;
}

void nbd_tls_send(struct nbd_conn *c, const void *hdr, size_t hlen, const uint8_t *data,
                  size_t dlen)
{
    struct nbd_tls_conn *t = c->tls;
    if (t->failed)
        return;
    size_t total = hlen + dlen;
    t->want = total + (total / RECORD_MAX + 1) * (gnutls_record_overhead_size(t->s) + 5);
    /* the header shares the first record with the data */
    uint8_t first[RECORD_MAX];
    size_t k = MIN(dlen, (size_t)RECORD_MAX - hlen);
    memcpy(first, hdr, hlen);
    if (k)
        memcpy(first + hlen, data, k);
    const uint8_t *p = first;
    size_t left = hlen + k;
    for (int part = 0; part < 2; part++) {
        while (left) {
            ssize_t r = gnutls_record_send(t->s, p, left);
            if (r < 0 && r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
                log_warn("nbd %s: TLS: send: %s; closing", c->peer, gnutls_strerror((int)r));
                out_flush(c);
                t->want = 0;
                t->failed = true;
                nbd_conn_abort(c);
                return;
            }
            if (r > 0) {
                p += r;
                left -= (size_t)r;
            }
        }
        p = data + k;
        left = dlen - k;
    }
    out_flush(c);
    t->want = 0;
}

void nbd_tls_bye(struct nbd_conn *c)
{
    if (!nbd_tls_active(c) || c->tls->failed)
        return;
    gnutls_bye(c->tls->s, GNUTLS_SHUT_WR); /* close_notify: push never blocks */
    out_flush(c);
}

void nbd_tls_conn_free(struct nbd_conn *c)
{
    struct nbd_tls_conn *t = c->tls;
    if (!t)
        return;
    gnutls_deinit(t->s);
    free(t->raw);
    rpc_buf_free(t->out);
    free(t);
    c->tls = NULL;
}

/* ---- who may use what ---- */

uint32_t nbd_tls_check_export(const struct nbd_conn *c, const char *name)
{
    const struct nbd_tls *cfg = c->srv->tls;
    if (!cfg || !nbd_tls_restricted(cfg, name))
        return 0;
    /* a restricted export is TLS-only (the spec's SELECTIVETLS term) */
    if (!nbd_tls_active(c))
        return NBD_REP_ERR_TLS_REQD;
    for (int i = 0; i < c->tls->nnames; i++)
        if (nbd_tls_permits(cfg, name, c->tls->names[i]))
            return 0;
    return NBD_REP_ERR_POLICY;
}

const char *nbd_tls_identity(const struct nbd_conn *c)
{
    return c->tls ? identity(c->tls) : "(plaintext)";
}
