/*
 * attn.c - portable scalar references for attention and LayerNorm (the
 * oracles of the SIMD versions, and the fallback without AVX2).
 *
 * Both accumulate in double: the golden test compares hidden states of
 * 512-token inputs to float64 PyTorch at 1e-5, and these reductions (scores,
 * softmax-weighted sums over up to 512 keys, row statistics) are where fp32
 * summation error would otherwise concentrate.
 */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* For each query row: scores over the sequence's keys, a max-subtracted
 * softmax, then the weighted sum of values. */
void me_attention_scalar(const me_attn_args *a)
{
    int32_t n = a->n, d = a->d;
    float *row = a->work;
    double *oacc = (double *)(void *)((char *)a->work + (((size_t)n * 4 + 63) & ~(size_t)63));
    for (int32_t qi = 0; qi < n; qi++) {
        const float *q = a->q + (size_t)qi * (size_t)a->ld;
        float mx = -INFINITY;
        for (int32_t ki = 0; ki < n; ki++) {
            const float *k = a->k + (size_t)ki * (size_t)a->ld;
            double acc = 0;
            for (int32_t c = 0; c < d; c++)
                acc += (double)q[c] * k[c];
            row[ki] = (float)(acc * a->scale);
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
            for (int32_t c = 0; c < d; c++)
                oacc[c] += p * v[c];
        }
        float *o = a->o + (size_t)qi * (size_t)a->ldo;
        for (int32_t c = 0; c < d; c++)
            o[c] = (float)(oacc[c] / sum);
    }
}

/* Statistics in double: the reference is PyTorch, and double makes our row
 * sums order-insensitive to ~1e-16. */
void me_layernorm_scalar(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                         double eps)
{
    for (int32_t r = 0; r < rows; r++, x += n) {
        double mean = 0, var = 0;
        for (int32_t i = 0; i < n; i++)
            mean += x[i];
        mean /= n;
        for (int32_t i = 0; i < n; i++) {
            double dd = x[i] - mean;
            var += dd * dd;
        }
        var /= n;
        float inv = (float)(1.0 / sqrt(var + eps));
        float mu = (float)mean;
        for (int32_t i = 0; i < n; i++)
            x[i] = (x[i] - mu) * inv * g[i] + b[i];
    }
}
