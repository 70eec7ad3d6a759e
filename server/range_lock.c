/* Range locks: see range_lock.h for the contract.
 *
 * The rule, and why the walks may stop early. A new lock N counts as its
 * blockers the overlapping locks of its extent that are not "covered" (a
 * covered lock E has a later lock X with X's range containing E's). It need
 * not count a covered E: X overlaps N too, and X cannot be granted before E
 * is released, so N, waiting for X (or for what covers X, and so on), waits
 * for E as well. Once covered, a lock stays covered until it is released: its
 * cover overlaps it, so it is released after it.
 *
 * Releasing E must then take one off exactly the locks that counted it: the
 * later overlapping locks that arrived while E was not yet covered, that is,
 * those up to and including the first later lock that covers E. Later locks
 * that overlap E are all waiting (they wait for E), so the walk also ends
 * after the last waiting lock of the extent.
 */
#include "range_lock.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "pool.h"
#include "util.h"

#define RANGE_LOCK_BUCKETS 4096

struct range_lock_extent {
    uint64_t vol, ext;
    struct range_lock_extent *hnext;
    struct range_lock *head, *tail;   /* every lock, in arrival order */
    struct range_lock *uhead, *utail; /* not covered */
    struct range_lock *whead, *wtail; /* waiting */
};

struct range_locks {
    struct range_lock_extent *buckets[RANGE_LOCK_BUCKETS];
    struct pool extents;
    size_t nextents;
    uint64_t seq;
    uint64_t steps;
};

/* Doubly linked lists threaded through one pair of a lock's link fields. */
#define LIST_APPEND(head, tail, l, prevf, nextf)                                                   \
    do {                                                                                           \
        (l)->prevf = (tail);                                                                       \
        (l)->nextf = NULL;                                                                         \
        if (tail)                                                                                  \
            (tail)->nextf = (l);                                                                   \
        else                                                                                       \
            (head) = (l);                                                                          \
        (tail) = (l);                                                                              \
    } while (0)

#define LIST_REMOVE(head, tail, l, prevf, nextf)                                                   \
    do {                                                                                           \
        if ((l)->prevf)                                                                            \
            (l)->prevf->nextf = (l)->nextf;                                                        \
        else                                                                                       \
            (head) = (l)->nextf;                                                                   \
        if ((l)->nextf)                                                                            \
            (l)->nextf->prevf = (l)->prevf;                                                        \
        else                                                                                       \
            (tail) = (l)->prevf;                                                                   \
        (l)->prevf = (l)->nextf = NULL;                                                            \
    } while (0)

struct range_locks *range_locks_new(void)
{
    struct range_locks *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->extents = (struct pool)POOL_INIT(struct range_lock_extent, 4096);
    return t;
}

void range_locks_free(struct range_locks *t)
{
    if (!t)
        return;
    assert(t->nextents == 0);
    pool_drain(&t->extents);
    free(t);
}

size_t range_locks_extents(const struct range_locks *t)
{
    return t->nextents;
}

uint64_t range_locks_steps(const struct range_locks *t)
{
    return t->steps;
}

void range_lock_init(struct range_lock *l, uint64_t vol, uint64_t ext, uint64_t off, uint64_t len,
                     enum range_lock_span span, uint64_t extent_size, range_lock_cb granted)
{
    *l = (struct range_lock){.vol = vol, .ext = ext, .granted = granted};
    if (span == RANGE_LOCK_EXTENT) {
        l->lo = 0;
        l->hi = extent_size;
    } else {
        l->lo = off / RANGE_LOCK_BLOCK * RANGE_LOCK_BLOCK;
        l->hi = (off + len + RANGE_LOCK_BLOCK - 1) / RANGE_LOCK_BLOCK * RANGE_LOCK_BLOCK;
    }
}

static uint32_t bucket_of(uint64_t vol, uint64_t ext)
{
    return (uint32_t)(hash_mix64(vol * 31 + ext) % RANGE_LOCK_BUCKETS);
}

static struct range_lock_extent *extent_get(struct range_locks *t, uint64_t vol, uint64_t ext)
{
    struct range_lock_extent **b = &t->buckets[bucket_of(vol, ext)];
    for (struct range_lock_extent *e = *b; e; e = e->hnext)
        if (e->vol == vol && e->ext == ext)
            return e;
    struct range_lock_extent *e = pool_get(&t->extents);
    if (!e)
        return NULL;
    e->vol = vol;
    e->ext = ext;
    e->hnext = *b;
    *b = e;
    t->nextents++;
    return e;
}

static void extent_put(struct range_locks *t, struct range_lock_extent *e)
{
    struct range_lock_extent **pp = &t->buckets[bucket_of(e->vol, e->ext)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    t->nextents--;
    pool_put(&t->extents, e);
}

static int overlaps(const struct range_lock *a, const struct range_lock *b)
{
    return a->lo < b->hi && b->lo < a->hi;
}

/* a's range contains b's */
static int covers(const struct range_lock *a, const struct range_lock *b)
{
    return a->lo <= b->lo && b->hi <= a->hi;
}

int range_lock_acquire(struct range_locks *t, struct range_lock *l)
{
    assert(l->state == RANGE_LOCK_IDLE && l->lo < l->hi);
    struct range_lock_extent *e = extent_get(t, l->vol, l->ext);
    if (!e)
        return -ENOMEM;
    l->e = e;
    l->seq = ++t->seq;
    l->blockers = 0;
    l->covered = 0;
    for (struct range_lock *o = e->uhead, *next; o; o = next) {
        next = o->unext;
        t->steps++;
        if (!overlaps(o, l))
            continue;
        l->blockers++;
        if (covers(l, o)) {
            /* later arrivals wait for l, and so for o: they need not count o */
            LIST_REMOVE(e->uhead, e->utail, o, uprev, unext);
            o->covered = 1;
        }
    }
    LIST_APPEND(e->head, e->tail, l, prev, next);
    LIST_APPEND(e->uhead, e->utail, l, uprev, unext);
    if (l->blockers) {
        l->state = RANGE_LOCK_WAITING;
        LIST_APPEND(e->whead, e->wtail, l, wprev, wnext);
        return 0;
    }
    l->state = RANGE_LOCK_HELD;
    return 1;
}

void range_lock_release(struct range_locks *t, struct range_lock *l)
{
    assert(l->state == RANGE_LOCK_HELD);
    struct range_lock_extent *e = l->e;
    struct range_lock *grants = NULL, **gtail = &grants;
    for (struct range_lock *w = l->next; w && e->wtail && w->seq <= e->wtail->seq; w = w->next) {
        t->steps++;
        if (!overlaps(l, w))
            continue;
        assert(w->state == RANGE_LOCK_WAITING && w->blockers > 0);
        if (--w->blockers == 0) {
            w->state = RANGE_LOCK_HELD;
            LIST_REMOVE(e->whead, e->wtail, w, wprev, wnext);
            w->grant_next = NULL;
            *gtail = w;
            gtail = &w->grant_next;
        }
        if (covers(w, l))
            break; /* the locks after w found l covered and did not count it */
    }
    LIST_REMOVE(e->head, e->tail, l, prev, next);
    if (!l->covered)
        LIST_REMOVE(e->uhead, e->utail, l, uprev, unext);
    l->state = RANGE_LOCK_IDLE;
    l->e = NULL;
    if (!e->head)
        extent_put(t, e);
    /* Only now, with the table consistent: a granted owner may start its
     * mutation, finish it at once (a failure) and release its own lock. */
    while (grants) {
        struct range_lock *g = grants;
        grants = g->grant_next;
        g->grant_next = NULL;
        g->granted(g);
    }
}
