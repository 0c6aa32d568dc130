/*
 * gemm_avx512.h - the pieces of the AVX-512 level (gemm_avx512.c) that the
 * AMX level (gemm_amx.c) shares: the wide column blocks, their copies of x
 * and their epilogue store. One owner each; AMX adds only its tiles.
 *
 * A wide block holds ME_WB512_COLS = 48 outputs; for each 4-byte k step (2
 * bf16 or 4 int8 values), their 48 x 4 bytes follow each other. 16 steps
 * of 16 outputs are thus a 16 x 64-byte AMX B tile (a "VNNI" layout: bf16
 * pairs, int8 quads) at a row stride of 192 bytes. The bf16 / int8 blocks
 * have a whole number of 16-step k tiles (K padded to 32 / 64, zeros).
 */
#ifndef ME_KERNELS_GEMM_AVX512_H
#define ME_KERNELS_GEMM_AVX512_H

#include "kernels/gemm_sched.h"

#define ME_WB512_COLS 48

/* Packs / adopts L in wide blocks for `dtype`, whatever the CPU's
 * AVX512_BF16 / VNNI (which the AVX-512 level's own choice depends on). */
int me_wb512_pack(me_linear *L, int32_t dtype);
int me_wb512_adopt(me_linear *L, int32_t dtype, const uint8_t *blob, size_t bytes);
/* The AVX-512 plan of L (its microkernel in p->uk). */
int me_wb512_plan(const me_linear *L, me_gemm_plan *p);
/* The stores of a tile's accumulators, 1 to 16 rows x 48 outputs, at acc
 * + (3 r + c) * 64 bytes (row r, outputs n0 + 16 c ..): fp32 sums, or int32
 * sums of the u8 copy (dequantized with the plan's scales and sums); then
 * bias, GELU, residual, and the bf16 rows of ME_EPI_OUT_BF16. */
void me_wb512_store_float(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows,
                          int32_t n0);
void me_wb512_store_i8(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows,
                       int32_t n0);
/* The copies of x: bf16 rows, u8 rows (q + 128) with their scales. */
void me_wb512_quant_bf16(const me_gemm_job *j, int32_t m0, int32_t m1);
void me_wb512_quant_i8(const me_gemm_job *j, int32_t m0, int32_t m1);

#endif
