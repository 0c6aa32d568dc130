/*
 * request.c - JSON body -> validated srv_request (see request.h for the
 * rules). Field shapes follow TEI's router types and OpenAI's embeddings
 * API: an input is a string, an array of strings, an array of token ids or
 * an array of such arrays (strings and id arrays may be mixed, as TEI's
 * untagged `Input` enum allows). Unknown fields are refused (serde's
 * deny_unknown_fields), before the body is parsed.
 */
#include "request.h"

#include "medembed.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_fail(srv_error *err, int status, const char *type, const char *param, const char *code,
             const char *fmt, ...)
{
    if (!err)
        return -1;
    err->status = status;
    err->type = type;
    err->param = param;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void srv_request_free(srv_request *r)
{
    if (!r)
        return;
    if (r->inputs)
        for (int32_t i = 0; i < r->n; i++)
            free(r->inputs[i].ids);
    free(r->inputs);
    free(r->filters);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* 422 for a field of the wrong type. */
static int bad_type(srv_error *err, const char *field, const char *want, const json_t *got)
{
    return srv_fail(err, 422, "Validation", field, "invalid_type", "`%s` must be %s, got %s",
                    field, want, json_kind(got));
}

/* An array whose elements are all integers (an empty array counts). */
static int is_id_array(const json_t *a)
{
    if (!json_is_array(a))
        return 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_integer(v))
            return 0;
    }
    return 1;
}

/* Fills in from a string or an id array; `field` names it in messages. */
static int take_input(const json_t *v, const char *field, int32_t index, int batch,
                      const srv_limits *lim, srv_input *in, srv_error *err)
{
    char where[64];
    if (batch)
        snprintf(where, sizeof where, "%s[%d]", field, index);
    else
        snprintf(where, sizeof where, "%s", field);
    if (json_is_string(v)) {
        in->text = json_string_value(v);
        in->len = json_string_length(v);
        if (in->len == 0)
            return srv_fail(err, 400, "Empty", field, "empty_input", "`%s` cannot be empty",
                            where);
        return 0;
    }
    if (!is_id_array(v))
        return srv_fail(err, 422, "Validation", field, "invalid_type",
                        "`%s` must be a string or an array of token ids, got %s", where,
                        json_kind(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return srv_fail(err, 400, "Empty", field, "empty_input", "`%s` cannot be empty", where);
    if (n > (size_t)INT32_MAX / 4)
        return srv_fail(err, 422, "Validation", field, "too_long", "`%s` has too many token ids",
                        where);
    in->ids = malloc(sizeof *in->ids * n);
    if (!in->ids)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory for %zu ids",
                        n);
    in->n_ids = (int32_t)n;
    for (size_t k = 0; k < n; k++) {
        json_int_t id = json_integer_value(json_array_get(v, k));
        if (id < 0 || id >= lim->vocab_size)
            return srv_fail(err, 422, "Validation", field, "invalid_token_id",
                            "`%s`: token id %lld at position %zu is outside the vocabulary "
                            "[0, %d)",
                            where, (long long)id, k, lim->vocab_size);
        in->ids[k] = (int32_t)id;
    }
    return 0;
}

/* `field` holds one input or an array of inputs. */
static int take_inputs(const json_t *root, const char *field, int allow_ids,
                       const srv_limits *lim, srv_request *r, srv_error *err)
{
    const json_t *v = json_object_get(root, field);
    if (!v)
        return srv_fail(err, 422, "Validation", field, "missing_field", "missing field `%s`",
                        field);
    /* One input: a string, or (where ids are allowed) one flat id array. */
    int single = json_is_string(v) || (allow_ids && is_id_array(v) && json_array_size(v) > 0);
    if (!single && !json_is_array(v))
        return srv_fail(err, 422, "Validation", field, "invalid_type",
                        "`%s` must be a string or an array, got %s", field, json_kind(v));
    size_t n = single ? 1 : json_array_size(v);
    if (n == 0)
        return srv_fail(err, 400, "Empty", field, "empty_input", "`%s` cannot be empty", field);
    if (n > (size_t)lim->max_client_batch)
        return srv_fail(err, 422, "Validation", field, "too_many_inputs",
                        "batch size %zu > maximum allowed batch size %d", n,
                        lim->max_client_batch);
    r->inputs = calloc(n, sizeof *r->inputs);
    if (!r->inputs)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    r->n = (int32_t)n;
    r->single = single;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = single ? v : json_array_get(v, i);
        if (!allow_ids && !json_is_string(e))
            return srv_fail(err, 422, "Validation", field, "invalid_type",
                            "`%s[%zu]` must be a string, got %s", field, i, json_kind(e));
        if (take_input(e, field, (int32_t)i, !single, lim, &r->inputs[i], err) != 0)
            return -1;
    }
    return 0;
}

