/*
 * cmd_search.c - `medembed search`: query an index with text (-q, or -i for
 * one query per line / JSONL record) or with precomputed vectors
 * (--query-vectors), and print one JSON line per hit:
 *   {"query_id", "id", "score", "chunk": {"index", "start", "end"}, "rank"}
 * chunk is the best chunk of the document and its token span [start, end)
 * (null for a hit found by keywords only). Hybrid hits add
 * "dense": {"rank", "score"} and "bm25": {"rank", "score"} (null when the
 * document was not among that leg's candidates). With --rerank CE the top
 * --rerank-top hits are scored by the cross-encoder on (query, document
 * text) and reordered: "score" and "rank" are then the cross-encoder's, and
 * "first_stage": {"rank", "score"} keeps the search's own.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "corpus.h"

enum {
    OPT_FILTER = CLI_OPT_LOCAL,
    OPT_EXACT,
    OPT_METADATA,
    OPT_QVEC,
    OPT_RESCORE,
    OPT_RERANK,
    OPT_RERANK_TOP,
};


static void search_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed search -m MODEL --index INDEX -q TEXT [options]\n"
            "       medembed search -m MODEL --index INDEX -i queries.jsonl [options]\n"
            "       medembed search --index INDEX --query-vectors Q.npy [options]\n"
            "\n"
            "Prints one JSON line per hit: {\"query_id\", \"id\", \"score\", \"chunk\":\n"
            "{\"index\", \"start\", \"end\"}, \"rank\"}; chunk is the document's best chunk\n"
            "(null for a keyword-only hit). Hybrid hits add \"dense\" and \"bm25\": {\"rank\",\n"
            "\"score\"} of each leg, or null where the leg did not return the document.\n"
            "\n"
            "  -m, --model DIR          the model the index was built with\n"
            "      --index INDEX        index file\n"
            "  -q, --query TEXT         one query\n"
            "  -i, --input FILE         queries: text lines, or JSONL (.jsonl) with _id/id + text\n"
            "      --text-field NAME    JSONL field with the query (default text)\n"
            "      --query-vectors F    float32 (N, D) .npy of query vectors (no model)\n"
            "  -k N                     hits per query (default 10)\n"
            CLI_MODE_USAGE
            "      --filter EXPR        metadata filter, e.g. 'year>=2015' (repeatable, ANDed);\n"
            "                           ops = != < <= > >=; applied during the search\n"
            "      --exact              exact search even if the index has HNSW\n"
            "      --ef-search N        HNSW beam width (default max(128, 2k))\n"
            "      --rescore N          int8 index: rescore N*k candidates (default 4)\n"
            "      --metadata           add each hit's \"metadata\"\n"
            "      --rerank CE          rerank the first --rerank-top hits with a cross-encoder\n"
            "                           (medembed rerank) on (query, document text): \"score\"\n"
            "                           and \"rank\" become its, \"first_stage\": {\"rank\",\n"
            "                           \"score\"} keeps the search's; -k N <= --rerank-top\n"
            "      --rerank-top N       hits the cross-encoder reads (default max(50, k))\n"
            "      --prompt TEXT        query prompt (\"\" = none; default: the model's \"query\"\n"
            "                           prompt, else its default prompt; MedEmbed: none)\n"
            "      --prompt-name NAME   a prompt from config_sentence_transformers.json\n"
            "      --threads N          threads (default: all CPUs)\n"
            "      --dtype f32|bf16|int8  encoder compute precision\n");
}

typedef struct search_args {
    cli_common co; /* -m, -i, -k, --index, --threads, --dtype, --prompt, ... */
    const char *query, *qvec, *rerank;
    long rescore, rerank_top;
    int exact, metadata;
    const char **filters;
    int n_filters;
} search_args;

