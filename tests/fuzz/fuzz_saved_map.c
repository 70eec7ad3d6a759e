/* The map an SDS reloads from DATA-DIR/map.pb at start-up
 * (cmap_saved_decode, which map_load_saved calls), then what the SDS
 * computes from it first: the fences of a new map and the check of a
 * request against it for every volume. */
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "layout.h"
#include "log.h"
#include "sds.h"

static struct leases ls;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_init("fuzz", -1);
        init = 1;
    }
    Cairn__ClusterMap *m;
    uint32_t id;
    char err[256];
    if (cmap_saved_decode(data, size, &m, &id, err, sizeof(err)) < 0)
        return 0;
    memset(&ls, 0, sizeof(ls));
    ls.lease_ms = 2000;
    lease_fence_new_primaries(&ls, NULL, m, id, 1000);
    struct dev devs[2] = {{.id = 1}, {.id = 2}};
    struct io_view v = {
        .map = m, .my_id = id, .leases = &ls, .now = 1000, .devs = devs, .ndevs = 2};
    for (size_t i = 0; i < m->n_volumes && i < 64; i++) {
        const Cairn__Volume *vol = m->volumes[i];
        Cairn__Pool *p = cmap_pool(m, vol->pool_id);
        struct io_hdr io = {.volume_id = vol->id,
                            .offset = vol->size ? vol->size - 4096 : 0,
                            .length = 4096,
                            .pool_id = vol->pool_id};
        if (p && p->n_pgs)
            io.pg = layout_pg_of(vol->id, layout_extent_of(io.offset, p->extent_size),
                                 (uint32_t)p->n_pgs);
        struct io_target t;
        validate_io(&v, FT_IO_READ, 0, &io, &t);
        validate_io(&v, FT_IO_WRITE, 4096, &io, &t);
    }
    lease_free(&ls);
    cairn__cluster_map__free_unpacked(m, NULL);
    return 0;
}
