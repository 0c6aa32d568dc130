/*
 * kernels.h - the compute kernels of the encoder behind one dispatch table.
 *
 * Generic files hold the portable scalar references (always built; they are
 * the test oracles for the ISA files): gemm.c (linear layers in every
 * dtype), attn.c (attention, LayerNorm), dot.c (the search index's dot
 * products), pack.c (weight and row quantization shared by every level and
 * by the index), blocks.c (the packed column-block form, header and
 * pack cache adoption, that the AVX2 and NEON levels share). gemm_avx2.c / gemm_avx512.c (+ attn_*.c, dot_*.c) hold the
 * SIMD versions; gemm_sched.c schedules the GEMMs of every SIMD level.
 * gemm_amx.c is the AMX level: the AVX-512 table with the bf16 and int8
 * linear layers on tiles, through the tile operations of amx_tile.h
 * (native, or emulated in C for the tests). dispatch.c fills `me_kern`
 * once from cpuid + XGETBV (cpu.c; getauxval's hardware capabilities on
 * ARM64, where gemm_neon.c is the NEON level), or from
 * MEDEMBED_ISA=scalar|avx2|avx512|amx|neon: choosing a level chooses every
 * kernel, the index's included.
 *
 * What a SIMD level provides (gemm_avx2.c, gemm_avx512.c, gemm_amx.c,
 * gemm_neon.c), in its file with its own compiler flags:
 *   - pack / adopt / unpack: its packed layout, in column blocks (a block:
 *     `cols` outputs, their weights for every k step together);
 *   - a plan (gemm_sched.h, me_gemm_plan_fn) that describes a packed layer
 *     to the scheduler: where its blocks are, and the microkernel for its
 *     dtype (me_gemm_ukernel): tiles of 1..rows rows x one block, the store
 *     that applies the epilogue to a tile, the copy of x the tiles read
 *     (bf16, int8), and a few sizes (m-block rows, blocks per task, how
 *     many tiles share the next block's prefetch);
 *   - `linear` = me_gemm_linear(its plan, ...): the shared scheduler then
 *     picks m-blocks, tasks or per-thread ranges (ranges.h), prefetches,
 *     and makes the copy of x, identically for every level;
 *   - attention, LayerNorm, GELU, the search dot products and peak.
 *
 * Determinism contract for every implementation: each output element is
 * computed by one thread, in an order that depends only on the element's own
 * inputs (never on M, on tiling position or on the thread count). That is
 * what makes an embedding bit-identical whatever else is in the batch.
 *
 * Numerics of the compute dtypes (the same at every level; only the
 * summation order differs between levels):
 *   f32  : fp32 products; AVX-512 and AVX2 sum each output serially in
 *          chunks of me_f32_chunk(K) consecutive k (from k = 0) and add the
 *          chunk sums in order (the same bits on both levels, and on AMX,
 *          which keeps the AVX-512 fp32 path); the scalar reference sums in
 *          double.
 *   bf16 : weights and the GEMM input rows rounded to bf16 (round to
 *          nearest even), exact products, fp32 sums (vdpbf16ps semantics).
 *          CPUs without AVX512_BF16, and AVX2, compute the same products in
 *          fp32 FMA. AMX: tdpbf16ps, whose every instruction sums 32
 *          consecutive k (from k = 0) in two fp32 sums (even and odd k)
 *          and adds them to the output's running sum (amx_tile.h says
 *          how, with its denormal rules). NEON with FEAT_BF16: bfmmla,
 *          whose sums are Arm's BFDotAdd, two k a step, rounded to odd
 *          with denormals flushed (gemm_mmla.c); without it, fp32 FMA.
 *   int8 : weights per output channel: s_w = max|W[n,:]| / 127,
 *          q_w = round(W / s_w) in [-127, 127]; input rows per row (dynamic):
 *          s_x = max|x[m,:]| / 127, q_x = round(x / s_x) in [-127, 127];
 *          y = s_x s_w (sum q_x q_w) + b with an exact int32 sum
 *          (vpdpbusd, or AMX tdpbusd, on q_x + 128 with the 128 * sum(q_w)
 *          correction; vpmaddwd on int16 pairs of q_x and q_w on AVX2):
 *          AVX-512 and AMX give the same bits.
 *   Attention, LayerNorm, softmax and GELU are fp32 in every dtype.
 */
#ifndef ME_KERNELS_H
#define ME_KERNELS_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "thread/pool.h"

