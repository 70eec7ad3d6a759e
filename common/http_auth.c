/* Bearer tokens for the HTTP ports (see http_auth.h): the token files and
 * the check of each request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "http_auth.h"
#include "log.h"

#define HASH_LEN 32
/* A token file is a few lines; anything this large is not one. */
#define MAX_FILE (64u << 10)
/* A presented token longer than this is not one of ours (they come from a
 * file of at most MAX_FILE), and is not worth hashing. */
#define MAX_TOKEN 4096
#define REFUSED_LOG_MS 10000

static const char no_token[] = "no bearer token";
static const char bad_token[] = "wrong token";

struct http_auth_token {
    unsigned char hash[HASH_LEN];
    enum http_role role;
};

struct http_auth {
    struct http_auth_token *t;
    size_t n;
};

/* RFC 6750's b64token: [A-Za-z0-9-._~+/]+ then '='s. 1 if s[0..len) is one. */
static int is_b64token(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') ||
                       (s[i] >= '0' && s[i] <= '9') || strchr("-._~+/", s[i])))
        i++;
    if (i == 0)
        return 0;
    while (i < len && s[i] == '=')
        i++;
    return i == len;
}

static void hash_token(unsigned char *out, const char *tok, size_t len)
{
    crypto_generichash(out, HASH_LEN, (const unsigned char *)tok, len, NULL, 0);
}

/* Read path whole (NUL-terminated, malloc'd into *out, *len bytes) if only
 * its owner may read or write it. 0, or -1 after logging why. */
