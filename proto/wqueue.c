#include "wqueue.h"

#include <stdlib.h>

/* Items whose bytes went out in a uv_write: done when it completes. */
struct batch {
    uv_write_t w;
    struct wq_item *items;
};

static uv_prepare_t prep;
static uv_check_t check;
static uv_idle_t idle;
static int started;
static struct wqueue *dirty;
/* items written (or failed) without a write request: their done callbacks
 * run from the loop, not from inside the flush that wrote them */
static struct wq_item *done_head, **done_tail = &done_head;

static void idle_cb(uv_idle_t *h);

static void run_items(struct wq_item *it, int status)
{
    while (it) {
        struct wq_item *next = it->next;
        it->done(it, status);
        it = next;
    }
}

static void batch_done(uv_write_t *w, int status)
{
    struct batch *b = (struct batch *)w;
    run_items(b->items, status);
    free(b);
}

static void done_later(struct wq_item *items, int status)
{
    for (struct wq_item *it = items; it; it = it->next)
        it->status = status;
    *done_tail = items;
    while (*done_tail)
        done_tail = &(*done_tail)->next;
    if (!uv_is_active((uv_handle_t *)&idle))
        uv_idle_start(&idle, idle_cb); /* keeps the loop alive until they ran */
}

static void run_done(void)
{
    while (done_head) {
        struct wq_item *it = done_head;
        done_head = it->next;
        if (!done_head)
            done_tail = &done_head;
        it->done(it, it->status);
    }
    uv_idle_stop(&idle);
}

void wq_flush(struct wqueue *q)
{
    if (q->dirty) {
        struct wqueue **pp = &dirty;
        while (*pp && *pp != q)
            pp = &(*pp)->next_dirty;
        if (*pp)
            *pp = q->next_dirty;
        q->dirty = 0;
    }
    struct wq_item *items = q->head;
    int n = q->nbufs;
    q->head = q->tail = NULL;
    q->nbufs = 0;
    if (!items)
        return;
    uv_buf_t small[64];
    uv_buf_t *bufs = n <= 64 ? small : malloc(sizeof(uv_buf_t) * (size_t)n);
    if (!bufs) {
        done_later(items, UV_ENOMEM);
        return;
    }
    int k = 0;
    size_t total = 0;
    for (struct wq_item *it = items; it; it = it->next)
        for (int i = 0; i < it->nbufs; i++) {
            total += it->bufs[i].len;
            bufs[k++] = it->bufs[i];
        }
    /* UV_EAGAIN while an earlier write request is still queued: order kept */
    int r = uv_try_write(q->stream, bufs, (unsigned)k);
    if (r == (int)total || (r < 0 && r != UV_EAGAIN)) {
        if (bufs != small)
            free(bufs);
        done_later(items, r < 0 ? r : 0);
        return;
    }
    /* the rest waits for the socket: skip what went */
    size_t skip = r > 0 ? (size_t)r : 0;
    int first = 0;
    while (skip >= bufs[first].len) {
        skip -= bufs[first].len;
        first++;
    }
    bufs[first].base += skip;
    bufs[first].len -= skip;
    struct batch *b = malloc(sizeof(*b));
    if (!b) {
        if (bufs != small)
            free(bufs);
        done_later(items, UV_ENOMEM);
        return;
    }
    b->items = items;
    /* uv_write copies the buffer array */
    r = uv_write(&b->w, q->stream, bufs + first, (unsigned)(k - first), batch_done);
    if (bufs != small)
        free(bufs);
    if (r < 0) {
        free(b);
        done_later(items, r);
    }
}

static void flush_dirty(void)
{
    while (dirty)
        wq_flush(dirty);
}

/* Done callbacks may queue more: go on until both lists are empty. */
static void flush_and_finish(void)
{
    do {
        flush_dirty();
        run_done();
    } while (dirty);
}

static void prep_cb(uv_prepare_t *h)
{
    (void)h;
    flush_and_finish();
}

static void check_cb(uv_check_t *h)
{
    (void)h;
    flush_and_finish();
}

static void idle_cb(uv_idle_t *h)
{
    (void)h;
    flush_and_finish();
}

void wq_init(struct wqueue *q, uv_stream_t *stream)
{
    *q = (struct wqueue){.stream = stream};
    if (!started) {
        uv_prepare_init(stream->loop, &prep);
        uv_check_init(stream->loop, &check);
        uv_idle_init(stream->loop, &idle);
        uv_prepare_start(&prep, prep_cb);
        uv_check_start(&check, check_cb);
        /* they must not keep the loop alive on their own */
        uv_unref((uv_handle_t *)&prep);
        uv_unref((uv_handle_t *)&check);
        started = 1;
    }
}

void wq_push(struct wqueue *q, struct wq_item *it)
{
    it->next = NULL;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->nbufs += it->nbufs;
    if (!q->dirty) {
        q->dirty = 1;
        q->next_dirty = dirty;
        dirty = q;
    }
}
