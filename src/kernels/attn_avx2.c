/*
 * attn_avx2.c - AVX2 attention, LayerNorm and GELU: the algorithms of
 * attn_avx512.c (read its header for the precision choices) at 8 fp32 / 4
 * double lanes: scores in double on tiles of 3 queries x 16 keys, fp32
 * softmax numerators with a double row sum, P v in fp32 over blocks of 32
 * keys added to a running total. 3 query rows (12 score accumulators):
 * 2 (8) leave no slack for the FMA latency and 4 spill (docs/PERFORMANCE.md,
 * "Attention kernel"). With `fast` (bf16 / int8 dtypes; AVX2 has no bf16 dot
 * product) the scores are fp32 FMAs on 32-key tiles, twice as fast, as on
 * AVX-512 without AVX512_BF16.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd_avx2.h"

#define QB 3  /* query rows per block */
#define KB 32 /* keys per block (double scores 16 at a time, fp32 scores 32) */

void me_attention_avx2(const me_attn_args *a);
void me_layernorm_avx2(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps);
void me_gelu_avx2(float *x, int32_t n);

static size_t align64(size_t v)
{
    return (v + 63) & ~(size_t)63;
}

static void score_tile(const double *qd, const double *kt, size_t ldk, int32_t d, size_t j0,
                       double scale, float *s, size_t lds)
{
    __m256d acc[QB][4];
#pragma GCC unroll 8
    for (int r = 0; r < QB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm256_setzero_pd();
    const double *kp = kt + j0;
    for (int32_t c = 0; c < d; c++, kp += ldk) {
        __m256d k0 = _mm256_load_pd(kp), k1 = _mm256_load_pd(kp + 4);
        __m256d k2 = _mm256_load_pd(kp + 8), k3 = _mm256_load_pd(kp + 12);
#pragma GCC unroll 8
        for (int r = 0; r < QB; r++) {
            __m256d q = _mm256_broadcast_sd(qd + (size_t)r * (size_t)d + (size_t)c);
            acc[r][0] = _mm256_fmadd_pd(q, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_pd(q, k1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_pd(q, k2, acc[r][2]);
            acc[r][3] = _mm256_fmadd_pd(q, k3, acc[r][3]);
        }
    }
    __m256d sc = _mm256_set1_pd(scale);
#pragma GCC unroll 8
    for (int r = 0; r < QB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            _mm_store_ps(s + (size_t)r * lds + j0 + 4 * (size_t)v,
                         _mm256_cvtpd_ps(_mm256_mul_pd(acc[r][v], sc)));
}

/* ot[r][0..32) += sum over keys j in [j0, j1) of s[r][j] v[j][0..32) for R
 * query rows (score row r at s + r lds): the full-width P v case. The
 * generic loop keeps QB x 4 = 12 accumulators, 4 vectors of v and a
 * broadcast: 17 of the 16 ymm registers, so GCC kept one accumulator in
 * memory (a store-forwarding chain per key). Called for rows {0, 1} and then {2}: 8 + 4 + 1 and
 * 4 + 4 + 1 registers. Same products, order and lanes as the generic loop:
 * bit-identical. */
static inline __attribute__((always_inline)) void pv_rows(const float *v, size_t ldv,
                                                          const float *s, size_t lds, int32_t j0,
                                                          int32_t j1, float *ot, const int R)
{
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (int32_t j = j0; j < j1; j++) {
        const float *vr = v + (size_t)j * ldv;
        __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8);
        __m256 v2 = _mm256_loadu_ps(vr + 16), v3 = _mm256_loadu_ps(vr + 24);
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m256 p = _mm256_broadcast_ss(s + (size_t)r * lds + (size_t)j);
            acc[r][0] = _mm256_fmadd_ps(p, v0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(p, v1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(p, v2, acc[r][2]);
            acc[r][3] = _mm256_fmadd_ps(p, v3, acc[r][3]);
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            float *t = ot + (size_t)r * 32 + 8 * (size_t)c;
            _mm256_store_ps(t, _mm256_add_ps(_mm256_load_ps(t), acc[r][c]));
        }
}

/* fp32 scores (`fast`: the bf16 / int8 dtypes, whose accuracy budget is a
 * cosine): QB queries (qf: QB x d floats) x 32 keys, 12 accumulators (GCC
 * takes the fourth key vector from memory, as in score_tile: 16 registers). */
static void score_tile_f32(const float *qf, const float *kt, size_t ldk, int32_t d, size_t j0,
                           float scale, float *s, size_t lds)
{
    __m256 acc[QB][4];
#pragma GCC unroll 8
    for (int r = 0; r < QB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm256_setzero_ps();
    const float *kp = kt + j0;
    for (int32_t c = 0; c < d; c++, kp += ldk) {
        __m256 k0 = _mm256_load_ps(kp), k1 = _mm256_load_ps(kp + 8);
        __m256 k2 = _mm256_load_ps(kp + 16), k3 = _mm256_load_ps(kp + 24);
#pragma GCC unroll 8
        for (int r = 0; r < QB; r++) {
            __m256 q = _mm256_broadcast_ss(qf + (size_t)r * (size_t)d + (size_t)c);
            acc[r][0] = _mm256_fmadd_ps(q, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(q, k1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(q, k2, acc[r][2]);
            acc[r][3] = _mm256_fmadd_ps(q, k3, acc[r][3]);
        }
    }
    __m256 sc = _mm256_set1_ps(scale);
#pragma GCC unroll 8
    for (int r = 0; r < QB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            _mm256_store_ps(s + (size_t)r * lds + j0 + 8 * (size_t)v, _mm256_mul_ps(acc[r][v], sc));
}

/* Key dimension c of every key into row c of kt (rows of ldk elements: double
 * when `wide`, else float), zero from n up to n32. */
static inline __attribute__((always_inline)) void transpose_keys(const me_attn_args *a,
                                                                 size_t n32, void *kt, size_t ldk,
                                                                 const int wide)
{
    for (int32_t c = 0; c < a->d; c++) {
        size_t o = (size_t)c * ldk;
        for (int32_t j = 0; j < a->n; j++) {
            float v = a->k[(size_t)j * (size_t)a->ld + (size_t)c];
            if (wide)
                ((double *)kt)[o + (size_t)j] = v;
            else
                ((float *)kt)[o + (size_t)j] = v;
        }
        for (size_t j = (size_t)a->n; j < n32; j++) {
            if (wide)
                ((double *)kt)[o + j] = 0;
            else
                ((float *)kt)[o + j] = 0;
        }
    }
}

void me_attention_avx2(const me_attn_args *a)
{
    int32_t n = a->n, d = a->d;
    size_t n32 = ((size_t)n + KB - 1) / KB * KB;
    size_t dv = ((size_t)d + 7) / 8; /* 8-float vectors per row of v / o */
    uint8_t *w = a->work;
    /* row stride of the transposed keys: n32 plus one cache line, off the
     * 4 KiB stride that put a score tile's rows in the same L1 sets */
    size_t ldk = n32 + 8;
    double *kt = (double *)(void *)w; /* (d, ldk) */
    w += align64((size_t)d * ldk * 8);
    double *qd = (double *)(void *)w; /* (QB, d) */
    w += align64((size_t)QB * (size_t)d * 8);
    float *s = (float *)(void *)w; /* (QB, n32) */
    w += align64((size_t)QB * n32 * 4);
    float *ot = (float *)(void *)w; /* (QB, 32) running totals */

    /* fast: keys and queries stay fp32 (rows of n32 + 16 floats) */
    float *ktf = (float *)(void *)kt, *qf = (float *)(void *)qd;
    size_t ldkf = n32 + 16;
    if (a->fast)
        transpose_keys(a, n32, ktf, ldkf, 0);
    else
        transpose_keys(a, n32, kt, ldk, 1);
    for (int32_t i0 = 0; i0 < a->n_q; i0 += QB) {
        int32_t rows = a->n_q - i0 < QB ? a->n_q - i0 : QB;
        for (int r = 0; r < QB; r++) {
            const float *q = a->q + (size_t)(i0 + (r < rows ? r : 0)) * (size_t)a->ld;
            if (a->fast) {
                memcpy(qf + (size_t)r * (size_t)d, q, sizeof *qf * (size_t)d);
                continue;
            }
            for (int32_t c = 0; c < d; c++)
                qd[(size_t)r * (size_t)d + (size_t)c] = q[c];
        }
        if (a->fast) {
            for (size_t j0 = 0; j0 < n32; j0 += KB)
                score_tile_f32(qf, ktf, ldkf, d, j0, a->scale, s, n32);
        } else {
            for (size_t j0 = 0; j0 < n32; j0 += 16)
                score_tile(qd, kt, ldk, d, j0, (double)a->scale, s, n32);
        }

        double sum[QB];
        for (int r = 0; r < QB; r++) {
            float *sr = s + (size_t)r * n32;
            /* row max, 8 lanes at a time (a scalar loop is one serial
             * chain of vmaxss). max(x,
             * m) keeps m when x is NaN, as `x > m ? x : m` did, and the
             * maximum does not depend on the order. */
            const __m256 ninf = _mm256_set1_ps(-INFINITY);
            __m256 vm = ninf;
            for (int32_t j = 0; j < n; j += 8) {
                __m256 x = _mm256_load_ps(sr + j);
                x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(me_mask8(n - j)));
                vm = _mm256_max_ps(x, vm);
            }
            float lane[8];
            _mm256_storeu_ps(lane, vm);
            float mx = -INFINITY;
            for (int i = 0; i < 8; i++)
                mx = lane[i] > mx ? lane[i] : mx;
            __m256 vmax = _mm256_set1_ps(mx);
            __m256d acc = _mm256_setzero_pd();
            for (int32_t j = 0; j < (int32_t)n32; j += 8) {
                __m256 p = me_exp256(_mm256_sub_ps(_mm256_load_ps(sr + j), vmax));
                p = _mm256_and_ps(p, _mm256_castsi256_ps(me_mask8(n - j)));
                _mm256_store_ps(sr + j, p);
                acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
                acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
            }
            double t[4];
            _mm256_storeu_pd(t, acc);
            sum[r] = (t[0] + t[2]) + (t[1] + t[3]);
        }

        for (size_t c0 = 0; c0 < dv; c0 += 4) {
            int32_t nv = dv - c0 < 4 ? (int32_t)(dv - c0) : 4;
            __m256i cm[4];
            for (int v = 0; v < 4; v++)
                cm[v] = me_mask8(d - (int32_t)(c0 + (size_t)v) * 8);
            memset(ot, 0, (size_t)QB * 32 * sizeof *ot);
            int full = nv == 4 && d - (int32_t)(c0 + 3) * 8 >= 8;
            for (int32_t j0 = 0; j0 < n; j0 += KB) {
                int32_t j1 = j0 + KB < n ? j0 + KB : n;
                if (full) {
                    const float *vc = a->v + c0 * 8;
                    _Static_assert(QB == 3, "rows {0, 1} then {2}");
                    pv_rows(vc, (size_t)a->ld, s, n32, j0, j1, ot, 2);
                    pv_rows(vc, (size_t)a->ld, s + 2 * n32, n32, j0, j1, ot + 2 * 32, 1);
                    continue;
                }
                __m256 acc[QB][4];
#pragma GCC unroll 8
                for (int r = 0; r < QB; r++)
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++)
                        acc[r][v] = _mm256_setzero_ps();
                for (int32_t j = j0; j < j1; j++) {
                    const float *vr = a->v + (size_t)j * (size_t)a->ld + c0 * 8;
                    __m256 vv[4];
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++)
                        vv[v] =
                            v < nv ? _mm256_maskload_ps(vr + 8 * v, cm[v]) : _mm256_setzero_ps();
#pragma GCC unroll 8
                    for (int r = 0; r < QB; r++) {
                        __m256 p = _mm256_broadcast_ss(s + (size_t)r * n32 + (size_t)j);
#pragma GCC unroll 4
                        for (int v = 0; v < 4; v++)
                            acc[r][v] = _mm256_fmadd_ps(p, vv[v], acc[r][v]);
                    }
                }
#pragma GCC unroll 8
                for (int r = 0; r < QB; r++)
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++) {
                        float *t = ot + (size_t)r * 32 + 8 * (size_t)v;
                        _mm256_store_ps(t, _mm256_add_ps(_mm256_load_ps(t), acc[r][v]));
                    }
            }
            for (int r = 0; r < rows; r++) {
                __m256 den = _mm256_set1_ps((float)sum[r]);
                float *o = a->o + (size_t)(i0 + r) * (size_t)a->ldo + c0 * 8;
                for (int v = 0; v < nv; v++)
                    _mm256_maskstore_ps(
                        o + 8 * v, cm[v],
                        _mm256_div_ps(_mm256_load_ps(ot + (size_t)r * 32 + 8 * (size_t)v), den));
            }
        }
    }
}

static double hsum_pd(__m256d v)
{
    double t[4];
    _mm256_storeu_pd(t, v);
    return (t[0] + t[2]) + (t[1] + t[3]);
}

void me_layernorm_avx2(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps)
{
    for (int32_t r = 0; r < rows; r++, x += n) {
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        int32_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
        double mean = hsum_pd(_mm256_add_pd(s0, s1));
        for (; i < n; i++)
            mean += x[i];
        mean /= n;
        __m256d vm = _mm256_set1_pd(mean);
        s0 = _mm256_setzero_pd();
        s1 = _mm256_setzero_pd();
        for (i = 0; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vm);
            __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vm);
            s0 = _mm256_fmadd_pd(d0, d0, s0);
            s1 = _mm256_fmadd_pd(d1, d1, s1);
        }
        double var = hsum_pd(_mm256_add_pd(s0, s1));
        for (; i < n; i++)
            var += (x[i] - mean) * (x[i] - mean);
        var /= n;
        float inv = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        __m256 vinv = _mm256_set1_ps(inv), vmu = _mm256_set1_ps(mu);
        for (i = 0; i + 8 <= n; i += 8) {
            __m256 v =
                _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmu), vinv),
                              _mm256_loadu_ps(g + i));
            _mm256_storeu_ps(x + i, _mm256_add_ps(v, _mm256_loadu_ps(b + i)));
        }
        for (; i < n; i++)
            x[i] = (x[i] - mu) * inv * g[i] + b[i];
    }
}

void me_gelu_avx2(float *x, int32_t n)
{
    for (int32_t i = 0; i < n; i += 8) {
        __m256i m = me_mask8(n - i);
        _mm256_maskstore_ps(x + i, m, me_gelu256(_mm256_maskload_ps(x + i, m)));
    }
}
