/*
 * gemm_avx512.c - AVX-512 linear layers (fp32, bf16, int8) and the
 * AVX-512 kernel table: the packing, tiles and stores of this level; the
 * shared scheduler (gemm_sched.c) runs them.
 *
 * Two formulations. The main one, "wide column blocks" (WB_COLS below),
 * serves every dtype whose dot instruction the CPU has: fp32 (FMA), bf16
 * with AVX512_BF16 (vdpbf16ps) and int8 with VNNI (vpdpbusd). It is the
 * usual broadcast (outer-product) kernel over blocks of 48 outputs, with
 * tiles of up to 8 rows x 48 outputs, and fp32 sums taken in chunks of
 * about sqrt(K) k (me_f32_chunk) so that they stay accurate (see WB_COLS).
 *
 * The second, a "dot-product" GEMM, is the fallback for bf16 without
 * AVX512_BF16 and int8 without VNNI (MEDEMBED_CPU_DISABLE selects it on
 * any CPU, and the kernel tests run it). W is packed in panels of 4 output
 * rows; inside a panel, for each k block, the 4 rows' 64 bytes follow each
 * other ([panel][k block][4][64 B]), so a panel streams as one sequence.
 * A 4x4 tile of outputs keeps 16 vector accumulators, one per output, each
 * lane summing every 16th pair (bf16, emulated in fp32) or quad (int8,
 * vpmaddwd); one fixed pairwise tree (me_hsum16x16) then reduces the 16
 * accumulators into one vector holding the 4x4 tile, which gets the
 * epilogue (bias, GELU, residual) at full width. fp32 does not use it: its
 * x reads from L2 (0.5 byte per flop) and per-tile trees keep it far from
 * peak (docs/PERFORMANCE.md, "GEMM formulation").
 *
 * Why pack fp32 at all (a copy that costs load time): reading W in place
 * from the weight file (4 row streams, unaligned, 4 KiB pages) is slower,
 * the most at small M (docs/PERFORMANCE.md, "Packed weights").
 *
 * Determinism: an output's arithmetic depends only on its row of x and its
 * row of W (fixed chunks or lanes, fixed tree), never on M, the tile
 * position, the task split or the thread; tail rows reuse a valid row
 * pointer (panels) or are simply not computed (wide blocks: tiles of 1 to 8
 * rows), and outputs past N are not stored. int8's bit-exactness with the
 * scalar oracle also relies on the epilogue's multiply and add not being
 * contracted into an FMA: -std=c11 (the Makefile's) implies
 * -ffp-contract=off in GCC.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/gemm_avx512.h"
#include "kernels/gemm_sched.h"
#include "kernels/kernels.h"
#include "kernels/simd_avx512.h"
#include "medembed.h"

void me_attention_avx512(const me_attn_args *a);
void me_layernorm_avx512(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                         double eps);
void me_gelu_avx512(float *x, int32_t n);
float me_dot_f32_avx2(const float *a, const float *b, int32_t n);
float me_dot_i8_avx512(const float *a, const int8_t *b, int32_t n);

/* Packed layer: this header, then (64-byte aligned) int8 scales and sums,
 * then the panels. */
typedef struct {
    int32_t kind;     /* ME_PACK_* */
    int32_t n_panels; /* ceil(n_out / 4) */
    int32_t kblocks;  /* 64-byte k blocks per row: K/16 (f32), K/32 (bf16), K/64 (int8) */
    int32_t n_wb;     /* wide column blocks (fp32; bf16 with AVX512_BF16; int8 with
                       * VNNI): ceil(n_out / WB_COLS); 0 for the panel layout */
    int32_t steps;    /* wide blocks: 4-byte k steps (K fp32, kblocks * 16 bf16/int8) */
    float *scale;     /* int8: per-channel scales, one per (padded) output */
    int32_t *wsum128; /* int8: 128 * sum_k q_w, the u8 offset correction */
    uint8_t *data;    /* panels or wide column blocks */
} pk512;

#define PANEL_BYTES(pk) ((size_t)(pk)->kblocks * 256)

/* Wide column blocks: the layout of every dtype whose CPU has the dot
 * instruction (fp32 FMA; bf16 with AVX512_BF16; int8 with VNNI), for the
 * usual broadcast (outer-product) kernel. A block holds WB_COLS = 48 output
 * rows of W (three vectors); for each 4-byte step of k (1 fp32, 2 bf16 or
 * 4 int8 values), their 48 x 4 bytes follow each other ([block][step][48][4
 * B]); outputs past N and k past K are zero. x (fp32, or its bf16 / u8
 * copy) stays row-major. A tile of up to WB_ROWS = 8 rows keeps 8 x 3
 * accumulators: per step 3 W loads, 8 4-byte broadcasts of x and 24 FMA /
 * vdpbf16ps / vpdpbusd, and the block is reused by every row tile of the
 * task's m-block. No 16-to-1 reduction per output, and only 0.25 byte of
 * W per flop crosses from L2 (fp32): close to peak in every dtype
 * (docs/PERFORMANCE.md, "GEMM formulation").
 *
 * Accuracy. int8 sums are exact integers: the result equals the panels'
 * and the scalar oracle's bit for bit. A plain broadcast kernel would sum
 * each fp32 output serially over K, which misses the golden test's 1e-5
 * (docs/PERFORMANCE.md, "GEMM formulation"); here each output is summed
 * serially within chunks of consecutive steps, from 0, and the chunk sums
 * are added in order: me_f32_chunk(K) steps for fp32 (kernels.h: about
 * sqrt(K), at least 16, which keeps the golden test within 1e-5;
 * docs/PERFORMANCE.md, "fp32 summation order"),
 * WB_CHUNK_BF16 = 64 steps for bf16 (a cosine budget). The chunks start at
 * k = 0 whatever the tile, task or thread, so an output still depends only
 * on its own row of x and of W. */
#define WB_COLS 48
_Static_assert(WB_COLS == ME_WB512_COLS, "gemm_avx512.h");
#define WB_ROWS 8
#define WB_CHUNK_BF16 64
#define WB_BYTES(pk) ((size_t)(pk)->steps * WB_COLS * 4)

static int32_t cdiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

/* ------------------------------------------------------------------------ */
/* Packing                                                                   */
/* ------------------------------------------------------------------------ */

/* w[0..K) to bf16 exactly as me_f32_to_bf16 does (round to nearest even,
 * NaN kept and quieted), 16 at a time: the scalar loop was most of a bf16
 * load's packing time. */
