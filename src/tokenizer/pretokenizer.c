/*
 * pretokenizer.c - HF BertPreTokenizer (split on whitespace, removed; then
 * every punctuation character as its own word) feeding each word straight
 * to WordPiece, so no word list is ever built.
 *
 * A word longer than max_input_chars_per_word characters is [UNK] without
 * a lookup (HF counts chars, i.e. code points, of the normalized word).
 */
#include "tokenizer/tok_internal.h"

#include "tokenizer/unicode.h"

static int class_of(const me_tokenizer *t, uint32_t c)
{
    if (c < 0x80)
        return t->ascii_class[c];
    if (me_uc_is_whitespace(c))
        return ME_CL_SPACE;
    if (me_uc_is_punct(c))
        return ME_CL_PUNCT;
    return ME_CL_WORD;
}

static int emit_word(const me_tokenizer *t, me_tok_scratch *s, const uint32_t *w, size_t n,
                     me_ids *out, me_err *e)
{
    if (n > t->max_chars)
        return me_ids_push(out, t->unk_id, e);
    FORWARD_IF_ERROR(me_tok_reserve((void **)&s->word, &s->word_cap, 4 * n + 4, 1, e));
    FORWARD_IF_ERROR(
        me_tok_reserve((void **)&s->bounds, &s->bounds_cap, n + 1, sizeof *s->bounds, e));
    FORWARD_IF_ERROR(me_tok_reserve((void **)&s->hash, &s->hash_cap, n + 1, sizeof *s->hash, e));
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        s->bounds[i] = (uint32_t)b;
        uint32_t c = w[i];
        if (c < 0x80)
            s->word[b++] = (uint8_t)c;
        else
            b += me_utf8_encode(c, s->word + b);
    }
    s->bounds[n] = (uint32_t)b;
    return me_wordpiece(&t->vocab, s->word, s->bounds, n, t->unk_id, s->hash, out, e);
}

int me_pretok_wordpiece(const me_tokenizer *t, me_tok_scratch *s, const uint32_t *buf, size_t a,
                        size_t b, me_ids *out, me_err *e)
{
    size_t start = a;
    for (size_t i = a; i < b; i++) {
        int cl = class_of(t, buf[i]);
        if (cl == ME_CL_WORD)
            continue;
        if (start < i)
            FORWARD_IF_ERROR(emit_word(t, s, buf + start, i - start, out, e));
        if (cl == ME_CL_PUNCT)
            FORWARD_IF_ERROR(emit_word(t, s, buf + i, 1, out, e));
        start = i + 1;
    }
    if (start < b)
        FORWARD_IF_ERROR(emit_word(t, s, buf + start, b - start, out, e));
    return MEDEMBED_OK;
}