/* CPU levels, ordered (ME_ISA_AMX_EMU excepted). ME_ISA_AMX_EMU is the AMX
 * level's kernels on emulated tiles (amx_tile.h): any AVX-512 CPU runs it,
 * slowly; it is how the AMX code is tested on CPUs without AMX, and is
 * never chosen unless MEDEMBED_ISA=amx-emu asks for it. */
typedef enum me_isa {
    ME_ISA_SCALAR = 0,
    ME_ISA_AVX2 = 1,
    ME_ISA_AVX512 = 2,
    ME_ISA_AMX = 3,
    ME_ISA_AMX_EMU = 4,
    ME_ISA_NEON = 5 /* ARM64: Advanced SIMD, + sdot where FEAT_DotProd is there */
} me_isa;

typedef struct me_cpu {
    int avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq;
    int avx512_bf16, avx512_vnni;
    int amx_tile, amx_bf16, amx_int8;
    int os_avx, os_avx512; /* XGETBV says the OS saves the registers */
    /* XCR0 enables the tile state (XTILECFG, XTILEDATA) and Linux granted
     * this process the tile data (arch_prctl ARCH_REQ_XCOMP_PERM) */
    int os_amx;
    /* ARM64 (getauxval AT_HWCAP / AT_HWCAP2): Advanced SIMD, FEAT_DotProd
     * (sdot/udot), FEAT_BF16, FEAT_I8MM */
    int neon, dotprod, arm_bf16, i8mm;
} me_cpu;

void me_cpu_detect(me_cpu *c);
const char *me_isa_name(me_isa isa);

/* Epilogue applied to y = x W^T + b, in this order. */
#define ME_EPI_GELU 0x1u     /* exact erf GELU */
#define ME_EPI_RESIDUAL 0x2u /* + residual (same shape as y) */
/* bf16 hand-off between two bf16 layers, where me_kern.bf16_io says the
 * layers allow it. ME_EPI_OUT_BF16: y receives, instead of floats, each
 * row rounded to bf16 (nearest even) in the layout in which a bf16 layer
 * copies its input, rows of me_bf16_row_bytes(n_out) bytes, zero-padded.
 * ME_IN_BF16: x is already such rows (of n_in values). The next layer then
 * reads the rounded values it would have made itself: outputs are
 * bit-identical, without the fp32 copy written, read back and converted. */
#define ME_EPI_OUT_BF16 0x4u
#define ME_IN_BF16 0x8u

/* Bytes of one bf16 row of n values in that layout (32 values a block). */
static inline size_t me_bf16_row_bytes(int32_t n)
{
    return (size_t)((n + 31) / 32) * 64;
}

/* The fp32 wide-block GEMMs (gemm_avx2.c, gemm_avx512.c; AVX2's bf16 too)
 * sum each output serially (one FMA per k) within chunks of
 * me_f32_chunk(K) consecutive k, from k = 0, and add the chunk sums in
 * order. Blocked summation of K terms in chunks of c has the error bound
 * (c + K / c - 1) u sum |x_k w_k| (u = 2^-24; Higham, Accuracy and
 * Stability of Numerical Algorithms, 2nd ed., 4.2), and a typical error
 * that also shrinks toward c = sqrt(K). So c is the power of two nearest
 * sqrt(K) in log scale, but never under 16 (shorter chunks cost speed for
 * little accuracy): 16 up to K = 511, 32 at 512 to 2047, 64 at 2048 to
 * 8191. Longer chunks are also faster: fewer folds of the chunk sums into
 * the totals. The errors by chunk length (emulated by bench/chunk_error.c):
 * docs/PERFORMANCE.md, "fp32 summation order". */
static inline int32_t me_f32_chunk(int32_t K)
{
    int32_t l = K > 1 ? 31 - __builtin_clz((unsigned)K) : 0; /* floor(log2 K) */
    int32_t c = (int32_t)1 << ((l + 1) / 2);
    return c < 16 ? 16 : c;
}

/* Every level's packed allocation starts with its header, padded to this
 * many bytes (static_assert in each level); the rest holds only data. */
#define ME_PACK_HDR 64

/* Packed weight formats (me_linear.packed_kind). */
#define ME_PACK_NONE 0
#define ME_PACK_F32 1  /* fp32 panels */
#define ME_PACK_BF16 2 /* bf16 panels */
#define ME_PACK_INT8 3 /* int8 panels + per-channel scales and sums */

