/*
 * cmd_search.c - `medembed search`: query an index with text (-q, or -i for
 * one query per line / JSONL record) or with precomputed vectors
 * (--query-vectors), and print one JSON line per hit:
 *   {"query_id", "id", "score", "chunk": {"index", "start", "end"}, "rank"}
 * chunk is the best chunk of the document and its token span [start, end).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "corpus.h"

enum {
    OPT_INDEX = 256,
    OPT_FILTER,
    OPT_EXACT,
    OPT_EF,
    OPT_THREADS,
    OPT_PROMPT,
    OPT_PROMPT_NAME,
    OPT_METADATA,
    OPT_QVEC,
    OPT_TEXT_FIELD,
    OPT_DTYPE,
    OPT_BATCH,
    OPT_RESCORE,
};

static void search_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed search -m MODEL --index INDEX -q TEXT [options]\n"
            "       medembed search -m MODEL --index INDEX -i queries.jsonl [options]\n"
            "       medembed search --index INDEX --query-vectors Q.npy [options]\n"
            "\n"
            "Prints one JSON line per hit: {\"query_id\", \"id\", \"score\", \"chunk\":\n"
            "{\"index\", \"start\", \"end\"}, \"rank\"}; chunk is the document's best chunk.\n"
            "\n"
            "  -m, --model DIR          the model the index was built with\n"
            "      --index INDEX        index file\n"
            "  -q, --query TEXT         one query\n"
            "  -i, --input FILE         queries: text lines, or JSONL (.jsonl) with _id/id + text\n"
            "      --text-field NAME    JSONL field with the query (default text)\n"
            "      --query-vectors F    float32 (N, D) .npy of query vectors (no model)\n"
            "  -k N                     hits per query (default 10)\n"
            "      --filter EXPR        metadata filter, e.g. 'year>=2015' (repeatable, ANDed);\n"
            "                           ops = != < <= > >=; applied during the search\n"
            "      --exact              exact search even if the index has HNSW\n"
            "      --ef-search N        HNSW beam width (default max(128, 2k))\n"
            "      --rescore N          int8 index: rescore N*k candidates (default 4)\n"
            "      --metadata           add each hit's \"metadata\"\n"
            "      --prompt TEXT        query prefix (MedEmbed was trained with none)\n"
            "      --prompt-name NAME   a prompt from config_sentence_transformers.json\n"
            "      --threads N          threads (default: all CPUs)\n"
            "      --dtype f32|bf16|int8  encoder compute precision\n");
}

typedef struct search_args {
    const char *model, *index, *query, *input, *qvec, *prompt, *prompt_name, *text_field;
    long k, ef, threads, rescore;
    int exact, metadata, dtype;
    const char **filters;
    int n_filters;
} search_args;

static int parse(int argc, char **argv, search_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"index", required_argument, 0, OPT_INDEX},
        {"query", required_argument, 0, 'q'},
        {"input", required_argument, 0, 'i'},
        {"filter", required_argument, 0, OPT_FILTER},
        {"exact", no_argument, 0, OPT_EXACT},
        {"ef-search", required_argument, 0, OPT_EF},
        {"rescore", required_argument, 0, OPT_RESCORE},
        {"threads", required_argument, 0, OPT_THREADS},
        {"prompt", required_argument, 0, OPT_PROMPT},
        {"prompt-name", required_argument, 0, OPT_PROMPT_NAME},
        {"metadata", no_argument, 0, OPT_METADATA},
        {"query-vectors", required_argument, 0, OPT_QVEC},
        {"text-field", required_argument, 0, OPT_TEXT_FIELD},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->k = 10;
    a->filters = calloc((size_t)argc, sizeof *a->filters);
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:q:i:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            a->model = optarg;
            break;
        case OPT_INDEX:
            a->index = optarg;
            break;
        case 'q':
            a->query = optarg;
            break;
        case 'i':
            a->input = optarg;
            break;
        case 'k':
            if (cli_parse_int("-k", optarg, 1, 10000, &a->k))
                return 2;
            break;
        case OPT_FILTER:
            a->filters[a->n_filters++] = optarg;
            break;
        case OPT_EXACT:
            a->exact = 1;
            break;
        case OPT_EF:
            if (cli_parse_int("--ef-search", optarg, 1, 1 << 20, &a->ef))
                return 2;
            break;
        case OPT_RESCORE:
            if (cli_parse_int("--rescore", optarg, 1, 100, &a->rescore))
                return 2;
            break;
        case OPT_THREADS:
            if (cli_parse_int("--threads", optarg, 1, 256, &a->threads))
                return 2;
            break;
        case OPT_PROMPT:
            a->prompt = optarg;
            break;
        case OPT_PROMPT_NAME:
            a->prompt_name = optarg;
            break;
        case OPT_METADATA:
            a->metadata = 1;
            break;
        case OPT_QVEC:
            a->qvec = optarg;
            break;
        case OPT_TEXT_FIELD:
            a->text_field = optarg;
            break;
        case OPT_DTYPE:
            a->dtype = cli_parse_dtype(optarg);
            if (a->dtype < 0)
                return 2;
            break;
        case 'h':
            search_usage(stdout);
            return -1;
        case ':':
            cli_error("option %s needs a value", argv[optind - 1]);
            return 2;
        default:
            cli_error("unknown option \"%s\" (see medembed search --help)", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        cli_error("unexpected argument \"%s\" (quote the query: -q \"...\")", argv[optind]);
        return 2;
    }
    if (!a->index) {
        cli_error("no index given: pass --index INDEX");
        return 2;
    }
    if ((a->query != NULL) + (a->input != NULL) + (a->qvec != NULL) != 1) {
        cli_error("give exactly one of -q TEXT, -i FILE or --query-vectors FILE");
        return 2;
    }
    if (!a->qvec && !a->model) {
        cli_error("no model given: pass -m MODEL_DIR (the one the index was built with)");
        return 2;
    }
    return 0;
}

/* Prints the hits of one query; query_id is JSON text. */
static void print_hits(const medembed_hits *h, const char *query_id, int metadata)
{
    for (int32_t i = 0; i < medembed_hits_count(h); i++) {
        int32_t s = 0, e = 0;
        int32_t c = medembed_hits_chunk(h, i, &s, &e);
        const char *id = medembed_hits_id(h, i);
        fputs("{\"query_id\": ", stdout);
        fputs(query_id, stdout);
        fputs(", \"id\": ", stdout);
        cli_json_string(stdout, id, strlen(id));
        printf(", \"score\": %.9g, \"chunk\": {\"index\": %d, \"start\": %d, \"end\": %d}, "
               "\"rank\": %d",
               (double)medembed_hits_score(h, i), c, s, e, i + 1);
        if (metadata) {
            fputs(", \"metadata\": ", stdout);
            fputs(medembed_hits_metadata(h, i), stdout);
        }
        fputs("}\n", stdout);
    }
}