static void row_to_bf16(const float *w, int32_t K, uint16_t *h)
{
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    for (int32_t k = 0; k < K; k += 16) {
        __mmask16 m = me_tail16(K - k);
        __m512i u = _mm512_maskz_loadu_epi32(m, w + k);
        __m256i r = me_round_bf16x16(_mm512_castsi512_ps(u));
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
        __m256i qnan = _mm512_cvtepi32_epi16(
            _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
        _mm256_mask_storeu_epi16(h + k, m, _mm256_mask_mov_epi16(r, nan, qnan));
    }
}

/* The packed form of an (N, K) layer in `dtype` on this CPU: its header
 * fields (pointers as offsets from the allocation's start, see pk512_at)
 * and its size in bytes. The one description of the layout, shared by
 * packing and by adopt512 (a blob from the pack cache), which checks only
 * the size: the pack cache's key holds a hash of a probe layer packed by
 * this code (pc_key in model/packcache.c), so any other change to the
 * packed bytes makes old cache files miss. */
_Static_assert((sizeof(pk512) + 63) / 64 * 64 == ME_PACK_HDR, "pk512 header size");

typedef struct {
    pk512 h;       /* kind, n_panels, kblocks, n_wb, steps; pointers NULL */
    size_t scale;  /* int8: offset of the scales (0 otherwise) */
    size_t wsum;   /* int8: offset of the sums */
    size_t data;   /* offset of the panels or blocks */
    size_t bytes;
} layout512;

static int wide512(int32_t dtype)
{
    me_cpu cpu;
    me_cpu_detect(&cpu);
    return dtype == MEDEMBED_DTYPE_F32 || (dtype == MEDEMBED_DTYPE_INT8 && cpu.avx512_vnni) ||
           (dtype == MEDEMBED_DTYPE_BF16 && cpu.avx512_bf16);
}

static void layout_512(int32_t N, int32_t K, int32_t dtype, int wide, layout512 *lo)
{
    int f32 = dtype == MEDEMBED_DTYPE_F32, i8 = dtype == MEDEMBED_DTYPE_INT8;
    size_t hdr = (sizeof(pk512) + 63) & ~(size_t)63, side, body;
    memset(lo, 0, sizeof *lo);
    lo->h.kind = f32 ? ME_PACK_F32 : i8 ? ME_PACK_INT8 : ME_PACK_BF16;
    if (wide) {
        int32_t nwb = cdiv(N, WB_COLS), kb = f32 ? cdiv(K, 16) : cdiv(K, i8 ? 64 : 32);
        lo->h.kblocks = kb;
        lo->h.n_wb = nwb;
        lo->h.steps = f32 ? K : kb * 16;
        side = i8 ? (size_t)nwb * WB_COLS * 8 : 0; /* scales, sums */
        lo->wsum = hdr + (size_t)nwb * WB_COLS * 4;
        body = (size_t)nwb * (size_t)lo->h.steps * WB_COLS * 4;
    } else { /* the panels: bf16 without AVX512_BF16, int8 without VNNI */
        int32_t np = cdiv(N, 4), kb = cdiv(K, dtype == MEDEMBED_DTYPE_BF16 ? 32 : 64);
        lo->h.n_panels = np;
        lo->h.kblocks = kb;
        side = i8 ? (size_t)np * 4 * 8 : 0;
        lo->wsum = hdr + (size_t)np * 4 * 4;
        body = (size_t)np * (size_t)kb * 256;
    }
    side = (side + 63) & ~(size_t)63;
    lo->scale = i8 ? hdr : 0;
    lo->wsum = i8 ? lo->wsum : 0;
    lo->data = hdr + side;
    lo->bytes = hdr + side + body;
}

/* pk (at the start of a blob of lo->bytes) filled in from the layout. */
static void pk512_at(pk512 *pk, const layout512 *lo, const uint8_t *blob)
{
    *pk = lo->h;
    pk->data = (uint8_t *)(uintptr_t)(blob + lo->data);
    if (lo->scale) {
        pk->scale = (float *)(uintptr_t)(blob + lo->scale);
        pk->wsum128 = (int32_t *)(uintptr_t)(blob + lo->wsum);
    }
}

/* Wide column blocks (see WB_COLS). Each output row is first brought to
 * its 4-byte step form (fp32 as is; bf16 / int8 converted into a zeroed
 * scratch row), then 16 x 16 steps are transposed at a time, so the row
 * reads and the block writes both stay sequential. */
static int pack512_wb(me_linear *L, int32_t dtype)
{
    int32_t N = L->n_out, K = L->n_in;
    int f32 = dtype == MEDEMBED_DTYPE_F32, i8 = dtype == MEDEMBED_DTYPE_INT8;
    layout512 lo;
    layout_512(N, K, dtype, 1, &lo);
    int32_t nwb = lo.h.n_wb, steps = lo.h.steps;
    size_t bytes = lo.bytes;
    uint8_t *blk = me_alloc_big(bytes);
    /* converted rows (bf16 / int8): 16 at a time, each padded to whole steps */
    uint32_t *conv = f32 ? NULL : me_alloc_big((size_t)16 * (size_t)steps * 4);
    if (!blk || (!f32 && !conv)) {
        me_free_big(blk);
        me_free_big(conv);
        return MEDEMBED_ERR_NOMEM;
    }
    pk512 *pk = (pk512 *)(void *)blk;
    memset(blk, 0, lo.data); /* the header's padding too: the blob may be saved */
    pk512_at(pk, &lo, blk);
    for (int32_t wb = 0; wb < nwb; wb++) {
        uint32_t *dst = (uint32_t *)(void *)(pk->data + (size_t)wb * WB_BYTES(pk));
        for (int32_t c0 = 0; c0 < WB_COLS; c0 += 16) {
            const uint32_t *src[16];
            for (int32_t c = 0; c < 16; c++) {
                int32_t n = wb * WB_COLS + c0 + c;
                src[c] = NULL;
                if (n >= N)
                    continue;
                const float *w = me_linear_row(L, n);
                if (f32) {
                    src[c] = (const uint32_t *)(const void *)w;
                    continue;
                }
                uint32_t *row = conv + (size_t)c * (size_t)steps;
                memset(row, 0, (size_t)steps * 4);
                src[c] = row;
                if (!i8) {
                    row_to_bf16(w, K, (uint16_t *)(void *)row);
                    continue;
                }
                int8_t *q = (int8_t *)(void *)row;
                pk->scale[n] = me_quant_row_s8(w, K, q);
                int32_t sum = 0;
                for (int32_t k = 0; k < K; k++)
                    sum += q[k];
                pk->wsum128[n] = 128 * sum;
            }
            for (int32_t q0 = 0; q0 < steps; q0 += 16) {
                int32_t qn = steps - q0 < 16 ? steps - q0 : 16;
                __m512i r[16];
                __mmask16 m = me_tail16(qn);
                for (int32_t c = 0; c < 16; c++)
                    r[c] = src[c] ? _mm512_maskz_loadu_epi32(m, src[c] + q0) : _mm512_setzero_si512();
                me_transpose16x16(r);
                for (int32_t q = 0; q < qn; q++)
                    _mm512_storeu_si512(dst + (size_t)(q0 + q) * WB_COLS + c0, r[q]);
            }
        }
    }
    me_free_big(conv);
    L->packed = pk;
    L->packed_kind = pk->kind;
    L->packed_dtype = dtype;
    L->packed_bytes = bytes;
    return MEDEMBED_OK;
}

static int pack512(me_linear *L, int32_t dtype)
{
    int32_t N = L->n_out, K = L->n_in;
    if (dtype != MEDEMBED_DTYPE_F32 && dtype != MEDEMBED_DTYPE_BF16 &&
        dtype != MEDEMBED_DTYPE_INT8)
        return MEDEMBED_ERR_UNSUPPORTED;
    if (wide512(dtype))
        return pack512_wb(L, dtype);
    /* the panels: bf16 without AVX512_BF16, int8 without VNNI */
    int32_t per_block = dtype == MEDEMBED_DTYPE_BF16 ? 32 : 64;
    layout512 lo;
    layout_512(N, K, dtype, 0, &lo);
    int32_t np = lo.h.n_panels, kb = lo.h.kblocks;
    size_t bytes = lo.bytes;
    uint8_t *blk = me_alloc_big(bytes);
    if (!blk)
        return MEDEMBED_ERR_NOMEM;
    pk512 *pk = (pk512 *)(void *)blk;
    memset(blk, 0, lo.data); /* the header's padding too: the blob may be saved */
    pk512_at(pk, &lo, blk);
    /* zero only the padding (rows past N, the part of the last k block past
     * K): everything else is written below, and touching 100s of MB twice
     * shows in the load time */
    for (int32_t n = 0; n < np * 4; n++)
        for (int32_t b = n < N ? kb - (K % per_block != 0) : 0; b < kb; b++)
            memset(pk->data + (size_t)(n / 4) * PANEL_BYTES(pk) +
                       ((size_t)b * 4 + (size_t)(n % 4)) * 64,
                   0, 64);
    if (dtype == MEDEMBED_DTYPE_BF16) {
        for (int32_t n = 0; n < N; n++) {
            const float *w = me_linear_row(L, n);
            uint8_t *dst = pk->data + (size_t)(n / 4) * PANEL_BYTES(pk) + (size_t)(n % 4) * 64;
            for (int32_t k = 0; k < K; k += 32, dst += 256)
                for (int32_t i = 0; i < 32 && k + i < K; i++)
                    ((uint16_t *)(void *)dst)[i] = me_f32_to_bf16(w[k + i]);
        }
    } else {
        int8_t *row = me_alloc_big((size_t)K);
        if (!row) {
            me_free_big(blk);
            return MEDEMBED_ERR_NOMEM;
        }
        for (int32_t n = 0; n < N; n++) {
            pk->scale[n] = me_quant_row_s8(me_linear_row(L, n), K, row);
            int32_t sum = 0;
            for (int32_t k = 0; k < K; k++) {
                int8_t *dst = (int8_t *)(pk->data + (size_t)(n / 4) * PANEL_BYTES(pk) +
                                         ((size_t)(k / 64) * 4 + (size_t)(n % 4)) * 64);
                dst[k % 64] = row[k];
                sum += row[k];
            }
            pk->wsum128[n] = 128 * sum;
        }
        me_free_big(row);
    }
    L->packed = pk;
    L->packed_kind = pk->kind;
    L->packed_dtype = dtype;
    L->packed_bytes = bytes;
    return MEDEMBED_OK;
}

/* ------------------------------------------------------------------------ */
/* 4x4 tiles                                                                 */
/* ------------------------------------------------------------------------ */

/* a[4c + r] += x_r * w_c for one k block. */
#define TILE_STEP(OP, X0, X1, X2, X3, W0, W1, W2, W3)                                              \
    do {                                                                                           \
        a[0] = OP(a[0], X0, W0);                                                                   \
        a[1] = OP(a[1], X1, W0);                                                                   \
        a[2] = OP(a[2], X2, W0);                                                                   \
        a[3] = OP(a[3], X3, W0);                                                                   \
        a[4] = OP(a[4], X0, W1);                                                                   \
        a[5] = OP(a[5], X1, W1);                                                                   \
        a[6] = OP(a[6], X2, W1);                                                                   \
        a[7] = OP(a[7], X3, W1);                                                                   \
        a[8] = OP(a[8], X0, W2);                                                                   \
        a[9] = OP(a[9], X1, W2);                                                                   \
        a[10] = OP(a[10], X2, W2);                                                                 \
        a[11] = OP(a[11], X3, W2);                                                                 \
        a[12] = OP(a[12], X0, W3);                                                                 \
        a[13] = OP(a[13], X1, W3);                                                                 \
        a[14] = OP(a[14], X2, W3);                                                                 \
        a[15] = OP(a[15], X3, W3);                                                                 \
    } while (0)

#define FMA_PS(acc, x, w) _mm512_fmadd_ps(x, w, acc)
#define DPBF16(acc, x, w) _mm512_dpbf16_ps(acc, (__m512bh)(x), (__m512bh)(w))
#define DPBUSD(acc, x, w) _mm512_dpbusd_epi32(acc, x, w)

/* bf16 without AVX512_BF16: the same products in fp32 FMA (bf16 -> fp32 is a
 * shift), even elements then odd elements of each block per lane. */
__attribute__((noinline)) static __m512 tile_bf16_emu(const uint8_t *x0, const uint8_t *x1,
                                                      const uint8_t *x2, const uint8_t *x3,
                                                      const uint8_t *wp, int32_t kblocks)
{
    __m512 a[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_setzero_ps();
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int32_t kb = 0; kb < kblocks; kb++, wp += 256) {
        size_t o = (size_t)kb * 64;
        __m512i w[4], v[4];
#pragma GCC unroll 16
        for (int c = 0; c < 4; c++)
            w[c] = _mm512_load_si512(wp + 64 * c);
        v[0] = _mm512_load_si512(x0 + o);
        v[1] = _mm512_load_si512(x1 + o);
        v[2] = _mm512_load_si512(x2 + o);
        v[3] = _mm512_load_si512(x3 + o);
        /* even elements: low halves shifted up; odd: high halves masked */
        __m512 we[4], wo[4], ve[4], vo[4];
#pragma GCC unroll 16
        for (int c = 0; c < 4; c++) {
            we[c] = _mm512_castsi512_ps(_mm512_slli_epi32(w[c], 16));
            wo[c] = _mm512_castsi512_ps(_mm512_and_si512(w[c], hi));
            ve[c] = _mm512_castsi512_ps(_mm512_slli_epi32(v[c], 16));
            vo[c] = _mm512_castsi512_ps(_mm512_and_si512(v[c], hi));
        }
        TILE_STEP(FMA_PS, ve[0], ve[1], ve[2], ve[3], we[0], we[1], we[2], we[3]);
        TILE_STEP(FMA_PS, vo[0], vo[1], vo[2], vo[3], wo[0], wo[1], wo[2], wo[3]);
    }
    return me_hsum16x16(a);
}

/* int8 without VNNI (AVX512BW): (q_x + 128) * q_w as 16-bit products summed
 * in pairs (vpmaddwd; |255 * 127| fits), exact, so the result is the VNNI
 * tile's bit for bit and the epilogue is shared. */
__attribute__((noinline)) static __m512i tile_i8_emu(const uint8_t *x0, const uint8_t *x1,
                                                     const uint8_t *x2, const uint8_t *x3,
                                                     const uint8_t *wp, int32_t kblocks)
{
    __m512i a[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_setzero_si512();
    for (int32_t kb = 0; kb < kblocks; kb++, wp += 256) {
        size_t o = (size_t)kb * 64;
        const uint8_t *xs[4] = {x0 + o, x1 + o, x2 + o, x3 + o};
#pragma GCC unroll 16
        for (int h = 0; h < 2; h++) {
            __m512i w[4], v[4];
#pragma GCC unroll 16
            for (int c = 0; c < 4; c++)
                w[c] = _mm512_cvtepi8_epi16(
                    _mm256_load_si256((const __m256i *)(const void *)(wp + 64 * c + 32 * h)));
#pragma GCC unroll 16
            for (int r = 0; r < 4; r++)
                v[r] = _mm512_cvtepu8_epi16(
                    _mm256_load_si256((const __m256i *)(const void *)(xs[r] + 32 * h)));
#define MADD(acc, x, w) _mm512_add_epi32(acc, _mm512_madd_epi16(x, w))
            TILE_STEP(MADD, v[0], v[1], v[2], v[3], w[0], w[1], w[2], w[3]);
#undef MADD
        }
    }
    return me_hsum16x16_i32(a);
}

/* Wide column blocks: R rows of x (row r at x + r * ldx bytes, step q at
 * byte 4 q) against one block of nq steps; out[3 r + c] gets row r's sums
 * for outputs 16 c .. 16 c + 15. fp32 and bf16 sum in chunks of `chunk`
 * steps (see WB_CHUNK_*). pf, when set, is this tile's share of the next
 * block: pfs bytes of it per step (prefetch_step). */

/* Prefetch for step q of a tile: the pfs bytes (64, 96 or 192) at pf + q
 * pfs, so that the first row tiles share the next block out (the
 * scheduler's pf_tiles). T0 (L1 and L2) rather than T1; without these
 * prefetches small M is far slower (docs/PERFORMANCE.md, "GEMM
 * scheduling"). */
static inline __attribute__((always_inline)) void prefetch_step(const uint8_t *pf, int32_t q,
                                                                int32_t pfs)
{
    const char *p = (const char *)pf + (size_t)q * (size_t)pfs;
    _mm_prefetch(p, _MM_HINT_T0);
    if (pfs > 64)
        _mm_prefetch(p + 64, _MM_HINT_T0);
    if (pfs > 128)
        _mm_prefetch(p + 128, _MM_HINT_T0);
}

#define WB_BODY(T, ZERO, ADD, OP, BCAST)                                                           \
    do {                                                                                           \
        for (int32_t q0 = 0; q0 < nq; q0 += chunk) {                                               \
            int32_t q1 = q0 + chunk < nq ? q0 + chunk : nq;                                        \
            T a[3 * WB_ROWS];                                                                      \
            _Pragma("GCC unroll 24") for (int i = 0; i < 3 * R; i++) a[i] = ZERO;                  \
            const uint8_t *w = wp + (size_t)q0 * (WB_COLS * 4);                                    \
            for (int32_t q = q0; q < q1; q++, w += WB_COLS * 4) {                                  \
                if (pf)                                                                            \
                    prefetch_step(pf, q, pfs);                                                     \
                T w0 = (T)_mm512_load_si512(w), w1 = (T)_mm512_load_si512(w + 64);                 \
                T w2 = (T)_mm512_load_si512(w + 128);                                              \
                _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                \
                {                                                                                  \
                    int32_t xv;                                                                    \
                    memcpy(&xv, x + (size_t)r * ldx + 4 * (size_t)q, 4);                           \
                    T xb = BCAST(xv);                                                              \
                    a[3 * r] = OP(a[3 * r], xb, w0);                                               \
                    a[3 * r + 1] = OP(a[3 * r + 1], xb, w1);                                       \
                    a[3 * r + 2] = OP(a[3 * r + 2], xb, w2);                                       \
                }                                                                                  \
            }                                                                                      \
            if (q0 == 0) {                                                                         \
                _Pragma("GCC unroll 24") for (int i = 0; i < 3 * R; i++) out[i] = a[i];            \
            } else {                                                                               \
                _Pragma("GCC unroll 24") for (int i = 0; i < 3 * R; i++) out[i] =                  \
                    ADD(out[i], a[i]);                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define BCAST_PS(v) _mm512_castsi512_ps(_mm512_set1_epi32(v))
#define BCAST_EPI(v) _mm512_set1_epi32(v)

/* fp32: WB_BODY's arithmetic, but each chunk's sums are folded into out by
 * the next chunk's first step, row by row after that row's first FMAs,
 * instead of in a burst of 24 loads, adds and stores between the chunks:
 * the same operations in the same order for every output (the same bits),
 * with 3 more registers live, and faster. The chunk's first step is
 * written out beside the plain steps on purpose: GCC 12 made one inline
 * step function with a fold mode slower (docs/PERFORMANCE.md, "fp32 summation order"). */
static inline __attribute__((always_inline)) void
tile_wb_f32_body(const uint8_t *x, size_t ldx, const uint8_t *wp, int32_t nq, const uint8_t *pf,
                 int32_t pfs, __m512 *out, const int R)
{
    const int32_t chunk = me_f32_chunk(nq); /* nq = K for fp32 */
    __m512 a[3 * WB_ROWS];
#pragma GCC unroll 24
    for (int i = 0; i < 3 * R; i++)
        a[i] = _mm512_setzero_ps();
    for (int32_t q0 = 0; q0 < nq; q0 += chunk) {
        int32_t q1 = q0 + chunk < nq ? q0 + chunk : nq;
        const uint8_t *w = wp + (size_t)q0 * (WB_COLS * 4);
        if (pf)
            prefetch_step(pf, q0, pfs);
        __m512 w0 = _mm512_load_ps(w), w1 = _mm512_load_ps(w + 64);
        __m512 w2 = _mm512_load_ps(w + 128);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            int32_t xv;
            memcpy(&xv, x + (size_t)r * ldx + 4 * (size_t)q0, 4);
            __m512 xb = BCAST_PS(xv);
            __m512 n0 = _mm512_fmadd_ps(xb, w0, _mm512_setzero_ps());
            __m512 n1 = _mm512_fmadd_ps(xb, w1, _mm512_setzero_ps());
            __m512 n2 = _mm512_fmadd_ps(xb, w2, _mm512_setzero_ps());
            if (q0 == chunk) {
                out[3 * r] = a[3 * r];
                out[3 * r + 1] = a[3 * r + 1];
                out[3 * r + 2] = a[3 * r + 2];
            } else if (q0 > chunk) {
                out[3 * r] = _mm512_add_ps(out[3 * r], a[3 * r]);
                out[3 * r + 1] = _mm512_add_ps(out[3 * r + 1], a[3 * r + 1]);
                out[3 * r + 2] = _mm512_add_ps(out[3 * r + 2], a[3 * r + 2]);
            }
            a[3 * r] = n0;
            a[3 * r + 1] = n1;
            a[3 * r + 2] = n2;
        }
        w += WB_COLS * 4;
        for (int32_t q = q0 + 1; q < q1; q++, w += WB_COLS * 4) {
            if (pf)
                prefetch_step(pf, q, pfs);
            w0 = _mm512_load_ps(w);
            w1 = _mm512_load_ps(w + 64);
            w2 = _mm512_load_ps(w + 128);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                int32_t xv;
                memcpy(&xv, x + (size_t)r * ldx + 4 * (size_t)q, 4);
                __m512 xb = BCAST_PS(xv);
                a[3 * r] = _mm512_fmadd_ps(xb, w0, a[3 * r]);
                a[3 * r + 1] = _mm512_fmadd_ps(xb, w1, a[3 * r + 1]);
                a[3 * r + 2] = _mm512_fmadd_ps(xb, w2, a[3 * r + 2]);
            }
        }
    }
    int32_t last = nq > 0 ? (nq - 1) / chunk * chunk : 0; /* the last chunk's first step */
#pragma GCC unroll 24
    for (int i = 0; i < 3 * R; i++)
        out[i] = last == 0 ? a[i] : _mm512_add_ps(out[i], a[i]);
}

static inline __attribute__((always_inline)) void
tile_wb_bf16_body(const uint8_t *x, size_t ldx, const uint8_t *wp, int32_t nq, const uint8_t *pf,
                  int32_t pfs, __m512 *out, const int R)
{
    const int32_t chunk = WB_CHUNK_BF16;
    WB_BODY(__m512, _mm512_setzero_ps(), _mm512_add_ps, DPBF16, BCAST_PS);
}

/* int8: one exact integer sum, no chunks (a single-chunk WB_BODY made GCC
 * keep copies of the accumulators on the stack) */
static inline __attribute__((always_inline)) void
tile_wb_i8_body(const uint8_t *x, size_t ldx, const uint8_t *wp, int32_t nq, const uint8_t *pf,
                int32_t pfs, __m512i *out, const int R)
{
    __m512i a[3 * WB_ROWS];
#pragma GCC unroll 24
    for (int i = 0; i < 3 * R; i++)
        a[i] = _mm512_setzero_si512();
    for (int32_t q = 0; q < nq; q++, wp += WB_COLS * 4) {
        if (pf)
            prefetch_step(pf, q, pfs);
        __m512i w0 = _mm512_load_si512(wp), w1 = _mm512_load_si512(wp + 64);
        __m512i w2 = _mm512_load_si512(wp + 128);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            int32_t xv;
            memcpy(&xv, x + (size_t)r * ldx + 4 * (size_t)q, 4);
            __m512i xb = _mm512_set1_epi32(xv);
            a[3 * r] = _mm512_dpbusd_epi32(a[3 * r], xb, w0);
            a[3 * r + 1] = _mm512_dpbusd_epi32(a[3 * r + 1], xb, w1);
            a[3 * r + 2] = _mm512_dpbusd_epi32(a[3 * r + 2], xb, w2);
        }
    }
#pragma GCC unroll 24
    for (int i = 0; i < 3 * R; i++)
        out[i] = a[i];
}

#define TILE_WB_ONE(NAME, T, R)                                                                    \
    __attribute__((noinline)) static void tile_wb_##NAME##_##R(const uint8_t *x, size_t ldx,       \
                                                               const uint8_t *wp, int32_t nq,      \
                                                               const uint8_t *pf, int32_t pfs,     \
                                                               void *o)                            \
    {                                                                                              \
        tile_wb_##NAME##_body(x, ldx, wp, nq, pf, pfs, (T *)o, R);                                 \
    }
#define TILE_WB(R)                                                                                 \
    TILE_WB_ONE(f32, __m512, R)                                                                    \
    TILE_WB_ONE(bf16, __m512, R)                                                                   \
    TILE_WB_ONE(i8, __m512i, R)
TILE_WB(1)
TILE_WB(2)
TILE_WB(3)
TILE_WB(4)
TILE_WB(5)
TILE_WB(6)
TILE_WB(7)
TILE_WB(8)
#undef TILE_WB
#undef TILE_WB_ONE

/* the tiles by height: 1 .. WB_ROWS rows */
#define TILES_WB(NAME)                                                                             \
    {                                                                                              \
        tile_wb_##NAME##_1, tile_wb_##NAME##_2, tile_wb_##NAME##_3, tile_wb_##NAME##_4,            \
            tile_wb_##NAME##_5, tile_wb_##NAME##_6, tile_wb_##NAME##_7, tile_wb_##NAME##_8         \
    }

/* ------------------------------------------------------------------------ */
/* Epilogue                                                                  */
/* ------------------------------------------------------------------------ */

/* Broadcasts 4 floats (masked to `cols`) to all four 128-bit lanes. */
static __m512 bcast4(const float *p, __mmask8 cm)
{
    return _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(cm, p));
}

