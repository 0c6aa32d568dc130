/*
 * test_index.c - search index internals and API: pytrec_eval metrics on
 * hand-computed qrels, chunk windows, top-k selection, filters, HNSW recall
 * against brute force, graph (de)serialization and its validation, and the
 * public index API (persistence, filters, delete, int8 rescoring, errors).
 */
#include <math.h>
#include <unistd.h>

#include "test_util.h"
#include "test_isa.h"

#include "index/index.h"

/* ---------------------------------------------------------------- metrics */

static void metrics_graded(void **state)
{
    (void)state;
    const char *run[] = {"d1", "d2", "d3", "d4"};
    const float sc[] = {0.9f, 0.8f, 0.7f, 0.6f};
    const char *qd[] = {"d1", "d3", "d5"};
    const int32_t qr[] = {1, 2, 1};
    medembed_metrics m;
    assert_int_equal(medembed_metrics_query(run, sc, 4, qd, qr, 3, 10, &m), MEDEMBED_OK);
    /* DCG = 1/log2(2) + 2/log2(4) = 2; IDCG = 2 + 1/log2(3) + 1/log2(4) */
    double idcg = 2.0 + 1.0 / log2(3.0) + 0.5;
    assert_float_equal(m.ndcg, 2.0 / idcg, 1e-9);
    assert_float_equal(m.map, (1.0 + 2.0 / 3.0) / 3.0, 1e-9);
    assert_float_equal(m.mrr, 1.0, 1e-12);
    assert_float_equal(m.recall, 2.0 / 3.0, 1e-12);
    assert_float_equal(m.precision, 0.2, 1e-12);
    assert_int_equal(medembed_metrics_query(run, sc, 4, qd, qr, 3, 2, &m), MEDEMBED_OK);
    assert_float_equal(m.ndcg, 1.0 / (2.0 + 1.0 / log2(3.0)), 1e-9);
    assert_float_equal(m.map, 1.0 / 3.0, 1e-12);
    assert_float_equal(m.recall, 1.0 / 3.0, 1e-12);
    assert_float_equal(m.precision, 0.5, 1e-12);
    /* The run's order does not matter: it is re-sorted by score. */
    const char *run2[] = {"d4", "d3", "d2", "d1"};
    const float sc2[] = {0.6f, 0.7f, 0.8f, 0.9f};
    medembed_metrics m2;
    assert_int_equal(medembed_metrics_query(run2, sc2, 4, qd, qr, 3, 10, &m2), MEDEMBED_OK);
    assert_float_equal(m2.ndcg, 2.0 / idcg, 1e-9);
}

static void metrics_ties(void **state)
{
    (void)state;
    /* trec_eval breaks score ties by doc id descending: c, b, a. */
    const char *run[] = {"a", "b", "c"};
    const float sc[] = {0.5f, 0.5f, 0.5f};
    const char *qd[] = {"a"};
    const int32_t qr[] = {1};
    medembed_metrics m;
    assert_int_equal(medembed_metrics_query(run, sc, 3, qd, qr, 1, 10, &m), MEDEMBED_OK);
    assert_float_equal(m.mrr, 1.0 / 3.0, 1e-12);
    assert_float_equal(m.ndcg, 0.5, 1e-12);      /* 1/log2(4) over IDCG 1 */
    assert_float_equal(m.map, 1.0 / 3.0, 1e-12); /* P@3 */
    assert_int_equal(medembed_metrics_query(run, sc, 3, qd, qr, 1, 2, &m), MEDEMBED_OK);
    assert_float_equal(m.mrr, 0.0, 0);
    assert_float_equal(m.recall, 0.0, 0);
    assert_float_equal(m.precision, 0.0, 0);
}

static void metrics_no_relevant(void **state)
{
    (void)state;
    const char *run[] = {"d1", "d2"};
    const float sc[] = {0.9f, 0.1f};
    const char *qd[] = {"d1"};
    const int32_t qr[] = {0}; /* judged, not relevant */
    medembed_metrics m;
    assert_int_equal(medembed_metrics_query(run, sc, 2, qd, qr, 1, 10, &m), MEDEMBED_OK);
    assert_true(m.ndcg == 0 && m.map == 0 && m.mrr == 0 && m.recall == 0 && m.precision == 0);
    assert_int_equal(medembed_metrics_query(NULL, NULL, 0, qd, qr, 1, 10, &m), MEDEMBED_OK);
    assert_true(m.ndcg == 0 && m.recall == 0);
    assert_int_equal(medembed_metrics_query(run, sc, 2, qd, qr, 1, 0, &m), MEDEMBED_ERR_ARG);
}

/* ------------------------------------------------------------ chunk, topk */

