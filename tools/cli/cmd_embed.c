/*
 * cmd_embed.c - `medembed embed`, `medembed tokenize` and `medembed info`.
 *
 * embed streams: it reads --batch-size records, embeds them in one call
 * (the library sorts them by length and packs them by a token budget),
 * writes them in input order, and repeats, so memory stays flat on a
 * million-line input. Results do not depend on --batch-size or --threads.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "resume.h"
#include "shards.h"

static void tokenize_usage(FILE *f)
{
    fprintf(f, "usage: medembed tokenize [-m MODEL] [-i FILE] [--no-truncate]\n"
               "  prints {\"ids\": [...], \"tokens\": [...]} per input text, the ids\n"
               "  the model sees ([CLS] ... [SEP], truncated to its limit unless\n"
               "  --no-truncate). Input options as for `medembed embed`.\n");
}

static void embed_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed embed [-m MODEL] [-i FILE] [-o FILE] [options]\n"
            "\n"
            "Embeds one text per input line (or one JSONL record per line) and writes\n"
            "one JSON object per input, {\"id\", \"embedding\", \"n_tokens\", \"truncated\"},\n"
            "or a float32 (N, dim) .npy file.\n"
            "\n"
            "  -m, --model MODEL        model folder (Hugging Face sentence-transformers layout)\n"
            "                           or hub repo id ORG/NAME[@REV], pulled into the cache\n"
            "                           if missing (default abhinand/MedEmbed-base-v0.1)\n"
            "  -i, --input FILE         input (default stdin); a .jsonl file reads JSONL\n"
            "      --text TEXT          embed TEXT (repeatable) instead of reading input\n"
            "  -o, --output FILE        output (default stdout)\n"
            "      --format jsonl|npy   output format (default jsonl)\n"
            "      --input-format text|jsonl   override input detection\n"
            "      --text-field NAME    JSONL field holding the text (default text);\n"
            "                           _id or id is carried over; a bare JSON string works too\n"
            "      --batch-size N       texts per call (default 32; results do not change)\n"
            "      --threads N          worker threads (default: all CPUs)\n"
            "      --max-length N       cap tokens per text, [CLS]/[SEP] included\n"
            "      --prompt TEXT        prepended to every text (MedEmbed uses none)\n"
            "      --prompt-name NAME   a prompt from config_sentence_transformers.json\n"
            "      --no-normalize       skip the model's Normalize module\n"
            "      --no-truncate        a text over the limit is an error instead\n"
            "      --strict             invalid UTF-8 is an error (default: U+FFFD + warning)\n"
            "      --dtype f32|bf16|int8  compute precision (default f32; int8 keeps the\n"
            "                           QKV projection in bf16; accuracy: docs/MODELS.md)\n"
            "      --resume             continue a killed run: keeps the complete lines\n"
            "                           already in -o FILE (JSONL; a torn last line is\n"
            "                           dropped), skips as many inputs and appends the rest;\n"
            "                           the file ends as an uninterrupted run's would;\n"
            "                           with --shard-size, continues after the last whole\n"
            "                           shard the manifest lists\n"
            "      --shard-size N       .npy output in shards of N rows: NAME-00000.npy, ...\n"
            "                           their ids in NAME-00000.ids.json, ..., and a manifest\n"
            "                           NAME.manifest.json (shards, row counts, complete)\n" CLI_HELP_PROGRESS);
}

enum {
    OPT_FORMAT = CLI_OPT_LOCAL,
    OPT_INPUT_FORMAT,
    OPT_MAXLEN,
    OPT_NO_NORM,
    OPT_NO_TRUNC,
    OPT_STRICT,
    OPT_TEXT,
    OPT_RESUME,
    OPT_SHARD_SIZE,
};

#define MAX_CLI_TEXTS 64

typedef struct {
    cli_common co;                    /* -m, -i, --text-field, --batch-size, ... */
    const char *texts[MAX_CLI_TEXTS]; /* --text values, in order */
    int n_texts;
    char *mem;                        /* --text values as JSONL, for the reader */
    const char *output;
    int npy, input_jsonl, strict, no_norm, no_trunc, resume;
    long max_length;
    long shard_size; /* --shard-size: rows per .npy shard, 0 = one file */
} embed_args;

