/*
 * chunk.c - token windows for long documents.
 *
 * Chunking works on token ids, not on text: the document is tokenized once
 * without truncation, and its pieces (between [CLS] and [SEP]) are cut into
 * windows. Each window is then embedded as [CLS] window [SEP], so a chunk's
 * span is exact by construction and no character offsets are needed.
 *
 * The rule (docs/SEARCH.md, "Chunking"): a document of at most w pieces is
 * one window. A longer one gets windows of exactly w pieces starting at 0,
 * s, 2s, ... (stride s = w - overlap) while they end before the document
 * does, then one last window [n - w, n): it ends at the document's end and
 * is full length, sharing overlap or more pieces with its neighbour. So no
 * window is shorter than min(n, w), and there is no tail scrap.
 */
#include "index/index.h"

int32_t me_chunk_overlap_default(int32_t w)
{
    if (w <= 0)
        return 0;
    return w / 2 < ME_CHUNK_OVERLAP ? w / 2 : ME_CHUNK_OVERLAP;
}

int32_t me_chunk_spans(int32_t n_pieces, int32_t w, int32_t overlap, me_span *spans, int32_t cap)
{
    if (w <= 0 || overlap < 0 || overlap >= w || n_pieces < 0)
        return 0;
    int32_t n = 0;
    int64_t start = 0;
    int32_t stride = w - overlap;
    for (; n_pieces > w && start + w < n_pieces; start += stride) {
        if (spans && n < cap) {
            spans[n].start = (int32_t)start;
            spans[n].end = (int32_t)(start + w);
        }
        n++;
    }
    if (spans && n < cap) {
        spans[n].start = n_pieces > w ? n_pieces - w : 0;
        spans[n].end = n_pieces;
    }
    return n + 1;
}
