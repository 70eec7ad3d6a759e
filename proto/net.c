#include "net.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

int net_resolve(const char *addr, struct sockaddr_storage *ss)
{
    char host[256];
    int port;
    if (addr_split(addr, host, sizeof(host), &port) < 0)
        return -EINVAL;
    char *h = host;
    size_t hl = strlen(h);
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    char ps[8];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(h, ps, &hints, &res) != 0)
        return -EHOSTUNREACH;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int net_listen(uv_loop_t *loop, const char *addr, union net_stream *s, int *is_pipe,
               uv_connection_cb cb)
{
    int r;
    if (strncmp(addr, "unix:", 5) == 0) {
        *is_pipe = 1;
        uv_pipe_init(loop, &s->pipe, 0);
        unlink(addr + 5);
        r = uv_pipe_bind(&s->pipe, addr + 5);
    } else {
        *is_pipe = 0;
        struct sockaddr_storage ss;
        uv_tcp_init(loop, &s->tcp);
        r = net_resolve(addr, &ss);
        if (r == 0)
            r = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
    }
    if (r == 0)
        r = uv_listen(&s->s, 256, cb);
    return r;
}

void net_peer_name(const union net_stream *s, char *buf, size_t len)
{
    snprintf(buf, len, "unix");
    if (s->h.type != UV_TCP)
        return;
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &sl) != 0)
        return;
    char ip[64] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(buf, len, "%s:%d", ip, port);
}

/* Both ends of a TCP connection on one address: the peer is this host (in
 * this network namespace). */
int net_same_host(const union net_stream *s)
{
    if (s->h.type != UV_TCP)
        return 0;
    struct sockaddr_storage a, b;
    int al = sizeof(a), bl = sizeof(b);
    if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&a, &al) != 0 ||
        uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&b, &bl) != 0 || a.ss_family != b.ss_family)
        return 0;
    if (a.ss_family == AF_INET)
        return ((struct sockaddr_in *)&a)->sin_addr.s_addr ==
               ((struct sockaddr_in *)&b)->sin_addr.s_addr;
    if (a.ss_family == AF_INET6)
        return !memcmp(&((struct sockaddr_in6 *)&a)->sin6_addr,
                       &((struct sockaddr_in6 *)&b)->sin6_addr, sizeof(struct in6_addr));
    return 0;
}
