/* Listening sockets shared by the RPC layer and the NBD server. */
#ifndef CAIRN_NET_H
#define CAIRN_NET_H

#include <uv.h>

union net_stream {
    uv_handle_t h;
    uv_stream_t s;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
};

/* Initialise s as a TCP or pipe handle bound to addr ("host:port", a name or
 * an address, or "unix:/path", replacing a stale socket file) and listening.
 * Returns 0 or -errno; on error s is initialised and must be closed. */
int net_listen(uv_loop_t *loop, const char *addr, union net_stream *s, int *is_pipe,
               uv_connection_cb cb);

/* Resolve "host:port" (numeric or a name; control path only). 0 or -errno. */
int net_resolve(const char *addr, struct sockaddr_storage *ss);

/* "ip:port" of a TCP peer, or "unix". */
void net_peer_name(const union net_stream *s, char *buf, size_t len);
/* 1 if a TCP connection joins two sockets of this host. */
int net_same_host(const union net_stream *s);

#endif
