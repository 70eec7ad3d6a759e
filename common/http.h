/* An HTTP server on a daemon's own libuv loop, over libmicrohttpd.
 *
 * libmicrohttpd runs in its "external polling" mode with epoll: its one
 * epoll descriptor is watched by a uv_poll_t and its timeouts by a
 * uv_timer_t, so every handler runs on the daemon's loop and may read the
 * daemon's state without locks (DESIGN: observability reads what the loop
 * owns, on that loop). No thread is started.
 *
 * A handler gets each complete request (headers and body) once. It answers
 * with http_respond(), at once or later from another callback on the same
 * loop (a reply from the MDM, say): until then the connection is suspended
 * and costs nothing. The request stays valid until http_respond() returns,
 * even if the client went away meanwhile, so an owner never has to track
 * aborts; it must answer every request exactly once.
 */
#ifndef CAIRN_HTTP_H
#define CAIRN_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Bodies larger than this are refused with 413 before the handler runs. */
#define HTTP_MAX_BODY (1u << 20)

struct http_server;
struct http_request;

typedef void (*http_handler_cb)(struct http_request *r, void *data);

/* Listen on addr ("host:port"; port 0 picks one, see http_port()) and hand
 * every request to cb with data. NULL after logging why (address taken,
 * bad address). */
struct http_server *http_start(uv_loop_t *loop, const char *addr, http_handler_cb cb, void *data);
/* The TCP port listened on. */
int http_port(const struct http_server *s);
/* Stop listening and free s. Requests not yet answered are answered 503
 * first; their owners must not touch them afterwards, so stop the owners
 * (or make them forget their requests) before this. Its handles close on
 * the loop's next turn. */
void http_stop(struct http_server *s);

/* The request: method ("GET", ...), path without the query string, the
 * value of one query argument or header (NULL if absent), the body (len 0
 * and a non-NULL pointer if none) and the client's address. Valid until
 * http_respond(). */
const char *http_method(const struct http_request *r);
const char *http_path(const struct http_request *r);
const char *http_query(const struct http_request *r, const char *key);
const char *http_header(const struct http_request *r, const char *name);
const uint8_t *http_body(const struct http_request *r, size_t *len);
const char *http_peer(const struct http_request *r);

/* Add a response header (before http_respond()). Both strings are copied. */
void http_add_header(struct http_request *r, const char *name, const char *value);
/* Answer r with status, content type and body (copied; body may be NULL if
 * len is 0). r is gone when this returns. */
void http_respond(struct http_request *r, unsigned status, const char *content_type,
                  const void *body, size_t len);
/* As http_respond(), taking ownership of body (malloc'd): no copy. */
void http_respond_take(struct http_request *r, unsigned status, const char *content_type,
                       char *body, size_t len);

#endif
