/*
 * tokenizer.c - the encode pipeline and the accessors of me_tokenizer.
 * Loading lives in tokenizer_load.c.
 *
 * Matches HF `tokenizers` TokenizerImpl::encode(text, add_special_tokens =
 * true) for BERT: added tokens are split out of the raw text first (so a
 * literal "[SEP]" becomes id 102), the segments between them are normalized
 * and pre-tokenized independently, then TemplateProcessing wraps the
 * result in [CLS] ... [SEP]. Truncation keeps [CLS], the first
 * max_tokens - 2 pieces and [SEP], as HF's TruncationStrategy::LongestFirst
 * does for one sequence.
 */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode.h"

void me_tok_scratch_free(me_tok_scratch *s)
{
    if (!s)
        return;
    free(s->text);
    free(s->lower);
    free(s->norm);
    free(s->word);
    free(s->bounds);
    free(s->hash);
    memset(s, 0, sizeof *s);
}

/* One segment of raw text (no added token inside): normalize it, split out
 * the normalized added tokens, pre-tokenize and WordPiece the rest. */
static int encode_segment(const me_tokenizer *t, me_tok_scratch *s, const uint32_t *cp, size_t n,
                          me_ids *out, me_err *e)
{
    size_t m = 0;
    FORWARD_IF_ERROR(me_normalize(t, cp, n, &s->norm, &s->norm_cap, &m, e));
    const uint32_t *nb = s->norm;
    size_t start_offset = 0;
    size_t scan = 0;
    size_t ms;
    size_t me;
    int32_t id;
    while (me_added_next(&t->norm, nb, m, scan, start_offset, &ms, &me, &scan, &id)) {
        if (start_offset < ms)
            FORWARD_IF_ERROR(me_pretok_wordpiece(t, s, nb, start_offset, ms, out, e));
        FORWARD_IF_ERROR(me_ids_push(out, id, e));
        if (me > start_offset)
            start_offset = me;
    }
    if (start_offset < m)
        FORWARD_IF_ERROR(me_pretok_wordpiece(t, s, nb, start_offset, m, out, e));
    return MEDEMBED_OK;
}

static int encode_body(const me_tokenizer *t, me_tok_scratch *s, const char *text, size_t len,
                       uint32_t flags, me_ids *out, int32_t *n_invalid, me_err *e)
{
    FORWARD_IF_ERROR(
        me_tok_reserve((void **)&s->text, &s->text_cap, len + 1, sizeof *s->text, e));
    size_t bad = 0;
    size_t first_bad = 0;
    size_t n = me_utf8_decode_lossy((const uint8_t *)text, len, s->text, &bad, &first_bad);
    RETURN_ERROR_IF((flags & ME_TOK_STRICT_UTF8) && bad > 0, e, MEDEMBED_ERR_ENCODING,
                    "invalid UTF-8 at byte offset %zu (byte 0x%02X)", first_bad,
                    (unsigned)(uint8_t)text[first_bad]);
    if (n_invalid)
        *n_invalid = (int32_t)bad;

    const uint32_t *cp = s->text;
    if (flags & ME_TOK_PY_LOWER) {
        FORWARD_IF_ERROR(
            me_tok_reserve((void **)&s->lower, &s->lower_cap, 2 * n + 1, sizeof *s->lower, e));
        n = me_uc_py_lower(s->text, n, s->lower);
        cp = s->lower;
    }

    /* Each piece comes from at least one character; reserve once. */
    if ((size_t)out->cap < n + 2 && n + 2 < (size_t)INT32_MAX / 2) {
        int32_t *p = realloc(out->ids, (n + 2) * sizeof *p);
        RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory for %zu ids", n + 2);
        out->ids = p;
        out->cap = (int32_t)(n + 2);
    }

    FORWARD_IF_ERROR(me_ids_push(out, t->cls_id, e));
    size_t start_offset = 0;
    size_t scan = 0;
    size_t ms;
    size_t me;
    int32_t id;
    while (me_added_next(&t->raw, cp, n, scan, start_offset, &ms, &me, &scan, &id)) {
        if (start_offset < ms)
            FORWARD_IF_ERROR(encode_segment(t, s, cp + start_offset, ms - start_offset, out, e));
        FORWARD_IF_ERROR(me_ids_push(out, id, e));
        /* HF would move start_offset back if a token began inside the
         * previous token's rstrip run; keeping the max avoids re-reading
         * text (only possible with tokens that start with whitespace). */
        if (me > start_offset)
            start_offset = me;
    }
    if (start_offset < n)
        FORWARD_IF_ERROR(encode_segment(t, s, cp + start_offset, n - start_offset, out, e));
    return me_ids_push(out, t->sep_id, e);
}

