#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int addr_list_split(char *list, char **out, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *a = strtok_r(list, ",", &save); a && n < max; a = strtok_r(NULL, ",", &save))
        if (*a)
            out[n++] = a;
    return n;
}

int addr_split(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= hostlen)
        return -EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    *port = (int)p;
    return 0;
}

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int file_write_atomic(const char *path, const void *buf, size_t len)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    const char *p = buf;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            close(fd);
            return e;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    close(fd);
    if (rename(tmp, path) < 0)
        return -errno;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int file_read_all(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    for (;;) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            fclose(f);
            return -ENOMEM;
        }
        buf = nb;
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -EINVAL;
    uint64_t mul = 1;
    switch (*end) {
    case 0: break;
    case 'k':
    case 'K':
        mul = 1ULL << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1ULL << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1ULL << 30;
        end++;
        break;
    case 't':
    case 'T':
        mul = 1ULL << 40;
        end++;
        break;
    case 'p':
    case 'P':
        mul = 1ULL << 50;
        end++;
        break;
    default: return -EINVAL;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        return -EINVAL;
    if (v > UINT64_MAX / mul)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

const char *fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    double v = (double)bytes;
    while (v >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, units[i]);
    return buf;
}
