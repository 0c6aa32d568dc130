/*
 * medembed.h - the one public header of libmedembed.
 *
 * libmedembed turns text into sentence embeddings with BERT-family encoders
 * (MedEmbed small/base/large v0.1, bge-*-en-v1.5, all-MiniLM, PubMedBERT
 * embeddings), loading model folders exactly as Hugging Face ships them and
 * tokenizing exactly as Hugging Face `tokenizers` does.
 *
 * Ten lines from model to vector (error handling trimmed; see
 * examples/embed.c for the full version). The name is a model folder or a
 * hub repo id already downloaded (`medembed pull ORG/NAME`); "Model names"
 * below says exactly how it is found:
 *
 *     char err[1024];
 *     medembed_model *m = NULL;
 *     if (medembed_model_load("abhinand/MedEmbed-base-v0.1", NULL, &m, err, sizeof err))
 *         die(err);
 *     medembed_ctx *c = NULL;
 *     medembed_ctx_create(m, 0, &c);
 *     const char *texts[] = { "aspirin for stroke prevention" };
 *     float *vec = malloc(sizeof(float) * (size_t)medembed_model_dim(m));
 *     medembed_ctx_embed(c, texts, NULL, 1, NULL, vec, NULL);
 *     medembed_ctx_free(c);
 *     medembed_model_free(m);
 *
 * Threading model
 *   A medembed_model is immutable after load and may be shared by any number
 *   of threads. A medembed_ctx owns scratch memory and a worker pool; use one
 *   ctx from one thread at a time (create one per thread). Results do not
 *   depend on the thread count, the batch size or the other texts in a batch:
 *   the same text always gives bit-identical output for a given model, dtype
 *   and ISA level.
 *
 * Error model
 *   Every fallible function returns a medembed_status: MEDEMBED_OK (0) or a
 *   negative code. medembed_status_str() names a code. Details go to a caller
 *   buffer (load) or to medembed_ctx_last_error(). On failure, out-params are
 *   left unchanged unless documented otherwise. The library never exits or
 *   prints.
 *
 * Versioning
 *   MEDEMBED_VERSION_* below; medembed_version() returns the runtime string.
 *   The ABI is stable within a major version. Declarations guarded by
 *   MEDEMBED_EXPERIMENTAL may change in any release.
 */
#ifndef MEDEMBED_H
#define MEDEMBED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEDEMBED_VERSION_MAJOR 0
#define MEDEMBED_VERSION_MINOR 1
#define MEDEMBED_VERSION_PATCH 0

#if defined(MEDEMBED_BUILD)
#define MEDEMBED_API __attribute__((visibility("default")))
#else
#define MEDEMBED_API
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/* X(name, value, description); also generates medembed_status_str(). */
#define MEDEMBED_STATUS_LIST(X)                                                  \
    X(MEDEMBED_OK, 0, "ok")                                                      \
    X(MEDEMBED_ERR_ARG, -1, "invalid argument")                                  \
    X(MEDEMBED_ERR_NOMEM, -2, "out of memory")                                   \
    X(MEDEMBED_ERR_IO, -3, "I/O error")                                          \
    X(MEDEMBED_ERR_FORMAT, -4, "malformed input file")                           \
    X(MEDEMBED_ERR_UNSUPPORTED, -5, "unsupported model or feature")              \
    X(MEDEMBED_ERR_TOO_LONG, -6, "input longer than the model accepts")          \
    X(MEDEMBED_ERR_NOT_FOUND, -7, "not found")                                   \
    X(MEDEMBED_ERR_ENCODING, -8, "invalid UTF-8 in input")                       \
    X(MEDEMBED_ERR_MISMATCH, -9, "model or index mismatch")                      \
    X(MEDEMBED_ERR_INTERNAL, -11, "internal error")
/* -10 was MEDEMBED_ERR_NETWORK, which nothing returned: the library does no
 * networking (downloads are `medembed pull`'s). The value is not reused. */

typedef enum medembed_status {
#define MEDEMBED_X_ENUM(name, value, desc) name = value,
    MEDEMBED_STATUS_LIST(MEDEMBED_X_ENUM)
#undef MEDEMBED_X_ENUM
} medembed_status;

/* Static description of a status code; never NULL. */
MEDEMBED_API const char *medembed_status_str(int status);

/* "MAJOR.MINOR.PATCH". */
MEDEMBED_API const char *medembed_version(void);

/* ------------------------------------------------------------------------ */
/* Enumerations                                                              */
/* ------------------------------------------------------------------------ */

/* Compute precision of the encoder. F32 is the default and the reference.
 * BF16: weights and layer inputs rounded to bf16, fp32 sums. INT8: weights
 * per output channel and layer inputs per row in int8, exact int32 sums,
 * except the fused QKV projection, which stays bf16 (its LayerNorm input
 * has outlier channels). Attention, LayerNorm and GELU are fp32 in every
 * dtype. Accuracy on real weights: docs/MODELS.md. */
typedef enum medembed_dtype {
    MEDEMBED_DTYPE_F32 = 0,
    MEDEMBED_DTYPE_BF16 = 1,
    MEDEMBED_DTYPE_INT8 = 2
} medembed_dtype;

/* Pooling, from sentence-transformers' 1_Pooling/config.json. */
typedef enum medembed_pooling {
    MEDEMBED_POOLING_CLS = 0,
    MEDEMBED_POOLING_MEAN = 1,
    MEDEMBED_POOLING_MAX = 2,
    MEDEMBED_POOLING_MEAN_SQRT_LEN = 3
} medembed_pooling;

/* What a model computes (medembed_model_kind()). An embedder (BertModel,
 * optionally with the sentence-transformers modules) maps a text to one
 * vector; a cross-encoder (BertForSequenceClassification, as
 * sentence-transformers' CrossEncoder saves it) scores a (query, text) pair.
 * Only the enum tag is declared: the function medembed_model_kind() owns the
 * plain name. */
enum medembed_model_kind {
    MEDEMBED_KIND_EMBEDDER = 0,
    MEDEMBED_KIND_CROSS_ENCODER = 1
};

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct medembed_model medembed_model;

/* Load options. Always initialise with medembed_load_opts_init() so that
 * fields added later get their defaults. */
