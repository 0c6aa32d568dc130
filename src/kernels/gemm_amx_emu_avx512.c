/*
 * gemm_amx_emu_avx512.c - the AMX level's kernels (gemm_amx.c) on emulated
 * tiles (amx_tile.h), as me_kern_amx_emu (level "amx-emu"): what the tests
 * run on CPUs without AMX. Built with the AVX-512 flags only (the shared
 * stores and copies are AVX-512 code).
 */
#define ME_AMX_EMULATE 1
#include "gemm_amx.c"
