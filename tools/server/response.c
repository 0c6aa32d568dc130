/*
 * response.c - response bodies (see response.h). Floats are printed with
 * "%.9g", the precision that round-trips every float32, and the same format
 * `medembed embed` writes, so a client that parses both gets equal values.
 */
#include "response.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_buf_free(srv_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static int reserve(srv_buf *b, size_t extra)
{
    if (b->oom)
        return 0;
    if (b->len + extra + 1 <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            b->oom = 1;
            return 0;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

void srv_buf_put(srv_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void srv_buf_puts(srv_buf *b, const char *s)
{
    srv_buf_put(b, s, strlen(s));
}

void srv_buf_printf(srv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void srv_buf_json_string(srv_buf *b, const char *str, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    if (!reserve(b, n + 2))
        return;
    srv_buf_put(b, "\"", 1);
    size_t run = 0; /* start of the bytes not yet copied */
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        size_t len = c >= 0x80 ? utf8_seq(s + i, n - i) : 0;
        if (len > 0) { /* valid multi-byte UTF-8: copied as is */
            i += len;
            continue;
        }
        srv_buf_put(b, str + run, i - run);
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            srv_buf_put(b, esc, 2);
        } else if (c == '\n') {
            srv_buf_put(b, "\\n", 2);
        } else if (c == '\t') {
            srv_buf_put(b, "\\t", 2);
        } else if (c == '\r') {
            srv_buf_put(b, "\\r", 2);
        } else if (c >= 0x80) {
            /* Not UTF-8 (a message quoting raw input, or cut mid-character):
             * U+FFFD keeps the body valid JSON. */
            srv_buf_put(b, "\\ufffd", 6);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hx[c >> 4], hx[c & 15]};
            srv_buf_put(b, esc, 6);
        }
        i++;
        run = i;
    }
    srv_buf_put(b, str + run, n - run);
    srv_buf_put(b, "\"", 1);
}

void srv_buf_float(srv_buf *b, float v)
{
    if (!isfinite(v)) {
        srv_buf_put(b, "null", 4);
        return;
    }
    if (!reserve(b, 32))
        return;
    int n = snprintf(b->p + b->len, 32, "%.9g", (double)v);
    if (n > 0 && n < 32)
        b->len += (size_t)n;
}

void srv_buf_float_array(srv_buf *b, const float *v, int32_t n)
{
    srv_buf_put(b, "[", 1);
    for (int32_t i = 0; i < n; i++) {
        if (i)
            srv_buf_put(b, ",", 1);
        srv_buf_float(b, v[i]);
    }
    srv_buf_put(b, "]", 1);
}

void srv_buf_base64_floats(srv_buf *b, const float *v, int32_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = (size_t)n * 4;
    if (!reserve(b, (nb + 2) / 3 * 4 + 2))
        return;
    unsigned char *bytes = malloc(nb ? nb : 1);
    if (!bytes) {
        b->oom = 1;
        return;
    }
    /* Little-endian float32, whatever the host order (OpenAI's wire format,
     * what numpy.frombuffer(..., "<f4") reads). */
    for (int32_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        bytes[4 * i] = (unsigned char)(u & 0xff);
        bytes[4 * i + 1] = (unsigned char)((u >> 8) & 0xff);
        bytes[4 * i + 2] = (unsigned char)((u >> 16) & 0xff);
        bytes[4 * i + 3] = (unsigned char)(u >> 24);
    }
    char *o = b->p + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= nb; i += 3) {
        uint32_t t = (uint32_t)bytes[i] << 16 | (uint32_t)bytes[i + 1] << 8 | bytes[i + 2];
        *o++ = tbl[t >> 18];
        *o++ = tbl[(t >> 12) & 63];
        *o++ = tbl[(t >> 6) & 63];
        *o++ = tbl[t & 63];
    }
    if (nb - i == 1) {
        uint32_t t = (uint32_t)bytes[i] << 16;
        *o++ = tbl[t >> 18];
        *o++ = tbl[(t >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (nb - i == 2) {
        uint32_t t = (uint32_t)bytes[i] << 16 | (uint32_t)bytes[i + 1] << 8;
        *o++ = tbl[t >> 18];
        *o++ = tbl[(t >> 12) & 63];
        *o++ = tbl[(t >> 6) & 63];
        *o++ = '=';
    }
    *o++ = '"';
    *o = 0;
    b->len = (size_t)(o - b->p);
    free(bytes);
}

void srv_error_json_tei(srv_buf *b, const srv_error *e)
{
    srv_buf_puts(b, "{\"error\":");
    srv_buf_json_string(b, e->msg, strlen(e->msg));
    srv_buf_puts(b, ",\"error_type\":");
    const char *t = e->type ? e->type : "Backend";
    srv_buf_json_string(b, t, strlen(t));
    srv_buf_puts(b, "}");
}

/* OpenAI's `type` for an HTTP status. */
static const char *openai_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

void srv_error_json_openai(srv_buf *b, const srv_error *e)
{
    srv_buf_puts(b, "{\"error\":{\"message\":");
    srv_buf_json_string(b, e->msg, strlen(e->msg));
    srv_buf_puts(b, ",\"type\":");
    const char *t = openai_type(e->status);
    srv_buf_json_string(b, t, strlen(t));
    srv_buf_puts(b, ",\"param\":");
    if (e->param)
        srv_buf_json_string(b, e->param, strlen(e->param));
    else
        srv_buf_puts(b, "null");
    srv_buf_puts(b, ",\"code\":");
    if (e->code)
        srv_buf_json_string(b, e->code, strlen(e->code));
    else
        srv_buf_puts(b, "null");
    srv_buf_puts(b, "}}");
}

void srv_openai_response(srv_buf *b, const float *vecs, int32_t n, int32_t dim, int base64,
                         const char *model, int64_t prompt_tokens)
{
    srv_buf_puts(b, "{\"object\":\"list\",\"data\":[");
    for (int32_t i = 0; i < n; i++) {
        srv_buf_puts(b, i ? ",{\"object\":\"embedding\",\"embedding\":"
                          : "{\"object\":\"embedding\",\"embedding\":");
        const float *v = vecs + (size_t)i * (size_t)dim;
        if (base64)
            srv_buf_base64_floats(b, v, dim);
        else
            srv_buf_float_array(b, v, dim);
        srv_buf_printf(b, ",\"index\":%d}", i);
    }
    srv_buf_puts(b, "],\"model\":");
    srv_buf_json_string(b, model, strlen(model));
    srv_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
                   (long long)prompt_tokens, (long long)prompt_tokens);
}

void srv_tei_embed_response(srv_buf *b, const float *vecs, int32_t n, int32_t dim)
{
    srv_buf_put(b, "[", 1);
    for (int32_t i = 0; i < n; i++) {
        if (i)
            srv_buf_put(b, ",", 1);
        srv_buf_float_array(b, vecs + (size_t)i * (size_t)dim, dim);
    }
    srv_buf_put(b, "]", 1);
}
