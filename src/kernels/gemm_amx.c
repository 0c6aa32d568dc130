/*
 * gemm_amx.c - the AMX level: the AVX-512 table with the bf16 and int8
 * linear layers on tiles (tdpbf16ps, tdpbusd). fp32 layers, attention,
 * LayerNorm, GELU and the search dot products are the AVX-512 ones.
 *
 * Built twice: natively here (the Makefile gives *_amx.c the AVX-512 and
 * AMX flags) as me_kern_amx, and with the tile operations emulated in C
 * (gemm_amx_emu_avx512.c defines ME_AMX_EMULATE) as me_kern_amx_emu, which
 * any AVX-512 CPU runs: the tests check the AMX kernels through it on every
 * machine, and emulation against the tiles bit for bit where AMX exists.
 *
 * Layout: the AVX-512 wide column blocks (gemm_avx512.h), packed at load
 * by the AVX-512 code, which are already AMX B tiles: 16 k steps (32 bf16
 * or 64 int8 k) of 16 outputs are 16 rows of 64 bytes at a 192-byte
 * stride, bf16 pairs / int8 quads per column. The pack cache keys on the
 * level's name (model/packcache.c), so a cache written by another level is
 * never adopted here, nor this one's there.
 *
 * A tile of the scheduler (gemm_sched.h): 1 to 16 rows of x's copy (bf16
 * rows, or u8 rows q + 128 with their scales; the AVX-512 copies) by one
 * block of 48 outputs. Tiles: C0..C2 (tmm0-2) the 3 x 16 outputs, A (tmm3)
 * the rows' 16 k steps, B0..B2 (tmm4-6) the block's. Per k tile: one A
 * load, three B loads, three dot products. The results go to the
 * accumulator scratch in the AVX-512 tiles' order, and the AVX-512 store
 * applies the epilogue (dequantization, bias, GELU, residual, bf16 rows).
 *
 * Arithmetic. int8: tdpbusd on the u8 copy sums exactly in int32, as
 * vpdpbusd does, and the store is the same: the AMX int8 output equals the
 * AVX-512 one bit for bit. bf16: each tdpbf16ps adds one 32-k partial sum
 * to each output (amx_tile.h), so an output is the sum, in k order from 0,
 * of its 32-k partials: it depends only on its row of x and of W, never on
 * M, the tile's rows, the task or the thread (kernels.h, the determinism
 * contract). Attention stays on AVX-512: at 128 tokens its products are
 * under 3% of a layer's (2 x 128^2 x 768 against 128 x 7 x 768^2).
 *
 * Tile state: each tile call loads its configuration (rows = the tile's
 * height) and releases the tiles at its end, so no state outlives a call
 * and nothing depends on what ran before on the thread.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/amx_tile.h"
#include "kernels/gemm_avx512.h"
#include "kernels/gemm_sched.h"
#include "kernels/kernels.h"
#include "medembed.h"

#ifdef ME_AMX_EMULATE
#define AMX_TABLE me_kern_amx_emu
#define AMX_ISA ME_ISA_AMX_EMU
#else
#define AMX_TABLE me_kern_amx
#define AMX_ISA ME_ISA_AMX
#endif

void me_attention_avx512(const me_attn_args *a);
void me_layernorm_avx512(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                         double eps);
void me_gelu_avx512(float *x, int32_t n);
float me_dot_f32_avx2(const float *a, const float *b, int32_t n);
float me_dot_i8_avx512(const float *a, const int8_t *b, int32_t n);

#define AMX_ROWS 16
#define B_STRIDE (ME_WB512_COLS * 4) /* bytes per k step of a block */
_Static_assert(AMX_ROWS <= ME_GEMM_ROWS_MAX && AMX_ROWS * B_STRIDE <= ME_GEMM_ACC_BYTES,
               "AMX tiles fit the scheduler's");

/* C0..C2 and A: `rows` rows; B0..B2: 16 k steps; 64 bytes a row each. */
static inline void tile_cfg(me_tilecfg *c, int32_t rows)
{
    memset(c, 0, sizeof *c);
    c->palette = 1;
    for (int t = 0; t < 7; t++) {
        c->colsb[t] = 64;
        c->rows[t] = (uint8_t)(t < 4 ? rows : 16);
    }
}

