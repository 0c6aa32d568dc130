/*
 * cmd_index.c - `medembed index build|add|delete|info`.
 *
 * build/add stream the corpus in batches of --batch-size documents; each
 * batch is embedded and committed in one SQLite transaction, so a killed
 * run leaves every finished batch in the index and nothing half-written.
 * A build that fails with an error removes its file; delete is one
 * transaction for all its ids. Concurrent runs take turns on SQLite's write
 * lock (src/index/store.c).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "corpus.h"

/* ------------------------------------------------------------ ingest */

static int flush_batch(medembed_index *ix, medembed_ctx *ctx, medembed_index_doc *docs,
                       corpus_doc *cd, int32_t n, const ingest_opts *o, const char *name,
                       int64_t pos, int64_t *n_added)
{
    if (n == 0)
        return 0;
    char err[1024];
    int rc = medembed_index_add_docs(ix, ctx, docs, n, o->eo, err, sizeof err);
    if (rc != MEDEMBED_OK) {
        cli_error("%s: lines %ld-%ld: %s", name, cd[0].line, cd[n - 1].line, err);
        return 1;
    }
    *n_added += n;
    if (o->prog)
        cli_progress_add(o->prog, n, 0, 0, pos);
    return 0;
}

int ingest_corpus(medembed_index *ix, medembed_ctx *ctx, corpus_reader *r, const ingest_opts *o,
                  int64_t *n_added, int64_t *n_skipped)
{
    int32_t B = o->batch > 0 ? o->batch : 64;
    corpus_doc *cd = calloc((size_t)B, sizeof *cd);
    medembed_index_doc *docs = calloc((size_t)B, sizeof *docs);
    strmap seen = {0};
    int rc = 0;
    int32_t n = 0;
    *n_added = 0;
    *n_skipped = 0;
    if (!cd || !docs) {
        cli_error("out of memory for a batch of %d documents", B);
        rc = 1;
    }
    while (!rc) {
        int got = corpus_next(r, &cd[n]);
        if (got < 0) {
            rc = 1;
            break;
        }
        if (got == 0)
            break;
        int64_t first = 0;
        int put = strmap_put(&seen, cd[n].id, cd[n].line, &first);
        const char *dup = NULL;
        char why[64];
        if (put < 0) {
            cli_error("out of memory");
            rc = 1;
            corpus_doc_free(&cd[n]);
            break;
        }
        if (put == 0) {
            snprintf(why, sizeof why, "first seen on line %lld", (long long)first);
            dup = why;
        } else if (medembed_index_contains(ix, cd[n].id)) {
            if (o->resume) {
                /* committed by the run this one resumes (one transaction per batch) */
                if (o->n_present)
                    (*o->n_present)++;
                corpus_doc_free(&cd[n]);
                continue;
            }
            dup = "already in the index";
        }
        if (dup) {
            if (!o->skip_bad) {
                cli_error("%s: line %ld: duplicate id \"%s\" (%s)", r->name, cd[n].line,
                          cd[n].id, dup);
                rc = 1;
                corpus_doc_free(&cd[n]);
                break;
            }
            cli_warn("%s: line %ld: duplicate id \"%s\" (%s); skipped", r->name, cd[n].line,
                     cd[n].id, dup);
            (*n_skipped)++;
            corpus_doc_free(&cd[n]);
            continue;
        }
        docs[n].id = cd[n].id;
        docs[n].text = cd[n].text;
        docs[n].text_len = cd[n].len;
        docs[n].metadata = cd[n].metadata;
        n++;
        if (n == B) {
            rc = flush_batch(ix, ctx, docs, cd, n, o, r->name, (int64_t)ftello(r->f), n_added);
            for (int32_t i = 0; i < n; i++)
                corpus_doc_free(&cd[i]);
            n = 0;
        }
    }
    if (!rc)
        rc = flush_batch(ix, ctx, docs, cd, n, o, r->name, (int64_t)ftello(r->f), n_added);
    for (int32_t i = 0; i < n; i++)
        corpus_doc_free(&cd[i]);
    *n_skipped += r->n_bad;
    strmap_free(&seen);
    free(cd);
    free(docs);
    return rc;
}

