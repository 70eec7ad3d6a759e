/* FLUSH: everything completed before it is durable on every device of this
 * SDS when it is acknowledged (the SDC sends it to every SDS it wrote to). */
#include <string.h>

#include "extent_store.h"
#include "log.h"
#include "sds.h"

static void flush_part_done(struct ioreq *r, int status)
{
    if (status < 0 && r->status >= 0)
        r->status = status;
    if (--r->pending > 0)
        return;
    dispatch_reply(r);
}

static void flush_done_cb(void *arg, int res)
{
    flush_part_done(arg, res);
}

static void bg_flush_cb(void *arg, int res)
{
    struct dev *d = arg;
    d->bg_flush = 0;
    if (res < 0) {
        log_error("device %u: background flush failed: %s", d->id, strerror(-res));
        devices_error(d, res);
    }
}

void flush_timer_cb(uv_timer_t *t)
{
    struct sds *s = t->data;
    for (int i = 0; i < s->ndevs; i++) {
        struct dev *d = &s->devs[i];
        if (d->failed || !d->st || d->bg_flush || !store_unflushed(d->st))
            continue;
        if (store_flush(d->st, bg_flush_cb, d) == 0)
            d->bg_flush = 1;
    }
}

void flush_start(struct ioreq *r)
{
    struct sds *s = r->sds;
    r->pending = 1; /* ours, while the flushes start */
    for (int i = 0; i < s->ndevs; i++) {
        if (s->devs[i].failed)
            continue;
        r->pending++;
        int rc = store_flush(s->devs[i].st, flush_done_cb, r);
        if (rc < 0)
            flush_part_done(r, rc);
    }
    flush_part_done(r, 0);
}
