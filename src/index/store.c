/*
 * store.c - the index file: one SQLite database in WAL mode.
 *
 * Why SQLite: it gives durability and atomic multi-row transactions, so an
 * add or delete either lands whole or not at all, and a process killed with
 * SIGKILL mid-add leaves the file with its last committed batch (WAL replay
 * on the next open). We write the hot path ourselves: vectors are loaded
 * into memory at open and scored by vec.c; SQLite is only the durable copy.
 *
 * Schema (format 1):
 *   settings(key PRIMARY KEY, value)      dim, dtype, chunking, HNSW, model
 *                                         identity, generation, format
 *   docs(id INTEGER PRIMARY KEY, ext_id TEXT UNIQUE, metadata TEXT)
 *   chunks(id INTEGER PRIMARY KEY, doc, chunk_no, tok_start, tok_end,
 *          vec BLOB, vec_f32 BLOB)       vec: f32 LE (dim x 4 bytes), or for
 *                                         INT8 a f32 scale + dim int8 with
 *                                         the f32 copy in vec_f32 (rescoring)
 *   attrs(doc, key, num, str)             flattened metadata for filters
 *   graph(id = 1, generation, data)       the serialized HNSW graph
 * PRAGMA application_id marks the file as ours.
 *
 * Writers serialise on SQLite's write lock: every add, delete and graph
 * save is one BEGIN IMMEDIATE transaction (me_store_write_begin) that
 * first reads the stored generation; when another handle has committed
 * since this one loaded, the memory copy is reloaded from the file inside
 * that transaction, and the generation is incremented from the stored
 * value. So concurrent writers (threads or processes) never lose or
 * mislabel each other's batches.
 *
 * The HNSW graph is saved with the generation it was built for, so a graph
 * saved before an interrupted add/delete is recognised as stale at open and
 * rebuilt, never trusted. The open that rebuilds it saves it once (through
 * its own connection, or a short-lived writable one for a read-only
 * handle), so later opens load it again.
 *
 * Everything read back is validated (ranges, blob sizes, finite floats,
 * chunk grouping), so a damaged or foreign file is MEDEMBED_ERR_FORMAT with
 * a message, never a crash.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"

#define ME_APP_ID 0x4d454458 /* "MEDX" */

/* ------------------------------------------------------------- helpers */

static int sql_status(int src)
{
    switch (src & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
        return MEDEMBED_ERR_FORMAT;
    case SQLITE_NOMEM:
        return MEDEMBED_ERR_NOMEM;
    case SQLITE_CONSTRAINT:
        return MEDEMBED_ERR_ARG;
    default:
        return MEDEMBED_ERR_IO;
    }
}

static int sql_fail(medembed_index *ix, int src, me_err *e, const char *what)
{
    return me_err_set(e, sql_status(src), "%s: %s: %s", ix->path, what, sqlite3_errmsg(ix->db));
}

static int exec(medembed_index *ix, const char *sql, me_err *e)
{
    int src = sqlite3_exec(ix->db, sql, NULL, NULL, NULL);
    if (src != SQLITE_OK)
        return sql_fail(ix, src, e, sql);
    return MEDEMBED_OK;
}

static int prepare(medembed_index *ix, const char *sql, sqlite3_stmt **st, me_err *e)
{
    int src = sqlite3_prepare_v2(ix->db, sql, -1, st, NULL);
    if (src != SQLITE_OK) {
        *st = NULL;
        return sql_fail(ix, src, e, "preparing a statement");
    }
    return MEDEMBED_OK;
}

static void rollback(medembed_index *ix)
{
    sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
}

static int set_setting_int(medembed_index *ix, sqlite3_stmt *st, const char *key, int64_t v,
                           me_err *e)
{
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    int src = sqlite3_step(st);
    if (src != SQLITE_DONE)
        return sql_fail(ix, src, e, "writing settings");
    return MEDEMBED_OK;
}

static int set_setting_text(medembed_index *ix, sqlite3_stmt *st, const char *key, const char *v,
                            me_err *e)
{
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v ? v : "", -1, SQLITE_TRANSIENT);
    int src = sqlite3_step(st);
    if (src != SQLITE_DONE)
        return sql_fail(ix, src, e, "writing settings");
    return MEDEMBED_OK;
}

/* -------------------------------------------------------------- create */

static const char *SCHEMA =
    "CREATE TABLE settings(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE docs(id INTEGER PRIMARY KEY, ext_id TEXT NOT NULL UNIQUE, metadata TEXT);"
    "CREATE TABLE chunks(id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, chunk_no INTEGER NOT "
    "NULL, tok_start INTEGER NOT NULL, tok_end INTEGER NOT NULL, vec BLOB NOT NULL, vec_f32 "
    "BLOB);"
    "CREATE INDEX chunks_by_doc ON chunks(doc);"
    "CREATE TABLE attrs(doc INTEGER NOT NULL, key TEXT NOT NULL, num REAL, str TEXT);"
    "CREATE INDEX attrs_num ON attrs(key, num);"
    "CREATE INDEX attrs_str ON attrs(key, str);"
    "CREATE INDEX attrs_doc ON attrs(doc);"
    "CREATE TABLE graph(id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL, "
    "data BLOB NOT NULL);" ME_FTS_SCHEMA;

int me_store_create(medembed_index *ix, me_err *e)
{
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA application_id = %d", ME_APP_ID);
    FORWARD_IF_ERROR(exec(ix, pragma, e));
    FORWARD_IF_ERROR(exec(ix, "BEGIN IMMEDIATE", e));
    int rc = exec(ix, SCHEMA, e);
    sqlite3_stmt *st = NULL;
    if (rc == MEDEMBED_OK)
        rc = prepare(ix, "INSERT INTO settings(key, value) VALUES (?1, ?2)", &st, e);
    const struct {
        const char *k;
        int64_t v;
    } ints[] = {
        {"format", ME_INDEX_FORMAT},
        {"dim", ix->dim},
        {"vec_dtype", ix->vec_dtype},
        {"chunk_tokens", ix->chunk_tokens},
        {"overlap", ix->overlap},
        {"hnsw_m", ix->hnsw_m},
        {"hnsw_ef_construction", ix->hnsw_efc},
        {"has_model", ix->has_model},
        {"model_pooling", ix->pooling},
        {"model_dtype", ix->model_dtype},
        {"model_normalize", ix->normalize},
        {"model_max_length", ix->max_length},
        {"generation", 0},
    };
    for (size_t i = 0; rc == MEDEMBED_OK && i < sizeof ints / sizeof ints[0]; i++)
        rc = set_setting_int(ix, st, ints[i].k, ints[i].v, e);
    if (rc == MEDEMBED_OK)
        rc = set_setting_text(ix, st, "model_path", ix->model_path, e);
    if (rc == MEDEMBED_OK)
        rc = set_setting_text(ix, st, "model_fingerprint", ix->fingerprint, e);
    if (rc == MEDEMBED_OK)
        rc = set_setting_text(ix, st, "application", "medembed-index", e);
    sqlite3_finalize(st);
    if (rc == MEDEMBED_OK)
        rc = exec(ix, "COMMIT", e);
    if (rc != MEDEMBED_OK)
        rollback(ix);
    return rc;
}

