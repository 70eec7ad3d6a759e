/* Credentials: the CA, issuing, loading and checking (auth.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "auth.h"
#include "util.h"

static const char *const role_names[AUTH_ROLE_COUNT] = {"none", "mdm",   "sds",
                                                        "sdc",  "admin", "monitor"};

const char *auth_role_name(enum auth_role r)
{
    return (unsigned)r < AUTH_ROLE_COUNT ? role_names[r] : "unknown";
}

enum auth_role auth_role_parse(const char *s)
{
    for (int r = AUTH_ROLE_MDM; r < AUTH_ROLE_COUNT; r++)
        if (strcmp(s, role_names[r]) == 0)
            return (enum auth_role)r;
    return AUTH_ROLE_NONE;
}

int auth_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > AUTH_NAME_MAX)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

size_t auth_cert_bytes(enum auth_role role, const char *name, const uint8_t pk[AUTH_PK_LEN],
                       uint8_t out[AUTH_CERT_MAX])
{
    static const char ctx[16] = "cairn-cred-v1";
    size_t n = strnlen(name, AUTH_NAME_MAX);
    memcpy(out, ctx, sizeof(ctx));
    out[16] = (uint8_t)role;
    out[17] = (uint8_t)n;
    memcpy(out + 18, name, n);
    memcpy(out + 18 + n, pk, AUTH_PK_LEN);
    return 18 + n + AUTH_PK_LEN;
}

int auth_cert_verify(const uint8_t ca_pk[AUTH_PK_LEN], enum auth_role role, const char *name,
                     const uint8_t pk[AUTH_PK_LEN], const uint8_t sig[AUTH_SIG_LEN])
{
    uint8_t buf[AUTH_CERT_MAX];
    size_t n = auth_cert_bytes(role, name, pk, buf);
    return crypto_sign_verify_detached(sig, buf, n, ca_pk) == 0;
}

/* ---- key files: "key value" lines, '#' comments, hex for binary ---- */

struct kv {
    const char *key;
    char *val; /* points into the file's buffer; NULL if absent */
};

/* Read a secret file: regular, and mode & 077 == 0. */
static int read_secret_file(const char *path, char **buf, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s is not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        snprintf(err, errlen,
                 "%s holds a secret key but its group or others may read it (mode %04o): "
                 "run chmod 600 %s",
                 path, (unsigned)(st.st_mode & 07777), path);
        return -EPERM;
    }
    if (st.st_size > 65536) {
        close(fd);
        snprintf(err, errlen, "%s is too large for a key file", path);
        return -EFBIG;
    }
    char *b = malloc((size_t)st.st_size + 1);
    ssize_t n = b ? read(fd, b, (size_t)st.st_size) : -1;
    close(fd);
    if (n < 0) {
        free(b);
        snprintf(err, errlen, "cannot read %s", path);
        return -EIO;
    }
    b[n] = 0;
    *buf = b;
    return 0;
}

static void parse_kv(char *buf, struct kv *kv, size_t nkv)
{
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        char *sp = strchr(line, ' ');
        if (!sp)
            continue;
        *sp = 0;
        for (size_t i = 0; i < nkv; i++)
            if (strcmp(line, kv[i].key) == 0)
                kv[i].val = sp + 1 + strspn(sp + 1, " ");
    }
}

static int hex_field(const char *val, uint8_t *out, size_t len)
{
    size_t got = 0;
    if (!val || strlen(val) != 2 * len)
        return -1;
    if (sodium_hex2bin(out, len, val, 2 * len, NULL, &got, NULL) != 0 || got != len)
        return -1;
    return 0;
}

int auth_cred_load(const char *path, struct auth_cred *out, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -EIO;
    }
    char *buf;
    int r = read_secret_file(path, &buf, err, errlen);
    if (r < 0)
        return r;
    struct kv kv[] = {{"version", NULL},  {"role", NULL},       {"name", NULL},
                      {"ca-key", NULL},   {"public-key", NULL}, {"secret-key", NULL},
                      {"signature", NULL}};
    parse_kv(buf, kv, ARRAY_SIZE(kv));
    memset(out, 0, sizeof(*out));
    r = -EINVAL;
    if (!kv[0].val || strcmp(kv[0].val, "1") != 0) {
        snprintf(err, errlen, "%s is not a cairn credential file (version 1)", path);
    } else if (!kv[1].val || (out->role = auth_role_parse(kv[1].val)) == AUTH_ROLE_NONE) {
        snprintf(err, errlen, "%s: unknown role '%s'", path, kv[1].val ? kv[1].val : "");
    } else if (!kv[2].val || !auth_name_valid(kv[2].val)) {
        snprintf(err, errlen, "%s: missing or invalid name", path);
    } else if (hex_field(kv[3].val, out->ca_pk, AUTH_PK_LEN) < 0 ||
               hex_field(kv[4].val, out->pk, AUTH_PK_LEN) < 0 ||
               hex_field(kv[5].val, out->sk, AUTH_SK_LEN) < 0 ||
               hex_field(kv[6].val, out->sig, AUTH_SIG_LEN) < 0) {
        snprintf(err, errlen, "%s: a key or signature is missing or malformed", path);
    } else {
        snprintf(out->name, sizeof(out->name), "%s", kv[2].val);
        uint8_t pk[AUTH_PK_LEN];
        crypto_sign_ed25519_sk_to_pk(pk, out->sk);
        if (sodium_memcmp(pk, out->pk, AUTH_PK_LEN) != 0)
            snprintf(err, errlen, "%s: the secret key does not match the public key", path);
        else if (!auth_cert_verify(out->ca_pk, out->role, out->name, out->pk, out->sig))
            snprintf(err, errlen, "%s: the CA's signature does not match this credential", path);
        else
            r = 0;
    }
    sodium_memzero(buf, strlen(buf));
    free(buf);
    if (r < 0)
        sodium_memzero(out, sizeof(*out));
    return r;
}

