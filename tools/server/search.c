/*
 * search.c - POST /search over a read-only index (see search.h).
 */
#include "search.h"

#include <stdlib.h>
#include <string.h>

struct srv_search {
    medembed_index *ix;
};

int srv_search_open(const char *path, const medembed_model *model, srv_search **out, char *err,
                    size_t err_len)
{
    srv_search *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (medembed_index_open(path, MEDEMBED_INDEX_READONLY, &s->ix, err, err_len) !=
            MEDEMBED_OK ||
        medembed_index_check_model(s->ix, model, err, err_len) != MEDEMBED_OK) {
        srv_search_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void srv_search_free(srv_search *s)
{
    if (!s)
        return;
    medembed_index_free(s->ix);
    free(s);
}

int srv_search_respond(srv_search *s, const srv_request *r, const float *query,
                       srv_reranker *rr, srv_buf *b, srv_error *e)
{
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = r->rerank ? r->rerank_top : r->k;
    so.filters = r->filters;
    so.n_filters = r->n_filters;
    so.mode = r->search_mode;
    so.alpha = (float)r->alpha;
    so.text = r->inputs[0].text;
    /* Requests already run concurrently, one per connection thread. */
    so.n_threads = 1;
    medembed_hits *h = NULL;
    char err[512];
    int rc = medembed_index_search(s->ix, query, &so, &h, err, sizeof err);
    if (rc != MEDEMBED_OK) {
        if (rc == MEDEMBED_ERR_ARG)
            return srv_fail(e, 422, "Validation", "filter", "invalid_filter", "%s", err);
        if (rc == MEDEMBED_ERR_FORMAT) /* a file without the keyword index */
            return srv_fail(e, 422, "Validation", "mode", "no_keyword_index", "%s", err);
        return srv_fail(e, 500, "Backend", NULL, "search_failed", "search failed: %s", err);
    }
    if (r->rerank && srv_rerank_hits(rr, h, s->ix, r->inputs[0].text, r->k, e) != 0) {
        medembed_hits_free(h);
        return -1;
    }
    srv_buf_puts(b, "{\"hits\":[");
    for (int32_t i = 0; i < medembed_hits_count(h); i++) {
        const char *id = medembed_hits_id(h, i);
        int32_t t0 = -1, t1 = -1;
        int32_t chunk = medembed_hits_chunk(h, i, &t0, &t1);
        srv_buf_puts(b, i ? ",{\"id\":" : "{\"id\":");
        srv_buf_json_string(b, id, strlen(id));
        srv_buf_puts(b, ",\"score\":");
        srv_buf_float(b, medembed_hits_score(h, i));
        srv_buf_printf(b, ",\"chunk\":%d,\"start\":%d,\"end\":%d,", chunk, chunk < 0 ? 0 : t0,
                       chunk < 0 ? 0 : t1);
        if (so.mode == MEDEMBED_SEARCH_HYBRID) {
            int32_t dr = 0, br = 0;
            float ds = 0, bs = 0;
            medembed_hits_components(h, i, &dr, &ds, &br, &bs);
            srv_buf_puts(b, "\"dense\":");
            if (dr > 0) {
                srv_buf_printf(b, "{\"rank\":%d,\"score\":", dr);
                srv_buf_float(b, ds);
                srv_buf_puts(b, "},");
            } else {
                srv_buf_puts(b, "null,");
            }
            srv_buf_puts(b, "\"bm25\":");
            if (br > 0) {
                srv_buf_printf(b, "{\"rank\":%d,\"score\":", br);
                srv_buf_float(b, bs);
                srv_buf_puts(b, "},");
            } else {
                srv_buf_puts(b, "null,");
            }
        }
        int32_t fr = 0;
        float fs = 0;
        if (medembed_hits_first_stage(h, i, &fr, &fs)) {
            srv_buf_printf(b, "\"first_stage\":{\"rank\":%d,\"score\":", fr);
            srv_buf_float(b, fs);
            srv_buf_puts(b, "},");
        }
        srv_buf_puts(b, "\"metadata\":");
        const char *md = medembed_hits_metadata(h, i);
        srv_buf_puts(b, md && *md ? md : "{}");
        srv_buf_puts(b, "}");
    }
    srv_buf_printf(b, "],\"n_docs\":%lld}", (long long)medembed_index_n_docs(s->ix));
    medembed_hits_free(h);
    return 0;
}
