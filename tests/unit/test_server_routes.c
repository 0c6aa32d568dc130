/*
 * test_server_routes.c - the server's OpenAPI document (tools/server/openapi.json, embedded
 * in the binary) against the route table the server dispatches with (tools/server/routes.c):
 * the same paths and methods, every documented error status on every operation, each error
 * answered in the route's error shape, and a /docs page with no outside assets.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../tools/server/assets.c"
#include "../../tools/server/routes.c"

/* Statuses every operation documents (401 only where a key applies; 500 only where a body
 * is processed). 408, 414, 431 and 505 may be decided before the route is known, so they
 * carry either error shape (AnyError). */
static const char *const generic[] = {"400", "404", "405", "408", "413", "414",
                                      "415", "422", "429", "431", "503", "505"};
static const char *const either_shape[] = {"408", "414", "431", "505"};

static json_t *load_doc(void)
{
    json_error_t je;
    json_t *doc = json_loadb(srv_openapi_json, srv_openapi_json_size, 0, &je);
    if (!doc)
        fail_msg("openapi.json: line %d: %s", je.line, je.text);
    assert_int_equal(srv_openapi_json[srv_openapi_json_size], 0);
    return doc;
}

/* Follows one "#/a/b/c" reference. */
static json_t *deref(json_t *doc, json_t *obj)
{
    for (int depth = 0; depth < 8; depth++) {
        const char *ref = json_string_value(json_object_get(obj, "$ref"));
        if (!ref)
            return obj;
        assert_true(strncmp(ref, "#/", 2) == 0);
        char buf[256];
        snprintf(buf, sizeof buf, "%s", ref + 2);
        json_t *cur = doc;
        for (char *save = NULL, *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save))
            cur = json_object_get(cur, p);
        if (!cur)
            fail_msg("dangling $ref %s", ref);
        obj = cur;
    }
    fail_msg("$ref chain too deep");
    return NULL;
}

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}

static const srv_route_def *find_route(const char *path)
{
    for (size_t i = 0; i < srv_n_routes; i++)
        if (strcmp(srv_routes[i].path, path) == 0)
            return &srv_routes[i];
    return NULL;
}

/* Same paths, same methods, both ways. */
static void test_routes_match(void **state)
{
    (void)state;
    json_t *doc = load_doc();
    assert_true(strncmp(json_string_value(json_object_get(doc, "openapi")), "3.", 2) == 0);
    json_t *paths = json_object_get(doc, "paths");
    assert_non_null(paths);
    for (size_t i = 0; i < srv_n_routes; i++) {
        const srv_route_def *rt = &srv_routes[i];
        json_t *item = json_object_get(paths, rt->path);
        if (!item)
            fail_msg("route %s is served but not in openapi.json", rt->path);
        if ((rt->get_kind != K_BAD_METHOD) != (json_object_get(item, "get") != NULL))
            fail_msg("GET %s: served %d, documented %d", rt->path, rt->get_kind != K_BAD_METHOD,
                     json_object_get(item, "get") != NULL);
        if ((rt->post_kind != K_BAD_METHOD) != (json_object_get(item, "post") != NULL))
            fail_msg("POST %s: served %d, documented %d", rt->path,
                     rt->post_kind != K_BAD_METHOD, json_object_get(item, "post") != NULL);
    }
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        if (!find_route(path))
            fail_msg("openapi.json documents %s, which the server does not serve", path);
        const char *m;
        json_t *op;
        json_object_foreach(item, m, op)
        {
            if (strcmp(m, "get") != 0 && strcmp(m, "post") != 0)
                fail_msg("%s %s is documented; the server serves GET (and HEAD) and POST only",
                         m, path);
        }
    }
    json_decref(doc);
}

static void check_error_response(json_t *doc, json_t *resp, const char *where, const char *code,
                                 const char *shape)
{
    resp = deref(doc, resp);
    json_t *schema = json_object_get(
        json_object_get(json_object_get(resp, "content"), "application/json"), "schema");
    if (!schema)
        fail_msg("%s %s: no application/json schema", where, code);
    const char *ref = json_string_value(json_object_get(schema, "$ref"));
    const char *want = in_list(code, either_shape, sizeof either_shape / sizeof *either_shape)
                           ? "#/components/schemas/AnyError"
                           : shape;
    if (!ref || strcmp(ref, want) != 0)
        fail_msg("%s %s: error schema %s, want %s", where, code, ref ? ref : "(inline)", want);
    deref(doc, schema);
}

