/*
 * vec.c - the growable vector store of an open index: f32 rows, or int8
 * rows with a per-row scale. Rows are scored with the kernel level's dot
 * products (me_vecs_score in index.h; kernels/dot*.c) and quantized with
 * the kernels' int8 rule (me_quant_row_s8 in kernels/pack.c).
 */
#include <stdlib.h>
#include <string.h>

#include "index/index.h"

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
