/*
 * rerank.c - POST /rerank (see rerank.h).
 */
#include "rerank.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batcher.h"

struct srv_reranker {
    const srv_model *model;
    medembed_ctx *ctx;
    pthread_mutex_t lock; /* one call on ctx at a time */
};

int srv_reranker_open(const srv_model *sm, int32_t threads, srv_reranker **out, char *err,
                      size_t err_len)
{
    *out = NULL;
    if (medembed_model_kind(sm->m) != MEDEMBED_KIND_CROSS_ENCODER) {
        snprintf(err, err_len, "%s is an embedding model, not a cross-encoder", sm->id);
        return -1;
    }
    int32_t labels = medembed_model_num_labels(sm->m);
    if (labels != 1) {
        snprintf(err, err_len,
                 "%s is a classifier with %d labels; /rerank serves cross-encoders with one "
                 "label (a relevance score)",
                 sm->id, (int)labels);
        return -1;
    }
    srv_reranker *rr = calloc(1, sizeof *rr);
    if (!rr || medembed_ctx_create(sm->m, threads, &rr->ctx) != MEDEMBED_OK) {
        snprintf(err, err_len, "out of memory creating the cross-encoder's context");
        free(rr);
        return -1;
    }
    rr->model = sm;
    pthread_mutex_init(&rr->lock, NULL);
    *out = rr;
    return 0;
}

void srv_reranker_free(srv_reranker *rr)
{
    if (!rr)
        return;
    medembed_ctx_free(rr->ctx);
    pthread_mutex_destroy(&rr->lock);
    free(rr);
}

const srv_model *srv_reranker_model(const srv_reranker *rr)
{
    return rr->model;
}

int srv_rerank_hits(srv_reranker *rr, medembed_hits *h, medembed_index *ix, const char *query,
                    int32_t k, srv_error *e)
{
    char err[512];
    pthread_mutex_lock(&rr->lock);
    int st = medembed_hits_rerank(h, ix, rr->ctx, query, k, 0, err, sizeof err);
    pthread_mutex_unlock(&rr->lock);
    if (st == MEDEMBED_OK)
        return 0;
    if (st == MEDEMBED_ERR_NOT_FOUND) /* a file without stored texts */
        return srv_fail(e, 422, "Validation", "rerank", "no_document_texts", "%s", err);
    return srv_fail(e, 500, "Backend", NULL, "rerank_failed", "reranking failed: %s", err);
}

int srv_rerank_respond(srv_reranker *rr, const srv_request *r, int auto_truncate,
                       srv_buf *b, srv_error *e, double *infer_seconds)
{
    *infer_seconds = 0;
    int truncate = r->truncate >= 0 ? r->truncate : auto_truncate;
    uint32_t flags = (truncate ? 0 : MEDEMBED_F_NO_TRUNCATE) |
                     (r->truncate_left ? MEDEMBED_F_TRUNCATE_LEFT : 0) |
                     (r->raw_scores ? MEDEMBED_F_RAW_SCORES : 0);
    const char **texts = malloc(sizeof *texts * (size_t)r->n);
    size_t *lens = malloc(sizeof *lens * (size_t)r->n);
    int32_t *order = malloc(sizeof *order * (size_t)r->n);
    float *scores = malloc(sizeof *scores * (size_t)r->n);
    int rc = -1;
    if (!texts || !lens || !order || !scores) {
        srv_fail(e, 500, "Backend", NULL, "out_of_memory", "out of memory");
        goto out;
    }
    for (int32_t i = 0; i < r->n; i++) {
        texts[i] = r->inputs[i].text;
        lens[i] = r->inputs[i].len;
    }
    pthread_mutex_lock(&rr->lock);
    double t0 = srv_now();
    int st = medembed_ctx_rerank(rr->ctx, r->query, r->query_len, texts, lens, r->n, flags,
                                 scores);
    *infer_seconds = srv_now() - t0;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", st == MEDEMBED_OK ? "" : medembed_ctx_last_error(rr->ctx));
    pthread_mutex_unlock(&rr->lock);
    if (st == MEDEMBED_ERR_TOO_LONG) {
        srv_fail(e, 422, "Validation", "texts", "context_length_exceeded", "%s", msg);
        goto out;
    }
    if (st == MEDEMBED_ERR_ENCODING) {
        srv_fail(e, 422, "Validation", "texts", "invalid_utf8", "%s", msg);
        goto out;
    }
    if (st != MEDEMBED_OK) {
        srv_fail(e, 500, "Backend", NULL, "inference_failed", "%s", msg);
        goto out;
    }
    for (int32_t i = 0; i < r->n; i++) {
        if (isnan(scores[i])) {
            srv_fail(e, 500, "Backend", NULL, "inference_failed", "score is NaN");
            goto out;
        }
    }
    if (medembed_rank_order(scores, r->n, order) != MEDEMBED_OK) {
        srv_fail(e, 500, "Backend", NULL, "out_of_memory", "out of memory");
        goto out;
    }
    srv_buf_puts(b, "[");
    for (int32_t i = 0; i < r->n; i++) {
        int32_t j = order[i];
        srv_buf_printf(b, "%s{\"index\":%d,", i ? "," : "", (int)j);
        if (r->return_text) {
            srv_buf_puts(b, "\"text\":");
            srv_buf_json_string(b, texts[j], lens[j]);
            srv_buf_puts(b, ",");
        }
        srv_buf_puts(b, "\"score\":");
        srv_buf_float(b, scores[j]);
        srv_buf_puts(b, "}");
    }
    srv_buf_puts(b, "]");
    rc = 0;
out:
    free(texts);
    free(lens);
    free(order);
    free(scores);
    return rc;
}
