/* Flow control: reading a connection stops for its owner's reasons, while
 * too many of its requests are unanswered, or while too many of its replies
 * wait for a peer that does not read them; it resumes from the loop. */
#include "rpc_internal.h"

/* Connections whose reading resumes on the next loop turn (one loop per
 * thread): the bytes they hold are consumed from there, never from inside
 * rpc_resume(), whose caller may be in the middle of a completion. */
static __thread struct rpc_conn *resume_head;
static __thread uv_idle_t resume_idle;
static __thread int resume_idle_ready;

void rpc_resume_forget(struct rpc_conn *c)
{
    if (!c->resume_queued)
        return;
    for (struct rpc_conn **pp = &resume_head; *pp; pp = &(*pp)->resume_next)
        if (*pp == c) {
            *pp = c->resume_next;
            break;
        }
    c->resume_queued = 0;
}

static void resume_cb(uv_idle_t *h)
{
    while (resume_head) {
        struct rpc_conn *c = resume_head;
        resume_head = c->resume_next;
        c->resume_queued = 0;
        if (c->closing || c->pause)
            continue;
        if (c->nrest) {
            const uint8_t *p = c->rest;
            size_t n = c->nrest;
            c->rest = NULL;
            c->nrest = 0;
            if (rpc_consume(c, p, n) < 0 || c->pause)
                continue;
        }
        if (!c->reading) {
            uv_read_start(&c->u.s, rpc_alloc_cb, rpc_read_cb);
            c->reading = 1;
        }
    }
    uv_idle_stop(h);
}

void rpc_pause(struct rpc_conn *c, unsigned reasons)
{
    c->pause |= reasons;
    if (c->reading) {
        uv_read_stop(&c->u.s);
        c->reading = 0;
    }
}

void rpc_resume(struct rpc_conn *c, unsigned reasons)
{
    c->pause &= ~reasons;
    if (c->pause || c->closing || c->resume_queued)
        return;
    if (!resume_idle_ready) {
        uv_idle_init(c->loop, &resume_idle);
        uv_unref((uv_handle_t *)&resume_idle);
        resume_idle_ready = 1;
    }
    c->resume_next = resume_head;
    resume_head = c;
    c->resume_queued = 1;
    uv_idle_start(&resume_idle, resume_cb);
}

int rpc_paused(const struct rpc_conn *c)
{
    return c->pause != 0;
}

void rpc_set_tx_limit(struct rpc_conn *c, size_t bytes)
{
    c->tx_limit = bytes;
}

void rpc_set_request_limit(struct rpc_conn *c, unsigned n)
{
    c->rx_limit = n;
}

unsigned rpc_requests_open(const struct rpc_conn *c)
{
    return c->rx_open;
}

size_t rpc_tx_queued(const struct rpc_conn *c)
{
    return c->tx_bytes;
}
