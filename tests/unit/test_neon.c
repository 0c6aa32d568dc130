/*
 * test_neon.c - the NEON level's tiles for the optional Arm extensions, on
 * ARM64 (under qemu-aarch64 -cpu max in `make test-arm64`):
 *   - bf16 with bfmmla (FEAT_BF16) bit for bit against a C model of Arm's
 *     BFDotAdd (Arm ARM pseudo-code: products and sums rounded to odd in
 *     fp32, denormals flushed), which test_bf16_model checks on its own
 *     against values worked out by hand;
 *   - int8 with smmla (FEAT_I8MM), sdot (FEAT_DotProd) and smull: each bit
 *     for bit the scalar oracle's exact int32 sums.
 * Every path runs on 1 and 3 threads and each row alone (the determinism
 * contract). Elsewhere the kernel tests print SKIP; the model's own test
 * runs everywhere. test_kernels checks every dtype's accuracy against the
 * scalar oracle at this level.
 */
#include "test_util.h"
#include "test_isa.h"

#include <fenv.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "medembed.h"
#include "thread/pool.h"

static uint32_t rng_state = 777;

static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- the model of Arm's BFloat16 arithmetic (FPCR.EBF = 0) ---- */

/* BFUnpack / BFRound's fixed flush: a denormal (input or result) is a zero
 * of its sign. */
static float bf_flush(float v)
{
    return fabsf(v) < FLT_MIN ? copysignf(0.0f, v) : v;
}

/* BFRound of a * b or a + b: the exact value truncated to fp32 with its
 * last bit set when anything was dropped (round to odd), an overflow an
 * infinity, a result under FLT_MIN flushed. */
static float bf_op(float a, float b, int mul)
{
    int mode = fegetround();
    fesetround(FE_TOWARDZERO);
    feclearexcept(FE_INEXACT | FE_OVERFLOW);
    volatile float va = a, vb = b;
    volatile float vr = mul ? va * vb : va + vb;
    float r = vr;
    int inexact = fetestexcept(FE_INEXACT), overflow = fetestexcept(FE_OVERFLOW);
    fesetround(mode);
    if (overflow)
        return copysignf(INFINITY, r);
    if (inexact && isfinite(r))
        r = bits_f(f_bits(r) | 1u);
    return bf_flush(r);
}

/* BFDotAdd(sum, a0, a1, b0, b1) = sum + (a0 b0 + a1 b1), in that grouping */
static float bf_dot_add(float sum, float a0, float a1, float b0, float b1)
{
    float p0 = bf_op(bf_flush(a0), bf_flush(b0), 1);
    float p1 = bf_op(bf_flush(a1), bf_flush(b1), 1);
    return bf_op(bf_flush(sum), bf_op(p0, p1, 0), 0);
}

static void test_bf16_model(void **state)
{
    (void)state;
    /* round to odd: dropped bits set the last bit, whichever way nearest is */
    assert_true(bf_op(1.0f, 0x1p-30f, 0) == 1.0f + 0x1p-23f);
    assert_true(bf_op(1.0f, -0x1p-30f, 0) == 1.0f - 0x1p-24f); /* 1 - 2^-24 is odd */
    assert_true(bf_op(1.0f + 0x1p-23f, 0x1p-30f, 0) == 1.0f + 0x1p-23f);
    /* nearest would give 1 + 2^-22 */
    assert_true(bf_op(1.0f + 0x1p-22f, 0x1p-24f, 0) == 1.0f + 0x1p-22f + 0x1p-23f);
    assert_true(bf_op(3.0f, 5.0f, 0) == 8.0f);                   /* exact: unchanged */
    assert_true(bf_op(1.5f, 1.5f, 1) == 2.25f);                  /* exact product */
    /* flushes: a denormal result, a denormal input */
    assert_true(f_bits(bf_op(0x1p-100f, 0x1p-30f, 1)) == 0u);
    assert_true(f_bits(bf_op(-0x1p-100f, 0x1p-30f, 1)) == 0x80000000u);
    assert_true(bf_dot_add(1.0f, 0x1p-140f, 0.0f, 0x1p100f, 0.0f) == 1.0f);
    assert_true(isinf(bf_op(FLT_MAX, 2.0f, 1)));
    /* the grouping sum + (p0 + p1): (sum + p0) + p1 would give 2^24 + 2 */
    assert_true(bf_dot_add(0x1p24f, 1.0f, 1.0f, 1.0f, -1.0f) == 0x1p24f);
    /* 2^24 + 1 rounds to odd, up here (nearest even would be 2^24) */
    assert_true(bf_dot_add(0x1p24f, 1.0f, 0.0f, 1.0f, 0.0f) == 0x1p24f + 2.0f);
    assert_int_equal(fegetround(), FE_TONEAREST);
}

