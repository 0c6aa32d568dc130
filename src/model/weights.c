/*
 * weights.c - finds, validates and converts the encoder's tensors.
 *
 * Names follow transformers' BertModel, with or without the "bert." prefix
 * (BertForMaskedLM / BertForPreTraining checkpoints), with LayerNorm
 * "weight"/"bias" or the older "gamma"/"beta". The weights may be one
 * model.safetensors or shards listed in model.safetensors.index.json.
 * F32 tensors that are 4-byte aligned are used in place from the mapping;
 * F16/BF16 are converted exactly to fp32 once at load. Q, K and V form one
 * (3*hidden, hidden) projection so a layer reads x once for all three.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model.h"
#include "thread/pool.h"
#include "util/file.h"
#include "util/json.h"

static int own(medembed_model *m, void *p, me_err *e)
{
    if (m->n_owned == m->cap_owned) {
        int32_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **o = realloc(m->owned, sizeof *o * (size_t)cap);
        if (!o) {
            free(p);
            return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory holding weights");
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return MEDEMBED_OK;
}

static const me_st_tensor *find_any(const medembed_model *m, const char *name, int32_t *shard)
{
    char pref[512];
    snprintf(pref, sizeof pref, "bert.%s", name);
    for (int32_t i = 0; i < m->n_shards; i++) {
        const me_st_tensor *t = me_st_find(&m->shards[i], name);
        if (!t)
            t = me_st_find(&m->shards[i], pref);
        if (t) {
            if (shard)
                *shard = i;
            return t;
        }
    }
    return NULL;
}

/* Looks up `name` (trying the LayerNorm gamma/beta spelling too), checks its
 * shape against (d0[, d1]) and returns fp32 data (in place or converted). */
static int get_f32(medembed_model *m, const char *name, int64_t d0, int64_t d1,
                   const float **out, me_err *e)
{
    const me_st_tensor *t = find_any(m, name, NULL);
    if (!t) {
        char alt[512];
        const char *w = strstr(name, "LayerNorm.weight");
        const char *b = strstr(name, "LayerNorm.bias");
        if (w || b) {
            size_t stem = (size_t)((w ? w : b) - name);
            snprintf(alt, sizeof alt, "%.*sLayerNorm.%s", (int)stem, name, w ? "gamma" : "beta");
            t = find_any(m, alt, NULL);
        }
    }
    RETURN_ERROR_IF(!t, e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\" is missing from the weights (also tried \"bert.%s\")",
                    m->dir, name, name);
    int ndim = d1 ? 2 : 1;
    RETURN_ERROR_IF(t->n_dims != ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1), e,
                    MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\" has shape [%lld%s%lld%s] but the config needs [%lld%s%lld]",
                    m->dir, t->name, (long long)(t->n_dims > 0 ? t->shape[0] : 0),
                    t->n_dims > 1 ? ", " : "", (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                    t->n_dims > 2 ? ", ..." : "", (long long)d0, d1 ? ", " : "",
                    (long long)d1);
    RETURN_ERROR_IF(t->dtype != ME_ST_F32 && t->dtype != ME_ST_F16 && t->dtype != ME_ST_BF16, e,
                    MEDEMBED_ERR_UNSUPPORTED,
                    "%s: tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", m->dir,
                    t->name, me_st_dtype_name(t->dtype));
    if (t->dtype == ME_ST_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = (const float *)(const void *)t->data;
        return MEDEMBED_OK;
    }
    size_t n = (size_t)t->numel;
    float *f = malloc(sizeof *f * (n ? n : 1));
    RETURN_ERROR_IF(!f, e, MEDEMBED_ERR_NOMEM, "out of memory converting \"%s\"", t->name);
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == ME_ST_F32) {
            memcpy(&f[i], p + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            f[i] = t->dtype == ME_ST_F16 ? me_f16_to_f32(h) : me_bf16_to_f32(h);
        }
    }
    FORWARD_IF_ERROR(own(m, f, e));
    *out = f;
    return MEDEMBED_OK;
}

static int get_linear(medembed_model *m, const char *prefix, int32_t n_out, int32_t n_in,
                      me_linear *L, me_err *e)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight", prefix);
    FORWARD_IF_ERROR(get_f32(m, name, n_out, n_in, &L->w, e));
    snprintf(name, sizeof name, "%s.bias", prefix);
    FORWARD_IF_ERROR(get_f32(m, name, n_out, 0, &L->b, e));
    L->n_out = n_out;
    L->n_in = n_in;
    return MEDEMBED_OK;
}

