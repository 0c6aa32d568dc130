/*
 * gemm_neon.c - the NEON level (ARM64 Advanced SIMD): the packing, tiles
 * and stores of its linear layers (fp32, bf16, int8), which the shared
 * scheduler (gemm_sched.c) runs, and its kernel table.
 *
 * The wide column blocks of gemm_avx2.c (read that header first) at 4
 * lanes and with 32 registers: a block holds NB_COLS = 16 outputs, their
 * weights of each k step together ([block][step][16]), outputs past N zero.
 * A tile of up to NB_ROWS = 6 rows keeps 4 accumulators per row (24
 * registers), loads the step's 4 weight vectors once for every row and
 * multiplies them by a broadcast of the row's x.
 *   fp32: fmla (fused); each output summed serially within chunks of
 *         me_f32_chunk(K) consecutive k, from 0, the chunk sums added in
 *         order: the arithmetic of the AVX2 and AVX-512 fp32 tiles, so an
 *         fp32 GEMM gives the same bits as on those levels.
 *   bf16: where the CPU has FEAT_BF16, bfmmla (gemm_mmla.c) on its own
 *         layout ([quad][16][4] bf16) and a bf16 copy of x: Arm's BFDotAdd
 *         sums (round to odd, denormals flushed; gemm_mmla.c says how), so
 *         other bits than the other levels' within the bf16 budget. Else
 *         weights stored as bf16 and widened to fp32 as they are loaded (a
 *         shift), times a bf16-rounded fp32 copy of x, in the fp32 chunks:
 *         the AVX2 level's bf16 arithmetic (exact products, fp32 sums). The
 *         layout is chosen at pack time and the tiles follow it.
 *   int8: a step is a quad of k ([block][quad][16][4] int8), x a copy of
 *         q_x (int8, zero-padded to whole quads); smmla (gemm_mmla.c) where
 *         the CPU has FEAT_I8MM, sdot (gemm_dotprod.c) where it has
 *         FEAT_DotProd, else smull + addp + sadalp: all the exact int32 sum
 *         of the scalar oracle, so the same bits.
 * Determinism as at every level: an output's arithmetic depends only on its
 * row of x and its row of W.
 */
#include <arm_neon.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/gemm_neon.h"
#include "kernels/kernels.h"
#include "kernels/simd_neon.h"
#include "medembed.h"

/* Packed layer (blocks.h): n_b = ceil(n_out / NB_COLS) blocks of `steps`
 * steps: K (fp32, bf16) or ceil(K / 4) (int8 quads; bf16 quads in the
 * bfmmla layout, variant 1, FEAT_BF16). */
typedef me_blocks pkneon;

static size_t step_bytes(int32_t kind, int32_t mm)
{
    return NB_COLS * (size_t)(mm ? 8 : kind == ME_PACK_BF16 ? 2 : 4);
}

static int32_t cdiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

/* The packed form of an (N, K) layer on this CPU (shared by pack and
 * adopt): bf16 takes the bfmmla layout where the CPU has FEAT_BF16
 * (MEDEMBED_CPU_DISABLE=bf16 hides it). */
static size_t layout_neon(int32_t N, int32_t K, int32_t kind, pkneon *h, size_t *side)
{
    int32_t mm = 0;
    if (kind == ME_PACK_BF16) {
        me_cpu c;
        me_cpu_detect(&c);
        mm = c.arm_bf16;
    }
    return me_blocks_layout(h, kind, mm, cdiv(N, NB_COLS), NB_COLS,
                            kind == ME_PACK_INT8 || mm ? cdiv(K, 4) : K, step_bytes(kind, mm),
                            side);
}

