/*
 * tokenizer.h - BERT WordPiece tokenizer, identical to Hugging Face
 * `tokenizers` (BertNormalizer -> BertPreTokenizer -> WordPiece ->
 * TemplateProcessing [CLS] $A [SEP]), with added/special tokens matched in
 * the raw text first.
 *
 * A me_tokenizer is immutable after load and safe to share across threads.
 */
#ifndef ME_TOKENIZER_H
#define ME_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct me_tokenizer me_tokenizer;

/* Growable id buffer owned by the caller; free with me_ids_free. */
typedef struct me_ids {
    int32_t *ids;
    int32_t n;
    int32_t cap;
} me_ids;

void me_ids_free(me_ids *v);

/* Load from dir/tokenizer.json, falling back to dir/vocab.txt +
 * dir/tokenizer_config.json (+ special_tokens_map.json). Unknown normalizer /
 * pre-tokenizer / model types are MEDEMBED_ERR_UNSUPPORTED. */
int me_tokenizer_load(const char *dir, me_tokenizer **out, me_err *e);
void me_tokenizer_free(me_tokenizer *t);

/* Encode flags. */
#define ME_TOK_STRICT_UTF8 0x1u /* invalid UTF-8 -> MEDEMBED_ERR_ENCODING */
#define ME_TOK_PY_LOWER 0x2u    /* apply Python str.lower() first (sentence-transformers do_lower_case) */

/* Encode one text into out (reset to n = 0 first). Adds [CLS]/[SEP].
 * max_tokens > 0 truncates to that many ids, specials included, keeping
 * [CLS] + the first max_tokens-2 pieces + [SEP] (as HF/ST do); 0 = no limit.
 * n_untruncated / n_invalid_utf8 may be NULL. */
int me_tokenizer_encode(const me_tokenizer *t, const char *text, size_t len, int32_t max_tokens,
                        uint32_t flags, me_ids *out, int32_t *n_untruncated,
                        int32_t *n_invalid_utf8, me_err *e);

/* Scratch buffers for encode. One thread at a time may use a scratch;
 * reusing it across calls avoids all allocation in steady state (e.g. one
 * per medembed_ctx). Zero-initialise ({0}) and release with
 * me_tok_scratch_free. */
typedef struct me_tok_scratch {
    uint32_t *text; /* decoded input, code points */
    size_t text_cap;
    uint32_t *lower; /* input after ME_TOK_PY_LOWER */
    size_t lower_cap;
    uint32_t *norm; /* one normalized segment */
    size_t norm_cap;
    uint8_t *word; /* one word in UTF-8 */
    size_t word_cap;
    uint32_t *bounds; /* byte offset of each character of word */
    size_t bounds_cap;
    uint64_t *hash; /* WordPiece prefix hashes */
    size_t hash_cap;
} me_tok_scratch;

void me_tok_scratch_free(me_tok_scratch *s);

/* me_tokenizer_encode with caller-held scratch (s may be NULL: temporary).
 * Both return MEDEMBED_OK, _ERR_ARG (NULL text with len > 0, max_tokens 1
 * or negative, unknown flags), _ERR_ENCODING (ME_TOK_STRICT_UTF8; the
 * message gives the byte offset), _ERR_TOO_LONG (text over 64 MiB) or
 * _ERR_NOMEM. len (size_t)-1 means NUL-terminated. On failure out->n is 0
 * and the counters are unchanged. */
int me_tokenizer_encode_scratch(const me_tokenizer *t, me_tok_scratch *s, const char *text,
                                size_t len, int32_t max_tokens, uint32_t flags, me_ids *out,
                                int32_t *n_untruncated, int32_t *n_invalid_utf8, me_err *e);

/* Id of a token string: added tokens first, then the model vocab; -1 if
 * absent. */
int32_t me_tokenizer_find(const me_tokenizer *t, const char *s, size_t len);

/* Largest id + 1 (model vocab plus added tokens beyond it). Ids below it
 * may be holes (me_tokenizer_token returns NULL) when the vocab has gaps. */
int32_t me_tokenizer_vocab_size(const me_tokenizer *t);
const char *me_tokenizer_token(const me_tokenizer *t, int32_t id); /* NULL if out of range */
int32_t me_tokenizer_cls_id(const me_tokenizer *t);
int32_t me_tokenizer_sep_id(const me_tokenizer *t);
int32_t me_tokenizer_pad_id(const me_tokenizer *t);
int32_t me_tokenizer_unk_id(const me_tokenizer *t);

#endif
