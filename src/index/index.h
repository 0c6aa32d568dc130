/*
 * index.h - internals of the search index (medembed_index_* in medembed.h).
 *
 * Reading order: vec.c (the vector store; its dot products and int8
 * quantizer are kernels: kernels/dot*.c, kernels/pack.c), topk.c (bounded
 * heaps), flat.c (exact multi-threaded search), hnsw.c (the graph),
 * chunk.c (token windows), filter.c (metadata filters -> document sets),
 * store.c (the SQLite file), index.c (the public API that ties them),
 * metrics.c (pytrec_eval metrics).
 *
 * In memory an open index is a column store in chunk order (= SQLite rowid
 * order). Chunks of one document are contiguous because a document's chunks
 * are inserted together, so document d owns chunks
 * [doc_chunk0[d], doc_chunk0[d] + doc_n_chunks[d]).
 */
#ifndef ME_INDEX_H
#define ME_INDEX_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "medembed.h"
#include "thread/pool.h"
#include "util/error.h"

/* ---------------------------------------------------------------- vec.c */

/* Vectors to score against: f32 rows, or int8 rows with one scale each
 * (x ~= scale * q, quantized by me_quant_row_s8: an all-zero row has scale
 * 0). */
typedef struct me_vecs {
    int32_t dim;
    int32_t dtype;       /* medembed_vec_dtype */
    int64_t n;
    float *f;            /* (n, dim) when F32 */
    int8_t *q;           /* (n, dim) when INT8 */
    float *scale;        /* (n) when INT8 */
    int64_t cap;         /* rows allocated */
} me_vecs;

/* The search kernels are the dot_f32 / dot_i8 entries of the kernel table
 * (kernels.h), so they follow the kernel level: cpuid + XGETBV, or
 * MEDEMBED_ISA, or me_kern_force. A search takes the table once and uses it
 * throughout, so its scores come from one level. */
typedef me_kern me_vec_kern;

static inline const me_vec_kern *me_vec_kern_get(void)
{
    return me_kern_get();
}

/* Score of query q against row i. */
static inline float me_vecs_score(const me_vecs *v, const me_vec_kern *k, const float *q,
                                  int64_t i)
{
    if (v->dtype == MEDEMBED_VEC_INT8)
        return v->scale[i] * k->dot_i8(q, v->q + (size_t)i * (size_t)v->dim, v->dim);
    return k->dot_f32(q, v->f + (size_t)i * (size_t)v->dim, v->dim);
}

/* Row i as f32 (dequantized for INT8) into out (dim). */
void me_vecs_row(const me_vecs *v, int64_t i, float *out);
int me_vecs_reserve(me_vecs *v, int64_t rows);
void me_vecs_free(me_vecs *v);

/* --------------------------------------------------------------- topk.c */

/* Bounded top-k: keeps the k best (score, id); ties prefer the smaller id. */
typedef struct me_topk {
    int32_t k, n;
    float *score;
    int64_t *id;
} me_topk;

int me_topk_init(me_topk *t, int32_t k);
void me_topk_free(me_topk *t);
void me_topk_push(me_topk *t, float score, int64_t id);
/* Worst score kept, or -inf while fewer than k are held. */
float me_topk_floor(const me_topk *t);
/* Sorts in place: best first. */
void me_topk_sort(me_topk *t);

/* --------------------------------------------------------------- hnsw.c */

typedef struct me_hnsw me_hnsw;

typedef struct me_hnsw_params {
    int32_t m;               /* links per node above layer 0; 2m on layer 0 */
    int32_t ef_construction;
    uint64_t seed;
} me_hnsw_params;

/* Creates an empty graph over v (not owned; v may grow between inserts). */
int me_hnsw_create(const me_hnsw_params *p, me_hnsw **out);
void me_hnsw_free(me_hnsw *g);
int64_t me_hnsw_size(const me_hnsw *g);
/* Inserts rows [size, upto) of v. pool may be NULL. */
int me_hnsw_add(me_hnsw *g, const me_vecs *v, int64_t upto, me_pool *pool, me_err *e);

/* Candidate filter: return nonzero to accept node i as a result. */
typedef int (*me_hnsw_accept_fn)(void *arg, int64_t node);

/* Approximate top-ef of accepted nodes for query q into out (k = out->k).
 * Traversal visits rejected nodes too; only results are filtered. */
int me_hnsw_search(const me_hnsw *g, const me_vecs *v, const float *q, int32_t ef,
                   me_hnsw_accept_fn accept, void *arg, me_topk *out, me_err *e);

/* Serialization (little-endian). me_hnsw_load validates every field: magic,
 * version, counts within caps, link targets < n_nodes and at a level the
 * target has, no duplicate links, exact length; n_expected nodes. */
int me_hnsw_save(const me_hnsw *g, uint8_t **buf, size_t *len, me_err *e);
int me_hnsw_load(const uint8_t *buf, size_t len, int64_t n_expected, me_hnsw **out, me_err *e);

