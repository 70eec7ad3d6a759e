/* Range locks (server/range_lock.c): ordering of overlapping mutations. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "range_lock.h"

#define EXT (1u << 20)

/* A lock's owner in these tests: counts its grants. */
struct owner {
    struct range_lock l;
    int granted;
    int order; /* when it was granted (1, 2, ...) */
    int release_in_cb;
};

static struct range_locks *T;
static int grant_clock;

static void granted_cb(struct range_lock *l)
{
    struct owner *o = (struct owner *)((char *)l - offsetof(struct owner, l));
    CHECK_EQ(o->granted, 0);
    o->granted = 1;
    o->order = ++grant_clock;
    if (o->release_in_cb)
        range_lock_release(T, &o->l);
}

static int take(struct owner *o, uint64_t vol, uint64_t ext, uint64_t off, uint64_t len,
                enum range_lock_span span)
{
    memset(o, 0, sizeof(*o));
    range_lock_init(&o->l, vol, ext, off, len, span, EXT, granted_cb);
    int r = range_lock_acquire(T, &o->l);
    CHECK(r >= 0);
    if (r == 1) {
        o->granted = 1;
        o->order = ++grant_clock;
    }
    return r;
}

static void setup(void)
{
    T = range_locks_new();
    CHECK(T);
    grant_clock = 0;
}

static void teardown(void)
{
    CHECK_EQ(range_locks_extents(T), 0);
    range_locks_free(T);
    T = NULL;
}

