/*
 * kernels.h - the compute kernels of the encoder behind one dispatch table.
 *
 * gemm.c holds the portable scalar reference (always built; it is the test
 * oracle for the ISA files). dispatch.c fills `me_kern` once from cpuid +
 * XGETBV (cpu.c), or from MEDEMBED_ISA=scalar|avx2|avx512.
 *
 * Determinism contract for every implementation: each output element is
 * computed by one thread, in an order that depends only on the element's own
 * inputs (never on M, on tiling position or on the thread count). That is
 * what makes an embedding bit-identical whatever else is in the batch.
 */
#ifndef ME_KERNELS_H
#define ME_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "thread/pool.h"

/* CPU levels, ordered. */
typedef enum me_isa { ME_ISA_SCALAR = 0, ME_ISA_AVX2 = 1, ME_ISA_AVX512 = 2 } me_isa;

typedef struct me_cpu {
    int avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq;
    int avx512_bf16, avx512_vnni;
    int os_avx, os_avx512; /* XGETBV says the OS saves the registers */
} me_cpu;

void me_cpu_detect(me_cpu *c);
const char *me_isa_name(me_isa isa);

/* Epilogue applied to y = x W^T + b, in this order. */
#define ME_EPI_GELU 0x1u     /* exact erf GELU */
#define ME_EPI_RESIDUAL 0x2u /* + residual (same shape as y) */

/* A linear layer y = x W^T + b with W of shape (n_out, n_in), PyTorch layout.
 * `w` is always the fp32 reference copy; ISA kernels may add a packed form. */
typedef struct me_linear {
    int32_t n_out, n_in;
    const float *w;    /* (n_out, n_in) */
    const float *b;    /* (n_out) */
    void *packed;      /* kernel-specific layout, owned by the model; or NULL */
    int32_t packed_kind;
} me_linear;

/* Function table. `pool` may be NULL (single thread). */
typedef struct me_kern {
    me_isa isa;
    /* y[M, n_out] = epi(x[M, n_in] W^T + b); residual may be NULL unless flagged. */
    void (*linear)(const me_linear *L, const float *x, int32_t M, float *y,
                   const float *residual, uint32_t epi, me_pool *pool);
    /* Optional: build L->packed (called once at model load); NULL if unused. */
    int (*pack)(me_linear *L, int32_t dtype);
    void (*unpack)(me_linear *L);
} me_kern;

/* The table for the current process (chosen on first use; thread-safe). */
const me_kern *me_kern_get(void);
/* A specific level, or NULL if this CPU/build cannot run it. */
const me_kern *me_kern_for(me_isa isa);

/* Scalar reference entry points (gemm.c). */
void me_linear_scalar(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool);
float me_gelu_ref(float x);

/* fp16 / bf16 -> fp32 conversion (exact). */
float me_f16_to_f32(uint16_t h);
float me_bf16_to_f32(uint16_t b);

#endif
