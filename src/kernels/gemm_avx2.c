/*
 * gemm_avx2.c - AVX2 + FMA linear layers (fp32, bf16, int8) and the AVX2
 * kernel table: the packing, tiles and stores of this level; the shared
 * scheduler (gemm_sched.c) runs them.
 *
 * The "wide column blocks" of gemm_avx512.c (read that header first) at 8
 * lanes and with 16 registers, for all three dtypes (see WB2_COLS): each
 * weight loaded serves every row of the tile, where dot-product tiles spent
 * a load per FMA and a reduction per output (docs/PERFORMANCE.md, "AVX2
 * level"). Determinism as in gemm_avx512.c: an output's arithmetic depends
 * only on its row of x and its row of W, never on M, the tile, the task or
 * the thread.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/gemm_sched.h"
#include "kernels/kernels.h"
#include "kernels/simd_avx2.h"
#include "medembed.h"

void me_attention_avx2(const me_attn_args *a);
void me_layernorm_avx2(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps);
void me_gelu_avx2(float *x, int32_t n);
float me_dot_f32_avx2(const float *a, const float *b, int32_t n);
float me_dot_i8_avx2(const float *a, const int8_t *b, int32_t n);

/* Packed layer (blocks.h): the header, then (64-byte aligned) the int8
 * scales, then the wide column blocks; n_b = ceil(n_out / WB2_COLS), steps
 * K (fp32, bf16) or ceil(K / 2) (int8 pairs). */
typedef me_blocks pk256;

/* Wide column blocks, as gemm_avx512.c's (see its WB_COLS) at half the
 * width: a block holds WB2_COLS = 24 outputs; for each k step their 24
 * weights follow each other ([block][step][24]); outputs past N are zero.
 * A tile of up to 4 rows (3 for int8) keeps 3 accumulators per row: per
 * step 3 W vectors, one broadcast of x per row, 3 multiply-adds per row.
 *   fp32: each output is summed serially within chunks of me_f32_chunk(K)
 *         consecutive k, from 0, and the chunk sums are added in order: the
 *         arithmetic of gemm_avx512.c's fp32 tiles, so an fp32 GEMM gives
 *         the same bits on both levels (test_kernels checks it). 4 rows: 12
 *         accumulators + 3 W + 1 broadcast = all 16 registers.
 *   bf16: the weights are stored as bf16 and widened to fp32 as they are
 *         loaded (a zero extension and a shift: AVX2 has no bf16 dot
 *         product); they multiply a bf16-rounded fp32 copy of x in the fp32
 *         kernel's chunks, so a bf16 GEMM is the fp32 one on rounded
 *         operands (the products are exact, the sums fp32). The gain over
 *         fp32 is the halved weight stream.
 *   int8: a step is a pair of k; the weights are stored as int8 pairs
 *         ([block][pair][24][2]) and sign-extended to int16 as they are
 *         loaded, x is a copy of signed int16 pairs (q_x, no +128 offset);
 *         one vpmaddwd gives 8 outputs' two products summed, added in
 *         int32: the exact integer sum of the scalar oracle. 3 rows (9
 *         accumulators, 3 W, the broadcast and vpmaddwd's result). Pairs
 *         stored as int8, not int16: half the weight stream and memory,
 *         which small M needs more than large M gains from skipping the
 *         extension (docs/PERFORMANCE.md, "AVX2 level"). */
#define WB2_COLS 24
#define WB2_ROWS 4
#define WB2_ROWS_I8 3

/* bytes of one step of a block: 24 fp32, 24 bf16 or 24 int8 pairs */
static size_t wb2_step_bytes(int32_t kind)
{
    return WB2_COLS * (size_t)(kind == ME_PACK_F32 ? 4 : 2);
}

static size_t wb2_block_bytes(const pk256 *pk)
{
    return pk->block_bytes;
}

static int32_t cdiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

/* The packed form of an (N, K) layer of `kind`: header fields (pointers
 * NULL), the offsets of the scales (int8) and the blocks, and the size.
 * Shared by pack256 and adopt256 (a blob from the pack cache), which checks
 * only the size: the pack cache's key holds a hash of a probe layer packed
 * by this code (pc_key in model/packcache.c), so any other change to the
 * packed bytes makes old cache files miss. */