/* Adds the rows of a .npy file as single-chunk documents; ids and metadata
 * come from the JSONL records of r when r is non-NULL, else row numbers.
 * The records are counted before anything is written: a count that differs
 * from the vectors' is refused and leaves the index as it was. */
static int ingest_vectors(medembed_index *ix, const npy_matrix *m, corpus_reader *r, int32_t B,
                          int64_t *n_added)
{
    *n_added = 0;
    int64_t n_rec = 0, cap = 0;
    corpus_doc *rec = NULL;
    int rc = 0;
    while (r && !rc) {
        if (n_rec == cap) {
            int64_t nc = cap ? cap * 2 : 1024;
            corpus_doc *p = realloc(rec, sizeof *p * (size_t)nc);
            if (!p) {
                cli_error("out of memory reading %s", r->name);
                rc = 1;
                break;
            }
            memset(p + cap, 0, sizeof *p * (size_t)(nc - cap));
            rec = p;
            cap = nc;
        }
        int got = corpus_next(r, &rec[n_rec]);
        if (got < 0)
            rc = 1;
        if (got <= 0)
            break;
        if (++n_rec > m->rows)
            break; /* one too many is enough to refuse */
    }
    if (!rc && r && n_rec != m->rows) {
        cli_error("%s has %s%lld records but the vectors file has %lld vectors: they must "
                  "match one to one; nothing was added",
                  r->name, n_rec > m->rows ? "more than " : "", (long long)(n_rec > m->rows
                  ? m->rows : n_rec), (long long)m->rows);
        rc = 1;
    }
    medembed_index_doc *docs = calloc((size_t)B, sizeof *docs);
    char(*num)[24] = calloc((size_t)B, sizeof *num);
    if (!rc && (!docs || !num)) {
        cli_error("out of memory for a batch of %d vectors", B);
        rc = 1;
    }
    for (int64_t row = 0; !rc && row < m->rows; row += B) {
        int32_t n = (int32_t)(m->rows - row < B ? m->rows - row : B);
        for (int32_t i = 0; i < n; i++) {
            if (r) {
                docs[i].id = rec[row + i].id;
                docs[i].metadata = rec[row + i].metadata;
            } else {
                snprintf(num[i], sizeof num[i], "%lld", (long long)(row + i));
                docs[i].id = num[i];
                docs[i].metadata = NULL;
            }
        }
        char err[1024];
        int arc = medembed_index_add_vectors(ix, docs, n, m->data + (size_t)row * (size_t)m->cols,
                                             err, sizeof err);
        if (arc != MEDEMBED_OK) {
            cli_error("vectors %lld-%lld: %s", (long long)row, (long long)(row + n - 1), err);
            rc = 1;
        } else {
            *n_added += n;
        }
    }
    for (int64_t i = 0; i < cap; i++) /* unused entries are zeros */
        corpus_doc_free(&rec[i]);
    free(rec);
    free(docs);
    free(num);
    return rc;
}

/* ------------------------------------------------------------- options */

enum {
    OPT_NO_CHUNK = CLI_OPT_LOCAL,
    OPT_HNSW,
    OPT_EFC,
    OPT_VECTORS,
    OPT_ID,
    OPT_RESUME,
};

typedef struct index_args {
    cli_common co; /* -m, -i, --index, --text-field, chunking, --quantize, ... */
    const char *output, *vectors;
    long efc;
    int no_chunk;
    int resume;
    const char *const *ids;
    int n_ids;
} index_args;

