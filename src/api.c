/*
 * api.c - the public API: model load/free and queries, tokenize, and the
 * embedding context (scratch + worker pool + batching).
 *
 * Batching: texts are tokenized, sorted by length (stable), and packed into
 * forward passes of at most `batch_tokens` real tokens; no padding exists
 * anywhere. Because every kernel computes each output from its own row only
 * (kernels.h), the packing never changes a text's embedding.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/identity.h"
#include "model/model.h"
#include "model/packcache.h"
#include "util/file.h"
#include "util/json.h"
#include "util/sha256.h"

#define ME_DEFAULT_BATCH_TOKENS 4096

struct medembed_ctx {
    const medembed_model *m;
    me_pool *pool;
    me_scratch s;
    medembed_tokens *set; /* the current call's sequences, reused */
    char last_error[ME_ERR_MAX];
};

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

void medembed_load_opts_init(medembed_load_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->dtype = MEDEMBED_DTYPE_F32;
    }
}

static void set_err(char *err, size_t err_len, const me_err *e)
{
    if (err && err_len)
        snprintf(err, err_len, "%s", e->msg);
}

/* Config for a folder with tokenizer files only: the limit comes from
 * tokenizer_config.json's model_max_length (default 512). */
static int tokenizer_only_config(const char *dir, me_config *c, me_err *e)
{
    memset(c, 0, sizeof *c);
    c->prompts = json_object();
    RETURN_ERROR_IF(!c->prompts, e, MEDEMBED_ERR_NOMEM, "out of memory");
    RETURN_ERROR_IF(!me_dir_exists(dir), e, MEDEMBED_ERR_NOT_FOUND, "%s: folder not found", dir);
    c->max_pos = 512;
    c->include_prompt = 1;
    snprintf(c->architecture, sizeof c->architecture, "%s", "tokenizer-only");
    char path[4096];
    me_path_join(path, sizeof path, dir, "tokenizer_config.json");
    json_t *j = NULL;
    if (me_file_exists(path) && me_json_load_file(path, &j, e) == MEDEMBED_OK) {
        json_t *v = json_object_get(j, "model_max_length");
        if (json_is_integer(v) && json_integer_value(v) >= 2 && json_integer_value(v) <= 1 << 20)
            c->max_pos = (int32_t)json_integer_value(v);
        json_decref(j);
    }
    return MEDEMBED_OK;
}

/* Packing runs on a temporary pool of all online CPUs, one linear layer per
 * task: most of its time is the kernel zeroing fresh pages for the packed
 * copies, which parallelizes. Each task first reads its layer's fp32 source
 * from the file into its thread's staging buffer (me_weights_stage: pread,
 * not the mapping: docs/PERFORMANCE.md, "Packed weights"), then releases the source,
 * under a lock (the model's list of owned buffers is shared). */
typedef struct {
    medembed_model *m;
    int *rc; /* (4 n_layers) */
    pthread_mutex_t mu;
    size_t stage_cap;                 /* bytes of the largest fp32 source */
    void *stage[ME_POOL_MAX_THREADS]; /* per pool thread, made on first use */
} pack_job;

static void pack_task(void *arg, int64_t t, int32_t thread)
{
    pack_job *j = arg;
    me_linear *l = me_model_linear(j->m, t);
    const float *saved[4];
    int staged = 0;
    int32_t dtype = me_model_linear_dtype(j->m, t);
    int copies = !(j->m->kern->in_place_dtypes & (1u << dtype));
    if (copies && thread >= 0 && thread < ME_POOL_MAX_THREADS) {
        if (!j->stage[thread])
            j->stage[thread] = me_alloc_big(j->stage_cap);
        staged = me_weights_stage(j->m, l, j->stage[thread], j->stage_cap, saved);
    }
    if (!staged)
        me_weights_prefault(j->m, l);
    int rc = j->m->kern->pack(l, dtype);
    if (staged)
        me_weights_unstage(l, saved);
    j->rc[t] = rc;
    if (rc == MEDEMBED_OK && l->packed) { /* the kernels now read only the packed form */
        pthread_mutex_lock(&j->mu);
        me_weights_release(j->m, l);
        pthread_mutex_unlock(&j->mu);
    }
}

static int pack_weights(medembed_model *m, me_err *e)
{
    if (!m->kern->pack)
        return MEDEMBED_OK;
    int64_t n = (int64_t)m->cfg.n_layers * 4;
    pack_job *j = calloc(1, sizeof *j);
    int *rcs = calloc((size_t)n, sizeof *rcs);
    if (!j || !rcs) {
        free(j);
        free(rcs);
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory packing weights");
    }
    j->m = m;
    j->rc = rcs;
    for (int64_t t = 0; t < n; t++) {
        me_linear *l = me_model_linear(m, t);
        size_t b = sizeof(float) * (size_t)l->n_in * (size_t)l->n_out;
        j->stage_cap = b > j->stage_cap ? b : j->stage_cap;
    }
    pthread_mutex_init(&j->mu, NULL);
    me_pool *pool = me_pool_create(0); /* NULL (no threads) packs serially */
    me_pool_run(pool, n, pack_task, j);
    me_pool_free(pool);
    for (int32_t i = 0; i < ME_POOL_MAX_THREADS; i++)
        me_free_big(j->stage[i]);
    pthread_mutex_destroy(&j->mu);
    int rc = MEDEMBED_OK;
    for (int64_t t = 0; t < n && rc == MEDEMBED_OK; t++) {
        rc = j->rc[t];
        if (rc == MEDEMBED_ERR_UNSUPPORTED)
            me_err_set(e, rc, "compute dtype %s is not supported by the %s kernels",
                       m->dtype == MEDEMBED_DTYPE_BF16 ? "bf16" : "int8",
                       me_isa_name(m->kern->isa));
        else if (rc != MEDEMBED_OK)
            me_err_set(e, rc, "out of memory packing layer %d weights", (int)(t / 4));
    }
    free(rcs);
    free(j);
    return rc;
}

