/*
 * test_golden.c - the engine against float64 references on random-weight
 * tiny models, on every kernel level this CPU has (scalar, avx2, avx512),
 * since the fp32 path of each must meet the tolerance:
 *
 *   gen/<name>     the generated set ($(BUILD)/golden, tests/py/gen_golden.py:
 *                  F32/F16/BF16 weights; CLS, mean, max and mean_sqrt_len
 *                  pooling; with and without Normalize; a sharded folder;
 *                  limits 64..512; ragged hidden sizes), referenced by the
 *                  NumPy implementation tests/py/numpy_ref.py. Always run
 *                  (skips visibly only when numpy was missing at build time).
 *   shared/<name>  ../shared/golden/embeddings (the real 30,522-token vocab,
 *                  PubMedQA texts), referenced by an independent PyTorch
 *                  implementation. Skipped visibly when ../shared is absent.
 *
 * Pooled vectors, raw CLS states and whole hidden states must match to 1e-5
 * absolute. Ids come from the golden file, so the encoder is judged alone;
 * the tokenizer must also give those ids for the line's text (truncated to
 * the model's limit). Each model must exercise its limit: a line at exactly
 * max_length tokens and a truncated one. One cmocka test per model and
 * level, so a level this CPU lacks shows as SKIPPED.
 */
#include "test_util.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>

#include "medembed.h"
#include "test_isa.h"

#define TOL 1e-5
#define MAX_CASES 128

static const char *SHARED_MODELS[] = {"tiny-cls-f32", "tiny-cls-f16", "tiny-cls-bf16",
                                      "tiny-mean-128", "tiny-max-64"};

typedef struct {
    char dir[1024];  /* the model folder */
    char name[160];  /* "gen/cls-f32", "shared/tiny-cls-f32" */
    int isa;         /* me_isa; -1: the set is absent and the test skips */
    const char *why; /* for isa -1: the SKIP reason */
} gcase;

static gcase cases[MAX_CASES];
static char titles[MAX_CASES][200];
static struct CMUnitTest tests[MAX_CASES + 1];
static int n_cases;

static double max_abs_diff(const float *a, const json_t *ref, size_t n)
{
    double m = 0;
    assert_int_equal(json_array_size(ref), n);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - json_number_value(json_array_get(ref, i)));
        if (d > m)
            m = d;
    }
    return m;
}

