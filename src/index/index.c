/*
 * index.c - the public index API (medembed_index_*, medembed_hits_*):
 * argument checks, locking, chunk + embed on add, and the search planner
 * (exact or HNSW, filters, per-document dedup, int8 rescoring).
 *
 * Locking: a pthread rwlock per handle. Searches hold it shared, add /
 * delete / flush hold it exclusive; SQLite calls made from searches are
 * serialized by db_mu (one connection, prepared per call).
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/index.h"
#include "model/model.h"
#include "util/sha256.h"

#define ME_DEFAULT_EFC 200
#define ME_MAX_K 10000
#define ME_MAX_FILTERS 64
#define ME_BUSY_MS 60000 /* how long a writer waits for another's write lock */

struct medembed_hits {
    int32_t n;
    char **id;
    float *score;
    int32_t *chunk, *start, *end;
    char **meta;
    int32_t *dense_rank, *bm25_rank;
    float *dense_score, *bm25_score;
    int32_t *first_rank; /* after medembed_hits_rerank: the search's rank (1-based) */
    float *first_score;  /* and score; NULL before */
};

static void put_err(char *err, size_t err_len, const me_err *e)
{
    if (err && err_len)
        snprintf(err, err_len, "%s", e->msg);
}

void medembed_index_config_init(medembed_index_config *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->vec_dtype = MEDEMBED_VEC_F32;
    c->overlap = -1;
    c->hnsw_ef_construction = ME_DEFAULT_EFC;
}

void medembed_search_opts_init(medembed_search_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->with_metadata = 1;
    o->alpha = -1;
}

/* ------------------------------------------------------------ lifetime */

static medembed_index *ix_alloc(const char *path)
{
    medembed_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    ix->path = strdup(path);
    if (!ix->path) {
        free(ix);
        return NULL;
    }
    pthread_rwlock_init(&ix->rw, NULL);
    pthread_mutex_init(&ix->db_mu, NULL);
    pthread_mutex_init(&ix->pool_mu, NULL);
    return ix;
}

static void ix_destroy(medembed_index *ix)
{
    if (!ix)
        return;
    if (ix->db)
        sqlite3_close_v2(ix->db);
    me_hnsw_free(ix->hnsw);
    me_pool_free(ix->pool);
    for (int64_t d = 0; d < ix->n_docs; d++)
        free(ix->doc_ext[d]);
    free(ix->doc_ext);
    free(ix->doc_rowid);
    free(ix->doc_chunk0);
    free(ix->doc_n_chunks);
    free(ix->ch_rowid);
    free(ix->ch_doc);
    free(ix->ch_no);
    free(ix->ch_start);
    free(ix->ch_end);
    me_vecs_free(&ix->vecs);
    free(ix->model_path);
    free(ix->doc_prompt);
    free(ix->path);
    pthread_rwlock_destroy(&ix->rw);
    pthread_mutex_destroy(&ix->db_mu);
    pthread_mutex_destroy(&ix->pool_mu);
    free(ix);
}

static int open_db(medembed_index *ix, int flags, me_err *e)
{
    int src = sqlite3_open_v2(ix->path, &ix->db, flags | SQLITE_OPEN_FULLMUTEX, NULL);
    if (src != SQLITE_OK)
        return me_err_set(e, src == SQLITE_CANTOPEN ? MEDEMBED_ERR_IO : MEDEMBED_ERR_FORMAT,
                          "%s: cannot open: %s", ix->path,
                          ix->db ? sqlite3_errmsg(ix->db) : "out of memory");
    sqlite3_busy_timeout(ix->db, ME_BUSY_MS);
    sqlite3_extended_result_codes(ix->db, 0);
    return MEDEMBED_OK;
}

me_pool *me_index_pool(medembed_index *ix)
{
    pthread_mutex_lock(&ix->pool_mu);
    if (!ix->pool)
        ix->pool = me_pool_create(0);
    me_pool *p = ix->pool;
    pthread_mutex_unlock(&ix->pool_mu);
    return p;
}

static int build_graph(medembed_index *ix, me_err *e)
{
    me_hnsw_free(ix->hnsw);
    ix->hnsw = NULL;
    me_hnsw_params p = {ix->hnsw_m, ix->hnsw_efc, 0};
    RETURN_ERROR_IF(me_hnsw_create(&p, &ix->hnsw) != MEDEMBED_OK, e, MEDEMBED_ERR_NOMEM,
                    "out of memory for the HNSW graph");
    FORWARD_IF_ERROR(me_hnsw_add(ix->hnsw, &ix->vecs, ix->vecs.n, me_index_pool(ix), e));
    ix->hnsw_stale = 0;
    return MEDEMBED_OK;
}

int medembed_index_create(const char *path, const medembed_model *model,
                          const medembed_index_config *cfg, medembed_index **out, char *err,
                          size_t err_len)
{
    if (!path || !*path || !out)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "medembed_index_create: no path or out");
    medembed_index_config c;
    medembed_index_config_init(&c);
    if (cfg)
        c = *cfg;
    if (c.hnsw_ef_construction == 0)
        c.hnsw_ef_construction = ME_DEFAULT_EFC;
    int32_t dim = model ? medembed_model_dim(model) : c.dim;
    if (model && c.dim && c.dim != dim)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "dim %d does not match the model's %d",
                    c.dim, dim);
    if (dim < 1 || dim > ME_INDEX_MAX_DIM)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "dim %d: allowed 1..%d", dim,
                    ME_INDEX_MAX_DIM);
    if (c.vec_dtype != MEDEMBED_VEC_F32 && c.vec_dtype != MEDEMBED_VEC_INT8)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "vec_dtype %d: use F32 (0) or INT8 (1)",
                    c.vec_dtype);
    int32_t max_win = model ? medembed_model_max_length(model) - 2 : (1 << 20);
    if (c.chunk_tokens == -1 && model) {
        /* the most that fits beside the document prompt the rule picks */
        medembed_embed_opts o;
        medembed_embed_opts_init(&o);
        o.role = MEDEMBED_ROLE_DOCUMENT;
        const char *prompt = NULL;
        medembed_text_info ti = {0};
        FORWARD_IF_ERROR(medembed_resolve_prompt(model, &o, &prompt, NULL, err, err_len));
        if (prompt)
            medembed_tokenize(model, prompt, (size_t)-1, MEDEMBED_F_NO_TRUNCATE, NULL, 0, &ti);
        c.chunk_tokens = max_win - (prompt ? ti.n_tokens - 2 : 0);
        if (c.chunk_tokens < 1)
            return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                        "the model's document prompt leaves no room for chunks");
    }
    if (c.chunk_tokens < 0 || c.chunk_tokens > max_win)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "chunk_tokens %d: allowed 0..%d (the model's limit minus [CLS] and [SEP])",
                    c.chunk_tokens, max_win);
    if (c.overlap == -1)
        c.overlap = me_chunk_overlap_default(c.chunk_tokens);
    if (c.overlap < 0 || (c.chunk_tokens > 0 && c.overlap >= c.chunk_tokens) ||
        (c.chunk_tokens == 0 && c.overlap != 0))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "overlap %d: must be at least 0 and less than chunk_tokens (%d)", c.overlap,
                    c.chunk_tokens);
    if (c.hnsw_m != 0 && (c.hnsw_m < 2 || c.hnsw_m > 128))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "hnsw_m %d: allowed 0 (off) or 2..128",
                    c.hnsw_m);
    if (c.hnsw_ef_construction < 1 || c.hnsw_ef_construction > 100000)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "hnsw_ef_construction %d: allowed 1..100000",
                    c.hnsw_ef_construction);
    /* The file is claimed with O_EXCL, so two creates of one path cannot
     * both succeed, and a failed create removes only what it made. */
    int claimed = 0;
    if (strcmp(path, ":memory:") != 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST)
            return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                              "%s already exists (use `index add` to extend it, or remove it)",
                              path);
        if (fd < 0)
            return me_err_buf(err, err_len, MEDEMBED_ERR_IO, "%s: cannot create: %s", path,
                              strerror(errno));
        close(fd);
        claimed = 1;
    }
    medembed_index *ix = ix_alloc(path);
    if (!ix) {
        if (claimed)
            medembed_index_remove(path);
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "out of memory");
    }
    me_err e = {{0}};
    ix->dim = dim;
    ix->vec_dtype = c.vec_dtype;
    ix->chunk_tokens = c.chunk_tokens;
    ix->overlap = c.overlap;
    ix->hnsw_m = c.hnsw_m;
    ix->hnsw_efc = c.hnsw_ef_construction;
    ix->vecs.dim = dim;
    ix->vecs.dtype = c.vec_dtype;
    ix->pooling = -1;
    ix->model_dtype = -1;
    if (model) {
        ix->has_model = 1;
        ix->model_path = NULL;
        char *info = NULL;
        size_t n = medembed_model_info_json(model, NULL, 0);
        info = malloc(n + 1);
        if (info) {
            medembed_model_info_json(model, info, n + 1);
            json_t *j = json_loads(info, 0, NULL);
            const char *p = json_string_value(json_object_get(j, "path"));
            ix->model_path = strdup(p ? p : "");
            json_decref(j);
            free(info);
        }
        snprintf(ix->fingerprint, sizeof ix->fingerprint, "%s",
                 medembed_model_fingerprint(model));
        ix->pooling = medembed_model_pooling(model);
        ix->model_dtype = medembed_model_dtype(model);
        ix->normalize = medembed_model_normalize(model);
        ix->max_length = medembed_model_max_length(model);
    } else {
        ix->model_path = strdup("");
    }
    int rc = ix->model_path ? MEDEMBED_OK : me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
    if (rc == MEDEMBED_OK)
        rc = open_db(ix, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &e);
    if (rc == MEDEMBED_OK) {
        sqlite3_exec(ix->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        sqlite3_exec(ix->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
        rc = me_store_create(ix, &e);
    }
    if (rc == MEDEMBED_OK && ix->hnsw_m > 0)
        rc = build_graph(ix, &e);
    if (rc != MEDEMBED_OK) {
        put_err(err, err_len, &e);
        ix_destroy(ix);
        if (claimed)
            medembed_index_remove(path);
        return rc;
    }
    ix->hnsw_dirty = ix->hnsw_m > 0;
    *out = ix;
    return MEDEMBED_OK;
}

static int flush_locked(medembed_index *ix, me_err *e);

int medembed_index_remove(const char *path)
{
    if (!path || !*path)
        return MEDEMBED_ERR_ARG;
    int rc = MEDEMBED_OK;
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        char p[4096];
        if ((size_t)snprintf(p, sizeof p, "%s%s", path, sfx[i]) >= sizeof p)
            return MEDEMBED_ERR_ARG;
        if (unlink(p) != 0 && errno != ENOENT)
            rc = MEDEMBED_ERR_IO;
    }
    return rc;
}