int medembed_model_load(const char *name, const medembed_load_opts *opts, medembed_model **out,
                        char *err, size_t err_len)
{
    me_err e = {{0}};
    if (!name || !out) {
        me_err_set(&e, MEDEMBED_ERR_ARG, "medembed_model_load: name and out must not be NULL");
        set_err(err, err_len, &e);
        return MEDEMBED_ERR_ARG;
    }
    /* A folder or a downloaded repo id: one rule for every caller (resolve.c). */
    char dir[4096];
    int rrc = medembed_model_resolve(name, dir, sizeof dir, err, err_len);
    if (rrc != MEDEMBED_OK)
        return rrc;
    medembed_load_opts o;
    medembed_load_opts_init(&o);
    if (opts)
        o = *opts;
    int rc = MEDEMBED_OK;
    medembed_model *m = calloc(1, sizeof *m);
    if (!m) {
        me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
        set_err(err, err_len, &e);
        return MEDEMBED_ERR_NOMEM;
    }
    m->dir = strdup(dir);
    m->dtype = o.dtype;
    m->kern = me_kern_get();
    if (!m->dir)
        rc = me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
    if (rc == MEDEMBED_OK && (o.dtype < 0 || o.dtype > MEDEMBED_DTYPE_INT8 || o.max_length < 0))
        rc = me_err_set(&e, MEDEMBED_ERR_ARG, "invalid load options (dtype %d, max_length %d)",
                        o.dtype, o.max_length);
    char cfg_path[4096];
    me_path_join(cfg_path, sizeof cfg_path, dir, "config.json");
    if (rc == MEDEMBED_OK && o.tokenizer_only && !me_file_exists(cfg_path)) {
        /* A tokenizer-only folder: no encoder, so no position limit but the
         * tokenizer's own model_max_length. */
        rc = tokenizer_only_config(dir, &m->cfg, &e);
    } else if (rc == MEDEMBED_OK) {
        rc = me_config_load(dir, &m->cfg, &e);
    }
    m->tokenizer_only = o.tokenizer_only;
    if (rc == MEDEMBED_OK) {
        rc = me_tokenizer_load(dir, &m->tok, &e);
        if (rc == MEDEMBED_OK && m->cfg.vocab_size &&
            me_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size)
            rc = me_err_set(&e, MEDEMBED_ERR_FORMAT,
                            "%s: the tokenizer has %d tokens but config.json vocab_size is %d",
                            dir, me_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
    }
    if (rc == MEDEMBED_OK && !o.tokenizer_only)
        rc = me_weights_load(m, dir, &e);
    if (rc == MEDEMBED_OK)
        me_identity_files(m, dir);
    const char *cache = o.pack_cache ? o.pack_cache : getenv("MEDEMBED_PACK_CACHE");
    int cached = 0;
    snprintf(m->pc_status, sizeof m->pc_status, "off");
    if (rc == MEDEMBED_OK && !o.tokenizer_only && cache && cache[0])
        cached = me_pc_load(m, cache);
    if (cached) /* the kernels now read only the mapped packed form */
        for (int64_t t = 0; t < (int64_t)m->cfg.n_layers * 4; t++)
            me_weights_release(m, me_model_linear(m, t));
    if (rc == MEDEMBED_OK && !o.tokenizer_only && !cached) {
        rc = pack_weights(m, &e);
        if (rc == MEDEMBED_OK && cache && cache[0])
            me_pc_save(m, cache);
    }
    if (rc != MEDEMBED_OK) {
        set_err(err, err_len, &e);
        medembed_model_free(m);
        return rc;
    }
    int32_t ml = m->cfg.max_pos;
    if (m->cfg.max_seq_length > 0 && m->cfg.max_seq_length < ml)
        ml = m->cfg.max_seq_length;
    if (o.max_length > 0 && o.max_length < ml)
        ml = o.max_length;
    if (ml < 2)
        ml = 2;
    m->max_length = ml;
    *out = m;
    return MEDEMBED_OK;
}

void medembed_model_free(medembed_model *m)
{
    if (!m)
        return;
    me_weights_free(m);
    me_pc_close(m); /* after the layers let go of their views into it */
    me_tokenizer_free(m->tok);
    me_config_free(&m->cfg);
    free(m->dir);
    free(m);
}

int32_t medembed_model_dim(const medembed_model *m)
{
    return m ? m->cfg.hidden : 0;
}
int32_t medembed_model_kind(const medembed_model *m)
{
    return m ? m->cfg.kind : MEDEMBED_KIND_EMBEDDER;
}
const char *medembed_model_kind_name(int32_t kind)
{
    return kind == MEDEMBED_KIND_EMBEDDER        ? "embedder"
           : kind == MEDEMBED_KIND_CROSS_ENCODER ? "cross-encoder"
                                                 : "?";
}
int32_t medembed_model_num_labels(const medembed_model *m)
{
    return m && m->cfg.kind == MEDEMBED_KIND_CROSS_ENCODER ? m->cfg.num_labels : 0;
}
int32_t medembed_model_max_length(const medembed_model *m)
{
    return m ? m->max_length : 0;
}
int32_t medembed_model_pooling(const medembed_model *m)
{
    return m ? m->cfg.pooling : -1;
}
int32_t medembed_model_normalize(const medembed_model *m)
{
    return m ? m->cfg.normalize : 0;
}
int32_t medembed_model_dtype(const medembed_model *m)
{
    return m ? m->dtype : -1;
}
const char *medembed_pooling_name(int32_t pooling)
{
    return me_pooling_name(pooling);
}

const char *medembed_dtype_name(int32_t dtype)
{
    return me_dtype_name(dtype);
}

const char *medembed_model_fingerprint(const medembed_model *m)
{
    return m ? me_identity(m) : "";
}

const char *medembed_model_prompt(const medembed_model *m, const char *name)
{
    if (!m)
        return NULL;
    if (!name)
        name = m->cfg.default_prompt_name;
    if (!name)
        return NULL;
    return json_string_value(json_object_get(m->cfg.prompts, name));
}

int32_t medembed_model_prompt_count(const medembed_model *m)
{
    return m ? (int32_t)json_object_size(m->cfg.prompts) : 0;
}

const char *medembed_model_prompt_name(const medembed_model *m, int32_t i)
{
    if (!m || i < 0)
        return NULL;
    const char *key;
    json_t *val;
    int32_t k = 0;
    json_object_foreach(m->cfg.prompts, key, val)
    {
        if (k++ == i)
            return key;
    }
    return NULL;
}

const char *medembed_model_default_prompt_name(const medembed_model *m)
{
    return m ? m->cfg.default_prompt_name : NULL;
}

int32_t medembed_model_include_prompt(const medembed_model *m)
{
    return m ? m->cfg.include_prompt : 1;
}

/* The rule is documented at medembed_resolve_prompt in medembed.h; the role
 * names follow sentence-transformers' encode_query / encode_document. */
int medembed_resolve_prompt(const medembed_model *m, const medembed_embed_opts *o,
                            const char **prompt, const char **name, char *err, size_t err_len)
{
    static const char *const doc_names[] = {"document", "passage", "corpus"};
    if (!m || !prompt)
        return MEDEMBED_ERR_ARG;
    medembed_embed_opts d;
    medembed_embed_opts_init(&d);
    if (!o)
        o = &d;
    const char *p = NULL, *pn = NULL;
    if (o->prompt && o->prompt_name) {
        if (err && err_len)
            snprintf(err, err_len, "give a prompt or a prompt_name, not both");
        return MEDEMBED_ERR_ARG;
    }
    if (o->prompt) {
        p = o->prompt;
    } else if (o->prompt_name) {
        p = medembed_model_prompt(m, o->prompt_name);
        if (!p) {
            if (err && err_len) {
                size_t k = (size_t)snprintf(err, err_len,
                                            "prompt_name \"%.100s\" is not among the model's "
                                            "prompts (",
                                            o->prompt_name);
                int32_t np = medembed_model_prompt_count(m);
                for (int32_t i = 0; i < np && k < err_len; i++)
                    k += (size_t)snprintf(err + k, err_len - k, "%s%s", i ? ", " : "",
                                          medembed_model_prompt_name(m, i));
                if (k < err_len)
                    snprintf(err + k, err_len - k, "%s)", np ? "" : "it defines none");
            }
            return MEDEMBED_ERR_NOT_FOUND;
        }
        pn = o->prompt_name;
    } else {
        if (o->role == MEDEMBED_ROLE_QUERY && medembed_model_prompt(m, "query"))
            pn = "query";
        for (size_t i = 0; o->role == MEDEMBED_ROLE_DOCUMENT && !pn && i < 3; i++)
            if (medembed_model_prompt(m, doc_names[i]))
                pn = doc_names[i];
        if (!pn)
            pn = m->cfg.default_prompt_name;
        p = pn ? medembed_model_prompt(m, pn) : NULL;
        if (!p)
            pn = NULL;
    }
    if (p && !*p)
        p = NULL;
    *prompt = p;
    if (name)
        *name = pn;
    return MEDEMBED_OK;
}

size_t medembed_model_info_json(const medembed_model *m, char *buf, size_t buf_len)
{
    if (!m)
        return 0;
    json_t *j = json_object();
    json_object_set_new(j, "kind", json_string(medembed_model_kind_name(m->cfg.kind)));
    json_object_set_new(j, "num_labels", json_integer(medembed_model_num_labels(m)));
    json_object_set_new(j, "architecture", json_string(m->cfg.architecture));
    json_object_set_new(j, "model_type", json_string("bert"));
    json_object_set_new(j, "path", json_string(m->dir));
    json_object_set_new(j, "dim", json_integer(m->cfg.hidden));
    json_object_set_new(j, "layers", json_integer(m->cfg.n_layers));
    json_object_set_new(j, "heads", json_integer(m->cfg.n_heads));
    json_object_set_new(j, "intermediate_size", json_integer(m->cfg.ffn));
    json_object_set_new(j, "vocab_size", json_integer(m->cfg.vocab_size));
    json_object_set_new(j, "max_position_embeddings", json_integer(m->cfg.max_pos));
    json_object_set_new(j, "max_length", json_integer(m->max_length));
    json_object_set_new(j, "pooling", json_string(me_pooling_name(m->cfg.pooling)));
    json_object_set_new(j, "normalize", json_boolean(m->cfg.normalize));
    json_object_set_new(j, "include_prompt", json_boolean(m->cfg.include_prompt));
    json_object_set_new(j, "do_lower_case", json_boolean(m->cfg.do_lower_case));
    json_object_set_new(j, "weight_dtype", json_string(me_st_dtype_name(m->weight_dtype)));
    json_object_set_new(j, "dtype", json_string(me_dtype_name(m->dtype)));
    json_object_set_new(j, "n_params", json_integer(m->n_params));
    json_object_set_new(j, "prompts", json_deep_copy(m->cfg.prompts));
    json_object_set_new(j, "default_prompt_name", m->cfg.default_prompt_name
                                                      ? json_string(m->cfg.default_prompt_name)
                                                      : json_null());
    json_object_set_new(j, "fingerprint", json_string(me_identity(m)));
    json_object_set_new(j, "tokenizer_only", json_boolean(m->tokenizer_only));
    json_object_set_new(j, "isa", json_string(me_isa_name(m->kern->isa)));
    json_t *pc = json_object();
    json_object_set_new(pc, "path", m->pc_path[0] ? json_string(m->pc_path) : json_null());
    json_object_set_new(pc, "status", json_string(m->pc_status));
    json_object_set_new(j, "pack_cache", pc);
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (buf && buf_len) {
        size_t c = n < buf_len - 1 ? n : buf_len - 1;
        memcpy(buf, s, c);
        buf[c] = 0;
    }
    free(s);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                 */
/* ------------------------------------------------------------------------ */

static uint32_t tok_flags(const medembed_model *m, uint32_t flags)
{
    uint32_t f = 0;
    if (flags & MEDEMBED_F_STRICT_UTF8)
        f |= ME_TOK_STRICT_UTF8;
    if (m->cfg.do_lower_case && !(flags & MEDEMBED_F_RAW_TOKENIZER))
        f |= ME_TOK_PY_LOWER;
    return f;
}

int medembed_tokenize(const medembed_model *m, const char *text, size_t len, uint32_t flags,
                      int32_t *ids, int32_t cap, medembed_text_info *info)
{
    if (!m || (!text && len) || cap < 0 || (cap > 0 && !ids))
        return MEDEMBED_ERR_ARG;
    if (!text)
        text = "";
    if (len == (size_t)-1)
        len = strlen(text);
    me_ids v = {0};
    int32_t n_full = 0, n_bad = 0;
    int32_t max = (flags & MEDEMBED_F_NO_TRUNCATE) ? 0 : m->max_length;
    int rc = me_tokenizer_encode(m->tok, text, len, max, tok_flags(m, flags), &v, &n_full, &n_bad,
                                 NULL);
    if (rc == MEDEMBED_OK) {
        int32_t c = v.n < cap ? v.n : cap;
        if (c > 0)
            memcpy(ids, v.ids, sizeof *ids * (size_t)c);
        if (info) {
            info->n_tokens = v.n;
            info->n_untruncated = n_full;
            info->truncated = n_full > v.n;
            info->n_invalid_utf8 = n_bad;
        }
    }
    me_ids_free(&v);
    return rc;
}

const char *medembed_token_str(const medembed_model *m, int32_t id)
{
    return m ? me_tokenizer_token(m->tok, id) : NULL;
}

int32_t medembed_vocab_size(const medembed_model *m)
{
    return m ? me_tokenizer_vocab_size(m->tok) : 0;
}

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

int medembed_ctx_create(const medembed_model *m, int32_t n_threads, medembed_ctx **out)
{
    if (!m || !out || n_threads < 0)
        return MEDEMBED_ERR_ARG;
    if (m->tokenizer_only)
        return MEDEMBED_ERR_UNSUPPORTED;
    medembed_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return MEDEMBED_ERR_NOMEM;
    c->m = m;
    c->pool = me_pool_create(n_threads);
    if (!c->pool) {
        free(c);
        return MEDEMBED_ERR_NOMEM;
    }
    *out = c;
    return MEDEMBED_OK;
}

void medembed_ctx_free(medembed_ctx *c)
{
    if (!c)
        return;
    me_pool_free(c->pool);
    me_scratch_free(&c->s);
    medembed_tokens_free(c->set);
    free(c);
}

const char *medembed_ctx_last_error(const medembed_ctx *c)
{
    return c ? c->last_error : "";
}

int32_t medembed_ctx_threads(const medembed_ctx *c)
{
    return c ? me_pool_threads(c->pool) : 0;
}

void medembed_embed_opts_init(medembed_embed_opts *o)
{
    if (o)
        memset(o, 0, sizeof *o);
}

static int ctx_fail(medembed_ctx *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ctx_fail(medembed_ctx *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
    va_end(ap);
    return status;
}

/* MEDEMBED_ERR_MISMATCH unless the ctx's model is of kind `want`, with a
 * message that says what each kind is for: the one rule every surface
 * (CLI, server, Python) reports when a model is used as the other kind. */
static int need_kind(medembed_ctx *c, int32_t want)
{
    const medembed_model *m = c->m;
    if (m->cfg.kind == want)
        return MEDEMBED_OK;
    if (want == MEDEMBED_KIND_EMBEDDER)
        return ctx_fail(c, MEDEMBED_ERR_MISMATCH,
                        "%s is a cross-encoder (%s): it scores (query, text) pairs (medembed "
                        "rerank, search --rerank, POST /rerank) and makes no embeddings; embed, "
                        "index and search need an embedding model",
                        m->dir, m->cfg.architecture);
    return ctx_fail(c, MEDEMBED_ERR_MISMATCH,
                    "%s is an embedding model (%s), not a cross-encoder: reranking needs a "
                    "BertForSequenceClassification folder as sentence-transformers' "
                    "CrossEncoder saves it",
                    m->dir, m->cfg.architecture);
}

/* Scratch for batches of up to t_cap tokens; allocated once, grown rarely. */
static int ensure_scratch(medembed_ctx *c, int32_t t_cap)
{
    int32_t nt = me_pool_threads(c->pool);
    if (c->s.block && c->s.t_cap >= t_cap && c->s.n_threads == nt)
        return MEDEMBED_OK;
    me_scratch_free(&c->s);
    if (me_scratch_init(&c->s, c->m, t_cap, nt) != MEDEMBED_OK)
        return ctx_fail(c, MEDEMBED_ERR_NOMEM, "out of memory for forward scratch (%d tokens)", t_cap);
    return MEDEMBED_OK;
}

typedef struct {
    size_t off;        /* into ids */
    int32_t len;       /* tokens embedded */
    int32_t skip;      /* leading tokens pooling leaves out (include_prompt false) */
    int32_t n_a;       /* leading tokens of type 0 (a pair's first segment; else len) */
    medembed_text_info info;
} tok_seq;

struct medembed_tokens {
    const medembed_model *m;
    int32_t *ids;
    size_t n_ids, ids_cap;
    tok_seq *seq;
    int32_t n, seq_cap;
    me_ids tok;  /* tokenizer output, reused */
    char *joined; /* prompt + text, reused */
    size_t joined_cap;
};

typedef struct {
    int32_t len;
    int32_t idx;
} seq_ref;

static int cmp_seq(const void *a, const void *b)
{
    const seq_ref *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Runs the model over the set's sequences, sorted by length (stable), in
 * forward passes of at most `budget` tokens, and pools each into its row of
 * out (hidden floats each), or for a cross-encoder scores each with the
 * head (num_labels floats each; MEDEMBED_F_RAW_SCORES: logits). */
static int run_batches(medembed_ctx *c, const medembed_tokens *set, int32_t budget,
                       uint32_t flags, float *out)
{
    const medembed_model *m = c->m;
    int32_t H = m->cfg.hidden, n = set->n;
    if (n == 0)
        return MEDEMBED_OK;
    if (budget <= 0)
        budget = ME_DEFAULT_BATCH_TOKENS;
    if (budget < m->max_length)
        budget = m->max_length;
    FORWARD_IF_ERROR(ensure_scratch(c, budget));
    int normalize = m->cfg.normalize && !(flags & MEDEMBED_F_NO_NORMALIZE);
    int ce = m->cfg.kind == MEDEMBED_KIND_CROSS_ENCODER;
    int32_t width = ce ? m->cfg.num_labels : H;
    seq_ref *refs = malloc(sizeof *refs * (size_t)n);
    int32_t *bids = malloc(sizeof *bids * (size_t)budget);
    int32_t *blen = malloc(sizeof *blen * (size_t)n);
    int32_t *bna = malloc(sizeof *bna * (size_t)n);
    float *work = ce ? malloc(sizeof *work * (size_t)H) : NULL;
    if (!refs || !bids || !blen || !bna || (ce && !work)) {
        free(refs);
        free(bids);
        free(blen);
        free(bna);
        free(work);
        return ctx_fail(c, MEDEMBED_ERR_NOMEM, "out of memory for batches (%d sequences)", n);
    }
    for (int32_t i = 0; i < n; i++) {
        refs[i].len = set->seq[i].len;
        refs[i].idx = i;
    }
    qsort(refs, (size_t)n, sizeof *refs, cmp_seq);
    int32_t i = 0;
    while (i < n) {
        int32_t T = 0, k = 0;
        while (i + k < n && T + refs[i + k].len <= budget) {
            const tok_seq *q = &set->seq[refs[i + k].idx];
            memcpy(bids + T, set->ids + q->off, sizeof *bids * (size_t)q->len);
            blen[k] = q->len;
            bna[k] = q->n_a;
            T += q->len;
            k++;
        }
        me_bert_forward(m, &c->s, c->pool, bids, blen, bna, k,
                        m->cfg.pooling == MEDEMBED_POOLING_CLS);
        int32_t t = 0;
        for (int32_t q = 0; q < k; q++) {
            int32_t idx = refs[i + q].idx;
            const float *h = c->s.x + (size_t)t * (size_t)H;
            float *o = out + (size_t)idx * (size_t)width;
            if (ce)
                me_ce_head(m, h, (flags & MEDEMBED_F_RAW_SCORES) != 0, work, o);
            else
                me_pool_embed(m, h, blen[q], set->seq[idx].skip, normalize, o);
            t += blen[q];
        }
        i += k;
    }
    free(refs);
    free(bids);
    free(blen);
    free(bna);
    free(work);
    return MEDEMBED_OK;
}

/* ------------------------------------------------------------------------ */
/* Token sets                                                                */
/* ------------------------------------------------------------------------ */

int medembed_tokens_create(const medembed_model *m, medembed_tokens **out)
{
    if (!m || !out)
        return MEDEMBED_ERR_ARG;
    medembed_tokens *t = calloc(1, sizeof *t);
    if (!t)
        return MEDEMBED_ERR_NOMEM;
    t->m = m;
    *out = t;
    return MEDEMBED_OK;
}

void medembed_tokens_free(medembed_tokens *t)
{
    if (!t)
        return;
    free(t->ids);
    free(t->seq);
    free(t->joined);
    me_ids_free(&t->tok);
    free(t);
}

void medembed_tokens_clear(medembed_tokens *t)
{
    if (t) {
        t->n = 0;
        t->n_ids = 0;
    }
}

int32_t medembed_tokens_count(const medembed_tokens *t)
{
    return t ? t->n : 0;
}

const int32_t *medembed_tokens_ids(const medembed_tokens *t, int32_t i, int32_t *n_ids)
{
    if (!t || i < 0 || i >= t->n)
        return NULL;
    if (n_ids)
        *n_ids = t->seq[i].len;
    return t->ids + t->seq[i].off;
}

int medembed_tokens_info(const medembed_tokens *t, int32_t i, medembed_text_info *info)
{
    if (!t || i < 0 || i >= t->n || !info)
        return MEDEMBED_ERR_ARG;
    *info = t->seq[i].info;
    return MEDEMBED_OK;
}

static int tokens_reserve(medembed_tokens *t, int32_t more_seq, size_t more_ids)
{
    if (more_seq > INT32_MAX - t->n)
        return MEDEMBED_ERR_NOMEM;
    if (t->n + more_seq > t->seq_cap) {
        int64_t c = t->seq_cap ? t->seq_cap : 16;
        while (c < (int64_t)t->n + more_seq)
            c *= 2;
        if (c > INT32_MAX)
            c = INT32_MAX;
        tok_seq *p = realloc(t->seq, sizeof *p * (size_t)c);
        if (!p)
            return MEDEMBED_ERR_NOMEM;
        t->seq = p;
        t->seq_cap = (int32_t)c;
    }
    if (t->n_ids + more_ids > t->ids_cap) {
        size_t c = t->ids_cap ? t->ids_cap : 4096;
        while (c < t->n_ids + more_ids)
            c *= 2;
        int32_t *p = realloc(t->ids, sizeof *p * c);
        if (!p)
            return MEDEMBED_ERR_NOMEM;
        t->ids = p;
        t->ids_cap = c;
    }
    return MEDEMBED_OK;
}

/* Appends one sequence (room reserved): n ids of n_full before truncation. */
static void push_seq(medembed_tokens *t, const int32_t *ids, int32_t n, int32_t skip,
                     int32_t n_full, int32_t n_bad)
{
    memcpy(t->ids + t->n_ids, ids, sizeof *ids * (size_t)n);
    tok_seq *q = &t->seq[t->n++];
    q->off = t->n_ids;
    q->len = n;
    q->skip = skip;
    q->n_a = n;
    q->info.n_tokens = n;
    q->info.n_untruncated = n_full;
    q->info.truncated = n_full > n;
    q->info.n_invalid_utf8 = n_bad;
    t->n_ids += (size_t)n;
}

int medembed_tokens_add_texts(medembed_tokens *t, const char *const *texts, const size_t *lens,
                              int32_t n, const medembed_embed_opts *opts, char *err,
                              size_t err_len)
{
    if (!t || n < 0 || (n > 0 && !texts))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "add_texts: bad arguments (n = %d)", n);
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    if (opts)
        o = *opts;
    const medembed_model *m = t->m;
    const char *prompt = NULL;
    int rc = medembed_resolve_prompt(m, &o, &prompt, NULL, err, err_len);
    if (rc != MEDEMBED_OK)
        return rc;
    int all = (o.flags & MEDEMBED_F_ALL_TOKENS) != 0;
    int left = (o.flags & MEDEMBED_F_TRUNCATE_LEFT) != 0 && !all;
    int32_t max = m->max_length;
    if (o.max_length > 0 && o.max_length < max)
        max = o.max_length < 2 ? 2 : o.max_length;
    uint32_t tf = tok_flags(m, o.flags);
    size_t plen = prompt ? strlen(prompt) : 0;

    /* include_prompt = false: the prompt's tokens ([CLS] + prompt pieces)
     * are left out of mean/max pooling, as sentence-transformers does. */
    int32_t skip = 0;
    if (plen && !m->cfg.include_prompt) {
        int32_t nf = 0;
        me_err e;
        rc = me_tokenizer_encode(m->tok, prompt, plen, 0, tf, &t->tok, &nf, NULL, &e);
        if (rc != MEDEMBED_OK)
            return me_err_buf(err, err_len, rc, "prompt: %s", e.msg);
        skip = t->tok.n - 1;
    }
    int32_t n0 = t->n;
    size_t ids0 = t->n_ids;
    for (int32_t i = 0; i < n; i++) {
        const char *s = texts[i] ? texts[i] : "";
        size_t len = lens ? lens[i] : strlen(s);
        if (plen) {
            if (plen + len + 1 > t->joined_cap) {
                size_t c = (plen + len + 1) * 2;
                char *p = realloc(t->joined, c);
                if (!p) {
                    rc = me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "text %d: out of memory", i);
                    break;
                }
                t->joined = p;
                t->joined_cap = c;
            }
            memcpy(t->joined, prompt, plen);
            memcpy(t->joined + plen, s, len);
            s = t->joined;
            len += plen;
        }
        int32_t nf = 0, nbad = 0;
        me_err e;
        /* The right cut is the tokenizer's own (it stops early); the left
         * one needs every token. */
        rc = me_tokenizer_encode(m->tok, s, len, (all || left) ? 0 : max, tf, &t->tok, &nf, &nbad,
                                 &e);
        if (rc != MEDEMBED_OK) {
            me_err_buf(err, err_len, rc, "text %d: %s", i, e.msg);
            break;
        }
        int32_t k = t->tok.n;
        if ((o.flags & MEDEMBED_F_NO_TRUNCATE) && !all && nf > max) {
            rc = me_err_buf(err, err_len, MEDEMBED_ERR_TOO_LONG,
                          "text %d: %d tokens is over the model's limit of %d", i, nf, max);
            break;
        }
        if (left && k > max) {
            /* [CLS] + the last max-2 pieces + [SEP], as HF's left truncation
             * keeps them */
            memmove(t->tok.ids + 1, t->tok.ids + (k - 1 - (max - 2)),
                    sizeof *t->tok.ids * (size_t)(max - 2));
            t->tok.ids[max - 1] = t->tok.ids[k - 1];
            k = max;
        }
        rc = tokens_reserve(t, 1, (size_t)k);
        if (rc != MEDEMBED_OK) {
            me_err_buf(err, err_len, rc, "text %d: out of memory for %d tokens", i, k);
            break;
        }
        push_seq(t, t->tok.ids, k, skip, nf, nbad);
    }
    if (rc != MEDEMBED_OK) {
        t->n = n0;
        t->n_ids = ids0;
    }
    return rc;
}

int medembed_tokens_add_ids(medembed_tokens *t, const int32_t *ids, int32_t n_ids, char *err,
                            size_t err_len)
{
    return me_tokens_add_seq(t, ids, n_ids, 0, err, err_len);
}

int me_tokens_add_seq(medembed_tokens *t, const int32_t *ids, int32_t n_ids, int32_t skip,
                      char *err, size_t err_len)
{
    if (!t || (n_ids > 0 && !ids))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "add_ids: bad arguments");
    const medembed_model *m = t->m;
    if (n_ids < 1 || n_ids > m->max_length)
        return me_err_buf(err, err_len, MEDEMBED_ERR_TOO_LONG, "%d tokens; allowed 1..%d", n_ids,
                        m->max_length);
    for (int32_t k = 0; k < n_ids; k++)
        if (ids[k] < 0 || ids[k] >= m->cfg.vocab_size)
            return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                            "token id %d is outside the vocabulary [0, %d)", ids[k],
                            m->cfg.vocab_size);
    if (tokens_reserve(t, 1, (size_t)n_ids) != MEDEMBED_OK)
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "out of memory for %d tokens", n_ids);
    push_seq(t, ids, n_ids, skip, n_ids, 0);
    return MEDEMBED_OK;
}

