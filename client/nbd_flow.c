/* Flow control of the NBD server: a connection starts a request only while
 * it and the process have room for its data, so a client that pipelines
 * without end, or stops reading its replies, is slowed down (its requests
 * wait in the socket, then in its sender) instead of making the SDC hold
 * without bound. Nothing is dropped: a request that cannot start now starts
 * once earlier ones finish.
 *
 * Fairness: a connection's own limits keep it from taking the totals alone;
 * connections blocked on the totals are woken oldest first once the totals
 * have drained to three quarters, and each then starts what it can. */
#include <stdlib.h>

#include "nbd_internal.h"
#include "rpc.h"

struct nbd_budget *nbd_budget_new(uv_loop_t *loop, const struct nbd_limits *l)
{
    struct nbd_budget *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->loop = loop;
    b->l = *l;
    uv_idle_init(loop, &b->kick);
    b->kick.data = b;
    uv_unref((uv_handle_t *)&b->kick);
    return b;
}

size_t nbd_budget_held(const struct nbd_budget *b)
{
    return b->held;
}

size_t nbd_flow_cost(uint16_t type, uint32_t len)
{
    if (type != NBD_CMD_READ && type != NBD_CMD_WRITE)
        return 0;
    /* the buffer it takes, not its length: 1 KiB reads hold 4 KiB each */
    return rpc_buf_size(len < NBD_MAX_PAYLOAD ? len : NBD_MAX_PAYLOAD);
}

static void waiting_add(struct nbd_budget *b, struct nbd_conn *c)
{
    if (c->on_total)
        return;
    c->on_total = true;
    c->wnext = NULL;
    if (b->waiting_tail)
        b->waiting_tail->wnext = c;
    else
        b->waiting_head = c;
    b->waiting_tail = c;
}

static void waiting_remove(struct nbd_budget *b, struct nbd_conn *c)
{
    if (!c->on_total)
        return;
    struct nbd_conn *prev = NULL;
    for (struct nbd_conn *w = b->waiting_head; w; prev = w, w = w->wnext)
        if (w == c) {
            if (prev)
                prev->wnext = c->wnext;
            else
                b->waiting_head = c->wnext;
            if (b->waiting_tail == c)
                b->waiting_tail = prev;
            break;
        }
    c->wnext = NULL;
    c->on_total = false;
}

bool nbd_flow_may_start(struct nbd_conn *c, size_t cost)
{
    struct nbd_budget *b = c->srv->budget;
    const struct nbd_limits *l = &b->l;
    size_t mine = c->held + c->tx;
    /* with nothing of its own held, one request always goes (however large) */
    bool own = c->started < l->conn_requests && (mine == 0 || mine + cost <= l->conn_bytes);
    bool total = b->held == 0 || b->held + cost <= l->total_bytes;
    if (own && total) {
        c->blocked = false;
        return true;
    }
    c->blocked = true;
    if (own && !total)
        waiting_add(b, c);
    return false;
}

/* Something c or the process held was given back: wake who can go on. */
static void released(struct nbd_conn *c)
{
    struct nbd_budget *b = c->srv->budget;
    if (c->blocked && !c->on_total)
        nbd_conn_kick(c);
    if (b->held <= b->l.total_bytes / 4 * 3)
        while (b->waiting_head) {
            struct nbd_conn *w = b->waiting_head;
            waiting_remove(b, w);
            nbd_conn_kick(w);
        }
}

void nbd_flow_start(struct nbd_conn *c, struct nbd_req *r, size_t cost)
{
    struct nbd_budget *b = c->srv->budget;
    r->held = cost;
    r->started = true;
    c->started++;
    c->held += cost;
    b->held += cost;
}

void nbd_flow_finish(struct nbd_conn *c, struct nbd_req *r)
{
    struct nbd_budget *b = c->srv->budget;
    if (!r->started)
        return;
    r->started = false;
    c->started--;
    c->held -= r->held;
    b->held -= r->held;
    r->held = 0;
    released(c);
}

void nbd_flow_tx(struct nbd_conn *c, long delta)
{
    struct nbd_budget *b = c->srv->budget;
    c->tx += (size_t)delta;
    b->held += (size_t)delta;
    if (delta < 0)
        released(c);
}

bool nbd_flow_readahead(struct nbd_conn *c)
{
    struct nbd_budget *b = c->srv->budget;
    /* the buffer's span in use, parsed prefix included: that is its memory */
    size_t used = c->in_off + c->in_len;
    b->readahead += used;
    b->readahead -= c->counted_in;
    c->counted_in = used;
    /* a connection that has no read-ahead may always read: it needs one
     * request to make progress */
    return used == 0 || (used < b->l.conn_readahead && b->readahead < b->l.total_readahead);
}

void nbd_flow_forget(struct nbd_conn *c)
{
    struct nbd_budget *b = c->srv->budget;
    waiting_remove(b, c);
    if (c->kick_queued) {
        for (struct nbd_conn **pp = &b->kick_head; *pp; pp = &(*pp)->knext)
            if (*pp == c) {
                *pp = c->knext;
                break;
            }
        c->kick_queued = false;
    }
    b->readahead -= c->counted_in;
    c->counted_in = 0;
}
