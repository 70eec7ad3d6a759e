/* The link handshake and the MACs of frames.
 *
 * Both ends hold a credential from the cluster's CA (auth.h). The client
 * opens with a fresh X25519 key (FT_AUTH_HELLO). The server answers with
 * its own fresh key, its credential and its signature over the transcript
 * (the CA, both fresh keys, its credential); the client checks the
 * credential against the CA and the signature, then sends its credential
 * and its signature over the transcript and its own credential
 * (FT_AUTH_PROOF); the server checks those and answers 0 or -EACCES with a
 * reason. Each side's role must be one the other accepts here
 * (rpc_handlers.peer_roles). A recorded handshake replays nothing: the
 * other side's fresh key differs every time, and both signatures cover it.
 *
 * Both sides then derive one key per direction from the two fresh keys
 * (crypto_kx), and every frame after carries a 16-byte MAC over the
 * frame's header, message and payload, under the direction's key with the
 * frame number as nonce. Two MACs, both an AEAD with the frame as
 * associated data and no plaintext: ChaCha20-Poly1305 (RFC 8439), which
 * every host has, and AES-256-GMAC (GCM, NIST SP 800-38D), twice as fast
 * where the CPU has AES-NI and carry-less multiply (gnutls's, through
 * nettle). The client offers what its CPU does fast, the server chooses,
 * and both offer and choice are in the signed transcript, so nothing
 * between them can change the choice. A frame changed, dropped, replayed
 * or reordered fails its check, and the connection closes. On a unix
 * socket, where nothing can come between the two ends, frames carry no
 * MAC. The data is not encrypted: docs/security.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <sodium.h>

#include "cairn.pb-c.h"
#include "log.h"
#include "rpc_internal.h"
#include "util.h"

#define AUTH_VERSION 1
#define AUTH_TIMEOUT_MS 10000

/* The server's side waits for: */
enum { HS_HELLO, HS_PROOF, HS_REFUSED };

static const struct auth_cred *proc_cred;

struct rpc_handshake {
    uint8_t eph_pk[crypto_kx_PUBLICKEYBYTES], eph_sk[crypto_kx_SECRETKEYBYTES];
    uint8_t peer_eph[crypto_kx_PUBLICKEYBYTES];
    uint8_t transcript[crypto_generichash_BYTES]; /* once both fresh keys are known */
    uint32_t macs_offered, mac_chosen;            /* RPC_MAC_* bits */
    int stage;                                    /* the server's: HS_* */
    rpc_close_cb on_close; /* the server's, held back until the peer is accepted */
    rpc_connect_cb cb;     /* the client's */
    void *arg;
};

/* The MACs this host offers and takes: GMAC only where it is fast and
 * constant-time (AES-NI and PCLMUL, as libsodium detects them). The
 * environment's CAIRN_LINK_MACS=poly1305 leaves GMAC out (docs/security.md),
 * so the two can be compared on one host. */
static uint32_t macs_here(void)
{
    static uint32_t macs;
    if (!macs) {
        const char *e = getenv("CAIRN_LINK_MACS");
        macs = RPC_MAC_POLY1305;
        if (crypto_aead_aes256gcm_is_available() && !(e && strcmp(e, "poly1305") == 0))
            macs |= RPC_MAC_GMAC;
    }
    return macs;
}

int rpc_auth_init(const struct auth_cred *cred)
{
    if (sodium_init() < 0)
        return -EIO;
    proc_cred = cred;
    return 0;
}

const struct auth_cred *rpc_auth_cred(void)
{
    return proc_cred;
}

enum auth_role rpc_peer_role(const struct rpc_conn *c)
{
    return c->auth == RPC_AUTH_ON ? c->peer_role : AUTH_ROLE_NONE;
}

const char *rpc_peer_name(const struct rpc_conn *c)
{
    return c->auth == RPC_AUTH_ON ? c->peer_name : "";
}

void rpc_auth_free(struct rpc_conn *c)
{
    if (c->hs) {
        sodium_memzero(c->hs, sizeof(*c->hs));
        free(c->hs);
        c->hs = NULL;
    }
}

