#include "wqueue.h"

#include <stdlib.h>

struct batch {
    uv_write_t w;
    struct wq_item *items;
    uv_buf_t *bufs;
    uv_buf_t small[32];
};

static uv_prepare_t prep;
static uv_check_t check;
static int started;
static struct wqueue *dirty;

static void batch_done(uv_write_t *w, int status)
{
    struct batch *b = (struct batch *)w;
    struct wq_item *it = b->items;
    while (it) {
        struct wq_item *next = it->next;
        it->done(it, status);
        it = next;
    }
    if (b->bufs != b->small)
        free(b->bufs);
    free(b);
}

static void fail_all(struct wq_item *it, int status)
{
    while (it) {
        struct wq_item *next = it->next;
        it->done(it, status);
        it = next;
    }
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
    struct batch *b = malloc(sizeof(*b));
    if (!b) {
        fail_all(items, UV_ENOMEM);
        return;
    }
    b->items = items;
    b->bufs = n <= 32 ? b->small : malloc(sizeof(uv_buf_t) * (size_t)n);
    if (!b->bufs) {
        free(b);
        fail_all(items, UV_ENOMEM);
        return;
    }
    int k = 0;
    for (struct wq_item *it = items; it; it = it->next)
        for (int i = 0; i < it->nbufs; i++)
            b->bufs[k++] = it->bufs[i];
    int r = uv_write(&b->w, q->stream, b->bufs, (unsigned)k, batch_done);
    if (r < 0) {
        if (b->bufs != b->small)
            free(b->bufs);
        free(b);
        fail_all(items, r);
    }
}

static void flush_dirty(void)
{
    while (dirty)
        wq_flush(dirty);
}

static void prep_cb(uv_prepare_t *h)
{
    (void)h;
    flush_dirty();
}

static void check_cb(uv_check_t *h)
{
    (void)h;
    flush_dirty();
}

void wq_init(struct wqueue *q, uv_stream_t *stream)
{
    *q = (struct wqueue){.stream = stream};
    if (!started) {
        uv_prepare_init(stream->loop, &prep);
        uv_check_init(stream->loop, &check);
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
