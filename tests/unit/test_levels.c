/*
 * test_levels.c - the public promise of medembed.h: a text's embedding
 * is bit-identical whatever the thread count, the other texts of the call,
 * the batch composition and the input order (for a given model, dtype and
 * kernel level). Every available level and every dtype, through
 * medembed_ctx_embed_ids on the golden tiny models; plus bf16 / int8
 * accuracy against f32 (cosine). Needs ../shared; skips visibly without it.
 */
#include "test_util.h"

#include <jansson.h>
#include <math.h>

#include "kernels/kernels.h"
#include "medembed.h"
#include "model/model.h"

#define MAX_SEQ 12

typedef struct {
    int32_t ids[MAX_SEQ * 512];
    int32_t len[MAX_SEQ];
    size_t off[MAX_SEQ];
    int32_t n;
} seqs;

static int load_seqs(const char *dir, seqs *s)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/golden.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    size_t total = 0;
    s->n = 0;
    while (s->n < MAX_SEQ && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        json_t *jids = json_object_get(j, "ids");
        int32_t n = (int32_t)json_array_size(jids);
        s->off[s->n] = total;
        s->len[s->n] = n;
        for (int32_t i = 0; i < n; i++)
            s->ids[total + (size_t)i] =
                (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
        total += (size_t)n;
        s->n++;
        json_decref(j);
    }
    free(line);
    fclose(f);
    return s->n;
}

/* Embeds the sequences listed in order[0..k) in one call. */
static void embed_some(medembed_ctx *c, const seqs *s, const int *order, int k, float *out)
{
    int32_t *ids = malloc(sizeof *ids * (size_t)MAX_SEQ * 512);
    int32_t lens[MAX_SEQ];
    size_t t = 0;
    for (int i = 0; i < k; i++) {
        memcpy(ids + t, s->ids + s->off[order[i]], sizeof *ids * (size_t)s->len[order[i]]);
        lens[i] = s->len[order[i]];
        t += (size_t)lens[i];
    }
    assert_int_equal(medembed_ctx_embed_ids(c, ids, lens, k, 0, out), MEDEMBED_OK);
    free(ids);
}

/* Loads dir on kernel level k (NULL: the automatic one) in compute dtype dt. */
static medembed_model *load_at(const char *dir, const me_kern *k, int32_t dt)
{
    me_kern_force(k);
    medembed_load_opts o;
    medembed_load_opts_init(&o);
    o.dtype = dt;
    medembed_model *m = NULL;
    char err[512];
    int rc = medembed_model_load(dir, &o, &m, err, sizeof err);
    me_kern_force(NULL);
    if (rc != MEDEMBED_OK)
        fail_msg("load %s (%s, dtype %d): %s", dir, k ? me_isa_name(k->isa) : "auto", dt, err);
    return m;
}