/* Q, K, V -> one (3H, H) projection: the three weight blocks are read in
 * place (me_linear.w_part, no copy), the biases are fused into one (3H)
 * vector. */
static int get_qkv(medembed_model *m, int32_t il, me_linear *L, me_err *e)
{
    int32_t H = m->cfg.hidden;
    float *b = malloc(sizeof *b * (size_t)3 * (size_t)H);
    if (!b)
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory fusing Q/K/V biases");
    FORWARD_IF_ERROR(own(m, b, e));
    static const char *parts[3] = {"query", "key", "value"};
    memset(L, 0, sizeof *L);
    for (int p = 0; p < 3; p++) {
        char pre[256];
        me_linear part;
        memset(&part, 0, sizeof part);
        snprintf(pre, sizeof pre, "encoder.layer.%d.attention.self.%s", il, parts[p]);
        FORWARD_IF_ERROR(get_linear(m, pre, H, H, &part, e));
        L->w_part[p] = part.w;
        memcpy(b + (size_t)p * H, part.b, sizeof *b * (size_t)H);
    }
    L->w = NULL;
    L->part_rows = H;
    L->b = b;
    L->n_out = 3 * H;
    L->n_in = H;
    return MEDEMBED_OK;
}

/* Drops the fp32 source of a packed layer: converted copies are freed,
 * ranges of the weight-file mapping are given back to the kernel
 * (MADV_DONTNEED on a read-only private file mapping just unmaps the pages;
 * touching them again would re-read the file; after a staged packing they
 * were never mapped in and this costs nothing). This keeps the resident
 * size at about the packed weights instead of file + packed. */
static void release_range(medembed_model *m, const float *p, size_t bytes)
{
    for (int32_t i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) {
            free(m->owned[i]);
            m->owned[i] = NULL;
            return;
        }
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t z = ((uintptr_t)p + bytes) & ~((uintptr_t)pg - 1);
    if (z > a)
        madvise((void *)a, z - a, MADV_DONTNEED);
}

/* Maps a layer's fp32 source in one call when it will be read through the
 * mapping (not staged): one MADV_POPULATE_READ (Linux 5.14+; ignored
 * elsewhere) instead of a page fault per 64 KiB. */
#if defined(__linux__) && !defined(MADV_POPULATE_READ)
#define MADV_POPULATE_READ 22 /* Linux's value, for C libraries older than 5.14's headers */
#endif
static void populate_range(const float *p, size_t bytes)
{
#ifdef MADV_POPULATE_READ
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~((uintptr_t)pg - 1);
    uintptr_t z = (uintptr_t)p + bytes;
    (void)madvise((void *)a, z - a, MADV_POPULATE_READ);
#else
    (void)p; /* other systems fault the pages in as they are read */
    (void)bytes;
#endif
}

/* L's fp32 source in order of output rows: w whole, or its w_part blocks
 * (part_rows rows each, the last one possibly fewer), up to the first
 * missing part. Returns how many pieces; rows[i] is piece i's row count. */
static int source_pieces(const me_linear *L, const float *p[3], int32_t rows[3])
{
    if (L->w) {
        p[0] = L->w;
        rows[0] = L->n_out;
        return 1;
    }
    int n = 0;
    for (int32_t r0 = 0; n < 3 && r0 < L->n_out && L->w_part[n]; n++, r0 += L->part_rows) {
        p[n] = L->w_part[n];
        rows[n] = L->n_out - r0 < L->part_rows ? L->n_out - r0 : L->part_rows;
    }
    return n;
}

void me_weights_prefault(const medembed_model *m, const me_linear *L)
{
    (void)m;
    const float *p[3];
    int32_t rows[3];
    int np = source_pieces(L, p, rows);
    for (int i = 0; i < np; i++)
        populate_range(p[i], sizeof(float) * (size_t)L->n_in * (size_t)rows[i]);
}

/* Why stage: in VMs the first access to each 4 KiB page of a fresh mapping
 * costs more than copying the same bytes with pread, even when the page is
 * in the page cache (docs/PERFORMANCE.md, "Packed weights"). */
