/*
 * test_util.h - helpers shared by the cmocka unit tests.
 *
 * Tests run from the repository root. Reference material lives in ../shared
 * (override with MEDEMBED_SHARED; MEDEMBED_SHARED=/nonexistent hides it); tests
 * that need it call SKIP_WITHOUT_SHARED which prints a visible SKIP line and
 * skips when it is absent.
 *
 * The generated golden set (tests/py/gen_golden.py, written by `make
 * golden-gen` before the unit tests run) lives in $(BUILD)/golden, found from
 * the test binary's own path ($(BUILD)/tests/NAME) or MEDEMBED_GOLDEN_GEN.
 * It is complete when its .complete stamp exists; without numpy it is not
 * written, and tests that need it call SKIP_WITHOUT_GEN.
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
#include <unistd.h>

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

/* The generated golden set's folder: MEDEMBED_GOLDEN_GEN, else the folder
 * golden/ beside the folder that holds this binary (build/tests/test_x ->
 * build/golden), else build/golden. */
static inline const char *test_gen_dir(void)
{
    static char dir[1024];
    const char *s = getenv("MEDEMBED_GOLDEN_GEN");
    if (s && *s)
        return s;
    if (!dir[0]) {
        char exe[900];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        char *slash = NULL;
        if (n > 0) {
            exe[n] = 0;
            slash = strrchr(exe, '/'); /* .../build/tests/test_x */
            if (slash) {
                *slash = 0;
                slash = strrchr(exe, '/'); /* .../build/tests */
            }
        }
        if (slash) {
            *slash = 0;
            snprintf(dir, sizeof dir, "%s/golden", exe);
        } else {
            snprintf(dir, sizeof dir, "build/golden");
        }
    }
    return dir;
}

/* 1 if the generated set is complete (its .complete stamp exists). */
static inline int test_gen_ready(void)
{
    char p[1100];
    struct stat st;
    snprintf(p, sizeof p, "%s/.complete", test_gen_dir());
    return stat(p, &st) == 0;
}

#define TEST_GEN_ABSENT "generated golden set absent (`make golden-gen` writes it; needs numpy)"

#define SKIP_WITHOUT_GEN()                                                                         \
    do {                                                                                           \
        if (!test_gen_ready()) {                                                                   \
            fprintf(stderr, "SKIP: " TEST_GEN_ABSENT " in %s: %s\n", test_gen_dir(), __func__);    \
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
