/* safetensors.c - safetensors header validation and tensor lookup. */
#include "model/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "util/json.h"

static const struct {
    const char *name;
    size_t size;
} DTYPES[ME_ST_N_DTYPES] = {
    [ME_ST_F32] = {"F32", 4}, [ME_ST_F16] = {"F16", 2}, [ME_ST_BF16] = {"BF16", 2},
    [ME_ST_F64] = {"F64", 8}, [ME_ST_I64] = {"I64", 8}, [ME_ST_I32] = {"I32", 4},
    [ME_ST_I16] = {"I16", 2}, [ME_ST_I8] = {"I8", 1},   [ME_ST_U8] = {"U8", 1},
    [ME_ST_BOOL] = {"BOOL", 1},
};

const char *me_st_dtype_name(me_st_dtype d)
{
    return (unsigned)d < ME_ST_N_DTYPES ? DTYPES[d].name : "?";
}

size_t me_st_dtype_size(me_st_dtype d)
{
    return (unsigned)d < ME_ST_N_DTYPES ? DTYPES[d].size : 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const me_st_tensor *)a)->name, ((const me_st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const me_st_tensor *x = *(me_st_tensor *const *)a, *y = *(me_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static void free_tensors(me_st_file *f)
{
    for (int32_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

/* Parses one header entry into t. */
static int parse_entry(const char *what, const char *name, json_t *v, const uint8_t *data,
                       uint64_t data_len, me_st_tensor *t, me_err *e)
{
    RETURN_ERROR_IF(!json_is_object(v), e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": header entry is not an object", what, name);
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    RETURN_ERROR_IF(!json_is_string(jd), e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": missing string \"dtype\"", what, name);
    RETURN_ERROR_IF(!json_is_array(js), e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": missing array \"shape\"", what, name);
    RETURN_ERROR_IF(!json_is_array(jo) || json_array_size(jo) != 2, e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": \"data_offsets\" must be [begin, end]", what, name);
    const char *ds = json_string_value(jd);
    int dt = -1;
    for (int i = 0; i < ME_ST_N_DTYPES; i++)
        if (strcmp(ds, DTYPES[i].name) == 0)
            dt = i;
    RETURN_ERROR_IF(dt < 0, e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": unknown dtype \"%s\" (expected F32, F16, BF16, F64, I64, "
                    "I32, I16, I8, U8 or BOOL)",
                    what, name, ds);
    t->dtype = (me_st_dtype)dt;
    size_t nd = json_array_size(js);
    RETURN_ERROR_IF(nd > ME_ST_MAX_DIMS, e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": %zu dimensions (at most %d)", what, name, nd,
                    ME_ST_MAX_DIMS);
    t->n_dims = (int32_t)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        RETURN_ERROR_IF(!json_is_integer(d) || json_integer_value(d) < 0, e, MEDEMBED_ERR_FORMAT,
                        "%s: tensor \"%s\": shape[%zu] is not a non-negative integer", what, name,
                        i);
        uint64_t di = (uint64_t)json_integer_value(d);
        RETURN_ERROR_IF(di != 0 && numel > (UINT64_C(1) << 48) / di, e, MEDEMBED_ERR_FORMAT,
                        "%s: tensor \"%s\": shape product overflows", what, name);
        numel *= di;
        t->shape[i] = (int64_t)di;
    }
    t->numel = (int64_t)numel;
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    RETURN_ERROR_IF(!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
                        json_integer_value(je) < 0,
                    e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": data_offsets must be non-negative integers", what, name);
    uint64_t b = (uint64_t)json_integer_value(jb), en = (uint64_t)json_integer_value(je);
    RETURN_ERROR_IF(b > en || en > data_len, e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": data_offsets [%llu, %llu] outside the data block of %llu "
                    "bytes",
                    what, name, (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)data_len);
    uint64_t want = numel * DTYPES[dt].size;
    RETURN_ERROR_IF(en - b != want, e, MEDEMBED_ERR_FORMAT,
                    "%s: tensor \"%s\": %llu bytes of data but shape x %s needs %llu", what, name,
                    (unsigned long long)(en - b), ds, (unsigned long long)want);
    t->data = data + b;
    t->n_bytes = (size_t)want;
    return MEDEMBED_OK;
}

int me_st_parse(const uint8_t *buf, size_t len, const char *what, me_st_file *f, me_err *e)
{
    memset(f, 0, sizeof *f);
    f->map.fd = -1; /* no file: me_map_read refuses, me_map_close leaves fd 0 alone */
    RETURN_ERROR_IF(len < 8, e, MEDEMBED_ERR_FORMAT,
                    "%s: %zu bytes is too short for a safetensors file (truncated?)", what, len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | buf[i];
    RETURN_ERROR_IF(hl > len - 8, e, MEDEMBED_ERR_FORMAT,
                    "%s: header length %llu exceeds the file size %zu minus 8 (truncated or not "
                    "safetensors)",
                    what, (unsigned long long)hl, len);
    RETURN_ERROR_IF(hl > ME_ST_MAX_HEADER, e, MEDEMBED_ERR_FORMAT,
                    "%s: header length %llu is over the %llu-byte limit", what,
                    (unsigned long long)hl, (unsigned long long)ME_ST_MAX_HEADER);
    RETURN_ERROR_IF(hl < 2, e, MEDEMBED_ERR_FORMAT, "%s: empty safetensors header", what);
    f->header = buf + 8;
    f->header_len = (size_t)hl;
    const uint8_t *data = buf + 8 + hl;
    uint64_t data_len = len - 8 - hl;

    char hwhat[600];
    snprintf(hwhat, sizeof hwhat, "%s (safetensors header)", what);
    json_t *root = NULL;
    FORWARD_IF_ERROR(me_json_load_buf((const char *)f->header, f->header_len, hwhat, &root, e));

    size_t n = json_object_size(root);
    int rc = MEDEMBED_OK;
    if (n > ME_ST_MAX_TENSORS) {
        json_decref(root);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: %zu tensors (at most %d)", what, n,
                          ME_ST_MAX_TENSORS);
    }
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        json_decref(root);
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "%s: out of memory", what);
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        me_st_tensor *t = &f->tensors[f->n_tensors];
        rc = parse_entry(what, key, v, data, data_len, t, e);
        if (rc != MEDEMBED_OK)
            break;
        t->name = strdup(key);
        if (!t->name) {
            rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "%s: out of memory", what);
            break;
        }
        f->n_tensors++;
    }
    json_decref(root);
    if (rc == MEDEMBED_OK) {
        /* Overlap check: sort by start offset; each must end before the next starts. */
        me_st_tensor **byoff = malloc(sizeof *byoff * (size_t)(f->n_tensors ? f->n_tensors : 1));
        if (!byoff) {
            rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "%s: out of memory", what);
        } else {
            for (int32_t i = 0; i < f->n_tensors; i++)
                byoff[i] = &f->tensors[i];
            qsort(byoff, (size_t)f->n_tensors, sizeof *byoff, cmp_offset);
            for (int32_t i = 1; i < f->n_tensors && rc == MEDEMBED_OK; i++) {
                const me_st_tensor *a = byoff[i - 1], *b = byoff[i];
                if (a->n_bytes && b->n_bytes && a->data + a->n_bytes > b->data)
                    rc = me_err_set(e, MEDEMBED_ERR_FORMAT,
                                    "%s: tensors \"%s\" and \"%s\" overlap in the data block", what,
                                    a->name, b->name);
            }
            free(byoff);
        }
    }
    if (rc != MEDEMBED_OK) {
        free_tensors(f);
        return rc;
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_name);
    return MEDEMBED_OK;
}

int me_st_open(const char *path, me_st_file *f, me_err *e)
{
    me_map m;
    FORWARD_IF_ERROR(me_map_open(path, &m, e));
    int rc = me_st_parse(m.data, m.len, path, f, e);
    if (rc != MEDEMBED_OK) {
        me_map_close(&m);
        return rc;
    }
    f->map = m;
    return MEDEMBED_OK;
}

void me_st_close(me_st_file *f)
{
    if (!f)
        return;
    free_tensors(f);
    me_map_close(&f->map);
}

const me_st_tensor *me_st_find(const me_st_file *f, const char *name)
{
    int32_t lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}
