/* Whether a change to the map is in force where it matters, read from a
 * status reply (OP_STATUS: the map and the MDM's soft state, which holds
 * the map version each SDS's last heartbeat reported). Shared by the CLI
 * (cli_sdc.c, which asks in a loop) and the REST API (rest_api.c, which
 * asks on the MDM's loop), so that both wait for the same thing, as long,
 * and say it in the same words. Pure functions; nothing is kept. */
#ifndef CAIRN_MAP_WAIT_H
#define CAIRN_MAP_WAIT_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"

/* How long a change (an unmap, a mapping made read-only, a takeover) waits
 * for the SDSs, and how often it asks meanwhile. The MDM announces a map at
 * once and an SDS reports it at once (proto/mdm_session.c), so this takes a
 * few round trips. */
#define MAP_WAIT_SDS_MS 10000
#define MAP_WAIT_SDS_POLL_MS 20

enum map_wait_sds {
    /* every SDS that is up holds a map at least as new */
    MAP_WAIT_SDS_HELD,
    /* every SDS the MDM is connected to does, but one it counts up is not
     * connected (why names it): that one learns the map when it reconnects */
    MAP_WAIT_SDS_AWAY,
    /* an SDS the MDM is connected to holds an older map (why names it and
     * the version it holds): ask again, until MAP_WAIT_SDS_MS */
    MAP_WAIT_SDS_LATE,
};

/* Whether the SDSs in rep hold map version (or newer), i.e. refuse what
 * that map forbids (an unmapped SDC, the writer generation a takeover
 * fenced). why (whylen bytes) is set for MAP_WAIT_SDS_AWAY and _LATE. */
enum map_wait_sds map_wait_sdss(const Cairn__MgmtReply *rep, uint64_t version, char *why,
                                size_t whylen);

#endif
