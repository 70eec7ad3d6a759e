/* Whether a change is in force at the SDSs, read from a status reply
 * (mgmt/map_wait.c, the CLI's and the REST API's wait after a takeover or
 * an unmap), on replies built by hand: every SDS has the map; one the MDM
 * is connected to is behind (named, with the version it holds); one it
 * counts up is not connected (named); a down one away is no reason to
 * wait; a lagging SDS counts before an absent one. */
#include <string.h>

#include "check.h"
#include "map_wait.h"

#define NSDS 3

struct fixture {
    Cairn__MgmtReply rep;
    Cairn__ClusterMap map;
    Cairn__Sds sds[NSDS], *sdsp[NSDS];
    Cairn__SdsStatus st[NSDS], *stp[NSDS];
};

/* SDSs a b c (ids 1..3), up, connected, holding map version 7. */
static void fixture_init(struct fixture *f)
{
    static const char *const names[] = {"a", "b", "c"};
    memset(f, 0, sizeof(*f));
    cairn__mgmt_reply__init(&f->rep);
    cairn__cluster_map__init(&f->map);
    f->rep.map = &f->map;
    f->map.version = 7;
    for (int i = 0; i < NSDS; i++) {
        cairn__sds__init(&f->sds[i]);
        f->sds[i].id = (uint32_t)i + 1;
        f->sds[i].name = (char *)names[i];
        f->sds[i].state = CAIRN__SDS_STATE__SDS_UP;
        f->sdsp[i] = &f->sds[i];
        cairn__sds_status__init(&f->st[i]);
        f->st[i].sds_id = (uint32_t)i + 1;
        f->st[i].connected = 1;
        f->st[i].map_version = 7;
        f->stp[i] = &f->st[i];
    }
    f->map.n_sds = NSDS;
    f->map.sds = f->sdsp;
    f->rep.n_sds_status = NSDS;
    f->rep.sds_status = f->stp;
}

int main(void)
{
    struct fixture f;
    char why[256];

    fixture_init(&f);
    strcpy(why, "untouched");
    CHECK_EQ(map_wait_sdss(&f.rep, 7, why, sizeof(why)), MAP_WAIT_SDS_HELD);
    CHECK_EQ(map_wait_sdss(&f.rep, 5, why, sizeof(why)), MAP_WAIT_SDS_HELD); /* newer is fine */
    CHECK(!strcmp(why, "untouched"));

    /* the change is at version 8: every SDS is behind; one is named */
    CHECK_EQ(map_wait_sdss(&f.rep, 8, why, sizeof(why)), MAP_WAIT_SDS_LATE);
    CHECK(strstr(why, "still holds map version 7, not 8") != NULL);

    /* b alone is behind */
    f.st[0].map_version = f.st[2].map_version = 8;
    CHECK_EQ(map_wait_sdss(&f.rep, 8, why, sizeof(why)), MAP_WAIT_SDS_LATE);
    CHECK(!strcmp(why, "SDS 'b' still holds map version 7, not 8"));

    /* b gets it; then c goes away while the MDM counts it up */
    f.st[1].map_version = 8;
    CHECK_EQ(map_wait_sdss(&f.rep, 8, why, sizeof(why)), MAP_WAIT_SDS_HELD);
    f.st[2].connected = 0;
    f.st[2].map_version = 0;
    CHECK_EQ(map_wait_sdss(&f.rep, 8, why, sizeof(why)), MAP_WAIT_SDS_AWAY);
    CHECK(strstr(why, "SDS 'c' is not connected to the MDM") != NULL);
    CHECK(strstr(why, "map version 8") != NULL);

    /* c is down: nothing to wait for */
    f.sds[2].state = CAIRN__SDS_STATE__SDS_DOWN;
    CHECK_EQ(map_wait_sdss(&f.rep, 8, why, sizeof(why)), MAP_WAIT_SDS_HELD);

    /* c away (up) and a behind: a is named, and asked again */
    f.sds[2].state = CAIRN__SDS_STATE__SDS_UP;
    f.st[0].map_version = 6;
    CHECK_EQ(map_wait_sdss(&f.rep, 8, why, sizeof(why)), MAP_WAIT_SDS_LATE);
    CHECK(!strcmp(why, "SDS 'a' still holds map version 6, not 8"));

    /* a status of an SDS the map no longer has is passed over */
    f.st[0].map_version = 8;
    f.st[2].connected = 1;
    f.st[2].map_version = 8;
    f.st[1].sds_id = 99;
    CHECK_EQ(map_wait_sdss(&f.rep, 8, why, sizeof(why)), MAP_WAIT_SDS_HELD);

    printf("ok\n");
    return 0;
}
