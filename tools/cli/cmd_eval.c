/*
 * cmd_eval.c - `medembed eval`: retrieval evaluation on a BEIR-layout
 * folder, the way MTEB scores retrieval tasks.
 *
 * The corpus is embedded into an in-memory index (no chunking unless asked:
 * documents are truncated to the model's limit, as MTEB does), every query
 * of the qrels split is embedded (with the query prompt, if any) and
 * searched exactly for the top -k documents, and the metrics are those of
 * pytrec_eval (medembed_metrics_query) averaged over the queries of the
 * qrels that appear in queries.jsonl; a query without relevant documents
 * counts as 0, as in pytrec_eval / MTEB. --mode bm25|hybrid searches the
 * index's keyword leg too (docs/SEARCH.md), and the time per query (query
 * embedding + search) is reported for comparing modes. --rerank CE reorders
 * each query's first --rerank-top hits with a cross-encoder before scoring.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "corpus.h"

enum {
    OPT_BEIR = CLI_OPT_LOCAL,
    OPT_SPLIT,
    OPT_JSON,
    OPT_RUN,
    OPT_DOC_PROMPT,
    OPT_DOC_PROMPT_NAME,
    OPT_RERANK,
    OPT_RERANK_TOP,
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void eval_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed eval -m MODEL --beir DIR [--split test] [-k 100] [options]\n"
            "\n"
            "Embeds DIR/corpus.jsonl and DIR/queries.jsonl, searches the top k documents per\n"
            "query of DIR/qrels/SPLIT.tsv and prints nDCG@10, MAP@10, MRR@10, Recall@10,\n"
            "Recall@100 and P@10 with pytrec_eval's definitions (as MTEB reports them).\n"
            "\n"
            "  -m, --model DIR          model folder\n"
            "      --beir DIR           BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv\n"
            "      --split NAME         qrels split (default test)\n"
            "  -k N                     documents retrieved per query (default 100)\n"
            CLI_MODE_USAGE
            "      --json               print {\"ndcg_at_10\", \"map_at_10\", \"mrr_at_10\",\n"
            "                           \"recall_at_10\", \"recall_at_100\", \"precision_at_10\",\n"
            "                           \"n_queries\", \"mode\", \"ms_per_query\"} instead of a table\n"
            "                           (ms_per_query: query embedding + search [+ rerank],\n"
            "                           mean; with --rerank also \"rerank\", \"rerank_top\")\n"
            "      --rerank CE          reorder each query's first --rerank-top hits with a\n"
            "                           cross-encoder (as search --rerank) before scoring\n"
            "      --rerank-top N       hits the cross-encoder reads (default max(50, k); >= k)\n"
            "      --run FILE           write the ranking as a TREC run file\n"
            "      --prompt TEXT        query prompt (\"\" = none; default: the model's \"query\"\n"
            "                           prompt, else its default prompt; MedEmbed: none)\n"
            "      --prompt-name NAME   a prompt from config_sentence_transformers.json\n"
            "      --doc-prompt TEXT    document prompt (default: \"document\", \"passage\" or\n"
            "                           \"corpus\", else the default prompt)\n"
            "      --doc-prompt-name NAME  a prompt from config_sentence_transformers.json\n"
            "      --chunk-tokens N     chunk documents (default: truncate, as MTEB)\n"
            "      --overlap M          chunk overlap\n"
            "      --quantize int8      int8 vectors with f32 rescoring\n"
            "      --hnsw-m N           approximate search with HNSW (default exact)\n"
            "      --ef-search N        HNSW beam width\n"
            "      --batch-size N       documents per batch (default 64)\n"
            "      --threads N          threads (default: all CPUs)\n"
            "      --dtype f32|bf16|int8  encoder compute precision\n"
            "      --skip-bad           skip malformed corpus/query lines, and count them\n"
            CLI_HELP_PROGRESS);
}

typedef struct eval_args {
    cli_common co; /* -m, -k, chunking, --quantize, --hnsw-m, --prompt (queries), ... */
    const char *beir, *split, *run, *doc_prompt, *doc_prompt_name, *rerank;
    long rerank_top;
    int json;
} eval_args;

