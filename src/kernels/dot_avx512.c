/*
 * dot_avx512.c - the AVX-512 level's int8 search dot product. Its fp32 one
 * is the AVX2 kernel (dot_avx2.c): a row of floats streams through at the
 * same speed in 8- or 16-wide vectors, while the int8 row's widening to
 * fp32 takes half the instructions here (docs/PERFORMANCE.md, "Exact search and HNSW").
 */
#include <immintrin.h>

#include "kernels/kernels.h"

float me_dot_i8_avx512(const float *a, const int8_t *b, int32_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int32_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 b0 = _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + i))));
        __m512 b1 = _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + i + 16))));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), b0, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), b1, s1);
    }
    if (i + 16 <= n) {
        __m512 b0 = _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + i))));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), b0, s0);
        i += 16;
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * (float)b[i];
    return s;
}