/* Optional boolean: absent or null leaves *out unchanged. */
static int opt_bool(const json_t *root, const char *field, int *out, srv_error *err)
{
    const json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad_type(err, field, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

/* Optional string: absent or null leaves *out unchanged. */
static int opt_string(const json_t *root, const char *field, const char **out, srv_error *err)
{
    const json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad_type(err, field, "a string", v);
    *out = json_string_value(v);
    return 0;
}

static int opt_dimensions(const json_t *root, const srv_limits *lim, srv_request *r,
                          srv_error *err)
{
    const json_t *v = json_object_get(root, "dimensions");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return bad_type(err, "dimensions", "an integer", v);
    json_int_t d = json_integer_value(v);
    if (d < 1 || d > lim->dim)
        return srv_fail(err, 422, "Validation", "dimensions", "invalid_dimensions",
                        "`dimensions` must be between 1 and %d (the model's "
                        "dimension), got %lld",
                        lim->dim, (long long)d);
    r->dimensions = (int32_t)d;
    return 0;
}

static int parse_tei_common(const json_t *root, srv_request *r, srv_error *err)
{
    if (opt_bool(root, "truncate", &r->truncate, err) != 0)
        return -1;
    const char *dir = NULL;
    if (opt_string(root, "truncation_direction", &dir, err) != 0)
        return -1;
    if (dir) {
        /* TEI's enum is spelled Left/Right; accept lower case too. */
        if (strcmp(dir, "left") == 0 || strcmp(dir, "Left") == 0)
            r->truncate_left = 1;
        else if (strcmp(dir, "right") != 0 && strcmp(dir, "Right") != 0)
            return srv_fail(err, 422, "Validation", "truncation_direction", "invalid_value",
                            "`truncation_direction` must be \"left\" or \"right\"");
    }
    return opt_string(root, "prompt_name", &r->prompt_name, err);
}

/* Optional integer in 1..max: absent or null leaves *out unchanged. */
static int opt_count(const json_t *root, const char *field, int32_t max, int32_t *out,
                     srv_error *err)
{
    const json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return bad_type(err, field, "an integer", v);
    json_int_t x = json_integer_value(v);
    if (x < 1 || x > max)
        return srv_fail(err, 422, "Validation", field, "invalid_value",
                        "`%s` must be between 1 and %d, got %lld", field, max, (long long)x);
    *out = (int32_t)x;
    return 0;
}

/* The required, non-empty string `query` (/search, /rerank). */
static int take_query(const json_t *root, const char **text, size_t *len, srv_error *err)
{
    const json_t *q = json_object_get(root, "query");
    if (!q)
        return srv_fail(err, 422, "Validation", "query", "missing_field",
                        "missing field `query`");
    if (!json_is_string(q))
        return bad_type(err, "query", "a string", q);
    if (json_string_length(q) == 0)
        return srv_fail(err, 400, "Empty", "query", "empty_input", "`query` cannot be empty");
    *text = json_string_value(q);
    *len = json_string_length(q);
    return 0;
}

static int parse_search(const json_t *root, const srv_limits *lim, srv_request *r,
                        srv_error *err)
{
    const char *qt;
    size_t ql;
    if (take_query(root, &qt, &ql, err) != 0)
        return -1;
    r->inputs = calloc(1, sizeof *r->inputs);
    if (!r->inputs)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    r->n = 1;
    r->single = 1;
    r->inputs[0].text = qt;
    r->inputs[0].len = ql;
    r->alpha = -1;
    const json_t *mode = json_object_get(root, "mode");
    if (mode && !json_is_null(mode)) {
        if (!json_is_string(mode))
            return bad_type(err, "mode", "a string", mode);
        const char *m = json_string_value(mode);
        if (strcmp(m, "dense") == 0)
            r->search_mode = MEDEMBED_SEARCH_DENSE;
        else if (strcmp(m, "bm25") == 0)
            r->search_mode = MEDEMBED_SEARCH_BM25;
        else if (strcmp(m, "hybrid") == 0)
            r->search_mode = MEDEMBED_SEARCH_HYBRID;
        else
            return srv_fail(err, 422, "Validation", "mode", "invalid_value",
                            "`mode` must be \"dense\", \"bm25\" or \"hybrid\"");
    }
    if (r->search_mode != MEDEMBED_SEARCH_DENSE &&
        strlen(r->inputs[0].text) != r->inputs[0].len)
        return srv_fail(err, 422, "Validation", "query", "invalid_value",
                        "`query` cannot contain NUL characters for keyword search");
    const json_t *al = json_object_get(root, "alpha");
    if (al && !json_is_null(al)) {
        if (!json_is_number(al))
            return bad_type(err, "alpha", "a number", al);
        double a = json_number_value(al);
        if (!(a >= 0 && a <= 1))
            return srv_fail(err, 422, "Validation", "alpha", "invalid_value",
                            "`alpha` must be between 0 and 1, got %g", a);
        if (r->search_mode != MEDEMBED_SEARCH_HYBRID)
            return srv_fail(err, 422, "Validation", "alpha", "invalid_value",
                            "`alpha` applies to `mode` \"hybrid\"");
        r->alpha = a;
    }
    if (opt_count(root, "k", lim->max_k, &r->k, err) != 0 ||
        opt_bool(root, "rerank", &r->rerank, err) != 0 ||
        opt_count(root, "rerank_top", lim->max_k, &r->rerank_top, err) != 0)
        return -1;
    if (r->rerank_top && !r->rerank)
        return srv_fail(err, 422, "Validation", "rerank_top", "invalid_value",
                        "`rerank_top` applies with `rerank`: true");
    if (r->rerank) {
        if (!r->rerank_top)
            r->rerank_top = r->k > MEDEMBED_RERANK_TOP_DEFAULT ? r->k
                                                               : MEDEMBED_RERANK_TOP_DEFAULT;
        if (r->k > r->rerank_top)
            return srv_fail(err, 422, "Validation", "k", "invalid_value",
                            "`k` %d is more than `rerank_top` %d: the cross-encoder orders only "
                            "the hits it reads",
                            (int)r->k, (int)r->rerank_top);
        if (strlen(r->inputs[0].text) != r->inputs[0].len)
            return srv_fail(err, 422, "Validation", "query", "invalid_value",
                            "`query` cannot contain NUL characters for reranking");
    }
    const json_t *f = json_object_get(root, "filter");
    if (f && !json_is_null(f)) {
        size_t n = json_is_array(f) ? json_array_size(f) : 1;
        if (!json_is_string(f) && !json_is_array(f))
            return bad_type(err, "filter", "a string or an array of strings", f);
        if (n > (size_t)lim->max_filters)
            return srv_fail(err, 422, "Validation", "filter", "too_many_filters",
                            "`filter` has %zu expressions; at most %d are allowed", n,
                            lim->max_filters);
        r->filters = calloc(n ? n : 1, sizeof *r->filters);
        if (!r->filters)
            return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_is_array(f) ? json_array_get(f, i) : f;
            if (!json_is_string(e))
                return bad_type(err, "filter", "a string or an array of strings", e);
            if (json_string_length(e) != strlen(json_string_value(e)))
                return srv_fail(err, 422, "Validation", "filter", "invalid_value",
                                "`filter` expressions cannot contain NUL characters");
            r->filters[i] = json_string_value(e);
        }
        r->n_filters = (int32_t)n;
    }
    return 0;
}

/* POST /rerank: {query, texts, truncate, truncation_direction, raw_scores,
 * return_text}, as TEI. texts become the inputs; an empty text is a
 * document like any other (TEI scores it), an empty query is refused. */
static int parse_rerank(const json_t *root, const srv_limits *lim, srv_request *r,
                        srv_error *err)
{
    if (take_query(root, &r->query, &r->query_len, err) != 0)
        return -1;
    const json_t *t = json_object_get(root, "texts");
    if (!t)
        return srv_fail(err, 422, "Validation", "texts", "missing_field",
                        "missing field `texts`");
    if (!json_is_array(t))
        return bad_type(err, "texts", "an array of strings", t);
    size_t n = json_array_size(t);
    if (n == 0)
        return srv_fail(err, 400, "Empty", "texts", "empty_input", "`texts` cannot be empty");
    if (n > (size_t)lim->max_client_batch)
        return srv_fail(err, 422, "Validation", "texts", "too_many_inputs",
                        "batch size %zu > maximum allowed batch size %d", n,
                        lim->max_client_batch);
    r->inputs = calloc(n, sizeof *r->inputs);
    if (!r->inputs)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    r->n = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(t, i);
        if (!json_is_string(e))
            return srv_fail(err, 422, "Validation", "texts", "invalid_type",
                            "`texts[%zu]` must be a string, got %s", i, json_kind(e));
        r->inputs[i].text = json_string_value(e);
        r->inputs[i].len = json_string_length(e);
    }
    if (parse_tei_common(root, r, err) != 0 ||
        opt_bool(root, "raw_scores", &r->raw_scores, err) != 0)
        return -1;
    return opt_bool(root, "return_text", &r->return_text, err);
}