int medembed_tokens_append(medembed_tokens *dst, const medembed_tokens *src, int32_t first,
                           int32_t count)
{
    if (!dst || !src || dst == src || dst->m != src->m || first < 0 || count < 0 ||
        first > src->n || count > src->n - first)
        return MEDEMBED_ERR_ARG;
    if (count == 0)
        return MEDEMBED_OK;
    const tok_seq *a = &src->seq[first], *b = &src->seq[first + count - 1];
    size_t nid = b->off + (size_t)b->len - a->off;
    if (tokens_reserve(dst, count, nid) != MEDEMBED_OK)
        return MEDEMBED_ERR_NOMEM;
    memcpy(dst->ids + dst->n_ids, src->ids + a->off, sizeof *dst->ids * nid);
    for (int32_t i = 0; i < count; i++) {
        tok_seq q = src->seq[first + i];
        q.off = q.off - a->off + dst->n_ids;
        dst->seq[dst->n + i] = q;
    }
    dst->n += count;
    dst->n_ids += nid;
    return MEDEMBED_OK;
}

int medembed_ctx_embed_tokens(medembed_ctx *c, const medembed_tokens *t, uint32_t flags,
                              int32_t batch_tokens, float *out)
{
    if (!c)
        return MEDEMBED_ERR_ARG;
    c->last_error[0] = 0;
    if (!t || t->m != c->m || (t->n > 0 && !out))
        return ctx_fail(c, MEDEMBED_ERR_ARG, "embed_tokens: bad arguments (a set of another model?)");
    FORWARD_IF_ERROR(need_kind(c, MEDEMBED_KIND_EMBEDDER));
    for (int32_t i = 0; i < t->n; i++)
        if (t->seq[i].len < 1 || t->seq[i].len > c->m->max_length)
            return ctx_fail(c, MEDEMBED_ERR_TOO_LONG,
                            "sequence %d has %d tokens; allowed 1..%d (made with "
                            "MEDEMBED_F_ALL_TOKENS?)",
                            i, t->seq[i].len, c->m->max_length);
    return run_batches(c, t, batch_tokens, flags, out);
}