static void check_model_level(const char *dir, const char *name, const me_kern *k)
{
    char path[1200];
    char err[512];
    medembed_model *m = NULL;
    me_kern_force(k);
    int rc = medembed_model_load(dir, NULL, &m, err, sizeof err);
    me_kern_force(NULL);
    if (rc != MEDEMBED_OK)
        fail_msg("load %s: %s", dir, err);
    medembed_ctx *c = NULL;
    assert_int_equal(medembed_ctx_create(m, 2, &c), MEDEMBED_OK);
    int32_t H = medembed_model_dim(m);
    int32_t limit = medembed_model_max_length(m);
    snprintf(path, sizeof path, "%s/golden.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, at_limit = 0, truncated = 0, with_hidden = 0;
    double worst_emb = 0, worst_cls = 0, worst_hid = 0;
    float *emb = malloc(sizeof *emb * (size_t)H);
    float *hid = malloc(sizeof *hid * (size_t)H * (size_t)limit);
    int32_t *ids = malloc(sizeof *ids * (size_t)limit);
    int32_t *tok = malloc(sizeof *tok * (size_t)limit);
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j)
            fail_msg("%s line %d: %s", path, lines + 1, je.text);
        json_t *jids = json_object_get(j, "ids");
        int32_t n = (int32_t)json_array_size(jids);
        assert_true(n >= 2 && n <= limit);
        for (int32_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
        /* the tokenizer gives the reference's ids, truncation included */
        const char *text = json_string_value(json_object_get(j, "text"));
        assert_non_null(text);
        medembed_text_info info;
        assert_int_equal(medembed_tokenize(m, text, (size_t)-1, 0, tok, limit, &info),
                         MEDEMBED_OK);
        if (info.n_tokens != n || memcmp(tok, ids, sizeof *ids * (size_t)n) != 0)
            fail_msg("%s line %d: the tokenizer gives %d ids, not the golden %d (or others)", name,
                     lines + 1, info.n_tokens, n);
        at_limit += n == limit;
        truncated += info.truncated != 0;

        int32_t nn = n;
        assert_int_equal(medembed_ctx_embed_ids(c, ids, &nn, 1, 0, emb), MEDEMBED_OK);
        double d = max_abs_diff(emb, json_object_get(j, "embedding"), (size_t)H);
        if (d > worst_emb)
            worst_emb = d;
        assert_int_equal(medembed_ctx_hidden(c, ids, n, hid), MEDEMBED_OK);
        d = max_abs_diff(hid, json_object_get(j, "cls"), (size_t)H);
        if (d > worst_cls)
            worst_cls = d;
        json_t *jh = json_object_get(j, "hidden");
        if (jh) {
            assert_int_equal(json_array_size(jh), n);
            for (int32_t t = 0; t < n; t++) {
                d = max_abs_diff(hid + (size_t)t * (size_t)H, json_array_get(jh, (size_t)t),
                                 (size_t)H);
                if (d > worst_hid)
                    worst_hid = d;
            }
            with_hidden++;
        }
        json_decref(j);
        lines++;
    }
    fclose(f);
    free(line);
    fprintf(stderr,
            "%s [%s]: %d lines (%d at the %d-token limit, %d truncated, %d with hidden), "
            "max |diff| embedding %.2e, cls %.2e, hidden %.2e\n",
            name, me_isa_name(k->isa), lines, at_limit, limit, truncated, with_hidden, worst_emb,
            worst_cls, worst_hid);
    assert_true(lines > 10);
    assert_true(at_limit > 0);
    assert_true(truncated > 0);
    assert_true(with_hidden > 0);
    assert_true(worst_emb <= TOL);
    assert_true(worst_cls <= TOL);
    assert_true(worst_hid <= TOL);
    free(emb);
    free(hid);
    free(ids);
    free(tok);
    medembed_ctx_free(c);
    medembed_model_free(m);
}

static void test_golden_case(void **state)
{
    const gcase *gc = *state;
    if (gc->isa < 0) {
        fprintf(stderr, "SKIP: %s: golden %s\n", gc->why, gc->name);
        skip();
    }
    const me_kern *k;
    SKIP_WITHOUT_LEVEL(k, (me_isa)gc->isa, gc->name);
    check_model_level(gc->dir, gc->name, k);
}

/* The generated set covers what its generator promises: every weight dtype,
 * pooling mode, Normalize on and off, a sharded folder, the 512-token BERT
 * limit and a hidden size off the SIMD widths. A generator edit that drops a
 * variant fails here instead of silently testing less. */
static void test_gen_set_covers(void **state)
{
    (void)state;
    char dir[1100];
    SKIP_WITHOUT_GEN();
    int f32 = 0, f16 = 0, bf16 = 0, cls = 0, mean = 0, max = 0, sqrt_len = 0, norm = 0, raw = 0,
        sharded = 0, len512 = 0, ragged = 0, n = 0;
    for (int i = 0; i < n_cases; i++) {
        if (strncmp(cases[i].name, "gen/", 4) != 0 || cases[i].isa != ME_ISA_SCALAR)
            continue;
        medembed_model *m = NULL;
        char err[512];
        if (medembed_model_load(cases[i].dir, NULL, &m, err, sizeof err) != MEDEMBED_OK)
            fail_msg("load %s: %s", cases[i].dir, err);
        char info[4096];
        assert_true(medembed_model_info_json(m, info, sizeof info) < sizeof info);
        json_t *j = json_loads(info, 0, NULL);
        assert_non_null(j);
        const char *wd = json_string_value(json_object_get(j, "weight_dtype"));
        const char *pool = json_string_value(json_object_get(j, "pooling"));
        assert_non_null(pool);
        f32 += wd && strcmp(wd, "F32") == 0;
        f16 += wd && strcmp(wd, "F16") == 0;
        bf16 += wd && strcmp(wd, "BF16") == 0;
        cls += strcmp(pool, "cls") == 0;
        mean += strcmp(pool, "mean") == 0;
        max += strcmp(pool, "max") == 0;
        sqrt_len += strcmp(pool, "mean_sqrt_len") == 0;
        norm += medembed_model_normalize(m) == 1;
        raw += medembed_model_normalize(m) == 0;
        len512 += medembed_model_max_length(m) == 512;
        ragged += medembed_model_dim(m) % 16 != 0;
        snprintf(dir, sizeof dir, "%s/model.safetensors.index.json", cases[i].dir);
        sharded += access(dir, R_OK) == 0;
        json_decref(j);
        medembed_model_free(m);
        n++;
    }
    fprintf(stderr,
            "generated set: %d models; weights F32 %d F16 %d BF16 %d; pooling cls %d mean %d "
            "max %d mean_sqrt_len %d; normalize %d, raw %d; sharded %d; 512 tokens %d; "
            "ragged %d\n",
            n, f32, f16, bf16, cls, mean, max, sqrt_len, norm, raw, sharded, len512, ragged);
    assert_true(f32 && f16 && bf16);
    assert_true(cls && mean && max && sqrt_len);
    assert_true(norm && raw);
    assert_true(sharded && len512 && ragged);
}

