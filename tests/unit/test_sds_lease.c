/* Leases and fences (server/lease.c): pure functions of times and a PG's copies. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sds.h"
#include "test_sds_map.h"

#define LEASE 2000

static struct leases L;
static struct tmap M, OLD;

static void setup(void)
{
    lease_free(&L);
    memset(&L, 0, sizeof(L));
    L.lease_ms = LEASE;
    tmap_init(&M, 10);
}

static int held(uint64_t now, uint32_t pg)
{
    return lease_held(&L, now, &M.m, 1, pg, &M.pg[pg]);
}

static void test_mdm_lease_valid_then_expired(void)
{
    setup();
    CHECK_EQ(held(1000, 0), 0); /* nothing yet */
    lease_mdm_ack(&L, &M.m, 1000, 1, 0);
    CHECK_EQ(held(1000, 0), 1);
    CHECK_EQ(held(1000 + LEASE - 1, 0), 1);
    CHECK_EQ(held(1000 + LEASE, 0), 0);
    /* an answer to an older heartbeat does not shorten it */
    lease_mdm_ack(&L, &M.m, 500, 1, 0);
    CHECK_EQ(held(1000 + LEASE - 1, 0), 1);
}

static void test_mdm_lease_needs_the_demotion_in_our_map(void)
{
    setup();
    /* the MDM has a newer map in which we were demoted at version 12 > ours */
    lease_mdm_ack(&L, &M.m, 1000, 0, 12);
    CHECK_EQ(held(1000, 0), 0);
    /* merely behind on other changes: still a lease */
    lease_mdm_ack(&L, &M.m, 1000, 0, 10);
    CHECK_EQ(held(1000, 0), 1);
    /* no map at all: only a current answer would do, and none is */
    setup();
    lease_mdm_ack(&L, NULL, 1000, 0, 0);
    CHECK_EQ(held(1000, 0), 0);
}

static void test_peer_leases_all_needed(void)
{
    setup();
    /* PG 0 has three in-sync copies: us (SDS 1), SDS 2, SDS 3 */
    tmap_set_copy(&M, 0, 2, 13);
    lease_peer_ack(&L, 2, 1000);
    CHECK_EQ(held(1000, 0), 0); /* SDS 3 has not granted one */
    lease_peer_ack(&L, 3, 1500);
    CHECK_EQ(held(1500, 0), 1);
    CHECK_EQ(held(1000 + LEASE - 1, 0), 1);
    CHECK_EQ(held(1000 + LEASE, 0), 0); /* SDS 2's ran out first */
    lease_peer_ack(&L, 2, 2500);
    CHECK_EQ(held(1500 + LEASE - 1, 0), 1);
    CHECK_EQ(held(1500 + LEASE, 0), 0);
    /* a copy not yet in the table has granted nothing */
    CHECK(lease_peer_find(&L, 4) == NULL);
    tmap_set_copy(&M, 1, 1, 14);
    CHECK_EQ(held(1600, 1), 0);
}

/* OLD: SDS 2 (device 12) primary of PG 3; M: we (SDS 1) are, SDS 2 is down. */
static void failover(int old_primary_state)
{
    tmap_init(&OLD, 9);
    OLD.pgdev[3][0] = 12;
    OLD.pgdev[3][1] = 11;
    M.sds[1].state = old_primary_state;
}

static void test_fence_blocks_until_granted_lease_expires(void)
{
    setup();
    failover(CAIRN__SDS_STATE__SDS_DOWN);
    /* the last lease we granted SDS 2 was at t=5000 */
    CHECK_EQ(lease_grant(&L, &OLD.m, 2, 9, 5000), 0);
    lease_fence_new_primaries(&L, &OLD.m, &M.m, 1, 6000);
    uint64_t until = 5000 + LEASE + 100;
    CHECK_EQ(lease_fenced(&L, 6000, 1, 3), 1);
    CHECK_EQ(lease_fenced(&L, until - 1, 1, 3), 1);
    CHECK_EQ(lease_fenced(&L, until, 1, 3), 0);
    CHECK_EQ(lease_fenced(&L, 6000, 1, 2), 0); /* only the PG taken over */
    /* a failed primary's fence is no planned handover's: no ping lifts it,
     * not even one that claims sender id 0 with the newest map */
    CHECK_EQ(lease_grant(&L, &M.m, 0, 1000, 6000), -ESTALE);
    CHECK_EQ(lease_fenced(&L, 6000, 1, 3), 1);
    /* a fenced PG has no lease even with the MDM's */
    lease_mdm_ack(&L, &M.m, 6000, 1, 0);
    CHECK_EQ(held(6000, 3), 0);
    CHECK_EQ(held(until, 3), 1);
    /* the next map change drops the expired fence */
    lease_fence_new_primaries(&L, &M.m, &M.m, 1, until);
    CHECK_EQ(L.nfences, 0);
}

static void test_failed_primary_with_expired_grant_not_fenced(void)
{
    setup();
    failover(CAIRN__SDS_STATE__SDS_DOWN);
    CHECK_EQ(lease_grant(&L, &OLD.m, 2, 9, 1000), 0);
    lease_fence_new_primaries(&L, &OLD.m, &M.m, 1, 1000 + LEASE + 100);
    CHECK_EQ(L.nfences, 0);
    CHECK_EQ(lease_fenced(&L, 1000 + LEASE + 100, 1, 3), 0);
}

