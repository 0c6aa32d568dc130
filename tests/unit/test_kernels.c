/*
 * test_kernels.c - every kernel level this CPU can run against the scalar
 * oracle (gemm.c, attn.c, dot.c) on ragged shapes, in every compute dtype
 * and with every epilogue, a test per level (skipped, visibly, where the
 * CPU lacks the level); plus the determinism contract of kernels.h: a
 * row's result is bit-identical whatever the other rows, M and the thread
 * count.
 * No timing here: speed lives in `medembed bench` and bench/.
 */
#include "test_util.h"
#include "test_isa.h"

#include <float.h>
#include <math.h>

#include <stdatomic.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/ranges.h"
#include "medembed.h"
#include "thread/pool.h"

static uint32_t rng_state = 12345;

static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static void fill(float *p, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
}

/* The SIMD levels are tested one by one against the scalar oracle: a test
 * registered with PER_LEVEL runs once per level (test_isa.h) and skips,
 * with a SKIP line, on a CPU without it. */
#define AT_LEVEL TEST_AT_LEVEL
#define PER_LEVEL(f)                                                                               \
    AT_LEVEL(f, ME_ISA_AVX2, "avx2"), AT_LEVEL(f, ME_ISA_AVX512, "avx512"),                        \
        AT_LEVEL(f, ME_ISA_AMX, "amx"), AT_LEVEL(f, ME_ISA_AMX_EMU, "amx-emu"),                    \
        AT_LEVEL(f, ME_ISA_NEON, "neon")

/* Row counts: every AVX-512 wide-block tile height, 1 to 8 rows (1, 2, 3, 7, 13 = 8 + 5,
 * 30 = 24 + 6, 100 = 96 + 4, 24 = 3 x 8), a last tile of 1 after full ones (17), the
 * 4-row panels' tails, and, at 300, several m-blocks. */
static const int32_t MS[] = {1, 2, 3, 7, 13, 17, 24, 30, 42, 100, 300};
/* {9, 2100}: a long K (as the FFN's 3072) with a ragged tail in every dtype's k blocks
 * (2100 % 16, % 32 and % 64 are all non-zero). */
static const int32_t NK[][2] = {{5, 7}, {33, 70}, {64, 256}, {100, 131}, {19, 16}, {9, 2100}};
static const uint32_t EPIS[] = {0, ME_EPI_GELU, ME_EPI_RESIDUAL, ME_EPI_GELU | ME_EPI_RESIDUAL};

static void run_linear(const me_kern *k, const me_linear *L, const float *x, int32_t M, float *y,
                       const float *res, uint32_t epi, me_pool *pool)
{
    void *work = me_alloc_big(me_linear_work_bytes(M, L->n_in));
    assert_non_null(work);
    k->linear(L, x, M, y, res, epi, pool, work);
    me_free_big(work);
}

/* |y - ref| <= tol * (sum_k |x_k w_k| + |b| + |res| + 1e-3) per element */
static void check_linear_level(const me_kern *k, int32_t dtype, double tol, int exact_no_gelu)
{
    me_pool *pool = me_pool_create(3);
    assert_non_null(pool);
    const me_kern *ref = me_kern_for(ME_ISA_SCALAR);
    for (size_t s = 0; s < sizeof NK / sizeof NK[0]; s++) {
        int32_t N = NK[s][0], K = NK[s][1];
        float *w = malloc(sizeof *w * (size_t)N * (size_t)K);
        float *b = malloc(sizeof *b * (size_t)N);
        fill(w, (size_t)N * (size_t)K, 0.5f);
        fill(b, (size_t)N, 0.5f);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            me_linear La = {.n_out = N, .n_in = K, .w = w, .b = with_bias ? b : NULL};
            me_linear Lr = La;
            assert_int_equal(k->pack(&La, dtype), MEDEMBED_OK);
            assert_int_equal(ref->pack(&Lr, dtype), MEDEMBED_OK);
            for (size_t mi = 0; mi < sizeof MS / sizeof MS[0]; mi++) {
                int32_t M = MS[mi];
                float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
                float *res = malloc(sizeof *res * (size_t)M * (size_t)N);
                float *y = malloc(sizeof *y * (size_t)M * (size_t)N);
                float *yr = malloc(sizeof *yr * (size_t)M * (size_t)N);
                float *y1 = malloc(sizeof *y1 * (size_t)N);
                fill(x, (size_t)M * (size_t)K, 2.0f);
                fill(res, (size_t)M * (size_t)N, 1.0f);
                for (size_t ei = 0; ei < sizeof EPIS / sizeof EPIS[0]; ei++) {
                    uint32_t epi = EPIS[ei];
                    run_linear(k, &La, x, M, y, res, epi, pool);
                    run_linear(ref, &Lr, x, M, yr, res, epi, NULL);
                    for (int32_t m = 0; m < M; m++)
                        for (int32_t n = 0; n < N; n++) {
                            double mag = 1e-3 + (with_bias ? fabs(b[n]) : 0) +
                                         ((epi & ME_EPI_RESIDUAL)
                                              ? fabs(res[(size_t)m * (size_t)N + (size_t)n])
                                              : 0);
                            for (int32_t kk = 0; kk < K; kk++)
                                mag += fabs((double)x[(size_t)m * (size_t)K + (size_t)kk] *
                                            w[(size_t)n * (size_t)K + (size_t)kk]);
                            size_t i = (size_t)m * (size_t)N + (size_t)n;
                            double d = fabs((double)y[i] - yr[i]);
                            if (exact_no_gelu && !(epi & ME_EPI_GELU) && y[i] != yr[i])
                                fail_msg("%s dtype %d M=%d N=%d K=%d epi=%u: [%d,%d] %.9g != %.9g "
                                         "(must be exact)",
                                         me_isa_name(k->isa), dtype, M, N, K, epi, m, n, y[i],
                                         yr[i]);
                            if (!(d <= tol * mag))
                                fail_msg("%s dtype %d M=%d N=%d K=%d epi=%u bias=%d: [%d,%d] %.9g "
                                         "vs %.9g (|d| %.3g > %.3g)",
                                         me_isa_name(k->isa), dtype, M, N, K, epi, with_bias, m, n,
                                         y[i], yr[i], d, tol * mag);
                        }
                    /* determinism: every row alone, on one thread, is bit-identical */
                    for (int32_t m = 0; m < M; m++) {
                        run_linear(k, &La, x + (size_t)m * (size_t)K, 1, y1,
                                   res + (size_t)m * (size_t)N, epi, NULL);
                        assert_memory_equal(y1, y + (size_t)m * (size_t)N, sizeof *y1 * (size_t)N);
                    }
                }
                free(x);
                free(res);
                free(y);
                free(yr);
                free(y1);
            }
            k->unpack(&La);
            ref->unpack(&Lr);
        }
        free(w);
        free(b);
    }
    me_pool_free(pool);
}