/* The top-level fields each route defines. */
static int known_field(srv_route route, const char *k, size_t n)
{
    static const char *const openai[] = {"input",      "model", "encoding_format",
                                         "dimensions", "user",  NULL};
    static const char *const embed[] = {"inputs",    "truncate",    "truncation_direction",
                                        "normalize", "prompt_name", "dimensions",
                                        NULL};
    static const char *const tokenize[] = {"inputs", "add_special_tokens", "prompt_name", NULL};
    static const char *const search[] = {"query", "k",     "filter", "prompt_name", "mode",
                                         "alpha", "rerank", "rerank_top", NULL};
    static const char *const rerank[] = {"query",      "texts",       "truncate",
                                         "truncation_direction", "raw_scores",
                                         "return_text", NULL};
    const char *const *names = route == SRV_ROUTE_OPENAI     ? openai
                               : route == SRV_ROUTE_EMBED    ? embed
                               : route == SRV_ROUTE_TOKENIZE ? tokenize
                               : route == SRV_ROUTE_RERANK   ? rerank
                                                             : search;
    for (; *names; names++)
        if (strlen(*names) == n && memcmp(*names, k, n) == 0)
            return 1;
    return 0;
}

#define MAX_DEPTH 32

/* One pass over the raw bytes, before jansson allocates anything: refuses
 * unknown top-level fields, nesting deeper than MAX_DEPTH and more than
 * lim->max_values values (each '[', '{' and ',' counts one). Syntax errors
 * are left to jansson, which names them. */