static size_t layout_256(int32_t N, int32_t K, int32_t kind, pk256 *h, size_t *side)
{
    return me_blocks_layout(h, kind, 0, cdiv(N, WB2_COLS), WB2_COLS,
                            kind == ME_PACK_INT8 ? cdiv(K, 2) : K, wb2_step_bytes(kind), side);
}

static int pack256(me_linear *L, int32_t dtype)
{
    int32_t N = L->n_out, K = L->n_in;
    int32_t kind = me_pack_kind(dtype);
    if (kind == ME_PACK_NONE)
        return MEDEMBED_ERR_UNSUPPORTED;
    int i8 = kind == ME_PACK_INT8;
    pk256 h;
    size_t side, bytes = layout_256(N, K, kind, &h, &side);
    int32_t nwb = h.n_b;
    pk256 *pk = me_blocks_alloc(&h, side, bytes, 0); /* the loop writes every block byte */
    int8_t *q = i8 ? me_alloc_big((size_t)WB2_COLS * (size_t)K) : NULL;
    if (!pk || (i8 && !q)) {
        me_free_big(pk);
        me_free_big(q);
        return MEDEMBED_ERR_NOMEM;
    }
    for (int32_t wb = 0; wb < nwb; wb++) {
        uint8_t *b = pk->data + (size_t)wb * wb2_block_bytes(pk);
        const float *rows[WB2_COLS];
        for (int32_t c = 0; c < WB2_COLS; c++) {
            int32_t n = wb * WB2_COLS + c;
            rows[c] = n < N ? me_linear_row(L, n) : NULL;
            if (i8 && rows[c])
                pk->scale[n] = me_quant_row_s8(rows[c], K, q + (size_t)c * (size_t)K);
        }
        /* 64 k at a time: the part of the block being written stays in L1
         * while the 24 rows are read along k */
        for (int32_t k0 = 0; k0 < K; k0 += 64) {
            int32_t k1 = k0 + 64 < K ? k0 + 64 : K;
            for (int32_t c = 0; c < WB2_COLS; c++)
                for (int32_t k = k0; k < k1; k++) {
                    if (kind == ME_PACK_F32) {
                        ((float *)(void *)b)[(size_t)k * WB2_COLS + (size_t)c] =
                            rows[c] ? rows[c][k] : 0.0f;
                    } else if (kind == ME_PACK_BF16) {
                        ((uint16_t *)(void *)b)[(size_t)k * WB2_COLS + (size_t)c] =
                            rows[c] ? me_f32_to_bf16(rows[c][k]) : 0;
                    } else { /* [pair][24][2] */
                        ((int8_t *)(void *)b)[((size_t)(k / 2) * WB2_COLS + (size_t)c) * 2 +
                                              (size_t)(k % 2)] =
                            rows[c] ? q[(size_t)c * (size_t)K + (size_t)k] : 0;
                    }
                }
        }
        if (i8 && (K & 1)) /* the odd K's last pair: its second half is zero */
            for (int32_t c = 0; c < WB2_COLS; c++)
                ((int8_t *)(void *)b)[((size_t)(K / 2) * WB2_COLS + (size_t)c) * 2 + 1] = 0;
    }
    me_free_big(q);
    me_blocks_own(L, pk, dtype, bytes);
    return MEDEMBED_OK;
}

#define FMA_PS(acc, x, w) _mm256_fmadd_ps(x, w, acc)
#define MADD_I16(acc, x, w) _mm256_add_epi32(acc, _mm256_madd_epi16(x, w))

/* Prefetch for step q: the next block's bytes of this step and the ones
 * after it, three lines at a time (sb: step bytes; every 2 steps for
 * 96-byte steps, every 4 for 48-byte ones). The whole step: this level's
 * microkernels have pf_tiles 1, so the scheduler's pfs is sb. */
static inline __attribute__((always_inline)) void prefetch_step(const char *pf, int32_t q,
                                                                size_t sb)
{
    if (pf && !(q & (sb == 48 ? 3 : 1))) {
        const char *p = pf + (size_t)q * sb;
        _mm_prefetch(p, _MM_HINT_T0);
        _mm_prefetch(p + 64, _MM_HINT_T0);
        _mm_prefetch(p + 128, _MM_HINT_T0);
    }
}

static inline __attribute__((always_inline)) __m256 wb2_w(const uint8_t *w, int c, const int bf16)
{
    if (bf16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_load_si128((const __m128i *)(const void *)(w + 16 * c))),
            16));
    return _mm256_load_ps((const float *)(const void *)(w + 32 * c));
}