int medembed_ctx_embed(medembed_ctx *c, const char *const *texts, const size_t *lens, int32_t n,
                       const medembed_embed_opts *opts, float *out, medembed_text_info *info)
{
    if (!c)
        return MEDEMBED_ERR_ARG;
    c->last_error[0] = 0;
    if (n < 0 || (n > 0 && (!texts || !out)))
        return ctx_fail(c, MEDEMBED_ERR_ARG, "medembed_ctx_embed: bad arguments (n = %d)", n);
    FORWARD_IF_ERROR(need_kind(c, MEDEMBED_KIND_EMBEDDER));
    if (n == 0)
        return MEDEMBED_OK;
    if (!c->set && medembed_tokens_create(c->m, &c->set) != MEDEMBED_OK)
        return ctx_fail(c, MEDEMBED_ERR_NOMEM, "out of memory");
    medembed_tokens_clear(c->set);
    int rc = medembed_tokens_add_texts(c->set, texts, lens, n, opts, c->last_error,
                                       sizeof c->last_error);
    if (rc != MEDEMBED_OK)
        return rc;
    if (info)
        for (int32_t i = 0; i < n; i++)
            info[i] = c->set->seq[i].info;
    return medembed_ctx_embed_tokens(c, c->set, opts ? opts->flags : 0,
                                     opts ? opts->batch_tokens : 0, out);
}