static void check_level_dtype(const char *dir, const seqs *s, const me_kern *k, int32_t dtype,
                              float *ref_f32)
{
    medembed_model *m = load_at(dir, k, dtype);
    int32_t H = medembed_model_dim(m);
    int n = s->n;
    float *all = malloc(sizeof *all * (size_t)H * (size_t)n);
    float *alt = malloc(sizeof *alt * (size_t)H * (size_t)n);
    int order[MAX_SEQ];
    for (int i = 0; i < n; i++)
        order[i] = i;

    /* reference: everything in one call on 2 threads */
    medembed_ctx *c2 = NULL;
    assert_int_equal(medembed_ctx_create(m, 2, &c2), MEDEMBED_OK);
    embed_some(c2, s, order, n, all);

    /* each alone on 1 thread */
    medembed_ctx *c1 = NULL;
    assert_int_equal(medembed_ctx_create(m, 1, &c1), MEDEMBED_OK);
    for (int i = 0; i < n; i++) {
        embed_some(c1, s, &i, 1, alt);
        if (memcmp(alt, all + (size_t)i * (size_t)H, sizeof *alt * (size_t)H) != 0)
            fail_msg("%s dtype %d: sequence %d alone differs from the batched result",
                     me_isa_name(k->isa), dtype, i);
    }
    /* reversed order, 3 threads */
    medembed_ctx *c3 = NULL;
    assert_int_equal(medembed_ctx_create(m, 3, &c3), MEDEMBED_OK);
    int rev[MAX_SEQ];
    for (int i = 0; i < n; i++)
        rev[i] = n - 1 - i;
    embed_some(c3, s, rev, n, alt);
    for (int i = 0; i < n; i++)
        if (memcmp(alt + (size_t)i * (size_t)H, all + (size_t)(n - 1 - i) * (size_t)H,
                   sizeof *alt * (size_t)H) != 0)
            fail_msg("%s dtype %d: reversed input order changes sequence %d", me_isa_name(k->isa),
                     dtype, n - 1 - i);
    /* a different composition: odd ones only, 3 threads */
    int odd[MAX_SEQ], no = 0;
    for (int i = 1; i < n; i += 2)
        odd[no++] = i;
    embed_some(c3, s, odd, no, alt);
    for (int i = 0; i < no; i++)
        assert_memory_equal(alt + (size_t)i * (size_t)H, all + (size_t)odd[i] * (size_t)H,
                            sizeof *alt * (size_t)H);

    if (dtype == MEDEMBED_DTYPE_F32) {
        if (ref_f32)
            memcpy(ref_f32, all, sizeof *all * (size_t)H * (size_t)n);
    } else if (ref_f32) {
        double sum = 0, worst = 1;
        for (int i = 0; i < n; i++) {
            double dot = 0, na = 0, nb = 0;
            for (int32_t h = 0; h < H; h++) {
                double a = all[(size_t)i * (size_t)H + (size_t)h];
                double b = ref_f32[(size_t)i * (size_t)H + (size_t)h];
                dot += a * b;
                na += a * a;
                nb += b * b;
            }
            double cs = dot / sqrt(na * nb);
            sum += cs;
            if (cs < worst)
                worst = cs;
        }
        fprintf(stderr, "%s %s vs f32 (%s): mean cosine %.6f, min %.6f over %d texts\n",
                me_isa_name(k->isa), dtype == MEDEMBED_DTYPE_BF16 ? "bf16" : "int8", dir, sum / n,
                worst, n);
        /* random N(0, 0.3) weights are far harsher than trained ones (see
         * bench/ for PubMedQA on a base-shaped model); these bounds catch
         * broken kernels, not small accuracy drifts */
        assert_true(sum / n >= (dtype == MEDEMBED_DTYPE_BF16 ? 0.999 : 0.99));
    }
    medembed_ctx_free(c1);
    medembed_ctx_free(c2);
    medembed_ctx_free(c3);
    medembed_model_free(m);
    free(all);
    free(alt);
}

/* The levels, one test each (cmocka state: an entry of g_isa); a level
 * this CPU cannot run is skipped with a SKIP line. */
