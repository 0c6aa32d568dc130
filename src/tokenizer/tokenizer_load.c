/*
 * tokenizer_load.c - builds a me_tokenizer from a Hugging Face model folder.
 *
 * Preferred: DIR/tokenizer.json (model WordPiece, normalizer BertNormalizer,
 * pre_tokenizer BertPreTokenizer, post_processor TemplateProcessing
 * "[CLS] $A [SEP]" or BertProcessing, added_tokens). Fallback when it is
 * absent: DIR/vocab.txt + DIR/tokenizer_config.json (+ special_tokens_map.json),
 * read the way transformers' BertTokenizerFast converts a slow BertTokenizer.
 * Anything else is MEDEMBED_ERR_UNSUPPORTED, naming the file and the type.
 *
 * Every file is untrusted: sizes are capped (ME_TOK_FILE_MAX), JSON errors
 * name file:line:column, ids must lie in [0, ME_TOK_VOCAB_MAX) and no id
 * may name two tokens. `truncation` and `padding` in tokenizer.json are
 * ignored (callers pass max_tokens), except padding.pad_id for the pad id.
 *
 * Added-token ids follow HF AddedVocabulary::add_tokens, not the "id" field
 * of the file: a token in the model vocab takes the vocab id, any other the
 * next id after the vocab (they agree for every file HF writes).
 */
#include "tokenizer/tok_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer/unicode.h"

#define ME_PATH_BUF 4096

typedef struct added_spec {
    char *s;
    size_t len;
    uint8_t single_word, lstrip, rstrip, normalized;
} added_spec;

typedef struct added_list {
    added_spec *v;
    int32_t n, cap;
} added_list;

