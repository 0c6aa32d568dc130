/* fuzz_http.c - libFuzzer target for the HTTP server's request parser
 * (tools/server/request.c), its request-head checks and log escaping
 * (head.c), and the JSON it writes back (response.c).
 *
 * Input: byte 0 with its top bit set: the rest is the bytes received on a
 * connection, checked as a request head. Otherwise byte 0 picks the route
 * (OpenAI, /embed, /tokenize, /search, /rerank) and the rest is the request body.
 * The parser must either accept the body with every invariant of
 * srv_request holding, or reject it with a 4xx/500 status and a message;
 * the error bodies and every echoed text must then be valid JSON that
 * round-trips. The server's sources are included here so the target needs
 * nothing but jansson. */
#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "../../tools/server/head.c"
#include "../../tools/server/request.c"
#include "../../tools/server/response.c"

static void check_json(const srv_buf *b)
{
    assert(!b->oom);
    json_error_t je;
    json_t *j = json_loadb(b->p, b->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    assert(j);
    json_decref(j);
}

static void check_error_json(const srv_error *e)
{
    srv_buf b = {0};
    srv_error_json_tei(&b, e);
    check_json(&b);
    srv_buf_free(&b);
    srv_error_json_openai(&b, e);
    check_json(&b);
    srv_buf_free(&b);
}

static void fuzz_head(const char *p, size_t n)
{
    const srv_head_limits lim = {.max_target = 64, .max_head = 256};
    srv_head h;
    srv_error e;
    memset(&e, 0, sizeof e);
    int rc = srv_head_check(p, n, &lim, &h, &e);
    assert(rc == -1 || rc == 0 || rc == 1);
    if (rc == 0) {
        assert(h.head_len >= 4 && h.head_len <= n && h.head_len <= lim.max_head);
        assert(memcmp(p + h.head_len - 4, "\r\n\r\n", 4) == 0);
        assert(h.content_length >= -1 && !(h.chunked && h.content_length >= 0));
    } else if (rc == -1) {
        assert(e.status == 400 || e.status == 414 || e.status == 431 || e.status == 505);
        assert(e.code && e.msg[0] && memchr(e.msg, 0, sizeof e.msg));
        check_error_json(&e);
    } else {
        assert(n <= lim.max_head);
    }
    /* Escaped log text: no control byte, always terminated, within the cap. */
    char esc[64];
    srv_log_escape(p, n, esc, sizeof esc);
    size_t len = strnlen(esc, sizeof esc);
    assert(len < sizeof esc);
    for (size_t i = 0; i < len; i++)
        assert((unsigned char)esc[i] >= 0x20 && esc[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 0x80) {
        fuzz_head((const char *)data + 1, size - 1);
        return 0;
    }
    srv_route route = (srv_route)(data[0] % 5);
    const srv_limits lim = {.max_client_batch = 8, .dim = 16, .vocab_size = 100, .max_k = 50,
                            .max_filters = 4, .max_values = 200};
    srv_request r;
    srv_error e;
    memset(&e, 0, sizeof e);
    const char *body = (const char *)data + 1;
    if (srv_request_parse(route, body, size - 1, &lim, &r, &e) != 0) {
        assert(e.status == 400 || e.status == 422 || e.status == 500);
        assert(e.type && e.msg[0]);
        assert(memchr(e.msg, 0, sizeof e.msg));
        assert(r.root == NULL && r.inputs == NULL);
        check_error_json(&e);
        return 0;
    }
    assert(r.route == route && r.n >= 1 && r.n <= lim.max_client_batch);
    assert(r.dimensions >= 0 && r.dimensions <= lim.dim);
    assert(r.truncate >= -1 && r.truncate <= 1);
    assert(r.k >= 1 && r.k <= lim.max_k && r.n_filters >= 0 && r.n_filters <= lim.max_filters);
    for (int32_t i = 0; i < r.n_filters; i++)
        assert(r.filters[i] != NULL);
    for (int32_t i = 0; i < r.n; i++) {
        const srv_input *in = &r.inputs[i];
        assert((in->text != NULL) != (in->ids != NULL));
        if (in->text) {
            assert(in->len >= 1 || route == SRV_ROUTE_RERANK); /* an empty document ranks */
            /* Echoing a text through the JSON writer gives the same bytes back. */
            srv_buf b = {0};
            srv_buf_json_string(&b, in->text, in->len);
            json_t *j = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            assert(j && json_is_string(j) && json_string_length(j) == in->len &&
                   memcmp(json_string_value(j), in->text, in->len) == 0);
            json_decref(j);
            srv_buf_free(&b);
        } else {
            assert(in->n_ids >= 1 && route != SRV_ROUTE_TOKENIZE);
            for (int32_t k = 0; k < in->n_ids; k++)
                assert(in->ids[k] >= 0 && in->ids[k] < lim.vocab_size);
        }
    }
    if (route == SRV_ROUTE_RERANK)
        assert(r.query && r.query_len >= 1 && r.raw_scores >= 0 && r.raw_scores <= 1 &&
               r.return_text >= 0 && r.return_text <= 1);
    else
        assert(!r.query && !r.raw_scores && !r.return_text);
    if (r.rerank)
        assert(route == SRV_ROUTE_SEARCH && r.rerank_top >= r.k && r.rerank_top <= lim.max_k);
    else
        assert(r.rerank_top == 0);
    srv_request_free(&r);
    return 0;
}