static int pack_neon(me_linear *L, int32_t dtype)
{
    int32_t N = L->n_out, K = L->n_in;
    int32_t kind = me_pack_kind(dtype);
    if (kind == ME_PACK_NONE)
        return MEDEMBED_ERR_UNSUPPORTED;
    int i8 = kind == ME_PACK_INT8;
    pkneon h;
    size_t side, bytes = layout_neon(N, K, kind, &h, &side);
    pkneon *pk = me_blocks_alloc(&h, side, bytes, 1); /* outputs past N, k past K: zero */
    int8_t *q = i8 ? me_alloc_big((size_t)NB_COLS * (size_t)K) : NULL;
    if (!pk || (i8 && !q)) {
        me_free_big(pk);
        me_free_big(q);
        return MEDEMBED_ERR_NOMEM;
    }
    for (int32_t nb = 0; nb < h.n_b; nb++) {
        uint8_t *b = pk->data + (size_t)nb * pk->block_bytes;
        const float *rows[NB_COLS];
        for (int32_t c = 0; c < NB_COLS; c++) {
            int32_t n = nb * NB_COLS + c;
            rows[c] = n < N ? me_linear_row(L, n) : NULL;
            if (i8 && rows[c])
                pk->scale[n] = me_quant_row_s8(rows[c], K, q + (size_t)c * (size_t)K);
        }
        for (int32_t c = 0; c < NB_COLS; c++) {
            if (!rows[c])
                continue; /* zero already */
            for (int32_t k = 0; k < K; k++) {
                if (kind == ME_PACK_F32)
                    ((float *)(void *)b)[(size_t)k * NB_COLS + (size_t)c] = rows[c][k];
                else if (h.variant) /* bfmmla: [quad][16][4] */
                    ((uint16_t *)(void *)b)[((size_t)(k / 4) * NB_COLS + (size_t)c) * 4 +
                                            (size_t)(k % 4)] = me_f32_to_bf16(rows[c][k]);
                else if (kind == ME_PACK_BF16)
                    ((uint16_t *)(void *)b)[(size_t)k * NB_COLS + (size_t)c] =
                        me_f32_to_bf16(rows[c][k]);
                else /* [quad][16][4] */
                    ((int8_t *)(void *)b)[((size_t)(k / 4) * NB_COLS + (size_t)c) * 4 +
                                          (size_t)(k % 4)] = q[(size_t)c * (size_t)K + (size_t)k];
            }
        }
    }
    me_free_big(q);
    me_blocks_own(L, pk, dtype, bytes);
    return MEDEMBED_OK;
}

static inline __attribute__((always_inline)) float32x4_t nb_w(const uint8_t *w, int c,
                                                              const int bf16)
{
    if (bf16)
        return vreinterpretq_f32_u32(
            vshll_n_u16(vld1_u16((const uint16_t *)(const void *)(w + 8 * c)), 16));
    return vld1q_f32((const float *)(const void *)(w + 16 * c));
}

/* fp32 / bf16: R rows of (rounded) fp32 x against one block of K steps;
 * out[4 r + c] gets row r's sums for outputs 4 c .. 4 c + 3. */
static inline __attribute__((always_inline)) void tile_f_body(const float *x, size_t ldx,
                                                              const uint8_t *wp, int32_t K,
                                                              float32x4_t *out, const int R,
                                                              const int bf16)
{
    const size_t sb = (size_t)NB_COLS * (bf16 ? 2 : 4);
    const int32_t chunk = me_f32_chunk(K);
    for (int32_t q0 = 0; q0 < K; q0 += chunk) {
        int32_t q1 = q0 + chunk < K ? q0 + chunk : K;
        float32x4_t a[4 * NB_ROWS];
#pragma GCC unroll 24
        for (int i = 0; i < 4 * R; i++)
            a[i] = vdupq_n_f32(0.0f);
        const uint8_t *w = wp + (size_t)q0 * sb;
        for (int32_t q = q0; q < q1; q++, w += sb) {
            float32x4_t w0 = nb_w(w, 0, bf16), w1 = nb_w(w, 1, bf16), w2 = nb_w(w, 2, bf16),
                        w3 = nb_w(w, 3, bf16);
#pragma GCC unroll 6
            for (int r = 0; r < R; r++) {
                float32x4_t xb = vld1q_dup_f32(x + (size_t)r * ldx + (size_t)q);
                a[4 * r] = vfmaq_f32(a[4 * r], xb, w0);
                a[4 * r + 1] = vfmaq_f32(a[4 * r + 1], xb, w1);
                a[4 * r + 2] = vfmaq_f32(a[4 * r + 2], xb, w2);
                a[4 * r + 3] = vfmaq_f32(a[4 * r + 3], xb, w3);
            }
        }
        if (q0 == 0) {
#pragma GCC unroll 24
            for (int i = 0; i < 4 * R; i++)
                out[i] = a[i];
        } else {
#pragma GCC unroll 24
            for (int i = 0; i < 4 * R; i++)
                out[i] = vaddq_f32(out[i], a[i]);
        }
    }
}

