#include "mock_disk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct pw {
    uint64_t off;
    uint32_t len;
    int dsync;
    uint8_t *data;
};

struct mdisk {
    struct disk d;
    uint8_t *durable;
    struct pw *pend;
    size_t npend, cappend;
    struct disk_io **q;
    size_t nq, capq;
    uint64_t fail_off, fail_len;
    int dead; /* crashed and not revived: every request fails */
};

static void apply(struct mdisk *m, const struct pw *w)
{
    memcpy(m->durable + w->off, w->data, w->len);
}

static void read_current(struct mdisk *m, void *buf, uint32_t len, uint64_t off)
{
    memcpy(buf, m->durable + off, len);
    for (size_t i = 0; i < m->npend; i++) {
        struct pw *w = &m->pend[i];
        uint64_t a = w->off > off ? w->off : off;
        uint64_t b = (w->off + w->len < off + len) ? w->off + w->len : off + len;
        if (a < b)
            memcpy((uint8_t *)buf + (a - off), w->data + (a - w->off), b - a);
    }
}

/* Every write is kept in order; `durable` is the image as of the last sync.
 * A dsync write is marked so that a crash always keeps it. */
static void do_write(struct mdisk *m, const void *buf, uint32_t len, uint64_t off, int dsync)
{
    if (m->npend == m->cappend) {
        m->cappend = m->cappend ? m->cappend * 2 : 64;
        m->pend = realloc(m->pend, m->cappend * sizeof(*m->pend));
    }
    struct pw *w = &m->pend[m->npend++];
    w->off = off;
    w->len = len;
    w->dsync = dsync;
    w->data = malloc(len);
    memcpy(w->data, buf, len);
}

static void do_sync(struct mdisk *m)
{
    for (size_t i = 0; i < m->npend; i++) {
        apply(m, &m->pend[i]);
        free(m->pend[i].data);
    }
    m->npend = 0;
}

static int overlaps_fail(struct mdisk *m, uint64_t off, uint64_t len)
{
    return m->fail_len && off < m->fail_off + m->fail_len && m->fail_off < off + len;
}

static int m_submit(struct disk *d, struct disk_io *io)
{
    struct mdisk *m = (struct mdisk *)d;
    if (io->op != DISK_SYNC && io->off + io->len > d->size)
        return -EINVAL;
    if (m->nq == m->capq) {
        m->capq = m->capq ? m->capq * 2 : 64;
        m->q = realloc(m->q, m->capq * sizeof(*m->q));
    }
    m->q[m->nq++] = io;
    return 0;
}

static int m_pread(struct disk *d, void *buf, uint32_t len, uint64_t off)
{
    struct mdisk *m = (struct mdisk *)d;
    if (off + len > d->size)
        return -EINVAL;
    read_current(m, buf, len, off);
    return 0;
}

static int m_pwrite(struct disk *d, const void *buf, uint32_t len, uint64_t off)
{
    struct mdisk *m = (struct mdisk *)d;
    if (off + len > d->size)
        return -EINVAL;
    do_write(m, buf, len, off, 0);
    do_sync(m);
    return 0;
}

static void m_close(struct disk *d)
{
    (void)d;
}

static const struct disk_ops mock_ops = {m_submit, m_pread, m_pwrite, m_close};

struct disk *mock_disk_new(uint64_t size)
{
    struct mdisk *m = calloc(1, sizeof(*m));
    m->d.ops = &mock_ops;
    m->d.size = size;
    strcpy(m->d.name, "mock");
    m->durable = calloc(1, size);
    return &m->d;
}

int mock_disk_run(struct disk *d, int shuffle)
{
    return mock_disk_run_n(d, shuffle, -1);
}

int mock_disk_run_n(struct disk *d, int shuffle, int max)
{
    struct mdisk *m = (struct mdisk *)d;
    int n = 0;
    while (m->nq && (max < 0 || n < max)) {
        size_t i = shuffle ? (size_t)rand() % m->nq : 0;
        struct disk_io *io = m->q[i];
        memmove(&m->q[i], &m->q[i + 1], (m->nq - i - 1) * sizeof(*m->q));
        m->nq--;
        int res;
        if (m->dead || (io->op != DISK_SYNC && overlaps_fail(m, io->off, io->len))) {
            res = -EIO;
        } else if (io->op == DISK_READ) {
            read_current(m, io->buf, io->len, io->off);
            res = (int)io->len;
        } else if (io->op == DISK_WRITE) {
            do_write(m, io->buf, io->len, io->off, io->dsync);
            res = (int)io->len;
        } else {
            do_sync(m);
            res = 0;
        }
        io->cb(io, res);
        n++;
    }
    return n;
}

void mock_disk_crash(struct disk *d, int keep_pct)
{
    struct mdisk *m = (struct mdisk *)d;
    /* In-flight requests never reach the medium: they fail when run. */
    m->dead = 1;
    /* Rebuild durable: the synced image, then the kept pending writes in order.
     * dsync writes are always kept (they were durable when acknowledged). */
    for (size_t i = 0; i < m->npend; i++) {
        struct pw *w = &m->pend[i];
        if (w->dsync || rand() % 100 < keep_pct)
            apply(m, w);
        free(w->data);
    }
    m->npend = 0;
}

void mock_disk_revive(struct disk *d)
{
    struct mdisk *m = (struct mdisk *)d;
    m->dead = 0;
}

void mock_disk_fail(struct disk *d, uint64_t off, uint64_t len)
{
    struct mdisk *m = (struct mdisk *)d;
    m->fail_off = off;
    m->fail_len = len;
}

void mock_disk_free(struct disk *d)
{
    struct mdisk *m = (struct mdisk *)d;
    for (size_t i = 0; i < m->npend; i++)
        free(m->pend[i].data);
    free(m->pend);
    free(m->q);
    free(m->durable);
    free(m);
}
