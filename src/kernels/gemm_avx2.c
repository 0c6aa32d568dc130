/*
 * gemm_avx2.c - AVX2 + FMA linear layers (fp32, bf16, int8) and the AVX2
 * kernel table.
 *
 * Read gemm_avx512.c's header first: both formulations are here, at 8
 * lanes and with 16 registers.
 *   f32  : wide column blocks (WB2_COLS below): blocks of 24 outputs,
 *          [block][k][24 floats], and broadcast tiles of up to 4 rows x 24
 *          outputs (12 accumulators, 3 W vectors and 1 broadcast: all 16
 *          registers), summed in chunks of 16 k exactly as gemm_avx512.c's
 *          fp32 blocks, so the two levels' GEMMs give the same bits.
 * The dot-product formulation serves bf16 and int8: W in panels of 4 output
 * rows, [panel][k block][4][32 B], and a 2x4 tile of outputs in 8
 * accumulators reduced by one fixed tree (me_hsum8x8). (fp32 used it too
 * until 2026-12-06; on a Zen 4, whose two 256-bit FMA pipes give AVX2 the
 * same peak as AVX-512, it reached ~95-100 GFLOP/s of ~205 on two threads:
 * 6 loads per 8 FMAs and 8 accumulators, no latency slack.)
 *   bf16 : 8 bf16 per block, widened to fp32 by a shift (AVX2 has no bf16
 *          dot product): the products of kernels.h's bf16 rule in fp32 FMA.
 *   int8 : 16 bytes per block, widened to int16 and summed in pairs by
 *          vpmaddwd into int32 (exact, |255 * 127| fits in int16 products).
 * Determinism as in gemm_avx512.c.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd_avx2.h"
#include "medembed.h"

void me_attention_avx2(const me_attn_args *a);
void me_layernorm_avx2(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps);
void me_gelu_avx2(float *x, int32_t n);

typedef struct {
    int32_t kind;
    int32_t n_wb; /* fp32 wide column blocks: ceil(n_out / WB2_COLS); 0 for panels */
    int32_t n_panels;
    int32_t kblocks;  /* k blocks: K/8 (f32, bf16), K/16 (int8) */
    int32_t bbytes;   /* bytes per row per block: 32 (f32), 16 (bf16, int8) */
    float *scale;     /* int8 */
    int32_t *wsum128; /* int8 */
    uint8_t *data;
} pk256;

#define PANEL_BYTES(pk) ((size_t)(pk)->kblocks * 4 * (size_t)(pk)->bbytes)

static int32_t cdiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

/* fp32 and bf16 wide column blocks, as gemm_avx512.c's (see its WB_COLS)
 * at half the width: a block holds WB2_COLS = 24 outputs; for each k their
 * 24 weights follow each other ([block][k][24], fp32 or bf16); outputs past
 * N are zero. bf16 weights are widened to fp32 as they are loaded (a zero
 * extension and a shift: AVX2 has no bf16 dot product) and multiply a
 * bf16-rounded fp32 copy of x, so a bf16 GEMM is the fp32 one on rounded
 * operands, in the same chunks: the products are exact, the sums fp32. A tile of
 * up to WB2_ROWS = 4 rows keeps 4 x 3 accumulators: per k 3 W loads, 4
 * broadcasts of x and 12 FMAs. Each output is summed serially within
 * chunks of WB2_CHUNK = 16 consecutive k, from 0, and the chunk sums are
 * added in order: the arithmetic of gemm_avx512.c's WB_CHUNK_F32, so an
 * fp32 GEMM gives the same bits on both levels (test_kernels checks it). */
#define WB2_COLS 24
#define WB2_ROWS 4
#define WB2_CHUNK 16
#define WB2_BYTES(K, bf16) ((size_t)(K) * WB2_COLS * ((bf16) ? 2 : 4))

