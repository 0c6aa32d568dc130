/*
 * blocks.h - the packed form the column-block levels share (gemm_avx2.c,
 * gemm_neon.c; blocks.c): one allocation of a header (ME_PACK_HDR bytes),
 * then, for int8, the per-output weight scales (64-byte aligned), then the
 * blocks, each `steps` k steps of a level's step bytes. A level decides the
 * number of blocks, the steps and their bytes (its layout function, shared
 * by its pack and adopt); the header, the offsets, the allocation and the
 * adoption of a pack cache blob are the same for both, here.
 */
#ifndef ME_KERNELS_BLOCKS_H
#define ME_KERNELS_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

typedef struct me_blocks {
    int32_t kind;       /* ME_PACK_* */
    int32_t variant;    /* a level's layout variant of the kind (0: its default) */
    int32_t n_b;        /* column blocks */
    int32_t steps;      /* k steps per block */
    size_t block_bytes; /* steps x the level's step bytes */
    float *scale;       /* int8: per-output scales, one per (padded) output */
    uint8_t *data;      /* the blocks, 64-byte aligned */
} me_blocks;

/* ME_PACK_* for a compute dtype, or ME_PACK_NONE. */
int32_t me_pack_kind(int32_t dtype);

/* Fills h (pointers NULL) for n_b blocks of `steps` steps of step_bytes,
 * with int8 scales for n_b * cols outputs; returns the allocation's bytes
 * and sets *side to the scales' (64-byte rounded; 0 unless int8). */
size_t me_blocks_layout(me_blocks *h, int32_t kind, int32_t variant, int32_t n_b, int32_t cols,
                        int32_t steps, size_t step_bytes, size_t *side);

/* A new allocation of `bytes` for h's layout, its header in place, the
 * scales zeroed, and the blocks too when zero_blocks (else the level's pack
 * writes every byte of them); NULL when out of memory. */
me_blocks *me_blocks_alloc(const me_blocks *h, size_t side, size_t bytes, int zero_blocks);

/* Makes pk (the allocation me_blocks_alloc returned) L's packed form. */
void me_blocks_own(me_linear *L, me_blocks *pk, int32_t dtype, size_t bytes);

/* me_kern.adopt for a block level: blob must be `want` bytes (the size of
 * h's layout) and 64-byte aligned, else MEDEMBED_ERR_FORMAT; L then
 * borrows it under a new header. */
int me_blocks_adopt(me_linear *L, int32_t dtype, const me_blocks *h, size_t side, size_t want,
                    const uint8_t *blob, size_t bytes);

#endif