static int parse(int argc, char **argv, search_args *a)
{
    static const struct option opts[] = {
        CLI_OPTION_MODEL,
        CLI_OPTION_INDEX,
        {"query", required_argument, 0, 'q'},
        CLI_OPTION_INPUT,
        {"filter", required_argument, 0, OPT_FILTER},
        {"exact", no_argument, 0, OPT_EXACT},
        CLI_OPTION_EF_SEARCH,
        {"rescore", required_argument, 0, OPT_RESCORE},
        CLI_OPTION_THREADS,
        CLI_OPTION_PROMPT,
        CLI_OPTION_PROMPT_NAME,
        {"metadata", no_argument, 0, OPT_METADATA},
        {"query-vectors", required_argument, 0, OPT_QVEC},
        {"rerank", required_argument, 0, OPT_RERANK},
        {"rerank-top", required_argument, 0, OPT_RERANK_TOP},
        CLI_OPTION_TEXT_FIELD,
        CLI_OPTION_DTYPE,
        CLI_OPTION_MODE,
        CLI_OPTION_ALPHA,
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    memset(a, 0, sizeof *a);
    cli_common_init(&a->co, "search", search_usage);
    a->co.k = 10;
    a->filters = calloc((size_t)argc, sizeof *a->filters);
    int c, rc;
    while ((c = getopt_long(argc, argv, ":m:q:i:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            a->query = optarg;
            break;
        case OPT_FILTER:
            a->filters[a->n_filters++] = optarg;
            break;
        case OPT_EXACT:
            a->exact = 1;
            break;
        case OPT_RESCORE:
            if (cli_parse_int("--rescore", optarg, 1, 100, &a->rescore))
                return 2;
            break;
        case OPT_METADATA:
            a->metadata = 1;
            break;
        case OPT_QVEC:
            a->qvec = optarg;
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
    if (cli_common_end(&a->co, argc, argv, "quote the query: -q \"...\""))
        return 2;
    if (!a->co.index) {
        cli_error("no index given: pass --index INDEX");
        return 2;
    }
    if ((a->query != NULL) + (a->co.input != NULL) + (a->qvec != NULL) != 1) {
        cli_error("give exactly one of -q TEXT, -i FILE or --query-vectors FILE");
        return 2;
    }
    if (a->co.alpha >= 0 && a->co.mode != MEDEMBED_SEARCH_HYBRID) {
        cli_error("--alpha applies to --mode hybrid");
        return 2;
    }
    if (a->qvec && a->co.mode != MEDEMBED_SEARCH_DENSE) {
        cli_error("--query-vectors has no words for --mode bm25 or hybrid: use -q or -i");
        return 2;
    }
    if (cli_rerank_top(a->rerank, a->co.k, &a->rerank_top))
        return 2;
    if (a->rerank && a->qvec) {
        cli_error("--rerank needs the query's words: use -q or -i, not --query-vectors");
        return 2;
    }
    if (!a->qvec && !a->co.model && a->co.mode != MEDEMBED_SEARCH_BM25) {
        cli_error("no model given: pass -m MODEL_DIR (the one the index was built with)");
        return 2;
    }
    return 0;
}

static void print_leg(const char *name, int32_t rank, float score)
{
    printf(", \"%s\": ", name);
    if (rank > 0)
        printf("{\"rank\": %d, \"score\": %.9g}", rank, (double)score);
    else
        fputs("null", stdout);
}

/* Prints the hits of one query; query_id is JSON text. Reranked hits
 * (medembed_hits_rerank) carry the cross-encoder's score and keep the
 * search's rank and score as "first_stage". */
static void print_hits(const medembed_hits *h, const char *query_id, int metadata, int hybrid)
{
    int32_t n = medembed_hits_count(h);
    for (int32_t i = 0; i < n; i++) {
        int32_t r = i, first_rank = 0;
        float first_score = 0;
        int reranked = medembed_hits_first_stage(h, i, &first_rank, &first_score);
        int32_t s = 0, e = 0;
        int32_t c = medembed_hits_chunk(h, i, &s, &e);
        const char *id = medembed_hits_id(h, i);
        fputs("{\"query_id\": ", stdout);
        fputs(query_id, stdout);
        fputs(", \"id\": ", stdout);
        cli_json_string(stdout, id, strlen(id));
        printf(", \"score\": %.9g, \"chunk\": ", (double)medembed_hits_score(h, i));
        if (c >= 0)
            printf("{\"index\": %d, \"start\": %d, \"end\": %d}", c, s, e);
        else
            fputs("null", stdout);
        printf(", \"rank\": %d", r + 1);
        if (reranked)
            printf(", \"first_stage\": {\"rank\": %d, \"score\": %.9g}", first_rank,
                   (double)first_score);
        if (hybrid) {
            int32_t dr = 0, br = 0;
            float ds = 0, bs = 0;
            medembed_hits_components(h, i, &dr, &ds, &br, &bs);
            print_leg("dense", dr, ds);
            print_leg("bm25", br, bs);
        }
        if (metadata) {
            fputs(", \"metadata\": ", stdout);
            fputs(medembed_hits_metadata(h, i), stdout);
        }
        fputs("}\n", stdout);
    }
}

/* The reranking stage: a cross-encoder ctx and the hits it prints (-k);
 * the search returns the --rerank-top it reads. */
typedef struct rerank_stage {
    medembed_ctx *ctx;
    int32_t k;
} rerank_stage;

static int run_one(medembed_index *ix, const float *q, medembed_search_opts *so,
                   const char *text, const char *qid, int metadata, const rerank_stage *rs)
{
    so->text = text;
    char err[1024];
    medembed_hits *h = NULL;
    int rc = medembed_index_search(ix, q, so, &h, err, sizeof err);
    if (rc != MEDEMBED_OK) {
        cli_error("%s", err);
        return rc == MEDEMBED_ERR_ARG ? 2 : 1;
    }
    int hybrid = so->mode == MEDEMBED_SEARCH_HYBRID;
    if (rs && medembed_hits_rerank(h, ix, rs->ctx, text, rs->k, 0, err, sizeof err) !=
                  MEDEMBED_OK) {
        cli_error("--rerank: %s", err);
        rc = 1;
    } else {
        print_hits(h, qid, metadata, hybrid);
    }
    medembed_hits_free(h);
    return rc;
}

int cmd_search(int argc, char **argv)
{
    search_args a;
    int prc = parse(argc, argv, &a);
    if (prc) {
        free(a.filters);
        return prc < 0 ? 0 : prc;
    }
    char err[1024];
    medembed_index *ix = NULL;
    medembed_model *m = NULL;
    medembed_ctx *ctx = NULL;
    npy_matrix qv = {0};
    int rc = 0;
    if (medembed_index_open(a.co.index, MEDEMBED_INDEX_READONLY, &ix, err, sizeof err) !=
        MEDEMBED_OK) {
        cli_error("%s", err);
        free(a.filters);
        return 1;
    }
    medembed_model *ce = NULL;
    rerank_stage rstage = {0}, *rs = NULL;
    if (a.rerank) {
        if (cli_load_reranker(a.rerank, a.co.dtype, a.co.threads, &ce, &rstage.ctx)) {
            medembed_index_free(ix);
            free(a.filters);
            return 1;
        }
        rstage.k = (int32_t)a.co.k;
        rs = &rstage;
    }
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = (int32_t)(rs ? a.rerank_top : a.co.k);
    so.exact = a.exact;
    so.ef_search = (int32_t)a.co.ef_search;
    so.rescore = (int32_t)a.rescore;
    so.filters = a.filters;
    so.n_filters = a.n_filters;
    so.n_threads = (int32_t)a.co.threads;
    so.with_metadata = a.metadata;
    so.mode = a.co.mode;
    so.alpha = (float)a.co.alpha;
    int32_t dim = medembed_index_dim(ix);
    if (a.qvec) {
        rc = npy_read(a.qvec, &qv);
        if (!rc && qv.cols != dim) {
            cli_error("%s: query vectors have %d columns, the index dim is %d", a.qvec, qv.cols,
                      dim);
            rc = 1;
        }
        for (int64_t r = 0; !rc && r < qv.rows; r++) {
            char qid[32];
            snprintf(qid, sizeof qid, "%lld", (long long)r);
            rc = run_one(ix, qv.data + (size_t)r * (size_t)dim, &so, NULL, qid, a.metadata, rs);
        }
        goto out;
    }
    int dense = a.co.mode != MEDEMBED_SEARCH_BM25;
    medembed_embed_opts eo;
    float *q = NULL;
    if (!dense && a.query) {
        rc = run_one(ix, NULL, &so, a.query, "0", a.metadata, rs);
        goto out;
    }
    if (!dense)
        goto queries;
    if (cli_load_embedder(a.co.model, a.co.dtype, 0, &m)) {
        rc = 1;
        goto out;
    }
    if (medembed_index_check_model(ix, m, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        rc = 1;
        goto out;
    }
    if (medembed_ctx_create(m, (int32_t)a.co.threads, &ctx) != MEDEMBED_OK) {
        cli_error("cannot create a context (out of memory?)");
        rc = 1;
        goto out;
    }
    if (cli_embed_opts(m, a.co.prompt, a.co.prompt_name, MEDEMBED_ROLE_QUERY, &eo)) {
        rc = 2;
        goto out;
    }
    q = malloc(sizeof *q * (size_t)dim);
    if (!q) {
        rc = 1;
        goto out;
    }
    if (a.query) {
        const char *t = a.query;
        if (medembed_ctx_embed(ctx, &t, NULL, 1, &eo, q, NULL) != MEDEMBED_OK) {
            cli_error("query: %s", medembed_ctx_last_error(ctx));
            rc = 1;
        } else {
            rc = run_one(ix, q, &so, a.query, "0", a.metadata, rs);
        }
        free(q);
        goto out;
    }
queries:
    cli_input in;
    if (cli_input_open(&in, a.co.input, -1, a.co.text_field, 0)) {
        free(q);
        rc = 1;
        goto out;
    }
    cli_record r;
    long n = 0;
    while (!rc) {
        int got = cli_input_next(&in, &r);
        if (got <= 0) {
            rc = got < 0;
            break;
        }
        const char *t = r.text;
        if (dense && medembed_ctx_embed(ctx, &t, &r.len, 1, &eo, q, NULL) != MEDEMBED_OK) {
            cli_error("%s: line %ld: %s", in.name, r.line, medembed_ctx_last_error(ctx));
            rc = 1;
        } else if (strlen(t) != r.len) {
            cli_error("%s: line %ld: the query holds a NUL byte", in.name, r.line);
            rc = 1;
        } else {
            char qid[32];
            snprintf(qid, sizeof qid, "%ld", n);
            rc = run_one(ix, dense ? q : NULL, &so, t, r.id_json ? r.id_json : qid, a.metadata,
                         rs);
        }
        n++;
        cli_record_free(&r);
    }
    cli_input_close(&in);
    free(q);
out:
    if (fflush(stdout) != 0) {
        cli_error("write failed");
        rc = 1;
    }
    npy_free(&qv);
    medembed_ctx_free(ctx);
    medembed_model_free(m);
    medembed_ctx_free(rstage.ctx);
    medembed_model_free(ce);
    medembed_index_free(ix);
    free(a.filters);
    return rc;
}
