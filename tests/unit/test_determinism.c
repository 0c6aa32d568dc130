/*
 * test_determinism.c - an embedding must be bit-identical whatever the
 * thread count, the token budget per forward pass (so the batch mix), the
 * number of texts per call and their order. Two sets, each a CLS model with
 * a 512-token limit and 48 texts of mixed lengths, some over the limit:
 *
 *   gen     the generated model gen/cls-f32 ($(BUILD)/golden, see
 *           tests/py/gen_golden.py) and the 48 texts its golden.jsonl opens
 *           with; always run (skips visibly only when numpy was missing).
 *   shared  ../shared's golden tiny-cls-f32 and PubMedQA abstracts and
 *           questions (every third cut short, every eighth tripled); skipped
 *           visibly without it.
 */
#include "test_util.h"

#include <jansson.h>

#include "medembed.h"

#define N_TEXTS 48

typedef struct {
    const char *label;
    char *texts[N_TEXTS];
    medembed_model *model;
    const char *skip; /* non-NULL: the set is absent, tests skip with this */
    char error[1200]; /* non-empty: the set is there but unusable, tests fail */
} dset;

static dset gen_set = {.label = "gen/cls-f32"};
static dset shared_set = {.label = "shared/tiny-cls-f32"};

static void load_model(dset *s, const char *dir)
{
    char err[512];
    if (medembed_model_load(dir, NULL, &s->model, err, sizeof err) != MEDEMBED_OK)
        snprintf(s->error, sizeof s->error, "load %s: %s", dir, err);
}

/* Reads the "text" field of the first N_TEXTS lines of a JSONL file. With
 * vary set, lengths are spread: every third is cut to 40 + i bytes and every
 * eighth is written three times over (past 512 tokens). */
static void load_texts(dset *s, const char *path, int vary)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(s->error, sizeof s->error, "%s: cannot open", path);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    int i = 0;
    for (; i < N_TEXTS && getline(&line, &cap, f) > 0; i++) {
        json_t *j = json_loads(line, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "text"));
        if (!t) {
            snprintf(s->error, sizeof s->error, "%s line %d: no text", path, i + 1);
            json_decref(j);
            break;
        }
        size_t n = strlen(t);
        if (vary && i % 3 == 1 && n > 40 + (size_t)i)
            n = 40 + (size_t)i;
        if (vary && i % 8 == 5) {
            s->texts[i] = malloc(3 * n + 3);
            snprintf(s->texts[i], 3 * n + 3, "%s %s %s", t, t, t);
        } else {
            s->texts[i] = strndup(t, n);
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    if (i < N_TEXTS && !s->error[0])
        snprintf(s->error, sizeof s->error, "%s: %d texts, want %d", path, i, N_TEXTS);
}

static int setup(void **state)
{
    (void)state;
    char mdir[1024], path[1100];
    if (test_gen_ready()) {
        snprintf(mdir, sizeof mdir, "%s/cls-f32", test_gen_dir());
        snprintf(path, sizeof path, "%s/golden.jsonl", mdir);
        load_model(&gen_set, mdir);
        load_texts(&gen_set, path, 0);
    } else {
        gen_set.skip = TEST_GEN_ABSENT;
    }
    if (test_shared_path(mdir, sizeof mdir, "golden/embeddings/tiny-cls-f32") &&
        test_shared_path(path, sizeof path, "data/pubmedqa/corpus.jsonl")) {
        load_model(&shared_set, mdir);
        load_texts(&shared_set, path, 1);
    } else {
        shared_set.skip = "../shared absent";
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dset *sets[2] = {&gen_set, &shared_set};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < N_TEXTS; i++)
            free(sets[k]->texts[i]);
        medembed_model_free(sets[k]->model);
    }
    return 0;
}

