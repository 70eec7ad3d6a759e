/* Wire frames shared by every Cairn connection.
 *
 * A frame is a fixed 32-byte header, then msg_len bytes of message (protobuf
 * for control frames, the fixed io header below for data frames), then
 * payload_len raw bytes. All integers are big-endian.
 */
#ifndef CAIRN_FRAME_H
#define CAIRN_FRAME_H

#include <stdint.h>

#define FRAME_MAGIC 0x43524e31u /* "CRN1" */
#define FRAME_VERSION_MIN 1
#define FRAME_VERSION_MAX 1
#define FRAME_HDR_SIZE 32
#define FRAME_MAX_MSG (4u << 20)      /* control messages: 4 MiB */
#define FRAME_MAX_PAYLOAD (33u << 20) /* one extent, with headroom */

#define FRAME_REPLY 0x8000u
/* Once a link is authenticated, every frame is followed by this many bytes:
 * a MAC over its header, message and payload (rpc_auth.c). */
#define FRAME_TAG_SIZE 16

enum frame_type {
    FT_HELLO = 1,
    FT_MGMT = 2,         /* cli -> mdm: MgmtRequest / MgmtReply */
    FT_SDS_REGISTER = 3, /* sds -> mdm: SdsRegister / MapReply */
    FT_HEARTBEAT = 4,    /* sds -> mdm: Heartbeat / HeartbeatReply */
    FT_MAP_GET = 5,      /* sds|sdc -> mdm: (empty) / MapReply */
    FT_DEVICE_PROBE = 6, /* mdm -> sds: DeviceProbe / DeviceProbeReply */
    FT_SDC_REGISTER = 7, /* sdc -> mdm: SdcRegister / MapReply */
    FT_PG_REBUILT = 8,   /* sds -> mdm: MgmtRequest(OP_PG_REBUILT) / MgmtReply */

    FT_PING = 9,        /* sds -> sds: u32 sender id, u64 map version / status 0 = lease granted */
    FT_PG_LIST = 10,    /* sds -> sds: u32 pool, u32 pg / payload: (u64 vol, u64 ext) pairs */
    FT_LOCAL = 11,      /* sdc|sds -> sds: (empty) / LocalSocket: its unix socket on this host */
    FT_AUTH_HELLO = 12, /* the link handshake (rpc_auth.c): AuthHello / AuthProof */
    FT_AUTH_PROOF = 13, /* AuthProof / AuthResult */
    FT_MAP_NOTIFY = 14, /* mdm -> sds|sdc: u64 map version / status 0: a newer map, fetch it */
    /* mdm -> mdm, on the Raft port (mgmt/raft_link.c): the connecting MDM's
     * u64 raft id, then its raft address (1-255 bytes, no NUL) / status 0:
     * its stream is handed to Raft. First and once on the connection. */
    FT_RAFT_OPEN = 15,

    FT_IO_READ = 16,  /* io_hdr / payload in reply */
    FT_IO_WRITE = 17, /* io_hdr + payload */
    FT_IO_FLUSH = 18, /* io_hdr (volume 0: whole SDS) */
    FT_IO_TRIM = 19,  /* io_hdr: deallocate whole extents in range */
    FT_IO_ZERO = 20,  /* io_hdr: range reads back as zeroes */
    FT_IO_STAT = 21,  /* io_hdr: reply status 1 = allocated, 0 = hole */

    /* mdm <-> mdm, after FT_RAFT_OPEN: (empty msg) + payload: the next bytes
     * of Raft's stream / status 0 once they are handed to Raft: the acks by
     * which the sender bounds what it has in flight */
    FT_RAFT_DATA = 22,
    FT_CLAIM = 23,  /* sdc -> mdm: VolumeClaim / MapReply (docs/attach.md) */
    FT_FREEZE = 24, /* mdm -> sds: Freeze / status 0 once paused (docs/snapshots.md) */
};

struct frame_hdr {
    uint16_t version;
    uint16_t type;
    uint64_t req_id;
    uint32_t msg_len;
    uint32_t payload_len;
    int32_t status; /* replies: >= 0 ok, -errno failure */
};

void frame_hdr_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_SIZE]);
/* Validate and decode. Returns 0, or -EPROTO (bad magic/reserved/version) or
 * -EMSGSIZE (a length over its limit). */
int frame_hdr_decode(const uint8_t in[FRAME_HDR_SIZE], struct frame_hdr *h);

/* Data-path request header: the message of every FT_IO_* request. 40
 * bytes, 48 with writer_gen, 56 with layer (each sent only when it is not
 * 0, so that a request without them is what SDSs before them understand). */
#define IO_HDR_SIZE 40
#define IO_HDR_GEN 48
#define IO_HDR_MAX 56
#define IO_FLAG_FUA 1u     /* durable before reply */
#define IO_FLAG_REPLICA 2u /* forwarded by the primary: apply locally only */
#define IO_FLAG_NO_HOLE 4u /* zero: keep the range allocated */
#define IO_FLAG_REBUILD 8u /* with REPLICA: a rebuild, rebalance or drain copy */
#define IO_FLAGS_KNOWN (IO_FLAG_FUA | IO_FLAG_REPLICA | IO_FLAG_NO_HOLE | IO_FLAG_REBUILD)

struct io_hdr {
    uint64_t volume_id;
    uint64_t offset; /* byte offset in the volume */
    uint32_t length;
    uint32_t flags;
    uint32_t pool_id;
    uint32_t pg;
    uint64_t epoch;
    uint64_t writer_gen; /* an SDC's change: the fence of its claim (docs/attach.md); 0: none */
    /* Between SDSs only (a forward, a rebuild copy): the layer (store key)
     * it applies to, as the primary resolved it (docs/snapshots.md); 0 from
     * an SDC, whose volume_id names a volume or a snapshot */
    uint64_t layer;
};

/* Encode into out; returns the length: IO_HDR_MAX when layer is not 0,
 * else IO_HDR_GEN when writer_gen is not 0, else IO_HDR_SIZE. */
uint32_t io_hdr_encode(const struct io_hdr *h, uint8_t out[IO_HDR_MAX]);
/* Decode len (IO_HDR_SIZE, IO_HDR_GEN or IO_HDR_MAX) bytes; -EINVAL on another length
 * or unknown flags. Range checks are the receiver's job. */
int io_hdr_decode(const uint8_t *in, uint32_t len, struct io_hdr *h);

#endif
