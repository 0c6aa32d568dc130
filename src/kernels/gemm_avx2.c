/*
 * gemm_avx2.c - AVX2 + FMA linear layers (fp32, bf16, int8) and the AVX2
 * kernel table.
 *
 * The same dot-product formulation as gemm_avx512.c (read that header
 * first), at 8 lanes and with 16 registers: W in panels of 4 output rows,
 * [panel][k block][4][32 B], and a 2x4 tile of outputs in 8 accumulators
 * reduced by one fixed tree (me_hsum8x8).
 *   f32  : 8 floats per block; lanes sum every 8th product.
 *   bf16 : 8 bf16 per block, widened to fp32 by a shift (AVX2 has no bf16
 *          dot product): the products of kernels.h's bf16 rule in fp32 FMA.
 *   int8 : 16 bytes per block, widened to int16 and summed in pairs by
 *          vpmaddwd into int32 (exact, |255 * 127| fits in int16 products).
 * Determinism as in gemm_avx512.c.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd_avx2.h"
#include "medembed.h"

void me_attention_avx2(const me_attn_args *a);
void me_layernorm_avx2(float *x, int32_t rows, int32_t n, const float *g, const float *b,
                       double eps);
void me_gelu_avx2(float *x, int32_t n);

typedef struct {
    int32_t kind;
    int32_t n_panels;
    int32_t kblocks;  /* k blocks: K/8 (f32, bf16), K/16 (int8) */
    int32_t bbytes;   /* bytes per row per block: 32 (f32), 16 (bf16, int8) */
    float *scale;     /* int8 */
    int32_t *wsum128; /* int8 */
    uint8_t *data;
} pk256;

#define PANEL_BYTES(pk) ((size_t)(pk)->kblocks * 4 * (size_t)(pk)->bbytes)

static int32_t cdiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

static int pack256(me_linear *L, int32_t dtype)
{
    int32_t N = L->n_out, K = L->n_in;
    int32_t per_block = dtype == MEDEMBED_DTYPE_F32    ? 8
                        : dtype == MEDEMBED_DTYPE_BF16 ? 8
                        : dtype == MEDEMBED_DTYPE_INT8 ? 16
                                                       : 0;
    if (per_block == 0)
        return MEDEMBED_ERR_UNSUPPORTED;
    int32_t bbytes = dtype == MEDEMBED_DTYPE_F32 ? 32 : 16;
    int32_t np = cdiv(N, 4), kb = cdiv(K, per_block);
    size_t side = dtype == MEDEMBED_DTYPE_INT8 ? (size_t)np * 4 * 8 : 0;
    size_t hdr = (sizeof(pk256) + 63) & ~(size_t)63;
    side = (side + 63) & ~(size_t)63;
    size_t body = (size_t)np * (size_t)kb * 4 * (size_t)bbytes;
    size_t bytes = hdr + side + body;
    uint8_t *blk = me_alloc_big(bytes);
    if (!blk)
        return MEDEMBED_ERR_NOMEM;
    pk256 *pk = (pk256 *)(void *)blk;
    memset(pk, 0, sizeof *pk);
    pk->n_panels = np;
    pk->kblocks = kb;
    pk->bbytes = bbytes;
    pk->data = blk + hdr + side;
    /* zero only the padding (rows past N, the last k block past K) */
    for (int32_t n = 0; n < np * 4; n++)
        for (int32_t b = n < N ? kb - (K % per_block != 0) : 0; b < kb; b++)
            memset(pk->data + (size_t)(n / 4) * PANEL_BYTES(pk) +
                       ((size_t)b * 4 + (size_t)(n % 4)) * (size_t)bbytes,
                   0, (size_t)bbytes);
    for (int32_t n = 0; n < N && dtype != MEDEMBED_DTYPE_INT8; n++) {
        const float *w = me_linear_row(L, n);
        uint8_t *dst = pk->data + (size_t)(n / 4) * PANEL_BYTES(pk) + (size_t)(n % 4) * bbytes;
        for (int32_t k = 0; k < K; k += per_block, dst += 4 * bbytes) {
            int32_t cnt = K - k < per_block ? K - k : per_block;
            if (dtype == MEDEMBED_DTYPE_F32)
                memcpy(dst, w + k, sizeof *w * (size_t)cnt);
            else
                for (int32_t i = 0; i < cnt; i++)
                    ((uint16_t *)(void *)dst)[i] = me_f32_to_bf16(w[k + i]);
        }
    }
    if (dtype == MEDEMBED_DTYPE_F32) {
        pk->kind = ME_PACK_F32;
    } else if (dtype == MEDEMBED_DTYPE_BF16) {
        pk->kind = ME_PACK_BF16;
    } else {
        pk->kind = ME_PACK_INT8;
        pk->scale = (float *)(void *)(blk + hdr);
        pk->wsum128 = (int32_t *)(void *)(blk + hdr + (size_t)np * 4 * 4);
        memset(pk->scale, 0, (size_t)np * 4 * 8);
        int8_t *row = me_alloc_big((size_t)K);
        if (!row) {
            me_free_big(blk);
            return MEDEMBED_ERR_NOMEM;
        }
        for (int32_t n = 0; n < N; n++) {
            pk->scale[n] = me_quant_row_s8(me_linear_row(L, n), K, row);
            int32_t sum = 0;
            uint8_t *panel = pk->data + (size_t)(n / 4) * PANEL_BYTES(pk);
            for (int32_t k = 0; k < K; k++) {
                panel[((size_t)(k / 16) * 4 + (size_t)(n % 4)) * 16 + (size_t)(k % 16)] =
                    (uint8_t)row[k];
                sum += row[k];
            }
            pk->wsum128[n] = 128 * sum;
        }
        me_free_big(row);
    }
    L->packed = pk;
    L->packed_kind = pk->kind;
    L->packed_dtype = dtype;
    L->packed_bytes = bytes;
    return MEDEMBED_OK;
}

