/* Prometheus metrics: histograms cheap enough for the I/O path, and a writer
 * of the text exposition format (version 0.0.4) for the scrape.
 *
 * There is no registry. A daemon keeps its counters as plain uint64_t
 * fields in the structs that own what they count, and its histograms as
 * struct metrics_hist beside them; all are updated on the loop that owns
 * them, without atomics or locks. The HTTP server runs on the same loop
 * (http.h), so the scrape callback reads them directly and writes every
 * family with the functions below. A counter costs one increment; a
 * histogram observation costs one count-leading-zeros and three increments.
 *
 * Names follow Prometheus's conventions: cairn_<daemon>_<what>_<unit>, with
 * _total on counters, base units (seconds, bytes), and labels for what
 * varies (volume, device, pool, state).
 */
#ifndef CAIRN_METRICS_H
#define CAIRN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Latency buckets: bucket i counts observations <= 2^i microseconds, for
 * i in 0..METRICS_HIST_BUCKETS-1 (1 us .. ~8.4 s); beyond that only +Inf. */
#define METRICS_HIST_BUCKETS 24

struct metrics_hist {
    uint64_t bucket[METRICS_HIST_BUCKETS + 1]; /* non-cumulative; the last is +Inf */
    uint64_t count;
    uint64_t sum_ns;
};

/* Record one observation of ns nanoseconds. */
static inline void metrics_hist_observe(struct metrics_hist *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    unsigned i = us <= 1 ? 0 : 64 - (unsigned)__builtin_clzll(us - 1); /* ceil(log2(us)) */
    if (i > METRICS_HIST_BUCKETS)
        i = METRICS_HIST_BUCKETS;
    h->bucket[i]++;
    h->count++;
    h->sum_ns += ns;
}

/* The exposition text being written; grows as needed. Start from
 * METRICS_OUT_INIT; metrics_out_take() hands the text over (malloc'd, the
 * caller frees it), metrics_out_free() drops it. */
struct metrics_out {
    char *buf;
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
};
#define METRICS_OUT_INIT                                                                           \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/* "# HELP" and "# TYPE" lines of a family; type is "counter", "gauge" or
 * "histogram". Write it once, then its samples. */
void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. labels is "" or a list made by
 * metrics_labels() (without braces). */
void metrics_u64(struct metrics_out *o, const char *name, const char *labels, uint64_t v);
void metrics_f64(struct metrics_out *o, const char *name, const char *labels, double v);
/* A histogram's samples in seconds: name_bucket{labels,le=...} for each
 * bucket (cumulative) and +Inf, name_sum, name_count. */
void metrics_hist(struct metrics_out *o, const char *name, const char *labels,
                  const struct metrics_hist *h);

/* Build a label list into dst (size n): pairs of key and value, ended by
 * NULL, e.g. metrics_labels(l, sizeof(l), "volume", name, "sdc", sdc, NULL)
 * gives `volume="v1",sdc="h1"`. Values are escaped (\\, \", \n). Returns
 * dst (truncated if it did not fit, always NUL-terminated). */
char *metrics_labels(char *dst, size_t n, ...) __attribute__((sentinel));

char *metrics_out_take(struct metrics_out *o, size_t *len);
void metrics_out_free(struct metrics_out *o);

/* Serve GET /metrics on addr ("host:port") from the loop: each scrape calls
 * render(o, data) to write every family. Every request must carry the
 * token of token_file (--metrics-token-file, one token: http_auth.h) as
 * "Authorization: Bearer TOKEN", or gets 401 whatever its path; then other
 * paths get 404, other methods 405. token_file is required (NULL: refused,
 * with a message naming the option) and read here, once. NULL after
 * logging why. */
typedef void (*metrics_render_cb)(struct metrics_out *o, void *data);
struct metrics_server;
struct metrics_server *metrics_serve(uv_loop_t *loop, const char *addr, const char *token_file,
                                     metrics_render_cb render, void *data);
void metrics_server_stop(struct metrics_server *s);

#endif