typedef struct medembed_load_opts {
    int32_t dtype;      /* medembed_dtype for compute; default F32 */
    int32_t max_length; /* cap on tokens per text incl. [CLS]/[SEP]; 0 = model's */
    int32_t tokenizer_only; /* 1: load the tokenizer (and config if present) but no
                               weights; only tokenize/info/token queries work, and the
                               ctx functions return MEDEMBED_ERR_UNSUPPORTED. A folder
                               with only tokenizer files then loads. */
    const char *pack_cache; /* directory for the packed-weights cache; NULL = the
                               MEDEMBED_PACK_CACHE environment variable, "" = none.
                               The first load packs the weights as always and writes
                               them to one file there; later loads of the same weights,
                               dtype and kernels map that file instead of packing
                               (faster, and processes share the pages). A stale,
                               damaged or foreign file is ignored and rewritten, and
                               writing a file removes the files it makes stale (the
                               same model folder, kernels, CPU features and dtype
                               under an older key); a directory that cannot be
                               written only costs the cache.
                               medembed_model_info_json's "pack_cache" says what
                               happened. Default NULL. */
} medembed_load_opts;

MEDEMBED_API void medembed_load_opts_init(medembed_load_opts *opts);

/* Load a model folder laid out as Hugging Face ships a sentence-transformers
 * BERT model: config.json, model.safetensors (or a sharded
 * model.safetensors.index.json), tokenizer.json (or vocab.txt +
 * tokenizer_config.json) and the optional sentence-transformers files
 * (modules.json, 1_Pooling/config.json, sentence_bert_config.json,
 * config_sentence_transformers.json).
 *
 * Every header, shape, offset and dtype is validated before use.
 *   name    : a model folder, or a downloaded hub repo id ORG/NAME[@REV]:
 *             resolved by medembed_model_resolve() ("Model names" below).
 *   opts    : NULL for defaults.
 *   out     : OUT: the model, owned by the caller (medembed_model_free).
 *   err     : OUT: a one-line message naming the file/tensor on failure; may be NULL.
 * Returns MEDEMBED_OK, _ERR_NOT_FOUND (the name resolves to no folder), _ERR_IO,
 * _ERR_FORMAT, _ERR_UNSUPPORTED, _ERR_NOMEM, _ERR_ARG.
 * Thread-safe. */
MEDEMBED_API int medembed_model_load(const char *name, const medembed_load_opts *opts,
                                     medembed_model **out, char *err, size_t err_len);

/* Frees a model; NULL is accepted. All ctxs of the model must be freed first. */
MEDEMBED_API void medembed_model_free(medembed_model *model);

/* Output embedding dimension (hidden size). */
MEDEMBED_API int32_t medembed_model_dim(const medembed_model *model);
/* Effective token limit, [CLS]/[SEP] included: min(max_position_embeddings,
 * sentence_bert_config max_seq_length, opts.max_length). */
MEDEMBED_API int32_t medembed_model_max_length(const medembed_model *model);
MEDEMBED_API int32_t medembed_model_pooling(const medembed_model *model);
/* 1 if the model ends with a Normalize module. */
MEDEMBED_API int32_t medembed_model_normalize(const medembed_model *model);
MEDEMBED_API int32_t medembed_model_dtype(const medembed_model *model);
/* Names of a pooling ("cls", "mean", "max", "mean_sqrt_len") and a dtype
 * ("f32", "bf16", "int8"), as the CLI's flags and the info JSON spell them;
 * "?" / "f32" for values out of range. */
MEDEMBED_API const char *medembed_pooling_name(int32_t pooling);
MEDEMBED_API const char *medembed_dtype_name(int32_t dtype);

/* The model's kind (enum medembed_model_kind): a config.json whose
 * architectures[0] is "BertForSequenceClassification" loads as a
 * cross-encoder, anything else as an embedder. Embedding calls refuse a
 * cross-encoder and medembed_ctx_rerank refuses an embedder, both with
 * MEDEMBED_ERR_MISMATCH and a message saying which kind each needs. */
MEDEMBED_API int32_t medembed_model_kind(const medembed_model *model);
/* "embedder" or "cross-encoder" ("?" for other values). */
MEDEMBED_API const char *medembed_model_kind_name(int32_t kind);
/* A cross-encoder's number of output scores per pair (config.json num_labels,
 * or the size of id2label); 0 for embedders. */
MEDEMBED_API int32_t medembed_model_num_labels(const medembed_model *model);

/* JSON description (kind, num_labels, architecture, dims, layers, heads, pooling, normalize,
 * max_length, weight dtype, compute dtype, parameter count, prompts).
 * Writes at most buf_len bytes incl. NUL; returns the length the full string
 * needs (excl. NUL), so call with buf_len 0 to size the buffer. */
MEDEMBED_API size_t medembed_model_info_json(const medembed_model *model, char *buf,
                                             size_t buf_len);

/* The prompt named `name` in config_sentence_transformers.json, or NULL.
 * With name NULL, the default_prompt_name's prompt (or NULL). The string
 * lives as long as the model. Which prompt an embedding call applies is
 * medembed_resolve_prompt's rule, below. */
MEDEMBED_API const char *medembed_model_prompt(const medembed_model *model, const char *name);
/* The prompts' names, in config order: i in [0, medembed_model_prompt_count). */
MEDEMBED_API int32_t medembed_model_prompt_count(const medembed_model *model);
MEDEMBED_API const char *medembed_model_prompt_name(const medembed_model *model, int32_t i);
/* default_prompt_name of config_sentence_transformers.json, or NULL. */
MEDEMBED_API const char *medembed_model_default_prompt_name(const medembed_model *model);
/* 1_Pooling's include_prompt: 0 when the prompt's tokens are left out of
 * mean/max pooling (the embed functions do that themselves). */
MEDEMBED_API int32_t medembed_model_include_prompt(const medembed_model *model);

/* The model's one identity, 64 hex chars (SHA-256), which the index records
 * and checks and the pack cache builds on. It covers everything that
 * decides the vectors: config.json, the tokenizer files (tokenizer.json,
 * vocab.txt, tokenizer_config.json, special_tokens_map.json,
 * added_tokens.json), the sentence-transformers settings as loaded
 * (pooling, Normalize, include_prompt, max_seq_length, do_lower_case,
 * prompts, default prompt name), every safetensors header and every byte of
 * tensor data. It does not depend on the folder's location, the compute
 * dtype, the kernels or load options. Computed on the first call (the data
 * is summed by all CPUs: ~40 ms for a 440 MB base model), then kept; lives
 * as long as the model. Thread-safe. */
MEDEMBED_API const char *medembed_model_fingerprint(const medembed_model *model);