static void test_non_overlapping_granted_at_once(void)
{
    setup();
    struct owner a, b, c, d;
    CHECK_EQ(take(&a, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(take(&b, 1, 0, 4096, 4096, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(take(&c, 1, 1, 0, 4096, RANGE_LOCK_BLOCKS), 1); /* another extent */
    CHECK_EQ(take(&d, 2, 0, 0, 4096, RANGE_LOCK_BLOCKS), 1); /* another volume */
    CHECK_EQ(range_locks_extents(T), 3);
    range_lock_release(T, &a.l);
    range_lock_release(T, &b.l);
    range_lock_release(T, &c.l);
    range_lock_release(T, &d.l);
    teardown();
}

static void test_overlapping_waits(void)
{
    setup();
    struct owner a, b;
    CHECK_EQ(take(&a, 1, 0, 0, 8192, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(take(&b, 1, 0, 4096, 8192, RANGE_LOCK_BLOCKS), 0);
    CHECK_EQ(b.granted, 0);
    range_lock_release(T, &a.l);
    CHECK_EQ(b.granted, 1);
    range_lock_release(T, &b.l);
    teardown();
}

static void test_fifo_among_overlapping_waiters(void)
{
    setup();
    struct owner h, w[5];
    CHECK_EQ(take(&h, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 1);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(take(&w[i], 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 0);
    range_lock_release(T, &h.l);
    for (int i = 0; i < 5; i++) {
        /* exactly the next one in arrival order holds it */
        for (int j = 0; j < 5; j++)
            CHECK_EQ(w[j].granted, j <= i);
        range_lock_release(T, &w[i].l);
    }
    for (int i = 1; i < 5; i++)
        CHECK(w[i].order > w[i - 1].order);
    teardown();
}

static void test_later_non_overlapping_not_blocked_by_waiter(void)
{
    setup();
    struct owner a, b, c, d;
    CHECK_EQ(take(&a, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 1);
    /* b waits for a and spans blocks 0..2 */
    CHECK_EQ(take(&b, 1, 0, 0, 3 * 4096, RANGE_LOCK_BLOCKS), 0);
    /* c overlaps the waiter b but not the holder a: it waits behind b */
    CHECK_EQ(take(&c, 1, 0, 2 * 4096, 4096, RANGE_LOCK_BLOCKS), 0);
    /* d overlaps neither: granted at once, the queue notwithstanding */
    CHECK_EQ(take(&d, 1, 0, 5 * 4096, 4096, RANGE_LOCK_BLOCKS), 1);
    range_lock_release(T, &a.l);
    CHECK_EQ(b.granted, 1);
    CHECK_EQ(c.granted, 0);
    range_lock_release(T, &b.l);
    CHECK_EQ(c.granted, 1);
    range_lock_release(T, &c.l);
    range_lock_release(T, &d.l);
    teardown();
}

static void test_trim_zero_lock_whole_extent(void)
{
    setup();
    struct owner w, z, after, other;
    CHECK_EQ(take(&w, 1, 3, EXT - 4096, 4096, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(w.l.lo, EXT - 4096);
    /* a ZERO of the first block locks the whole extent: it waits for w */
    CHECK_EQ(take(&z, 1, 3, 0, 512, RANGE_LOCK_EXTENT), 0);
    CHECK_EQ(z.l.lo, 0);
    CHECK_EQ(z.l.hi, EXT);
    /* a write anywhere in the extent waits for the ZERO */
    CHECK_EQ(take(&after, 1, 3, 512 * 1024, 4096, RANGE_LOCK_BLOCKS), 0);
    /* the next extent is not locked */
    CHECK_EQ(take(&other, 1, 4, 0, 4096, RANGE_LOCK_BLOCKS), 1);
    range_lock_release(T, &w.l);
    CHECK_EQ(z.granted, 1);
    CHECK_EQ(after.granted, 0);
    range_lock_release(T, &z.l);
    CHECK_EQ(after.granted, 1);
    range_lock_release(T, &after.l);
    range_lock_release(T, &other.l);
    teardown();
}

static void test_4k_rounding_of_unaligned_ranges(void)
{
    setup();
    struct owner a, b, c, d;
    CHECK_EQ(take(&a, 1, 0, 100, 200, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(a.l.lo, 0);
    CHECK_EQ(a.l.hi, 4096);
    /* other bytes of the same block: they overlap after rounding */
    CHECK_EQ(take(&b, 1, 0, 1000, 10, RANGE_LOCK_BLOCKS), 0);
    /* a range ending exactly on a block boundary does not reach the next */
    CHECK_EQ(take(&c, 1, 0, 4096, 4096, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(c.l.hi, 8192);
    /* one byte over a boundary takes both blocks */
    CHECK_EQ(take(&d, 1, 0, 4095, 2, RANGE_LOCK_BLOCKS), 0);
    CHECK_EQ(d.l.lo, 0);
    CHECK_EQ(d.l.hi, 8192);
    range_lock_release(T, &a.l);
    CHECK_EQ(b.granted, 1);
    CHECK_EQ(d.granted, 0);
    range_lock_release(T, &c.l);
    CHECK_EQ(d.granted, 0); /* still behind b */
    range_lock_release(T, &b.l);
    CHECK_EQ(d.granted, 1);
    range_lock_release(T, &d.l);
    teardown();
}

static void test_release_wakes_exactly_the_right_waiters(void)
{
    setup();
    /* holder over blocks 0-3; waiters: 0, 1, 0-1 (behind both), 8 (free),
     * 3 (only the holder), then 1 again (behind "1" and "0-1") */
    struct owner h, w0, w1, w01, w8, w3, w1b;
    CHECK_EQ(take(&h, 1, 0, 0, 4 * 4096, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(take(&w0, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 0);
    CHECK_EQ(take(&w1, 1, 0, 4096, 4096, RANGE_LOCK_BLOCKS), 0);
    CHECK_EQ(take(&w01, 1, 0, 0, 2 * 4096, RANGE_LOCK_BLOCKS), 0);
    CHECK_EQ(take(&w8, 1, 0, 8 * 4096, 4096, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(take(&w3, 1, 0, 3 * 4096, 4096, RANGE_LOCK_BLOCKS), 0);
    CHECK_EQ(take(&w1b, 1, 0, 4096, 4096, RANGE_LOCK_BLOCKS), 0);
    range_lock_release(T, &h.l);
    CHECK_EQ(w0.granted, 1);
    CHECK_EQ(w1.granted, 1);
    CHECK_EQ(w3.granted, 1);
    CHECK_EQ(w01.granted, 0);
    CHECK_EQ(w1b.granted, 0);
    /* granted in arrival order */
    CHECK(w0.order < w1.order && w1.order < w3.order);
    range_lock_release(T, &w0.l);
    CHECK_EQ(w01.granted, 0); /* w1 still holds block 1 */
    range_lock_release(T, &w1.l);
    CHECK_EQ(w01.granted, 1);
    CHECK_EQ(w1b.granted, 0);
    range_lock_release(T, &w01.l);
    CHECK_EQ(w1b.granted, 1);
    range_lock_release(T, &w1b.l);
    range_lock_release(T, &w3.l);
    range_lock_release(T, &w8.l);
    teardown();
}

static void test_callback_may_release(void)
{
    setup();
    struct owner h, a, b;
    CHECK_EQ(take(&h, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 1);
    CHECK_EQ(take(&a, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 0);
    a.release_in_cb = 1; /* a failure found at once: the owner lets go inside its callback */
    CHECK_EQ(take(&b, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 0);
    range_lock_release(T, &h.l);
    CHECK_EQ(a.granted, 1);
    CHECK_EQ(b.granted, 1);
    range_lock_release(T, &b.l);
    teardown();
}

/* Draining a deep queue costs a bounded number of steps per lock. */
static void test_deep_queue_releases_in_linear_time(void)
{
    enum { N = 10000 };
    static struct owner q[N];
    struct owner h;
    setup();
    /* 1: N waiters on one block behind a holder, released in turn */
    CHECK_EQ(take(&h, 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 1);
    for (int i = 0; i < N; i++)
        CHECK_EQ(take(&q[i], 1, 0, 0, 4096, RANGE_LOCK_BLOCKS), 0);
    uint64_t s0 = range_locks_steps(T);
    range_lock_release(T, &h.l);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(q[i].granted, 1);
        CHECK(i + 1 == N || !q[i + 1].granted);
        range_lock_release(T, &q[i].l);
    }
    uint64_t steps = range_locks_steps(T) - s0;
    CHECK(steps <= 2 * (uint64_t)N);
    /* 2: N writes to distinct blocks behind a TRIM of the whole (large)
     * extent; then released in arrival order */
    struct owner trim;
    memset(&trim, 0, sizeof(trim));
    range_lock_init(&trim.l, 1, 0, 0, 1, RANGE_LOCK_EXTENT, (uint64_t)N * 4096, granted_cb);
    CHECK_EQ(range_lock_acquire(T, &trim.l), 1);
    for (int i = 0; i < N; i++)
        CHECK_EQ(take(&q[i], 1, 0, (uint64_t)i * 4096, 4096, RANGE_LOCK_BLOCKS), 0);
    s0 = range_locks_steps(T);
    range_lock_release(T, &trim.l);
    for (int i = 0; i < N; i++)
        CHECK_EQ(q[i].granted, 1);
    for (int i = 0; i < N; i++)
        range_lock_release(T, &q[i].l);
    steps = range_locks_steps(T) - s0;
    CHECK(steps <= 2 * (uint64_t)N);
    teardown();
}

/* Random locks on a few blocks of a few extents, checked against the rule
 * itself: a lock is granted exactly when no earlier lock that overlaps it is
 * still present. */
static void test_random_against_model(void)
{
    enum { N = 64, ROUNDS = 20000 };
    static struct owner o[N];
    static uint64_t seq[N];
    static int live[N];
    uint64_t clock = 0;
    setup();
    srand(7);
    memset(live, 0, sizeof(live));
    for (int round = 0; round < ROUNDS; round++) {
        int i = rand() % N;
        if (!live[i]) {
            uint64_t ext = (uint64_t)(rand() % 2);
            uint64_t off = (uint64_t)(rand() % 12) * 1024;
            uint64_t len = 1 + (uint64_t)(rand() % 12000);
            enum range_lock_span span = rand() % 8 ? RANGE_LOCK_BLOCKS : RANGE_LOCK_EXTENT;
            take(&o[i], 1, ext, off, len, span);
            live[i] = 1;
            seq[i] = ++clock;
        } else if (o[i].granted) {
            range_lock_release(T, &o[i].l);
            live[i] = 0;
        } else {
            continue;
        }
        for (int j = 0; j < N; j++) {
            if (!live[j])
                continue;
            int blocked = 0;
            for (int k = 0; k < N && !blocked; k++)
                blocked = live[k] && seq[k] < seq[j] && o[k].l.ext == o[j].l.ext &&
                          o[k].l.lo < o[j].l.hi && o[j].l.lo < o[k].l.hi;
            if (o[j].granted == blocked) {
                fprintf(stderr, "round %d: lock %d granted %d, blocked by the rule %d\n", round, j,
                        o[j].granted, blocked);
                exit(1);
            }
        }
    }
    /* drain */
    for (int pass = 0; pass < N; pass++)
        for (int i = 0; i < N; i++)
            if (live[i] && o[i].granted) {
                range_lock_release(T, &o[i].l);
                live[i] = 0;
            }
    for (int i = 0; i < N; i++)
        CHECK_EQ(live[i], 0);
    teardown();
}

/* Run a case; its name is printed once it has passed. */
#define RUN(t) (t(), printf("ok %s\n", #t))

int main(void)
{
    RUN(test_non_overlapping_granted_at_once);
    RUN(test_overlapping_waits);
    RUN(test_fifo_among_overlapping_waiters);
    RUN(test_later_non_overlapping_not_blocked_by_waiter);
    RUN(test_trim_zero_lock_whole_extent);
    RUN(test_4k_rounding_of_unaligned_ranges);
    RUN(test_release_wakes_exactly_the_right_waiters);
    RUN(test_callback_may_release);
    RUN(test_deep_queue_releases_in_linear_time);
    RUN(test_random_against_model);
    printf("range lock tests passed\n");
    return 0;
}
