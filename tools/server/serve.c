/*
 * serve.c - `medembed serve`: an HTTP server speaking the OpenAI embeddings
 * API and Hugging Face text-embeddings-inference (TEI), on libmicrohttpd.
 *
 * Threads:
 *   - the gate (gate.c): accepts, checks each new connection's head and
 *     keeps the deadlines, then hands the connection to libmicrohttpd;
 *   - libmicrohttpd's internal thread plus one thread per connection
 *     (MHD_USE_THREAD_PER_CONNECTION). A connection thread reads the body,
 *     parses it (request.c), tokenizes it (prepare.c) and blocks in
 *     srv_batcher_run() until its vectors are ready. Blocking is the point:
 *     it keeps the code straight-line and bounds work by connections, which
 *     --max-concurrent-requests caps (429 beyond it).
 *   - the batcher (batcher.c), which owns the one medembed_ctx.
 *   - a loader thread, so the port answers (/health 503) while the model
 *     loads.
 *   - main, which waits for SIGTERM/SIGINT with sigwait(): no async-signal
 *     handler anywhere.
 *
 * Shutdown (SIGTERM/SIGINT): stop accepting (the gate closes its socket), answer
 * every request already received (responses then carry Connection: close),
 * wait until none has been in flight for a short quiet period (bounded by
 * --shutdown-timeout), then stop.
 *
 * Privacy: request texts are never logged unless --log-inputs is given;
 * error log lines carry the status and error code, not messages (a JSON
 * syntax error message can quote the input).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../cli/cli.h"
#include "batcher.h"
#include "gate.h"
#include "head.h"
#include "metrics.h"
#include "prepare.h"
#include "rerank.h"
#include "request.h"
#include "response.h"
#include "routes.h"
#include "search.h"

/* ------------------------------------------------------------ state */

typedef struct server {
    /* Options. */
    const char *model_arg;
    const char *host;
    long port;
    const char *api_key;
    size_t api_key_len;
    long max_batch_tokens;
    long max_client_batch;
    long max_concurrent;
    long payload_limit;
    int auto_truncate;
    const char *index_path;
    const char *rerank_arg; /* --rerank CROSS_ENCODER */
    int log_inputs;
    long threads;
    int dtype;
    long shutdown_timeout;
    double header_timeout;
    double request_timeout;
    long max_per_ip;
    long long max_memory;
    srv_head_limits head_limits;

    /* Written by the loader before `ready` is set (release), read by
     * handlers after they see it (acquire). */
    srv_model model;       /* -m: an embedder, or a cross-encoder (then also `reranker`) */
    int embedder;          /* -m is an embedding model: the embedding routes work */
    srv_model rr_model;     /* --rerank's cross-encoder */
    srv_reranker *reranker; /* POST /rerank: on rr_model, or on model; or NULL */
    srv_batcher *batcher;
    srv_search *search;
    srv_limits limits;
    char *info_body;
    atomic_int ready;
    atomic_int load_failed;

    atomic_int draining;
    atomic_long slots;     /* requests holding a concurrency slot */
    atomic_long in_flight; /* requests between first callback and completion */
    atomic_llong mem_used; /* bytes reserved by requests against --max-memory */
    srv_gate *gate;
    srv_metrics metrics;
    pthread_t main_thread;
} server;

static server S;

typedef struct req_state {
    kind kind;
    srv_route route;
    int has_slot;
    int counted; /* in_flight was incremented */
    int rejected; /* pre-decided error in `pre` */
    srv_error pre;
    int too_large;
    long long reserved; /* bytes of the memory budget this request holds */
    size_t dropped;     /* body bytes read and discarded after a refusal */
    const char *allow;  /* methods of the matched route, for 405 */
    char what[96];      /* "POST /embed", for log lines */
    char *body;
    size_t len, cap;
    double t_start;
} req_state;

static void slog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void slog(const char *fmt, ...)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* Every field may come from a client: escape control bytes, so a
     * logged value can neither forge a line nor drive the terminal. */
    char msg[1024], esc[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_log_escape(msg, strlen(msg), esc, sizeof esc);
    fprintf(stderr, "%s medembed serve: %s\n", ts, esc);
}

/* ------------------------------------------------------------ responses */