/* ------------------------------------------------------------------------ */
/* Model names: folders, repo ids and the model cache                        */
/* ------------------------------------------------------------------------ */
/*
 * A model name means the same folder everywhere: medembed_model_load, the
 * CLI's and the server's -m, and Python's Model() all resolve it here.
 *   1. An existing folder is used as it is (a folder wins over a repo id of
 *      the same spelling). An existing file is MEDEMBED_ERR_ARG (a .whl gets
 *      a hint on unpacking it).
 *   2. A name that starts with '/', '.' or '~' and does not exist is a
 *      missing folder: MEDEMBED_ERR_NOT_FOUND.
 *   3. ORG/NAME or ORG/NAME@REV, a Hugging Face hub repo id (ORG and NAME
 *      1..96 of [A-Za-z0-9._-], not starting or ending with '.' or '-', no
 *      ".."; REV a branch, tag or commit: no spaces, control characters,
 *      backslashes or "..", not starting with '/'), is looked for, without
 *      any network access, in
 *        a. medembed's cache: $MEDEMBED_HOME/models/ORG/NAME when REV is
 *           absent or "main", else $MEDEMBED_HOME/models/ORG/NAME@REV with
 *           '/' and '%' in REV percent-encoded (refs/pr/1 -> @refs%2Fpr%2F1);
 *           MEDEMBED_HOME defaults to $XDG_CACHE_HOME/medembed, else
 *           ~/.cache/medembed;
 *        b. the Hugging Face hub cache, found as huggingface_hub finds it
 *           ($HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub,
 *           else $XDG_CACHE_HOME/huggingface/hub, else
 *           ~/.cache/huggingface/hub), and laid out as it lays it out:
 *           models--ORG--NAME/snapshots/C, where C is the 40-hex commit
 *           stored in models--ORG--NAME/refs/REV (REV default main), or REV
 *           itself when REV is a 40-hex commit.
 *      The first of these that is a folder holding config.json is the model.
 *   4. Anything else is MEDEMBED_ERR_NOT_FOUND, with a message that names
 *      the places looked at and, for a repo id, `medembed pull NAME`.
 * Environment variables set to "" count as unset; "~" is $HOME, else the
 * password database. The library never downloads: `medembed pull` (and the
 * CLI's -m when a repo id is not found) downloads into medembed_cache_dir().
 */

/* Resolves a model name (rules above) to a folder.
 *   name : the name; NUL-terminated.
 *   dir  : OUT: the folder, NUL-terminated, in dir_len bytes. A folder name
 *          comes back as given (not made absolute); a cached model as the
 *          cache path (symlinks kept).
 *   err  : OUT: a one-line message on failure; may be NULL.
 * Returns MEDEMBED_OK, _ERR_NOT_FOUND, or _ERR_ARG (NULL or empty name, a
 * file, a folder path longer than dir_len - 1). Thread-safe while no thread
 * changes the environment. */
MEDEMBED_API int medembed_model_resolve(const char *name, char *dir, size_t dir_len, char *err,
                                        size_t err_len);

/* The folder of medembed's cache for hub repo id `name` (ORG/NAME[@REV]),
 * rule 3a above, whether or not it exists: where `medembed pull` downloads
 * it. With name NULL: the cache root, $MEDEMBED_HOME or ~/.cache/medembed.
 * Returns MEDEMBED_OK, _ERR_ARG (name is not a repo id; the path is longer
 * than dir_len - 1), _ERR_NOT_FOUND (neither MEDEMBED_HOME nor a home
 * folder is known). Thread-safe while no thread changes the environment. */
MEDEMBED_API int medembed_cache_dir(const char *name, char *dir, size_t dir_len, char *err,
                                    size_t err_len);

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                 */
/* ------------------------------------------------------------------------ */

/* Flags for tokenize and embed. */
#define MEDEMBED_F_NO_NORMALIZE 0x1u /* skip the Normalize module (embed only) */
#define MEDEMBED_F_NO_TRUNCATE 0x2u  /* tokenize: keep all tokens; embed: too long is an error */
#define MEDEMBED_F_STRICT_UTF8 0x4u  /* invalid UTF-8 is an error, not U+FFFD */
#define MEDEMBED_F_RAW_TOKENIZER 0x8u /* skip sentence-transformers' do_lower_case pre-pass */
#define MEDEMBED_F_TRUNCATE_LEFT 0x10u /* truncation keeps the end: [CLS] + the last pieces + [SEP] */
#define MEDEMBED_F_ALL_TOKENS 0x20u /* medembed_tokens_add_texts: keep every token, for display
                                       (such a set cannot be embedded if over the limit) */
#define MEDEMBED_F_RAW_SCORES 0x40u /* rerank: logits, without the activation */

/* Per-text information reported by tokenize and embed. */
typedef struct medembed_text_info {
    int32_t n_tokens;     /* tokens fed to the model, specials included */
    int32_t n_untruncated; /* tokens before truncation, specials included */
    int32_t truncated;    /* 1 if tokens were dropped */
    int32_t n_invalid_utf8; /* invalid byte sequences replaced with U+FFFD */
} medembed_text_info;

/* Tokenize one text exactly as the model's Hugging Face tokenizer does
 * ([CLS] text [SEP], truncated to medembed_model_max_length unless
 * MEDEMBED_F_NO_TRUNCATE).
 *   text, len : UTF-8 bytes (len may be (size_t)-1 for NUL-terminated).
 *   ids       : OUT: up to cap ids.
 *   info      : OUT: counts; may be NULL.
 * Returns MEDEMBED_OK (when more than cap ids exist, info->n_tokens says how
 * many and only cap were written), _ERR_ENCODING with MEDEMBED_F_STRICT_UTF8.
 * Thread-safe. */
MEDEMBED_API int medembed_tokenize(const medembed_model *model, const char *text, size_t len,
                                   uint32_t flags, int32_t *ids, int32_t cap,
                                   medembed_text_info *info);

/* Token string for an id ("##ing", "[CLS]"), or NULL if out of range. */
MEDEMBED_API const char *medembed_token_str(const medembed_model *model, int32_t id);
MEDEMBED_API int32_t medembed_vocab_size(const medembed_model *model);

/* ------------------------------------------------------------------------ */
/* Context: scratch memory and threads                                       */
/* ------------------------------------------------------------------------ */

typedef struct medembed_ctx medembed_ctx;

/* n_threads: 0 = all online CPUs. One ctx per thread at a time. */
MEDEMBED_API int medembed_ctx_create(const medembed_model *model, int32_t n_threads,
                                     medembed_ctx **out);
MEDEMBED_API void medembed_ctx_free(medembed_ctx *ctx);
/* Message for the last failure on this ctx ("" if none). */
MEDEMBED_API const char *medembed_ctx_last_error(const medembed_ctx *ctx);

/* What the texts of a call are; it decides the prompt when the caller
 * names none (medembed_resolve_prompt). */
typedef enum medembed_role {
    MEDEMBED_ROLE_TEXT = 0,     /* plain texts (`medembed embed`, /embed, encode()) */
    MEDEMBED_ROLE_QUERY = 1,    /* search queries (search, eval's queries, /search) */
    MEDEMBED_ROLE_DOCUMENT = 2  /* documents stored in an index (index, eval's corpus) */
} medembed_role;

