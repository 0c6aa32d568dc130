/*
 * cmd_rerank.c - `medembed rerank`: score candidate texts against one query
 * with a cross-encoder and print them best first, one JSON line each:
 *   {"index", "id" (when the input line has one), "score"}
 * index is the candidate's 0-based position in the input.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
    OPT_RAW = CLI_OPT_LOCAL,
    OPT_TOP,
    OPT_DIRECTION,
    OPT_NO_TRUNCATE,
};

static void rerank_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed rerank -m CROSS_ENCODER -q QUERY -i candidates.jsonl [options]\n"
            "\n"
            "Scores each candidate with a cross-encoder (a BertForSequenceClassification\n"
            "folder as sentence-transformers' CrossEncoder saves it) as the pair\n"
            "[CLS] QUERY [SEP] TEXT [SEP], and prints one JSON line per candidate, best\n"
            "first: {\"index\", \"id\", \"score\"}. index is the candidate's 0-based position\n"
            "in the input; id is its \"id\" (or \"_id\") when it has one. The score is the\n"
            "logit through the model's activation (the sigmoid unless config.json names\n"
            "another), as sentence-transformers' CrossEncoder.predict() returns it.\n"
            "\n"
            "  -m, --model DIR          the cross-encoder folder (or a downloaded repo id)\n"
            "  -q, --query TEXT         the query\n"
            "  -i, --input FILE         candidates, one JSON line each: {\"text\": ...,\n"
            "                           \"id\": ...} or a plain JSON string (\"-\" = stdin)\n"
            "      --text-field NAME    field with the candidate's text (default text)\n"
            "      --top N              print only the N best (default: all)\n"
            "      --raw-scores         print the logits, without the activation\n"
            "      --truncation-direction left|right\n"
            "                           a pair over the model's limit loses tokens from\n"
            "                           the longer of query and text first (Hugging Face's\n"
            "                           longest_first), at the end (right, default) or the\n"
            "                           start (left) of each\n"
            "      --no-truncate        a pair over the limit is an error instead\n"
            "      --threads N          threads (default: all CPUs)\n"
            "      --dtype f32|bf16|int8  encoder compute precision\n");
}

int cli_load_reranker(const char *arg, int32_t dtype, long threads, medembed_model **m,
                      medembed_ctx **ctx)
{
    *m = NULL;
    *ctx = NULL;
    if (cli_load_model(arg, dtype, 0, m))
        return 1;
    int32_t kind = medembed_model_kind(*m);
    if (kind != MEDEMBED_KIND_CROSS_ENCODER) {
        cli_error("%s is an %s, not a cross-encoder: reranking needs a "
                  "BertForSequenceClassification folder as sentence-transformers' "
                  "CrossEncoder saves it",
                  arg, medembed_model_kind_name(kind));
        medembed_model_free(*m);
        *m = NULL;
        return 1;
    }
    if (medembed_model_num_labels(*m) != 1) {
        cli_error("%s is a classifier with %d labels: reranking needs a "
                  "cross-encoder with one "
                  "output score (num_labels 1)",
                  arg, medembed_model_num_labels(*m));
        medembed_model_free(*m);
        *m = NULL;
        return 1;
    }
    if (medembed_ctx_create(*m, (int32_t)threads, ctx) != MEDEMBED_OK) {
        cli_error("cannot create a context (out of memory?)");
        medembed_model_free(*m);
        *m = NULL;
        return 1;
    }
    return 0;
}

typedef struct rerank_args {
    cli_common co; /* -m, -i, --text-field, --threads, --dtype */
    const char *query;
    long top;
    uint32_t flags;
} rerank_args;