static void add_case(const char *dir, const char *name, int isa, const char *why)
{
    if (n_cases >= MAX_CASES) {
        fprintf(stderr, "test_golden: more than %d cases; raise MAX_CASES\n", MAX_CASES);
        exit(1);
    }
    gcase *gc = &cases[n_cases];
    snprintf(gc->dir, sizeof gc->dir, "%s", dir);
    snprintf(gc->name, sizeof gc->name, "%s", name);
    gc->isa = isa;
    gc->why = why;
    if (isa >= 0)
        snprintf(titles[n_cases], sizeof titles[0], "golden %s %s", name,
                 me_isa_name((me_isa)isa));
    else
        snprintf(titles[n_cases], sizeof titles[0], "golden %s", name);
    tests[n_cases] = (struct CMUnitTest){titles[n_cases], test_golden_case, NULL, NULL, gc};
    n_cases++;
}

static void add_levels(const char *dir, const char *name)
{
    for (int isa = ME_ISA_SCALAR; isa < TEST_N_LEVELS; isa++)
        add_case(dir, name, isa, NULL);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every folder of the generated set that holds a golden.jsonl, sorted. */
static void add_gen_cases(void)
{
    if (!test_gen_ready()) {
        add_case("", "gen/*", -1, TEST_GEN_ABSENT);
        return;
    }
    DIR *d = opendir(test_gen_dir());
    if (!d) {
        perror(test_gen_dir());
        exit(1);
    }
    char *names[MAX_CASES];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_CASES) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s/golden.jsonl", test_gen_dir(), e->d_name);
        if (e->d_name[0] != '.' && access(p, R_OK) == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        char dir[1100], name[160];
        snprintf(dir, sizeof dir, "%s/%s", test_gen_dir(), names[i]);
        snprintf(name, sizeof name, "gen/%s", names[i]);
        add_levels(dir, name);
        free(names[i]);
    }
}

static void add_shared_cases(void)
{
    for (size_t i = 0; i < sizeof SHARED_MODELS / sizeof SHARED_MODELS[0]; i++) {
        char dir[1024], rel[256], name[160];
        snprintf(rel, sizeof rel, "golden/embeddings/%s", SHARED_MODELS[i]);
        snprintf(name, sizeof name, "shared/%s", SHARED_MODELS[i]);
        if (test_shared_path(dir, sizeof dir, rel))
            add_levels(dir, name);
        else
            add_case(dir, name, -1, "../shared absent");
    }
}

int main(void)
{
    add_gen_cases();
    add_shared_cases();
    tests[n_cases] = (struct CMUnitTest){"generated set covers its variants", test_gen_set_covers,
                                         NULL, NULL, NULL};
    return _cmocka_run_group_tests("golden", tests, (size_t)n_cases + 1, NULL, NULL);
}