static void index_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed index build -m MODEL -i corpus.jsonl -o INDEX [options]\n"
            "       medembed index add   -m MODEL -i more.jsonl --index INDEX [options]\n"
            "       medembed index delete --index INDEX --id ID [--id ID ...]\n"
            "       medembed index info  --index INDEX\n"
            "       medembed index fts-rebuild --index INDEX -i corpus.jsonl\n"
            "\n"
            "Input is BEIR JSONL ({\"_id\", \"title\", \"text\", ...}: the text is title + \" \" +\n"
            "text, other fields are kept as metadata for --filter) or any JSONL with\n"
            "--text-field NAME and an \"_id\" or \"id\".\n"
            "\n"
            "build and add also fill the keyword (BM25, SQLite FTS5) index in the same\n"
            "transactions; delete removes from it. fts-rebuild (re)fills the keyword text\n"
            "of the documents already in INDEX from -i (ids not in the index are counted and\n"
            "skipped), e.g. for a file built before the keyword index existed.\n"
            "\n"
            "  -m, --model DIR          model folder\n"
            "  -i, --input FILE         JSONL documents (default stdin)\n"
            "  -o, --output INDEX       index file to create (build; a failed build removes it)\n"
            "      --index INDEX        existing index (add, delete, info)\n"
            "      --text-field NAME    JSONL field with the text (default: BEIR title + text)\n"
            "      --chunk-tokens N     tokens per chunk window (default: what fits the model's\n"
            "                           limit beside [CLS], [SEP] and the document prompt)\n"
            "      --overlap M          tokens shared by consecutive windows (default\n"
            "                           min(64, N/2)); the last window ends at the\n"
            "                           document's end and is full length\n"
            "      --no-chunk           one vector per document, truncated (as MTEB)\n"
            "      --quantize int8      store int8 vectors, rescored with f32 at search\n"
            "      --hnsw               build an HNSW graph (M 32, ef_construction 200)\n"
            "      --hnsw-m N           HNSW links per node (implies --hnsw)\n"
            "      --ef-construction N  HNSW build beam (default 200)\n"
            "      --batch-size N       documents per transaction (default 64)\n"
            "      --threads N          embedding threads (default: all CPUs)\n"
            "      --dtype f32|bf16|int8  encoder compute precision (default f32)\n"
            "      --skip-bad           skip malformed lines and duplicate ids, and count them\n"
            "      --vectors FILE.npy   index precomputed float32 (N, D) vectors instead of\n"
            "                           text (no model; ids from -i, one record per vector,\n"
            "                           else row numbers)\n"
            "      --id ID              document to delete (repeatable; all or nothing: one\n"
            "                           missing id deletes none)\n"
            "      --prompt TEXT        document prompt (\"\" = none; default: the model's\n"
            "                           \"document\"/\"passage\"/\"corpus\" prompt, else its default\n"
            "                           prompt, else none; MedEmbed defines none)\n"
            "      --prompt-name NAME   a prompt from config_sentence_transformers.json\n"
            "      --resume             continue a killed build/add: ids already in the index\n"
            "                           (committed a batch at a time) are skipped quietly;\n"
            "                           build opens INDEX when it exists and keeps it on error\n" CLI_HELP_PROGRESS);
}

