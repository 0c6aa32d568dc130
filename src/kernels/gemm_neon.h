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

/* me_kern.peak's loop: `iters` rounds of OP(a, x, x) on 16 independent
 * accumulators of type T (from `zero`), kept in registers. */
#define ME_NEON_PEAK_ROUNDS(T, zero, x, OP, iters)                                                  \
    do {                                                                                           \
        T a_[16];                                                                                  \
        _Pragma("GCC unroll 16") for (int i_ = 0; i_ < 16; i_++) a_[i_] = (zero);                  \
        for (int64_t it_ = 0; it_ < (iters); it_++) {                                              \
            _Pragma("GCC unroll 16") for (int i_ = 0; i_ < 16; i_++) a_[i_] = OP(a_[i_], x, x);    \
            __asm__ volatile("" : "+w"(a_[0]), "+w"(a_[1]), "+w"(a_[2]), "+w"(a_[3]), "+w"(a_[4]), \
                             "+w"(a_[5]), "+w"(a_[6]), "+w"(a_[7]));                               \
            __asm__ volatile("" : "+w"(a_[8]), "+w"(a_[9]), "+w"(a_[10]), "+w"(a_[11]),           \
                             "+w"(a_[12]), "+w"(a_[13]), "+w"(a_[14]), "+w"(a_[15]));              \
        }                                                                                          \
    } while (0)

/* The search dot products (dot_neon.c) and LayerNorm (attn_neon.c). */
float me_dot_f32_neon(const float *a, const float *b, int32_t n);
float me_dot_i8_neon(const float *a, const int8_t *b, int32_t n);
void me_attention_neon(const me_attn_args *a);
void me_layernorm_neon(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps);

#endif