/* ---------------------------------------------------------------- load */

/* Steps the settings query to `key`'s row and checks its value's SQLite type. */
static int find_setting(medembed_index *ix, sqlite3_stmt *st, const char *key, int type,
                        const char *type_name, me_err *e)
{
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src != SQLITE_ROW) {
        if (src == SQLITE_DONE)
            return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: setting \"%s\" is missing", ix->path,
                              key);
        return sql_fail(ix, src, e, "reading settings");
    }
    if (sqlite3_column_type(st, 0) != type)
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: setting \"%s\" is not %s", ix->path, key,
                          type_name);
    return MEDEMBED_OK;
}

static int get_int(medembed_index *ix, sqlite3_stmt *st, const char *key, int64_t lo, int64_t hi,
                   int64_t *out, me_err *e)
{
    FORWARD_IF_ERROR(find_setting(ix, st, key, SQLITE_INTEGER, "an integer", e));
    int64_t v = sqlite3_column_int64(st, 0);
    if (v < lo || v > hi)
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: setting \"%s\" = %lld, allowed %lld..%lld",
                          ix->path, key, (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return MEDEMBED_OK;
}

static int get_text(medembed_index *ix, sqlite3_stmt *st, const char *key, char **out, me_err *e)
{
    FORWARD_IF_ERROR(find_setting(ix, st, key, SQLITE_TEXT, "text", e));
    const unsigned char *t = sqlite3_column_text(st, 0);
    int n = sqlite3_column_bytes(st, 0);
    char *s = malloc((size_t)n + 1);
    RETURN_ERROR_IF(!s, e, MEDEMBED_ERR_NOMEM, "out of memory");
    memcpy(s, t, (size_t)n);
    s[n] = 0;
    *out = s;
    return MEDEMBED_OK;
}

static int load_settings(medembed_index *ix, me_err *e)
{
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(prepare(ix, "SELECT value FROM settings WHERE key = ?1", &st, e));
    int64_t fmt = 0, dim = 0, vd = 0, ct = 0, ov = 0, hm = 0, hef = 0, hasm = 0, pool = 0,
            mdt = 0, norm = 0, ml = 0, gen = 0;
    char *app = NULL, *fp = NULL;
    int rc = get_text(ix, st, "application", &app, e);
    if (rc == MEDEMBED_OK && strcmp(app, "medembed-index") != 0)
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: not a medembed index", ix->path);
    free(app);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "format", 0, INT64_MAX, &fmt, e);
    if (rc == MEDEMBED_OK && fmt != ME_INDEX_FORMAT)
        rc = me_err_set(e, MEDEMBED_ERR_UNSUPPORTED,
                        "%s: index format %lld; this build reads format %d", ix->path,
                        (long long)fmt, ME_INDEX_FORMAT);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "dim", 1, ME_INDEX_MAX_DIM, &dim, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "vec_dtype", 0, 1, &vd, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "chunk_tokens", 0, 1 << 20, &ct, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "overlap", 0, ct > 0 ? ct - 1 : 0, &ov, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "hnsw_m", 0, 128, &hm, e);
    if (rc == MEDEMBED_OK && hm == 1)
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: setting \"hnsw_m\" = 1", ix->path);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "hnsw_ef_construction", 1, 100000, &hef, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "has_model", 0, 1, &hasm, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "model_pooling", -1, 3, &pool, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "model_dtype", -1, 2, &mdt, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "model_normalize", 0, 1, &norm, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "model_max_length", 0, 1 << 20, &ml, e);
    if (rc == MEDEMBED_OK)
        rc = get_int(ix, st, "generation", 0, INT64_MAX, &gen, e);
    if (rc == MEDEMBED_OK)
        rc = get_text(ix, st, "model_path", &ix->model_path, e);
    if (rc == MEDEMBED_OK)
        rc = get_text(ix, st, "model_fingerprint", &fp, e);
    if (rc == MEDEMBED_OK) { /* optional: absent until the first documents */
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, "doc_prompt", -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            rc = get_text(ix, st, "doc_prompt", &ix->doc_prompt, e);
    }
    if (rc == MEDEMBED_OK) {
        size_t n = strlen(fp);
        if ((hasm && n != 64) || (!hasm && n != 0) || strspn(fp, "0123456789abcdef") != n)
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: bad model fingerprint \"%.80s\"",
                            ix->path, fp);
        else
            memcpy(ix->fingerprint, fp, n + 1);
    }
    free(fp);
    sqlite3_finalize(st);
    if (rc != MEDEMBED_OK)
        return rc;
    ix->dim = (int32_t)dim;
    ix->vec_dtype = (int32_t)vd;
    ix->chunk_tokens = (int32_t)ct;
    ix->overlap = (int32_t)ov;
    ix->hnsw_m = (int32_t)hm;
    ix->hnsw_efc = (int32_t)hef;
    ix->has_model = (int)hasm;
    ix->pooling = (int32_t)pool;
    ix->model_dtype = (int32_t)mdt;
    ix->normalize = (int32_t)norm;
    ix->max_length = (int32_t)ml;
    ix->generation = gen;
    return MEDEMBED_OK;
}

static int reserve_docs(medembed_index *ix, int64_t n)
{
    if (n <= ix->docs_cap)
        return MEDEMBED_OK;
    int64_t cap = ix->docs_cap ? ix->docs_cap : 256;
    while (cap < n)
        cap *= 2;
    int64_t *a = realloc(ix->doc_rowid, sizeof *a * (size_t)cap);
    if (!a)
        return MEDEMBED_ERR_NOMEM;
    ix->doc_rowid = a;
    char **b = realloc(ix->doc_ext, sizeof *b * (size_t)cap);
    if (!b)
        return MEDEMBED_ERR_NOMEM;
    ix->doc_ext = b;
    int64_t *c = realloc(ix->doc_chunk0, sizeof *c * (size_t)cap);
    if (!c)
        return MEDEMBED_ERR_NOMEM;
    ix->doc_chunk0 = c;
    int32_t *d = realloc(ix->doc_n_chunks, sizeof *d * (size_t)cap);
    if (!d)
        return MEDEMBED_ERR_NOMEM;
    ix->doc_n_chunks = d;
    ix->docs_cap = cap;
    return MEDEMBED_OK;
}