static int prescan(srv_route route, const char *b, size_t n, const srv_limits *lim, srv_error *err)
{
    int depth = 0, top_object = 0, want_key = 0;
    uint64_t values = 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (c == '"') {
            size_t s = ++i;
            while (i < n && b[i] != '"')
                i += b[i] == '\\' ? 2 : 1;
            if (i >= n)
                return 0;
            if (want_key && depth == 1) {
                want_key = 0;
                if (!known_field(route, b + s, i - s)) {
                    int printable = i - s <= 64;
                    for (size_t k = s; k < i && printable; k++)
                        printable = b[k] >= 0x20 && b[k] < 0x7f && b[k] != '\\';
                    if (printable)
                        return srv_fail(err, 422, "Validation", NULL, "unknown_field",
                                        "unknown field `%.*s`", (int)(i - s), b + s);
                    return srv_fail(err, 422, "Validation", NULL, "unknown_field",
                                    "unknown field in the request body");
                }
            }
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH)
                return srv_fail(err, 422, "Validation", NULL, "too_many_values",
                                "the request body nests deeper than %d levels", MAX_DEPTH);
            if (depth == 1) {
                top_object = c == '{';
                want_key = top_object;
            }
            values++;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == ',') {
            values++;
            if (depth == 1 && top_object)
                want_key = 1;
        }
        if (lim->max_values > 0 && values > (uint64_t)lim->max_values)
            return srv_fail(err, 422, "Validation", NULL, "too_many_values",
                            "the request body has more than %d JSON values", lim->max_values);
    }
    return 0;
}

