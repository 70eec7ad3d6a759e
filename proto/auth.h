/* Credentials: who a component is, proved with a key its cluster's CA signed.
 *
 * A cluster has one CA: an Ed25519 key pair made once (`cairn credentials
 * init-ca`) and kept by the operator, never by a daemon. Every component
 * gets its own credential file (`cairn credentials issue`): a role, a name,
 * its own Ed25519 key pair, the CA's public key, and the CA's signature
 * over (role, name, public key). Anyone holding the CA's public key can so
 * check anyone's role and name, and no credential can be turned into
 * another role: an SDS's key cannot act as the CLI, an SDC's cannot
 * register an SDS. docs/security.md says why this and not a shared secret.
 *
 * How a link proves both ends (rpc_auth.c) is described there too. */
#ifndef CAIRN_AUTH_H
#define CAIRN_AUTH_H

#include <stddef.h>
#include <stdint.h>

enum auth_role {
    AUTH_ROLE_NONE = 0, /* not authenticated (no credentials configured) */
    AUTH_ROLE_MDM = 1,
    AUTH_ROLE_SDS = 2,
    AUTH_ROLE_SDC = 3,
    AUTH_ROLE_ADMIN = 4,   /* the CLI or an operator's tool: every request */
    AUTH_ROLE_MONITOR = 5, /* the CLI, read-only: queries and nothing else */
    AUTH_ROLE_COUNT
};
#define AUTH_ROLE_BIT(r) (1u << (r))

#define AUTH_NAME_MAX 64
#define AUTH_PK_LEN 32
#define AUTH_SK_LEN 64
#define AUTH_SIG_LEN 64

struct auth_cred {
    enum auth_role role;
    char name[AUTH_NAME_MAX + 1];
    uint8_t ca_pk[AUTH_PK_LEN];
    uint8_t pk[AUTH_PK_LEN];
    uint8_t sk[AUTH_SK_LEN];
    uint8_t sig[AUTH_SIG_LEN]; /* the CA's, over auth_cert_bytes() */
};

/* "mdm", "sds", "sdc", "admin", "monitor"; "none" for AUTH_ROLE_NONE. */
const char *auth_role_name(enum auth_role r);
/* The role named s, or AUTH_ROLE_NONE. */
enum auth_role auth_role_parse(const char *s);
/* 1 if name is a valid credential name: 1-64 of [A-Za-z0-9._-]. */
int auth_name_valid(const char *name);

/* The bytes the CA signs: a context string, role, name length, name, public
 * key. Returns their length (at most AUTH_CERT_MAX). */
#define AUTH_CERT_MAX (16 + 2 + AUTH_NAME_MAX + AUTH_PK_LEN)
size_t auth_cert_bytes(enum auth_role role, const char *name, const uint8_t pk[AUTH_PK_LEN],
                       uint8_t out[AUTH_CERT_MAX]);
/* 1 if sig is ca_pk's signature over (role, name, pk). */
int auth_cert_verify(const uint8_t ca_pk[AUTH_PK_LEN], enum auth_role role, const char *name,
                     const uint8_t pk[AUTH_PK_LEN], const uint8_t sig[AUTH_SIG_LEN]);

/* Load a credential file. It must be a regular file that neither its group
 * nor others may read or write (mode & 077 == 0): it holds a secret key.
 * 0, or -errno with a message in err. */
int auth_cred_load(const char *path, struct auth_cred *out, char *err, size_t errlen);

/* Make a CA key file at path (mode 0600; refuses to overwrite one). */
int auth_ca_create(const char *path, char *err, size_t errlen);
/* Issue a credential for (role, name) signed by the CA in ca_path, written
 * to out_path with mode 0600. 0, or -errno with a message in err. */
int auth_cred_issue(const char *ca_path, enum auth_role role, const char *name,
                    const char *out_path, char *err, size_t errlen);

/* The credential file a program was given: its --credentials option if set,
 * else $CAIRN_CREDENTIALS, else NULL. */
const char *auth_cred_path(const char *option);

#endif
