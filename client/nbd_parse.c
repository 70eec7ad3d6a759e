/* Pure NBD protocol logic: decoding and validating what a client sends.
 * No I/O and no connection here, so every rule is unit-tested on its own
 * (tests/unit/test_nbd_parse.c); contracts are in nbd_internal.h. */
#include <errno.h>
#include <string.h>

#include "nbd_internal.h"
#include "util.h"

int nbd_request_decode(const uint8_t *p, struct nbd_request *rq)
{
    if (get_be32(p) != NBD_REQUEST_MAGIC)
        return -EPROTO;
    rq->flags = get_be16(p + 4);
    rq->type = get_be16(p + 6);
    rq->cookie = get_be64(p + 8);
    rq->off = get_be64(p + 16);
    rq->len = get_be32(p + 24);
    return 0;
}

int nbd_request_validate(const struct nbd_conn_state *st, const struct nbd_request *rq)
{
    /* FUA is advertised, so every command must accept it (docs/nbd.md). */
    uint16_t allowed = NBD_CMD_FLAG_FUA;
    switch (rq->type) {
    case NBD_CMD_DISC: return 0;
    case NBD_CMD_READ:
        /* DF is only advertised with structured replies */
        if (st->structured)
            allowed |= NBD_CMD_FLAG_DF;
        break;
    case NBD_CMD_WRITE_ZEROES: allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO; break;
    case NBD_CMD_BLOCK_STATUS: allowed |= NBD_CMD_FLAG_REQ_ONE; break;
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE: break;
    default: return -EINVAL;
    }
    if (rq->flags & ~allowed)
        return -EINVAL;
    if (rq->type == NBD_CMD_FLUSH)
        return (rq->off || rq->len) ? -EINVAL : 0;
    if (rq->type == NBD_CMD_BLOCK_STATUS && !st->meta_alloc)
        return -EINVAL;
    if ((rq->type == NBD_CMD_READ || rq->type == NBD_CMD_WRITE) && rq->len > NBD_MAX_PAYLOAD)
        return -EINVAL;
    /* off + len may not fit in 64 bits: compare against what is left */
    if (rq->off > st->size || rq->len > st->size - rq->off)
        return (rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_WRITE_ZEROES) ? -ENOSPC : -EINVAL;
    if (st->ro &&
        (rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_TRIM || rq->type == NBD_CMD_WRITE_ZEROES))
        return -EPERM;
    return 0;
}

enum nbd_payload nbd_request_payload(const struct nbd_request *rq, int err)
{
    if (rq->type != NBD_CMD_WRITE)
        return NBD_PAYLOAD_NONE;
    /* A rejected payload we could buffer is read like any other; one too
     * large to buffer is skipped so the session survives (libnbd's
     * errors-server-oversize), up to a bound past which it is not worth it. */
    if (err && rq->len > NBD_MAX_PAYLOAD)
        return rq->len > NBD_DRAIN_MAX ? NBD_PAYLOAD_DISCONNECT : NBD_PAYLOAD_DISCARD;
    return NBD_PAYLOAD_RECEIVE;
}

int nbd_client_flags_parse(uint32_t flags, bool *no_zeroes)
{
    if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) ||
        !(flags & NBD_FLAG_C_FIXED_NEWSTYLE))
        return -EINVAL;
    *no_zeroes = !!(flags & NBD_FLAG_C_NO_ZEROES);
    return 0;
}

uint16_t nbd_export_flags(const struct nbd_conn_state *st)
{
    /* CAN_MULTI_CONN holds because the SDC's FLUSH is a volume-wide barrier
     * (see client/sdc.h). */
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
                 NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_SEND_CACHE |
                 NBD_FLAG_CAN_MULTI_CONN;
    if (st->ro)
        f |= NBD_FLAG_READ_ONLY;
    if (st->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

int nbd_opt_go_parse(const uint8_t *d, uint32_t len, struct nbd_opt_go *go, const char **why)
{
    if (len < 6) {
        *why = "option too short";
        return -EINVAL;
    }
    uint32_t nl = get_be32(d);
    if (nl > len - 6 || nl > NBD_NAME_MAX) {
        *why = "name length out of range";
        return -EINVAL;
    }
    uint16_t ninfo = get_be16(d + 4 + nl);
    if (len != 4 + nl + 2 + 2u * ninfo) {
        *why = "option length does not match its requests";
        return -EINVAL;
    }
    if (memchr(d + 4, 0, nl)) {
        *why = "name contains NUL";
        return -EINVAL;
    }
    go->name = d + 4;
    go->name_len = nl;
    go->ninfo = ninfo;
    go->info = d + 4 + nl + 2;
    return 0;
}

uint16_t nbd_opt_go_info(const struct nbd_opt_go *go, uint16_t i)
{
    return get_be16(go->info + 2 * i);
}

int nbd_opt_meta_parse(const uint8_t *d, uint32_t len, struct nbd_opt_meta *m, const char **why)
{
    if (len < 8) {
        *why = "option too short";
        return -EINVAL;
    }
    uint32_t nl = get_be32(d);
    if (nl > len - 8 || nl > NBD_NAME_MAX) {
        *why = "name length out of range";
        return -EINVAL;
    }
    uint32_t nq = get_be32(d + 4 + nl);
    uint32_t pos = 8 + nl;
    /* every query is checked before any is answered */
    for (uint32_t i = 0; i < nq; i++) {
        if (pos + 4 > len || get_be32(d + pos) > len - pos - 4 ||
            get_be32(d + pos) > NBD_NAME_MAX) {
            *why = "query length out of range";
            return -EINVAL;
        }
        pos += 4 + get_be32(d + pos);
    }
    if (pos != len) {
        *why = "trailing bytes after queries";
        return -EINVAL;
    }
    m->name = d + 4;
    m->name_len = nl;
    m->nqueries = nq;
    m->queries = d + 8 + nl;
    return 0;
}

bool nbd_opt_meta_selects_alloc(const struct nbd_opt_meta *m, bool list)
{
    static const char ctx[] = "base:allocation";
    if (list && m->nqueries == 0)
        return true; /* LIST with no query lists every context */
    const uint8_t *q = m->queries;
    for (uint32_t i = 0; i < m->nqueries; i++) {
        uint32_t ql = get_be32(q);
        if ((ql == sizeof(ctx) - 1 && !memcmp(q + 4, ctx, ql)) ||
            (list && ql == 5 && !memcmp(q + 4, "base:", 5)))
            return true;
        q += 4 + ql;
    }
    return false;
}
