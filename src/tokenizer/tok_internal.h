/*
 * tok_internal.h - the me_tokenizer struct and the stages of the pipeline,
 * shared by the files of src/tokenizer/ only.
 *
 * Pipeline (HF TokenizerImpl::encode_single_sequence for BERT):
 *   UTF-8 (lossy) -> [Python str.lower] -> added tokens split out of the raw
 *   text -> each remaining segment: BertNormalizer -> normalized added
 *   tokens split out -> BertPreTokenizer -> WordPiece -> [CLS] ... [SEP].
 */
#ifndef ME_TOK_INTERNAL_H
#define ME_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"
#include "tokenizer/wordpiece.h"

/* Limits on untrusted files and inputs. */
#define ME_TOK_FILE_MAX (64u << 20)    /* bytes of any tokenizer file */
#define ME_TOK_VOCAB_MAX (1 << 22)     /* ids, model and added */
#define ME_TOK_ADDED_MAX 65536         /* added tokens */
#define ME_TOK_WORD_CHARS_MAX 1000000  /* max_input_chars_per_word */
#define ME_TOK_TEXT_MAX ((size_t)64 << 20) /* bytes of one text (scratch ~28x) */

/* One added token as matched: cp is its content (raw) or its normalized
 * content (normalized set). */
typedef struct me_added_tok {
    uint32_t *cp;
    uint32_t n;
    int32_t id;
    uint32_t seq; /* order of addition */
    uint8_t single_word, lstrip, rstrip;
} me_added_tok;

/* A set of added tokens, sorted by first code point then longest first, so
 * the leftmost-longest match at a position is the first that fits. */
typedef struct me_added_set {
    me_added_tok *tok;
    int32_t n;
    uint64_t first_ascii[2]; /* bit c: some token starts with ASCII c */
    uint64_t first_other;    /* bit (c & 63): some token starts with c >= 128 */
} me_added_set;

struct me_tokenizer {
    me_vocab vocab;
    me_added_set raw;  /* normalized: false, matched in the raw text */
    me_added_set norm; /* normalized: true, matched in normalized segments */
    int32_t *added_ids; /* every added token's id, for me_tokenizer_find */
    int32_t n_added;
    int32_t cls_id, sep_id, pad_id, unk_id;
    size_t max_chars; /* max_input_chars_per_word */
    uint8_t clean_text, handle_cjk, strip_accents, lowercase;
    int32_t ascii_norm[128];  /* normalizer on ASCII: -1 drop, else the output */
    uint8_t ascii_class[128]; /* pre-tokenizer on ASCII: ME_CL_* */
};

enum { ME_CL_WORD = 0, ME_CL_SPACE = 1, ME_CL_PUNCT = 2 };

/* normalizer.c: fills t->ascii_* from the flags. */
void me_norm_init_tables(me_tokenizer *t);
/* Normalizes s[0..n) into *buf (grown; *cap its size). *m gets the length. */
int me_normalize(const me_tokenizer *t, const uint32_t *s, size_t n, uint32_t **buf, size_t *cap,
                 size_t *m, me_err *e);

/* pretokenizer.c: BertPreTokenizer + WordPiece over buf[a..b). */
int me_pretok_wordpiece(const me_tokenizer *t, me_tok_scratch *s, const uint32_t *buf, size_t a,
                        size_t b, me_ids *out, me_err *e);

/* added.c */
/* Adds a token to the set (before me_added_set_sort). Empty content is
 * ignored, as HF does. */
int me_added_set_add(me_added_set *set, const uint32_t *cp, size_t n, int32_t id,
                     int single_word, int lstrip, int rstrip, me_err *e);
void me_added_set_sort(me_added_set *set);
void me_added_set_free(me_added_set *set);
/* Next accepted match in s[0..n) for an aho-corasick scan at `from`:
 * [*m_start, *m_stop) is the span the token takes (lstrip/rstrip applied,
 * never before start_offset), *scan_next where the scan resumes. Returns 1
 * if found. */
int me_added_next(const me_added_set *set, const uint32_t *s, size_t n, size_t from,
                  size_t start_offset, size_t *m_start, size_t *m_stop, size_t *scan_next,
                  int32_t *id);

/* Grows a buffer of elements of size `elem` to hold at least n. */
int me_tok_grow(void **buf, size_t *cap, size_t n, size_t elem, me_err *e);

static inline int me_tok_reserve(void **buf, size_t *cap, size_t n, size_t elem, me_err *e)
{
    return n <= *cap ? MEDEMBED_OK : me_tok_grow(buf, cap, n, elem, e);
}

#endif