static void test_linear_f32(void **state)
{
    const me_kern *k = test_need_level(state);
    check_linear_level(k, MEDEMBED_DTYPE_F32, 2e-6, 0);
}

/* The AVX2 and AVX-512 fp32 GEMMs sum every output in the same chunks of k
 * (wide column blocks of 24 and 48 outputs), so their outputs are the same
 * bits, bias and residual included, whatever the tile heights and block
 * widths; GELU is left out (each level has its own exp). An independent
 * check of the chunking: the scalar oracle sums in double. */
static void test_linear_f32_levels_agree(void **state)
{
    (void)state;
    const me_kern *k2 = me_kern_for(ME_ISA_AVX2), *k5 = me_kern_for(ME_ISA_AVX512);
    if (!k2 || !k5) {
        fprintf(stderr, "SKIP: needs both the AVX2 and the AVX-512 level on this CPU\n");
        skip();
    }
    me_pool *pool = me_pool_create(3);
    assert_non_null(pool);
    for (size_t s = 0; s < sizeof NK / sizeof NK[0]; s++) {
        int32_t N = NK[s][0], K = NK[s][1];
        float *w = malloc(sizeof *w * (size_t)N * (size_t)K);
        float *b = malloc(sizeof *b * (size_t)N);
        fill(w, (size_t)N * (size_t)K, 0.5f);
        fill(b, (size_t)N, 0.5f);
        me_linear L2 = {.n_out = N, .n_in = K, .w = w, .b = b}, L5 = L2;
        assert_int_equal(k2->pack(&L2, MEDEMBED_DTYPE_F32), MEDEMBED_OK);
        assert_int_equal(k5->pack(&L5, MEDEMBED_DTYPE_F32), MEDEMBED_OK);
        for (size_t mi = 0; mi < sizeof MS / sizeof MS[0]; mi++) {
            int32_t M = MS[mi];
            size_t ny = (size_t)M * (size_t)N;
            float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
            float *res = malloc(sizeof *res * ny);
            float *y2 = malloc(sizeof *y2 * ny), *y5 = malloc(sizeof *y5 * ny);
            fill(x, (size_t)M * (size_t)K, 2.0f);
            fill(res, ny, 1.0f);
            for (uint32_t epi = 0; epi <= ME_EPI_RESIDUAL; epi += ME_EPI_RESIDUAL) {
                run_linear(k2, &L2, x, M, y2, res, epi, pool);
                run_linear(k5, &L5, x, M, y5, res, epi, pool);
                for (size_t i = 0; i < ny; i++)
                    if (memcmp(&y2[i], &y5[i], sizeof y2[i]) != 0)
                        fail_msg("f32 M=%d N=%d K=%d epi=%u: [%zu] avx2 %.9g != avx512 %.9g", M,
                                 N, K, epi, i, y2[i], y5[i]);
            }
            free(x);
            free(res);
            free(y2);
            free(y5);
        }
        k2->unpack(&L2);
        k5->unpack(&L5);
        free(w);
        free(b);
    }
    me_pool_free(pool);
}

/* The fp32 summation order that kernels.h documents for the wide-block
 * GEMMs, written out again here: per output, one fmaf per k within chunks of
 * c consecutive k from k = 0 (c the power of two nearest sqrt(K) in log
 * scale, at least 16), and the chunk sums added in order. Without a bias
 * every level that has these kernels must give exactly these bits, at every
 * K (ragged chunks included), tile height and block width. The same
 * emulation with chunks of 16 everywhere must differ at long K, or the test
 * could not tell the chunk lengths apart. */
static float chunked_dot(const float *x, const float *w, int32_t K, int32_t c)
{
    float tot = 0.0f;
    for (int32_t q0 = 0; q0 < K; q0 += c) {
        float a = 0.0f;
        for (int32_t q = q0; q < q0 + c && q < K; q++)
            a = fmaf(x[q], w[q], a);
        tot = q0 == 0 ? a : tot + a;
    }
    return tot;
}

static void test_linear_f32_summation_order(void **state)
{
    const me_kern *k = test_need_level(state);
    static const int32_t KS[] = {1, 15, 16, 17, 100, 511, 512, 768, 1000, 2047, 2048, 3072, 8192};
    const int32_t N = 50, M = 9;
    me_pool *pool = me_pool_create(2);
    assert_non_null(pool);
    for (size_t s = 0; s < sizeof KS / sizeof KS[0]; s++) {
        int32_t K = KS[s];
        int32_t c = (int32_t)1 << lround(log2((double)K) / 2.0);
        c = c < 16 ? 16 : c;
        float *w = malloc(sizeof *w * (size_t)N * (size_t)K);
        float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
        float *y = malloc(sizeof *y * (size_t)M * (size_t)N);
        assert_true(w && x && y);
        /* magnitudes over 2^-6 .. 2^6, so that every order rounds differently */
        for (size_t j = 0; j < (size_t)N * (size_t)K; j++)
            w[j] = frand() * ldexpf(1.0f, (int)(j * 7 % 13) - 6);
        fill(x, (size_t)M * (size_t)K, 1.0f);
        me_linear L = {.n_out = N, .n_in = K, .w = w, .b = NULL};
        assert_int_equal(k->pack(&L, MEDEMBED_DTYPE_F32), MEDEMBED_OK);
        run_linear(k, &L, x, M, y, NULL, 0, pool);
        int differ16 = 0;
        for (int32_t m = 0; m < M; m++)
            for (int32_t n = 0; n < N; n++) {
                const float *xr = x + (size_t)m * (size_t)K, *wr = w + (size_t)n * (size_t)K;
                float want = chunked_dot(xr, wr, K, c), got = y[(size_t)m * (size_t)N + n];
                if (memcmp(&want, &got, sizeof got) != 0)
                    fail_msg("%s K=%d (chunks of %d) row %d output %d: %.9g, the documented "
                             "order gives %.9g",
                             me_isa_name(k->isa), K, c, m, n, got, want);
                float old = chunked_dot(xr, wr, K, 16);
                differ16 += memcmp(&old, &got, sizeof got) != 0;
            }
        if (c > 16 && K >= 768)
            assert_true(differ16 > M * N / 4);
        k->unpack(&L);
        free(w);
        free(x);
        free(y);
    }
    me_pool_free(pool);
}

static void test_linear_bf16(void **state)
{
    const me_kern *k = test_need_level(state);
    check_linear_level(k, MEDEMBED_DTYPE_BF16, 2e-6, 0);
}

