#include "frame.h"

#include <errno.h>

#include "util.h"

void frame_hdr_encode(const struct frame_hdr *h, uint8_t out[FRAME_HDR_SIZE])
{
    put_be32(out, FRAME_MAGIC);
    put_be16(out + 4, h->version);
    put_be16(out + 6, h->type);
    put_be64(out + 8, h->req_id);
    put_be32(out + 16, h->msg_len);
    put_be32(out + 20, h->payload_len);
    put_be32(out + 24, (uint32_t)h->status);
    put_be32(out + 28, 0);
}

int frame_hdr_decode(const uint8_t in[FRAME_HDR_SIZE], struct frame_hdr *h)
{
    if (get_be32(in) != FRAME_MAGIC || get_be32(in + 28) != 0)
        return -EPROTO;
    h->version = get_be16(in + 4);
    if (h->version < FRAME_VERSION_MIN || h->version > FRAME_VERSION_MAX)
        return -EPROTO;
    h->type = get_be16(in + 6);
    h->req_id = get_be64(in + 8);
    h->msg_len = get_be32(in + 16);
    h->payload_len = get_be32(in + 20);
    h->status = (int32_t)get_be32(in + 24);
    if (h->msg_len > FRAME_MAX_MSG || h->payload_len > FRAME_MAX_PAYLOAD)
        return -EMSGSIZE;
    return 0;
}

uint32_t io_hdr_encode(const struct io_hdr *h, uint8_t out[IO_HDR_MAX])
{
    put_be64(out, h->volume_id);
    put_be64(out + 8, h->offset);
    put_be32(out + 16, h->length);
    put_be32(out + 20, h->flags);
    put_be32(out + 24, h->pool_id);
    put_be32(out + 28, h->pg);
    put_be64(out + 32, h->epoch);
    if (!h->writer_gen && !h->layer)
        return IO_HDR_SIZE;
    put_be64(out + 40, h->writer_gen);
    if (!h->layer)
        return IO_HDR_GEN;
    put_be64(out + 48, h->layer);
    return IO_HDR_MAX;
}

int io_hdr_decode(const uint8_t *in, uint32_t len, struct io_hdr *h)
{
    if (len != IO_HDR_SIZE && len != IO_HDR_GEN && len != IO_HDR_MAX)
        return -EINVAL;
    h->volume_id = get_be64(in);
    h->offset = get_be64(in + 8);
    h->length = get_be32(in + 16);
    h->flags = get_be32(in + 20);
    h->pool_id = get_be32(in + 24);
    h->pg = get_be32(in + 28);
    h->epoch = get_be64(in + 32);
    h->writer_gen = len >= IO_HDR_GEN ? get_be64(in + 40) : 0;
    h->layer = len == IO_HDR_MAX ? get_be64(in + 48) : 0;
    if (h->flags & ~IO_FLAGS_KNOWN)
        return -EINVAL;
    return 0;
}
