/* config.c - model configuration: BERT hyper-parameters plus the
 * sentence-transformers module stack, validated into one me_config. */
#include "model/config.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/file.h"
#include "util/json.h"

const char *me_pooling_name(int32_t pooling)
{
    switch (pooling) {
    case MEDEMBED_POOLING_CLS:
        return "cls";
    case MEDEMBED_POOLING_MEAN:
        return "mean";
    case MEDEMBED_POOLING_MAX:
        return "max";
    case MEDEMBED_POOLING_MEAN_SQRT_LEN:
        return "mean_sqrt_len";
    default:
        return "?";
    }
}

/* The first folder under dir, up to `depth` levels down, that holds a
 * config.json (an unpacked wheel keeps its model in pkg/model/): a hint for
 * a user who passed the folder above the model. */
static int find_model_below(const char *dir, int depth, char *out, size_t n)
{
    if (depth <= 0)
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char sub[4096], cfg[4096];
        if (me_path_join(sub, sizeof sub, dir, de->d_name) != 0 || !me_dir_exists(sub))
            continue;
        if (me_path_join(cfg, sizeof cfg, sub, "config.json") == 0 && me_file_exists(cfg) &&
            strlen(sub) < n) {
            memcpy(out, sub, strlen(sub) + 1);
            found = 1;
        } else {
            found = find_model_below(sub, depth - 1, out, n);
        }
    }
    closedir(d);
    return found;
}

const char *me_dtype_name(int32_t d)
{
    return d == MEDEMBED_DTYPE_BF16 ? "bf16" : d == MEDEMBED_DTYPE_INT8 ? "int8" : "f32";
}

/* The activation named by a class path such as
 * "torch.nn.modules.activation.Sigmoid"; -1 if not supported. */
static int activation_from_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    const char *base = dot ? dot + 1 : name;
    if (strcmp(base, "Sigmoid") == 0)
        return ME_ACT_SIGMOID;
    if (strcmp(base, "Identity") == 0)
        return ME_ACT_IDENTITY;
    if (strcmp(base, "Tanh") == 0)
        return ME_ACT_TANH;
    return -1;
}

/* A BertForSequenceClassification config: the number of labels and the
 * activation sentence-transformers' CrossEncoder applies in predict(). */