/* bf16 hand-off (ME_EPI_OUT_BF16 then ME_IN_BF16, as the FFN's two layers
 * use it): bit-identical to the fp32 output read back by the next layer, on
 * every level whose bf16_io accepts the layers; the bf16 rows hold
 * me_f32_to_bf16 of the fp32 outputs and zeros up to the row's end (the
 * buffer starts as NaN bytes, which the zero-padded weights would not
 * cancel). N1 = 70 and 96: a padded and an unpadded row. */
static void test_bf16_handoff(void **state)
{
    const me_kern *k = test_need_level(state);
    int takes = 0;
    if (k->bf16_io) { /* the level takes it for bf16 layers in its main layout */
        float w[2 * 40];
        fill(w, 2 * 40, 0.5f);
        me_linear L = {.n_out = 2, .n_in = 40, .w = w};
        assert_int_equal(k->pack(&L, MEDEMBED_DTYPE_BF16), MEDEMBED_OK);
        takes = k->bf16_io(&L);
        k->unpack(&L);
    }
    if (!takes) {
        fprintf(stderr, "SKIP: level %s does not take the bf16 hand-off on this CPU\n",
                me_isa_name(k->isa));
        skip();
    }
    me_pool *pool = me_pool_create(3);
    assert_non_null(pool);
    const int32_t n1s[] = {70, 96};
    for (size_t ni = 0; ni < sizeof n1s / sizeof n1s[0]; ni++) {
        int32_t K1 = 131, N1 = n1s[ni], N2 = 33;
        float *w1 = malloc(sizeof *w1 * (size_t)N1 * (size_t)K1);
        float *w2 = malloc(sizeof *w2 * (size_t)N2 * (size_t)N1);
        float *b1 = malloc(sizeof *b1 * (size_t)N1);
        fill(w1, (size_t)N1 * (size_t)K1, 0.5f);
        fill(w2, (size_t)N2 * (size_t)N1, 0.5f);
        fill(b1, (size_t)N1, 0.5f);
        me_linear L1 = {.n_out = N1, .n_in = K1, .w = w1, .b = b1};
        me_linear L2 = {.n_out = N2, .n_in = N1, .w = w2};
        assert_int_equal(k->pack(&L1, MEDEMBED_DTYPE_BF16), MEDEMBED_OK);
        assert_int_equal(k->pack(&L2, MEDEMBED_DTYPE_BF16), MEDEMBED_OK);
        assert_true(k->bf16_io(&L1) && k->bf16_io(&L2));
        size_t rb = me_bf16_row_bytes(N1);
        for (size_t mi = 0; mi < sizeof MS / sizeof MS[0]; mi++) {
            int32_t M = MS[mi];
            float *x = malloc(sizeof *x * (size_t)M * (size_t)K1);
            float *res = malloc(sizeof *res * (size_t)M * (size_t)N2);
            float *h = malloc(sizeof *h * (size_t)M * (size_t)N1);
            float *y = malloc(sizeof *y * (size_t)M * (size_t)N2);
            float *yf = malloc(sizeof *yf * (size_t)M * (size_t)N2);
            uint8_t *hb = malloc(rb * (size_t)M);
            fill(x, (size_t)M * (size_t)K1, 2.0f);
            fill(res, (size_t)M * (size_t)N2, 1.0f);
            memset(hb, 0xff, rb * (size_t)M);
            run_linear(k, &L1, x, M, h, NULL, ME_EPI_GELU, pool);
            run_linear(k, &L2, h, M, y, res, ME_EPI_RESIDUAL, pool);
            run_linear(k, &L1, x, M, (float *)(void *)hb, NULL, ME_EPI_GELU | ME_EPI_OUT_BF16,
                       pool);
            for (int32_t m = 0; m < M; m++) {
                const uint16_t *row = (const uint16_t *)(const void *)(hb + (size_t)m * rb);
                for (int32_t n = 0; n < (int32_t)(rb / 2); n++) {
                    uint16_t want =
                        n < N1 ? me_f32_to_bf16(h[(size_t)m * (size_t)N1 + (size_t)n]) : 0;
                    if (row[n] != want)
                        fail_msg("%s bf16 out M=%d N=%d [%d,%d]: %04x != %04x",
                                 me_isa_name(k->isa), M, N1, m, n, row[n], want);
                }
            }
            run_linear(k, &L2, (const float *)(const void *)hb, M, yf, res,
                       ME_EPI_RESIDUAL | ME_IN_BF16, pool);
            assert_memory_equal(yf, y, sizeof *y * (size_t)M * (size_t)N2);
            free(x);
            free(res);
            free(h);
            free(y);
            free(yf);
            free(hb);
        }
        k->unpack(&L1);
        k->unpack(&L2);
        free(w1);
        free(w2);
        free(b1);
    }
    me_pool_free(pool);
}

static void test_linear_int8(void **state)
{
    const me_kern *k = test_need_level(state);
    check_linear_level(k, MEDEMBED_DTYPE_INT8, 2e-6, 1);
}

/* The AVX-512 fallbacks for CPUs without AVX512_BF16 or AVX512_VNNI (bf16
 * products in fp32 FMA; int8 in vpmaddwd, in 4-row panels instead of
 * column blocks) run on this CPU by hiding the features: pack reads
 * MEDEMBED_CPU_DISABLE. */
/* Activation rows at the ends of the float range quantize by one rule on
 * every level (me_quant_inv): a row whose max is near FLT_MAX is scaled like
 * any other (the AVX-512 copy once zeroed rows above 3.0e38), a row below
 * 127 / FLT_MAX is a zero row (so y = bias), and an ordinary row in the same
 * call is unaffected. */
static void test_int8_extreme_rows(void **state)
{
    const me_kern *k = test_need_level(state);
    const me_kern *ref = me_kern_for(ME_ISA_SCALAR);
    enum { N = 5, K = 20, M = 3 };
    float w[N * K], b[N], x[M * K], y[M * N], yr[M * N];
    fill(w, N * K, 1e-4f); /* small enough that row 0's outputs stay finite */
    fill(b, N, 0.5f);
    fill(x, M * K, 1.0f);
    for (int32_t i = 0; i < K; i++) {
        x[i] = (i % 2 ? -3.2e38f : 3.2e38f) * ((float)(i + 1) / K); /* max 3.2e38 */
        x[K + i] = (i % 2 ? -1e-38f : 1e-38f) * ((float)(i + 1) / K);
    }
    me_linear Lr = {.n_out = N, .n_in = K, .w = w, .b = b};
    assert_int_equal(ref->pack(&Lr, MEDEMBED_DTYPE_INT8), MEDEMBED_OK);
    run_linear(ref, &Lr, x, M, yr, NULL, 0, NULL);
    for (int32_t n = 0; n < N; n++) {
        assert_true(isfinite(yr[n]) && yr[n] != b[n]);
        assert_true(yr[N + n] == b[n]);
    }
    me_linear L = {.n_out = N, .n_in = K, .w = w, .b = b};
    assert_int_equal(k->pack(&L, MEDEMBED_DTYPE_INT8), MEDEMBED_OK);
    run_linear(k, &L, x, M, y, NULL, 0, NULL);
    for (int32_t m = 0; m < M; m++)
        for (int32_t n = 0; n < N; n++) {
            float a = y[m * N + n], r = yr[m * N + n];
            if (!(fabsf(a - r) <= 1e-5f * fabsf(r) + 1e-6f))
                fail_msg("%s int8 row %d out %d: %.9g, scalar %.9g", me_isa_name(k->isa),
                         m, n, a, r);
        }
    k->unpack(&L);
    ref->unpack(&Lr);
}