static int parse_index_args(int argc, char **argv, index_args *a)
{
    static const struct option opts[] = {
        CLI_OPTION_MODEL,
        CLI_OPTION_INPUT,
        {"output", required_argument, 0, 'o'},
        CLI_OPTION_INDEX,
        CLI_OPTION_TEXT_FIELD,
        CLI_OPTION_CHUNK_TOKENS,
        CLI_OPTION_OVERLAP,
        {"no-chunk", no_argument, 0, OPT_NO_CHUNK},
        CLI_OPTION_QUANTIZE,
        {"hnsw", no_argument, 0, OPT_HNSW},
        CLI_OPTION_HNSW_M,
        {"ef-construction", required_argument, 0, OPT_EFC},
        CLI_OPTION_BATCH_SIZE,
        CLI_OPTION_THREADS,
        CLI_OPTION_DTYPE,
        CLI_OPTION_SKIP_BAD,
        {"vectors", required_argument, 0, OPT_VECTORS},
        {"id", required_argument, 0, OPT_ID},
        {"resume", no_argument, 0, OPT_RESUME},
        CLI_OPTION_PROGRESS,
        CLI_OPTION_QUIET,
        CLI_OPTION_PROMPT,
        CLI_OPTION_PROMPT_NAME,
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    memset(a, 0, sizeof *a);
    cli_common_init(&a->co, "index", index_usage);
    a->co.batch = 64;
    a->efc = 200;
    const char **ids = calloc((size_t)argc, sizeof *ids);
    a->ids = ids;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":m:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            a->output = optarg;
            break;
        case OPT_RESUME:
            a->resume = 1;
            break;
        case OPT_NO_CHUNK:
            a->no_chunk = 1;
            break;
        case OPT_HNSW:
            if (!a->co.hnsw_m)
                a->co.hnsw_m = 32; /* 768-d vectors need more links than hnswlib's 16 */
            break;
        case OPT_EFC:
            if (cli_parse_int("--ef-construction", optarg, 1, 100000, &a->efc))
                return 2;
            break;
        case OPT_VECTORS:
            a->vectors = optarg;
            break;
        case OPT_ID:
            ids[a->n_ids++] = optarg;
            break;
        default:
            if ((rc = cli_common_opt(&a->co, c, optarg, argv)) != 0)
                return rc; /* -1: --help */
        }
    }
    if (cli_common_end(&a->co, argc, argv, NULL))
        return 2;
    if (a->no_chunk && (a->co.chunk_set || a->co.overlap >= 0)) {
        cli_error("--no-chunk cannot be combined with --chunk-tokens or --overlap");
        return 2;
    }
    return 0;
}

static int open_ctx(const index_args *a, medembed_model **m, medembed_ctx **ctx)
{
    if (cli_load_embedder(a->co.model, a->co.dtype, 0, m))
        return 1;
    if (medembed_ctx_create(*m, (int32_t)a->co.threads, ctx) != MEDEMBED_OK) {
        cli_error("cannot create a context (out of memory?)");
        medembed_model_free(*m);
        *m = NULL;
        return 1;
    }
    return 0;
}

