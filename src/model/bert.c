/*
 * bert.c - the BERT encoder forward pass, padding-free.
 *
 * Sequences of a batch are packed back to back into one (T, hidden) matrix,
 * so the dense layers run as single GEMMs over all real tokens and no work
 * is spent on padding; attention runs per (sequence, head). The math is
 * transformers' BertModel (post-LayerNorm):
 *
 *   x   = LN(word[id] + pos[p] + type[0])
 *   per layer:
 *     qkv = x Wqkv^T + b                         (fused Q, K, V)
 *     a   = softmax(q k^T / sqrt(d_head)) v      (per sequence and head)
 *     h1  = LN(a Wo^T + bo + x)
 *     x   = LN(gelu(h1 W1^T + b1) W2^T + b2 + h1)
 *
 * with exact erf GELU, absolute positions and token type 0, as HF computes
 * for a single-segment input.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/model.h"

int me_scratch_init(me_scratch *s, const medembed_model *m, int32_t t_cap, int32_t n_threads)
{
    memset(s, 0, sizeof *s);
    int32_t H = m->cfg.hidden, F = m->cfg.ffn;
    s->t_cap = t_cap;
    s->s_cap = m->max_length;
    s->n_threads = n_threads;
    size_t T = (size_t)t_cap;
    size_t n_fl = T * (size_t)H * 3 + T * 3 * (size_t)H + T * (size_t)F +
                  (size_t)n_threads * (size_t)s->s_cap + 16 * 6;
    size_t bytes = n_fl * sizeof(float);
    /* One 2 MiB-aligned block, advised to use huge pages: a first touch of
     * a fresh 4 KiB page is expensive, and the block is reused for every
     * batch. */
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, bytes) != 0)
        return MEDEMBED_ERR_NOMEM;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    s->block = p;
    s->block_len = bytes;
    float *f = p;
#define TAKE(dst, count)                                                                           \
    do {                                                                                           \
        (dst) = f;                                                                                 \
        f += ((count) + 15) & ~(size_t)15;                                                         \
    } while (0)
    TAKE(s->x, T * (size_t)H);
    TAKE(s->h1, T * (size_t)H);
    TAKE(s->att, T * (size_t)H);
    TAKE(s->qkv, T * 3 * (size_t)H);
    TAKE(s->ffn, T * (size_t)F);
    TAKE(s->rows, (size_t)n_threads * (size_t)s->s_cap);
#undef TAKE
    return MEDEMBED_OK;
}

void me_scratch_free(me_scratch *s)
{
    if (s) {
        free(s->block);
        memset(s, 0, sizeof *s);
    }
}

/* LayerNorm of one row in place. Statistics in double: the reference is
 * PyTorch, and double makes our row sums order-insensitive to ~1e-16. */
static void layernorm_row(float *x, const float *g, const float *b, int32_t n, double eps)
{
    double mean = 0, var = 0;
    for (int32_t i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int32_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        var += d * d;
    }
    var /= n;
    float inv = (float)(1.0 / sqrt(var + eps));
    float mu = (float)mean;
    for (int32_t i = 0; i < n; i++)
        x[i] = (x[i] - mu) * inv * g[i] + b[i];
}

typedef struct {
    const medembed_model *m;
    me_scratch *s;
    const int32_t *ids;
    const int32_t *n_ids;
    const int32_t *starts; /* first token of each sequence */
    int32_t n_seq;
    int32_t T;
    float *buf;            /* layernorm target */
    const float *g, *b;
} fwd_job;

#define ROWS_PER_TASK 16
#define ME_MAX_HEAD_DIM 1024

static void embed_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const fwd_job *j = arg;
    const medembed_model *m = j->m;
    int32_t H = m->cfg.hidden;
    int32_t s = (int32_t)task;
    for (int32_t p = 0; p < j->n_ids[s]; p++) {
        int32_t t = j->starts[s] + p;
        float *x = j->s->x + (size_t)t * (size_t)H;
        const float *we = m->word_emb + (size_t)j->ids[t] * (size_t)H;
        const float *pe = m->pos_emb + (size_t)p * (size_t)H;
        for (int32_t i = 0; i < H; i++)
            x[i] = we[i] + (m->type_emb0 ? m->type_emb0[i] : 0.0f) + pe[i];
        layernorm_row(x, m->emb_ln_g, m->emb_ln_b, H, m->cfg.ln_eps);
    }
}

static void ln_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const fwd_job *j = arg;
    int32_t H = j->m->cfg.hidden;
    int32_t t0 = (int32_t)task * ROWS_PER_TASK;
    int32_t t1 = t0 + ROWS_PER_TASK < j->T ? t0 + ROWS_PER_TASK : j->T;
    for (int32_t t = t0; t < t1; t++)
        layernorm_row(j->buf + (size_t)t * (size_t)H, j->g, j->b, H, j->m->cfg.ln_eps);
}

/* One (sequence, head): for each query row, scores over the sequence's keys,
 * a max-subtracted softmax, then the weighted sum of values. */
