/* Reads and allocation queries (STAT). validate_io() lets a client's read
 * through only at the primary holding its lease, never at a rebuilding copy.
 *
 * A volume with snapshots is a chain of layers (docs/snapshots.md): a read
 * takes each granule from the newest layer of the chain whose slot has that
 * granule written, zeroes if none has. The bitmaps of written granules make
 * that a lookup; the data is then read in runs, one store read per run of
 * granules that come from the same layer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extent_store.h"
#include "log.h"
#include "sds.h"
#include "util.h"

#define BM_WORDS (STORE_GRANULES_MAX / 64)

struct chain_rd {
    store_cb cb;
    void *arg;
    int pending;
    int res;
};

static void chain_part_cb(void *arg, int res)
{
    struct chain_rd *c = arg;
    if (res < 0 && c->res >= 0)
        c->res = res;
    if (--c->pending > 0)
        return;
    store_cb cb = c->cb;
    void *cbarg = c->arg;
    int r = c->res;
    free(c);
    cb(cbarg, r);
}

static int bit(const uint64_t *bm, uint32_t g)
{
    return (int)((bm[g / 64] >> (g % 64)) & 1);
}

int chain_read(struct extent_store *st, const uint64_t *chain, int nchain, uint64_t ext,
               uint32_t off, uint32_t len, uint8_t *buf, store_cb cb, void *arg)
{
    if (nchain == 1) /* a volume without snapshots: the common case */
        return store_read(st, chain[0], ext, off, len, buf, cb, arg);
    uint64_t bms[CMAP_CHAIN_MAX][BM_WORDS];
    int have[CMAP_CHAIN_MAX], lower = 0;
    for (int i = 0; i < nchain; i++) {
        have[i] = store_written(st, chain[i], ext, bms[i], BM_WORDS) > 0;
        lower |= i > 0 && have[i];
    }
    if (!lower) /* the layer alone (or nothing under it holds this extent) */
        return store_read(st, chain[0], ext, off, len, buf, cb, arg);
    struct chain_rd *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cb = cb;
    c->arg = arg;
    c->pending = 1; /* ours, while the parts start */
    uint64_t gs = store_granule_size(st);
    uint64_t end = (uint64_t)off + len;
    uint64_t pos = off;
    while (pos < end) {
        uint32_t g = (uint32_t)(pos / gs);
        int src = -1;
        for (int i = 0; i < nchain && src < 0; i++)
            if (have[i] && bit(bms[i], g))
                src = i;
        /* the run: following granules that come from the same layer */
        uint64_t run_end = (g + 1) * gs;
        while (run_end < end) {
            uint32_t h = (uint32_t)(run_end / gs);
            int hs = -1;
            for (int i = 0; i < nchain && hs < 0; i++)
                if (have[i] && bit(bms[i], h))
                    hs = i;
            if (hs != src)
                break;
            run_end += gs;
        }
        if (run_end > end)
            run_end = end;
        uint8_t *dst = buf + (pos - off);
        uint32_t rlen = (uint32_t)(run_end - pos);
        if (src < 0) {
            memset(dst, 0, rlen);
        } else {
            c->pending++;
            int rc = store_read(st, chain[src], ext, (uint32_t)pos, rlen, dst, chain_part_cb, c);
            if (rc != 0) {
                c->pending--;
                if (rc < 0 && c->res >= 0)
                    c->res = rc;
            }
        }
        pos = run_end;
    }
    if (--c->pending > 0)
        return 0;
    int r = c->res;
    free(c);
    return r < 0 ? r : 1;
}

int bm_next_run(const uint64_t *bm, uint32_t ngran, uint64_t gs, uint32_t len, uint32_t *next_g,
                uint32_t *off, uint32_t *rlen)
{
    uint32_t g = *next_g;
    while (g < ngran && !bit(bm, g))
        g++;
    if (g >= ngran || (uint64_t)g * gs >= len) {
        *next_g = ngran;
        return 0;
    }
    uint32_t h = g;
    while (h < ngran && bit(bm, h))
        h++;
    *next_g = h;
    uint64_t end = MIN((uint64_t)h * gs, len);
    *off = (uint32_t)(g * gs);
    *rlen = (uint32_t)(end - *off);
    return 1;
}

int chain_holds(struct extent_store *st, const uint64_t *chain, int nchain, uint64_t ext, int from)
{
    for (int i = from; i < nchain; i++)
        if (store_allocated(st, chain[i], ext))
            return 1;
    return 0;
}

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
    int rc = chain_read(r->t.dev->st, r->t.chain, r->t.nchain, r->t.ext, r->t.off, r->io.length,
                        r->rbuf, read_done_cb, r);
    if (rc != 0) {
        r->status = rc > 0 ? 0 : rc;
        dispatch_reply(r);
    }
}

/* FT_IO_STAT: reply status 1 if the extent is allocated here (in any layer
 * of the chain), 0 for a hole. */
void read_stat(struct ioreq *r)
{
    r->status = chain_holds(r->t.dev->st, r->t.chain, r->t.nchain, r->t.ext, 0);
    dispatch_reply(r);
}