static me_isa g_isa[] = {ME_ISA_SCALAR, ME_ISA_AVX2, ME_ISA_AVX512};
#define AT_LEVEL(f, isa, lvl)                                                                      \
    {.name = #f " (" lvl ")", .test_func = f, .initial_state = &g_isa[isa]}
#define PER_LEVEL(f)                                                                               \
    AT_LEVEL(f, ME_ISA_SCALAR, "scalar"), AT_LEVEL(f, ME_ISA_AVX2, "avx2"),                        \
        AT_LEVEL(f, ME_ISA_AVX512, "avx512")

static const me_kern *need_level(void **state)
{
    me_isa isa = *(const me_isa *)*state;
    const me_kern *k = me_kern_for(isa);
    if (!k) {
        fprintf(stderr, "SKIP: level %s not available on this CPU\n", me_isa_name(isa));
        skip();
    }
    return k;
}

static void test_bit_identical(void **state)
{
    char dir[1024];
    SKIP_WITHOUT_SHARED(dir, "golden/embeddings/tiny-mean-128");
    const me_kern *k = need_level(state);
    static seqs s;
    assert_true(load_seqs(dir, &s) > 4);
    float *ref = malloc(sizeof *ref * 64 * MAX_SEQ);
    for (int32_t dt = MEDEMBED_DTYPE_F32; dt <= MEDEMBED_DTYPE_INT8; dt++)
        check_level_dtype(dir, &s, k, dt, ref);
    free(ref);
}

/* CLS pooling skips the last layer's work for non-[CLS] rows: the pooled
 * vector must be bit-identical to row 0 of the full hidden state. */
static void test_cls_shortcut(void **state)
{
    char dir[1024];
    SKIP_WITHOUT_SHARED(dir, "golden/embeddings/tiny-cls-f32");
    const me_kern *k = need_level(state);
    static seqs s;
    assert_true(load_seqs(dir, &s) > 4);
    for (int32_t dt = MEDEMBED_DTYPE_F32; dt <= MEDEMBED_DTYPE_INT8; dt++) {
        medembed_model *m = load_at(dir, k, dt);
        assert_int_equal(medembed_model_pooling(m), MEDEMBED_POOLING_CLS);
        int32_t H = medembed_model_dim(m);
        medembed_ctx *c = NULL;
        assert_int_equal(medembed_ctx_create(m, 2, &c), MEDEMBED_OK);
        float *pooled = malloc(sizeof *pooled * (size_t)H * (size_t)s.n);
        float *hid = malloc(sizeof *hid * (size_t)H * 512);
        assert_int_equal(
            medembed_ctx_embed_ids(c, s.ids, s.len, s.n, MEDEMBED_F_NO_NORMALIZE, pooled),
            MEDEMBED_OK);
        for (int i = 0; i < s.n; i++) {
            assert_int_equal(medembed_ctx_hidden(c, s.ids + s.off[i], s.len[i], hid),
                             MEDEMBED_OK);
            if (memcmp(hid, pooled + (size_t)i * (size_t)H, sizeof *hid * (size_t)H) != 0)
                fail_msg("%s dtype %d: CLS of sequence %d differs from hidden row 0",
                         me_isa_name(k->isa), dt, i);
        }
        free(pooled);
        free(hid);
        medembed_ctx_free(c);
        medembed_model_free(m);
    }
}

/* me_linear.next, the prefetch hint of the small-M GEMMs, follows the
 * forward pass: Q/K/V, attention output, FFN in, FFN out, the next layer's
 * Q/K/V, and nothing after the last layer. */
static void test_next_layer_hint(void **state)
{
    (void)state;
    char dir[1024];
    SKIP_WITHOUT_SHARED(dir, "golden/embeddings/tiny-cls-f32");
    medembed_model *m = NULL;
    char err[512];
    assert_int_equal(medembed_model_load(dir, NULL, &m, err, sizeof err), MEDEMBED_OK);
    int32_t n = m->cfg.n_layers;
    assert_true(n >= 2);
    for (int32_t il = 0; il < n; il++) {
        const me_layer *L = &m->layers[il];
        assert_ptr_equal(L->qkv.next, &L->attn_out);
        assert_ptr_equal(L->attn_out.next, &L->ffn_in);
        assert_ptr_equal(L->ffn_in.next, &L->ffn_out);
        if (il + 1 < n)
            assert_ptr_equal(L->ffn_out.next, &m->layers[il + 1].qkv);
        else
            assert_null(L->ffn_out.next);
    }
    medembed_model_free(m);
}

/* me_weights_stage: the pread copy of each layer's fp32 source must hold
 * exactly the bytes the file mapping holds (read here through the mapping,
 * the path the copy replaces), and every case it cannot serve must leave the
 * layer untouched. The scalar level keeps the sources (it packs nothing). */
static void check_stage(const char *dir, int expect_staged)
{
    medembed_model *m = load_at(dir, me_kern_for(ME_ISA_SCALAR), MEDEMBED_DTYPE_F32);
    int32_t staged_layers = 0;
    for (int32_t il = 0; il < m->cfg.n_layers; il++) {
        me_layer *ly = &m->layers[il];
        me_linear *ls[4] = {&ly->qkv, &ly->attn_out, &ly->ffn_in, &ly->ffn_out};
        for (int i = 0; i < 4; i++) {
            me_linear *L = ls[i];
            me_linear before = *L;
            size_t row = sizeof(float) * (size_t)L->n_in;
            size_t bytes = row * (size_t)L->n_out;
            uint8_t *buf = malloc(bytes + 1);
            assert_non_null(buf);
            const float *saved[4];
            /* too small by one byte, or no buffer: not staged, L unchanged */
            assert_int_equal(me_weights_stage(m, L, buf, bytes - 1, saved), 0);
            assert_memory_equal(L, &before, sizeof before);
            assert_int_equal(me_weights_stage(m, L, NULL, bytes, saved), 0);
            assert_memory_equal(L, &before, sizeof before);
            memset(buf, 0xA5, bytes + 1);
            int st = me_weights_stage(m, L, buf, bytes, saved);
            assert_int_equal(st, expect_staged);
            if (!st) {
                assert_memory_equal(L, &before, sizeof before);
                free(buf);
                continue;
            }
            staged_layers++;
            assert_ptr_equal(L->w, (const float *)(void *)buf);
            for (int32_t n = 0; n < L->n_out; n++)
                assert_memory_equal(me_linear_row(L, n), me_linear_row(&before, n), row);
            assert_int_equal(buf[bytes], 0xA5); /* nothing written past the source */
            me_weights_unstage(L, saved);
            assert_memory_equal(L, &before, sizeof before);
            free(buf);
        }
    }
    assert_int_equal(staged_layers, expect_staged ? 4 * m->cfg.n_layers : 0);
    medembed_model_free(m);
}

/* me_kern.in_place_dtypes tells the loader whether to stage a copy to pack
 * from: it must say exactly which levels and dtypes keep no packed form
 * (and so read the fp32 source, which must still be there). */
static void test_in_place_dtypes(void **state)
{
    char dir[1024];
    SKIP_WITHOUT_SHARED(dir, "golden/embeddings/tiny-cls-f32");
    const me_kern *k = need_level(state);
    for (int32_t dt = MEDEMBED_DTYPE_F32; dt <= MEDEMBED_DTYPE_INT8; dt++) {
        medembed_model *m = load_at(dir, k, dt);
        int in_place = (k->in_place_dtypes >> dt) & 1;
        for (int32_t il = 0; il < m->cfg.n_layers; il++) {
            const me_layer *ly = &m->layers[il];
            const me_linear *ls[4] = {&ly->qkv, &ly->attn_out, &ly->ffn_in, &ly->ffn_out};
            for (int i = 0; i < 4; i++) {
                if ((ls[i]->packed == NULL) != in_place)
                    fail_msg("%s dtype %d layer %d.%d: packed %p, in_place %d",
                             me_isa_name(k->isa), dt, il, i, ls[i]->packed, in_place);
                if (in_place)
                    assert_true(ls[i]->w || ls[i]->w_part[0]);
            }
        }
        medembed_model_free(m);
    }
}

static void test_stage_sources(void **state)
{
    (void)state;
    char dir[1024];
    SKIP_WITHOUT_SHARED(dir, "golden/embeddings/tiny-cls-f32");
    check_stage(dir, 1); /* F32 in the file: read with pread */
    SKIP_WITHOUT_SHARED(dir, "golden/embeddings/tiny-cls-f16");
    check_stage(dir, 0); /* converted to fp32 in memory: nothing to read */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        PER_LEVEL(test_bit_identical),
        PER_LEVEL(test_cls_shortcut),
        cmocka_unit_test(test_next_layer_hint),
        PER_LEVEL(test_in_place_dtypes),
        cmocka_unit_test(test_stage_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