static void added_list_free(added_list *l)
{
    for (int32_t i = 0; i < l->n; i++)
        free(l->v[i].s);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int added_has(const added_list *l, const char *s, size_t len)
{
    for (int32_t i = 0; i < l->n; i++)
        if (l->v[i].len == len && memcmp(l->v[i].s, s, len) == 0)
            return 1;
    return 0;
}

static int added_push(added_list *l, const char *path, const char *s, size_t len, int single_word,
                      int lstrip, int rstrip, int normalized, me_err *e)
{
    RETURN_ERROR_IF(l->n >= ME_TOK_ADDED_MAX, e, MEDEMBED_ERR_FORMAT,
                    "%s: more than %d added tokens", path, ME_TOK_ADDED_MAX);
    if (l->n == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 16;
        added_spec *p = realloc(l->v, (size_t)cap * sizeof *p);
        RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory for added tokens");
        l->v = p;
        l->cap = cap;
    }
    char *c = malloc(len + 1);
    RETURN_ERROR_IF(!c, e, MEDEMBED_ERR_NOMEM, "out of memory for an added token");
    memcpy(c, s, len);
    c[len] = 0;
    added_spec *a = &l->v[l->n++];
    a->s = c;
    a->len = len;
    a->single_word = (uint8_t)!!single_word;
    a->lstrip = (uint8_t)!!lstrip;
    a->rstrip = (uint8_t)!!rstrip;
    a->normalized = (uint8_t)!!normalized;
    return MEDEMBED_OK;
}

/* ------------------------------------------------------------------------ */
/* Files and JSON                                                            */
/* ------------------------------------------------------------------------ */

static int join_path(char *buf, size_t n, const char *dir, const char *name, me_err *e)
{
    int w = snprintf(buf, n, "%s/%s", dir, name);
    RETURN_ERROR_IF(w < 0 || (size_t)w >= n, e, MEDEMBED_ERR_ARG,
                    "path %s/%s is longer than %zu bytes", dir, name, n - 1);
    return MEDEMBED_OK;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Reads a whole regular file of at most ME_TOK_FILE_MAX bytes; *out is
 * NUL-terminated and owned by the caller. */
static int read_file(const char *path, char **out, size_t *len, me_err *e)
{
    FILE *f = fopen(path, "rb");
    RETURN_ERROR_IF(!f, e, MEDEMBED_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return me_err_set(e, MEDEMBED_ERR_IO, "%s is not a regular file", path);
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > ME_TOK_FILE_MAX) {
        fclose(f);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s is %lld bytes; the limit is %u", path,
                          (long long)st.st_size, ME_TOK_FILE_MAX);
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, n);
    }
    size_t got = fread(b, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(b);
        return me_err_set(e, MEDEMBED_ERR_IO, "cannot read %s: short read (%zu of %zu bytes)",
                          path, got, n);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return MEDEMBED_OK;
}

static int load_json(const char *path, json_t **root, me_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    FORWARD_IF_ERROR(read_file(path, &buf, &len, e));
    json_error_t je;
    *root = json_loadb(buf, len, JSON_ALLOW_NUL, &je);
    free(buf);
    RETURN_ERROR_IF(!*root, e, MEDEMBED_ERR_FORMAT, "%s:%d:%d: malformed JSON: %s", path, je.line,
                    je.column, je.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: the top level is not a JSON object", path);
    }
    return MEDEMBED_OK;
}

/* obj[key] as a bool; missing or null gives def. */
static int get_bool(const char *path, const char *ctx, json_t *obj, const char *key, int def,
                    int *out, me_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(!json_is_boolean(v), e, MEDEMBED_ERR_FORMAT,
                    "%s: %s%s must be true or false", path, ctx, key);
    *out = json_is_true(v);
    return MEDEMBED_OK;
}

/* obj[key] as a string; missing or null gives def (which may be NULL). */
static int get_str(const char *path, const char *ctx, json_t *obj, const char *key,
                   const char *def, const char **out, size_t *len, me_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        *len = def ? strlen(def) : 0;
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(!json_is_string(v), e, MEDEMBED_ERR_FORMAT, "%s: %s%s must be a string",
                    path, ctx, key);
    *out = json_string_value(v);
    *len = json_string_length(v);
    return MEDEMBED_OK;
}

/* An integer in [lo, hi). */
static int get_int(const char *path, const char *ctx, json_t *v, long long lo, long long hi,
                   long long *out, me_err *e)
{
    RETURN_ERROR_IF(!v || !json_is_integer(v), e, MEDEMBED_ERR_FORMAT,
                    "%s: %s must be an integer", path, ctx);
    long long x = json_integer_value(v);
    RETURN_ERROR_IF(x < lo || x >= hi, e, MEDEMBED_ERR_FORMAT,
                    "%s: %s = %lld is outside [%lld, %lld)", path, ctx, x, lo, hi);
    *out = x;
    return MEDEMBED_OK;
}

/* A type tag: obj["type"] as a string, or NULL. */
static const char *type_of(json_t *obj)
{
    json_t *v = json_object_get(obj, "type");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ------------------------------------------------------------------------ */
/* Shared finishing steps                                                    */
/* ------------------------------------------------------------------------ */

/* HF AddedVocabulary::add_tokens: assigns ids, records strings, builds the
 * raw and normalized match sets. Needs the normalizer flags and the model
 * vocab in place. */
static int add_tokens(me_tokenizer *t, const char *path, const added_list *l, me_err *e)
{
    t->added_ids = calloc((size_t)(l->n ? l->n : 1), sizeof *t->added_ids);
    int32_t *id_of = calloc((size_t)(l->n ? l->n : 1), sizeof *id_of);
    me_vocab seen; /* content -> index in l, for repeated contents */
    int rc = me_vocab_init(&seen, (size_t)l->n, "", 0, e);
    if (rc == MEDEMBED_OK && (!t->added_ids || !id_of))
        rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory for added tokens");
    uint32_t *cp = NULL;
    size_t cp_cap = 0;
    uint32_t *norm = NULL;
    size_t norm_cap = 0;
    int64_t max_id = -1;
    int32_t n_model = t->vocab.n_model;

    for (int32_t i = 0; i < l->n && rc == MEDEMBED_OK; i++) {
        const added_spec *a = &l->v[i];
        if (a->len == 0)
            continue;
        int32_t prev = me_vocab_find(&seen, a->s, a->len);
        int32_t id;
        if (prev >= 0) {
            id = id_of[prev];
        } else {
            id = me_vocab_find(&t->vocab, a->s, a->len);
            if (id < 0)
                id = (max_id < n_model) ? n_model : (int32_t)(max_id + 1);
            if (id >= ME_TOK_VOCAB_MAX) {
                rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                                "%s: added token \"%.40s\" would get id %d, beyond the limit "
                                "of %d", path, a->s, id, ME_TOK_VOCAB_MAX);
                break;
            }
            if (id > max_id)
                max_id = id;
            rc = me_vocab_add_model(&seen, a->s, a->len, i, NULL, e);
            if (rc == MEDEMBED_OK)
                rc = me_vocab_set_added(&t->vocab, a->s, a->len, id, e);
            if (rc != MEDEMBED_OK)
                break;
            t->added_ids[t->n_added++] = id;
        }
        id_of[i] = id;

        rc = me_tok_reserve((void **)&cp, &cp_cap, a->len + 1, sizeof *cp, e);
        if (rc != MEDEMBED_OK)
            break;
        size_t n = me_utf8_decode_lossy((const uint8_t *)a->s, a->len, cp, NULL, NULL);
        if (a->normalized) {
            size_t m = 0;
            rc = me_normalize(t, cp, n, &norm, &norm_cap, &m, e);
            if (rc == MEDEMBED_OK)
                rc = me_added_set_add(&t->norm, norm, m, id, a->single_word, a->lstrip,
                                      a->rstrip, e);
        } else {
            rc = me_added_set_add(&t->raw, cp, n, id, a->single_word, a->lstrip, a->rstrip, e);
        }
    }
    free(cp);
    free(norm);
    free(id_of);
    me_vocab_free(&seen);
    me_added_set_sort(&t->raw);
    me_added_set_sort(&t->norm);
    return rc;
}

static int check_special(const me_tokenizer *t, const char *path, const char *what, int32_t id,
                         me_err *e)
{
    RETURN_ERROR_IF(id < 0 || id >= t->vocab.n_ids || !me_vocab_str(&t->vocab, id), e,
                    MEDEMBED_ERR_FORMAT, "%s: %s id %d is not a token of the vocab (size %d)",
                    path, what, id, t->vocab.n_ids);
    return MEDEMBED_OK;
}

/* Token id (added first, then model) of a named special token, or an error. */
static int find_special(const me_tokenizer *t, const char *path, const char *what, const char *s,
                        int32_t *id, me_err *e)
{
    *id = me_tokenizer_find(t, s, strlen(s));
    RETURN_ERROR_IF(*id < 0, e, MEDEMBED_ERR_FORMAT, "%s: %s \"%.40s\" is not in the vocab", path,
                    what, s);
    return MEDEMBED_OK;
}

/* ------------------------------------------------------------------------ */
/* tokenizer.json                                                            */
/* ------------------------------------------------------------------------ */

static int parse_normalizer(me_tokenizer *t, const char *path, json_t *root, me_err *e)
{
    json_t *n = json_object_get(root, "normalizer");
    if (!n || json_is_null(n)) {
        t->clean_text = t->handle_cjk = t->strip_accents = t->lowercase = 0;
        return MEDEMBED_OK;
    }
    const char *ty = type_of(n);
    RETURN_ERROR_IF(!json_is_object(n) || !ty, e, MEDEMBED_ERR_FORMAT,
                    "%s: normalizer has no \"type\"", path);
    RETURN_ERROR_IF(strcmp(ty, "BertNormalizer") != 0, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: normalizer type \"%.60s\" is not supported (only BertNormalizer)", path,
                    ty);
    int clean = 0;
    int cjk = 0;
    int lower = 0;
    int strip = 0;
    FORWARD_IF_ERROR(get_bool(path, "normalizer.", n, "clean_text", 1, &clean, e));
    FORWARD_IF_ERROR(get_bool(path, "normalizer.", n, "handle_chinese_chars", 1, &cjk, e));
    FORWARD_IF_ERROR(get_bool(path, "normalizer.", n, "lowercase", 1, &lower, e));
    /* strip_accents: null => follows lowercase (bert.rs). */
    FORWARD_IF_ERROR(get_bool(path, "normalizer.", n, "strip_accents", lower, &strip, e));
    t->clean_text = (uint8_t)clean;
    t->handle_cjk = (uint8_t)cjk;
    t->lowercase = (uint8_t)lower;
    t->strip_accents = (uint8_t)strip;
    return MEDEMBED_OK;
}

static int parse_pre_tokenizer(const char *path, json_t *root, me_err *e)
{
    json_t *p = json_object_get(root, "pre_tokenizer");
    RETURN_ERROR_IF(!p || json_is_null(p), e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: no pre_tokenizer (only BertPreTokenizer is supported)", path);
    const char *ty = type_of(p);
    RETURN_ERROR_IF(!json_is_object(p) || !ty, e, MEDEMBED_ERR_FORMAT,
                    "%s: pre_tokenizer has no \"type\"", path);
    RETURN_ERROR_IF(strcmp(ty, "BertPreTokenizer") != 0, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: pre_tokenizer type \"%.60s\" is not supported (only BertPreTokenizer)",
                    path, ty);
    return MEDEMBED_OK;
}

static int parse_model(me_tokenizer *t, const char *path, json_t *root, const char **unk,
                       me_err *e)
{
    json_t *m = json_object_get(root, "model");
    RETURN_ERROR_IF(!json_is_object(m), e, MEDEMBED_ERR_FORMAT, "%s: no \"model\" object", path);
    const char *ty = type_of(m);
    RETURN_ERROR_IF(!ty, e, MEDEMBED_ERR_FORMAT, "%s: model has no \"type\"", path);
    RETURN_ERROR_IF(strcmp(ty, "WordPiece") != 0, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: model type \"%.60s\" is not supported (only WordPiece)", path, ty);

    const char *prefix;
    size_t prefix_len;
    size_t unk_len;
    FORWARD_IF_ERROR(get_str(path, "model.", m, "continuing_subword_prefix", "##", &prefix,
                             &prefix_len, e));
    FORWARD_IF_ERROR(get_str(path, "model.", m, "unk_token", "[UNK]", unk, &unk_len, e));
    json_t *mc = json_object_get(m, "max_input_chars_per_word");
    long long max_chars = 100;
    if (mc && !json_is_null(mc))
        FORWARD_IF_ERROR(get_int(path, "model.max_input_chars_per_word", mc, 0,
                                 ME_TOK_WORD_CHARS_MAX + 1LL, &max_chars, e));
    t->max_chars = (size_t)max_chars;

    json_t *vocab = json_object_get(m, "vocab");
    RETURN_ERROR_IF(!json_is_object(vocab), e, MEDEMBED_ERR_FORMAT,
                    "%s: model.vocab is not an object", path);
    size_t n = json_object_size(vocab);
    RETURN_ERROR_IF(n > ME_TOK_VOCAB_MAX, e, MEDEMBED_ERR_FORMAT,
                    "%s: model.vocab has %zu tokens; the limit is %d", path, n, ME_TOK_VOCAB_MAX);
    FORWARD_IF_ERROR(me_vocab_init(&t->vocab, n, prefix, prefix_len, e));
    const char *key;
    size_t key_len;
    json_t *val;
    json_object_keylen_foreach(vocab, key, key_len, val)
    {
        RETURN_ERROR_IF(!json_is_integer(val), e, MEDEMBED_ERR_FORMAT,
                        "%s: model.vocab[\"%.40s\"] is not an integer id", path, key);
        long long id = json_integer_value(val);
        RETURN_ERROR_IF(id < 0 || id >= ME_TOK_VOCAB_MAX, e, MEDEMBED_ERR_FORMAT,
                        "%s: model.vocab[\"%.40s\"] = %lld is outside [0, %d)", path, key, id,
                        ME_TOK_VOCAB_MAX);
        int32_t other = -1;
        int rc = me_vocab_add_model(&t->vocab, key, key_len, (int32_t)id, &other, e);
        if (rc == MEDEMBED_ERR_FORMAT && other >= 0)
            return me_err_set(e, rc,
                              "%s: model.vocab gives id %lld to both \"%.40s\" and \"%.40s\"",
                              path, id, me_vocab_str(&t->vocab, other), key);
        FORWARD_IF_ERROR(rc);
    }
    return MEDEMBED_OK;
}

static int parse_added_tokens(const char *path, json_t *root, added_list *l, me_err *e)
{
    json_t *arr = json_object_get(root, "added_tokens");
    if (!arr || json_is_null(arr))
        return MEDEMBED_OK;
    RETURN_ERROR_IF(!json_is_array(arr), e, MEDEMBED_ERR_FORMAT,
                    "%s: added_tokens is not an array", path);
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "added_tokens[%zu].", i);
        RETURN_ERROR_IF(!json_is_object(a), e, MEDEMBED_ERR_FORMAT, "%s: %s is not an object",
                        path, ctx);
        long long id;
        char idctx[80];
        snprintf(idctx, sizeof idctx, "%sid", ctx);
        FORWARD_IF_ERROR(get_int(path, idctx, json_object_get(a, "id"), 0, 1LL << 32, &id, e));
        const char *s;
        size_t len;
        FORWARD_IF_ERROR(get_str(path, ctx, a, "content", NULL, &s, &len, e));
        RETURN_ERROR_IF(!s, e, MEDEMBED_ERR_FORMAT, "%s: %scontent is missing", path, ctx);
        int sw = 0;
        int ls = 0;
        int rs = 0;
        int special = 0;
        int norm = 0;
        FORWARD_IF_ERROR(get_bool(path, ctx, a, "single_word", 0, &sw, e));
        FORWARD_IF_ERROR(get_bool(path, ctx, a, "lstrip", 0, &ls, e));
        FORWARD_IF_ERROR(get_bool(path, ctx, a, "rstrip", 0, &rs, e));
        FORWARD_IF_ERROR(get_bool(path, ctx, a, "special", 0, &special, e));
        FORWARD_IF_ERROR(get_bool(path, ctx, a, "normalized", !special, &norm, e));
        FORWARD_IF_ERROR(added_push(l, path, s, len, sw, ls, rs, norm, e));
    }
    return MEDEMBED_OK;
}