static int reserve_chunks(medembed_index *ix, int64_t n)
{
    if (me_vecs_reserve(&ix->vecs, n) != MEDEMBED_OK)
        return MEDEMBED_ERR_NOMEM;
    if (n <= ix->chunks_cap)
        return MEDEMBED_OK;
    int64_t cap = ix->chunks_cap ? ix->chunks_cap : 256;
    while (cap < n)
        cap *= 2;
    int64_t *a = realloc(ix->ch_rowid, sizeof *a * (size_t)cap);
    if (!a)
        return MEDEMBED_ERR_NOMEM;
    ix->ch_rowid = a;
    int32_t **arrs[] = {&ix->ch_doc, &ix->ch_no, &ix->ch_start, &ix->ch_end};
    for (size_t i = 0; i < 4; i++) {
        int32_t *p = realloc(*arrs[i], sizeof *p * (size_t)cap);
        if (!p)
            return MEDEMBED_ERR_NOMEM;
        *arrs[i] = p;
    }
    ix->chunks_cap = cap;
    return MEDEMBED_OK;
}

int64_t me_store_doc_slot(const medembed_index *ix, int64_t rowid)
{
    int64_t lo = 0, hi = ix->n_docs - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (ix->doc_rowid[mid] == rowid)
            return mid;
        if (ix->doc_rowid[mid] < rowid)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static int all_finite(const float *x, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* Decodes a stored vector blob into row `row` of ix->vecs. */
static int decode_vec(medembed_index *ix, const void *blob, int nbytes, int64_t row,
                      int64_t rowid, me_err *e)
{
    size_t d = (size_t)ix->dim;
    if (ix->vec_dtype == MEDEMBED_VEC_INT8) {
        RETURN_ERROR_IF(!blob || (size_t)nbytes != 4 + d, e, MEDEMBED_ERR_FORMAT,
                        "%s: chunk %lld: int8 vector of %d bytes, expected %zu", ix->path,
                        (long long)rowid, nbytes, 4 + d);
        float s;
        memcpy(&s, blob, 4);
        /* 0: an all-zero vector (me_quant_row_s8; files written before
         * the index used that quantizer hold 1 there, also fine) */
        RETURN_ERROR_IF(!isfinite(s) || s < 0, e, MEDEMBED_ERR_FORMAT,
                        "%s: chunk %lld: bad int8 scale", ix->path, (long long)rowid);
        ix->vecs.scale[row] = s;
        memcpy(ix->vecs.q + (size_t)row * d, (const uint8_t *)blob + 4, d);
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(!blob || (size_t)nbytes != 4 * d, e, MEDEMBED_ERR_FORMAT,
                    "%s: chunk %lld: vector of %d bytes, expected %zu", ix->path,
                    (long long)rowid, nbytes, 4 * d);
    float *dst = ix->vecs.f + (size_t)row * d;
    memcpy(dst, blob, 4 * d);
    RETURN_ERROR_IF(!all_finite(dst, ix->dim), e, MEDEMBED_ERR_FORMAT,
                    "%s: chunk %lld: vector holds NaN or infinity", ix->path, (long long)rowid);
    return MEDEMBED_OK;
}

static int load_docs(medembed_index *ix, me_err *e)
{
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(prepare(ix, "SELECT id, ext_id FROM docs ORDER BY id", &st, e));
    int rc = MEDEMBED_OK, src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        int n = sqlite3_column_bytes(st, 1);
        const unsigned char *t = sqlite3_column_text(st, 1);
        if (sqlite3_column_type(st, 1) != SQLITE_TEXT || n < 1 || n > ME_INDEX_MAX_ID ||
            memchr(t, 0, (size_t)n)) {
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: document row %lld has a bad id",
                            ix->path, (long long)id);
            break;
        }
        if (reserve_docs(ix, ix->n_docs + 1) != MEDEMBED_OK) {
            rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory loading documents");
            break;
        }
        char *s = malloc((size_t)n + 1);
        if (!s) {
            rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory loading documents");
            break;
        }
        memcpy(s, t, (size_t)n);
        s[n] = 0;
        int64_t d = ix->n_docs++;
        ix->doc_rowid[d] = id;
        ix->doc_ext[d] = s;
        ix->doc_chunk0[d] = -1;
        ix->doc_n_chunks[d] = 0;
    }
    if (rc == MEDEMBED_OK && src != SQLITE_DONE)
        rc = sql_fail(ix, src, e, "reading documents");
    sqlite3_finalize(st);
    return rc;
}

static int load_chunks(medembed_index *ix, me_err *e)
{
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(prepare(
        ix, "SELECT id, doc, chunk_no, tok_start, tok_end, vec FROM chunks ORDER BY id", &st, e));
    int rc = MEDEMBED_OK, src;
    int64_t last_doc = -1;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        int64_t doc = sqlite3_column_int64(st, 1);
        int64_t no = sqlite3_column_int64(st, 2);
        int64_t ts = sqlite3_column_int64(st, 3);
        int64_t te = sqlite3_column_int64(st, 4);
        int64_t slot = me_store_doc_slot(ix, doc);
        if (slot < 0) {
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: chunk %lld belongs to no document",
                            ix->path, (long long)id);
            break;
        }
        if (slot < last_doc || (slot != last_doc && ix->doc_n_chunks[slot] != 0)) {
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                            "%s: chunks of document \"%s\" are not stored together", ix->path,
                            ix->doc_ext[slot]);
            break;
        }
        if (no != ix->doc_n_chunks[slot] || ts < 0 || te < ts || te > INT32_MAX) {
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                            "%s: chunk %lld of document \"%s\": bad number %lld or span "
                            "[%lld, %lld)",
                            ix->path, (long long)id, ix->doc_ext[slot], (long long)no,
                            (long long)ts, (long long)te);
            break;
        }
        int64_t c = ix->vecs.n;
        if (reserve_chunks(ix, c + 1) != MEDEMBED_OK) {
            rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory loading %lld vectors",
                            (long long)(c + 1));
            break;
        }
        rc = decode_vec(ix, sqlite3_column_blob(st, 5), sqlite3_column_bytes(st, 5), c, id, e);
        if (rc != MEDEMBED_OK)
            break;
        ix->vecs.n = c + 1;
        ix->ch_rowid[c] = id;
        ix->ch_doc[c] = (int32_t)slot;
        ix->ch_no[c] = (int32_t)no;
        ix->ch_start[c] = (int32_t)ts;
        ix->ch_end[c] = (int32_t)te;
        if (ix->doc_n_chunks[slot] == 0)
            ix->doc_chunk0[slot] = c;
        ix->doc_n_chunks[slot]++;
        last_doc = slot;
    }
    if (rc == MEDEMBED_OK && src != SQLITE_DONE)
        rc = sql_fail(ix, src, e, "reading chunks");
    sqlite3_finalize(st);
    for (int64_t d = 0; rc == MEDEMBED_OK && d < ix->n_docs; d++)
        if (ix->doc_n_chunks[d] == 0)
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: document \"%s\" has no chunks",
                            ix->path, ix->doc_ext[d]);
    return rc;
}