/* Panels: the 4x4 tile v (row r in lane group r) of rows m0.., outputs
 * n0..: + bias, + residual; with GELU, gelu_block applies it and then the
 * residual. */
static void store_tile(const me_gemm_job *j, __m512 v, int32_t m0, int32_t rows, int32_t n0)
{
    int32_t cols = j->N - n0 < 4 ? j->N - n0 : 4;
    __mmask8 cm = (__mmask8)((1u << cols) - 1);
    if (j->L->b)
        v = _mm512_add_ps(v, bcast4(j->L->b + n0, cm));
    float *y0 = j->y + (size_t)m0 * (size_t)j->N + (size_t)n0;
    size_t ld = (size_t)j->N;
    if ((j->epi & ME_EPI_RESIDUAL) && !(j->epi & ME_EPI_GELU)) {
        const float *r0 = j->res + (size_t)m0 * (size_t)j->N + (size_t)n0;
        __m512 rv = _mm512_castps128_ps512(_mm_maskz_loadu_ps(cm, r0));
        if (rows > 1)
            rv = _mm512_insertf32x4(rv, _mm_maskz_loadu_ps(cm, r0 + ld), 1);
        if (rows > 2)
            rv = _mm512_insertf32x4(rv, _mm_maskz_loadu_ps(cm, r0 + 2 * ld), 2);
        if (rows > 3)
            rv = _mm512_insertf32x4(rv, _mm_maskz_loadu_ps(cm, r0 + 3 * ld), 3);
        v = _mm512_add_ps(v, rv);
    }
    _mm_mask_storeu_ps(y0, cm, _mm512_castps512_ps128(v));
    if (rows > 1)
        _mm_mask_storeu_ps(y0 + ld, cm, _mm512_extractf32x4_ps(v, 1));
    if (rows > 2)
        _mm_mask_storeu_ps(y0 + 2 * ld, cm, _mm512_extractf32x4_ps(v, 2));
    if (rows > 3)
        _mm_mask_storeu_ps(y0 + 3 * ld, cm, _mm512_extractf32x4_ps(v, 3));
}