static int run_one(medembed_index *ix, const float *q, const medembed_search_opts *so,
                   const char *qid, int metadata)
{
    char err[1024];
    medembed_hits *h = NULL;
    int rc = medembed_index_search(ix, q, so, &h, err, sizeof err);
    if (rc != MEDEMBED_OK) {
        cli_error("%s", err);
        return rc == MEDEMBED_ERR_ARG ? 2 : 1;
    }
    print_hits(h, qid, metadata);
    medembed_hits_free(h);
    return 0;
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
    if (medembed_index_open(a.index, MEDEMBED_INDEX_READONLY, &ix, err, sizeof err) !=
        MEDEMBED_OK) {
        cli_error("%s", err);
        free(a.filters);
        return 1;
    }
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    so.k = (int32_t)a.k;
    so.exact = a.exact;
    so.ef_search = (int32_t)a.ef;
    so.rescore = (int32_t)a.rescore;
    so.filters = a.filters;
    so.n_filters = a.n_filters;
    so.n_threads = (int32_t)a.threads;
    so.with_metadata = a.metadata;
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
            rc = run_one(ix, qv.data + (size_t)r * (size_t)dim, &so, qid, a.metadata);
        }
        goto out;
    }
    if (cli_load_model(a.model, a.dtype, 0, &m)) {
        rc = 1;
        goto out;
    }
    if (medembed_index_check_model(ix, m, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        rc = 1;
        goto out;
    }
    if (medembed_ctx_create(m, (int32_t)a.threads, &ctx) != MEDEMBED_OK) {
        cli_error("cannot create a context (out of memory?)");
        rc = 1;
        goto out;
    }
    medembed_embed_opts eo;
    if (cli_embed_opts(m, a.prompt, a.prompt_name, MEDEMBED_ROLE_QUERY, &eo)) {
        rc = 2;
        goto out;
    }
    float *q = malloc(sizeof *q * (size_t)dim);
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
            rc = run_one(ix, q, &so, "0", a.metadata);
        }
        free(q);
        goto out;
    }
    cli_input in;
    if (cli_input_open(&in, a.input, -1, a.text_field, 0)) {
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
        if (medembed_ctx_embed(ctx, &t, &r.len, 1, &eo, q, NULL) != MEDEMBED_OK) {
            cli_error("%s: line %ld: %s", in.name, r.line, medembed_ctx_last_error(ctx));
            rc = 1;
        } else {
            char qid[32];
            snprintf(qid, sizeof qid, "%ld", n);
            rc = run_one(ix, q, &so, r.id_json ? r.id_json : qid, a.metadata);
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
    medembed_index_free(ix);
    free(a.filters);
    return rc;
}
