/*
 * hub_parse.c - the pure half of the hub client: the hub's file listing and
 * our pull manifest. No I/O; every input here may come from the network, so
 * tests/fuzz/fuzz_hub.c feeds it arbitrary bytes. Repo ids and revisions
 * are the library's rules (src/model/hubref.c, compiled into the CLI too).
 *
 * The listing is the JSON of GET {endpoint}/api/models/{repo}/revision/{rev}
 * with ?blobs=true, which adds size and LFS data to each sibling:
 *   {"sha": "<40 hex>", "siblings": [{"rfilename": "config.json", "size": 690},
 *    {"rfilename": "model.safetensors", "size": 437951328,
 *     "lfs": {"sha256": "<64 hex>", "size": 437951328, "pointerSize": 135}}, ...]}
 * (https://huggingface.co/docs/hub/api, huggingface_hub's RepoSibling).
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* "digits_Name/config.json": a sentence-transformers module folder such as
 * 1_Pooling or 2_Dense. Only its config comes down, so the loader can see
 * every module and refuse one it does not support by name. */
static int is_module_config(const char *name)
{
    const char *p = name;
    size_t d = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        d++;
    }
    if (d == 0 || d > 3 || *p++ != '_')
        return 0;
    size_t k = 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_') {
        p++;
        k++;
    }
    return k > 0 && k <= 64 && strcmp(p, "/config.json") == 0;
}

/* "model-00001-of-00002.safetensors", as transformers names weight shards. */
static int is_shard(const char *name)
{
    const char *p = name;
    if (strncmp(p, "model-", 6) != 0)
        return 0;
    p += 6;
    size_t d = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        d++;
    }
    if (d == 0 || d > 6 || strncmp(p, "-of-", 4) != 0)
        return 0;
    p += 4;
    d = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        d++;
    }
    return d > 0 && d <= 6 && strcmp(p, ".safetensors") == 0;
}