/* A linear layer y = x W^T + b with W of shape (n_out, n_in), PyTorch layout.
 * The fp32 W is `w`, or, when w is NULL, up to three blocks of part_rows
 * rows each (the fused Q/K/V projection read in place from the weight file,
 * without a copy); read rows with me_linear_row. `packed` is a
 * level-specific layout built once at load by me_kern.pack; its dtype is
 * packed_dtype (medembed_dtype). Once a layer is packed the fp32 source is
 * no longer read and the model may release it (me_weights_release). */
typedef struct me_linear {
    int32_t n_out, n_in;
    const float *w;         /* (n_out, n_in), or NULL */
    const float *w_part[3]; /* (part_rows, n_in) each, when w is NULL */
    int32_t part_rows;
    const float *b;       /* (n_out) */
    void *packed;         /* kernel-specific layout, owned by the layer; or NULL */
    int32_t packed_kind;  /* ME_PACK_* */
    int32_t packed_dtype; /* medembed_dtype the layer computes in */
    size_t packed_bytes;
    /* 1: packed is a small header that me_kern.adopt made, pointing into a
     * blob the layer does not own (a mapped pack cache, see
     * model/packcache.c); unpack frees only the header. */
    int32_t packed_borrowed;
    /* The layer the forward pass multiplies next, or NULL. At small M each
     * thread pulls in its first weight block of that layer while it computes
     * its last block of this one (gemm_sched.c), so the weight stream from
     * DRAM does not stop between the two. A hint only: results never depend
     * on it. Both layers must have been packed by the same kernel level (as
     * every layer of a model is). */
    const struct me_linear *next;
} me_linear;

/* Attention over one sequence and one head: o = softmax(q k^T * scale) v.
 * q, k, v are the head's columns inside rows of stride `ld` floats. Only
 * the first n_q query rows are computed (n_q = n for a full layer, 1 when
 * only the [CLS] row of the last layer is needed). */
typedef struct me_attn_args {
    const float *q, *k, *v; /* (n, d) each, row stride ld */
    int32_t ld;
    float *o; /* (n_q, d), row stride ldo */
    int32_t ldo;
    int32_t n, d;
    int32_t n_q;  /* 1..n */
    int32_t fast; /* 0: exact (fp32 dtype); 1: scores may be fp32; 2: scores and
                   * P v may use bf16 products with fp32 sums (bf16 / int8
                   * dtypes, whose accuracy budget is a cosine, not 1e-5) */
    float scale;
    void *work; /* me_attn_work_bytes(n_max, d) bytes, 64-byte aligned, per thread */
} me_attn_args;

/* Row n of W, (n_in) floats. */
static inline const float *me_linear_row(const me_linear *L, int32_t n)
{
    if (L->w)
        return L->w + (size_t)n * (size_t)L->n_in;
    return L->w_part[n / L->part_rows] + (size_t)(n % L->part_rows) * (size_t)L->n_in;
}

