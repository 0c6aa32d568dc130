/*
 * vec.c - dot products for search, scalar reference + dispatch, and the
 * growable vector store (f32 rows or int8 rows with a per-row scale).
 *
 * The scalar bodies are the test oracle for vec_avx2.c. Dispatch happens
 * once per process from cpuid + XGETBV (kernels/cpu.c); MEDEMBED_ISA=scalar
 * forces the reference so CI can exercise both paths.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"
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

static const me_vec_kern K_SCALAR = {"scalar", me_dot_f32_scalar, me_dot_i8_scalar};

const me_vec_kern *me_vec_kern_scalar(void)
{
    return &K_SCALAR;
}

/* Defined in vec_avx2.c (weak so a build without it still links). */
extern const me_vec_kern me_vec_kern_avx2_table __attribute__((weak));

const me_vec_kern *me_vec_kern_avx2(void)
{
    me_cpu c;
    me_cpu_detect(&c);
    if (&me_vec_kern_avx2_table && c.os_avx && c.avx2 && c.fma)
        return &me_vec_kern_avx2_table;
    return NULL;
}

static const me_vec_kern *g_vk;
static pthread_once_t g_vk_once = PTHREAD_ONCE_INIT;

static void vk_choose(void)
{
    const char *env = getenv("MEDEMBED_ISA");
    const me_vec_kern *k = NULL;
    if (!(env && strcmp(env, "scalar") == 0))
        k = me_vec_kern_avx2();
    g_vk = k ? k : &K_SCALAR;
}

const me_vec_kern *me_vec_kern_get(void)
{
    pthread_once(&g_vk_once, vk_choose);
    return g_vk;
}

void me_quantize_i8(const float *x, int32_t dim, int8_t *q, float *scale)
{
    float mx = 0;
    for (int32_t i = 0; i < dim; i++) {
        float a = fabsf(x[i]);
        if (a > mx)
            mx = a;
    }
    float s = mx > 0 ? mx / 127.0f : 1.0f;
    float inv = 1.0f / s;
    for (int32_t i = 0; i < dim; i++) {
        float r = nearbyintf(x[i] * inv);
        if (r > 127)
            r = 127;
        if (r < -127)
            r = -127;
        q[i] = (int8_t)r;
    }
    *scale = s;
}

void me_vecs_row(const me_vecs *v, int64_t i, float *out)
{
    size_t off = (size_t)i * (size_t)v->dim;
    if (v->dtype == MEDEMBED_VEC_INT8) {
        for (int32_t k = 0; k < v->dim; k++)
            out[k] = v->scale[i] * (float)v->q[off + (size_t)k];
    } else {
        memcpy(out, v->f + off, sizeof *out * (size_t)v->dim);
    }
}

int me_vecs_reserve(me_vecs *v, int64_t rows)
{
    if (rows <= v->cap)
        return MEDEMBED_OK;
    int64_t cap = v->cap ? v->cap : 256;
    while (cap < rows)
        cap *= 2;
    size_t d = (size_t)v->dim;
    if (v->dtype == MEDEMBED_VEC_INT8) {
        int8_t *q = realloc(v->q, (size_t)cap * d);
        if (!q)
            return MEDEMBED_ERR_NOMEM;
        v->q = q;
        float *s = realloc(v->scale, sizeof *s * (size_t)cap);
        if (!s)
            return MEDEMBED_ERR_NOMEM;
        v->scale = s;
    } else {
        float *f = realloc(v->f, sizeof *f * (size_t)cap * d);
        if (!f)
            return MEDEMBED_ERR_NOMEM;
        v->f = f;
    }
    v->cap = cap;
    return MEDEMBED_OK;
}

void me_vecs_free(me_vecs *v)
{
    free(v->f);
    free(v->q);
    free(v->scale);
    v->f = NULL;
    v->q = NULL;
    v->scale = NULL;
    v->n = v->cap = 0;
}