static int load_graph(medembed_index *ix, me_err *e)
{
    if (ix->hnsw_m == 0)
        return MEDEMBED_OK;
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(prepare(ix, "SELECT generation, data FROM graph WHERE id = 1", &st, e));
    int src = sqlite3_step(st);
    int rc = MEDEMBED_OK;
    if (src == SQLITE_ROW && sqlite3_column_int64(st, 0) == ix->generation) {
        rc = me_hnsw_load(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1),
                          ix->vecs.n, &ix->hnsw, e);
        if (rc != MEDEMBED_OK)
            me_err_prefix(e, rc, "%s", ix->path);
    } else if (src == SQLITE_ROW || src == SQLITE_DONE) {
        ix->hnsw_stale = 1; /* older than the data (an interrupted add/delete) */
    } else {
        rc = sql_fail(ix, src, e, "reading the HNSW graph");
    }
    sqlite3_finalize(st);
    return rc;
}

int me_store_load(medembed_index *ix, me_err *e)
{
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(prepare(ix, "PRAGMA application_id", &st, e));
    int src = sqlite3_step(st);
    int64_t app = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (src != SQLITE_ROW)
        return sql_fail(ix, src, e, "reading the header");
    RETURN_ERROR_IF(app != ME_APP_ID, e, MEDEMBED_ERR_FORMAT,
                    "%s: not a medembed index (SQLite application_id %lld)", ix->path,
                    (long long)app);
    /* One read transaction, so documents, chunks and graph are one snapshot
     * even while another process writes. */
    FORWARD_IF_ERROR(exec(ix, "BEGIN", e));
    int rc = load_settings(ix, e);
    ix->vecs.dim = ix->dim;
    ix->vecs.dtype = ix->vec_dtype;
    if (rc == MEDEMBED_OK)
        rc = load_docs(ix, e);
    if (rc == MEDEMBED_OK)
        rc = load_chunks(ix, e);
    if (rc == MEDEMBED_OK)
        rc = load_graph(ix, e);
    exec(ix, "COMMIT", NULL);
    return rc;
}

/* ----------------------------------------------------------------- add */

typedef struct attr_ctx {
    medembed_index *ix;
    sqlite3_stmt *st;
    int64_t doc;
} attr_ctx;

static int attr_emit(void *arg, const char *key, const double *num, const char *str)
{
    attr_ctx *a = arg;
    sqlite3_reset(a->st);
    sqlite3_bind_int64(a->st, 1, a->doc);
    sqlite3_bind_text(a->st, 2, key, -1, SQLITE_STATIC);
    if (num)
        sqlite3_bind_double(a->st, 3, *num);
    else
        sqlite3_bind_null(a->st, 3);
    if (str)
        sqlite3_bind_text(a->st, 4, str, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(a->st, 4);
    return sqlite3_step(a->st) == SQLITE_DONE ? MEDEMBED_OK : MEDEMBED_ERR_IO;
}

/* Increments the stored generation inside the caller's write transaction
 * (which me_store_write_begin synced memory with, so it equals
 * ix->generation + 1 afterwards). */
static int bump_generation(medembed_index *ix, me_err *e)
{
    return exec(ix, "UPDATE settings SET value = value + 1 WHERE key = 'generation'", e);
}

/* Empties the memory copy (documents, chunks, vectors, graph) so the load
 * functions can fill it again. */
static void clear_memory(medembed_index *ix)
{
    for (int64_t d = 0; d < ix->n_docs; d++)
        free(ix->doc_ext[d]);
    ix->n_docs = 0;
    ix->vecs.n = 0;
    me_hnsw_free(ix->hnsw);
    ix->hnsw = NULL;
    ix->hnsw_stale = 0;
    ix->hnsw_dirty = 0;
    free(ix->model_path);
    ix->model_path = NULL;
    free(ix->doc_prompt);
    ix->doc_prompt = NULL;
}

static int read_generation(medembed_index *ix, int64_t *gen, me_err *e)
{
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(
        prepare(ix, "SELECT value FROM settings WHERE key = 'generation'", &st, e));
    int src = sqlite3_step(st);
    int rc = MEDEMBED_OK;
    if (src == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER)
        *gen = sqlite3_column_int64(st, 0);
    else if (src == SQLITE_ROW || src == SQLITE_DONE)
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: setting \"generation\" is missing",
                        ix->path);
    else
        rc = sql_fail(ix, src, e, "reading the generation");
    sqlite3_finalize(st);
    return rc;
}

/* Fills the memory copy again from the file (inside the caller's
 * transaction); a failure marks the handle broken. */
static int reload(medembed_index *ix, me_err *e)
{
    int32_t dim = ix->dim, dt = ix->vec_dtype;
    clear_memory(ix);
    int rc = load_settings(ix, e);
    if (rc == MEDEMBED_OK && (ix->dim != dim || ix->vec_dtype != dt))
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: settings changed under an open handle",
                        ix->path);
    if (rc == MEDEMBED_OK)
        rc = load_docs(ix, e);
    if (rc == MEDEMBED_OK)
        rc = load_chunks(ix, e);
    if (rc == MEDEMBED_OK)
        rc = load_graph(ix, e);
    if (rc != MEDEMBED_OK)
        ix->broken = 1;
    ix->reloads++;
    return rc;
}

/* The stored generation and the graph's (-1 when there is none). */
static int read_generations(medembed_index *ix, int64_t *gen, int64_t *graph_gen, me_err *e)
{
    FORWARD_IF_ERROR(read_generation(ix, gen, e));
    *graph_gen = -1;
    if (ix->hnsw_m == 0)
        return MEDEMBED_OK;
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(prepare(ix, "SELECT generation FROM graph WHERE id = 1", &st, e));
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *graph_gen = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? MEDEMBED_OK
                                                   : sql_fail(ix, src, e, "reading the graph");
}

int me_store_changed(medembed_index *ix, int *changed, me_err *e)
{
    int64_t g = 0, gg = -1;
    *changed = 0;
    pthread_mutex_lock(&ix->db_mu);
    int rc = read_generations(ix, &g, &gg, e);
    pthread_mutex_unlock(&ix->db_mu);
    if (rc == MEDEMBED_OK)
        *changed = g != ix->generation || (ix->hnsw_m > 0 && ix->hnsw_stale && gg == g);
    return rc;
}

int me_store_refresh(medembed_index *ix, me_err *e)
{
    RETURN_ERROR_IF(ix->broken, e, MEDEMBED_ERR_INTERNAL,
                    "%s: the handle failed earlier; reopen the index", ix->path);
    /* one read transaction: data and graph are one snapshot */
    FORWARD_IF_ERROR(exec(ix, "BEGIN", e));
    int64_t g = 0, gg = -1;
    int rc = read_generations(ix, &g, &gg, e);
    if (rc == MEDEMBED_OK && g != ix->generation) {
        rc = reload(ix, e);
    } else if (rc == MEDEMBED_OK && ix->hnsw_m > 0 && ix->hnsw_stale && gg == g) {
        /* the writer has saved the graph for the data this handle holds */
        me_hnsw_free(ix->hnsw);
        ix->hnsw = NULL;
        ix->hnsw_stale = 0;
        rc = load_graph(ix, e);
        if (rc != MEDEMBED_OK)
            ix->broken = 1;
    }
    exec(ix, "COMMIT", NULL);
    return rc;
}

