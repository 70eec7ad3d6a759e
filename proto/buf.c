/* Payload buffers: from 4 KiB on 4096-aligned (they go to O_DIRECT I/O as
 * they are), reused per size class so the I/O path does not allocate.
 * Smaller ones (a 1 KiB read or write: never direct I/O, the extent store
 * reads-modifies-writes through an aligned buffer of its own) come from
 * malloc unaligned, and cost what they hold. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"

/* Payload buffers come and go with every request; fresh ones of 128 KiB and
 * more are mmap()ed by malloc, so each would cost a page fault per 4 KiB and
 * a munmap. Freed buffers wait here, per power-of-two size class, and are
 * reused: up to BUF_CACHE_BYTES per thread, counted at what they cost
 * (BUF_COST). A buffer is a whole class (its size is rounded up), so its
 * class is found again from malloc_usable_size(). */
#define BUF_MIN_SHIFT 9    /* 512 bytes */
#define BUF_ALIGN_SHIFT 12 /* from here on 4096-aligned */
#define BUF_MAX_SHIFT 22   /* 4 MiB: larger buffers are not kept */
#define BUF_CACHE_BYTES (64u << 20)

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BUF_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define BUF_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define BUF_POISON(p, n) ((void)(p), (void)(n))
#define BUF_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static __thread void *buf_cache[BUF_MAX_SHIFT + 1];
static __thread size_t buf_cached;

/* the class of a request: the smallest power of two that holds len */
static int buf_class(size_t len)
{
    return len <= ((size_t)1 << BUF_MIN_SHIFT) ? BUF_MIN_SHIFT : 64 - __builtin_clzll(len - 1);
}

/* What a buffer of sz bytes costs malloc: an aligned one also the page
 * before it (see rpc.h), a small one its chunk header. */
#define BUF_COST(sz) ((sz) < ((size_t)1 << BUF_ALIGN_SHIFT) ? (sz) + 16 : (sz) + 4096)

size_t rpc_buf_size(size_t len)
{
    int k = buf_class(len);
    return BUF_COST(k <= BUF_MAX_SHIFT ? (size_t)1 << k : (len + 4095) & ~(size_t)4095);
}

uint8_t *rpc_buf_alloc(size_t len)
{
    int k = buf_class(len);
    if (k <= BUF_MAX_SHIFT && buf_cache[k]) {
        void *p = buf_cache[k];
        BUF_UNPOISON(p, (size_t)1 << k);
        memcpy(&buf_cache[k], p, sizeof(void *));
        buf_cached -= BUF_COST((size_t)1 << k);
        return p;
    }
    void *p = NULL;
    size_t sz = k <= BUF_MAX_SHIFT ? (size_t)1 << k : (len + 4095) & ~(size_t)4095;
    if (k < BUF_ALIGN_SHIFT)
        return malloc(sz);
    if (posix_memalign(&p, 4096, sz))
        return NULL;
    return p;
}

void rpc_buf_free(void *buf)
{
    if (!buf)
        return;
    /* the class it holds: malloc's usable size is the class plus a little */
    int k = 63 - __builtin_clzll(malloc_usable_size(buf));
    if (k >= BUF_MIN_SHIFT && k <= BUF_MAX_SHIFT &&
        buf_cached + BUF_COST((size_t)1 << k) <= BUF_CACHE_BYTES) {
        memcpy(buf, &buf_cache[k], sizeof(void *));
        /* a use after free of a kept buffer is still caught */
        BUF_POISON((uint8_t *)buf + sizeof(void *), ((size_t)1 << k) - sizeof(void *));
        buf_cache[k] = buf;
        buf_cached += BUF_COST((size_t)1 << k);
        return;
    }
    free(buf);
}