static int parse(int argc, char **argv, eval_args *a)
{
    static const struct option opts[] = {
        CLI_OPTION_MODEL,
        {"beir", required_argument, 0, OPT_BEIR},
        {"split", required_argument, 0, OPT_SPLIT},
        {"json", no_argument, 0, OPT_JSON},
        {"run", required_argument, 0, OPT_RUN},
        CLI_OPTION_PROMPT,
        CLI_OPTION_PROMPT_NAME,
        {"doc-prompt", required_argument, 0, OPT_DOC_PROMPT},
        {"doc-prompt-name", required_argument, 0, OPT_DOC_PROMPT_NAME},
        {"rerank", required_argument, 0, OPT_RERANK},
        {"rerank-top", required_argument, 0, OPT_RERANK_TOP},
        CLI_OPTION_CHUNK_TOKENS,
        CLI_OPTION_OVERLAP,
        CLI_OPTION_QUANTIZE,
        CLI_OPTION_HNSW_M,
        CLI_OPTION_EF_SEARCH,
        CLI_OPTION_BATCH_SIZE,
        CLI_OPTION_THREADS,
        CLI_OPTION_DTYPE,
        CLI_OPTION_SKIP_BAD,
        CLI_OPTION_PROGRESS,
        CLI_OPTION_QUIET,
        CLI_OPTION_MODE,
        CLI_OPTION_ALPHA,
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    memset(a, 0, sizeof *a);
    cli_common_init(&a->co, "eval", eval_usage);
    a->split = "test";
    a->co.k = 100;
    a->co.batch = 64;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":m:k:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BEIR:
            a->beir = optarg;
            break;
        case OPT_SPLIT:
            a->split = optarg;
            break;
        case OPT_JSON:
            a->json = 1;
            break;
        case OPT_RUN:
            a->run = optarg;
            break;
        case OPT_DOC_PROMPT:
            a->doc_prompt = optarg;
            break;
        case OPT_DOC_PROMPT_NAME:
            a->doc_prompt_name = optarg;
            break;
        case OPT_RERANK:
            a->rerank = optarg;
            break;
        case OPT_RERANK_TOP:
            if (cli_parse_int("--rerank-top", optarg, 1, 10000, &a->rerank_top))
                return 2;
            break;
        default:
            if ((rc = cli_common_opt(&a->co, c, optarg, argv)) != 0)
                return rc; /* -1: --help */
        }
    }
    if (cli_common_end(&a->co, argc, argv, NULL))
        return 2;
    if (!a->beir) {
        cli_error("no dataset given: pass --beir DIR");
        return 2;
    }
    if (!a->co.model) {
        cli_error("no model given: pass -m MODEL_DIR");
        return 2;
    }
    if (a->co.alpha >= 0 && a->co.mode != MEDEMBED_SEARCH_HYBRID) {
        cli_error("--alpha applies to --mode hybrid");
        return 2;
    }
    if (cli_rerank_top(a->rerank, a->co.k, &a->rerank_top))
        return 2;
    if (a->co.overlap >= 0 && !a->co.chunk) {
        cli_error("--overlap needs --chunk-tokens");
        return 2;
    }
    return 0;
}

static int need_file(const char *path, const char *what)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        cli_error("%s: missing %s", path, what);
        return 1;
    }
    return 0;
}

typedef struct totals {
    double ndcg10, map10, mrr10, r10, r100, p10;
    long n;
} totals;

/* Scores one query's hits (as medembed_hits_rerank left them, if
 * reranked) against its judgments and writes its run lines. */