/* a[2c + r] += x_r * w_c */
#define TILE_STEP(OP, X0, X1, W0, W1, W2, W3)                                                      \
    do {                                                                                           \
        a[0] = OP(a[0], X0, W0);                                                                   \
        a[1] = OP(a[1], X1, W0);                                                                   \
        a[2] = OP(a[2], X0, W1);                                                                   \
        a[3] = OP(a[3], X1, W1);                                                                   \
        a[4] = OP(a[4], X0, W2);                                                                   \
        a[5] = OP(a[5], X1, W2);                                                                   \
        a[6] = OP(a[6], X0, W3);                                                                   \
        a[7] = OP(a[7], X1, W3);                                                                   \
    } while (0)

#define FMA_PS(acc, x, w) _mm256_fmadd_ps(x, w, acc)
#define MADD_I16(acc, x, w) _mm256_add_epi32(acc, _mm256_madd_epi16(x, w))

__attribute__((noinline)) static __m256 tile_f32(const float *x0, const float *x1,
                                                 const uint8_t *wp, int32_t K)
{
    __m256 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        a[i] = _mm256_setzero_ps();
    const float *w = (const float *)(const void *)wp;
    int32_t kfull = K / 8, k = 0;
    for (int32_t kb = 0; kb < kfull; kb++, k += 8, w += 32) {
        __m256 v0 = _mm256_loadu_ps(x0 + k), v1 = _mm256_loadu_ps(x1 + k);
        TILE_STEP(FMA_PS, v0, v1, _mm256_load_ps(w), _mm256_load_ps(w + 8), _mm256_load_ps(w + 16),
                  _mm256_load_ps(w + 24));
    }
    if (k < K) {
        __m256i m = me_mask8(K - k);
        __m256 v0 = _mm256_maskload_ps(x0 + k, m), v1 = _mm256_maskload_ps(x1 + k, m);
        TILE_STEP(FMA_PS, v0, v1, _mm256_load_ps(w), _mm256_load_ps(w + 8), _mm256_load_ps(w + 16),
                  _mm256_load_ps(w + 24));
    }
    return me_hsum8x8(a);
}

static inline __m256 bf16x8(const uint8_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)), 16));
}

__attribute__((noinline)) static __m256 tile_bf16(const uint8_t *x0, const uint8_t *x1,
                                                  const uint8_t *wp, int32_t kblocks)
{
    __m256 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        a[i] = _mm256_setzero_ps();
    for (int32_t kb = 0; kb < kblocks; kb++, wp += 64) {
        size_t o = (size_t)kb * 16;
        __m256 v0 = bf16x8(x0 + o), v1 = bf16x8(x1 + o);
        TILE_STEP(FMA_PS, v0, v1, bf16x8(wp), bf16x8(wp + 16), bf16x8(wp + 32), bf16x8(wp + 48));
    }
    return me_hsum8x8(a);
}

static inline __m256i s8x16(const uint8_t *p)
{
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)p));
}

static inline __m256i u8x16(const uint8_t *p)
{
    return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)p));
}

__attribute__((noinline)) static __m256i tile_i8(const uint8_t *x0, const uint8_t *x1,
                                                 const uint8_t *wp, int32_t kblocks)
{
    __m256i a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        a[i] = _mm256_setzero_si256();
    for (int32_t kb = 0; kb < kblocks; kb++, wp += 64) {
        size_t o = (size_t)kb * 16;
        __m256i v0 = u8x16(x0 + o), v1 = u8x16(x1 + o);
        TILE_STEP(MADD_I16, v0, v1, s8x16(wp), s8x16(wp + 16), s8x16(wp + 32), s8x16(wp + 48));
    }
    return me_hsum8x8_i32(a);
}