/* rows x 48 outputs of one block over its `steps` k steps (a multiple of
 * 16) into acc; pf: this tile's share of the next block (pfs bytes a step). */
static inline __attribute__((always_inline)) void tile_amx(const uint8_t *x, size_t ldx,
                                                           const uint8_t *w, int32_t steps,
                                                           const uint8_t *pf, int32_t pfs,
                                                           void *acc, int32_t rows, int i8)
{
    ME_AMX_REGS;
    me_tilecfg cfg;
    tile_cfg(&cfg, rows);
    ME_TILE_CONFIG(&cfg);
    ME_TILE_ZERO(0);
    ME_TILE_ZERO(1);
    ME_TILE_ZERO(2);
    for (int32_t q = 0; q < steps; q += 16) {
        const uint8_t *wk = w + (size_t)q * B_STRIDE;
        if (pf)
            for (int32_t o = 0; o < 16 * pfs; o += 64)
                __builtin_prefetch(pf + (size_t)q * (size_t)pfs + (size_t)o, 0, 2);
        ME_TILE_LOAD(3, x + (size_t)q * 4, ldx);
        ME_TILE_LOAD(4, wk, B_STRIDE);
        ME_TILE_LOAD(5, wk + 64, B_STRIDE);
        ME_TILE_LOAD(6, wk + 128, B_STRIDE);
        if (i8) {
            ME_TILE_DPBUSD(0, 3, 4);
            ME_TILE_DPBUSD(1, 3, 5);
            ME_TILE_DPBUSD(2, 3, 6);
        } else {
            ME_TILE_DPBF16PS(0, 3, 4);
            ME_TILE_DPBF16PS(1, 3, 5);
            ME_TILE_DPBF16PS(2, 3, 6);
        }
    }
    uint8_t *a = acc;
    ME_TILE_STORE(0, a, B_STRIDE);
    ME_TILE_STORE(1, a + 64, B_STRIDE);
    ME_TILE_STORE(2, a + 128, B_STRIDE);
    ME_TILE_RELEASE();
}

#define TILE_AMX(NAME, I8, R)                                                                      \
    static void tile_amx_##NAME##_##R(const uint8_t *x, size_t ldx, const uint8_t *w,             \
                                      int32_t steps, const uint8_t *pf, int32_t pfs, void *acc)    \
    {                                                                                              \
        tile_amx(x, ldx, w, steps, pf, pfs, acc, R, I8);                                           \
    }
#define TILES_AMX(R) TILE_AMX(bf16, 0, R) TILE_AMX(i8, 1, R)
TILES_AMX(1)
TILES_AMX(2)
TILES_AMX(3)
TILES_AMX(4)
TILES_AMX(5)
TILES_AMX(6)
TILES_AMX(7)
TILES_AMX(8)
TILES_AMX(9)
TILES_AMX(10)
TILES_AMX(11)
TILES_AMX(12)
TILES_AMX(13)
TILES_AMX(14)
TILES_AMX(15)
TILES_AMX(16)
#undef TILES_AMX
#undef TILE_AMX

#define TILE_LIST(NAME)                                                                            \
    {                                                                                              \
        tile_amx_##NAME##_1, tile_amx_##NAME##_2, tile_amx_##NAME##_3, tile_amx_##NAME##_4,        \
            tile_amx_##NAME##_5, tile_amx_##NAME##_6, tile_amx_##NAME##_7, tile_amx_##NAME##_8,    \
            tile_amx_##NAME##_9, tile_amx_##NAME##_10, tile_amx_##NAME##_11,                       \
            tile_amx_##NAME##_12, tile_amx_##NAME##_13, tile_amx_##NAME##_14,                      \
            tile_amx_##NAME##_15, tile_amx_##NAME##_16                                             \
    }
/* m-blocks of whole tiles holding 256 KiB of the copy of x, as AVX-512's;
 * the one tile of small M prefetches the whole next block. */
