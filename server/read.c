/* Reads and allocation queries (STAT). validate_io() lets a client's read
 * through only at the primary holding its lease, never at a rebuilding copy. */
#include <errno.h>
#include <string.h>

#include "extent_store.h"
#include "log.h"
#include "sds.h"

static void read_done_cb(void *arg, int res)
{
    struct ioreq *r = arg;
    if (res < 0)
        devices_error(r->t.dev, res);
    if (res < 0)
        log_error("device %u: read vol %llu extent %llu: %s", r->t.dev->id,
                  (unsigned long long)r->io.volume_id, (unsigned long long)r->t.ext,
                  strerror(-res));
    r->status = res < 0 ? res : 0;
    dispatch_reply(r);
}

/* The data is read straight into the buffer the reply sends. */
void read_start(struct ioreq *r)
{
    r->rbuf = rpc_buf_alloc(r->io.length);
    if (!r->rbuf) {
        r->status = -ENOMEM;
        dispatch_reply(r);
        return;
    }
    int rc = store_read(r->t.dev->st, r->io.volume_id, r->t.ext, r->t.off, r->io.length, r->rbuf,
                        read_done_cb, r);
    if (rc != 0) {
        r->status = rc > 0 ? 0 : rc;
        dispatch_reply(r);
    }
}

/* FT_IO_STAT: reply status 1 if the extent is allocated here, 0 for a hole. */
void read_stat(struct ioreq *r)
{
    r->status = store_allocated(r->t.dev->st, r->io.volume_id, r->t.ext);
    dispatch_reply(r);
}
