/*
 * chunk.c - token windows for long documents.
 *
 * Chunking works on token ids, not on text: the document is tokenized once
 * without truncation, and its pieces (between [CLS] and [SEP]) are cut into
 * windows. Each window is then embedded as [CLS] window [SEP], so a chunk's
 * span is exact by construction and no character offsets are needed.
 */
#include "index/index.h"

int32_t me_chunk_spans(int32_t n_pieces, int32_t w, int32_t overlap, me_span *spans, int32_t cap)
{
    if (w <= 0 || overlap < 0 || overlap >= w || n_pieces < 0)
        return 0;
    int32_t n = 0, start = 0;
    for (;;) {
        int32_t end = n_pieces - start > w ? start + w : n_pieces;
        if (spans && n < cap) {
            spans[n].start = start;
            spans[n].end = end;
        }
        n++;
        if (end >= n_pieces)
            break;
        start = end - overlap;
    }
    return n;
}
