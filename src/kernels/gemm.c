/*
 * gemm.c - portable scalar reference kernels. Readable first; they are the
 * oracle the SIMD kernels are tested against, and the fallback on CPUs
 * without AVX2.
 *
 * Every dot product is summed over k in one fixed order, with 8 independent
 * partial sums combined pairwise at the end, so a row's result never depends
 * on which rows share its batch.
 */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

float me_gelu_ref(float x)
{
    /* HF "gelu" is the exact form x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),
     * not the tanh approximation. */
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
}

static double dot_ref(const float *a, const float *b, int32_t n)
{
    double s[4] = {0};
    int32_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (int j = 0; j < 4; j++)
            s[j] += (double)a[k + j] * b[k + j];
    for (; k < n; k++)
        s[k & 3] += (double)a[k] * b[k];
    return (s[0] + s[2]) + (s[1] + s[3]);
}

typedef struct {
    const me_linear *L;
    const float *x;
    int32_t M;
    float *y;
    const float *res;
    uint32_t epi;
    int32_t rows_per_task;
} linear_job;

static void linear_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const linear_job *j = arg;
    const me_linear *L = j->L;
    int32_t m0 = (int32_t)task * j->rows_per_task;
    int32_t m1 = m0 + j->rows_per_task < j->M ? m0 + j->rows_per_task : j->M;
    for (int32_t m = m0; m < m1; m++) {
        const float *xr = j->x + (size_t)m * (size_t)L->n_in;
        float *yr = j->y + (size_t)m * (size_t)L->n_out;
        for (int32_t n = 0; n < L->n_out; n++) {
            double acc = dot_ref(xr, L->w + (size_t)n * (size_t)L->n_in, L->n_in);
            if (L->b)
                acc += L->b[n];
            float v = (float)acc;
            if (j->epi & ME_EPI_GELU)
                v = me_gelu_ref(v);
            if (j->epi & ME_EPI_RESIDUAL)
                v += j->res[(size_t)m * (size_t)L->n_out + (size_t)n];
            yr[n] = v;
        }
    }
}

void me_linear_scalar(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool)
{
    linear_job j = {L, x, M, y, residual, epi, 4};
    int64_t n_tasks = (M + j.rows_per_task - 1) / j.rows_per_task;
    me_pool_run(pool, n_tasks, linear_task, &j);
}

float me_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float me_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
