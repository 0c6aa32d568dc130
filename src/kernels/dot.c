/*
 * dot.c - the search dot products (index/ scores a query against stored
 * rows with them), scalar reference: the scalar level's entries and the
 * test oracle of dot_avx2.c and dot_avx512.c.
 */
#include "kernels/kernels.h"

/* Four accumulators so the compiler can pipeline; the order of additions is
 * fixed, so a score does not depend on where the row sits in memory. */
float me_dot_f32_scalar(const float *a, const float *b, int32_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

float me_dot_i8_scalar(const float *a, const int8_t *b, int32_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * (float)b[i];
        s1 += a[i + 1] * (float)b[i + 1];
        s2 += a[i + 2] * (float)b[i + 2];
        s3 += a[i + 3] * (float)b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * (float)b[i];
    return (s0 + s1) + (s2 + s3);
}
