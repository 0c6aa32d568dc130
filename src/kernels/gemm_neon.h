/*
 * gemm_neon.h - what the NEON level's files share (gemm_neon.c;
 * gemm_dotprod.c, built with FEAT_DotProd for the int8 tiles that use it;
 * gemm_mmla.c, built with FEAT_I8MM and FEAT_BF16 for the smmla and bfmmla
 * tiles).
 */
#ifndef ME_KERNELS_GEMM_NEON_H
#define ME_KERNELS_GEMM_NEON_H

#include "kernels/gemm_sched.h"

/* Outputs per column block, and rows per tile (every dtype). */
#define NB_COLS 16
#define NB_ROWS 6

/* int8 tiles with sdot: tile[r - 1] takes r rows (gemm_dotprod.c). */
extern const me_gemm_tile_fn me_neon_tile_i8_sdot[NB_ROWS];
/* me_kern.peak of int8 with sdot (gemm_dotprod.c). */
double me_neon_peak_sdot(int64_t iters);
/* int8 tiles with smmla, on the same packed blocks (gemm_mmla.c). */
extern const me_gemm_tile_fn me_neon_tile_i8_smmla[NB_ROWS];
/* bf16 tiles with bfmmla, on the bf16 blocks in their [quad][16][4] layout
 * (gemm_neon.c packs it where the CPU has FEAT_BF16), x a bf16 copy. */
extern const me_gemm_tile_fn me_neon_tile_bf16_mmla[NB_ROWS];
/* me_kern.peak with smmla (bf16 = 0) or bfmmla (bf16 = 1) (gemm_mmla.c). */
double me_neon_peak_mmla(int bf16, int64_t iters);

/* The search dot products (dot_neon.c) and LayerNorm (attn_neon.c). */
float me_dot_f32_neon(const float *a, const float *b, int32_t n);
float me_dot_i8_neon(const float *a, const int8_t *b, int32_t n);
void me_layernorm_neon(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps);

#endif