static int read_private(const char *path, const char *opt, char **out, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_error("%s %s: %s", opt, path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_error("%s %s: not a regular file", opt, path);
        close(fd);
        return -1;
    }
    /* checked on the descriptor read below, so no other file can be put
     * in its place meanwhile */
    if (st.st_mode & 077) {
        log_error("%s %s: the file is readable or writable by group or others (mode %04o); its "
                  "tokens give access to the cluster: chmod 600 %s",
                  opt, path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return -1;
    }
    if (st.st_size > MAX_FILE) {
        log_error("%s %s: larger than %u KiB: not a token file", opt, path, MAX_FILE >> 10);
        close(fd);
        return -1;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t len = 0;
    ssize_t n = 1;
    while (buf && len < (size_t)st.st_size &&
           (n = read(fd, buf + len, (size_t)st.st_size - len)) > 0)
        len += (size_t)n;
    int err = errno;
    close(fd);
    if (!buf || n < 0) {
        log_error("%s %s: %s", opt, path, buf ? strerror(err) : "out of memory");
        free(buf);
        return -1;
    }
    if (memchr(buf, 0, len)) {
        log_error("%s %s: holds a NUL byte: not a token file", opt, path);
        free(buf);
        return -1;
    }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return 0;
}

static int add(struct http_auth *a, const char *tok, size_t len, enum http_role role)
{
    struct http_auth_token *t = realloc(a->t, (a->n + 1) * sizeof(*t));
    if (!t)
        return -1;
    a->t = t;
    hash_token(t[a->n].hash, tok, len);
    t[a->n].role = role;
    a->n++;
    return 0;
}

/* Check one token of the file; 0, or -1 after logging why. */
static int valid(const char *path, const char *opt, unsigned line, const char *tok, size_t len)
{
    if (!is_b64token(tok, len)) {
        log_error("%s %s:%u: a token is letters, digits and -._~+/ (then '='s), nothing else", opt,
                  path, line);
        return -1;
    }
    if (len < HTTP_AUTH_MIN_TOKEN) {
        log_error("%s %s:%u: token too short (%zu characters; at least %d: make one with 'od -An "
                  "-tx1 -N32 /dev/urandom | tr -d \" \\n\"')",
                  opt, path, line, len, HTTP_AUTH_MIN_TOKEN);
        return -1;
    }
    return 0;
}

static int parse_single(struct http_auth *a, const char *path, const char *opt, const char *buf)
{
    const char *ws = " \t\r\n";
    const char *p = buf + strspn(buf, ws);
    size_t len = strcspn(p, ws);
    if (!len) {
        log_error("%s %s: no token in the file", opt, path);
        return -1;
    }
    if (p[len + strspn(p + len, ws)]) {
        log_error("%s %s: the file must hold one token and nothing else (Prometheus sends all of "
                  "it)",
                  opt, path);
        return -1;
    }
    if (valid(path, opt, 1, p, len) < 0)
        return -1;
    return add(a, p, len, HTTP_ROLE_ADMIN);
}

static int parse_roles(struct http_auth *a, const char *path, const char *opt, char *buf)
{
    const char *ws = " \t\r";
    unsigned line = 0;
    for (char *s = buf, *next; s; s = next) {
        line++;
        next = strchr(s, '\n');
        if (next)
            *next++ = 0;
        s += strspn(s, ws);
        if (!*s || *s == '#')
            continue;
        size_t rl = strcspn(s, ws);
        enum http_role role = HTTP_ROLE_NONE;
        if (rl == 5 && !strncmp(s, "admin", 5))
            role = HTTP_ROLE_ADMIN;
        else if (rl == 7 && !strncmp(s, "monitor", 7))
            role = HTTP_ROLE_MONITOR;
        char *tok = s + rl + strspn(s + rl, ws);
        size_t tl = strcspn(tok, ws);
        if (!role || !tl || tok[tl + strspn(tok + tl, ws)]) {
            log_error("%s %s:%u: expected 'admin TOKEN' or 'monitor TOKEN'", opt, path, line);
            return -1;
        }
        if (valid(path, opt, line, tok, tl) < 0 || add(a, tok, tl, role) < 0)
            return -1;
    }
    if (!a->n) {
        log_error("%s %s: no token in the file (lines 'admin TOKEN' or 'monitor TOKEN')", opt,
                  path);
        return -1;
    }
    return 0;
}

struct http_auth *http_auth_load(const char *path, int roles, const char *opt)
{
    if (sodium_init() < 0) {
        log_error("%s: libsodium failed to initialise", opt);
        return NULL;
    }
    char *buf;
    size_t len;
    if (read_private(path, opt, &buf, &len) < 0)
        return NULL;
    struct http_auth *a = calloc(1, sizeof(*a));
    int r = -1;
    if (a)
        r = roles ? parse_roles(a, path, opt, buf) : parse_single(a, path, opt, buf);
    sodium_memzero(buf, len); /* the tokens live on only as hashes */
    free(buf);
    if (r < 0) {
        if (!a)
            log_error("%s %s: out of memory", opt, path);
        http_auth_free(a);
        return NULL;
    }
    return a;
}

void http_auth_free(struct http_auth *a)
{
    if (!a)
        return;
    free(a->t);
    free(a);
}

enum http_role http_auth_check(const struct http_auth *a, struct http_request *r, const char **why)
{
    const char *h = http_header(r, "Authorization");
    *why = no_token;
    if (!h)
        return HTTP_ROLE_NONE;
    h += strspn(h, " \t");
    if (strncasecmp(h, "bearer", 6) || (h[6] != ' ' && h[6] != '\t'))
        return HTTP_ROLE_NONE;
    h += 6 + strspn(h + 6, " \t");
    size_t len = strcspn(h, " \t");
    *why = bad_token;
    if (!len || len > MAX_TOKEN || h[len + strspn(h + len, " \t")])
        return HTTP_ROLE_NONE;
    unsigned char hash[HASH_LEN];
    hash_token(hash, h, len);
    /* every token is compared, so the time does not say which one matched */
    enum http_role role = HTTP_ROLE_NONE;
    for (size_t i = 0; i < a->n; i++) {
        int eq = sodium_memcmp(hash, a->t[i].hash, HASH_LEN) == 0;
        role |= (enum http_role)(-eq & (int)a->t[i].role);
    }
    if (role & HTTP_ROLE_ADMIN)
        role = HTTP_ROLE_ADMIN; /* a token listed under both roles */
    if (role)
        *why = NULL;
    return role;
}

/* s as it may go into the log: the peer chose it (a decoded path may hold
 * a newline), so at most n-1 bytes, each printable. */
static const char *printable(char *dst, size_t n, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        dst[i] = s[i] > ' ' && s[i] < 0x7f ? s[i] : '?';
    dst[i] = 0;
    return dst;
}

void http_auth_refuse(struct http_request *r, unsigned status, const char *why)
{
    char method[16], path[96];
    LOG_LIMITED(LOG_WARN, REFUSED_LOG_MS, "http: refused %s %s from %s with %u: %s",
                printable(method, sizeof(method), http_method(r)),
                printable(path, sizeof(path), http_path(r)), http_peer(r), status, why);
    if (status == 401)
        http_add_header(r, "WWW-Authenticate",
                        why == bad_token ? "Bearer realm=\"cairn\", error=\"invalid_token\""
                                         : "Bearer realm=\"cairn\"");
}
