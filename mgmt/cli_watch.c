/* cairn's live views: status --watch, top, and rebuild|rebalance wait.
 *
 * Each is a poll loop: ask the MDM for its status (cli_mdm_call_quiet runs
 * the request on the default loop and returns), show it, nanosleep, again.
 * The CLI is a short-lived process, so there is no event loop of its own.
 *
 * On a terminal a view is redrawn in place: the cursor goes home, each line
 * is cut to the terminal's width and ends with "erase to end of line", the
 * rest of the screen is erased; the first frame clears the screen, and the
 * cursor is hidden until the end. A wait redraws one line with "\r". Off a
 * terminal nothing but plain text is written, flushed a block at a time.
 *
 * Signals. SIGINT and SIGTERM set a flag that the sleep sees; the loop then
 * restores the terminal and returns. A request under way may take up to its
 * timeout, so a signal that arrives during one restores the terminal from
 * the handler (write(2) only) and _exit()s at once.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmap.h"
#include "util.h"

#define ESC_HOME "\033[H"
#define ESC_CLEAR "\033[2J"
#define ESC_EOL "\033[K" /* erase to the end of the line */
#define ESC_EOS "\033[J" /* erase to the end of the screen */
#define ESC_HIDE "\033[?25l"
#define ESC_SHOW "\033[?25h"

/* ---- signals and the terminal ---- */

static volatile sig_atomic_t stop_sig;      /* the signal that ends the view, or 0 */
static volatile sig_atomic_t in_call;       /* a request to the MDM is under way */
static volatile sig_atomic_t cursor_hidden; /* we hid it: show it again at the end */
static volatile sig_atomic_t line_open;     /* a progress line without its newline */
static volatile sig_atomic_t stop_code;     /* the exit code after a signal */

