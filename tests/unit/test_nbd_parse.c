/* The NBD server's pure protocol logic (client/nbd_parse.c): request
 * decoding and validation as nbdkit's validate_request does it, the payload
 * rule of a rejected WRITE, client flags, and the INFO/GO and meta context
 * options. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "nbd_internal.h"
#include "util.h"

#define SIZE (64ull << 20)

/* A connection that negotiated structured replies and base:allocation on a
 * writable 64 MiB export. */
static struct nbd_conn_state full(void)
{
    return (struct nbd_conn_state){.size = SIZE, .structured = true, .meta_alloc = true};
}

static struct nbd_request req(uint16_t type, uint16_t flags, uint64_t off, uint32_t len)
{
    return (struct nbd_request){.type = type, .flags = flags, .off = off, .len = len};
}

static int validate(struct nbd_conn_state st, uint16_t type, uint16_t flags, uint64_t off,
                    uint32_t len)
{
    struct nbd_request rq = req(type, flags, off, len);
    return nbd_request_validate(&st, &rq);
}

static void encode(uint8_t *p, uint32_t magic, uint16_t flags, uint16_t type, uint64_t cookie,
                   uint64_t off, uint32_t len)
{
    put_be32(p, magic);
    put_be16(p + 4, flags);
    put_be16(p + 6, type);
    put_be64(p + 8, cookie);
    put_be64(p + 16, off);
    put_be32(p + 24, len);
}

static void test_decode_header(void)
{
    uint8_t p[NBD_REQUEST_SIZE];
    encode(p, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 0x1122334455667788ULL, 1ull << 40,
           4096);
    struct nbd_request rq;
    CHECK_EQ(nbd_request_decode(p, &rq), 0);
    CHECK_EQ(rq.type, NBD_CMD_WRITE);
    CHECK_EQ(rq.flags, NBD_CMD_FLAG_FUA);
    CHECK(rq.cookie == 0x1122334455667788ULL); /* opaque: every bit kept */
    CHECK_EQ(rq.off, 1ull << 40);
    CHECK_EQ(rq.len, 4096);
}

static void test_bad_magic_disconnects(void)
{
    uint8_t p[NBD_REQUEST_SIZE];
    struct nbd_request rq;
    encode(p, NBD_REQUEST_MAGIC ^ 1, 0, NBD_CMD_READ, 1, 0, 512);
    CHECK_EQ(nbd_request_decode(p, &rq), -EPROTO);
    /* a simple reply's magic is not a request's */
    encode(p, NBD_SIMPLE_REPLY_MAGIC, 0, NBD_CMD_READ, 1, 0, 512);
    CHECK_EQ(nbd_request_decode(p, &rq), -EPROTO);
}

static void test_unknown_command_einval(void)
{
    CHECK_EQ(validate(full(), 8, 0, 0, 512), -EINVAL); /* RESIZE: not advertised */
    CHECK_EQ(validate(full(), 9, 0, 0, 512), -EINVAL);
    CHECK_EQ(validate(full(), 0xffff, 0, 0, 0), -EINVAL);
}

static void test_every_command_accepts_fua(void)
{
    struct nbd_conn_state st = full();
    CHECK_EQ(validate(st, NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 4096), 0);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 4096), 0);
    CHECK_EQ(validate(st, NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0), 0);
    CHECK_EQ(validate(st, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, 4096), 0);
    CHECK_EQ(validate(st, NBD_CMD_CACHE, NBD_CMD_FLAG_FUA, 0, 4096), 0);
    CHECK_EQ(validate(st, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FUA, 0, 4096), 0);
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_FUA, 0, 4096), 0);
}

static void test_flags_per_command(void)
{
    struct nbd_conn_state st = full();
    /* allowed where they mean something */
    CHECK_EQ(validate(st, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096), 0);
    CHECK_EQ(
        validate(st, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO, 0, 4096),
        0);
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 4096), 0);
    /* and nowhere else */
    CHECK_EQ(validate(st, NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_TRIM, NBD_CMD_FLAG_FAST_ZERO, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_DF, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_FLUSH, NBD_CMD_FLAG_NO_HOLE, 0, 0), -EINVAL);
    /* unknown bits (PAYLOAD_LEN needs extended headers, never negotiated) */
    CHECK_EQ(validate(st, NBD_CMD_READ, 1u << 5, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 1u << 15, 0, 4096), -EINVAL);
}

