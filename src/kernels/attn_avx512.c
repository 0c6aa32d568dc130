/*
 * attn_avx512.c - AVX-512 attention, LayerNorm and GELU.
 *
 * Attention runs per (sequence, head) on blocks of QF = 6 query rows (24
 * accumulators in the double and bf16 score tiles and in the P v tiles, 12
 * in the fp32 score tile of `fast` without AVX512_BF16; docs/PERFORMANCE.md,
 * "Attention kernel"):
 *   1. scores S = q k^T * scale as small GEMMs (6 queries x 32 keys per
 *      tile, 24 accumulators) in double: keys are transposed and widened
 *      once per head, into rows padded by one cache line;
 *   2. softmax: row max, exp(s - max) in fp32, row sum in double;
 *   3. o = (P v) / sum in fp32, summing keys in blocks of 32 that are added
 *      to a running total (blocked summation).
 * Precision choices were measured against the float64 golden hidden states
 * (max |diff| budget 1e-5, of which fp32 storage of the activations alone
 * uses ~5e-6): fp32 scores cost ~3-5e-7 RMS extra error, the largest of the
 * attention terms, so they are computed in double (scores are ~25% of the
 * attention FLOPs, attention ~3% of the encoder at 128 tokens and ~10% at
 * 512); serial fp32 P v over 512 keys was 1.7e-5 max, blocks of 32 bring it
 * to within 1e-6 of a double sum at fp32 speed.
 *
 * With `fast` (bf16 / int8 compute dtypes) the scores are fp32 FMAs, twice
 * as fast; everything else is the same.
 *
 * Each query row's arithmetic depends only on its own sequence and head, so
 * results are independent of the batch and of the thread.
 */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd_avx512.h"

#define QF 6  /* query rows per block (24 of the 32 zmm registers accumulate) */
#define KT 32 /* keys per score tile and per P v summation block */

void me_attention_avx512(const me_attn_args *a);
void me_layernorm_avx512(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                         double eps);
void me_gelu_avx512(float *x, int32_t n);

static size_t align64(size_t v)
{
    return (v + 63) & ~(size_t)63;
}

/* The next query block's rows of q (usually not yet in cache: the QKV
 * GEMM wrote them long ago), asked for while this block is computed. The
 * first block's are asked for before the keys are transposed. */
static void prefetch_q(const me_attn_args *a, int32_t i0)
{
    for (int32_t i = i0; i < i0 + QF && i < a->n_q; i++)
        for (int32_t c = 0; c < a->d; c += 16)
            _mm_prefetch((const char *)(a->q + (size_t)i * (size_t)a->ld + (size_t)c),
                         _MM_HINT_T0);
}

/* Rows [j0, j1) of k or v (clipped to n), d floats each: the head's keys
 * and values are first read when they are transposed or paired, usually
 * from DRAM (the QKV GEMM wrote them long ago, 9 KiB apart, so no hardware
 * prefetcher follows), and the transposition stalled on them, so the next
 * 16 rows are asked for while these are transposed (docs/PERFORMANCE.md,
 * "Attention kernel"). */
static void prefetch_rows(const float *x, int32_t ld, int32_t j0, int32_t j1, int32_t n, int32_t d)
{
    for (int32_t j = j0; j < j1 && j < n; j++)
        for (int32_t c = 0; c < d; c += 16)
            _mm_prefetch((const char *)(x + (size_t)j * (size_t)ld + (size_t)c), _MM_HINT_T0);
}

/* The softmax of one score row (n scores, zero-padded up to n32, a multiple
 * of 32), in two parts shared by the fp32 and bf16 paths: the row maximum,
 * broadcast; then, 16 scores at a time, the numerators exp(s - max) (zero
 * beyond n), whose sum is accumulated in double in index order. */
static inline __m512 row_max(const float *sr, int32_t n)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int32_t j = 0; j < n; j += 16)
        mx = _mm512_mask_max_ps(mx, me_tail16(n - j), mx, _mm512_load_ps(sr + j));
    return _mm512_set1_ps(_mm512_reduce_max_ps(mx));
}

