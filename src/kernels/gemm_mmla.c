/*
 * gemm_mmla.c - the NEON level's tiles with the matrix multiply-accumulate
 * instructions: int8 with smmla (FEAT_I8MM) and bf16 with bfmmla
 * (FEAT_BF16), Armv8.6-A features of Neoverse V1/V2 (Graviton 3 and 4) and
 * Apple M2 and later. Built with +i8mm+bf16; gemm_neon.c runs them only where
 * getauxval's HWCAP2_I8MM / HWCAP2_BF16 say the CPU has them.
 *
 * Both multiply a 2 x 8-byte tile of A by the transpose of a 2 x 8-byte
 * tile of B into 2 x 2 32-bit sums: here A is two rows of x and B two
 * outputs' weights, so an accumulator holds (row r, r + 1) x (output c,
 * c + 1) and a tile keeps ceil(R / 2) row pairs x 8 output pairs (24
 * registers at R = 5, 6). A tile of odd R pairs its last row with zeros.
 *   int8 (smmla): 8 k a step, from the blocks of gemm_neon.c ([quad][16][4]
 *         int8): two consecutive quads zipped (zip1 / zip2 on 32-bit lanes)
 *         give each output's 8 k together; an odd last quad is zipped with
 *         zeros. Exact int32 sums: the same bits as sdot and the scalar
 *         oracle.
 *   bf16 (bfmmla): its own layout ([quad][16][4] bf16: each output's 4 k
 *         together, 128 bytes a quad), x a bf16 copy padded with zeros to
 *         whole quads. Each output's sum runs serially over its K, two k a
 *         step, with Arm's BFDotAdd (Arm ARM, shared/functions/float/bfdotadd):
 *         sum = sum + (w_k x_k + w_k+1 x_k+1), each product and each of the
 *         two additions rounded to odd in fp32, denormal inputs and results
 *         flushed to zero (FPCR.EBF = 0, as Linux starts every process).
 *         That is not the fp32 FMA order of the other bf16 paths, so these
 *         results differ from them in the last bits (within the bf16
 *         budget); they are deterministic as every level's.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels/gemm_neon.h"

/* row pair p's 2 x 2 sums for output pairs 2 c, 2 c + 1 -> the store's
 * layout: out[4 r + c] holds row r's outputs 4 c .. 4 c + 3 */
#define UNPAIR(TO64, FROM64)                                                                   \
    do {                                                                                           \
        for (int p_ = 0; p_ < P; p_++)                                                             \
            for (int c_ = 0; c_ < 4; c_++) {                                                       \
                uint64x2_t lo_ = TO64(a[p_][2 * c_]), hi_ = TO64(a[p_][2 * c_ + 1]);               \
                out[4 * (2 * p_) + c_] = FROM64(vzip1q_u64(lo_, hi_));                             \
                if (2 * p_ + 1 < R)                                                                \
                    out[4 * (2 * p_ + 1) + c_] = FROM64(vzip2q_u64(lo_, hi_));                     \
            }                                                                                      \
    } while (0)

static inline __attribute__((always_inline)) void tile_smmla_body(const uint8_t *x, size_t ldx,
                                                                  const uint8_t *wp, int32_t nq,
                                                                  int32x4_t *out, const int R)
{
    const int P = (R + 1) / 2;
    int32x4_t a[NB_ROWS / 2][8];
#pragma GCC unroll 3
    for (int p = 0; p < P; p++)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            a[p][j] = vdupq_n_s32(0);
    const int8_t *w = (const int8_t *)(const void *)wp;
    const int8_t *xs = (const int8_t *)(const void *)x;
    for (int32_t q = 0; q < nq; q += 2, w += 8 * NB_COLS) {
        int last = q + 1 == nq; /* an odd last quad: its partner is zeros */
        int8x16_t xv[NB_ROWS / 2];
#pragma GCC unroll 3
        for (int p = 0; p < P; p++) {
            const int8_t *r0 = xs + (size_t)(2 * p) * ldx + 4 * (size_t)q;
            int8x8_t lo, hi = vdup_n_s8(0);
            if (last) {
                int32_t v0 = 0, v1 = 0;
                memcpy(&v0, r0, 4);
                if (2 * p + 1 < R)
                    memcpy(&v1, r0 + ldx, 4);
                lo = vreinterpret_s8_s32(vset_lane_s32(v0, vdup_n_s32(0), 0));
                hi = vreinterpret_s8_s32(vset_lane_s32(v1, vdup_n_s32(0), 0));
            } else {
                lo = vld1_s8(r0);
                if (2 * p + 1 < R)
                    hi = vld1_s8(r0 + ldx);
            }
            xv[p] = vcombine_s8(lo, hi);
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int32x4_t wa = vreinterpretq_s32_s8(vld1q_s8(w + 16 * v));
            int32x4_t wb = last ? vdupq_n_s32(0) : vreinterpretq_s32_s8(vld1q_s8(w + 64 + 16 * v));
            int8x16_t z0 = vreinterpretq_s8_s32(vzip1q_s32(wa, wb)); /* outputs 4v, 4v+1 */
            int8x16_t z1 = vreinterpretq_s8_s32(vzip2q_s32(wa, wb)); /* outputs 4v+2, 4v+3 */
#pragma GCC unroll 3
            for (int p = 0; p < P; p++) {
                a[p][2 * v] = vmmlaq_s32(a[p][2 * v], xv[p], z0);
                a[p][2 * v + 1] = vmmlaq_s32(a[p][2 * v + 1], xv[p], z1);
            }
        }
    }
    UNPAIR(vreinterpretq_u64_s32, vreinterpretq_s32_u64);
}