/* Embed options; initialise with medembed_embed_opts_init(). */
typedef struct medembed_embed_opts {
    uint32_t flags;     /* MEDEMBED_F_* */
    int32_t max_length; /* 0 = model limit; otherwise min(model limit, this) */
    const char *prompt; /* prepended verbatim to every text; "" = no prompt; NULL = the rule */
    int32_t batch_tokens; /* token budget per forward pass; 0 = default */
    const char *prompt_name; /* a prompt of the model's config; NULL = the rule */
    int32_t role;            /* medembed_role; default MEDEMBED_ROLE_TEXT */
} medembed_embed_opts;

MEDEMBED_API void medembed_embed_opts_init(medembed_embed_opts *opts);

/* The prompt rule. Every embedding call of the library (and so every
 * command, route and Python method) applies it:
 *   1. opts->prompt, when set ("" means no prompt); giving both prompt and
 *      prompt_name is MEDEMBED_ERR_ARG;
 *   2. else the prompt named opts->prompt_name (unknown: MEDEMBED_ERR_NOT_FOUND,
 *      err lists the model's prompts);
 *   3. else, by role, as sentence-transformers' encode_query /
 *      encode_document choose: a query takes the prompt named "query"; a
 *      document the first of "document", "passage", "corpus" the model has;
 *   4. else the model's default_prompt_name's prompt, as encode() does;
 *   5. else none.
 * *prompt gets the text (NULL for none; it lives as long as the model or
 * opts->prompt) and *name, when not NULL, the prompt's name (or NULL).
 * MedEmbed and most BERT models define no prompts: then only 1 and 2 apply.
 * Thread-safe. */
MEDEMBED_API int medembed_resolve_prompt(const medembed_model *model,
                                         const medembed_embed_opts *opts, const char **prompt,
                                         const char **name, char *err, size_t err_len);

/* ------------------------------------------------------------------------ */
/* Token sets: the embed pipeline in two steps                               */
/* ------------------------------------------------------------------------ */
/*
 * medembed_ctx_embed() is medembed_tokens_add_texts() followed by
 * medembed_ctx_embed_tokens(). A caller that must see the tokens before the
 * forward pass (a server that checks lengths on the connection's thread and
 * batches requests together) makes the same two calls, so its vectors equal
 * medembed_ctx_embed()'s bit for bit by construction. A set belongs to the
 * model it was created for; it is not thread-safe (one thread at a time).
 */
typedef struct medembed_tokens medembed_tokens;

MEDEMBED_API int medembed_tokens_create(const medembed_model *model, medembed_tokens **out);
MEDEMBED_API void medembed_tokens_free(medembed_tokens *t);
/* Empties the set, keeping its memory. */
MEDEMBED_API void medembed_tokens_clear(medembed_tokens *t);

/* Appends n texts: the prompt rule, then [CLS] prompt+text [SEP] tokenized
 * as the model's tokenizer does, cut to the length limit on the right (or
 * the left with MEDEMBED_F_TRUNCATE_LEFT) unless MEDEMBED_F_NO_TRUNCATE
 * (then too long is MEDEMBED_ERR_TOO_LONG) or MEDEMBED_F_ALL_TOKENS. With
 * include_prompt false, each sequence remembers how many leading tokens
 * pooling skips. opts->role, prompt, prompt_name, flags and max_length are
 * used. On failure the set is unchanged and err names the text ("text 3:
 * ..."). Returns MEDEMBED_OK, _ERR_ARG, _ERR_NOT_FOUND (prompt name),
 * _ERR_TOO_LONG, _ERR_ENCODING, _ERR_NOMEM. */
MEDEMBED_API int medembed_tokens_add_texts(medembed_tokens *t, const char *const *texts,
                                           const size_t *lens, int32_t n,
                                           const medembed_embed_opts *opts, char *err,
                                           size_t err_len);
/* Appends one pre-tokenized sequence (it should hold [CLS] ... [SEP]):
 * 1..medembed_model_max_length() ids inside the vocabulary, else
 * MEDEMBED_ERR_TOO_LONG / _ERR_ARG with err set. */
MEDEMBED_API int medembed_tokens_add_ids(medembed_tokens *t, const int32_t *ids, int32_t n_ids,
                                         char *err, size_t err_len);
/* Appends sequences [first, first+count) of src (same model) to dst. */
MEDEMBED_API int medembed_tokens_append(medembed_tokens *dst, const medembed_tokens *src,
                                        int32_t first, int32_t count);

MEDEMBED_API int32_t medembed_tokens_count(const medembed_tokens *t);
/* Sequence i's ids (live until the set changes) and length; NULL if out of range. */
MEDEMBED_API const int32_t *medembed_tokens_ids(const medembed_tokens *t, int32_t i,
                                                int32_t *n_ids);
/* Sequence i's counts (n_tokens, n_untruncated, truncated, n_invalid_utf8). */
MEDEMBED_API int medembed_tokens_info(const medembed_tokens *t, int32_t i,
                                      medembed_text_info *info);

/* Embeds every sequence of t into out (count * dim floats), in token-budget
 * batches. flags: MEDEMBED_F_NO_NORMALIZE. batch_tokens 0 = default. */
MEDEMBED_API int medembed_ctx_embed_tokens(medembed_ctx *ctx, const medembed_tokens *t,
                                           uint32_t flags, int32_t batch_tokens, float *out);

/* Embed n texts (the prompt rule applies: medembed_resolve_prompt).
 *   texts : n UTF-8 strings.
 *   lens  : n byte lengths, or NULL for NUL-terminated strings.
 *   out   : OUT: n * medembed_model_dim() floats, row-major.
 *   info  : OUT: n entries, or NULL.
 * Returns MEDEMBED_OK, _ERR_TOO_LONG (F_NO_TRUNCATE), _ERR_ENCODING
 * (F_STRICT_UTF8), _ERR_NOMEM, _ERR_ARG. On failure `out` is unspecified. */
MEDEMBED_API int medembed_ctx_embed(medembed_ctx *ctx, const char *const *texts,
                                    const size_t *lens, int32_t n,
                                    const medembed_embed_opts *opts, float *out,
                                    medembed_text_info *info);

/* Embed pre-tokenized sequences (each should already hold [CLS] ... [SEP]).
 *   ids     : concatenated token ids of all sequences.
 *   n_ids   : n lengths; each 1..medembed_model_max_length().
 * Returns _ERR_TOO_LONG / _ERR_ARG for bad lengths or ids out of vocab. */