void rpc_auth_forget(struct rpc_conn *c)
{
    if (c->tx_gmac)
        gnutls_hmac_deinit(c->tx_gmac, NULL);
    if (c->rx_gmac)
        gnutls_hmac_deinit(c->rx_gmac, NULL);
    c->tx_gmac = c->rx_gmac = NULL;
    sodium_memzero(c->tx_key, sizeof(c->tx_key));
    sodium_memzero(c->rx_key, sizeof(c->rx_key));
}

/* H(context, CA, client's key, server's key, server's credential, the MACs
 * offered, the MAC chosen). */
static void transcript(struct rpc_handshake *hs, const uint8_t *client_eph,
                       const uint8_t *server_eph, const Cairn__AuthCredential *srv)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(hs->transcript));
    crypto_generichash_update(&st, (const uint8_t *)"cairn-link-v1", 13);
    crypto_generichash_update(&st, proc_cred->ca_pk, AUTH_PK_LEN);
    crypto_generichash_update(&st, client_eph, crypto_kx_PUBLICKEYBYTES);
    crypto_generichash_update(&st, server_eph, crypto_kx_PUBLICKEYBYTES);
    uint8_t cert[AUTH_CERT_MAX];
    size_t n = auth_cert_bytes((enum auth_role)srv->role, srv->name, srv->public_key.data, cert);
    crypto_generichash_update(&st, cert, n);
    uint8_t macs[8];
    put_be32(macs, hs->macs_offered);
    put_be32(macs + 4, hs->mac_chosen);
    crypto_generichash_update(&st, macs, sizeof(macs));
    crypto_generichash_final(&st, hs->transcript, sizeof(hs->transcript));
}

/* What each side signs: its side's label, the transcript, and for the
 * client its own credential. */
static void to_sign(const struct rpc_handshake *hs, const char *side,
                    const Cairn__AuthCredential *client, uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)side, strlen(side));
    crypto_generichash_update(&st, hs->transcript, sizeof(hs->transcript));
    if (client) {
        uint8_t cert[AUTH_CERT_MAX];
        size_t n = auth_cert_bytes((enum auth_role)client->role, client->name,
                                   client->public_key.data, cert);
        crypto_generichash_update(&st, cert, n);
    }
    crypto_generichash_final(&st, out, crypto_generichash_BYTES);
}

static void own_credential(Cairn__AuthCredential *cr)
{
    cairn__auth_credential__init(cr);
    cr->role = proc_cred->role;
    cr->name = (char *)proc_cred->name;
    cr->public_key.data = (uint8_t *)proc_cred->pk;
    cr->public_key.len = AUTH_PK_LEN;
    cr->ca_signature.data = (uint8_t *)proc_cred->sig;
    cr->ca_signature.len = AUTH_SIG_LEN;
}

/* Check a peer's credential: signed by our CA, with a role this end takes.
 * NULL, or why not. */
static const char *check_credential(const struct rpc_conn *c, const Cairn__AuthCredential *cr)
{
    if (!cr || cr->public_key.len != AUTH_PK_LEN || cr->ca_signature.len != AUTH_SIG_LEN ||
        !cr->name || !auth_name_valid(cr->name) || cr->role == AUTH_ROLE_NONE ||
        cr->role >= AUTH_ROLE_COUNT)
        return "malformed credential";
    if (!auth_cert_verify(proc_cred->ca_pk, (enum auth_role)cr->role, cr->name, cr->public_key.data,
                          cr->ca_signature.data))
        return "credential not signed by this cluster's CA";
    if (c->handlers.peer_roles && !(c->handlers.peer_roles & AUTH_ROLE_BIT(cr->role)))
        return "role not allowed on this connection";
    return NULL;
}

/* 0, or -ENOMEM if gnutls could not key its GMAC. */
static int keys_derived(struct rpc_conn *c, const uint8_t *rx, const uint8_t *tx,
                        const Cairn__AuthCredential *peer, uint32_t mac)
{
    memcpy(c->rx_key, rx, 32);
    memcpy(c->tx_key, tx, 32);
    c->rx_seq = c->tx_seq = 0;
    c->mac_alg = mac;
    if (mac == RPC_MAC_GMAC) {
        gnutls_hmac_hd_t t = NULL, r = NULL;
        if (gnutls_hmac_init(&t, GNUTLS_MAC_AES_GMAC_256, tx, 32) < 0 ||
            gnutls_hmac_init(&r, GNUTLS_MAC_AES_GMAC_256, rx, 32) < 0) {
            if (t)
                gnutls_hmac_deinit(t, NULL);
            return -ENOMEM;
        }
        c->tx_gmac = t;
        c->rx_gmac = r;
    }
    /* A unix socket has no network to change, drop or replay frames on: the
     * kernel hands each byte from the one peer the handshake proved to the
     * other, so its frames need no MAC (and the SDSs' and SDCs' local I/O,
     * the hot path of a host that is both, pays none). */
    c->mac = c->u.h.type != UV_NAMED_PIPE;
    c->peer_role = (enum auth_role)peer->role;
    snprintf(c->peer_name, sizeof(c->peer_name), "%s", peer->name);
    return 0;
}