static int score_query(const medembed_hits *h, const struct qrels_query *qq, totals *t, FILE *run)
{
    int32_t n = medembed_hits_count(h);
    const char **ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    float *sc = malloc(sizeof *sc * (size_t)(n ? n : 1));
    if (!ids || !sc) {
        free(ids);
        free(sc);
        return 1;
    }
    for (int32_t i = 0; i < n; i++) {
        ids[i] = medembed_hits_id(h, i);
        sc[i] = medembed_hits_score(h, i);
        if (run)
            fprintf(run, "%s Q0 %s %d %.7g medembed\n", qq->qid, ids[i], i + 1, (double)sc[i]);
    }
    medembed_metrics m10, m100;
    int rc = medembed_metrics_query(ids, sc, n, (const char *const *)qq->doc, qq->rel, qq->n, 10,
                                    &m10) != MEDEMBED_OK ||
             medembed_metrics_query(ids, sc, n, (const char *const *)qq->doc, qq->rel, qq->n, 100,
                                    &m100) != MEDEMBED_OK;
    if (!rc) {
        t->ndcg10 += m10.ndcg;
        t->map10 += m10.map;
        t->mrr10 += m10.mrr;
        t->r10 += m10.recall;
        t->p10 += m10.precision;
        t->r100 += m100.recall;
        t->n++;
    }
    free(ids);
    free(sc);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int prc = parse(argc, argv, &a);
    if (prc)
        return prc < 0 ? 0 : prc;
    char corpus_p[4096], queries_p[4096], qrels_p[4096];
    snprintf(corpus_p, sizeof corpus_p, "%s/corpus.jsonl", a.beir);
    snprintf(queries_p, sizeof queries_p, "%s/queries.jsonl", a.beir);
    snprintf(qrels_p, sizeof qrels_p, "%s/qrels/%s.tsv", a.beir, a.split);
    if (need_file(corpus_p, "corpus file (BEIR layout: corpus.jsonl)") ||
        need_file(queries_p, "queries file (BEIR layout: queries.jsonl)") ||
        need_file(qrels_p, "qrels file (BEIR layout: qrels/SPLIT.tsv; see --split)"))
        return 1;
    qrels qr;
    if (qrels_load(qrels_p, &qr))
        return 1;
    medembed_model *m = NULL, *ce = NULL;
    medembed_ctx *ctx = NULL, *ce_ctx = NULL;
    medembed_index *ix = NULL;
    FILE *run = NULL;
    int rc = 0;
    char err[1024];
    if (cli_load_embedder(a.co.model, a.co.dtype, 0, &m)) {
        qrels_free(&qr);
        return 1;
    }
    if (a.rerank && cli_load_reranker(a.rerank, a.co.dtype, a.co.threads, &ce, &ce_ctx)) {
        rc = 1;
        goto out;
    }
    medembed_embed_opts qeo;
    if (cli_embed_opts(m, a.co.prompt, a.co.prompt_name, MEDEMBED_ROLE_QUERY, &qeo)) {
        rc = 2;
        goto out;
    }
    medembed_embed_opts deo;
    if (cli_embed_opts(m, a.doc_prompt, a.doc_prompt_name, MEDEMBED_ROLE_DOCUMENT, &deo)) {
        rc = 2;
        goto out;
    }
    if (medembed_ctx_create(m, (int32_t)a.co.threads, &ctx) != MEDEMBED_OK) {
        cli_error("cannot create a context (out of memory?)");
        rc = 1;
        goto out;
    }
    medembed_index_config cfg;
    medembed_index_config_init(&cfg);
    cfg.vec_dtype = a.co.int8 ? MEDEMBED_VEC_INT8 : MEDEMBED_VEC_F32;
    cfg.chunk_tokens = (int32_t)a.co.chunk;
    cfg.overlap = (int32_t)a.co.overlap;
    cfg.hnsw_m = (int32_t)a.co.hnsw_m;
    if (medembed_index_create(":memory:", m, &cfg, &ix, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        rc = 1;
        goto out;
    }
    if (a.run) {
        run = fopen(a.run, "w");
        if (!run) {
            cli_error("%s: cannot open the run file: %s", a.run, strerror(errno));
            rc = 1;
            goto out;
        }
    }
    corpus_reader cr;
    if (corpus_open(&cr, corpus_p, NULL, a.co.skip_bad)) {
        rc = 1;
        goto out;
    }
    cli_progress prog;
    cli_progress_begin(&prog, a.co.progress, "eval corpus", CLI_TOTAL_BYTES,
                       cli_progress_file_size(cr.f));
    prog.no_tokens = 1;
    ingest_opts io = {(int32_t)a.co.batch, a.co.skip_bad, &deo, 0, &prog, NULL};
    int64_t added = 0, skipped = 0;
    rc = ingest_corpus(ix, ctx, &cr, &io, &added, &skipped);
    corpus_close(&cr);
    if (rc)
        goto out;
    cli_progress_end(&prog, 0);
    cli_progress_begin(&prog, a.co.progress, "eval queries", CLI_TOTAL_ITEMS, qr.n_q);
    /* Queries: embed each one in the qrels (with the prompt) and search. */
    corpus_reader qrd;
    if (corpus_open(&qrd, queries_p, "text", a.co.skip_bad)) {
        rc = 1;
        goto out;
    }
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = (int32_t)(a.rerank ? a.rerank_top : a.co.k);
    so.ef_search = (int32_t)a.co.ef_search;
    so.with_metadata = 0;
    so.n_threads = (int32_t)a.co.threads;
    so.mode = a.co.mode;
    so.alpha = (float)a.co.alpha;
    int dense = so.mode != MEDEMBED_SEARCH_BM25;
    double secs = 0;
    float *q = malloc(sizeof *q * (size_t)medembed_index_dim(ix));
    uint8_t *done = calloc((size_t)qr.n_q, 1);
    totals t = {0};
    corpus_doc d;
    while (!rc && q && done) {
        int got = corpus_next(&qrd, &d);
        if (got <= 0) {
            rc = got < 0;
            break;
        }
        int64_t *qi = strmap_get(&qr.by_query, d.id);
        if (qi && !done[*qi]) {
            done[*qi] = 1;
            const char *text = d.text;
            medembed_hits *h = NULL;
            medembed_text_info ti = {0};
            so.text = d.text;
            double t0 = now_s();
            if (dense &&
                medembed_ctx_embed(ctx, &text, &d.len, 1, &qeo, q, &ti) != MEDEMBED_OK) {
                cli_error("%s: line %ld: %s", queries_p, d.line, medembed_ctx_last_error(ctx));
                rc = 1;
            } else if (medembed_index_search(ix, dense ? q : NULL, &so, &h, err, sizeof err) !=
                       MEDEMBED_OK) {
                cli_error("%s", err);
                rc = 1;
            } else if (ce && medembed_hits_rerank(h, ix, ce_ctx, d.text, (int32_t)a.co.k, 0, err,
                                                  sizeof err) != MEDEMBED_OK) {
                cli_error("--rerank: %s", err);
                rc = 1;
            } else if ((secs += now_s() - t0) < 0) {
                rc = 1;
            } else if (score_query(h, &qr.q[*qi], &t, run)) {
                cli_error("out of memory scoring query \"%s\"", d.id);
                rc = 1;
            }
            medembed_hits_free(h);
            cli_progress_add(&prog, 1, ti.n_tokens, ti.truncated, -1);
        }
        corpus_doc_free(&d);
    }
    if (!rc)
        cli_progress_end(&prog, 0);
    long missing = 0;
    for (int64_t i = 0; done && i < qr.n_q; i++)
        missing += !done[i];
    free(q);
    free(done);
    corpus_close(&qrd);
    if (rc)
        goto out;
    if (missing)
        cli_warn("%ld query id(s) of %s are not in %s; they are not scored", missing, qrels_p,
                 queries_p);
    if (t.n == 0) {
        cli_error("no query of %s was found in %s", qrels_p, queries_p);
        rc = 1;
        goto out;
    }
    double n = (double)t.n;
    char mode_name[32];
    snprintf(mode_name, sizeof mode_name, "%s",
             so.mode == MEDEMBED_SEARCH_DENSE ? "dense"
             : so.mode == MEDEMBED_SEARCH_BM25 ? "bm25"
             : a.co.alpha < 0                  ? "hybrid-rrf"
                                               : "hybrid-weighted");
    if (a.json) {
        printf("{\"ndcg_at_10\": %.5f, \"map_at_10\": %.5f, \"mrr_at_10\": %.5f, "
               "\"recall_at_10\": %.5f, \"recall_at_100\": %.5f, \"precision_at_10\": %.5f, "
               "\"n_queries\": %ld, \"mode\": \"%s\", \"ms_per_query\": %.3f",
               t.ndcg10 / n, t.map10 / n, t.mrr10 / n, t.r10 / n, t.r100 / n, t.p10 / n, t.n,
               mode_name, 1e3 * secs / n);
        if (ce) {
            fputs(", \"rerank\": ", stdout);
            cli_json_string(stdout, a.rerank, strlen(a.rerank));
            printf(", \"rerank_top\": %ld", a.rerank_top);
        }
        fputs("}\n", stdout);
    } else {
        printf("%-14s %s\n", "metric", "value");
        printf("%-14s %.5f\n", "nDCG@10", t.ndcg10 / n);
        printf("%-14s %.5f\n", "MAP@10", t.map10 / n);
        printf("%-14s %.5f\n", "MRR@10", t.mrr10 / n);
        printf("%-14s %.5f\n", "Recall@10", t.r10 / n);
        printf("%-14s %.5f\n", "Recall@100", t.r100 / n);
        printf("%-14s %.5f\n", "P@10", t.p10 / n);
        printf("%-14s %ld\n", "queries", t.n);
        printf("%-14s %s\n", "mode", mode_name);
        if (ce)
            printf("%-14s %s (top %ld)\n", "rerank", a.rerank, a.rerank_top);
        printf("%-14s %.3f\n", "ms/query", 1e3 * secs / n);
        printf("%-14s %lld (%lld chunks)\n", "documents", (long long)medembed_index_n_docs(ix),
               (long long)medembed_index_n_chunks(ix));
    }
    if (a.co.k < 100)
        cli_warn("-k %ld < 100: Recall@100 is computed over %ld retrieved documents", a.co.k,
                 a.co.k);
    if (skipped)
        cli_warn("%lld corpus line(s) skipped (--skip-bad)", (long long)skipped);
out:
    if (run && fclose(run) != 0) {
        cli_error("%s: write failed", a.run);
        rc = 1;
    }
    medembed_index_free(ix);
    medembed_ctx_free(ctx);
    medembed_model_free(m);
    medembed_ctx_free(ce_ctx);
    medembed_model_free(ce);
    qrels_free(&qr);
    return rc;
}
