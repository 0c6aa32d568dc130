/*
 * prepare.c - tokenization, truncation and length checks before batching,
 * and the vector post-processing after it (see prepare.h).
 *
 * Tokenizing here, on the connection's thread, rather than in the batcher
 * means texts are tokenized in parallel while the batcher runs forward
 * passes, and every token count is known before a batch is packed. The
 * tokens come from medembed_tokens_add_texts() and the batcher embeds them
 * with medembed_ctx_embed_tokens(): the two calls medembed_ctx_embed()
 * makes, so the vectors equal `medembed embed`'s bit for bit.
 */
#include "prepare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

int srv_model_init(srv_model *sm, medembed_model *m, const char *model_arg)
{
    memset(sm, 0, sizeof *sm);
    sm->m = m;
    sm->dim = medembed_model_dim(m);
    sm->max_length = medembed_model_max_length(m);
    sm->vocab_size = medembed_vocab_size(m);
    sm->normalize = medembed_model_normalize(m) != 0;
    size_t n = medembed_model_info_json(m, NULL, 0);
    sm->info_json = malloc(n + 1);
    if (!sm->info_json)
        return -1;
    medembed_model_info_json(m, sm->info_json, n + 1);

    /* The model's name in responses: the folder's last path component. */
    char *path = dup_str(model_arg ? model_arg : "model");
    if (!path)
        return -1;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = 0;
    const char *base = strrchr(path, '/');
    sm->id = dup_str(base && base[1] ? base + 1 : path);
    free(path);
    return sm->id ? 0 : -1;
}

void srv_model_free(srv_model *sm)
{
    medembed_model_free(sm->m);
    free(sm->id);
    free(sm->info_json);
    memset(sm, 0, sizeof *sm);
}

void srv_prepared_free(srv_prepared *p)
{
    medembed_tokens_free(p->set);
    free(p->lens);
    memset(p, 0, sizeof *p);
}

/* The field name used in messages and as OpenAI's `param`. */
static const char *input_field(const srv_request *r)
{
    return r->route == SRV_ROUTE_OPENAI ? "input" : r->route == SRV_ROUTE_SEARCH ? "query"
                                                                                 : "inputs";
}

/* The library's options for r's texts: the request's prompt_name and the
 * route's role, so the library's prompt rule decides, as everywhere. */
static void text_opts(const srv_request *r, uint32_t flags, medembed_embed_opts *o)
{
    medembed_embed_opts_init(o);
    o->prompt_name = r->prompt_name;
    o->role = r->route == SRV_ROUTE_SEARCH ? MEDEMBED_ROLE_QUERY : MEDEMBED_ROLE_TEXT;
    o->flags = flags;
}

/* Maps a failed medembed_tokens_add_texts to the HTTP error. */
static int add_fail(int rc, const char *msg, srv_error *err)
{
    if (rc == MEDEMBED_ERR_NOT_FOUND)
        return srv_fail(err, 422, "Validation", "prompt_name", "unknown_prompt", "%s", msg);
    if (rc == MEDEMBED_ERR_NOMEM)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    return srv_fail(err, 422, "Tokenizer", NULL, "tokenization_failed", "tokenization failed: %s",
                    msg);
}

static int too_long(const srv_model *sm, const srv_request *r, int32_t i, int32_t n,
                    srv_error *err)
{
    const char *f = input_field(r);
    if (r->single)
        return srv_fail(err, 422, "Validation", f, "context_length_exceeded",
                        "`%s` has %d tokens, more than the model's limit of %d (send "
                        "\"truncate\": true, or start the server with --auto-truncate true)",
                        f, n, sm->max_length);
    return srv_fail(err, 422, "Validation", f, "context_length_exceeded",
                    "`%s[%d]` has %d tokens, more than the model's limit of %d (send "
                    "\"truncate\": true, or start the server with --auto-truncate true)",
                    f, i, n, sm->max_length);
}

/* Checks the prompt name up front, so that a request of token ids only gets
 * the same answer. */
static int check_prompt(const srv_model *sm, const srv_request *r, srv_error *err)
{
    if (!r->prompt_name)
        return 0;
    medembed_embed_opts o;
    text_opts(r, 0, &o);
    const char *p = NULL;
    char msg[512];
    int rc = medembed_resolve_prompt(sm->m, &o, &p, NULL, msg, sizeof msg);
    if (rc != MEDEMBED_OK)
        return add_fail(rc, msg, err);
    for (int32_t i = 0; i < r->n; i++)
        if (!r->inputs[i].text)
            return srv_fail(err, 422, "Validation", "prompt_name", "unknown_prompt",
                            "prompt_name cannot be used with token-id inputs");
    return 0;
}

