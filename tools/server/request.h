/*
 * request.h - the HTTP server's request parser: a JSON body becomes a
 * validated srv_request, or an srv_error carrying the HTTP status, the TEI
 * error_type, the OpenAI param/code and a one-line message.
 *
 * It is pure: no model, no sockets, no globals. Everything it needs to know
 * about the model (dimension, vocabulary size, limits) comes in srv_limits,
 * so the libFuzzer target tests/fuzz/fuzz_http.c can call it directly.
 * Checks that need the model itself (prompt names, token counts) happen
 * later, in prepare.c.
 *
 * Error rules (TEI 1.9 semantics, see docs/SERVER.md):
 *   malformed JSON (syntax, invalid UTF-8)            400 Validation
 *   empty input ("" or [] or an empty id list)        400 Empty
 *   wrong type, missing field, bad enum value         422 Validation
 *   more inputs than --max-client-batch-size          422 Validation
 *   `dimensions` outside 1..dim, id outside vocab     422 Validation
 *   a top-level field the route does not define       422 Validation
 * (unknown_field) more JSON values than max_values, nesting over 32 422
 * Validation (too_many_values) The last two are found by a scan of the raw
 * bytes before anything is allocated, so a hostile body costs no more memory
 * than its own size.
 */
#ifndef MEDEMBED_SERVER_REQUEST_H
#define MEDEMBED_SERVER_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum srv_route {
    SRV_ROUTE_OPENAI = 0, /* POST /v1/embeddings, /embeddings */
    SRV_ROUTE_EMBED,      /* POST /embed (TEI) */
    SRV_ROUTE_TOKENIZE,   /* POST /tokenize (TEI) */
    SRV_ROUTE_SEARCH,     /* POST /search */
    SRV_ROUTE_RERANK      /* POST /rerank (TEI) */
} srv_route;

/* What the parser needs to know about the served model. */
typedef struct srv_limits {
    int32_t max_client_batch; /* inputs per request */
    int32_t dim;              /* output dimension: `dimensions` must be in 1..dim */
    int32_t vocab_size;       /* token ids must be in [0, vocab_size) */
    int32_t max_k;            /* /search: k must be in 1..max_k */
    int32_t max_filters;      /* /search: at most this many filter expressions */
    int32_t max_values;       /* JSON values (arrays, objects, elements) per body; 0: any */
} srv_limits;

/* One input: a text (pointing into the parsed JSON, so valid while the
 * request lives) or a token-id sequence (owned). */
typedef struct srv_input {
    const char *text; /* UTF-8, may contain NUL; NULL for an id input */
    size_t len;
    int32_t *ids; /* token ids, used verbatim (no [CLS]/[SEP] added) */
    int32_t n_ids;
} srv_input;

typedef struct srv_request {
    srv_route route;
    int32_t n; /* number of inputs, >= 1 */
    srv_input *inputs;
    int single;             /* the input was one value, not an array of them */
    int truncate;           /* 1, 0, or -1 = the server's --auto-truncate */
    int truncate_left;      /* truncation_direction "left" */
    int normalize;          /* TEI `normalize` (default 1); OpenAI: always 1 */
    const char *prompt_name; /* or NULL: the model's default prompt applies */
    int32_t dimensions;     /* 0 = all of them */
    int base64;             /* OpenAI encoding_format "base64" */
    int add_special_tokens; /* /tokenize, default 1 */
    int32_t k;              /* /search, default 10 */
    const char **filters;   /* /search filter expressions (into the JSON) */
    int32_t n_filters;
    int32_t search_mode;    /* /search `mode`: medembed_search_mode, default dense */
    double alpha;           /* /search `alpha` (hybrid weighted fusion), -1 = RRF */
    const char *query;      /* /rerank `query` (into the JSON; may hold NUL) */
    size_t query_len;
    int raw_scores;         /* /rerank `raw_scores`: logits, no sigmoid */
    int return_text;        /* /rerank `return_text` */
    int rerank;             /* /search `rerank`: reorder with the --rerank cross-encoder */
    int32_t rerank_top;     /* /search `rerank_top`: hits it reads (default 50) */
    json_t *root; /* owns every string above */
} srv_request;

typedef struct srv_error {
    int status;        /* HTTP status */
    const char *type;  /* TEI error_type: "Validation", "Empty", "Overloaded", ... */
    const char *param; /* OpenAI `param`: the field at fault, or NULL */
    const char *code;  /* OpenAI `code`, or NULL */
    char msg[512];     /* one line naming the problem */
} srv_error;

/* Sets every field of err; returns -1 so callers can `return srv_fail(...)`. */
int srv_fail(srv_error *err, int status, const char *type, const char *param, const char *code,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Parses and validates body[0..len) for route. On success returns 0 and
 * fills out (free with srv_request_free). On failure returns -1, fills err
 * and leaves out empty (srv_request_free on it is still safe). Never reads
 * outside body; never aborts on any input. Thread-safe. */
int srv_request_parse(srv_route route, const char *body, size_t len, const srv_limits *lim,
                      srv_request *out, srv_error *err);

void srv_request_free(srv_request *r);

#endif