static inline __attribute__((always_inline)) void tile_bfmmla_body(const uint8_t *x, size_t ldx,
                                                                   const uint8_t *wp, int32_t nq,
                                                                   float32x4_t *out, const int R)
{
    const int P = (R + 1) / 2;
    float32x4_t a[NB_ROWS / 2][8];
#pragma GCC unroll 3
    for (int p = 0; p < P; p++)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            a[p][j] = vdupq_n_f32(0.0f);
    const uint16_t *w = (const uint16_t *)(const void *)wp;
    for (int32_t q = 0; q < nq; q++, w += 4 * NB_COLS) {
        bfloat16x8_t xv[NB_ROWS / 2];
#pragma GCC unroll 3
        for (int p = 0; p < P; p++) {
            const uint8_t *r0 = x + (size_t)(2 * p) * ldx + 8 * (size_t)q;
            uint16x4_t lo = vld1_u16((const uint16_t *)(const void *)r0), hi = vdup_n_u16(0);
            if (2 * p + 1 < R)
                hi = vld1_u16((const uint16_t *)(const void *)(r0 + ldx));
            xv[p] = vreinterpretq_bf16_u16(vcombine_u16(lo, hi));
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) { /* outputs 2 j, 2 j + 1 */
            bfloat16x8_t wv = vreinterpretq_bf16_u16(vld1q_u16(w + 8 * j));
#pragma GCC unroll 3
            for (int p = 0; p < P; p++)
                a[p][j] = vbfmmlaq_f32(a[p][j], xv[p], wv);
        }
    }
    UNPAIR(vreinterpretq_u64_f32, vreinterpretq_f32_u64);
}
#undef UNPAIR

#define TILE_MM(R)                                                                                 \
    __attribute__((noinline)) static void tile_smmla_##R(const uint8_t *x, size_t ldx,             \
                                                         const uint8_t *wp, int32_t nq,            \
                                                         const uint8_t *pf, int32_t pfs,           \
                                                         void *out)                                \
    {                                                                                              \
        (void)pf;                                                                                  \
        (void)pfs;                                                                                 \
        tile_smmla_body(x, ldx, wp, nq, (int32x4_t *)out, R);                                     \
    }                                                                                              \
    __attribute__((noinline)) static void tile_bfmmla_##R(const uint8_t *x, size_t ldx,            \
                                                          const uint8_t *wp, int32_t nq,           \
                                                          const uint8_t *pf, int32_t pfs,          \
                                                          void *out)                               \
    {                                                                                              \
        (void)pf;                                                                                  \
        (void)pfs;                                                                                 \
        tile_bfmmla_body(x, ldx, wp, nq, (float32x4_t *)out, R);                                  \
    }
TILE_MM(1)
TILE_MM(2)
TILE_MM(3)
TILE_MM(4)
TILE_MM(5)
TILE_MM(6)
#undef TILE_MM

const me_gemm_tile_fn me_neon_tile_i8_smmla[NB_ROWS] = {tile_smmla_1, tile_smmla_2,
                                                        tile_smmla_3, tile_smmla_4,
                                                        tile_smmla_5, tile_smmla_6};
const me_gemm_tile_fn me_neon_tile_bf16_mmla[NB_ROWS] = {tile_bfmmla_1, tile_bfmmla_2,
                                                         tile_bfmmla_3, tile_bfmmla_4,
                                                         tile_bfmmla_5, tile_bfmmla_6};

/* me_kern.peak with the matrix instructions: 16 independent smmla (32
 * int8 multiply-adds each) or bfmmla (16 bf16 multiply-adds each) a round. */
double me_neon_peak_mmla(int bf16, int64_t iters)
{
    if (bf16) {
        bfloat16x8_t x = vreinterpretq_bf16_u16(vdupq_n_u16(0x3a83)); /* ~1e-3 */
        ME_NEON_PEAK_ROUNDS(float32x4_t, vdupq_n_f32(0.0f), x, vbfmmlaq_f32, iters);
        return (double)iters * 16 * 32;
    }
    int8x16_t x = vdupq_n_s8(1);
    ME_NEON_PEAK_ROUNDS(int32x4_t, vdupq_n_s32(0), x, vmmlaq_s32, iters);
    return (double)iters * 16 * 64;
}
