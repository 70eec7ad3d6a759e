/* TLS credentials and policy of the NBD server (docs/nbd.md, "TLS"): the
 * X.509 files and the PSK file, loaded and checked once at start (a secret
 * that group or others may read is refused); the allow lists; and what a
 * new gnutls session of a connection is given. Sessions themselves, and the
 * transport under them, are nbd_tls.c's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "log.h"
#include "nbd_internal.h"
#include "util.h"

struct psk_entry {
    char *id;
    uint8_t *key;
    size_t key_len;
};

struct allow_entry {
    char *volume;
    char **ids;
    int nids;
};

struct nbd_tls {
    enum nbd_tls_mode mode;
    bool verify_peer;
    gnutls_certificate_credentials_t x509; /* or NULL */
    gnutls_psk_server_credentials_t psk;   /* or NULL */
    gnutls_priority_t prio;
    struct psk_entry *keys;
    int nkeys;
    struct allow_entry *allow;
    int nallow;
};

/* path must be a regular file that only its owner may read. 0 or -errno. */
static int check_private(int fd, const char *path)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        log_error("TLS: cannot stat %s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        log_error("TLS: %s is not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        log_error("TLS: %s is accessible to group or others (mode %03o); it holds a secret: "
                  "chmod 600 it",
                  path, (unsigned)(st.st_mode & 0777));
        return -EPERM;
    }
    return 0;
}

static int check_private_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        log_error("TLS: cannot open %s: %s", path, strerror(e));
        return -e;
    }
    int r = check_private(fd, path);
    close(fd);
    return r;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The psktool format: one "identity:hexkey" a line. 0 or -errno. */
static int load_psk(struct nbd_tls *t, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        log_error("TLS: cannot open PSK file %s: %s", path, strerror(e));
        return -e;
    }
    int r = check_private(fd, path);
    close(fd);
    if (r < 0)
        return r;
    char *buf;
    size_t len;
    if (file_read_all(path, &buf, &len) < 0) {
        log_error("TLS: cannot read PSK file %s", path);
        return -EIO;
    }
    int lineno = 0;
    r = 0;
    for (char *line = buf, *next; line && *line && r == 0; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        lineno++;
        line[strcspn(line, "\r")] = 0;
        if (!*line)
            continue;
        char *colon = strchr(line, ':');
        size_t hl = colon ? strlen(colon + 1) : 0;
        if (!colon || colon == line || hl == 0 || hl % 2 || colon - line >= NBD_TLS_NAME_MAX) {
            log_error("TLS: %s line %d: not 'identity:hexkey'", path, lineno);
            r = -EINVAL;
            break;
        }
        struct psk_entry *k = realloc(t->keys, sizeof(*k) * (size_t)(t->nkeys + 1));
        if (!k) {
            r = -ENOMEM;
            break;
        }
        t->keys = k;
        k = &t->keys[t->nkeys];
        k->id = strndup(line, (size_t)(colon - line));
        k->key = malloc(hl / 2);
        k->key_len = hl / 2;
        t->nkeys++;
        if (!k->id || !k->key) {
            r = -ENOMEM;
            break;
        }
        for (size_t i = 0; i < hl / 2; i++) {
            int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);
            if (hi < 0 || lo < 0) {
                log_error("TLS: %s line %d: the key is not hexadecimal", path, lineno);
                r = -EINVAL;
                break;
            }
            k->key[i] = (uint8_t)(hi << 4 | lo);
        }
    }
    explicit_bzero(buf, len);
    free(buf);
    if (r == 0 && t->nkeys == 0) {
        log_error("TLS: %s holds no key", path);
        r = -EINVAL;
    }
    return r;
}

static int psk_cb(gnutls_session_t s, const char *username, gnutls_datum_t *key)
{
    struct nbd_conn *c = gnutls_session_get_ptr(s);
    struct nbd_tls *t = c->srv->tls;
    for (int i = 0; i < t->nkeys; i++)
        if (!strcmp(t->keys[i].id, username)) {
            key->data = gnutls_malloc(t->keys[i].key_len);
            if (!key->data)
                return -1;
            memcpy(key->data, t->keys[i].key, t->keys[i].key_len);
            key->size = (unsigned)t->keys[i].key_len;
            return 0;
        }
    log_info("nbd %s: TLS: unknown PSK identity '%.64s'", c->peer, username);
    return -1;
}