static int pack256_wb(me_linear *L, int32_t dtype)
{
    int32_t N = L->n_out, K = L->n_in;
    int32_t nwb = cdiv(N, WB2_COLS);
    int bf16 = dtype == MEDEMBED_DTYPE_BF16;
    size_t hdr = (sizeof(pk256) + 63) & ~(size_t)63;
    size_t bytes = hdr + (size_t)nwb * WB2_BYTES(K, bf16);
    uint8_t *blk = me_alloc_big(bytes);
    if (!blk)
        return MEDEMBED_ERR_NOMEM;
    pk256 *pk = (pk256 *)(void *)blk;
    memset(pk, 0, sizeof *pk);
    pk->kind = bf16 ? ME_PACK_BF16 : ME_PACK_F32;
    pk->n_wb = nwb;
    pk->data = blk + hdr;
    /* 64 k at a time: the (3 or 6 KiB) of the block being written stay in
     * L1 while the 24 rows are read along k */
    for (int32_t wb = 0; wb < nwb; wb++) {
        uint8_t *blkp = pk->data + (size_t)wb * WB2_BYTES(K, bf16);
        float *dst = (float *)(void *)blkp;
        uint16_t *dsth = (uint16_t *)(void *)blkp;
        const float *rows[WB2_COLS];
        for (int32_t c = 0; c < WB2_COLS; c++)
            rows[c] = wb * WB2_COLS + c < N ? me_linear_row(L, wb * WB2_COLS + c) : NULL;
        for (int32_t k0 = 0; k0 < K; k0 += 64) {
            int32_t k1 = k0 + 64 < K ? k0 + 64 : K;
            for (int32_t c = 0; c < WB2_COLS; c++)
                for (int32_t k = k0; k < k1; k++) {
                    size_t o = (size_t)k * WB2_COLS + (size_t)c;
                    float v = rows[c] ? rows[c][k] : 0.0f;
                    if (bf16)
                        dsth[o] = me_f32_to_bf16(v);
                    else
                        dst[o] = v;
                }
        }
    }
    L->packed = pk;
    L->packed_kind = pk->kind;
    L->packed_dtype = dtype;
    L->packed_bytes = bytes;
    return MEDEMBED_OK;
}

static int pack256(me_linear *L, int32_t dtype)
{
    if (dtype == MEDEMBED_DTYPE_F32 || dtype == MEDEMBED_DTYPE_BF16)
        return pack256_wb(L, dtype);
    int32_t N = L->n_out, K = L->n_in;
    int32_t per_block = dtype == MEDEMBED_DTYPE_BF16   ? 8
                        : dtype == MEDEMBED_DTYPE_INT8 ? 16
                                                       : 0;
    if (per_block == 0)
        return MEDEMBED_ERR_UNSUPPORTED;
    int32_t bbytes = 16;
    int32_t np = cdiv(N, 4), kb = cdiv(K, per_block);
    size_t side = dtype == MEDEMBED_DTYPE_INT8 ? (size_t)np * 4 * 8 : 0;
    size_t hdr = (sizeof(pk256) + 63) & ~(size_t)63;
    side = (side + 63) & ~(size_t)63;
    size_t body = (size_t)np * (size_t)kb * 4 * (size_t)bbytes;
    size_t bytes = hdr + side + body;
    uint8_t *blk = me_alloc_big(bytes);
    if (!blk)
        return MEDEMBED_ERR_NOMEM;
    pk256 *pk = (pk256 *)(void *)blk;
    memset(pk, 0, sizeof *pk);
    pk->n_panels = np;
    pk->kblocks = kb;
    pk->bbytes = bbytes;
    pk->data = blk + hdr + side;
    /* zero only the padding (rows past N, the last k block past K) */
    for (int32_t n = 0; n < np * 4; n++)
        for (int32_t b = n < N ? kb - (K % per_block != 0) : 0; b < kb; b++)
            memset(pk->data + (size_t)(n / 4) * PANEL_BYTES(pk) +
                       ((size_t)b * 4 + (size_t)(n % 4)) * (size_t)bbytes,
                   0, (size_t)bbytes);
    for (int32_t n = 0; n < N && dtype != MEDEMBED_DTYPE_INT8; n++) {
        const float *w = me_linear_row(L, n);
        uint8_t *dst = pk->data + (size_t)(n / 4) * PANEL_BYTES(pk) + (size_t)(n % 4) * bbytes;
        for (int32_t k = 0; k < K; k += per_block, dst += 4 * bbytes) {
            int32_t cnt = K - k < per_block ? K - k : per_block;
            for (int32_t i = 0; i < cnt; i++)
                ((uint16_t *)(void *)dst)[i] = me_f32_to_bf16(w[k + i]);
        }
    }
    if (dtype == MEDEMBED_DTYPE_BF16) {
        pk->kind = ME_PACK_BF16;
    } else {
        pk->kind = ME_PACK_INT8;
        pk->scale = (float *)(void *)(blk + hdr);
        pk->wsum128 = (int32_t *)(void *)(blk + hdr + (size_t)np * 4 * 4);
        memset(pk->scale, 0, (size_t)np * 4 * 8);
        int8_t *row = me_alloc_big((size_t)K);
        if (!row) {
            me_free_big(blk);
            return MEDEMBED_ERR_NOMEM;
        }
        for (int32_t n = 0; n < N; n++) {
            pk->scale[n] = me_quant_row_s8(me_linear_row(L, n), K, row);
            int32_t sum = 0;
            uint8_t *panel = pk->data + (size_t)(n / 4) * PANEL_BYTES(pk);
            for (int32_t k = 0; k < K; k++) {
                panel[((size_t)(k / 16) * 4 + (size_t)(n % 4)) * 16 + (size_t)(k % 16)] =
                    (uint8_t)row[k];
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

/* a[2c + r] += x_r * w_c */
#define TILE_STEP(OP, X0, X1, W0, W1, W2, W3)                                                      \
    do {                                                                                           \
        a[0] = OP(a[0], X0, W0);                                                                   \
        a[1] = OP(a[1], X1, W0);                                                                   \
        a[2] = OP(a[2], X0, W1);                                                                   \
        a[3] = OP(a[3], X1, W1);                                                                   \
        a[4] = OP(a[4], X0, W2);                                                                   \
        a[5] = OP(a[5], X1, W2);                                                                   \
        a[6] = OP(a[6], X0, W3);                                                                   \
        a[7] = OP(a[7], X1, W3);                                                                   \
    } while (0)

#define FMA_PS(acc, x, w) _mm256_fmadd_ps(x, w, acc)
#define MADD_I16(acc, x, w) _mm256_add_epi32(acc, _mm256_madd_epi16(x, w))

static inline __m256 bf16x8(const uint8_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)), 16));
}