/* ---- the kernels ---- */

static const me_kern *neon_or_skip(int need_bf16, int need_i8mm)
{
    const me_kern *k = test_level(ME_ISA_NEON);
    me_cpu c;
    me_cpu_detect(&c);
    if (!k || (need_bf16 && !c.arm_bf16) || (need_i8mm && !c.i8mm)) {
        fprintf(stderr, "SKIP: no NEON level with %s here (ARM64 under qemu-aarch64 -cpu max "
                        "has it)\n",
                need_bf16 ? "FEAT_BF16" : "FEAT_I8MM");
        skip();
    }
    return k;
}

static void run(const me_kern *k, const me_linear *L, const float *x, int32_t M, float *y,
                me_pool *pool)
{
    void *work = me_alloc_big(me_linear_work_bytes(M, L->n_in));
    assert_non_null(work);
    k->linear(L, x, M, y, NULL, 0, pool, work);
    me_free_big(work);
}

/* Runs L on x (M rows) on 1 and 3 threads and each row alone; all must be
 * bit-identical to want. */
static void check_runs(const me_kern *k, const me_linear *L, const float *x, int32_t M,
                       const float *want, me_pool *pool, const char *what)
{
    int32_t N = L->n_out, K = L->n_in;
    float *y = malloc(sizeof *y * (size_t)M * (size_t)N);
    assert_non_null(y);
    for (int t = 0; t < 3; t++) {
        if (t < 2)
            run(k, L, x, M, y, t ? pool : NULL);
        else
            for (int32_t m = 0; m < M; m++)
                run(k, L, x + (size_t)m * (size_t)K, 1, y + (size_t)m * (size_t)N, NULL);
        for (int32_t i = 0; i < M * N; i++)
            if (f_bits(y[i]) != f_bits(want[i]))
                fail_msg("%s M=%d N=%d K=%d (%s): [%d,%d] %.9g, want %.9g", what, M, N, K,
                         t == 0 ? "1 thread" : t == 1 ? "3 threads" : "row alone", i / N, i % N,
                         y[i], want[i]);
    }
    free(y);
}

/* shapes: K with an odd number of quads and a ragged last quad, N ragged
 * in the 16-output blocks, M over the 6-row tiles' odd and even heights */
static const int32_t SH[][3] = {{1, 5, 7}, {7, 33, 70}, {13, 16, 64}, {6, 19, 131}, {3, 9, 2100}};

