/*
 * amx_tile.h - the AMX tile operations the AMX kernels (gemm_amx.c) are
 * written against: configure, load, store, zero, the bf16 and u8 x s8 dot
 * products, release. Two implementations of the same macros:
 *   - native (the default): the AMX instructions (gcc/clang intrinsics;
 *     -mamx-tile -mamx-bf16 -mamx-int8). Tile numbers must be literal
 *     digits: the instructions name their registers.
 *   - emulated (ME_AMX_EMULATE defined): portable C that follows each
 *     instruction's pseudo-code in the Intel SDM (vol. 2B, TILELOADD,
 *     TILESTORED, TILEZERO, LDTILECFG, TDPBF16PS, TDPBUSD), on a register
 *     file that ME_AMX_REGS declares in the calling function. Any CPU runs
 *     it, so the AMX kernels are tested everywhere (gemm_amx_emu_avx512.c
 *     builds them this way; the tests compare both where AMX exists).
 *
 * TDPBF16PS, as the SDM defines it: for each row m of the destination and
 * each of its fp32 columns n, two fp32 sums start at zero, one over the
 * even and one over the odd bf16 elements of the k pairs; each takes its
 * products in increasing k, one FMA each (the exact product plus the sum,
 * rounded once), "with DAZ=FTZ=1, RNE rounding; MXCSR is neither consulted
 * nor updated": bf16 inputs that are denormal count as zero, and results
 * below the smallest normal fp32 become zero (of the same sign). Then the
 * odd sum is added to the even one, and that to the destination (each add
 * again DAZ, FTZ, RNE). So every instruction adds one 32-k partial sum to
 * each output.
 * TDPBUSD: each destination int32 gets, for each k quad, the four products
 * of an unsigned byte of A and a signed byte of B, in wrapping 32-bit
 * arithmetic (exact for the kernels' sums, which stay far from 2^31).
 * LDTILECFG zeroes every tile; TILELOADD fills `rows` rows of `colsb`
 * bytes, the rest of each tile is zero; TILESTORED writes rows x colsb.
 *
 * x86-64 only; the including file guards it.
 */
#ifndef ME_KERNELS_AMX_TILE_H
#define ME_KERNELS_AMX_TILE_H

#include <stdint.h>
#include <string.h>

/* The 64-byte tile configuration of LDTILECFG (palette 1). */
typedef struct me_tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16]; /* bytes per row of tile t (8 tiles; the rest zero) */
    uint8_t rows[16];
} me_tilecfg;
_Static_assert(sizeof(me_tilecfg) == 64, "tile configuration size");

#ifdef ME_AMX_EMULATE

#include <float.h>
#include <math.h>

typedef struct me_amx_regs {
    me_tilecfg cfg;
    _Alignas(64) uint8_t t[8][16][64];
} me_amx_regs;

static inline void me_amx_emu_config(me_amx_regs *r, const me_tilecfg *c)
{
    r->cfg = *c;
    memset(r->t, 0, sizeof r->t);
}

static inline void me_amx_emu_load(me_amx_regs *r, int t, const void *base, size_t stride)
{
    memset(r->t[t], 0, sizeof r->t[t]);
    for (int m = 0; m < r->cfg.rows[t]; m++)
        memcpy(r->t[t][m], (const uint8_t *)base + (size_t)m * stride, r->cfg.colsb[t]);
}

static inline void me_amx_emu_store(const me_amx_regs *r, int t, void *base, size_t stride)
{
    for (int m = 0; m < r->cfg.rows[t]; m++)
        memcpy((uint8_t *)base + (size_t)m * stride, r->t[t][m], r->cfg.colsb[t]);
}

/* bf16 bits as fp32, a denormal as a zero of its sign (DAZ) */
static inline float me_amx_emu_bf16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    if ((h & 0x7f80) == 0)
        h &= 0x8000;
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* FTZ: a result below FLT_MIN in magnitude becomes a zero of its sign. */
static inline float me_amx_emu_ftz(float f)
{
    return fabsf(f) < FLT_MIN ? copysignf(0.0f, f) : f;
}

/* The dot products touch only the register file (fixed-size arrays): not
 * instrumented by ASan, which made them most of a sanitized test run. The
 * loads and stores, which touch the caller's memory, stay checked. */
#if defined(__has_attribute)
#if __has_attribute(no_sanitize_address)
#define ME_AMX_EMU_NOASAN __attribute__((no_sanitize_address))
#endif
#endif
#ifndef ME_AMX_EMU_NOASAN
#define ME_AMX_EMU_NOASAN
#endif

