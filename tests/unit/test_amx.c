/*
 * test_amx.c - the AMX level beyond the per-level checks of test_kernels.c
 * (which run its kernels against the scalar oracle, on emulated tiles
 * everywhere and on real ones where the CPU has AMX):
 *   - the emulated tdpbf16ps follows the Intel SDM: hand-computed cases for
 *     the even / odd split of the k pairs, DAZ on inputs and FTZ on
 *     results, and a bf16 layer against a direct float evaluation of the
 *     SDM's arithmetic in the test itself;
 *   - int8 on tiles equals the AVX-512 level bit for bit (exact sums, one
 *     store);
 *   - where the CPU has AMX: the emulation equals the tiles bit for bit,
 *     denormal and tiny inputs included (a SKIP line elsewhere).
 * Small shapes plus one realistic K (768): the emulation is slow.
 */
#include "test_util.h"
#include "test_isa.h"

#include <float.h>
#include <math.h>

#include "kernels/kernels.h"
#include "medembed.h"
#include "thread/pool.h"

static uint32_t rng_state = 4242;

static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static const me_kern *need_emu(void)
{
    const me_kern *k = me_kern_for(ME_ISA_AMX_EMU);
    if (!k) {
        fprintf(stderr, "SKIP: amx-emu needs AVX-512, which this CPU lacks\n");
        skip();
    }
    return k;
}

/* y = epi(x W^T + b) on level k, packed for dtype. */
static void run(const me_kern *k, int32_t dtype, const float *w, const float *b, int32_t N,
                int32_t K, const float *x, int32_t M, float *y, const float *res, uint32_t epi,
                me_pool *pool)
{
    me_linear L = {.n_out = N, .n_in = K, .w = w, .b = b};
    assert_int_equal(k->pack(&L, dtype), MEDEMBED_OK);
    void *work = me_alloc_big(me_linear_work_bytes(M, K));
    assert_non_null(work);
    k->linear(&L, x, M, y, res, epi, pool, work);
    me_free_big(work);
    k->unpack(&L);
}

/* One output of a 1 x K by K x 1 bf16 layer on emulated tiles. */
static float emu_dot(const float *x, const float *w, int32_t K)
{
    float y;
    run(need_emu(), MEDEMBED_DTYPE_BF16, w, NULL, 1, K, x, 1, &y, NULL, 0, NULL);
    return y;
}

/* Hand-computed cases of the SDM's TDPBF16PS (amx_tile.h). */
static void test_dpbf16ps_rules(void **state)
{
    (void)state;
    float x[64] = {0}, w[64];
    for (int i = 0; i < 64; i++)
        w[i] = 1.0f;
    /* even / odd sums: 1 (k = 0) + 2^-24 (k = 1) + 2^-24 (k = 3). Serially
     * each 2^-24 is half an ulp of 1 and rounds away (to even): 1. The SDM
     * sums the odd k apart (2^-23), then adds: 1 + 2^-23. */
    x[0] = 1.0f;
    x[1] = 0x1p-24f;
    x[3] = 0x1p-24f;
    assert_true(emu_dot(x, w, 32) == 1.0f + 0x1p-23f);
    /* the next 32 k are a second instruction, added to the first's sum:
     * 2^-24 there is half an ulp of 1 + 2^-23 (odd last bit): rounds up */
    x[33] = 0x1p-24f;
    assert_true(emu_dot(x, w, 64) == 1.0f + 0x1p-22f);
    /* DAZ: a denormal bf16 input counts as zero, even times 2^100 */
    memset(x, 0, sizeof x);
    x[0] = 0x1p-130f; /* a bf16 denormal, exactly */
    w[0] = 0x1p100f;
    assert_true(emu_dot(x, w, 32) == 0.0f);
    x[0] = 0x1p-126f; /* the smallest normal is kept: 2^-26 */
    assert_true(emu_dot(x, w, 32) == 0x1p-26f);
    /* FTZ: a product below FLT_MIN (-2^-140) is flushed (to -0, which the
     * next k's +0 products make +0), not kept as a denormal */
    x[0] = -0x1p-70f;
    w[0] = 0x1p-70f;
    assert_true(emu_dot(x, w, 32) == 0.0f);
    /* but an exact product of 2^-126 is normal: kept */
    x[0] = 0x1p-63f;
    w[0] = -0x1p-63f;
    assert_true(emu_dot(x, w, 32) == -0x1p-126f);
}

