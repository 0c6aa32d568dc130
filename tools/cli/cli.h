/*
 * cli.h - shared pieces of the `medembed` command-line tool. Every command
 * lives in its own cmd_*.c and uses only the public API (include/medembed.h).
 * Commands return an exit status: 0 ok, 1 runtime error, 2 usage error.
 */
#ifndef MEDEMBED_CLI_H
#define MEDEMBED_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "medembed.h"
#include "progress.h"

/* One-line error to stderr, prefixed "medembed: error: ". */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a decimal integer in [lo, hi] for flag `flag`; prints an error and
 * returns -1 on failure. */
int cli_parse_int(const char *flag, const char *s, long lo, long hi, long *out);
/* "f32" | "bf16" | "int8" -> medembed_dtype; -1 (after an error) otherwise. */
int cli_parse_dtype(const char *s);

/* ---- options several commands share ----
 * One owner per rule: a shared option's long name is its CLI_OPTION_* row
 * here, and its value rule (range, accepted words, message) is in
 * cli_common_opt (util.c). A command puts the rows it takes in its
 * getopt_long table (optstring starting with ':'), numbers its own long-only
 * options from CLI_OPT_LOCAL, hands everything its switch does not handle to
 * cli_common_opt and ends with cli_common_end. */
enum {
    CLI_OPT_MODEL = 'm', /* -m, --model MODEL */
    CLI_OPT_INPUT = 'i', /* -i, --input FILE */
    CLI_OPT_K = 'k',     /* -k N (no long form) */
    CLI_OPT_HELP = 'h',  /* -h, --help */
    CLI_OPT_TEXT_FIELD = 0x100,
    CLI_OPT_INDEX,
    CLI_OPT_BATCH_SIZE,
    CLI_OPT_THREADS,
    CLI_OPT_DTYPE,
    CLI_OPT_SKIP_BAD,
    CLI_OPT_QUANTIZE,
    CLI_OPT_HNSW_M,
    CLI_OPT_PROMPT,
    CLI_OPT_PROMPT_NAME,
    CLI_OPT_CHUNK_TOKENS,
    CLI_OPT_OVERLAP,
    CLI_OPT_EF_SEARCH,
    CLI_OPT_PROGRESS,
    CLI_OPT_QUIET,
    CLI_OPT_MODE,
    CLI_OPT_ALPHA,
    CLI_OPT_LOCAL = 0x200, /* a command's own long-only options start here */
};

#define CLI_OPTION_MODEL {"model", required_argument, 0, CLI_OPT_MODEL}
#define CLI_OPTION_INPUT {"input", required_argument, 0, CLI_OPT_INPUT}
#define CLI_OPTION_TEXT_FIELD {"text-field", required_argument, 0, CLI_OPT_TEXT_FIELD}
#define CLI_OPTION_INDEX {"index", required_argument, 0, CLI_OPT_INDEX}
#define CLI_OPTION_BATCH_SIZE {"batch-size", required_argument, 0, CLI_OPT_BATCH_SIZE}
#define CLI_OPTION_THREADS {"threads", required_argument, 0, CLI_OPT_THREADS}
#define CLI_OPTION_DTYPE {"dtype", required_argument, 0, CLI_OPT_DTYPE}
#define CLI_OPTION_SKIP_BAD {"skip-bad", no_argument, 0, CLI_OPT_SKIP_BAD}
#define CLI_OPTION_QUANTIZE {"quantize", required_argument, 0, CLI_OPT_QUANTIZE}
#define CLI_OPTION_HNSW_M {"hnsw-m", required_argument, 0, CLI_OPT_HNSW_M}
#define CLI_OPTION_PROMPT {"prompt", required_argument, 0, CLI_OPT_PROMPT}
#define CLI_OPTION_PROMPT_NAME {"prompt-name", required_argument, 0, CLI_OPT_PROMPT_NAME}
#define CLI_OPTION_CHUNK_TOKENS {"chunk-tokens", required_argument, 0, CLI_OPT_CHUNK_TOKENS}
#define CLI_OPTION_OVERLAP {"overlap", required_argument, 0, CLI_OPT_OVERLAP}
#define CLI_OPTION_EF_SEARCH {"ef-search", required_argument, 0, CLI_OPT_EF_SEARCH}
#define CLI_OPTION_PROGRESS {"progress", no_argument, 0, CLI_OPT_PROGRESS}
#define CLI_OPTION_QUIET {"quiet", no_argument, 0, CLI_OPT_QUIET}
#define CLI_OPTION_MODE {"mode", required_argument, 0, CLI_OPT_MODE}
#define CLI_OPTION_ALPHA {"alpha", required_argument, 0, CLI_OPT_ALPHA}
#define CLI_OPTION_HELP {"help", no_argument, 0, CLI_OPT_HELP}
#define CLI_OPTION_END {0, 0, 0, 0}

/* The values of the shared options. 0 / NULL = not given; a command sets its
 * own defaults (batch, k) after cli_common_init. */
typedef struct cli_common {
    const char *cmd;       /* command name, for "see medembed CMD --help" */
    void (*usage)(FILE *); /* the command's --help text */
    const char *model, *input, *text_field, *index, *prompt, *prompt_name;
    long k, batch, threads, hnsw_m, chunk, overlap, ef_search;
    int dtype;     /* medembed_dtype; f32 unless --dtype */
    int skip_bad;
    int int8;      /* --quantize int8 */
    int chunk_set; /* --chunk-tokens was given */
    int progress;  /* CLI_PROGRESS_AUTO, _FORCE (--progress) or _QUIET (--quiet) */
    int mode;      /* --mode dense|bm25|hybrid: medembed_search_mode */
    double alpha;  /* --alpha A (hybrid weighted fusion); -1 = RRF */
} cli_common;