static void test_linear_fallbacks(void **state)
{
    (void)state;
    const me_kern *k = me_kern_for(ME_ISA_AVX512);
    me_cpu cpu;
    me_cpu_detect(&cpu);
    if (!k || !cpu.avx512_vnni) {
        fprintf(stderr, "SKIP: no AVX-512 VNNI here; the fallbacks are the normal path\n");
        skip();
    }
    /* the switch is real: the int8 layout (and so its size) changes */
    float w[5 * 70];
    fill(w, 5 * 70, 0.5f);
    me_linear a = {.n_out = 5, .n_in = 70, .w = w}, b = a;
    assert_int_equal(k->pack(&a, MEDEMBED_DTYPE_INT8), MEDEMBED_OK);
    setenv("MEDEMBED_CPU_DISABLE", "avx512_bf16,avx512_vnni", 1);
    me_cpu_detect(&cpu);
    assert_false(cpu.avx512_vnni || cpu.avx512_bf16);
    assert_int_equal(k->pack(&b, MEDEMBED_DTYPE_INT8), MEDEMBED_OK);
    assert_true(a.packed_bytes != b.packed_bytes);
    k->unpack(&a);
    k->unpack(&b);
    check_linear_level(k, MEDEMBED_DTYPE_BF16, 2e-6, 0);
    check_linear_level(k, MEDEMBED_DTYPE_INT8, 2e-6, 1);
}

/* ARM64: the int8 tiles without sdot (smull + sadalp, for CPUs without
 * FEAT_DotProd) on a CPU that has it, against the oracle (exact, as with
 * sdot) and bit for bit against the sdot tiles on the same packed layer. */
static void test_linear_fallbacks_neon(void **state)
{
    (void)state;
    const me_kern *k = test_level(ME_ISA_NEON);
    me_cpu cpu;
    me_cpu_detect(&cpu);
    if (!k || !cpu.dotprod) {
        fprintf(stderr, "SKIP: no NEON level with FEAT_DotProd here; the fallback is the "
                        "normal path where there is a NEON level\n");
        skip();
    }
    const int32_t M = 13, N = 37, K = 131;
    float *w = malloc(sizeof *w * (size_t)N * (size_t)K), *x = malloc(sizeof *x * (size_t)M * K);
    float *ya = malloc(sizeof *ya * (size_t)M * N), *yb = malloc(sizeof *yb * (size_t)M * N);
    assert_true(w && x && ya && yb);
    fill(w, (size_t)N * (size_t)K, 0.5f);
    fill(x, (size_t)M * (size_t)K, 2.0f);
    me_linear L = {.n_out = N, .n_in = K, .w = w};
    assert_int_equal(k->pack(&L, MEDEMBED_DTYPE_INT8), MEDEMBED_OK);
    run_linear(k, &L, x, M, ya, NULL, 0, NULL);
    setenv("MEDEMBED_CPU_DISABLE", "dotprod", 1);
    me_cpu_detect(&cpu);
    assert_false(cpu.dotprod);
    run_linear(k, &L, x, M, yb, NULL, 0, NULL);
    assert_memory_equal(ya, yb, sizeof *ya * (size_t)M * (size_t)N);
    k->unpack(&L);
    free(w);
    free(x);
    free(ya);
    free(yb);
    check_linear_level(k, MEDEMBED_DTYPE_INT8, 2e-6, 1);
}

/* also when an assertion above ends the test early */
static int unset_cpu_disable(void **state)
{
    (void)state;
    unsetenv("MEDEMBED_CPU_DISABLE");
    return 0;
}

/* The scalar oracle itself: bf16 and int8 must follow the rules of
 * kernels.h (here against a direct transcription of them). */
static void test_scalar_rules(void **state)
{
    (void)state;
    assert_int_equal(me_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(me_f32_to_bf16(1.00390625f), 0x3f80); /* tie to even */
    assert_int_equal(me_f32_to_bf16(1.01171875f), 0x3f82); /* tie to even, up */
    assert_int_equal(me_f32_to_bf16(-2.0f), 0xc000);
    float w[5] = {0.5f, -1.0f, 0.25f, 0.0f, 0.999f};
    int8_t q[5];
    float s = me_quant_row_s8(w, 5, q);
    assert_true(fabsf(s - 1.0f / 127.0f) < 1e-9f);
    assert_int_equal(q[0], 64); /* 63.5 rounds to even */
    assert_int_equal(q[1], -127);
    assert_int_equal(q[2], 32);
    assert_int_equal(q[3], 0);
    assert_int_equal(q[4], 127);
    float z[3] = {0, 0, 0};
    q[0] = q[1] = q[2] = 5;
    assert_true(me_quant_row_s8(z, 3, q) == 0.0f); /* all zero: q 0, scale 0 */
    assert_true(q[0] == 0 && q[1] == 0 && q[2] == 0);
    /* me_quant_inv: 0 for a row with nothing to scale */
    assert_true(me_quant_inv(0.0f) == 0.0f);
    assert_true(me_quant_inv(NAN) == 0.0f);
    assert_true(me_quant_inv(INFINITY) == 0.0f);
    assert_true(me_quant_inv(1e-38f) == 0.0f);
    assert_true(me_quant_inv(2.0f) == 63.5f);
    assert_true(me_quant_inv(3.2e38f) == 127.0f / 3.2e38f);
    assert_true(me_quant_inv(FLT_MAX) > 0.0f);
    /* Against the C library's round-to-nearest-even (lrintf), clamped to
     * +-127, on rows of every scale, ties included: with max |w| = 127 the
     * scale is exactly 1, so w = k + 0.5 are ties. */
    enum { NR = 4099 };
    float *r = malloc(sizeof *r * NR);
    int8_t *qr = malloc(NR);
    assert_non_null(r);
    assert_non_null(qr);
    uint32_t st = 12345u;
    for (int t = 0; t < 40; t++) {
        /* odd t: a max that is not a power of two, so 127 / max rounds */
        float span = t == 0 ? 127.0f : ldexpf(t % 2 ? 0.7371f : 1.0f, t - 20);
        for (int32_t i = 0; i < NR; i++) {
            st = st * 1664525u + 1013904223u;
            float u = (float)(st >> 8) / 16777216.0f * 2.0f - 1.0f;
            float tie = (float)((int32_t)(st >> 8) % 255 - 127) + (i % 3 ? 0.5f : 0.0f);
            r[i] = t == 0 ? tie : u * span;
        }
        r[t] = t == 0 ? 127.0f : span; /* the row's max |w| */
        if (t == 0)
            for (int32_t i = 0; i < NR; i++)
                r[i] = r[i] > 127.0f ? 126.5f : r[i] < -127.0f ? -126.5f : r[i];
        float sc = me_quant_row_s8(r, NR, qr);
        float amax = 0.0f;
        for (int32_t i = 0; i < NR; i++)
            amax = fabsf(r[i]) > amax ? fabsf(r[i]) : amax;
        assert_true(sc == amax / 127.0f);
        float inv = 127.0f / amax;
        for (int32_t i = 0; i < NR; i++) {
            long v = lrintf(r[i] * inv);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            if (qr[i] != (int8_t)v)
                fail_msg("row %d, w[%d] = %a: %d, lrintf gives %ld", t, (int)i, (double)r[i],
                         qr[i], v);
        }
    }
    /* a row below 127 / FLT_MAX (127 / max would overflow): a zero row */
    float tiny[3] = {1e-38f, 0.0f, -2e-38f};
    q[0] = q[1] = q[2] = 5;
    assert_true(me_quant_row_s8(tiny, 3, q) == 0.0f);
    assert_int_equal(q[0], 0);
    assert_int_equal(q[1], 0);
    assert_int_equal(q[2], 0);
    /* a NaN weight quantizes to -127, as the clamped lrintf did */
    float nanrow[3] = {1.0f, NAN, -0.5f};
    me_quant_row_s8(nanrow, 3, q);
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], -127);
    assert_int_equal(q[2], -64); /* -63.5 to even */
    free(r);
    free(qr);
}