int medembed_index_open(const char *path, uint32_t flags, medembed_index **out, char *err,
                        size_t err_len)
{
    if (!path || !*path || !out)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "medembed_index_open: no path or out");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND, "%s: no such index file", path);
    if (!S_ISREG(sb.st_mode))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "%s: not a regular file", path);
    medembed_index *ix = ix_alloc(path);
    if (!ix)
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "out of memory");
    me_err e = {{0}};
    ix->readonly = (flags & MEDEMBED_INDEX_READONLY) != 0;
    int rc = open_db(ix, ix->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, &e);
    if (rc == MEDEMBED_OK && !ix->readonly)
        sqlite3_exec(ix->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    if (rc == MEDEMBED_OK)
        rc = me_store_load(ix, &e);
    if (rc == MEDEMBED_OK && !ix->readonly)
        rc = me_store_fts_ensure(ix, &e);
    if (rc == MEDEMBED_OK && ix->hnsw_m > 0 && (ix->hnsw_stale || !ix->hnsw)) {
        /* Stale (an add/delete interrupted before its graph was saved):
         * rebuild it, and save it once so that later opens load it. */
        rc = build_graph(ix, &e);
        ix->hnsw_dirty = 1;
        if (rc == MEDEMBED_OK) {
            me_err se = {{0}};
            int saved = ix->readonly ? me_store_save_graph_rw(ix, &se) == MEDEMBED_OK
                                     : flush_locked(ix, &se) == MEDEMBED_OK;
            if (saved)
                ix->hnsw_dirty = 0;
            ix->graph_at_open = saved ? 1 : 2;
        }
    }
    if (rc != MEDEMBED_OK) {
        put_err(err, err_len, &e);
        ix_destroy(ix);
        return rc;
    }
    *out = ix;
    return MEDEMBED_OK;
}

static int flush_locked(medembed_index *ix, me_err *e)
{
    if (ix->readonly || ix->hnsw_m == 0 || !(ix->hnsw_dirty || ix->hnsw_stale))
        return MEDEMBED_OK;
    RETURN_ERROR_IF(ix->broken, e, MEDEMBED_ERR_INTERNAL,
                    "%s: the handle failed earlier; reopen the index", ix->path);
    /* The (long) rebuild is done before taking the write lock; should
     * another writer commit meanwhile, write_begin reloads and the graph is
     * rebuilt under the lock. */
    if (ix->hnsw_stale || !ix->hnsw)
        FORWARD_IF_ERROR(build_graph(ix, e));
    FORWARD_IF_ERROR(me_store_write_begin(ix, e));
    int rc = MEDEMBED_OK;
    if (ix->hnsw_stale || !ix->hnsw) {
        rc = build_graph(ix, e);
        ix->hnsw_dirty = 1;
    }
    if (rc == MEDEMBED_OK && ix->hnsw_dirty)
        rc = me_store_save_graph(ix, e);
    rc = me_store_write_end(ix, rc, e);
    if (rc == MEDEMBED_OK)
        ix->hnsw_dirty = 0;
    return rc;
}

int medembed_index_flush(medembed_index *ix, char *err, size_t err_len)
{
    if (!ix)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "medembed_index_flush: NULL index");
    me_err e = {{0}};
    pthread_rwlock_wrlock(&ix->rw);
    int rc = flush_locked(ix, &e);
    pthread_rwlock_unlock(&ix->rw);
    if (rc != MEDEMBED_OK)
        put_err(err, err_len, &e);
    return rc;
}

void medembed_index_free(medembed_index *ix)
{
    if (!ix)
        return;
    flush_locked(ix, NULL);
    ix_destroy(ix);
}

/* ------------------------------------------------------------- queries */

int medembed_index_check_model(const medembed_index *ix, const medembed_model *model, char *err,
                               size_t err_len)
{
    if (!ix || !model)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "check_model: NULL argument");
    if (!ix->has_model)
        return me_err_buf(err, err_len, MEDEMBED_ERR_MISMATCH,
                    "%s holds caller-supplied vectors, not a model's: search it with vectors",
                    ix->path);
    if (medembed_model_dim(model) != ix->dim)
        return me_err_buf(err, err_len, MEDEMBED_ERR_MISMATCH,
                    "model mismatch: the model has dim %d, the index %d (built with %s)",
                    medembed_model_dim(model), ix->dim, ix->model_path);
    if (medembed_model_pooling(model) != ix->pooling)
        return me_err_buf(err, err_len, MEDEMBED_ERR_MISMATCH,
                    "model mismatch: pooling differs from the index's (built with %s)",
                    ix->model_path);
    const char *wh = medembed_model_fingerprint(model);
    if (strcmp(wh, ix->fingerprint) != 0)
        return me_err_buf(err, err_len, MEDEMBED_ERR_MISMATCH,
                    "model mismatch: the model's identity %.12s... differs from the index's "
                    "%.12s... (built with %s): its weights, tokenizer or pooling differ (an index "
                    "written by medembed before identity version 1 must be rebuilt)",
                    wh, ix->fingerprint, ix->model_path);
    return MEDEMBED_OK;
}

