/*
 * attn_avx512.c - AVX-512 attention, LayerNorm and GELU.
 *
 * Attention runs per (sequence, head) on blocks of 4 query rows:
 *   1. scores S = q k^T * scale as small GEMMs (4 queries x 32 keys per
 *      tile) in double: keys are transposed and widened once per head;
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
 * Each query row's arithmetic depends only on its own sequence and head, so
 * results are independent of the batch and of the thread.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd_avx512.h"

#define QB 4  /* query rows per block */
#define KT 32 /* keys per score tile and per P v summation block */

void me_attention_avx512(const me_attn_args *a);
void me_layernorm_avx512(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                         double eps);
void me_gelu_avx512(float *x, int32_t n);

static size_t align64(size_t v)
{
    return (v + 63) & ~(size_t)63;
}

static __mmask16 tail16(int32_t left)
{
    return left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* scores of QB query rows (qd: QB x d doubles) against keys [j0, j0+32) */
static void score_tile(const double *qd, const double *kt, size_t ldk, int32_t d, int32_t j0,
                       double scale, float *srow, size_t lds)
{
    __m512d acc[QB][4];
    _Pragma("GCC unroll 16")
    for (int r = 0; r < QB; r++)
        _Pragma("GCC unroll 16")
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm512_setzero_pd();
    const double *kp = kt + j0;
    for (int32_t c = 0; c < d; c++, kp += ldk) {
        __m512d k0 = _mm512_load_pd(kp), k1 = _mm512_load_pd(kp + 8);
        __m512d k2 = _mm512_load_pd(kp + 16), k3 = _mm512_load_pd(kp + 24);
        _Pragma("GCC unroll 16")
        for (int r = 0; r < QB; r++) {
            __m512d q = _mm512_set1_pd(qd[(size_t)r * (size_t)d + (size_t)c]);
            acc[r][0] = _mm512_fmadd_pd(q, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_pd(q, k1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_pd(q, k2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_pd(q, k3, acc[r][3]);
        }
    }
    __m512d sc = _mm512_set1_pd(scale);
    _Pragma("GCC unroll 16")
    for (int r = 0; r < QB; r++)
        _Pragma("GCC unroll 16")
        for (int v = 0; v < 4; v++)
            _mm256_store_ps(srow + (size_t)r * lds + (size_t)j0 + 8 * (size_t)v,
                            _mm512_cvtpd_ps(_mm512_mul_pd(acc[r][v], sc)));
}

void me_attention_avx512(const me_attn_args *a)
{
    int32_t n = a->n, d = a->d;
    size_t n32 = ((size_t)n + KT - 1) / KT * KT;
    size_t dv = ((size_t)d + 15) / 16; /* 16-float vectors per row of v / o */
    uint8_t *w = a->work;
    double *kt = (double *)(void *)w; /* (d, n32) */
    w += align64((size_t)d * n32 * 8);
    double *qd = (double *)(void *)w; /* (QB, d) */
    w += align64((size_t)QB * (size_t)d * 8);
    float *s = (float *)(void *)w; /* (QB, n32) */
    w += align64((size_t)QB * n32 * 4);
    float *ot = (float *)(void *)w; /* (QB, dv * 16) running totals */

    /* keys, transposed and widened; zero beyond n */
    for (int32_t c = 0; c < d; c++) {
        double *row = kt + (size_t)c * n32;
        for (int32_t j = 0; j < n; j++)
            row[j] = a->k[(size_t)j * (size_t)a->ld + (size_t)c];
        for (size_t j = (size_t)n; j < n32; j++)
            row[j] = 0;
    }

    for (int32_t i0 = 0; i0 < n; i0 += QB) {
        int32_t rows = n - i0 < QB ? n - i0 : QB;
        _Pragma("GCC unroll 16")
        for (int r = 0; r < QB; r++) {
            const float *q = a->q + (size_t)(i0 + (r < rows ? r : 0)) * (size_t)a->ld;
            for (int32_t c = 0; c < d; c++)
                qd[(size_t)r * (size_t)d + (size_t)c] = q[c];
        }
        for (size_t j0 = 0; j0 < n32; j0 += KT)
            score_tile(qd, kt, n32, d, (int32_t)j0, (double)a->scale, s, n32);

        /* softmax numerators and sums */
        double sum[QB];
        _Pragma("GCC unroll 16")
        for (int r = 0; r < QB; r++) {
            float *sr = s + (size_t)r * n32;
            __m512 mx = _mm512_set1_ps(-INFINITY);
            for (int32_t j = 0; j < n; j += 16)
                mx = _mm512_mask_max_ps(mx, tail16(n - j), mx, _mm512_load_ps(sr + j));
            __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            __m512d acc = _mm512_setzero_pd();
            for (int32_t j = 0; j < (int32_t)n32; j += 16) {
                __m512 p = me_exp512(_mm512_sub_ps(_mm512_load_ps(sr + j), vmax));
                p = _mm512_maskz_mov_ps(tail16(n - j), p);
                _mm512_store_ps(sr + j, p);
                acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
                acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
            }
            sum[r] = _mm512_reduce_add_pd(acc);
        }

        /* o = P v, keys in blocks of KT */
        for (size_t c0 = 0; c0 < dv; c0 += 4) {
            int32_t nv = dv - c0 < 4 ? (int32_t)(dv - c0) : 4;
            __mmask16 cm[4];
            _Pragma("GCC unroll 16")
            for (int v = 0; v < 4; v++)
                cm[v] = tail16(d - (int32_t)(c0 + (size_t)v) * 16);
            memset(ot, 0, (size_t)QB * 64 * sizeof *ot);
            for (int32_t j0 = 0; j0 < n; j0 += KT) {
                int32_t j1 = j0 + KT < n ? j0 + KT : n;
                __m512 acc[QB][4];
                _Pragma("GCC unroll 16")
                for (int r = 0; r < QB; r++)
                    _Pragma("GCC unroll 16")
                    for (int v = 0; v < 4; v++)
                        acc[r][v] = _mm512_setzero_ps();
                for (int32_t j = j0; j < j1; j++) {
                    const float *vr = a->v + (size_t)j * (size_t)a->ld + c0 * 16;
                    __m512 vv[4];
                    _Pragma("GCC unroll 16")
                    for (int v = 0; v < 4; v++)
                        vv[v] = v < nv ? _mm512_maskz_loadu_ps(cm[v], vr + 16 * v)
                                       : _mm512_setzero_ps();
                    _Pragma("GCC unroll 16")
                    for (int r = 0; r < QB; r++) {
                        __m512 p = _mm512_set1_ps(s[(size_t)r * n32 + (size_t)j]);
                        _Pragma("GCC unroll 16")
                        for (int v = 0; v < 4; v++)
                            acc[r][v] = _mm512_fmadd_ps(p, vv[v], acc[r][v]);
                    }
                }
                _Pragma("GCC unroll 16")
                for (int r = 0; r < QB; r++)
                    _Pragma("GCC unroll 16")
                    for (int v = 0; v < 4; v++) {
                        float *t = ot + (size_t)r * 64 + 16 * (size_t)v;
                        _mm512_store_ps(t, _mm512_add_ps(_mm512_load_ps(t), acc[r][v]));
                    }
            }
            _Pragma("GCC unroll 16")
            for (int r = 0; r < rows; r++) {
                __m512 inv = _mm512_set1_ps((float)sum[r]);
                float *o = a->o + (size_t)(i0 + r) * (size_t)a->ldo + c0 * 16;
                _Pragma("GCC unroll 16")
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
            __m512 v = _mm512_maskz_loadu_ps(tail16(n - i), x + i);
            s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
        }
        double mean = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / n;
        __m512d vm = _mm512_set1_pd(mean);
        s0 = _mm512_setzero_pd();
        s1 = _mm512_setzero_pd();
        for (int32_t i = 0; i < n; i += 16) {
            __mmask16 m = tail16(n - i);
            __m512 v = _mm512_maskz_loadu_ps(m, x + i);
            __m512d d0 = _mm512_maskz_sub_pd((__mmask8)m, _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
                                             vm);
            __m512d d1 = _mm512_maskz_sub_pd((__mmask8)(m >> 8),
                                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), vm);
            s0 = _mm512_fmadd_pd(d0, d0, s0);
            s1 = _mm512_fmadd_pd(d1, d1, s1);
        }
        double var = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / n;
        __m512 inv = _mm512_set1_ps((float)(1.0 / sqrt(var + eps)));
        __m512 mu = _mm512_set1_ps((float)mean);
        for (int32_t i = 0; i < n; i += 16) {
            __mmask16 m = tail16(n - i);
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
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(x + i, m, me_gelu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}