static void chunk_windows(void **state)
{
    (void)state;
    me_span s[8];
    assert_int_equal(me_chunk_spans(10, 4, 1, s, 8), 3);
    assert_true(s[0].start == 0 && s[0].end == 4 && s[1].start == 3 && s[1].end == 7 &&
                s[2].start == 6 && s[2].end == 10);
    assert_int_equal(me_chunk_spans(0, 4, 0, s, 8), 1);
    assert_true(s[0].start == 0 && s[0].end == 0);
    assert_int_equal(me_chunk_spans(4, 4, 0, s, 8), 1);
    assert_int_equal(me_chunk_spans(5, 4, 3, s, 8), 2);
    assert_true(s[1].start == 1 && s[1].end == 5);
    assert_int_equal(me_chunk_spans(650, 510, 0, NULL, 0), 2);
    assert_int_equal(me_chunk_spans(10, 4, 4, s, 8), 0); /* overlap must be < window */
    /* a 2-piece tail becomes a full window that overlaps its neighbour more */
    assert_int_equal(me_chunk_spans(11, 4, 1, s, 8), 4);
    assert_true(s[2].start == 6 && s[2].end == 10 && s[3].start == 7 && s[3].end == 11);
    assert_int_equal(me_chunk_spans(3, 4, 1, s, 8), 1);
    assert_true(s[0].start == 0 && s[0].end == 3);
    assert_int_equal(me_chunk_overlap_default(510), 64);
    assert_int_equal(me_chunk_overlap_default(40), 20);
    assert_int_equal(me_chunk_overlap_default(1), 0);
}

static int cmp_pair(const void *a, const void *b)
{
    const float *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] > y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static void topk_matches_sort(void **state)
{
    (void)state;
    enum { N = 1000, K = 17 };
    float all[N][2];
    me_topk t;
    assert_int_equal(me_topk_init(&t, K), MEDEMBED_OK);
    srand(7);
    for (int i = 0; i < N; i++) {
        all[i][0] = (float)(rand() % 50); /* many ties */
        all[i][1] = (float)i;
        me_topk_push(&t, all[i][0], i);
    }
    qsort(all, N, sizeof all[0], cmp_pair);
    me_topk_sort(&t);
    assert_int_equal(t.n, K);
    for (int i = 0; i < K; i++) {
        assert_float_equal(t.score[i], all[i][0], 0);
        assert_int_equal(t.id[i], (int64_t)all[i][1]);
    }
    me_topk_free(&t);
}

static void filter_parsing(void **state)
{
    (void)state;
    me_filter f;
    me_err e;
    assert_int_equal(me_filter_parse("year>=2015", &f, &e), MEDEMBED_OK);
    assert_string_equal(f.field, "year");
    assert_int_equal(f.op, ME_FOP_GE);
    assert_true(f.numeric && f.num == 2015);
    assert_int_equal(me_filter_parse(" journal = \"2015\" ", &f, &e), MEDEMBED_OK);
    assert_int_equal(f.op, ME_FOP_EQ);
    assert_false(f.numeric); /* quoted: a string */
    assert_string_equal(f.str, "2015");
    assert_int_equal(me_filter_parse("meshes!=Humans", &f, &e), MEDEMBED_OK);
    assert_int_equal(f.op, ME_FOP_NE);
    assert_string_equal(f.str, "Humans");
    assert_int_equal(me_filter_parse("a<b", &f, &e), MEDEMBED_OK);
    assert_true(f.op == ME_FOP_LT && !f.numeric);
    assert_int_equal(me_filter_parse("x=nan", &f, &e), MEDEMBED_OK);
    assert_false(f.numeric);
    assert_int_equal(me_filter_parse("year", &f, &e), MEDEMBED_ERR_ARG);
    assert_non_null(strstr(e.msg, "no operator"));
    assert_int_equal(me_filter_parse(">=3", &f, &e), MEDEMBED_ERR_ARG);
    assert_int_equal(me_filter_parse("year>=", &f, &e), MEDEMBED_ERR_ARG);
    assert_int_equal(me_filter_parse("year=>3", &f, &e), MEDEMBED_ERR_ARG);
    assert_int_equal(me_filter_parse("my field=3", &f, &e), MEDEMBED_ERR_ARG);
}

/* ------------------------------------------------------------------ HNSW */

static void random_unit(float *x, int64_t n, int32_t d, unsigned seed)
{
    uint64_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        double nn = 0;
        for (int32_t k = 0; k < d; k += 2) {
            /* Box-Muller from a 64-bit LCG */
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            double u1 = ((double)(s >> 11) + 1) / 9007199254740994.0;
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            double u2 = (double)(s >> 11) / 9007199254740992.0;
            double r = sqrt(-2 * log(u1));
            x[i * d + k] = (float)(r * cos(2 * M_PI * u2));
            if (k + 1 < d)
                x[i * d + k + 1] = (float)(r * sin(2 * M_PI * u2));
        }
        for (int32_t k = 0; k < d; k++)
            nn += (double)x[i * d + k] * x[i * d + k];
        for (int32_t k = 0; k < d; k++)
            x[i * d + k] = (float)(x[i * d + k] / sqrt(nn));
    }
}

/* Exact top-k ids by brute force in double precision. */
static void brute_topk(const float *x, int64_t n, int32_t d, const float *q, int32_t k,
                       int64_t *out)
{
    me_topk t;
    me_topk_init(&t, k);
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int32_t j = 0; j < d; j++)
            s += (double)q[j] * x[i * d + j];
        me_topk_push(&t, (float)s, i);
    }
    me_topk_sort(&t);
    memcpy(out, t.id, sizeof *out * (size_t)k);
    me_topk_free(&t);
}

enum { HN = 5000, HD = 64, HQ = 100, HK = 10 };