char *medembed_index_info_json(const medembed_index *cix)
{
    if (!cix)
        return NULL;
    medembed_index *ix = (medembed_index *)cix;
    pthread_rwlock_rdlock(&ix->rw);
    json_t *j = json_object();
    json_object_set_new(j, "path", json_string(ix->path));
    json_object_set_new(j, "n_docs", json_integer(ix->n_docs));
    json_object_set_new(j, "n_chunks", json_integer(ix->vecs.n));
    int64_t nk = me_store_fts_count(ix);
    json_object_set_new(j, "bm25_docs", nk >= 0 ? json_integer(nk) : json_null());
    json_object_set_new(j, "dim", json_integer(ix->dim));
    json_object_set_new(j, "dtype", json_string(ix->vec_dtype == MEDEMBED_VEC_INT8 ? "int8"
                                                                                   : "f32"));
    if (ix->has_model) {
        json_t *m = json_object();
        json_object_set_new(m, "path", json_string(ix->model_path));
        json_object_set_new(m, "weights_hash", json_string(ix->fingerprint));
        json_object_set_new(m, "dim", json_integer(ix->dim));
        json_object_set_new(m, "pooling", json_string(medembed_pooling_name(ix->pooling)));
        json_object_set_new(m, "dtype", json_string(medembed_dtype_name(ix->model_dtype)));
        json_object_set_new(m, "normalize", json_boolean(ix->normalize));
        json_object_set_new(m, "max_length", json_integer(ix->max_length));
        json_object_set_new(m, "doc_prompt",
                            ix->doc_prompt ? json_string(ix->doc_prompt) : json_null());
        json_object_set_new(j, "model", m);
    } else {
        json_object_set_new(j, "model", json_null());
    }
    json_t *c = json_object();
    json_object_set_new(c, "chunk_tokens", json_integer(ix->chunk_tokens));
    json_object_set_new(c, "overlap", json_integer(ix->overlap));
    json_object_set_new(j, "chunking", c);
    if (ix->hnsw_m > 0) {
        json_t *h = json_object();
        json_object_set_new(h, "m", json_integer(ix->hnsw_m));
        json_object_set_new(h, "ef_construction", json_integer(ix->hnsw_efc));
        static const char *const at_open[] = {"stored", "rebuilt", "rebuilt, not saved"};
        json_object_set_new(h, "graph", json_string(at_open[ix->graph_at_open]));
        json_object_set_new(j, "hnsw", h);
    } else {
        json_object_set_new(j, "hnsw", json_null());
    }
    json_object_set_new(j, "generation", json_integer(ix->generation));
    pthread_rwlock_unlock(&ix->rw);
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

int64_t medembed_index_n_docs(const medembed_index *ix)
{
    return ix ? ix->n_docs : 0;
}
int64_t medembed_index_n_chunks(const medembed_index *ix)
{
    return ix ? ix->vecs.n : 0;
}
int32_t medembed_index_dim(const medembed_index *ix)
{
    return ix ? ix->dim : 0;
}

int medembed_index_contains(const medembed_index *cix, const char *id)
{
    if (!cix || !id)
        return 0;
    medembed_index *ix = (medembed_index *)cix;
    int found = 0;
    pthread_rwlock_rdlock(&ix->rw);
    pthread_mutex_lock(&ix->db_mu);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT 1 FROM docs WHERE ext_id = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ix->db_mu);
    pthread_rwlock_unlock(&ix->rw);
    return found;
}

int medembed_index_doc_text(medembed_index *ix, const char *id, char **text, size_t *len,
                            char *err, size_t err_len)
{
    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!ix || !id || !text)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "doc_text: bad arguments");
    int rc = MEDEMBED_OK;
    pthread_rwlock_rdlock(&ix->rw);
    pthread_mutex_lock(&ix->db_mu);
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(ix->db,
                                 "SELECT fts.text FROM docs JOIN fts ON fts.rowid = docs.id "
                                 "WHERE docs.ext_id = ?1",
                                 -1, &st, NULL);
    if (src != SQLITE_OK) {
        if (strstr(sqlite3_errmsg(ix->db), "no such table"))
            rc = me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND,
                            "%s stores no document texts (written before the keyword index "
                            "existed): fill them with `medembed index fts-rebuild`",
                            ix->path);
        else
            rc = me_err_buf(err, err_len, MEDEMBED_ERR_IO, "%s: reading a document text: %s",
                            ix->path, sqlite3_errmsg(ix->db));
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            size_t n = (size_t)sqlite3_column_bytes(st, 0);
            *text = malloc(n + 1);
            if (!*text) {
                rc = me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "out of memory");
            } else {
                if (n)
                    memcpy(*text, t, n);
                (*text)[n] = 0;
                if (len)
                    *len = n;
            }
        } else if (src == SQLITE_DONE) {
            rc = me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND,
                            "%s: document \"%s\" has no stored text (not in the index, or "
                            "added before the keyword index existed: `medembed index "
                            "fts-rebuild` fills it)",
                            ix->path, id);
        } else {
            rc = me_err_buf(err, err_len, MEDEMBED_ERR_IO, "%s: reading a document text: %s",
                            ix->path, sqlite3_errmsg(ix->db));
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ix->db_mu);
    pthread_rwlock_unlock(&ix->rw);
    return rc;
}

/* ---------------------------------------------------------------- add */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks writability and the ids of a batch (non-empty, <= 1024 bytes,
 * unique within the batch). */
static int check_batch(const medembed_index *ix, const medembed_index_doc *docs, int32_t n,
                       me_err *e)
{
    RETURN_ERROR_IF(ix->readonly, e, MEDEMBED_ERR_ARG, "%s is open read-only", ix->path);
    RETURN_ERROR_IF(ix->broken, e, MEDEMBED_ERR_INTERNAL,
                    "%s: the handle failed earlier; reopen the index", ix->path);
    RETURN_ERROR_IF(n < 0 || (n > 0 && !docs), e, MEDEMBED_ERR_ARG, "bad document count %d", n);
    const char **ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    RETURN_ERROR_IF(!ids, e, MEDEMBED_ERR_NOMEM, "out of memory");
    int rc = MEDEMBED_OK;
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++) {
        size_t len = docs[i].id ? strlen(docs[i].id) : 0;
        if (len == 0 || len > ME_INDEX_MAX_ID)
            rc = me_err_set(e, MEDEMBED_ERR_ARG, "document %d: id must be 1..%d bytes, got %zu",
                            i, ME_INDEX_MAX_ID, len);
        ids[i] = docs[i].id;
    }
    if (rc == MEDEMBED_OK) {
        qsort(ids, (size_t)n, sizeof *ids, cmp_str_ptr);
        for (int32_t i = 1; i < n && rc == MEDEMBED_OK; i++)
            if (strcmp(ids[i - 1], ids[i]) == 0)
                rc = me_err_set(e, MEDEMBED_ERR_ARG, "duplicate id \"%s\" within one batch",
                                ids[i]);
    }
    free(ids);
    return rc;
}

int medembed_index_add_vectors(medembed_index *ix, const medembed_index_doc *docs, int32_t n,
                               const float *vecs, char *err, size_t err_len)
{
    if (!ix || (n > 0 && !vecs))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "add_vectors: NULL argument");
    me_err e = {{0}};
    pthread_rwlock_wrlock(&ix->rw);
    int rc = check_batch(ix, docs, n, &e);
    me_store_doc *sd = NULL;
    static const me_span span0 = {0, 0};
    if (rc == MEDEMBED_OK) {
        sd = calloc((size_t)(n ? n : 1), sizeof *sd);
        rc = sd ? MEDEMBED_OK : me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; rc == MEDEMBED_OK && i < n; i++) {
        sd[i].id = docs[i].id;
        sd[i].metadata = docs[i].metadata;
        sd[i].text = docs[i].text;
        sd[i].text_len = docs[i].text_len;
        sd[i].n_chunks = 1;
        sd[i].spans = &span0;
        sd[i].vecs = vecs + (size_t)i * (size_t)ix->dim;
    }
    if (rc == MEDEMBED_OK)
        rc = me_store_add(ix, sd, n, NULL, &e);
    pthread_rwlock_unlock(&ix->rw);
    free(sd);
    if (rc != MEDEMBED_OK)
        put_err(err, err_len, &e);
    return rc;
}

typedef struct idbuf {
    int32_t *p;
    size_t n, cap;
} idbuf;

static int idbuf_put(idbuf *b, const int32_t *src, size_t n)
{
    if (n == 0)
        return MEDEMBED_OK; /* src may be NULL (no prompt) */
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        int32_t *p = realloc(b->p, sizeof *p * cap);
        if (!p)
            return MEDEMBED_ERR_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, sizeof *src * n);
    b->n += n;
    return MEDEMBED_OK;
}

/* The document prompt's pieces for chunked documents: every window is
 * embedded as [CLS] prompt-pieces window [SEP]. The prompt is tokenized on
 * its own, which equals tokenizing prompt + text whenever the prompt ends
 * at a word boundary (a space or punctuation), as prompts do. */
typedef struct {
    int32_t *p; /* pieces, [CLS]/[SEP] excluded */
    int32_t n;
    int32_t skip; /* leading tokens pooling skips: 1 + n with include_prompt false */
} doc_prompt;