static int load_x509(struct nbd_tls *t, const char *dir)
{
    char ca[4096], cert[4096], key[4096];
    snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
    snprintf(cert, sizeof(cert), "%s/server-cert.pem", dir);
    snprintf(key, sizeof(key), "%s/server-key.pem", dir);
    int r = check_private_path(key);
    if (r < 0)
        return r;
    if (gnutls_certificate_allocate_credentials(&t->x509) < 0)
        return -ENOMEM;
    r = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
    if (r < 0) {
        log_error("TLS: cannot load %s and %s: %s", cert, key, gnutls_strerror(r));
        return -EINVAL;
    }
    if (access(ca, F_OK) == 0) {
        r = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
        if (r <= 0) {
            log_error("TLS: cannot load CA certificates from %s: %s", ca,
                      r < 0 ? gnutls_strerror(r) : "none found");
            return -EINVAL;
        }
    } else if (t->verify_peer) {
        log_error("TLS: --tls-verify-peer needs %s", ca);
        return -ENOENT;
    }
    gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
    return 0;
}

/* "VOLUME=ID[,ID...]" */
static int parse_allow(struct nbd_tls *t, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) {
        log_error("TLS: --tls-allow %s: expected VOLUME=ID[,ID...]", spec);
        return -EINVAL;
    }
    struct allow_entry *a = NULL;
    for (int i = 0; i < t->nallow; i++)
        if (strlen(t->allow[i].volume) == (size_t)(eq - spec) &&
            !strncmp(t->allow[i].volume, spec, (size_t)(eq - spec)))
            a = &t->allow[i]; /* repeated: the lists add up */
    if (!a) {
        a = realloc(t->allow, sizeof(*a) * (size_t)(t->nallow + 1));
        if (!a)
            return -ENOMEM;
        t->allow = a;
        a = &t->allow[t->nallow++];
        *a = (struct allow_entry){.volume = strndup(spec, (size_t)(eq - spec))};
        if (!a->volume)
            return -ENOMEM;
    }
    for (const char *p = eq + 1; *p;) {
        size_t n = strcspn(p, ",");
        if (n) {
            char **ids = realloc(a->ids, sizeof(*ids) * (size_t)(a->nids + 1));
            if (!ids)
                return -ENOMEM;
            a->ids = ids;
            if (!(ids[a->nids] = strndup(p, n)))
                return -ENOMEM;
            a->nids++;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

static void tls_free(struct nbd_tls *t)
{
    if (t->x509)
        gnutls_certificate_free_credentials(t->x509);
    if (t->psk)
        gnutls_psk_free_server_credentials(t->psk);
    if (t->prio)
        gnutls_priority_deinit(t->prio);
    for (int i = 0; i < t->nkeys; i++) {
        free(t->keys[i].id);
        if (t->keys[i].key)
            explicit_bzero(t->keys[i].key, t->keys[i].key_len);
        free(t->keys[i].key);
    }
    free(t->keys);
    for (int i = 0; i < t->nallow; i++) {
        for (int j = 0; j < t->allow[i].nids; j++)
            free(t->allow[i].ids[j]);
        free(t->allow[i].ids);
        free(t->allow[i].volume);
    }
    free(t->allow);
    free(t);
}

int nbd_tls_new(const struct nbd_tls_opts *o, struct nbd_tls **out)
{
    *out = NULL;
    if (o->mode == NBD_TLS_OFF) {
        if (o->nallow || o->certs_dir || o->psk_file || o->verify_peer) {
            log_error("TLS: --tls-certs, --tls-psk, --tls-verify-peer and --tls-allow need "
                      "--tls on or --tls require");
            return -EINVAL;
        }
        return 0;
    }
    if (!o->certs_dir && !o->psk_file) {
        log_error("TLS: --tls %s needs credentials: --tls-certs DIR and/or --tls-psk FILE",
                  o->mode == NBD_TLS_ON ? "on" : "require");
        return -EINVAL;
    }
    if (o->verify_peer && !o->certs_dir) {
        log_error("TLS: --tls-verify-peer needs --tls-certs DIR (its ca-cert.pem)");
        return -EINVAL;
    }
    struct nbd_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->mode = o->mode;
    t->verify_peer = o->verify_peer;
    int r = 0;
    if (o->certs_dir)
        r = load_x509(t, o->certs_dir);
    if (r == 0 && o->psk_file) {
        r = load_psk(t, o->psk_file);
        if (r == 0 && gnutls_psk_allocate_server_credentials(&t->psk) < 0)
            r = -ENOMEM;
        if (r == 0) {
            gnutls_psk_set_server_credentials_function(t->psk, psk_cb);
            gnutls_psk_set_server_known_dh_params(t->psk, GNUTLS_SEC_PARAM_MEDIUM);
        }
    }
    /* TLS 1.2 at least (the spec's floor); PSK key exchanges only with PSK */
    const char *prio = t->psk
                           ? "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:+ECDHE-PSK:+DHE-PSK:+PSK"
                           : "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
    if (r == 0 && gnutls_priority_init(&t->prio, prio, NULL) < 0) {
        log_error("TLS: cannot set the priority string %s", prio);
        r = -EINVAL;
    }
    for (int i = 0; r == 0 && i < o->nallow; i++)
        r = parse_allow(t, o->allow[i]);
    if (r < 0) {
        tls_free(t);
        return r;
    }
    log_info("NBD TLS %s:%s%s%s%s, %d export(s) restricted to named clients",
             t->mode == NBD_TLS_ON ? "on (plaintext allowed)" : "required",
             t->x509 ? " X.509 from " : "", t->x509 ? o->certs_dir : "",
             t->verify_peer ? " (client certificates required)" : "",
             t->psk ? (t->x509 ? ", PSK" : " PSK") : "", t->nallow);
    *out = t;
    return 0;
}

enum nbd_tls_mode nbd_tls_mode(const struct nbd_server *s)
{
    return s->tls ? s->tls->mode : NBD_TLS_OFF;
}

int nbd_tls_mode_parse(const char *s, enum nbd_tls_mode *mode)
{
    if (!strcmp(s, "off"))
        *mode = NBD_TLS_OFF;
    else if (!strcmp(s, "on"))
        *mode = NBD_TLS_ON;
    else if (!strcmp(s, "require"))
        *mode = NBD_TLS_REQUIRE;
    else
        return -EINVAL;
    return 0;
}

void nbd_tls_setup_session(const struct nbd_tls *t, struct gnutls_session_int *s)
{
    gnutls_priority_set(s, t->prio);
    if (t->x509) {
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
        /* without --tls-verify-peer a certificate is asked for, not required:
         * one that verifies still names the client (for --tls-allow) */
        gnutls_certificate_server_set_request(s, t->verify_peer ? GNUTLS_CERT_REQUIRE
                                                                : GNUTLS_CERT_REQUEST);
        if (t->verify_peer)
            gnutls_session_set_verify_cert(s, NULL, 0);
        /* name no CA in the request: a client then sends the certificate it
         * has, and one from another CA is refused as such, not as missing */
        gnutls_certificate_send_x509_rdn_sequence(s, 1);
    }
    if (t->psk)
        gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
}

static const struct allow_entry *allow_find(const struct nbd_tls *t, const char *name)
{
    for (int i = 0; i < t->nallow; i++)
        if (!strcmp(t->allow[i].volume, name))
            return &t->allow[i];
    return NULL;
}

bool nbd_tls_restricted(const struct nbd_tls *t, const char *name)
{
    return allow_find(t, name) != NULL;
}

bool nbd_tls_permits(const struct nbd_tls *t, const char *name, const char *id)
{
    const struct allow_entry *a = allow_find(t, name);
    if (!a)
        return true;
    for (int j = 0; j < a->nids; j++)
        if (!strcmp(a->ids[j], id))
            return true;
    return false;
}