static me_hnsw *build_graph_pool(me_vecs *v, float *x, me_pool *pool)
{
    v->dim = HD;
    v->dtype = MEDEMBED_VEC_F32;
    v->f = x;
    v->n = HN;
    v->cap = HN;
    me_hnsw_params p = {16, 100, 42};
    me_hnsw *g = NULL;
    assert_int_equal(me_hnsw_create(&p, &g), MEDEMBED_OK);
    me_err e;
    assert_int_equal(me_hnsw_add(g, v, HN, pool, &e), MEDEMBED_OK);
    assert_int_equal(me_hnsw_size(g), HN);
    return g;
}

static me_hnsw *build_graph(me_vecs *v, float *x)
{
    return build_graph_pool(v, x, NULL);
}

static double graph_recall(const me_hnsw *g, const me_vecs *v, const float *qs, int32_t ef)
{
    int hit = 0;
    int64_t exact[HK];
    for (int qi = 0; qi < HQ; qi++) {
        const float *q = qs + (size_t)qi * HD;
        brute_topk(v->f, HN, HD, q, HK, exact);
        me_topk t;
        me_topk_init(&t, HK);
        me_err e;
        assert_int_equal(me_hnsw_search(g, v, q, ef, NULL, NULL, &t, &e), MEDEMBED_OK);
        for (int32_t i = 0; i < t.n; i++)
            for (int j = 0; j < HK; j++)
                hit += t.id[i] == exact[j];
        me_topk_free(&t);
    }
    return (double)hit / (HQ * HK);
}

static void hnsw_recall_and_roundtrip(void **state)
{
    (void)state;
    float *x = malloc(sizeof *x * HN * HD);
    float *qs = malloc(sizeof *qs * HQ * HD);
    random_unit(x, HN, HD, 1);
    random_unit(qs, HQ, HD, 2);
    me_vecs v = {0};
    me_hnsw *g = build_graph(&v, x);
    double r = graph_recall(g, &v, qs, 128);
    fprintf(stderr, "hnsw recall@10 on %d x %d, ef 128: %.4f\n", HN, HD, r);
    assert_true(r >= 0.95);

    /* save -> load gives the same graph, hence identical results */
    uint8_t *buf = NULL;
    size_t len = 0;
    me_err e;
    assert_int_equal(me_hnsw_save(g, &buf, &len, &e), MEDEMBED_OK);
    me_hnsw *g2 = NULL;
    assert_int_equal(me_hnsw_load(buf, len, HN, &g2, &e), MEDEMBED_OK);
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    assert_int_equal(me_hnsw_save(g2, &buf2, &len2, &e), MEDEMBED_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    assert_float_equal(graph_recall(g2, &v, qs, 128), r, 0);

    /* validation: wrong node count, truncation, trailing bytes, bad links */
    me_hnsw *bad = NULL;
    assert_int_equal(me_hnsw_load(buf, len, HN - 1, &bad, &e), MEDEMBED_ERR_FORMAT);
    for (size_t cut = 0; cut < len; cut += len / 97 + 1)
        assert_int_equal(me_hnsw_load(buf, cut, HN, &bad, &e), MEDEMBED_ERR_FORMAT);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(me_hnsw_load(longer, len + 1, HN, &bad, &e), MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "trailing"));
    /* the first link of node 0 (after the 44-byte header, HN level bytes and
     * its u16 count) pointed out of range */
    memcpy(longer, buf, len);
    size_t off = 44 + HN + 2;
    longer[off] = 0xff;
    longer[off + 1] = 0xff;
    longer[off + 2] = 0xff;
    longer[off + 3] = 0x7f;
    assert_int_equal(me_hnsw_load(longer, len, HN, &bad, &e), MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "links to"));
    assert_null(bad);
    free(longer);
    free(buf2);
    me_hnsw_free(g2);
    me_hnsw_free(g);

    /* a parallel build (2 threads) yields the very same graph as the
     * pool-less one, byte for byte, hence the same recall */
    me_pool *pool = me_pool_create(2);
    assert_non_null(pool);
    g = build_graph_pool(&v, x, pool);
    double rp = graph_recall(g, &v, qs, 128);
    fprintf(stderr, "hnsw recall@10, parallel build: %.4f\n", rp);
    assert_float_equal(rp, r, 0);
    assert_int_equal(me_hnsw_save(g, &buf2, &len2, &e), MEDEMBED_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf2);
    /* added in pieces, as index add does, on the pool or not: the same
     * graph either way, one that passes the loader's validation */
    me_hnsw *gp[2];
    uint8_t *pb[2];
    size_t pl[2];
    for (int t = 0; t < 2; t++) {
        me_hnsw_params pp = {16, 100, 42};
        assert_int_equal(me_hnsw_create(&pp, &gp[t]), MEDEMBED_OK);
        for (int64_t upto = 64; upto <= HN; upto += upto < HN && upto + 64 > HN ? HN - upto : 64)
            assert_int_equal(me_hnsw_add(gp[t], &v, upto, t ? pool : NULL, &e), MEDEMBED_OK);
        assert_int_equal(me_hnsw_size(gp[t]), HN);
        assert_int_equal(me_hnsw_save(gp[t], &pb[t], &pl[t], &e), MEDEMBED_OK);
    }
    assert_int_equal(pl[0], pl[1]);
    assert_memory_equal(pb[0], pb[1], pl[0]);
    double ri = graph_recall(gp[1], &v, qs, 128);
    fprintf(stderr, "hnsw recall@10, built 64 nodes at a time: %.4f\n", ri);
    assert_true(ri >= 0.95);
    assert_int_equal(me_hnsw_load(pb[1], pl[1], HN, &g2, &e), MEDEMBED_OK);
    for (int t = 0; t < 2; t++) {
        free(pb[t]);
        me_hnsw_free(gp[t]);
    }
    free(buf);
    me_hnsw_free(g2);
    me_hnsw_free(g);
    me_pool_free(pool);
    free(x);
    free(qs);
}

