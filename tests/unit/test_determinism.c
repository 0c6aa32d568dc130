/*
 * test_determinism.c - an embedding must be bit-identical whatever the
 * thread count, the token budget per forward pass (so the batch mix), the
 * number of texts per call and their order. Uses PubMedQA abstracts and
 * questions (mixed lengths, some over the 512-token limit) and the golden
 * tiny model, both from ../shared.
 */
#include "test_util.h"

#include <jansson.h>

#include "medembed.h"

#define N_TEXTS 48

static char *texts[N_TEXTS];
static medembed_model *model;

static int setup(void **state)
{
    (void)state;
    char mdir[1024], corpus[1024];
    if (!test_shared_path(mdir, sizeof mdir, "golden/embeddings/tiny-cls-f32") ||
        !test_shared_path(corpus, sizeof corpus, "data/pubmedqa/corpus.jsonl"))
        return 0; /* tests skip */
    char err[512];
    if (medembed_model_load(mdir, NULL, &model, err, sizeof err) != MEDEMBED_OK)
        return -1;
    FILE *f = fopen(corpus, "r");
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; i < N_TEXTS && getline(&line, &cap, f) > 0; i++) {
        json_t *j = json_loads(line, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "text"));
        /* Every third text is cut short so lengths vary widely. */
        size_t n = strlen(t);
        if (i % 3 == 1 && n > 40 + (size_t)i)
            n = 40 + (size_t)i;
        texts[i] = strndup(t, n);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_TEXTS; i++)
        free(texts[i]);
    medembed_model_free(model);
    return 0;
}

/* Embeds texts[order[i]] in chunks of `per_call` with the given threads and
 * token budget; out row i belongs to texts[order[i]]. */
static void embed(int threads, int budget, int per_call, const int *order, float *out)
{
    medembed_ctx *c = NULL;
    assert_int_equal(medembed_ctx_create(model, threads, &c), MEDEMBED_OK);
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    o.batch_tokens = budget;
    int32_t dim = medembed_model_dim(model);
    for (int i = 0; i < N_TEXTS; i += per_call) {
        int n = N_TEXTS - i < per_call ? N_TEXTS - i : per_call;
        const char *batch[N_TEXTS];
        for (int k = 0; k < n; k++)
            batch[k] = texts[order[i + k]];
        assert_int_equal(medembed_ctx_embed(c, batch, NULL, n, &o, out + (size_t)i * dim, NULL),
                         MEDEMBED_OK);
    }
    medembed_ctx_free(c);
}

static void test_bit_identical(void **state)
{
    (void)state;
    char p[1024];
    SKIP_WITHOUT_SHARED(p, "golden/embeddings/tiny-cls-f32");
    int32_t dim = medembed_model_dim(model);
    size_t sz = sizeof(float) * (size_t)N_TEXTS * (size_t)dim;
    float *ref = malloc(sz), *got = malloc(sz), *perm = malloc(sz);
    int order[N_TEXTS], rev[N_TEXTS];
    for (int i = 0; i < N_TEXTS; i++) {
        order[i] = i;
        rev[i] = (i * 17 + 5) % N_TEXTS; /* a permutation: 17 is coprime with 48 */
    }
    /* Reference: one text per call, one thread. */
    embed(1, 0, 1, order, ref);
    static const struct {
        int threads, budget, per_call;
    } cfgs[] = {{2, 0, 7}, {2, 0, 32}, {1, 600, 48}, {3, 2000, 48}, {2, 100000, 48}};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        embed(cfgs[k].threads, cfgs[k].budget, cfgs[k].per_call, order, got);
        if (memcmp(ref, got, sz) != 0)
            fail_msg("threads %d budget %d per_call %d changed the bits", cfgs[k].threads,
                     cfgs[k].budget, cfgs[k].per_call);
    }
    /* Shuffled input order: row i of perm is text rev[i]. */
    embed(2, 0, 16, rev, perm);
    for (int i = 0; i < N_TEXTS; i++)
        assert_memory_equal(perm + (size_t)i * dim, ref + (size_t)rev[i] * dim,
                            sizeof(float) * (size_t)dim);
    /* And different texts really give different vectors (the test can fail). */
    assert_true(memcmp(ref, ref + dim, sizeof(float) * (size_t)dim) != 0);
    free(ref);
    free(got);
    free(perm);
}

static void test_api_errors(void **state)
{
    (void)state;
    char p[1024];
    SKIP_WITHOUT_SHARED(p, "golden/embeddings/tiny-cls-f32");
    medembed_ctx *c = NULL;
    assert_int_equal(medembed_ctx_create(model, 1, &c), MEDEMBED_OK);
    float v[64];
    int32_t ids[3] = {101, 40000, 102}, n = 3;
    assert_int_equal(medembed_ctx_embed_ids(c, ids, &n, 1, 0, v), MEDEMBED_ERR_ARG);
    assert_non_null(strstr(medembed_ctx_last_error(c), "40000"));
    int32_t big = 513;
    int32_t *many = calloc(513, sizeof *many);
    assert_int_equal(medembed_ctx_embed_ids(c, many, &big, 1, 0, v), MEDEMBED_ERR_TOO_LONG);
    free(many);
    assert_int_equal(medembed_ctx_embed(c, NULL, NULL, 1, NULL, v, NULL), MEDEMBED_ERR_ARG);
    /* Empty text embeds as [CLS][SEP]; the same as embedding those ids. */
    const char *empty = "";
    medembed_text_info info;
    float e1[64], e2[64];
    assert_int_equal(medembed_ctx_embed(c, &empty, NULL, 1, NULL, e1, &info), MEDEMBED_OK);
    assert_int_equal(info.n_tokens, 2);
    int32_t cs[2] = {101, 102}, two = 2;
    assert_int_equal(medembed_ctx_embed_ids(c, cs, &two, 1, 0, e2), MEDEMBED_OK);
    assert_memory_equal(e1, e2, sizeof e1);
    /* Strict UTF-8 turns replacement into an error. */
    const char *bad = "caf\xc3";
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    assert_int_equal(medembed_ctx_embed(c, &bad, NULL, 1, &o, e1, &info), MEDEMBED_OK);
    assert_int_equal(info.n_invalid_utf8, 1);
    o.flags = MEDEMBED_F_STRICT_UTF8;
    assert_int_equal(medembed_ctx_embed(c, &bad, NULL, 1, &o, e1, &info), MEDEMBED_ERR_ENCODING);
    medembed_ctx_free(c);
    medembed_ctx_free(NULL);
    medembed_model_free(NULL);
    assert_string_equal(medembed_status_str(MEDEMBED_ERR_TOO_LONG),
                        "input longer than the model accepts");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_identical),
        cmocka_unit_test(test_api_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