static int parse_args(int argc, char **argv, embed_args *a, int tokenize_mode)
{
    static const struct option opts[] = {
        CLI_OPTION_MODEL,
        CLI_OPTION_INPUT,
        {"output", required_argument, 0, 'o'},
        {"format", required_argument, 0, OPT_FORMAT},
        {"input-format", required_argument, 0, OPT_INPUT_FORMAT},
        CLI_OPTION_TEXT_FIELD,
        CLI_OPTION_BATCH_SIZE,
        CLI_OPTION_THREADS,
        {"max-length", required_argument, 0, OPT_MAXLEN},
        CLI_OPTION_PROMPT,
        CLI_OPTION_PROMPT_NAME,
        {"no-normalize", no_argument, 0, OPT_NO_NORM},
        {"no-truncate", no_argument, 0, OPT_NO_TRUNC},
        {"strict", no_argument, 0, OPT_STRICT},
        CLI_OPTION_DTYPE,
        {"text", required_argument, 0, OPT_TEXT},
        {"resume", no_argument, 0, OPT_RESUME},
        {"shard-size", required_argument, 0, OPT_SHARD_SIZE},
        CLI_OPTION_PROGRESS,
        CLI_OPTION_QUIET,
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    memset(a, 0, sizeof *a);
    cli_common_init(&a->co, tokenize_mode ? "tokenize" : "embed",
                    tokenize_mode ? tokenize_usage : embed_usage);
    a->co.batch = 32;
    a->input_jsonl = -1;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":m:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            a->output = optarg;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "npy") == 0) {
                a->npy = 1;
            } else if (strcmp(optarg, "jsonl") != 0) {
                cli_error("--format expects jsonl or npy, got \"%s\"", optarg);
                return 2;
            }
            break;
        case OPT_INPUT_FORMAT:
            if (strcmp(optarg, "jsonl") == 0) {
                a->input_jsonl = 1;
            } else if (strcmp(optarg, "text") == 0) {
                a->input_jsonl = 0;
            } else {
                cli_error("--input-format expects text or jsonl, got \"%s\"", optarg);
                return 2;
            }
            break;
        case OPT_MAXLEN:
            if (cli_parse_int("--max-length", optarg, 2, 1 << 20, &a->max_length))
                return 2;
            break;
        case OPT_NO_NORM:
            a->no_norm = 1;
            break;
        case OPT_NO_TRUNC:
            a->no_trunc = 1;
            break;
        case OPT_STRICT:
            a->strict = 1;
            break;
        case OPT_RESUME:
            a->resume = 1;
            break;
        case OPT_SHARD_SIZE:
            if (cli_parse_int("--shard-size", optarg, 1, 1L << 31, &a->shard_size))
                return 2;
            break;
        case OPT_TEXT:
            if (a->n_texts == MAX_CLI_TEXTS) {
                cli_error("at most %d --text values; use -i FILE for more", MAX_CLI_TEXTS);
                return 2;
            }
            a->texts[a->n_texts++] = optarg;
            break;
        default:
            if ((rc = cli_common_opt(&a->co, c, optarg, argv)) != 0)
                return rc; /* -1: --help */
        }
    }
    int to_file = a->output && strcmp(a->output, "-") != 0;
    if (a->shard_size && (tokenize_mode || !a->npy || !to_file)) {
        cli_error("--shard-size needs .npy output to a file (--format npy -o NAME.npy)");
        return 2;
    }
    if (a->resume && (tokenize_mode || (a->npy && !a->shard_size) || !to_file)) {
        cli_error("--resume needs a JSONL output file (-o FILE) or sharded .npy output "
                  "(--format npy --shard-size N -o NAME.npy)");
        return 2;
    }
    return cli_common_end(&a->co, argc, argv, "texts are read from -i FILE or stdin");
}

