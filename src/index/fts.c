/*
 * fts.c - user text to an FTS5 query that SQLite cannot misread.
 *
 * The keyword leg of search passes user text to FTS5's MATCH. FTS5 has its
 * own query language (AND/OR/NOT/NEAR, "phrases", prefix *, ^ anchors,
 * column filters col:, parentheses), and a stray quote or parenthesis is a
 * syntax error. So the text never reaches SQLite raw: each word becomes a
 * quoted phrase, which FTS5 reads as plain tokens, and the phrases are
 * OR-ed, as BM25 retrieval scores any matching term. A word such as E11.9
 * or 5-FU becomes the phrase "E11.9", which matches the tokens e11, 9 in
 * sequence, so codes are found exactly as written.
 */
#include <stdlib.h>
#include <string.h>

#include "index/index.h"

static int word_has_alnum(const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)w[i];
        if (c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
            return 1;
    }
    return 0;
}

char *me_fts_query(const char *text)
{
    size_t n = strlen(text);
    /* worst case: every byte a quote (doubled) plus per-word quotes and " OR " */
    char *q = malloc(n * 7 + 1);
    if (!q)
        return NULL;
    size_t o = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
            p++;
        const char *w = p;
        while (*p && !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' ||
                       *p == '\v'))
            p++;
        size_t wn = (size_t)(p - w);
        if (wn == 0 || !word_has_alnum(w, wn))
            continue;
        if (o) {
            memcpy(q + o, " OR ", 4);
            o += 4;
        }
        q[o++] = '"';
        for (size_t i = 0; i < wn; i++) {
            if (w[i] == '"')
                q[o++] = '"';
            q[o++] = w[i];
        }
        q[o++] = '"';
    }
    q[o] = 0;
    return q;
}
