/*
 * added.c - added/special tokens ("[SEP]", user tokens) found in text the
 * way HF `tokenizers` AddedVocabulary::find_matches does it: an
 * aho-corasick scan with MatchKind::LeftmostLongest (at the leftmost
 * position where any token starts, the longest one wins; the scan resumes
 * at its end), then per match:
 *   - single_word: dropped (and not retried shorter) unless the text before
 *     it does not end with a \w char and the text after does not start
 *     with one;
 *   - lstrip: the token also takes the whitespace run before it, but never
 *     text already taken by the previous match;
 *   - rstrip: it also takes the whitespace run after it.
 *
 * Sets are small (BERT has 5 specials), so a scan tests each position
 * against a bitmap of first characters and walks the tokens sharing that
 * first character, longest first.
 */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode.h"

int me_added_set_add(me_added_set *set, const uint32_t *cp, size_t n, int32_t id,
                     int single_word, int lstrip, int rstrip, me_err *e)
{
    if (n == 0)
        return MEDEMBED_OK;
    RETURN_ERROR_IF(set->n >= ME_TOK_ADDED_MAX, e, MEDEMBED_ERR_FORMAT,
                    "more than %d added tokens", ME_TOK_ADDED_MAX);
    RETURN_ERROR_IF(n > UINT32_MAX / 8, e, MEDEMBED_ERR_FORMAT, "added token of %zu chars", n);
    me_added_tok *p = realloc(set->tok, ((size_t)set->n + 1) * sizeof *p);
    RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory for added tokens");
    set->tok = p;
    uint32_t *c = malloc(n * sizeof *c);
    RETURN_ERROR_IF(!c, e, MEDEMBED_ERR_NOMEM, "out of memory for an added token");
    memcpy(c, cp, n * sizeof *c);
    me_added_tok *a = &set->tok[set->n++];
    a->cp = c;
    a->n = (uint32_t)n;
    a->id = id;
    a->single_word = (uint8_t)!!single_word;
    a->lstrip = (uint8_t)!!lstrip;
    a->rstrip = (uint8_t)!!rstrip;
    a->seq = (uint32_t)set->n;
    return MEDEMBED_OK;
}

static int cmp_added(const void *pa, const void *pb)
{
    const me_added_tok *a = pa;
    const me_added_tok *b = pb;
    if (a->cp[0] != b->cp[0])
        return a->cp[0] < b->cp[0] ? -1 : 1;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    int c = memcmp(a->cp, b->cp, a->n * sizeof *a->cp);
    if (c != 0)
        return c;
    return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

static int same_content(const me_added_tok *a, const me_added_tok *b)
{
    return a->n == b->n && memcmp(a->cp, b->cp, a->n * sizeof *a->cp) == 0;
}

void me_added_set_sort(me_added_set *set)
{
    if (set->n > 1)
        qsort(set->tok, (size_t)set->n, sizeof *set->tok, cmp_added);
    /* The same content twice: keep the last one added (HF looks the flags up
     * by id, and the later registration replaces them). */
    int32_t w = 0;
    for (int32_t r = 0; r < set->n; r++) {
        if (r + 1 < set->n && same_content(&set->tok[r], &set->tok[r + 1])) {
            free(set->tok[r].cp);
            continue;
        }
        set->tok[w++] = set->tok[r];
    }
    set->n = w;
    memset(set->first_ascii, 0, sizeof set->first_ascii);
    set->first_other = 0;
    for (int32_t i = 0; i < set->n; i++) {
        uint32_t c = set->tok[i].cp[0];
        if (c < 128)
            set->first_ascii[c >> 6] |= 1ull << (c & 63);
        else
            set->first_other |= 1ull << (c & 63);
    }
}

void me_added_set_free(me_added_set *set)
{
    if (!set)
        return;
    for (int32_t i = 0; i < set->n; i++)
        free(set->tok[i].cp);
    free(set->tok);
    memset(set, 0, sizeof *set);
}

/* Index of the first token starting with c, or set->n. */
static int32_t first_with(const me_added_set *set, uint32_t c)
{
    int32_t lo = 0;
    int32_t hi = set->n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (set->tok[mid].cp[0] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Longest token matching s[i..n), or NULL. */
static const me_added_tok *match_at(const me_added_set *set, const uint32_t *s, size_t n,
                                    size_t i)
{
    uint32_t c = s[i];
    if (c < 128) {
        if (!(set->first_ascii[c >> 6] & (1ull << (c & 63))))
            return NULL;
    } else if (!(set->first_other & (1ull << (c & 63)))) {
        return NULL;
    }
    for (int32_t k = first_with(set, c); k < set->n && set->tok[k].cp[0] == c; k++) {
        const me_added_tok *a = &set->tok[k];
        if (a->n <= n - i && memcmp(a->cp, s + i, a->n * sizeof *s) == 0)
            return a;
    }
    return NULL;
}

int me_added_next(const me_added_set *set, const uint32_t *s, size_t n, size_t from,
                  size_t start_offset, size_t *m_start, size_t *m_stop, size_t *scan_next,
                  int32_t *id)
{
    if (set->n == 0)
        return 0;
    for (size_t i = from; i < n; i++) {
        const me_added_tok *a = match_at(set, s, n, i);
        if (!a)
            continue;
        size_t start = i;
        size_t stop = i + a->n;
        if (a->single_word) {
            int before_word = start > 0 && me_uc_is_word(s[start - 1]);
            int after_word = stop < n && me_uc_is_word(s[stop]);
            if (before_word || after_word) {
                i = stop - 1; /* the scan resumes after the dropped match */
                continue;
            }
        }
        if (a->lstrip) {
            while (start > 0 && me_uc_is_whitespace(s[start - 1]))
                start--;
        }
        if (start < start_offset)
            start = start_offset;
        if (a->rstrip) {
            while (stop < n && me_uc_is_whitespace(s[stop]))
                stop++;
        }
        *m_start = start;
        *m_stop = stop;
        *scan_next = i + a->n;
        *id = a->id;
        return 1;
    }
    return 0;
}
