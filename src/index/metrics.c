/*
 * metrics.c - retrieval metrics for one query, with the definitions of
 * trec_eval as wrapped by pytrec_eval and used by MTEB / BEIR:
 * ndcg_cut.k, map_cut.k, recip_rank (cut at k, as MTEB's MRR@k),
 * recall.k and P.k.
 *
 * Ranking follows trec_eval (form_res_rels.c, comp_sim_docno): the run is
 * re-sorted by score descending and ties are broken by doc id in
 * *descending* strcmp order; the rank column of a run file is ignored.
 * A document is relevant when its qrels grade is >= 1 (trec_eval's default
 * relevance level); nDCG uses the grade itself as the gain with a log2(rank
 * + 1) discount, and the ideal DCG is taken over all judged grades.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medembed.h"

typedef struct run_ent {
    const char *id;
    float score;
} run_ent;

typedef struct qrel_ent {
    const char *id;
    int32_t rel;
} qrel_ent;

static int cmp_run(const void *a, const void *b)
{
    const run_ent *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return strcmp(y->id, x->id);
}

static int cmp_qrel(const void *a, const void *b)
{
    return strcmp(((const qrel_ent *)a)->id, ((const qrel_ent *)b)->id);
}

static int cmp_int_desc(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x > y ? -1 : x < y;
}

int medembed_metrics_query(const char *const *run_ids, const float *run_scores, int32_t n_run,
                           const char *const *qrel_ids, const int32_t *qrel_rels, int32_t n_qrels,
                           int32_t k, medembed_metrics *out)
{
    if (!out || k < 1 || n_run < 0 || n_qrels < 0 || (n_run > 0 && (!run_ids || !run_scores)) ||
        (n_qrels > 0 && (!qrel_ids || !qrel_rels)))
        return MEDEMBED_ERR_ARG;
    for (int32_t i = 0; i < n_run; i++)
        if (!run_ids[i] || isnan(run_scores[i]))
            return MEDEMBED_ERR_ARG;
    for (int32_t i = 0; i < n_qrels; i++)
        if (!qrel_ids[i])
            return MEDEMBED_ERR_ARG;
    run_ent *r = malloc(sizeof *r * (size_t)(n_run ? n_run : 1));
    qrel_ent *q = malloc(sizeof *q * (size_t)(n_qrels ? n_qrels : 1));
    int32_t *ideal = malloc(sizeof *ideal * (size_t)(n_qrels ? n_qrels : 1));
    if (!r || !q || !ideal) {
        free(r);
        free(q);
        free(ideal);
        return MEDEMBED_ERR_NOMEM;
    }
    int32_t num_rel = 0, n_ideal = 0;
    for (int32_t i = 0; i < n_qrels; i++) {
        q[i].id = qrel_ids[i];
        q[i].rel = qrel_rels[i];
        if (qrel_rels[i] >= 1)
            num_rel++;
        if (qrel_rels[i] > 0)
            ideal[n_ideal++] = qrel_rels[i];
    }
    qsort(q, (size_t)n_qrels, sizeof *q, cmp_qrel);
    for (int32_t i = 0; i < n_run; i++) {
        r[i].id = run_ids[i];
        r[i].score = run_scores[i];
    }
    qsort(r, (size_t)n_run, sizeof *r, cmp_run);
    qsort(ideal, (size_t)n_ideal, sizeof *ideal, cmp_int_desc);

    double dcg = 0, idcg = 0, ap = 0, rr = 0;
    int32_t hits = 0;
    int32_t depth = n_run < k ? n_run : k;
    for (int32_t i = 0; i < depth; i++) {
        qrel_ent key = {r[i].id, 0};
        const qrel_ent *f = bsearch(&key, q, (size_t)n_qrels, sizeof *q, cmp_qrel);
        int32_t rel = f ? f->rel : 0;
        if (rel > 0)
            dcg += (double)rel / log2((double)i + 2.0);
        if (rel >= 1) {
            hits++;
            ap += (double)hits / (double)(i + 1);
            if (rr == 0)
                rr = 1.0 / (double)(i + 1);
        }
    }
    for (int32_t i = 0; i < n_ideal && i < k; i++)
        idcg += (double)ideal[i] / log2((double)i + 2.0);
    out->ndcg = idcg > 0 ? dcg / idcg : 0;
    out->map = num_rel > 0 ? ap / num_rel : 0;
    out->mrr = rr;
    out->recall = num_rel > 0 ? (double)hits / num_rel : 0;
    out->precision = (double)hits / k;
    free(r);
    free(q);
    free(ideal);
    return MEDEMBED_OK;
}