/* ---- the server's side ---- */

static void auth_timeout_cb(uv_timer_t *t)
{
    struct rpc_conn *c = t->data;
    if (c->auth != RPC_AUTH_HANDSHAKE)
        return;
    LOG_LIMITED(LOG_WARN, 5000, "rpc %s: no authentication within %d s; closing", c->peer,
                AUTH_TIMEOUT_MS / 1000);
    rpc_close(c);
}

void rpc_auth_server_start(struct rpc_conn *c)
{
    c->hs = calloc(1, sizeof(*c->hs));
    if (!c->hs) {
        rpc_close(c);
        return;
    }
    c->auth = RPC_AUTH_HANDSHAKE;
    /* it is not the server's connection until on_accept took it */
    c->hs->on_close = c->handlers.on_close;
    c->handlers.on_close = NULL;
    uv_timer_start(&c->timer, auth_timeout_cb, AUTH_TIMEOUT_MS, 0);
}

static void close_after_sent(void *arg, int status)
{
    (void)status;
    rpc_close(arg);
}

static void refuse(struct rpc_conn *c, const struct frame_hdr *h, const char *why)
{
    LOG_LIMITED(LOG_WARN, 1000, "rpc %s: refused: %s", c->peer, why);
    Cairn__AuthResult res = CAIRN__AUTH_RESULT__INIT;
    res.message = (char *)why;
    size_t len = cairn__auth_result__get_packed_size(&res);
    uint8_t buf[256];
    if (len > sizeof(buf) ||
        rpc_reply(c, h, -EACCES, buf, (uint32_t)cairn__auth_result__pack(&res, buf), NULL, 0,
                  close_after_sent, c) < 0)
        rpc_close(c);
    c->hs->stage = HS_REFUSED; /* nothing more is taken from it */
    rpc_pause(c, 1u << 29);
}

static void server_hello(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct rpc_handshake *hs = c->hs;
    Cairn__AuthHello *m = cairn__auth_hello__unpack(NULL, h->msg_len, msg);
    if (!m || m->version != AUTH_VERSION || m->ephemeral.len != crypto_kx_PUBLICKEYBYTES) {
        if (m)
            cairn__auth_hello__free_unpacked(m, NULL);
        refuse(c, h, "malformed or unsupported authentication hello");
        return;
    }
    memcpy(hs->peer_eph, m->ephemeral.data, sizeof(hs->peer_eph));
    hs->macs_offered = m->macs ? m->macs : RPC_MAC_POLY1305;
    cairn__auth_hello__free_unpacked(m, NULL);
    uint32_t common = hs->macs_offered & macs_here();
    if (!common) {
        refuse(c, h, "no frame MAC in common (the client offers none this server has)");
        return;
    }
    hs->mac_chosen = common & RPC_MAC_GMAC ? RPC_MAC_GMAC : RPC_MAC_POLY1305;
    crypto_kx_keypair(hs->eph_pk, hs->eph_sk);
    Cairn__AuthCredential cr;
    own_credential(&cr);
    transcript(hs, hs->peer_eph, hs->eph_pk, &cr);
    uint8_t digest[crypto_generichash_BYTES], sig[AUTH_SIG_LEN];
    to_sign(hs, "server", NULL, digest);
    crypto_sign_detached(sig, NULL, digest, sizeof(digest), proc_cred->sk);
    Cairn__AuthProof p = CAIRN__AUTH_PROOF__INIT;
    p.ephemeral.data = hs->eph_pk;
    p.ephemeral.len = sizeof(hs->eph_pk);
    p.credential = &cr;
    p.signature.data = sig;
    p.signature.len = sizeof(sig);
    p.mac = hs->mac_chosen;
    hs->stage = HS_PROOF;
    if (rpc_reply_pb(c, h, 0, &p.base) < 0)
        rpc_close(c);
}

