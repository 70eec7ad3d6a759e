/* The SDS's checks of what peers send it, without devices: a MapReply from
 * the MDM (unpacked, checked with cmap_check as mdm_link.c does, then used
 * as the map the next records are checked against, with the fences a new
 * map sets), FT_PING (validate_ping, then lease_grant), FT_PG_LIST and its
 * reply, and data requests' io headers (io_hdr_decode, then validate_io).
 * Records: kind%4 0 MapReply, 1 ping, 2 PG list, 3 [u16 type][u32
 * payload_len][io header]. */
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "fuzz_common.h"
#include "layout.h"
#include "log.h"
#include "sds.h"
#include "util.h"

static struct leases ls;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_init("fuzz", -1);
        init = 1;
    }
    memset(&ls, 0, sizeof(ls));
    ls.lease_ms = 2000;
    Cairn__ClusterMap *map = NULL;
    struct dev devs[2] = {{.id = 1}, {.id = 2}};
    uint64_t now = 100000;
    struct fz_rec rec;
    int n = 0;
    while (fz_next(&data, &size, &rec) && n++ < 32) {
        now += 100;
        switch (rec.kind % 4) {
        case 0: {
            Cairn__MapReply *rep = cairn__map_reply__unpack(NULL, rec.len, rec.p);
            char err[256];
            if (rep && rep->map && cmap_check(rep->map, err, sizeof(err)) == 0) {
                uint32_t me = rep->sds_id ? rep->sds_id : 1;
                lease_fence_new_primaries(&ls, map, rep->map, me, now);
                if (map)
                    cairn__cluster_map__free_unpacked(map, NULL);
                map = rep->map;
                rep->map = NULL;
            }
            if (rep)
                cairn__map_reply__free_unpacked(rep, NULL);
            break;
        }
        case 1: {
            uint32_t from;
            uint64_t version;
            if (validate_ping(rec.p, rec.len, &from, &version) == 0)
                lease_grant(&ls, map, from, version, now);
            break;
        }
        case 2: {
            uint32_t pool, pg;
            validate_pg_list(map, rec.p, rec.len, &pool, &pg);
            validate_pg_list_reply(rec.len);
            break;
        }
        case 3: {
            if (rec.len < 6 || !map)
                break;
            uint16_t type = get_be16(rec.p);
            uint32_t plen = get_be32(rec.p + 2);
            struct io_hdr io;
            if (io_hdr_decode(rec.p + 6, rec.len - 6, &io) < 0)
                break;
            struct io_view v = {
                .map = map, .my_id = 1, .leases = &ls, .now = now, .devs = devs, .ndevs = 2};
            struct io_target t;
            if (validate_io(&v, type, plen, &io, &t) == 0 &&
                !layout_in_one_extent(io.offset, io.length, t.extent_size))
                abort();
            break;
        }
        }
    }
    if (map)
        cairn__cluster_map__free_unpacked(map, NULL);
    lease_free(&ls);
    return 0;
}
