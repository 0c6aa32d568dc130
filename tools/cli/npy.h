/*
 * npy.h - the .npy header parser behind `--vectors` and `--query-vectors`
 * (no I/O, so tests/fuzz/fuzz_npy.c can drive it).
 */
#ifndef CLI_NPY_H
#define CLI_NPY_H

#include <stddef.h>
#include <stdint.h>

typedef struct npy_info {
    int64_t rows;
    int32_t cols;
    size_t data_offset; /* bytes before the first float */
} npy_info;

/* Parses the start of a .npy file: p holds its first avail bytes (at least
 * the preamble and header, or all of it), file_size is the whole file's
 * length. Accepts exactly a version 1-3 file holding a little-endian
 * float32 ('<f4'), C-order, 2-D (N, D) array with 1 <= D <= 65536 and
 * N <= 2^31, whose data is exactly N * D * 4 bytes. Returns 0, or 1 with a
 * one-line reason in why. */
int npy_parse(const uint8_t *p, size_t avail, uint64_t file_size, npy_info *out, char *why,
              size_t why_len);

#endif
