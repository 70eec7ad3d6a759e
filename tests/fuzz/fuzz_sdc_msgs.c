/* The SDC's map install: a MapReply from the MDM through the session's
 * on_map (sdc_volumes.c: cmap_check, then the exports it syncs), then
 * requests on each export cut by sdc_split_count/sdc_split, whose pieces
 * must cover the request, each inside one extent. Records: kind 0 a
 * MapReply, else [u64 off][u32 len] on the export kind selects. */
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "fuzz_common.h"
#include "layout.h"
#include "log.h"
#include "sdc.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_init("fuzz", -1);
        init = 1;
    }
    struct sdc *s = calloc(1, sizeof(*s));
    s->sdc_id = 1;
    s->name = "h1";
    struct fz_rec rec;
    int n = 0;
    static struct sdc_piece pc[NBD_MAX_EXTENTS + 1];
    while (fz_next(&data, &size, &rec) && n++ < 16) {
        if (rec.kind == 0) {
            Cairn__MapReply *rep = cairn__map_reply__unpack(NULL, rec.len, rec.p);
            if (rep && rep->map)
                sdc_session_ops.on_map(s, rep);
            else if (rep)
                cairn__map_reply__free_unpacked(rep, NULL);
            continue;
        }
        if (rec.len < 12 || !s->nvols || !s->map)
            continue;
        struct sdc_vol *v = s->vols[rec.kind % s->nvols];
        Cairn__Pool *p = cmap_pool(s->map, v->pool_id);
        if (!p)
            continue;
        uint64_t off = get_be64(rec.p);
        uint32_t len = get_be32(rec.p + 8);
        if (off > v->size || len > v->size - off)
            continue; /* nbd_request_validate refuses it */
        uint32_t k = sdc_split_count(NBDIO_STATUS, off, len, p->extent_size);
        sdc_split(pc, k, off, len, p->extent_size);
        uint64_t pos = off;
        for (uint32_t i = 0; i < k; i++) {
            if (pc[i].off != pos || !layout_in_one_extent(pc[i].off, pc[i].len, p->extent_size))
                abort();
            pos += pc[i].len;
            if (p->n_pgs)
                (void)p
                    ->pgs[layout_pg_of(v->id, layout_extent_of(pc[i].off, p->extent_size),
                                       (uint32_t)p->n_pgs)]
                    ->epoch;
        }
        if (k < NBD_MAX_EXTENTS && pos != off + len)
            abort();
    }
    for (int i = 0; i < s->nvols; i++)
        free(s->vols[i]);
    if (s->map)
        cairn__cluster_map__free_unpacked(s->map, NULL);
    sdc_volumes_shutdown(s);
    free(s);
    return 0;
}