int medembed_ctx_embed_ids(medembed_ctx *c, const int32_t *ids, const int32_t *n_ids, int32_t n,
                           uint32_t flags, float *out)
{
    if (!c)
        return MEDEMBED_ERR_ARG;
    c->last_error[0] = 0;
    if (n < 0 || (n > 0 && (!ids || !n_ids || !out)))
        return ctx_fail(c, MEDEMBED_ERR_ARG, "medembed_ctx_embed_ids: bad arguments (n = %d)", n);
    FORWARD_IF_ERROR(need_kind(c, MEDEMBED_KIND_EMBEDDER));
    if (!c->set && medembed_tokens_create(c->m, &c->set) != MEDEMBED_OK)
        return ctx_fail(c, MEDEMBED_ERR_NOMEM, "out of memory");
    medembed_tokens_clear(c->set);
    size_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        char e[200];
        int rc = medembed_tokens_add_ids(c->set, ids + off, n_ids[i], e, sizeof e);
        if (rc != MEDEMBED_OK)
            return ctx_fail(c, rc, "sequence %d: %s", i, e);
        off += (size_t)n_ids[i];
    }
    return medembed_ctx_embed_tokens(c, c->set, flags, 0, out);
}

/* ------------------------------------------------------------------------ */
/* Cross-encoder                                                             */
/* ------------------------------------------------------------------------ */

