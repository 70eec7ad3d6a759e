/* The logger's rate limit: a call site repeating itself many times a second
 * logs once per interval, then says how many lines it held back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

static FILE *out; /* where stderr goes while the logger is under test */
static int saved_stderr;

static void capture_begin(void)
{
    fflush(stderr);
    CHECK(ftruncate(fileno(out), 0) == 0);
    CHECK(lseek(fileno(out), 0, SEEK_SET) == 0);
    CHECK(dup2(fileno(out), 2) == 2);
}

/* What the logger wrote since capture_begin(); stderr is back for CHECK. */
static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    long n = lseek(fileno(out), 0, SEEK_END);
    char *buf = calloc(1, (size_t)n + 1);
    CHECK(pread(fileno(out), buf, (size_t)n, 0) == n);
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void warn_many(int n, int i0)
{
    for (int i = 0; i < n; i++)
        LOG_LIMITED(LOG_WARN, 200, "request %d failed", i0 + i);
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(void)
{
    out = tmpfile();
    CHECK(out != NULL);
    saved_stderr = dup(2);
    log_init("test", LOG_INFO);

    /* case: a burst logs its first line only */
    capture_begin();
    warn_many(1000, 0);
    char *s = capture_end();
    CHECK_EQ(count(s, "failed"), 1);
    CHECK(strstr(s, "request 0 failed") != NULL);
    CHECK(strstr(s, "more like it") == NULL);
    free(s);

    /* case: after the interval, the next line counts what was held back */
    pause_ms(250);
    capture_begin();
    warn_many(1, 1000);
    s = capture_end();
    CHECK(strstr(s, "request 1000 failed (and 999 more like it in the last 200 ms)") != NULL);
    free(s);

    /* case: below the threshold nothing is logged, nor counted */
    pause_ms(250);
    log_init("test", LOG_ERROR);
    capture_begin();
    warn_many(5, 2000);
    s = capture_end();
    CHECK_EQ(count(s, "failed"), 0);
    free(s);
    log_init("test", LOG_INFO);
    capture_begin();
    warn_many(1, 3000);
    s = capture_end();
    CHECK(strstr(s, "request 3000 failed\n") != NULL);
    free(s);
    printf("log rate limit ok\n");
    return 0;
}
