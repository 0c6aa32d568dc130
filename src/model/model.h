/*
 * model.h - the internal definition of medembed_model (opaque in the public
 * header) and of the encoder's forward pass.
 */
#ifndef ME_MODEL_H
#define ME_MODEL_H

#include <stdint.h>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "thread/pool.h"
#include "tokenizer/tokenizer.h"

typedef struct me_layer {
    me_linear qkv;      /* (3*hidden, hidden): query rows, then key, then value */
    me_linear attn_out; /* (hidden, hidden) */
    const float *ln1_g; /* (hidden) attention.output.LayerNorm */
    const float *ln1_b;
    me_linear ffn_in;   /* (ffn, hidden) intermediate.dense */
    me_linear ffn_out;  /* (hidden, ffn) output.dense */
    const float *ln2_g; /* (hidden) output.LayerNorm */
    const float *ln2_b;
} me_layer;

struct medembed_model {
    me_config cfg;
    me_tokenizer *tok;
    me_st_file *shards; /* mapped weight files; fp32 tensors may point into them */
    int32_t n_shards;
    void **owned;       /* buffers converted or fused at load */
    int32_t n_owned, cap_owned;

    const float *word_emb;  /* (vocab, hidden) */
    const float *pos_emb;   /* (max_pos, hidden) */
    const float *type_emb;  /* (type_vocab, hidden): token type rows, or NULL */
    const float *emb_ln_g;  /* (hidden) */
    const float *emb_ln_b;
    me_layer *layers;       /* (n_layers) */
    /* cross-encoder head (cfg.kind MEDEMBED_KIND_CROSS_ENCODER), fp32:
     * pooler tanh(W h_cls + b), then the classifier */
    const float *pool_w;    /* (hidden, hidden) */
    const float *pool_b;    /* (hidden) */
    const float *cls_w;     /* (num_labels, hidden) */
    const float *cls_b;     /* (num_labels) */

    int32_t max_length;   /* effective token cap incl. specials */
    int32_t dtype;        /* medembed_dtype for compute */
    int32_t tokenizer_only; /* no weights loaded */
    int32_t weight_dtype; /* me_st_dtype of the file's matrices */
    int64_t n_params;
    const me_kern *kern;
    uint8_t files_digest[32]; /* identity.c: all inputs but the tensor data */
    char identity[65];        /* identity.c: "" until first asked for */
    char *dir;
    /* pack cache (packcache.h): the mapped file when the layers came from
     * it, the file's path (empty: no cache), its key, and what happened,
     * for info */
    uint8_t *pc_map;
    size_t pc_len;
    char pc_path[4096];
    uint8_t pc_digest[32]; /* the cache key (packcache.c) */
    char pc_status[512];
};

/* Linear layer t of m, t in [0, 4 n_layers): layer t / 4's QKV, attention
 * output, FFN in, FFN out (the order packing and the pack cache use). */
static inline me_linear *me_model_linear(medembed_model *m, int64_t t)
{
    me_layer *L = &m->layers[t / 4];
    me_linear *ls[4] = {&L->qkv, &L->attn_out, &L->ffn_in, &L->ffn_out};
    return ls[t % 4];
}

/* The dtype linear layer t (me_model_linear) computes in. The int8 dtype
 * keeps the fused QKV projection in bf16: its input, a LayerNorm output,
 * has a few outlier channels that set each row's int8 scale, which made
 * int8 miss its accuracy target on real weights (docs/PERFORMANCE.md,
 * "int8 path"). */
static inline int32_t me_model_linear_dtype(const medembed_model *m, int64_t t)
{
    return m->dtype == MEDEMBED_DTYPE_INT8 && t % 4 == 0 ? MEDEMBED_DTYPE_BF16 : m->dtype;
}

/* Loads and validates the weights of m->cfg from dir. */
int me_weights_load(medembed_model *m, const char *dir, me_err *e);
/* Before packing L when its source is not staged (see weights.c): maps it
 * in one go. */
void me_weights_prefault(const medembed_model *m, const me_linear *L);
/* Before packing L: copies its fp32 source from the weight files into
 * scratch (cap bytes) with pread, and points L at the copy; the originals go
 * to saved. Returns 1 if staged, 0 if not (sources converted to fp32 in
 * memory, too big, or a read error): L is then unchanged and is read where
 * it is. */
int me_weights_stage(const medembed_model *m, me_linear *L, void *scratch, size_t cap,
                     const float *saved[4]);
/* Undoes me_weights_stage (the pointers only). */
void me_weights_unstage(me_linear *L, const float *const saved[4]);
/* After L is packed: frees or unmaps its fp32 source (see weights.c). */
void me_weights_release(medembed_model *m, me_linear *L);
void me_weights_free(medembed_model *m);

/* Scratch for forward passes over up to t_cap tokens of sequences of at
 * most s_cap tokens, sized once; owned by a ctx. */
typedef struct me_scratch {
    int32_t t_cap, s_cap, n_threads;
    float *x, *h1, *att, *qkv, *ffn; /* (t_cap, hidden|3 hidden|ffn) */
    void *lin_work;                  /* me_linear_work_bytes(t_cap, max(hidden, ffn)) */
    void *attn_work;                 /* (n_threads, attn_work_stride) */
    size_t attn_work_stride;
    int32_t *starts;                 /* (t_cap) first token of each sequence */
    void *block;
    size_t block_len;
} me_scratch;

int me_scratch_init(me_scratch *s, const medembed_model *m, int32_t t_cap, int32_t n_threads);
void me_scratch_free(me_scratch *s);

/* Runs the encoder over n sequences packed back to back in `ids`
 * (lengths n_ids[i], sum <= s->t_cap). Token types: the first n_a[i]
 * tokens of sequence i are type 0, the rest type 1 (a pair's second
 * segment); n_a NULL: every token is type 0. On return s->x holds the last hidden
 * state, (sum n_ids, hidden), row-major; with cls_only, only each
 * sequence's first row is valid (what CLS pooling reads; the other rows hold
 * stale values), and the last layer skips the work for the rest. */
void me_bert_forward(const medembed_model *m, me_scratch *s, me_pool *pool, const int32_t *ids,
                     const int32_t *n_ids, const int32_t *n_a, int32_t n, int cls_only);

/* A cross-encoder's head on one [CLS] row h (hidden): the pooler
 * tanh(W h + b), the classifier, then the activation unless raw. Writes
 * cfg.num_labels floats to out; work holds hidden floats. */
void me_ce_head(const medembed_model *m, const float *h, int raw, float *work, float *out);

/* Pools one sequence's hidden rows h (n, hidden) into out (hidden);
 * `skip` leading tokens are left out of mean/max pooling (include_prompt
 * false). Normalizes when `normalize`. */
/* medembed_tokens_add_ids for a sequence whose first `skip` tokens pooling
 * leaves out (a chunk that carries the prompt, include_prompt false). */
int me_tokens_add_seq(medembed_tokens *t, const int32_t *ids, int32_t n_ids, int32_t skip,
                      char *err, size_t err_len);

void me_pool_embed(const medembed_model *m, const float *h, int32_t n, int32_t skip,
                   int normalize, float *out);

#endif