static void test_df_needs_structured_replies(void)
{
    struct nbd_conn_state st = full();
    st.structured = false;
    st.meta_alloc = false;
    CHECK_EQ(validate(st, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, 0, 4096), 0);
    /* and the export does not advertise it then */
    CHECK(!(nbd_export_flags(&st) & NBD_FLAG_SEND_DF));
    st.structured = true;
    CHECK(nbd_export_flags(&st) & NBD_FLAG_SEND_DF);
}

static void test_flush_with_offset_or_length_einval(void)
{
    CHECK_EQ(validate(full(), NBD_CMD_FLUSH, 0, 0, 0), 0);
    CHECK_EQ(validate(full(), NBD_CMD_FLUSH, 0, 4096, 0), -EINVAL);
    CHECK_EQ(validate(full(), NBD_CMD_FLUSH, 0, 0, 1), -EINVAL);
    /* even beyond the end: the FLUSH rule comes first */
    CHECK_EQ(validate(full(), NBD_CMD_FLUSH, 0, SIZE + 1, 0), -EINVAL);
}

static void test_block_status_needs_context(void)
{
    struct nbd_conn_state st = full();
    st.meta_alloc = false;
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, 0, 0, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 4096), -EINVAL);
    st.meta_alloc = true;
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, 0, 0, 4096), 0);
    /* BLOCK_STATUS has no payload limit: the reply is extents, not data */
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, 0, 0, (uint32_t)SIZE), 0);
}

static void test_out_of_range(void)
{
    struct nbd_conn_state st = full();
    /* writes that do not fit: ENOSPC */
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, SIZE - 4096, 8192), -ENOSPC);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, SIZE + 1, 0), -ENOSPC);
    CHECK_EQ(validate(st, NBD_CMD_WRITE_ZEROES, 0, SIZE, 1), -ENOSPC);
    /* everything else: EINVAL */
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, SIZE - 4096, 8192), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_TRIM, 0, SIZE, 1), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_CACHE, 0, SIZE, 1), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, 0, SIZE, 1), -EINVAL);
    /* off + len would wrap 64 bits: still out of range, not in */
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, UINT64_MAX - 10, 4096), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, UINT64_MAX - 10, 4096), -ENOSPC);
    /* up to the last byte is fine, and so is zero length at the end */
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, SIZE - 4096, 4096), 0);
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, SIZE, 0), 0);
    /* TRIM and zeroes may be far larger than a payload (the kernel sends ~4 GiB) */
    st.size = 8ull << 30;
    CHECK_EQ(validate(st, NBD_CMD_TRIM, 0, 0, 0xfffff000u), 0);
    CHECK_EQ(validate(st, NBD_CMD_WRITE_ZEROES, 0, 4096, 0xfffff000u), 0);
}

static void test_read_only_eperm(void)
{
    struct nbd_conn_state st = full();
    st.ro = true;
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, 0, 4096), -EPERM);
    CHECK_EQ(validate(st, NBD_CMD_TRIM, 0, 0, 4096), -EPERM);
    CHECK_EQ(validate(st, NBD_CMD_WRITE_ZEROES, 0, 0, 4096), -EPERM);
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, 0, 4096), 0);
    CHECK_EQ(validate(st, NBD_CMD_FLUSH, 0, 0, 0), 0);
    CHECK_EQ(validate(st, NBD_CMD_BLOCK_STATUS, 0, 0, 4096), 0);
    CHECK(nbd_export_flags(&st) & NBD_FLAG_READ_ONLY);
    /* out of range is checked before read-only */
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, SIZE, 4096), -ENOSPC);
}

static void test_oversize_payload(void)
{
    struct nbd_conn_state st = full();
    st.size = 1ull << 30;
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD), 0);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD), 0);
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD + 1), -EINVAL);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD + 1), -EINVAL);
    /* oversize is EINVAL even where it would also be out of range */
    CHECK_EQ(validate(full(), NBD_CMD_WRITE, 0, SIZE - 4096, NBD_MAX_PAYLOAD + 1), -EINVAL);
}