static int stage_range(const medembed_model *m, const float *p, size_t bytes, uint8_t *dst)
{
    for (int32_t i = 0; i < m->n_shards; i++)
        if (me_map_read(&m->shards[i].map, p, bytes, dst) == 0)
            return 0;
    return -1;
}

int me_weights_stage(const medembed_model *m, me_linear *L, void *scratch, size_t cap,
                     const float *saved[4])
{
    size_t row = sizeof(float) * (size_t)L->n_in;
    size_t need = row * (size_t)L->n_out, got = 0;
    if (!scratch || need > cap)
        return 0;
    const float *p[3];
    int32_t rows[3];
    int np = source_pieces(L, p, rows);
    for (int i = 0; i < np; i++) {
        size_t n = row * (size_t)rows[i];
        if (n > need - got || stage_range(m, p[i], n, (uint8_t *)scratch + got) != 0)
            return 0;
        got += n;
    }
    if (got != need) /* a part missing */
        return 0;
    saved[0] = L->w;
    for (int i = 0; i < 3; i++)
        saved[i + 1] = L->w_part[i];
    L->w = (const float *)scratch;
    memset(L->w_part, 0, sizeof L->w_part);
    return 1;
}

void me_weights_unstage(me_linear *L, const float *const saved[4])
{
    L->w = saved[0];
    for (int p = 0; p < 3; p++)
        L->w_part[p] = saved[p + 1];
}

void me_weights_release(medembed_model *m, me_linear *L)
{
    const float *p[3];
    int32_t rows[3];
    int np = source_pieces(L, p, rows);
    for (int i = 0; i < np; i++)
        release_range(m, p[i], sizeof(float) * (size_t)L->n_in * (size_t)rows[i]);
    L->w = NULL;
    memset(L->w_part, 0, sizeof L->w_part);
}

/* Opens model.safetensors, or every shard named in the index. */
static int open_shards(medembed_model *m, const char *dir, me_err *e)
{
    char path[4096];
    me_path_join(path, sizeof path, dir, "model.safetensors");
    if (me_file_exists(path)) {
        m->shards = calloc(1, sizeof *m->shards);
        RETURN_ERROR_IF(!m->shards, e, MEDEMBED_ERR_NOMEM, "out of memory");
        FORWARD_IF_ERROR(me_st_open(path, &m->shards[0], e));
        m->n_shards = 1;
        return MEDEMBED_OK;
    }
    me_path_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (!me_file_exists(path)) {
        char bin[4096];
        me_path_join(bin, sizeof bin, dir, "pytorch_model.bin");
        RETURN_ERROR_IF(me_file_exists(bin), e, MEDEMBED_ERR_UNSUPPORTED,
                        "%s/model.safetensors not found; pytorch_model.bin (pickle) is not "
                        "supported. Convert it, or pull the safetensors revision",
                        dir);
        return me_err_set(e, MEDEMBED_ERR_NOT_FOUND,
                          "%s/model.safetensors not found (nor model.safetensors.index.json)",
                          dir);
    }
    json_t *j = NULL;
    FORWARD_IF_ERROR(me_json_load_file(path, &j, e));
    json_t *wm = json_object_get(j, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(j);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: missing object \"weight_map\"", path);
    }
    /* Unique shard file names, in first-seen order. */
    size_t n = json_object_size(wm);
    const char **files = calloc(n ? n : 1, sizeof *files);
    int32_t nf = 0;
    int rc = files ? MEDEMBED_OK : me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v)
    {
        if (rc != MEDEMBED_OK)
            break;
        const char *f = json_string_value(v);
        if (!f || strchr(f, '/') || strcmp(f, "..") == 0 || !*f) {
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                            "%s: weight_map entry \"%s\" must name a file in the folder", path, k);
            break;
        }
        int seen = 0;
        for (int32_t i = 0; i < nf; i++)
            seen |= strcmp(files[i], f) == 0;
        if (!seen)
            files[nf++] = f;
    }
    if (rc == MEDEMBED_OK && nf == 0)
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: weight_map is empty", path);
    if (rc == MEDEMBED_OK) {
        m->shards = calloc((size_t)nf, sizeof *m->shards);
        if (!m->shards)
            rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; rc == MEDEMBED_OK && i < nf; i++) {
        char sp[4096];
        me_path_join(sp, sizeof sp, dir, files[i]);
        rc = me_st_open(sp, &m->shards[i], e);
        if (rc == MEDEMBED_OK)
            m->n_shards++;
    }
    /* Every mapped tensor must be where the index says. */
    json_object_foreach(wm, k, v)
    {
        if (rc != MEDEMBED_OK)
            break;
        int32_t sh = -1;
        const me_st_tensor *t = NULL;
        for (int32_t i = 0; i < m->n_shards && !t; i++) {
            t = me_st_find(&m->shards[i], k);
            sh = i;
        }
        if (!t || strcmp(files[sh], json_string_value(v)) != 0)
            rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                            "%s: tensor \"%s\" is not in shard \"%s\" as the index says", path, k,
                            json_string_value(v));
    }
    free(files);
    json_decref(j);
    return rc;
}