/* A bf16 layer on emulated tiles against the SDM's arithmetic written out
 * here in float: per output, for each 32 k from k = 0, an even and an odd
 * sum of exact products (bf16 x bf16 is exact in fp32), added together and
 * then to the running sum. Ordinary values (no denormals). Bit for bit;
 * with a bias, + b afterwards; at M = 1, 17 and 40 (one and several tiles,
 * a tail tile) and on 3 threads. */
static void test_bf16_matches_sdm(void **state)
{
    (void)state;
    const me_kern *k = need_emu();
    static const int32_t NK[][2] = {{50, 768}, {7, 40}};
    static const int32_t MS[] = {1, 17, 40};
    me_pool *pool = me_pool_create(3);
    assert_non_null(pool);
    for (size_t s = 0; s < 2; s++) {
        int32_t N = NK[s][0], K = NK[s][1], Kp = (K + 31) / 32 * 32;
        float *w = malloc(sizeof *w * (size_t)N * (size_t)K), *b = malloc(sizeof *b * (size_t)N);
        for (int32_t i = 0; i < N * K; i++)
            w[i] = frand();
        for (int32_t n = 0; n < N; n++)
            b[n] = frand();
        for (size_t mi = 0; mi < 3; mi++) {
            int32_t M = MS[mi];
            float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
            float *y = malloc(sizeof *y * (size_t)M * (size_t)N);
            for (int32_t i = 0; i < M * K; i++)
                x[i] = 3.0f * frand();
            run(k, MEDEMBED_DTYPE_BF16, w, b, N, K, x, M, y, NULL, 0, pool);
            for (int32_t m = 0; m < M; m++)
                for (int32_t n = 0; n < N; n++) {
                    float d = 0.0f;
                    for (int32_t g = 0; g < Kp; g += 32) {
                        float e = 0.0f, o = 0.0f;
                        for (int32_t i = g; i < g + 32; i += 2) {
                            float xe = i < K ? me_bf16_to_f32(me_f32_to_bf16(x[m * K + i])) : 0;
                            float we = i < K ? me_bf16_to_f32(me_f32_to_bf16(w[n * K + i])) : 0;
                            float xo = i + 1 < K ? me_bf16_to_f32(me_f32_to_bf16(x[m * K + i + 1]))
                                                 : 0;
                            float wo = i + 1 < K ? me_bf16_to_f32(me_f32_to_bf16(w[n * K + i + 1]))
                                                 : 0;
                            e = e + xe * we;
                            o = o + xo * wo;
                        }
                        d = d + (e + o);
                    }
                    float want = d + b[n];
                    if (y[m * N + n] != want)
                        fail_msg("N=%d K=%d M=%d [%d,%d]: %.9g, the SDM's arithmetic %.9g", N, K,
                                 M, m, n, y[m * N + n], want);
                }
            free(x);
            free(y);
        }
        free(w);
        free(b);
    }
    me_pool_free(pool);
}

/* int8 on tiles (tdpbusd) and on AVX-512 (vpdpbusd, or vpmaddwd without
 * VNNI): exact int32 sums and the same store, so the same bits with every
 * epilogue, at several M. */
