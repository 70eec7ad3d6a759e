/* What a status reply says about the work of a rebuild or a rebalance: is
 * it done, under way, not yet visible, or stuck; and the words, bar and
 * JSON that show its progress.
 *
 * Pure: no I/O, no clock, no globals; unit-tested on its own
 * (tests/unit/test_cli_progress.c). The poll loop is cli_watch.c's.
 *
 * Why "done" takes more than a glance at the map. Work shows up in two
 * places that lag each other: the map (a PG's rebuilding and leaving
 * copies, changed in the same Raft entry as the event that makes the work:
 * an SDS marked down, an SDS added, a copy reported rebuilt) and the SDSs'
 * heartbeats (the bytes and PG copies each primary still has to copy). And
 * some work is not in either yet: an SDS that has died but that the MDM has
 * not marked down (its copies still count as live), a device an SDS found
 * failed that the MDM has not yet marked. So the work is done only when
 *   - every SDS the map has up (and holding devices) is connected, has sent
 *     a heartbeat since the wait began and recently, and no device is
 *     failed in a heartbeat but not in the map (else: PENDING, the MDM's
 *     view is not current);
 *   - the map has no such work: rebuild, no PG degraded or rebuilding a
 *     copy that is not a move; rebalance, no PG with any change under way
 *     (a PG changing is frozen for the rebalance, which plans new moves once
 *     it settles: the rebalance waits for the rebuild);
 *   - and the heartbeats report no bytes or PG copies of it left.
 * It is STUCK when the MDM's view is current and the work cannot progress
 * without the operator: a PG with no live copy, a degraded PG with nowhere
 * to rebuild to, or (rebalance) an SDS of a pool that is down or in
 * maintenance (the rebalance waits for it to return or be removed).
 */
#ifndef CAIRN_CLI_PROGRESS_H
#define CAIRN_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"

enum cli_work {
    CLI_WORK_REBUILD,   /* restore lost redundancy */
    CLI_WORK_REBALANCE, /* move copies for balance or a drain */
};

enum cli_work_state {
    CLI_WORK_DONE,    /* nothing left to do */
    CLI_WORK_RUNNING, /* copies are being filled, or are about to be */
    CLI_WORK_PENDING, /* the MDM's view is not current yet: see why */
    CLI_WORK_STUCK,   /* it cannot progress without the operator: see why */
};

/* Heartbeats older than this (the SDSs send one a second) mean an SDS the
 * MDM may be about to mark down. */
#define CLI_PROGRESS_HB_STALE_MS 3000

struct cli_work_view {
    enum cli_work work;
    enum cli_work_state state;
    /* PENDING and STUCK: why, in words; RUNNING: what else it waits for,
     * or "". No "cairn: " prefix, no newline. */
    char why[256];
    /* From the map, over every pool. */
    size_t pgs_degraded;   /* fewer live copies than the pool's copies, but some */
    size_t pgs_no_copy;    /* no live copy */
    size_t pgs_rebuilding; /* a rebuilding copy that is not a move */
    size_t pgs_moving;     /* a leaving copy: a move */
    /* This work's part of what the heartbeats report (where the SDSs do
     * not tell moves from rebuilds, the map decides whose it is). */
    uint32_t copies_left; /* PG copies being filled (at least those of the map) */
    uint64_t bytes_left;
    uint64_t bytes_done; /* counted since each SDS started: use deltas */
    uint64_t rate;       /* bytes per second, every copy being filled */
};

/* Assess rep for work. since_ms is how long before the status was asked
 * for the wait began: a heartbeat older than that predates the wait.
 * Fills *v; never fails. */
void cli_progress_assess(const Cairn__MgmtReply *rep, enum cli_work work, uint64_t since_ms,
                         struct cli_work_view *v);

/* The bytes copied since the first view fed in: the sum of the increases
 * of bytes_done (it falls when an SDS restarts or stops reporting, and that
 * is no progress undone). Zero-initialise. */
struct cli_progress {
    uint64_t last;
    uint64_t copied;
    int started;
};
uint64_t cli_progress_update(struct cli_progress *p, const struct cli_work_view *v);

/* copied / (copied + left) in percent, 0..100; 100 when DONE, 0 when
 * there is nothing to go on. */
int cli_progress_percent(const struct cli_work_view *v, uint64_t copied);

/* "rebuild" or "rebalance". */
const char *cli_progress_work_name(enum cli_work work);

/* The formatters write a NUL-terminated string into buf[len] (truncated
 * to fit) and return buf. */

/* "4 s", "3 min 20 s", "2 h 5 min". */
char *cli_fmt_duration(char *buf, size_t len, uint64_t secs);

/* The plain line (no newline):
 * "rebuild: 12 PG copies, 340.0 MiB left, 85.0 MiB/s, ETA 4 s", then
 * "; <why>" when there is one. */
char *cli_progress_line(char *buf, size_t len, const struct cli_work_view *v);

/* The terminal's line, at most width - 1 columns (so that it never wraps):
 * "rebuild [=====>      ]  45%  340.0 MiB left  85.0 MiB/s  ETA 4 s", then
 * "  <why>"; the bar shrinks, and goes, on a narrow terminal. */
char *cli_progress_bar(char *buf, size_t len, int width, const struct cli_work_view *v,
                       uint64_t copied);

/* One JSON object (no newline): {"work":"rebuild","state":"running",
 * "done":false,"elapsed":1.0,"percent":45,"pg_copies_left":12,
 * "bytes_left":..,"bytes_copied":..,"rate":..,"eta_seconds":..|null,
 * "pgs_degraded":..,"pgs_no_copy":..,"pgs_rebuilding":..,"pgs_moving":..,
 * "why":".."}. */
char *cli_progress_json(char *buf, size_t len, const struct cli_work_view *v, uint64_t copied,
                        double elapsed);

#endif