static void test_payload_rule(void)
{
    struct nbd_request rq = req(NBD_CMD_WRITE, 0, 0, 4096);
    CHECK_EQ(nbd_request_payload(&rq, 0), NBD_PAYLOAD_RECEIVE);
    /* a rejected write we can buffer is still read, then answered */
    CHECK_EQ(nbd_request_payload(&rq, -ENOSPC), NBD_PAYLOAD_RECEIVE);
    rq.len = NBD_MAX_PAYLOAD;
    CHECK_EQ(nbd_request_payload(&rq, -EPERM), NBD_PAYLOAD_RECEIVE);
    /* too large to buffer: skipped, the session lives on */
    rq.len = NBD_MAX_PAYLOAD + 1;
    CHECK_EQ(nbd_request_payload(&rq, -EINVAL), NBD_PAYLOAD_DISCARD);
    rq.len = (uint32_t)NBD_DRAIN_MAX;
    CHECK_EQ(nbd_request_payload(&rq, -EINVAL), NBD_PAYLOAD_DISCARD);
    /* too large even to skip */
    rq.len = (uint32_t)NBD_DRAIN_MAX + 1;
    CHECK_EQ(nbd_request_payload(&rq, -EINVAL), NBD_PAYLOAD_DISCONNECT);
    /* only WRITE carries a payload, whatever its length field says */
    rq = req(NBD_CMD_READ, 0, 0, 0xffffffffu);
    CHECK_EQ(nbd_request_payload(&rq, -EINVAL), NBD_PAYLOAD_NONE);
    rq = req(NBD_CMD_WRITE_ZEROES, 0, 0, 4096);
    CHECK_EQ(nbd_request_payload(&rq, 0), NBD_PAYLOAD_NONE);
    /* a zero-length write has an (empty) payload to receive */
    rq = req(NBD_CMD_WRITE, 0, 0, 0);
    CHECK_EQ(nbd_request_payload(&rq, 0), NBD_PAYLOAD_RECEIVE);
}

static void test_zero_length_is_valid(void)
{
    struct nbd_conn_state st = full();
    CHECK_EQ(validate(st, NBD_CMD_READ, 0, 0, 0), 0);
    CHECK_EQ(validate(st, NBD_CMD_WRITE, 0, 4096, 0), 0);
    CHECK_EQ(validate(st, NBD_CMD_TRIM, 0, 0, 0), 0);
    CHECK_EQ(validate(st, NBD_CMD_WRITE_ZEROES, 0, 0, 0), 0);
    CHECK_EQ(validate(st, NBD_CMD_CACHE, 0, 0, 0), 0);
}

static void test_disc_always_valid(void)
{
    struct nbd_conn_state st = {0}; /* even before anything was negotiated */
    CHECK_EQ(validate(st, NBD_CMD_DISC, 0, 0, 0), 0);
    CHECK_EQ(validate(st, NBD_CMD_DISC, 0xffff, 1, 2), 0);
    struct nbd_request rq = req(NBD_CMD_DISC, 0, 0, 4096);
    CHECK_EQ(nbd_request_payload(&rq, 0), NBD_PAYLOAD_NONE);
}

static void test_client_flags(void)
{
    bool nz = true;
    CHECK_EQ(nbd_client_flags_parse(NBD_FLAG_C_FIXED_NEWSTYLE, &nz), 0);
    CHECK(!nz);
    CHECK_EQ(nbd_client_flags_parse(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, &nz), 0);
    CHECK(nz);
    CHECK_EQ(nbd_client_flags_parse(0, &nz), -EINVAL); /* old newstyle */
    CHECK_EQ(nbd_client_flags_parse(NBD_FLAG_C_NO_ZEROES, &nz), -EINVAL);
    CHECK_EQ(nbd_client_flags_parse(NBD_FLAG_C_FIXED_NEWSTYLE | 4, &nz), -EINVAL);
}

static void test_export_flags(void)
{
    struct nbd_conn_state st = {0};
    uint16_t f = nbd_export_flags(&st);
    CHECK(f & NBD_FLAG_HAS_FLAGS);
    CHECK(f & NBD_FLAG_SEND_FLUSH);
    CHECK(f & NBD_FLAG_SEND_FUA);
    CHECK(f & NBD_FLAG_SEND_TRIM);
    CHECK(f & NBD_FLAG_SEND_WRITE_ZEROES);
    CHECK(f & NBD_FLAG_SEND_FAST_ZERO);
    CHECK(f & NBD_FLAG_SEND_CACHE);
    CHECK(f & NBD_FLAG_CAN_MULTI_CONN);
    CHECK(!(f & (NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_DF | NBD_FLAG_ROTATIONAL)));
}