int srv_prepare(const srv_model *sm, const srv_request *r, int auto_truncate, srv_prepared *p,
                srv_error *err)
{
    memset(p, 0, sizeof *p);
    int truncate = r->truncate >= 0 ? r->truncate : auto_truncate;
    int32_t max = sm->max_length;
    if (check_prompt(sm, r, err) != 0)
        return -1;
    p->n = r->n;
    p->flags = r->normalize ? 0 : MEDEMBED_F_NO_NORMALIZE;
    p->post_normalize = r->normalize && !sm->normalize;
    p->renormalize = r->normalize && r->dimensions > 0 && r->dimensions < sm->dim;
    p->lens = malloc(sizeof *p->lens * (size_t)(r->n ? r->n : 1));
    if (!p->lens || medembed_tokens_create(sm->m, &p->set) != MEDEMBED_OK)
        goto oom;
    medembed_embed_opts o;
    text_opts(r, (truncate && r->truncate_left) ? MEDEMBED_F_TRUNCATE_LEFT : 0, &o);
    char msg[512];
    for (int32_t i = 0; i < r->n; i++) {
        const srv_input *in = &r->inputs[i];
        int rc;
        int32_t n_full;
        if (in->text) {
            rc = medembed_tokens_add_texts(p->set, &in->text, &in->len, 1, &o, msg, sizeof msg);
            if (rc != MEDEMBED_OK) {
                add_fail(rc, msg, err);
                srv_prepared_free(p);
                return -1;
            }
            medembed_text_info info;
            medembed_tokens_info(p->set, i, &info);
            n_full = info.n_untruncated;
        } else {
            n_full = in->n_ids;
            const int32_t *seq = in->ids;
            int32_t n = n_full;
            if (n_full > max && truncate) {
                if (r->truncate_left)
                    seq = in->ids + (n_full - max);
                n = max;
            }
            if (n_full <= max || truncate) {
                rc = medembed_tokens_add_ids(p->set, seq, n, msg, sizeof msg);
                if (rc != MEDEMBED_OK) {
                    srv_prepared_free(p);
                    if (rc == MEDEMBED_ERR_NOMEM)
                        goto oom;
                    return srv_fail(err, 422, "Validation", input_field(r), "invalid_value",
                                    "%s", msg);
                }
            }
        }
        if (n_full > max) {
            if (!truncate) {
                srv_prepared_free(p);
                return too_long(sm, r, i, n_full, err);
            }
            p->n_truncated++;
        }
        medembed_tokens_ids(p->set, i, &p->lens[i]);
        p->n_tokens += p->lens[i];
    }
    return 0;
oom:
    srv_prepared_free(p);
    return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
}

/* L2-normalizes v[0..n) as TEI does: the sum of squares in double, one
 * float scale. A zero vector stays zero. */
static void l2_normalize(float *v, int32_t n)
{
    double ss = 0;
    for (int32_t i = 0; i < n; i++)
        ss += (double)v[i] * (double)v[i];
    if (ss <= 0)
        return;
    float scale = (float)(1.0 / sqrt(ss));
    for (int32_t i = 0; i < n; i++)
        v[i] *= scale;
}

void srv_postprocess(const srv_model *sm, const srv_request *r, const srv_prepared *p, float *v,
                     int32_t n, int32_t *out_dim)
{
    int32_t dim = sm->dim;
    int32_t d = r->dimensions > 0 ? r->dimensions : dim;
    for (int32_t i = 0; i < n; i++) {
        float *row = v + (size_t)i * (size_t)dim;
        if (p->post_normalize)
            l2_normalize(row, dim);
        /* Matryoshka: keep the first d components, then make the cut vector
         * unit length again when the caller asked for normalized output. */
        if (d < dim) {
            float *dst = v + (size_t)i * (size_t)d;
            memmove(dst, row, sizeof *row * (size_t)d);
            if (p->renormalize)
                l2_normalize(dst, d);
        }
    }
    *out_dim = d;
}

static int is_special_str(const char *t)
{
    return t && (strcmp(t, "[CLS]") == 0 || strcmp(t, "[SEP]") == 0 ||
                 strcmp(t, "[PAD]") == 0 || strcmp(t, "[MASK]") == 0);
}

int srv_tokenize_response(const srv_model *sm, const srv_request *r, srv_buf *b,
                          srv_error *err)
{
    medembed_tokens *set = NULL;
    if (medembed_tokens_create(sm->m, &set) != MEDEMBED_OK)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    medembed_embed_opts o;
    text_opts(r, MEDEMBED_F_ALL_TOKENS, &o);
    char msg[512];
    srv_buf_puts(b, "[");
    for (int32_t i = 0; i < r->n; i++) {
        int rc = medembed_tokens_add_texts(set, &r->inputs[i].text, &r->inputs[i].len, 1, &o,
                                           msg, sizeof msg);
        if (rc != MEDEMBED_OK) {
            medembed_tokens_free(set);
            return add_fail(rc, msg, err);
        }
        int32_t n = 0;
        const int32_t *ids = medembed_tokens_ids(set, i, &n);
        int32_t lo = 0, hi = n;
        if (!r->add_special_tokens && hi >= 2) {
            lo = 1; /* drop the template's [CLS] ... [SEP] */
            hi--;
        }
        srv_buf_puts(b, i ? ",[" : "[");
        for (int32_t k = lo; k < hi; k++) {
            const char *t = medembed_token_str(sm->m, ids[k]);
            int special = (r->add_special_tokens && (k == 0 || k == n - 1)) ||
                          is_special_str(t);
            srv_buf_printf(b, "%s{\"id\":%d,\"text\":", k > lo ? "," : "", ids[k]);
            srv_buf_json_string(b, t ? t : "", t ? strlen(t) : 0);
            srv_buf_puts(b, special ? ",\"special\":true,\"start\":null,\"stop\":null}"
                                    : ",\"special\":false,\"start\":null,\"stop\":null}");
        }
        srv_buf_puts(b, "]");
    }
    srv_buf_puts(b, "]");
    medembed_tokens_free(set);
    if (b->oom)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    return 0;
}
