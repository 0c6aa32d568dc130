/*
 * response.h - response bodies of the HTTP server: a growable byte buffer,
 * the two error shapes (TEI and OpenAI), float vectors as JSON text or as
 * base64 little-endian float32, and the embedding responses of /embed and
 * /v1/embeddings. Pure functions, like request.c.
 */
#ifndef MEDEMBED_SERVER_RESPONSE_H
#define MEDEMBED_SERVER_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

/* A growable byte buffer. On allocation failure `oom` is set and further
 * appends do nothing, so callers check once at the end. */
typedef struct srv_buf {
    char *p;
    size_t len, cap;
    int oom;
} srv_buf;

void srv_buf_free(srv_buf *b);
void srv_buf_put(srv_buf *b, const char *s, size_t n);
void srv_buf_puts(srv_buf *b, const char *s);
void srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..n) as a JSON string literal (quotes included). */
void srv_buf_json_string(srv_buf *b, const char *s, size_t n);
/* One float as the shortest-safe "%.9g" text (round-trips float32 exactly);
 * NaN and infinities, which JSON cannot carry, become null. */
void srv_buf_float(srv_buf *b, float v);
/* [v0,v1,...] */
void srv_buf_float_array(srv_buf *b, const float *v, int32_t n);
/* Base64 (RFC 4648, padded) of n little-endian float32 values, quoted. */
void srv_buf_base64_floats(srv_buf *b, const float *v, int32_t n);

/* Error bodies. TEI: {"error": msg, "error_type": type}. OpenAI:
 * {"error": {"message", "type", "param", "code"}} with OpenAI's type names
 * (invalid_request_error, authentication_error, rate_limit_error, ...). */
void srv_error_json_tei(srv_buf *b, const srv_error *e);
void srv_error_json_openai(srv_buf *b, const srv_error *e);

/* The OpenAI embeddings response for n vectors of `dim` floats each:
 * {"object":"list","data":[{"object":"embedding","embedding":...,"index":i}...],
 *  "model":model,"usage":{"prompt_tokens":t,"total_tokens":t}}. */
void srv_openai_response(srv_buf *b, const float *vecs, int32_t n, int32_t dim, int base64,
                         const char *model, int64_t prompt_tokens);

/* The TEI /embed response: [[...], [...]]. */
void srv_tei_embed_response(srv_buf *b, const float *vecs, int32_t n, int32_t dim);

#endif
