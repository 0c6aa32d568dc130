/*
 * rerank.h - POST /rerank (TEI): a cross-encoder scores (query, text) pairs.
 *
 * The reranker uses a loaded model and owns one medembed_ctx. A request's pairs go to
 * the library in one medembed_ctx_rerank() call, which batches them; calls
 * from concurrent requests take turns on the ctx (a mutex), each running
 * on all of the ctx's threads.
 */
#ifndef MEDEMBED_SERVER_RERANK_H
#define MEDEMBED_SERVER_RERANK_H

#include "medembed.h"
#include "prepare.h"
#include "request.h"
#include "response.h"

typedef struct srv_reranker srv_reranker;

/* A reranker on sm's model, which must be a cross-encoder with one label
 * (anything else is refused with a message in err) and outlive it.
 * Returns 0 or -1. */
int srv_reranker_open(const srv_model *sm, int32_t threads, srv_reranker **out, char *err,
                      size_t err_len);
void srv_reranker_free(srv_reranker *rr);
const srv_model *srv_reranker_model(const srv_reranker *rr);

/* The reranking stage of POST /search: medembed_hits_rerank on rr's ctx
 * (taking its turn), keeping k hits. Returns 0, or -1 with e set. */
int srv_rerank_hits(srv_reranker *rr, medembed_hits *h, medembed_index *ix, const char *query,
                    int32_t k, srv_error *e);

/* Scores r's pairs and writes TEI's answer, [{index, text?, score}] best
 * first (ties: lower index first). auto_truncate applies when r does not
 * say. Returns 0, or -1 with e set (422 for a pair too long without
 * truncation, 500 otherwise). *infer_seconds: time in the library. */
int srv_rerank_respond(srv_reranker *rr, const srv_request *r, int auto_truncate,
                       srv_buf *b, srv_error *e, double *infer_seconds);

#endif