MEDEMBED_API int medembed_ctx_embed_ids(medembed_ctx *ctx, const int32_t *ids,
                                        const int32_t *n_ids, int32_t n, uint32_t flags,
                                        float *out);

/* Scores the n pairs (query, texts[i]) with a cross-encoder ctx.
 *   query, query_len : the query (query_len (size_t)-1: NUL-terminated).
 *   texts, lens      : n UTF-8 strings and byte lengths (lens NULL: NUL-terminated).
 *   scores           : OUT: n * medembed_model_num_labels() floats, row-major,
 *                      in the order of texts.
 * Each pair is tokenized as [CLS] query [SEP] text [SEP] with token types 0
 * for "[CLS] query [SEP]" and 1 for "text [SEP]". A pair over
 * medembed_model_max_length() tokens is cut as Hugging Face tokenizers'
 * "longest_first" truncation does: the longer of the two token lists loses
 * tokens first (on a tie the query keeps floor(room/2) and the text the
 * rest). The score is the classifier's logits passed through the model's
 * activation, as sentence-transformers' CrossEncoder.predict() computes it:
 * config.json's sbert_ce_default_activation_function (or
 * sentence_transformers.activation_fn) when present, else the sigmoid for
 * one label and the identity for more. Pairs are batched, padding-free,
 * like embedding, in the model's dtype.
 * flags: MEDEMBED_F_RAW_SCORES (logits, without the activation),
 * MEDEMBED_F_NO_TRUNCATE (a pair longer than max_length is _ERR_TOO_LONG),
 * MEDEMBED_F_TRUNCATE_LEFT (truncation drops tokens from the start of each
 * sequence), MEDEMBED_F_STRICT_UTF8.
 * Returns MEDEMBED_OK, _ERR_MISMATCH (an embedder ctx), _ERR_TOO_LONG,
 * _ERR_ENCODING, _ERR_NOMEM, _ERR_ARG (NULL pointers, n < 0); the message is
 * in medembed_ctx_last_error(). n == 0 scores nothing and succeeds. */
MEDEMBED_API int medembed_ctx_rerank(medembed_ctx *ctx, const char *query, size_t query_len,
                                     const char *const *texts, const size_t *lens, int32_t n,
                                     uint32_t flags, float *scores);

/* Last hidden state of one pre-tokenized sequence, (n_ids, dim) floats,
 * before pooling; for debugging and reference checks. */
MEDEMBED_API int medembed_ctx_hidden(medembed_ctx *ctx, const int32_t *ids, int32_t n_ids,
                                     float *out);

