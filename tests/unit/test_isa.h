/*
 * test_isa.h - the kernel levels a unit test can run here, for tests that
 * check every level (x86-64: scalar, avx2, avx512, amx, and amx-emu: the
 * AMX kernels on emulated tiles, which every AVX-512 CPU runs, so that the
 * AMX code is tested on CPUs without AMX; ARM64: scalar and neon). The
 * other architecture's levels are visible SKIPs. A level this CPU lacks is a
 * visible SKIP, never a silent pass: give each level its own cmocka test and
 * call SKIP_WITHOUT_LEVEL first.
 *
 * MEDEMBED_TEST_HIDE_LEVELS=avx512,avx2 makes the tests treat those levels as
 * missing, so the skip path can be checked on a CPU that has them.
 */
#ifndef ME_TEST_ISA_H
#define ME_TEST_ISA_H

#include "test_util.h"

#include "kernels/kernels.h"

#define TEST_N_LEVELS (ME_ISA_NEON + 1)

/* 1 if MEDEMBED_TEST_HIDE_LEVELS lists this level's name. */
static inline int test_level_hidden(me_isa isa)
{
    const char *env = getenv("MEDEMBED_TEST_HIDE_LEVELS");
    const char *name = me_isa_name(isa);
    size_t n = strlen(name);
    for (const char *p = env; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* The kernel table of level isa, or NULL when this CPU cannot run it (or it
 * is hidden). */
static inline const me_kern *test_level(me_isa isa)
{
    return test_level_hidden(isa) ? NULL : me_kern_for(isa);
}

/* Sets k to level isa's table, or prints a SKIP line and skips the test. */
#define SKIP_WITHOUT_LEVEL(k, isa, what)                                                           \
    do {                                                                                           \
        (k) = test_level(isa);                                                                     \
        if (!(k)) {                                                                                \
            fprintf(stderr, "SKIP: %s not available on this CPU%s: %s\n", me_isa_name(isa),       \
                    test_level_hidden(isa) ? " (MEDEMBED_TEST_HIDE_LEVELS)" : "", (what));        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Level isa as a cmocka test's state, for tests registered once per level
 * with TEST_AT_LEVEL; the test then calls test_need_level(state). */
static inline me_isa *test_isa_state(me_isa isa)
{
    static me_isa states[TEST_N_LEVELS] = {ME_ISA_SCALAR, ME_ISA_AVX2,    ME_ISA_AVX512,
                                          ME_ISA_AMX,    ME_ISA_AMX_EMU, ME_ISA_NEON};
    return &states[isa];
}

#define TEST_AT_LEVEL(f, isa, lvl)                                                                 \
    {.name = #f " (" lvl ")", .test_func = f, .initial_state = test_isa_state(isa)}

/* The kernel table of the level in a TEST_AT_LEVEL test's state, or a SKIP. */
static inline const me_kern *test_need_level(void **state)
{
    me_isa isa = *(const me_isa *)*state;
    const me_kern *k;
    SKIP_WITHOUT_LEVEL(k, isa, "per-level test");
    return k;
}

#endif
