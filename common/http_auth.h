/* Bearer tokens for a daemon's HTTP ports (the REST API and dashboard,
 * /metrics): loaded from a token file at start, checked on every request
 * (RFC 6750: "Authorization: Bearer TOKEN").
 *
 * A token file must be private to its owner: one readable or writable by
 * group or others (mode & 077) is refused, as are empty files, tokens that
 * are not RFC 6750 token characters and tokens shorter than
 * HTTP_AUTH_MIN_TOKEN. Two formats:
 *
 *   roles:  lines "admin TOKEN" or "monitor TOKEN" (any number of each),
 *           blank lines and '#' comments; for --http-tokens;
 *   single: the whole file is one token, surrounded by whitespace at most,
 *           which is what Prometheus's credentials_file sends; for
 *           --metrics-token-file.
 *
 * Tokens are kept only as BLAKE2b hashes, and a request's token is hashed
 * and compared with every one of them by sodium_memcmp(): the time taken
 * depends on the length of the token presented, never on how much of it
 * matches nor on the length of the real ones.
 */
#ifndef CAIRN_HTTP_AUTH_H
#define CAIRN_HTTP_AUTH_H

#include "http.h"

#define HTTP_AUTH_MIN_TOKEN 16

/* What a token may do. A single-token file grants HTTP_ROLE_ADMIN. */
enum http_role {
    HTTP_ROLE_NONE = 0,    /* no token, or not one of ours */
    HTTP_ROLE_MONITOR = 1, /* read only: GET and HEAD */
    HTTP_ROLE_ADMIN = 2,   /* everything */
};

struct http_auth;

/* Load the token file at path, with roles (1) or a single token (0). opt
 * names the option for messages ("--http-tokens"). NULL after logging why
 * (cannot read, mode & 077, malformed, no token). Free with
 * http_auth_free(). */
struct http_auth *http_auth_load(const char *path, int roles, const char *opt);
void http_auth_free(struct http_auth *a);

/* The role r's Authorization header grants. HTTP_ROLE_NONE with *why set
 * to a static reason ("no bearer token", "wrong token") when it grants
 * nothing; answer it with http_auth_refuse(). */
enum http_role http_auth_check(const struct http_auth *a, struct http_request *r, const char **why);

/* Before answering a refused request with status (401 or 403): log it,
 * with the peer and why, at most once every few seconds (the count held
 * back is logged with the next), and for a 401 add the WWW-Authenticate
 * challenge. The caller then answers r in its own format. */
void http_auth_refuse(struct http_request *r, unsigned status, const char *why);

#endif