__attribute__((noinline)) static __m256 tile_bf16(const uint8_t *x0, const uint8_t *x1,
                                                  const uint8_t *wp, int32_t kblocks)
{
    __m256 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        a[i] = _mm256_setzero_ps();
    for (int32_t kb = 0; kb < kblocks; kb++, wp += 64) {
        size_t o = (size_t)kb * 16;
        __m256 v0 = bf16x8(x0 + o), v1 = bf16x8(x1 + o);
        TILE_STEP(FMA_PS, v0, v1, bf16x8(wp), bf16x8(wp + 16), bf16x8(wp + 32), bf16x8(wp + 48));
    }
    return me_hsum8x8(a);
}

static inline __m256i s8x16(const uint8_t *p)
{
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)p));
}

static inline __m256i u8x16(const uint8_t *p)
{
    return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)p));
}

__attribute__((noinline)) static __m256i tile_i8(const uint8_t *x0, const uint8_t *x1,
                                                 const uint8_t *wp, int32_t kblocks)
{
    __m256i a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        a[i] = _mm256_setzero_si256();
    for (int32_t kb = 0; kb < kblocks; kb++, wp += 64) {
        size_t o = (size_t)kb * 16;
        __m256i v0 = u8x16(x0 + o), v1 = u8x16(x1 + o);
        TILE_STEP(MADD_I16, v0, v1, s8x16(wp), s8x16(wp + 16), s8x16(wp + 32), s8x16(wp + 48));
    }
    return me_hsum8x8_i32(a);
}

typedef struct {
    const me_linear *L;
    const pk256 *pk;
    const float *x;
    const uint8_t *xq;
    size_t ldq;
    const float *xscale;
    int32_t M, N, K;
    float *y;
    const float *res;
    uint32_t epi;
    int32_t mb_rows, n_mb, ppt;
} gjob;

static __m128i mask4(int32_t cols)
{
    return _mm_cmpgt_epi32(_mm_set1_epi32(cols), _mm_setr_epi32(0, 1, 2, 3));
}

