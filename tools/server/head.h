/*
 * head.h - strict checks of an HTTP/1.x request head (request line and
 * header fields), and escaping of untrusted bytes for the log.
 *
 * The server reads the head of every new connection before libmicrohttpd
 * does (gate.c) and refuses anything ambiguous here, so that every refusal
 * is a JSON body and request smuggling has nothing to work with:
 *   request line over max_target bytes, or a target over it   414
 *   head (request line + fields) over max_head bytes           431
 *   HTTP/x.y other than 1.0 and 1.1                            505
 *   bare LF, obs-fold, a space before ':', control bytes,
 *   a malformed or repeated-and-different Content-Length,
 *   Content-Length with Transfer-Encoding, a transfer coding
 *   other than "chunked", HTTP/1.1 without exactly one Host    400
 *
 * Pure: no sockets, no globals, so tests/fuzz/fuzz_http.c calls it.
 */
#ifndef MEDEMBED_SERVER_HEAD_H
#define MEDEMBED_SERVER_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

typedef struct srv_head_limits {
    size_t max_target; /* request target bytes (414 beyond) */
    size_t max_head;   /* whole head, request line and fields (431 beyond) */
} srv_head_limits;

typedef struct srv_head {
    size_t head_len;        /* bytes up to and including the empty line */
    int64_t content_length; /* -1: none */
    int chunked;            /* Transfer-Encoding: chunked */
    int openai;             /* target is an OpenAI route: errors in its shape */
} srv_head;

/* Checks p[0..n), the bytes received so far on a connection. Returns 0
 * when a complete, valid head is there (out filled), 1 when more bytes are
 * needed and none seen so far is wrong, -1 on a refusal (err filled with
 * the status above; out->openai still says which error shape to use). */
int srv_head_check(const char *p, size_t n, const srv_head_limits *lim, srv_head *out,
                   srv_error *err);

/* Copies s[0..n) into out (size cap, always NUL-terminated), writing every
 * control byte (below 0x20, and 0x7f) and backslash as \xHH, so a logged
 * field can never start a line or send a terminal escape. Returns out. */
char *srv_log_escape(const char *s, size_t n, char *out, size_t cap);

#endif