static void server_proof(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    struct rpc_handshake *hs = c->hs;
    Cairn__AuthProof *m = cairn__auth_proof__unpack(NULL, h->msg_len, msg);
    const char *why = m ? check_credential(c, m->credential) : "malformed authentication proof";
    if (!why) {
        uint8_t digest[crypto_generichash_BYTES];
        to_sign(hs, "client", m->credential, digest);
        if (m->signature.len != AUTH_SIG_LEN ||
            crypto_sign_verify_detached(m->signature.data, digest, sizeof(digest),
                                        m->credential->public_key.data) != 0)
            why = "bad signature (wrong key, or a replayed handshake)";
    }
    uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
    if (!why && crypto_kx_server_session_keys(rx, tx, hs->eph_pk, hs->eph_sk, hs->peer_eph) != 0)
        why = "bad ephemeral key";
    if (why) {
        if (m)
            cairn__auth_proof__free_unpacked(m, NULL);
        refuse(c, h, why);
        return;
    }
    int r = keys_derived(c, rx, tx, m->credential, hs->mac_chosen);
    cairn__auth_proof__free_unpacked(m, NULL);
    sodium_memzero(rx, sizeof(rx));
    sodium_memzero(tx, sizeof(tx));
    if (r < 0) {
        refuse(c, h, "out of memory for the frame MAC");
        return;
    }
    rpc_close_cb on_close = hs->on_close;
    rpc_auth_free(c);
    rpc_server_forget(c); /* proved: the server's owner's from on_accept on */
    uv_timer_stop(&c->timer);
    /* the answer goes plain; every frame after it, both ways, has a MAC */
    if (rpc_reply(c, h, 0, NULL, 0, NULL, 0, NULL, NULL) < 0) {
        rpc_close(c);
        return;
    }
    c->auth = RPC_AUTH_ON;
    log_debug("rpc %s: authenticated as %s '%s'", c->peer, auth_role_name(c->peer_role),
              c->peer_name);
    if (c->handlers.on_accept && c->handlers.on_accept(c, c->data) < 0) {
        rpc_close(c); /* it never became the server's connection: no on_close */
        return;
    }
    c->handlers.on_close = on_close;
}

void rpc_auth_request(struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg,
                      uint8_t *payload)
{
    rpc_buf_free(payload);
    if (c->hs && c->hs->stage == HS_HELLO && h->type == FT_AUTH_HELLO && !h->payload_len) {
        server_hello(c, h, msg);
    } else if (c->hs && c->hs->stage == HS_PROOF && h->type == FT_AUTH_PROOF && !h->payload_len) {
        server_proof(c, h, msg);
    } else if (c->hs && c->hs->stage == HS_REFUSED) {
        rpc_close(c);
    } else {
        LOG_LIMITED(LOG_WARN, 1000,
                    "rpc %s: unauthenticated peer sent a frame of type %u; closing (does it "
                    "have this cluster's credentials?)",
                    c->peer, h->type);
        rpc_close(c);
    }
}

/* ---- the client's side ---- */

static void client_fail(struct rpc_conn *c, int status)
{
    struct rpc_handshake *hs = c->hs;
    rpc_connect_cb cb = hs->cb;
    void *arg = hs->arg;
    rpc_auth_free(c);
    c->handlers.on_close = NULL; /* never the caller's connection */
    rpc_close(c);
    cb(NULL, status, arg);
}

static void proof_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)payload_len;
    (void)arg;
    rpc_buf_free(payload);
    if (status < 0) {
        Cairn__AuthResult *res = msg ? cairn__auth_result__unpack(NULL, msg_len, msg) : NULL;
        if (msg)
            log_warn("rpc %s: the peer refused our credential: %s", c->peer,
                     res && res->message ? res->message : "no reason given");
        if (res)
            cairn__auth_result__free_unpacked(res, NULL);
        client_fail(c, msg ? -EACCES : status);
        return;
    }
    rpc_connect_cb cb = c->hs->cb;
    void *cb_arg = c->hs->arg;
    rpc_auth_free(c);
    c->auth = RPC_AUTH_ON;
    cb(c, 0, cb_arg);
}