ME_AMX_EMU_NOASAN static inline void me_amx_emu_dpbf16ps(me_amx_regs *r, int c, int a, int b)
{
    /* All 16 columns are computed (past colsb the tiles hold zeros; fixed
     * loop counts let the compiler vectorize), nn of them are written. */
    int kn = r->cfg.colsb[a] / 4, nn = r->cfg.colsb[c] / 4;
    float be[16][16], bo[16][16]; /* B's even and odd elements, k x n, as fp32 (DAZ) */
    for (int k = 0; k < kn; k++)
        for (int n = 0; n < 16; n++) {
            be[k][n] = me_amx_emu_bf16(&r->t[b][k][4 * n]);
            bo[k][n] = me_amx_emu_bf16(&r->t[b][k][4 * n + 2]);
        }
    for (int m = 0; m < r->cfg.rows[c]; m++) {
        float even[16] = {0}, odd[16] = {0};
        for (int k = 0; k < kn; k++) {
            float ae = me_amx_emu_bf16(&r->t[a][m][4 * k]);
            float ao = me_amx_emu_bf16(&r->t[a][m][4 * k + 2]);
            for (int n = 0; n < 16; n++) {
                even[n] = me_amx_emu_ftz(fmaf(ae, be[k][n], even[n]));
                odd[n] = me_amx_emu_ftz(fmaf(ao, bo[k][n], odd[n]));
            }
        }
        for (int n = 0; n < nn; n++) {
            float d;
            memcpy(&d, &r->t[c][m][4 * n], 4);
            d = me_amx_emu_ftz(d); /* DAZ on the destination's value */
            d = me_amx_emu_ftz(d + me_amx_emu_ftz(even[n] + odd[n]));
            memcpy(&r->t[c][m][4 * n], &d, 4);
        }
    }
}

ME_AMX_EMU_NOASAN static inline void me_amx_emu_dpbusd(me_amx_regs *r, int c, int a, int b)
{
    int kn = r->cfg.colsb[a] / 4, nn = r->cfg.colsb[c] / 4;
    int32_t bw[16][4][16]; /* B's signed bytes, k x i x n (all 16 n, as above) */
    for (int k = 0; k < kn; k++)
        for (int i = 0; i < 4; i++)
            for (int n = 0; n < 16; n++)
                bw[k][i][n] = (int8_t)r->t[b][k][4 * n + i];
    for (int m = 0; m < r->cfg.rows[c]; m++) {
        uint32_t s[16];
        memcpy(s, r->t[c][m], sizeof s);
        for (int k = 0; k < kn; k++)
            for (int i = 0; i < 4; i++) {
                int32_t av = r->t[a][m][4 * k + i]; /* unsigned byte */
                for (int n = 0; n < 16; n++)
                    s[n] += (uint32_t)(av * bw[k][i][n]);
            }
        memcpy(r->t[c][m], s, (size_t)nn * 4);
    }
}

#define ME_AMX_REGS me_amx_regs me_amx_r_
#define ME_TILE_CONFIG(cfg) me_amx_emu_config(&me_amx_r_, (cfg))
#define ME_TILE_LOAD(t, base, stride) me_amx_emu_load(&me_amx_r_, t, base, stride)
#define ME_TILE_STORE(t, base, stride) me_amx_emu_store(&me_amx_r_, t, base, stride)
#define ME_TILE_ZERO(tile) memset(me_amx_r_.t[tile], 0, sizeof me_amx_r_.t[tile])
#define ME_TILE_DPBF16PS(c, a, b) me_amx_emu_dpbf16ps(&me_amx_r_, c, a, b)
#define ME_TILE_DPBUSD(c, a, b) me_amx_emu_dpbusd(&me_amx_r_, c, a, b)
#define ME_TILE_RELEASE() ((void)me_amx_r_)

#else /* native */

#include <immintrin.h>

#define ME_AMX_REGS int me_amx_r_ __attribute__((unused)) = 0
/* GCC's _tile_loadconfig tells the compiler that it reads a pointer's
 * worth of the configuration; the empty asm says that all 64 bytes are
 * read, so that none of their stores is dropped or moved past it. */
#define ME_TILE_CONFIG(cfg)                                                                        \
    do {                                                                                           \
        __asm__ volatile("" ::"m"(*(const me_tilecfg *)(cfg)));                                    \
        _tile_loadconfig(cfg);                                                                     \
    } while (0)
#define ME_TILE_LOAD(t, base, stride) _tile_loadd(t, base, (long)(stride))
#define ME_TILE_STORE(t, base, stride) _tile_stored(t, base, (long)(stride))
#define ME_TILE_ZERO(t) _tile_zero(t)
#define ME_TILE_DPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
#define ME_TILE_DPBUSD(c, a, b) _tile_dpbusd(c, a, b)
#define ME_TILE_RELEASE() _tile_release()

#endif

#endif
