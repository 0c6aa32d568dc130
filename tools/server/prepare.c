/*
 * prepare.c - tokenization, truncation and length checks before batching,
 * and the vector post-processing after it (see prepare.h).
 *
 * Tokenizing here, on the connection's thread, rather than in the batcher
 * means texts are tokenized in parallel while the batcher runs forward
 * passes, and every token count is known before a batch is packed. The
 * batcher then calls medembed_ctx_embed_ids() on exactly the ids that
 * medembed_ctx_embed() would have produced: [CLS] + pieces + [SEP], cut on
 * the right to the model's limit by the library itself, so the vectors equal
 * `medembed embed`'s bit for bit.
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
    sm->include_prompt = 1;
    size_t n = medembed_model_info_json(m, NULL, 0);
    sm->info_json = malloc(n + 1);
    if (!sm->info_json)
        return -1;
    medembed_model_info_json(m, sm->info_json, n + 1);

    /* include_prompt and the prompt names are only in the info JSON. */
    srv_buf names = {0};
    json_t *j = json_loads(sm->info_json, 0, NULL);
    if (j) {
        json_t *ip = json_object_get(j, "include_prompt");
        if (json_is_boolean(ip))
            sm->include_prompt = json_is_true(ip);
        const char *key;
        json_t *val;
        json_object_foreach(json_object_get(j, "prompts"), key, val)
        {
            if (names.len)
                srv_buf_puts(&names, ", ");
            srv_buf_puts(&names, key);
        }
        json_decref(j);
    }
    sm->prompt_names = names.p ? names.p : dup_str("");

    /* The model's name in responses: the folder's last path component. */
    char *path = dup_str(model_arg ? model_arg : "model");
    if (!path || !sm->prompt_names)
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
    free(sm->prompt_names);
    memset(sm, 0, sizeof *sm);
}

void srv_prepared_free(srv_prepared *p)
{
    free(p->ids);
    free(p->lens);
    free(p->texts);
    free(p->text_lens);
    memset(p, 0, sizeof *p);
}

/* The field name used in messages and as OpenAI's `param`. */
static const char *input_field(const srv_request *r)
{
    return r->route == SRV_ROUTE_OPENAI ? "input" : r->route == SRV_ROUTE_SEARCH ? "query"
                                                                                 : "inputs";
}

/* Resolves the prompt: the named one, else the model's default (as
 * sentence-transformers and `medembed embed` do). *out may be NULL. */
static int resolve_prompt(const srv_model *sm, const srv_request *r, const char **out,
                          srv_error *err)
{
    *out = NULL;
    if (r->prompt_name) {
        const char *p = medembed_model_prompt(sm->m, r->prompt_name);
        if (!p)
            return srv_fail(err, 422, "Validation", "prompt_name", "unknown_prompt",
                            "prompt_name \"%.100s\" is not among the model's prompts (%s)",
                            r->prompt_name,
                            sm->prompt_names[0] ? sm->prompt_names : "it defines none");
        *out = p;
    } else {
        *out = medembed_model_prompt(sm->m, NULL);
    }
    if (*out && !**out)
        *out = NULL;
    return 0;
}

/* Tokenizes text (prompt prepended) into *ids (grown as needed). */
static int tokenize_into(const srv_model *sm, const char *prompt, const char *text, size_t len,
                         uint32_t flags, int32_t **ids, int32_t *cap, medembed_text_info *info,
                         srv_error *err)
{
    char *joined = NULL;
    if (prompt) {
        size_t pl = strlen(prompt);
        joined = malloc(pl + len + 1);
        if (!joined)
            return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
        memcpy(joined, prompt, pl);
        memcpy(joined + pl, text, len);
        text = joined;
        len += pl;
    }
    int rc = MEDEMBED_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = medembed_tokenize(sm->m, text, len, flags, *ids, *cap, info);
        if (rc != MEDEMBED_OK || info->n_tokens <= *cap)
            break;
        int32_t *p = realloc(*ids, sizeof *p * (size_t)info->n_tokens);
        if (!p) {
            rc = MEDEMBED_ERR_NOMEM;
            break;
        }
        *ids = p;
        *cap = info->n_tokens;
    }
    free(joined);
    if (rc != MEDEMBED_OK)
        return srv_fail(err, rc == MEDEMBED_ERR_NOMEM ? 500 : 422,
                        rc == MEDEMBED_ERR_NOMEM ? "Backend" : "Tokenizer", NULL,
                        "tokenization_failed", "tokenization failed: %s",
                        medembed_status_str(rc));
    return 0;
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

