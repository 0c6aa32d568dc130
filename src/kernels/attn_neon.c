/*
 * attn_neon.c - the NEON level's attention and LayerNorm (attn.c has the
 * scalar references).
 *
 * Attention keeps the reference's precision: scores are q.k dot products
 * summed in double (two float64x2 FMA accumulators over 4 columns a step,
 * added in a fixed order), or in fp32 FMAs when `fast` allows (bf16 / int8
 * dtypes; this level has no bf16 attention, so fast 2 is fast 1); the
 * softmax numerators are the reference's expf with a double row sum; P v
 * accumulates in double, 4 columns a step. Each query row is computed on
 * its own, so the [CLS]-only call (n_q = 1) gives the full call's first
 * row bit for bit. The work buffer is used as the reference uses it.
 *
 * LayerNorm sums the mean and the variance in double as the reference does
 * (two float64x2 accumulators, added in a fixed order), and normalises in
 * fp32 with the reference's operations and order, (x - mu) inv g + b,
 * unfused.
 */
#include <arm_neon.h>
#include <math.h>

#include "kernels/gemm_neon.h"

/* q . k over d floats, summed in double. */
static double dot_f64(const float *q, const float *k, int32_t d)
{
    float64x2_t s0 = vdupq_n_f64(0.0), s1 = s0;
    int32_t c = 0;
    for (; c + 4 <= d; c += 4) {
        float32x4_t a = vld1q_f32(q + c), b = vld1q_f32(k + c);
        s0 = vfmaq_f64(s0, vcvt_f64_f32(vget_low_f32(a)), vcvt_f64_f32(vget_low_f32(b)));
        s1 = vfmaq_f64(s1, vcvt_high_f64_f32(a), vcvt_high_f64_f32(b));
    }
    double s = (vgetq_lane_f64(s0, 0) + vgetq_lane_f64(s1, 0)) +
               (vgetq_lane_f64(s0, 1) + vgetq_lane_f64(s1, 1));
    for (; c < d; c++)
        s += (double)q[c] * k[c];
    return s;
}

/* q . k over d floats, summed in fp32 (fast modes). */
static float dot_f32(const float *q, const float *k, int32_t d)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int32_t c = 0;
    for (; c + 8 <= d; c += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(q + c), vld1q_f32(k + c));
        s1 = vfmaq_f32(s1, vld1q_f32(q + c + 4), vld1q_f32(k + c + 4));
    }
    if (c + 4 <= d) {
        s0 = vfmaq_f32(s0, vld1q_f32(q + c), vld1q_f32(k + c));
        c += 4;
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; c < d; c++)
        s += q[c] * k[c];
    return s;
}

void me_attention_neon(const me_attn_args *a)
{
    int32_t n = a->n, d = a->d;
    float *row = a->work;
    double *oacc = (double *)(void *)((char *)a->work + (((size_t)n * 4 + 63) & ~(size_t)63));
    for (int32_t qi = 0; qi < a->n_q; qi++) {
        const float *q = a->q + (size_t)qi * (size_t)a->ld;
        float mx = -INFINITY;
        for (int32_t ki = 0; ki < n; ki++) {
            const float *k = a->k + (size_t)ki * (size_t)a->ld;
            row[ki] = a->fast ? dot_f32(q, k, d) * a->scale
                              : (float)(dot_f64(q, k, d) * a->scale);
            if (row[ki] > mx)
                mx = row[ki];
        }
        double sum = 0;
        for (int32_t ki = 0; ki < n; ki++) {
            row[ki] = expf(row[ki] - mx);
            sum += row[ki];
        }
        for (int32_t c = 0; c < d; c++)
            oacc[c] = 0;
        for (int32_t ki = 0; ki < n; ki++) {
            const float *v = a->v + (size_t)ki * (size_t)a->ld;
            double p = row[ki];
            float64x2_t vp = vdupq_n_f64(p);
            int32_t c = 0;
            for (; c + 4 <= d; c += 4) {
                float32x4_t x = vld1q_f32(v + c);
                vst1q_f64(oacc + c, vfmaq_f64(vld1q_f64(oacc + c), vp,
                                              vcvt_f64_f32(vget_low_f32(x))));
                vst1q_f64(oacc + c + 2, vfmaq_f64(vld1q_f64(oacc + c + 2), vp,
                                                  vcvt_high_f64_f32(x)));
            }
            for (; c < d; c++)
                oacc[c] += p * v[c];
        }
        float *o = a->o + (size_t)qi * (size_t)a->ldo;
        for (int32_t c = 0; c < d; c++)
            o[c] = (float)(oacc[c] / sum);
    }
}

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