int hub_file_wanted(const char *name)
{
    static const char *const exact[] = {
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    return is_shard(name) || is_module_config(name);
}

/* A repo path we may create under the destination: relative, no empty, "."
 * or ".." segments, no backslashes or control characters. */
static int path_safe(const char *s, size_t n)
{
    if (n == 0 || n > HUB_FILE_NAME_MAX || s[0] == '/' || s[n - 1] == '/')
        return 0;
    size_t seg = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            if (seg == 0)
                return 0;
            if ((seg == 1 && s[i - 1] == '.') || (seg == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
                return 0;
            seg = 0;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return 0;
        seg++;
    }
    return 1;
}

static int hex_valid(const char *s, size_t n, size_t want)
{
    if (n != want)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

static void hex_lower(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'F') ? (char)(src[i] - 'A' + 'a') : src[i];
    dst[n] = 0;
}

/* Largest size we believe: 1 TiB. Keeps sums far from overflow. */
#define SIZE_SANE ((json_int_t)1 << 40)

void hub_listing_free(hub_listing *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_files; i++)
        free(l->files[i].name);
    free(l->files);
    memset(l, 0, sizeof *l);
}

static int has_file(const hub_listing *l, const char *name)
{
    for (size_t i = 0; i < l->n_files; i++)
        if (strcmp(l->files[i].name, name) == 0)
            return 1;
    return 0;
}

int hub_listing_parse(const char *json, size_t len, hub_listing *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    if (len > HUB_LISTING_MAX) {
        set_err(err, err_len, "the hub's file listing is %zu bytes, over the %u-byte cap", len,
                HUB_LISTING_MAX);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        set_err(err, err_len, "the hub's file listing is not valid JSON (line %d: %s)", je.line,
                je.text);
        return -1;
    }
    hub_listing l;
    memset(&l, 0, sizeof l);
    int saw_bin = 0;
    int rc = -1;
    if (!json_is_object(root)) {
        set_err(err, err_len, "the hub's file listing is not a JSON object");
        goto done;
    }
    json_t *sha = json_object_get(root, "sha");
    if (json_is_string(sha)) {
        if (!hex_valid(json_string_value(sha), json_string_length(sha), 40)) {
            set_err(err, err_len, "the hub's listing has a malformed commit sha \"%.80s\"",
                    json_string_value(sha));
            goto done;
        }
        hex_lower(l.commit, json_string_value(sha), 40);
    } else if (sha && !json_is_null(sha)) {
        set_err(err, err_len, "the hub's listing has a non-string \"sha\"");
        goto done;
    }
    json_t *sib = json_object_get(root, "siblings");
    if (!json_is_array(sib)) {
        set_err(err, err_len, "the hub's listing has no \"siblings\" array of files");
        goto done;
    }
    size_t n_sib = json_array_size(sib);
    l.files = calloc(n_sib < HUB_FILES_MAX ? n_sib + 1 : HUB_FILES_MAX, sizeof *l.files);
    if (!l.files) {
        set_err(err, err_len, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_sib; i++) {
        json_t *f = json_array_get(sib, i);
        json_t *jn = json_object_get(f, "rfilename");
        if (!json_is_string(jn)) {
            set_err(err, err_len, "the hub's listing: sibling %zu has no string \"rfilename\"",
                    i);
            goto done;
        }
        const char *name = json_string_value(jn);
        size_t nlen = json_string_length(jn);
        if (strlen(name) != nlen)
            continue; /* embedded NUL: never a file we want */
        if (strcmp(name, "pytorch_model.bin") == 0)
            saw_bin = 1;
        if (!hub_file_wanted(name))
            continue;
        if (!path_safe(name, nlen)) {
            set_err(err, err_len, "the hub's listing has an unsafe file name \"%.100s\"", name);
            goto done;
        }
        if (has_file(&l, name)) {
            set_err(err, err_len, "the hub's listing names \"%s\" twice", name);
            goto done;
        }
        if (l.n_files >= HUB_FILES_MAX) {
            set_err(err, err_len, "the repo has more than %d model files", HUB_FILES_MAX);
            goto done;
        }
        hub_file *hf = &l.files[l.n_files];
        hf->size = -1;
        json_t *js = json_object_get(f, "size");
        if (js && !json_is_null(js)) {
            if (!json_is_integer(js) || json_integer_value(js) < 0 ||
                json_integer_value(js) > SIZE_SANE) {
                set_err(err, err_len, "the hub's listing gives \"%s\" a bad size", name);
                goto done;
            }
            hf->size = (int64_t)json_integer_value(js);
        }
        json_t *lfs = json_object_get(f, "lfs");
        if (lfs && !json_is_null(lfs)) {
            json_t *h = json_object_get(lfs, "sha256");
            json_t *ls = json_object_get(lfs, "size");
            if (!json_is_string(h) || !hex_valid(json_string_value(h), json_string_length(h), 64)) {
                set_err(err, err_len, "the hub's listing gives LFS file \"%s\" no valid sha256",
                        name);
                goto done;
            }
            if (!json_is_integer(ls) || json_integer_value(ls) < 0 ||
                json_integer_value(ls) > SIZE_SANE ||
                (hf->size >= 0 && hf->size != (int64_t)json_integer_value(ls))) {
                set_err(err, err_len, "the hub's listing gives LFS file \"%s\" a bad size", name);
                goto done;
            }
            hf->size = (int64_t)json_integer_value(ls);
            hex_lower(hf->sha256, json_string_value(h), 64);
        }
        hf->name = strdup(name);
        if (!hf->name) {
            set_err(err, err_len, "out of memory");
            goto done;
        }
        l.n_files++;
        if (hf->size > 0)
            l.total += hf->size;
    }
    int shards = 0;
    for (size_t i = 0; i < l.n_files; i++)
        shards += is_shard(l.files[i].name);
    if (!has_file(&l, "config.json")) {
        set_err(err, err_len, "it has no config.json, so it is not a model medembed can load");
        goto done;
    }
    if (!has_file(&l, "model.safetensors") &&
        !(has_file(&l, "model.safetensors.index.json") && shards > 0)) {
        if (saw_bin)
            set_err(err, err_len,
                    "it has no safetensors weights, only pytorch_model.bin, which medembed does "
                    "not read (convert it to model.safetensors and load the folder with -m DIR)");
        else
            set_err(err, err_len, "it has no model.safetensors weights");
        goto done;
    }
    if (!has_file(&l, "tokenizer.json") && !has_file(&l, "vocab.txt")) {
        set_err(err, err_len, "it has neither tokenizer.json nor vocab.txt");
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    if (rc == 0)
        *out = l;
    else
        hub_listing_free(&l);
    return rc;
}

int hub_manifest_commit(const char *json, size_t len, char commit[41])
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *c = json_object_get(root, "commit");
    int rc = -1;
    if (json_is_string(c) && hex_valid(json_string_value(c), json_string_length(c), 40)) {
        hex_lower(commit, json_string_value(c), 40);
        rc = 0;
    }
    json_decref(root);
    return rc;
}