/* ---------------------------------------------------------- public API */

static char g_tmp[256];

static void tmp_index_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_tmp, name);
    char side[300];
    unlink(out);
    snprintf(side, sizeof side, "%s-wal", out);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", out);
    unlink(side);
}

enum { AN = 400, AD = 16 };

static medembed_index *make_vec_index(const char *name, int32_t dtype, int32_t hnsw_m,
                                      float *x)
{
    char path[300], err[512];
    tmp_index_path(path, sizeof path, name);
    medembed_index_config c;
    medembed_index_config_init(&c);
    c.dim = AD;
    c.vec_dtype = dtype;
    c.hnsw_m = hnsw_m;
    medembed_index *ix = NULL;
    assert_int_equal(medembed_index_create(path, NULL, &c, &ix, err, sizeof err), MEDEMBED_OK);
    random_unit(x, AN, AD, 3);
    medembed_index_doc docs[AN];
    char ids[AN][16], meta[AN][64];
    for (int i = 0; i < AN; i++) {
        snprintf(ids[i], sizeof ids[i], "doc%03d", i);
        snprintf(meta[i], sizeof meta[i], "{\"year\": \"%d\", \"tags\": [\"t%d\", \"all\"]}",
                 2000 + i % 20, i % 3);
        docs[i].id = ids[i];
        docs[i].metadata = meta[i];
        docs[i].text = NULL;
        docs[i].text_len = 0;
    }
    /* two batches = two transactions */
    assert_int_equal(medembed_index_add_vectors(ix, docs, AN / 2, x, err, sizeof err),
                     MEDEMBED_OK);
    assert_int_equal(medembed_index_add_vectors(ix, docs + AN / 2, AN - AN / 2,
                                                x + (size_t)(AN / 2) * AD, err, sizeof err),
                     MEDEMBED_OK);
    return ix;
}

static void check_exact(medembed_index *ix, const float *x, const float *q, int32_t k,
                        int threads)
{
    int64_t ex[32];
    brute_topk(x, AN, AD, q, k, ex);
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = k;
    so.exact = 1;
    so.n_threads = threads;
    medembed_hits *h = NULL;
    char err[512];
    assert_int_equal(medembed_index_search(ix, q, &so, &h, err, sizeof err), MEDEMBED_OK);
    assert_int_equal(medembed_hits_count(h), k);
    for (int32_t i = 0; i < k; i++) {
        char want[16];
        snprintf(want, sizeof want, "doc%03d", (int)ex[i]);
        assert_string_equal(medembed_hits_id(h, i), want);
    }
    medembed_hits_free(h);
}

static void index_api_f32(void **state)
{
    (void)state;
    float *x = malloc(sizeof *x * AN * AD);
    float q[AD];
    random_unit(q, 1, AD, 9);
    medembed_index *ix = make_vec_index("f32.db", MEDEMBED_VEC_F32, 0, x);
    char err[512], path[300];
    snprintf(path, sizeof path, "%s/f32.db", g_tmp);
    assert_int_equal(medembed_index_n_docs(ix), AN);
    check_exact(ix, x, q, 10, 1);
    check_exact(ix, x, q, 10, 0);
    assert_true(medembed_index_contains(ix, "doc007"));
    assert_false(medembed_index_contains(ix, "nope"));

    /* duplicate ids: within a batch and against the index; nothing changes */
    medembed_index_doc d2[2] = {{"new", NULL, 0, NULL}, {"new", NULL, 0, NULL}};
    assert_int_equal(medembed_index_add_vectors(ix, d2, 2, x, err, sizeof err), MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "duplicate id \"new\""));
    d2[1].id = "doc001";
    assert_int_equal(medembed_index_add_vectors(ix, d2, 2, x, err, sizeof err), MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "duplicate id \"doc001\""));
    assert_false(medembed_index_contains(ix, "new")); /* rolled back */
    medembed_index_doc bad = {"m", NULL, 0, "[1, 2]"};
    assert_int_equal(medembed_index_add_vectors(ix, &bad, 1, x, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "JSON object"));

    /* filters: year is a numeric string; tags an array */
    const char *f[] = {"year>=2015", "tags=t1"};
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = 500;
    so.filters = f;
    so.n_filters = 2;
    medembed_hits *h = NULL;
    assert_int_equal(medembed_index_search(ix, q, &so, &h, err, sizeof err), MEDEMBED_OK);
    int want = 0;
    for (int i = 0; i < AN; i++)
        want += (i % 20) >= 15 && i % 3 == 1;
    assert_int_equal(medembed_hits_count(h), want);
    for (int32_t i = 0; i < medembed_hits_count(h); i++) {
        int n = atoi(medembed_hits_id(h, i) + 3);
        assert_true(n % 20 >= 15 && n % 3 == 1);
        assert_non_null(strstr(medembed_hits_metadata(h, i), "\"year\""));
        if (i)
            assert_true(medembed_hits_score(h, i) <= medembed_hits_score(h, i - 1));
    }
    medembed_hits_free(h);
    const char *f_bad[] = {"year"};
    so.filters = f_bad;
    so.n_filters = 1;
    assert_int_equal(medembed_index_search(ix, q, &so, &h, err, sizeof err), MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "no operator"));

    /* delete, then reopen: the file holds exactly what was committed */
    assert_int_equal(medembed_index_delete(ix, "doc005", err, sizeof err), MEDEMBED_OK);
    assert_int_equal(medembed_index_delete(ix, "doc005", err, sizeof err),
                     MEDEMBED_ERR_NOT_FOUND);
    medembed_index_free(ix);
    ix = NULL;
    assert_int_equal(medembed_index_open(path, MEDEMBED_INDEX_READONLY, &ix, err, sizeof err),
                     MEDEMBED_OK);
    assert_int_equal(medembed_index_n_docs(ix), AN - 1);
    assert_false(medembed_index_contains(ix, "doc005"));
    assert_int_equal(medembed_index_add_vectors(ix, d2, 1, x, err, sizeof err), MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "read-only"));
    /* exact results = brute force over the remaining vectors */
    memmove(x + 5 * AD, x + 6 * AD, sizeof *x * (AN - 6) * AD);
    int64_t ex[10];
    brute_topk(x, AN - 1, AD, q, 10, ex);
    medembed_search_opts_init(&so);
    so.exact = 1;
    assert_int_equal(medembed_index_search(ix, q, &so, &h, err, sizeof err), MEDEMBED_OK);
    for (int i = 0; i < 10; i++) {
        char w[16];
        snprintf(w, sizeof w, "doc%03d", (int)(ex[i] >= 5 ? ex[i] + 1 : ex[i]));
        assert_string_equal(medembed_hits_id(h, i), w);
    }
    medembed_hits_free(h);
    medembed_index_free(ix);
    free(x);
}