static int prompt_pieces(const medembed_index *ix, const medembed_model *m, const char *prompt,
                         uint32_t tflags, doc_prompt *dp, me_err *e)
{
    memset(dp, 0, sizeof *dp);
    if (!prompt)
        return MEDEMBED_OK;
    medembed_text_info ti;
    int rc = medembed_tokenize(m, prompt, (size_t)-1, tflags | MEDEMBED_F_NO_TRUNCATE, NULL, 0,
                               &ti);
    RETURN_ERROR_IF(rc != MEDEMBED_OK, e, rc, "the document prompt cannot be tokenized: %s",
                    medembed_status_str(rc));
    int32_t *ids = malloc(sizeof *ids * (size_t)ti.n_tokens);
    RETURN_ERROR_IF(!ids, e, MEDEMBED_ERR_NOMEM, "out of memory");
    medembed_tokenize(m, prompt, (size_t)-1, tflags | MEDEMBED_F_NO_TRUNCATE, ids, ti.n_tokens,
                      &ti);
    dp->n = ti.n_tokens - 2;
    memmove(ids, ids + 1, sizeof *ids * (size_t)dp->n);
    dp->p = ids;
    dp->skip = medembed_model_include_prompt(m) ? 0 : 1 + dp->n;
    if (dp->n + ix->chunk_tokens + 2 > medembed_model_max_length(m)) {
        free(ids);
        dp->p = NULL;
        return me_err_set(e, MEDEMBED_ERR_ARG,
                          "the document prompt (%d tokens) and chunks of %d tokens do not fit "
                          "the model's limit of %d: use a smaller chunk size, or no prompt (--prompt \"\")",
                          dp->n, ix->chunk_tokens, medembed_model_max_length(m));
    }
    return MEDEMBED_OK;
}

/* Tokenizes doc without truncation and appends one [CLS] prompt window
 * [SEP] sequence per chunk to set; spans get the windows. */
static int chunk_doc(const medembed_index *ix, const medembed_model *m,
                     const medembed_index_doc *doc, uint32_t tflags, const doc_prompt *dp,
                     idbuf *tok, idbuf *seq, medembed_tokens *set, me_span **spans,
                     int32_t *n_chunks, me_err *e)
{
    medembed_text_info ti;
    size_t len = doc->text_len == (size_t)-1 ? strlen(doc->text ? doc->text : "") : doc->text_len;
    const char *text = doc->text ? doc->text : "";
    if (tok->cap < 1024) {
        int32_t *p = realloc(tok->p, sizeof *p * 1024);
        RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory");
        tok->p = p;
        tok->cap = 1024;
    }
    int rc = medembed_tokenize(m, text, len, tflags | MEDEMBED_F_NO_TRUNCATE, tok->p,
                               (int32_t)tok->cap, &ti);
    if (rc == MEDEMBED_OK && (size_t)ti.n_tokens > tok->cap) {
        int32_t *p = realloc(tok->p, sizeof *p * (size_t)ti.n_tokens);
        RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory");
        tok->p = p;
        tok->cap = (size_t)ti.n_tokens;
        rc = medembed_tokenize(m, text, len, tflags | MEDEMBED_F_NO_TRUNCATE, tok->p,
                               (int32_t)tok->cap, &ti);
    }
    RETURN_ERROR_IF(rc != MEDEMBED_OK, e, rc, "document \"%s\": cannot tokenize: %s", doc->id,
                    medembed_status_str(rc));
    RETURN_ERROR_IF(ti.n_tokens < 2, e, MEDEMBED_ERR_INTERNAL,
                    "document \"%s\": tokenizer gave %d ids", doc->id, ti.n_tokens);
    int32_t cls = tok->p[0], sep = tok->p[ti.n_tokens - 1];
    int32_t P = ti.n_tokens - 2;
    int32_t nc = me_chunk_spans(P, ix->chunk_tokens, ix->overlap, NULL, 0);
    me_span *sp = malloc(sizeof *sp * (size_t)nc);
    RETURN_ERROR_IF(!sp, e, MEDEMBED_ERR_NOMEM, "out of memory");
    me_chunk_spans(P, ix->chunk_tokens, ix->overlap, sp, nc);
    for (int32_t c = 0; c < nc; c++) {
        int32_t w = sp[c].end - sp[c].start;
        seq->n = 0;
        if (idbuf_put(seq, &cls, 1) || idbuf_put(seq, dp->p, (size_t)dp->n) ||
            idbuf_put(seq, tok->p + 1 + sp[c].start, (size_t)w) || idbuf_put(seq, &sep, 1)) {
            free(sp);
            return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
        }
        char msg[200];
        rc = me_tokens_add_seq(set, seq->p, (int32_t)seq->n, dp->skip, msg, sizeof msg);
        if (rc != MEDEMBED_OK) {
            free(sp);
            return me_err_set(e, rc, "document \"%s\": chunk %d: %s", doc->id, c, msg);
        }
    }
    *spans = sp;
    *n_chunks = nc;
    return MEDEMBED_OK;
}

