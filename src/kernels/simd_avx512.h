/*
 * simd_avx512.h - vector math shared by the AVX-512 kernel files (include
 * only from *_avx512.c, which get the ISA flags): exp, erfc, GELU and the
 * fixed-order 16-way reduction tree.
 */
#ifndef ME_SIMD_AVX512_H
#define ME_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define ME_INLINE static inline __attribute__((always_inline))

/* Mask of the first `left` of 16 lanes (all for left >= 16, none for
 * left <= 0): the tail of a row processed 16 floats at a time. */
ME_INLINE __mmask16 me_tail16(int32_t left)
{
    return left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* 16 floats rounded to bf16, nearest even, by integer arithmetic (as
 * me_f32_to_bf16, without its NaN case): the rounding of every bf16 copy of
 * x, whether made by the layer itself or by the epilogue of the layer
 * before (ME_EPI_OUT_BF16), and of the weights at packing. */
ME_INLINE __m256i me_round_bf16x16(__m512 v)
{
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16));
}

/* In-register transposition of a 16 x 16 block of 32-bit words: on return
 * r[j] holds what was column j (word j of every r[i], i = 0..15). Four
 * rounds: 32-bit and 64-bit interleaves inside 128-bit lanes, then two
 * rounds of 128-bit lane selection. Used by the weight packing (load time)
 * and by attention to transpose keys. */
ME_INLINE void me_transpose16x16(__m512i r[16])
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4g + j] holds rows 4g..4g+3 of columns j, j+4, j+8, j+12 (lanes) */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int j = 0; j < 4; j++) {
        /* lanes: v0 = (c j, c j+8) of rows 0-3 then rows 4-7; v1 = (c j+4, c j+12) */
        __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
        __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        r[j + 8] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
        r[j + 4] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        r[j + 12] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
    }
}

/* exp(x) for x <= 0 (softmax arguments; larger inputs work up to 88):
 * 2^n * p(r) with n = round(x / ln 2), r = x - n ln 2 in two parts
 * (Cody-Waite) and a degree-6 polynomial for e^r on |r| <= ln2/2. Max error
 * ~1 ulp; x < -87.3 gives 0. */
ME_INLINE __m512 me_exp512(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.33f);
    __m512 xc = _mm512_max_ps(x, lo);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    __m512 y = _mm512_scalef_ps(p, n);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), y, _mm512_setzero_ps());
}

/* erfc(z) for z >= 0 by the Chebyshev-fitted form of Numerical Recipes
 * (erfcc, 2nd ed. 6.2): t = 1 / (1 + z/2),
 *   erfc(z) = t exp(-z^2 - 1.26551223 + t P(t)), P of degree 9,
 * fractional error < 1.2e-7 for every z >= 0 (one reciprocal, one exp, no
 * range split). The reciprocal is rcp14 + one Newton step (~1 ulp). */
ME_INLINE __m512 me_erfc_pos512(__m512 z)
{
    __m512 den = _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(den);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(den, t, _mm512_set1_ps(2.0f)));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    __m512 arg = _mm512_fnmadd_ps(z, z, p);
    return _mm512_mul_ps(t, me_exp512(arg));
}

/* gelu(x) = x Phi(x) = 0.5 x erfc(-x / sqrt 2), the exact erf form HF uses.
 * With z = |x| / sqrt 2: x < 0 gives 0.5 x erfc(z) (full relative
 * precision in the tail), x >= 0 gives 0.5 x (2 - erfc(z)). */
ME_INLINE __m512 me_gelu512(__m512 x)
{
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752440f));
    __m512 e = me_erfc_pos512(z);
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    e = _mm512_mask_sub_ps(e, pos, _mm512_set1_ps(2.0f), e);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), e);
}

/* Reduces 16 vectors to one: r[4q + e] = sum of the lanes of a[4e + q],
 * each summed by the same tree (lanes l and l+8, then l+4, l+2, l+1). Feed
 * a[4c + r] = acc(row r, column c) to get r[4 row + col]. */
ME_INLINE __m512 me_hsum16x16_(__m512 p0, __m512 p1, __m512 p2, __m512 p3, __m512 p4, __m512 p5,
                               __m512 p6, __m512 p7, __m512 p8, __m512 p9, __m512 p10, __m512 p11,
                               __m512 p12, __m512 p13, __m512 p14, __m512 p15)
{
    __m512 a[16] = {p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15};
    __m512 t[8], u[4], v[2];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xdd));
#pragma GCC unroll 16
    for (int i = 0; i < 2; i++)
        v[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xee));
    return _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xdd));
}

/* The same tree on int32 lanes (exact, so only the layout matters). */
ME_INLINE __m512i me_hsum16x16_i32_(__m512i p0, __m512i p1, __m512i p2, __m512i p3, __m512i p4,
                                    __m512i p5, __m512i p6, __m512i p7, __m512i p8, __m512i p9,
                                    __m512i p10, __m512i p11, __m512i p12, __m512i p13, __m512i p14,
                                    __m512i p15)
{
    __m512i a[16] = {p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15};
    __m512i t[8], u[4], v[2];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], 0x44),
                                _mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], 0xee));
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(t[2 * i], t[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(t[2 * i], t[2 * i + 1], 0xdd));
#pragma GCC unroll 16
    for (int i = 0; i < 2; i++) {
        __m512 a0 = _mm512_castsi512_ps(u[2 * i]), a1 = _mm512_castsi512_ps(u[2 * i + 1]);
        v[i] = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0x44)),
                                _mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0xee)));
    }
    __m512 b0 = _mm512_castsi512_ps(v[0]), b1 = _mm512_castsi512_ps(v[1]);
    return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(b0, b1, 0x88)),
                            _mm512_castps_si512(_mm512_shuffle_ps(b0, b1, 0xdd)));
}

/* By value, so the caller's accumulator array is never address-taken and
 * stays in registers. */
#define ME_HSUM16_ARGS(a)                                                                          \
    a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], \
        a[15]
#define me_hsum16x16(a) me_hsum16x16_(ME_HSUM16_ARGS(a))
#define me_hsum16x16_i32(a) me_hsum16x16_i32_(ME_HSUM16_ARGS(a))

#endif
