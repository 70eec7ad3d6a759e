/* cairn credentials init-ca|issue|show, and the CLI's own credential. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "auth.h"
#include "cli.h"
#include "rpc.h"

int cli_run_init_ca(const struct cli_command *c, const struct cli_args *a,
                    const struct cli_env *env)
{
    (void)c;
    char err[512];
    if (auth_ca_create(a->args[0], err, sizeof(err)) < 0)
        return cli_fail("%s", err);
    if (env->json)
        printf("{\"ca\":\"%s\"}\n", a->args[0]);
    else
        printf("cluster CA written to %s (mode 0600): keep it off the cluster's hosts\n",
               a->args[0]);
    return 0;
}

int cli_run_issue(const struct cli_command *c, const struct cli_args *a, const struct cli_env *env)
{
    (void)c;
    const char *role_s = cli_args_get(a, "--role"), *name = cli_args_get(a, "--name");
    const char *out = cli_args_get(a, "--out"), *ca = cli_args_get(a, "--ca");
    enum auth_role role = auth_role_parse(role_s);
    if (role == AUTH_ROLE_NONE)
        return cli_fail("unknown role '%s' (want mdm, sds, sdc, admin or monitor)", role_s);
    if (!auth_name_valid(name))
        return cli_fail("invalid name '%s' (1-64 of A-Z a-z 0-9 . _ -)", name);
    char err[512];
    if (auth_cred_issue(ca, role, name, out, err, sizeof(err)) < 0)
        return cli_fail("%s", err);
    if (env->json)
        printf("{\"role\":\"%s\",\"name\":\"%s\",\"file\":\"%s\"}\n", role_s, name, out);
    else
        printf("credential for %s '%s' written to %s (mode 0600)\n", role_s, name, out);
    return 0;
}

int cli_run_cred_show(const struct cli_command *c, const struct cli_args *a,
                      const struct cli_env *env)
{
    (void)c;
    struct auth_cred cr;
    char err[512];
    if (auth_cred_load(a->args[0], &cr, err, sizeof(err)) < 0)
        return cli_fail("%s", err);
    char ca[2 * AUTH_PK_LEN + 1], pk[2 * AUTH_PK_LEN + 1];
    sodium_bin2hex(ca, sizeof(ca), cr.ca_pk, AUTH_PK_LEN);
    sodium_bin2hex(pk, sizeof(pk), cr.pk, AUTH_PK_LEN);
    if (env->json)
        printf("{\"role\":\"%s\",\"name\":\"%s\",\"ca_key\":\"%s\",\"public_key\":\"%s\"}\n",
               auth_role_name(cr.role), cr.name, ca, pk);
    else
        printf("role        %s\nname        %s\nCA key      %s\npublic key  %s\n",
               auth_role_name(cr.role), cr.name, ca, pk);
    sodium_memzero(&cr, sizeof(cr));
    return 0;
}

int cli_auth_setup(const char *option)
{
    /* the process's one credential: every link of this run uses it */
    static struct auth_cred cred;
    const char *path = auth_cred_path(option);
    if (!path)
        return cli_fail("no credential: give --credentials FILE or set $CAIRN_CREDENTIALS "
                        "(deploy/quickstart.sh up prints where its admin credential is)");
    char err[512];
    if (auth_cred_load(path, &cred, err, sizeof(err)) < 0)
        return cli_fail("%s", err);
    if (cred.role != AUTH_ROLE_ADMIN && cred.role != AUTH_ROLE_MONITOR)
        return cli_fail("%s is the credential of %s '%s'; the CLI needs an admin or monitor one",
                        path, auth_role_name(cred.role), cred.name);
    if (rpc_auth_init(&cred) < 0)
        return cli_fail("libsodium failed to initialise");
    return 0;
}
