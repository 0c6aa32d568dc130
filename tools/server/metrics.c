/*
 * metrics.c - Prometheus metrics (see metrics.h).
 */
#include "metrics.h"

#include <string.h>

static const double DURATION_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10, 30};
static const double TOKEN_BOUNDS[] = {2,   4,    8,    16,   32,   64,    128,   256,
                                      512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
static const double SIZE_BOUNDS[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048};

static const char *const ROUTE_NAMES[SRV_N_ROUTES] = {"/v1/embeddings", "/embed", "/tokenize",
                                                      "/search", "/rerank"};
static const char *const FAIL_NAMES[SRV_FAIL_COUNT] = {
    "validation", "empty",       "batch_size", "too_long",  "json",      "payload",
    "overloaded", "unauthorized", "unhealthy", "not_found", "inference", "disconnected",
    "bad_request", "head_too_large", "timeout", "connections", "memory", "model_type"};

static const struct {
    const char *name, *help;
} HIST_INFO[SRV_H_COUNT] = {
    {"te_request_duration", "Request duration in seconds"},
    {"te_request_tokenization_duration", "Tokenization time per request in seconds"},
    {"te_request_queue_duration", "Time a request waited for its first batch in seconds"},
    {"te_request_inference_duration", "Forward-pass time per request in seconds"},
    {"te_request_input_length", "Tokens per input"},
    {"te_batch_next_size", "Sequences per forward call"},
    {"te_batch_next_tokens", "Tokens per forward call"},
    {"te_batch_inference_duration", "Forward-call duration in seconds"},
};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

void srv_metrics_init(srv_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    for (int h = 0; h < SRV_H_COUNT; h++) {
        srv_hist *x = &m->hist[h];
        if (h == SRV_H_INPUT_LENGTH || h == SRV_H_BATCH_TOKENS) {
            x->bounds = TOKEN_BOUNDS;
            x->n_bounds = N_OF(TOKEN_BOUNDS);
        } else if (h == SRV_H_BATCH_SIZE) {
            x->bounds = SIZE_BOUNDS;
            x->n_bounds = N_OF(SIZE_BOUNDS);
        } else {
            x->bounds = DURATION_BOUNDS;
            x->n_bounds = N_OF(DURATION_BOUNDS);
        }
    }
}

void srv_metrics_destroy(srv_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

static void hist_add(srv_hist *x, double v)
{
    int i = 0;
    while (i < x->n_bounds && v > x->bounds[i])
        i++;
    x->counts[i]++;
    x->sum += v;
    x->count++;
}

void srv_metrics_observe(srv_metrics *m, srv_hist_id h, double v)
{
    pthread_mutex_lock(&m->mu);
    hist_add(&m->hist[h], v);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_request(srv_metrics *m, int route, int batch)
{
    if (route < 0 || route >= SRV_N_ROUTES)
        return;
    pthread_mutex_lock(&m->mu);
    m->request_count[route][batch ? 1 : 0]++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_success(srv_metrics *m, int route, int batch, int64_t n_inputs,
                         int64_t n_tokens)
{
    if (route < 0 || route >= SRV_N_ROUTES)
        return;
    pthread_mutex_lock(&m->mu);
    m->request_success[route][batch ? 1 : 0]++;
    m->embed_inputs += (uint64_t)n_inputs;
    m->embed_tokens += (uint64_t)n_tokens;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_failure(srv_metrics *m, srv_fail_kind k)
{
    pthread_mutex_lock(&m->mu);
    m->request_failure[k]++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_batch(srv_metrics *m, int64_t n_seqs, int64_t n_tokens, double seconds, int ok)
{
    pthread_mutex_lock(&m->mu);
    m->batches++;
    if (!ok)
        m->batch_failures++;
    hist_add(&m->hist[SRV_H_BATCH_SIZE], (double)n_seqs);
    hist_add(&m->hist[SRV_H_BATCH_TOKENS], (double)n_tokens);
    hist_add(&m->hist[SRV_H_BATCH_DURATION], seconds);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_gauge_add(srv_metrics *m, int64_t *gauge, int64_t delta)
{
    pthread_mutex_lock(&m->mu);
    *gauge += delta;
    pthread_mutex_unlock(&m->mu);
}

srv_fail_kind srv_fail_kind_of(const srv_error *e)
{
    const char *code = e->code ? e->code : "";
    switch (e->status) {
    case 400:
        if (strcmp(code, "bad_request") == 0)
            return SRV_FAIL_BAD_REQUEST;
        return strcmp(code, "invalid_json") == 0 ? SRV_FAIL_JSON : SRV_FAIL_EMPTY;
    case 505:
        return SRV_FAIL_BAD_REQUEST;
    case 414:
    case 431:
        return SRV_FAIL_HEAD_TOO_LARGE;
    case 408:
        return SRV_FAIL_TIMEOUT;
    case 401:
        return SRV_FAIL_UNAUTHORIZED;
    case 404:
    case 405:
        return SRV_FAIL_NOT_FOUND;
    case 413:
        return SRV_FAIL_PAYLOAD;
    case 429:
        return strcmp(code, "too_many_connections") == 0 ? SRV_FAIL_CONNECTIONS
                                                         : SRV_FAIL_OVERLOADED;
    case 503:
        return strcmp(code, "memory_budget_exceeded") == 0 ? SRV_FAIL_MEMORY : SRV_FAIL_UNHEALTHY;
    case 424:
        return SRV_FAIL_MODEL_TYPE;
    case 422:
        if (strcmp(code, "too_many_inputs") == 0)
            return SRV_FAIL_BATCH_SIZE;
        if (strcmp(code, "context_length_exceeded") == 0)
            return SRV_FAIL_TOO_LONG;
        return SRV_FAIL_VALIDATION;
    default:
        return SRV_FAIL_INFERENCE;
    }
}

static void render_hist(srv_buf *b, const char *name, const char *help, const srv_hist *x)
{
    srv_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < x->n_bounds; i++) {
        cum += x->counts[i];
        srv_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, x->bounds[i],
                       (unsigned long long)cum);
    }
    cum += x->counts[x->n_bounds];
    srv_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    srv_buf_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, x->sum, name,
                   (unsigned long long)x->count);
}

void srv_metrics_render(srv_metrics *m, srv_buf *b, const char *model, const char *version)
{
    pthread_mutex_lock(&m->mu);
    srv_buf_puts(b, "# HELP te_info Server and model\n# TYPE te_info gauge\nte_info{model=");
    srv_buf_json_string(b, model, strlen(model));
    srv_buf_puts(b, ",version=");
    srv_buf_json_string(b, version, strlen(version));
    srv_buf_puts(b, "} 1\n");
    static const char *const METHOD[2] = {"single", "batch"};
    srv_buf_puts(b, "# HELP te_request_count Requests received\n# TYPE te_request_count counter\n");
    for (int r = 0; r < SRV_N_ROUTES; r++)
        for (int k = 0; k < 2; k++)
            srv_buf_printf(b, "te_request_count{route=\"%s\",method=\"%s\"} %llu\n",
                           ROUTE_NAMES[r], METHOD[k],
                           (unsigned long long)m->request_count[r][k]);
    srv_buf_puts(b,
                 "# HELP te_request_success Requests answered 200\n# TYPE te_request_success "
                 "counter\n");
    for (int r = 0; r < SRV_N_ROUTES; r++)
        for (int k = 0; k < 2; k++)
            srv_buf_printf(b, "te_request_success{route=\"%s\",method=\"%s\"} %llu\n",
                           ROUTE_NAMES[r], METHOD[k],
                           (unsigned long long)m->request_success[r][k]);
    srv_buf_puts(b, "# HELP te_request_failure Requests answered with an error, by cause\n"
                    "# TYPE te_request_failure counter\n");
    for (int k = 0; k < SRV_FAIL_COUNT; k++)
        srv_buf_printf(b, "te_request_failure{err=\"%s\"} %llu\n", FAIL_NAMES[k],
                       (unsigned long long)m->request_failure[k]);
    srv_buf_printf(b,
                   "# HELP te_embed_count Inputs embedded\n# TYPE te_embed_count counter\n"
                   "te_embed_count %llu\n"
                   "# HELP te_embed_tokens Tokens embedded\n# TYPE te_embed_tokens counter\n"
                   "te_embed_tokens %llu\n"
                   "# HELP te_batch_inference_count Forward calls\n"
                   "# TYPE te_batch_inference_count counter\nte_batch_inference_count %llu\n"
                   "# HELP te_batch_inference_failure Forward calls that failed\n"
                   "# TYPE te_batch_inference_failure counter\n"
                   "te_batch_inference_failure %llu\n"
                   "# HELP te_queue_size Sequences waiting for a batch\n"
                   "# TYPE te_queue_size gauge\nte_queue_size %lld\n"
                   "# HELP te_requests_in_flight Requests being handled\n"
                   "# TYPE te_requests_in_flight gauge\nte_requests_in_flight %lld\n",
                   (unsigned long long)m->embed_inputs, (unsigned long long)m->embed_tokens,
                   (unsigned long long)m->batches, (unsigned long long)m->batch_failures,
                   (long long)m->queue_size, (long long)m->in_flight);
    for (int h = 0; h < SRV_H_COUNT; h++)
        render_hist(b, HIST_INFO[h].name, HIST_INFO[h].help, &m->hist[h]);
    pthread_mutex_unlock(&m->mu);
}