/* int8: y = (float)(sum - 128 sum q_w) * (s_x s_w); bias etc. follow. */
static __m512 dequant_tile(const me_gemm_job *j, __m512i acc, int32_t m0, int32_t rows, int32_t n0)
{
    int32_t cols = j->N - n0 < 4 ? j->N - n0 : 4;
    __mmask8 cm = (__mmask8)((1u << cols) - 1);
    __m512i corr = _mm512_broadcast_i32x4(_mm_maskz_loadu_epi32(cm, j->p.wsum + n0));
    acc = _mm512_sub_epi32(acc, corr);
    __m512 sw = bcast4(j->p.scale + n0, cm);
    __m512 sx = _mm512_set1_ps(j->xscale[m0]);
    if (rows > 1)
        sx = _mm512_mask_mov_ps(sx, 0x00f0, _mm512_set1_ps(j->xscale[m0 + 1]));
    if (rows > 2)
        sx = _mm512_mask_mov_ps(sx, 0x0f00, _mm512_set1_ps(j->xscale[m0 + 2]));
    if (rows > 3)
        sx = _mm512_mask_mov_ps(sx, 0xf000, _mm512_set1_ps(j->xscale[m0 + 3]));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(sx, sw));
}

/* Panels: GELU (then the residual, if flagged) over finished outputs while
 * they are still in cache (the scheduler's finish). A pass rather than per
 * tile: per tile the GELU's long dependency chain sits between tiles, while
 * a pass overlaps independent vectors (docs/PERFORMANCE.md, "GEMM
 * scheduling"). */
