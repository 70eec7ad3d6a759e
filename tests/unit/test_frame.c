/* Frames and io headers: round trips, and every malformed header refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "frame.h"
#include "util.h"

int main(void)
{
    uint8_t b[FRAME_HDR_SIZE];
    struct frame_hdr h = {.version = 1,
                          .type = FT_IO_WRITE | FRAME_REPLY,
                          .req_id = 0x1122334455667788ULL,
                          .msg_len = 40,
                          .payload_len = 4096,
                          .status = -ENOSPC};
    frame_hdr_encode(&h, b);
    struct frame_hdr g;
    CHECK_EQ(frame_hdr_decode(b, &g), 0);
    CHECK_EQ(g.type, h.type);
    CHECK_EQ(g.req_id, h.req_id);
    CHECK_EQ(g.msg_len, 40);
    CHECK_EQ(g.payload_len, 4096);
    CHECK_EQ(g.status, -ENOSPC);

    uint8_t bad[FRAME_HDR_SIZE];
    memcpy(bad, b, sizeof(b));
    bad[0] ^= 1;
    CHECK_EQ(frame_hdr_decode(bad, &g), -EPROTO); /* magic */
    memcpy(bad, b, sizeof(b));
    put_be16(bad + 4, 99);
    CHECK_EQ(frame_hdr_decode(bad, &g), -EPROTO); /* version */
    memcpy(bad, b, sizeof(b));
    bad[31] = 1;
    CHECK_EQ(frame_hdr_decode(bad, &g), -EPROTO); /* reserved */
    memcpy(bad, b, sizeof(b));
    put_be32(bad + 16, FRAME_MAX_MSG + 1);
    CHECK_EQ(frame_hdr_decode(bad, &g), -EMSGSIZE);
    memcpy(bad, b, sizeof(b));
    put_be32(bad + 20, FRAME_MAX_PAYLOAD + 1);
    CHECK_EQ(frame_hdr_decode(bad, &g), -EMSGSIZE);

    struct io_hdr io = {.volume_id = 7,
                        .offset = 1ULL << 40,
                        .length = 65536,
                        .flags = IO_FLAG_FUA | IO_FLAG_REPLICA,
                        .pool_id = 3,
                        .pg = 1023,
                        .epoch = 42};
    uint8_t ib[IO_HDR_MAX];
    CHECK_EQ(io_hdr_encode(&io, ib), IO_HDR_SIZE); /* no writer_gen: the old 40 bytes */
    struct io_hdr jo;
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_SIZE, &jo), 0);
    CHECK(memcmp(&io, &jo, sizeof(io)) == 0);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_SIZE - 1, &jo), -EINVAL);
    io.writer_gen = 0x0102030405060708ULL; /* a change's fence: 48 bytes */
    CHECK_EQ(io_hdr_encode(&io, ib), IO_HDR_GEN);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_GEN, &jo), 0);
    CHECK(memcmp(&io, &jo, sizeof(io)) == 0);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_GEN + 1, &jo), -EINVAL);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_SIZE, &jo), 0); /* the same without its fence */
    CHECK_EQ(jo.writer_gen, 0);
    io.layer = 0x1112131415161718ULL; /* a forward's layer: 56 bytes */
    CHECK_EQ(io_hdr_encode(&io, ib), IO_HDR_MAX);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_MAX, &jo), 0);
    CHECK(memcmp(&io, &jo, sizeof(io)) == 0);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_MAX + 1, &jo), -EINVAL);
    io.writer_gen = 0; /* a layer without a fence: still 56, writer_gen 0 */
    CHECK_EQ(io_hdr_encode(&io, ib), IO_HDR_MAX);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_MAX, &jo), 0);
    CHECK(memcmp(&io, &jo, sizeof(io)) == 0);
    io.layer = 0;
    put_be32(ib + 20, 0x80);
    CHECK_EQ(io_hdr_decode(ib, IO_HDR_SIZE, &jo), -EINVAL); /* unknown flag */

    /* random bytes: decoding never crashes, and it accepts exactly the headers
     * an independent reading of the format allows: a bad magic, version or
     * reserved word is -EPROTO, an oversize length -EMSGSIZE */
    srand(1);
    int accepted = 0, bad_magic = 0;
    for (int i = 0; i < 100000; i++) {
        for (int k = 0; k < FRAME_HDR_SIZE; k++)
            bad[k] = (uint8_t)rand();
        if (i % 2)
            put_be32(bad, FRAME_MAGIC);
        if (i % 4 == 1)
            put_be32(bad + 28, 0); /* reserved word clear */
        if (i % 8 == 1)
            put_be16(bad + 4, FRAME_VERSION_MAX);
        if (i % 16 == 1) {
            put_be32(bad + 16, get_be32(bad + 16) % (FRAME_MAX_MSG + 1));
            put_be32(bad + 20, get_be32(bad + 20) % (FRAME_MAX_PAYLOAD + 1));
        }
        uint16_t version = get_be16(bad + 4);
        int want;
        if (get_be32(bad) != FRAME_MAGIC || get_be32(bad + 28) != 0 ||
            version < FRAME_VERSION_MIN || version > FRAME_VERSION_MAX)
            want = -EPROTO;
        else if (get_be32(bad + 16) > FRAME_MAX_MSG || get_be32(bad + 20) > FRAME_MAX_PAYLOAD)
            want = -EMSGSIZE;
        else
            want = 0;
        int r = frame_hdr_decode(bad, &g);
        CHECK_EQ(r, want);
        if (r == 0) {
            CHECK_EQ(g.msg_len, get_be32(bad + 16));
            CHECK_EQ(g.payload_len, get_be32(bad + 20));
            accepted++;
        }
        bad_magic += get_be32(bad) != FRAME_MAGIC;
    }
    /* the cases above were all reached */
    CHECK(accepted > 1000);
    CHECK(bad_magic > 40000);
    return 0;
}