static void test_gelu(void **state)
{
    const me_kern *k = test_need_level(state);
    int32_t n = 200001;
    float *x = malloc(sizeof *x * (size_t)n), *x0 = malloc(sizeof *x0 * (size_t)n);
    for (int32_t i = 0; i < n; i++)
        x0[i] = -10.0f + 20.0f * (float)i / (float)(n - 1);
    memcpy(x, x0, sizeof *x * (size_t)n);
    k->gelu(x, n);
    double worst_abs = 0, worst_rel = 0;
    for (int32_t i = 0; i < n; i++) {
        double xi = x0[i];
        double r = 0.5 * xi * erfc(-xi / sqrt(2.0));
        double d = fabs(x[i] - r);
        if (d > worst_abs)
            worst_abs = d;
        if (xi > -5 && fabs(r) > 1e-30 && d / fabs(r) > worst_rel)
            worst_rel = d / fabs(r);
    }
    fprintf(stderr, "gelu %s: max abs %.3g, max rel (x > -5) %.3g\n", me_isa_name(k->isa),
            worst_abs, worst_rel);
    assert_true(worst_abs < 6e-7);
    assert_true(worst_rel < 1e-5);
    free(x);
    free(x0);
}

static void test_layernorm(void **state)
{
    const me_kern *k = test_need_level(state);
    const int32_t widths[] = {1, 7, 16, 64, 100, 768};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int32_t n = widths[wi], rows = 5;
        float *x = malloc(sizeof *x * (size_t)n * (size_t)rows);
        float *xr = malloc(sizeof *xr * (size_t)n * (size_t)rows);
        float *g = malloc(sizeof *g * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
        fill(x, (size_t)n * (size_t)rows, 30.0f);
        for (int32_t i = 0; i < n; i++)
            x[i] += 1000.0f; /* a large mean */
        fill(g, (size_t)n, 1.0f);
        fill(b, (size_t)n, 1.0f);
        memcpy(xr, x, sizeof *x * (size_t)n * (size_t)rows);
        k->layernorm(x, rows, n, g, b, 1e-12);
        me_layernorm_scalar(xr, rows, n, g, b, 1e-12);
        for (int32_t i = 0; i < n * rows; i++)
            assert_true(fabs((double)x[i] - xr[i]) <= 1e-6 * (1 + fabs(xr[i])));
        free(x);
        free(xr);
        free(g);
        free(b);
    }
}