static void gelu_block(const me_gemm_job *j, int32_t m0, int32_t m1, int32_t n0, int32_t n1)
{
    if (!(j->epi & ME_EPI_GELU))
        return;
    for (int32_t m = m0; m < m1; m++) {
        float *y = j->y + (size_t)m * (size_t)j->N;
        const float *r = (j->epi & ME_EPI_RESIDUAL) ? j->res + (size_t)m * (size_t)j->N : NULL;
        for (int32_t n = n0; n < n1; n += 16) {
            __mmask16 mk = n1 - n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n1 - n)) - 1);
            __m512 v = me_gelu512(_mm512_maskz_loadu_ps(mk, y + n));
            if (r)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, r + n));
            _mm512_mask_storeu_ps(y + n, mk, v);
        }
    }
}

static void store_panel_bf16(const me_gemm_job *j, const void *acc, int32_t m0, int32_t rows,
                             int32_t n0)
{
    store_tile(j, *(const __m512 *)acc, m0, rows, n0);
}

static void store_panel_i8(const me_gemm_job *j, const void *acc, int32_t m0, int32_t rows,
                           int32_t n0)
{
    store_tile(j, dequant_tile(j, *(const __m512i *)acc, m0, rows, n0), m0, rows, n0);
}

/* Wide column blocks: rows mt..mt+rows-1, outputs n0..n0+47, with the
 * operations of dequant_tile + store_tile in the same order (the same
 * bits): (float)(sum - 128 sum q_w) * (s_x s_w) for int8, + bias, GELU, +
 * residual. The GELU is applied per tile, which gives it 24 independent
 * vectors to overlap and saves reloading y. */
