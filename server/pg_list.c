/* FT_PG_LIST: the extents (store keys: layer and extent) this SDS holds of
 * a PG, which a primary catching this copy up compares with its own when
 * its record of what changed is not complete (rebuild.c). */
#include <errno.h>
#include <string.h>

#include "cmap.h"
#include "extent_store.h"
#include "layout.h"
#include "sds.h"
#include "util.h"

static void list_sent_cb(void *arg, int status)
{
    (void)status;
    rpc_buf_free(arg);
}

void rebuild_serve_pg_list(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h,
                           const uint8_t *msg)
{
    uint32_t pool_id, pg;
    int r = validate_pg_list(s->map, msg, h->msg_len, &pool_id, &pg);
    if (r < 0) {
        dispatch_status(c, h, r);
        return;
    }
    Cairn__Pool *p = cmap_pool(s->map, pool_id);
    size_t n = 0, cap = 1024;
    uint8_t *out = rpc_buf_alloc(cap * 16);
    uint64_t vols[1024], exts[1024];
    for (int di = 0; di < s->ndevs && out; di++) {
        if (s->devs[di].failed)
            continue;
        uint64_t cursor = 0;
        size_t k;
        while ((k = store_list_all(s->devs[di].st, &cursor, vols, exts, 1024)) > 0) {
            for (size_t i = 0; i < k; i++) {
                Cairn__Volume *v = cmap_layer_volume(s->map, vols[i], NULL);
                if (!v || v->pool_id != pool_id ||
                    layout_pg_of(cmap_placement(v), exts[i], (uint32_t)p->n_pgs) != pg)
                    continue;
                if (n == cap) {
                    uint8_t *bigger = rpc_buf_alloc(cap * 2 * 16);
                    if (!bigger || cap * 2 * 16 > FRAME_MAX_PAYLOAD) {
                        rpc_buf_free(bigger);
                        rpc_buf_free(out);
                        dispatch_status(c, h, -E2BIG);
                        return;
                    }
                    memcpy(bigger, out, n * 16);
                    rpc_buf_free(out);
                    out = bigger;
                    cap *= 2;
                }
                put_be64(out + n * 16, vols[i]);
                put_be64(out + n * 16 + 8, exts[i]);
                n++;
            }
        }
    }
    if (!out) {
        dispatch_status(c, h, -ENOMEM);
        return;
    }
    struct iovec iov = {out, n * 16};
    if (rpc_reply(c, h, 0, NULL, 0, &iov, 1, list_sent_cb, out) < 0)
        rpc_buf_free(out);
}
