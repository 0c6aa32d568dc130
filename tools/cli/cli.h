/*
 * cli.h - shared pieces of the `medembed` command-line tool. Every command
 * lives in its own cmd_*.c and uses only the public API (include/medembed.h).
 * Commands return an exit status: 0 ok, 1 runtime error, 2 usage error.
 */
#ifndef MEDEMBED_CLI_H
#define MEDEMBED_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "medembed.h"

/* One-line error to stderr, prefixed "medembed: error: ". */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a decimal integer in [lo, hi] for flag `flag`; prints an error and
 * returns -1 on failure. */
int cli_parse_int(const char *flag, const char *s, long lo, long hi, long *out);
/* "f32" | "bf16" | "int8" -> medembed_dtype; -1 (after an error) otherwise. */
int cli_parse_dtype(const char *s);

/* Resolves -m (a folder, or a repo id through the cache, pulled if missing;
 * NULL = the default model) to a folder path in out. Returns 0 or prints an
 * error and returns 1. */
int cli_resolve_model(const char *arg, char *out, size_t out_len);
/* Loads the model named by -m with the given dtype; prints errors. */
int cli_load_model(const char *arg, int32_t dtype, int32_t max_length, medembed_model **out);
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

#endif