/* fp32 / bf16: R rows of (rounded) fp32 x (row r at x + r * ldx) against
 * one block of K steps; out[3 r + c] gets row r's sums for outputs 8 c ..
 * 8 c + 7. pf, when set, is the next block, pulled in over these steps. */
static inline __attribute__((always_inline)) void tile_wb2_body(const float *x, size_t ldx,
                                                                const uint8_t *wp, int32_t K,
                                                                const char *pf, __m256 *out,
                                                                const int R, const int bf16)
{
    const size_t sb = (size_t)WB2_COLS * (bf16 ? 2 : 4);
    const int32_t chunk = me_f32_chunk(K);
    for (int32_t q0 = 0; q0 < K; q0 += chunk) {
        int32_t q1 = q0 + chunk < K ? q0 + chunk : K;
        __m256 a[3 * WB2_ROWS];
#pragma GCC unroll 12
        for (int i = 0; i < 3 * R; i++)
            a[i] = _mm256_setzero_ps();
        const uint8_t *w = wp + (size_t)q0 * sb;
        for (int32_t q = q0; q < q1; q++, w += sb) {
            prefetch_step(pf, q, sb);
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

/* int8: R rows of int16 pairs of x (row r at x + r * ldx bytes) against one
 * block of np pairs; one exact int32 sum per output. */
static inline __attribute__((always_inline)) void tile_wb2_i8_body(const uint8_t *x, size_t ldx,
                                                                   const uint8_t *wp, int32_t np,
                                                                   const char *pf, __m256i *out,
                                                                   const int R)
{
    __m256i a[3 * WB2_ROWS_I8];
#pragma GCC unroll 9
    for (int i = 0; i < 3 * R; i++)
        a[i] = _mm256_setzero_si256();
    const uint8_t *w = wp;
    for (int32_t q = 0; q < np; q++, w += WB2_COLS * 2) {
        prefetch_step(pf, q, WB2_COLS * 2);
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)w));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)(w + 16)));
        __m256i w2 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)(w + 32)));
#pragma GCC unroll 3
        for (int r = 0; r < R; r++) {
            int32_t xv;
            memcpy(&xv, x + (size_t)r * ldx + 4 * (size_t)q, 4);
            __m256i xb = _mm256_set1_epi32(xv);
            a[3 * r] = MADD_I16(a[3 * r], xb, w0);
            a[3 * r + 1] = MADD_I16(a[3 * r + 1], xb, w1);
            a[3 * r + 2] = MADD_I16(a[3 * r + 2], xb, w2);
        }
    }
#pragma GCC unroll 9
    for (int i = 0; i < 3 * R; i++)
        out[i] = a[i];
}

#define TILE_WB2_ONE(NAME, R, BF16)                                                                \
    __attribute__((noinline)) static void tile_wb2_##NAME##_##R(                                   \
        const uint8_t *x, size_t ldx, const uint8_t *wp, int32_t K, const uint8_t *pf,             \
        int32_t pfs, void *out)                                                                    \
    {                                                                                              \
        (void)pfs;                                                                                 \
        tile_wb2_body((const float *)(const void *)x, ldx / 4, wp, K, (const char *)pf,            \
                      (__m256 *)out, R, BF16);                                                     \
    }
#define TILE_WB2_I8(R)                                                                             \
    __attribute__((noinline)) static void tile_wb2_i8_##R(const uint8_t *x, size_t ldx,            \
                                                          const uint8_t *wp, int32_t np,           \
                                                          const uint8_t *pf, int32_t pfs,          \
                                                          void *out)                               \
    {                                                                                              \
        (void)pfs;                                                                                 \
        tile_wb2_i8_body(x, ldx, wp, np, (const char *)pf, (__m256i *)out, R);                     \
    }
#define TILE_WB2(R) TILE_WB2_ONE(f32, R, 0) TILE_WB2_ONE(bf16, R, 1)
TILE_WB2(1)
TILE_WB2(2)
TILE_WB2(3)
TILE_WB2(4)
TILE_WB2_I8(1)
TILE_WB2_I8(2)
TILE_WB2_I8(3)
#undef TILE_WB2
#undef TILE_WB2_ONE
#undef TILE_WB2_I8

