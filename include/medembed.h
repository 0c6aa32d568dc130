/*
 * medembed.h - the one public header of libmedembed.
 *
 * libmedembed turns text into sentence embeddings with BERT-family encoders
 * (MedEmbed small/base/large v0.1, bge-*-en-v1.5, all-MiniLM, PubMedBERT
 * embeddings), loading model folders exactly as Hugging Face ships them and
 * tokenizing exactly as Hugging Face `tokenizers` does.
 *
 * Ten lines from folder to vector (error handling trimmed; see
 * examples/embed.c for the full version):
 *
 *     char err[256];
 *     medembed_model *m = NULL;
 *     if (medembed_model_load("MedEmbed-base-v0.1", NULL, &m, err, sizeof err) != MEDEMBED_OK)
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
    X(MEDEMBED_ERR_NETWORK, -10, "network error")                                \
    X(MEDEMBED_ERR_INTERNAL, -11, "internal error")

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

/* Compute precision of the encoder. F32 is the default and the reference. */
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
 *   dir     : the folder.
 *   opts    : NULL for defaults.
 *   out     : OUT: the model, owned by the caller (medembed_model_free).
 *   err     : OUT: a one-line message naming the file/tensor on failure; may be NULL.
 * Returns MEDEMBED_OK, _ERR_IO, _ERR_FORMAT, _ERR_UNSUPPORTED, _ERR_NOMEM, _ERR_ARG.
 * Thread-safe. */
MEDEMBED_API int medembed_model_load(const char *dir, const medembed_load_opts *opts,
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

/* JSON description (architecture, dims, layers, heads, pooling, normalize,
 * max_length, weight dtype, compute dtype, parameter count, prompts).
 * Writes at most buf_len bytes incl. NUL; returns the length the full string
 * needs (excl. NUL), so call with buf_len 0 to size the buffer. */
MEDEMBED_API size_t medembed_model_info_json(const medembed_model *model, char *buf,
                                             size_t buf_len);

/* The prompt named `name` in config_sentence_transformers.json, or NULL.
 * With name NULL, the default_prompt_name's prompt (or NULL). The string
 * lives as long as the model. */
MEDEMBED_API const char *medembed_model_prompt(const medembed_model *model, const char *name);

/* A stable identity of the weights: hex SHA-256 of the safetensors header(s)
 * and the config, 64 chars; lives as long as the model. */
MEDEMBED_API const char *medembed_model_fingerprint(const medembed_model *model);

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                 */
/* ------------------------------------------------------------------------ */

/* Flags for tokenize and embed. */
#define MEDEMBED_F_NO_NORMALIZE 0x1u /* skip the Normalize module (embed only) */
#define MEDEMBED_F_NO_TRUNCATE 0x2u  /* tokenize: keep all tokens; embed: too long is an error */
#define MEDEMBED_F_STRICT_UTF8 0x4u  /* invalid UTF-8 is an error, not U+FFFD */
#define MEDEMBED_F_RAW_TOKENIZER 0x8u /* skip sentence-transformers' do_lower_case pre-pass */

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

/* Embed options; initialise with medembed_embed_opts_init(). */
typedef struct medembed_embed_opts {
    uint32_t flags;     /* MEDEMBED_F_* */
    int32_t max_length; /* 0 = model limit; otherwise min(model limit, this) */
    const char *prompt; /* prepended verbatim to every text, or NULL */
    int32_t batch_tokens; /* token budget per forward pass; 0 = default */
} medembed_embed_opts;

MEDEMBED_API void medembed_embed_opts_init(medembed_embed_opts *opts);

/* Embed n texts.
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

/* Last hidden state of one pre-tokenized sequence, (n_ids, dim) floats,
 * before pooling; for debugging and reference checks. */
MEDEMBED_API int medembed_ctx_hidden(medembed_ctx *ctx, const int32_t *ids, int32_t n_ids,
                                     float *out);

/* Number of worker threads of this ctx. */
MEDEMBED_API int32_t medembed_ctx_threads(const medembed_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* CPU dispatch                                                              */
/* ------------------------------------------------------------------------ */

/* The kernel level in use: "scalar", "avx2" or "avx512" (chosen from cpuid +
 * XGETBV once, or forced with MEDEMBED_ISA=scalar|avx2|avx512). */
MEDEMBED_API const char *medembed_isa(void);

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

/* ------------------------------------------------------------------------ */
/* Utilities                                                                 */
/* ------------------------------------------------------------------------ */

/* SHA-256 of a whole file (FIPS 180-4), as 64 lowercase hex characters and a
 * NUL in hex. `medembed pull` checks downloaded weights against the digests
 * the Hugging Face hub publishes for LFS files with it.
 *   path : the file; read sequentially in 1 MiB blocks.
 *   hex  : OUT: 65 chars; unchanged on failure.
 *   err  : OUT: a one-line message naming the path on failure; may be NULL.
 * Returns MEDEMBED_OK, _ERR_NOT_FOUND, _ERR_IO, _ERR_NOMEM or _ERR_ARG.
 * Thread-safe. */
MEDEMBED_API int medembed_sha256_file(const char *path, char hex[65], char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif /* MEDEMBED_H */