static inline __attribute__((always_inline)) void store_wb(const me_gemm_job *j, const void *acc,
                                                           int32_t mt, int32_t rows, int32_t n0,
                                                           const int i8)
{
    const float *b = j->L->b;
    int gelu = (j->epi & ME_EPI_GELU) != 0;
    int resid = (j->epi & ME_EPI_RESIDUAL) != 0;
    size_t ld = (size_t)j->N;
    for (int c = 0; c < 3; c++) {
        int32_t nc = n0 + 16 * c;
        if (nc >= j->N)
            break;
        __mmask16 cm = me_tail16(j->N - nc);
        __m512i corr = _mm512_setzero_si512();
        __m512 sw = _mm512_setzero_ps();
        if (i8) {
            corr = _mm512_maskz_loadu_epi32(cm, j->p.wsum + nc);
            sw = _mm512_maskz_loadu_ps(cm, j->p.scale + nc);
        }
        __m512 bias = b ? _mm512_maskz_loadu_ps(cm, b + nc) : _mm512_setzero_ps();
        for (int32_t r = 0; r < rows; r++) {
            size_t o = (size_t)(mt + r) * ld + (size_t)nc;
            __m512 v;
            if (i8) {
                __m512 s = _mm512_mul_ps(_mm512_set1_ps(j->xscale[mt + r]), sw);
                __m512i a = ((const __m512i *)acc)[3 * r + c];
                v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a, corr)), s);
            } else {
                v = ((const __m512 *)acc)[3 * r + c];
            }
            if (b)
                v = _mm512_add_ps(v, bias);
            if (gelu)
                v = me_gelu512(v);
            if (resid)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(cm, j->res + o));
            if (j->epi & ME_EPI_OUT_BF16) {
                uint8_t *yb = (uint8_t *)(void *)j->y + (size_t)(mt + r) * j->ldy_b;
                _mm256_mask_storeu_epi16(yb + 2 * (size_t)nc, cm, me_round_bf16x16(v));
                continue;
            }
            _mm512_mask_storeu_ps(j->y + o, cm, v);
        }
    }
    /* bf16 rows: the padding after the last output is zero (the next layer
     * multiplies it by its zero-padded weights, and 0 x NaN is not 0) */
    if ((j->epi & ME_EPI_OUT_BF16) && n0 + WB_COLS >= j->N)
        for (int32_t r = 0; r < rows; r++) {
            uint8_t *yb = (uint8_t *)(void *)j->y + (size_t)(mt + r) * j->ldy_b;
            memset(yb + 2 * (size_t)j->N, 0, j->ldy_b - 2 * (size_t)j->N);
        }
}