static void hello_reply_cb(struct rpc_conn *c, int status, const uint8_t *msg, uint32_t msg_len,
                           uint8_t *payload, uint32_t payload_len, void *arg)
{
    (void)payload_len;
    (void)arg;
    rpc_buf_free(payload);
    struct rpc_handshake *hs = c->hs;
    if (status < 0 || !msg) {
        if (msg) {
            Cairn__AuthResult *res = cairn__auth_result__unpack(NULL, msg_len, msg);
            log_warn("rpc %s: the peer refused to authenticate: %s", c->peer,
                     res && res->message ? res->message : "no reason given");
            if (res)
                cairn__auth_result__free_unpacked(res, NULL);
        }
        client_fail(c, msg ? -EACCES : status);
        return;
    }
    Cairn__AuthProof *m = cairn__auth_proof__unpack(NULL, msg_len, msg);
    const char *why = m ? check_credential(c, m->credential) : "malformed authentication proof";
    if (!why && m->ephemeral.len != crypto_kx_PUBLICKEYBYTES)
        why = "malformed authentication proof";
    if (!why && (!(m->mac & hs->macs_offered) || (m->mac & (m->mac - 1))))
        why = "the server chose a frame MAC this end did not offer";
    uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
    if (!why) {
        memcpy(hs->peer_eph, m->ephemeral.data, sizeof(hs->peer_eph));
        hs->mac_chosen = m->mac;
        transcript(hs, hs->eph_pk, hs->peer_eph, m->credential);
        uint8_t digest[crypto_generichash_BYTES];
        to_sign(hs, "server", NULL, digest);
        if (m->signature.len != AUTH_SIG_LEN ||
            crypto_sign_verify_detached(m->signature.data, digest, sizeof(digest),
                                        m->credential->public_key.data) != 0)
            why = "bad signature from the server";
        else if (crypto_kx_client_session_keys(rx, tx, hs->eph_pk, hs->eph_sk, hs->peer_eph) != 0)
            why = "bad ephemeral key";
    }
    if (why) {
        log_warn("rpc %s: cannot authenticate the peer: %s; closing", c->peer, why);
        if (m)
            cairn__auth_proof__free_unpacked(m, NULL);
        client_fail(c, -EACCES);
        return;
    }
    int r = keys_derived(c, rx, tx, m->credential, hs->mac_chosen);
    cairn__auth_proof__free_unpacked(m, NULL);
    sodium_memzero(rx, sizeof(rx));
    sodium_memzero(tx, sizeof(tx));
    if (r < 0) {
        client_fail(c, r);
        return;
    }
    Cairn__AuthCredential cr;
    own_credential(&cr);
    uint8_t digest[crypto_generichash_BYTES], sig[AUTH_SIG_LEN];
    to_sign(hs, "client", &cr, digest);
    crypto_sign_detached(sig, NULL, digest, sizeof(digest), proc_cred->sk);
    Cairn__AuthProof p = CAIRN__AUTH_PROOF__INIT;
    p.credential = &cr;
    p.signature.data = sig;
    p.signature.len = sizeof(sig);
    if (rpc_call_pb(c, FT_AUTH_PROOF, &p.base, AUTH_TIMEOUT_MS, proof_reply_cb, NULL) < 0)
        client_fail(c, -ECONNRESET);
}

void rpc_auth_client_start(struct rpc_conn *c, rpc_connect_cb cb, void *arg)
{
    c->hs = calloc(1, sizeof(*c->hs));
    if (!c->hs) {
        c->handlers.on_close = NULL;
        rpc_close(c);
        cb(NULL, -ENOMEM, arg);
        return;
    }
    c->auth = RPC_AUTH_HANDSHAKE;
    c->hs->cb = cb;
    c->hs->arg = arg;
    crypto_kx_keypair(c->hs->eph_pk, c->hs->eph_sk);
    Cairn__AuthHello m = CAIRN__AUTH_HELLO__INIT;
    m.version = AUTH_VERSION;
    m.ephemeral.data = c->hs->eph_pk;
    m.ephemeral.len = sizeof(c->hs->eph_pk);
    m.macs = c->hs->macs_offered = macs_here();
    if (rpc_call_pb(c, FT_AUTH_HELLO, &m.base, AUTH_TIMEOUT_MS, hello_reply_cb, NULL) < 0)
        client_fail(c, -ECONNRESET);
}

