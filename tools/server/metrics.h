/*
 * metrics.h - the server's Prometheus counters, gauges and histograms,
 * rendered as text exposition format 0.0.4 on GET /metrics.
 *
 * Names follow text-embeddings-inference (te_request_count,
 * te_request_duration, te_batch_next_size, te_queue_size, ...) so dashboards
 * built for TEI work unchanged; durations are in seconds. All functions are
 * thread-safe (one mutex: a handful of updates per request is far below
 * contention, and it keeps sums and bucket counts consistent in a scrape).
 */
#ifndef MEDEMBED_SERVER_METRICS_H
#define MEDEMBED_SERVER_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "response.h"

typedef enum srv_hist_id {
    SRV_H_REQUEST_DURATION = 0,  /* te_request_duration: whole request */
    SRV_H_TOKENIZATION_DURATION, /* te_request_tokenization_duration */
    SRV_H_QUEUE_DURATION,        /* te_request_queue_duration: queued until first batch
                                  */
    SRV_H_INFERENCE_DURATION,    /* te_request_inference_duration: forward passes */
    SRV_H_INPUT_LENGTH,          /* te_request_input_length: tokens per input */
    SRV_H_BATCH_SIZE,            /* te_batch_next_size: sequences per forward call */
    SRV_H_BATCH_TOKENS,          /* te_batch_next_tokens: tokens per forward call */
    SRV_H_BATCH_DURATION,        /* te_batch_inference_duration */
    SRV_H_COUNT
} srv_hist_id;

/* Why a request failed: the `err` label of te_request_failure. */
typedef enum srv_fail_kind {
    SRV_FAIL_VALIDATION = 0,
    SRV_FAIL_EMPTY,
    SRV_FAIL_BATCH_SIZE,
    SRV_FAIL_TOO_LONG,
    SRV_FAIL_JSON,
    SRV_FAIL_PAYLOAD,
    SRV_FAIL_OVERLOADED,
    SRV_FAIL_UNAUTHORIZED,
    SRV_FAIL_UNHEALTHY,
    SRV_FAIL_NOT_FOUND,
    SRV_FAIL_INFERENCE,
    SRV_FAIL_DISCONNECTED,
    SRV_FAIL_BAD_REQUEST,    /* malformed HTTP: framing, version */
    SRV_FAIL_HEAD_TOO_LARGE, /* 414, 431 */
    SRV_FAIL_TIMEOUT,        /* a head or body past its deadline */
    SRV_FAIL_CONNECTIONS,    /* over --max-connections-per-ip */
    SRV_FAIL_MEMORY,         /* over --max-memory */
    SRV_FAIL_MODEL_TYPE,     /* 424: a route the served model cannot do */
    SRV_FAIL_COUNT
} srv_fail_kind;

#define SRV_N_ROUTES 5 /* srv_route values */
#define SRV_HIST_MAX_BUCKETS 20

typedef struct srv_hist {
    const double *bounds; /* upper bounds, ascending; +Inf implied */
    int n_bounds;
    uint64_t counts[SRV_HIST_MAX_BUCKETS + 1];
    double sum;
    uint64_t count;
} srv_hist;

typedef struct srv_metrics {
    pthread_mutex_t mu;
    uint64_t request_count[SRV_N_ROUTES][2];   /* [route][0 single, 1 batch] */
    uint64_t request_success[SRV_N_ROUTES][2];
    uint64_t request_failure[SRV_FAIL_COUNT];
    uint64_t embed_inputs;  /* te_embed_count: inputs embedded */
    uint64_t embed_tokens;  /* te_embed_tokens: tokens embedded */
    uint64_t batches;       /* te_batch_inference_count */
    uint64_t batch_failures;
    int64_t queue_size;     /* sequences waiting for a batch */
    int64_t in_flight;      /* requests being handled */
    srv_hist hist[SRV_H_COUNT];
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_destroy(srv_metrics *m);

void srv_metrics_observe(srv_metrics *m, srv_hist_id h, double v);
void srv_metrics_request(srv_metrics *m, int route, int batch);
void srv_metrics_success(srv_metrics *m, int route, int batch, int64_t n_inputs,
                         int64_t n_tokens);
void srv_metrics_failure(srv_metrics *m, srv_fail_kind k);
void srv_metrics_batch(srv_metrics *m, int64_t n_seqs, int64_t n_tokens, double seconds,
                       int ok);
void srv_metrics_gauge_add(srv_metrics *m, int64_t *gauge, int64_t delta);

/* Appends the exposition text; `model` and `version` label te_info. */
void srv_metrics_render(srv_metrics *m, srv_buf *b, const char *model, const char *version);

/* The failure kind for an srv_error (by status and type/code). */
srv_fail_kind srv_fail_kind_of(const srv_error *e);

#endif