__attribute__((noinline)) static void store_tile(const gjob *j, __m256 v, int32_t m0, int32_t rows,
                                                 int32_t n0)
{
    int32_t cols = j->N - n0 < 4 ? j->N - n0 : 4;
    __m128i cm = mask4(cols);
    if (j->L->b) {
        __m128 b = _mm_maskload_ps(j->L->b + n0, cm);
        v = _mm256_add_ps(v, _mm256_set_m128(b, b));
    }
    if (j->epi & ME_EPI_GELU)
        v = me_gelu256(v);
    size_t ld = (size_t)j->N;
    float *y0 = j->y + (size_t)m0 * ld + (size_t)n0;
    if (j->epi & ME_EPI_RESIDUAL) {
        const float *r0 = j->res + (size_t)m0 * ld + (size_t)n0;
        __m128 lo = _mm_maskload_ps(r0, cm);
        __m128 hi = rows > 1 ? _mm_maskload_ps(r0 + ld, cm) : _mm_setzero_ps();
        v = _mm256_add_ps(v, _mm256_set_m128(hi, lo));
    }
    _mm_maskstore_ps(y0, cm, _mm256_castps256_ps128(v));
    if (rows > 1)
        _mm_maskstore_ps(y0 + ld, cm, _mm256_extractf128_ps(v, 1));
}

static __m256 dequant_tile(const gjob *j, __m256i acc, int32_t m0, int32_t rows, int32_t n0)
{
    int32_t cols = j->N - n0 < 4 ? j->N - n0 : 4;
    __m128i cm = mask4(cols);
    __m128i c4 = _mm_maskload_epi32(j->pk->wsum128 + n0, cm);
    acc = _mm256_sub_epi32(acc, _mm256_set_m128i(c4, c4));
    __m128 s4 = _mm_maskload_ps(j->pk->scale + n0, cm);
    __m256 sw = _mm256_set_m128(s4, s4);
    __m128 sx0 = _mm_set1_ps(j->xscale[m0]);
    __m128 sx1 = rows > 1 ? _mm_set1_ps(j->xscale[m0 + 1]) : sx0;
    return _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(_mm256_set_m128(sx1, sx0), sw));
}


/* ------------------------------------------------------------------------ */
/* fp32 wide column blocks (see WB2_COLS)                                    */
/* ------------------------------------------------------------------------ */

/* R rows of x (row r at x + r * ldx) against one block of K steps; out[3 r
 * + c] gets row r's sums for outputs 8 c .. 8 c + 7. pf, when set, is the
 * next block, pulled in over this tile's steps (96 bytes a step). */
static inline __attribute__((always_inline)) __m256 wb2_w(const uint8_t *w, int c, const int bf16)
{
    if (bf16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_load_si128((const __m128i *)(const void *)(w + 16 * c))),
            16));
    return _mm256_load_ps((const float *)(const void *)(w + 32 * c));
}

static inline __attribute__((always_inline)) void tile_wb2_body(const float *x, size_t ldx,
                                                                const uint8_t *wp, int32_t K,
                                                                const char *pf, __m256 *out,
                                                                const int R, const int bf16)
{
    const size_t wstep = (size_t)WB2_COLS * (bf16 ? 2 : 4);
    for (int32_t q0 = 0; q0 < K; q0 += WB2_CHUNK) {
        int32_t q1 = q0 + WB2_CHUNK < K ? q0 + WB2_CHUNK : K;
        __m256 a[3 * WB2_ROWS];
#pragma GCC unroll 12
        for (int i = 0; i < 3 * R; i++)
            a[i] = _mm256_setzero_ps();
        const uint8_t *w = wp + (size_t)q0 * wstep;
        for (int32_t q = q0; q < q1; q++, w += wstep) {
            if (pf && !(q & (bf16 ? 3 : 1))) { /* 2 (fp32) or 4 (bf16) steps: 3 lines */
                const char *p = pf + (size_t)q * wstep;
                _mm_prefetch(p, _MM_HINT_T0);
                _mm_prefetch(p + 64, _MM_HINT_T0);
                _mm_prefetch(p + 128, _MM_HINT_T0);
            }
            __m256 w0 = wb2_w(w, 0, bf16), w1 = wb2_w(w, 1, bf16), w2 = wb2_w(w, 2, bf16);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256 xb = _mm256_broadcast_ss(x + (size_t)r * ldx + (size_t)q);
                a[3 * r] = FMA_PS(a[3 * r], xb, w0);
                a[3 * r + 1] = FMA_PS(a[3 * r + 1], xb, w1);
                a[3 * r + 2] = FMA_PS(a[3 * r + 2], xb, w2);
            }
        }
        if (q0 == 0) {
#pragma GCC unroll 12
            for (int i = 0; i < 3 * R; i++)
                out[i] = a[i];
        } else {
#pragma GCC unroll 12
            for (int i = 0; i < 3 * R; i++)
                out[i] = _mm256_add_ps(out[i], a[i]);
        }
    }
}