/* int8 without sdot: per quad, smull gives 16 int16 products (|p| <=
 * 127 * 127), addp sums each output's pairs (|s| <= 32258, in int16) and
 * sadalp adds the two pair sums to the output's int32 sum: exact. */
static inline __attribute__((always_inline)) int32x4_t quad_madd(int32x4_t a, int8x16_t w,
                                                                int8x16_t xb)
{
    int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(xb));
    int16x8_t hi = vmull_high_s8(w, xb);
    return vpadalq_s16(a, vpaddq_s16(lo, hi));
}

static inline __attribute__((always_inline)) void tile_i8_body(const uint8_t *x, size_t ldx,
                                                               const uint8_t *wp, int32_t nq,
                                                               int32x4_t *out, const int R)
{
    int32x4_t a[4 * NB_ROWS];
#pragma GCC unroll 24
    for (int i = 0; i < 4 * R; i++)
        a[i] = vdupq_n_s32(0);
    const int8_t *w = (const int8_t *)(const void *)wp;
    for (int32_t q = 0; q < nq; q++, w += 4 * NB_COLS) {
        int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16), w2 = vld1q_s8(w + 32),
                  w3 = vld1q_s8(w + 48);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            int32_t xv;
            memcpy(&xv, x + (size_t)r * ldx + 4 * (size_t)q, 4);
            int8x16_t xb = vreinterpretq_s8_s32(vdupq_n_s32(xv));
            a[4 * r] = quad_madd(a[4 * r], w0, xb);
            a[4 * r + 1] = quad_madd(a[4 * r + 1], w1, xb);
            a[4 * r + 2] = quad_madd(a[4 * r + 2], w2, xb);
            a[4 * r + 3] = quad_madd(a[4 * r + 3], w3, xb);
        }
    }
#pragma GCC unroll 24
    for (int i = 0; i < 4 * R; i++)
        out[i] = a[i];
}

#define TILE_F_ONE(NAME, R, BF16)                                                                  \
    __attribute__((noinline)) static void tile_##NAME##_##R(const uint8_t *x, size_t ldx,          \
                                                            const uint8_t *wp, int32_t K,          \
                                                            const uint8_t *pf, int32_t pfs,        \
                                                            void *out)                             \
    {                                                                                              \
        (void)pf;                                                                                  \
        (void)pfs;                                                                                 \
        tile_f_body((const float *)(const void *)x, ldx / 4, wp, K, (float32x4_t *)out, R, BF16); \
    }
#define TILE_I8(R)                                                                                 \
    __attribute__((noinline)) static void tile_i8_##R(const uint8_t *x, size_t ldx,                \
                                                      const uint8_t *wp, int32_t nq,               \
                                                      const uint8_t *pf, int32_t pfs, void *out)   \
    {                                                                                              \
        (void)pf;                                                                                  \
        (void)pfs;                                                                                 \
        tile_i8_body(x, ldx, wp, nq, (int32x4_t *)out, R);                                        \
    }
#define TILES(R) TILE_F_ONE(f32, R, 0) TILE_F_ONE(bf16, R, 1) TILE_I8(R)
TILES(1)
TILES(2)
TILES(3)
TILES(4)
TILES(5)
TILES(6)
#undef TILES
#undef TILE_F_ONE
#undef TILE_I8

/* GELU as the x86 levels compute it, 0.5 x erfc(-x / sqrt 2) (no
 * cancellation for negative x, where 1 + erf(x / sqrt 2) loses the relative
 * accuracy), 4 lanes at a time (simd_neon.h); the tail through a zeroed
 * vector. */
static void gelu_neon(float *x, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(x + i, me_gelu_f32x4(vld1q_f32(x + i)));
    if (i < n) {
        float t[4] = {0};
        memcpy(t, x + i, sizeof *t * (size_t)(n - i));
        vst1q_f32(t, me_gelu_f32x4(vld1q_f32(t)));
        memcpy(x + i, t, sizeof *t * (size_t)(n - i));
    }
}

/* rows mt..mt+rows-1, outputs n0..n0+15, in the order of the other levels'
 * stores: (float)sum * (s_x s_w) for int8, + bias, GELU, + residual */