/* ------------------------------------------------ NaN / infinity scan */

/* A float is NaN or infinite when its exponent bits are all ones: adding
 * the exponent's lowest bit to (bits & exponent) then carries into the
 * sign bit, and for no other exponent. So one OR of (bits & E) + low over a
 * range has its top bit set iff the range holds one. Vector extensions
 * (the baseline SSE2) do 16 bytes per operation, unaligned data via memcpy. */
typedef uint32_t me_v4u __attribute__((vector_size(16)));
typedef uint16_t me_v8h __attribute__((vector_size(16)));

static int has_nonfinite(const uint8_t *p, size_t n_bytes, me_st_dtype dt)
{
    size_t i = 0;
    if (dt == ME_ST_F32) {
        me_v4u acc = {0}, E = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u},
               lo = {0x00800000u, 0x00800000u, 0x00800000u, 0x00800000u};
        for (; i + 16 <= n_bytes; i += 16) {
            me_v4u w;
            memcpy(&w, p + i, 16);
            acc |= (w & E) + lo;
        }
        uint32_t r = acc[0] | acc[1] | acc[2] | acc[3];
        for (; i + 4 <= n_bytes; i += 4) {
            uint32_t w;
            memcpy(&w, p + i, 4);
            r |= (w & 0x7f800000u) + 0x00800000u;
        }
        return (int)(r >> 31);
    }
    uint16_t e = dt == ME_ST_F16 ? 0x7c00 : 0x7f80, l = dt == ME_ST_F16 ? 0x0400 : 0x0080;
    me_v8h acc = {0}, E = {e, e, e, e, e, e, e, e}, lo = {l, l, l, l, l, l, l, l};
    for (; i + 16 <= n_bytes; i += 16) {
        me_v8h w;
        memcpy(&w, p + i, 16);
        acc |= (w & E) + lo;
    }
    uint16_t r = 0;
    for (int k = 0; k < 8; k++)
        r |= acc[k];
    for (; i + 2 <= n_bytes; i += 2) {
        uint16_t w;
        memcpy(&w, p + i, 2);
        r = (uint16_t)(r | (uint16_t)((w & e) + l));
    }
    return r >> 15;
}

/* Pieces of at most FINITE_PIECE bytes of one tensor, scanned by all CPUs
 * (the first read of a mapped file is bound by page walks, which
 * parallelize). */
#define FINITE_PIECE ((size_t)4 << 20)
typedef struct {
    const me_st_tensor *t;
    size_t off, n;
    int bad;
} finite_piece;

static void finite_task(void *arg, int64_t i, int32_t thread)
{
    finite_piece *pc = &((finite_piece *)arg)[i];
    populate_range((const float *)(const void *)(pc->t->data + pc->off), pc->n);
    pc->bad = has_nonfinite(pc->t->data + pc->off, pc->n, pc->t->dtype);
}

/* Refuses weights holding NaN or infinity in any float tensor of any shard
 * (used or not), naming the first such tensor and element. */