static enum MHD_Result send_body_close(struct MHD_Connection *c, unsigned status, srv_buf *b,
                                       const char *ctype, const char *extra_name,
                                       const char *extra_value, int close_after)
{
    struct MHD_Response *resp;
    if (b->oom) {
        srv_buf_free(b);
        static const char oom[] = "{\"error\":\"out of memory\",\"error_type\":\"Backend\"}";
        resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                               MHD_RESPMEM_PERSISTENT);
        status = 500;
        ctype = "application/json";
    } else if (b->p) {
        resp = MHD_create_response_from_buffer(b->len, b->p, MHD_RESPMEM_MUST_FREE);
        if (resp)
            memset(b, 0, sizeof *b); /* MHD owns the bytes now */
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) {
        srv_buf_free(b);
        return MHD_NO;
    }
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (extra_name)
        MHD_add_response_header(resp, extra_name, extra_value);
    if (close_after || atomic_load(&S.draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, srv_buf *b,
                                 const char *ctype, const char *extra_name, const char *extra_value)
{
    return send_body_close(c, status, b, ctype, extra_name, extra_value, 0);
}

/* Sends bytes that live as long as the process (the embedded documents). */
static enum MHD_Result send_static(struct MHD_Connection *c, const char *p, unsigned long n,
                                   const char *ctype)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, (void *)p, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (atomic_load(&S.draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Sends err in the route's shape and counts it. */
static enum MHD_Result send_error(struct MHD_Connection *c, const req_state *st,
                                  const srv_error *err)
{
    srv_buf b = {0};
    if (st->kind == K_INFER && st->route == SRV_ROUTE_OPENAI)
        srv_error_json_openai(&b, err);
    else
        srv_error_json_tei(&b, err);
    srv_metrics_failure(&S.metrics, srv_fail_kind_of(err));
    slog("%s -> %d %s", st->what, err->status, err->code ? err->code : err->type);
    const char *hn = NULL, *hv = NULL;
    if (err->status == 401) {
        hn = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
        hv = "Bearer";
    } else if (err->status == 429 || err->status == 503) {
        hn = MHD_HTTP_HEADER_RETRY_AFTER;
        hv = "1";
    } else if (err->status == 405) {
        hn = MHD_HTTP_HEADER_ALLOW;
        hv = st->allow ? st->allow : "GET, HEAD, POST";
    }
    /* After a framing error the stream cannot be trusted: close it. */
    int close_after = err->code && strcmp(err->code, "bad_request") == 0;
    return send_body_close(c, (unsigned)err->status, &b, "application/json", hn, hv, close_after);
}

/* ------------------------------------------------------------ routing */

static int is_ready(void)
{
    return atomic_load_explicit(&S.ready, memory_order_acquire);
}

/* Constant-time check of "Authorization: Bearer KEY": the loop length
 * depends only on the configured key, never on where a guess differs. */
static int auth_ok(struct MHD_Connection *c)
{
    if (!S.api_key)
        return 1;
    const char *h =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    const char *tok = h + 7;
    size_t n = strlen(tok);
    volatile unsigned diff = (unsigned)(n != S.api_key_len);
    for (size_t i = 0; i < S.api_key_len; i++) {
        unsigned char g = i < n ? (unsigned char)tok[i] : 0;
        diff |= (unsigned)((unsigned char)S.api_key[i] ^ g);
    }
    return diff == 0;
}

static void classify(req_state *st, const char *url, const char *method,
                     char *what, size_t what_len)
{
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int post = strcmp(method, "POST") == 0;
    st->kind = K_NOT_FOUND;
    st->route = SRV_ROUTE_EMBED;
    snprintf(what, what_len, "%.16s %.200s", method, url);
    for (size_t i = 0; i < srv_n_routes; i++) {
        const srv_route_def *rt = &srv_routes[i];
        if (strcmp(url, rt->path) != 0)
            continue;
        st->route = rt->route;
        st->kind = get ? rt->get_kind : post ? rt->post_kind : K_BAD_METHOD;
        st->allow = rt->get_kind == K_BAD_METHOD    ? "POST"
                    : rt->post_kind == K_BAD_METHOD ? "GET, HEAD"
                                                    : "GET, HEAD, POST";
        return;
    }
}

/* ------------------------------------------------------------ handlers */

static enum MHD_Result handle_health(struct MHD_Connection *c, req_state *st)
{
    if (!is_ready()) {
        srv_error e;
        srv_fail(&e, 503, "Unhealthy", NULL, "model_loading",
                 atomic_load(&S.load_failed) ? "the model failed to load"
                                             : "the model is loading");
        return send_error(c, st, &e);
    }
    srv_buf b = {0};
    return send_body(c, 200, &b, NULL, NULL, NULL);
}

static enum MHD_Result handle_info(struct MHD_Connection *c, req_state *st)
{
    srv_buf b = {0};
    srv_buf_puts(&b, S.info_body);
    return send_body(c, 200, &b, "application/json", NULL, NULL);
}

static enum MHD_Result handle_metrics(struct MHD_Connection *c)
{
    srv_buf b = {0};
    srv_metrics_render(&S.metrics, &b, is_ready() ? S.model.id : "",
                       medembed_version());
    return send_body(c, 200, &b, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
}

static int client_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

static void log_inputs(const srv_request *r)
{
    for (int32_t i = 0; i < r->n; i++) {
        if (r->inputs[i].text) {
            /* Escaped as every logged field is, piece by piece. */
            fprintf(stderr, "medembed serve: input %d: ", i);
            char esc[1040];
            for (size_t o = 0; o < r->inputs[i].len; o += 256) {
                size_t k = r->inputs[i].len - o < 256 ? r->inputs[i].len - o : 256;
                fputs(srv_log_escape(r->inputs[i].text + o, k, esc, sizeof esc), stderr);
            }
            fputc('\n', stderr);
        } else
            fprintf(stderr, "medembed serve: input %d: %d token ids\n", i,
                    r->inputs[i].n_ids);
    }
}

/* The vectors of a request and their JSON text grow with its number of
 * inputs, not with its body (512 one-letter inputs are a 3 kB body and a
 * few MB of answer): once parsed, a request reserves them in the memory
 * budget too, n * dim * (4 bytes of float + up to 20 of JSON text). */
static int reserve_outputs(req_state *st, int32_t n, srv_error *e)
{
    long long more = (long long)n * S.model.dim * 24;
    long long used = atomic_fetch_add(&S.mem_used, more);
    st->reserved += more;
    if (used + more > S.max_memory) {
        /* refused: given back now, not when the answer has gone out, so a
         * client's next request does not find it still held */
        atomic_fetch_sub(&S.mem_used, more);
        st->reserved -= more;
        return srv_fail(e, 503, "Overloaded", NULL, "memory_budget_exceeded",
                        "the server's memory budget (--max-memory %lld bytes) is in use by "
                        "other requests; retry",
                        S.max_memory);
    }
    return 0;
}

/* POST /search in BM25 mode: the query's words go to the keyword index as
 * they are; nothing is embedded. Takes ownership of r. */
static enum MHD_Result answer_keyword_search(struct MHD_Connection *c, req_state *st,
                                             srv_request *r)
{
    srv_error e;
    srv_buf b = {0};
    enum MHD_Result ret;
    if (srv_search_respond(S.search, r, NULL, S.reranker, &b, &e) != 0) {
        srv_buf_free(&b);
        ret = send_error(c, st, &e);
    } else {
        srv_metrics_success(&S.metrics, SRV_ROUTE_SEARCH, 0, 1, 0);
        srv_metrics_observe(&S.metrics, SRV_H_REQUEST_DURATION, srv_now() - st->t_start);
        ret = send_body(c, 200, &b, "application/json", NULL, NULL);
    }
    srv_request_free(r);
    return ret;
}

/* POST /rerank: the cross-encoder scores every (query, text) pair. Takes
 * ownership of r. */
static enum MHD_Result answer_rerank(struct MHD_Connection *c, req_state *st, srv_request *r)
{
    srv_error e;
    srv_buf b = {0};
    enum MHD_Result ret;
    double infer = 0;
    if (srv_rerank_respond(S.reranker, r, S.auto_truncate, &b, &e, &infer) != 0) {
        srv_buf_free(&b);
        ret = send_error(c, st, &e);
    } else {
        srv_metrics_observe(&S.metrics, SRV_H_INFERENCE_DURATION, infer);
        srv_metrics_success(&S.metrics, SRV_ROUTE_RERANK, 1, r->n, 0);
        srv_metrics_observe(&S.metrics, SRV_H_REQUEST_DURATION, srv_now() - st->t_start);
        ret = send_body(c, 200, &b, "application/json", NULL, NULL);
    }
    srv_request_free(r);
    return ret;
}

/* POST /v1/embeddings, /embed, /search, /rerank: parse, tokenize, batch,
 * answer. */
static enum MHD_Result handle_infer(struct MHD_Connection *c, req_state *st)
{
    srv_request r;
    srv_error e;
    if (srv_request_parse(st->route, st->body, st->len, &S.limits, &r, &e) != 0) {
        srv_metrics_request(&S.metrics, (int)st->route, 0);
        return send_error(c, st, &e);
    }
    srv_metrics_request(&S.metrics, (int)st->route, !r.single);
    if (st->route == SRV_ROUTE_RERANK ? !S.reranker : !S.embedder) {
        /* TEI's answer to a route the served model cannot do */
        srv_request_free(&r);
        srv_fail(&e, 424, "Backend", NULL, "model_type",
                 st->route == SRV_ROUTE_RERANK
                     ? "model is not a re-ranker model (serve a cross-encoder with -m, or "
                       "add one with --rerank)"
                     : "model is not an embedding model");
        return send_error(c, st, &e);
    }
    if (st->route == SRV_ROUTE_SEARCH && r.rerank && !S.reranker) {
        srv_request_free(&r);
        srv_fail(&e, 424, "Backend", "rerank", "model_type",
                 "`rerank` needs a cross-encoder: start the server with --rerank "
                 "CROSS_ENCODER");
        return send_error(c, st, &e);
    }
    if (reserve_outputs(st, r.n, &e) != 0) {
        srv_request_free(&r);
        return send_error(c, st, &e);
    }
    if (S.log_inputs)
        log_inputs(&r);
    if (st->route == SRV_ROUTE_SEARCH && !S.search) {
        srv_request_free(&r);
        srv_fail(&e, 404, "Validation", NULL, "no_index",
                 "POST /search needs the server to be started with --index INDEX");
        return send_error(c, st, &e);
    }
    if (st->route == SRV_ROUTE_SEARCH && r.search_mode == MEDEMBED_SEARCH_BM25)
        return answer_keyword_search(c, st, &r);
    if (st->route == SRV_ROUTE_RERANK)
        return answer_rerank(c, st, &r);
    if (st->route == SRV_ROUTE_SEARCH)
        r.truncate = 1; /* a long query is cut, as a search box would */

    double t0 = srv_now();
    srv_prepared p;
    if (srv_prepare(&S.model, &r, S.auto_truncate, &p, &e) != 0) {
        srv_request_free(&r);
        return send_error(c, st, &e);
    }
    double t_tok = srv_now() - t0;
    srv_metrics_observe(&S.metrics, SRV_H_TOKENIZATION_DURATION, t_tok);
    for (int32_t i = 0; i < p.n; i++)
        srv_metrics_observe(&S.metrics, SRV_H_INPUT_LENGTH, p.lens[i]);

    float *vecs = malloc(sizeof *vecs * (size_t)p.n * (size_t)S.model.dim);
    if (!vecs) {
        srv_prepared_free(&p);
        srv_request_free(&r);
        srv_fail(&e, 500, "Backend", NULL, "out_of_memory", "out of memory");
        return send_error(c, st, &e);
    }
    srv_job job;
    memset(&job, 0, sizeof job);
    job.n = p.n;
    job.set = p.set;
    job.lens = p.lens;
    job.flags = p.flags;
    job.fd = client_fd(c);
    job.out = vecs;
    srv_batcher_run(S.batcher, &job);
    srv_metrics_observe(&S.metrics, SRV_H_QUEUE_DURATION, job.queue_seconds);
    srv_metrics_observe(&S.metrics, SRV_H_INFERENCE_DURATION, job.infer_seconds);

    enum MHD_Result ret;
    if (job.status == SRV_JOB_CANCELLED) {
        srv_metrics_failure(&S.metrics, SRV_FAIL_DISCONNECTED);
        ret = MHD_NO; /* nobody to answer: close the connection */
    } else if (job.status == SRV_JOB_FAILED) {
        srv_fail(&e, 500, "Backend", NULL, "inference_failed", "%s", job.err);
        ret = send_error(c, st, &e);
    } else {
        int32_t d = S.model.dim;
        /* A search query stays exactly as the library embeds it, as the
         * index's vectors do. */
        if (st->route != SRV_ROUTE_SEARCH)
            srv_postprocess(&S.model, &r, &p, vecs, p.n, &d);
        srv_buf b = {0};
        if (st->route == SRV_ROUTE_OPENAI) {
            srv_openai_response(&b, vecs, p.n, d, r.base64, S.model.id, p.n_tokens);
        } else if (st->route == SRV_ROUTE_EMBED) {
            srv_tei_embed_response(&b, vecs, p.n, d);
        } else if (srv_search_respond(S.search, &r, vecs, S.reranker, &b, &e) != 0) {
            srv_buf_free(&b);
            ret = send_error(c, st, &e);
            goto done;
        }
        srv_metrics_success(&S.metrics, (int)st->route, !r.single, p.n, p.n_tokens);
        srv_metrics_observe(&S.metrics, SRV_H_REQUEST_DURATION, srv_now() - st->t_start);
        ret = send_body(c, 200, &b, "application/json", NULL, NULL);
    }
done:
    free(vecs);
    srv_prepared_free(&p);
    srv_request_free(&r);
    return ret;
}

static enum MHD_Result handle_tokenize(struct MHD_Connection *c, req_state *st)
{
    srv_request r;
    srv_error e;
    if (srv_request_parse(SRV_ROUTE_TOKENIZE, st->body, st->len, &S.limits, &r, &e) != 0) {
        srv_metrics_request(&S.metrics, SRV_ROUTE_TOKENIZE, 0);
        return send_error(c, st, &e);
    }
    srv_metrics_request(&S.metrics, SRV_ROUTE_TOKENIZE, !r.single);
    if (S.log_inputs)
        log_inputs(&r);
    srv_buf b = {0};
    double t0 = srv_now();
    if (srv_tokenize_response(&S.model, &r, &b, &e) != 0) {
        srv_buf_free(&b);
        srv_request_free(&r);
        return send_error(c, st, &e);
    }
    srv_metrics_observe(&S.metrics, SRV_H_TOKENIZATION_DURATION, srv_now() - t0);
    srv_metrics_success(&S.metrics, SRV_ROUTE_TOKENIZE, !r.single, r.n, 0);
    srv_request_free(&r);
    return send_body(c, 200, &b, "application/json", NULL, NULL);
}

/* ------------------------------------------------------------ MHD callbacks */

/* What the header fields say about framing and size, for every request
 * (the gate checked the first head of a connection; later heads on a
 * keep-alive connection are checked here). */
typedef struct head_scan {
    size_t bytes;
    int n_cl, cl_differ, n_te;
    const char *cl;
} head_scan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind vk, const char *key,
                                   const char *value)
{
    (void)vk;
    head_scan *h = cls;
    h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (h->n_cl++ && (!value || !h->cl || strcmp(value, h->cl) != 0))
            h->cl_differ = 1;
        if (!h->cl)
            h->cl = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        h->n_te++;
    }
    return MHD_YES;
}

static long long drain_limit(void)
{
    return 4LL * S.payload_limit + (1LL << 20);
}

/* Bytes of the memory budget a request with this body reserves: the body
 * itself plus what parsing and tokenizing it can take (bounded by the
 * parser's value limit). */
static long long request_cost(long long body_bytes)
{
    return body_bytes * 8 + 65536;
}

/* First call of a request: check its framing, then (in this order) the
 * API key, the route, readiness, the size and the memory budget. The
 * concurrency slot is taken later, once the body is complete. */
static enum MHD_Result on_first_call(struct MHD_Connection *c, req_state *st, const char *url,
                                     const char *what)
{
    srv_error *e = &st->pre;
    head_scan h;
    memset(&h, 0, sizeof h);
    MHD_get_connection_values(c, MHD_HEADER_KIND, scan_header, &h);
    srv_error fe;
    fe.status = 0;
    if (h.cl_differ)
        srv_fail(&fe, 400, "Validation", NULL, "bad_request",
                 "malformed HTTP request: two different Content-Length headers");
    else if (h.n_cl && h.n_te)
        srv_fail(&fe, 400, "Validation", NULL, "bad_request",
                 "malformed HTTP request: Content-Length and Transfer-Encoding together");
    else if (strlen(url) > S.head_limits.max_target)
        srv_fail(&fe, 414, "Validation", NULL, "uri_too_long",
                 "the request target is over %zu bytes", S.head_limits.max_target);
    else if (h.bytes > S.head_limits.max_head)
        srv_fail(&fe, 431, "Validation", NULL, "headers_too_large",
                 "the request head is over %zu bytes", S.head_limits.max_head);
    if (fe.status) {
        st->rejected = 2; /* answered now; the connection then closes */
        return send_error(c, st, &fe);
    }
    int public = srv_kind_public(st->kind);
    if (!public && !auth_ok(c)) {
        /* Before routing: without the key, nothing about the routes leaks. */
        st->rejected = 1;
        srv_fail(e, 401, "Unauthorized", NULL, "invalid_api_key",
                 "missing or wrong API key: send the header \"Authorization: Bearer KEY\"");
    } else if (st->kind == K_NOT_FOUND) {
        st->rejected = 1;
        srv_fail(e, 404, "NotFound", NULL, "not_found", "no route for %s", what);
    } else if (st->kind == K_BAD_METHOD) {
        st->rejected = 1;
        srv_fail(e, 405, "Validation", NULL, "method_not_allowed",
                 "%s: method not allowed (allowed: %s)", what, st->allow);
    } else if (!public && !is_ready()) {
        st->rejected = 1;
        srv_fail(e, 503, "Unhealthy", NULL, "model_loading", "the model is loading");
    }

    long long cl = -1;
    if (h.cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(h.cl, &end, 10);
        cl = errno || end == h.cl || v > (unsigned long long)LLONG_MAX ? LLONG_MAX : (long long)v;
    }
    int has_body = cl > 0 || h.n_te > 0;
    if (!st->rejected && cl > S.payload_limit) {
        st->rejected = 1;
        srv_fail(e, 413, "Validation", NULL, "payload_too_large",
                 "the request body is %lld bytes, over the payload limit of %ld bytes", cl,
                 S.payload_limit);
    }
    if (!st->rejected && has_body) {
        long long cost = request_cost(cl > 0 ? cl : S.payload_limit);
        long long used = atomic_fetch_add(&S.mem_used, cost);
        st->reserved = cost;
        if (used + cost > S.max_memory) {
            atomic_fetch_sub(&S.mem_used, cost); /* a dropped body holds nothing */
            st->reserved = 0;
            st->rejected = 1;
            srv_fail(e, 503, "Overloaded", NULL, "memory_budget_exceeded",
                     "the server's memory budget (--max-memory %lld bytes) is in use by other "
                     "requests; retry",
                     S.max_memory);
        }
    }
    if (st->rejected && has_body) {
        const char *expect =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
        if ((expect && strcasecmp(expect, "100-continue") == 0) || cl > drain_limit()) {
            /* The client waits for a go-ahead before sending the body (or
             * the body is too large to read and drop): answer now, and
             * libmicrohttpd closes the connection. */
            st->rejected = 2;
            return send_error(c, st, e);
        }
        /* Otherwise the body is read and dropped (up to drain_limit()) and
         * the answer follows it, so that the client, still sending, reads
         * the answer instead of a reset connection. */
    }
    srv_gate_set_phase(S.gate, c, SRV_GATE_BODY);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    req_state *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        *con_cls = st;
        st->t_start = srv_now();
        st->counted = 1;
        atomic_fetch_add(&S.in_flight, 1);
        srv_metrics_gauge_add(&S.metrics, &S.metrics.in_flight, 1);
        char what[256];
        classify(st, url, method, what, sizeof what);
        snprintf(st->what, sizeof st->what, "%.16s %.64s", method, url);
        return on_first_call(c, st, url, what);
    }
    if (st->rejected == 2)
        return MHD_YES;
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (st->rejected || st->too_large) {
            /* Read and drop: the answer is already decided. */
            st->dropped += n;
            return st->dropped > (size_t)drain_limit() ? MHD_NO : MHD_YES;
        }
        if (st->len + n > (size_t)S.payload_limit) {
            st->too_large = 1;
            st->dropped = st->len + n;
            free(st->body);
            st->body = NULL;
            st->len = st->cap = 0;
            return MHD_YES;
        }
        if (st->len + n > st->cap) {
            /* Content-Length (reserved in the budget) is the first guess. */
            const char *cl =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            size_t cap = st->cap ? st->cap : cl ? (size_t)strtoull(cl, NULL, 10) : 4096;
            if (cap < 4096)
                cap = 4096;
            while (cap < st->len + n)
                cap *= 2;
            if (cap > (size_t)S.payload_limit)
                cap = (size_t)S.payload_limit;
            char *p = realloc(st->body, cap);
            if (!p)
                return MHD_NO;
            st->body = p;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        return MHD_YES;
    }
    /* The whole request is in. */
    srv_gate_set_phase(S.gate, c, SRV_GATE_WORKING);
    if (st->rejected)
        return send_error(c, st, &st->pre);
    if (st->too_large) {
        srv_error e;
        srv_fail(&e, 413, "Validation", NULL, "payload_too_large",
                 "the request body is over the payload limit of %ld bytes", S.payload_limit);
        return send_error(c, st, &e);
    }
    if (st->kind != K_HEALTH && st->kind != K_METRICS) {
        /* Every route that does work holds a slot while it does, and only
         * then: a client still sending its body holds none. */
        long n = atomic_fetch_add(&S.slots, 1);
        st->has_slot = 1;
        if (n >= S.max_concurrent) {
            srv_error e;
            srv_fail(&e, 429, "Overloaded", NULL, "rate_limit_exceeded",
                     "Model is overloaded: %ld concurrent requests is the limit "
                     "(--max-concurrent-requests)",
                     S.max_concurrent);
            return send_error(c, st, &e);
        }
    }
    switch (st->kind) {
    case K_HEALTH:
        return handle_health(c, st);
    case K_METRICS:
        return handle_metrics(c);
    case K_OPENAPI:
        return send_static(c, srv_openapi_json, srv_openapi_json_size, "application/json");
    case K_DOCS:
        return send_static(c, srv_docs_html, srv_docs_html_size, "text/html; charset=utf-8");
    case K_INFO:
        return handle_info(c, st);
    case K_TOKENIZE:
        return handle_tokenize(c, st);
    case K_INFER:
        return handle_infer(c, st);
    default:
        return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_state *st = *con_cls;
    if (!st)
        return;
    if (st->has_slot)
        atomic_fetch_sub(&S.slots, 1);
    if (st->reserved)
        atomic_fetch_sub(&S.mem_used, st->reserved);
    if (st->counted) {
        srv_metrics_gauge_add(&S.metrics, &S.metrics.in_flight, -1);
        atomic_fetch_sub(&S.in_flight, 1);
    }
    int big = st->cap >= (1u << 20);
    free(st->body);
    free(st);
    *con_cls = NULL;
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        srv_gate_set_phase(S.gate, c, SRV_GATE_IDLE);
    /* Parsing a large body leaves many small blocks in the connection
     * thread's arena: give the pages back, so a burst does not stay. */
    if (big)
        malloc_trim(0);
}

static void on_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    srv_gate_notify(S.gate, c, socket_context, toe);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    /* libmicrohttpd answers a few malformed requests itself (a bad
     * Content-Length on a later request of a keep-alive connection): count
     * them with the others, by the status its log line names. */
    unsigned status = 0;
    if (sscanf(msg, "Error processing request (HTTP response code is %u", &status) == 1 &&
        status >= 400) {
        srv_error e;
        srv_fail(&e, (int)status, "Validation", NULL, status == 400 ? "bad_request" : "",
                 "answered by libmicrohttpd");
        srv_metrics_failure(&S.metrics, srv_fail_kind_of(&e));
    }
    slog("libmicrohttpd: %s", msg);
}

/* ------------------------------------------------------------ loading */

static char *build_info(void)
{
    srv_buf b = {0};
    const char *pool = medembed_pooling_name(medembed_model_pooling(S.model.m));
    int32_t dt = medembed_model_dtype(S.model.m);
    const char *dtype = dt == MEDEMBED_DTYPE_BF16   ? "bfloat16"
                        : dt == MEDEMBED_DTYPE_INT8 ? "int8"
                                                    : "float32";
    srv_buf_puts(&b, "{\"model_id\":");
    srv_buf_json_string(&b, S.model.id, strlen(S.model.id));
    srv_buf_printf(&b, ",\"model_sha\":null,\"model_dtype\":\"%s\",\"model_type\":", dtype);
    if (S.embedder) {
        srv_buf_puts(&b, "{\"embedding\":{\"pooling\":");
        srv_buf_json_string(&b, pool, strlen(pool));
        srv_buf_puts(&b, "}}");
    } else {
        /* transformers' default label names for a one-label head */
        srv_buf_puts(&b, "{\"reranker\":{\"id2label\":{\"0\":\"LABEL_0\"},"
                         "\"label2id\":{\"LABEL_0\":0}}}");
    }
    /* medembed: the cross-encoder served next to the embedder (--rerank) */
    srv_buf_puts(&b, ",\"reranker\":");
    if (S.reranker && S.embedder) {
        const srv_model *rm = srv_reranker_model(S.reranker);
        srv_buf_puts(&b, "{\"model_id\":");
        srv_buf_json_string(&b, rm->id, strlen(rm->id));
        srv_buf_printf(&b, ",\"max_input_length\":%d,\"medembed\":%s}", rm->max_length,
                       rm->info_json);
    } else {
        srv_buf_puts(&b, "null");
    }
    srv_buf_printf(&b,
                   ",\"max_concurrent_requests\":%ld,\"max_input_length\":%d,"
                   "\"max_batch_tokens\":%ld,\"max_batch_requests\":null,"
                   "\"max_client_batch_size\":%ld,\"auto_truncate\":%s,"
                   "\"tokenization_workers\":%ld,\"version\":\"%s\",\"sha\":null,"
                   "\"docker_label\":null,\"dim\":%d,\"index\":%s,\"medembed\":%s}",
                   S.max_concurrent, S.model.max_length, S.max_batch_tokens, S.max_client_batch,
                   S.auto_truncate ? "true" : "false", S.max_concurrent, medembed_version(),
                   S.model.dim, S.search ? "true" : "false", S.model.info_json);
    if (b.oom) {
        srv_buf_free(&b);
        return NULL;
    }
    return b.p;
}

static void *loader_main(void *arg)
{
    medembed_model *m = NULL;
    medembed_ctx *ctx = NULL;
    if (cli_load_model(S.model_arg, S.dtype, 0, &m) != 0)
        goto fail;
    if (srv_model_init(&S.model, m, S.model_arg) != 0) {
        cli_error("out of memory after loading the model");
        goto fail;
    }
    m = NULL; /* S.model owns it */
    S.embedder = medembed_model_kind(S.model.m) == MEDEMBED_KIND_EMBEDDER;
    if (!S.embedder && S.rerank_arg) {
        cli_error("-m %s is a cross-encoder: give the embedding model to -m and the "
                  "cross-encoder to --rerank",
                  S.model_arg);
        goto fail;
    }
    if (!S.embedder && S.index_path) {
        cli_error("--index needs an embedding model; -m %s is a cross-encoder", S.model_arg);
        goto fail;
    }
    if (S.rerank_arg) {
        if (cli_load_model(S.rerank_arg, S.dtype, 0, &m) != 0)
            goto fail;
        if (srv_model_init(&S.rr_model, m, S.rerank_arg) != 0) {
            cli_error("out of memory after loading the cross-encoder");
            goto fail;
        }
        m = NULL; /* S.rr_model owns it */
    }
    if (!S.embedder || S.rerank_arg) {
        char err[512];
        if (srv_reranker_open(S.embedder ? &S.rr_model : &S.model, (int32_t)S.threads,
                              &S.reranker, err, sizeof err) != 0) {
            cli_error("%s%s", S.embedder ? "--rerank: " : "-m: ", err);
            goto fail;
        }
    }
    if (S.max_batch_tokens < S.model.max_length) {
        cli_error("--max-batch-tokens %ld is below the model's input limit of %d tokens; "
                  "raise it to at least %d",
                  S.max_batch_tokens, S.model.max_length, S.model.max_length);
        goto fail;
    }
    if (S.embedder && medembed_ctx_create(S.model.m, (int32_t)S.threads, &ctx) != MEDEMBED_OK) {
        cli_error("cannot create a context (out of memory?)");
        goto fail;
    }
    if (S.index_path) {
        char err[512];
        if (srv_search_open(S.index_path, S.model.m, &S.search, err, sizeof err) != 0) {
            cli_error("--index %s: %s", S.index_path, err);
            goto fail;
        }
    }
    S.limits.max_client_batch = (int32_t)S.max_client_batch;
    S.limits.dim = S.model.dim;
    S.limits.vocab_size = S.model.vocab_size;
    S.limits.max_k = 10000;
    S.limits.max_filters = 64;
    /* Token ids beyond four times the input limit are of no use even with
     * truncation; the bound keeps parsing memory near the body size. */
    S.limits.max_values =
        (int32_t)(S.max_client_batch * (4 * (long)S.model.max_length + 16) + 1024);
    S.info_body = build_info();
    if (!S.info_body) {
        cli_error("out of memory");
        goto fail;
    }
    if (S.embedder) {
        if (srv_batcher_create(ctx, S.model.dim, (int32_t)S.max_batch_tokens, &S.metrics,
                               &S.batcher) != 0) {
            cli_error("cannot start the batching thread");
            goto fail;
        }
        slog("model %s loaded: dim %d, max %d tokens, %d threads, kernels %s", S.model.id,
             S.model.dim, S.model.max_length, (int)medembed_ctx_threads(ctx), medembed_isa());
        ctx = NULL; /* the batcher owns it */
    }
    if (S.reranker) {
        const srv_model *rm = srv_reranker_model(S.reranker);
        slog("cross-encoder %s loaded for /rerank: max %d tokens per pair, kernels %s", rm->id,
             rm->max_length, medembed_isa());
    }
    atomic_store_explicit(&S.ready, 1, memory_order_release);
    pthread_kill(S.main_thread, SIGUSR1);
    return NULL;
fail:
    medembed_ctx_free(ctx);
    medembed_model_free(m);
    atomic_store(&S.load_failed, 1);
    pthread_kill(S.main_thread, SIGUSR1);
    return NULL;
}

/* ------------------------------------------------------------ options */

static void serve_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed serve -m MODEL [options]\n"
            "  HTTP server with the OpenAI embeddings API (POST /v1/embeddings) and Hugging\n"
            "  Face text-embeddings-inference routes (POST /embed, /rerank, /tokenize;\n"
            "  GET /info, /health, /metrics), batching concurrent requests into shared\n"
            "  forward passes.\n"
            "  GET /openapi.json describes every route (OpenAPI 3); GET /docs renders it.\n"
            "  -m, --model MODEL               model folder, or hub repo id ORG/NAME[@REV]\n"
            "                                  (found or pulled as for embed: docs/PULL.md)\n"
            "      --host ADDR                 address to bind (default 127.0.0.1)\n"
            "      --port N                    TCP port (default 8080; 0 = any free port)\n"
            "      --api-key-file FILE         require \"Authorization: Bearer KEY\", KEY being\n"
            "                                  the file's first line; or set MEDEMBED_API_KEY.\n"
            "                                  Prefer these to --api-key KEY, which other local\n"
            "                                  users can read in the process list.\n"
            "                                  /health, /metrics, /openapi.json and /docs\n"
            "                                  stay open\n"
            "      --api-key KEY               as --api-key-file, the key on the command line\n"
            "      --max-batch-tokens N        tokens per forward pass (default 16384)\n"
            "      --max-client-batch-size N   inputs per request (default 512; more: 422);\n"
            "                                  a big request is split into the batcher's\n"
            "                                  token-budgeted forward passes, in order\n"
            "      --strict-client-batch       TEI's limit: --max-client-batch-size defaults\n"
            "                                  to 32, TEI's, for clients that rely on its 422\n"
            "      --max-concurrent-requests N requests in progress before 429 (default 512)\n"
            "      --payload-limit BYTES       request body limit (default 2000000)\n"
            "      --max-memory BYTES          memory budget of requests in progress; beyond\n"
            "                                  it 503 (default: 16 bodies at the payload limit\n"
            "                                  at 8x, at least 256 MiB)\n"
            "      --header-timeout S          seconds to send a request head; also the\n"
            "                                  keep-alive idle limit (default 10)\n"
            "      --request-timeout S         seconds to send a body after its head, in total\n"
            "                                  (default 60)\n"
            "      --max-connections-per-ip N  connections from one address (default 128;\n"
            "                                  raise it behind a reverse proxy)\n"
            "      --auto-truncate true|false  truncate long inputs when a request does not\n"
            "                                  say (default false: 422, as TEI)\n"
            "      --index INDEX               serve POST /search over this index\n"
            "      --rerank CROSS_ENCODER      also serve POST /rerank (TEI) with this\n"
            "                                  cross-encoder folder or repo id; -m may itself\n"
            "                                  be a cross-encoder, which serves /rerank alone\n"
            "      --threads N                 inference threads (default: all CPUs)\n"
            "      --dtype f32|bf16|int8       compute precision (default f32)\n"
            "      --shutdown-timeout S        on SIGTERM, wait at most S seconds for\n"
            "                                  requests in flight (default 30)\n"
            "      --log-inputs                log request texts (off: texts are patient data)\n");
}

