/*
 * gemm_sched.h - the GEMM scheduler shared by every SIMD level
 * (gemm_sched.c) and what a level describes to it (kernels.h, "What a SIMD
 * level provides").
 *
 * A level packs W in column blocks: each block holds `cols` outputs, with
 * their weights for each k step together, `steps` steps of block_bytes /
 * steps bytes. Its tiles multiply 1..rows rows of x (or of the level's
 * copy of x) by one block into accumulators, and its store turns those into
 * y with the epilogue. Everything else, the same for every level, is the
 * scheduler's: m-blocks, tasks over (m-block, block range) or per-thread
 * block ranges at small M (ranges.h), making the copy of x once per
 * m-block, and the prefetch policy. Scheduling never changes an output's
 * arithmetic: that depends only on its row of x and its row of W
 * (kernels.h, the determinism contract).
 */
#ifndef ME_KERNELS_GEMM_SCHED_H
#define ME_KERNELS_GEMM_SCHED_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/ranges.h"

/* The most rows a tile may take (the tile table's size). */
#define ME_GEMM_ROWS_MAX 16

typedef struct me_gemm_job me_gemm_job;

/* A tile: rows r = 0..R-1 of x (row r at x + r * ldx bytes; step q of a row
 * at byte q * 4 of it for 4-byte steps, in the level's own format) times
 * block w of `steps` steps, into the level's accumulators at acc (at most
 * ME_GEMM_ACC_BYTES). pf, when not NULL, is this tile's share of the next
 * block: pfs bytes of it per step, to prefetch over the steps. */
typedef void (*me_gemm_tile_fn)(const uint8_t *x, size_t ldx, const uint8_t *w, int32_t steps,
                                const uint8_t *pf, int32_t pfs, void *acc);

/* The accumulators of one tile: 24 zmm registers (AVX-512), or 16 rows of
 * 48 fp32 / int32 (AMX), at most. */
#define ME_GEMM_ACC_BYTES (48 * 64)

/* The microkernel of one level and packed dtype. */
typedef struct me_gemm_ukernel {
    int32_t cols;                         /* outputs per block */
    int32_t rows;                         /* rows per tile at most, <= ME_GEMM_ROWS_MAX */
    me_gemm_tile_fn tile[ME_GEMM_ROWS_MAX]; /* tile[r - 1] takes r rows */
    /* y rows [m, m + rows), outputs [n0, n0 + cols) clipped to N, from a
     * tile's accumulators: dequantization (int8), bias, GELU, residual, in
     * that order (kernels.h), and the bf16 output rows of ME_EPI_OUT_BF16
     * where the level takes it. */
    void (*store)(const me_gemm_job *j, const void *acc, int32_t m, int32_t rows, int32_t n0);
    /* Makes the copy of x rows [m0, m1) that the tiles read (j->xq, row
     * stride j->ldq; int8 row scales into j->xscale); NULL: they read x. */
    void (*quant)(const me_gemm_job *j, int32_t m0, int32_t m1);
    /* Or NULL: a pass over outputs the store finished, rows [m0, m1) x
     * outputs [n0, n1) of consecutive blocks this thread computed (up to
     * task_blocks of them), while they are in cache; for a level whose
     * store leaves part of the epilogue to it (the AVX-512 panels' GELU). */
    void (*finish)(const me_gemm_job *j, int32_t m0, int32_t m1, int32_t n0, int32_t n1);
    int32_t mb_step;     /* m-blocks are whole multiples of this many rows */
    uint32_t x_bytes;    /* bytes of x rows an m-block holds, to stay in L2 */
    int32_t task_blocks; /* blocks per task (large M) at most; halved for balance */
    int32_t pf_tiles;    /* how many of an m-block's first tiles split the next block's
                          * prefetch (1..3; more tiles leave each more room per step);
                          * 0: the tiles prefetch nothing, and small M runs in tasks as
                          * large M does (the per-thread ranges are there so that each
                          * thread can prefetch the block it computes next) */
} me_gemm_ukernel;

/* A packed layer as the scheduler sees it. */
typedef struct me_gemm_plan {
    const me_gemm_ukernel *uk;
    const uint8_t *blocks; /* n_blocks blocks of block_bytes, 64-byte aligned */
    size_t block_bytes;
    int32_t n_blocks;
    int32_t steps;        /* steps per block (the tiles' `steps`) */
    size_t ldq;           /* bytes per row of the copy of x (uk->quant); 0: none */
    const float *scale;   /* int8: per-output weight scales (padded to whole blocks), or NULL */
    const int32_t *wsum;  /* int8 with the u8 offset: 128 * sum q_w per output, or NULL */
} me_gemm_plan;

/* Describes L's packed form, if the level packed it in blocks; returns 0
 * (and L runs on the scalar reference) when it has no packed form. */
typedef int (*me_gemm_plan_fn)(const me_linear *L, me_gemm_plan *p);

/* One call's state; tiles, stores and quant read it. */
struct me_gemm_job {
    const me_linear *L;
    me_gemm_plan p;
    const float *x;      /* fp32 input (M, K) */
    uint8_t *xq;         /* the copy of x (or x itself, ME_IN_BF16), row stride ldq */
    size_t ldq;
    float *xscale;       /* int8: per-row scales of the copy */
    int32_t M, N, K;
    float *y;            /* (M, N) floats, or bf16 rows of ldy_b bytes (ME_EPI_OUT_BF16) */
    size_t ldy_b;
    const float *res;    /* residual (M, N) or NULL */
    uint32_t epi;
    /* scheduling */
    me_gemm_plan_fn plan;
    atomic_int *mb_state; /* per m-block: its copy of x 0 missing, 1 in progress, 2 done */
    int32_t mb_rows, n_mb, ppt;
    me_block_range *ranges; /* small M: one range of blocks per thread (ranges.h) */
    int32_t n_ranges, n_threads;
};

/* me_kern.linear for a level: y = epi(x W^T + b) on L as `plan` describes
 * it (the scalar reference when L is not packed). work: at least
 * me_linear_work_bytes(M, n_in) bytes, 64-byte aligned: the copy of x
 * (M rows of plan's ldq bytes), then M row scales and the m-blocks' state. */
void me_gemm_linear(me_gemm_plan_fn plan, const me_linear *L, const float *x, int32_t M, float *y,
                    const float *residual, uint32_t epi, me_pool *pool, void *work);

#endif