static int check_finite(medembed_model *m, me_err *e)
{
    size_t n_pieces = 0;
    for (int32_t s = 0; s < m->n_shards; s++)
        for (int32_t t = 0; t < m->shards[s].n_tensors; t++) {
            const me_st_tensor *tt = &m->shards[s].tensors[t];
            if (tt->dtype == ME_ST_F32 || tt->dtype == ME_ST_F16 || tt->dtype == ME_ST_BF16)
                n_pieces += (tt->n_bytes + FINITE_PIECE - 1) / FINITE_PIECE;
        }
    finite_piece *pc = malloc(sizeof *pc * (n_pieces ? n_pieces : 1));
    RETURN_ERROR_IF(!pc, e, MEDEMBED_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int32_t s = 0; s < m->n_shards; s++)
        for (int32_t t = 0; t < m->shards[s].n_tensors; t++) {
            const me_st_tensor *tt = &m->shards[s].tensors[t];
            if (tt->dtype != ME_ST_F32 && tt->dtype != ME_ST_F16 && tt->dtype != ME_ST_BF16)
                continue;
            for (size_t off = 0; off < tt->n_bytes; off += FINITE_PIECE) {
                size_t n = tt->n_bytes - off < FINITE_PIECE ? tt->n_bytes - off : FINITE_PIECE;
                pc[k++] = (finite_piece){tt, off, n, 0};
            }
        }
    me_pool *pool = n_pieces > 1 ? me_pool_create(0) : NULL;
    me_pool_run(pool, (int64_t)n_pieces, finite_task, pc); /* a NULL pool runs them here */
    me_pool_free(pool);
    char msg[900] = "";
    size_t len = 0;
    int n_bad = 0;
    const me_st_tensor *last = NULL;
    for (size_t i = 0; i < n_pieces; i++) {
        const me_st_tensor *tt = pc[i].t;
        if (!pc[i].bad || tt == last)
            continue;
        last = tt;
        if (n_bad++ >= 4)
            continue;
        size_t es = tt->dtype == ME_ST_F32 ? 4 : 2, at = pc[i].off / es;
        float v = 0;
        for (; at < (size_t)tt->numel; at++) {
            const uint8_t *q = tt->data + at * es;
            if (es == 4) {
                memcpy(&v, q, 4);
            } else {
                uint16_t h = (uint16_t)(q[0] | q[1] << 8);
                v = tt->dtype == ME_ST_F16 ? me_f16_to_f32(h) : me_bf16_to_f32(h);
            }
            if (!isfinite(v))
                break;
        }
        int w = snprintf(msg + len, sizeof msg - len, "%stensor \"%.200s\" holds %s at element %zu",
                         len ? "; " : "", tt->name, isnan(v) ? "NaN" : "infinity", at);
        if (w > 0)
            len = len + (size_t)w < sizeof msg ? len + (size_t)w : sizeof msg - 1;
    }
    int rc = MEDEMBED_OK;
    if (n_bad)
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: %s%s: the weights are damaged", m->dir, msg,
                        n_bad > 4 ? " (and more tensors)" : "");
    free(pc);
    return rc;
}