static void index_api_int8_hnsw(void **state)
{
    (void)state;
    float *x = malloc(sizeof *x * AN * AD);
    float q[AD];
    random_unit(q, 1, AD, 11);
    char err[512], path[300];
    medembed_index *ix = make_vec_index("i8.db", MEDEMBED_VEC_INT8, 8, x);
    snprintf(path, sizeof path, "%s/i8.db", g_tmp);
    assert_int_equal(medembed_index_flush(ix, err, sizeof err), MEDEMBED_OK);
    medembed_index_free(ix);
    assert_int_equal(medembed_index_open(path, 0, &ix, err, sizeof err), MEDEMBED_OK);
    /* int8 + rescoring: returned scores are the exact f32 dot products, and
     * with 4k candidates the top 5 equal brute force on this data */
    int64_t ex[5];
    brute_topk(x, AN, AD, q, 5, ex);
    for (int exact = 0; exact < 2; exact++) {
        medembed_search_opts so;
        medembed_search_opts_init(&so);
        so.k = 5;
        so.exact = exact;
        so.ef_search = 200;
        medembed_hits *h = NULL;
        assert_int_equal(medembed_index_search(ix, q, &so, &h, err, sizeof err), MEDEMBED_OK);
        assert_int_equal(medembed_hits_count(h), 5);
        for (int i = 0; i < 5; i++) {
            int n = atoi(medembed_hits_id(h, i) + 3);
            double s = 0;
            for (int j = 0; j < AD; j++)
                s += (double)q[j] * x[n * AD + j];
            assert_float_equal(medembed_hits_score(h, i), s, 1e-5);
            assert_int_equal(n, (int)ex[i]);
        }
        medembed_hits_free(h);
    }
    /* delete makes the graph stale; flush rebuilds and saves it */
    assert_int_equal(medembed_index_delete(ix, "doc000", err, sizeof err), MEDEMBED_OK);
    assert_int_equal(medembed_index_flush(ix, err, sizeof err), MEDEMBED_OK);
    medembed_index_free(ix);
    assert_int_equal(medembed_index_open(path, MEDEMBED_INDEX_READONLY, &ix, err, sizeof err),
                     MEDEMBED_OK);
    char *info = medembed_index_info_json(ix);
    assert_non_null(strstr(info, "\"n_docs\": 399"));
    assert_non_null(strstr(info, "\"dtype\": \"int8\""));
    free(info);
    medembed_index_free(ix);
    free(x);
}

/* Two writable handles on one file (as two processes): each write takes
 * the write lock and reloads a handle whose memory is older than the file,
 * so neither loses the other's documents and the generation counts every
 * commit; the graph saved last covers everything. Then delete_ids: all or
 * nothing. */