/* -------------------------------------------------------------- chunk.c */

typedef struct me_span {
    int32_t start, end; /* [start, end) in pieces */
} me_span;

/* Default overlap when the caller names none: 64 pieces, at most w / 2. */
#define ME_CHUNK_OVERLAP 64
int32_t me_chunk_overlap_default(int32_t w);

/* Windows over n_pieces pieces: size w, stride w - overlap, while a window
 * ends before n_pieces; then a last full window [n_pieces - w, n_pieces)
 * (overlapping its neighbour by overlap or more). A document of at most w
 * pieces is one window [0, n_pieces); zero pieces give one empty window.
 * Every window has min(n_pieces, w) pieces. Returns the count written
 * (<= cap) or the count needed when spans is NULL. w must be > 0 and
 * 0 <= overlap < w. */
int32_t me_chunk_spans(int32_t n_pieces, int32_t w, int32_t overlap, me_span *spans, int32_t cap);

/* ------------------------------------------------------------- filter.c */

typedef enum me_filter_op {
    ME_FOP_EQ,
    ME_FOP_NE,
    ME_FOP_LT,
    ME_FOP_LE,
    ME_FOP_GT,
    ME_FOP_GE
} me_filter_op;

typedef struct me_filter {
    char field[256];
    me_filter_op op;
    int numeric;    /* value parsed as a finite number */
    double num;
    char str[1024];
} me_filter;

/* Parses "FIELD OP VALUE". Returns MEDEMBED_OK or _ERR_ARG with a message. */
int me_filter_parse(const char *expr, me_filter *f, me_err *e);
const char *me_filter_op_sql(me_filter_op op);

/* Attribute rows for one metadata object: calls emit(arg, key, num_or_NULL,
 * str_or_NULL) for every top-level scalar and every scalar array element. */
typedef int (*me_attr_emit_fn)(void *arg, const char *key, const double *num, const char *str);
int me_attrs_from_json(const char *json, me_attr_emit_fn emit, void *arg, me_err *e);

/* -------------------------------------------------------------- store.c */

#define ME_INDEX_FORMAT 1
#define ME_INDEX_MAX_ID 1024
#define ME_INDEX_MAX_DIM 65536

struct medembed_index {
    sqlite3 *db;
    char *path;
    int readonly;
    int broken;                /* memory no longer matches the file */
    pthread_rwlock_t rw;       /* searches: read; add/delete/flush: write */
    pthread_mutex_t db_mu;     /* one SQLite statement at a time from searches */

    /* settings */
    int32_t dim, vec_dtype, chunk_tokens, overlap, hnsw_m, hnsw_efc;
    /* model identity; has_model 0 for vector-only indexes */
    int has_model;
    char *model_path;
    char fingerprint[65];
    int32_t pooling, model_dtype, normalize, max_length;
    char *doc_prompt;          /* the documents' prompt ("" = none), NULL until first add */

    int64_t generation;        /* bumped by every committed add/delete */

    /* documents, in rowid order */
    int64_t n_docs, docs_cap;
    int64_t *doc_rowid;
    char **doc_ext;
    int64_t *doc_chunk0;
    int32_t *doc_n_chunks;

    /* chunks, in rowid order */
    int64_t chunks_cap;
    int64_t *ch_rowid;
    int32_t *ch_doc;           /* document slot */
    int32_t *ch_no;            /* chunk number within its document */
    int32_t *ch_start, *ch_end;
    me_vecs vecs;

    me_hnsw *hnsw;             /* NULL when hnsw_m == 0 */
    int hnsw_dirty;            /* graph differs from the stored one */
    int hnsw_stale;            /* graph must be rebuilt before use */
    int graph_at_open;         /* 0 loaded from the file, 1 rebuilt and saved, 2 rebuilt,
                                  not saved */
    int64_t reloads;           /* memory reloaded after another handle's commit */

    me_pool *pool;             /* exact search workers, created on first use */
    pthread_mutex_t pool_mu;
};

/* The handle's worker pool (all CPUs), created on first use; NULL if it
 * cannot be created. Writers use it for HNSW builds, searches for scans. */
me_pool *me_index_pool(medembed_index *ix);

/* Schema + settings for a new file. */
int me_store_create(medembed_index *ix, me_err *e);
/* Reads settings, documents, chunks and the graph; validates everything. */
int me_store_load(medembed_index *ix, me_err *e);

/* One document ready to store. */
typedef struct me_store_doc {
    const char *id;
    const char *text;     /* words for the keyword index, or NULL */
    size_t text_len;
    const char *metadata; /* JSON object text or NULL */
    int32_t n_chunks;
    const me_span *spans; /* n_chunks */
    const float *vecs;    /* n_chunks * dim */
} me_store_doc;

/* Inserts docs in one transaction and appends them to memory. */
/* Adds docs in one transaction; record_prompt, when not NULL, is stored as
 * the documents' prompt in the same transaction (the first add). */
