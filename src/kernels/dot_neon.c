/*
 * dot_neon.c - NEON search dot products (dot.c has the scalar reference),
 * the entries of the NEON level's table. Four 4-wide fmla accumulators hide
 * the FMA latency; they are added in a fixed order and the tail is scalar,
 * so a score does not depend on where the row sits in memory.
 */
#include <arm_neon.h>

#include "kernels/gemm_neon.h"

static inline float hsum4(float32x4_t s0, float32x4_t s1, float32x4_t s2, float32x4_t s3)
{
    float32x4_t s = vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3));
    float32x2_t h = vadd_f32(vget_low_f32(s), vget_high_f32(s)); /* (0 + 2), (1 + 3) */
    return vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
}

float me_dot_f32_neon(const float *a, const float *b, int32_t n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4)
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = hsum4(s0, s1, s2, s3);
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* b[i .. i + 8) as two float32x4 (exact: int8 -> int16 -> int32 -> fp32) */
float me_dot_i8_neon(const float *a, const int8_t *b, int32_t n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        int8x16_t q = vld1q_s8(b + i);
        int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vcvtq_f32_s32(vmovl_high_s16(lo)));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vcvtq_f32_s32(vmovl_high_s16(hi)));
    }
    float s = hsum4(s0, s1, s2, s3);
    for (; i < n; i++)
        s += a[i] * (float)b[i];
    return s;
}
