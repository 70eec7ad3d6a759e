/* MDM Raft addresses, "RAFT/CLIENT" (raft_link.h): the transport's socket
 * address and the client address for redirects. */
#include <stdio.h>
#include <string.h>

#include "raft_link.h"

void raft_link_sock_addr(const char *address, char *out, size_t len)
{
    size_t n = strcspn(address, "/");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), address);
}

const char *raft_link_client_addr(const char *address)
{
    const char *p = address ? strchr(address, '/') : NULL;
    return p && p[1] ? p + 1 : NULL;
}
