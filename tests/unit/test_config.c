/* common/config.c: the configuration file's lines, and its place in argv
 * (the file's options first, the command line's after, --config consumed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static const struct option opts[] = {
    {"listen", 1, 0, 'l'},    {"data-dir", 1, 0, 'd'},  {"join", 0, 0, 'J'},
    {"tls-allow", 1, 0, 'A'}, {"help", 0, 0, 'h'},      {"config", 1, 0, 'c'},
    {"verbose", 0, 0, 'v'},   {"version", 0, 0, 0x100}, {0, 0, 0, 0}};

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (!_a || strcmp(_a, _b) != 0) {                                                          \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s ('%s' vs '%s')\n", __FILE__,        \
                    __LINE__, #a, #b, _a ? _a : "(null)", _b);                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int parse(const char *text, int *argc, char ***argv)
{
    *argc = 0;
    *argv = NULL;
    return config_parse("test", "t.conf", text, strlen(text), opts, argc, argv);
}

static void free_argv(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}

static void test_lines(void)
{
    int argc;
    char **argv;
    CHECK_EQ(parse("# a comment\n\n  listen = 127.0.0.1:7000  \n"
                   "data-dir=/var/lib/cairn/mdm\r\n"
                   "\t# indented comment\n"
                   "join = true\n"
                   "verbose = false\n"
                   "tls-allow = a\ntls-allow = b c", /* no final newline */
                   &argc, &argv),
             0);
    CHECK_EQ(argc, 9);
    CHECK_STR(argv[0], "--listen");
    CHECK_STR(argv[1], "127.0.0.1:7000");
    CHECK_STR(argv[2], "--data-dir");
    CHECK_STR(argv[3], "/var/lib/cairn/mdm");
    CHECK_STR(argv[4], "--join");
    CHECK_STR(argv[5], "--tls-allow");
    CHECK_STR(argv[6], "a");
    CHECK_STR(argv[8], "b c");
    free_argv(argc, argv);
    CHECK_EQ(parse("tls-allow = b c=d", &argc, &argv), 0);
    CHECK_STR(argv[1], "b c=d"); /* the first '=' splits; the value keeps the rest */
    free_argv(argc, argv);
    CHECK_EQ(parse("", &argc, &argv), 0);
    CHECK_EQ(argc, 0);
}

static void test_errors(void)
{
    int argc;
    char **argv;
    const char *bad[] = {"listen = a\nlisen = b\n", /* unknown, on line 2 */
                         "listen 127.0.0.1:1\n",    /* no '=' */
                         "listen =\n",              /* no value */
                         "join = yes\n",            /* a flag takes true or false */
                         "help = true\n",           /* not a key */
                         "version = true\n",        /* not a key either */
                         "config = other.conf\n",   /* no nesting */
                         "= x\n",                   /* no key */
                         "lis = x\n"};              /* no abbreviations */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ(parse(bad[i], &argc, &argv), -EINVAL);
        free_argv(argc, argv);
    }
}

/* config_apply on a real file: order, --config removed in both spellings. */
static void test_apply(void)
{
    char path[] = "/tmp/cairn-test-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char text[] = "listen = 127.0.0.1:7000\ndata-dir = /d\n";
    CHECK_EQ(write(fd, text, sizeof(text) - 1), (long long)sizeof(text) - 1);
    close(fd);
    char eq[4200];
    snprintf(eq, sizeof(eq), "--config=%s", path);
    char *a1[] = {"prog", "--config", path, "--listen", "127.0.0.1:8000", NULL};
    char *a2[] = {"prog", "-v", eq, NULL};
    char *a3[] = {"prog", "--data-dir", "--config", NULL}; /* a value, not --config */
    char *a4[] = {"prog", "--config", NULL};
    char *a5[] = {"prog", "--config", "/nonexistent/cairn.conf", NULL};
    char *a6[] = {"prog", "--config", path, "--config", path, NULL};
    int argc;
    char **argv;
    CHECK_EQ(config_apply("test", 5, a1, opts, &argc, &argv), 0);
    CHECK_EQ(argc, 7);
    CHECK_STR(argv[0], "prog");
    CHECK_STR(argv[1], "--listen");
    CHECK_STR(argv[2], "127.0.0.1:7000");
    CHECK_STR(argv[4], "/d");
    CHECK_STR(argv[5], "--listen"); /* the command line's come last: they win */
    CHECK_STR(argv[6], "127.0.0.1:8000");
    CHECK(argv[7] == NULL);
    free_argv(argc, argv); /* the daemons keep theirs; a test may free it */
    CHECK_EQ(config_apply("test", 3, a2, opts, &argc, &argv), 0);
    CHECK_EQ(argc, 6);
    CHECK_STR(argv[5], "-v");
    free_argv(argc, argv);
    CHECK_EQ(config_apply("test", 3, a3, opts, &argc, &argv), 0);
    CHECK(argv == a3);
    CHECK_EQ(config_apply("test", 2, a4, opts, &argc, &argv), -EINVAL);
    CHECK_EQ(config_apply("test", 3, a5, opts, &argc, &argv), -ENOENT);
    CHECK_EQ(config_apply("test", 5, a6, opts, &argc, &argv), -EINVAL);
    unlink(path);
}

int main(void)
{
    test_lines();
    test_errors();
    test_apply();
    printf("config: ok\n");
    return 0;
}
