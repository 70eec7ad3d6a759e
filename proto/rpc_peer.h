/* A named remote (an SDS) reached through one connection that is opened on
 * first use and reopened after it drops.
 *
 * Calls go out in the order they were made, at most a window's worth at
 * once (calls and payload bytes): the rest wait here, so a busy peer pushes
 * back on its callers instead of having their requests pile up in a socket
 * queue, and a call's timeout runs only from when it is sent (rpc_call()).
 * Calls made while it connects wait likewise; if connecting fails they
 * complete with the error. Same callback and ownership rules as rpc_call():
 * cb runs exactly once, later; a payload must stay valid until cb. */
#ifndef CAIRN_RPC_PEER_H
#define CAIRN_RPC_PEER_H

#include "rpc.h"

#define RPC_PEER_WINDOW_CALLS 256
#define RPC_PEER_WINDOW_BYTES (32u << 20)

struct rpc_peer;

struct rpc_peer *rpc_peer_new(uv_loop_t *loop, uint32_t id);
/* Change the address; an open connection to the old one is closed. */
void rpc_peer_set_addr(struct rpc_peer *p, const char *addr);
uint32_t rpc_peer_id(const struct rpc_peer *p);
/* The window: calls in flight at once, and their payload bytes (a call
 * larger than the byte window still goes, alone). */
void rpc_peer_set_window(struct rpc_peer *p, unsigned calls, size_t bytes);
int rpc_peer_call(struct rpc_peer *p, uint16_t type, const void *msg, uint32_t msg_len,
                  const struct iovec *pl, int npl, uint32_t timeout_ms, rpc_reply_cb cb, void *arg);
/* The same, for a call made on behalf of owner (any pointer), so that
 * rpc_peer_cancel() can take back the ones still waiting. */
int rpc_peer_call_owned(struct rpc_peer *p, const void *owner, uint16_t type, const void *msg,
                        uint32_t msg_len, const struct iovec *pl, int npl, uint32_t timeout_ms,
                        rpc_reply_cb cb, void *arg);
/* Calls of owner not yet sent complete with -ECANCELED, their callbacks
 * running inside this call; calls already sent are left to complete.
 * Returns how many were cancelled. */
unsigned rpc_peer_cancel(struct rpc_peer *p, const void *owner);
/* Calls sent and not yet answered; calls waiting to be sent. */
unsigned rpc_peer_inflight(const struct rpc_peer *p);
unsigned rpc_peer_waiting(const struct rpc_peer *p);
/* Close the connection; waiting calls fail with -ECANCELED. The peer object
 * stays valid (peers live as long as their daemon). */
void rpc_peer_close(struct rpc_peer *p);

#endif
