/* A named remote (an SDS) reached through one connection that is opened on
 * first use and reopened after it drops. Calls made while it connects wait in
 * order; if connecting fails they complete with the error. Same callback and
 * ownership rules as rpc_call(): cb runs exactly once, later. */
#ifndef CAIRN_RPC_PEER_H
#define CAIRN_RPC_PEER_H

#include "rpc.h"

struct rpc_peer;

struct rpc_peer *rpc_peer_new(uv_loop_t *loop, uint32_t id);
/* Change the address; an open connection to the old one is closed. */
void rpc_peer_set_addr(struct rpc_peer *p, const char *addr);
uint32_t rpc_peer_id(const struct rpc_peer *p);
int rpc_peer_call(struct rpc_peer *p, uint16_t type, const void *msg, uint32_t msg_len,
                  const struct iovec *pl, int npl, uint32_t timeout_ms, rpc_reply_cb cb, void *arg);
/* Close the connection; waiting calls fail with -ECANCELED. The peer object
 * stays valid (peers live as long as their daemon). */
void rpc_peer_close(struct rpc_peer *p);

#endif
