/*
 * gemm_neon.h - what the NEON level's files share (gemm_neon.c, and
 * gemm_dotprod.c, built with FEAT_DotProd for the int8 tiles that use it).
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

#endif