typedef struct {
    const me_linear *L;
    const pk256 *pk;
    const float *x;
    const uint8_t *xq;
    size_t ldq;
    const float *xscale;
    int32_t M, N, K;
    float *y;
    const float *res;
    uint32_t epi;
    int32_t mb_rows, n_mb, ppt;
} gjob;

static __m128i mask4(int32_t cols)
{
    return _mm_cmpgt_epi32(_mm_set1_epi32(cols), _mm_setr_epi32(0, 1, 2, 3));
}

__attribute__((noinline)) static void store_tile(const gjob *j, __m256 v, int32_t m0, int32_t rows,
                                                 int32_t n0)
{
    int32_t cols = j->N - n0 < 4 ? j->N - n0 : 4;
    __m128i cm = mask4(cols);
    if (j->L->b) {
        __m128 b = _mm_maskload_ps(j->L->b + n0, cm);
        v = _mm256_add_ps(v, _mm256_set_m128(b, b));
    }
    if (j->epi & ME_EPI_GELU)
        v = me_gelu256(v);
    size_t ld = (size_t)j->N;
    float *y0 = j->y + (size_t)m0 * ld + (size_t)n0;
    if (j->epi & ME_EPI_RESIDUAL) {
        const float *r0 = j->res + (size_t)m0 * ld + (size_t)n0;
        __m128 lo = _mm_maskload_ps(r0, cm);
        __m128 hi = rows > 1 ? _mm_maskload_ps(r0 + ld, cm) : _mm_setzero_ps();
        v = _mm256_add_ps(v, _mm256_set_m128(hi, lo));
    }
    _mm_maskstore_ps(y0, cm, _mm256_castps256_ps128(v));
    if (rows > 1)
        _mm_maskstore_ps(y0 + ld, cm, _mm256_extractf128_ps(v, 1));
}

static __m256 dequant_tile(const gjob *j, __m256i acc, int32_t m0, int32_t rows, int32_t n0)
{
    int32_t cols = j->N - n0 < 4 ? j->N - n0 : 4;
    __m128i cm = mask4(cols);
    __m128i c4 = _mm_maskload_epi32(j->pk->wsum128 + n0, cm);
    acc = _mm256_sub_epi32(acc, _mm256_set_m128i(c4, c4));
    __m128 s4 = _mm_maskload_ps(j->pk->scale + n0, cm);
    __m256 sw = _mm256_set_m128(s4, s4);
    __m128 sx0 = _mm_set1_ps(j->xscale[m0]);
    __m128 sx1 = rows > 1 ? _mm_set1_ps(j->xscale[m0 + 1]) : sx0;
    return _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(_mm256_set_m128(sx1, sx0), sw));
}

static void gemm_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const gjob *j = arg;
    const pk256 *pk = j->pk;
    int32_t nc = (int32_t)(task / j->n_mb), mb = (int32_t)(task % j->n_mb);
    int32_t p0 = nc * j->ppt, p1 = p0 + j->ppt < pk->n_panels ? p0 + j->ppt : pk->n_panels;
    int32_t m0 = mb * j->mb_rows, m1 = m0 + j->mb_rows < j->M ? m0 + j->mb_rows : j->M;
    for (int32_t p = p0; p < p1; p++) {
        const uint8_t *wp = pk->data + (size_t)p * PANEL_BYTES(pk);
        for (int32_t mt = m0; mt < m1; mt += 2) {
            int32_t rows = m1 - mt < 2 ? m1 - mt : 2;
            int32_t r1 = rows > 1 ? mt + 1 : mt;
            __m256 v;
            if (pk->kind == ME_PACK_F32) {
                v = tile_f32(j->x + (size_t)mt * (size_t)j->K, j->x + (size_t)r1 * (size_t)j->K, wp,
                             j->K);
            } else {
                const uint8_t *q0 = j->xq + (size_t)mt * j->ldq, *q1 = j->xq + (size_t)r1 * j->ldq;
                if (pk->kind == ME_PACK_BF16)
                    v = tile_bf16(q0, q1, wp, pk->kblocks);
                else
                    v = dequant_tile(j, tile_i8(q0, q1, wp, pk->kblocks), mt, rows, p * 4);
            }
            store_tile(j, v, mt, rows, p * 4);
        }
    }
}

