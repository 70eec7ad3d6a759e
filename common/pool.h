/* Free lists of fixed-size objects, so that the I/O path allocates nothing
 * in steady state: a request object is taken from its pool and given back
 * when the request ends; memory comes from malloc only while the pool grows
 * to the depth the load needs.
 *
 * A pool belongs to one thread (one event loop); nothing here locks. A kept
 * object is poisoned under AddressSanitizer, so a use after pool_put() is
 * still caught. Objects are aligned for any type (malloc's alignment).
 */
#ifndef CAIRN_POOL_H
#define CAIRN_POOL_H

#include <stddef.h>

struct pool {
    size_t size;     /* object size, at least sizeof(void *) */
    size_t max_free; /* objects kept for reuse beyond this are freed */
    void *free;      /* kept objects, linked through their first word */
    size_t nfree;    /* objects kept */
    size_t nlive;    /* objects handed out and not yet put back */
};

/* A pool of objects of type T that keeps at most max of them. */
#define POOL_INIT(T, max)                                                                          \
    {                                                                                              \
        .size = sizeof(T) < sizeof(void *) ? sizeof(void *) : sizeof(T), .max_free = (max)         \
    }

/* A zeroed object (as calloc would give), or NULL if memory is exhausted. */
void *pool_get(struct pool *p);
/* Give obj (from pool_get on p, or NULL) back. */
void pool_put(struct pool *p, void *obj);
/* Free every kept object (at shutdown). */
void pool_drain(struct pool *p);

#endif
