/*
 * gemm_dotprod.c - the NEON level's int8 tiles with sdot (FEAT_DotProd,
 * Armv8.2-A and later: Neoverse N1/V1/V2, Graviton 2 to 4, Apple M1 and
 * later). Built with +dotprod; gemm_neon.c runs them only where getauxval's
 * HWCAP_ASIMDDP says the CPU has it, and else its own smull/sadalp tiles,
 * which give the same exact int32 sums from the same packed blocks.
 *
 * A step is a quad of k: 16 outputs' 4 int8 weights each ([quad][16][4],
 * 64 bytes); one sdot adds 4 outputs' 4 products of a quad of q_x to their
 * int32 sums.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels/gemm_neon.h"

static inline __attribute__((always_inline)) void tile_sdot_body(const uint8_t *x, size_t ldx,
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
            a[4 * r] = vdotq_s32(a[4 * r], w0, xb);
            a[4 * r + 1] = vdotq_s32(a[4 * r + 1], w1, xb);
            a[4 * r + 2] = vdotq_s32(a[4 * r + 2], w2, xb);
            a[4 * r + 3] = vdotq_s32(a[4 * r + 3], w3, xb);
        }
    }
#pragma GCC unroll 24
    for (int i = 0; i < 4 * R; i++)
        out[i] = a[i];
}

#define TILE_SDOT(R)                                                                               \
    __attribute__((noinline)) static void tile_sdot_##R(const uint8_t *x, size_t ldx,              \
                                                        const uint8_t *wp, int32_t nq,             \
                                                        const uint8_t *pf, int32_t pfs, void *out) \
    {                                                                                              \
        (void)pf;                                                                                  \
        (void)pfs;                                                                                 \
        tile_sdot_body(x, ldx, wp, nq, (int32x4_t *)out, R);                                      \
    }
TILE_SDOT(1)
TILE_SDOT(2)
TILE_SDOT(3)
TILE_SDOT(4)
TILE_SDOT(5)
TILE_SDOT(6)
#undef TILE_SDOT

const me_gemm_tile_fn me_neon_tile_i8_sdot[NB_ROWS] = {tile_sdot_1, tile_sdot_2, tile_sdot_3,
                                                       tile_sdot_4, tile_sdot_5, tile_sdot_6};

/* me_kern.peak for int8 with sdot: 16 independent sdot a round, 16
 * multiply-adds (4 lanes x 4 products; 32 operations) each. */
double me_neon_peak_sdot(int64_t iters)
{
    int8x16_t x = vdupq_n_s8(1);
    ME_NEON_PEAK_ROUNDS(int32x4_t, vdupq_n_s32(0), x, vdotq_s32, iters);
    return (double)iters * 16 * 32;
}
