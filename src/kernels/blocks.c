/*
 * blocks.c - the packed column-block form shared by gemm_avx2.c and
 * gemm_neon.c (blocks.h).
 */
#include "kernels/blocks.h"

#include <stdlib.h>
#include <string.h>

#include "medembed.h"

_Static_assert((sizeof(me_blocks) + 63) / 64 * 64 == ME_PACK_HDR, "me_blocks header size");

#define HDR_BYTES (((sizeof(me_blocks) + 63) / 64) * 64)

int32_t me_pack_kind(int32_t dtype)
{
    return dtype == MEDEMBED_DTYPE_F32    ? ME_PACK_F32
           : dtype == MEDEMBED_DTYPE_BF16 ? ME_PACK_BF16
           : dtype == MEDEMBED_DTYPE_INT8 ? ME_PACK_INT8
                                          : ME_PACK_NONE;
}

size_t me_blocks_layout(me_blocks *h, int32_t kind, int32_t variant, int32_t n_b, int32_t cols,
                        int32_t steps, size_t step_bytes, size_t *side)
{
    memset(h, 0, sizeof *h);
    h->kind = kind;
    h->variant = variant;
    h->n_b = n_b;
    h->steps = steps;
    h->block_bytes = (size_t)steps * step_bytes;
    *side = kind == ME_PACK_INT8 ? ((size_t)n_b * (size_t)cols * 4 + 63) & ~(size_t)63 : 0;
    return HDR_BYTES + *side + (size_t)n_b * h->block_bytes;
}

static void blocks_at(me_blocks *pk, const me_blocks *h, size_t side, const uint8_t *blob)
{
    *pk = *h;
    pk->data = (uint8_t *)(uintptr_t)(blob + HDR_BYTES + side);
    pk->scale = h->kind == ME_PACK_INT8 ? (float *)(uintptr_t)(blob + HDR_BYTES) : NULL;
}

me_blocks *me_blocks_alloc(const me_blocks *h, size_t side, size_t bytes, int zero_blocks)
{
    uint8_t *blk = me_alloc_big(bytes);
    if (!blk)
        return NULL;
    memset(blk, 0, zero_blocks ? bytes : HDR_BYTES + side);
    me_blocks *pk = (me_blocks *)(void *)blk;
    blocks_at(pk, h, side, blk);
    return pk;
}

void me_blocks_own(me_linear *L, me_blocks *pk, int32_t dtype, size_t bytes)
{
    L->packed = pk;
    L->packed_kind = pk->kind;
    L->packed_dtype = dtype;
    L->packed_bytes = bytes;
}

int me_blocks_adopt(me_linear *L, int32_t dtype, const me_blocks *h, size_t side, size_t want,
                    const uint8_t *blob, size_t bytes)
{
    if (bytes != want || ((uintptr_t)blob & 63))
        return MEDEMBED_ERR_FORMAT;
    me_blocks *pk = malloc(sizeof *pk);
    if (!pk)
        return MEDEMBED_ERR_NOMEM;
    blocks_at(pk, h, side, blob);
    me_blocks_own(L, pk, dtype, bytes);
    L->packed_borrowed = 1;
    return MEDEMBED_OK;
}