static void index_two_writers(void **state)
{
    (void)state;
    float *x = malloc(sizeof *x * AN * AD);
    char err[512], path[300];
    medembed_index *a = make_vec_index("two.db", MEDEMBED_VEC_F32, 8, x);
    snprintf(path, sizeof path, "%s/two.db", g_tmp);
    assert_int_equal(medembed_index_flush(a, err, sizeof err), MEDEMBED_OK);
    medembed_index *b = NULL, *r = NULL;
    assert_int_equal(medembed_index_open(path, 0, &b, err, sizeof err), MEDEMBED_OK);
    assert_int_equal(medembed_index_open(path, MEDEMBED_INDEX_READONLY, &r, err, sizeof err),
                     MEDEMBED_OK);
    float y[4 * AD];
    random_unit(y, 4, AD, 99);
    medembed_index_doc d[4] = {{"a0", NULL, 0, NULL}, {"b0", NULL, 0, NULL},
                               {"a1", NULL, 0, NULL}, {"b1", NULL, 0, NULL}};
    for (int i = 0; i < 4; i++) /* alternate: every write finds the other's commit */
        assert_int_equal(medembed_index_add_vectors(i % 2 ? b : a, &d[i], 1, y + i * AD, err,
                                                    sizeof err),
                         MEDEMBED_OK);
    /* a reader follows the file: a search reloads the data (exact until the
     * writers save the graph), and then the graph */
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = 1;
    medembed_hits *h = NULL;
    assert_int_equal(medembed_index_search(r, y + 3 * AD, &so, &h, err, sizeof err), MEDEMBED_OK);
    assert_string_equal(medembed_hits_id(h, 0), "b1");
    medembed_hits_free(h);
    assert_int_equal(medembed_index_n_docs(r), AN + 4);
    assert_true(r->hnsw_stale && !r->hnsw);
    assert_int_equal(medembed_index_n_docs(a), AN + 3); /* a has not seen b1 yet */
    assert_int_equal(medembed_index_n_docs(b), AN + 4);
    assert_int_equal(medembed_index_flush(a, err, sizeof err), MEDEMBED_OK);
    assert_int_equal(medembed_index_flush(b, err, sizeof err), MEDEMBED_OK);
    assert_int_equal(medembed_index_n_docs(a), AN + 4); /* reloaded by its flush */
    assert_int_equal(medembed_index_search(r, y + 2 * AD, &so, &h, err, sizeof err), MEDEMBED_OK);
    assert_string_equal(medembed_hits_id(h, 0), "a1");
    medembed_hits_free(h);
    assert_true(!r->hnsw_stale && r->hnsw && me_hnsw_size(r->hnsw) == AN + 4);
    medembed_index_free(r);
    /* all or nothing: one missing id deletes none, and is named */
    const char *ids[] = {"a0", "nope", "b1"};
    int64_t nd = -1;
    assert_int_equal(medembed_index_delete_ids(a, ids, 3, &nd, err, sizeof err),
                     MEDEMBED_ERR_NOT_FOUND);
    assert_int_equal(nd, 0);
    assert_non_null(strstr(err, "\"nope\""));
    assert_null(strstr(err, "\"a0\""));
    assert_true(medembed_index_contains(a, "a0") && medembed_index_contains(a, "b1"));
    const char *ok_ids[] = {"a0", "b1", "a0"};
    assert_int_equal(medembed_index_delete_ids(b, ok_ids, 3, &nd, err, sizeof err), MEDEMBED_OK);
    assert_int_equal(nd, 2);
    medembed_index_free(a);
    medembed_index_free(b);
    assert_int_equal(medembed_index_open(path, MEDEMBED_INDEX_READONLY, &a, err, sizeof err),
                     MEDEMBED_OK);
    char *info = medembed_index_info_json(a);
    assert_int_equal(medembed_index_n_docs(a), AN + 2);
    assert_non_null(strstr(info, "\"graph\": \"stored\""));
    assert_non_null(strstr(info, "\"generation\": 7")); /* 2 builds + 4 adds + 1 delete */
    free(info);
    /* HNSW over the reloaded graph finds each remaining added vector itself */
    for (int i = 1; i < 3; i++) {
        assert_int_equal(medembed_index_search(a, y + i * AD, &so, &h, err, sizeof err),
                         MEDEMBED_OK);
        assert_string_equal(medembed_hits_id(h, 0), d[i].id);
        medembed_hits_free(h);
    }
    medembed_index_free(a);
    assert_int_equal(medembed_index_remove(path), MEDEMBED_OK);
    assert_int_equal(medembed_index_open(path, 0, &a, err, sizeof err), MEDEMBED_ERR_NOT_FOUND);
    free(x);
}

/* The index stores int8 vectors with the kernels' row quantizer
 * (me_quant_row_s8): an all-zero vector gets q = 0 and scale 0, and the
 * file with it opens again (the loader once refused a scale of 0); an
 * ordinary vector gets the kernels' q and scale bit for bit, before and
 * after a reopen, and decodes to within half a step. A file written before
 * (scale 1 for the zero vector) still opens and decodes it to zeros. */