static int parse_cross_encoder(const json_t *j, const char *what, me_config *c, me_err *e)
{
    c->kind = MEDEMBED_KIND_CROSS_ENCODER;
    RETURN_ERROR_IF(c->type_vocab < 2, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: a cross-encoder needs type_vocab_size >= 2 (a pair's second text has "
                    "token type 1), not %d",
                    what, c->type_vocab);
    json_t *id2label = json_object_get(j, "id2label");
    int64_t nl = 0;
    if (id2label && !json_is_null(id2label)) {
        RETURN_ERROR_IF(!json_is_object(id2label), e, MEDEMBED_ERR_FORMAT,
                        "%s: \"id2label\" must be an object", what);
        nl = (int64_t)json_object_size(id2label);
        RETURN_ERROR_IF(nl < 1 || nl > 65536, e, MEDEMBED_ERR_FORMAT,
                        "%s: \"id2label\" has %lld labels; 1..65536 are supported", what,
                        (long long)nl);
    } else {
        FORWARD_IF_ERROR(me_json_int(j, "num_labels", 1, 65536, 2, 0, what, &nl, e));
    }
    c->num_labels = (int32_t)nl;
    const char *act = NULL;
    FORWARD_IF_ERROR(me_json_str(j, "sbert_ce_default_activation_function", 0, what, &act, e));
    const char *key = "sbert_ce_default_activation_function";
    json_t *st = json_object_get(j, "sentence_transformers");
    if (!act && json_is_object(st)) {
        FORWARD_IF_ERROR(me_json_str(st, "activation_fn", 0, what, &act, e));
        key = "sentence_transformers.activation_fn";
    }
    if (act) {
        int a = activation_from_name(act);
        RETURN_ERROR_IF(a < 0, e, MEDEMBED_ERR_UNSUPPORTED,
                        "%s: %s \"%s\" is not supported (Sigmoid, Identity and Tanh are)", what,
                        key, act);
        c->activation = a;
    } else {
        c->activation = c->num_labels == 1 ? ME_ACT_SIGMOID : ME_ACT_IDENTITY;
    }
    c->pooling = MEDEMBED_POOLING_CLS; /* the pooler reads the [CLS] row */
    return MEDEMBED_OK;
}

/* A cross-encoder's token limit: sentence-transformers' CrossEncoder
 * truncates pairs at the tokenizer's model_max_length
 * (tokenizer_config.json) when that is set. */
static int load_ce_max_length(const char *dir, me_config *c, me_err *e)
{
    char path[4096];
    me_path_join(path, sizeof path, dir, "tokenizer_config.json");
    if (!me_file_exists(path))
        return MEDEMBED_OK;
    json_t *j = NULL;
    FORWARD_IF_ERROR(me_json_load_file(path, &j, e));
    json_t *v = json_object_get(j, "model_max_length");
    if (json_is_integer(v) && json_integer_value(v) >= 2 && json_integer_value(v) <= 1 << 20)
        c->max_seq_length = (int32_t)json_integer_value(v);
    json_decref(j);
    return MEDEMBED_OK;
}

int me_config_parse_bert(const json_t *j, const char *what, me_config *c, me_err *e)
{
    const char *mt = NULL;
    FORWARD_IF_ERROR(me_json_str(j, "model_type", 1, what, &mt, e));
    RETURN_ERROR_IF(strcmp(mt, "bert") != 0, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: model_type \"%s\" is not supported (medembed runs BERT-family encoders: "
                    "model_type \"bert\")",
                    what, mt);
    const char *act = NULL;
    FORWARD_IF_ERROR(me_json_str(j, "hidden_act", 0, what, &act, e));
    RETURN_ERROR_IF(act && strcmp(act, "gelu") != 0, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: hidden_act \"%s\" is not supported (only \"gelu\", the exact erf form)",
                    what, act);
    const char *pet = NULL;
    FORWARD_IF_ERROR(me_json_str(j, "position_embedding_type", 0, what, &pet, e));
    RETURN_ERROR_IF(pet && strcmp(pet, "absolute") != 0, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: position_embedding_type \"%s\" is not supported (only \"absolute\")",
                    what, pet);

    int64_t v;
    FORWARD_IF_ERROR(me_json_int(j, "vocab_size", 1, 4000000, 0, 1, what, &v, e));
    c->vocab_size = (int32_t)v;
    FORWARD_IF_ERROR(me_json_int(j, "hidden_size", 1, 65536, 0, 1, what, &v, e));
    c->hidden = (int32_t)v;
    FORWARD_IF_ERROR(me_json_int(j, "num_hidden_layers", 1, 1024, 0, 1, what, &v, e));
    c->n_layers = (int32_t)v;
    FORWARD_IF_ERROR(me_json_int(j, "num_attention_heads", 1, 1024, 0, 1, what, &v, e));
    c->n_heads = (int32_t)v;
    FORWARD_IF_ERROR(me_json_int(j, "intermediate_size", 1, 1 << 20, 0, 1, what, &v, e));
    c->ffn = (int32_t)v;
    FORWARD_IF_ERROR(me_json_int(j, "max_position_embeddings", 2, 1 << 20, 512, 0, what, &v, e));
    c->max_pos = (int32_t)v;
    FORWARD_IF_ERROR(me_json_int(j, "type_vocab_size", 0, 1 << 16, 2, 0, what, &v, e));
    c->type_vocab = (int32_t)v;
    FORWARD_IF_ERROR(me_json_num(j, "layer_norm_eps", 1e-12, 0, what, &c->ln_eps, e));
    RETURN_ERROR_IF(!(c->ln_eps > 0 && c->ln_eps < 1), e, MEDEMBED_ERR_FORMAT,
                    "%s: layer_norm_eps = %g must be in (0, 1)", what, c->ln_eps);
    RETURN_ERROR_IF(c->hidden % c->n_heads != 0, e, MEDEMBED_ERR_FORMAT,
                    "%s: hidden_size %d is not divisible by num_attention_heads %d", what,
                    c->hidden, c->n_heads);
    json_t *arch = json_object_get(j, "architectures");
    const char *a0 = json_is_array(arch) ? json_string_value(json_array_get(arch, 0)) : NULL;
    snprintf(c->architecture, sizeof c->architecture, "%s", a0 ? a0 : "BertModel");
    c->kind = MEDEMBED_KIND_EMBEDDER;
    if (a0 && strcmp(a0, "BertForSequenceClassification") == 0)
        FORWARD_IF_ERROR(parse_cross_encoder(j, what, c, e));
    return MEDEMBED_OK;
}

/* modules.json -> path of the Pooling module and whether Normalize follows. */
static int load_modules(const char *dir, me_config *c, char *pool_dir, size_t pool_dir_n,
                        me_err *e)
{
    char path[4096];
    me_path_join(path, sizeof path, dir, "modules.json");
    snprintf(pool_dir, pool_dir_n, "1_Pooling");
    if (!me_file_exists(path)) {
        /* Not a sentence-transformers folder: sentence-transformers wraps a
         * plain transformers model in mean pooling without normalization. */
        c->has_st = 0;
        c->pooling = MEDEMBED_POOLING_MEAN;
        c->normalize = 0;
        return MEDEMBED_OK;
    }
    char *buf = NULL;
    size_t len = 0;
    FORWARD_IF_ERROR(me_file_read(path, ME_JSON_MAX_BYTES, &buf, &len, e));
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    RETURN_ERROR_IF(!j, e, MEDEMBED_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path,
                    je.line, je.column, je.text);
    if (!json_is_array(j)) {
        json_decref(j);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: expected a JSON array of modules", path);
    }
    c->has_st = 1;
    int have_tr = 0, have_pool = 0;
    size_t i;
    json_t *m;
    int rc = MEDEMBED_OK;
    json_array_foreach(j, i, m)
    {
        const char *type = json_string_value(json_object_get(m, "type"));
        const char *mpath = json_string_value(json_object_get(m, "path"));
        if (!type) {
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: module %zu has no \"type\"", path, i);
            break;
        }
        const char *dot = strrchr(type, '.');
        const char *base = dot ? dot + 1 : type;
        if (strcmp(base, "Transformer") == 0) {
            have_tr = 1;
        } else if (strcmp(base, "Pooling") == 0) {
            have_pool = 1;
            if (mpath && strstr(mpath, ".."))
                rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: module path \"%s\" escapes the folder",
                                path, mpath);
            else
                snprintf(pool_dir, pool_dir_n, "%s", mpath ? mpath : "1_Pooling");
        } else if (strcmp(base, "Normalize") == 0) {
            c->normalize = 1;
        } else {
            rc = me_err_set(e, MEDEMBED_ERR_UNSUPPORTED,
                            "%s: module type \"%s\" is not supported (Transformer, Pooling and "
                            "Normalize are)",
                            path, type);
        }
        if (rc != MEDEMBED_OK)
            break;
    }
    json_decref(j);
    FORWARD_IF_ERROR(rc);
    RETURN_ERROR_IF(!have_tr, e, MEDEMBED_ERR_UNSUPPORTED, "%s: no Transformer module", path);
    if (!have_pool)
        c->pooling = MEDEMBED_POOLING_CLS; /* ST without Pooling outputs token embeddings; we
                                              refuse that below */
    RETURN_ERROR_IF(!have_pool, e, MEDEMBED_ERR_UNSUPPORTED,
                    "%s: no Pooling module (token-level output is not supported)", path);
    return MEDEMBED_OK;
}

