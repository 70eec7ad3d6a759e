/* Raft's transport over Cairn's authenticated RPC links (raft_link.c).
 *
 * libraft's own TCP transport (raft_uv_tcp_init) takes a connection from
 * anyone, and a peer that reaches an MDM's Raft port can send it votes and
 * entries of any term. This one listens with rpc_listen() and connects
 * with rpc_connect(), so both ends prove an MDM credential of this
 * cluster's CA and every frame carries a MAC (docs/security.md); Raft's
 * byte stream rides in FT_RAFT_DATA frames after an FT_RAFT_OPEN frame
 * that names the connecting MDM's raft id and address (proto/frame.h). */
#ifndef CAIRN_RAFT_LINK_H
#define CAIRN_RAFT_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

/* Fill t with this transport on loop (in place of raft_uv_tcp_init); the
 * process's credential (rpc_auth_setup) must be set before Raft starts.
 * 0, or RAFT_NOMEM. */
int raft_link_init(struct raft_uv_transport *t, uv_loop_t *loop);
/* Free what raft_link_init took, once Raft has closed the transport (in
 * place of raft_uv_tcp_close). */
void raft_link_close(struct raft_uv_transport *t);

/* An MDM's Raft address is "RAFT/CLIENT": where its Raft port listens, then
 * where its CLI, SDS and SDC port does (--listen), so that every MDM learns
 * from Raft's configuration where to send a client to the leader. The
 * transport listens and connects on the part before '/'. An address of
 * only "RAFT" (a cluster bootstrapped before MDM clusters) is still taken.
 * The client part, or NULL if there is none. */
const char *raft_link_client_addr(const char *address);
/* Its socket address, the part before '/', into out[len] (raft_addr.c). */
void raft_link_sock_addr(const char *address, char *out, size_t len);

/* How many ms ago the stream from peer id last brought bytes, or
 * UINT64_MAX if it never did. A leader hears each follower's replies to
 * its heartbeats (every 100 ms) on the stream the follower opened. */
uint64_t raft_link_heard_ago(struct raft_uv_transport *t, raft_id id);

#endif
