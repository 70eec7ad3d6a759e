#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int log_threshold = LOG_INFO;
static const char *log_prog = "cairn";

void log_init(const char *prog, int level)
{
    log_prog = prog;
    log_threshold = level;
}

static void log_line(int level, const char *suffix, const char *fmt, va_list ap)
{
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)tv.tv_usec / 1000, log_prog, names[level]);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    fprintf(stderr, "%s%s\n", line, suffix);
}

void log_msg(int level, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, "", fmt, ap);
    va_end(ap);
}

void log_msg_limited(struct log_limit *l, unsigned interval_ms, int level, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (now < l->next_ms) {
        l->held++;
        return;
    }
    char suffix[96] = "";
    if (l->held)
        snprintf(suffix, sizeof(suffix), " (and %u more like it in the last %u ms)", l->held,
                 interval_ms);
    l->held = 0;
    l->next_ms = now + interval_ms;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, suffix, fmt, ap);
    va_end(ap);
}