/* Opens the input: --text values (as in-memory JSONL) or -i / stdin. */
static int open_input(cli_input *in, embed_args *a)
{
    if (a->n_texts == 0)
        return cli_input_open(in, a->co.input, a->input_jsonl, a->co.text_field, a->strict);
    if (a->co.input) {
        cli_error("give --text or -i, not both");
        return 2;
    }
    size_t cap = 1, len = 0;
    for (int i = 0; i < a->n_texts; i++)
        cap += 6 * strlen(a->texts[i]) + 4;
    a->mem = malloc(cap);
    if (!a->mem)
        return 1;
    FILE *f = fmemopen(a->mem, cap, "w");
    if (!f)
        return 1;
    for (int i = 0; i < a->n_texts; i++) {
        cli_json_string(f, a->texts[i], strlen(a->texts[i]));
        fputc('\n', f);
    }
    len = (size_t)ftell(f);
    fclose(f);
    memset(in, 0, sizeof *in);
    in->f = fmemopen(a->mem, len ? len : 1, "r");
    if (!in->f)
        return 1;
    in->name = "--text";
    in->jsonl = 1;
    in->text_field = "text";
    in->strict = a->strict;
    return 0;
}

/* --resume: keeps the complete lines of the JSONL file at path and cuts a
 * torn last line (a run killed mid-write). *n_done gets the number of
 * complete lines and *last_id the raw id text of the last one (malloc'd;
 * NULL when the file is empty or missing). Returns 0, or 1 after an error. */
static int resume_scan(const char *path, int64_t *n_done, char **last_id)
{
    *n_done = 0;
    *last_id = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        cli_error("%s: cannot read the output to resume: %s", path, strerror(errno));
        return 1;
    }
    static char buf[1 << 16];
    int64_t off = 0, end_ok = 0, last_start = 0, lines = 0;
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (char *q = buf; (q = memchr(q, '\n', (size_t)(buf + got - q))) != NULL; q++) {
            last_start = end_ok;
            end_ok = off + (q - buf) + 1;
            lines++;
        }
        off += (int64_t)got;
    }
    int rc = ferror(f) ? 1 : 0;
    char *line = NULL;
    if (!rc && lines > 0) {
        size_t len = (size_t)(end_ok - last_start);
        line = malloc(len + 1);
        rc = !line || fseeko(f, last_start, SEEK_SET) != 0 || fread(line, 1, len, f) != len;
        if (!rc) {
            char why[128];
            if (cli_resume_record(line, len - 1, last_id, why, sizeof why) != 0) {
                cli_error("%s: line %lld is not a medembed embed record (%s); --resume appends "
                          "only to the output of an earlier `medembed embed` run",
                          path, (long long)lines, why);
                rc = 2;
            }
        } else {
            cli_error("%s: cannot read the output to resume", path);
        }
    } else if (rc) {
        cli_error("%s: cannot read the output to resume: %s", path, strerror(errno));
    }
    free(line);
    fclose(f);
    if (!rc && off > end_ok) {
        if (truncate(path, (off_t)end_ok) != 0) {
            cli_error("%s: cannot cut the torn last line: %s", path, strerror(errno));
            rc = 1;
        } else {
            cli_warn("%s: dropped a torn last line (%lld bytes); resuming after line %lld", path,
                     (long long)(off - end_ok), (long long)lines);
        }
    }
    *n_done = lines;
    return rc;
}

/* 1 when the input's id (raw JSON text) is the output's (raw or compact). */
static int same_id(const char *want, const char *have)
{
    if (strcmp(want, have) == 0)
        return 1;
    json_t *v = json_loads(want, JSON_DECODE_ANY, NULL);
    char *c = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    int same = c && strcmp(c, have) == 0;
    free(c);
    json_decref(v);
    return same;
}

/* Reads past the n inputs an earlier run wrote and checks that the last
 * of them has the id the output's last line holds. */
