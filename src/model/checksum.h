/*
 * checksum.h - a 64-bit checksum of n bytes at memory speed: Fletcher-style
 * sums in 8 lanes of 64-bit words, every single changed word changes it and
 * so do swapped 64-byte steps. It guards against damaged files and tells
 * weights apart; it is not a defence against someone forging a collision.
 */
#ifndef ME_CHECKSUM_H
#define ME_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* The checksum of n bytes at p (n a multiple of 64), in 4 MiB pieces
 * summed on a temporary pool of all online CPUs. */
uint64_t me_checksum64(const uint8_t *p, size_t n);

#endif
