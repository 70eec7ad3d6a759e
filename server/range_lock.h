/* Range locks: the order in which overlapping mutations of one extent apply.
 *
 * A lock covers bytes [lo, hi) of one extent (vol, ext), in 4 KiB blocks
 * (an unaligned write read-modify-writes whole blocks, so two writes to one
 * block overlap even when their bytes do not). A lock is granted once every
 * earlier lock that overlaps it (earlier in the order of
 * range_lock_acquire() calls) has been released: overlapping requests apply
 * in arrival order on every copy, and a request never waits for one it does
 * not overlap, however long the queue ahead of it.
 *
 * Locks are kept per extent: acquiring looks only at the locks of that
 * extent that no later lock covers entirely, and releasing looks only at the
 * later locks of that extent, up to the first one that covers it entirely
 * (anything after that one waits for that one anyway). So a deep queue of
 * overlapping requests drains in time linear in its length.
 *
 * Pure bookkeeping: no map, no I/O, no clock; one thread. Memory: one small
 * record per extent that has locks, from a pool (nothing is allocated in
 * steady state).
 */
#ifndef CAIRN_RANGE_LOCK_H
#define CAIRN_RANGE_LOCK_H

#include <stddef.h>
#include <stdint.h>

#define RANGE_LOCK_BLOCK 4096u

struct range_lock;
struct range_locks;
struct range_lock_extent;

/* The lock was granted; the owner finds itself with container_of. */
typedef void (*range_lock_cb)(struct range_lock *l);

/* What a request locks. */
enum range_lock_span {
    RANGE_LOCK_BLOCKS, /* the 4 KiB blocks its bytes touch (reads-modify-writes) */
    RANGE_LOCK_EXTENT, /* the whole extent (TRIM and ZERO may free it) */
};

enum range_lock_state { RANGE_LOCK_IDLE, RANGE_LOCK_WAITING, RANGE_LOCK_HELD };

/* Embedded in its owner (a client request, a rebuild copy). The owner sets it
 * up with range_lock_init(); the rest is the table's. */
struct range_lock {
    uint64_t vol, ext;
    uint64_t lo, hi; /* bytes within the extent, block-aligned */
    range_lock_cb granted;
    /* private to range_lock.c */
    enum range_lock_state state;
    uint64_t seq;                     /* arrival order within the table */
    uint32_t blockers;                /* earlier locks this one still waits for */
    int covered;                      /* a later lock covers all of this one */
    struct range_lock_extent *e;      /* while not idle */
    struct range_lock *prev, *next;   /* the extent's locks, in arrival order */
    struct range_lock *uprev, *unext; /* ... of them, those not covered */
    struct range_lock *wprev, *wnext; /* ... of them, those waiting */
    struct range_lock *grant_next;    /* granted by the release under way */
};

/* A table of locks (one per daemon). NULL if memory is exhausted. */
struct range_locks *range_locks_new(void);
/* Free the table; no lock may be waiting or held. */
void range_locks_free(struct range_locks *t);

/* Set up l (idle) to lock, of extent ext of volume vol, the blocks of
 * [off, off + len) (len > 0), or the whole extent of extent_size bytes. */
void range_lock_init(struct range_lock *l, uint64_t vol, uint64_t ext, uint64_t off, uint64_t len,
                     enum range_lock_span span, uint64_t extent_size, range_lock_cb granted);

/* Take l (idle, set up). Returns 1 if granted now (granted() is not called),
 * 0 if queued (granted() runs later, from inside the range_lock_release() of
 * the last lock it waited for), -ENOMEM (l stays idle). */
int range_lock_acquire(struct range_locks *t, struct range_lock *l);

/* Release l (held); it becomes idle and may be set up again. The waiters it
 * was the last obstacle of are granted: their granted() callbacks run before
 * this returns, in arrival order, once the table is consistent again (so a
 * callback may acquire and release locks itself). */
void range_lock_release(struct range_locks *t, struct range_lock *l);

static inline int range_lock_is_held(const struct range_lock *l)
{
    return l->state == RANGE_LOCK_HELD;
}

/* Counters for tests: extent records in use, and the locks the acquire and
 * release walks have looked at so far (how the cost of a queue is measured). */
size_t range_locks_extents(const struct range_locks *t);
uint64_t range_locks_steps(const struct range_locks *t);

#endif