/* How many of a pair's n1 and n2 pieces stay within `room` (the limit less
 * the three specials), as Hugging Face tokenizers' "longest_first"
 * truncation counts them: the shorter list stays whole if the longer one
 * can absorb the cut; else both get half, the longer (the second on a
 * tie) the odd one. */
static void pair_keep(int32_t n1, int32_t n2, int32_t room, int32_t *k1, int32_t *k2)
{
    if (n1 + n2 <= room) {
        *k1 = n1;
        *k2 = n2;
        return;
    }
    int swap = n1 > n2;
    int32_t a = swap ? n2 : n1, b; /* a: the shorter */
    b = a > room ? a : (a > room - a ? a : room - a);
    if (a + b > room) {
        a = room / 2;
        b = a + room % 2;
    }
    int32_t x = swap ? b : a, y = swap ? a : b;
    *k1 = x < n1 ? x : n1;
    *k2 = y < n2 ? y : n2;
}

/* Appends [CLS] q[...] [SEP] d[...] [SEP] with kq of the nq query pieces and
 * kd of the nd text pieces (the first ones, or the last with `left`). */
static int push_pair(medembed_tokens *t, int32_t cls, int32_t sep, const int32_t *q, int32_t nq,
                     int32_t kq, const int32_t *d, int32_t nd, int32_t kd, int left,
                     int32_t n_bad)
{
    int32_t n = kq + kd + 3;
    if (tokens_reserve(t, 1, (size_t)n) != MEDEMBED_OK)
        return MEDEMBED_ERR_NOMEM;
    int32_t *o = t->ids + t->n_ids;
    o[0] = cls;
    memcpy(o + 1, q + (left ? nq - kq : 0), sizeof *o * (size_t)kq);
    o[1 + kq] = sep;
    memcpy(o + 2 + kq, d + (left ? nd - kd : 0), sizeof *o * (size_t)kd);
    o[n - 1] = sep;
    tok_seq *s = &t->seq[t->n++];
    s->off = t->n_ids;
    s->len = n;
    s->skip = 0;
    s->n_a = kq + 2;
    s->info.n_tokens = n;
    s->info.n_untruncated = nq + nd + 3;
    s->info.truncated = kq < nq || kd < nd;
    s->info.n_invalid_utf8 = n_bad;
    t->n_ids += (size_t)n;
    return MEDEMBED_OK;
}