static void test_attention(void **state)
{
    const me_kern *k = test_need_level(state);
    /* 70: a 64-key bf16 score tile and a 32-key one; 7 and 13: one query row past a block of 6 */
    const int32_t ns[] = {1, 3, 7, 13, 17, 70, 100};
    /* 80: keys transposed in 16-pair chunks with a tail; 28, 56: four vectors of v with a
     * partial last one (the full-width P v paths must not take them); odd d: no bf16 pairs */
    const int32_t ds[] = {1, 7, 16, 24, 28, 33, 56, 64, 80};
    me_cpu cpu;
    me_cpu_detect(&cpu);
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++) {
            int32_t n = ns[ni], d = ds[di], ld = 3 * d + 5, ldo = d + 3;
            float *qkv = malloc(sizeof *qkv * (size_t)n * (size_t)ld);
            float *o = calloc((size_t)n * (size_t)ldo, sizeof *o);
            float *orf = calloc((size_t)n * (size_t)ldo, sizeof *orf);
            float *o1 = calloc((size_t)n * (size_t)ldo, sizeof *o1);
            fill(qkv, (size_t)n * (size_t)ld, 3.0f);
            /* the work buffer as sized by me_attn_work_bytes, followed by a
             * canary that no level may touch */
            size_t wb = me_attn_work_bytes(n, d);
            uint8_t *work = aligned_alloc(64, (wb + 256 + 63) & ~(size_t)63);
            assert_non_null(work);
            memset(work + wb, 0xA5, 256);
            me_attn_args a = {.q = qkv,
                              .k = qkv + d,
                              .v = qkv + 2 * d,
                              .ld = ld,
                              .o = o,
                              .ldo = ldo,
                              .n = n,
                              .d = d,
                              .n_q = n,
                              .scale = 1.0f / sqrtf((float)d),
                              .work = work};
            k->attention(&a);
            me_attn_args ar = a;
            ar.o = orf;
            me_attention_scalar(&ar);
            for (int32_t i = 0; i < n; i++)
                for (int32_t c = 0; c < d; c++) {
                    double r = orf[(size_t)i * (size_t)ldo + (size_t)c];
                    double v = o[(size_t)i * (size_t)ldo + (size_t)c];
                    if (!(fabs(v - r) <= 2e-6 * (1 + fabs(r))))
                        fail_msg("attention %s n=%d d=%d [%d,%d]: %.9g vs %.9g",
                                 me_isa_name(k->isa), n, d, i, c, v, r);
                }
            /* fp32 scores (bf16 / int8 dtypes): close to the double ones */
            me_attn_args af = a;
            float *of = calloc((size_t)n * (size_t)ldo, sizeof *of);
            af.o = of;
            af.fast = 1;
            k->attention(&af);
            for (int32_t i = 0; i < n * ldo; i++)
                if (!(fabs((double)of[i] - orf[i]) <= 1e-4 * (1 + fabs(orf[i]))))
                    fail_msg("attention (fast) %s n=%d d=%d [%d]: %.9g vs %.9g",
                             me_isa_name(k->isa), n, d, i, of[i], orf[i]);
            /* bf16 products (fast = 2), against the scalar oracle run on
             * bf16-rounded q, k and v: what is left is the bf16 rounding of
             * the softmax numerators (2^-9 relative) and fp32 sums, so the
             * error of an output column is a small fraction of the largest
             * |v| in it (its outputs are convex combinations of v). A
             * tolerance relative to the output itself was data-dependent:
             * sharp softmax rows amplify the q/k rounding far beyond it. */
            float *of1 = malloc(sizeof *of1 * (size_t)n * (size_t)ldo);
            memcpy(of1, of, sizeof *of1 * (size_t)n * (size_t)ldo);
            af.fast = 2;
            memset(of, 0, sizeof *of * (size_t)n * (size_t)ldo);
            k->attention(&af);
            /* Only AVX-512 with AVX512_BF16 (and AMX: its attention is
             * AVX-512's) has bf16 attention (even d);
             * AVX2 runs fast = 2 as fast = 1 (fp32 scores: the same
             * bits), and AVX-512 without it takes fp32 scores too. */
            int bf16_path = k->isa >= ME_ISA_AVX512 && cpu.avx512_bf16 && d % 2 == 0;
            if (!bf16_path) {
                assert_memory_equal(of, of1, sizeof *of * (size_t)n * (size_t)ldo);
            } else {
                float *qkvb = malloc(sizeof *qkvb * (size_t)n * (size_t)ld);
                float *ob = calloc((size_t)n * (size_t)ldo, sizeof *ob);
                for (size_t e = 0; e < (size_t)n * (size_t)ld; e++)
                    qkvb[e] = me_bf16_to_f32(me_f32_to_bf16(qkv[e]));
                me_attn_args ab = a;
                ab.q = qkvb;
                ab.k = qkvb + d;
                ab.v = qkvb + 2 * d;
                ab.o = ob;
                me_attention_scalar(&ab);
                for (int32_t c = 0; c < d; c++) {
                    double vmax = 0;
                    for (int32_t j = 0; j < n; j++)
                        vmax = fmax(vmax, fabs(ab.v[(size_t)j * (size_t)ld + (size_t)c]));
                    for (int32_t i = 0; i < n; i++) {
                        size_t e = (size_t)i * (size_t)ldo + (size_t)c;
                        if (!(fabs((double)of[e] - ob[e]) <= 4e-3 * (1 + vmax)))
                            fail_msg("attention (bf16) %s n=%d d=%d [%d,%d]: %.9g vs %.9g",
                                     me_isa_name(k->isa), n, d, i, c, of[e], ob[e]);
                    }
                }
                free(qkvb);
                free(ob);
            }
            free(of1);
            free(of);
            /* only the first query row: bit-identical to the full run */
            me_attn_args a1 = a;
            a1.n_q = 1;
            a1.o = o1;
            k->attention(&a1);
            assert_memory_equal(o1, o, sizeof *o1 * (size_t)d);
            for (size_t e = (size_t)ldo; e < (size_t)n * (size_t)ldo; e++)
                if (o1[e] != 0.0f)
                    fail_msg("attention %s n=%d d=%d: n_q = 1 wrote row %zu",
                             me_isa_name(k->isa), n, d, e / (size_t)ldo);
            /* padding columns untouched */
            for (int32_t i = 0; i < n; i++)
                for (int32_t c = d; c < ldo; c++)
                    assert_true(o[(size_t)i * (size_t)ldo + (size_t)c] == 0.0f);
            for (size_t i = wb; i < wb + 256; i++)
                if (work[i] != 0xA5)
                    fail_msg("attention %s n=%d d=%d wrote past its work buffer (byte %zu)",
                             me_isa_name(k->isa), n, d, i - wb);
            free(qkv);
            free(o);
            free(orf);
            free(o1);
            free(work);
        }
}

/* ranges.h, the latency-mode schedule: every block is handed out exactly
 * once, a task walks its own range from the front (in chunks), and once its range is
 * empty it takes the others' blocks from the back. Task 0 holds on to its
 * first block until another task has taken the last block of its range (5 s
 * at most), so that taking over from the back must happen, whatever the
 * machine's load; its prefetch hint names the block it gets next. The
 * callbacks run on pool threads, so they only record; the test thread
 * checks. */
#define RT_MAX 64
typedef struct {
    me_block_range *r;
    int32_t n, units;
    atomic_int visits[RT_MAX];
    atomic_int by_task[RT_MAX]; /* which task computed the block, + 1 */
    atomic_int bad;             /* a block index out of range */
    int32_t order[8][RT_MAX], n_order[8], hint[8][RT_MAX];
} rt_job;

typedef struct {
    rt_job *j;
    int32_t task;
} rt_ctx;

static void rt_block(void *arg, int32_t b, int32_t next)
{
    rt_ctx *c = arg;
    rt_job *j = c->j;
    if (b < 0 || b >= j->units || j->n_order[c->task] >= RT_MAX) {
        atomic_store(&j->bad, 1);
        return;
    }
    atomic_fetch_add(&j->visits[b], 1);
    atomic_store(&j->by_task[b], c->task + 1);
    int32_t k = j->n_order[c->task]++;
    j->order[c->task][k] = b;
    j->hint[c->task][k] = next;
    int32_t hi0 = j->units / j->n; /* range 0 is [0, units / n) */
    if (c->task == 0 && k == 0 && j->n > 1 && hi0 >= 2)
        for (int i = 0; i < 5000 && atomic_load(&j->visits[hi0 - 1]) == 0; i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
}

static void rt_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    rt_ctx c = {arg, (int32_t)task};
    rt_job *j = arg;
    me_ranges_work(j->r, j->n, (int32_t)task, rt_block, &c);
}