int me_store_write_begin(medembed_index *ix, me_err *e)
{
    RETURN_ERROR_IF(ix->broken, e, MEDEMBED_ERR_INTERNAL,
                    "%s: the handle failed earlier; reopen the index", ix->path);
    FORWARD_IF_ERROR(exec(ix, "BEGIN IMMEDIATE", e));
    int64_t gen = 0;
    int rc = read_generation(ix, &gen, e);
    if (rc == MEDEMBED_OK && gen != ix->generation)
        rc = reload(ix, e); /* another handle committed since this one loaded */
    if (rc != MEDEMBED_OK)
        rollback(ix);
    return rc;
}

int me_store_write_end(medembed_index *ix, int rc, me_err *e)
{
    if (rc == MEDEMBED_OK)
        rc = exec(ix, "COMMIT", e);
    if (rc != MEDEMBED_OK)
        rollback(ix);
    return rc;
}

int me_store_add(medembed_index *ix, const me_store_doc *docs, int32_t n,
                 const char *record_prompt, me_err *e)
{
    size_t d = (size_t)ix->dim;
    int64_t n_new_chunks = 0;
    for (int32_t i = 0; i < n; i++)
        n_new_chunks += docs[i].n_chunks;
    char **ext = calloc((size_t)(n ? n : 1), sizeof *ext);
    int64_t *rowids = malloc(sizeof *rowids * (size_t)(n ? n : 1));
    int64_t *crow = malloc(sizeof *crow * (size_t)(n_new_chunks ? n_new_chunks : 1));
    uint8_t *blob = malloc(4 + 4 * d);
    int rc = (ext && rowids && crow && blob) ? MEDEMBED_OK : MEDEMBED_ERR_NOMEM;
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++) {
        ext[i] = strdup(docs[i].id);
        if (!ext[i])
            rc = MEDEMBED_ERR_NOMEM;
    }
    if (rc != MEDEMBED_OK) {
        me_err_set(e, rc, "out of memory for %d documents", n);
        goto out;
    }
    sqlite3_stmt *sd = NULL, *sc = NULL, *sa = NULL, *sf = NULL;
    /* The write lock, held from the generation check to the commit. */
    rc = me_store_write_begin(ix, e);
    if (rc != MEDEMBED_OK)
        goto out;
    /* Everything that can fail in memory is done before the commit, so a
     * commit is always followed by a consistent in-memory copy. */
    if (reserve_docs(ix, ix->n_docs + n) != MEDEMBED_OK ||
        reserve_chunks(ix, ix->vecs.n + n_new_chunks) != MEDEMBED_OK)
        rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory for %d documents", n);
    if (rc == MEDEMBED_OK && record_prompt && ix->doc_prompt) {
        /* another writer recorded the documents' prompt meanwhile */
        if (strcmp(record_prompt, ix->doc_prompt) != 0)
            rc = me_err_set(e, MEDEMBED_ERR_MISMATCH,
                            "the index's documents were embedded with prompt \"%s\" (recorded "
                            "by another writer), not \"%s\"",
                            ix->doc_prompt, record_prompt);
        record_prompt = NULL;
    }
    if (rc != MEDEMBED_OK) {
        rollback(ix);
        goto out;
    }
    rc = prepare(ix, "INSERT INTO docs(ext_id, metadata) VALUES (?1, ?2)", &sd, e);
    if (rc == MEDEMBED_OK)
        rc = prepare(ix,
                     "INSERT INTO chunks(doc, chunk_no, tok_start, tok_end, vec, vec_f32) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                     &sc, e);
    if (rc == MEDEMBED_OK)
        rc = prepare(ix, "INSERT INTO attrs(doc, key, num, str) VALUES (?1, ?2, ?3, ?4)", &sa, e);
    if (rc == MEDEMBED_OK)
        rc = prepare(ix, "INSERT INTO fts(rowid, text) VALUES (?1, ?2)", &sf, e);
    int64_t ci = 0;
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++) {
        sqlite3_reset(sd);
        sqlite3_bind_text(sd, 1, docs[i].id, -1, SQLITE_STATIC);
        if (docs[i].metadata)
            sqlite3_bind_text(sd, 2, docs[i].metadata, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(sd, 2);
        int src = sqlite3_step(sd);
        if (src == SQLITE_CONSTRAINT || (src & 0xff) == SQLITE_CONSTRAINT) {
            rc = me_err_set(e, MEDEMBED_ERR_ARG, "duplicate id \"%s\" (already in the index)",
                            docs[i].id);
            break;
        }
        if (src != SQLITE_DONE) {
            rc = sql_fail(ix, src, e, "inserting a document");
            break;
        }
        rowids[i] = sqlite3_last_insert_rowid(ix->db);
        if (docs[i].text) {
            sqlite3_reset(sf);
            sqlite3_bind_int64(sf, 1, rowids[i]);
            sqlite3_bind_text(sf, 2, docs[i].text, (int)docs[i].text_len, SQLITE_STATIC);
            src = sqlite3_step(sf);
            if (src != SQLITE_DONE) {
                rc = sql_fail(ix, src, e, "indexing a document's words");
                break;
            }
        }
        attr_ctx ac = {ix, sa, rowids[i]};
        rc = me_attrs_from_json(docs[i].metadata, attr_emit, &ac, e);
        if (rc != MEDEMBED_OK) {
            me_err_prefix(e, rc, "document \"%s\"", docs[i].id);
            break;
        }
        for (int32_t c = 0; c < docs[i].n_chunks && rc == MEDEMBED_OK; c++) {
            const float *v = docs[i].vecs + (size_t)c * d;
            if (!all_finite(v, ix->dim)) {
                rc = me_err_set(e, MEDEMBED_ERR_ARG, "document \"%s\": vector holds NaN or "
                                "infinity", docs[i].id);
                break;
            }
            sqlite3_reset(sc);
            sqlite3_bind_int64(sc, 1, rowids[i]);
            sqlite3_bind_int(sc, 2, c);
            sqlite3_bind_int(sc, 3, docs[i].spans[c].start);
            sqlite3_bind_int(sc, 4, docs[i].spans[c].end);
            if (ix->vec_dtype == MEDEMBED_VEC_INT8) {
                float s = me_quant_row_s8(v, ix->dim, (int8_t *)(blob + 4));
                memcpy(blob, &s, 4);
                sqlite3_bind_blob(sc, 5, blob, (int)(4 + d), SQLITE_STATIC);
                sqlite3_bind_blob(sc, 6, v, (int)(4 * d), SQLITE_STATIC);
            } else {
                sqlite3_bind_blob(sc, 5, v, (int)(4 * d), SQLITE_STATIC);
                sqlite3_bind_null(sc, 6);
            }
            src = sqlite3_step(sc);
            if (src != SQLITE_DONE)
                rc = sql_fail(ix, src, e, "inserting a chunk");
            else
                crow[ci++] = sqlite3_last_insert_rowid(ix->db);
        }
    }
    sqlite3_finalize(sd);
    sqlite3_finalize(sc);
    sqlite3_finalize(sa);
    sqlite3_finalize(sf);
    if (rc == MEDEMBED_OK)
        rc = bump_generation(ix, e);
    char *kept = NULL;
    if (rc == MEDEMBED_OK && record_prompt) {
        sqlite3_stmt *ss = NULL;
        kept = strdup(record_prompt);
        rc = kept ? prepare(ix, "INSERT OR REPLACE INTO settings(key, value) VALUES(?1, ?2)",
                            &ss, e)
                  : me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
        if (rc == MEDEMBED_OK)
            rc = set_setting_text(ix, ss, "doc_prompt", record_prompt, e);
        sqlite3_finalize(ss);
    }
    rc = me_store_write_end(ix, rc, e);
    if (rc != MEDEMBED_OK) {
        free(kept);
        goto out;
    }
    /* Committed: mirror it in memory (capacity was reserved above). */
    ix->generation++;
    if (kept) {
        free(ix->doc_prompt);
        ix->doc_prompt = kept;
    }
    ci = 0;
    for (int32_t i = 0; i < n; i++) {
        int64_t slot = ix->n_docs++;
        ix->doc_rowid[slot] = rowids[i];
        ix->doc_ext[slot] = ext[i];
        ext[i] = NULL;
        ix->doc_chunk0[slot] = ix->vecs.n;
        ix->doc_n_chunks[slot] = docs[i].n_chunks;
        for (int32_t c = 0; c < docs[i].n_chunks; c++) {
            int64_t r = ix->vecs.n++;
            const float *v = docs[i].vecs + (size_t)c * d;
            if (ix->vec_dtype == MEDEMBED_VEC_INT8)
                ix->vecs.scale[r] = me_quant_row_s8(v, ix->dim, ix->vecs.q + (size_t)r * d);
            else
                memcpy(ix->vecs.f + (size_t)r * d, v, 4 * d);
            ix->ch_rowid[r] = crow[ci++];
            ix->ch_doc[r] = (int32_t)slot;
            ix->ch_no[r] = c;
            ix->ch_start[r] = docs[i].spans[c].start;
            ix->ch_end[r] = docs[i].spans[c].end;
        }
    }
    if (ix->hnsw && !ix->hnsw_stale) {
        me_err ge;
        if (me_hnsw_add(ix->hnsw, &ix->vecs, ix->vecs.n, me_index_pool(ix), &ge) != MEDEMBED_OK)
            ix->hnsw_stale = 1; /* rebuilt at flush; search falls back to exact */
    }
    ix->hnsw_dirty = ix->hnsw_m > 0;
out:
    for (int32_t i = 0; ext && i < n; i++)
        free(ext[i]);
    free(ext);
    free(rowids);
    free(crow);
    free(blob);
    return rc;
}

