/*
 * simd_neon.h - vector math of the NEON level (include only from the ARM64
 * kernel files): the NEON twins of simd_avx2.h's exp, erfc and GELU, the
 * same reductions, polynomials and constants 4 lanes at a time.
 */
#ifndef ME_SIMD_NEON_H
#define ME_SIMD_NEON_H

#include <arm_neon.h>

#define ME_INLINE static inline __attribute__((always_inline))

/* exp(x) as me_exp256: Cody-Waite reduction, degree-6 polynomial, 2^n built
 * in the exponent field (x is clamped to >= -87.33 so n >= -126); x below
 * that gives 0. */
ME_INLINE float32x4_t me_exp_f32x4(float32x4_t x)
{
    const float32x4_t lo = vdupq_n_f32(-87.33f);
    float32x4_t xc = vmaxq_f32(x, lo);
    float32x4_t n = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(r, p, vmulq_f32(r, r));
    p = vaddq_f32(p, vdupq_n_f32(1.0f));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vbslq_f32(vcltq_f32(x, lo), vdupq_n_f32(0.0f), y);
}

/* erfc(z), z >= 0, Numerical Recipes erfcc (see me_erfc_pos512). */
ME_INLINE float32x4_t me_erfc_pos_f32x4(float32x4_t z)
{
    float32x4_t t =
        vdivq_f32(vdupq_n_f32(1.0f), vfmaq_f32(vdupq_n_f32(1.0f), z, vdupq_n_f32(0.5f)));
    float32x4_t p = vdupq_n_f32(0.17087277f);
    p = vfmaq_f32(vdupq_n_f32(-0.82215223f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.48851587f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.13520398f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.27886807f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-0.18628806f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.09678418f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.37409196f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.00002368f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.26551223f), p, t);
    return vmulq_f32(t, me_exp_f32x4(vfmsq_f32(p, z, z)));
}

/* GELU as the x86 levels compute it: 0.5 x erfc(-x / sqrt 2), with erfc of
 * a negative argument as 2 - erfc(|.|). */
ME_INLINE float32x4_t me_gelu_f32x4(float32x4_t x)
{
    float32x4_t z = vmulq_f32(vabsq_f32(x), vdupq_n_f32(0.70710678118654752440f));
    float32x4_t e = me_erfc_pos_f32x4(z);
    e = vbslq_f32(vcgeq_f32(x, vdupq_n_f32(0.0f)), vsubq_f32(vdupq_n_f32(2.0f), e), e);
    return vmulq_f32(vmulq_f32(vdupq_n_f32(0.5f), x), e);
}

#endif