int me_store_add(medembed_index *ix, const me_store_doc *docs, int32_t n,
                 const char *record_prompt, me_err *e);
/* Deletes the documents named by ids in one transaction: all of them, or
 * none when one is missing (MEDEMBED_ERR_NOT_FOUND naming the missing ids).
 * An id named twice is deleted once; *n_deleted gets the count. */
int me_store_delete_ids(medembed_index *ix, const char *const *ids, int32_t n,
                        int64_t *n_deleted, me_err *e);
/* Starts a write transaction (BEGIN IMMEDIATE: SQLite's write lock, waiting
 * up to the busy timeout) and reloads the memory copy when the stored
 * generation differs from ix->generation. me_store_write_end commits when
 * rc is MEDEMBED_OK, else rolls back, and returns the outcome. */
int me_store_write_begin(medembed_index *ix, me_err *e);
int me_store_write_end(medembed_index *ix, int rc, me_err *e);
/* Read-only handles follow the file: *changed = 1 when another handle
 * committed since this one loaded, or saved the graph this one lacks
 * (caller holds ix->rw shared; takes db_mu). me_store_refresh (caller holds
 * ix->rw exclusive) then reloads the data, or only the graph, in one read
 * transaction; until a stale graph is saved, searches are exact. */
int me_store_changed(medembed_index *ix, int *changed, me_err *e);
int me_store_refresh(medembed_index *ix, me_err *e);
/* Saves ix->hnsw as the graph of ix->generation (inside a write
 * transaction). */
int me_store_save_graph(medembed_index *ix, me_err *e);
/* The same through a separate writable connection, in its own transaction,
 * only while the stored generation is still ix->generation (read-only
 * handles recovering a stale graph). */
int me_store_save_graph_rw(medembed_index *ix, me_err *e);
/* Doc slot by rowid (binary search), or -1. */
int64_t me_store_doc_slot(const medembed_index *ix, int64_t rowid);
/* Metadata JSON text of a document (malloc'd), "{}" when none. */
char *me_store_metadata(medembed_index *ix, int64_t doc_rowid);
/* f32 vector of a chunk from disk (INT8 rescoring). */
int me_store_chunk_f32(medembed_index *ix, int64_t chunk_rowid, float *out, me_err *e);
/* Marks allowed[d] = 1 for documents matching all filters (allowed has
 * n_docs bytes, set to 1 first). */
int me_store_filter(medembed_index *ix, const me_filter *f, int32_t n, uint8_t *allowed,
                    me_err *e);

/* Keyword index: an FTS5 table `fts` whose rowid is the document's rowid,
 * holding its text (medembed_index_doc.text), tokenized with unicode61
 * (diacritics removed). Add and delete keep it in their transactions. */
#define ME_FTS_TABLE "fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2')"
#define ME_FTS_SCHEMA "CREATE VIRTUAL TABLE " ME_FTS_TABLE ";"
/* Creates the (empty) table in a file written before it existed. */
int me_store_fts_ensure(medembed_index *ix, me_err *e);
/* Documents with keyword text, or -1 when the file has no table. */
int64_t me_store_fts_count(medembed_index *ix);
/* Replaces the keyword text of the documents named by ids, in one write
 * transaction; ids not in the index are counted in *n_missing. lens may be
 * NULL (NUL-terminated). */
int me_store_set_texts(medembed_index *ix, const char *const *ids, const char *const *texts,
                       const size_t *lens, int32_t n, int64_t *n_missing, me_err *e);
/* BM25 top-k documents for an FTS5 MATCH expression (built by
 * me_fts_query), skipping documents not allowed: slot and score (the
 * negated bm25(), higher is better), best first; ties by rowid. */
int me_store_bm25(medembed_index *ix, const char *match, const uint8_t *allowed, int32_t k,
                  int32_t *slot, float *score, int32_t *n_out, me_err *e);

/* ---------------------------------------------------------------- fts.c */

/* User text -> FTS5 query: every whitespace-separated word that holds a
 * letter or digit becomes one quoted phrase (a '"' doubled), the phrases
 * joined by OR. FTS5 operators in the text (AND, NEAR, *, ^, :, parens)
 * are therefore only words. Returns malloc'd text ("" when no word
 * remains), or NULL when out of memory. */
char *me_fts_query(const char *text);

/* --------------------------------------------------------------- flat.c */

/* Work (chunks x dim) from which exact search uses the pool; tests lower it. */
extern int64_t me_flat_min_parallel;

/* Exact per-document top-k: a document's score is its best chunk's.
 * allowed: n_docs flags or NULL. out->id receives the best chunk index
 * (its document is ix->ch_doc[id]). */
int me_flat_search(medembed_index *ix, const float *q, const uint8_t *allowed, int32_t n_threads,
                   me_topk *out, me_err *e);

#endif
