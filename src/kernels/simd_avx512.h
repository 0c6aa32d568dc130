/*
 * simd_avx512.h - vector math shared by the AVX-512 kernel files (include
 * only from *_avx512.c, which get the ISA flags): exp, erfc, GELU and the
 * fixed-order 16-way reduction tree.
 */
#ifndef ME_SIMD_AVX512_H
#define ME_SIMD_AVX512_H

#include <immintrin.h>

#define ME_INLINE static inline __attribute__((always_inline))

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

/* Horner on c[0] + c[1] s + ... + c[n-1] s^(n-1). */
ME_INLINE __m512 me_horner512(__m512 s, const float *c, int n)
{
    __m512 p = _mm512_set1_ps(c[n - 1]);
    for (int i = n - 2; i >= 0; i--)
        p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(c[i]));
    return p;
}

/* erfc(x) with fdlibm's s_erff.c algorithm and coefficients (the erfcf of
 * glibc, musl, newlib): four argument ranges, each a rational
 * approximation. All ranges are evaluated and blended; GELU is a tiny share
 * of the work, so clarity wins. Relative error a few ulp everywhere. */
static const float ME_ERF_PP[5] = {1.2837916613e-01f, -3.2504209876e-01f, -2.8481749818e-02f,
                                   -5.7702702470e-03f, -2.3763017452e-05f};
static const float ME_ERF_QQ[6] = {1.0f, 3.9791721106e-01f, 6.5022252500e-02f,
                                   5.0813062117e-03f, 1.3249473704e-04f, -3.9602282413e-06f};
static const float ME_ERF_PA[7] = {-2.3621185683e-03f, 4.1485610604e-01f, -3.7220788002e-01f,
                                   3.1834661961e-01f,  -1.1089469492e-01f, 3.5478305072e-02f,
                                   -2.1663755178e-03f};
static const float ME_ERF_QA[7] = {1.0f, 1.0642088205e-01f, 5.4039794207e-01f, 7.1828655899e-02f,
                                   1.2617121637e-01f, 1.3637083583e-02f, 1.1984500103e-02f};
static const float ME_ERF_RA[8] = {-9.8649440333e-03f, -6.9385856390e-01f, -1.0558626175e+01f,
                                   -6.2375331879e+01f, -1.6239666748e+02f, -1.8460508728e+02f,
                                   -8.1287437439e+01f, -9.8143291473e+00f};
static const float ME_ERF_SA[9] = {1.0f,
                                   1.9651271820e+01f,
                                   1.3765776062e+02f,
                                   4.3456588745e+02f,
                                   6.4538726807e+02f,
                                   4.2900814819e+02f,
                                   1.0863500214e+02f,
                                   6.5702495575e+00f,
                                   -6.0424413532e-02f};
static const float ME_ERF_RB[7] = {-9.8649431020e-03f, -7.9928326607e-01f, -1.7757955551e+01f,
                                   -1.6063638306e+02f, -6.3756646729e+02f, -1.0250950928e+03f,
                                   -4.8351919556e+02f};
static const float ME_ERF_SB[8] = {1.0f,
                                   3.0338060379e+01f,
                                   3.2579251099e+02f,
                                   1.5367296143e+03f,
                                   3.1998581543e+03f,
                                   2.5530502930e+03f,
                                   4.7452853394e+02f,
                                   -2.2440952301e+01f};