enum {
    O_HOST = CLI_OPT_LOCAL,
    O_PORT,
    O_API_KEY,
    O_MAX_BATCH_TOKENS,
    O_MAX_CLIENT_BATCH,
    O_MAX_CONCURRENT,
    O_PAYLOAD,
    O_AUTO_TRUNC,
    O_LOG_INPUTS,
    O_SHUTDOWN,
    O_API_KEY_FILE,
    O_MAX_MEMORY,
    O_HEADER_TIMEOUT,
    O_REQUEST_TIMEOUT,
    O_PER_IP,
    O_STRICT_CLIENT_BATCH,
    O_RERANK
};

/* The first line of path, without its line end: the API key. */
static char *read_key_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("--api-key-file %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    n = strcspn(buf, "\r\n");
    buf[n] = 0;
    if (n == 0) {
        cli_error("--api-key-file %s: the file's first line is empty; put the key there", path);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)buf[i] < 0x21 || buf[i] == 0x7f) {
            cli_error("--api-key-file %s: the key contains a space or control byte", path);
            return NULL;
        }
    }
    char *k = strdup(buf);
    if (!k)
        cli_error("out of memory");
    return k;
}

static int parse_bool(const char *flag, const char *s, int *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = 1;
    } else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = 0;
    } else {
        cli_error("%s expects true or false, got \"%s\"", flag, s);
        return -1;
    }
    return 0;
}

