/*
 * routes.h - the server's route table: which path and method reach which
 * handler. serve.c dispatches with it; tests/unit/test_server_routes.c checks
 * it against the OpenAPI document (tools/server/openapi.json), so the
 * document and the server cannot list different routes.
 */
#ifndef MEDEMBED_SERVER_ROUTES_H
#define MEDEMBED_SERVER_ROUTES_H

#include <stddef.h>

#include "request.h"

typedef enum kind {
    K_NONE = 0,
    K_INFER,    /* POST embeddings / search: take a slot */
    K_TOKENIZE, /* POST /tokenize */
    K_HEALTH,
    K_INFO,
    K_METRICS,
    K_OPENAPI, /* GET /openapi.json */
    K_DOCS,    /* GET /docs */
    K_NOT_FOUND,
    K_BAD_METHOD
} kind;

typedef struct srv_route_def {
    const char *path;
    kind get_kind;  /* GET and HEAD; K_BAD_METHOD: not allowed */
    kind post_kind; /* POST; K_BAD_METHOD: not allowed */
    srv_route route; /* body parser and error shape of POST */
} srv_route_def;

extern const srv_route_def srv_routes[];
extern const size_t srv_n_routes;

/* Routes that need no API key (as /health and /metrics in TEI). */
int srv_kind_public(kind k);

/* The OpenAPI document and the /docs page, embedded at build time
 * (assets.c); each is followed by a NUL byte not counted in its size. */
extern const char srv_openapi_json[];
extern const unsigned long srv_openapi_json_size;
extern const char srv_docs_html[];
extern const unsigned long srv_docs_html_size;

#endif