int srv_prepare(const srv_model *sm, const srv_request *r, int auto_truncate, srv_prepared *p,
                srv_error *err)
{
    memset(p, 0, sizeof *p);
    int truncate = r->truncate >= 0 ? r->truncate : auto_truncate;
    int32_t max = sm->max_length;
    const char *prompt = NULL;
    int has_text = 0;
    for (int32_t i = 0; i < r->n; i++)
        has_text |= r->inputs[i].text != NULL;
    if (has_text || r->prompt_name)
        if (resolve_prompt(sm, r, &prompt, err) != 0)
            return -1;
    for (int32_t i = 0; i < r->n; i++)
        if (!r->inputs[i].text && r->prompt_name)
            return srv_fail(err, 422, "Validation", "prompt_name", "unknown_prompt",
                            "prompt_name cannot be used with token-id inputs");

    p->n = r->n;
    /* With include_prompt = false the library must see the prompt to leave
     * its tokens out of pooling, so such requests go in as texts. */
    p->text_mode = prompt && !sm->include_prompt;
    p->prompt = p->text_mode ? prompt : NULL;
    p->flags = r->normalize ? 0 : MEDEMBED_F_NO_NORMALIZE;
    p->post_normalize = r->normalize && !sm->normalize;
    p->renormalize = r->normalize && r->dimensions > 0 && r->dimensions < sm->dim;
    p->lens = malloc(sizeof *p->lens * (size_t)r->n);
    if (p->text_mode) {
        p->texts = malloc(sizeof *p->texts * (size_t)r->n);
        p->text_lens = malloc(sizeof *p->text_lens * (size_t)r->n);
    }
    if (!p->lens || (p->text_mode && (!p->texts || !p->text_lens)))
        goto oom;

    size_t total = 0, cap_total = 0;
    int32_t cap = max + 2;
    int32_t *tmp = malloc(sizeof *tmp * (size_t)cap);
    if (!tmp)
        goto oom;
    for (int32_t i = 0; i < r->n; i++) {
        const srv_input *in = &r->inputs[i];
        const int32_t *seq;
        int32_t n, n_full;
        if (in->text) {
            /* Right truncation is the library's own (what `medembed embed`
             * does); left truncation needs every token. */
            uint32_t tf = (truncate && r->truncate_left) ? MEDEMBED_F_NO_TRUNCATE : 0;
            medembed_text_info info;
            if (tokenize_into(sm, prompt, in->text, in->len, tf, &tmp, &cap, &info, err) != 0) {
                free(tmp);
                srv_prepared_free(p);
                return -1;
            }
            n_full = info.n_untruncated;
            n = info.n_tokens;
            seq = tmp;
            if (n_full > max) {
                if (!truncate) {
                    free(tmp);
                    srv_prepared_free(p);
                    return too_long(sm, r, i, n_full, err);
                }
                if (r->truncate_left) {
                    if (p->text_mode) {
                        free(tmp);
                        srv_prepared_free(p);
                        return srv_fail(err, 422, "Validation", "truncation_direction",
                                        "invalid_value",
                                        "truncation_direction \"left\" is not supported with "
                                        "this model's prompts (include_prompt is false)");
                    }
                    /* [CLS] + the last max-2 pieces + [SEP], as HF's left
                     * truncation keeps them. */
                    memmove(tmp + 1, tmp + (n - 1 - (max - 2)), sizeof *tmp * (size_t)(max - 2));
                    tmp[max - 1] = tmp[n - 1];
                    n = max;
                }
                p->n_truncated++;
            }
            if (n > max)
                n = max;
        } else {
            n_full = in->n_ids;
            n = n_full;
            seq = in->ids;
            if (n_full > max) {
                if (!truncate) {
                    free(tmp);
                    srv_prepared_free(p);
                    return too_long(sm, r, i, n_full, err);
                }
                if (r->truncate_left)
                    seq = in->ids + (n_full - max);
                n = max;
                p->n_truncated++;
            }
        }
        p->lens[i] = n;
        p->n_tokens += n;
        if (p->text_mode) {
            p->texts[i] = in->text;
            p->text_lens[i] = in->len;
            continue;
        }
        if (total + (size_t)n > cap_total) {
            size_t c = cap_total ? cap_total * 2 : (size_t)(max * 4);
            while (c < total + (size_t)n)
                c *= 2;
            int32_t *q = realloc(p->ids, sizeof *q * c);
            if (!q) {
                free(tmp);
                goto oom;
            }
            p->ids = q;
            cap_total = c;
        }
        memcpy(p->ids + total, seq, sizeof *seq * (size_t)n);
        total += (size_t)n;
    }
    free(tmp);
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
    const char *prompt = NULL;
    if (resolve_prompt(sm, r, &prompt, err) != 0)
        return -1;
    int32_t cap = sm->max_length + 2;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    if (!ids)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    srv_buf_puts(b, "[");
    for (int32_t i = 0; i < r->n; i++) {
        medembed_text_info info;
        if (tokenize_into(sm, prompt, r->inputs[i].text, r->inputs[i].len,
                          MEDEMBED_F_NO_TRUNCATE, &ids, &cap, &info, err) != 0) {
            free(ids);
            return -1;
        }
        int32_t lo = 0, hi = info.n_tokens;
        if (!r->add_special_tokens && hi >= 2) {
            lo = 1; /* drop the template's [CLS] ... [SEP] */
            hi--;
        }
        srv_buf_puts(b, i ? ",[" : "[");
        for (int32_t k = lo; k < hi; k++) {
            const char *t = medembed_token_str(sm->m, ids[k]);
            int special = (r->add_special_tokens && (k == 0 || k == info.n_tokens - 1)) ||
                          is_special_str(t);
            srv_buf_printf(b, "%s{\"id\":%d,\"text\":", k > lo ? "," : "", ids[k]);
            srv_buf_json_string(b, t ? t : "", t ? strlen(t) : 0);
            srv_buf_puts(b, special ? ",\"special\":true,\"start\":null,\"stop\":null}"
                                    : ",\"special\":false,\"start\":null,\"stop\":null}");
        }
        srv_buf_puts(b, "]");
    }
    srv_buf_puts(b, "]");
    free(ids);
    if (b->oom)
        return srv_fail(err, 500, "Backend", NULL, "out_of_memory", "out of memory");
    return 0;
}