static void test_bfmmla_model(void **state)
{
    (void)state;
    const me_kern *k = neon_or_skip(1, 0);
    me_pool *pool = me_pool_create(3);
    assert_non_null(pool);
    int differs = 0; /* from an fp32 serial sum somewhere: the model is not a no-op */
    for (size_t s = 0; s < sizeof SH / sizeof SH[0]; s++) {
        int32_t M = SH[s][0], N = SH[s][1], K = SH[s][2], K4 = (K + 3) / 4 * 4;
        float *w = malloc(sizeof *w * (size_t)N * (size_t)K);
        float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
        float *b = malloc(sizeof *b * (size_t)N);
        float *want = malloc(sizeof *want * (size_t)M * (size_t)N);
        float *wr = calloc((size_t)N * (size_t)K4, sizeof *wr); /* bf16 values, 0-padded */
        float *xr = calloc((size_t)M * (size_t)K4, sizeof *xr);
        assert_true(w && x && b && want && wr && xr);
        for (int32_t i = 0; i < N * K; i++)
            w[i] = frand() * 0.5f;
        for (int32_t i = 0; i < M * K; i++)
            x[i] = frand() * 2.0f;
        for (int32_t i = 0; i < N; i++)
            b[i] = frand();
        for (int32_t n = 0; n < N; n++)
            for (int32_t kk = 0; kk < K; kk++)
                wr[(size_t)n * K4 + kk] = me_bf16_to_f32(me_f32_to_bf16(w[(size_t)n * K + kk]));
        for (int32_t m = 0; m < M; m++)
            for (int32_t kk = 0; kk < K; kk++)
                xr[(size_t)m * K4 + kk] = me_bf16_to_f32(me_f32_to_bf16(x[(size_t)m * K + kk]));
        for (int32_t m = 0; m < M; m++)
            for (int32_t n = 0; n < N; n++) {
                const float *a = xr + (size_t)m * K4, *c = wr + (size_t)n * K4;
                float sum = 0.0f, serial = 0.0f;
                for (int32_t kk = 0; kk < K4; kk += 2) {
                    sum = bf_dot_add(sum, a[kk], a[kk + 1], c[kk], c[kk + 1]);
                    serial = fmaf(a[kk + 1], c[kk + 1], fmaf(a[kk], c[kk], serial));
                }
                differs |= sum != serial;
                want[(size_t)m * N + n] = sum + b[n]; /* the store adds the bias in fp32 */
            }
        me_linear L = {.n_out = N, .n_in = K, .w = w, .b = b};
        assert_int_equal(k->pack(&L, MEDEMBED_DTYPE_BF16), MEDEMBED_OK);
        check_runs(k, &L, x, M, want, pool, "bfmmla");
        /* the layout follows the CPU: without FEAT_BF16, the fp32 fmla blocks */
        setenv("MEDEMBED_CPU_DISABLE", "bf16", 1);
        me_linear L2 = {.n_out = N, .n_in = K, .w = w, .b = b};
        assert_int_equal(k->pack(&L2, MEDEMBED_DTYPE_BF16), MEDEMBED_OK);
        unsetenv("MEDEMBED_CPU_DISABLE");
        assert_true(L2.packed_bytes != L.packed_bytes || K % 4 == 0);
        k->unpack(&L2);
        k->unpack(&L);
        free(w);
        free(x);
        free(b);
        free(want);
        free(wr);
        free(xr);
    }
    assert_true(differs);
    me_pool_free(pool);
}

/* int8: smmla, sdot (i8mm hidden) and smull (both hidden) on one packed
 * layer, each the scalar oracle's exact result bit for bit. */
static void test_int8_paths(void **state)
{
    (void)state;
    const me_kern *k = neon_or_skip(0, 1);
    const me_kern *ref = me_kern_for(ME_ISA_SCALAR);
    me_pool *pool = me_pool_create(3);
    assert_non_null(pool);
    static const char *const HIDE[] = {NULL, "i8mm", "i8mm,dotprod"};
    static const char *const NAME[] = {"smmla", "sdot", "smull"};
    for (size_t s = 0; s < sizeof SH / sizeof SH[0]; s++) {
        int32_t M = SH[s][0], N = SH[s][1], K = SH[s][2];
        float *w = malloc(sizeof *w * (size_t)N * (size_t)K);
        float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
        float *b = malloc(sizeof *b * (size_t)N);
        float *want = malloc(sizeof *want * (size_t)M * (size_t)N);
        assert_true(w && x && b && want);
        for (int32_t i = 0; i < N * K; i++)
            w[i] = frand() * 0.5f;
        for (int32_t i = 0; i < M * K; i++)
            x[i] = frand() * 2.0f;
        for (int32_t i = 0; i < N; i++)
            b[i] = frand();
        me_linear Lr = {.n_out = N, .n_in = K, .w = w, .b = b}, L = Lr;
        assert_int_equal(ref->pack(&Lr, MEDEMBED_DTYPE_INT8), MEDEMBED_OK);
        run(ref, &Lr, x, M, want, NULL);
        assert_int_equal(k->pack(&L, MEDEMBED_DTYPE_INT8), MEDEMBED_OK);
        for (int h = 0; h < 3; h++) {
            if (HIDE[h])
                setenv("MEDEMBED_CPU_DISABLE", HIDE[h], 1);
            me_cpu c;
            me_cpu_detect(&c);
            assert_true(c.i8mm == (h == 0));
            check_runs(k, &L, x, M, want, pool, NAME[h]);
            unsetenv("MEDEMBED_CPU_DISABLE");
        }
        k->unpack(&L);
        ref->unpack(&Lr);
        free(w);
        free(x);
        free(b);
        free(want);
    }
    me_pool_free(pool);
}

/* also when an assertion above ends the test early */
static int unset_cpu_disable(void **state)
{
    (void)state;
    unsetenv("MEDEMBED_CPU_DISABLE");
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_model),
        cmocka_unit_test_teardown(test_bfmmla_model, unset_cpu_disable),
        cmocka_unit_test_teardown(test_int8_paths, unset_cpu_disable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