int medembed_index_add_docs(medembed_index *ix, medembed_ctx *ctx, const medembed_index_doc *docs,
                            int32_t n, const medembed_embed_opts *eo, char *err, size_t err_len)
{
    if (!ix || !ctx)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "add_docs: NULL index or ctx");
    const medembed_model *m = medembed_ctx_model(ctx);
    FORWARD_IF_ERROR(medembed_index_check_model(ix, m, err, err_len));
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    if (eo)
        o = *eo;
    o.role = MEDEMBED_ROLE_DOCUMENT;
    const char *prompt = NULL;
    FORWARD_IF_ERROR(medembed_resolve_prompt(m, &o, &prompt, NULL, err, err_len));
    me_err e = {{0}};
    pthread_rwlock_wrlock(&ix->rw);
    int rc = check_batch(ix, docs, n, &e);
    /* The documents' prompt is the index's: recorded by the first add, used
     * by later adds that name none, and an explicit other one is refused,
     * so one index never mixes vectors of two prompts. */
    const char *record = NULL;
    if (rc == MEDEMBED_OK && ix->doc_prompt) {
        int explicit_prompt = o.prompt || o.prompt_name;
        if (explicit_prompt && strcmp(prompt ? prompt : "", ix->doc_prompt) != 0)
            rc = me_err_set(&e, MEDEMBED_ERR_MISMATCH,
                            "the index's documents were embedded with the prompt \"%.200s\"; "
                            "give that one, or none",
                            ix->doc_prompt);
        prompt = ix->doc_prompt[0] ? ix->doc_prompt : NULL;
        o.prompt = prompt ? prompt : "";
        o.prompt_name = NULL;
    } else if (rc == MEDEMBED_OK) {
        record = prompt ? prompt : "";
    }
    me_store_doc *sd = NULL;
    me_span *spans_flat = NULL;
    float *vecs = NULL;
    idbuf tok = {0}, seq = {0};
    medembed_tokens *set = NULL;
    doc_prompt dp = {0};
    const char **texts = NULL;
    size_t *lens = NULL;
    medembed_text_info *info = NULL;
    size_t d = (size_t)ix->dim;
    if (rc == MEDEMBED_OK) {
        sd = calloc((size_t)(n ? n : 1), sizeof *sd);
        rc = sd ? MEDEMBED_OK : me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
    }
    if (rc == MEDEMBED_OK && ix->chunk_tokens == 0) {
        /* No chunking: one window per document, truncated as HF / MTEB do. */
        texts = malloc(sizeof *texts * (size_t)(n ? n : 1));
        lens = malloc(sizeof *lens * (size_t)(n ? n : 1));
        info = malloc(sizeof *info * (size_t)(n ? n : 1));
        vecs = malloc(sizeof *vecs * d * (size_t)(n ? n : 1));
        spans_flat = malloc(sizeof *spans_flat * (size_t)(n ? n : 1));
        rc = (texts && lens && info && vecs && spans_flat)
                 ? MEDEMBED_OK
                 : me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
        for (int32_t i = 0; rc == MEDEMBED_OK && i < n; i++) {
            texts[i] = docs[i].text ? docs[i].text : "";
            lens[i] = docs[i].text_len == (size_t)-1 ? strlen(texts[i]) : docs[i].text_len;
        }
        o.flags &= ~MEDEMBED_F_NO_TRUNCATE;
        o.max_length = 0;
        if (rc == MEDEMBED_OK && n > 0) {
            rc = medembed_ctx_embed(ctx, texts, lens, n, &o, vecs, info);
            if (rc != MEDEMBED_OK) {
                const char *msg = medembed_ctx_last_error(ctx);
                long idx = strncmp(msg, "text ", 5) == 0 ? strtol(msg + 5, NULL, 10) : -1;
                if (idx >= 0 && idx < n && strchr(msg, ':'))
                    me_err_set(&e, rc, "document \"%s\": %s", docs[idx].id, strchr(msg, ':') + 2);
                else
                    me_err_set(&e, rc, "embedding failed: %s", *msg ? msg : medembed_status_str(rc));
            }
        }
        for (int32_t i = 0; rc == MEDEMBED_OK && i < n; i++) {
            spans_flat[i].start = 0;
            spans_flat[i].end = info[i].n_tokens - 2;
            sd[i].n_chunks = 1;
            sd[i].spans = &spans_flat[i];
            sd[i].vecs = vecs + (size_t)i * d;
        }
    } else if (rc == MEDEMBED_OK) {
        uint32_t tflags = o.flags & (MEDEMBED_F_STRICT_UTF8 | MEDEMBED_F_RAW_TOKENIZER);
        me_span **sp = calloc((size_t)(n ? n : 1), sizeof *sp);
        rc = sp ? MEDEMBED_OK : me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
        if (rc == MEDEMBED_OK && medembed_tokens_create(m, &set) != MEDEMBED_OK)
            rc = me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
        if (rc == MEDEMBED_OK)
            rc = prompt_pieces(ix, m, prompt, tflags, &dp, &e);
        for (int32_t i = 0; rc == MEDEMBED_OK && i < n; i++) {
            me_span *s = NULL;
            int32_t nc = 0;
            rc = chunk_doc(ix, m, &docs[i], tflags, &dp, &tok, &seq, set, &s, &nc, &e);
            sp[i] = s;
            sd[i].n_chunks = nc;
        }
        int32_t n_seq = medembed_tokens_count(set);
        if (rc == MEDEMBED_OK) {
            vecs = malloc(sizeof *vecs * d * (size_t)(n_seq ? n_seq : 1));
            spans_flat = malloc(sizeof *spans_flat * (size_t)(n_seq ? n_seq : 1));
            rc = (vecs && spans_flat) ? MEDEMBED_OK
                                      : me_err_set(&e, MEDEMBED_ERR_NOMEM, "out of memory");
        }
        if (rc == MEDEMBED_OK && n_seq > 0) {
            rc = medembed_ctx_embed_tokens(ctx, set, o.flags & MEDEMBED_F_NO_NORMALIZE,
                                           o.batch_tokens, vecs);
            if (rc != MEDEMBED_OK)
                me_err_set(&e, rc, "embedding chunks failed: %s", medembed_ctx_last_error(ctx));
        }
        int32_t off = 0;
        for (int32_t i = 0; rc == MEDEMBED_OK && i < n; i++) {
            memcpy(spans_flat + off, sp[i], sizeof *spans_flat * (size_t)sd[i].n_chunks);
            sd[i].spans = spans_flat + off;
            sd[i].vecs = vecs + (size_t)off * d;
            off += sd[i].n_chunks;
        }
        for (int32_t i = 0; sp && i < n; i++)
            free(sp[i]);
        free(sp);
    }
    for (int32_t i = 0; rc == MEDEMBED_OK && i < n; i++) {
        sd[i].id = docs[i].id;
        sd[i].metadata = docs[i].metadata;
        sd[i].text = docs[i].text;
        sd[i].text_len = docs[i].text_len;
    }
    if (rc == MEDEMBED_OK)
        rc = me_store_add(ix, sd, n, n > 0 ? record : NULL, &e);
    pthread_rwlock_unlock(&ix->rw);
    free(sd);
    free(spans_flat);
    free(vecs);
    free(tok.p);
    free(seq.p);
    free(dp.p);
    medembed_tokens_free(set);
    free(texts);
    free(lens);
    free(info);
    if (rc != MEDEMBED_OK)
        put_err(err, err_len, &e);
    return rc;
}

int medembed_index_delete_ids(medembed_index *ix, const char *const *ids, int32_t n,
                              int64_t *n_deleted, char *err, size_t err_len)
{
    int64_t nd = 0;
    if (n_deleted)
        *n_deleted = 0;
    if (!ix || n < 0 || (n > 0 && !ids))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "delete: NULL argument");
    for (int32_t i = 0; i < n; i++)
        if (!ids[i])
            return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "delete: id %d is NULL", i);
    me_err e = {{0}};
    pthread_rwlock_wrlock(&ix->rw);
    int rc = ix->readonly ? me_err_set(&e, MEDEMBED_ERR_ARG, "%s is open read-only", ix->path)
                          : me_store_delete_ids(ix, ids, n, &nd, &e);
    pthread_rwlock_unlock(&ix->rw);
    if (n_deleted)
        *n_deleted = nd;
    if (rc != MEDEMBED_OK)
        put_err(err, err_len, &e);
    return rc;
}

int medembed_index_delete(medembed_index *ix, const char *id, char *err, size_t err_len)
{
    if (!id)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "delete: NULL argument");
    return medembed_index_delete_ids(ix, &id, 1, NULL, err, err_len);
}

/* -------------------------------------------------------------- search */

typedef struct accept_arg {
    const medembed_index *ix;
    const uint8_t *allowed;
} accept_arg;

static int accept_node(void *arg, int64_t node)
{
    accept_arg *a = arg;
    return a->allowed[a->ix->ch_doc[node]];
}

typedef struct cand {
    float score;
    int64_t chunk;
    int32_t doc;
} cand;

static int cmp_cand_doc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->doc != y->doc)
        return x->doc < y->doc ? -1 : 1;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

/* HNSW: chunks -> best chunk per document, widening ef until k documents
 * are found or the whole graph has been offered. Returns docs in out
 * (ids = best chunk index). */
static int hnsw_docs(medembed_index *ix, const float *q, const uint8_t *allowed, int32_t k,
                     int32_t ef, me_topk *out, me_err *e)
{
    accept_arg aa = {ix, allowed};
    int64_t n = ix->vecs.n;
    for (;;) {
        me_topk r;
        int32_t kk = ef;
        RETURN_ERROR_IF(me_topk_init(&r, kk) != MEDEMBED_OK, e, MEDEMBED_ERR_NOMEM,
                        "out of memory");
        int rc = me_hnsw_search(ix->hnsw, &ix->vecs, q, ef, allowed ? accept_node : NULL, &aa,
                                &r, e);
        if (rc != MEDEMBED_OK) {
            me_topk_free(&r);
            return rc;
        }
        cand *c = malloc(sizeof *c * (size_t)(r.n ? r.n : 1));
        if (!c) {
            me_topk_free(&r);
            return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
        }
        for (int32_t i = 0; i < r.n; i++) {
            c[i].score = r.score[i];
            c[i].chunk = r.id[i];
            c[i].doc = ix->ch_doc[r.id[i]];
        }
        qsort(c, (size_t)r.n, sizeof *c, cmp_cand_doc);
        out->n = 0;
        int32_t distinct = 0;
        for (int32_t i = 0; i < r.n; i++) {
            if (i > 0 && c[i].doc == c[i - 1].doc)
                continue;
            distinct++;
            me_topk_push(out, c[i].score, c[i].chunk);
        }
        free(c);
        me_topk_free(&r);
        if (distinct >= k || (int64_t)ef >= n)
            return MEDEMBED_OK;
        ef = (int64_t)ef * 2 > n ? (int32_t)n : ef * 2;
    }
}

/* INT8: replaces each candidate document's score with its exact f32 best
 * chunk (vectors read from disk) and keeps the best k. */
static int rescore(medembed_index *ix, const float *q, const me_topk *cands, me_topk *out,
                   me_err *e)
{
    float *buf = malloc(sizeof *buf * (size_t)ix->dim);
    RETURN_ERROR_IF(!buf, e, MEDEMBED_ERR_NOMEM, "out of memory");
    const me_vec_kern *k = me_vec_kern_get();
    out->n = 0;
    int rc = MEDEMBED_OK;
    for (int32_t i = 0; i < cands->n && rc == MEDEMBED_OK; i++) {
        int32_t d = ix->ch_doc[cands->id[i]];
        int64_t c0 = ix->doc_chunk0[d], c1 = c0 + ix->doc_n_chunks[d];
        float best = -INFINITY;
        int64_t bc = c0;
        for (int64_t c = c0; c < c1 && rc == MEDEMBED_OK; c++) {
            rc = me_store_chunk_f32(ix, ix->ch_rowid[c], buf, e);
            float s = rc == MEDEMBED_OK ? k->dot_f32(q, buf, ix->dim) : 0;
            if (s > best) {
                best = s;
                bc = c;
            }
        }
        me_topk_push(out, best, bc);
    }
    free(buf);
    return rc;
}