/* Number of worker threads of this ctx. */
MEDEMBED_API int32_t medembed_ctx_threads(const medembed_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* CPU dispatch                                                              */
/* ------------------------------------------------------------------------ */

/* The kernel level in use: "scalar", "avx2", "avx512" or "amx" (AVX-512
 * with bf16 / int8 layers on AMX tiles), or "neon" on ARM64 (from
 * getauxval's hardware capabilities), chosen from cpuid + XGETBV once
 * (and, for amx, Linux's permission to use the tiles), or forced with
 * MEDEMBED_ISA=scalar|avx2|avx512|amx|neon; "amx-emu" (MEDEMBED_ISA=amx-emu) is
 * the AMX kernels on emulated tiles, for tests. A forced level the CPU
 * lacks falls back to the best below it.
 * MEDEMBED_CPU_DISABLE=avx512_bf16,avx512_vnni hides those features when
 * weights are packed, so the bf16 / int8 fallback kernels run instead;
 * amx hides the AMX level; on ARM64, dotprod hides FEAT_DotProd (int8
 * without sdot) and neon the NEON level. */
MEDEMBED_API const char *medembed_isa(void);


/* ------------------------------------------------------------------------ */
/* Index: semantic search over a SQLite-backed vector store                  */
/* ------------------------------------------------------------------------ */
/*
 * An index is one SQLite database file (WAL mode) holding documents (an
 * external id, metadata as a JSON object), their chunks (token span and
 * vector) and the identity of the model that embedded them (path, dims,
 * pooling, dtype, weights fingerprint). Writes happen in transactions, so a
 * process killed mid-write leaves the file openable with its last committed
 * contents.
 *
 * Long documents are chunked token-exactly: the text is tokenized without
 * truncation, the pieces between [CLS] and [SEP] are cut into windows of
 * chunk_tokens with `overlap` shared tokens, and each window is embedded as
 * [CLS] window [SEP]. A search returns the best chunk per document with its
 * token span [start, end) counted in pieces (0 = first piece after [CLS]).
 *
 * Search is exact (SIMD dot products, multi-threaded top-k) or approximate
 * (HNSW, when the index was created with hnsw_m > 0). Scores are dot
 * products, which for normalized models is the cosine. Metadata filters
 * ("year>=2015") restrict the candidates inside the search, so k hits come
 * back whenever k documents match.
 *
 * Minimal server-side use (errors trimmed):
 *
 *     medembed_index *ix = NULL;
 *     medembed_index_open("pubmed.db", MEDEMBED_INDEX_READONLY, &ix, err, sizeof err);
 *     medembed_search_opts so;
 *     medembed_search_opts_init(&so);
 *     so.k = 10;
 *     medembed_hits *h = NULL;
 *     medembed_index_search_text(ix, ctx, "statins and myopathy", NULL, &so, &h, err, sizeof err);
 *     for (int32_t i = 0; i < medembed_hits_count(h); i++)
 *         printf("%s %f\n", medembed_hits_id(h, i), medembed_hits_score(h, i));
 *     medembed_hits_free(h);
 *     medembed_index_free(ix);
 *
 * Threading: every medembed_index_* function may be called from any thread
 * on a shared handle. Searches run concurrently with each other (readers);
 * add, delete and flush take the handle exclusively (writers) and wait for
 * running searches. Only one process should write an index at a time (SQLite
 * serializes them; a second writer waits up to 10 s, then fails with
 * MEDEMBED_ERR_IO). A medembed_hits belongs to its caller.
 *
 * Errors: every fallible index function returns a medembed_status and, when
 * err is non-NULL, writes a one-line message (naming the id, line, field or
 * file) into err[0..err_len). On failure out-params are unchanged, and a
 * failed add or delete changes nothing (the transaction is rolled back).
 */

typedef struct medembed_index medembed_index;
typedef struct medembed_hits medembed_hits;

/* How vectors are stored and searched. INT8 keeps one int8 vector + scale
 * per chunk in memory (4x smaller) and rescores the best candidates with the
 * f32 vectors, which stay on disk. */
typedef enum medembed_vec_dtype {
    MEDEMBED_VEC_F32 = 0,
    MEDEMBED_VEC_INT8 = 1
} medembed_vec_dtype;

/* Settings fixed when an index is created. Initialise with
 * medembed_index_config_init(). */
typedef struct medembed_index_config {
    int32_t dim;          /* vector size; 0 = the model's (required without a model) */
    int32_t vec_dtype;    /* medembed_vec_dtype; default F32 */
    int32_t chunk_tokens; /* pieces per window, [CLS]/[SEP] excluded; 0 = no chunking:
                             texts are truncated to the model's limit, as MTEB does;
                             -1 = the most that fits beside [CLS], [SEP] and the
                             document prompt (medembed_resolve_prompt) */
    int32_t overlap;      /* pieces shared by consecutive windows; 0 <= overlap < chunk_tokens;
                             -1 (the default) = min(64, chunk_tokens / 2). The last window
                             ends at the document's end and is full length, so no chunk is
                             shorter than min(document, chunk_tokens) */
    int32_t hnsw_m;       /* 0 = exact search only; else HNSW links per node (16 is typical) */
    int32_t hnsw_ef_construction; /* HNSW build beam; default 200 */
} medembed_index_config;

MEDEMBED_API void medembed_index_config_init(medembed_index_config *cfg);

/* Open flags. */
#define MEDEMBED_INDEX_READONLY 0x1u /* no writes; several processes may search one file */

/* Creates a new, empty index file at path (an existing file is an error:
 * MEDEMBED_ERR_ARG).
 *   model : the model whose identity the index records; may be NULL for an
 *           index of caller-supplied vectors (then cfg->dim is required and
 *           text functions fail with MEDEMBED_ERR_MISMATCH).
 *   out   : OUT: a writable handle (medembed_index_free).
 * Returns MEDEMBED_OK, _ERR_ARG (bad config, existing file), _ERR_IO,
 * _ERR_NOMEM. Thread-safe. */
MEDEMBED_API int medembed_index_create(const char *path, const medembed_model *model,
                                       const medembed_index_config *cfg, medembed_index **out,
                                       char *err, size_t err_len);

/* Opens an existing index and loads its vectors (and HNSW graph) into
 * memory. Every stored value is validated: a damaged or foreign file gives
 * MEDEMBED_ERR_FORMAT, a missing one MEDEMBED_ERR_NOT_FOUND. A stale HNSW
 * graph (from an interrupted add/delete) is rebuilt in memory and saved
 * once (a read-only handle saves it through a short-lived writable
 * connection when the file is writable and no writer holds it), so later
 * opens load it; medembed_index_info_json's hnsw.graph says which happened.
 * Writers (add, delete, flush) in any number of handles and processes
 * serialise on SQLite's write lock, waiting up to 60 s for it; a handle
 * whose memory is older than the file reloads it inside its write.
 *   flags : MEDEMBED_INDEX_READONLY or 0.
 * Thread-safe. */
MEDEMBED_API int medembed_index_open(const char *path, uint32_t flags, medembed_index **out,
                                     char *err, size_t err_len);

/* Writes pending state (the HNSW graph) and closes; NULL is accepted. Errors
 * cannot be reported here: call medembed_index_flush() first when they
 * matter. No other call on the handle may be running. */
MEDEMBED_API void medembed_index_free(medembed_index *ix);

/* The model a ctx was created for (for index functions that take a ctx). */
MEDEMBED_API const medembed_model *medembed_ctx_model(const medembed_ctx *ctx);

/* Checks that `model` is the one the index was built with (dims, pooling,
 * and medembed_model_fingerprint, recorded as the index's weights_hash).
 * Returns MEDEMBED_OK or MEDEMBED_ERR_MISMATCH naming the
 * field that differs. Thread-safe. */
MEDEMBED_API int medembed_index_check_model(const medembed_index *ix, const medembed_model *model,
                                            char *err, size_t err_len);

/* JSON object describing the index: n_docs, n_chunks, bm25_docs (documents
 * in the keyword index; null for a file without one), model {path,
 * weights_hash, dim, pooling, dtype, normalize, max_length, doc_prompt (the
 * documents' prompt, "" for none, null before the first add)}, dim, vec_dtype, chunking
 * {chunk_tokens, overlap}, hnsw {m, ef_construction, graph: "stored" (loaded
 * from the file), "rebuilt" (stale, rebuilt and saved by this open) or
 * "rebuilt, not saved"} or null, generation. Returns a
 * malloc'd NUL-terminated string (free() it), or NULL when out of memory.
 * Thread-safe. */
MEDEMBED_API char *medembed_index_info_json(const medembed_index *ix);

MEDEMBED_API int64_t medembed_index_n_docs(const medembed_index *ix);
MEDEMBED_API int64_t medembed_index_n_chunks(const medembed_index *ix);
MEDEMBED_API int32_t medembed_index_dim(const medembed_index *ix);

/* One document to add. */
typedef struct medembed_index_doc {
    const char *id;       /* external id, unique in the index, 1..1024 bytes of UTF-8 */
    const char *text;     /* UTF-8 text to embed (BEIR: title + " " + text) */
    size_t text_len;      /* bytes, or (size_t)-1 for NUL-terminated */
    const char *metadata; /* a JSON object kept with the document and used by filters,
                             or NULL */
} medembed_index_doc;

/* Tokenizes, chunks and embeds n documents with ctx (whose model must match
 * the index) and stores them in one transaction: all or nothing.
 *   eo : embedding options (prompt, prompt_name, flags); may be NULL. The
 *        role is MEDEMBED_ROLE_DOCUMENT whatever eo says, so the prompt rule
 *        picks a document prompt. The first add records that prompt in the
 *        index; later adds that name no prompt use the recorded one, and an
 *        explicit different one is MEDEMBED_ERR_MISMATCH, so an index never
 *        mixes vectors of two document prompts. With chunking, each window is embedded as
 *        [CLS] prompt window [SEP] (the prompt tokenized on its own), and the
 *        prompt plus chunk_tokens must fit the model's limit. max_length and
 *        F_NO_TRUNCATE are ignored: chunking decides the windows.
 * Returns MEDEMBED_OK, _ERR_ARG (duplicate or empty id, metadata that is not
 * a JSON object, read-only handle), _ERR_MISMATCH, _ERR_ENCODING, _ERR_IO,
 * _ERR_NOMEM. Thread-safe (exclusive). */
MEDEMBED_API int medembed_index_add_docs(medembed_index *ix, medembed_ctx *ctx,
                                         const medembed_index_doc *docs, int32_t n,
                                         const medembed_embed_opts *eo, char *err,
                                         size_t err_len);

/* Stores n documents of one chunk each with caller-supplied vectors
 * (n * dim floats, row-major; text, when not NULL, only feeds the keyword
 * index). Same contract as medembed_index_add_docs. */
MEDEMBED_API int medembed_index_add_vectors(medembed_index *ix, const medembed_index_doc *docs,
                                            int32_t n, const float *vecs, char *err,
                                            size_t err_len);

/* Deletes the document with external id `id` and its chunks. Returns
 * MEDEMBED_OK, _ERR_NOT_FOUND, _ERR_ARG (read-only), _ERR_IO.
 * Thread-safe (exclusive). */
MEDEMBED_API int medembed_index_delete(medembed_index *ix, const char *id, char *err,
                                       size_t err_len);

/* Deletes the n documents named by ids in one transaction, all or nothing:
 * when any id is not in the index, nothing is deleted and the result is
 * MEDEMBED_ERR_NOT_FOUND with a message naming the missing ids. An id named
 * twice is deleted once. n_deleted (may be NULL) gets the number deleted.
 * Returns as medembed_index_delete. Thread-safe (exclusive). */
MEDEMBED_API int medembed_index_delete_ids(medembed_index *ix, const char *const *ids, int32_t n,
                                           int64_t *n_deleted, char *err, size_t err_len);

/* Removes an index file and its SQLite side files (PATH-wal, PATH-shm,
 * PATH-journal), e.g. after a failed build. No handle may have it open.
 * Returns MEDEMBED_OK, or _ERR_IO when a file exists but cannot be removed. */
MEDEMBED_API int medembed_index_remove(const char *path);

/* 1 if a document with this id exists, else 0. Thread-safe. */
MEDEMBED_API int medembed_index_contains(const medembed_index *ix, const char *id);

/* Saves the HNSW graph if adds/deletes changed it (one transaction). The
 * documents themselves are durable as soon as add/delete return.
 * Thread-safe (exclusive). */
MEDEMBED_API int medembed_index_flush(medembed_index *ix, char *err, size_t err_len);

/* Search options; initialise with medembed_search_opts_init(). */
typedef struct medembed_search_opts {
    int32_t k;                  /* documents wanted; default 10, at most 10000 */
    int32_t exact;              /* 1 = exact search even when the index has HNSW */
    int32_t ef_search;          /* HNSW beam width; 0 = max(128, 2k) */
    int32_t rescore;            /* INT8: f32-rescore rescore*k candidates; 0 = 4 */
    const char *const *filters; /* n_filters expressions, all must hold */
    int32_t n_filters;
    int32_t n_threads;          /* exact search threads; 0 = all CPUs, 1 = caller only */
    int32_t with_metadata;      /* 1 (default) = fetch each hit's metadata */
    int32_t mode;               /* medembed_search_mode; default DENSE */
    float alpha;                /* HYBRID fusion: < 0 (default -1) = reciprocal rank fusion
                                   (k = 60); 0..1 = weighted fusion of min-max normalised
                                   scores, alpha * dense + (1 - alpha) * bm25 */
    const char *text;           /* the query's words for BM25 / HYBRID (set by
                                   medembed_index_search_text) */
    int32_t candidates;         /* HYBRID: documents taken from each leg; 0 = max(100, k) */
} medembed_search_opts;

/* Retrieval modes. DENSE scores vectors; BM25 ranks documents by SQLite
 * FTS5's bm25() over their text (unicode61 tokenizer, diacritics removed;
 * every word of the query is matched as a quoted phrase, OR-ed, so FTS5
 * syntax in user text is never interpreted); HYBRID fuses both legs'
 * top `candidates`. Filters apply to every mode, inside each leg. */
typedef enum medembed_search_mode {
    MEDEMBED_SEARCH_DENSE = 0,
    MEDEMBED_SEARCH_BM25 = 1,
    MEDEMBED_SEARCH_HYBRID = 2
} medembed_search_mode;

MEDEMBED_API void medembed_search_opts_init(medembed_search_opts *opts);

/* Filter expressions: FIELD OP VALUE with OP one of = != < <= > >=, e.g.
 * "year>=2015", "journal=Lancet", "meshes=Humans". FIELD is a top-level
 * key of the document's metadata (or "id"); a number VALUE compares
 * numerically with numbers and numeric strings, anything else compares as a
 * string (quotes "..." optional). An array field matches when any element
 * does. Documents without the field never match. Bad syntax is
 * MEDEMBED_ERR_ARG with the expression in err. */

/* Searches with a query vector of medembed_index_dim() floats (normalize it
 * as the model does; may be NULL in BM25 mode, which needs opts->text).
 *   out : OUT: the hits, best first (ties: smaller internal order first),
 *         owned by the caller (medembed_hits_free).
 * Returns MEDEMBED_OK, _ERR_ARG (bad k or filter), _ERR_IO, _ERR_NOMEM.
 * Thread-safe (concurrent with other searches). */
MEDEMBED_API int medembed_index_search(medembed_index *ix, const float *query,
                                       const medembed_search_opts *opts, medembed_hits **out,
                                       char *err, size_t err_len);

/* Embeds `query` with ctx (model checked against the index; the prompt rule
 * applies with role MEDEMBED_ROLE_QUERY; MedEmbed was trained with none) and searches. ctx is used by
 * this thread only for the call. Returns medembed_index_search's codes plus
 * _ERR_MISMATCH and the embedding's codes. */
MEDEMBED_API int medembed_index_search_text(medembed_index *ix, medembed_ctx *ctx,
                                            const char *query, const medembed_embed_opts *eo,
                                            const medembed_search_opts *opts,
                                            medembed_hits **out, char *err, size_t err_len);

/* Accessors; i in [0, medembed_hits_count). Strings live as long as hits. */
MEDEMBED_API int32_t medembed_hits_count(const medembed_hits *h);
MEDEMBED_API const char *medembed_hits_id(const medembed_hits *h, int32_t i);
MEDEMBED_API float medembed_hits_score(const medembed_hits *h, int32_t i);
/* The best chunk: its number within the document (0-based) and token span
 * [start, end) in pieces after [CLS]. Returns the chunk number or -1. */
MEDEMBED_API int32_t medembed_hits_chunk(const medembed_hits *h, int32_t i, int32_t *tok_start,
                                         int32_t *tok_end);
/* The fusion's inputs for hit i: each leg's 1-based rank and score (rank 0
 * and score NaN when the document was not among that leg's candidates).
 * DENSE hits fill the dense pair, BM25 hits the bm25 pair. Any pointer may
 * be NULL. Returns 0, or -1 for a bad i. A BM25-only hit has no chunk
 * (medembed_hits_chunk returns -1). */
MEDEMBED_API int medembed_hits_components(const medembed_hits *h, int32_t i, int32_t *dense_rank,
                                          float *dense_score, int32_t *bm25_rank,
                                          float *bm25_score);
/* Replaces the keyword (BM25) text of documents already in the index, in
 * one transaction, e.g. to fill the keyword index of a file built before it
 * existed (`medembed index fts-rebuild`). docs[i].text is the text (BEIR:
 * title + " " + text, as add_docs takes it); ids not in the index are
 * skipped and counted in *n_missing (may be NULL). Returns MEDEMBED_OK,
 * _ERR_ARG (read-only handle), _ERR_IO. Thread-safe (exclusive). */
MEDEMBED_API int medembed_index_set_texts(medembed_index *ix, const medembed_index_doc *docs,
                                          int32_t n, int64_t *n_missing, char *err,
                                          size_t err_len);
/* The text stored for document `id` (docs[i].text as add_docs took it:
 * title + " " + text for BEIR), which BM25 searches and a cross-encoder
 * reranks (`search --rerank`). *text gets a NUL-terminated malloc'd copy
 * (free() it), *len (may be NULL) its length in bytes. Returns MEDEMBED_OK,
 * _ERR_NOT_FOUND (no such document, or a file written before the keyword
 * index existed: `medembed index fts-rebuild` fills the texts; err says
 * which), _ERR_IO, _ERR_NOMEM, _ERR_ARG. Thread-safe (concurrent with
 * searches). */
MEDEMBED_API int medembed_index_doc_text(medembed_index *ix, const char *id, char **text,
                                         size_t *len, char *err, size_t err_len);
/* The reranking stage of a search (`search --rerank`, POST /search with
 * "rerank", Python's Index.search(rerank=)): scores (query, the stored text
 * of each hit's document, medembed_index_doc_text) with the cross-encoder
 * ctx `ce` (one label), reorders the hits by that score (equal scores keep
 * the search's order: medembed_rank_order), and keeps the first k (k <= 0 or
 * more than there are: all). Afterwards medembed_hits_score() is the
 * cross-encoder's score and medembed_hits_first_stage() the search's rank
 * and score; chunks, hybrid components and metadata move with their hit.
 * flags: as medembed_ctx_rerank (MEDEMBED_F_RAW_SCORES, ...); pairs over the
 * model's limit are truncated unless MEDEMBED_F_NO_TRUNCATE. On failure the
 * hits are unchanged. Returns MEDEMBED_OK, _ERR_MISMATCH (ce is not a
 * one-label cross-encoder), _ERR_NOT_FOUND (a file without stored texts:
 * `medembed index fts-rebuild`), _ERR_ARG (already reranked), and
 * medembed_ctx_rerank's codes. ce is used by this thread only for the call. */
/* Hits a reranking stage reads when the caller does not say: max(this, k). */
#define MEDEMBED_RERANK_TOP_DEFAULT 50
MEDEMBED_API int medembed_hits_rerank(medembed_hits *h, medembed_index *ix, medembed_ctx *ce,
                                      const char *query, int32_t k, uint32_t flags, char *err,
                                      size_t err_len);
/* After medembed_hits_rerank: hit i's rank (1-based) and score in the search
 * before reranking; returns 1. Returns 0 (outputs untouched) for hits that
 * were not reranked. */
MEDEMBED_API int medembed_hits_first_stage(const medembed_hits *h, int32_t i, int32_t *rank,
                                           float *score);
/* Orders n scores best first: order[r] is the index of the r-th best; equal
 * scores keep their input order; NaN sorts last. The one ranking rule of
 * `medembed rerank`, POST /rerank and medembed_hits_rerank. Returns
 * MEDEMBED_OK, _ERR_ARG, _ERR_NOMEM. */
MEDEMBED_API int medembed_rank_order(const float *scores, int32_t n, int32_t *order);
/* The document's metadata as JSON object text ("{}" when none). */
MEDEMBED_API const char *medembed_hits_metadata(const medembed_hits *h, int32_t i);
MEDEMBED_API void medembed_hits_free(medembed_hits *h);

/* ------------------------------------------------------------------------ */
/* Retrieval metrics (pytrec_eval / MTEB definitions)                        */
/* ------------------------------------------------------------------------ */
/*
 * One query at a time: `run` is the ranked list (doc ids with scores), qrels
 * the judged documents with graded relevance (> 0 = relevant). As
 * trec_eval does, the run is sorted by score descending with ties broken by
 * doc id descending (strcmp order), then cut at k.
 *   nDCG@k   : sum_{i<k} rel_i / log2(i+2) over the ideal ordering of qrels
 *              (linear gain, as pytrec_eval's ndcg_cut).
 *   MAP@k    : sum over relevant retrieved at rank i<k of P@(i+1), divided
 *              by the number of relevant documents in qrels.
 *   MRR@k    : 1 / rank of the first relevant document within k, else 0.
 *   Recall@k : relevant retrieved within k / relevant in qrels.
 *   P@k      : relevant retrieved within k / k.
 * A query with no relevant document scores 0 on every metric; it still
 * counts in an average, as in pytrec_eval / MTEB, which average over every
 * query of the qrels.
 */
typedef struct medembed_metrics {
    double ndcg, map, mrr, recall, precision;
} medembed_metrics;

/* Computes the five metrics at cutoff k for one query.
 *   run_ids, run_scores : n_run retrieved documents (any order).
 *   qrel_ids, qrel_rels : n_qrels judged documents; rel <= 0 = not relevant.
 *   out                 : OUT.
 * Returns MEDEMBED_OK, _ERR_ARG, _ERR_NOMEM. Thread-safe. */
MEDEMBED_API int medembed_metrics_query(const char *const *run_ids, const float *run_scores,
                                        int32_t n_run, const char *const *qrel_ids,
                                        const int32_t *qrel_rels, int32_t n_qrels, int32_t k,
                                        medembed_metrics *out);
#ifdef MEDEMBED_EXPERIMENTAL
/* Measured arithmetic peak of the kernel level in use, for benchmarks
 * (`medembed bench` reports each result as a share of it): n_threads
 * threads (0 = all online CPUs) each run a register-only loop of the
 * multiply-add instruction the `dtype` kernels are built on (fp32 FMA,
 * vdpbf16ps, vpdpbusd; or their emulation on CPUs without them) for about
 * `seconds`. Returns GFLOP/s summed over threads, counting a multiply-add as
 * 2 operations (int8: GOP/s); 0 on bad arguments. Thread-safe; blocks. */
MEDEMBED_API double medembed_peak_gflops(int32_t dtype, int32_t n_threads, double seconds);
#endif

#ifdef __cplusplus
}
#endif
#endif /* MEDEMBED_H */
