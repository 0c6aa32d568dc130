/*
 * prepare.h - the model-dependent half of request handling, run on the
 * connection's own thread before a job is queued: the library's tokens
 * for each input (prompt, tokenization, truncation) and the token-length
 * checks (422 when an input is too long and truncation is off), then the
 * post-processing of vectors
 * (normalize, `dimensions`) and the /tokenize response.
 */
#ifndef MEDEMBED_SERVER_PREPARE_H
#define MEDEMBED_SERVER_PREPARE_H

#include <stddef.h>
#include <stdint.h>

#include "medembed.h"
#include "request.h"
#include "response.h"

/* What the server knows about its model, read once after loading. */
typedef struct srv_model {
    medembed_model *m;
    int32_t dim;
    int32_t max_length; /* tokens per input, [CLS]/[SEP] included */
    int32_t vocab_size;
    int normalize;      /* the model ends with a Normalize module */
    char *id;           /* model name in responses (the folder's base name) */
    char *info_json;    /* medembed_model_info_json(), for /info */
} srv_model;

/* Fills sm from a loaded model (which sm then owns). Returns 0 or -1 (OOM). */
int srv_model_init(srv_model *sm, medembed_model *m, const char *model_arg);
void srv_model_free(srv_model *sm);

/* A request ready for the batcher: its sequences in a library token set,
 * made by the calls medembed_ctx_embed() makes, so the vectors equal
 * `medembed embed`'s bit for bit. */
typedef struct srv_prepared {
    int32_t n;
    medembed_tokens *set; /* n sequences */
    int32_t *lens;        /* tokens per input, as embedded */
    uint32_t flags;       /* MEDEMBED_F_* for the embed call */
    int post_normalize;   /* L2-normalize here: asked for, but the model has no Normalize */
    int renormalize;      /* re-normalize after cutting to `dimensions` */
    int64_t n_tokens;     /* usage.prompt_tokens */
    int32_t n_truncated;
} srv_prepared;

/* Tokenizes and validates every input of r. auto_truncate is the server's
 * default for a request without `truncate`. Returns 0, or -1 with err set
 * (422 for a too-long input or an unknown prompt). */
int srv_prepare(const srv_model *sm, const srv_request *r, int auto_truncate, srv_prepared *p,
                srv_error *err);
void srv_prepared_free(srv_prepared *p);

/* Applies normalize / `dimensions` to n rows of sm->dim floats in place and
 * compacts them to rows of out_dim = (dimensions ? dimensions : dim). */
void srv_postprocess(const srv_model *sm, const srv_request *r, const srv_prepared *p, float *v,
                     int32_t n, int32_t *out_dim);

/* The /tokenize response (TEI shape: a list of lists of
 * {"id","text","special","start","stop"}). Returns 0 or -1 with err set. */
int srv_tokenize_response(const srv_model *sm, const srv_request *r, srv_buf *b,
                          srv_error *err);

#endif
