#include "disk_uring.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct uring_ctx {
    struct io_uring ring;
    int efd;
    uv_poll_t poll;
    uv_check_t check;
    unsigned queued;   /* SQEs prepared, not yet submitted */
    unsigned inflight; /* submitted, not completed */
};

struct udisk {
    struct disk d;
    struct uring_ctx *u;
    int fd;
};

/* A device operation completed with res: count it. */
static void count_done(struct disk_io *io, int res)
{
    struct disk_stats *st = &io->disk->stats;
    st->inflight--;
    if (res < 0) {
        st->errors++;
        return;
    }
    switch (io->op) {
    case DISK_READ:
        st->reads++;
        st->read_bytes += (uint64_t)res;
        break;
    case DISK_WRITE:
        st->writes++;
        st->write_bytes += (uint64_t)res;
        break;
    default: st->syncs++; break;
    }
}

static void drain(struct uring_ctx *u)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        struct disk_io *io = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        u->inflight--;
        if (io) {
            count_done(io, res);
            io->cb(io, res);
        }
    }
}

static int prep(struct uring_ctx *u, struct udisk *ud, struct disk_io *io)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe)
        return -EBUSY;
    switch (io->op) {
    case DISK_READ: io_uring_prep_read(sqe, ud->fd, io->buf, io->len, io->off); break;
    case DISK_WRITE:
        io_uring_prep_write(sqe, ud->fd, io->buf, io->len, io->off);
        if (io->dsync)
            sqe->rw_flags = RWF_DSYNC;
        break;
    default: io_uring_prep_fsync(sqe, ud->fd, IORING_FSYNC_DATASYNC); break;
    }
    io_uring_sqe_set_data(sqe, io);
    io->disk = &ud->d;
    ud->d.stats.inflight++;
    u->queued++;
    return 0;
}

static void flush_submissions(struct uring_ctx *u)
{
    while (u->queued) {
        int r = io_uring_submit(&u->ring);
        if (r < 0) {
            if (r == -EINTR || r == -EAGAIN || r == -EBUSY) {
                drain(u);
                continue;
            }
            log_error("io_uring_submit: %s", strerror(-r));
            abort(); /* a ring we cannot submit to loses acknowledged order */
        }
        u->inflight += (unsigned)r;
        u->queued -= (unsigned)r;
    }
}

static void check_cb(uv_check_t *c)
{
    struct uring_ctx *u = c->data;
    flush_submissions(u);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct uring_ctx *u = p->data;
    uint64_t v;
    if (read(u->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn("io_uring eventfd read: %s", strerror(errno));
    drain(u);
    flush_submissions(u);
}

int uring_ctx_init(uv_loop_t *loop, unsigned entries, struct uring_ctx **out)
{
    struct uring_ctx *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    int r = io_uring_queue_init(entries, &u->ring, IORING_SETUP_COOP_TASKRUN);
    if (r == -EINVAL) /* before Linux 5.19 */
        r = io_uring_queue_init(entries, &u->ring, 0);
    if (r < 0) {
        free(u);
        return r;
    }
    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->efd < 0 || io_uring_register_eventfd(&u->ring, u->efd) < 0) {
        io_uring_queue_exit(&u->ring);
        free(u);
        return -EIO;
    }
    uv_poll_init(loop, &u->poll, u->efd);
    u->poll.data = u;
    uv_poll_start(&u->poll, UV_READABLE, poll_cb);
    uv_check_init(loop, &u->check);
    u->check.data = u;
    uv_check_start(&u->check, check_cb);
    *out = u;
    return 0;
}

static void ctx_free_cb(uv_handle_t *h)
{
    struct uring_ctx *u = h->data;
    if (h == (uv_handle_t *)&u->check) {
        io_uring_queue_exit(&u->ring);
        close(u->efd);
        free(u);
    }
}

unsigned uring_ctx_inflight(const struct uring_ctx *u)
{
    return u->queued + u->inflight;
}

void uring_ctx_close(struct uring_ctx *u)
{
    if (u->queued || u->inflight)
        log_error("io_uring closed with %u operations queued and %u in flight: their "
                  "completions are lost",
                  u->queued, u->inflight);
    uv_poll_stop(&u->poll);
    uv_check_stop(&u->check);
    uv_close((uv_handle_t *)&u->poll, NULL);
    uv_close((uv_handle_t *)&u->check, ctx_free_cb);
}

static int ud_submit(struct disk *d, struct disk_io *io)
{
    struct udisk *ud = (struct udisk *)d;
    struct uring_ctx *u = ud->u;
    if (io->op != DISK_SYNC && (io->off + io->len > d->size))
        return -EINVAL;
    if (prep(u, ud, io) == 0)
        return 0;
    /* The SQ ring is full: hand it to the kernel, which frees every entry. */
    flush_submissions(u);
    return prep(u, ud, io);
}

static int ud_pread(struct disk *d, void *buf, uint32_t len, uint64_t off)
{
    struct udisk *ud = (struct udisk *)d;
    ssize_t n = pread(ud->fd, buf, len, (off_t)off);
    return n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
}

static int ud_pwrite(struct disk *d, const void *buf, uint32_t len, uint64_t off)
{
    struct udisk *ud = (struct udisk *)d;
    ssize_t n = pwrite(ud->fd, buf, len, (off_t)off);
    if (n != (ssize_t)len)
        return n < 0 ? -errno : -EIO;
    return fdatasync(ud->fd) < 0 ? -errno : 0;
}

static void ud_close(struct disk *d)
{
    struct udisk *ud = (struct udisk *)d;
    close(ud->fd);
    free(ud);
}

static const struct disk_ops uring_ops = {ud_submit, ud_pread, ud_pwrite, ud_close};

int disk_probe_size(const char *path, uint64_t *size)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode)) {
        *size = (uint64_t)st.st_size;
        return 0;
    }
    if (!S_ISBLK(st.st_mode))
        return -ENOTBLK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int disk_uring_open(struct uring_ctx *u, const char *path, struct disk **out)
{
    uint64_t size;
    int r = disk_probe_size(path, &size);
    if (r < 0)
        return r;
    int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct udisk *ud = calloc(1, sizeof(*ud));
    if (!ud) {
        close(fd);
        return -ENOMEM;
    }
    ud->d.ops = &uring_ops;
    ud->d.size = size & ~(uint64_t)4095;
    snprintf(ud->d.name, sizeof(ud->d.name), "%s", path);
    ud->u = u;
    ud->fd = fd;
    *out = &ud->d;
    return 0;
}
