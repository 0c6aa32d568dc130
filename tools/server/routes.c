/*
 * routes.c - the route table (see routes.h).
 */
#include "routes.h"

const srv_route_def srv_routes[] = {
    {"/v1/embeddings", K_BAD_METHOD, K_INFER, SRV_ROUTE_OPENAI},
    {"/embeddings", K_BAD_METHOD, K_INFER, SRV_ROUTE_OPENAI},
    {"/embed", K_BAD_METHOD, K_INFER, SRV_ROUTE_EMBED},
    {"/", K_HEALTH, K_INFER, SRV_ROUTE_EMBED},
    {"/tokenize", K_BAD_METHOD, K_TOKENIZE, SRV_ROUTE_TOKENIZE},
    {"/search", K_BAD_METHOD, K_INFER, SRV_ROUTE_SEARCH},
    {"/rerank", K_BAD_METHOD, K_INFER, SRV_ROUTE_RERANK},
    {"/health", K_HEALTH, K_BAD_METHOD, SRV_ROUTE_EMBED},
    {"/info", K_INFO, K_BAD_METHOD, SRV_ROUTE_EMBED},
    {"/metrics", K_METRICS, K_BAD_METHOD, SRV_ROUTE_EMBED},
    {"/openapi.json", K_OPENAPI, K_BAD_METHOD, SRV_ROUTE_EMBED},
    {"/docs", K_DOCS, K_BAD_METHOD, SRV_ROUTE_EMBED},
};

const size_t srv_n_routes = sizeof srv_routes / sizeof srv_routes[0];

int srv_kind_public(kind k)
{
    return k == K_HEALTH || k == K_METRICS || k == K_OPENAPI || k == K_DOCS;
}
