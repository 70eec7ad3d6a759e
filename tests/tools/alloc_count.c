/* An allocation counter for tests, loaded with LD_PRELOAD into a daemon:
 * every heap allocation the process makes (malloc, calloc, realloc,
 * posix_memalign, ...) adds one to a counter that lives in a shared file
 * ($CAIRN_ALLOC_COUNT, 4 KiB: u64 allocations, u64 bytes, native endian),
 * so a test reads it at any moment without stopping the process.
 *
 * Under AddressSanitizer (whose runtime must come first in LD_PRELOAD) the
 * counting is done by ASan's allocation hook; in a plain build this library
 * interposes the allocation functions and hands them to glibc's. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint64_t *counters;
static int sanitized;

static void count(size_t bytes)
{
    if (counters) {
        __atomic_fetch_add(&counters[0], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&counters[1], bytes, __ATOMIC_RELAXED);
    }
}

static void asan_malloc_hook(const volatile void *ptr, size_t size)
{
    (void)ptr;
    count(size);
}

static void asan_free_hook(const volatile void *ptr)
{
    (void)ptr;
}

__attribute__((constructor)) static void alloc_count_init(void)
{
    const char *path = getenv("CAIRN_ALLOC_COUNT");
    if (!path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) < 0)
        _exit(97);
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        _exit(97);
    int (*install)(void (*)(const volatile void *, size_t), void (*)(const volatile void *)) =
        (int (*)(void (*)(const volatile void *, size_t), void (*)(const volatile void *)))dlsym(
            RTLD_DEFAULT, "__sanitizer_install_malloc_and_free_hooks");
    if (install) {
        sanitized = 1;
        install(asan_malloc_hook, asan_free_hook);
    }
    counters = m;
}

/* Plain builds: these come first in symbol lookup. Under ASan its runtime's
 * own definitions come first (it is earlier in LD_PRELOAD) and these are
 * never called. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

void *malloc(size_t n)
{
    count(n);
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    count(a * b);
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    count(n);
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count(n);
    void *p = __libc_memalign(align, n);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    count(n);
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    count(n);
    return __libc_memalign(align, n);
}