int me_weights_load(medembed_model *m, const char *dir, me_err *e)
{
    const me_config *c = &m->cfg;
    int32_t H = c->hidden, F = c->ffn;
    FORWARD_IF_ERROR(open_shards(m, dir, e));

    FORWARD_IF_ERROR(
        get_f32(m, "embeddings.word_embeddings.weight", c->vocab_size, H, &m->word_emb, e));
    FORWARD_IF_ERROR(
        get_f32(m, "embeddings.position_embeddings.weight", c->max_pos, H, &m->pos_emb, e));
    m->type_emb = NULL;
    if (c->type_vocab > 0)
        FORWARD_IF_ERROR(get_f32(m, "embeddings.token_type_embeddings.weight", c->type_vocab, H,
                                 &m->type_emb, e));
    if (c->kind == MEDEMBED_KIND_CROSS_ENCODER) {
        FORWARD_IF_ERROR(get_f32(m, "pooler.dense.weight", H, H, &m->pool_w, e));
        FORWARD_IF_ERROR(get_f32(m, "pooler.dense.bias", H, 0, &m->pool_b, e));
        FORWARD_IF_ERROR(get_f32(m, "classifier.weight", c->num_labels, H, &m->cls_w, e));
        FORWARD_IF_ERROR(get_f32(m, "classifier.bias", c->num_labels, 0, &m->cls_b, e));
    }
    FORWARD_IF_ERROR(get_f32(m, "embeddings.LayerNorm.weight", H, 0, &m->emb_ln_g, e));
    FORWARD_IF_ERROR(get_f32(m, "embeddings.LayerNorm.bias", H, 0, &m->emb_ln_b, e));

    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    RETURN_ERROR_IF(!m->layers, e, MEDEMBED_ERR_NOMEM, "out of memory");
    for (int32_t il = 0; il < c->n_layers; il++) {
        me_layer *L = &m->layers[il];
        char pre[256], name[320];
        FORWARD_IF_ERROR(get_qkv(m, il, &L->qkv, e));
        snprintf(pre, sizeof pre, "encoder.layer.%d.attention.output.dense", il);
        FORWARD_IF_ERROR(get_linear(m, pre, H, H, &L->attn_out, e));
        snprintf(name, sizeof name, "encoder.layer.%d.attention.output.LayerNorm.weight", il);
        FORWARD_IF_ERROR(get_f32(m, name, H, 0, &L->ln1_g, e));
        snprintf(name, sizeof name, "encoder.layer.%d.attention.output.LayerNorm.bias", il);
        FORWARD_IF_ERROR(get_f32(m, name, H, 0, &L->ln1_b, e));
        snprintf(pre, sizeof pre, "encoder.layer.%d.intermediate.dense", il);
        FORWARD_IF_ERROR(get_linear(m, pre, F, H, &L->ffn_in, e));
        snprintf(pre, sizeof pre, "encoder.layer.%d.output.dense", il);
        FORWARD_IF_ERROR(get_linear(m, pre, H, F, &L->ffn_out, e));
        snprintf(name, sizeof name, "encoder.layer.%d.output.LayerNorm.weight", il);
        FORWARD_IF_ERROR(get_f32(m, name, H, 0, &L->ln2_g, e));
        snprintf(name, sizeof name, "encoder.layer.%d.output.LayerNorm.bias", il);
        FORWARD_IF_ERROR(get_f32(m, name, H, 0, &L->ln2_b, e));
    }
    /* The order the forward pass multiplies them in (me_linear.next). */
    for (int32_t il = 0; il < c->n_layers; il++) {
        me_layer *L = &m->layers[il];
        L->qkv.next = &L->attn_out;
        L->attn_out.next = &L->ffn_in;
        L->ffn_in.next = &L->ffn_out;
        L->ffn_out.next = il + 1 < c->n_layers ? &m->layers[il + 1].qkv : NULL;
    }
    /* A layer beyond num_hidden_layers means config and weights disagree. */
    char extra[256];
    snprintf(extra, sizeof extra, "encoder.layer.%d.attention.self.query.weight", c->n_layers);
    RETURN_ERROR_IF(find_any(m, extra, NULL), e, MEDEMBED_ERR_FORMAT,
                    "%s: the weights hold more layers than num_hidden_layers = %d", dir,
                    c->n_layers);

    FORWARD_IF_ERROR(check_finite(m, e));

    /* Weight dtype (of the word embeddings) and parameter count. */
    const me_st_tensor *we = find_any(m, "embeddings.word_embeddings.weight", NULL);
    m->weight_dtype = we->dtype;
    m->n_params = 0;
    for (int32_t i = 0; i < m->n_shards; i++)
        for (int32_t t = 0; t < m->shards[i].n_tensors; t++) {
            const me_st_tensor *tt = &m->shards[i].tensors[t];
            if (tt->dtype == ME_ST_F32 || tt->dtype == ME_ST_F16 || tt->dtype == ME_ST_BF16)
                m->n_params += tt->numel;
        }
    return MEDEMBED_OK;
}

void me_weights_free(medembed_model *m)
{
    if (!m->layers && !m->shards && !m->owned)
        return;
    if (m->layers && m->kern && m->kern->unpack)
        for (int32_t il = 0; il < m->cfg.n_layers; il++) {
            m->kern->unpack(&m->layers[il].qkv);
            m->kern->unpack(&m->layers[il].attn_out);
            m->kern->unpack(&m->layers[il].ffn_in);
            m->kern->unpack(&m->layers[il].ffn_out);
        }
    free(m->layers);
    m->layers = NULL;
    for (int32_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    m->owned = NULL;
    m->n_owned = m->cap_owned = 0;
    for (int32_t i = 0; i < m->n_shards; i++)
        me_st_close(&m->shards[i]);
    free(m->shards);
    m->shards = NULL;
    m->n_shards = 0;
}
