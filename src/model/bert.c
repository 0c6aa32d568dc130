/*
 * bert.c - the BERT encoder forward pass, padding-free.
 *
 * Sequences of a batch are packed back to back into one (T, hidden) matrix,
 * so the dense layers run as single GEMMs over all real tokens and no work
 * is spent on padding; attention runs per (sequence, head). The math is
 * transformers' BertModel (post-LayerNorm):
 *
 *   x   = LN(word[id] + pos[p] + type[t])
 *   per layer:
 *     qkv = x Wqkv^T + b                         (fused Q, K, V)
 *     a   = softmax(q k^T / sqrt(d_head)) v      (per sequence and head)
 *     h1  = LN(a Wo^T + bo + x)
 *     x   = LN(gelu(h1 W1^T + b1) W2^T + b2 + h1)
 *
 * with exact erf GELU and absolute positions. The token type t is 0 for a
 * single text and for the first segment of a pair ([CLS] a [SEP]), 1 for
 * the second (b [SEP]), as HF's tokenizers set token_type_ids. A
 * cross-encoder (BertForSequenceClassification) adds its head on the
 * [CLS] row: me_ce_head.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

int me_scratch_init(me_scratch *s, const medembed_model *m, int32_t t_cap, int32_t n_threads)
{
    memset(s, 0, sizeof *s);
    int32_t H = m->cfg.hidden, F = m->cfg.ffn;
    s->t_cap = t_cap;
    s->s_cap = m->max_length;
    s->n_threads = n_threads;
    size_t T = (size_t)t_cap;
    size_t kmax = (size_t)(H > F ? H : F);
    size_t lin = me_linear_work_bytes(t_cap, (int32_t)kmax);
    s->attn_work_stride =
        (me_attn_work_bytes(s->s_cap, H / m->cfg.n_heads) + 4095) & ~(size_t)4095;
#define ALIGN64(v) (((v) + 63) & ~(size_t)63)
    size_t bytes = ALIGN64(T * (size_t)H * 4) * 3 + ALIGN64(T * 3 * (size_t)H * 4) +
                   ALIGN64(T * (size_t)F * 4) + ALIGN64(lin) +
                   s->attn_work_stride * (size_t)n_threads + ALIGN64(T * 4);
    /* One block, 2 MiB aligned and advised to use huge pages (me_alloc_big):
     * a first touch of a fresh 4 KiB page is expensive, and the block is
     * reused for every batch. */
    uint8_t *p = me_alloc_big(bytes);
    if (!p)
        return MEDEMBED_ERR_NOMEM;
    s->block = p;
    s->block_len = bytes;
#define TAKE(dst, nbytes)                                                                          \
    do {                                                                                           \
        (dst) = (void *)p;                                                                         \
        p += ALIGN64(nbytes);                                                                      \
    } while (0)
    TAKE(s->x, T * (size_t)H * 4);
    TAKE(s->h1, T * (size_t)H * 4);
    TAKE(s->att, T * (size_t)H * 4);
    TAKE(s->qkv, T * 3 * (size_t)H * 4);
    TAKE(s->ffn, T * (size_t)F * 4);
    TAKE(s->lin_work, lin);
    TAKE(s->attn_work, s->attn_work_stride * (size_t)n_threads);
    TAKE(s->starts, T * 4);
#undef TAKE
#undef ALIGN64
    return MEDEMBED_OK;
}

void me_scratch_free(me_scratch *s)
{
    if (s) {
        me_free_big(s->block);
        memset(s, 0, sizeof *s);
    }
}

typedef struct {
    const medembed_model *m;
    me_scratch *s;
    const int32_t *ids;
    const int32_t *n_ids;
    const int32_t *n_a;    /* tokens of type 0 per sequence, or NULL (all) */
    const int32_t *starts; /* first token of each sequence */
    int32_t n_seq;
    int32_t T;
    float *buf;            /* layernorm target */
    int32_t ln_rows;       /* rows of buf */
    const float *g, *b;
    int32_t cls_q;         /* attention computes the [CLS] query row only */
} fwd_job;

#define ROWS_PER_TASK 16