int srv_request_parse(srv_route route, const char *body, size_t len, const srv_limits *lim,
                      srv_request *out, srv_error *err)
{
    memset(out, 0, sizeof *out);
    out->route = route;
    out->truncate = -1;
    out->normalize = 1;
    out->add_special_tokens = 1;
    out->k = 10;
    if (!body || len == 0)
        return srv_fail(err, 400, "Validation", NULL, "invalid_json",
                        "the request body is empty; send a JSON object");
    if (prescan(route, body, len, lim, err) != 0)
        return -1;
    json_error_t je;
    /* JSON_ALLOW_NUL: "\u0000" inside a text is data, and lengths are kept.
     * A repeated key would be read differently by different parsers. */
    json_t *root = json_loadb(body, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return srv_fail(err, 400, "Validation", NULL, "invalid_json",
                        "malformed JSON at line %d, column %d: %s", je.line, je.column, je.text);
    out->root = root;
    int rc = 0;
    if (!json_is_object(root)) {
        rc = srv_fail(err, 422, "Validation", NULL, "invalid_type",
                      "the request body must be a JSON object, got %s", json_kind(root));
    } else if (route == SRV_ROUTE_OPENAI) {
        const char *fmt = NULL;
        const char *model = NULL, *user = NULL;
        rc = take_inputs(root, "input", 1, lim, out, err);
        if (rc == 0)
            rc = opt_string(root, "model", &model, err);
        if (rc == 0) /* ignored, but a string as OpenAI's API requires */
            rc = opt_string(root, "user", &user, err);
        if (rc == 0)
            rc = opt_string(root, "encoding_format", &fmt, err);
        if (rc == 0 && fmt) {
            if (strcmp(fmt, "base64") == 0)
                out->base64 = 1;
            else if (strcmp(fmt, "float") != 0)
                rc = srv_fail(err, 422, "Validation", "encoding_format", "invalid_value",
                              "`encoding_format` must be \"float\" or \"base64\"");
        }
        if (rc == 0)
            rc = opt_dimensions(root, lim, out, err);
    } else if (route == SRV_ROUTE_EMBED) {
        rc = take_inputs(root, "inputs", 1, lim, out, err);
        if (rc == 0)
            rc = parse_tei_common(root, out, err);
        if (rc == 0)
            rc = opt_bool(root, "normalize", &out->normalize, err);
        if (rc == 0)
            rc = opt_dimensions(root, lim, out, err);
    } else if (route == SRV_ROUTE_TOKENIZE) {
        rc = take_inputs(root, "inputs", 0, lim, out, err);
        if (rc == 0)
            rc = opt_bool(root, "add_special_tokens", &out->add_special_tokens, err);
        if (rc == 0)
            rc = opt_string(root, "prompt_name", &out->prompt_name, err);
    } else if (route == SRV_ROUTE_RERANK) {
        rc = parse_rerank(root, lim, out, err);
    } else {
        rc = parse_search(root, lim, out, err);
        if (rc == 0)
            rc = opt_string(root, "prompt_name", &out->prompt_name, err);
    }
    if (rc == 0 && out->prompt_name && strlen(out->prompt_name) == 0)
        rc = srv_fail(err, 422, "Validation", "prompt_name", "unknown_prompt",
                      "`prompt_name` cannot be empty");
    if (rc != 0)
        srv_request_free(out);
    return rc;
}