/* -------------------------------------------------------------- delete */

/* Removes document slot `slot`, its chunk range and vectors from memory. */
static void compact_slot(medembed_index *ix, int64_t slot)
{
    int64_t c0 = ix->doc_chunk0[slot];
    int64_t nc = ix->doc_n_chunks[slot];
    int64_t tail = ix->vecs.n - (c0 + nc);
    size_t d = (size_t)ix->dim;
    if (ix->vec_dtype == MEDEMBED_VEC_INT8) {
        memmove(ix->vecs.q + (size_t)c0 * d, ix->vecs.q + (size_t)(c0 + nc) * d,
                (size_t)tail * d);
        memmove(ix->vecs.scale + c0, ix->vecs.scale + c0 + nc, sizeof(float) * (size_t)tail);
    } else {
        memmove(ix->vecs.f + (size_t)c0 * d, ix->vecs.f + (size_t)(c0 + nc) * d,
                sizeof(float) * (size_t)tail * d);
    }
    memmove(ix->ch_rowid + c0, ix->ch_rowid + c0 + nc, sizeof(int64_t) * (size_t)tail);
    int32_t *arrs[] = {ix->ch_doc, ix->ch_no, ix->ch_start, ix->ch_end};
    for (size_t i = 0; i < 4; i++)
        memmove(arrs[i] + c0, arrs[i] + c0 + nc, sizeof(int32_t) * (size_t)tail);
    ix->vecs.n -= nc;
    for (int64_t c = c0; c < ix->vecs.n; c++)
        ix->ch_doc[c]--;
    free(ix->doc_ext[slot]);
    int64_t dt = ix->n_docs - slot - 1;
    memmove(ix->doc_rowid + slot, ix->doc_rowid + slot + 1, sizeof(int64_t) * (size_t)dt);
    memmove(ix->doc_ext + slot, ix->doc_ext + slot + 1, sizeof(char *) * (size_t)dt);
    memmove(ix->doc_chunk0 + slot, ix->doc_chunk0 + slot + 1, sizeof(int64_t) * (size_t)dt);
    memmove(ix->doc_n_chunks + slot, ix->doc_n_chunks + slot + 1, sizeof(int32_t) * (size_t)dt);
    ix->n_docs--;
    for (int64_t s = slot; s < ix->n_docs; s++)
        ix->doc_chunk0[s] -= nc;
}