typedef void (*tile_wb2_fn)(const float *, size_t, const uint8_t *, int32_t, const char *,
                            __m256 *);
#define TILE_WB2_ONE(NAME, R, BF16)                                                                \
    __attribute__((noinline)) static void tile_wb2_##NAME##_##R(                                   \
        const float *x, size_t ldx, const uint8_t *wp, int32_t K, const char *pf, __m256 *out)     \
    {                                                                                              \
        tile_wb2_body(x, ldx, wp, K, pf, out, R, BF16);                                            \
    }
#define TILE_WB2(R) TILE_WB2_ONE(f32, R, 0) TILE_WB2_ONE(bf16, R, 1)
TILE_WB2(1)
TILE_WB2(2)
TILE_WB2(3)
TILE_WB2(4)
#undef TILE_WB2
#undef TILE_WB2_ONE
static const tile_wb2_fn TILES_WB2_F32[WB2_ROWS] = {tile_wb2_f32_1, tile_wb2_f32_2,
                                                    tile_wb2_f32_3, tile_wb2_f32_4};
static const tile_wb2_fn TILES_WB2_BF16[WB2_ROWS] = {tile_wb2_bf16_1, tile_wb2_bf16_2,
                                                     tile_wb2_bf16_3, tile_wb2_bf16_4};

/* rows mt..mt+rows-1, outputs n0..n0+23: + bias, GELU, + residual, in the
 * order of gemm_avx512.c's store_wb */
static void store_wb2(const gjob *j, const __m256 *acc, int32_t mt, int32_t rows, int32_t n0)
{
    const float *b = j->L->b;
    int gelu = (j->epi & ME_EPI_GELU) != 0;
    int resid = (j->epi & ME_EPI_RESIDUAL) != 0;
    size_t ld = (size_t)j->N;
    for (int c = 0; c < 3; c++) {
        int32_t nc = n0 + 8 * c;
        if (nc >= j->N)
            break;
        int full = j->N - nc >= 8;
        __m256i cm = me_mask8(j->N - nc);
        __m256 bias = !b ? _mm256_setzero_ps()
                      : full ? _mm256_loadu_ps(b + nc)
                             : _mm256_maskload_ps(b + nc, cm);
        for (int32_t r = 0; r < rows; r++) {
            size_t o = (size_t)(mt + r) * ld + (size_t)nc;
            __m256 v = acc[3 * r + c];
            if (b)
                v = _mm256_add_ps(v, bias);
            if (gelu)
                v = me_gelu256(v);
            if (resid)
                v = _mm256_add_ps(v, full ? _mm256_loadu_ps(j->res + o)
                                          : _mm256_maskload_ps(j->res + o, cm));
            if (full)
                _mm256_storeu_ps(j->y + o, v);
            else
                _mm256_maskstore_ps(j->y + o, cm, v);
        }
    }
}

/* task = (an m-block, a range of ppt blocks), m-block major: consecutive
 * tasks share the rows of x while the blocks stream past. The first row
 * tile of each block pulls the next block in (at small M, the latency
 * case, nothing else hides its trip from DRAM). */
static void gemm_task_wb2(const gjob *j, int64_t task)
{
    const pk256 *pk = j->pk;
    int32_t nct = cdiv(pk->n_wb, j->ppt);
    int32_t mb = (int32_t)(task / nct), nc = (int32_t)(task % nct);
    int32_t c0 = nc * j->ppt, c1 = c0 + j->ppt < pk->n_wb ? c0 + j->ppt : pk->n_wb;
    int32_t m0 = mb * j->mb_rows, m1 = m0 + j->mb_rows < j->M ? m0 + j->mb_rows : j->M;
    int bf16 = pk->kind == ME_PACK_BF16;
    /* bf16: the rounded fp32 copy of x, made before the tasks */
    const float *x = bf16 ? (const float *)(const void *)j->xq : j->x;
    size_t ldx = (size_t)j->K, bb = WB2_BYTES(j->K, bf16);
    const tile_wb2_fn *tiles = bf16 ? TILES_WB2_BF16 : TILES_WB2_F32;
    __m256 acc[3 * WB2_ROWS];
    for (int32_t cb = c0; cb < c1; cb++) {
        const uint8_t *wp = pk->data + (size_t)cb * bb;
        const char *next = cb + 1 < c1 ? (const char *)wp + bb : NULL;
        for (int32_t mt = m0; mt < m1; mt += WB2_ROWS) {
            int32_t rows = m1 - mt < WB2_ROWS ? m1 - mt : WB2_ROWS;
            tiles[rows - 1](x + (size_t)mt * ldx, ldx, wp, j->K, mt == m0 ? next : NULL, acc);
            store_wb2(j, acc, mt, rows, cb * WB2_COLS);
        }
    }
}