/* The set of this test, or a visible skip / a failure when it is unusable. */
static dset *use_set(void **state, const char *test)
{
    dset *s = *state;
    if (s->skip) {
        fprintf(stderr, "SKIP: %s: %s %s\n", s->skip, test, s->label);
        skip();
    }
    if (s->error[0])
        fail_msg("%s", s->error);
    return s;
}

/* Embeds texts[order[i]] in chunks of `per_call` with the given threads and
 * token budget; out row i belongs to texts[order[i]]. Returns how many
 * texts were truncated (counted in the first call of a test). */
static int embed(const dset *s, int threads, int budget, int per_call, const int *order,
                 float *out)
{
    medembed_ctx *c = NULL;
    assert_int_equal(medembed_ctx_create(s->model, threads, &c), MEDEMBED_OK);
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    o.batch_tokens = budget;
    int32_t dim = medembed_model_dim(s->model);
    int truncated = 0;
    for (int i = 0; i < N_TEXTS; i += per_call) {
        int n = N_TEXTS - i < per_call ? N_TEXTS - i : per_call;
        const char *batch[N_TEXTS];
        medembed_text_info info[N_TEXTS];
        for (int k = 0; k < n; k++)
            batch[k] = s->texts[order[i + k]];
        assert_int_equal(
            medembed_ctx_embed(c, batch, NULL, n, &o, out + (size_t)i * (size_t)dim, info),
            MEDEMBED_OK);
        for (int k = 0; k < n; k++)
            truncated += info[k].truncated != 0;
    }
    medembed_ctx_free(c);
    return truncated;
}

static void test_bit_identical(void **state)
{
    const dset *s = use_set(state, __func__);
    int32_t dim = medembed_model_dim(s->model);
    size_t sz = sizeof(float) * (size_t)N_TEXTS * (size_t)dim;
    float *ref = malloc(sz), *got = malloc(sz), *perm = malloc(sz);
    int order[N_TEXTS], rev[N_TEXTS];
    for (int i = 0; i < N_TEXTS; i++) {
        order[i] = i;
        rev[i] = (i * 17 + 5) % N_TEXTS; /* a permutation: 17 is coprime with 48 */
    }
    /* Reference: one text per call, one thread. Some texts must be over the
     * limit, so truncated sequences share batches with short ones. */
    int truncated = embed(s, 1, 0, 1, order, ref);
    fprintf(stderr, "%s: %d texts, %d truncated to %d tokens\n", s->label, N_TEXTS, truncated,
            medembed_model_max_length(s->model));
    assert_true(truncated > 0 && truncated < N_TEXTS);
    static const struct {
        int threads, budget, per_call;
    } cfgs[] = {{2, 0, 7}, {2, 0, 32}, {1, 600, 48}, {3, 2000, 48}, {2, 100000, 48}};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        embed(s, cfgs[k].threads, cfgs[k].budget, cfgs[k].per_call, order, got);
        if (memcmp(ref, got, sz) != 0)
            fail_msg("%s: threads %d budget %d per_call %d changed the bits", s->label,
                     cfgs[k].threads, cfgs[k].budget, cfgs[k].per_call);
    }
    /* Shuffled input order: row i of perm is text rev[i]. */
    embed(s, 2, 0, 16, rev, perm);
    for (int i = 0; i < N_TEXTS; i++)
        assert_memory_equal(perm + (size_t)i * (size_t)dim, ref + (size_t)rev[i] * (size_t)dim,
                            sizeof(float) * (size_t)dim);
    /* And different texts really give different vectors (the test can fail). */
    assert_true(memcmp(ref, ref + dim, sizeof(float) * (size_t)dim) != 0);
    free(ref);
    free(got);
    free(perm);
}

/* The id of token string tok in the model's vocabulary (not from the
 * tokenizer, whose output the test compares against). */
static int32_t vocab_id(const medembed_model *m, const char *tok)
{
    for (int32_t i = 0; i < medembed_vocab_size(m); i++) {
        const char *t = medembed_token_str(m, i);
        if (t && strcmp(t, tok) == 0)
            return i;
    }
    fail_msg("%s not in the vocabulary", tok);
    return -1;
}