/* Each operation lists its success and every error status, in its route's shape, and
 * says whether it needs the API key as the server decides it. */
static void test_statuses_and_shapes(void **state)
{
    (void)state;
    json_t *doc = load_doc();
    json_t *paths = json_object_get(doc, "paths");
    for (size_t i = 0; i < srv_n_routes; i++) {
        const srv_route_def *rt = &srv_routes[i];
        for (int post = 0; post <= 1; post++) {
            kind k = post ? rt->post_kind : rt->get_kind;
            if (k == K_BAD_METHOD)
                continue;
            char where[128];
            snprintf(where, sizeof where, "%s %s", post ? "POST" : "GET", rt->path);
            json_t *op = json_object_get(json_object_get(paths, rt->path), post ? "post" : "get");
            json_t *resps = json_object_get(op, "responses");
            assert_non_null(resps);
            if (!json_object_get(resps, "200"))
                fail_msg("%s: no 200 response", where);
            const char *shape = post && rt->route == SRV_ROUTE_OPENAI
                                    ? "#/components/schemas/OpenAIError"
                                    : "#/components/schemas/TEIError";
            for (size_t s = 0; s < sizeof generic / sizeof *generic; s++) {
                json_t *r = json_object_get(resps, generic[s]);
                if (!r)
                    fail_msg("%s: status %s not documented", where, generic[s]);
                check_error_response(doc, r, where, generic[s], shape);
            }
            int public = srv_kind_public(k);
            json_t *r401 = json_object_get(resps, "401");
            if (public != (r401 == NULL))
                fail_msg("%s: public %d but 401 %s", where, public,
                         r401 ? "documented" : "missing");
            if (r401)
                check_error_response(doc, r401, where, "401", shape);
            json_t *sec = json_object_get(op, "security");
            if (public != (json_is_array(sec) && json_array_size(sec) == 0))
                fail_msg("%s: public %d but security is not []", where, public);
            if (post) {
                json_t *r500 = json_object_get(resps, "500");
                if (!r500)
                    fail_msg("%s: status 500 not documented", where);
                check_error_response(doc, r500, where, "500", shape);
                if (!json_object_get(json_object_get(json_object_get(op, "requestBody"),
                                                     "content"),
                                     "application/json"))
                    fail_msg("%s: no application/json request body", where);
            }
            /* 424: a model route the served model cannot do (an embedding
             * route with a cross-encoder, /rerank without one). */
            json_t *r424 = json_object_get(resps, "424");
            if ((k == K_INFER) != (r424 != NULL))
                fail_msg("%s: 424 %s", where, r424 ? "documented, never sent" : "missing");
            if (r424)
                check_error_response(doc, r424, where, "424", shape);
            /* Nothing undocumented: each status is one of the above. */
            const char *code;
            json_t *r;
            json_object_foreach(resps, code, r)
            {
                if (strcmp(code, "200") != 0 && strcmp(code, "401") != 0 &&
                    strcmp(code, "500") != 0 && strcmp(code, "424") != 0 &&
                    !in_list(code, generic, sizeof generic / sizeof *generic))
                    fail_msg("%s: status %s is not one the server sends", where, code);
            }
        }
    }
    json_decref(doc);
}

/* The page is self-contained: it reads openapi.json next to it and loads nothing else. */
static void test_docs_page(void **state)
{
    (void)state;
    assert_true(srv_docs_html_size > 100);
    assert_int_equal(srv_docs_html[srv_docs_html_size], 0);
    assert_int_equal(strlen(srv_docs_html), srv_docs_html_size);
    assert_non_null(strstr(srv_docs_html, "fetch(\"openapi.json\")"));
    const char *outside[] = {"http:", "https:", "//", "src=", "@import", "<link"};
    for (size_t i = 0; i < sizeof outside / sizeof *outside; i++) {
        /* "//" also appears in comments: look only for it after a quote or "(". */
        const char *s = srv_docs_html;
        while ((s = strstr(s, outside[i])) != NULL) {
            if (strcmp(outside[i], "//") != 0 || s[-1] == '"' || s[-1] == '\'' || s[-1] == '(')
                fail_msg("docs.html refers to an outside asset: ...%.40s", s);
            s += 2;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_match),
        cmocka_unit_test(test_statuses_and_shapes),
        cmocka_unit_test(test_docs_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