static int parse(int argc, char **argv, rerank_args *a)
{
    static const struct option opts[] = {
        CLI_OPTION_MODEL,
        {"query", required_argument, 0, 'q'},
        CLI_OPTION_INPUT,
        CLI_OPTION_TEXT_FIELD,
        {"top", required_argument, 0, OPT_TOP},
        {"raw-scores", no_argument, 0, OPT_RAW},
        {"truncation-direction", required_argument, 0, OPT_DIRECTION},
        {"no-truncate", no_argument, 0, OPT_NO_TRUNCATE},
        CLI_OPTION_THREADS,
        CLI_OPTION_DTYPE,
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    memset(a, 0, sizeof *a);
    cli_common_init(&a->co, "rerank", rerank_usage);
    int c, rc;
    while ((c = getopt_long(argc, argv, ":m:q:i:h", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            a->query = optarg;
            break;
        case OPT_TOP:
            if (cli_parse_int("--top", optarg, 1, 1L << 30, &a->top))
                return 2;
            break;
        case OPT_RAW:
            a->flags |= MEDEMBED_F_RAW_SCORES;
            break;
        case OPT_NO_TRUNCATE:
            a->flags |= MEDEMBED_F_NO_TRUNCATE;
            break;
        case OPT_DIRECTION:
            if (strcmp(optarg, "left") == 0) {
                a->flags |= MEDEMBED_F_TRUNCATE_LEFT;
            } else if (strcmp(optarg, "right") == 0) {
                a->flags &= ~MEDEMBED_F_TRUNCATE_LEFT;
            } else {
                cli_error("--truncation-direction must be left or right, not \"%s\"", optarg);
                return 2;
            }
            break;
        default:
            if ((rc = cli_common_opt(&a->co, c, optarg, argv)) != 0)
                return rc; /* -1: --help */
        }
    }
    if (cli_common_end(&a->co, argc, argv, "quote the query: -q \"...\""))
        return 2;
    if (!a->co.model) {
        cli_error("no cross-encoder given: pass -m CROSS_ENCODER_DIR");
        return 2;
    }
    if (!a->query) {
        cli_error("no query given: pass -q QUERY");
        return 2;
    }
    if (!a->query[0]) {
        cli_error("the query is empty: pass the text to rank the candidates "
                  "against (-q)");
        return 2;
    }
    if (!a->co.input) {
        cli_error("no candidates given: pass -i candidates.jsonl (\"-\" = stdin)");
        return 2;
    }
    return 0;
}

int cmd_rerank(int argc, char **argv)
{
    rerank_args a;
    int prc = parse(argc, argv, &a);
    if (prc)
        return prc < 0 ? 0 : prc;
    cli_input in;
    if (cli_input_open(&in, a.co.input, 1, a.co.text_field, 0))
        return 1;
    cli_record *recs = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (n == cap) {
            size_t c2 = cap ? cap * 2 : 64;
            cli_record *p = realloc(recs, sizeof *p * c2);
            if (!p) {
                cli_error("out of memory reading candidates");
                rc = 1;
                break;
            }
            recs = p;
            cap = c2;
        }
        int got = cli_input_next(&in, &recs[n]);
        if (got <= 0) {
            rc = got < 0;
            break;
        }
        n++;
        if (n > INT32_MAX / 2) {
            cli_error("%s: too many candidates", in.name);
            rc = 1;
            break;
        }
    }
    const char *name = in.name;
    medembed_model *m = NULL;
    medembed_ctx *ctx = NULL;
    const char **texts = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t *order = NULL;
    if (!rc && n == 0) {
        cli_error("%s: no candidates (expected one JSON line per candidate)", name);
        rc = 1;
    }
    if (!rc)
        rc = cli_load_reranker(a.co.model, a.co.dtype, a.co.threads, &m, &ctx);
    if (!rc) {
        texts = malloc(sizeof *texts * n);
        lens = malloc(sizeof *lens * n);
        scores = malloc(sizeof *scores * n);
        order = malloc(sizeof *order * n);
        if (!texts || !lens || !scores || !order) {
            cli_error("out of memory for %zu candidates", n);
            rc = 1;
        }
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) {
            texts[i] = recs[i].text;
            lens[i] = recs[i].len;
        }
        if (medembed_ctx_rerank(ctx, a.query, (size_t)-1, texts, lens, (int32_t)n, a.flags,
                                scores) != MEDEMBED_OK) {
            const char *e = medembed_ctx_last_error(ctx);
            /* "text I: ..." names the candidate; give its input line too */
            long at = -1;
            if (strncmp(e, "text ", 5) == 0 || strncmp(e, "pair ", 5) == 0)
                at = strtol(e + 5, NULL, 10);
            if (at >= 0 && (size_t)at < n)
                cli_error("%s: line %ld: %s", name, recs[at].line, e);
            else
                cli_error("%s", e);
            rc = 1;
        }
    }
    if (!rc && medembed_rank_order(scores, (int32_t)n, order) != MEDEMBED_OK) {
        cli_error("out of memory");
        rc = 1;
    }
    if (!rc) {
        size_t top = a.top > 0 && (size_t)a.top < n ? (size_t)a.top : n;
        for (size_t r = 0; r < top; r++) {
            int32_t i = order[r];
            printf("{\"index\": %d", i);
            if (recs[i].id_json)
                printf(", \"id\": %s", recs[i].id_json);
            printf(", \"score\": %.9g}\n", (double)scores[i]);
        }
        if (fflush(stdout) != 0) {
            cli_error("write failed");
            rc = 1;
        }
    }
    cli_input_close(&in);
    for (size_t i = 0; i < n; i++)
        cli_record_free(&recs[i]);
    free(recs);
    free(texts);
    free(lens);
    free(scores);
    free(order);
    medembed_ctx_free(ctx);
    medembed_model_free(m);
    return rc;
}