void me_wb512_store_float(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows,
                           int32_t n0)
{
    store_wb(j, acc, mt, rows, n0, 0);
}

void me_wb512_store_i8(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows,
                        int32_t n0)
{
    store_wb(j, acc, mt, rows, n0, 1);
}

/* ------------------------------------------------------------------------ */
/* The copies of x                                                           */
/* ------------------------------------------------------------------------ */

/* Row m at xq + m * ldq, contiguous, for both layouts. bf16 copy of rows
 * (round to nearest even, as me_f32_to_bf16), zero padded to whole
 * 32-element blocks (ldq / 2 values). */
void me_wb512_quant_bf16(const me_gemm_job *j, int32_t m0, int32_t m1)
{
    int32_t kpad = (int32_t)(j->ldq / 2);
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)j->K;
        uint8_t *q = j->xq + (size_t)m * j->ldq;
        for (int32_t k = 0; k < kpad; k += 16, q += 32)
            _mm256_storeu_si256((__m256i *)(void *)q,
                                me_round_bf16x16(_mm512_maskz_loadu_ps(me_tail16(j->K - k), x + k)));
    }
}

/* u8 copy of rows: q + 128 with q = round(x * 127 / max|x|) (as
 * me_quant_row_s8), padded with 128 (q = 0) to ldq values; the row scale
 * goes to xscale. */
void me_wb512_quant_i8(const me_gemm_job *j, int32_t m0, int32_t m1)
{
    int32_t kpad = (int32_t)j->ldq;
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)j->K;
        uint8_t *q = j->xq + (size_t)m * j->ldq;
        __m512 mx = _mm512_setzero_ps();
        for (int32_t k = 0; k < j->K; k += 16)
            mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(me_tail16(j->K - k), x + k)));
        float amax = _mm512_reduce_max_ps(mx);
        float inv = me_quant_inv(amax); /* 0: a zero row, as in me_quant_row_s8 */
        j->xscale[m] = inv > 0.0f ? amax / 127.0f : 0.0f;
        __m512 vinv = _mm512_set1_ps(inv);
        for (int32_t k = 0; k < kpad; k += 16, q += 16) {
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(me_tail16(j->K - k), x + k), vinv);
            __m512i iv = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            iv = _mm512_max_epi32(_mm512_min_epi32(iv, _mm512_set1_epi32(127)),
                                  _mm512_set1_epi32(-127));
            iv = _mm512_add_epi32(iv, _mm512_set1_epi32(128));
            _mm_storeu_si128((__m128i *)(void *)q, _mm512_cvtepi32_epi8(iv));
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The microkernels and the plan                                             */
/* ------------------------------------------------------------------------ */

/* Panel tiles of 1 to 4 rows: tail rows repeat the first row's pointer
 * (their lanes are not stored). They prefetch nothing (pf_tiles 0). */
#define TILE_PANEL(NAME, EMU, T, R)                                                                \
    static void tile_panel_##NAME##_##R(const uint8_t *x, size_t ldx, const uint8_t *w,            \
                                        int32_t kblocks, const uint8_t *pf, int32_t pfs, void *o)  \
    {                                                                                              \
        (void)pf;                                                                                  \
        (void)pfs;                                                                                 \
        const uint8_t *x1 = R > 1 ? x + ldx : x, *x2 = R > 2 ? x + 2 * ldx : x;                    \
        const uint8_t *x3 = R > 3 ? x + 3 * ldx : x;                                               \
        *(T *)o = EMU(x, x1, x2, x3, w, kblocks);                                                  \
    }
#define TILE_PANELS(R)                                                                             \
    TILE_PANEL(bf16, tile_bf16_emu, __m512, R) TILE_PANEL(i8, tile_i8_emu, __m512i, R)
TILE_PANELS(1)
TILE_PANELS(2)
TILE_PANELS(3)
TILE_PANELS(4)
#undef TILE_PANELS
#undef TILE_PANEL

/* Wide blocks: 48 outputs, tiles of 8 rows; m-blocks of whole pairs of
 * tiles holding 512 KiB of fp32 rows or 256 KiB of bf16 / u8 ones; the
 * first 3 tiles share the prefetch of the next block. Panels: 4 outputs,
 * 4 rows, no prefetch, tasks of up to 16 panels at every M. Why these
 * sizes: docs/PERFORMANCE.md, "GEMM scheduling". */
#define UK_WB(NAME, STORE, QUANT, XBYTES)                                                          \
    {                                                                                              \
        .cols = WB_COLS, .rows = WB_ROWS, .tile = TILES_WB(NAME), .store = STORE, .quant = QUANT,  \
        .mb_step = 2 * WB_ROWS, .x_bytes = XBYTES, .task_blocks = 2, .pf_tiles = 3                 \
    }
