/* Write batching: frames queued on a stream during one turn of the event loop
 * go out in a single writev, just before the loop next waits for I/O (libuv's
 * prepare phase) or right after it handled I/O (check phase). At queue depth
 * 32 this turns 32 system calls and 32 wake-ups of the peer into one.
 *
 * The writev is tried at once (no write request, no epoll change); only what
 * the socket cannot take now waits in a libuv write request.
 *
 * One event loop per process (wq_init binds it). An item stays owned by the
 * caller's done callback: done(item, status) runs once, after the write
 * completed, failed, or was cancelled by closing the stream; always from the
 * event loop (prepare, check or idle phase, or libuv's write callback), never
 * from inside wq_push() or wq_flush().
 */
#ifndef CAIRN_WQUEUE_H
#define CAIRN_WQUEUE_H

#include <uv.h>

#define WQ_MAX_BUFS 9 /* header+message, up to 7 payload pieces, a MAC */

struct wq_item {
    struct wq_item *next;
    uv_buf_t bufs[WQ_MAX_BUFS];
    int nbufs;
    int status; /* for the done callback */
    void (*done)(struct wq_item *it, int status);
};

struct wqueue {
    uv_stream_t *stream;
    struct wq_item *head, *tail;
    int nbufs;
    struct wqueue *next_dirty;
    int dirty;
};

void wq_init(struct wqueue *q, uv_stream_t *stream);
/* Queue an item; it is written with the others before the loop next blocks. */
void wq_push(struct wqueue *q, struct wq_item *it);
/* Write what is queued now (before closing the stream, say). */
void wq_flush(struct wqueue *q);

#endif
