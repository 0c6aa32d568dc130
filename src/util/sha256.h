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

#endif