static void index_int8_quantizer(void **state)
{
    (void)state;
    enum { QN = 6, QD = 37 };
    float x[QN * QD];
    random_unit(x, QN, QD, 17);
    memset(x, 0, sizeof(float) * QD); /* doc0: all zero */
    for (int32_t k = 0; k < QD; k++)  /* doc5: a wide range, ties at 0.5 steps */
        x[5 * QD + k] = (float)(k - 18) * 3.5f;
    char path[300], err[512];
    tmp_index_path(path, sizeof path, "quant.db");
    medembed_index_config c;
    medembed_index_config_init(&c);
    c.dim = QD;
    c.vec_dtype = MEDEMBED_VEC_INT8;
    medembed_index *ix = NULL;
    assert_int_equal(medembed_index_create(path, NULL, &c, &ix, err, sizeof err), MEDEMBED_OK);
    medembed_index_doc docs[QN];
    char ids[QN][16];
    for (int i = 0; i < QN; i++) {
        snprintf(ids[i], sizeof ids[i], "doc%d", i);
        docs[i] = (medembed_index_doc){ids[i], NULL, 0, NULL};
    }
    assert_int_equal(medembed_index_add_vectors(ix, docs, QN, x, err, sizeof err), MEDEMBED_OK);
    for (int pass = 0; pass < 3; pass++) {
        if (pass > 0) { /* reopened; pass 2 after writing the old zero-row scale */
            assert_int_equal(medembed_index_flush(ix, err, sizeof err), MEDEMBED_OK);
            medembed_index_free(ix);
            ix = NULL;
            if (pass == 2) {
                sqlite3 *db = NULL;
                assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
                uint8_t blob[4 + QD] = {0};
                float one = 1.0f;
                memcpy(blob, &one, 4);
                sqlite3_stmt *st = NULL;
                assert_int_equal(sqlite3_prepare_v2(db,
                                                    "UPDATE chunks SET vec = ?1 WHERE doc = "
                                                    "(SELECT id FROM docs WHERE ext_id = 'doc0')",
                                                    -1, &st, NULL),
                                 SQLITE_OK);
                sqlite3_bind_blob(st, 1, blob, (int)sizeof blob, SQLITE_STATIC);
                assert_int_equal(sqlite3_step(st), SQLITE_DONE);
                assert_int_equal(sqlite3_changes(db), 1);
                sqlite3_finalize(st);
                sqlite3_close(db);
            }
            int rc = medembed_index_open(path, 0, &ix, err, sizeof err);
            if (rc != MEDEMBED_OK)
                fail_msg("reopen (pass %d): %s", pass, err);
        }
        assert_int_equal(ix->vecs.n, QN);
        for (int i = 0; i < QN; i++) {
            int8_t want[QD];
            float ws = me_quant_row_s8(x + i * QD, QD, want);
            const int8_t *got = ix->vecs.q + (size_t)i * QD;
            float gs = ix->vecs.scale[i];
            float row[QD];
            me_vecs_row(&ix->vecs, i, row);
            if (i == 0) {
                assert_true(ws == 0.0f);
                assert_true(gs == (pass == 2 ? 1.0f : 0.0f));
                for (int32_t k = 0; k < QD; k++)
                    assert_true(got[k] == 0 && row[k] == 0.0f);
                continue;
            }
            assert_true(ws > 0.0f);
            assert_memory_equal(&gs, &ws, sizeof gs);
            assert_memory_equal(got, want, QD);
            for (int32_t k = 0; k < QD; k++)
                assert_true(fabsf(row[k] - x[i * QD + k]) <= 0.5f * ws * 1.0001f);
        }
        /* every document found; the zero vector scores 0 */
        float q[QD];
        random_unit(q, 1, QD, 23);
        medembed_search_opts so;
        medembed_search_opts_init(&so);
        so.k = QN;
        so.exact = 1;
        medembed_hits *h = NULL;
        assert_int_equal(medembed_index_search(ix, q, &so, &h, err, sizeof err), MEDEMBED_OK);
        assert_int_equal(medembed_hits_count(h), QN);
        int zero = 0;
        for (int i = 0; i < QN; i++)
            if (strcmp(medembed_hits_id(h, i), "doc0") == 0) {
                zero = 1;
                assert_true(medembed_hits_score(h, i) == 0.0f);
            }
        assert_true(zero);
        medembed_hits_free(h);
    }
    medembed_index_free(ix);
}

/* Search scores come from the kernel level's dot product (kernels.h
 * dot_f32), whichever level is forced: an exact f32 search returns, for
 * each hit, exactly level->dot_f32(query, row). */
#define AT_LEVEL TEST_AT_LEVEL

static void index_scores_follow_level(void **state)
{
    const me_kern *k = test_need_level(state);
    float *x = malloc(sizeof *x * AN * AD);
    float q[AD];
    random_unit(q, 1, AD, 31);
    char name[32];
    snprintf(name, sizeof name, "lvl-%s.db", me_isa_name(k->isa));
    medembed_index *ix = make_vec_index(name, MEDEMBED_VEC_F32, 0, x);
    me_kern_force(k);
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = 20;
    so.exact = 1;
    medembed_hits *h = NULL;
    char err[512];
    int rc = medembed_index_search(ix, q, &so, &h, err, sizeof err);
    me_kern_force(NULL);
    assert_int_equal(rc, MEDEMBED_OK);
    for (int i = 0; i < medembed_hits_count(h); i++) {
        int n = atoi(medembed_hits_id(h, i) + 3);
        float want = k->dot_f32(q, x + (size_t)n * AD, AD), got = medembed_hits_score(h, i);
        if (memcmp(&want, &got, sizeof got) != 0)
            fail_msg("%s: hit %d (doc %d) scored %.9g, the level's dot product %.9g",
                     me_isa_name(k->isa), i, n, got, want);
    }
    medembed_hits_free(h);
    medembed_index_free(ix);
    free(x);
}

/* Several threads search one handle at once (exact with the pool, HNSW,
 * filtered) and must get the single-threaded answers. */
typedef struct conc_arg {
    medembed_index *ix;
    const float *qs;
    char (*want)[3][16];
    int fails;
} conc_arg;

enum { CQ = 24 };

static void conc_search(medembed_index *ix, const float *q, int mode, char out[16])
{
    static const char *f[] = {"tags=t2"};
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = 3;
    so.exact = mode == 0;
    so.filters = mode == 2 ? f : NULL;
    so.n_filters = mode == 2;
    so.ef_search = 400;
    medembed_hits *h = NULL;
    char err[256];
    out[0] = 0;
    if (medembed_index_search(ix, q, &so, &h, err, sizeof err) == MEDEMBED_OK)
        snprintf(out, 16, "%s", medembed_hits_id(h, 0));
    medembed_hits_free(h);
}