static void test_block_ranges(void **state)
{
    (void)state;
    /* one thread, step by step: the blocks and hints from either end */
    me_block_range one[3];
    int32_t next;
    me_ranges_init(one, 3, 16); /* [0, 5), [5, 10), [10, 16) */
    assert_int_equal(me_range_first(&one[1]), 5);
    assert_int_equal(me_range_take(&one[1], 0, &next), 5);
    assert_int_equal(next, 6);
    assert_int_equal(me_range_take(&one[1], 1, &next), 9);
    assert_int_equal(next, 8);
    assert_int_equal(me_range_take(&one[1], 1, &next), 8);
    assert_int_equal(next, 7);
    assert_int_equal(me_range_take(&one[1], 1, &next), 7);
    assert_int_equal(next, -1); /* 6 is left: the owner's next */
    assert_int_equal(me_range_take(&one[1], 0, &next), 6);
    assert_int_equal(next, -1);
    assert_int_equal(me_range_take(&one[1], 0, &next), -1);
    assert_int_equal(me_range_take(&one[1], 1, &next), -1);
    assert_int_equal(me_range_first(&one[1]), 7); /* empty: lo = hi */
    assert_int_equal(me_range_take(&one[2], 0, &next), 10);
    assert_int_equal(next, 11);
    /* the owner's chunked takes: what is left / ME_RANGE_CHUNK, at least one
     * and at most ME_RANGE_CHUNK_MAX, contiguous from the front, while
     * another taker works from the back */
    me_block_range big[1];
    int32_t count, seen[40] = {0}, lo = 0, hi = 40, takes = 0, b0;
    me_ranges_init(big, 1, 40);
    assert_int_equal(me_range_peek(&big[0]), 0);
    while ((b0 = me_range_take_front(&big[0], &count, &next)) >= 0) {
        int32_t want = (hi - lo) / ME_RANGE_CHUNK;
        want = want < 1 ? 1 : want > ME_RANGE_CHUNK_MAX ? ME_RANGE_CHUNK_MAX : want;
        assert_int_equal(b0, lo);
        assert_int_equal(count, want);
        lo += count;
        assert_int_equal(next, lo < hi ? lo : -1);
        assert_int_equal(me_range_peek(&big[0]), lo < hi ? lo : -1);
        for (int32_t k = 0; k < count; k++)
            seen[b0 + k]++;
        if (++takes % 2 == 0 && lo < hi) { /* the back, now and then */
            assert_int_equal(me_range_take(&big[0], 1, &next), hi - 1);
            seen[--hi]++;
        }
    }
    for (int32_t b = 0; b < 40; b++)
        assert_int_equal(seen[b], 1);
    if (40 / ME_RANGE_CHUNK > 1 && ME_RANGE_CHUNK_MAX > 1)
        assert_true(takes < hi); /* fewer takes than the front's blocks */
    me_ranges_init(big, 1, 3); /* under ME_RANGE_CHUNK blocks: one at a time */
    for (int32_t b = 0; b < 3; b++) {
        assert_int_equal(me_range_take_front(&big[0], &count, &next), b);
        assert_int_equal(count, 1);
        assert_int_equal(next, b < 2 ? b + 1 : -1);
    }
    assert_int_equal(me_range_take_front(&big[0], &count, &next), -1);
    assert_int_equal(me_range_peek(&big[0]), -1);
    assert_int_equal(me_ranges_count(2, 48), 2);
    assert_int_equal(me_ranges_count(8, 3), 3);
    assert_int_equal(me_ranges_count(256, 1000), ME_RANGES_MAX);

    me_pool *pool = me_pool_create(3);
    assert_non_null(pool);
    static const int32_t shapes[][2] = {{1, 1}, {1, 7}, {2, 2}, {2, 48}, {3, 16}, {3, 64}, {5, 9}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int32_t n = shapes[si][0], units = shapes[si][1];
        me_block_range r[8];
        static rt_job j;
        memset(&j, 0, sizeof j);
        me_ranges_init(r, n, units);
        j.r = r;
        j.n = n;
        j.units = units;
        for (int32_t t = 0; t < n; t++)
            assert_int_equal(me_range_first(&r[t]), (int32_t)((int64_t)units * t / n));
        me_pool_run(pool, n, rt_task, &j);
        assert_int_equal(atomic_load(&j.bad), 0);
        for (int32_t b = 0; b < units; b++)
            if (atomic_load(&j.visits[b]) != 1)
                fail_msg("n=%d units=%d: block %d handed out %d times", n, units, b,
                         atomic_load(&j.visits[b]));
        /* task 0: its own blocks in order from the front (a prefix of its
         * range), each hint naming the next of them or -1 at the end */
        int32_t hi0 = units / n, k0 = j.n_order[0];
        for (int32_t k = 0; k < k0 && j.order[0][k] < hi0; k++) {
            assert_int_equal(j.order[0][k], k);
            if (k + 1 < k0 && j.order[0][k + 1] < hi0)
                assert_int_equal(j.hint[0][k], k + 1);
        }
        /* the others took the end of range 0, from the back (decreasing) */
        if (n > 1 && hi0 >= 2) {
            assert_int_not_equal(atomic_load(&j.by_task[hi0 - 1]), 1);
            for (int32_t t = 1; t < n; t++) {
                int32_t last = hi0;
                for (int32_t k = 0; k < j.n_order[t]; k++)
                    if (j.order[t][k] < hi0) {
                        assert_true(j.order[t][k] < last);
                        last = j.order[t][k];
                    }
            }
        }
    }
    me_pool_free(pool);
}

/* A next-layer hint by turns: none, another layer, the layer itself. */
static const me_linear *ti_next(const me_linear *self, const me_linear *other, int i)
{
    return i % 3 == 0 ? NULL : i % 3 == 1 ? other : self;
}

/* Small M (one m-block: the latency schedule) over many blocks: the same
 * bits on 1, 2, 3 and 5 threads, whoever ends up computing which block,
 * with or without a next-layer prefetch hint. */
