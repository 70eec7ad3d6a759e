/* The pause of a snapshot's cut (docs/snapshots.md, "The cut").
 *
 * FT_FREEZE from the MDM leader names volumes and the map version v the
 * snapshot is based on. From then on this SDS, as a primary, starts no new
 * change (WRITE, TRIM, ZERO) to those volumes: it refuses them with -EAGAIN,
 * which the SDC retries. It answers the FREEZE with status 0 once none of
 * the changes it had already started is still in progress (each of those
 * is on every copy by then), and with -EBUSY while some are: the leader
 * asks again. The first map above v lifts the freeze, whatever it holds: a
 * snapshot applied at v (its new head layers take the changes from then
 * on), or anything else (the snapshot can no longer apply). A freeze that
 * sees no newer map for FREEZE_MAX_MS is lifted with a warning, so a leader
 * that died mid-cut cannot stop a volume's writes for good. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sds.h"
#include "util.h"

#define FREEZE_MAX_MS 10000
#define FREEZE_HOLD_MAX 1024
#define FREEZE_TICK_MS 250

/* A freeze that saw no newer map in FREEZE_MAX_MS is lifted (1). */
static int too_long(struct sds *s)
{
    if (!s->freeze.nvols || now_ms() - s->freeze.since <= FREEZE_MAX_MS)
        return 0;
    log_warn("lifting the snapshot pause of %zu volumes at map version %llu: no newer map "
             "came in %u ms",
             s->freeze.nvols, (unsigned long long)s->freeze.base_version, FREEZE_MAX_MS);
    freeze_lift(s);
    return 1;
}

static int frozen_vol(const struct sds *s, uint64_t vol)
{
    for (size_t i = 0; i < s->freeze.nvols; i++)
        if (s->freeze.vols[i] == vol)
            return 1;
    return 0;
}

int freeze_refuses(struct sds *s, const struct ioreq *r)
{
    if (!s->freeze.nvols || r->t.role != COPY_PRIMARY || r->hdr.type == FT_IO_READ ||
        r->hdr.type == FT_IO_STAT)
        return 0;
    if (too_long(s))
        return 0;
    return frozen_vol(s, r->t.vol_id);
}

int freeze_hold(struct sds *s, struct ioreq *r)
{
    struct freeze *f = &s->freeze;
    if (f->nheld >= FREEZE_HOLD_MAX)
        return 0;
    r->fnext = NULL;
    if (!f->held)
        f->held_tail = &f->held;
    *f->held_tail = r;
    f->held_tail = &r->fnext;
    f->nheld++;
    return 1;
}

/* The loop's turn after a lift: start what was held, oldest first. While
 * frozen: lift a freeze held too long. */
static void timer_cb(uv_timer_t *t)
{
    struct sds *s = t->data;
    struct freeze *f = &s->freeze;
    if (f->nvols && !too_long(s))
        return;
    uv_timer_stop(t);
    struct ioreq *r = f->held;
    f->held = NULL;
    f->nheld = 0;
    while (r) {
        struct ioreq *next = r->fnext;
        r->fnext = NULL;
        dispatch_start(r);
        r = next;
    }
}

void freeze_init(struct sds *s)
{
    uv_timer_init(s->loop, &s->freeze.timer);
    s->freeze.timer.data = s;
}

void freeze_mut_start(struct sds *s, struct ioreq *r)
{
    r->in_muts = 1;
    r->mprev = NULL;
    r->mnext = s->muts;
    if (s->muts)
        s->muts->mprev = r;
    s->muts = r;
}

void freeze_mut_end(struct sds *s, struct ioreq *r)
{
    if (!r->in_muts)
        return;
    if (r->mprev)
        r->mprev->mnext = r->mnext;
    else
        s->muts = r->mnext;
    if (r->mnext)
        r->mnext->mprev = r->mprev;
    r->in_muts = 0;
}

void freeze_lift(struct sds *s)
{
    free(s->freeze.vols);
    s->freeze.vols = NULL;
    s->freeze.nvols = 0;
    if (s->freeze.held) /* from the loop, not from inside map_install() */
        uv_timer_start(&s->freeze.timer, timer_cb, 0, 0);
    else
        uv_timer_stop(&s->freeze.timer);
}

void freeze_map_installed(struct sds *s)
{
    if (s->freeze.nvols && s->map && s->map->version > s->freeze.base_version)
        freeze_lift(s);
}

void freeze_handle(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    Cairn__Freeze *f = cairn__freeze__unpack(NULL, h->msg_len, msg);
    if (!f || f->n_volumes == 0 || f->n_volumes > 4096) {
        if (f)
            cairn__freeze__free_unpacked(f, NULL);
        dispatch_status(c, h, -EINVAL);
        return;
    }
    uint64_t version = s->map ? s->map->version : 0;
    if (version > f->base_version) {
        /* a newer map is here already: the snapshot cannot apply */
        cairn__freeze__free_unpacked(f, NULL);
        dispatch_status(c, h, -ESTALE);
        return;
    }
    int same = s->freeze.nvols == f->n_volumes && s->freeze.base_version == f->base_version;
    for (size_t i = 0; same && i < f->n_volumes; i++)
        same = frozen_vol(s, f->volumes[i]);
    if (!same) {
        uint64_t *vols = malloc(f->n_volumes * sizeof(uint64_t));
        if (!vols) {
            cairn__freeze__free_unpacked(f, NULL);
            dispatch_status(c, h, -ENOMEM);
            return;
        }
        memcpy(vols, f->volumes, f->n_volumes * sizeof(uint64_t));
        freeze_lift(s);
        s->freeze.vols = vols;
        s->freeze.nvols = f->n_volumes;
        s->freeze.base_version = f->base_version;
        s->freeze.since = now_ms();
        uv_timer_start(&s->freeze.timer, timer_cb, FREEZE_TICK_MS, FREEZE_TICK_MS);
        log_info("pausing changes to %zu volumes for a snapshot at map version %llu",
                 s->freeze.nvols, (unsigned long long)f->base_version);
    }
    cairn__freeze__free_unpacked(f, NULL);
    int busy = 0;
    for (struct ioreq *r = s->muts; r && !busy; r = r->mnext)
        busy = frozen_vol(s, r->t.vol_id);
    dispatch_status(c, h, busy ? -EBUSY : 0);
}