#define UK_AMX(NAME, STORE, QUANT)                                                                 \
    {                                                                                              \
        .cols = ME_WB512_COLS, .rows = AMX_ROWS, .tile = TILE_LIST(NAME), .store = STORE,          \
        .quant = QUANT, .mb_step = AMX_ROWS, .x_bytes = 256u << 10, .task_blocks = 2,              \
        .pf_tiles = 1                                                                              \
    }
static const me_gemm_ukernel UK_AMX_BF16 = UK_AMX(bf16, me_wb512_store_float, me_wb512_quant_bf16);
static const me_gemm_ukernel UK_AMX_I8 = UK_AMX(i8, me_wb512_store_i8, me_wb512_quant_i8);
#undef UK_AMX
#undef TILE_LIST

/* The AVX-512 plan of the wide blocks, with the tiles' microkernel for
 * bf16 and int8 (fp32 keeps AVX-512's). */
static int plan_amx(const me_linear *L, me_gemm_plan *p)
{
    if (!me_wb512_plan(L, p))
        return 0;
    if (L->packed_kind == ME_PACK_BF16)
        p->uk = &UK_AMX_BF16;
    else if (L->packed_kind == ME_PACK_INT8)
        p->uk = &UK_AMX_I8;
    return 1;
}

static void linear_amx(const me_linear *L, const float *x, int32_t M, float *y,
                       const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    me_gemm_linear(plan_amx, L, x, M, y, residual, epi, pool, work);
}

/* The hand-off takes every bf16 layer: the store is AVX-512's wide one. */
static int bf16_io_amx(const me_linear *L)
{
    return L->packed && L->packed_kind == ME_PACK_BF16;
}

/* bf16 / int8: rounds of 4 dot products on resident 16 x 16 tiles (16 x 16
 * outputs x 32 bf16 or 64 int8 k each); fp32: the AVX-512 loop. The
 * emulation runs 1 round in 1024 (its rate is not the hardware's). */
static double peak_amx(int32_t dtype, int64_t iters)
{
    if (dtype != MEDEMBED_DTYPE_BF16 && dtype != MEDEMBED_DTYPE_INT8)
        return me_kern_for(ME_ISA_AVX512)->peak(dtype, iters);
#ifdef ME_AMX_EMULATE
    iters = iters / 1024 > 0 ? iters / 1024 : 1;
#endif
    ME_AMX_REGS;
    me_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    ME_TILE_CONFIG(&cfg);
    for (int64_t it = 0; it < iters; it++) {
        if (dtype == MEDEMBED_DTYPE_BF16) {
            ME_TILE_DPBF16PS(0, 4, 6);
            ME_TILE_DPBF16PS(1, 4, 7);
            ME_TILE_DPBF16PS(2, 5, 6);
            ME_TILE_DPBF16PS(3, 5, 7);
        } else {
            ME_TILE_DPBUSD(0, 4, 6);
            ME_TILE_DPBUSD(1, 4, 7);
            ME_TILE_DPBUSD(2, 5, 6);
            ME_TILE_DPBUSD(3, 5, 7);
        }
    }
    /* the sums leave the tiles (an emulation would otherwise be dead code) */
    _Alignas(64) uint8_t sink[4][16 * 64];
    ME_TILE_STORE(0, sink[0], 64);
    ME_TILE_STORE(1, sink[1], 64);
    ME_TILE_STORE(2, sink[2], 64);
    ME_TILE_STORE(3, sink[3], 64);
    __asm__ volatile("" ::"r"(sink) : "memory");
    ME_TILE_RELEASE();
    return (double)iters * 4.0 * 16 * 16 * (dtype == MEDEMBED_DTYPE_BF16 ? 32 : 64) * 2.0;
}

const me_kern AMX_TABLE = {
    .isa = AMX_ISA,
    .linear = linear_amx,
    .pack = me_wb512_pack,
    .unpack = me_unpack_generic,
    .adopt = me_wb512_adopt,
    .attention = me_attention_avx512,
    .layernorm = me_layernorm_avx512,
    .gelu = me_gelu_avx512,
    .bf16_io = bf16_io_amx,
    .peak = peak_amx,
    .dot_f32 = me_dot_f32_avx2,
    .dot_i8 = me_dot_i8_avx512,
};

#endif