static void test_linear_latency_threads(void **state)
{
    const me_kern *k = test_need_level(state);
    int32_t N = 1000, K = 96, M = 5;
    float *w = malloc(sizeof *w * (size_t)N * (size_t)K), *b = malloc(sizeof *b * (size_t)N);
    float *x = malloc(sizeof *x * (size_t)M * (size_t)K);
    float *y1 = malloc(sizeof *y1 * (size_t)M * (size_t)N);
    float *y = malloc(sizeof *y * (size_t)M * (size_t)N);
    fill(w, (size_t)N * (size_t)K, 0.5f);
    fill(b, (size_t)N, 0.5f);
    fill(x, (size_t)M * (size_t)K, 2.0f);
    for (int32_t dt = MEDEMBED_DTYPE_F32; dt <= MEDEMBED_DTYPE_INT8; dt++) {
        me_linear L = {.n_out = N, .n_in = K, .w = w, .b = b};
        assert_int_equal(k->pack(&L, dt), MEDEMBED_OK);
        run_linear(k, &L, x, M, y1, NULL, ME_EPI_GELU, NULL);
        /* the next-layer prefetch hint (a smaller layer, so that a block's worth
         * of prefetch runs past its end; or this layer) changes nothing */
        me_linear L2 = {.n_out = 50, .n_in = 40, .w = w, .b = b};
        assert_int_equal(k->pack(&L2, dt), MEDEMBED_OK);
        L.next = ti_next(&L, &L2, (int)k->isa + dt);
        float y2[5 * 50], y2p[5 * 50];
        run_linear(k, &L2, x, M, y2, NULL, 0, NULL);
        static const int32_t threads[] = {2, 3, 5};
        for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
            me_pool *pool = me_pool_create(threads[ti]);
            assert_non_null(pool);
            /* L2 has 2 or 3 blocks: fewer ranges than threads */
            run_linear(k, &L2, x, M, y2p, NULL, 0, pool);
            assert_memory_equal(y2, y2p, sizeof y2);
            for (int rep = 0; rep < 20; rep++) {
                memset(y, 0xff, sizeof *y * (size_t)M * (size_t)N);
                run_linear(k, &L, x, M, y, NULL, ME_EPI_GELU, pool);
                if (memcmp(y, y1, sizeof *y * (size_t)M * (size_t)N) != 0)
                    fail_msg("%s dtype %d: %d threads differ from 1", me_isa_name(k->isa),
                             dt, threads[ti]);
                L.next = ti_next(&L, &L2, rep);
            }
            me_pool_free(pool);
        }
        k->unpack(&L);
        k->unpack(&L2);
    }
    free(w);
    free(b);
    free(x);
    free(y1);
    free(y);
}

/* The search dot products (dot.c, dot_avx2.c, dot_avx512.c) against the
 * scalar oracle: lengths around every vector width and unroll (0 to 1000),
 * rows at every alignment mod 64 bytes, int8 over its whole range. Both
 * sum in fp32 in different orders, so each is within n u sum |a_k b_k| of
 * the exact value (u = 2^-24), and they within twice that of each other.
 * The result must not depend on where the row sits (the same bits at
 * another address). */
static void test_dot(void **state)
{
    const me_kern *k = test_need_level(state);
    const me_kern *ref = me_kern_for(ME_ISA_SCALAR);
    assert_ptr_equal(ref->dot_f32, me_dot_f32_scalar);
    assert_ptr_equal(ref->dot_i8, me_dot_i8_scalar);
    static const int32_t ns[] = {0,  1,  3,  7,  8,  9,  15, 16,  17,  31,  32,  33, 47,
                                 48, 63, 64, 65, 95, 96, 97, 127, 383, 384, 768, 1000};
    enum { NMAX = 1000, PAD = 16, FBYTES = 4 * 1088, QBYTES = 1088 }; /* multiples of 64 */
    float *a = aligned_alloc(64, FBYTES), *b = aligned_alloc(64, FBYTES);
    float *b2 = aligned_alloc(64, FBYTES);
    int8_t *q = aligned_alloc(64, QBYTES), *q2 = aligned_alloc(64, QBYTES);
    _Static_assert(4 * (NMAX + PAD) <= FBYTES && NMAX + 64 <= QBYTES, "room for every offset");
    assert_true(a && b && b2 && q && q2);
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (int32_t off = 0; off < PAD; off += 5) {
            int32_t n = ns[ni];
            float *ap = a + off, *bp = b + (PAD - 1 - off);
            int8_t *qp = q + 3 * off;
            fill(ap, (size_t)n, 2.0f);
            fill(bp, (size_t)n, 2.0f);
            double ex = 0, mag = 0, exq = 0, magq = 0;
            for (int32_t i = 0; i < n; i++) {
                qp[i] = (int8_t)(i % 7 == 0 ? -128 : i % 7 == 1 ? 127 : (int)(frand() * 127.0f));
                ex += (double)ap[i] * bp[i];
                mag += fabs((double)ap[i] * bp[i]);
                exq += (double)ap[i] * qp[i];
                magq += fabs((double)ap[i] * qp[i]);
            }
            double u = ldexp(1.0, -24);
            float got = k->dot_f32(ap, bp, n), want = ref->dot_f32(ap, bp, n);
            float gotq = k->dot_i8(ap, qp, n), wantq = ref->dot_i8(ap, qp, n);
            if (!(fabs((double)want - ex) <= n * u * mag && fabs((double)got - ex) <= n * u * mag &&
                  fabs((double)got - want) <= 2 * n * u * mag))
                fail_msg("%s dot_f32 n=%d off=%d: %.9g, scalar %.9g, exact %.9g",
                         me_isa_name(k->isa), n, off, got, want, ex);
            if (!(fabs((double)wantq - exq) <= n * u * magq &&
                  fabs((double)gotq - exq) <= n * u * magq &&
                  fabs((double)gotq - wantq) <= 2 * n * u * magq))
                fail_msg("%s dot_i8 n=%d off=%d: %.9g, scalar %.9g, exact %.9g",
                         me_isa_name(k->isa), n, off, gotq, wantq, exq);
            /* the same row elsewhere: the same bits */
            float *bq = b2 + (off + 7) % PAD;
            int8_t *qq = q2 + (off * 11 + 1) % 64;
            memcpy(bq, bp, sizeof *bq * (size_t)n);
            memcpy(qq, qp, (size_t)n);
            float again = k->dot_f32(ap, bq, n), againq = k->dot_i8(ap, qq, n);
            assert_memory_equal(&again, &got, sizeof got);
            assert_memory_equal(&againq, &gotq, sizeof gotq);
        }
    free(a);
    free(b);
    free(b2);
    free(q);
    free(q2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_rules),
        PER_LEVEL(test_linear_f32),
        cmocka_unit_test(test_linear_f32_levels_agree),
        PER_LEVEL(test_linear_f32_summation_order),
        PER_LEVEL(test_linear_bf16),
        PER_LEVEL(test_bf16_handoff),
        PER_LEVEL(test_linear_int8),
        PER_LEVEL(test_int8_extreme_rows),
        cmocka_unit_test(test_block_ranges),
        PER_LEVEL(test_linear_latency_threads),
        cmocka_unit_test_teardown(test_linear_fallbacks, unset_cpu_disable),
        cmocka_unit_test_teardown(test_linear_fallbacks_neon, unset_cpu_disable),
        PER_LEVEL(test_gelu),
        PER_LEVEL(test_layernorm),
        PER_LEVEL(test_attention),
        PER_LEVEL(test_dot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