static void hex(char *out, const uint8_t *b, size_t n)
{
    sodium_bin2hex(out, 2 * n + 1, b, n);
}

/* Write a secret file: mode 0600, never over an existing file. */
static int write_secret_file(const char *path, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int r = (n == (ssize_t)len && fsync(fd) == 0) ? 0 : -EIO;
    close(fd);
    if (r < 0) {
        unlink(path);
        snprintf(err, errlen, "cannot write %s", path);
    }
    return r;
}

int auth_ca_create(const char *path, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -EIO;
    }
    uint8_t pk[AUTH_PK_LEN], sk[AUTH_SK_LEN];
    crypto_sign_keypair(pk, sk);
    char hpk[2 * AUTH_PK_LEN + 1], hsk[2 * AUTH_SK_LEN + 1], text[512];
    hex(hpk, pk, sizeof(pk));
    hex(hsk, sk, sizeof(sk));
    snprintf(text, sizeof(text),
             "# cairn cluster CA: it signs every credential of the cluster. Keep it secret,\n"
             "# on the operator's host only; no daemon needs it.\n"
             "version 1\nca-public-key %s\nca-secret-key %s\n",
             hpk, hsk);
    int r = write_secret_file(path, text, err, errlen);
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(hsk, sizeof(hsk));
    sodium_memzero(text, sizeof(text));
    return r;
}

int auth_cred_issue(const char *ca_path, enum auth_role role, const char *name,
                    const char *out_path, char *err, size_t errlen)
{
    if (role == AUTH_ROLE_NONE || role >= AUTH_ROLE_COUNT || !auth_name_valid(name)) {
        snprintf(err, errlen, "a credential needs a role and a name of 1-64 [A-Za-z0-9._-]");
        return -EINVAL;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -EIO;
    }
    char *buf;
    int r = read_secret_file(ca_path, &buf, err, errlen);
    if (r < 0)
        return r;
    struct kv kv[] = {{"version", NULL}, {"ca-public-key", NULL}, {"ca-secret-key", NULL}};
    parse_kv(buf, kv, ARRAY_SIZE(kv));
    uint8_t ca_pk[AUTH_PK_LEN], ca_sk[AUTH_SK_LEN];
    if (!kv[0].val || strcmp(kv[0].val, "1") != 0 ||
        hex_field(kv[1].val, ca_pk, sizeof(ca_pk)) < 0 ||
        hex_field(kv[2].val, ca_sk, sizeof(ca_sk)) < 0) {
        sodium_memzero(buf, strlen(buf));
        free(buf);
        snprintf(err, errlen, "%s is not a cairn CA key file", ca_path);
        return -EINVAL;
    }
    sodium_memzero(buf, strlen(buf));
    free(buf);
    uint8_t pk[AUTH_PK_LEN], sk[AUTH_SK_LEN], sig[AUTH_SIG_LEN], cert[AUTH_CERT_MAX];
    crypto_sign_keypair(pk, sk);
    size_t n = auth_cert_bytes(role, name, pk, cert);
    crypto_sign_detached(sig, NULL, cert, n, ca_sk);
    char hca[2 * AUTH_PK_LEN + 1], hpk[2 * AUTH_PK_LEN + 1], hsk[2 * AUTH_SK_LEN + 1],
        hsig[2 * AUTH_SIG_LEN + 1], text[1024];
    hex(hca, ca_pk, sizeof(ca_pk));
    hex(hpk, pk, sizeof(pk));
    hex(hsk, sk, sizeof(sk));
    hex(hsig, sig, sizeof(sig));
    snprintf(text, sizeof(text),
             "# cairn credential for %s '%s': keep it secret (mode 0600)\n"
             "version 1\nrole %s\nname %s\nca-key %s\npublic-key %s\nsecret-key %s\n"
             "signature %s\n",
             auth_role_name(role), name, auth_role_name(role), name, hca, hpk, hsk, hsig);
    r = write_secret_file(out_path, text, err, errlen);
    sodium_memzero(ca_sk, sizeof(ca_sk));
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(hsk, sizeof(hsk));
    sodium_memzero(text, sizeof(text));
    return r;
}

const char *auth_cred_path(const char *option)
{
    if (option && *option)
        return option;
    const char *env = getenv("CAIRN_CREDENTIALS");
    return env && *env ? env : NULL;
}