/* Seconds with up to three decimals (0.5, 10) into milliseconds, 1 ms to a day.
 */
static int parse_seconds(const char *flag, const char *s, long *ms)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.001 && v <= 86400)) {
        cli_error("%s expects seconds between 0.001 and 86400, got \"%s\"", flag, s);
        return -1;
    }
    *ms = (long)(v * 1000 + 0.5);
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTION_MODEL,
        {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},
        {"api-key", required_argument, 0, O_API_KEY},
        {"max-batch-tokens", required_argument, 0, O_MAX_BATCH_TOKENS},
        {"max-client-batch-size", required_argument, 0, O_MAX_CLIENT_BATCH},
        {"strict-client-batch", no_argument, 0, O_STRICT_CLIENT_BATCH},
        {"max-concurrent-requests", required_argument, 0, O_MAX_CONCURRENT},
        {"payload-limit", required_argument, 0, O_PAYLOAD},
        {"auto-truncate", required_argument, 0, O_AUTO_TRUNC},
        CLI_OPTION_INDEX,
        {"log-inputs", no_argument, 0, O_LOG_INPUTS},
        CLI_OPTION_THREADS,
        CLI_OPTION_DTYPE,
        {"shutdown-timeout", required_argument, 0, O_SHUTDOWN},
        {"api-key-file", required_argument, 0, O_API_KEY_FILE},
        {"max-memory", required_argument, 0, O_MAX_MEMORY},
        {"header-timeout", required_argument, 0, O_HEADER_TIMEOUT},
        {"request-timeout", required_argument, 0, O_REQUEST_TIMEOUT},
        {"max-connections-per-ip", required_argument, 0, O_PER_IP},
        {"rerank", required_argument, 0, O_RERANK},
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    cli_common co;
    cli_common_init(&co, "serve", serve_usage);
    S.host = "127.0.0.1";
    S.port = 8080;
    S.max_batch_tokens = 16384;
    S.max_client_batch = 0; /* 512, or TEI's 32 with --strict-client-batch */
    int strict_client_batch = 0;
    S.max_concurrent = 512;
    S.payload_limit = 2000000;
    S.shutdown_timeout = 30;
    S.header_timeout = 10;
    S.request_timeout = 60;
    S.max_per_ip = 128;
    long max_memory = 0, header_ms = 0, request_ms = 0;
    const char *key_file = NULL;
    S.api_key = getenv("MEDEMBED_API_KEY");
    if (S.api_key && !*S.api_key)
        S.api_key = NULL;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        switch (c) {
        case O_HOST:
            S.host = optarg;
            break;
        case O_PORT:
            if (cli_parse_int("--port", optarg, 0, 65535, &S.port))
                return 2;
            break;
        case O_API_KEY:
            S.api_key = optarg;
            if (!*optarg) {
                cli_error("--api-key cannot be empty");
                return 2;
            }
            break;
        case O_MAX_BATCH_TOKENS:
            if (cli_parse_int("--max-batch-tokens", optarg, 2, 1 << 24, &S.max_batch_tokens))
                return 2;
            break;
        case O_STRICT_CLIENT_BATCH:
            strict_client_batch = 1;
            break;
        case O_MAX_CLIENT_BATCH:
            if (cli_parse_int("--max-client-batch-size", optarg, 1, 1 << 20,
                              &S.max_client_batch))
                return 2;
            break;
        case O_MAX_CONCURRENT:
            if (cli_parse_int("--max-concurrent-requests", optarg, 1, 100000,
                              &S.max_concurrent))
                return 2;
            break;
        case O_PAYLOAD:
            if (cli_parse_int("--payload-limit", optarg, 1, 1L << 31, &S.payload_limit))
                return 2;
            break;
        case O_AUTO_TRUNC:
            if (parse_bool("--auto-truncate", optarg, &S.auto_truncate))
                return 2;
            break;
        case O_LOG_INPUTS:
            S.log_inputs = 1;
            break;
        case O_SHUTDOWN:
            if (cli_parse_int("--shutdown-timeout", optarg, 0, 86400, &S.shutdown_timeout))
                return 2;
            break;
        case O_API_KEY_FILE:
            key_file = optarg;
            break;
        case O_RERANK:
            S.rerank_arg = optarg;
            break;
        case O_MAX_MEMORY:
            if (cli_parse_int("--max-memory", optarg, 1L << 20, 1L << 50, &max_memory))
                return 2;
            break;
        case O_HEADER_TIMEOUT:
            if (parse_seconds("--header-timeout", optarg, &header_ms))
                return 2;
            break;
        case O_REQUEST_TIMEOUT:
            if (parse_seconds("--request-timeout", optarg, &request_ms))
                return 2;
            break;
        case O_PER_IP:
            if (cli_parse_int("--max-connections-per-ip", optarg, 1, 100000, &S.max_per_ip))
                return 2;
            break;
        default:
            if ((rc = cli_common_opt(&co, c, optarg, argv)) != 0)
                return rc; /* -1: --help */
        }
    }
    if (cli_common_end(&co, argc, argv, NULL))
        return 2;
    S.model_arg = co.model;
    S.index_path = co.index;
    S.threads = co.threads;
    S.dtype = co.dtype;
    if (!S.model_arg) {
        cli_error("no model given: pass -m MODEL (a folder or a hub repo id)");
        return 2;
    }
    if (key_file) {
        static char *file_key;
        free(file_key);
        file_key = read_key_file(key_file);
        if (!file_key)
            return 2;
        S.api_key = file_key;
    }
    if (S.api_key)
        S.api_key_len = strlen(S.api_key);
    if (header_ms)
        S.header_timeout = (double)header_ms / 1000;
    if (request_ms)
        S.request_timeout = (double)request_ms / 1000;
    if (!S.max_client_batch)
        S.max_client_batch = strict_client_batch ? 32 : 512;
    long long full = request_cost(S.payload_limit);
    S.max_memory = max_memory ? max_memory : 16 * full > (256LL << 20) ? 16 * full : (256LL << 20);
    if (S.max_memory < full) {
        cli_error("--max-memory %lld is below what one request at the payload limit may "
                  "need (%lld bytes: 8x --payload-limit, plus 64 KiB)",
                  S.max_memory, full);
        return 2;
    }
    S.head_limits.max_target = 8192;
    S.head_limits.max_head = 16384;
    return 0;
}