static void test_int8_equals_avx512(void **state)
{
    (void)state;
    const me_kern *ke = need_emu(), *k5 = me_kern_for(ME_ISA_AVX512);
    const me_kern *kn = test_level(ME_ISA_AMX); /* NULL without AMX */
    int32_t N = 53, K = 768;
    static const int32_t MS[] = {1, 5, 16, 33};
    static const uint32_t EPIS[] = {0, ME_EPI_GELU | ME_EPI_RESIDUAL};
    float *w = malloc(sizeof *w * (size_t)N * (size_t)K), *b = malloc(sizeof *b * (size_t)N);
    for (int32_t i = 0; i < N * K; i++)
        w[i] = frand();
    for (int32_t n = 0; n < N; n++)
        b[n] = frand();
    me_pool *pool = me_pool_create(2);
    for (size_t mi = 0; mi < 4; mi++) {
        int32_t M = MS[mi];
        size_t ny = (size_t)M * (size_t)N;
        float *x = malloc(sizeof *x * (size_t)M * (size_t)K), *res = malloc(sizeof *res * ny);
        float *ya = malloc(sizeof *ya * ny), *y5 = malloc(sizeof *y5 * ny);
        for (int32_t i = 0; i < M * K; i++)
            x[i] = 2.0f * frand();
        for (size_t i = 0; i < ny; i++)
            res[i] = frand();
        for (size_t ei = 0; ei < 2; ei++) {
            run(k5, MEDEMBED_DTYPE_INT8, w, b, N, K, x, M, y5, res, EPIS[ei], NULL);
            run(ke, MEDEMBED_DTYPE_INT8, w, b, N, K, x, M, ya, res, EPIS[ei], pool);
            assert_memory_equal(ya, y5, sizeof *ya * ny);
            if (kn) {
                run(kn, MEDEMBED_DTYPE_INT8, w, b, N, K, x, M, ya, res, EPIS[ei], pool);
                assert_memory_equal(ya, y5, sizeof *ya * ny);
            }
        }
        free(x);
        free(res);
        free(ya);
        free(y5);
    }
    me_pool_free(pool);
    free(w);
    free(b);
}

/* Where the CPU has AMX: the emulation gives the tiles' bits, in bf16 and
 * int8, on ordinary values and on rows salted with what the denormal
 * rules act on (bf16 denormals, products and sums below FLT_MIN, zeros of
 * both signs), with and without a bias and GELU, at M = 1, 7 and 20. */
static void test_emu_equals_tiles(void **state)
{
    (void)state;
    const me_kern *ke = need_emu(), *kn;
    SKIP_WITHOUT_LEVEL(kn, ME_ISA_AMX, "emulation against the tiles");
    static const float salt[] = {0x1p-130f, -0x1p-133f, 0x1p-70f, -0x1p-66f, 0x1p-63f,
                                 -0.0f,     0x1p100f,   1e-38f,   -3e-39f};
    int32_t N = 35, K = 200;
    static const int32_t MS[] = {1, 7, 20};
    float *w = malloc(sizeof *w * (size_t)N * (size_t)K), *b = malloc(sizeof *b * (size_t)N);
    for (int salted = 0; salted < 2; salted++) {
        for (int32_t i = 0; i < N * K; i++)
            w[i] = salted && i % 7 == 0 ? salt[(i / 7) % 9] : frand();
        for (int32_t n = 0; n < N; n++)
            b[n] = frand();
        for (size_t mi = 0; mi < 3; mi++) {
            int32_t M = MS[mi];
            size_t ny = (size_t)M * (size_t)N;
            float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
            float *ye = malloc(sizeof *ye * ny), *yn = malloc(sizeof *yn * ny);
            for (int32_t i = 0; i < M * K; i++)
                x[i] = salted && i % 5 == 0 ? salt[(i / 5) % 9] : frand();
            for (int32_t dt = MEDEMBED_DTYPE_BF16; dt <= MEDEMBED_DTYPE_INT8; dt++)
                for (int e = 0; e < 2; e++) {
                    uint32_t epi = e ? ME_EPI_GELU : 0;
                    run(ke, dt, w, e ? b : NULL, N, K, x, M, ye, NULL, epi, NULL);
                    run(kn, dt, w, e ? b : NULL, N, K, x, M, yn, NULL, epi, NULL);
                    if (memcmp(ye, yn, sizeof *ye * ny) != 0)
                        fail_msg("dtype %d M=%d salted=%d epi=%u: emulation != tiles", dt, M,
                                 salted, epi);
                }
            free(x);
            free(ye);
            free(yn);
        }
    }
    free(w);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dpbf16ps_rules),
        cmocka_unit_test(test_bf16_matches_sdm),
        cmocka_unit_test(test_int8_equals_avx512),
        cmocka_unit_test(test_emu_equals_tiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