static int finish(medembed_index *ix, const char *path, int rc, int64_t added, int64_t skipped,
                  double t0)
{
    char err[1024];
    if (medembed_index_flush(ix, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        rc = 1;
    }
    fprintf(stderr, "medembed: %s: %lld document(s) added%s, %lld skipped; now %lld documents, "
            "%lld chunks (%.1f s)\n",
            path, (long long)added, rc ? " before the error" : "", (long long)skipped,
            (long long)medembed_index_n_docs(ix), (long long)medembed_index_n_chunks(ix),
            cli_now_s() - t0);
    medembed_index_free(ix);
    return rc;
}

/* build and add share everything but create vs open. */
static int cmd_build_add(int build, index_args *a)
{
    const char *path = build ? a->output : a->co.index;
    if (!path) {
        cli_error(build ? "index build needs -o INDEX" : "index add needs --index INDEX");
        return 2;
    }
    if (!a->vectors && !a->co.model) {
        cli_error("no model given: pass -m MODEL_DIR (or --vectors FILE.npy)");
        return 2;
    }
    if (!build && (a->co.chunk_set || a->co.overlap >= 0 || a->no_chunk || a->co.hnsw_m || a->co.int8)) {
        cli_error("chunking, --quantize and --hnsw are fixed when the index is built");
        return 2;
    }
    double t0 = cli_now_s();
    medembed_model *m = NULL;
    medembed_ctx *ctx = NULL;
    npy_matrix vm = {0};
    if (a->vectors) {
        if (npy_read(a->vectors, &vm))
            return 1;
    } else if (open_ctx(a, &m, &ctx)) {
        return 1;
    }
    medembed_embed_opts eo;
    if (m && cli_embed_opts(m, a->co.prompt, a->co.prompt_name, MEDEMBED_ROLE_DOCUMENT, &eo)) {
        medembed_ctx_free(ctx);
        medembed_model_free(m);
        return 2;
    }
    char err[1024];
    medembed_index *ix = NULL;
    int rc;
    int reopen = build && a->resume && access(path, F_OK) == 0;
    if (build && !reopen) {
        medembed_index_config cfg;
        medembed_index_config_init(&cfg);
        cfg.dim = m ? 0 : vm.cols;
        cfg.vec_dtype = a->co.int8 ? MEDEMBED_VEC_INT8 : MEDEMBED_VEC_F32;
        if (m && !a->no_chunk && !a->vectors) {
            cfg.chunk_tokens = a->co.chunk_set ? (int32_t)a->co.chunk : -1;
            cfg.overlap = (int32_t)a->co.overlap;
        }
        cfg.hnsw_m = (int32_t)a->co.hnsw_m;
        cfg.hnsw_ef_construction = (int32_t)a->efc;
        rc = medembed_index_create(path, m, &cfg, &ix, err, sizeof err);
    } else {
        rc = medembed_index_open(path, 0, &ix, err, sizeof err);
        if (rc == MEDEMBED_OK && m)
            rc = medembed_index_check_model(ix, m, err, sizeof err);
        if (rc == MEDEMBED_OK && !m && medembed_index_dim(ix) != vm.cols) {
            rc = MEDEMBED_ERR_MISMATCH;
            snprintf(err, sizeof err, "%s: vectors have %d columns, the index dim is %d",
                     a->vectors, vm.cols, medembed_index_dim(ix));
        }
    }
    if (rc != MEDEMBED_OK) {
        cli_error("%s", err);
        medembed_index_free(ix);
        npy_free(&vm);
        medembed_ctx_free(ctx);
        medembed_model_free(m);
        return rc == MEDEMBED_ERR_ARG && build ? 2 : 1;
    }
    int64_t added = 0, skipped = 0, present = 0;
    cli_progress prog = {0};
    corpus_reader r;
    int have_r = 0;
    if (!a->vectors || a->co.input) {
        if (corpus_open(&r, a->co.input, a->co.text_field, a->co.skip_bad)) {
            rc = 1;
        } else {
            have_r = 1;
        }
    }
    if (!rc) {
        if (a->vectors) {
            rc = ingest_vectors(ix, &vm, have_r ? &r : NULL, (int32_t)a->co.batch, &added);
        } else {
            ingest_opts io = {(int32_t)a->co.batch, a->co.skip_bad, &eo, a->resume, &prog,
                              &present};
            cli_progress_begin(&prog, a->co.progress, build ? "index build" : "index add",
                               CLI_TOTAL_BYTES, cli_progress_file_size(r.f));
            prog.no_tokens = 1;
            rc = ingest_corpus(ix, ctx, &r, &io, &added, &skipped);
        }
    }
    if (!rc && prog.on)
        cli_progress_end(&prog, 0);
    if (present)
        fprintf(stderr, "medembed: %s: %lld document(s) were already in the index (--resume)\n",
                path, (long long)present);
    if (have_r)
        corpus_close(&r);
    rc = finish(ix, path, rc, added, skipped, t0);
    if (rc && build && !a->resume) {
        /* A failed build leaves no file behind to block the rerun. */
        if (medembed_index_remove(path) == MEDEMBED_OK)
            fprintf(stderr, "medembed: %s: build failed; the partial index was removed\n", path);
        else
            cli_error("%s: build failed, and the partial index could not be removed", path);
    }
    npy_free(&vm);
    medembed_ctx_free(ctx);
    medembed_model_free(m);
    return rc;
}

static int cmd_delete(index_args *a)
{
    if (!a->co.index || a->n_ids == 0) {
        cli_error("usage: medembed index delete --index INDEX --id ID [--id ID ...]");
        return 2;
    }
    char err[1024];
    medembed_index *ix = NULL;
    if (medembed_index_open(a->co.index, 0, &ix, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        return 1;
    }
    /* One transaction: every id or none. */
    int64_t deleted = 0;
    int rc = 0;
    if (medembed_index_delete_ids(ix, a->ids, a->n_ids, &deleted, err, sizeof err) !=
        MEDEMBED_OK) {
        cli_error("%s: %s", a->co.index, err);
        rc = 1;
    }
    if (medembed_index_flush(ix, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        rc = 1;
    }
    printf("{\"deleted\": %lld, \"n_docs\": %lld, \"n_chunks\": %lld}\n", (long long)deleted,
           (long long)medembed_index_n_docs(ix), (long long)medembed_index_n_chunks(ix));
    medembed_index_free(ix);
    return rc;
}

static int cmd_info_index(index_args *a)
{
    const char *path = a->co.index ? a->co.index : a->output;
    if (!path) {
        cli_error("usage: medembed index info --index INDEX");
        return 2;
    }
    char err[1024];
    medembed_index *ix = NULL;
    if (medembed_index_open(path, MEDEMBED_INDEX_READONLY, &ix, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        return 1;
    }
    char *s = medembed_index_info_json(ix);
    if (s)
        puts(s);
    free(s);
    medembed_index_free(ix);
    return s ? 0 : 1;
}

static int cmd_fts_rebuild(index_args *a)
{
    if (!a->co.index) {
        cli_error("usage: medembed index fts-rebuild --index INDEX -i corpus.jsonl");
        return 2;
    }
    char err[1024];
    medembed_index *ix = NULL;
    /* a writable open adds the keyword table to a file that lacks it */
    if (medembed_index_open(a->co.index, 0, &ix, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s", err);
        return 1;
    }
    corpus_reader r;
    if (corpus_open(&r, a->co.input, a->co.text_field, a->co.skip_bad)) {
        medembed_index_free(ix);
        return 1;
    }
    enum { B = 256 };
    corpus_doc cd[B];
    medembed_index_doc docs[B];
    int64_t done = 0, missing = 0;
    int rc = 0, n = 0;
    for (;;) {
        int got = n < B ? corpus_next(&r, &cd[n]) : 1;
        if (got < 0) {
            rc = 1;
            break;
        }
        if (got > 0 && n < B) {
            docs[n] = (medembed_index_doc){cd[n].id, cd[n].text, cd[n].len, NULL};
            n++;
            if (n < B)
                continue;
        }
        int64_t miss = 0;
        if (n > 0 && medembed_index_set_texts(ix, docs, n, &miss, err, sizeof err) != MEDEMBED_OK) {
            cli_error("%s: %s", a->co.index, err);
            rc = 1;
        }
        done += n - miss;
        missing += miss;
        for (int i = 0; i < n; i++)
            corpus_doc_free(&cd[i]);
        n = 0;
        if (rc || got == 0)
            break;
    }
    for (int i = 0; i < n; i++)
        corpus_doc_free(&cd[i]);
    corpus_close(&r);
    char *info = medembed_index_info_json(ix);
    json_t *j = info ? json_loads(info, 0, NULL) : NULL;
    json_t *bd = j ? json_object_get(j, "bm25_docs") : NULL;
    printf("{\"indexed\": %lld, \"not_in_index\": %lld, \"n_docs\": %lld, \"bm25_docs\": "
           "%lld}\n",
           (long long)done, (long long)missing, (long long)medembed_index_n_docs(ix),
           bd ? (long long)json_integer_value(bd) : -1LL);
    json_decref(j);
    free(info);
    medembed_index_free(ix);
    return rc;
}

int cmd_index(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        index_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    index_args a;
    int prc = parse_index_args(argc - 1, argv + 1, &a);
    int rc;
    if (prc) {
        rc = prc < 0 ? 0 : prc;
    } else if (strcmp(sub, "build") == 0) {
        rc = cmd_build_add(1, &a);
    } else if (strcmp(sub, "add") == 0) {
        rc = cmd_build_add(0, &a);
    } else if (strcmp(sub, "delete") == 0) {
        rc = cmd_delete(&a);
    } else if (strcmp(sub, "info") == 0) {
        rc = cmd_info_index(&a);
    } else if (strcmp(sub, "fts-rebuild") == 0) {
        rc = cmd_fts_rebuild(&a);
    } else {
        cli_error("unknown index command \"%s\" (build, add, delete, info or fts-rebuild)",
                  sub);
        rc = 2;
    }
    free((void *)a.ids);
    return rc;
}
