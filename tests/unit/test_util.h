/*
 * test_util.h - helpers shared by the cmocka unit tests.
 *
 * Tests run from the repository root. Reference material lives in ../shared
 * (override with MEDEMBED_SHARED); tests that need it call SKIP_WITHOUT_SHARED
 * which prints a visible SKIP line and skips when it is absent.
 */
#ifndef ME_TEST_UTIL_H
#define ME_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

static inline const char *test_shared_dir(void)
{
    const char *s = getenv("MEDEMBED_SHARED");
    return (s && *s) ? s : "../shared";
}

/* Fills buf with shared/<rel>; returns 1 if it exists. */
static inline int test_shared_path(char *buf, size_t n, const char *rel)
{
    struct stat st;
    snprintf(buf, n, "%s/%s", test_shared_dir(), rel);
    return stat(buf, &st) == 0;
}

#define SKIP_WITHOUT_SHARED(buf, rel)                                                              \
    do {                                                                                           \
        if (!test_shared_path((buf), sizeof(buf), (rel))) {                                        \
            fprintf(stderr, "SKIP: %s not found (../shared is absent): %s\n", (buf), __func__);   \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Reads a whole file; returns malloc'd NUL-terminated bytes or NULL. */
static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[sz] = 0;
        if (len)
            *len = (size_t)sz;
    }
    return b;
}

static inline int test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    fclose(f);
    return w == len ? 0 : -1;
}

#endif