/* ---- frame MACs ---- */

struct mac {
    crypto_onetimeauth_state st;
    gnutls_hmac_hd_t gmac; /* NULL: ChaCha20-Poly1305 */
    uint64_t len;
};

static void mac_init(struct mac *m, const uint8_t key[32], void *gmac, uint64_t seq)
{
    uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(seq >> (8 * i));
    m->gmac = gmac;
    if (gmac) {
        gnutls_hmac_set_nonce(m->gmac, nonce, sizeof(nonce));
        return;
    }
    uint8_t otk[crypto_onetimeauth_KEYBYTES];
    crypto_stream_chacha20_ietf(otk, sizeof(otk), nonce, key);
    crypto_onetimeauth_init(&m->st, otk);
    sodium_memzero(otk, sizeof(otk));
    m->len = 0;
}

static void mac_update(struct mac *m, const void *p, size_t n)
{
    if (m->gmac) {
        gnutls_hmac(m->gmac, p, n);
        return;
    }
    crypto_onetimeauth_update(&m->st, p, n);
    m->len += n;
}

/* RFC 8439 section 2.8 with the frame as AAD and no ciphertext; GMAC's
 * padding and lengths are gnutls's. */
static void mac_final(struct mac *m, uint8_t tag[FRAME_TAG_SIZE])
{
    static const uint8_t zero[16];
    if (m->gmac) {
        gnutls_hmac_output(m->gmac, tag);
        return;
    }
    if (m->len % 16)
        crypto_onetimeauth_update(&m->st, zero, 16 - m->len % 16);
    uint8_t lens[16] = {0};
    for (int i = 0; i < 8; i++)
        lens[i] = (uint8_t)(m->len >> (8 * i));
    crypto_onetimeauth_update(&m->st, lens, sizeof(lens));
    crypto_onetimeauth_final(&m->st, tag);
}

void rpc_auth_tag_tx(struct rpc_conn *c, const uint8_t *head, size_t head_len,
                     const struct iovec *pl, int npl, uint8_t tag[FRAME_TAG_SIZE])
{
    struct mac m;
    mac_init(&m, c->tx_key, c->tx_gmac, c->tx_seq++);
    mac_update(&m, head, head_len);
    for (int i = 0; i < npl; i++)
        mac_update(&m, pl[i].iov_base, pl[i].iov_len);
    mac_final(&m, tag);
}

int rpc_auth_check_rx(struct rpc_conn *c)
{
    struct mac m;
    uint8_t tag[FRAME_TAG_SIZE];
    mac_init(&m, c->rx_key, c->rx_gmac, c->rx_seq++);
    mac_update(&m, c->hbuf, FRAME_HDR_SIZE);
    if (c->hdr.msg_len)
        mac_update(&m, c->msg, c->hdr.msg_len);
    if (c->hdr.payload_len)
        mac_update(&m, c->payload, c->hdr.payload_len);
    mac_final(&m, tag);
    if (crypto_verify_16(tag, c->rx_tag) != 0) {
        LOG_LIMITED(LOG_WARN, 1000,
                    "rpc %s: a frame failed its integrity check (changed, replayed or "
                    "reordered on the way); closing",
                    c->peer);
        return -EBADMSG;
    }
    return 0;
}

int rpc_auth_setup(const char *option, enum auth_role want, struct auth_cred *cred)
{
    const char *path = auth_cred_path(option);
    if (!path) {
        log_error("no credential: give --credentials FILE or set $CAIRN_CREDENTIALS (a %s "
                  "credential from 'cairn credentials issue')",
                  auth_role_name(want));
        return -EINVAL;
    }
    char err[512];
    int r = auth_cred_load(path, cred, err, sizeof(err));
    if (r < 0) {
        log_error("%s", err);
        return r;
    }
    if (cred->role != want) {
        log_error("%s is the credential of %s '%s', not of an %s", path, auth_role_name(cred->role),
                  cred->name, auth_role_name(want));
        return -EINVAL;
    }
    return rpc_auth_init(cred);
}