int me_tokenizer_encode_scratch(const me_tokenizer *t, me_tok_scratch *s, const char *text,
                                size_t len, int32_t max_tokens, uint32_t flags, me_ids *out,
                                int32_t *n_untruncated, int32_t *n_invalid_utf8, me_err *e)
{
    RETURN_ERROR_IF(!t || !out, e, MEDEMBED_ERR_ARG, "tokenizer and output must not be NULL");
    if (len == (size_t)-1)
        len = text ? strlen(text) : 0;
    RETURN_ERROR_IF(!text && len > 0, e, MEDEMBED_ERR_ARG, "text is NULL but len is %zu", len);
    RETURN_ERROR_IF(max_tokens < 0 || max_tokens == 1, e, MEDEMBED_ERR_ARG,
                    "max_tokens is %d; it must be 0 (no limit) or >= 2 ([CLS] and [SEP])",
                    max_tokens);
    RETURN_ERROR_IF(len > ME_TOK_TEXT_MAX, e, MEDEMBED_ERR_TOO_LONG,
                    "text is %zu bytes, more than the %zu-byte limit", len, ME_TOK_TEXT_MAX);
    RETURN_ERROR_IF((flags & ~(ME_TOK_STRICT_UTF8 | ME_TOK_PY_LOWER)) != 0, e, MEDEMBED_ERR_ARG,
                    "unknown tokenizer flags 0x%X",
                    flags & ~(ME_TOK_STRICT_UTF8 | ME_TOK_PY_LOWER));

    me_tok_scratch tmp;
    memset(&tmp, 0, sizeof tmp);
    me_tok_scratch *sc = s ? s : &tmp;
    out->n = 0;
    int32_t bad = 0;
    int rc = encode_body(t, sc, text ? text : "", len, flags, out, &bad, e);
    if (!s)
        me_tok_scratch_free(&tmp);
    if (rc != MEDEMBED_OK) {
        out->n = 0;
        return rc;
    }
    if (n_untruncated)
        *n_untruncated = out->n;
    if (n_invalid_utf8)
        *n_invalid_utf8 = bad;
    if (max_tokens > 0 && out->n > max_tokens) {
        out->ids[max_tokens - 1] = t->sep_id;
        out->n = max_tokens;
    }
    return MEDEMBED_OK;
}

int me_tokenizer_encode(const me_tokenizer *t, const char *text, size_t len, int32_t max_tokens,
                        uint32_t flags, me_ids *out, int32_t *n_untruncated,
                        int32_t *n_invalid_utf8, me_err *e)
{
    return me_tokenizer_encode_scratch(t, NULL, text, len, max_tokens, flags, out, n_untruncated,
                                       n_invalid_utf8, e);
}

void me_tokenizer_free(me_tokenizer *t)
{
    if (!t)
        return;
    me_vocab_free(&t->vocab);
    me_added_set_free(&t->raw);
    me_added_set_free(&t->norm);
    free(t->added_ids);
    free(t);
}

int32_t me_tokenizer_find(const me_tokenizer *t, const char *s, size_t len)
{
    if (!t || !s)
        return -1;
    for (int32_t i = 0; i < t->n_added; i++) {
        int32_t id = t->added_ids[i];
        const char *a = me_vocab_str(&t->vocab, id);
        if (a && t->vocab.len[id] == len && memcmp(a, s, len) == 0)
            return id;
    }
    return me_vocab_find(&t->vocab, s, len);
}

int32_t me_tokenizer_vocab_size(const me_tokenizer *t)
{
    return t ? t->vocab.n_ids : 0;
}

const char *me_tokenizer_token(const me_tokenizer *t, int32_t id)
{
    return t ? me_vocab_str(&t->vocab, id) : NULL;
}

int32_t me_tokenizer_cls_id(const me_tokenizer *t)
{
    return t ? t->cls_id : -1;
}

int32_t me_tokenizer_sep_id(const me_tokenizer *t)
{
    return t ? t->sep_id : -1;
}

int32_t me_tokenizer_pad_id(const me_tokenizer *t)
{
    return t ? t->pad_id : -1;
}

int32_t me_tokenizer_unk_id(const me_tokenizer *t)
{
    return t ? t->unk_id : -1;
}