static inline __attribute__((always_inline)) void store_nb(const me_gemm_job *j, const void *acc,
                                                           int32_t mt, int32_t rows, int32_t n0,
                                                           const int i8)
{
    const float *b = j->L->b;
    int gelu = (j->epi & ME_EPI_GELU) != 0;
    int resid = (j->epi & ME_EPI_RESIDUAL) != 0;
    size_t ld = (size_t)j->N;
    for (int c = 0; c < 4; c++) {
        int32_t nc = n0 + 4 * c;
        if (nc >= j->N)
            break;
        int32_t nv = j->N - nc < 4 ? j->N - nc : 4;
        float bias[4] = {0}, sw[4] = {0};
        if (b)
            memcpy(bias, b + nc, (size_t)nv * 4);
        if (i8)
            memcpy(sw, j->p.scale + nc, 16); /* padded to whole blocks */
        float32x4_t vb = vld1q_f32(bias), vs = vld1q_f32(sw);
        for (int32_t r = 0; r < rows; r++) {
            size_t o = (size_t)(mt + r) * ld + (size_t)nc;
            float32x4_t v;
            if (i8)
                v = vmulq_f32(vcvtq_f32_s32(((const int32x4_t *)acc)[4 * r + c]),
                              vmulq_f32(vdupq_n_f32(j->xscale[mt + r]), vs));
            else
                v = ((const float32x4_t *)acc)[4 * r + c];
            if (b)
                v = vaddq_f32(v, vb);
            if (gelu)
                v = me_gelu_f32x4(v);
            float t[4];
            vst1q_f32(t, v);
            for (int32_t i = 0; i < nv; i++)
                j->y[o + (size_t)i] = resid ? t[i] + j->res[o + (size_t)i] : t[i];
        }
    }
}

static void store_float(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows,
                        int32_t n0)
{
    store_nb(j, acc, mt, rows, n0, 0);
}

static void store_i8(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows, int32_t n0)
{
    store_nb(j, acc, mt, rows, n0, 1);
}

/* bf16: x rounded to bf16 as me_f32_to_bf16 does, kept as fp32. */
static void round_bf16_rows(const me_gemm_job *j, int32_t m0, int32_t m1)
{
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)j->K;
        uint32_t *q = (uint32_t *)(void *)(j->xq + (size_t)m * j->ldq);
        for (int32_t k = 0; k < j->K; k++)
            q[k] = (uint32_t)me_f32_to_bf16(x[k]) << 16;
    }
}

/* bf16 for bfmmla: x rounded to bf16 (me_f32_to_bf16), the last quad
 * zero-padded. */
static void bf16_rows(const me_gemm_job *j, int32_t m0, int32_t m1)
{
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)j->K;
        uint16_t *q = (uint16_t *)(void *)(j->xq + (size_t)m * j->ldq);
        memset(q, 0, j->ldq);
        for (int32_t k = 0; k < j->K; k++)
            q[k] = me_f32_to_bf16(x[k]);
    }
}

/* int8: q_x and the row scale by the one quantizer (pack.c), the last
 * quad zero-padded. */
static void quant_i8_rows(const me_gemm_job *j, int32_t m0, int32_t m1)
{
    for (int32_t m = m0; m < m1; m++) {
        int8_t *q = (int8_t *)(void *)(j->xq + (size_t)m * j->ldq);
        memset(q, 0, j->ldq);
        j->xscale[m] = me_quant_row_s8(j->x + (size_t)m * (size_t)j->K, j->K, q);
    }
}

/* blocks of 16 outputs; tiles of 6 rows; m-blocks of ~256 KiB of x in
 * multiples of 12 rows */
#define UK_NB(STORE, QUANT)                                                                        \
    .cols = NB_COLS, .rows = NB_ROWS, .store = STORE, .quant = QUANT, .mb_step = 12,              \
    .x_bytes = 256u << 10, .task_blocks = 2, .pf_tiles = 0
static const me_gemm_ukernel UK_F32 = {
    UK_NB(store_float, NULL),
    .tile = {tile_f32_1, tile_f32_2, tile_f32_3, tile_f32_4, tile_f32_5, tile_f32_6},
};
static const me_gemm_ukernel UK_BF16 = {
    UK_NB(store_float, round_bf16_rows),
    .tile = {tile_bf16_1, tile_bf16_2, tile_bf16_3, tile_bf16_4, tile_bf16_5, tile_bf16_6},
};
/* the bfmmla tiles are gemm_mmla.c's (uk_with) */
static const me_gemm_ukernel UK_BF16_MM = {
    UK_NB(store_float, bf16_rows),
};
static const me_gemm_ukernel UK_I8 = {
    UK_NB(store_i8, quant_i8_rows),
    .tile = {tile_i8_1, tile_i8_2, tile_i8_3, tile_i8_4, tile_i8_5, tile_i8_6},
};
/* the tables with the extensions' tiles (gemm_dotprod.c, gemm_mmla.c),
 * filled on first use */
