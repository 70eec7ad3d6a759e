#include "pool.h"

#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

void *pool_get(struct pool *p)
{
    void *o = p->free;
    if (o) {
        UNPOISON(o, p->size);
        memcpy(&p->free, o, sizeof(void *));
        p->nfree--;
        memset(o, 0, p->size);
    } else {
        o = calloc(1, p->size);
        if (!o)
            return NULL;
    }
    p->nlive++;
    return o;
}

void pool_put(struct pool *p, void *obj)
{
    if (!obj)
        return;
    p->nlive--;
    if (p->nfree >= p->max_free) {
        free(obj);
        return;
    }
    memcpy(obj, &p->free, sizeof(void *));
    POISON((char *)obj + sizeof(void *), p->size - sizeof(void *));
    p->free = obj;
    p->nfree++;
}

void pool_drain(struct pool *p)
{
    while (p->free) {
        void *o = p->free;
        UNPOISON(o, p->size);
        memcpy(&p->free, o, sizeof(void *));
        free(o);
        p->nfree--;
    }
}
