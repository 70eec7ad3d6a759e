/* The SDS's access table (server/access.c): which approved SDC may read or
 * change which volume, from a map's SDCs and mappings. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sds.h"

int main(void)
{
    Cairn__Sdc a = CAIRN__SDC__INIT, b = CAIRN__SDC__INIT, p = CAIRN__SDC__INIT;
    a.id = 10;
    a.name = "a";
    b.id = 11;
    b.name = "b";
    p.id = 12;
    p.name = "p";
    p.pending = 1;
    Cairn__Sdc *sdcs[] = {&a, &b, &p};
    Cairn__Mapping m1 = CAIRN__MAPPING__INIT, m2 = CAIRN__MAPPING__INIT, m3 = CAIRN__MAPPING__INIT,
                   m4 = CAIRN__MAPPING__INIT;
    m1.sdc_id = 11; /* out of order: the table sorts */
    m1.volume_id = 7;
    m2.sdc_id = 10;
    m2.volume_id = 7;
    m2.read_only = 1;
    m3.sdc_id = 10;
    m3.volume_id = 5;
    m4.sdc_id = 12; /* a pending SDC's mapping grants nothing */
    m4.volume_id = 5;
    Cairn__Mapping *maps[] = {&m1, &m2, &m3, &m4};
    Cairn__ClusterMap map = CAIRN__CLUSTER_MAP__INIT;
    map.n_sdcs = 3;
    map.sdcs = sdcs;
    map.n_mappings = 4;
    map.mappings = maps;

    CHECK_EQ(access_sdc(&map, "a"), 10u);
    CHECK_EQ(access_sdc(&map, "b"), 11u);
    CHECK_EQ(access_sdc(&map, "p"), 0u); /* pending */
    CHECK_EQ(access_sdc(&map, "nosuch"), 0u);
    CHECK_EQ(access_sdc(NULL, "a"), 0u);

    struct access_table t = {0};
    CHECK_EQ(access_build(&t, &map), 0);
    CHECK_EQ(t.n, 3u);
    CHECK_EQ(access_lookup(&t, 10, 5), ACCESS_RW);
    CHECK_EQ(access_lookup(&t, 10, 7), ACCESS_RO);
    CHECK_EQ(access_lookup(&t, 11, 7), ACCESS_RW);
    CHECK_EQ(access_lookup(&t, 11, 5), ACCESS_NONE);
    CHECK_EQ(access_lookup(&t, 12, 5), ACCESS_NONE);
    CHECK_EQ(access_lookup(&t, 0, 5), ACCESS_NONE);

    CHECK(access_allows(ACCESS_RW, FT_IO_WRITE) && access_allows(ACCESS_RW, FT_IO_READ));
    CHECK(access_allows(ACCESS_RO, FT_IO_READ) && access_allows(ACCESS_RO, FT_IO_STAT));
    CHECK(access_allows(ACCESS_RO, FT_IO_FLUSH));
    CHECK(!access_allows(ACCESS_RO, FT_IO_WRITE) && !access_allows(ACCESS_RO, FT_IO_TRIM));
    CHECK(!access_allows(ACCESS_RO, FT_IO_ZERO));
    CHECK(!access_allows(ACCESS_NONE, FT_IO_READ) && !access_allows(ACCESS_NONE, FT_IO_STAT));
    CHECK(!access_allows(ACCESS_NONE, FT_IO_FLUSH));

    /* the next map: the mapping gone, another made read-only */
    map.n_mappings = 2;
    m2.read_only = 0;
    m1.read_only = 1;
    CHECK_EQ(access_build(&t, &map), 0);
    CHECK_EQ(access_lookup(&t, 10, 5), ACCESS_NONE);
    CHECK_EQ(access_lookup(&t, 10, 7), ACCESS_RW);
    CHECK_EQ(access_lookup(&t, 11, 7), ACCESS_RO);
    CHECK_EQ(access_build(&t, NULL), 0);
    CHECK_EQ(t.n, 0u);
    CHECK_EQ(access_lookup(&t, 10, 7), ACCESS_NONE);
    access_free(&t);
    printf("sds access ok\n");
    return 0;
}
