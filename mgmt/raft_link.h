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

#endif