static int cmp_i64_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int me_store_delete_ids(medembed_index *ix, const char *const *ids, int32_t n,
                        int64_t *n_deleted, me_err *e)
{
    *n_deleted = 0;
    int64_t *rowid = malloc(sizeof *rowid * (size_t)(n ? n : 1));
    RETURN_ERROR_IF(!rowid, e, MEDEMBED_ERR_NOMEM, "out of memory");
    int rc = me_store_write_begin(ix, e);
    if (rc != MEDEMBED_OK) {
        free(rowid);
        return rc;
    }
    sqlite3_stmt *st = NULL;
    rc = prepare(ix, "SELECT id FROM docs WHERE ext_id = ?1", &st, e);
    /* Every id is looked up first: one missing id deletes nothing. */
    char missing[768] = "";
    size_t mlen = 0;
    int32_t n_missing = 0;
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        rowid[i] = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
        if (src != SQLITE_ROW && src != SQLITE_DONE) {
            rc = sql_fail(ix, src, e, "looking up a document");
        } else if (rowid[i] < 0) {
            if (n_missing++ < 8 && mlen < sizeof missing - 1) {
                int w = snprintf(missing + mlen, sizeof missing - mlen, "%s\"%.200s\"",
                                 mlen ? ", " : "", ids[i]);
                mlen = w > 0 ? mlen + (size_t)w : mlen;
                if (mlen >= sizeof missing)
                    mlen = sizeof missing - 1;
            }
        } else if (me_store_doc_slot(ix, rowid[i]) < 0) {
            rc = me_err_set(e, MEDEMBED_ERR_INTERNAL,
                            "document \"%s\" is in the file but not in memory", ids[i]);
        }
    }
    sqlite3_finalize(st);
    if (rc == MEDEMBED_OK && n_missing > 0)
        rc = me_err_set(e, MEDEMBED_ERR_NOT_FOUND,
                        "no document with id %s%s; nothing was deleted", missing,
                        n_missing > 8 ? " and more" : "");
    /* The same id named twice is deleted once. */
    qsort(rowid, (size_t)n, sizeof *rowid, cmp_i64_desc);
    int32_t u = 0;
    for (int32_t i = 0; rc == MEDEMBED_OK && i < n; i++)
        if (u == 0 || rowid[u - 1] != rowid[i])
            rowid[u++] = rowid[i];
    for (int32_t i = 0; rc == MEDEMBED_OK && i < u; i++) {
        char sql[320];
        snprintf(sql, sizeof sql,
                 "DELETE FROM chunks WHERE doc = %lld; DELETE FROM attrs WHERE doc = %lld; "
                 "DELETE FROM fts WHERE rowid = %lld; DELETE FROM docs WHERE id = %lld;",
                 (long long)rowid[i], (long long)rowid[i], (long long)rowid[i],
                 (long long)rowid[i]);
        rc = exec(ix, sql, e);
    }
    if (rc == MEDEMBED_OK && u > 0)
        rc = bump_generation(ix, e);
    rc = me_store_write_end(ix, rc, e);
    if (rc == MEDEMBED_OK && u > 0) {
        ix->generation++;
        /* descending rowids = descending slots: each removal leaves the
         * slots still to remove in place */
        for (int32_t i = 0; i < u; i++)
            compact_slot(ix, me_store_doc_slot(ix, rowid[i]));
        /* Node ids of the graph shifted: rebuilt at flush (exact until then). */
        if (ix->hnsw_m > 0) {
            ix->hnsw_stale = 1;
            ix->hnsw_dirty = 1;
        }
    }
    *n_deleted = rc == MEDEMBED_OK ? u : 0;
    free(rowid);
    return rc;
}

/* --------------------------------------------------------------- graph */

/* Writes the graph with generation `gen` through connection db (inside the
 * caller's write transaction). */
static int save_graph_on(medembed_index *ix, sqlite3 *db, int64_t gen, me_err *e)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    FORWARD_IF_ERROR(me_hnsw_save(ix->hnsw, &buf, &len, e));
    sqlite3_stmt *st = NULL;
    int rc = MEDEMBED_OK;
    if (len > (size_t)INT32_MAX) {
        rc = me_err_set(e, MEDEMBED_ERR_UNSUPPORTED, "HNSW graph over 2 GiB");
    } else {
        int src = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO graph(id, generation, data) "
                                         "VALUES (1, ?1, ?2)",
                                     -1, &st, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, gen);
            sqlite3_bind_blob(st, 2, buf, (int)len, SQLITE_STATIC);
            src = sqlite3_step(st);
        }
        if (src != SQLITE_DONE)
            rc = me_err_set(e, sql_status(src), "%s: saving the HNSW graph: %s", ix->path,
                            sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    free(buf);
    return rc;
}

int me_store_save_graph(medembed_index *ix, me_err *e)
{
    return save_graph_on(ix, ix->db, ix->generation, e);
}

int me_store_save_graph_rw(medembed_index *ix, me_err *e)
{
    sqlite3 *db = NULL;
    int src = sqlite3_open_v2(ix->path, &db, SQLITE_OPEN_READWRITE, NULL);
    int rc = MEDEMBED_OK;
    if (src != SQLITE_OK) {
        rc = me_err_set(e, MEDEMBED_ERR_IO, "%s: cannot open for writing: %s", ix->path,
                        db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close_v2(db);
        return rc;
    }
    /* A short wait: a writer holding the lock saves the graph itself. */
    sqlite3_busy_timeout(db, 200);
    sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = me_err_set(e, MEDEMBED_ERR_IO, "%s: %s", ix->path, sqlite3_errmsg(db));
        sqlite3_close_v2(db);
        return rc;
    }
    sqlite3_stmt *st = NULL;
    int64_t gen = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM settings WHERE key = 'generation'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        gen = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    /* Saved only for the data it was built from. */
    if (gen != ix->generation)
        rc = me_err_set(e, MEDEMBED_ERR_IO, "%s: changed since it was loaded", ix->path);
    if (rc == MEDEMBED_OK)
        rc = save_graph_on(ix, db, gen, e);
    if (rc == MEDEMBED_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = me_err_set(e, MEDEMBED_ERR_IO, "%s: %s", ix->path, sqlite3_errmsg(db));
    if (rc != MEDEMBED_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close_v2(db);
    return rc;
}

/* ------------------------------------------------------- search helpers */

char *me_store_metadata(medembed_index *ix, int64_t doc_rowid)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    pthread_mutex_lock(&ix->db_mu);
    if (sqlite3_prepare_v2(ix->db, "SELECT metadata FROM docs WHERE id = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, doc_rowid);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT) {
            int n = sqlite3_column_bytes(st, 0);
            out = malloc((size_t)n + 1);
            if (out) {
                memcpy(out, sqlite3_column_text(st, 0), (size_t)n);
                out[n] = 0;
            }
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ix->db_mu);
    return out ? out : strdup("{}");
}

int me_store_chunk_f32(medembed_index *ix, int64_t chunk_rowid, float *out, me_err *e)
{
    sqlite3_stmt *st = NULL;
    int rc = MEDEMBED_OK;
    pthread_mutex_lock(&ix->db_mu);
    int src = sqlite3_prepare_v2(ix->db, "SELECT vec_f32 FROM chunks WHERE id = ?1", -1, &st,
                                 NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, chunk_rowid);
        src = sqlite3_step(st);
    }
    if (src != SQLITE_ROW) {
        rc = sql_fail(ix, src, e, "reading a vector for rescoring");
    } else if ((size_t)sqlite3_column_bytes(st, 0) != 4 * (size_t)ix->dim) {
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: chunk %lld: f32 copy has %d bytes",
                        ix->path, (long long)chunk_rowid, sqlite3_column_bytes(st, 0));
    } else {
        memcpy(out, sqlite3_column_blob(st, 0), 4 * (size_t)ix->dim);
        if (!all_finite(out, ix->dim))
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: chunk %lld: NaN in f32 copy", ix->path,
                            (long long)chunk_rowid);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ix->db_mu);
    return rc;
}