/* INFO/GO data: name, then n information requests. */
static uint32_t go_data(uint8_t *d, const char *name, uint16_t n, const uint16_t *info)
{
    uint32_t nl = (uint32_t)strlen(name);
    put_be32(d, nl);
    memcpy(d + 4, name, nl);
    put_be16(d + 4 + nl, n);
    for (uint16_t i = 0; i < n; i++)
        put_be16(d + 6 + nl + 2 * i, info[i]);
    return 6 + nl + 2u * n;
}

static void test_opt_go_parse(void)
{
    uint8_t d[64];
    struct nbd_opt_go go;
    const char *why = NULL;
    const uint16_t info[] = {NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE};
    uint32_t len = go_data(d, "vol1", 2, info);
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), 0);
    CHECK_EQ(go.name_len, 4);
    CHECK(!memcmp(go.name, "vol1", 4));
    CHECK_EQ(go.ninfo, 2);
    CHECK_EQ(nbd_opt_go_info(&go, 0), NBD_INFO_NAME);
    CHECK_EQ(nbd_opt_go_info(&go, 1), NBD_INFO_BLOCK_SIZE);
    /* the default export, no requests (nbd-client 3.24's GO) */
    len = go_data(d, "", 0, NULL);
    CHECK_EQ(len, 6);
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), 0);
    CHECK_EQ(go.name_len, 0);
}

static void test_opt_go_bad_lengths(void)
{
    uint8_t d[64];
    struct nbd_opt_go go;
    const char *why = NULL;
    const uint16_t info[] = {NBD_INFO_NAME};
    uint32_t len = go_data(d, "vol1", 1, info);
    CHECK_EQ(nbd_opt_go_parse(d, 5, &go, &why), -EINVAL);
    CHECK(!strcmp(why, "option too short"));
    /* name longer than the option leaves room for */
    put_be32(d, len - 5);
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), -EINVAL);
    CHECK(!strcmp(why, "name length out of range"));
    put_be32(d, 0xffffffffu); /* no wrap-around */
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), -EINVAL);
    CHECK(!strcmp(why, "name length out of range"));
    put_be32(d, 4);
    /* request count that does not match the length, either way */
    put_be16(d + 8, 2);
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), -EINVAL);
    CHECK(!strcmp(why, "option length does not match its requests"));
    put_be16(d + 8, 0);
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), -EINVAL);
    CHECK(!strcmp(why, "option length does not match its requests"));
    put_be16(d + 8, 1);
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), 0);
    /* a NUL inside the name */
    d[5] = 0;
    CHECK_EQ(nbd_opt_go_parse(d, len, &go, &why), -EINVAL);
    CHECK(!strcmp(why, "name contains NUL"));
    /* a name over the string limit */
    static uint8_t big[4 + NBD_NAME_MAX + 1 + 2];
    put_be32(big, NBD_NAME_MAX + 1);
    memset(big + 4, 'a', NBD_NAME_MAX + 1);
    put_be16(big + 4 + NBD_NAME_MAX + 1, 0);
    CHECK_EQ(nbd_opt_go_parse(big, sizeof(big), &go, &why), -EINVAL);
    CHECK(!strcmp(why, "name length out of range"));
}

/* Meta context data: export name, then the queries. */
static uint32_t meta_data(uint8_t *d, const char *name, int nq, const char *const *q)
{
    uint32_t nl = (uint32_t)strlen(name), pos;
    put_be32(d, nl);
    memcpy(d + 4, name, nl);
    put_be32(d + 4 + nl, (uint32_t)nq);
    pos = 8 + nl;
    for (int i = 0; i < nq; i++) {
        uint32_t ql = (uint32_t)strlen(q[i]);
        put_be32(d + pos, ql);
        memcpy(d + pos + 4, q[i], ql);
        pos += 4 + ql;
    }
    return pos;
}