int medembed_ctx_rerank(medembed_ctx *c, const char *query, size_t query_len,
                        const char *const *texts, const size_t *lens, int32_t n, uint32_t flags,
                        float *scores)
{
    if (!c)
        return MEDEMBED_ERR_ARG;
    c->last_error[0] = 0;
    if (n < 0 || (n > 0 && (!texts || !scores)) ||
        (!query && query_len && query_len != (size_t)-1))
        return ctx_fail(c, MEDEMBED_ERR_ARG, "medembed_ctx_rerank: bad arguments (n = %d)", n);
    FORWARD_IF_ERROR(need_kind(c, MEDEMBED_KIND_CROSS_ENCODER));
    if (n == 0)
        return MEDEMBED_OK;
    const medembed_model *m = c->m;
    int32_t room = m->max_length - 3;
    if (room < 1)
        return ctx_fail(c, MEDEMBED_ERR_ARG,
                        "max_length %d leaves no room for a pair ([CLS] a [SEP] b [SEP])",
                        m->max_length);
    if (!query)
        query = "";
    if (query_len == (size_t)-1)
        query_len = strlen(query);
    if (!c->set && medembed_tokens_create(m, &c->set) != MEDEMBED_OK)
        return ctx_fail(c, MEDEMBED_ERR_NOMEM, "out of memory");
    medembed_tokens *set = c->set;
    medembed_tokens_clear(set);
    uint32_t tf = tok_flags(m, flags);
    int left = (flags & MEDEMBED_F_TRUNCATE_LEFT) != 0;
    me_ids qv = {0};
    me_err e;
    int32_t nf = 0, qbad = 0;
    int rc = me_tokenizer_encode(m->tok, query, query_len, 0, tf, &qv, &nf, &qbad, &e);
    if (rc != MEDEMBED_OK) {
        me_ids_free(&qv);
        return ctx_fail(c, rc, "query: %s", e.msg);
    }
    if (qv.n < 2) { /* encode always adds [CLS] and [SEP]; never trust it blindly */
        me_ids_free(&qv);
        return ctx_fail(c, MEDEMBED_ERR_INTERNAL, "query: the tokenizer gave no [CLS]/[SEP]");
    }
    /* [CLS] pieces [SEP]: the specials come from the tokenizer */
    int32_t cls = qv.ids[0], sep = qv.ids[qv.n - 1], nq = qv.n - 2;
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++) {
        const char *s = texts[i] ? texts[i] : "";
        size_t len = lens ? lens[i] : strlen(s);
        int32_t dbad = 0;
        rc = me_tokenizer_encode(m->tok, s, len, 0, tf, &set->tok, &nf, &dbad, &e);
        if (rc != MEDEMBED_OK) {
            ctx_fail(c, rc, "text %d: %s", i, e.msg);
            break;
        }
        if (set->tok.n < 2) {
            rc = ctx_fail(c, MEDEMBED_ERR_INTERNAL, "text %d: the tokenizer gave no [CLS]/[SEP]",
                          i);
            break;
        }
        int32_t nd = set->tok.n - 2, kq = nq, kd = nd;
        if (nq + nd > room) {
            if (flags & MEDEMBED_F_NO_TRUNCATE) {
                rc = ctx_fail(c, MEDEMBED_ERR_TOO_LONG,
                              "pair %d: %d tokens (query %d + text %d + 3 special) is over the "
                              "model's limit of %d",
                              i, nq + nd + 3, nq, nd, m->max_length);
                break;
            }
            pair_keep(nq, nd, room, &kq, &kd);
        }
        rc = push_pair(set, cls, sep, qv.ids + 1, nq, kq, set->tok.ids + 1, nd, kd, left,
                       qbad + dbad);
        if (rc != MEDEMBED_OK)
            ctx_fail(c, rc, "text %d: out of memory for %d tokens", i, kq + kd + 3);
    }
    me_ids_free(&qv);
    if (rc == MEDEMBED_OK)
        rc = run_batches(c, set, 0, flags, scores);
    medembed_tokens_clear(set);
    return rc;
}

int medembed_ctx_hidden(medembed_ctx *c, const int32_t *ids, int32_t n_ids, float *out)
{
    if (!c || !ids || !out)
        return MEDEMBED_ERR_ARG;
    const medembed_model *m = c->m;
    if (n_ids < 1 || n_ids > m->max_length)
        return ctx_fail(c, MEDEMBED_ERR_TOO_LONG, "sequence has %d tokens; allowed 1..%d", n_ids,
                        m->max_length);
    for (int32_t k = 0; k < n_ids; k++)
        if (ids[k] < 0 || ids[k] >= m->cfg.vocab_size)
            return ctx_fail(c, MEDEMBED_ERR_ARG, "token id %d is outside the vocabulary [0, %d)",
                            ids[k], m->cfg.vocab_size);
    FORWARD_IF_ERROR(ensure_scratch(c, m->max_length));
    me_bert_forward(m, &c->s, c->pool, ids, &n_ids, NULL, 1, 0);
    memcpy(out, c->s.x, sizeof *out * (size_t)n_ids * (size_t)m->cfg.hidden);
    return MEDEMBED_OK;
}

const medembed_model *medembed_ctx_model(const medembed_ctx *c)
{
    return c ? c->m : NULL;
}