static void quant_bf16_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const gjob *j = arg;
    int32_t m0 = (int32_t)task * 16, m1 = m0 + 16 < j->M ? m0 + 16 : j->M;
    int32_t kpad = j->pk->kblocks * 8;
    for (int32_t m = m0; m < m1; m++) {
        const float *x = j->x + (size_t)m * (size_t)j->K;
        uint16_t *q = (uint16_t *)(void *)(j->xq + (size_t)m * j->ldq);
        for (int32_t k = 0; k < kpad; k++)
            q[k] = k < j->K ? me_f32_to_bf16(x[k]) : 0;
    }
}

static void quant_i8_task(void *arg, int64_t task, int32_t thread)
{
    (void)thread;
    const gjob *j = arg;
    int32_t m0 = (int32_t)task * 16, m1 = m0 + 16 < j->M ? m0 + 16 : j->M;
    int32_t kpad = j->pk->kblocks * 16;
    float *xscale = (float *)(uintptr_t)j->xscale;
    for (int32_t m = m0; m < m1; m++) {
        uint8_t *q = (uint8_t *)(uintptr_t)(j->xq + (size_t)m * j->ldq);
        xscale[m] = me_quant_row_s8(j->x + (size_t)m * (size_t)j->K, j->K, (int8_t *)q);
        for (int32_t k = 0; k < kpad; k++)
            q[k] = k < j->K ? (uint8_t)((int8_t)q[k] + 128) : 128;
    }
}

static void linear256(const me_linear *L, const float *x, int32_t M, float *y,
                      const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    if (M <= 0)
        return;
    const pk256 *pk = L->packed;
    if (!pk) {
        me_linear_scalar(L, x, M, y, residual, epi, pool, work);
        return;
    }
    gjob j;
    memset(&j, 0, sizeof j);
    j.L = L;
    j.pk = pk;
    j.x = x;
    j.M = M;
    j.N = L->n_out;
    j.K = L->n_in;
    j.y = y;
    j.res = residual;
    j.epi = epi;
    size_t row_bytes = (size_t)j.K * 4;
    if (pk->kind != ME_PACK_F32) {
        j.ldq = ((size_t)pk->kblocks * (size_t)pk->bbytes + 63) & ~(size_t)63;
        j.xq = work;
        j.xscale = (const float *)(const void *)((uint8_t *)work + j.ldq * (size_t)M);
        row_bytes = j.ldq;
        me_pool_run(pool, cdiv(M, 16), pk->kind == ME_PACK_BF16 ? quant_bf16_task : quant_i8_task,
                    &j);
    }
    int32_t mb = (int32_t)((256u << 10) / row_bytes) & ~1;
    if (mb < 2)
        mb = 2;
    if (mb > 256)
        mb = 256;
    if (mb >= M)
        mb = M;
    j.mb_rows = mb;
    j.n_mb = cdiv(M, mb);
    int32_t nt = me_pool_threads(pool);
    int32_t ppt = 16;
    while (ppt > 1 && (int64_t)cdiv(pk->n_panels, ppt) * j.n_mb < 8 * (int64_t)nt)
        ppt /= 2;
    j.ppt = ppt;
    me_pool_run(pool, (int64_t)cdiv(pk->n_panels, ppt) * j.n_mb, gemm_task, &j);
}

static double peak256(int32_t dtype, int64_t iters)
{
    __m256 a[12];
    __m256 x = _mm256_set1_ps(1e-3f);
    if (dtype == MEDEMBED_DTYPE_INT8) {
        __m256i b[12], xi = _mm256_set1_epi16(1);
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            b[i] = _mm256_setzero_si256();
        for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++)
                b[i] = MADD_I16(b[i], xi, xi);
            __asm__ volatile(""
                             : "+x"(b[0]), "+x"(b[1]), "+x"(b[2]), "+x"(b[3]), "+x"(b[4]),
                               "+x"(b[5]), "+x"(b[6]), "+x"(b[7]), "+x"(b[8]), "+x"(b[9]),
                               "+x"(b[10]), "+x"(b[11]));
        }
        return (double)iters * 12 * 32;
    }
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_setzero_ps();
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = FMA_PS(a[i], x, x);
        __asm__ volatile(""
                         : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]),
                           "+x"(a[6]), "+x"(a[7]), "+x"(a[8]), "+x"(a[9]), "+x"(a[10]),
                           "+x"(a[11]));
    }
    return (double)iters * 12 * 16;
}

const me_kern me_kern_avx2 = {
    .isa = ME_ISA_AVX2,
    .linear = linear256,
    .pack = pack256,
    .unpack = me_unpack_generic,
    .attention = me_attention_avx2,
    .layernorm = me_layernorm_avx2,
    .gelu = me_gelu_avx2,
    .peak = peak256,
};