static void test_gone_primary_not_fenced(void)
{
    setup();
    failover(CAIRN__SDS_STATE__SDS_DOWN);
    /* it was granted a lease just now, but the MDM saw its process gone */
    CHECK_EQ(lease_grant(&L, &OLD.m, 2, 9, 5000), 0);
    M.sds[1].gone = 1;
    lease_fence_new_primaries(&L, &OLD.m, &M.m, 1, 5001);
    CHECK_EQ(L.nfences, 0);
    CHECK_EQ(lease_fenced(&L, 5001, 1, 3), 0);
    /* gone counts only for one marked down: a moved primary is still fenced */
    setup();
    failover(CAIRN__SDS_STATE__SDS_UP);
    M.sds[1].gone = 1;
    lease_fence_new_primaries(&L, &OLD.m, &M.m, 1, 1000);
    CHECK_EQ(lease_fenced(&L, 1000, 1, 3), 1);
}

static void test_suspicion_ended_by_a_later_ping(void)
{
    setup();
    struct peer_lease *l = lease_peer(&L, 2);
    l->suspect_since = 5000;
    l->suspect_until = 6500;
    /* a ping sent before the forward timed out proves nothing new */
    lease_peer_ack(&L, 2, 4900);
    CHECK_EQ(l->suspect_until, 6500);
    /* one sent since, answered: it is alive */
    lease_peer_ack(&L, 2, 5000);
    CHECK_EQ(l->suspect_until, 0);
    CHECK_EQ(l->until, 5000 + LEASE);
}

static void test_planned_handover_fence_lifted_by_ping(void)
{
    setup();
    failover(CAIRN__SDS_STATE__SDS_UP); /* moved by a rebalance: alive */
    lease_fence_new_primaries(&L, &OLD.m, &M.m, 1, 1000);
    /* alive: it may hold an MDM lease of up to lease_ms from before */
    CHECK_EQ(lease_fenced(&L, 1000 + LEASE + 99, 1, 3), 1);
    CHECK_EQ(lease_fenced(&L, 1000 + LEASE + 100, 1, 3), 0);
    /* its ping with the old map does not lift it */
    CHECK_EQ(lease_grant(&L, &M.m, 2, 9, 1100), 0);
    CHECK_EQ(lease_fenced(&L, 1200, 1, 3), 1);
    /* with our map (where it is no longer primary) it does */
    CHECK_EQ(lease_grant(&L, &M.m, 2, 10, 1300), 0);
    CHECK_EQ(lease_fenced(&L, 1300, 1, 3), 0);
}

static void test_no_lease_for_down_or_demoted(void)
{
    setup();
    M.sds[1].state = CAIRN__SDS_STATE__SDS_DOWN;
    CHECK_EQ(lease_grant(&L, &M.m, 2, 10, 1000), -ESTALE);
    M.sds[1].state = CAIRN__SDS_STATE__SDS_MAINTENANCE;
    CHECK_EQ(lease_grant(&L, &M.m, 2, 10, 1000), -ESTALE);
    M.sds[1].state = CAIRN__SDS_STATE__SDS_UP;
    /* demoted at version 10: a ping showing map 9 still thinks it is primary */
    M.sds[1].demoted_version = 10;
    CHECK_EQ(lease_grant(&L, &M.m, 2, 9, 1000), -ESTALE);
    CHECK(lease_peer_find(&L, 2) == NULL || lease_peer_find(&L, 2)->granted_at == 0);
    CHECK_EQ(lease_grant(&L, &M.m, 2, 10, 1000), 0);
    CHECK_EQ(lease_peer_find(&L, 2)->granted_at, 1000);
    /* an SDS our map does not know */
    CHECK_EQ(lease_grant(&L, &M.m, 99, 10, 1000), -ESTALE);
}

static void test_new_primary_without_old_map_not_fenced(void)
{
    setup();
    lease_fence_new_primaries(&L, NULL, &M.m, 1, 1000);
    CHECK_EQ(L.nfences, 0);
    /* staying primary is no takeover */
    tmap_init(&OLD, 9);
    lease_fence_new_primaries(&L, &OLD.m, &M.m, 1, 1000);
    CHECK_EQ(L.nfences, 0);
}

/* Run a case; its name is printed once it has passed. */
#define RUN(t) (t(), printf("ok %s\n", #t))

int main(void)
{
    RUN(test_mdm_lease_valid_then_expired);
    RUN(test_mdm_lease_needs_the_demotion_in_our_map);
    RUN(test_peer_leases_all_needed);
    RUN(test_fence_blocks_until_granted_lease_expires);
    RUN(test_failed_primary_with_expired_grant_not_fenced);
    RUN(test_gone_primary_not_fenced);
    RUN(test_suspicion_ended_by_a_later_ping);
    RUN(test_planned_handover_fence_lifted_by_ping);
    RUN(test_no_lease_for_down_or_demoted);
    RUN(test_new_primary_without_old_map_not_fenced);
    lease_free(&L);
    printf("lease tests passed\n");
    return 0;
}