/* One result before it becomes a hit: document slot, best chunk (-1 for
 * none), final score and the two legs' ranks (0 = absent) and scores. */
typedef struct hit_src {
    int32_t doc;
    int64_t chunk;
    float score;
    int32_t dr, br;
    float ds, bs;
} hit_src;

/* Every per-hit array of g, for k hits (first: the first-stage arrays of a
 * rerank too); 0, or -1 when out of memory. */
static int hits_alloc(medembed_hits *g, int32_t k, int first)
{
    size_t n = (size_t)(k ? k : 1);
    g->id = calloc(n, sizeof *g->id);
    g->meta = calloc(n, sizeof *g->meta);
    g->score = malloc(sizeof *g->score * n);
    g->chunk = malloc(sizeof *g->chunk * n);
    g->start = malloc(sizeof *g->start * n);
    g->end = malloc(sizeof *g->end * n);
    g->dense_rank = malloc(sizeof *g->dense_rank * n);
    g->bm25_rank = malloc(sizeof *g->bm25_rank * n);
    g->dense_score = malloc(sizeof *g->dense_score * n);
    g->bm25_score = malloc(sizeof *g->bm25_score * n);
    if (first) {
        g->first_rank = malloc(sizeof *g->first_rank * n);
        g->first_score = malloc(sizeof *g->first_score * n);
    }
    return g->id && g->meta && g->score && g->chunk && g->start && g->end && g->dense_rank &&
                   g->bm25_rank && g->dense_score && g->bm25_score &&
                   (!first || (g->first_rank && g->first_score))
               ? 0
               : -1;
}

static int hits_from(medembed_index *ix, const hit_src *t, int32_t n_hits, int with_meta,
                     medembed_hits **out, me_err *e)
{
    medembed_hits *h = calloc(1, sizeof *h);
    RETURN_ERROR_IF(!h, e, MEDEMBED_ERR_NOMEM, "out of memory");
    int ok = hits_alloc(h, n_hits, 0) == 0;
    for (int32_t i = 0; ok && i < n_hits; i++) {
        int64_t c = t[i].chunk;
        int32_t d = t[i].doc;
        h->id[i] = strdup(ix->doc_ext[d]);
        h->score[i] = t[i].score;
        h->chunk[i] = c >= 0 ? ix->ch_no[c] : -1;
        h->start[i] = c >= 0 ? ix->ch_start[c] : 0;
        h->end[i] = c >= 0 ? ix->ch_end[c] : 0;
        h->dense_rank[i] = t[i].dr;
        h->bm25_rank[i] = t[i].br;
        h->dense_score[i] = t[i].dr ? t[i].ds : NAN;
        h->bm25_score[i] = t[i].br ? t[i].bs : NAN;
        h->meta[i] = with_meta ? me_store_metadata(ix, ix->doc_rowid[d]) : NULL;
        h->n = i + 1;
        ok = h->id[i] && (!with_meta || h->meta[i]);
    }
    if (!ok) {
        medembed_hits_free(h);
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory for hits");
    }
    *out = h;
    return MEDEMBED_OK;
}

/* Dense leg: the best k documents (ids = best chunk), sorted. */
static int dense_leg(medembed_index *ix, const float *q, const medembed_search_opts *o,
                     const uint8_t *allowed, int64_t n_allowed, int32_t k, me_topk *fin,
                     me_err *e)
{
    int int8 = ix->vec_dtype == MEDEMBED_VEC_INT8;
    int32_t kc = k; /* candidates before rescoring */
    if (int8) {
        int64_t m = (int64_t)k * (o->rescore ? o->rescore : 4);
        kc = m > ME_MAX_K * 4 ? ME_MAX_K * 4 : (int32_t)m;
    }
    me_topk cands = {0};
    int rc = MEDEMBED_OK;
    if (me_topk_init(&cands, kc) != MEDEMBED_OK || me_topk_init(fin, k) != MEDEMBED_OK)
        rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
    /* A selective filter leaves few documents: scanning them exactly is
     * cheaper and exact, while the graph would wander through rejected
     * nodes. */
    int use_hnsw = ix->hnsw && !ix->hnsw_stale && !o->exact && ix->vecs.n > 0 &&
                   (!allowed || n_allowed * 10 >= ix->n_docs);
    if (rc == MEDEMBED_OK && n_allowed > 0) {
        if (use_hnsw) {
            int32_t ef = o->ef_search ? o->ef_search : (2 * kc > 128 ? 2 * kc : 128);
            if (ef < kc)
                ef = kc;
            rc = hnsw_docs(ix, q, allowed, kc, ef, &cands, e);
        } else {
            rc = me_flat_search(ix, q, allowed, o->n_threads, &cands, e);
        }
    }
    if (rc == MEDEMBED_OK) {
        if (int8) {
            rc = rescore(ix, q, &cands, fin, e);
        } else {
            for (int32_t i = 0; i < cands.n; i++)
                me_topk_push(fin, cands.score[i], cands.id[i]);
        }
    }
    if (rc == MEDEMBED_OK)
        me_topk_sort(fin);
    me_topk_free(&cands);
    return rc;
}

/* Keyword leg: the best k documents by BM25 (slots and scores, sorted). */
static int bm25_leg(medembed_index *ix, const char *text, const uint8_t *allowed, int32_t k,
                    int32_t *slot, float *score, int32_t *n, me_err *e)
{
    *n = 0;
    char *match = me_fts_query(text);
    RETURN_ERROR_IF(!match, e, MEDEMBED_ERR_NOMEM, "out of memory");
    int rc = match[0] ? me_store_bm25(ix, match, allowed, k, slot, score, n, e) : MEDEMBED_OK;
    free(match);
    return rc;
}