static void say(const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Async-signal-safe: write(2) only, and only after stdout is flushed. */
static void terminal_restore(void)
{
    if (line_open)
        say("\n");
    if (cursor_hidden)
        say(ESC_SHOW);
    line_open = cursor_hidden = 0;
}

static void on_signal(int sig)
{
    stop_sig = sig;
    if (in_call) {
        terminal_restore();
        _exit(stop_code);
    }
}

static void signals_catch(int code)
{
    stop_code = code;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Leave a view: flush what stdio holds, then restore the terminal. */
static int view_end(int rc)
{
    fflush(stdout);
    terminal_restore();
    return rc;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleep secs, or less if a signal asks us to stop: then -EINTR. */
static int nap(double secs)
{
    if (stop_sig)
        return -EINTR;
    if (secs <= 0)
        return 0;
    struct timespec ts = {.tv_sec = (time_t)secs, .tv_nsec = (long)((secs - floor(secs)) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        if (stop_sig)
            return -EINTR;
    return stop_sig ? -EINTR : 0;
}

static void term_size(int *cols, int *rows)
{
    struct winsize ws;
    *cols = 80;
    *rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}

/* The wall clock, for the timestamp of a frame. */
static const char *stamp(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "%lld", (long long)t);
    return buf;
}

/* The status, or -errno with the reason in err. Marks the request as under
 * way for the signal handler; -EINTR without asking if a signal came. */
static int status_get(const char *mdm, Cairn__MgmtReply **rep, char *err, size_t errlen)
{
    Cairn__MgmtRequest req = CAIRN__MGMT_REQUEST__INIT;
    req.op = CAIRN__MGMT_OP__OP_STATUS;
    *rep = NULL;
    in_call = 1;
    if (stop_sig) {
        in_call = 0;
        snprintf(err, errlen, "interrupted");
        return -EINTR;
    }
    int r = cli_mdm_call_quiet(mdm, &req, rep, err, errlen);
    in_call = 0;
    if (r == 0 && !(*rep)->map) {
        cairn__mgmt_reply__free_unpacked(*rep, NULL);
        *rep = NULL;
        snprintf(err, errlen, "the MDM at %s sent a status without a map", mdm);
        return -EPROTO;
    }
    return r;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* ---- frames: a full-screen view ---- */

struct frame {
    char *text; /* what the view shows, '\n' after each line */
    size_t len;
    FILE *f; /* open_memstream() on text while it is written */
};

static int frame_open(struct frame *fr)
{
    fr->text = NULL;
    fr->len = 0;
    fr->f = open_memstream(&fr->text, &fr->len);
    return fr->f ? 0 : -ENOMEM;
}

static void frame_free(struct frame *fr)
{
    if (fr->f)
        fclose(fr->f);
    fr->f = NULL;
    free(fr->text);
    fr->text = NULL;
}

/* Run print with stdout going into fr (the printers write to stdout): fd 1
 * is pointed at a temporary file for the call. 0, or -errno. */
static int frame_capture(struct frame *fr, FILE *tmp, void (*print)(const Cairn__MgmtReply *, int),
                         const Cairn__MgmtReply *rep)
{
    int fd = fileno(tmp);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
        dup2(fd, STDOUT_FILENO) < 0) {
        int e = errno;
        if (saved >= 0)
            close(saved);
        return -e;
    }
    print(rep, 0);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    off_t end = lseek(fd, 0, SEEK_CUR);
    char buf[8192];
    for (off_t at = 0; at < end;) {
        ssize_t n = pread(fd, buf, sizeof(buf), at);
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        fwrite(buf, 1, (size_t)n, fr->f);
        at += n;
    }
    return 0;
}

/* Show fr's text. On a terminal: in place, each line cut to the width and
 * the frame to the height (the first frame clears the screen); else as it
 * is. Then flush. */
static void frame_show(struct frame *fr, int tty, int first)
{
    fflush(fr->f);
    if (!tty) {
        fwrite(fr->text, 1, fr->len, stdout);
        fflush(stdout);
        return;
    }
    int cols, rows;
    term_size(&cols, &rows);
    char *out = NULL;
    size_t outlen = 0;
    FILE *o = open_memstream(&out, &outlen);
    if (!o)
        return;
    if (first) {
        fputs(ESC_HIDE ESC_HOME ESC_CLEAR, o);
        cursor_hidden = 1;
    } else {
        fputs(ESC_HOME, o);
    }
    /* a line in the last column would wrap (or leave a wrap pending), and
     * a newline on the last row would scroll: stay inside both */
    int n = 0;
    for (const char *s = fr->text, *end = fr->text + fr->len; s < end && n < rows - 1; n++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
        fwrite(s, 1, len < (size_t)cols - 1 ? len : (size_t)cols - 1, o);
        fputs(ESC_EOL "\n", o);
        s += len + 1;
    }
    fputs(ESC_EOS, o);
    fclose(o);
    fwrite(out, 1, outlen, stdout);
    free(out);
    fflush(stdout);
}

/* The first line of a frame on a terminal: what, how often; the time at
 * the right edge. */
static void frame_header(struct frame *fr, const char *what, double interval)
{
    int cols, rows;
    term_size(&cols, &rows);
    char ts[64];
    int n = fprintf(fr->f, "Every %gs: %s", interval, what);
    int pad = cols - 1 - n - (int)strlen(stamp(ts, sizeof(ts)));
    fprintf(fr->f, "%*s%s\n\n", pad > 1 ? pad : 1, "", ts);
}

/* ---- status --watch ---- */

int cli_watch_status(const char *mdm, int json, double interval)
{
    int tty = !json && isatty(STDOUT_FILENO);
    FILE *tmp = tty ? tmpfile() : NULL;
    if (tty && !tmp)
        return cli_fail("cannot make a temporary file for the view: %s", strerror(errno));
    signals_catch(0);
    for (int first = 1;; first = 0) {
        Cairn__MgmtReply *rep;
        char err[512], ts[64];
        int r = status_get(mdm, &rep, err, sizeof(err));
        if (r == -EINTR && stop_sig)
            break;
        if (json) {
            if (r < 0) {
                printf("{\"error\":");
                json_str(stdout, err);
                printf("}\n");
            } else {
                cli_print_status(rep, 1);
            }
            fflush(stdout);
        } else if (!tty) {
            printf("%s--- %s ---\n", first ? "" : "\n", stamp(ts, sizeof(ts)));
            if (r < 0)
                printf("cairn: %s (asking again in %g s)\n", err, interval);
            else
                cli_print_status(rep, 0);
            fflush(stdout);
        } else {
            struct frame fr;
            if (frame_open(&fr) < 0) {
                if (rep)
                    cairn__mgmt_reply__free_unpacked(rep, NULL);
                fclose(tmp);
                return view_end(cli_fail("out of memory"));
            }
            frame_header(&fr, "cairn status", interval);
            if (r < 0)
                fprintf(fr.f, "cairn: %s\n(asking again every %g s)\n", err, interval);
            else if ((r = frame_capture(&fr, tmp, cli_print_status, rep)) < 0)
                fprintf(fr.f, "cairn: cannot capture the status: %s\n", strerror(-r));
            frame_show(&fr, tty, first);
            frame_free(&fr);
        }
        if (rep)
            cairn__mgmt_reply__free_unpacked(rep, NULL);
        if (nap(interval) < 0)
            break;
    }
    if (tmp)
        fclose(tmp);
    return view_end(0);
}

/* ---- top ---- */

struct top_row {
    const Cairn__Volume *v;
    double r_iops, w_iops, r_bw, w_bw, r_lat, w_lat;
};

/* Busiest first: total IOPS, then bandwidth, then by name. */
static int top_cmp(const void *a, const void *b)
{
    const struct top_row *x = a, *y = b;
    double dx = x->r_iops + x->w_iops, dy = y->r_iops + y->w_iops;
    if (dx != dy)
        return dx < dy ? 1 : -1;
    dx = x->r_bw + x->w_bw;
    dy = y->r_bw + y->w_bw;
    if (dx != dy)
        return dx < dy ? 1 : -1;
    return strcmp(x->v->name, y->v->name);
}

/* The map's volumes with their rates, sorted; *n of them. The caller frees
 * the array (NULL when there is no volume, or no memory: then *n is 0). */
static struct top_row *top_rows(const Cairn__MgmtReply *rep, size_t *n)
{
    const Cairn__ClusterMap *m = rep->map;
    *n = 0;
    struct top_row *rows = m->n_volumes ? calloc(m->n_volumes, sizeof(*rows)) : NULL;
    if (!rows)
        return NULL;
    for (size_t i = 0; i < m->n_volumes; i++) {
        const Cairn__VolumeIoRate *r = cli_volume_io(rep, m->volumes[i]->id);
        struct top_row *t = &rows[i];
        t->v = m->volumes[i];
        if (r) {
            t->r_iops = cli_io_value(r->read_iops);
            t->w_iops = cli_io_value(r->write_iops);
            t->r_bw = cli_io_value(r->read_bytes_per_sec);
            t->w_bw = cli_io_value(r->write_bytes_per_sec);
            t->r_lat = cli_io_value(r->read_latency_us);
            t->w_lat = cli_io_value(r->write_latency_us);
        }
    }
    qsort(rows, m->n_volumes, sizeof(*rows), top_cmp);
    *n = m->n_volumes;
    return rows;
}

static const char *fmt_rate(char *buf, size_t len, double bytes_per_sec)
{
    char b[32];
    snprintf(buf, len, "%s/s", fmt_bytes(b, sizeof(b), (uint64_t)bytes_per_sec));
    return buf;
}

/* A mean latency; "-" where there was no request to time. */
static const char *fmt_latency(char *buf, size_t len, double iops, double us)
{
    if (iops <= 0)
        snprintf(buf, len, "-");
    else if (us < 1000)
        snprintf(buf, len, "%.0f us", us);
    else if (us < 1e6)
        snprintf(buf, len, "%.2f ms", us / 1000);
    else
        snprintf(buf, len, "%.2f s", us / 1e6);
    return buf;
}

static void top_json(const Cairn__MgmtReply *rep, const struct top_row *rows, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        const struct top_row *t = &rows[i];
        const Cairn__Pool *p = cmap_pool(rep->map, t->v->pool_id);
        printf("%s{\"id\":%llu,\"name\":", i ? "," : "", (unsigned long long)t->v->id);
        json_str(stdout, t->v->name);
        printf(",\"pool\":");
        json_str(stdout, p ? p->name : "?");
        printf(",\"read_iops\":%.1f,\"write_iops\":%.1f,\"read_bytes_per_sec\":%.0f,"
               "\"write_bytes_per_sec\":%.0f,\"read_latency_us\":%.1f,\"write_latency_us\":%.1f}",
               t->r_iops, t->w_iops, t->r_bw, t->w_bw, t->r_lat, t->w_lat);
    }
    printf("]\n");
}

/* The summary line and the table, into f. */
static void top_table(FILE *f, const Cairn__MgmtReply *rep, const struct top_row *rows, size_t n)
{
    double ri = 0, wi = 0, rb = 0, wb = 0;
    for (size_t i = 0; i < n; i++) {
        ri += rows[i].r_iops;
        wi += rows[i].w_iops;
        rb += rows[i].r_bw;
        wb += rows[i].w_bw;
    }
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
    fprintf(f, "%zu volume%s: %.0f IOPS read, %.0f IOPS write; %s read, %s written\n", n,
            n == 1 ? "" : "s", ri, wi, fmt_rate(b1, sizeof(b1), rb), fmt_rate(b2, sizeof(b2), wb));
    if (!rep->n_volume_io)
        fprintf(f, "(no volume has had I/O lately, or the MDM does not report it)\n");
    fprintf(f, "\n%-20s %-10s %9s %9s %12s %12s %9s %9s\n", "VOLUME", "POOL", "R-IOPS", "W-IOPS",
            "READ", "WRITE", "R-LAT", "W-LAT");
    for (size_t i = 0; i < n; i++) {
        const struct top_row *t = &rows[i];
        const Cairn__Pool *p = cmap_pool(rep->map, t->v->pool_id);
        fprintf(f, "%-20s %-10s %9.1f %9.1f %12s %12s %9s %9s\n", t->v->name, p ? p->name : "?",
                t->r_iops, t->w_iops, fmt_rate(b3, sizeof(b3), t->r_bw),
                fmt_rate(b4, sizeof(b4), t->w_bw), fmt_latency(b5, sizeof(b5), t->r_iops, t->r_lat),
                fmt_latency(b6, sizeof(b6), t->w_iops, t->w_lat));
    }
}

int cli_watch_top(const char *mdm, int json, double interval, long count)
{
    int tty = !json && isatty(STDOUT_FILENO);
    signals_catch(0);
    for (long shown = 0; !count || shown < count; shown++) {
        if (shown && nap(interval) < 0)
            break;
        Cairn__MgmtReply *rep;
        char err[512], ts[64];
        int r = status_get(mdm, &rep, err, sizeof(err));
        if (r == -EINTR && stop_sig)
            break;
        size_t n = 0;
        struct top_row *rows = r == 0 ? top_rows(rep, &n) : NULL;
        if (json) {
            if (r < 0) {
                printf("{\"error\":");
                json_str(stdout, err);
                printf("}\n");
            } else {
                top_json(rep, rows, n);
            }
            fflush(stdout);
        } else {
            struct frame fr;
            if (frame_open(&fr) < 0) {
                free(rows);
                if (rep)
                    cairn__mgmt_reply__free_unpacked(rep, NULL);
                return view_end(cli_fail("out of memory"));
            }
            if (tty)
                frame_header(&fr, "cairn top", interval);
            else
                fprintf(fr.f, "%s--- %s ---\n", shown ? "\n" : "", stamp(ts, sizeof(ts)));
            if (r < 0)
                fprintf(fr.f, "cairn: %s (asking again in %g s)\n", err, interval);
            else
                top_table(fr.f, rep, rows, n);
            frame_show(&fr, tty, shown == 0);
            frame_free(&fr);
        }
        free(rows);
        if (rep)
            cairn__mgmt_reply__free_unpacked(rep, NULL);
    }
    return view_end(0);
}

/* ---- rebuild|rebalance wait ---- */

#define WAIT_POLL_S 1.0        /* between status requests while the work runs */
#define WAIT_POLL_FAST_S 0.25  /* while the view is not current (PENDING) */
#define WAIT_PLAIN_EVERY_S 3.0 /* between plain lines that say nothing new */
#define WAIT_STUCK_S 5.0       /* STUCK this long on end: give up */

int cli_watch_wait(const char *mdm, int json, enum cli_work work, double timeout)
{
    const char *name = cli_progress_work_name(work);
    int tty = !json && isatty(STDOUT_FILENO);
    signals_catch(130);
    struct cli_progress prog = {0};
    struct cli_work_view v;
    char line[512], last_why[256] = "", err[512];
    double start = mono(), printed = -1e9, stuck_since = -1;
    int asked = 0;
    for (;;) {
        double t = mono();
        Cairn__MgmtReply *rep;
        int r = status_get(mdm, &rep, err, sizeof(err));
        if (r == -EINTR && stop_sig)
            return view_end(130);
        if (r < 0 && !asked)
            return view_end(cli_fail("%s", err)); /* a wrong address, most likely */
        asked = 1;
        if (r < 0) {
            /* an MDM that went away (a failover): keep asking */
            memset(&v, 0, sizeof(v));
            v.work = work;
            v.state = CLI_WORK_PENDING;
            snprintf(v.why, sizeof(v.why), "waiting for the MDM: %.200s", err);
        } else {
            cli_progress_assess(rep, work, (uint64_t)((t - start) * 1000), &v);
            cairn__mgmt_reply__free_unpacked(rep, NULL);
        }
        uint64_t copied = cli_progress_update(&prog, &v);
        double now = mono(), elapsed = now - start;
        if (v.state == CLI_WORK_STUCK) {
            if (stuck_since < 0)
                stuck_since = now;
        } else {
            stuck_since = -1;
        }
        int stuck = stuck_since >= 0 && now - stuck_since >= WAIT_STUCK_S;
        int late = timeout > 0 && elapsed >= timeout;
        int last = v.state == CLI_WORK_DONE || stuck || late;

        if (json) {
            printf("%s\n", cli_progress_json(line, sizeof(line), &v, copied, elapsed));
        } else if (tty) {
            int cols, rows;
            term_size(&cols, &rows);
            if (v.state != CLI_WORK_DONE) {
                printf("\r%s" ESC_EOL, cli_progress_bar(line, sizeof(line), cols, &v, copied));
                line_open = 1;
            }
        } else if (v.state != CLI_WORK_DONE &&
                   (now - printed >= WAIT_PLAIN_EVERY_S || strcmp(v.why, last_why) || last)) {
            printf("%s\n", cli_progress_line(line, sizeof(line), &v));
            printed = now;
            snprintf(last_why, sizeof(last_why), "%s", v.why);
        }
        fflush(stdout);

        if (v.state == CLI_WORK_DONE) {
            char b1[32], b2[32];
            if (tty)
                printf("\r" ESC_EOL);
            line_open = 0;
            if (!json) {
                if (copied)
                    printf("%s: done; %s copied in %s\n", name, fmt_bytes(b1, sizeof(b1), copied),
                           cli_fmt_duration(b2, sizeof(b2), (uint64_t)(elapsed + 0.5)));
                else
                    printf("%s: done; nothing is left to copy\n", name);
            }
            return view_end(0);
        }
        if (stuck || late) {
            fflush(stdout);
            terminal_restore();
            if (stuck)
                return cli_fail("%s", v.why);
            /* "rebuild not done after 1 s: 12 PG copies, ...; <why>" */
            char b[32];
            cli_progress_line(line, sizeof(line), &v);
            return cli_fail("%s not done after %s: %s", name,
                            cli_fmt_duration(b, sizeof(b), (uint64_t)ceil(timeout)),
                            line + strlen(name) + 2);
        }
        double pause = v.state == CLI_WORK_PENDING ? WAIT_POLL_FAST_S : WAIT_POLL_S;
        if (timeout > 0 && start + timeout - mono() < pause)
            pause = start + timeout - mono();
        if (nap(pause) < 0)
            return view_end(130);
    }
}

/* ---- the handlers of the live views' commands ---- */

/* The seconds an option gives (def when it is not given), at least min:
 * 0, or -EINVAL after saying why. */
static int seconds_arg(const struct cli_args *a, const char *name, double def, double min,
                       double *v)
{
    const char *s = cli_args_get(a, name);
    *v = def;
    if (!s)
        return 0;
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end || !isfinite(d) || d < min || d <= 0 || d > 1e7) {
        cli_fail("invalid %s '%s' (want seconds, at least %g)", name, s, min);
        return -EINVAL;
    }
    *v = d;
    return 0;
}

int cli_run_status(const struct cli_command *c, const struct cli_args *a, const struct cli_env *env)
{
    if (!cli_args_count(a, "--watch")) {
        if (cli_args_get(a, "--interval"))
            return cli_fail("--interval goes with --watch");
        return cli_run_report(c, a, env);
    }
    double interval;
    if (seconds_arg(a, "--interval", 2, 0.1, &interval) < 0)
        return 1;
    return cli_watch_status(env->mdm, env->json, interval);
}

int cli_run_top(const struct cli_command *c, const struct cli_args *a, const struct cli_env *env)
{
    (void)c;
    double interval;
    if (seconds_arg(a, "--interval", 2, 0.1, &interval) < 0)
        return 1;
    long count = 0;
    const char *s = cli_args_get(a, "--count");
    if (s) {
        char *end;
        errno = 0;
        count = strtol(s, &end, 10);
        if (end == s || *end || errno || count <= 0)
            return cli_fail("invalid --count '%s' (want a number of refreshes, at least 1)", s);
    }
    return cli_watch_top(env->mdm, env->json, interval, count);
}

int cli_run_wait(const struct cli_command *c, const struct cli_args *a, const struct cli_env *env)
{
    double timeout;
    if (seconds_arg(a, "--timeout", 0, 0, &timeout) < 0)
        return 1;
    return cli_watch_wait(env->mdm, env->json, (enum cli_work)c->op, timeout);
}