static void *conc_main(void *p)
{
    conc_arg *a = p;
    for (int rep = 0; rep < 3; rep++)
        for (int i = 0; i < CQ; i++)
            for (int mode = 0; mode < 3; mode++) {
                char got[16];
                conc_search(a->ix, a->qs + (size_t)i * AD, mode, got);
                if (strcmp(got, a->want[i][mode]) != 0)
                    a->fails++;
            }
    return NULL;
}

static void index_concurrent_search(void **state)
{
    (void)state;
    float *x = malloc(sizeof *x * AN * AD);
    float qs[CQ * AD];
    random_unit(qs, CQ, AD, 21);
    medembed_index *ix = make_vec_index("conc.db", MEDEMBED_VEC_F32, 8, x);
    int64_t old_min = me_flat_min_parallel;
    me_flat_min_parallel = 0; /* exact searches go through the shared pool */
    char want[CQ][3][16];
    for (int i = 0; i < CQ; i++)
        for (int mode = 0; mode < 3; mode++)
            conc_search(ix, qs + (size_t)i * AD, mode, want[i][mode]);
    pthread_t th[4];
    conc_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (conc_arg){ix, qs, want, 0};
        assert_int_equal(pthread_create(&th[t], NULL, conc_main, &args[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].fails, 0);
    }
    me_flat_min_parallel = old_min;
    medembed_index_free(ix);
    free(x);
}

static void index_open_errors(void **state)
{
    (void)state;
    char err[512], path[300];
    medembed_index *ix = NULL;
    tmp_index_path(path, sizeof path, "missing.db");
    assert_int_equal(medembed_index_open(path, 0, &ix, err, sizeof err), MEDEMBED_ERR_NOT_FOUND);
    tmp_index_path(path, sizeof path, "garbage.db");
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    test_write_file(path, junk, sizeof junk);
    assert_int_equal(medembed_index_open(path, MEDEMBED_INDEX_READONLY, &ix, err, sizeof err),
                     MEDEMBED_ERR_FORMAT);
    assert_null(ix);
    medembed_index_config c;
    medembed_index_config_init(&c);
    c.dim = 0;
    tmp_index_path(path, sizeof path, "nodim.db");
    assert_int_equal(medembed_index_create(path, NULL, &c, &ix, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    c.dim = 4;
    c.chunk_tokens = 8;
    c.overlap = 8;
    assert_int_equal(medembed_index_create(path, NULL, &c, &ix, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "overlap"));
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/medembed_test_index_XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* medembed_rank_order against a stable insertion sort written here: best
 * first, equal scores in input order, NaN last. */
static void rank_order_rule(void **state)
{
    (void)state;
    uint32_t seed = 7;
    for (int trial = 0; trial < 200; trial++) {
        int32_t n = trial % 23;
        float sc[32];
        int32_t got[32], want[32];
        for (int32_t i = 0; i < n; i++) {
            seed = seed * 1664525u + 1013904223u;
            uint32_t v = seed >> 28; /* few values: many ties */
            sc[i] = v == 15 ? NAN : (float)v - 7.0f;
            want[i] = i;
        }
        for (int32_t i = 1; i < n; i++) { /* stable insertion sort */
            int32_t x = want[i], j = i - 1;
            for (; j >= 0; j--) {
                float a = sc[want[j]], b = sc[x];
                int after = isnan(a) ? !isnan(b) : (!isnan(b) && b > a);
                if (!after)
                    break;
                want[j + 1] = want[j];
            }
            want[j + 1] = x;
        }
        assert_int_equal(medembed_rank_order(sc, n, got), MEDEMBED_OK);
        for (int32_t i = 0; i < n; i++)
            assert_int_equal(got[i], want[i]);
    }
    int32_t o[1];
    assert_int_equal(medembed_rank_order(NULL, 1, o), MEDEMBED_ERR_ARG);
    assert_int_equal(medembed_rank_order(NULL, 0, NULL), MEDEMBED_OK);
    assert_int_equal(medembed_rank_order(NULL, -1, o), MEDEMBED_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rank_order_rule),
        cmocka_unit_test(metrics_graded),
        cmocka_unit_test(metrics_ties),
        cmocka_unit_test(metrics_no_relevant),
        cmocka_unit_test(chunk_windows),
        cmocka_unit_test(topk_matches_sort),
        cmocka_unit_test(filter_parsing),
        cmocka_unit_test(hnsw_recall_and_roundtrip),
        cmocka_unit_test(index_api_f32),
        cmocka_unit_test(index_api_int8_hnsw),
        cmocka_unit_test(index_two_writers),
        cmocka_unit_test(index_int8_quantizer),
        AT_LEVEL(index_scores_follow_level, ME_ISA_SCALAR, "scalar"),
        AT_LEVEL(index_scores_follow_level, ME_ISA_AVX2, "avx2"),
        AT_LEVEL(index_scores_follow_level, ME_ISA_AVX512, "avx512"),
        AT_LEVEL(index_scores_follow_level, ME_ISA_NEON, "neon"),
        cmocka_unit_test(index_concurrent_search),
        cmocka_unit_test(index_open_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
