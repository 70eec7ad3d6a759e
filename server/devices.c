/* Devices: attaching the devices the map gives this SDS, failing one on an
 * I/O error, and the MDM's probe of a path before it adds a device. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk_uring.h"
#include "extent_store.h"
#include "log.h"
#include "sds.h"
#include "util.h"

struct dev *devices_find(struct sds *s, uint32_t id)
{
    for (int i = 0; i < s->ndevs; i++)
        if (s->devs[i].id == id)
            return &s->devs[i];
    return NULL;
}

void devices_attach(struct sds *s, const Cairn__Device *md, const Cairn__Pool *pool)
{
    if (devices_find(s, md->id) || s->ndevs == SDS_MAX_DEVS)
        return;
    struct dev *d = &s->devs[s->ndevs++];
    memset(d, 0, sizeof(*d));
    d->id = md->id;
    snprintf(d->path, sizeof(d->path), "%s", md->path);
    int r = disk_uring_open(s->uring, md->path, &d->disk);
    if (r < 0) {
        snprintf(d->err, sizeof(d->err), "cannot open: %s", strerror(-r));
        goto fail;
    }
    char msg[256];
    r = store_open(d->disk, s->map->cluster_id, d->id, &d->st, msg, sizeof(msg));
    if (r == -ENODATA) {
        log_info("device %u (%s): formatting for cluster %s, %llu-byte extents", d->id, d->path,
                 s->map->cluster_id, (unsigned long long)pool->extent_size);
        r = store_format(d->disk, s->map->cluster_id, d->id, pool->extent_size);
        if (r == 0)
            r = store_open(d->disk, s->map->cluster_id, d->id, &d->st, msg, sizeof(msg));
        else
            snprintf(msg, sizeof(msg), "format failed: %s", strerror(-r));
    }
    if (r < 0) {
        snprintf(d->err, sizeof(d->err), "%s", msg);
        goto fail;
    }
    store_set_defer(d->st, s->defer_bits);
    uint64_t used, total;
    store_usage(d->st, &used, &total);
    log_info("device %u (%s): attached, %llu of %llu extents used", d->id, d->path,
             (unsigned long long)used, (unsigned long long)total);
    return;
fail:
    d->failed = 1;
    log_error("device %u (%s): %s", d->id, d->path, d->err);
}

/* An I/O error from a device fails that device, not the SDS: its requests get
 * EIO from now on (clients retry), and the next heartbeat tells the MDM, which
 * moves its copies elsewhere. */
void devices_error(struct dev *d, int res)
{
    if (d->failed || (res != -EIO && res != -ENXIO && res != -ENODEV && res != -EROFS))
        return;
    d->failed = 1;
    snprintf(d->err, sizeof(d->err), "I/O error: %s", strerror(-res));
    log_error("device %u (%s): %s; no longer used", d->id, d->path, d->err);
}

/* A path that already holds a Cairn superblock is refused: adding it would
 * format over another device's data. */
static void probe_superblock(const char *path, int fd, char *err, size_t errlen, int *status)
{
    void *sb = NULL;
    if (posix_memalign(&sb, 4096, 4096) == 0 && pread(fd, sb, 4096, 0) == 4096 &&
        !memcmp(sb, "CAIRNDEV", 8)) {
        snprintf(err, errlen,
                 "%s already holds a Cairn device (cluster %.40s, device %u); wipe "
                 "it before reuse",
                 path, (char *)sb + 64, get_be32((uint8_t *)sb + 12));
        *status = -EEXIST;
    }
    free(sb);
}

void devices_probe(struct sds *s, struct rpc_conn *c, const struct frame_hdr *h, const uint8_t *msg)
{
    Cairn__DeviceProbe *p = cairn__device_probe__unpack(NULL, h->msg_len, msg);
    Cairn__DeviceProbeReply rep = CAIRN__DEVICE_PROBE_REPLY__INIT;
    char err[512] = "";
    int status = 0;
    uint64_t size = 0;
    if (!p) {
        snprintf(err, sizeof(err), "malformed probe");
        status = -EINVAL;
        goto out;
    }
    int r = disk_probe_size(p->path, &size);
    if (r == -ENOENT) {
        snprintf(err, sizeof(err), "%s does not exist on this host", p->path);
        status = r;
    } else if (r == -ENOTBLK) {
        snprintf(err, sizeof(err), "%s is not a regular file or a block device", p->path);
        status = r;
    } else if (r < 0) {
        snprintf(err, sizeof(err), "cannot inspect %s: %s", p->path, strerror(-r));
        status = r;
    } else if (size < (64u << 20)) {
        snprintf(err, sizeof(err), "%s is too small (%llu bytes; at least 64 MiB)", p->path,
                 (unsigned long long)size);
        status = -EINVAL;
    } else {
        for (int i = 0; i < s->ndevs; i++)
            if (!strcmp(s->devs[i].path, p->path)) {
                snprintf(err, sizeof(err), "%s is already attached as device %u", p->path,
                         s->devs[i].id);
                status = -EEXIST;
            }
        int fd = status ? -1 : open(p->path, O_RDWR | O_DIRECT | O_CLOEXEC);
        if (!status && fd < 0) {
            snprintf(err, sizeof(err), "cannot open %s for direct I/O: %s", p->path,
                     strerror(errno));
            status = -errno;
        }
        if (fd >= 0) {
            probe_superblock(p->path, fd, err, sizeof(err), &status);
            close(fd);
        }
    }
out:
    rep.error = err;
    rep.capacity = size & ~(uint64_t)4095;
    rpc_reply_pb(c, h, status, &rep.base);
    if (p)
        cairn__device_probe__free_unpacked(p, NULL);
}
