/*
 * attn_neon.c - the NEON level's LayerNorm (attn.c has the scalar
 * reference): the mean and the variance summed in double as there (two
 * float64x2 accumulators, added in a fixed order), the normalisation in
 * fp32 with the reference's operations and order, (x - mu) inv g + b, unfused.
 * Attention runs on the scalar reference at this level.
 */
#include <arm_neon.h>
#include <math.h>

#include "kernels/gemm_neon.h"

static double hsum_f64(float64x2_t s0, float64x2_t s1)
{
    return (vgetq_lane_f64(s0, 0) + vgetq_lane_f64(s1, 0)) +
           (vgetq_lane_f64(s0, 1) + vgetq_lane_f64(s1, 1));
}

void me_layernorm_neon(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps)
{
    for (int32_t r = 0; r < rows; r++, x += n) {
        float64x2_t s0 = vdupq_n_f64(0.0), s1 = s0;
        int32_t i = 0;
        for (; i + 4 <= n; i += 4) {
            float32x4_t v = vld1q_f32(x + i);
            s0 = vaddq_f64(s0, vcvt_f64_f32(vget_low_f32(v)));
            s1 = vaddq_f64(s1, vcvt_high_f64_f32(v));
        }
        double mean = hsum_f64(s0, s1);
        for (; i < n; i++)
            mean += x[i];
        mean /= n;
        float64x2_t vm = vdupq_n_f64(mean);
        s0 = s1 = vdupq_n_f64(0.0);
        for (i = 0; i + 4 <= n; i += 4) {
            float32x4_t v = vld1q_f32(x + i);
            float64x2_t d0 = vsubq_f64(vcvt_f64_f32(vget_low_f32(v)), vm);
            float64x2_t d1 = vsubq_f64(vcvt_high_f64_f32(v), vm);
            s0 = vfmaq_f64(s0, d0, d0);
            s1 = vfmaq_f64(s1, d1, d1);
        }
        double var = hsum_f64(s0, s1);
        for (; i < n; i++)
            var += (x[i] - mean) * (x[i] - mean);
        var /= n;
        float inv = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        float32x4_t vinv = vdupq_n_f32(inv), vmu = vdupq_n_f32(mu);
        for (i = 0; i + 4 <= n; i += 4) {
            float32x4_t v = vmulq_f32(vmulq_f32(vsubq_f32(vld1q_f32(x + i), vmu), vinv),
                                      vld1q_f32(g + i));
            vst1q_f32(x + i, vaddq_f32(v, vld1q_f32(b + i)));
        }
        for (; i < n; i++)
            x[i] = (x[i] - mu) * inv * g[i] + b[i];
    }
}
