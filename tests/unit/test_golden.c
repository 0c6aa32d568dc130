/*
 * test_golden.c - the engine against ../shared/golden/embeddings: random-
 * weight tiny models (F32/F16/BF16 weights; CLS, mean and max pooling) with
 * reference outputs from an independent float64 PyTorch implementation.
 * Pooled vectors, raw CLS states and whole hidden states must match to 1e-5
 * absolute; ids come from the golden file, so this isolates the encoder.
 * Runs under every kernel level this CPU has (scalar, avx2, avx512), since
 * the fp32 path of each must meet the tolerance.
 */
#include "test_util.h"

#include <jansson.h>
#include <math.h>

#include "kernels/kernels.h"
#include "medembed.h"

#define TOL 1e-5

static const char *MODELS[] = {"tiny-cls-f32", "tiny-cls-f16", "tiny-cls-bf16", "tiny-mean-128",
                               "tiny-max-64"};

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

static void check_model_level(const char *name, const me_kern *k)
{
    char dir[1024], path[1200];
    char rel[256];
    snprintf(rel, sizeof rel, "golden/embeddings/%s", name);
    if (!test_shared_path(dir, sizeof dir, rel)) {
        fprintf(stderr, "SKIP: %s not found (../shared is absent)\n", dir);
        skip();
    }
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
    snprintf(path, sizeof path, "%s/golden.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    double worst_emb = 0, worst_cls = 0, worst_hid = 0;
    float *emb = malloc(sizeof *emb * (size_t)H);
    float *hid = malloc(sizeof *hid * (size_t)H * 512);
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);
        json_t *jids = json_object_get(j, "ids");
        int32_t n = (int32_t)json_array_size(jids);
        int32_t ids[512];
        assert_true(n <= 512);
        for (int32_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
        assert_int_equal(medembed_ctx_embed_ids(c, ids, &n, 1, 0, emb), MEDEMBED_OK);
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
        }
        json_decref(j);
        lines++;
    }
    fclose(f);
    free(line);
    fprintf(stderr, "%s [%s]: %d lines, max |diff| embedding %.2e, cls %.2e, hidden %.2e\n",
            name, me_isa_name(k->isa), lines, worst_emb, worst_cls, worst_hid);
    assert_true(lines > 10);
    assert_true(worst_emb <= TOL);
    assert_true(worst_cls <= TOL);
    assert_true(worst_hid <= TOL);
    free(emb);
    free(hid);
    medembed_ctx_free(c);
    medembed_model_free(m);
}

static void check_model(const char *name)
{
    for (int isa = ME_ISA_SCALAR; isa <= ME_ISA_AVX512; isa++) {
        const me_kern *k = me_kern_for((me_isa)isa);
        if (k)
            check_model_level(name, k);
        else
            fprintf(stderr, "SKIP: %s under %s: not available on this CPU\n", name,
                    me_isa_name((me_isa)isa));
    }
}

static void test_tiny_cls_f32(void **state)
{
    (void)state;
    check_model(MODELS[0]);
}
static void test_tiny_cls_f16(void **state)
{
    (void)state;
    check_model(MODELS[1]);
}
static void test_tiny_cls_bf16(void **state)
{
    (void)state;
    check_model(MODELS[2]);
}
static void test_tiny_mean_128(void **state)
{
    (void)state;
    check_model(MODELS[3]);
}
static void test_tiny_max_64(void **state)
{
    (void)state;
    check_model(MODELS[4]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_cls_f32),  cmocka_unit_test(test_tiny_cls_f16),
        cmocka_unit_test(test_tiny_cls_bf16), cmocka_unit_test(test_tiny_mean_128),
        cmocka_unit_test(test_tiny_max_64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