static int load_pooling(const char *dir, const char *pool_dir, me_config *c, me_err *e)
{
    char rel[4096], path[8192];
    snprintf(rel, sizeof rel, "%s/config.json", pool_dir);
    me_path_join(path, sizeof path, dir, rel);
    json_t *j = NULL;
    FORWARD_IF_ERROR(me_json_load_file(path, &j, e));
    static const struct {
        const char *key;
        int32_t mode;
    } modes[] = {
        {"pooling_mode_cls_token", MEDEMBED_POOLING_CLS},
        {"pooling_mode_mean_tokens", MEDEMBED_POOLING_MEAN},
        {"pooling_mode_max_tokens", MEDEMBED_POOLING_MAX},
        {"pooling_mode_mean_sqrt_len_tokens", MEDEMBED_POOLING_MEAN_SQRT_LEN},
        {"pooling_mode_weightedmean_tokens", -1},
        {"pooling_mode_lasttoken", -1},
    };
    int n_on = 0, rc = MEDEMBED_OK;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0] && rc == MEDEMBED_OK; i++) {
        int on = 0;
        rc = me_json_bool(j, modes[i].key, 0, path, &on, e);
        if (rc == MEDEMBED_OK && on) {
            if (modes[i].mode < 0)
                rc = me_err_set(e, MEDEMBED_ERR_UNSUPPORTED, "%s: %s is not supported", path,
                                modes[i].key);
            c->pooling = modes[i].mode;
            n_on++;
        }
    }
    if (rc == MEDEMBED_OK && n_on != 1)
        rc = me_err_set(e, n_on ? MEDEMBED_ERR_UNSUPPORTED : MEDEMBED_ERR_FORMAT,
                        "%s: %d pooling modes are enabled; exactly one is supported", path, n_on);
    if (rc == MEDEMBED_OK)
        rc = me_json_bool(j, "include_prompt", 1, path, &c->include_prompt, e);
    int64_t wdim = 0;
    if (rc == MEDEMBED_OK)
        rc = me_json_int(j, "word_embedding_dimension", 0, INT32_MAX, 0, 0, path, &wdim, e);
    if (rc == MEDEMBED_OK && wdim && wdim != c->hidden)
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                        "%s: word_embedding_dimension %lld does not match hidden_size %d", path,
                        (long long)wdim, c->hidden);
    json_decref(j);
    return rc;
}