static void embed_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const fwd_job *j = arg;
    const medembed_model *m = j->m;
    int32_t H = m->cfg.hidden;
    int32_t s = (int32_t)task;
    int32_t n_a = j->n_a ? j->n_a[s] : j->n_ids[s];
    for (int32_t p = 0; p < j->n_ids[s]; p++) {
        int32_t t = j->starts[s] + p;
        float *x = j->s->x + (size_t)t * (size_t)H;
        const float *we = m->word_emb + (size_t)j->ids[t] * (size_t)H;
        const float *pe = m->pos_emb + (size_t)p * (size_t)H;
        /* type 1 exists whenever a pair is run (weights.c checks it) */
        const float *te = m->type_emb ? m->type_emb + (p < n_a ? 0 : (size_t)H) : NULL;
        for (int32_t i = 0; i < H; i++)
            x[i] = we[i] + (te ? te[i] : 0.0f) + pe[i];
        m->kern->layernorm(x, 1, H, m->emb_ln_g, m->emb_ln_b, m->cfg.ln_eps);
    }
}

static void ln_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const fwd_job *j = arg;
    int32_t H = j->m->cfg.hidden;
    int32_t t0 = (int32_t)task * ROWS_PER_TASK;
    int32_t t1 = t0 + ROWS_PER_TASK < j->ln_rows ? t0 + ROWS_PER_TASK : j->ln_rows;
    j->m->kern->layernorm(j->buf + (size_t)t0 * (size_t)H, t1 - t0, H, j->g, j->b,
                          j->m->cfg.ln_eps);
}

/* One (sequence, head). */
static void attn_task(void *arg, int64_t task, int32_t thread)
{
    const fwd_job *j = arg;
    const medembed_model *m = j->m;
    int32_t H = m->cfg.hidden, nh = m->cfg.n_heads, d = H / nh;
    int32_t s = (int32_t)(task / nh), h = (int32_t)(task % nh);
    size_t ld = (size_t)3 * (size_t)H;
    const float *base = j->s->qkv + (size_t)j->starts[s] * ld + (size_t)h * (size_t)d;
    me_attn_args a = {
        .q = base,
        .k = base + H,
        .v = base + 2 * (size_t)H,
        .ld = (int32_t)ld,
        .o = j->s->att + (size_t)j->starts[s] * (size_t)H + (size_t)h * (size_t)d,
        .ldo = H,
        .n = j->n_ids[s],
        .d = d,
        .n_q = j->cls_q ? 1 : j->n_ids[s],
        .fast = m->dtype != MEDEMBED_DTYPE_F32 ? 2 : 0,
        .scale = 1.0f / sqrtf((float)d),
        .work = (uint8_t *)j->s->attn_work + (size_t)thread * j->s->attn_work_stride,
    };
    m->kern->attention(&a);
}