static int cmp_hit(const void *a, const void *b)
{
    const hit_src *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

static int cmp_hit_doc(const void *a, const void *b)
{
    const hit_src *x = a, *y = b;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

#define ME_RRF_K 60

/* Fuses the legs: RRF (alpha < 0) or alpha * dense + (1 - alpha) * bm25 of
 * min-max normalised scores (a constant leg normalises to 1; a document
 * missing from a leg gets 0 there). Keeps the best k in hs. */
static int32_t fuse(medembed_index *ix, const me_topk *dn, const int32_t *bslot,
                    const float *bscore, int32_t bn, float alpha, int32_t k, hit_src *hs)
{
    int32_t n = 0;
    float dmin = INFINITY, dmax = -INFINITY, bmin = INFINITY, bmax = -INFINITY;
    for (int32_t i = 0; i < dn->n; i++) {
        dmin = fminf(dmin, dn->score[i]);
        dmax = fmaxf(dmax, dn->score[i]);
        hs[n++] = (hit_src){ix->ch_doc[dn->id[i]], dn->id[i], 0, i + 1, 0, dn->score[i], 0};
    }
    /* the dense leg's documents sorted by slot: each keyword hit finds its
     * dense entry by binary search (a document is in each leg once) */
    qsort(hs, (size_t)n, sizeof *hs, cmp_hit_doc);
    int32_t nd = n;
    for (int32_t i = 0; i < bn; i++) {
        bmin = fminf(bmin, bscore[i]);
        bmax = fmaxf(bmax, bscore[i]);
        hit_src key = {.doc = bslot[i]};
        hit_src *f = nd ? bsearch(&key, hs, (size_t)nd, sizeof *hs, cmp_hit_doc) : NULL;
        int32_t j = f ? (int32_t)(f - hs) : n++;
        if (!f)
            hs[j] = (hit_src){bslot[i], -1, 0, 0, 0, 0, 0};
        hs[j].br = i + 1;
        hs[j].bs = bscore[i];
    }
    for (int32_t i = 0; i < n; i++) {
        double f = 0;
        if (alpha < 0) {
            f = (hs[i].dr ? 1.0 / (ME_RRF_K + hs[i].dr) : 0) +
                (hs[i].br ? 1.0 / (ME_RRF_K + hs[i].br) : 0);
        } else {
            double dnrm = !hs[i].dr ? 0 : dmax > dmin ? (hs[i].ds - dmin) / (dmax - dmin) : 1;
            double bnrm = !hs[i].br ? 0 : bmax > bmin ? (hs[i].bs - bmin) / (bmax - bmin) : 1;
            f = alpha * dnrm + (1 - alpha) * bnrm;
        }
        hs[i].score = (float)f;
    }
    qsort(hs, (size_t)n, sizeof *hs, cmp_hit);
    return n < k ? n : k;
}

static int search_locked(medembed_index *ix, const float *q, const medembed_search_opts *o,
                         medembed_hits **out, me_err *e)
{
    RETURN_ERROR_IF(o->k < 1 || o->k > ME_MAX_K, e, MEDEMBED_ERR_ARG, "k = %d: allowed 1..%d",
                    o->k, ME_MAX_K);
    RETURN_ERROR_IF(o->n_filters < 0 || o->n_filters > ME_MAX_FILTERS ||
                        (o->n_filters > 0 && !o->filters),
                    e, MEDEMBED_ERR_ARG, "%d filters: allowed 0..%d", o->n_filters,
                    ME_MAX_FILTERS);
    RETURN_ERROR_IF(o->ef_search < 0 || o->rescore < 0 || o->n_threads < 0, e, MEDEMBED_ERR_ARG,
                    "negative ef_search, rescore or n_threads");
    RETURN_ERROR_IF(o->mode < MEDEMBED_SEARCH_DENSE || o->mode > MEDEMBED_SEARCH_HYBRID, e,
                    MEDEMBED_ERR_ARG, "search mode %d: use dense (0), bm25 (1) or hybrid (2)",
                    o->mode);
    RETURN_ERROR_IF(!(o->alpha < 0 || (o->alpha >= 0 && o->alpha <= 1)) || isnan(o->alpha), e,
                    MEDEMBED_ERR_ARG, "alpha %g: allowed 0..1 (or negative for RRF)",
                    (double)o->alpha);
    RETURN_ERROR_IF(o->candidates < 0 || o->candidates > ME_MAX_K, e, MEDEMBED_ERR_ARG,
                    "candidates %d: allowed 0..%d", o->candidates, ME_MAX_K);
    int use_dense = o->mode != MEDEMBED_SEARCH_BM25, use_bm25 = o->mode != MEDEMBED_SEARCH_DENSE;
    RETURN_ERROR_IF(use_dense && !q, e, MEDEMBED_ERR_ARG, "search: no query vector");
    RETURN_ERROR_IF(use_bm25 && !o->text, e, MEDEMBED_ERR_ARG,
                    "search: bm25 and hybrid modes need the query text");
    for (int32_t i = 0; use_dense && i < ix->dim; i++)
        RETURN_ERROR_IF(!isfinite(q[i]), e, MEDEMBED_ERR_ARG,
                        "query vector holds NaN or infinity at %d", i);
    uint8_t *allowed = NULL;
    int64_t n_allowed = ix->n_docs;
    int rc = MEDEMBED_OK;
    if (o->n_filters > 0) {
        me_filter *f = calloc((size_t)o->n_filters, sizeof *f);
        allowed = malloc((size_t)(ix->n_docs ? ix->n_docs : 1));
        rc = (f && allowed) ? MEDEMBED_OK : me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
        for (int32_t i = 0; rc == MEDEMBED_OK && i < o->n_filters; i++)
            rc = me_filter_parse(o->filters[i], &f[i], e);
        if (rc == MEDEMBED_OK) {
            memset(allowed, 1, (size_t)ix->n_docs);
            rc = me_store_filter(ix, f, o->n_filters, allowed, e);
        }
        free(f);
        n_allowed = 0;
        for (int64_t d = 0; rc == MEDEMBED_OK && d < ix->n_docs; d++)
            n_allowed += allowed[d];
    }
    int32_t k = o->k;
    int32_t kl = k; /* per leg */
    if (o->mode == MEDEMBED_SEARCH_HYBRID)
        kl = o->candidates ? (o->candidates > k ? o->candidates : k) : (k > 100 ? k : 100);
    me_topk dn = {0};
    int32_t *bslot = NULL, bn = 0;
    float *bscore = NULL;
    hit_src *hs = NULL;
    if (rc == MEDEMBED_OK && use_dense)
        rc = dense_leg(ix, q, o, allowed, n_allowed, kl, &dn, e);
    if (rc == MEDEMBED_OK && use_bm25) {
        bslot = malloc(sizeof *bslot * (size_t)kl);
        bscore = malloc(sizeof *bscore * (size_t)kl);
        rc = bslot && bscore ? bm25_leg(ix, o->text, allowed, kl, bslot, bscore, &bn, e)
                             : me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
    }
    if (rc == MEDEMBED_OK) {
        hs = malloc(sizeof *hs * (size_t)(dn.n + bn + 1));
        rc = hs ? MEDEMBED_OK : me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
    }
    if (rc == MEDEMBED_OK) {
        int32_t n = 0;
        if (o->mode == MEDEMBED_SEARCH_DENSE) {
            for (int32_t i = 0; i < dn.n; i++)
                hs[n++] = (hit_src){ix->ch_doc[dn.id[i]], dn.id[i], dn.score[i], i + 1, 0,
                                    dn.score[i], 0};
        } else if (o->mode == MEDEMBED_SEARCH_BM25) {
            for (int32_t i = 0; i < bn; i++)
                hs[n++] = (hit_src){bslot[i], -1, bscore[i], 0, i + 1, 0, bscore[i]};
        } else {
            n = fuse(ix, &dn, bslot, bscore, bn, o->alpha, k, hs);
        }
        rc = hits_from(ix, hs, n, o->with_metadata, out, e);
    }
    me_topk_free(&dn);
    free(bslot);
    free(bscore);
    free(hs);
    free(allowed);
    return rc;
}

int medembed_index_search(medembed_index *ix, const float *query,
                          const medembed_search_opts *opts, medembed_hits **out, char *err,
                          size_t err_len)
{
    if (!ix || !out || (!query && !(opts && opts->mode == MEDEMBED_SEARCH_BM25)))
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "search: NULL argument");
    medembed_search_opts o;
    medembed_search_opts_init(&o);
    if (opts)
        o = *opts;
    me_err e = {{0}};
    pthread_rwlock_rdlock(&ix->rw);
    int changed = 0;
    int rc = ix->readonly ? me_store_changed(ix, &changed, &e) : MEDEMBED_OK;
    if (rc == MEDEMBED_OK && changed) {
        /* another process wrote the file: follow it */
        pthread_rwlock_unlock(&ix->rw);
        pthread_rwlock_wrlock(&ix->rw);
        rc = me_store_changed(ix, &changed, &e); /* another thread may have refreshed */
        if (rc == MEDEMBED_OK && changed)
            rc = me_store_refresh(ix, &e);
        pthread_rwlock_unlock(&ix->rw);
        pthread_rwlock_rdlock(&ix->rw);
    }
    if (rc == MEDEMBED_OK)
        rc = search_locked(ix, query, &o, out, &e);
    pthread_rwlock_unlock(&ix->rw);
    if (rc != MEDEMBED_OK)
        put_err(err, err_len, &e);
    return rc;
}

int medembed_index_search_text(medembed_index *ix, medembed_ctx *ctx, const char *query,
                               const medembed_embed_opts *eo, const medembed_search_opts *opts,
                               medembed_hits **out, char *err, size_t err_len)
{
    medembed_search_opts so;
    medembed_search_opts_init(&so);
    if (opts)
        so = *opts;
    so.text = query;
    int dense = so.mode != MEDEMBED_SEARCH_BM25;
    if (!ix || (dense && !ctx) || !query || !out)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "search_text: NULL argument");
    if (!dense)
        return medembed_index_search(ix, NULL, &so, out, err, err_len);
    FORWARD_IF_ERROR(medembed_index_check_model(ix, medembed_ctx_model(ctx), err, err_len));
    float *q = malloc(sizeof *q * (size_t)ix->dim);
    if (!q)
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "out of memory");
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    if (eo)
        o = *eo;
    o.role = MEDEMBED_ROLE_QUERY;
    int rc = medembed_ctx_embed(ctx, &query, NULL, 1, &o, q, NULL);
    if (rc != MEDEMBED_OK) {
        me_err_buf(err, err_len, rc, "query: %s", medembed_ctx_last_error(ctx));
    } else {
        rc = medembed_index_search(ix, q, &so, out, err, err_len);
    }
    free(q);
    return rc;
}