ME_INLINE __m512 me_erfc512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    __m512 ax = _mm512_abs_ps(x);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);

    /* |x| < 0.84375: erf = x + x P(x^2) / Q(x^2) */
    __m512 z = _mm512_mul_ps(x, x);
    __m512 r = _mm512_div_ps(me_horner512(z, ME_ERF_PP, 5), me_horner512(z, ME_ERF_QQ, 6));
    __m512 xr = _mm512_mul_ps(x, r);
    __m512 c_tiny = _mm512_sub_ps(one, _mm512_add_ps(x, xr));                  /* |x| < 1/4 */
    __m512 c_small = _mm512_sub_ps(half, _mm512_add_ps(xr, _mm512_sub_ps(x, half))); /* else */
    __m512 c0 = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(0.25f), _CMP_LT_OQ),
                                     c_small, c_tiny);

    /* 0.84375 <= |x| < 1.25: erfc = 1 - erx - P(s) / Q(s), s = |x| - 1 */
    const __m512 erx = _mm512_set1_ps(8.4506291151e-01f);
    __m512 s = _mm512_sub_ps(ax, one);
    __m512 pq = _mm512_div_ps(me_horner512(s, ME_ERF_PA, 7), me_horner512(s, ME_ERF_QA, 7));
    __m512 c1 = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_sub_ps(one, erx), pq),
                                     _mm512_add_ps(one, _mm512_add_ps(erx, pq)));

    /* 1.25 <= |x| < 28: erfc = exp(-z^2 - 0.5625) exp((z - |x|)(z + |x|) + R/S) / |x| */
    __m512 si = _mm512_div_ps(one, _mm512_mul_ps(ax, ax));
    __mmask16 far = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(2.85714285714f), _CMP_GE_OQ);
    __m512 R = _mm512_mask_blend_ps(far, me_horner512(si, ME_ERF_RA, 8),
                                    me_horner512(si, ME_ERF_RB, 7));
    __m512 S = _mm512_mask_blend_ps(far, me_horner512(si, ME_ERF_SA, 9),
                                    me_horner512(si, ME_ERF_SB, 8));
    /* |x| with the low 13 mantissa bits cleared: z*z is then exact */
    __m512 zt = _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(ax), _mm512_set1_epi32((int)0xffffe000u)));
    __m512 e1 = me_exp512(_mm512_fnmsub_ps(zt, zt, _mm512_set1_ps(0.5625f)));
    __m512 e2 = me_exp512(
        _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(zt, ax), _mm512_add_ps(zt, ax)),
                      _mm512_div_ps(R, S)));
    __m512 t = _mm512_div_ps(_mm512_mul_ps(e1, e2), ax);
    /* beyond 10 erfc underflows anyway; avoids inf*0 in the unused lanes */
    t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(10.0f), _CMP_GE_OQ), t,
                             _mm512_setzero_ps());
    __m512 c2 = _mm512_mask_blend_ps(neg, t, _mm512_sub_ps(_mm512_set1_ps(2.0f), t));

    __m512 c = c2;
    c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(1.25f), _CMP_LT_OQ), c, c1);
    c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.84375f), _CMP_LT_OQ), c, c0);
    return c;
}

/* gelu(x) = 0.5 x erfc(-x / sqrt 2), the exact erf form HF uses, written
 * with erfc so the negative tail keeps full relative precision. */
ME_INLINE __m512 me_gelu512(__m512 x)
{
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(-0.70710678118654752440f));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), me_erfc512(t));
}

/* Reduces 16 vectors to one: r[4q + e] = sum of the lanes of a[4e + q],
 * each summed by the same tree (lanes l and l+8, then l+4, l+2, l+1). Feed
 * a[4c + r] = acc(row r, column c) to get r[4 row + col]. */
ME_INLINE __m512 me_hsum16x16(const __m512 a[16])
{
    __m512 t[8], u[4], v[2];
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xdd));
    for (int i = 0; i < 2; i++)
        v[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xee));
    return _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xdd));
}

/* The same tree on int32 lanes (exact, so only the layout matters). */
ME_INLINE __m512i me_hsum16x16_i32(const __m512i a[16])
{
    __m512i t[8], u[4], v[2];
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], 0x44),
                                _mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], 0xee));
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(t[2 * i], t[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(t[2 * i], t[2 * i + 1], 0xdd));
    for (int i = 0; i < 2; i++) {
        __m512 a0 = _mm512_castsi512_ps(u[2 * i]), a1 = _mm512_castsi512_ps(u[2 * i + 1]);
        v[i] = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0x44)),
                                _mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0xee)));
    }
    __m512 b0 = _mm512_castsi512_ps(v[0]), b1 = _mm512_castsi512_ps(v[1]);
    return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(b0, b1, 0x88)),
                            _mm512_castps_si512(_mm512_shuffle_ps(b0, b1, 0xdd)));
}

#endif
