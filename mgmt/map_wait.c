/* Whether a change to the map is in force at the SDSs, from a status
 * reply: the one reading of it for the CLI and the REST API (map_wait.h). */
#include <stdio.h>

#include "cmap.h"
#include "map_wait.h"

enum map_wait_sds map_wait_sdss(const Cairn__MgmtReply *rep, uint64_t version, char *why,
                                size_t whylen)
{
    const char *late = NULL, *away = NULL;
    uint64_t has = 0;
    for (size_t i = 0; i < rep->n_sds_status; i++) {
        const Cairn__SdsStatus *st = rep->sds_status[i];
        const Cairn__Sds *sds = rep->map ? cmap_sds(rep->map, st->sds_id) : NULL;
        if (!sds)
            continue;
        if (!st->connected) {
            if (sds->state == CAIRN__SDS_STATE__SDS_UP)
                away = sds->name;
        } else if (st->map_version < version) {
            late = sds->name;
            has = st->map_version;
        }
    }
    if (late) {
        snprintf(why, whylen, "SDS '%s' still holds map version %llu, not %llu", late,
                 (unsigned long long)has, (unsigned long long)version);
        return MAP_WAIT_SDS_LATE;
    }
    if (away) {
        snprintf(why, whylen,
                 "SDS '%s' is not connected to the MDM: it refuses the SDC once it gets map "
                 "version %llu",
                 away, (unsigned long long)version);
        return MAP_WAIT_SDS_AWAY;
    }
    return MAP_WAIT_SDS_HELD;
}