int medembed_index_set_texts(medembed_index *ix, const medembed_index_doc *docs, int32_t n,
                             int64_t *n_missing, char *err, size_t err_len)
{
    if (!ix || (n > 0 && !docs) || n < 0)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "set_texts: NULL argument");
    if (ix->readonly)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "%s: opened read-only", ix->path);
    const char **ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    const char **texts = malloc(sizeof *texts * (size_t)(n ? n : 1));
    size_t *lens = malloc(sizeof *lens * (size_t)(n ? n : 1));
    if (!ids || !texts || !lens) {
        free(ids);
        free(texts);
        free(lens);
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "out of memory");
    }
    int bad = 0;
    for (int32_t i = 0; i < n; i++) {
        ids[i] = docs[i].id;
        texts[i] = docs[i].text ? docs[i].text : "";
        lens[i] = docs[i].text_len == (size_t)-1 || !docs[i].text ? strlen(texts[i])
                                                                   : docs[i].text_len;
        bad |= !ids[i] || lens[i] > INT32_MAX;
    }
    me_err e = {{0}};
    int64_t miss = 0;
    int rc = bad ? me_err_set(&e, MEDEMBED_ERR_ARG, "set_texts: NULL id or text over 2 GiB")
                 : MEDEMBED_OK;
    pthread_rwlock_wrlock(&ix->rw);
    if (rc == MEDEMBED_OK)
        rc = me_store_set_texts(ix, ids, texts, lens, n, &miss, &e);
    pthread_rwlock_unlock(&ix->rw);
    free(ids);
    free(texts);
    free(lens);
    if (n_missing)
        *n_missing = miss;
    if (rc != MEDEMBED_OK)
        put_err(err, err_len, &e);
    return rc;
}

/* ---------------------------------------------------------------- hits */

int32_t medembed_hits_count(const medembed_hits *h)
{
    return h ? h->n : 0;
}

const char *medembed_hits_id(const medembed_hits *h, int32_t i)
{
    return (h && i >= 0 && i < h->n) ? h->id[i] : NULL;
}

float medembed_hits_score(const medembed_hits *h, int32_t i)
{
    return (h && i >= 0 && i < h->n) ? h->score[i] : NAN;
}

int32_t medembed_hits_chunk(const medembed_hits *h, int32_t i, int32_t *tok_start,
                            int32_t *tok_end)
{
    if (!h || i < 0 || i >= h->n)
        return -1;
    if (tok_start)
        *tok_start = h->start[i];
    if (tok_end)
        *tok_end = h->end[i];
    return h->chunk[i];
}

int medembed_hits_components(const medembed_hits *h, int32_t i, int32_t *dense_rank,
                             float *dense_score, int32_t *bm25_rank, float *bm25_score)
{
    if (!h || i < 0 || i >= h->n)
        return -1;
    if (dense_rank)
        *dense_rank = h->dense_rank[i];
    if (dense_score)
        *dense_score = h->dense_score[i];
    if (bm25_rank)
        *bm25_rank = h->bm25_rank[i];
    if (bm25_score)
        *bm25_score = h->bm25_score[i];
    return 0;
}

const char *medembed_hits_metadata(const medembed_hits *h, int32_t i)
{
    if (!h || i < 0 || i >= h->n)
        return NULL;
    return h->meta[i] ? h->meta[i] : "{}";
}

int medembed_hits_first_stage(const medembed_hits *h, int32_t i, int32_t *rank, float *score)
{
    if (!h || i < 0 || i >= h->n || !h->first_rank)
        return 0;
    if (rank)
        *rank = h->first_rank[i];
    if (score)
        *score = h->first_score[i];
    return 1;
}

typedef struct ranked {
    float score;
    int32_t index;
} ranked;

/* Best first; equal scores keep their input order; NaN last. */
static int cmp_ranked(const void *x, const void *y)
{
    const ranked *a = x, *b = y;
    int an = isnan(a->score), bn = isnan(b->score);
    if (an != bn)
        return an - bn;
    if (!an && a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

int medembed_rank_order(const float *scores, int32_t n, int32_t *order)
{
    if (n < 0 || (n > 0 && (!scores || !order)))
        return MEDEMBED_ERR_ARG;
    ranked *r = malloc(sizeof *r * (size_t)(n ? n : 1));
    if (!r)
        return MEDEMBED_ERR_NOMEM;
    for (int32_t i = 0; i < n; i++)
        r[i] = (ranked){scores[i], i};
    qsort(r, (size_t)n, sizeof *r, cmp_ranked);
    for (int32_t i = 0; i < n; i++)
        order[i] = r[i].index;
    free(r);
    return MEDEMBED_OK;
}

static void hits_release(medembed_hits *g)
{
    free(g->id);
    free(g->meta);
    free(g->score);
    free(g->chunk);
    free(g->start);
    free(g->end);
    free(g->dense_rank);
    free(g->bm25_rank);
    free(g->dense_score);
    free(g->bm25_score);
    free(g->first_rank);
    free(g->first_score);
}

int medembed_hits_rerank(medembed_hits *h, medembed_index *ix, medembed_ctx *ce,
                         const char *query, int32_t k, uint32_t flags, char *err, size_t err_len)
{
    if (!h || !ix || !ce || !query)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "hits_rerank: bad arguments");
    if (h->first_rank)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "these hits are already reranked");
    const medembed_model *cm = medembed_ctx_model(ce);
    if (medembed_model_kind(cm) != MEDEMBED_KIND_CROSS_ENCODER ||
        medembed_model_num_labels(cm) != 1)
        return me_err_buf(err, err_len, MEDEMBED_ERR_MISMATCH,
                          "reranking hits needs a cross-encoder with one label (a relevance "
                          "score); %s",
                          medembed_model_kind(cm) == MEDEMBED_KIND_CROSS_ENCODER
                              ? "this one has several"
                              : "this is an embedding model");
    int32_t n = h->n;
    if (k <= 0 || k > n)
        k = n;
    char **texts = calloc((size_t)(n ? n : 1), sizeof *texts);
    size_t *lens = calloc((size_t)(n ? n : 1), sizeof *lens);
    float *rr = malloc(sizeof *rr * (size_t)(n ? n : 1));
    int32_t *order = malloc(sizeof *order * (size_t)(n ? n : 1));
    medembed_hits g;
    memset(&g, 0, sizeof g);
    int rc = MEDEMBED_OK;
    if (!texts || !lens || !rr || !order || hits_alloc(&g, k, 1) != 0) {
        rc = me_err_buf(err, err_len, MEDEMBED_ERR_NOMEM, "out of memory reranking %d hits",
                        (int)n);
        goto out;
    }
    for (int32_t i = 0; i < n && rc == MEDEMBED_OK; i++)
        rc = medembed_index_doc_text(ix, h->id[i], &texts[i], &lens[i], err, err_len);
    if (rc != MEDEMBED_OK)
        goto out;
    rc = medembed_ctx_rerank(ce, query, (size_t)-1, (const char *const *)texts, lens, n, flags,
                             rr);
    if (rc != MEDEMBED_OK) {
        me_err_buf(err, err_len, rc, "%s", medembed_ctx_last_error(ce));
        goto out;
    }
    rc = medembed_rank_order(rr, n, order);
    if (rc != MEDEMBED_OK) {
        me_err_buf(err, err_len, rc, "out of memory reranking %d hits", (int)n);
        goto out;
    }
    /* Nothing can fail from here: the hits move into g, in the new order. */
    for (int32_t r = 0; r < k; r++) {
        int32_t i = order[r];
        g.id[r] = h->id[i];
        g.meta[r] = h->meta[i];
        h->id[i] = h->meta[i] = NULL;
        g.score[r] = rr[i];
        g.chunk[r] = h->chunk[i];
        g.start[r] = h->start[i];
        g.end[r] = h->end[i];
        g.dense_rank[r] = h->dense_rank[i];
        g.bm25_rank[r] = h->bm25_rank[i];
        g.dense_score[r] = h->dense_score[i];
        g.bm25_score[r] = h->bm25_score[i];
        g.first_rank[r] = i + 1;
        g.first_score[r] = h->score[i];
    }
    for (int32_t i = 0; i < n; i++) { /* the hits past k */
        free(h->id[i]);
        free(h->meta[i]);
    }
    hits_release(h);
    g.n = k;
    *h = g;
    memset(&g, 0, sizeof g);
out:
    hits_release(&g);
    for (int32_t i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(rr);
    free(order);
    return rc;
}

void medembed_hits_free(medembed_hits *h)
{
    if (!h)
        return;
    for (int32_t i = 0; i < h->n; i++) {
        free(h->id[i]);
        free(h->meta[i]);
    }
    hits_release(h);
    free(h);
}