static const me_gemm_ukernel UK_WB_F32 = UK_WB(f32, me_wb512_store_float, NULL, 512u << 10);
static const me_gemm_ukernel UK_WB_BF16 = UK_WB(bf16, me_wb512_store_float, me_wb512_quant_bf16, 256u << 10);
static const me_gemm_ukernel UK_WB_I8 = UK_WB(i8, me_wb512_store_i8, me_wb512_quant_i8, 256u << 10);
#undef UK_WB
#undef TILES_WB
#define UK_PANEL(NAME, STORE, QUANT)                                                               \
    {                                                                                              \
        .cols = 4, .rows = 4,                                                                      \
        .tile = {tile_panel_##NAME##_1, tile_panel_##NAME##_2, tile_panel_##NAME##_3,              \
                 tile_panel_##NAME##_4},                                                           \
        .store = STORE, .quant = QUANT, .finish = gelu_block, .mb_step = 4, .x_bytes = 256u << 10, \
        .task_blocks = 16, .pf_tiles = 0                                                           \
    }
static const me_gemm_ukernel UK_PANEL_BF16 = UK_PANEL(bf16, store_panel_bf16, me_wb512_quant_bf16);
static const me_gemm_ukernel UK_PANEL_I8 = UK_PANEL(i8, store_panel_i8, me_wb512_quant_i8);
#undef UK_PANEL

/* The scheduler's view of a layer this level packed (gemm_sched.h). */
static int plan512(const me_linear *L, me_gemm_plan *p)
{
    const pk512 *pk = L->packed;
    if (!pk)
        return 0;
    memset(p, 0, sizeof *p);
    p->blocks = pk->data;
    if (pk->n_wb) {
        p->uk = pk->kind == ME_PACK_F32    ? &UK_WB_F32
                : pk->kind == ME_PACK_BF16 ? &UK_WB_BF16
                                           : &UK_WB_I8;
        p->n_blocks = pk->n_wb;
        p->steps = pk->steps;
        p->block_bytes = WB_BYTES(pk);
    } else {
        p->uk = pk->kind == ME_PACK_BF16 ? &UK_PANEL_BF16 : &UK_PANEL_I8;
        p->n_blocks = pk->n_panels;
        p->steps = pk->kblocks;
        p->block_bytes = PANEL_BYTES(pk);
    }
    p->ldq = pk->kind == ME_PACK_F32 ? 0 : (size_t)pk->kblocks * 64;
    p->scale = pk->scale;
    p->wsum = pk->wsum128;
    return 1;
}

static void linear512(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    me_gemm_linear(plan512, L, x, M, y, residual, epi, pool, work);
}

/* ------------------------------------------------------------------------ */
/* Peak                                                                      */
/* ------------------------------------------------------------------------ */

#define PEAK_BODY(T, ZERO, OP, X, Y, FLOPS)                                                        \
    do {                                                                                           \
        T a0 = ZERO, a1 = ZERO, a2 = ZERO, a3 = ZERO, a4 = ZERO, a5 = ZERO;                        \
        T a6 = ZERO, a7 = ZERO, a8 = ZERO, a9 = ZERO, a10 = ZERO, a11 = ZERO;                      \
        for (int64_t it = 0; it < iters; it++) {                                                   \
            a0 = OP(a0, X, Y);                                                                     \
            a1 = OP(a1, X, Y);                                                                     \
            a2 = OP(a2, X, Y);                                                                     \
            a3 = OP(a3, X, Y);                                                                     \
            a4 = OP(a4, X, Y);                                                                     \
            a5 = OP(a5, X, Y);                                                                     \
            a6 = OP(a6, X, Y);                                                                     \
            a7 = OP(a7, X, Y);                                                                     \
            a8 = OP(a8, X, Y);                                                                     \
            a9 = OP(a9, X, Y);                                                                     \
            a10 = OP(a10, X, Y);                                                                   \
            a11 = OP(a11, X, Y);                                                                   \
            __asm__ volatile(""                                                                    \
                             : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),         \
                               "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));      \
        }                                                                                          \
        __asm__ volatile("" ::"v"(a0), "v"(a1), "v"(a2), "v"(a3), "v"(a4), "v"(a5), "v"(a6),       \
                         "v"(a7), "v"(a8), "v"(a9), "v"(a10), "v"(a11));                           \
        return (double)iters * 12.0 * (FLOPS);                                                     \
    } while (0)

static double peak512(int32_t dtype, int64_t iters)
{
    me_cpu cpu;
    me_cpu_detect(&cpu);
    __m512 x = _mm512_set1_ps(1e-3f);
    __m512i xi = _mm512_set1_epi8(1);
    if (dtype == MEDEMBED_DTYPE_BF16 && cpu.avx512_bf16)
        PEAK_BODY(__m512, _mm512_setzero_ps(), DPBF16, xi, xi, 64.0);
    if (dtype == MEDEMBED_DTYPE_INT8 && cpu.avx512_vnni)
        PEAK_BODY(__m512i, _mm512_setzero_si512(), DPBUSD, xi, xi, 128.0);
    if (dtype == MEDEMBED_DTYPE_INT8) /* vpmaddwd + vpaddd: 32 products */
#define MADD_ADD(acc, a, b) _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
        PEAK_BODY(__m512i, _mm512_setzero_si512(), MADD_ADD, xi, xi, 64.0);
#undef MADD_ADD
    PEAK_BODY(__m512, _mm512_setzero_ps(), FMA_PS, x, x, 32.0);
}

/* A pack cache blob as L's packed form (me_kern.adopt): only the layout
 * layout_512 gives now (the blob's header is not read); wide: the wide
 * blocks whatever the CPU (the AMX level's layout). */
static int adopt_512(me_linear *L, int32_t dtype, const uint8_t *blob, size_t bytes, int wide)
{
    layout512 lo;
    layout_512(L->n_out, L->n_in, dtype, wide, &lo);
    if (bytes != lo.bytes || ((uintptr_t)blob & 63))
        return MEDEMBED_ERR_FORMAT;
    pk512 *pk = malloc(sizeof *pk);
    if (!pk)
        return MEDEMBED_ERR_NOMEM;
    pk512_at(pk, &lo, blob);
    L->packed = pk;
    L->packed_kind = pk->kind;
    L->packed_dtype = dtype;
    L->packed_bytes = bytes;
    L->packed_borrowed = 1;
    return MEDEMBED_OK;
}

static int adopt512(me_linear *L, int32_t dtype, const uint8_t *blob, size_t bytes)
{
    if (dtype != MEDEMBED_DTYPE_F32 && dtype != MEDEMBED_DTYPE_BF16 &&
        dtype != MEDEMBED_DTYPE_INT8)
        return MEDEMBED_ERR_UNSUPPORTED;
    return adopt_512(L, dtype, blob, bytes, wide512(dtype));
}

int me_wb512_pack(me_linear *L, int32_t dtype)
{
    if (dtype != MEDEMBED_DTYPE_F32 && dtype != MEDEMBED_DTYPE_BF16 &&
        dtype != MEDEMBED_DTYPE_INT8)
        return MEDEMBED_ERR_UNSUPPORTED;
    return pack512_wb(L, dtype);
}

int me_wb512_adopt(me_linear *L, int32_t dtype, const uint8_t *blob, size_t bytes)
{
    if (dtype != MEDEMBED_DTYPE_F32 && dtype != MEDEMBED_DTYPE_BF16 &&
        dtype != MEDEMBED_DTYPE_INT8)
        return MEDEMBED_ERR_UNSUPPORTED;
    return adopt_512(L, dtype, blob, bytes, 1);
}

int me_wb512_plan(const me_linear *L, me_gemm_plan *p)
{
    return plan512(L, p);
}

/* The bf16 hand-off needs the wide-block tiles (their epilogue writes bf16
 * rows; the panels' does not). */
static int bf16_io512(const me_linear *L)
{
    const pk512 *pk = L->packed;
    return pk && pk->kind == ME_PACK_BF16 && pk->n_wb > 0;
}

const me_kern me_kern_avx512 = {
    .isa = ME_ISA_AVX512,
    .linear = linear512,
    .pack = pack512,
    .unpack = me_unpack_generic,
    .adopt = adopt512,
    .attention = me_attention_avx512,
    .layernorm = me_layernorm_avx512,
    .gelu = me_gelu_avx512,
    .bf16_io = bf16_io512,
    .peak = peak512,
    .dot_f32 = me_dot_f32_avx2,
    .dot_i8 = me_dot_i8_avx512,
};