/* Usage lines of --mode and --alpha (search and eval print the same). */
#define CLI_MODE_USAGE                                                                      \
    "      --mode M             dense (default), bm25 (keywords, SQLite FTS5) or hybrid\n"   \
    "      --alpha A            hybrid: weighted fusion A*dense + (1-A)*bm25 of min-max\n"  \
    "                           normalised scores, A in [0, 1]; default: reciprocal\n"      \
    "                           rank fusion (k = 60)\n"

/* Clears c and readies getopt_long for a new parse (optind 1, opterr 0). */
void cli_common_init(cli_common *c, const char *cmd, void (*usage)(FILE *));
/* Takes getopt_long's return opt and its value arg: a shared option is
 * checked and stored in c; -h/--help prints c->usage to stdout and returns
 * -1 (exit 0, nothing else to do); ':' (a value missing) and anything else
 * (an unknown option) are errors. Returns 0, -1, or prints one error line
 * and returns 2 (usage error). argv names the offending option. */
int cli_common_opt(cli_common *c, int opt, const char *arg, char **argv);
/* After the options: 0 when no operand is left, else prints
 * `unexpected argument "X" (HINT)` (HINT NULL: see medembed CMD --help) and
 * returns 2. */
int cli_common_end(const cli_common *c, int argc, char **argv, const char *hint);

/* Resolves -m (a folder, or a repo id through the cache, pulled if missing;
 * NULL = the default model) to a folder path in out. Returns 0 or prints an
 * error and returns 1. */
int cli_resolve_model(const char *arg, char *out, size_t out_len);
/* Loads the model named by -m with the given dtype; prints errors. */
int cli_load_model(const char *arg, int32_t dtype, int32_t max_length, medembed_model **out);
/* cli_load_model for the commands that embed (embed, index, search, eval):
 * a cross-encoder is refused with a message saying what it is for. */
int cli_load_embedder(const char *arg, int32_t dtype, int32_t max_length, medembed_model **out);
/* Same, loading only the tokenizer (and config if present): for tokenize. */
int cli_load_tokenizer(const char *arg, int32_t max_length, medembed_model **out);
/* Embed options for --prompt / --prompt-name and a role (medembed_role),
 * checked against the model with the library's prompt rule
 * (medembed_resolve_prompt). Returns 0, or prints the error and returns 2. */
int cli_embed_opts(const medembed_model *m, const char *prompt, const char *prompt_name,
                   int32_t role, medembed_embed_opts *eo);

/* ---- input: plain text lines or JSONL records ---- */
typedef struct cli_record {
    char *text;      /* owned */
    size_t len;
    char *id_json;   /* the record's _id/id as JSON text (owned), or NULL */
    long line;       /* 1-based line number in the input */
} cli_record;

typedef struct cli_input {
    FILE *f;
    const char *name; /* for messages */
    int jsonl;
    const char *text_field;
    int strict;       /* invalid UTF-8 is an error */
    long line;
    char *buf;
    size_t cap;
    long n_invalid_lines; /* lines with invalid UTF-8 (non-strict) */
} cli_input;

/* Opens path ("-" or NULL = stdin). jsonl: 1 force, 0 text, -1 auto (.jsonl). */
int cli_input_open(cli_input *in, const char *path, int jsonl, const char *text_field,
                   int strict);
/* Reads the next record: 1 got one, 0 end of input, -1 error (printed). */
int cli_input_next(cli_input *in, cli_record *r);
void cli_record_free(cli_record *r);
void cli_input_close(cli_input *in);

/* 1 if s[0..len) is valid UTF-8; *bad_at gets the first bad offset. */
int cli_utf8_valid(const char *s, size_t len, size_t *bad_at);

/* Writes s as a JSON string literal. */
void cli_json_string(FILE *f, const char *s, size_t len);

/* ---- npy output ---- */
typedef struct cli_npy {
    FILE *f;
    int seekable;
    int32_t dim;
    int64_t rows;
    float *held; /* rows kept in memory when the output cannot seek */
    size_t held_cap;
} cli_npy;

int cli_npy_begin(cli_npy *w, FILE *f, int32_t dim);
int cli_npy_rows(cli_npy *w, const float *rows, int64_t n);
int cli_npy_end(cli_npy *w);

/* The --progress / --quiet lines of a command's --help. */
#define CLI_HELP_PROGRESS                                                                      \
    "      --progress           show progress on stderr even when it is not a terminal\n"     \
    "      --quiet              no progress line and no summary\n"

/* ---- commands ---- */
int cmd_embed(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_index(int argc, char **argv);  /* cmd_index.c */
int cmd_search(int argc, char **argv); /* cmd_search.c */
int cmd_eval(int argc, char **argv);   /* cmd_eval.c */
int cmd_serve(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_rerank(int argc, char **argv); /* cmd_rerank.c */

/* Loads -m as a reranker: a cross-encoder with one label (anything else is
 * refused with a message naming the model's kind) and a ctx for it.
 * Returns 0, or prints an error and returns 1 (nothing left to free). */
/* --rerank-top for search and eval: refused without --rerank; defaults to
 * max(MEDEMBED_RERANK_TOP_DEFAULT, k); refused below k. Returns 0, or
 * prints the problem and returns 2. */
int cli_rerank_top(const char *rerank, long k, long *rerank_top);
int cli_load_reranker(const char *arg, int32_t dtype, long threads, medembed_model **m,
                      medembed_ctx **ctx);

#endif
