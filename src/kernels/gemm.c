/*
 * gemm.c - portable scalar reference for the linear layers, in every compute
 * dtype. Readable first; it is the oracle the SIMD kernels are tested
 * against, and the fallback on CPUs without AVX2.
 *
 * f32 sums every dot product in double (4 partial sums combined pairwise),
 * which is what lets this path match float64 PyTorch to ~5e-6 on the golden
 * hidden states. bf16 and int8 follow the quantization rules of kernels.h
 * exactly; bf16 sums in double, int8 in exact integers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "medembed.h"

float me_gelu_ref(float x)
{
    /* HF "gelu" is the exact form x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),
     * not the tanh approximation. */
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
}

void me_gelu_scalar(float *x, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        x[i] = me_gelu_ref(x[i]);
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

/* Scalar packed forms: bf16 weights row-major; int8 weights row-major
 * followed by the per-row scales. */
typedef struct {
    float *scale; /* (n_out) */
    int8_t *q;    /* (n_out, n_in) */
} pack_i8;

int me_pack_scalar(me_linear *L, int32_t dtype)
{
    size_t n = (size_t)L->n_out * (size_t)L->n_in;
    if (dtype == MEDEMBED_DTYPE_F32) {
        L->packed_dtype = dtype;
        return MEDEMBED_OK;
    }
    if (dtype == MEDEMBED_DTYPE_BF16) {
        uint16_t *p = me_alloc_big(n * sizeof *p);
        if (!p)
            return MEDEMBED_ERR_NOMEM;
        for (int32_t r = 0; r < L->n_out; r++) {
            const float *w = me_linear_row(L, r);
            for (int32_t k = 0; k < L->n_in; k++)
                p[(size_t)r * (size_t)L->n_in + (size_t)k] = me_f32_to_bf16(w[k]);
        }
        L->packed = p;
        L->packed_kind = ME_PACK_BF16;
        L->packed_dtype = dtype;
        L->packed_bytes = n * sizeof *p;
        return MEDEMBED_OK;
    }
    if (dtype == MEDEMBED_DTYPE_INT8) {
        size_t bytes = sizeof(pack_i8) + (size_t)L->n_out * sizeof(float) + n + 64;
        uint8_t *blk = me_alloc_big(bytes);
        if (!blk)
            return MEDEMBED_ERR_NOMEM;
        pack_i8 *p = (pack_i8 *)(void *)blk;
        p->scale = (float *)(void *)(blk + 64);
        p->q = (int8_t *)(blk + 64 + (size_t)L->n_out * sizeof(float));
        for (int32_t r = 0; r < L->n_out; r++)
            p->scale[r] =
                me_quant_row_s8(me_linear_row(L, r), L->n_in, p->q + (size_t)r * (size_t)L->n_in);
        L->packed = p;
        L->packed_kind = ME_PACK_INT8;
        L->packed_dtype = dtype;
        L->packed_bytes = bytes;
        return MEDEMBED_OK;
    }
    return MEDEMBED_ERR_UNSUPPORTED;
}

typedef struct {
    const me_linear *L;
    const float *x;
    int32_t M;
    float *y;
    const float *res;
    uint32_t epi;
    int32_t rows_per_task;
    void *work;
} linear_job;

static float epilogue(const linear_job *j, int32_t m, int32_t n, float v)
{
    if (j->epi & ME_EPI_GELU)
        v = me_gelu_ref(v);
    if (j->epi & ME_EPI_RESIDUAL)
        v += j->res[(size_t)m * (size_t)j->L->n_out + (size_t)n];
    return v;
}

static void row_f32(const linear_job *j, int32_t m)
{
    const me_linear *L = j->L;
    const float *xr = j->x + (size_t)m * (size_t)L->n_in;
    float *yr = j->y + (size_t)m * (size_t)L->n_out;
    for (int32_t n = 0; n < L->n_out; n++) {
        double acc = dot_ref(xr, me_linear_row(L, n), L->n_in);
        if (L->b)
            acc += L->b[n];
        yr[n] = epilogue(j, m, n, (float)acc);
    }
}

static void row_bf16(const linear_job *j, int32_t m)
{
    const me_linear *L = j->L;
    const uint16_t *w = L->packed;
    const float *xr = j->x + (size_t)m * (size_t)L->n_in;
    float *yr = j->y + (size_t)m * (size_t)L->n_out;
    for (int32_t n = 0; n < L->n_out; n++) {
        const uint16_t *wr = w + (size_t)n * (size_t)L->n_in;
        double acc = 0;
        for (int32_t k = 0; k < L->n_in; k++)
            acc += (double)me_bf16_to_f32(me_f32_to_bf16(xr[k])) * me_bf16_to_f32(wr[k]);
        float v = (float)acc;
        if (L->b)
            v += L->b[n];
        yr[n] = epilogue(j, m, n, v);
    }
}

static void row_int8(const linear_job *j, int32_t m)
{
    const me_linear *L = j->L;
    const pack_i8 *p = L->packed;
    const float *xr = j->x + (size_t)m * (size_t)L->n_in;
    int8_t *xq = (int8_t *)j->work + (size_t)m * (size_t)L->n_in;
    float *yr = j->y + (size_t)m * (size_t)L->n_out;
    float sx = me_quant_row_s8(xr, L->n_in, xq);
    for (int32_t n = 0; n < L->n_out; n++) {
        const int8_t *wr = p->q + (size_t)n * (size_t)L->n_in;
        int32_t acc = 0;
        for (int32_t k = 0; k < L->n_in; k++)
            acc += (int32_t)xq[k] * wr[k];
        float s = sx * p->scale[n];
        float v = (float)acc * s;
        if (L->b)
            v += L->b[n];
        yr[n] = epilogue(j, m, n, v);
    }
}

static void linear_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const linear_job *j = arg;
    int32_t m0 = (int32_t)task * j->rows_per_task;
    int32_t m1 = m0 + j->rows_per_task < j->M ? m0 + j->rows_per_task : j->M;
    for (int32_t m = m0; m < m1; m++) {
        if (j->L->packed_kind == ME_PACK_BF16)
            row_bf16(j, m);
        else if (j->L->packed_kind == ME_PACK_INT8)
            row_int8(j, m);
        else
            row_f32(j, m);
    }
}

/* work: the int8 copy of x, (M, n_in) bytes. */
void me_linear_scalar(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    linear_job j = {L, x, M, y, residual, epi, 4, work};
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

/* Eight independent multiply-add chains; the compiler keeps them in
 * registers. Only a reference point for `medembed bench` on the scalar
 * level. */
double me_peak_scalar(int32_t dtype, int64_t iters)
{
    (void)dtype;
    volatile float seed = 1.0f;
    float a[8], m = seed * 0.999999f, c = seed * 1e-7f;
    for (int i = 0; i < 8; i++)
        a[i] = seed * (float)i;
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < 8; i++)
            a[i] = a[i] * m + c;
    volatile float sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    (void)sink;
    return (double)iters * 16.0;
}