static void gemm_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const gjob *j = arg;
    const pk256 *pk = j->pk;
    if (pk->n_wb) {
        gemm_task_wb2(j, task);
        return;
    }
    int32_t nc = (int32_t)(task / j->n_mb), mb = (int32_t)(task % j->n_mb);
    int32_t p0 = nc * j->ppt, p1 = p0 + j->ppt < pk->n_panels ? p0 + j->ppt : pk->n_panels;
    int32_t m0 = mb * j->mb_rows, m1 = m0 + j->mb_rows < j->M ? m0 + j->mb_rows : j->M;
    for (int32_t p = p0; p < p1; p++) {
        const uint8_t *wp = pk->data + (size_t)p * PANEL_BYTES(pk);
        for (int32_t mt = m0; mt < m1; mt += 2) {
            int32_t rows = m1 - mt < 2 ? m1 - mt : 2;
            int32_t r1 = rows > 1 ? mt + 1 : mt;
            const uint8_t *q0 = j->xq + (size_t)mt * j->ldq, *q1 = j->xq + (size_t)r1 * j->ldq;
            __m256 v = pk->kind == ME_PACK_BF16
                           ? tile_bf16(q0, q1, wp, pk->kblocks)
                           : dequant_tile(j, tile_i8(q0, q1, wp, pk->kblocks), mt, rows, p * 4);
            store_tile(j, v, mt, rows, p * 4);
        }
    }
}

/* bf16 wide blocks: x rounded to bf16 (me_f32_to_bf16) and kept as fp32 */
static void round_bf16_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const gjob *j = arg;
    int32_t m0 = (int32_t)task * 16, m1 = m0 + 16 < j->M ? m0 + 16 : j->M;
    size_t n = (size_t)(m1 - m0) * (size_t)j->K;
    const float *x = j->x + (size_t)m0 * (size_t)j->K;
    float *q = (float *)(uintptr_t)j->xq + (size_t)m0 * (size_t)j->K;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)me_f32_to_bf16(x[i]) << 16;
        memcpy(&q[i], &u, 4);
    }
}

static void quant_bf16_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const gjob *j = arg;
    int32_t m0 = (int32_t)task * 16, m1 = m0 + 16 < j->M ? m0 + 16 : j->M;
    int32_t kpad = j->pk->kblocks * 8;
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)j->K;
        uint16_t *q = (uint16_t *)(void *)(j->xq + (size_t)m * j->ldq);
        for (int32_t k = 0; k < kpad; k++)
            q[k] = k < j->K ? me_f32_to_bf16(x[k]) : 0;
    }
}

static void quant_i8_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const gjob *j = arg;
    int32_t m0 = (int32_t)task * 16, m1 = m0 + 16 < j->M ? m0 + 16 : j->M;
    int32_t kpad = j->pk->kblocks * 16;
    float *xscale = (float *)(uintptr_t)j->xscale;
    for (int32_t m = m0; m < m1; m++) {
        uint8_t *q = (uint8_t *)(uintptr_t)(j->xq + (size_t)m * j->ldq);
        xscale[m] = me_quant_row_s8(j->x + (size_t)m * (size_t)j->K, j->K, (int8_t *)q);
        for (int32_t k = 0; k < kpad; k++)
            q[k] = k < j->K ? (uint8_t)((int8_t)q[k] + 128) : 128;
    }
}