/* Resolves --host/--port into addr; returns 0 or -1 (message printed). */
static int resolve_bind(struct sockaddr_storage *addr, socklen_t *len, int *ipv6)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%ld", S.port);
    int rc = getaddrinfo(S.host, port, &hints, &res);
    if (rc != 0 || !res) {
        cli_error("--host %s: cannot resolve: %s", S.host, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    *ipv6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

/* A non-blocking listening socket on addr; -1 (errno set) on failure. */
static int open_listener(const struct sockaddr_storage *addr, socklen_t len)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, 1024) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------ main */

int cmd_serve(int argc, char **argv)
{
    memset(&S, 0, sizeof S);
    int prc = parse_args(argc, argv);
    if (prc)
        return prc < 0 ? 0 : prc;
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    int ipv6 = 0;
    if (resolve_bind(&addr, &addr_len, &ipv6) != 0)
        return 2;

    /* Signals are taken synchronously by main (sigwait); every thread
     * created from here on inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    S.main_thread = pthread_self();
    srv_metrics_init(&S.metrics);

    /* Large bodies get their own mappings, returned to the system when
     * freed (the default threshold rises after such a free, and later
     * bodies would then stay in the heap). */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);

    /* The gate (gate.c) owns the listening socket and hands connections
     * with a valid head to libmicrohttpd. */
    int lfd = open_listener(&addr, addr_len);
    if (lfd < 0) {
        cli_error("cannot listen on %s port %ld: %s", S.host, S.port, strerror(errno));
        srv_metrics_destroy(&S.metrics);
        return 1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    /* Connections beyond the concurrency limit still get a 429 rather
     * than a refused connection, up to a margin. */
    unsigned conn_limit = (unsigned)S.max_concurrent + 64;
    /* libmicrohttpd's own limits sit above the server's (head.c), which
     * answer first and in JSON. */
    size_t pool = 4 * S.head_limits.max_head + 65536;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, on_notify,
        NULL, MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(S.request_timeout + S.header_timeout + 1), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        pool, MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_END);
    if (!d) {
        cli_error("cannot start libmicrohttpd: %s", errno ? strerror(errno) : "unknown error");
        close(lfd);
        srv_metrics_destroy(&S.metrics);
        return 1;
    }
    long port = S.port;
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    if (getsockname(lfd, (struct sockaddr *)&bound, &bound_len) == 0)
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    srv_gate_opts go = {
        .listen_fd = lfd,
        .daemon = d,
        .head = S.head_limits,
        .header_timeout = S.header_timeout,
        .request_timeout = S.request_timeout,
        .max_per_ip = S.max_per_ip,
        .max_pending = (long)conn_limit,
        .payload_limit = S.payload_limit,
        .max_announced = drain_limit(),
        .metrics = &S.metrics,
        .log = slog,
    };
    if (srv_gate_start(&go, &S.gate) != 0) {
        cli_error("cannot start the accepting thread: %s", strerror(errno));
        close(lfd);
        MHD_stop_daemon(d);
        srv_metrics_destroy(&S.metrics);
        return 1;
    }
    char shown[NI_MAXHOST];
    if (getnameinfo((struct sockaddr *)&addr, addr_len, shown, sizeof shown, NULL, 0,
                    NI_NUMERICHOST) != 0)
        snprintf(shown, sizeof shown, "%s", S.host);
    slog("listening on http://%s%s%s:%ld (loading %s)", ipv6 ? "[" : "", shown, ipv6 ? "]" : "",
         port, S.model_arg);

    pthread_t loader;
    int have_loader = pthread_create(&loader, NULL, loader_main, NULL) == 0;
    int rc = 0;
    if (!have_loader) {
        cli_error("cannot start the loader thread");
        rc = 1;
    }
    while (have_loader) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            if (atomic_load(&S.load_failed)) {
                rc = 1;
                break;
            }
            slog("ready");
            continue;
        }
        slog("%s: finishing requests in flight, then exiting", sig == SIGTERM ? "SIGTERM"
                                                                              : "SIGINT");
        break;
    }

    /* Drain. */
    atomic_store(&S.draining, 1);
    srv_gate_quiesce(S.gate);
    if (have_loader)
        pthread_join(loader, NULL);
    double t_end = srv_now() + (double)S.shutdown_timeout;
    double quiet_since = -1;
    while (srv_now() < t_end) {
        /* A request whose bytes arrived just before the signal shows up a
         * moment later, so require a short quiet period. */
        if (atomic_load(&S.in_flight) == 0) {
            if (quiet_since < 0)
                quiet_since = srv_now();
            else if (srv_now() - quiet_since > 0.2)
                break;
        } else {
            quiet_since = -1;
        }
        /* A second signal while draining means "now". */
        struct timespec ts = {0, 10 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            slog("second %s: exiting without waiting for %ld request(s)",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&S.in_flight));
            _exit(1);
        }
    }
    if (atomic_load(&S.in_flight) > 0)
        slog("shutdown timeout: waiting for %ld request(s) still in flight",
             atomic_load(&S.in_flight));
    srv_gate_stop(S.gate);
    MHD_stop_daemon(d);
    srv_gate_free(S.gate);
    srv_batcher_free(S.batcher);
    srv_reranker_free(S.reranker);
    srv_search_free(S.search);
    srv_model_free(&S.model);
    srv_model_free(&S.rr_model);
    free(S.info_body);
    srv_metrics_destroy(&S.metrics);
    if (rc == 0)
        slog("stopped");
    return rc;
}