/* Function table. `pool` may be NULL (single thread). */
typedef struct me_kern {
    me_isa isa;
    /* y[M, n_out] = epi(x[M, n_in] W^T + b); residual may be NULL unless
     * flagged. `work` holds at least me_linear_work_bytes(M, n_in) bytes
     * (64-byte aligned) for quantized copies of x. Computes in
     * L->packed_dtype (f32 when nothing is packed). */
    void (*linear)(const me_linear *L, const float *x, int32_t M, float *y, const float *residual,
                   uint32_t epi, me_pool *pool, void *work);
    /* Build L->packed for compute dtype `dtype` (called once at load).
     * Returns MEDEMBED_OK, _ERR_NOMEM or _ERR_UNSUPPORTED. */
    int (*pack)(me_linear *L, int32_t dtype);
    /* Bit d set: for compute dtype d, pack keeps no copy and `linear` reads
     * the fp32 source in place (so the loader maps it rather than staging
     * a copy to pack from). */
    uint32_t in_place_dtypes;
    void (*unpack)(me_linear *L);
    /* Takes `bytes` bytes at `blob` (64-byte aligned; read-only; must
     * outlive the layer) as L's packed form for `dtype`: an earlier pack's
     * whole allocation (L->packed, L->packed_bytes) as saved to a file, whose
     * first ME_PACK_HDR bytes (the level's header, with process addresses)
     * are not read: the header is rebuilt from the layout that pack would
     * build now for L's shape, dtype and this CPU, and the blob must have
     * that layout's size. Returns MEDEMBED_OK, or _ERR_FORMAT when the blob
     * does not fit, _ERR_NOMEM. NULL: this level cannot adopt (packed
     * weights are then never cached). */
    int (*adopt)(me_linear *L, int32_t dtype, const uint8_t *blob, size_t bytes);
    /* One (sequence, head) of attention. */
    void (*attention)(const me_attn_args *a);
    /* LayerNorm of n-wide rows in place: x = (x - mean) / sqrt(var + eps) g + b. */
    void (*layernorm)(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                      double eps);
    /* x[i] = gelu(x[i]) (exact erf form); exposed for tests. */
    void (*gelu)(float *x, int32_t n);
    /* Non-zero if `linear` takes ME_EPI_OUT_BF16 / ME_IN_BF16 for this
     * packed layer (NULL: never). */
    int (*bf16_io)(const me_linear *L);
    /* Runs `iters` rounds of the dtype's multiply-add loop on registers;
     * returns the operations done (2 per multiply-add). For benchmarks. */
    double (*peak)(int32_t dtype, int64_t iters);
    /* Search dot products (index/): a . b over n floats; a . b with b int8
     * (without b's scale). No alignment needed; the summation order is the
     * level's own (fixed: a score does not depend on the row's address). */
    float (*dot_f32)(const float *a, const float *b, int32_t n);
    float (*dot_i8)(const float *a, const int8_t *b, int32_t n);
} me_kern;

/* The table for the current process (chosen on first use; thread-safe). */
const me_kern *me_kern_get(void);
/* A specific level, or NULL if this CPU/build cannot run it. */
const me_kern *me_kern_for(me_isa isa);
/* Overrides the choice for the rest of the process (tests); NULL restores
 * the automatic one. Not thread-safe against concurrent loads. */
void me_kern_force(const me_kern *k);

/* Work bytes a linear over M rows of n_in inputs may need. */
size_t me_linear_work_bytes(int32_t M, int32_t n_in);
/* Per-thread attention work bytes for sequences of up to n tokens. */
size_t me_attn_work_bytes(int32_t n, int32_t d);

/* ---- scalar references (gemm.c, attn.c) ---- */
void me_linear_scalar(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool, void *work);
int me_pack_scalar(me_linear *L, int32_t dtype);
void me_attention_scalar(const me_attn_args *a);
void me_layernorm_scalar(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                         double eps);
void me_gelu_scalar(float *x, int32_t n);
double me_peak_scalar(int32_t dtype, int64_t iters);
float me_gelu_ref(float x);
float me_dot_f32_scalar(const float *a, const float *b, int32_t n);
float me_dot_i8_scalar(const float *a, const int8_t *b, int32_t n);

/* ---- shared packing helpers (pack.c) ---- */
/* 64-byte aligned; 2 MiB aligned and MADV_HUGEPAGE when large. */
void *me_alloc_big(size_t bytes);
void me_free_big(void *p);
void me_unpack_generic(me_linear *L);
/* fp32 -> bf16, round to nearest even (NaN kept quiet). */
uint16_t me_f32_to_bf16(float f);
/* Symmetric int8 quantization of one row w[0..n), the one rule of every
 * int8 quantizer (weights per output channel, activation rows, the index's
 * stored vectors; see the header comment): q = round(w * 127 / max|w|)
 * (nearest even) in [-127, 127]; writes q and returns the scale max|w| /
 * 127, so w ~= scale * q. A row with nothing to scale (all zero, or see
 * me_quant_inv) gets q = 0 and scale 0. */
float me_quant_row_s8(const float *w, int32_t n, int8_t *q);
/* 127 / amax for a row whose largest |value| is amax, or 0 when the row has
 * nothing to scale: amax zero, NaN or infinite, or below 127 / FLT_MAX (so
 * 127 / amax overflows, and 0 x inf would be NaN). A 0 means a zero row of
 * scale 0, in every int8 quantizer. */
static inline float me_quant_inv(float amax)
{
    float inv = amax > 0.0f && amax <= FLT_MAX ? 127.0f / amax : 0.0f;
    return inv <= FLT_MAX ? inv : 0.0f;
}

/* fp16 / bf16 -> fp32 conversion (exact). */
float me_f16_to_f32(uint16_t h);
float me_bf16_to_f32(uint16_t b);

#endif