static int load_st_config(const char *dir, me_config *c, me_err *e)
{
    char path[4096];
    json_t *j = NULL;
    me_path_join(path, sizeof path, dir, "sentence_bert_config.json");
    if (me_file_exists(path)) {
        FORWARD_IF_ERROR(me_json_load_file(path, &j, e));
        int64_t msl = 0;
        int rc = me_json_int(j, "max_seq_length", 1, INT32_MAX, 0, 0, path, &msl, e);
        if (rc == MEDEMBED_OK)
            rc = me_json_bool(j, "do_lower_case", 0, path, &c->do_lower_case, e);
        json_decref(j);
        FORWARD_IF_ERROR(rc);
        c->max_seq_length = (int32_t)msl;
    }
    me_path_join(path, sizeof path, dir, "config_sentence_transformers.json");
    if (me_file_exists(path)) {
        FORWARD_IF_ERROR(me_json_load_file(path, &j, e));
        json_t *p = json_object_get(j, "prompts");
        int rc = MEDEMBED_OK;
        if (p && !json_is_null(p)) {
            if (!json_is_object(p)) {
                rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: \"prompts\" must be an object", path);
            } else {
                const char *k;
                json_t *v;
                json_object_foreach(p, k, v)
                {
                    if (!json_is_string(v)) {
                        rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                                        "%s: prompt \"%s\" must be a string", path, k);
                        break;
                    }
                    json_object_set(c->prompts, k, v);
                }
            }
        }
        const char *dp = NULL;
        if (rc == MEDEMBED_OK)
            rc = me_json_str(j, "default_prompt_name", 0, path, &dp, e);
        if (rc == MEDEMBED_OK && dp) {
            if (!json_object_get(c->prompts, dp))
                rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                                "%s: default_prompt_name \"%s\" is not among the prompts", path, dp);
            else
                c->default_prompt_name = strdup(dp);
        }
        json_decref(j);
        FORWARD_IF_ERROR(rc);
    }
    return MEDEMBED_OK;
}

int me_config_load(const char *dir, me_config *c, me_err *e)
{
    memset(c, 0, sizeof *c);
    c->include_prompt = 1;
    c->prompts = json_object();
    RETURN_ERROR_IF(!c->prompts, e, MEDEMBED_ERR_NOMEM, "out of memory");
    RETURN_ERROR_IF(!me_dir_exists(dir), e, MEDEMBED_ERR_NOT_FOUND,
                    "%s: model folder not found", dir);
    char path[4096];
    RETURN_ERROR_IF(me_path_join(path, sizeof path, dir, "config.json") != 0, e,
                    MEDEMBED_ERR_ARG, "model path is too long");
    struct stat st;
    if (stat(path, &st) != 0) { /* missing; anything else is the JSON reader's to judge */
        char sub[4096];
        if (find_model_below(dir, 3, sub, sizeof sub))
            return me_err_set(e, MEDEMBED_ERR_NOT_FOUND,
                              "%s is not a model folder: config.json is missing (a model "
                              "folder is below it: %s)", dir, sub);
        return me_err_set(e, MEDEMBED_ERR_NOT_FOUND,
                          "%s is not a model folder: config.json is missing (a Hugging Face "
                          "model folder holds config.json, model.safetensors and the "
                          "tokenizer files)", dir);
    }
    json_t *j = NULL;
    FORWARD_IF_ERROR(me_json_load_file(path, &j, e));
    int rc = me_config_parse_bert(j, path, c, e);
    json_decref(j);
    FORWARD_IF_ERROR(rc);

    if (c->kind == MEDEMBED_KIND_CROSS_ENCODER)
        return load_ce_max_length(dir, c, e);
    char pool_dir[1024];
    FORWARD_IF_ERROR(load_modules(dir, c, pool_dir, sizeof pool_dir, e));
    if (c->has_st)
        FORWARD_IF_ERROR(load_pooling(dir, pool_dir, c, e));
    FORWARD_IF_ERROR(load_st_config(dir, c, e));
    return MEDEMBED_OK;
}

void me_config_free(me_config *c)
{
    if (!c)
        return;
    json_decref(c->prompts);
    c->prompts = NULL;
    free(c->default_prompt_name);
    c->default_prompt_name = NULL;
}
