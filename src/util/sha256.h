/*
 * sha256.h - SHA-256 (FIPS 180-4), used for model fingerprints and for
 * checking downloaded LFS files against the hub's published digests.
 */
#ifndef ME_SHA256_H
#define ME_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct me_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;
    uint8_t buf[64];
    size_t n_buf;
} me_sha256;

void me_sha256_init(me_sha256 *s);
void me_sha256_update(me_sha256 *s, const void *data, size_t len);
void me_sha256_final(me_sha256 *s, uint8_t out[32]);
/* 64 lowercase hex chars + NUL. */
void me_sha256_hex(const uint8_t digest[32], char out[65]);

/* SHA-256 of a whole file, read sequentially in 1 MiB blocks, as 64
 * lowercase hex characters and a NUL.
 *   hex : OUT: 65 chars; unchanged on failure.
 *   err : OUT: a one-line message naming the path on failure; may be NULL.
 * Returns MEDEMBED_OK, _ERR_NOT_FOUND, _ERR_IO, _ERR_NOMEM or _ERR_ARG.
 * Thread-safe. (sha256_file.c; also compiled into the CLI for `pull`.) */
int me_sha256_file(const char *path, char hex[65], char *err, size_t err_len);

#endif