static int resume_skip(cli_input *in, int64_t n, const char *last_id, const char *out_path)
{
    cli_record r;
    for (int64_t i = 0; i < n; i++) {
        int got = cli_input_next(in, &r);
        if (got < 0)
            return 1;
        if (got == 0) {
            cli_error("%s holds %lld records but the input has only %lld: it is not this "
                      "input's output",
                      out_path, (long long)n, (long long)i);
            return 1;
        }
        if (i == n - 1) {
            char idx[32];
            snprintf(idx, sizeof idx, "%lld", (long long)i);
            const char *want = r.id_json ? r.id_json : idx;
            if (!same_id(want, last_id)) {
                cli_error("%s: the last record has id %s but input record %lld has id %s: it "
                          "is not this input's output",
                          out_path, last_id, (long long)n, want);
                cli_record_free(&r);
                return 1;
            }
        }
        cli_record_free(&r);
    }
    return 0;
}

static FILE *open_output(const char *path, int append)
{
    if (!path || strcmp(path, "-") == 0)
        return stdout;
    FILE *f = fopen(path, append ? "ab" : "wb");
    if (!f)
        cli_error("%s: cannot open output: %s", path, strerror(errno));
    return f;
}

static int close_output(FILE *f, const char *path)
{
    int bad = ferror(f);
    if (f != stdout)
        bad |= fclose(f) != 0;
    else
        bad |= fflush(f) != 0;
    if (bad) {
        cli_error("%s: write failed: %s", path ? path : "<stdout>", strerror(errno));
        return 1;
    }
    return 0;
}

static void write_jsonl(FILE *out, const cli_record *recs, int32_t n, int64_t first_index,
                        const float *emb, int32_t dim, const medembed_text_info *info)
{
    for (int32_t i = 0; i < n; i++) {
        fputs("{\"id\": ", out);
        if (recs[i].id_json)
            fputs(recs[i].id_json, out);
        else
            fprintf(out, "%lld", (long long)(first_index + i));
        fputs(", \"embedding\": [", out);
        const float *v = emb + (size_t)i * (size_t)dim;
        for (int32_t k = 0; k < dim; k++)
            fprintf(out, k ? ", %.9g" : "%.9g", (double)v[k]);
        fprintf(out, "], \"n_tokens\": %d, \"truncated\": %s}\n", info[i].n_tokens,
                info[i].truncated ? "true" : "false");
    }
}

