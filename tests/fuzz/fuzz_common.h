/* Shared by the fuzz targets: records in an input, a small real cluster. */
#ifndef CAIRN_FUZZ_COMMON_H
#define CAIRN_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* An input is a sequence of records [u8 kind][u16 length, big-endian][bytes]. */
struct fz_rec {
    uint8_t kind;
    const uint8_t *p;
    uint32_t len;
};
static inline int fz_next(const uint8_t **d, size_t *n, struct fz_rec *r)
{
    if (*n < 3)
        return 0;
    r->kind = (*d)[0];
    uint32_t l = ((uint32_t)(*d)[1] << 8) | (*d)[2];
    *d += 3, *n -= 3;
    if (l > *n)
        l = (uint32_t)*n;
    r->p = *d;
    r->len = l;
    *d += l, *n -= l;
    return 1;
}
#endif