static void attn_task(void *arg, int64_t task, int32_t thread)
{
    const fwd_job *j = arg;
    const medembed_model *m = j->m;
    int32_t H = m->cfg.hidden, nh = m->cfg.n_heads, d = H / nh;
    int32_t s = (int32_t)(task / nh), h = (int32_t)(task % nh);
    int32_t n = j->n_ids[s];
    size_t ld = (size_t)3 * (size_t)H;
    const float *base = j->s->qkv + (size_t)j->starts[s] * ld;
    float *row = j->s->rows + (size_t)thread * (size_t)j->s->s_cap;
    float scale = 1.0f / sqrtf((float)d);
    for (int32_t qi = 0; qi < n; qi++) {
        const float *q = base + (size_t)qi * ld + (size_t)h * (size_t)d;
        float mx = -INFINITY;
        for (int32_t ki = 0; ki < n; ki++) {
            const float *k = base + (size_t)ki * ld + (size_t)H + (size_t)h * (size_t)d;
            double acc = 0;
            for (int32_t c = 0; c < d; c++)
                acc += (double)q[c] * k[c];
            row[ki] = (float)(acc * scale);
            if (row[ki] > mx)
                mx = row[ki];
        }
        double sum = 0;
        for (int32_t ki = 0; ki < n; ki++) {
            row[ki] = expf(row[ki] - mx);
            sum += row[ki];
        }
        double oacc[ME_MAX_HEAD_DIM];
        for (int32_t c = 0; c < d; c++)
            oacc[c] = 0;
        for (int32_t ki = 0; ki < n; ki++) {
            const float *v = base + (size_t)ki * ld + 2 * (size_t)H + (size_t)h * (size_t)d;
            double p = row[ki];
            for (int32_t c = 0; c < d; c++)
                oacc[c] += p * v[c];
        }
        float *o = j->s->att + (size_t)(j->starts[s] + qi) * (size_t)H + (size_t)h * (size_t)d;
        for (int32_t c = 0; c < d; c++)
            o[c] = (float)(oacc[c] / sum);
    }
}

static void layernorm_all(fwd_job *j, me_pool *pool, float *buf, const float *g, const float *b)
{
    j->buf = buf;
    j->g = g;
    j->b = b;
    me_pool_run(pool, (j->T + ROWS_PER_TASK - 1) / ROWS_PER_TASK, ln_task, j);
}

void me_bert_forward(const medembed_model *m, me_scratch *s, me_pool *pool, const int32_t *ids,
                     const int32_t *n_ids, int32_t n)
{
    int32_t starts_small[64];
    int32_t *starts = n <= 64 ? starts_small : malloc(sizeof *starts * (size_t)n);
    int32_t T = 0;
    for (int32_t i = 0; i < n; i++) {
        starts[i] = T;
        T += n_ids[i];
    }
    const me_kern *k = m->kern;
    fwd_job j = {m, s, ids, n_ids, starts, n, T, NULL, NULL, NULL};
    me_pool_run(pool, n, embed_task, &j);
    for (int32_t il = 0; il < m->cfg.n_layers; il++) {
        const me_layer *L = &m->layers[il];
        k->linear(&L->qkv, s->x, T, s->qkv, NULL, 0, pool);
        me_pool_run(pool, (int64_t)n * m->cfg.n_heads, attn_task, &j);
        k->linear(&L->attn_out, s->att, T, s->h1, s->x, ME_EPI_RESIDUAL, pool);
        layernorm_all(&j, pool, s->h1, L->ln1_g, L->ln1_b);
        k->linear(&L->ffn_in, s->h1, T, s->ffn, NULL, ME_EPI_GELU, pool);
        k->linear(&L->ffn_out, s->ffn, T, s->x, s->h1, ME_EPI_RESIDUAL, pool);
        layernorm_all(&j, pool, s->x, L->ln2_g, L->ln2_b);
    }
    if (starts != starts_small)
        free(starts);
}

void me_pool_embed(const medembed_model *m, const float *h, int32_t n, int32_t skip,
                   int normalize, float *out)
{
    int32_t H = m->cfg.hidden;
    int32_t mode = m->cfg.pooling;
    if (skip >= n)
        skip = 0; /* nothing would be left; pool everything rather than divide by 0 */
    if (mode == MEDEMBED_POOLING_CLS) {
        memcpy(out, h, sizeof *out * (size_t)H);
    } else if (mode == MEDEMBED_POOLING_MAX) {
        for (int32_t i = 0; i < H; i++) {
            float mx = -INFINITY;
            for (int32_t t = skip; t < n; t++)
                if (h[(size_t)t * (size_t)H + (size_t)i] > mx)
                    mx = h[(size_t)t * (size_t)H + (size_t)i];
            out[i] = mx;
        }
    } else {
        int32_t cnt = n - skip;
        double div = mode == MEDEMBED_POOLING_MEAN ? (double)cnt : sqrt((double)cnt);
        for (int32_t i = 0; i < H; i++) {
            double acc = 0;
            for (int32_t t = skip; t < n; t++)
                acc += h[(size_t)t * (size_t)H + (size_t)i];
            out[i] = (float)(acc / div);
        }
    }
    if (normalize) {
        /* F.normalize: v / max(||v||, 1e-12) */
        double ss = 0;
        for (int32_t i = 0; i < H; i++)
            ss += (double)out[i] * out[i];
        double nrm = sqrt(ss);
        if (nrm < 1e-12)
            nrm = 1e-12;
        for (int32_t i = 0; i < H; i++)
            out[i] = (float)(out[i] / nrm);
    }
}