/* One id of a TemplateProcessing special token, by its name. */
static int template_id(const char *path, json_t *pp, json_t *piece, int32_t *id, me_err *e)
{
    json_t *st = json_object_get(piece, "SpecialToken");
    json_t *name = json_object_get(st, "id");
    RETURN_ERROR_IF(!json_is_string(name), e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: post_processor template is not [CLS] $A [SEP]", path);
    json_t *spec = json_object_get(json_object_get(pp, "special_tokens"), json_string_value(name));
    json_t *ids = json_object_get(spec, "ids");
    RETURN_ERROR_IF(!json_is_array(ids) || json_array_size(ids) != 1, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: post_processor special token \"%.40s\" must have exactly one id", path,
                    json_string_value(name));
    long long v;
    FORWARD_IF_ERROR(get_int(path, "post_processor special token id", json_array_get(ids, 0), 0,
                             ME_TOK_VOCAB_MAX, &v, e));
    *id = (int32_t)v;
    return MEDEMBED_OK;
}

static int parse_post_processor(me_tokenizer *t, const char *path, json_t *root, me_err *e)
{
    json_t *pp = json_object_get(root, "post_processor");
    RETURN_ERROR_IF(!pp || json_is_null(pp), e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: no post_processor; [CLS] $A [SEP] (TemplateProcessing or "
                    "BertProcessing) is required", path);
    const char *ty = type_of(pp);
    RETURN_ERROR_IF(!json_is_object(pp) || !ty, e, MEDEMBED_ERR_FORMAT,
                    "%s: post_processor has no \"type\"", path);
    if (strcmp(ty, "BertProcessing") == 0) {
        json_t *cls = json_object_get(pp, "cls");
        json_t *sep = json_object_get(pp, "sep");
        RETURN_ERROR_IF(!json_is_array(cls) || !json_is_array(sep) || json_array_size(cls) != 2 ||
                            json_array_size(sep) != 2,
                        e, MEDEMBED_ERR_FORMAT,
                        "%s: BertProcessing cls and sep must be [token, id] pairs", path);
        long long c;
        long long s;
        FORWARD_IF_ERROR(get_int(path, "post_processor.cls id", json_array_get(cls, 1), 0,
                                 ME_TOK_VOCAB_MAX, &c, e));
        FORWARD_IF_ERROR(get_int(path, "post_processor.sep id", json_array_get(sep, 1), 0,
                                 ME_TOK_VOCAB_MAX, &s, e));
        t->cls_id = (int32_t)c;
        t->sep_id = (int32_t)s;
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(strcmp(ty, "TemplateProcessing") != 0, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: post_processor type \"%.60s\" is not supported (only "
                    "TemplateProcessing or BertProcessing)", path, ty);
    json_t *single = json_object_get(pp, "single");
    json_t *mid = json_array_get(single, 1);
    json_t *seq = json_object_get(json_object_get(mid, "Sequence"), "id");
    RETURN_ERROR_IF(!json_is_array(single) || json_array_size(single) != 3 ||
                        !json_is_string(seq) || strcmp(json_string_value(seq), "A") != 0,
                    e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: post_processor template is not [CLS] $A [SEP]", path);
    FORWARD_IF_ERROR(template_id(path, pp, json_array_get(single, 0), &t->cls_id, e));
    FORWARD_IF_ERROR(template_id(path, pp, json_array_get(single, 2), &t->sep_id, e));
    return MEDEMBED_OK;
}

static int load_tokenizer_json(me_tokenizer *t, const char *path, me_err *e)
{
    json_t *root = NULL;
    FORWARD_IF_ERROR(load_json(path, &root, e));
    added_list added;
    memset(&added, 0, sizeof added);
    const char *unk = NULL;
    int rc = parse_model(t, path, root, &unk, e);
    if (rc == MEDEMBED_OK)
        rc = parse_normalizer(t, path, root, e);
    if (rc == MEDEMBED_OK)
        rc = parse_pre_tokenizer(path, root, e);
    if (rc == MEDEMBED_OK)
        rc = parse_post_processor(t, path, root, e);
    if (rc == MEDEMBED_OK)
        rc = parse_added_tokens(path, root, &added, e);
    if (rc == MEDEMBED_OK) {
        me_norm_init_tables(t);
        rc = me_vocab_finish(&t->vocab, e);
    }
    if (rc == MEDEMBED_OK) {
        t->unk_id = me_vocab_find(&t->vocab, unk, strlen(unk));
        if (t->unk_id < 0)
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: unk_token \"%.40s\" is not in model.vocab",
                            path, unk);
    }
    if (rc == MEDEMBED_OK)
        rc = add_tokens(t, path, &added, e);
    if (rc == MEDEMBED_OK)
        rc = check_special(t, path, "post_processor [CLS]", t->cls_id, e);
    if (rc == MEDEMBED_OK)
        rc = check_special(t, path, "post_processor [SEP]", t->sep_id, e);
    if (rc == MEDEMBED_OK) {
        json_t *pad = json_object_get(json_object_get(root, "padding"), "pad_id");
        t->pad_id = me_tokenizer_find(t, "[PAD]", 5);
        if (json_is_integer(pad) && json_integer_value(pad) >= 0 &&
            json_integer_value(pad) < t->vocab.n_ids)
            t->pad_id = (int32_t)json_integer_value(pad);
        if (t->pad_id < 0)
            t->pad_id = 0;
    }
    added_list_free(&added);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* vocab.txt + tokenizer_config.json + special_tokens_map.json               */
/* ------------------------------------------------------------------------ */

/* transformers load_vocab: Python text-mode readlines (\n, \r\n and \r all
 * end a line), rstrip("\n"), id = line index; a repeated token keeps its
 * last line. */
static int load_vocab_txt(me_tokenizer *t, const char *path, me_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    FORWARD_IF_ERROR(read_file(path, &buf, &len, e));
    size_t bad = me_utf8_first_invalid((const uint8_t *)buf, len);
    if (bad < len) {
        free(buf);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: invalid UTF-8 at byte offset %zu", path,
                          bad);
    }
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' || (buf[i] == '\r' && (i + 1 >= len || buf[i + 1] != '\n')))
            n_lines++;
    if (len > 0 && buf[len - 1] != '\n' && buf[len - 1] != '\r')
        n_lines++;
    if (n_lines > ME_TOK_VOCAB_MAX) {
        free(buf);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s has %zu lines; the limit is %d", path,
                          n_lines, ME_TOK_VOCAB_MAX);
    }
    int rc = me_vocab_init(&t->vocab, n_lines, "##", 2, e);
    size_t start = 0;
    int32_t id = 0;
    for (size_t i = 0; i <= len && rc == MEDEMBED_OK; i++) {
        int end = i == len || buf[i] == '\n' || buf[i] == '\r';
        if (!end)
            continue;
        if (i == len && start == len)
            break; /* no text after the last newline */
        rc = me_vocab_add_model(&t->vocab, buf + start, i - start, id++, NULL, e);
        if (i < len && buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    free(buf);
    if (rc != MEDEMBED_OK)
        return me_err_prefix(e, rc, "%s", path);
    return MEDEMBED_OK;
}

/* A special token entry: "[CLS]" or {"content": "[CLS]", ...}. Sets *s to
 * NULL when absent or null. */
static int special_value(const char *path, json_t *v, const char *key, const char **s,
                         size_t *len, json_t **obj, me_err *e)
{
    *obj = NULL;
    if (!v || json_is_null(v))
        return MEDEMBED_OK;
    if (json_is_string(v)) {
        *s = json_string_value(v);
        *len = json_string_length(v);
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(!json_is_object(v), e, MEDEMBED_ERR_FORMAT,
                    "%s: %s must be a string or an object", path, key);
    json_t *c = json_object_get(v, "content");
    RETURN_ERROR_IF(!json_is_string(c), e, MEDEMBED_ERR_FORMAT,
                    "%s: %s.content must be a string", path, key);
    *s = json_string_value(c);
    *len = json_string_length(c);
    *obj = v;
    return MEDEMBED_OK;
}

enum { SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_N };
static const char *const k_special_keys[SP_N] = {"unk_token", "sep_token", "pad_token",
                                                 "cls_token", "mask_token"};
static const char *const k_special_defaults[SP_N] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]",
                                                     "[MASK]"};

typedef struct fallback_cfg {
    json_t *config; /* tokenizer_config.json or NULL */
    json_t *map;    /* special_tokens_map.json or NULL */
    char config_path[ME_PATH_BUF];
    char map_path[ME_PATH_BUF];
} fallback_cfg;

/* Adds an added token given as an AddedToken dict (or a plain string, a
 * special token: not normalized). */
static int push_token_value(added_list *l, const char *path, const char *key, json_t *v,
                            int skip_present, me_err *e)
{
    const char *s = NULL;
    size_t len = 0;
    json_t *obj = NULL;
    FORWARD_IF_ERROR(special_value(path, v, key, &s, &len, &obj, e));
    if (!s || (skip_present && added_has(l, s, len)))
        return MEDEMBED_OK;
    int sw = 0;
    int ls = 0;
    int rs = 0;
    int special = 1;
    int norm = 0;
    if (obj) {
        FORWARD_IF_ERROR(get_bool(path, key, obj, "single_word", 0, &sw, e));
        FORWARD_IF_ERROR(get_bool(path, key, obj, "lstrip", 0, &ls, e));
        FORWARD_IF_ERROR(get_bool(path, key, obj, "rstrip", 0, &rs, e));
        FORWARD_IF_ERROR(get_bool(path, key, obj, "special", 1, &special, e));
        FORWARD_IF_ERROR(get_bool(path, key, obj, "normalized", !special, &norm, e));
    }
    return added_push(l, path, s, len, sw, ls, rs, norm, e);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a;
    long long y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* added_tokens_decoder (sorted by id), then the special tokens, then
 * additional_special_tokens: the order PreTrainedTokenizerFast adds them. */
static int fallback_added(const fallback_cfg *c, const char *special[SP_N], added_list *l,
                          me_err *e)
{
    json_t *dec = c->config ? json_object_get(c->config, "added_tokens_decoder") : NULL;
    if (dec && !json_is_null(dec)) {
        RETURN_ERROR_IF(!json_is_object(dec), e, MEDEMBED_ERR_FORMAT,
                        "%s: added_tokens_decoder is not an object", c->config_path);
        size_t n = json_object_size(dec);
        RETURN_ERROR_IF(n > ME_TOK_ADDED_MAX, e, MEDEMBED_ERR_FORMAT,
                        "%s: more than %d added tokens", c->config_path, ME_TOK_ADDED_MAX);
        long long *keys = malloc((n ? n : 1) * sizeof *keys);
        RETURN_ERROR_IF(!keys, e, MEDEMBED_ERR_NOMEM, "out of memory");
        size_t k = 0;
        const char *key;
        json_t *val;
        json_object_foreach(dec, key, val)
        {
            char *end = NULL;
            errno = 0;
            long long id = strtoll(key, &end, 10);
            if (errno || !end || *end || end == key || id < 0 || id >= ME_TOK_VOCAB_MAX) {
                free(keys);
                return me_err_set(e, MEDEMBED_ERR_FORMAT,
                                  "%s: added_tokens_decoder key \"%.40s\" is not an id in [0, %d)",
                                  c->config_path, key, ME_TOK_VOCAB_MAX);
            }
            keys[k++] = id;
        }
        qsort(keys, k, sizeof *keys, cmp_ll);
        int rc = MEDEMBED_OK;
        for (size_t i = 0; i < k && rc == MEDEMBED_OK; i++) {
            char name[32];
            snprintf(name, sizeof name, "%lld", keys[i]);
            char ctx[64];
            snprintf(ctx, sizeof ctx, "added_tokens_decoder[\"%lld\"]", keys[i]);
            rc = push_token_value(l, c->config_path, ctx, json_object_get(dec, name), 0, e);
        }
        free(keys);
        FORWARD_IF_ERROR(rc);
    }
    for (int i = 0; i < SP_N; i++) {
        size_t len = strlen(special[i]);
        if (!added_has(l, special[i], len))
            FORWARD_IF_ERROR(added_push(l, c->config_path, special[i], len, 0, 0, 0, 0, e));
    }
    json_t *srcs[2] = {c->config, c->map};
    const char *paths[2] = {c->config_path, c->map_path};
    int src = c->map && json_object_get(c->map, "additional_special_tokens") ? 1 : 0;
    json_t *extra = srcs[src] ? json_object_get(srcs[src], "additional_special_tokens") : NULL;
    if (extra && json_is_array(extra)) {
        size_t i;
        json_t *v;
        json_array_foreach(extra, i, v)
            FORWARD_IF_ERROR(
                push_token_value(l, paths[src], "additional_special_tokens[]", v, 1, e));
    }
    return MEDEMBED_OK;
}

static int is_bert_class(const char *cls)
{
    static const char *const ok[] = {"BertTokenizer",       "BertTokenizerFast",
                                     "DistilBertTokenizer", "DistilBertTokenizerFast",
                                     "ElectraTokenizer",    "ElectraTokenizerFast"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(cls, ok[i]) == 0)
            return 1;
    return 0;
}

static int load_fallback_cfg(me_tokenizer *t, fallback_cfg *c, const char *special[SP_N],
                             me_err *e)
{
    json_t *cfg = c->config;
    int lower = 1;
    int cjk = 1;
    int strip = 0;
    if (cfg) {
        const char *cls = NULL;
        size_t cls_len;
        FORWARD_IF_ERROR(get_str(c->config_path, "", cfg, "tokenizer_class", NULL, &cls, &cls_len,
                                 e));
        RETURN_ERROR_IF(cls && !is_bert_class(cls), e, MEDEMBED_ERR_UNSUPPORTED,
                        "%s: tokenizer_class \"%.60s\" is not supported without tokenizer.json "
                        "(only BERT WordPiece)", c->config_path, cls);
        FORWARD_IF_ERROR(get_bool(c->config_path, "", cfg, "do_lower_case", 1, &lower, e));
        FORWARD_IF_ERROR(
            get_bool(c->config_path, "", cfg, "tokenize_chinese_chars", 1, &cjk, e));
    }
    strip = lower;
    if (cfg)
        FORWARD_IF_ERROR(get_bool(c->config_path, "", cfg, "strip_accents", lower, &strip, e));
    t->clean_text = 1;
    t->handle_cjk = (uint8_t)cjk;
    t->lowercase = (uint8_t)lower;
    t->strip_accents = (uint8_t)strip;
    t->max_chars = 100;

    /* special_tokens_map.json overrides tokenizer_config.json. */
    for (int i = 0; i < SP_N; i++) {
        special[i] = k_special_defaults[i];
        json_t *srcs[2] = {cfg, c->map};
        const char *paths[2] = {c->config_path, c->map_path};
        for (int k = 0; k < 2; k++) {
            if (!srcs[k])
                continue;
            const char *s = NULL;
            size_t len = 0;
            json_t *obj;
            FORWARD_IF_ERROR(special_value(paths[k], json_object_get(srcs[k], k_special_keys[i]),
                                           k_special_keys[i], &s, &len, &obj, e));
            if (s)
                special[i] = s;
        }
    }
    return MEDEMBED_OK;
}

static int load_fallback(me_tokenizer *t, const char *dir, const char *vocab_path, me_err *e)
{
    fallback_cfg c;
    memset(&c, 0, sizeof c);
    FORWARD_IF_ERROR(join_path(c.config_path, sizeof c.config_path, dir, "tokenizer_config.json",
                               e));
    FORWARD_IF_ERROR(join_path(c.map_path, sizeof c.map_path, dir, "special_tokens_map.json", e));
    int rc = MEDEMBED_OK;
    if (file_exists(c.config_path))
        rc = load_json(c.config_path, &c.config, e);
    if (rc == MEDEMBED_OK && file_exists(c.map_path))
        rc = load_json(c.map_path, &c.map, e);
    const char *special[SP_N];
    added_list added;
    memset(&added, 0, sizeof added);
    if (rc == MEDEMBED_OK)
        rc = load_fallback_cfg(t, &c, special, e);
    if (rc == MEDEMBED_OK)
        rc = load_vocab_txt(t, vocab_path, e);
    if (rc == MEDEMBED_OK) {
        me_norm_init_tables(t);
        rc = me_vocab_finish(&t->vocab, e);
    }
    if (rc == MEDEMBED_OK) {
        t->unk_id = me_vocab_find(&t->vocab, special[SP_UNK], strlen(special[SP_UNK]));
        if (t->unk_id < 0)
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: unk_token \"%.40s\" is not in the vocab",
                            vocab_path, special[SP_UNK]);
    }
    if (rc == MEDEMBED_OK)
        rc = fallback_added(&c, special, &added, e);
    if (rc == MEDEMBED_OK)
        rc = add_tokens(t, c.config_path, &added, e);
    if (rc == MEDEMBED_OK)
        rc = find_special(t, vocab_path, "cls_token", special[SP_CLS], &t->cls_id, e);
    if (rc == MEDEMBED_OK)
        rc = find_special(t, vocab_path, "sep_token", special[SP_SEP], &t->sep_id, e);
    if (rc == MEDEMBED_OK) {
        t->pad_id = me_tokenizer_find(t, special[SP_PAD], strlen(special[SP_PAD]));
        if (t->pad_id < 0)
            t->pad_id = 0;
    }
    added_list_free(&added);
    json_decref(c.config);
    json_decref(c.map);
    return rc;
}

/* ------------------------------------------------------------------------ */

int me_tokenizer_load(const char *dir, me_tokenizer **out, me_err *e)
{
    RETURN_ERROR_IF(!dir || !out, e, MEDEMBED_ERR_ARG, "dir and out must not be NULL");
    char json_path[ME_PATH_BUF];
    char vocab_path[ME_PATH_BUF];
    FORWARD_IF_ERROR(join_path(json_path, sizeof json_path, dir, "tokenizer.json", e));
    FORWARD_IF_ERROR(join_path(vocab_path, sizeof vocab_path, dir, "vocab.txt", e));

    me_tokenizer *t = calloc(1, sizeof *t);
    RETURN_ERROR_IF(!t, e, MEDEMBED_ERR_NOMEM, "out of memory for a tokenizer");
    int rc;
    if (file_exists(json_path)) {
        rc = load_tokenizer_json(t, json_path, e);
    } else if (file_exists(vocab_path)) {
        rc = load_fallback(t, dir, vocab_path, e);
    } else {
        rc = me_err_set(e, MEDEMBED_ERR_IO, "no tokenizer in %s: cannot open %s or %s", dir,
                        json_path, vocab_path);
    }
    if (rc != MEDEMBED_OK) {
        me_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return MEDEMBED_OK;
}