int me_store_filter(medembed_index *ix, const me_filter *f, int32_t n, uint8_t *allowed,
                    me_err *e)
{
    uint8_t *hit = malloc((size_t)(ix->n_docs ? ix->n_docs : 1));
    RETURN_ERROR_IF(!hit, e, MEDEMBED_ERR_NOMEM, "out of memory");
    int rc = MEDEMBED_OK;
    pthread_mutex_lock(&ix->db_mu);
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++) {
        char sql[256];
        const char *op = me_filter_op_sql(f[i].op);
        const char *col = f[i].numeric ? "num" : "str";
        if (strcmp(f[i].field, "id") == 0)
            snprintf(sql, sizeof sql, "SELECT id FROM docs WHERE ext_id %s ?2", op);
        else if (f[i].op == ME_FOP_NE)
            snprintf(sql, sizeof sql,
                     "SELECT doc FROM attrs WHERE key = ?1 EXCEPT "
                     "SELECT doc FROM attrs WHERE key = ?1 AND %s = ?2",
                     col);
        else
            snprintf(sql, sizeof sql, "SELECT DISTINCT doc FROM attrs WHERE key = ?1 AND %s %s ?2",
                     col, op);
        sqlite3_stmt *st = NULL;
        int src = sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL);
        if (src != SQLITE_OK) {
            rc = sql_fail(ix, src, e, "preparing a filter");
            break;
        }
        if (strcmp(f[i].field, "id") != 0)
            sqlite3_bind_text(st, 1, f[i].field, -1, SQLITE_STATIC);
        if (f[i].numeric && strcmp(f[i].field, "id") != 0)
            sqlite3_bind_double(st, 2, f[i].num);
        else
            sqlite3_bind_text(st, 2, f[i].str, -1, SQLITE_STATIC);
        memset(hit, 0, (size_t)ix->n_docs);
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t s = me_store_doc_slot(ix, sqlite3_column_int64(st, 0));
            if (s >= 0)
                hit[s] = 1;
        }
        if (src != SQLITE_DONE)
            rc = sql_fail(ix, src, e, "running a filter");
        sqlite3_finalize(st);
        for (int64_t d = 0; d < ix->n_docs; d++)
            allowed[d] &= hit[d];
    }
    pthread_mutex_unlock(&ix->db_mu);
    free(hit);
    return rc;
}

/* ------------------------------------------------------------ keywords */

int me_store_fts_ensure(medembed_index *ix, me_err *e)
{
    sqlite3_stmt *st = NULL;
    FORWARD_IF_ERROR(prepare(ix, "SELECT 1 FROM sqlite_master WHERE name = 'fts'", &st, e));
    int src = sqlite3_step(st);
    sqlite3_finalize(st);
    if (src == SQLITE_ROW)
        return MEDEMBED_OK;
    if (src != SQLITE_DONE)
        return sql_fail(ix, src, e, "reading the schema");
    /* An index written before the keyword table existed: add it, empty
     * (medembed_index_set_texts fills it). */
    FORWARD_IF_ERROR(exec(ix, "BEGIN IMMEDIATE", e));
    int rc = exec(ix, "CREATE VIRTUAL TABLE IF NOT EXISTS " ME_FTS_TABLE, e);
    if (rc == MEDEMBED_OK)
        return exec(ix, "COMMIT", e);
    rollback(ix);
    return rc;
}

int64_t me_store_fts_count(medembed_index *ix)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    pthread_mutex_lock(&ix->db_mu);
    if (sqlite3_prepare_v2(ix->db, "SELECT count(*) FROM fts", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ix->db_mu);
    return n;
}

int me_store_set_texts(medembed_index *ix, const char *const *ids, const char *const *texts,
                       const size_t *lens, int32_t n, int64_t *n_missing, me_err *e)
{
    *n_missing = 0;
    FORWARD_IF_ERROR(me_store_write_begin(ix, e));
    sqlite3_stmt *sl = NULL, *sdel = NULL, *sins = NULL;
    int rc = prepare(ix, "SELECT id FROM docs WHERE ext_id = ?1", &sl, e);
    if (rc == MEDEMBED_OK)
        rc = prepare(ix, "DELETE FROM fts WHERE rowid = ?1", &sdel, e);
    if (rc == MEDEMBED_OK)
        rc = prepare(ix, "INSERT INTO fts(rowid, text) VALUES (?1, ?2)", &sins, e);
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++) {
        sqlite3_reset(sl);
        sqlite3_bind_text(sl, 1, ids[i], -1, SQLITE_STATIC);
        int src = sqlite3_step(sl);
        if (src == SQLITE_DONE) {
            (*n_missing)++;
            continue;
        }
        if (src != SQLITE_ROW) {
            rc = sql_fail(ix, src, e, "looking up a document");
            break;
        }
        int64_t rowid = sqlite3_column_int64(sl, 0);
        sqlite3_reset(sdel);
        sqlite3_bind_int64(sdel, 1, rowid);
        src = sqlite3_step(sdel);
        if (src == SQLITE_DONE) {
            sqlite3_reset(sins);
            sqlite3_bind_int64(sins, 1, rowid);
            sqlite3_bind_text(sins, 2, texts[i], lens ? (int)lens[i] : -1, SQLITE_STATIC);
            src = sqlite3_step(sins);
        }
        if (src != SQLITE_DONE)
            rc = sql_fail(ix, src, e, "indexing a document's words");
    }
    sqlite3_finalize(sl);
    sqlite3_finalize(sdel);
    sqlite3_finalize(sins);
    return me_store_write_end(ix, rc, e);
}

int me_store_bm25(medembed_index *ix, const char *match, const uint8_t *allowed, int32_t k,
                  int32_t *slot, float *score, int32_t *n_out, me_err *e)
{
    *n_out = 0;
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&ix->db_mu);
    int src = sqlite3_prepare_v2(ix->db,
                                 "SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ?1 "
                                 "ORDER BY rank, rowid",
                                 -1, &st, NULL);
    int rc = MEDEMBED_OK;
    if (src != SQLITE_OK) {
        if (strstr(sqlite3_errmsg(ix->db), "no such table"))
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                            "%s has no keyword index yet: open it writable once and fill it "
                            "with `medembed index fts-rebuild`", ix->path);
        else
            rc = sql_fail(ix, src, e, "preparing the keyword search");
    } else {
        sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
        while (*n_out < k && (src = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t s = me_store_doc_slot(ix, sqlite3_column_int64(st, 0));
            if (s < 0 || (allowed && !allowed[s]))
                continue;
            slot[*n_out] = (int32_t)s;
            /* bm25() is lower-is-better (negative): report it as a score */
            score[*n_out] = (float)-sqlite3_column_double(st, 1);
            (*n_out)++;
        }
        if (src != SQLITE_ROW && src != SQLITE_DONE)
            rc = sql_fail(ix, src, e, "running the keyword search");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ix->db_mu);
    return rc;
}
