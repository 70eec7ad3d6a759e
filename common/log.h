/* One logger for every daemon: levels, printf checking, one branch when off. */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_threshold;

/* Set the program name printed on every line (pointer kept, not copied). */
void log_init(const char *prog, int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (__builtin_expect(log_threshold >= LOG_DEBUG, 0))                                       \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

/* Rate limiting for messages that a fault or an overload can repeat many
 * times a second: a call site logs at most once per interval; the next line
 * it logs says how many it held back meanwhile. The state is per call site
 * (a static in the macro). */
struct log_limit {
    uint64_t next_ms;
    unsigned held;
};
void log_msg_limited(struct log_limit *l, unsigned interval_ms, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define LOG_LIMITED(level, interval_ms, ...)                                                       \
    do {                                                                                           \
        static struct log_limit log_limit_;                                                        \
        log_msg_limited(&log_limit_, (interval_ms), (level), __VA_ARGS__);                         \
    } while (0)

#endif