/* rows mt..mt+rows-1, outputs n0..n0+23, in the order of gemm_avx512.c's
 * store_wb: (float)sum * (s_x s_w) for int8, + bias, GELU, + residual */
static inline __attribute__((always_inline)) void store_wb2(const me_gemm_job *j, const void *acc,
                                                            int32_t mt, int32_t rows, int32_t n0,
                                                            const int i8)
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
        __m256 sw = i8 ? _mm256_loadu_ps(j->p.scale + nc) : _mm256_setzero_ps(); /* padded */
        for (int32_t r = 0; r < rows; r++) {
            size_t o = (size_t)(mt + r) * ld + (size_t)nc;
            __m256 v;
            if (i8)
                v = _mm256_mul_ps(_mm256_cvtepi32_ps(((const __m256i *)acc)[3 * r + c]),
                                  _mm256_mul_ps(_mm256_set1_ps(j->xscale[mt + r]), sw));
            else
                v = ((const __m256 *)acc)[3 * r + c];
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

static void store_wb2_float(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows,
                            int32_t n0)
{
    store_wb2(j, acc, mt, rows, n0, 0);
}

static void store_wb2_i8(const me_gemm_job *j, const void *acc, int32_t mt, int32_t rows,
                         int32_t n0)
{
    store_wb2(j, acc, mt, rows, n0, 1);
}

/* The copies of x the quantized dtypes multiply, row m at xq + m * ldq,
 * made by one thread per m-block (gemm_sched.c), so 8 values at a time.
 * bf16: x rounded to bf16 exactly as me_f32_to_bf16 does (nearest even,
 * NaN kept and quieted) and kept as fp32. */
static void round_bf16_rows(const me_gemm_job *j, int32_t m0, int32_t m1)
{
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u), one = _mm256_set1_epi32(1);
    const __m256i half = _mm256_set1_epi32(0x7fff), abs = _mm256_set1_epi32(0x7fffffff);
    const __m256i inf = _mm256_set1_epi32(0x7f800000), quiet = _mm256_set1_epi32(0x00400000);
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)j->K;
        uint32_t *q = (uint32_t *)(void *)(j->xq + (size_t)m * j->ldq);
        int32_t k = 0;
        for (; k + 8 <= j->K; k += 8) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(x + k));
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, half), lsb), hi);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf);
            __m256i qn = _mm256_or_si256(_mm256_and_si256(u, hi), quiet);
            _mm256_storeu_si256((__m256i *)(void *)(q + k), _mm256_blendv_epi8(r, qn, nan));
        }
        for (; k < j->K; k++)
            q[k] = (uint32_t)me_f32_to_bf16(x[k]) << 16;
    }
}

/* int8: q_x = round(x * 127 / max|x|) as int16 pairs, the odd K's last pair
 * padded with 0, and the row scale: me_quant_row_s8's values and scale,
 * bit for bit (max|x| ignores NaN; x clamped to [-127, 127] first, a NaN to
 * -127, then rounded to nearest even). */
static void quant_i8_rows(const me_gemm_job *j, int32_t m0, int32_t m1)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    int32_t K = j->K;
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)K;
        int16_t *q = (int16_t *)(void *)(j->xq + (size_t)m * j->ldq);
        __m256 mx = _mm256_setzero_ps();
        int32_t k = 0;
        for (; k + 8 <= K; k += 8) /* max(|x|, mx) keeps mx when |x| is NaN */
            mx = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), absm), mx);
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        for (; k < K; k++)
            amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        float inv = me_quant_inv(amax);
        if (inv == 0.0f) { /* nothing to scale: a zero row */
            j->xscale[m] = 0.0f;
            memset(q, 0, j->ldq);
            continue;
        }
        j->xscale[m] = amax / 127.0f;
        __m256 vinv = _mm256_set1_ps(inv);
        for (k = 0; k + 16 <= K; k += 16) {
            /* max(v, lo) gives lo for a NaN v */
            __m256 v0 = _mm256_mul_ps(_mm256_loadu_ps(x + k), vinv);
            __m256 v1 = _mm256_mul_ps(_mm256_loadu_ps(x + k + 8), vinv);
            v0 = _mm256_min_ps(_mm256_max_ps(v0, lo), hi);
            v1 = _mm256_min_ps(_mm256_max_ps(v1, lo), hi);
            __m256i p = _mm256_packs_epi32(_mm256_cvtps_epi32(v0), _mm256_cvtps_epi32(v1));
            _mm256_storeu_si256((__m256i *)(void *)(q + k), _mm256_permute4x64_epi64(p, 0xd8));
        }
        for (; k < K; k++) {
            float v = x[k] * inv;
            v = v > -127.0f ? v : -127.0f;
            v = v < 127.0f ? v : 127.0f;
            q[k] = (int16_t)_mm_cvtss_si32(_mm_set_ss(v));
        }
        if (K & 1)
            q[K] = 0;
    }
}

