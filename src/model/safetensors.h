/*
 * safetensors.h - validating reader for the safetensors format
 * (https://github.com/huggingface/safetensors#format): an 8-byte
 * little-endian header length N, N bytes of JSON {name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__": {...}}, then the data block.
 *
 * Everything is checked before use: N <= file size - 8 and <= ME_ST_MAX_HEADER;
 * known dtype; shape products without overflow; begin <= end <= data length;
 * end - begin == numel * element size; no overlapping tensors; no duplicate
 * names. Messages name the file, the tensor and the bad value.
 */
#ifndef ME_SAFETENSORS_H
#define ME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/file.h"

#define ME_ST_MAX_HEADER ((uint64_t)100 << 20) /* the reference implementation's cap */
#define ME_ST_MAX_DIMS 8
#define ME_ST_MAX_TENSORS 100000

typedef enum me_st_dtype {
    ME_ST_F32,
    ME_ST_F16,
    ME_ST_BF16,
    ME_ST_F64,
    ME_ST_I64,
    ME_ST_I32,
    ME_ST_I16,
    ME_ST_I8,
    ME_ST_U8,
    ME_ST_BOOL,
    ME_ST_N_DTYPES
} me_st_dtype;

typedef struct me_st_tensor {
    char *name;
    me_st_dtype dtype;
    int32_t n_dims;
    int64_t shape[ME_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* into the mapping; may be unaligned */
    size_t n_bytes;
} me_st_tensor;

typedef struct me_st_file {
    me_map map;             /* whole file (empty when parsed from memory) */
    me_st_tensor *tensors;  /* sorted by name */
    int32_t n_tensors;
    const uint8_t *header;  /* raw JSON header bytes, for fingerprints */
    size_t header_len;
} me_st_file;

const char *me_st_dtype_name(me_st_dtype d);
size_t me_st_dtype_size(me_st_dtype d);

/* Parses an in-memory safetensors image (buf must outlive f). `what` names
 * the source in messages. */
int me_st_parse(const uint8_t *buf, size_t len, const char *what, me_st_file *f, me_err *e);

/* mmaps and parses path. */
int me_st_open(const char *path, me_st_file *f, me_err *e);
void me_st_close(me_st_file *f);

/* Binary search by exact name; NULL if absent. */
const me_st_tensor *me_st_find(const me_st_file *f, const char *name);

#endif