static void linear256(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    if (M <= 0)
        return;
    const pk256 *pk = L->packed;
    if (!pk || L->n_in <= 0) {
        me_linear_scalar(L, x, M, y, residual, epi, pool, work);
        return;
    }
    gjob j;
    memset(&j, 0, sizeof j);
    j.L = L;
    j.pk = pk;
    j.x = x;
    j.M = M;
    j.N = L->n_out;
    j.K = L->n_in;
    j.y = y;
    j.res = residual;
    j.epi = epi;
    int32_t nt = me_pool_threads(pool);
    if (pk->n_wb) {
        /* fp32 wide blocks: rows of x per m-block as for the panels (~256
         * KiB), in whole tiles; blocks per task: enough tasks to balance,
         * or at one m-block (small M) one contiguous range per thread, so
         * that each block but a thread's first was prefetched by the tile
         * before it (as linear512). */
        int32_t mbw = (int32_t)((256u << 10) / ((size_t)j.K * 4)) & ~(WB2_ROWS - 1);
        mbw = mbw < WB2_ROWS ? WB2_ROWS : mbw > 256 ? 256 : mbw;
        j.mb_rows = mbw >= M ? M : mbw;
        j.n_mb = cdiv(M, j.mb_rows);
        int32_t ppt = 2;
        while (ppt > 1 && (int64_t)cdiv(pk->n_wb, ppt) * j.n_mb < 8 * (int64_t)nt)
            ppt /= 2;
        if (j.n_mb == 1)
            ppt = cdiv(pk->n_wb, nt);
        j.ppt = ppt;
        if (pk->kind == ME_PACK_BF16) {
            j.xq = work;
            me_pool_run(pool, cdiv(M, 16), round_bf16_task, &j);
        }
        me_pool_run(pool, (int64_t)cdiv(pk->n_wb, ppt) * j.n_mb, gemm_task, &j);
        return;
    }
    size_t row_bytes = (size_t)j.K * 4;
    if (pk->kind != ME_PACK_F32) {
        j.ldq = ((size_t)pk->kblocks * (size_t)pk->bbytes + 63) & ~(size_t)63;
        j.xq = work;
        j.xscale = (const float *)(const void *)((uint8_t *)work + j.ldq * (size_t)M);
        row_bytes = j.ldq;
        me_pool_run(pool, cdiv(M, 16), pk->kind == ME_PACK_BF16 ? quant_bf16_task : quant_i8_task,
                    &j);
    }
    int32_t mb = (int32_t)((256u << 10) / row_bytes) & ~1;
    if (mb < 2)
        mb = 2;
    if (mb > 256)
        mb = 256;
    if (mb >= M)
        mb = M;
    j.mb_rows = mb;
    j.n_mb = cdiv(M, mb);
    int32_t ppt = 16;
    while (ppt > 1 && (int64_t)cdiv(pk->n_panels, ppt) * j.n_mb < 8 * (int64_t)nt)
        ppt /= 2;
    j.ppt = ppt;
    me_pool_run(pool, (int64_t)cdiv(pk->n_panels, ppt) * j.n_mb, gemm_task, &j);
}

static double peak256(int32_t dtype, int64_t iters)
{
    __m256 a[12];
    __m256 x = _mm256_set1_ps(1e-3f);
    if (dtype == MEDEMBED_DTYPE_INT8) {
        __m256i b[12], xi = _mm256_set1_epi16(1);
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            b[i] = _mm256_setzero_si256();
        for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++)
                b[i] = MADD_I16(b[i], xi, xi);
            __asm__ volatile(""
                             : "+x"(b[0]), "+x"(b[1]), "+x"(b[2]), "+x"(b[3]), "+x"(b[4]),
                               "+x"(b[5]), "+x"(b[6]), "+x"(b[7]), "+x"(b[8]), "+x"(b[9]),
                               "+x"(b[10]), "+x"(b[11]));
        }
        return (double)iters * 12 * 32;
    }
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_setzero_ps();
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = FMA_PS(a[i], x, x);
        __asm__ volatile(""
                         : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]),
                           "+x"(a[6]), "+x"(a[7]), "+x"(a[8]), "+x"(a[9]), "+x"(a[10]),
                           "+x"(a[11]));
    }
    return (double)iters * 12 * 16;
}

const me_kern me_kern_avx2 = {
    .isa = ME_ISA_AVX2,
    .linear = linear256,
    .pack = pack256,
    .unpack = me_unpack_generic,
    .attention = me_attention_avx2,
    .layernorm = me_layernorm_avx2,
    .gelu = me_gelu_avx2,
    .peak = peak256,
};
