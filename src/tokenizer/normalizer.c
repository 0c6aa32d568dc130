/*
 * normalizer.c - HF BertNormalizer (tokenizers normalizers/bert.rs), in its
 * order of steps:
 *
 *   1. clean_text: drop U+0000, U+FFFD and controls (Cc/Cf/Co, not \t\n\r);
 *      map whitespace (White_Space) to ' '.
 *   2. handle_chinese_chars: ' ' before and after each CJK ideograph.
 *   3. strip_accents (null => follows lowercase): NFD, then drop Mn.
 *   4. lowercase: Rust char::to_lowercase per character (İ -> "i̇").
 *
 * Steps 1-2 and the per-character part of NFD run in one pass; canonical
 * reordering (only when a combining mark appeared) and steps 3b-4 in a
 * second pass over the segment, because NFD reorders marks across
 * characters before Mn are dropped. ASCII takes a table lookup.
 */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>

#include "tokenizer/unicode.h"

int me_tok_grow(void **buf, size_t *cap, size_t n, size_t elem, me_err *e)
{
    size_t c = *cap ? *cap : 256;
    while (c < n)
        c *= 2;
    RETURN_ERROR_IF(c > SIZE_MAX / elem, e, MEDEMBED_ERR_NOMEM, "buffer of %zu items overflows",
                    c);
    void *p = realloc(*buf, c * elem);
    RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory for %zu bytes of scratch", c * elem);
    *buf = p;
    *cap = c;
    return MEDEMBED_OK;
}

void me_norm_init_tables(me_tokenizer *t)
{
    for (uint32_t c = 0; c < 128; c++) {
        int32_t o = (int32_t)c;
        if (t->clean_text) {
            if (c == 0 || me_uc_is_control(c))
                o = -1;
            else if (me_uc_is_whitespace(c))
                o = ' ';
        }
        if (o >= 0 && t->lowercase && c >= 'A' && c <= 'Z')
            o = (int32_t)c + 32;
        t->ascii_norm[c] = o;
        if (me_uc_is_whitespace(c))
            t->ascii_class[c] = ME_CL_SPACE;
        else if (me_uc_is_punct(c))
            t->ascii_class[c] = ME_CL_PUNCT;
        else
            t->ascii_class[c] = ME_CL_WORD;
    }
}

/* Steps 3-4 on one character for the path without accent stripping. */
static size_t put_lower(const me_tokenizer *t, uint32_t c, uint32_t *o)
{
    if (t->lowercase)
        return (size_t)me_uc_lower_full(c, o);
    o[0] = c;
    return 1;
}

int me_normalize(const me_tokenizer *t, const uint32_t *s, size_t n, uint32_t **buf, size_t *cap,
                 size_t *m, me_err *e)
{
    /* Worst case per input character: 4 (a canonical decomposition) or 3
     * (' ' c ' '). */
    RETURN_ERROR_IF(n > SIZE_MAX / 16 - 16, e, MEDEMBED_ERR_TOO_LONG, "text of %zu characters",
                    n);
    FORWARD_IF_ERROR(me_tok_reserve((void **)buf, cap, 4 * n + 8, sizeof **buf, e));
    uint32_t *o = *buf;
    size_t k = 0;
    int non_ascii = 0;
    int marks = 0;

    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) {
            int32_t r = t->ascii_norm[c];
            if (r >= 0)
                o[k++] = (uint32_t)r;
            continue;
        }
        if (t->clean_text) {
            if (c == ME_UC_REPLACEMENT || me_uc_is_control(c))
                continue;
            if (me_uc_is_whitespace(c)) {
                o[k++] = ' ';
                continue;
            }
        }
        int cjk = t->handle_cjk && me_uc_is_cjk(c);
        if (cjk)
            o[k++] = ' ';
        if (t->strip_accents) {
            uint32_t d[ME_UC_DECOMP_MAX];
            int nd = me_uc_decompose(c, d);
            for (int j = 0; j < nd; j++) {
                if (me_uc_ccc(d[j]) != 0)
                    marks = 1;
                o[k++] = d[j];
            }
            non_ascii = 1;
        } else {
            k += put_lower(t, c, o + k);
        }
        if (cjk)
            o[k++] = ' ';
    }

    if (t->strip_accents && non_ascii) {
        if (marks)
            me_uc_canonical_order(o, k);
        size_t w = 0;
        for (size_t r = 0; r < k; r++) {
            uint32_t c = o[r];
            if (c >= 0x80 && me_uc_is_mn(c))
                continue;
            /* After NFD no U+0130 remains, so lowercase maps 1:1 and the
             * in-place write never overtakes the read. */
            if (t->lowercase) {
                /* Decomposition can yield ASCII capitals (À -> A + U+0300). */
                uint32_t l[2];
                me_uc_lower_full(c, l);
                c = l[0];
            }
            o[w++] = c;
        }
        k = w;
    }
    *m = k;
    return MEDEMBED_OK;
}
