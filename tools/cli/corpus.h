/*
 * corpus.h - inputs of the index/search/eval commands: BEIR-layout JSONL
 * records, .npy float32 matrices, BEIR qrels TSV files, and a string hash
 * map used to catch duplicate ids and to group qrels by query.
 */
#ifndef MEDEMBED_CLI_CORPUS_H
#define MEDEMBED_CLI_CORPUS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- string -> int64 hash map (open addressing, keys owned) ---- */
typedef struct strmap {
    char **keys;
    int64_t *vals;
    size_t cap, n;
} strmap;

/* Returns a pointer to the value of key, or NULL. */
int64_t *strmap_get(const strmap *m, const char *key);
/* Inserts key (copied) with val if absent. Returns 1 inserted, 0 present
 * (*old gets the stored value when old is non-NULL), -1 out of memory. */
int strmap_put(strmap *m, const char *key, int64_t val, int64_t *old);
void strmap_free(strmap *m);

/* ---- BEIR / JSONL documents ---- */
typedef struct corpus_doc {
    char *id;       /* "_id" or "id" (a string or an integer), owned */
    char *text;     /* title + " " + text (BEIR), or the --text-field value, owned */
    size_t len;
    char *metadata; /* the other fields as a compact JSON object, or NULL; owned */
    long line;
} corpus_doc;

typedef struct corpus_reader {
    FILE *f;
    const char *name;
    const char *text_field; /* NULL = BEIR (title + text) */
    int skip_bad;           /* print a warning per bad line and go on */
    long line;
    long n_bad;
    char *buf;
    size_t cap;
} corpus_reader;

int corpus_open(corpus_reader *r, const char *path, const char *text_field, int skip_bad);
/* 1 = a document, 0 = end, -1 = error (printed with the line number). */
int corpus_next(corpus_reader *r, corpus_doc *d);
void corpus_doc_free(corpus_doc *d);
void corpus_close(corpus_reader *r);

/* ---- .npy float32 (N, D), C order ---- */
typedef struct npy_matrix {
    float *data;
    int64_t rows;
    int32_t cols;
} npy_matrix;

/* Reads a whole .npy file; prints a one-line error and returns 1 on failure. */
int npy_read(const char *path, npy_matrix *m);
void npy_free(npy_matrix *m);

/* ---- qrels: query-id \t corpus-id \t score, one header line ---- */
typedef struct qrels {
    strmap by_query;   /* query id -> index into q */
    struct qrels_query {
        char *qid;
        char **doc;
        int32_t *rel;
        int32_t n, cap;
    } *q;
    int64_t n_q, cap_q;
} qrels;

int qrels_load(const char *path, qrels *out);
void qrels_free(qrels *q);

/* ---- loading documents into an index (index build/add, eval) ---- */
#include "medembed.h"
#include "progress.h"

typedef struct ingest_opts {
    int32_t batch;               /* documents per transaction */
    int skip_bad;                /* skip (and count) bad lines and duplicate ids */
    const medembed_embed_opts *eo;
    int resume;                  /* an id already in the index is skipped quietly */
    cli_progress *prog;          /* counts committed batches; NULL = none */
    int64_t *n_present;          /* resume: ids found already in the index */
} ingest_opts;

/* Reads every record of r and adds it to ix in batches (one transaction
 * each), embedding with ctx. Duplicate ids (within the input or already in
 * the index) are errors unless skip_bad. Returns 0, or 1 after printing an
 * error; the batches committed before an error stay in the index. */
int ingest_corpus(medembed_index *ix, medembed_ctx *ctx, corpus_reader *r, const ingest_opts *o,
                  int64_t *n_added, int64_t *n_skipped);

#endif