int cmd_embed(int argc, char **argv)
{
    embed_args a;
    int prc = parse_args(argc, argv, &a, 0);
    if (prc)
        return prc < 0 ? 0 : prc;
    medembed_model *m = NULL;
    if (cli_load_embedder(a.co.model, a.co.dtype, (int32_t)a.max_length, &m))
        return 1;
    medembed_embed_opts eo;
    if (cli_embed_opts(m, a.co.prompt, a.co.prompt_name, MEDEMBED_ROLE_TEXT, &eo)) {
        medembed_model_free(m);
        return 2;
    }
    medembed_ctx *ctx = NULL;
    if (medembed_ctx_create(m, (int32_t)a.co.threads, &ctx) != MEDEMBED_OK) {
        cli_error("cannot create a context (out of memory?)");
        medembed_model_free(m);
        return 1;
    }
    cli_input in;
    FILE *out = NULL;
    int rc = 0;
    int orc = open_input(&in, &a);
    if (orc) {
        free(a.mem);
        medembed_ctx_free(ctx);
        medembed_model_free(m);
        return orc;
    }
    int64_t done = 0, n_truncated = 0;
    char *last_id = NULL;
    cli_progress prog;
    cli_progress_begin(&prog, a.co.progress, "embed", CLI_TOTAL_BYTES,
                       a.n_texts ? 0 : cli_progress_file_size(in.f));
    int32_t dim = medembed_model_dim(m);
    cli_shards sh = {0};
    if (a.shard_size) {
        rc = cli_shards_open(&sh, a.output, a.shard_size, dim, a.resume);
        done = sh.rows;
        if (!rc && done > 0)
            rc = resume_skip(&in, done, sh.last_id, a.output);
        cli_progress_skip(&prog, a.n_texts ? 0 : (int64_t)ftello(in.f));
    } else if (a.resume) {
        rc = resume_scan(a.output, &done, &last_id);
        if (!rc && done > 0)
            rc = resume_skip(&in, done, last_id, a.output);
        free(last_id);
        cli_progress_skip(&prog, a.n_texts ? 0 : (int64_t)ftello(in.f));
    }
    int64_t skipped = done; /* written by the run this one resumes */
    out = rc || a.shard_size ? NULL : open_output(a.output, a.resume);
    size_t B = (size_t)a.co.batch;
    cli_record *recs = calloc(B, sizeof *recs);
    const char **texts = calloc(B, sizeof *texts);
    size_t *lens = calloc(B, sizeof *lens);
    float *emb = malloc(sizeof *emb * B * (size_t)dim);
    medembed_text_info *info = calloc(B, sizeof *info);
    cli_npy npy;
    if (rc) {
        /* printed */
    } else if (!out && !a.shard_size) {
        rc = 1;
    } else if (!recs || !texts || !lens || !emb || !info) {
        cli_error("out of memory for a batch of %zu texts", B);
        rc = 1;
    } else if (a.npy && !a.shard_size && cli_npy_begin(&npy, out, dim) != 0) {
        cli_error("%s: cannot write the .npy header", a.output ? a.output : "<stdout>");
        rc = 1;
    }
    eo.max_length = (int32_t)a.max_length;
    eo.flags = (a.no_norm ? MEDEMBED_F_NO_NORMALIZE : 0) | (a.no_trunc ? MEDEMBED_F_NO_TRUNCATE : 0);
    int eof = 0;
    while (!rc && !eof) {
        int32_t n = 0;
        while ((size_t)n < B) {
            int r = cli_input_next(&in, &recs[n]);
            if (r < 0) {
                rc = 1;
                break;
            }
            if (r == 0) {
                eof = 1;
                break;
            }
            texts[n] = recs[n].text;
            lens[n] = recs[n].len;
            n++;
        }
        if (!rc && n > 0) {
            int erc = medembed_ctx_embed(ctx, texts, lens, n, &eo, emb, info);
            if (erc != MEDEMBED_OK) {
                /* The library names the text by its index in this batch. */
                const char *msg = medembed_ctx_last_error(ctx);
                long idx = strncmp(msg, "text ", 5) == 0 ? strtol(msg + 5, NULL, 10) : -1;
                if (idx >= 0 && idx < n)
                    cli_error("%s: line %ld: %s", in.name, recs[idx].line,
                              strchr(msg, ':') ? strchr(msg, ':') + 2 : msg);
                else
                    cli_error("%s", *msg ? msg : medembed_status_str(erc));
                rc = 1;
            } else {
                if (a.shard_size) {
                    rc = cli_shards_rows(&sh, emb, recs, done, n) != 0;
                } else if (a.npy) {
                    if (cli_npy_rows(&npy, emb, n) != 0) {
                        cli_error("write failed (out of memory or disk full)");
                        rc = 1;
                    }
                } else {
                    write_jsonl(out, recs, n, done, emb, dim, info);
                }
                int64_t tok = 0, trunc = 0;
                for (int32_t i = 0; i < n; i++) {
                    trunc += info[i].truncated;
                    tok += info[i].n_tokens;
                }
                n_truncated += trunc;
                done += n;
                cli_progress_add(&prog, n, tok, trunc, a.n_texts ? -1 : (int64_t)ftello(in.f));
            }
        }
        for (int32_t i = 0; i < n; i++)
            cli_record_free(&recs[i]);
    }
    if (!rc && a.shard_size && cli_shards_close(&sh) != 0)
        rc = 1;
    if (a.shard_size)
        cli_shards_free(&sh);
    if (!rc && a.npy && !a.shard_size && cli_npy_end(&npy) != 0) {
        cli_error("%s: write failed", a.output ? a.output : "<stdout>");
        rc = 1;
    }
    if (out && close_output(out, a.output))
        rc = 1;
    if (!rc)
        cli_progress_end(&prog, in.n_invalid_lines);
    if (in.n_invalid_lines)
        cli_warn("%ld input line(s) had invalid UTF-8, replaced with U+FFFD (use --strict to "
                 "fail instead)",
                 in.n_invalid_lines);
    if (n_truncated && !rc)
        cli_warn("%lld of %lld text(s) were truncated to %d tokens", (long long)n_truncated,
                 (long long)(done - skipped), a.max_length > 0 && a.max_length < medembed_model_max_length(m)
                                      ? (int)a.max_length
                                      : (int)medembed_model_max_length(m));
    free(recs);
    free(texts);
    free(lens);
    free(emb);
    free(info);
    cli_input_close(&in);
    free(a.mem);
    medembed_ctx_free(ctx);
    medembed_model_free(m);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    embed_args a;
    int prc = parse_args(argc, argv, &a, 1);
    if (prc)
        return prc < 0 ? 0 : prc;
    medembed_model *m = NULL;
    if (cli_load_tokenizer(a.co.model, (int32_t)a.max_length, &m))
        return 1;
    cli_input in;
    int orc = open_input(&in, &a);
    if (orc) {
        free(a.mem);
        medembed_model_free(m);
        return orc;
    }
    FILE *out = open_output(a.output, 0);
    int rc = out ? 0 : 1;
    int32_t cap = 1024;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    uint32_t flags = a.no_trunc ? MEDEMBED_F_NO_TRUNCATE : 0;
    cli_record r;
    while (!rc) {
        int got = cli_input_next(&in, &r);
        if (got <= 0) {
            rc = got < 0;
            break;
        }
        medembed_text_info ti;
        int trc = medembed_tokenize(m, r.text, r.len, flags, ids, cap, &ti);
        if (trc == MEDEMBED_OK && ti.n_tokens > cap) {
            cap = ti.n_tokens;
            int32_t *p = realloc(ids, sizeof *ids * (size_t)cap);
            if (p) {
                ids = p;
                trc = medembed_tokenize(m, r.text, r.len, flags, ids, cap, &ti);
            } else {
                trc = MEDEMBED_ERR_NOMEM;
            }
        }
        if (trc != MEDEMBED_OK) {
            cli_error("%s: line %ld: %s", in.name, r.line, medembed_status_str(trc));
            rc = 1;
        } else {
            fputs("{\"ids\": [", out);
            for (int32_t i = 0; i < ti.n_tokens; i++)
                fprintf(out, i ? ", %d" : "%d", ids[i]);
            fputs("], \"tokens\": [", out);
            for (int32_t i = 0; i < ti.n_tokens; i++) {
                const char *t = medembed_token_str(m, ids[i]);
                if (i)
                    fputs(", ", out);
                cli_json_string(out, t ? t : "", t ? strlen(t) : 0);
            }
            fputs("]}\n", out);
        }
        cli_record_free(&r);
    }
    if (out && close_output(out, a.output))
        rc = 1;
    if (in.n_invalid_lines)
        cli_warn("%ld input line(s) had invalid UTF-8, replaced with U+FFFD", in.n_invalid_lines);
    free(ids);
    cli_input_close(&in);
    free(a.mem);
    medembed_model_free(m);
    return rc;
}

