/* Where a volume's bytes live: the rules every SDC and SDS must compute
 * alike, because a request is routed by one and checked by the other. They
 * are part of the wire contract: changing one means a new protocol version.
 *
 * A volume's address space is cut into extents of its pool's extent size;
 * each extent belongs to one placement group (PG) of the pool; a PG's copy 0
 * (the first of its in-sync devices) is its primary. A data request never
 * spans two extents: the SDC splits, the SDS refuses.
 */
#ifndef CAIRN_LAYOUT_H
#define CAIRN_LAYOUT_H

#include <stdint.h>

/* The PG of an extent. A volume's extents go round the PGs in turn from a
 * start fixed by its id, so a volume written full puts the same amount of
 * data (to one extent) in every PG; balanced PGs then mean balanced devices.
 * pg_count must be > 0. */
static inline uint32_t layout_pg_of(uint64_t volume_id, uint64_t extent, uint32_t pg_count)
{
    uint64_t x = volume_id * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (uint32_t)((x % pg_count + extent % pg_count) % pg_count);
}

/* The extent that holds byte offset off of a volume. */
static inline uint64_t layout_extent_of(uint64_t off, uint64_t extent_size)
{
    return off / extent_size;
}

/* The end (exclusive) of the part of [off, end) that lies in off's extent:
 * where the SDC cuts a request in two. */
static inline uint64_t layout_piece_end(uint64_t off, uint64_t end, uint64_t extent_size)
{
    uint64_t ext_end = (off / extent_size + 1) * extent_size;
    return end < ext_end ? end : ext_end;
}

/* 1 if [off, off + len) lies inside one extent (what an SDS accepts). */
static inline int layout_in_one_extent(uint64_t off, uint32_t len, uint64_t extent_size)
{
    return len > 0 && off % extent_size + len <= extent_size;
}

#endif
