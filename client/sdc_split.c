/* Pure request cutting and merging: where a request's pieces lie, which
 * SDSs a FLUSH reaches, how BLOCK_STATUS answers become NBD extents. No
 * I/O and no daemon state, so unit-tested on its own
 * (tests/unit/test_sdc_split.c); contracts are in sdc.h. The extent rules
 * themselves are proto/layout.h's, shared with the SDS that checks them. */
#include "layout.h"
#include "nbd_proto.h"
#include "sdc.h"

uint32_t sdc_split_count(enum nbd_io_cmd cmd, uint64_t off, uint32_t len, uint64_t extent_size)
{
    if (len == 0)
        return 0;
    uint64_t first = layout_extent_of(off, extent_size);
    uint64_t last = layout_extent_of(off + len - 1, extent_size);
    uint64_t n = last - first + 1;
    if (cmd == NBDIO_STATUS && n > NBD_MAX_EXTENTS)
        n = NBD_MAX_EXTENTS;
    return (uint32_t)n;
}

void sdc_split(struct sdc_piece *pc, uint32_t n, uint64_t off, uint32_t len, uint64_t extent_size)
{
    uint64_t pos = off, end = off + len;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t piece_end = layout_piece_end(pos, end, extent_size);
        pc[i].off = pos;
        pc[i].len = (uint32_t)(piece_end - pos);
        pc[i].boff = (uint32_t)(pos - off);
        pos = piece_end;
    }
}

int sdc_merge_status(const struct sdc_piece *pc, uint32_t n, struct nbd_extent *ext, int max)
{
    int next = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fl = pc[i].status > 0 ? 0 : (NBD_STATE_HOLE | NBD_STATE_ZERO);
        if (next && ext[next - 1].flags == fl) {
            ext[next - 1].len += pc[i].len;
        } else {
            if (next == max)
                break;
            ext[next].len = pc[i].len;
            ext[next].flags = fl;
            next++;
        }
    }
    return next;
}

bool sdc_zero_is_fast(uint64_t off, uint32_t len, int flags, uint64_t extent_size)
{
    /* a partial extent, or NO_HOLE, means writing zeroes as data */
    return !(flags & NBDIO_NO_HOLE) && off % extent_size == 0 && (off + len) % extent_size == 0;
}

bool sdc_flush_target(const Cairn__ClusterMap *m, const Cairn__Sds *sds, uint32_t pool_id)
{
    if (sds->state != CAIRN__SDS_STATE__SDS_UP)
        return false;
    for (size_t j = 0; j < m->n_devices; j++)
        if (m->devices[j]->sds_id == sds->id && m->devices[j]->pool_id == pool_id)
            return true;
    return false;
}

uint32_t sdc_flush_targets(const Cairn__ClusterMap *m, uint32_t pool_id, struct sdc_piece *pc,
                           uint32_t max)
{
    uint32_t n = 0;
    for (size_t i = 0; i < m->n_sds; i++)
        if (sdc_flush_target(m, m->sds[i], pool_id)) {
            if (n < max)
                pc[n].sds_id = m->sds[i]->id;
            n++;
        }
    return n;
}