int cmd_info(int argc, char **argv)
{
    const char *model = NULL;
    int32_t dtype = MEDEMBED_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0) && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            if ((dtype = cli_parse_dtype(argv[++i])) < 0)
                return 2;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: medembed info [-m MODEL] [--dtype f32|bf16|int8]\n"
                   "  (MODEL: a folder or ORG/NAME[@REV]) loads the model for that compute\n"
                   "  dtype and prints its architecture, dims, layers, heads, pooling,\n"
                   "  normalize, max length, dtypes, parameter count, prompts, kernel level\n"
                   "  and pack cache status (see MEDEMBED_PACK_CACHE in medembed --help)\n"
                   "  as JSON\n");
            return 0;
        } else {
            cli_error("unknown argument \"%s\" (usage: medembed info [-m MODEL] [--dtype D])",
                      argv[i]);
            return 2;
        }
    }
    medembed_model *m = NULL;
    if (cli_load_model(model, dtype, 0, &m))
        return 1;
    size_t n = medembed_model_info_json(m, NULL, 0);
    char *buf = malloc(n + 1);
    if (!buf) {
        medembed_model_free(m);
        return 1;
    }
    medembed_model_info_json(m, buf, n + 1);
    puts(buf);
    free(buf);
    medembed_model_free(m);
    return 0;
}