/* The microkernels (gemm_sched.h): blocks of 24 outputs; tiles of 4 rows
 * (int8: 3); m-blocks of ~256 KiB of x in multiples of 12 rows (both tile
 * heights); the first tile prefetches the whole next block. */
#define UK_WB2(ROWS, STORE, QUANT)                                                                 \
    .cols = WB2_COLS, .rows = ROWS, .store = STORE, .quant = QUANT, .mb_step = 12,                 \
    .x_bytes = 256u << 10, .task_blocks = 2, .pf_tiles = 1
static const me_gemm_ukernel UK_WB2_F32 = {
    UK_WB2(WB2_ROWS, store_wb2_float, NULL),
    .tile = {tile_wb2_f32_1, tile_wb2_f32_2, tile_wb2_f32_3, tile_wb2_f32_4},
};
static const me_gemm_ukernel UK_WB2_BF16 = {
    UK_WB2(WB2_ROWS, store_wb2_float, round_bf16_rows),
    .tile = {tile_wb2_bf16_1, tile_wb2_bf16_2, tile_wb2_bf16_3, tile_wb2_bf16_4},
};
static const me_gemm_ukernel UK_WB2_I8 = {
    UK_WB2(WB2_ROWS_I8, store_wb2_i8, quant_i8_rows),
    .tile = {tile_wb2_i8_1, tile_wb2_i8_2, tile_wb2_i8_3},
};
#undef UK_WB2

/* The scheduler's view of a layer this level packed (gemm_sched.h). The
 * copies of x: bf16 K fp32 values, int8 ceil(K / 2) int16 pairs a row;
 * both fit the 4 bytes a value of me_linear_work_bytes. */
static int plan256(const me_linear *L, me_gemm_plan *p)
{
    const pk256 *pk = L->packed;
    if (!pk)
        return 0;
    memset(p, 0, sizeof *p);
    p->uk = pk->kind == ME_PACK_F32    ? &UK_WB2_F32
            : pk->kind == ME_PACK_BF16 ? &UK_WB2_BF16
                                       : &UK_WB2_I8;
    p->blocks = pk->data;
    p->block_bytes = wb2_block_bytes(pk);
    p->n_blocks = pk->n_b;
    p->steps = pk->steps;
    p->ldq = pk->kind == ME_PACK_F32    ? 0
             : pk->kind == ME_PACK_BF16 ? (size_t)L->n_in * 4
                                        : (size_t)pk->steps * 4;
    p->scale = pk->kind == ME_PACK_INT8 ? pk->scale : NULL;
    return 1;
}

static void linear256(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    me_gemm_linear(plan256, L, x, M, y, residual, epi, pool, work);
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

/* A pack cache blob as L's packed form (me_kern.adopt): only the layout
 * layout_256 gives now (the blob's header is not read). */
static int adopt256(me_linear *L, int32_t dtype, const uint8_t *blob, size_t bytes)
{
    int32_t kind = me_pack_kind(dtype);
    if (kind == ME_PACK_NONE)
        return MEDEMBED_ERR_UNSUPPORTED;
    pk256 h;
    size_t side, want = layout_256(L->n_out, L->n_in, kind, &h, &side);
    return me_blocks_adopt(L, dtype, &h, side, want, blob, bytes);
}

const me_kern me_kern_avx2 = {
    .isa = ME_ISA_AVX2,
    .linear = linear256,
    .pack = pack256,
    .unpack = me_unpack_generic,
    .adopt = adopt256,
    .attention = me_attention_avx2,
    .layernorm = me_layernorm_avx2,
    .gelu = me_gelu_avx2,
    .peak = peak256,
    .dot_f32 = me_dot_f32_avx2,
    .dot_i8 = me_dot_i8_avx2,
};
