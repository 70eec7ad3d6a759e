/* Small helpers every daemon needs: endian codecs, addresses, hashing. */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#undef MIN
#undef MAX
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t get_be64(const uint8_t *p)
{
    return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

/* 64-bit mixing hash (splitmix64 finaliser): deterministic across hosts. */
static inline uint64_t hash_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Split "host:port" into host (NUL-terminated, at most hostlen-1 bytes) and port.
 * Returns 0 or -EINVAL. */
int addr_split(const char *addr, char *host, size_t hostlen, int *port);

/* Split list, "a,b,c", in place at its commas: out[] gets its non-empty
 * items, at most max. Returns how many. */
int addr_list_split(char *list, char **out, int max);

/* Monotonic milliseconds. */
uint64_t now_ms(void);

/* Write buf to path atomically (temp file, fsync, rename, fsync dir). 0 or -errno. */
int file_write_atomic(const char *path, const void *buf, size_t len);
/* Read a whole file into a malloc'd buffer (NUL-terminated). Caller frees. 0 or -errno. */
int file_read_all(const char *path, char **out, size_t *len);

/* Format a byte count for people: "512 B", "8.0 GiB". Returns buf. */
const char *fmt_bytes(char *buf, size_t len, uint64_t bytes);

/* Parse a size like 8G, 512M, 4096. Returns 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);

#endif