static inline __m512 softmax16(const float *sr, int32_t j, int32_t n, __m512 vmax, __m512d *acc)
{
    __m512 p = me_exp512(_mm512_sub_ps(_mm512_load_ps(sr + j), vmax));
    p = _mm512_maskz_mov_ps(me_tail16(n - j), p);
    *acc = _mm512_add_pd(*acc, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
    *acc = _mm512_add_pd(*acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
    return p;
}

/* fp32 path: the numerators back into the score row; returns their sum */
static double softmax_row(float *sr, int32_t n, size_t n32)
{
    __m512 vmax = row_max(sr, n);
    __m512d acc = _mm512_setzero_pd();
    for (int32_t j = 0; j < (int32_t)n32; j += 16)
        _mm512_store_ps(sr + j, softmax16(sr, j, n, vmax, &acc));
    return _mm512_reduce_add_pd(acc);
}

/* bf16 path: the same numerators and sum, written straight out as bf16
 * pairs (p2: n32 / 2) */
static double softmax_row_pairs(const float *sr, int32_t n, size_t n32, uint32_t *p2)
{
    __m512 vmax = row_max(sr, n);
    __m512d acc = _mm512_setzero_pd();
    for (int32_t j = 0; j < (int32_t)n32; j += 32) {
        __m512 p0 = softmax16(sr, j, n, vmax, &acc);
        __m512 p1 = softmax16(sr, j + 16, n, vmax, &acc);
        _mm512_store_si512(p2 + j / 2, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
    }
    return _mm512_reduce_add_pd(acc);
}

/* scores of QF query rows (qd: QF x d doubles) against keys [j0, j0+32) */
static void score_tile(const double *qd, const double *kt, size_t ldk, int32_t d, int32_t j0,
                       double scale, float *srow, size_t lds)
{
    __m512d acc[QF][4];
#pragma GCC unroll 16
    for (int r = 0; r < QF; r++)
#pragma GCC unroll 16
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm512_setzero_pd();
    const double *kp = kt + j0;
    for (int32_t c = 0; c < d; c++, kp += ldk) {
        __m512d k0 = _mm512_load_pd(kp), k1 = _mm512_load_pd(kp + 8);
        __m512d k2 = _mm512_load_pd(kp + 16), k3 = _mm512_load_pd(kp + 24);
#pragma GCC unroll 16
        for (int r = 0; r < QF; r++) {
            __m512d q = _mm512_set1_pd(qd[(size_t)r * (size_t)d + (size_t)c]);
            acc[r][0] = _mm512_fmadd_pd(q, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_pd(q, k1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_pd(q, k2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_pd(q, k3, acc[r][3]);
        }
    }
    __m512d sc = _mm512_set1_pd(scale);
#pragma GCC unroll 16
    for (int r = 0; r < QF; r++)
#pragma GCC unroll 16
        for (int v = 0; v < 4; v++)
            _mm256_store_ps(srow + (size_t)r * lds + (size_t)j0 + 8 * (size_t)v,
                            _mm512_cvtpd_ps(_mm512_mul_pd(acc[r][v], sc)));
}

/* fp32 scores (fast mode): same tile, keys transposed as floats */
static void score_tile_f32(const float *q, size_t ldq, const float *kt, size_t ldk, int32_t d,
                           int32_t j0, float scale, float *srow, size_t lds)
{
    __m512 acc[QF][2];
#pragma GCC unroll 8
    for (int r = 0; r < QF; r++) {
        acc[r][0] = _mm512_setzero_ps();
        acc[r][1] = _mm512_setzero_ps();
    }
    const float *kp = kt + j0;
    for (int32_t c = 0; c < d; c++, kp += ldk) {
        __m512 k0 = _mm512_load_ps(kp), k1 = _mm512_load_ps(kp + 16);
#pragma GCC unroll 8
        for (int r = 0; r < QF; r++) {
            __m512 qv = _mm512_set1_ps(q[(size_t)r * ldq + (size_t)c]);
            acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 8
    for (int r = 0; r < QF; r++) {
        _mm512_store_ps(srow + (size_t)r * lds + (size_t)j0, _mm512_mul_ps(acc[r][0], sc));
        _mm512_store_ps(srow + (size_t)r * lds + (size_t)j0 + 16, _mm512_mul_ps(acc[r][1], sc));
    }
}

/* bf16 attention (fast == 2: the bf16 and int8 compute dtypes, on CPUs with
 * AVX512_BF16): scores and P v as vdpbf16ps dot products over pairs (of head
 * dimensions for the scores, of keys for P v), with fp32 sums; softmax and
 * its row sum as in the fp32 path. The operands are rounded to bf16 exactly
 * as the bf16 GEMMs round theirs. Layouts in the work buffer:
 *   kt2 (d/2, n32 + 16) pairs (k[j][2c], k[j][2c+1]) per key j;
 *   v2  (n32/2, d16) pairs (v[2j][c], v[2j+1][c]) per dimension c. */
static inline __m512i bf16_pairs(__m512 lo, __m512 hi)
{
    /* lo[i] -> low half, hi[i] -> high half of 32-bit lane i: convert both
     * (words lo0..lo15 then hi0..hi15), then interleave the words */
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* a row of n floats as n/2 bf16 pairs (n even), 16 pairs at a time: pair i
 * is (x[2i], x[2i+1]), i.e. the row converted to bf16 in order */
static inline __m512i pairs32(const float *x, int32_t left)
{
    __m512 a = _mm512_maskz_loadu_ps(me_tail16(left), x);
    __m512 b = _mm512_maskz_loadu_ps(me_tail16(left - 16), x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(b, a);
}

static void row_pairs(const float *x, int32_t n, uint32_t *out)
{
    for (int32_t i = 0; i < n; i += 32)
        _mm512_mask_storeu_epi32(out + i / 2, me_tail16((n - i) / 2), pairs32(x + i, n - i));
}

/* The full-width P v blocks (pv_block_bf16, pv_block_f32): QF = 6 rows x 4
 * vectors of named accumulators, a00 .. a53, so that GCC keeps all 24 in
 * registers. Each block defines PV_ROW(r, x0, x1, x2, x3), which adds query
 * row r's products for the current key (pair) to x0 .. x3; PV6_OUT adds the
 * accumulators to the running totals ot[r][0..64). */
#define PV6_ZERO                                                                                   \
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;                             \
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;                                             \
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;                                             \
    __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;                                             \
    __m512 a40 = a00, a41 = a00, a42 = a00, a43 = a00;                                             \
    __m512 a50 = a00, a51 = a00, a52 = a00, a53 = a00
#define PV6_ROWS                                                                                   \
    do {                                                                                           \
        PV_ROW(0, a00, a01, a02, a03);                                                             \
        PV_ROW(1, a10, a11, a12, a13);                                                             \
        PV_ROW(2, a20, a21, a22, a23);                                                             \
        PV_ROW(3, a30, a31, a32, a33);                                                             \
        PV_ROW(4, a40, a41, a42, a43);                                                             \
        PV_ROW(5, a50, a51, a52, a53);                                                             \
    } while (0)
#define PV6_ADD(ot, r, c, x)                                                                       \
    do {                                                                                           \
        float *t_ = (ot) + (size_t)(r) * 64 + 16 * (c);                                            \
        _mm512_store_ps(t_, _mm512_add_ps(_mm512_load_ps(t_), x));                                 \
    } while (0)
#define PV6_OUT(ot)                                                                                \
    do {                                                                                           \
        PV6_ADD(ot, 0, 0, a00); PV6_ADD(ot, 0, 1, a01); PV6_ADD(ot, 0, 2, a02);                    \
        PV6_ADD(ot, 0, 3, a03); PV6_ADD(ot, 1, 0, a10); PV6_ADD(ot, 1, 1, a11);                    \
        PV6_ADD(ot, 1, 2, a12); PV6_ADD(ot, 1, 3, a13); PV6_ADD(ot, 2, 0, a20);                    \
        PV6_ADD(ot, 2, 1, a21); PV6_ADD(ot, 2, 2, a22); PV6_ADD(ot, 2, 3, a23);                    \
        PV6_ADD(ot, 3, 0, a30); PV6_ADD(ot, 3, 1, a31); PV6_ADD(ot, 3, 2, a32);                    \
        PV6_ADD(ot, 3, 3, a33); PV6_ADD(ot, 4, 0, a40); PV6_ADD(ot, 4, 1, a41);                    \
        PV6_ADD(ot, 4, 2, a42); PV6_ADD(ot, 4, 3, a43); PV6_ADD(ot, 5, 0, a50);                    \
        PV6_ADD(ot, 5, 1, a51); PV6_ADD(ot, 5, 2, a52); PV6_ADD(ot, 5, 3, a53);                    \
    } while (0)

/* ot[r][0..64) += sum over key pairs j2 in [j2a, j2b) of p2[r][j2] . v2[j2][0..64), for the
 * QF = 6 query rows: the full-width (64 output columns) case of the bf16 P v loop, written
 * with 24 named accumulators so that none is spilled to the stack (the generic loop, with its
 * per-vector width test, had GCC keep two accumulators in memory).
 * The arithmetic (which products, in which order, into which lane) is exactly the generic
 * loop's, so results are bit-identical. */
static inline void pv_block_bf16(const uint32_t *v2, size_t d16, const uint32_t *p2, size_t ldp,
                                 int32_t j2a, int32_t j2b, float *ot)
{
    PV6_ZERO;
    for (int32_t j2 = j2a; j2 < j2b; j2++) {
        const uint32_t *vr = v2 + (size_t)j2 * d16;
        __m512bh v0 = (__m512bh)_mm512_load_si512(vr), v1 = (__m512bh)_mm512_load_si512(vr + 16);
        __m512bh v2_ = (__m512bh)_mm512_load_si512(vr + 32);
        __m512bh v3 = (__m512bh)_mm512_load_si512(vr + 48);
#define PV_ROW(r, x0, x1, x2, x3)                                                                  \
    do {                                                                                           \
        __m512bh pv = (__m512bh)_mm512_set1_epi32((int)p2[(size_t)(r) * ldp + (size_t)j2]);        \
        x0 = _mm512_dpbf16_ps(x0, pv, v0);                                                         \
        x1 = _mm512_dpbf16_ps(x1, pv, v1);                                                         \
        x2 = _mm512_dpbf16_ps(x2, pv, v2_);                                                        \
        x3 = _mm512_dpbf16_ps(x3, pv, v3);                                                         \
    } while (0)
        PV6_ROWS;
#undef PV_ROW
    }
    PV6_OUT(ot);
}

/* ot[r][0..64) += sum over keys j in [j0, j1) of s[r][j] v[j][0..64), for the QF = 6 query
 * rows: the full-width case of the fp32 P v loop with 24 named accumulators. The generic loop
 * tested its vector count inside the key loop (GCC did not hoist `v < nv`). Same products,
 * order and lanes as the generic loop, so the results are bit-identical. */
static inline void pv_block_f32(const float *v, size_t ldv, const float *s, size_t lds,
                                int32_t j0, int32_t j1, float *ot)
{
    PV6_ZERO;
    for (int32_t j = j0; j < j1; j++) {
        const float *vr = v + (size_t)j * ldv;
        __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
        __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
#define PV_ROW(r, x0, x1, x2, x3)                                                                  \
    do {                                                                                           \
        __m512 p = _mm512_set1_ps(s[(size_t)(r) * lds + (size_t)j]);                               \
        x0 = _mm512_fmadd_ps(p, v0, x0);                                                           \
        x1 = _mm512_fmadd_ps(p, v1, x1);                                                           \
        x2 = _mm512_fmadd_ps(p, v2, x2);                                                           \
        x3 = _mm512_fmadd_ps(p, v3, x3);                                                           \
    } while (0)
        PV6_ROWS;
#undef PV_ROW
    }
    PV6_OUT(ot);
}

/* bf16 scores of the QF query rows (q2: QF x d2 pairs) against keys
 * [j0, j0 + 16 nv): nv = 4 (64 keys, 24 accumulators: enough independent
 * chains to keep both vdpbf16ps pipes busy; 32 keys left them half idle)
 * or 2 for the last 32 keys. Each score is the same chain of pair dot
 * products over c in order whatever the tile width. */
static inline __attribute__((always_inline)) void
score_tile_bf16(const uint32_t *q2, int32_t d2, const uint32_t *kt2, size_t ldk, size_t n32,
                size_t j0, __m512 sc, float *s, const int nv)
{
    __m512 acc[QF][4];
#pragma GCC unroll 8
    for (int r = 0; r < QF; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_setzero_ps();
    const uint32_t *kp = kt2 + j0;
    for (int32_t c = 0; c < d2; c++, kp += ldk) {
        __m512bh k[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            k[v] = (__m512bh)_mm512_load_si512(kp + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < QF; r++) {
            __m512bh qv = (__m512bh)_mm512_set1_epi32((int)q2[(size_t)r * (size_t)d2 + (size_t)c]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], qv, k[v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < QF; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_store_ps(s + (size_t)r * n32 + j0 + 16 * (size_t)v, _mm512_mul_ps(acc[r][v], sc));
}

static void attention_bf16(const me_attn_args *a)
{
    int32_t n = a->n, d = a->d, d2 = d / 2;
    size_t n32 = ((size_t)n + KT - 1) / KT * KT;
    size_t dv = ((size_t)d + 15) / 16, d16 = dv * 16;
    uint8_t *w = a->work;
    size_t ldk = n32 + 16;                 /* one cache line off the 2 KiB stride */
    uint32_t *kt2 = (uint32_t *)(void *)w; /* (d2, ldk) */
    w += align64((size_t)d2 * ldk * 4);
    uint32_t *v2 = (uint32_t *)(void *)w; /* (n32 / 2, d16) */
    w += align64(n32 / 2 * d16 * 4);
    uint32_t *q2 = (uint32_t *)(void *)w; /* (QF, d2) */
    w += align64((size_t)QF * (size_t)d2 * 4);
    float *s = (float *)(void *)w; /* (QF, n32) */
    w += align64((size_t)QF * n32 * 4);
    uint32_t *p2 = (uint32_t *)(void *)w; /* (QF, n32 / 2) */
    w += align64((size_t)QF * n32 / 2 * 4);
    float *ot = (float *)(void *)w; /* (QF, 64) running totals */

    /* keys as bf16 pairs of dimensions, transposed 16 keys x 16 pairs at a
     * time in registers (gathers from a row-major copy before: 183 us per
     * forward at 1x16, and most of the key preparation at 512 tokens) */
    for (int32_t j0 = 0; j0 < (int32_t)n32; j0 += 16) {
        prefetch_rows(a->k, a->ld, j0 + 16, j0 + 32, n, d);
        for (int32_t c0 = 0; c0 < d2; c0 += 16) {
            __m512i r[16];
            for (int32_t i = 0; i < 16; i++)
                r[i] = j0 + i < n ? pairs32(a->k + (size_t)(j0 + i) * (size_t)a->ld + 2 * c0,
                                            d - 2 * c0)
                                  : _mm512_setzero_si512();
            me_transpose16x16(r);
            int32_t cn = d2 - c0 < 16 ? d2 - c0 : 16;
            for (int32_t c = 0; c < cn; c++)
                _mm512_store_si512(kt2 + (size_t)(c0 + c) * ldk + (size_t)j0, r[c]);
        }
    }
    for (int32_t j2 = 0; j2 < (int32_t)n32 / 2; j2++) {
        int32_t j = 2 * j2;
        if (j2 % 8 == 0)
            prefetch_rows(a->v, a->ld, j + 16, j + 32, n, d);
        for (size_t c0 = 0; c0 < d16; c0 += 16) {
            __mmask16 cm = me_tail16(d - (int32_t)c0);
            __m512 lo = j < n ? _mm512_maskz_loadu_ps(cm, a->v + (size_t)j * (size_t)a->ld + c0)
                              : _mm512_setzero_ps();
            __m512 hi = j + 1 < n
                            ? _mm512_maskz_loadu_ps(cm, a->v + (size_t)(j + 1) * (size_t)a->ld + c0)
                            : _mm512_setzero_ps();
            _mm512_store_si512(v2 + (size_t)j2 * d16 + c0, bf16_pairs(lo, hi));
        }
    }

    for (int32_t i0 = 0; i0 < a->n_q; i0 += QF) {
        int32_t rows = a->n_q - i0 < QF ? a->n_q - i0 : QF;
        prefetch_q(a, i0 + QF);
        for (int r = 0; r < QF; r++)
            row_pairs(a->q + (size_t)(i0 + (r < rows ? r : 0)) * (size_t)a->ld, d,
                      q2 + (size_t)r * (size_t)d2);
        __m512 sc = _mm512_set1_ps(a->scale);
        size_t js = 0;
        for (; js + 2 * KT <= n32; js += 2 * KT)
            score_tile_bf16(q2, d2, kt2, ldk, n32, js, sc, s, 4);
        if (js < n32)
            score_tile_bf16(q2, d2, kt2, ldk, n32, js, sc, s, 2);
        double sum[QF];
        for (int r = 0; r < QF; r++) {
            float *sr = s + (size_t)r * n32;
            sum[r] = softmax_row_pairs(sr, n, n32, p2 + (size_t)r * n32 / 2);
        }
        for (size_t c0 = 0; c0 < d16; c0 += 64) {
            int32_t nv = d16 - c0 < 64 ? (int32_t)((d16 - c0) / 16) : 4;
            memset(ot, 0, (size_t)QF * 64 * sizeof *ot);
            for (int32_t j0 = 0; j0 < n; j0 += KT) {
                int32_t j1 = j0 + KT < n ? j0 + KT : n;
                if (nv == 4) {
                    pv_block_bf16(v2 + c0, d16, p2, n32 / 2, j0 / 2, (j1 + 1) / 2, ot);
                    continue;
                }
                __m512 acc[QF][4];
#pragma GCC unroll 8
                for (int r = 0; r < QF; r++)
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++)
                        acc[r][v] = _mm512_setzero_ps();
                for (int32_t j2 = j0 / 2; j2 < (j1 + 1) / 2; j2++) {
                    const uint32_t *vr = v2 + (size_t)j2 * d16 + c0;
                    __m512bh vv[4];
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++)
                        vv[v] = (__m512bh)(v < nv ? _mm512_load_si512(vr + 16 * v)
                                                  : _mm512_setzero_si512());
#pragma GCC unroll 8
                    for (int r = 0; r < QF; r++) {
                        __m512bh pv =
                            (__m512bh)_mm512_set1_epi32((int)p2[(size_t)r * n32 / 2 + (size_t)j2]);
#pragma GCC unroll 4
                        for (int v = 0; v < 4; v++)
                            acc[r][v] = _mm512_dpbf16_ps(acc[r][v], pv, vv[v]);
                    }
                }
#pragma GCC unroll 8
                for (int r = 0; r < QF; r++)
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++) {
                        float *t = ot + (size_t)r * 64 + 16 * (size_t)v;
                        _mm512_store_ps(t, _mm512_add_ps(_mm512_load_ps(t), acc[r][v]));
                    }
            }
            for (int r = 0; r < rows; r++) {
                __m512 den = _mm512_set1_ps((float)sum[r]);
                float *o = a->o + (size_t)(i0 + r) * (size_t)a->ldo + c0;
                for (int v = 0; v < nv; v++)
                    _mm512_mask_storeu_ps(
                        o + 16 * v, me_tail16(d - (int32_t)c0 - 16 * v),
                        _mm512_div_ps(_mm512_load_ps(ot + (size_t)r * 64 + 16 * (size_t)v), den));
            }
        }
    }
}

static int have_bf16(void)
{
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        me_cpu c;
        me_cpu_detect(&c);
        v = c.avx512_bf16;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}

void me_attention_avx512(const me_attn_args *a)
{
    if (a->fast == 2 && a->d % 2 == 0 && a->d <= 1024 && have_bf16()) {
        attention_bf16(a);
        return;
    }
    int32_t n = a->n, d = a->d;
    size_t n32 = ((size_t)n + KT - 1) / KT * KT;
    size_t dv = ((size_t)d + 15) / 16; /* 16-float vectors per row of v / o */
    uint8_t *w = a->work;
    /* Row stride of the transposed keys: n32 plus one cache line, so that
     * a score tile's d (64) rows do not all fall in the same L1 sets (a
     * stride of n32 = 512 doubles is 4 KiB). */
    size_t ldk = n32 + 8, ldkf = n32 + 16; /* doubles; floats (fast) */
    double *kt = (double *)(void *)w; /* (d, ldk) */
    w += align64((size_t)d * ldk * 8);
    double *qd = (double *)(void *)w; /* (QF, d) */
    w += align64((size_t)QF * (size_t)d * 8);
    float *s = (float *)(void *)w; /* (QF, n32) */
    w += align64((size_t)QF * n32 * 4);
    float *ot = (float *)(void *)w; /* (QF, 64) running totals, 64 columns at a time */

    /* keys, transposed 16 x 16 at a time in registers (widened to double
     * unless fast); zero beyond n. The 16 rows' loads go out together: the
     * head's k, q and v are usually first touched here (DRAM), and a scalar
     * transposition stalls on those misses one at a time. */
    float *ktf = (float *)(void *)kt;
    prefetch_q(a, 0);
    for (int32_t j0 = 0; j0 < (int32_t)n32; j0 += 16) {
        prefetch_rows(a->k, a->ld, j0 + 16, j0 + 32, n, d);
        for (int32_t c0 = 0; c0 < d; c0 += 16) {
            __mmask16 cm = me_tail16(d - c0);
            __m512i r[16];
            for (int32_t i = 0; i < 16; i++)
                r[i] = j0 + i < n ? _mm512_maskz_loadu_epi32(
                                        cm, a->k + (size_t)(j0 + i) * (size_t)a->ld + (size_t)c0)
                                  : _mm512_setzero_si512();

            me_transpose16x16(r);
            int32_t cn = d - c0 < 16 ? d - c0 : 16;
            for (int32_t c = 0; c < cn; c++) {
                __m512 v = _mm512_castsi512_ps(r[c]);
                if (a->fast) {
                    _mm512_store_ps(ktf + (size_t)(c0 + c) * ldkf + (size_t)j0, v);
                    continue;
                }
                size_t o = (size_t)(c0 + c) * ldk + (size_t)j0;
                _mm512_store_pd(kt + o, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
                _mm512_store_pd(kt + o + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
            }
        }
    }

    for (int32_t i0 = 0; i0 < a->n_q; i0 += QF) {
        int32_t rows = a->n_q - i0 < QF ? a->n_q - i0 : QF;
        if (a->fast && rows == QF) {
            for (size_t j0 = 0; j0 < n32; j0 += KT)
                score_tile_f32(a->q + (size_t)i0 * (size_t)a->ld, (size_t)a->ld, ktf, ldkf, d,
                               (int32_t)j0, a->scale, s, n32);
        } else if (a->fast) {
            float *qf = (float *)(void *)qd;
            for (int r = 0; r < QF; r++)
                memcpy(qf + (size_t)r * (size_t)d,
                       a->q + (size_t)(i0 + (r < rows ? r : 0)) * (size_t)a->ld,
                       sizeof *qf * (size_t)d);
            for (size_t j0 = 0; j0 < n32; j0 += KT)
                score_tile_f32(qf, (size_t)d, ktf, ldkf, d, (int32_t)j0, a->scale, s, n32);
        } else {
            for (int r = 0; r < QF; r++) {
                const float *q = a->q + (size_t)(i0 + (r < rows ? r : 0)) * (size_t)a->ld;
                double *qr = qd + (size_t)r * (size_t)d;
                for (int32_t c = 0; c < d; c += 16) {
                    __mmask16 cm = me_tail16(d - c);
                    if (cm == 0xFFFF) { /* unmasked: the masked form is slower */
                        __m512 v = _mm512_loadu_ps(q + c);
                        _mm512_storeu_pd(qr + c, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
                        _mm512_storeu_pd(qr + c + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
                        continue;
                    }
                    __m512 v = _mm512_maskz_loadu_ps(cm, q + c);
                    _mm512_mask_storeu_pd(qr + c, (__mmask8)cm,
                                          _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
                    _mm512_mask_storeu_pd(qr + c + 8, (__mmask8)(cm >> 8),
                                          _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
                }
            }
            for (size_t j0 = 0; j0 < n32; j0 += KT)
                score_tile(qd, kt, ldk, d, (int32_t)j0, (double)a->scale, s, n32);
        }

        prefetch_q(a, i0 + QF);
        /* softmax numerators and sums */
        double sum[QF];
        for (int r = 0; r < QF; r++)
            sum[r] = softmax_row(s + (size_t)r * n32, n, n32);

        /* o = P v, keys in blocks of KT */
        for (size_t c0 = 0; c0 < dv; c0 += 4) {
            int32_t nv = dv - c0 < 4 ? (int32_t)(dv - c0) : 4;
            __mmask16 cm[4];
#pragma GCC unroll 16
            for (int v = 0; v < 4; v++)
                cm[v] = me_tail16(d - (int32_t)(c0 + (size_t)v) * 16);
            memset(ot, 0, (size_t)QF * 64 * sizeof *ot);
            for (int32_t j0 = 0; j0 < n; j0 += KT) {
                int32_t j1 = j0 + KT < n ? j0 + KT : n;
                if (nv == 4 && cm[3] == 0xFFFF) {
                    pv_block_f32(a->v + c0 * 16, (size_t)a->ld, s, n32, j0, j1, ot);
                    continue;
                }
                __m512 acc[QF][4];
#pragma GCC unroll 16
                for (int r = 0; r < QF; r++)
#pragma GCC unroll 16
                    for (int v = 0; v < 4; v++)
                        acc[r][v] = _mm512_setzero_ps();
                for (int32_t j = j0; j < j1; j++) {
                    const float *vr = a->v + (size_t)j * (size_t)a->ld + c0 * 16;
                    __m512 vv[4];
#pragma GCC unroll 16
                    for (int v = 0; v < 4; v++)
                        vv[v] = v < nv ? _mm512_maskz_loadu_ps(cm[v], vr + 16 * v)
                                       : _mm512_setzero_ps();
#pragma GCC unroll 16
                    for (int r = 0; r < QF; r++) {
                        __m512 p = _mm512_set1_ps(s[(size_t)r * n32 + (size_t)j]);
#pragma GCC unroll 16
                        for (int v = 0; v < 4; v++)
                            acc[r][v] = _mm512_fmadd_ps(p, vv[v], acc[r][v]);
                    }
                }
#pragma GCC unroll 16
                for (int r = 0; r < QF; r++)
#pragma GCC unroll 16
                    for (int v = 0; v < 4; v++) {
                        float *t = ot + (size_t)r * 64 + 16 * (size_t)v;
                        _mm512_store_ps(t, _mm512_add_ps(_mm512_load_ps(t), acc[r][v]));
                    }
            }
#pragma GCC unroll 16
            for (int r = 0; r < rows; r++) {
                __m512 inv = _mm512_set1_ps((float)sum[r]);
                float *o = a->o + (size_t)(i0 + r) * (size_t)a->ldo + c0 * 16;
#pragma GCC unroll 16
                for (int v = 0; v < nv; v++)
                    _mm512_mask_storeu_ps(
                        o + 16 * v, cm[v],
                        _mm512_div_ps(_mm512_load_ps(ot + (size_t)r * 64 + 16 * (size_t)v), inv));
            }
        }
    }
}

/* Mean and variance in double (two passes), then (x - mean) * inv * g + b in
 * fp32 with separate roundings, like the scalar reference. */
void me_layernorm_avx512(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                         double eps)
{
    for (int32_t r = 0; r < rows; r++, x += n) {
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        for (int32_t i = 0; i < n; i += 16) {
            __m512 v = _mm512_maskz_loadu_ps(me_tail16(n - i), x + i);
            s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
        }
        double mean = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / n;
        __m512d vm = _mm512_set1_pd(mean);
        s0 = _mm512_setzero_pd();
        s1 = _mm512_setzero_pd();
        for (int32_t i = 0; i < n; i += 16) {
            __mmask16 m = me_tail16(n - i);
            __m512 v = _mm512_maskz_loadu_ps(m, x + i);
            __m512d d0 =
                _mm512_maskz_sub_pd((__mmask8)m, _mm512_cvtps_pd(_mm512_castps512_ps256(v)), vm);
            __m512d d1 = _mm512_maskz_sub_pd((__mmask8)(m >> 8),
                                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), vm);
            s0 = _mm512_fmadd_pd(d0, d0, s0);
            s1 = _mm512_fmadd_pd(d1, d1, s1);
        }
        double var = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / n;
        __m512 inv = _mm512_set1_ps((float)(1.0 / sqrt(var + eps)));
        __m512 mu = _mm512_set1_ps((float)mean);
        for (int32_t i = 0; i < n; i += 16) {
            __mmask16 m = me_tail16(n - i);
            __m512 v = _mm512_maskz_loadu_ps(m, x + i);
            v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(v, mu), inv),
                              _mm512_maskz_loadu_ps(m, g + i));
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
            _mm512_mask_storeu_ps(x + i, m, v);
        }
    }
}

void me_gelu_avx512(float *x, int32_t n)
{
    for (int32_t i = 0; i < n; i += 16) {
        __mmask16 m = me_tail16(n - i);
        _mm512_mask_storeu_ps(x + i, m, me_gelu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}
