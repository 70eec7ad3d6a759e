/* What a status reply says about a rebuild's or a rebalance's work, and its
 * progress in words, as a bar and as JSON (cli_progress.h says why "done"
 * takes more than the map). Pure functions. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli_progress.h"
#include "cluster_stats.h"
#include "cmap.h"
#include "util.h"

/* Append to buf[len] at *at, truncating; *at never passes len - 1. */
static void addf(char *buf, size_t len, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void addf(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
    if (*at + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *at, len - *at, fmt, ap);
    va_end(ap);
    if (n > 0)
        *at = *at + (size_t)n < len ? *at + (size_t)n : len - 1;
}

static const char *pgs_word(size_t n)
{
    return n == 1 ? "PG" : "PGs";
}

const char *cli_progress_work_name(enum cli_work work)
{
    return work == CLI_WORK_REBUILD ? "rebuild" : "rebalance";
}

/* The first reason the MDM's view of the SDSs may not be current, in why;
 * 0 if there is none. */
static int view_pending(const Cairn__MgmtReply *rep, uint64_t since_ms, char *why, size_t len)
{
    const Cairn__ClusterMap *m = rep->map;
    for (size_t i = 0; i < m->n_sds; i++) {
        const Cairn__Sds *s = m->sds[i];
        size_t ndev = 0;
        for (size_t j = 0; j < m->n_devices; j++)
            ndev += m->devices[j]->sds_id == s->id;
        if (s->state != CAIRN__SDS_STATE__SDS_UP || !ndev)
            continue; /* down or away: the map already says so */
        const Cairn__SdsStatus *st = cluster_sds_status(rep, s->id);
        if (!st || !st->connected) {
            snprintf(why, len,
                     "waiting for the MDM to mark SDS '%s' down or see it back "
                     "(not connected)",
                     s->name);
            return 1;
        }
        if (!st->n_usage) {
            snprintf(why, len, "waiting for the first heartbeat of SDS '%s'", s->name);
            return 1;
        }
        if (st->last_heartbeat_ms_ago > CLI_PROGRESS_HB_STALE_MS) {
            snprintf(why, len, "waiting for SDS '%s' (no heartbeat for %.1f s)", s->name,
                     (double)st->last_heartbeat_ms_ago / 1000);
            return 1;
        }
        if (st->last_heartbeat_ms_ago >= since_ms) {
            snprintf(why, len, "waiting for a heartbeat from SDS '%s' sent since the wait began",
                     s->name);
            return 1;
        }
        for (size_t j = 0; j < m->n_devices; j++) {
            const Cairn__Device *d = m->devices[j];
            const Cairn__DeviceUsage *u = d->sds_id == s->id ? cluster_dev_usage(rep, d) : NULL;
            if (u && u->failed && !d->failed) {
                snprintf(why, len, "waiting for the MDM to mark device %s of SDS '%s' failed",
                         d->path, s->name);
                return 1;
            }
        }
    }
    return 0;
}

/* Does pool p hold a volume? (A pool with none never has moves.) */
static int pool_has_volumes(const Cairn__ClusterMap *m, const Cairn__Pool *p)
{
    for (size_t i = 0; i < m->n_volumes; i++)
        if (m->volumes[i]->pool_id == p->id)
            return 1;
    return 0;
}

/* The SDS in maintenance that holds one of g's departed copies, or NULL. */
static const Cairn__Sds *held_by(const Cairn__ClusterMap *m, const Cairn__Pg *g)
{
    for (size_t k = 0; k < g->n_departed; k++) {
        const Cairn__Device *d = cmap_device(m, g->departed[k]);
        const Cairn__Sds *s = d ? cmap_sds(m, d->sds_id) : NULL;
        if (s && s->state == CAIRN__SDS_STATE__SDS_MAINTENANCE)
            return s;
    }
    return NULL;
}

/* An SDS not up that holds a device of a pool with volumes: the rebalance
 * of that pool waits for it (rebalance.c). NULL if there is none. */
static const Cairn__Sds *rebalance_blocker(const Cairn__ClusterMap *m)
{
    for (size_t i = 0; i < m->n_devices; i++) {
        const Cairn__Device *d = m->devices[i];
        const Cairn__Pool *p = cmap_pool(m, d->pool_id);
        const Cairn__Sds *s = cmap_sds(m, d->sds_id);
        if (p && p->n_pgs && s && !d->failed && s->state != CAIRN__SDS_STATE__SDS_UP &&
            pool_has_volumes(m, p))
            return s;
    }
    return NULL;
}

struct hb_part {
    uint64_t left, done;
    uint32_t pgs;
};

void cli_progress_assess(const Cairn__MgmtReply *rep, enum cli_work work, uint64_t since_ms,
                         struct cli_work_view *v)
{
    memset(v, 0, sizeof(*v));
    v->work = work;
    const Cairn__ClusterMap *m = rep->map;
    if (!m) {
        v->state = CLI_WORK_PENDING;
        snprintf(v->why, sizeof(v->why), "waiting for a status with a map");
        return;
    }
    char pending[sizeof(v->why)] = "";
    view_pending(rep, since_ms, pending, sizeof(pending));

    /* the map */
    size_t fix_copies = 0, move_copies = 0, flux = 0, nowhere = 0, held = 0;
    const Cairn__Sds *holder = NULL;
    for (size_t pi = 0; pi < m->n_pools; pi++) {
        const Cairn__Pool *p = m->pools[pi];
        for (size_t gi = 0; gi < p->n_pgs; gi++) {
            const Cairn__Pg *g = p->pgs[gi];
            size_t live = cluster_live_copies(rep, g);
            size_t moves = g->n_rebuilding < g->n_leaving ? g->n_rebuilding : g->n_leaving;
            v->pgs_no_copy += live == 0;
            v->pgs_degraded += live > 0 && live < p->copies;
            v->pgs_rebuilding += g->n_rebuilding > moves;
            v->pgs_moving += g->n_leaving > 0;
            fix_copies += g->n_rebuilding - moves;
            move_copies += moves;
            flux += g->n_rebuilding || g->n_departed || g->n_leaving || g->n_devices != p->copies;
            if (live > 0 && live < p->copies && !g->n_rebuilding) {
                const Cairn__Sds *h = held_by(m, g);
                if (h) {
                    held++;
                    holder = h;
                } else {
                    nowhere++;
                }
            }
        }
    }
    int map_fix = v->pgs_no_copy || v->pgs_degraded || v->pgs_rebuilding;

    /* the heartbeats: whose are the bytes? */
    struct cluster_rebuild_stats rb = cluster_rebuild_stats(rep);
    struct hb_part all = {rb.left, rb.done, rb.pgs}, fix = all, move = {0, 0, 0};
    if (rb.rebalance_pgs || rb.rebalance_left || rb.rebalance_done) {
        /* the SDSs tell them apart */
        move = (struct hb_part){rb.rebalance_left, rb.rebalance_done, rb.rebalance_pgs};
        fix.left = all.left > move.left ? all.left - move.left : 0;
        fix.done = all.done > move.done ? all.done - move.done : 0;
        fix.pgs = all.pgs > move.pgs ? all.pgs - move.pgs : 0;
    } else if (v->pgs_moving && !map_fix) {
        /* they do not; the map has only moves */
        move = all;
        fix = (struct hb_part){0, 0, 0};
    }
    const struct hb_part *mine = work == CLI_WORK_REBUILD ? &fix : &move;
    size_t map_copies = work == CLI_WORK_REBUILD ? fix_copies : move_copies;
    v->copies_left = mine->pgs > map_copies ? mine->pgs : (uint32_t)map_copies;
    v->bytes_left = mine->left;
    v->bytes_done = mine->done;
    v->rate = rb.rate;

    /* the verdict: the view first, then what cannot progress, then the work */
    const char *name = cli_progress_work_name(work);
    const Cairn__Sds *blocker = work == CLI_WORK_REBALANCE ? rebalance_blocker(m) : NULL;
    int work_left =
        work == CLI_WORK_REBUILD ? map_fix || fix.pgs || fix.left : flux || all.pgs || all.left;
    if (pending[0]) {
        v->state = CLI_WORK_PENDING;
        snprintf(v->why, sizeof(v->why), "%s", pending);
    } else if (v->pgs_no_copy) {
        v->state = CLI_WORK_STUCK;
        snprintf(v->why, sizeof(v->why), "cannot %s: %zu %s %s no live copy", name, v->pgs_no_copy,
                 pgs_word(v->pgs_no_copy), v->pgs_no_copy == 1 ? "has" : "have");
    } else if (nowhere) {
        v->state = CLI_WORK_STUCK;
        snprintf(v->why, sizeof(v->why),
                 "cannot %s: %zu degraded %s %s nowhere to rebuild to (too few fault sets "
                 "with an SDS up)",
                 name, nowhere, pgs_word(nowhere), nowhere == 1 ? "has" : "have");
    } else if (held) {
        v->state = CLI_WORK_STUCK;
        snprintf(v->why, sizeof(v->why),
                 "cannot %s: %zu %s wait%s for SDS '%s' to leave maintenance "
                 "(cairn sds maintenance exit %s)",
                 name, held, pgs_word(held), held == 1 ? "s" : "", holder->name, holder->name);
    } else if (blocker) {
        v->state = CLI_WORK_STUCK;
        snprintf(v->why, sizeof(v->why),
                 "cannot rebalance: SDS '%s' is %s; the rebalance resumes when it is back or "
                 "removed",
                 blocker->name,
                 blocker->state == CAIRN__SDS_STATE__SDS_MAINTENANCE ? "in maintenance" : "down");
    } else if (work_left) {
        v->state = CLI_WORK_RUNNING;
        if (work == CLI_WORK_REBALANCE && (map_fix || fix.pgs || fix.left))
            snprintf(v->why, sizeof(v->why), "the rebuild first (%zu %s degraded or rebuilding)",
                     v->pgs_degraded + v->pgs_rebuilding,
                     pgs_word(v->pgs_degraded + v->pgs_rebuilding));
        else if (work == CLI_WORK_REBALANCE && !v->pgs_moving && flux)
            snprintf(v->why, sizeof(v->why), "%zu %s changing", flux, pgs_word(flux));
    } else {
        v->state = CLI_WORK_DONE;
    }
}

uint64_t cli_progress_update(struct cli_progress *p, const struct cli_work_view *v)
{
    if (p->started && v->bytes_done > p->last)
        p->copied += v->bytes_done - p->last;
    p->last = v->bytes_done;
    p->started = 1;
    return p->copied;
}

int cli_progress_percent(const struct cli_work_view *v, uint64_t copied)
{
    if (v->state == CLI_WORK_DONE)
        return 100;
    uint64_t total = copied + v->bytes_left;
    if (!total)
        return 0;
    int pct = (int)((double)copied * 100.0 / (double)total);
    /* 100% is for done: bytes copied with more to go read 99% */
    return pct > 99 ? 99 : pct;
}

char *cli_fmt_duration(char *buf, size_t len, uint64_t secs)
{
    if (secs < 60)
        snprintf(buf, len, "%llu s", (unsigned long long)secs);
    else if (secs < 3600)
        snprintf(buf, len, "%llu min %llu s", (unsigned long long)(secs / 60),
                 (unsigned long long)(secs % 60));
    else
        snprintf(buf, len, "%llu h %llu min", (unsigned long long)(secs / 3600),
                 (unsigned long long)(secs / 60 % 60));
    return buf;
}

/* The numbers: "12 PG copies, 340.0 MiB left, 85.0 MiB/s, ETA 4 s", with sep
 * between them; or "no copy being filled". */
static void numbers(char *buf, size_t len, size_t *at, const struct cli_work_view *v,
                    const char *sep)
{
    if (!v->copies_left && !v->bytes_left) {
        addf(buf, len, at, "no copy being filled");
        return;
    }
    char b1[32], b2[32], b3[32];
    addf(buf, len, at, "%u PG cop%s%s%s left%s%s/s%sETA %s", v->copies_left,
         v->copies_left == 1 ? "y" : "ies", sep, fmt_bytes(b1, sizeof(b1), v->bytes_left), sep,
         fmt_bytes(b2, sizeof(b2), v->rate), sep,
         v->rate && v->bytes_left
             ? cli_fmt_duration(b3, sizeof(b3), (v->bytes_left + v->rate - 1) / v->rate)
             : "unknown");
}

char *cli_progress_line(char *buf, size_t len, const struct cli_work_view *v)
{
    size_t at = 0;
    buf[0] = 0;
    addf(buf, len, &at, "%s: ", cli_progress_work_name(v->work));
    numbers(buf, len, &at, v, ", ");
    if (v->why[0])
        addf(buf, len, &at, "; %s", v->why);
    return buf;
}

#define BAR_MIN 10
#define BAR_MAX 40

char *cli_progress_bar(char *buf, size_t len, int width, const struct cli_work_view *v,
                       uint64_t copied)
{
    char tail[256];
    size_t tl = 0;
    tail[0] = 0;
    addf(tail, sizeof(tail), &tl, "%3d%%  ", cli_progress_percent(v, copied));
    numbers(tail, sizeof(tail), &tl, v, "  ");
    const char *name = cli_progress_work_name(v->work);
    /* name, " [", bar, "] ", tail, "  ", why: fit it in width - 1 columns,
     * the bar shrinking first, then going, then the end cut */
    int bar =
        width - 1 - (int)strlen(name) - 4 - (int)tl - (v->why[0] ? 2 + (int)strlen(v->why) : 0);
    if (bar > BAR_MAX)
        bar = BAR_MAX;
    size_t at = 0;
    buf[0] = 0;
    if (bar >= BAR_MIN) {
        int filled = cli_progress_percent(v, copied) * bar / 100;
        addf(buf, len, &at, "%s [", name);
        for (int i = 0; i < bar; i++)
            addf(buf, len, &at, "%c", i < filled ? '=' : i == filled ? '>' : ' ');
        addf(buf, len, &at, "] %s", tail);
    } else {
        addf(buf, len, &at, "%s %s", name, tail);
    }
    if (v->why[0])
        addf(buf, len, &at, "  %s", v->why);
    if (width > 1 && at > (size_t)width - 1)
        buf[width - 1] = 0;
    return buf;
}

static void add_json_str(char *buf, size_t len, size_t *at, const char *s)
{
    addf(buf, len, at, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            addf(buf, len, at, "\\%c", ch);
        else if (ch < 0x20)
            addf(buf, len, at, "\\u%04x", ch);
        else
            addf(buf, len, at, "%c", ch);
    }
    addf(buf, len, at, "\"");
}

char *cli_progress_json(char *buf, size_t len, const struct cli_work_view *v, uint64_t copied,
                        double elapsed)
{
    static const char *const states[] = {"done", "running", "pending", "stuck"};
    size_t at = 0;
    buf[0] = 0;
    addf(buf, len, &at,
         "{\"work\":\"%s\",\"state\":\"%s\",\"done\":%s,\"elapsed\":%.1f,\"percent\":%d,"
         "\"pg_copies_left\":%u,\"bytes_left\":%llu,\"bytes_copied\":%llu,\"rate\":%llu,"
         "\"eta_seconds\":",
         cli_progress_work_name(v->work), states[v->state],
         v->state == CLI_WORK_DONE ? "true" : "false", isfinite(elapsed) ? elapsed : 0.0,
         cli_progress_percent(v, copied), v->copies_left, (unsigned long long)v->bytes_left,
         (unsigned long long)copied, (unsigned long long)v->rate);
    if (v->rate && v->bytes_left)
        addf(buf, len, &at, "%llu", (unsigned long long)((v->bytes_left + v->rate - 1) / v->rate));
    else
        addf(buf, len, &at, v->bytes_left ? "null" : "0");
    addf(buf, len, &at,
         ",\"pgs_degraded\":%zu,\"pgs_no_copy\":%zu,\"pgs_rebuilding\":%zu,\"pgs_moving\":%zu,"
         "\"why\":",
         v->pgs_degraded, v->pgs_no_copy, v->pgs_rebuilding, v->pgs_moving);
    add_json_str(buf, len, &at, v->why);
    addf(buf, len, &at, "}");
    return buf;
}
