/*
 * search.h - POST /search: the query is embedded through the batcher like
 * any other input, then searched in an index opened read-only at startup
 * (--index INDEX, built with the medembed_index_* API).
 *
 * Request:  {"query": "...", "k": 10, "filter": "year>=2015" | ["a=b", ...],
 *            "prompt_name": null, "mode": "dense", "alpha": null,
 *            "rerank": false, "rerank_top": 50}
 * Response: {"hits": [{"id", "score", "chunk", "start", "end", "metadata"}],
 *            "n_docs": N}
 * A bad filter expression is 422 with the library's message.
 */
#ifndef MEDEMBED_SERVER_SEARCH_H
#define MEDEMBED_SERVER_SEARCH_H

#include <stddef.h>

#include "medembed.h"
#include "rerank.h"
#include "request.h"
#include "response.h"

typedef struct srv_search srv_search;

/* Opens path read-only and checks it was built with model. Returns 0, or
 * -1 with a one-line message in err. */
int srv_search_open(const char *path, const medembed_model *model, srv_search **out, char *err,
                    size_t err_len);

/* Searches with query (the embedded query, as the model normalizes it; NULL
 * in BM25 mode) and writes the response; with r->rerank, the first
 * r->rerank_top hits are reordered by rr's cross-encoder (rr must be set)
 * and keep the search's rank and score as "first_stage". Returns 0, or -1
 * with e set. Thread-safe. */
int srv_search_respond(srv_search *s, const srv_request *r, const float *query,
                       srv_reranker *rr, srv_buf *b, srv_error *e);

/* NULL is accepted. */
void srv_search_free(srv_search *s);

#endif