static me_gemm_ukernel g_uk_i8_sdot, g_uk_i8_smmla, g_uk_bf16_mm;
#undef UK_NB

/* *u = base with an extension's tiles, made on first use (the same fields
 * each time: a benign race) */
static const me_gemm_ukernel *uk_with(me_gemm_ukernel *u, const me_gemm_ukernel *base,
                                      const me_gemm_tile_fn tiles[NB_ROWS])
{
    if (!u->cols) {
        me_gemm_ukernel t = *base;
        memcpy(t.tile, tiles, sizeof(me_gemm_tile_fn) * NB_ROWS);
        *u = t;
    }
    return u;
}

static int plan_neon(const me_linear *L, me_gemm_plan *p)
{
    const pkneon *pk = L->packed;
    if (!pk)
        return 0;
    memset(p, 0, sizeof *p);
    if (pk->kind == ME_PACK_INT8) {
        /* MEDEMBED_CPU_DISABLE=i8mm: sdot; dotprod too: the smull tiles */
        me_cpu c;
        me_cpu_detect(&c);
        p->uk = c.i8mm      ? uk_with(&g_uk_i8_smmla, &UK_I8, me_neon_tile_i8_smmla)
                : c.dotprod ? uk_with(&g_uk_i8_sdot, &UK_I8, me_neon_tile_i8_sdot)
                            : &UK_I8;
    } else if (pk->variant) /* the layout decides: pack chose it */
        p->uk = uk_with(&g_uk_bf16_mm, &UK_BF16_MM, me_neon_tile_bf16_mmla);
    else
        p->uk = pk->kind == ME_PACK_F32 ? &UK_F32 : &UK_BF16;
    p->blocks = pk->data;
    p->block_bytes = pk->block_bytes;
    p->n_blocks = pk->n_b;
    p->steps = pk->steps;
    p->ldq = pk->kind == ME_PACK_F32    ? 0
             : pk->variant              ? (size_t)pk->steps * 8
             : pk->kind == ME_PACK_BF16 ? (size_t)L->n_in * 4
                                        : (size_t)pk->steps * 4;
    p->scale = pk->kind == ME_PACK_INT8 ? pk->scale : NULL;
    return 1;
}

static void linear_neon(const me_linear *L, const float *x, int32_t M, float *y,
                        const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    me_gemm_linear(plan_neon, L, x, M, y, residual, epi, pool, work);
}

static double peak_neon(int32_t dtype, int64_t iters)
{
    me_cpu c;
    me_cpu_detect(&c);
    if (dtype == MEDEMBED_DTYPE_BF16 && c.arm_bf16)
        return me_neon_peak_mmla(1, iters);
    if (dtype == MEDEMBED_DTYPE_INT8) {
        if (c.i8mm)
            return me_neon_peak_mmla(0, iters);
        if (c.dotprod)
            return me_neon_peak_sdot(iters);
        /* without sdot: smull + addp + sadalp for 16 multiply-adds, whose
         * rate the fp32 loop below approximates */
    }
    float32x4_t x = vdupq_n_f32(1e-3f);
    ME_NEON_PEAK_ROUNDS(float32x4_t, vdupq_n_f32(0.0f), x, vfmaq_f32, iters);
    return (double)iters * 16 * 8;
}

static int adopt_neon(me_linear *L, int32_t dtype, const uint8_t *blob, size_t bytes)
{
    int32_t kind = me_pack_kind(dtype);
    if (kind == ME_PACK_NONE)
        return MEDEMBED_ERR_UNSUPPORTED;
    pkneon h;
    size_t side, want = layout_neon(L->n_out, L->n_in, kind, &h, &side);
    return me_blocks_adopt(L, dtype, &h, side, want, blob, bytes);
}

const me_kern me_kern_neon = {
    .isa = ME_ISA_NEON,
    .linear = linear_neon,
    .pack = pack_neon,
    .unpack = me_unpack_generic,
    .adopt = adopt_neon,
    .attention = me_attention_neon,
    .layernorm = me_layernorm_neon,
    .gelu = gelu_neon,
    .peak = peak_neon,
    .dot_f32 = me_dot_f32_neon,
    .dot_i8 = me_dot_i8_neon,
};