static void layernorm_all(fwd_job *j, me_pool *pool, float *buf, int32_t rows, const float *g,
                          const float *b)
{
    j->buf = buf;
    j->ln_rows = rows;
    j->g = g;
    j->b = b;
    me_pool_run(pool, (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK, ln_task, j);
}

/* ME_EPI_OUT_BF16 when the FFN's two bf16 layers can hand the GELU output
 * over as bf16 rows (the only reader of s->ffn is the second layer, which
 * would round it to bf16 itself): 0 otherwise. */
static uint32_t ffn_bf16_io(const me_kern *k, const me_layer *L)
{
    return k->bf16_io && k->bf16_io(&L->ffn_in) && k->bf16_io(&L->ffn_out) ? ME_EPI_OUT_BF16
                                                                           : 0;
}

/* The last layer when only each sequence's [CLS] row is wanted (CLS
 * pooling): keys and values still need every token, but the attention
 * queries, the output projection, both LayerNorms and the FFN run on one row
 * per sequence, about 7% of a BERT-base forward pass saved (see
 * docs/PERFORMANCE.md, "CLS-only last layer"). Every kernel
 * computes a row from that row alone, so the [CLS] rows come out
 * bit-identical to the full computation. The compact rows live in buffers
 * that are free by then: attention output and residual in qkv, the rest in
 * h1 / ffn / att; the result is scattered back to x at each sequence's
 * start. */
static void last_layer_cls(const medembed_model *m, me_scratch *s, me_pool *pool, fwd_job *j,
                           const me_layer *L)
{
    const me_kern *k = m->kern;
    int32_t H = m->cfg.hidden, n = j->n_seq, T = j->T;
    k->linear(&L->qkv, s->x, T, s->qkv, NULL, 0, pool, s->lin_work);
    j->cls_q = 1;
    me_pool_run(pool, (int64_t)n * m->cfg.n_heads, attn_task, j);
    j->cls_q = 0;
    float *att_c = s->qkv, *x_c = s->qkv + (size_t)n * (size_t)H;
    for (int32_t i = 0; i < n; i++) {
        memcpy(att_c + (size_t)i * (size_t)H, s->att + (size_t)j->starts[i] * (size_t)H,
               sizeof *att_c * (size_t)H);
        memcpy(x_c + (size_t)i * (size_t)H, s->x + (size_t)j->starts[i] * (size_t)H,
               sizeof *x_c * (size_t)H);
    }
    k->linear(&L->attn_out, att_c, n, s->h1, x_c, ME_EPI_RESIDUAL, pool, s->lin_work);
    layernorm_all(j, pool, s->h1, n, L->ln1_g, L->ln1_b);
    uint32_t fo = ffn_bf16_io(k, L), fi = fo ? ME_IN_BF16 : 0;
    k->linear(&L->ffn_in, s->h1, n, s->ffn, NULL, ME_EPI_GELU | fo, pool, s->lin_work);
    k->linear(&L->ffn_out, s->ffn, n, s->att, s->h1, ME_EPI_RESIDUAL | fi, pool, s->lin_work);
    layernorm_all(j, pool, s->att, n, L->ln2_g, L->ln2_b);
    for (int32_t i = 0; i < n; i++)
        memcpy(s->x + (size_t)j->starts[i] * (size_t)H, s->att + (size_t)i * (size_t)H,
               sizeof *s->x * (size_t)H);
}

void me_bert_forward(const medembed_model *m, me_scratch *s, me_pool *pool, const int32_t *ids,
                     const int32_t *n_ids, const int32_t *n_a, int32_t n, int cls_only)
{
    int32_t *starts = s->starts; /* n <= T <= t_cap: every sequence has a token */
    int32_t T = 0;
    for (int32_t i = 0; i < n; i++) {
        starts[i] = T;
        T += n_ids[i];
    }
    const me_kern *k = m->kern;
    void *w = s->lin_work;
    fwd_job j = {.m = m, .s = s, .ids = ids, .n_ids = n_ids, .n_a = n_a, .starts = starts,
                 .n_seq = n, .T = T};
    me_pool_run(pool, n, embed_task, &j);
    for (int32_t il = 0; il < m->cfg.n_layers; il++) {
        const me_layer *L = &m->layers[il];
        if (cls_only && il == m->cfg.n_layers - 1) {
            last_layer_cls(m, s, pool, &j, L);
            break;
        }
        k->linear(&L->qkv, s->x, T, s->qkv, NULL, 0, pool, w);
        me_pool_run(pool, (int64_t)n * m->cfg.n_heads, attn_task, &j);
        k->linear(&L->attn_out, s->att, T, s->h1, s->x, ME_EPI_RESIDUAL, pool, w);
        layernorm_all(&j, pool, s->h1, T, L->ln1_g, L->ln1_b);
        uint32_t fo = ffn_bf16_io(k, L), fi = fo ? ME_IN_BF16 : 0;
        k->linear(&L->ffn_in, s->h1, T, s->ffn, NULL, ME_EPI_GELU | fo, pool, w);
        k->linear(&L->ffn_out, s->ffn, T, s->x, s->h1, ME_EPI_RESIDUAL | fi, pool, w);
        layernorm_all(&j, pool, s->x, T, L->ln2_g, L->ln2_b);
    }
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

/* Dot product of n floats in double: the head is a few thousand
 * multiply-adds per pair, next to millions in the encoder. */
static double dot_d(const float *a, const float *b, int32_t n)
{
    double acc = 0;
    for (int32_t i = 0; i < n; i++)
        acc += (double)a[i] * b[i];
    return acc;
}

void me_ce_head(const medembed_model *m, const float *h, int raw, float *work, float *out)
{
    int32_t H = m->cfg.hidden, L = m->cfg.num_labels;
    for (int32_t i = 0; i < H; i++)
        work[i] = (float)tanh(dot_d(m->pool_w + (size_t)i * (size_t)H, h, H) + m->pool_b[i]);
    for (int32_t l = 0; l < L; l++) {
        double z = dot_d(m->cls_w + (size_t)l * (size_t)H, work, H) + m->cls_b[l];
        if (!raw && m->cfg.activation == ME_ACT_SIGMOID)
            z = 1.0 / (1.0 + exp(-z));
        else if (!raw && m->cfg.activation == ME_ACT_TANH)
            z = tanh(z);
        out[l] = (float)z;
    }
}
