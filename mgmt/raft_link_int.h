/* The Raft transport's insides, shared by raft_link.c (relays, frames from
 * the peer, the transport) and raft_link_pipe.c (Raft's end of each relay).
 * Not for anyone else: raft_link.h is the interface. */
#ifndef CAIRN_RAFT_LINK_INT_H
#define CAIRN_RAFT_LINK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "raft_link.h"
#include "rpc.h"

#define LINK_CHUNK (64u << 10)    /* read from Raft's stream at a time: one frame */
#define LINK_WINDOW (4u << 20)    /* bytes a relay may have unacked */
#define LINK_CALLS 256u           /* frames a relay may have unacked */
#define LINK_TIMEOUT_MS 10000     /* a peer that takes nothing for this long is stuck */
#define LINK_ADDR_MAX 255         /* raft addresses: host:port */
#define LINK_HEARD 16             /* peers whose last bytes are timed */
#define LINK_PAUSE_PIPE (1u << 0) /* our rpc_pause() reason: the pipe is behind */
#define LINK_OVERHEAD (FRAME_HDR_SIZE + FRAME_TAG_SIZE)

/* Where a relay is. */
enum { R_CONNECTING, R_OPENING, R_OPEN, R_CLOSING };

struct relay {
    struct link *l;
    struct relay *prev, *next;
    int client; /* we connected (Raft's connect), or accepted */
    int state;
    struct rpc_conn *conn;       /* connected or accepted, until its on_close */
    struct rpc_conn *connecting; /* ours, until rpc_connect's callback */
    struct raft_uv_connect *req; /* Raft's connect request, until it is told */
    raft_uv_connect_cb cb;
    uv_pipe_t pipe;      /* our end of the socketpair */
    int pipe_open;       /* until its close callback */
    uv_pipe_t *raft_end; /* Raft's end, until Raft takes it */
    int reading;         /* reading the pipe */
    int paused;          /* LINK_PAUSE_PIPE set on conn */
    size_t unacked;      /* bytes of data frames sent and not acked (with overhead) */
    unsigned calls;      /* those frames */
    size_t writing;      /* bytes being written into the pipe */
    unsigned writes;     /* those writes */
    raft_id peer_id;
    char peer_addr[LINK_ADDR_MAX + 1];
    uint8_t rbuf[LINK_CHUNK];
};

struct link {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    raft_id id;
    char addr[LINK_ADDR_MAX + 1];
    raft_uv_accept_cb accept_cb;
    struct rpc_server *server;
    int server_open; /* until its close callback */
    struct relay *relays;
    int closing;
    raft_uv_transport_close_cb close_cb;
    struct {
        raft_id id;
        uint64_t at;
    } heard[LINK_HEARD]; /* when each peer's stream last brought bytes */
};

/* A data frame in flight: its bytes, until the peer acks them. */
struct chunk {
    struct relay *r;
    size_t n;
    uint8_t data[];
};

/* A data frame's bytes being written into the pipe; acked when done. */
struct pipe_write {
    uv_write_t req;
    struct relay *r;
    struct frame_hdr hdr;
    uint8_t *payload;
};

/* raft_link.c */
void relay_close(struct relay *r);
void relay_maybe_free(struct relay *r);

/* raft_link_pipe.c */
int pipe_make(struct relay *r);
void pipe_read_start(struct relay *r);
void pipe_write_cb(uv_write_t *req, int status);
uv_stream_t *raft_end_take(struct relay *r);

#endif