static void test_api_errors(void **state)
{
    const dset *s = use_set(state, __func__);
    const medembed_model *model = s->model;
    int32_t dim = medembed_model_dim(model);
    int32_t limit = medembed_model_max_length(model);
    int32_t cls = vocab_id(model, "[CLS]"), sep = vocab_id(model, "[SEP]");
    int32_t vocab = medembed_vocab_size(model);
    medembed_ctx *c = NULL;
    assert_int_equal(medembed_ctx_create(model, 1, &c), MEDEMBED_OK);
    float *v = malloc(sizeof *v * (size_t)dim);
    /* an id one past the vocabulary, named in the message */
    int32_t ids[3] = {cls, vocab, sep}, n = 3;
    char want[32];
    snprintf(want, sizeof want, "%d", vocab);
    assert_int_equal(medembed_ctx_embed_ids(c, ids, &n, 1, 0, v), MEDEMBED_ERR_ARG);
    assert_non_null(strstr(medembed_ctx_last_error(c), want));
    ids[1] = vocab - 1; /* the last id is fine */
    assert_int_equal(medembed_ctx_embed_ids(c, ids, &n, 1, 0, v), MEDEMBED_OK);
    /* one token over the limit; exactly the limit embeds */
    int32_t *many = calloc((size_t)limit + 1, sizeof *many);
    int32_t big = limit + 1;
    assert_int_equal(medembed_ctx_embed_ids(c, many, &big, 1, 0, v), MEDEMBED_ERR_TOO_LONG);
    big = limit;
    assert_int_equal(medembed_ctx_embed_ids(c, many, &big, 1, 0, v), MEDEMBED_OK);
    free(many);
    assert_int_equal(medembed_ctx_embed(c, NULL, NULL, 1, NULL, v, NULL), MEDEMBED_ERR_ARG);
    /* Empty text embeds as [CLS][SEP]; the same as embedding those ids. */
    const char *empty = "";
    medembed_text_info info;
    float *e1 = malloc(sizeof *e1 * (size_t)dim), *e2 = malloc(sizeof *e2 * (size_t)dim);
    assert_int_equal(medembed_ctx_embed(c, &empty, NULL, 1, NULL, e1, &info), MEDEMBED_OK);
    assert_int_equal(info.n_tokens, 2);
    int32_t cs[2] = {cls, sep}, two = 2;
    assert_int_equal(medembed_ctx_embed_ids(c, cs, &two, 1, 0, e2), MEDEMBED_OK);
    assert_memory_equal(e1, e2, sizeof *e1 * (size_t)dim);
    /* Strict UTF-8 turns replacement into an error. */
    const char *bad = "caf\xc3";
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    assert_int_equal(medembed_ctx_embed(c, &bad, NULL, 1, &o, e1, &info), MEDEMBED_OK);
    assert_int_equal(info.n_invalid_utf8, 1);
    o.flags = MEDEMBED_F_STRICT_UTF8;
    assert_int_equal(medembed_ctx_embed(c, &bad, NULL, 1, &o, e1, &info), MEDEMBED_ERR_ENCODING);
    free(v);
    free(e1);
    free(e2);
    medembed_ctx_free(c);
    medembed_ctx_free(NULL);
    medembed_model_free(NULL);
    assert_string_equal(medembed_status_str(MEDEMBED_ERR_TOO_LONG),
                        "input longer than the model accepts");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        {"bit_identical gen/cls-f32", test_bit_identical, NULL, NULL, &gen_set},
        {"api_errors gen/cls-f32", test_api_errors, NULL, NULL, &gen_set},
        {"bit_identical shared/tiny-cls-f32", test_bit_identical, NULL, NULL, &shared_set},
        {"api_errors shared/tiny-cls-f32", test_api_errors, NULL, NULL, &shared_set},
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