static void test_opt_meta_queries(void)
{
    uint8_t d[256];
    struct nbd_opt_meta m;
    const char *why = NULL;
    const char *alloc[] = {"base:allocation"};
    const char *other[] = {"qemu:dirty-bitmap:b0", "qemu:allocation-depth"};
    const char *wild[] = {"base:"};
    const char *mixed[] = {"qemu:dirty-bitmap:b0", "base:allocation", "base:"};

    uint32_t len = meta_data(d, "vol1", 1, alloc);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), 0);
    CHECK_EQ(m.name_len, 4);
    CHECK_EQ(m.nqueries, 1);
    CHECK(nbd_opt_meta_selects_alloc(&m, false));
    CHECK(nbd_opt_meta_selects_alloc(&m, true));

    /* unknown namespaces are ignored: nothing selected, no error */
    len = meta_data(d, "vol1", 2, other);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), 0);
    CHECK(!nbd_opt_meta_selects_alloc(&m, false));
    CHECK(!nbd_opt_meta_selects_alloc(&m, true));

    /* "base:" is a wildcard for LIST only */
    len = meta_data(d, "vol1", 1, wild);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), 0);
    CHECK(nbd_opt_meta_selects_alloc(&m, true));
    CHECK(!nbd_opt_meta_selects_alloc(&m, false));

    /* zero queries: LIST lists everything, SET selects nothing */
    len = meta_data(d, "vol1", 0, NULL);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), 0);
    CHECK(nbd_opt_meta_selects_alloc(&m, true));
    CHECK(!nbd_opt_meta_selects_alloc(&m, false));

    len = meta_data(d, "", 3, mixed);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), 0);
    CHECK_EQ(m.nqueries, 3);
    CHECK(nbd_opt_meta_selects_alloc(&m, false));
}

static void test_opt_meta_bad_lengths(void)
{
    uint8_t d[256];
    struct nbd_opt_meta m;
    const char *why = NULL;
    const char *q[] = {"base:allocation", "base:"};
    uint32_t len = meta_data(d, "vol1", 2, q);
    CHECK_EQ(nbd_opt_meta_parse(d, 7, &m, &why), -EINVAL);
    CHECK(!strcmp(why, "option too short"));
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), 0);
    /* one byte short: the last query does not fit */
    CHECK_EQ(nbd_opt_meta_parse(d, len - 1, &m, &why), -EINVAL);
    CHECK(!strcmp(why, "query length out of range"));
    /* more queries claimed than sent */
    put_be32(d + 8, 3);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), -EINVAL);
    CHECK(!strcmp(why, "query length out of range"));
    /* fewer: bytes left over */
    put_be32(d + 8, 1);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), -EINVAL);
    CHECK(!strcmp(why, "trailing bytes after queries"));
    put_be32(d + 8, 2);
    /* a query length that would wrap */
    put_be32(d + 12, 0xfffffffcu);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), -EINVAL);
    CHECK(!strcmp(why, "query length out of range"));
    /* an export name longer than the option */
    put_be32(d, len);
    CHECK_EQ(nbd_opt_meta_parse(d, len, &m, &why), -EINVAL);
    CHECK(!strcmp(why, "name length out of range"));
}

int main(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"decode_header", test_decode_header},
        {"bad_magic_disconnects", test_bad_magic_disconnects},
        {"unknown_command_einval", test_unknown_command_einval},
        {"every_command_accepts_fua", test_every_command_accepts_fua},
        {"flags_per_command", test_flags_per_command},
        {"df_needs_structured_replies", test_df_needs_structured_replies},
        {"flush_with_offset_or_length_einval", test_flush_with_offset_or_length_einval},
        {"block_status_needs_context", test_block_status_needs_context},
        {"out_of_range", test_out_of_range},
        {"read_only_eperm", test_read_only_eperm},
        {"oversize_payload", test_oversize_payload},
        {"payload_rule", test_payload_rule},
        {"zero_length_is_valid", test_zero_length_is_valid},
        {"disc_always_valid", test_disc_always_valid},
        {"client_flags", test_client_flags},
        {"export_flags", test_export_flags},
        {"opt_go_parse", test_opt_go_parse},
        {"opt_go_bad_lengths", test_opt_go_bad_lengths},
        {"opt_meta_queries", test_opt_meta_queries},
        {"opt_meta_bad_lengths", test_opt_meta_bad_lengths},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        cases[i].fn();
        printf("ok %s\n", cases[i].name);
    }
    return 0;
}
