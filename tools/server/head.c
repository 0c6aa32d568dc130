/*
 * head.c - strict HTTP/1.x request-head checks and log escaping (see head.h).
 * Follows RFC 9112: CRLF line ends, token field names with no whitespace
 * before the colon, no obs-fold, one Content-Length value (1*DIGIT), no
 * Content-Length beside Transfer-Encoding, exactly one Host in HTTP/1.1.
 */
#include "head.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static int bad(srv_error *err, const char *what)
{
    return srv_fail(err, 400, "Validation", NULL, "bad_request", "malformed HTTP request: %s",
                    what);
}

/* Is the path of target t[0..n) (query excluded) an OpenAI route? */
static int openai_target(const char *t, size_t n)
{
    const char *q = memchr(t, '?', n);
    size_t len = q ? (size_t)(q - t) : n;
    return (len == 14 && memcmp(t, "/v1/embeddings", 14) == 0) ||
           (len == 11 && memcmp(t, "/embeddings", 11) == 0);
}

/* The request line p[0..ll) (CRLF excluded); sets *minor. */
static int check_request_line(const char *p, size_t ll, const srv_head_limits *lim, srv_head *out,
                              int *minor, srv_error *err)
{
    size_t i = 0;
    while (i < ll && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i > 16 || i >= ll || p[i] != ' ')
        return bad(err, "the request line must be METHOD SP TARGET SP HTTP/1.x");
    size_t t0 = i + 1, t1 = t0;
    while (t1 < ll && p[t1] != ' ') {
        if (is_ctl((unsigned char)p[t1]))
            return bad(err, "a control byte in the request target");
        t1++;
    }
    /* As the handler answers: the OpenAI shape for a POST to an OpenAI route. */
    out->openai = i == 4 && memcmp(p, "POST", 4) == 0 && openai_target(p + t0, t1 - t0);
    if (t1 - t0 > lim->max_target)
        return srv_fail(err, 414, "Validation", NULL, "uri_too_long",
                        "the request target is %zu bytes; at most %zu are accepted", t1 - t0,
                        lim->max_target);
    if (t1 == t0 || t1 >= ll)
        return bad(err, "the request line must be METHOD SP TARGET SP HTTP/1.x");
    const char *v = p + t1 + 1;
    size_t vl = ll - t1 - 1;
    if (vl == 8 && memcmp(v, "HTTP/1.1", 8) == 0) {
        *minor = 1;
    } else if (vl == 8 && memcmp(v, "HTTP/1.0", 8) == 0) {
        *minor = 0;
    } else if (vl == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
               v[7] >= '0' && v[7] <= '9') {
        return srv_fail(err, 505, "Validation", NULL, "http_version_not_supported",
                        "HTTP/%c.%c is not supported; use HTTP/1.1", v[5], v[7]);
    } else {
        return bad(err, "the request line must end with HTTP/1.1 or HTTP/1.0");
    }
    return 0;
}

/* One field line h[0..le) (CRLF excluded). */
static int check_field(const char *h, size_t le, srv_head *out, int *hosts, int *te, srv_error *err)
{
    if (h[0] == ' ' || h[0] == '\t')
        return bad(err, "folded header lines (obs-fold) are not accepted");
    size_t k = 0;
    while (k < le && is_tchar((unsigned char)h[k]))
        k++;
    if (k == 0 || k >= le || h[k] != ':')
        return bad(err, "a header field name must be a token followed directly by ':'");
    size_t v0 = k + 1, v1 = le;
    while (v0 < v1 && (h[v0] == ' ' || h[v0] == '\t'))
        v0++;
    while (v1 > v0 && (h[v1 - 1] == ' ' || h[v1 - 1] == '\t'))
        v1--;
    for (size_t i = v0; i < v1; i++)
        if (is_ctl((unsigned char)h[i]) && h[i] != '\t')
            return bad(err, "a control byte in a header field value");
    const char *v = h + v0;
    size_t vl = v1 - v0;
    if (k == 14 && strncasecmp(h, "Content-Length", 14) == 0) {
        if (vl == 0)
            return bad(err, "an empty Content-Length");
        int64_t x = 0;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9')
                return bad(err, "Content-Length must be a decimal number of bytes");
            /* Saturates: a value this large is refused as too large later. */
            x = x > (INT64_MAX - 9) / 10 ? INT64_MAX : x * 10 + (v[i] - '0');
        }
        if (out->content_length >= 0 && out->content_length != x)
            return bad(err, "two different Content-Length headers");
        out->content_length = x;
    } else if (k == 17 && strncasecmp(h, "Transfer-Encoding", 17) == 0) {
        if (vl != 7 || strncasecmp(v, "chunked", 7) != 0)
            return bad(err, "the only Transfer-Encoding accepted is \"chunked\"");
        if (++*te > 1)
            return bad(err, "Transfer-Encoding given twice");
    } else if (k == 4 && strncasecmp(h, "Host", 4) == 0) {
        ++*hosts;
    }
    return 0;
}

int srv_head_check(const char *p, size_t n, const srv_head_limits *lim, srv_head *out,
                   srv_error *err)
{
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    const char *nl = memchr(p, '\n', n);
    if (!nl) {
        if (n > lim->max_target + 32)
            return srv_fail(err, 414, "Validation", NULL, "uri_too_long",
                            "the request line is over %zu bytes", lim->max_target + 32);
        return 1;
    }
    size_t ll = (size_t)(nl - p);
    if (ll == 0 || p[ll - 1] != '\r')
        return bad(err, "lines must end with CRLF");
    int minor = 1;
    if (check_request_line(p, ll - 1, lim, out, &minor, err) != 0)
        return -1;
    size_t pos = ll + 1;
    int hosts = 0, te = 0;
    for (;;) {
        const char *e = pos < n ? memchr(p + pos, '\n', n - pos) : NULL;
        size_t end = e ? (size_t)(e - p) + 1 : n;
        if (end > lim->max_head)
            return srv_fail(err, 431, "Validation", NULL, "headers_too_large",
                            "the request head is over %zu bytes", lim->max_head);
        if (!e)
            return 1;
        size_t le = (size_t)(e - (p + pos));
        if (le == 0 || p[pos + le - 1] != '\r')
            return bad(err, "lines must end with CRLF");
        le--;
        if (le == 0) {
            pos += 2;
            break;
        }
        if (check_field(p + pos, le, out, &hosts, &te, err) != 0)
            return -1;
        pos += le + 2;
    }
    if (te && out->content_length >= 0)
        return bad(err, "Content-Length and Transfer-Encoding together");
    if (te && minor == 0)
        return bad(err, "Transfer-Encoding needs HTTP/1.1");
    if (minor == 1 && hosts != 1)
        return bad(err, "an HTTP/1.1 request needs exactly one Host header");
    out->head_len = pos;
    out->chunked = te > 0;
    return 0;
}

char *srv_log_escape(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_ctl(c) || c == '\\') {
            if (o + 4 >= cap)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            if (o + 1 >= cap)
                break;
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
    return out;
}
