/*
 * pack.c - helpers shared by every kernel level: big aligned allocations
 * for packed weights and scratch, the bf16 and int8 rounding rules of
 * kernels.h, and the work-buffer sizes the forward pass reserves.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/kernels.h"

#define ME_HUGE_MIN ((size_t)1 << 20)
#define ME_HUGE_ALIGN ((size_t)2 << 20)

void *me_alloc_big(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = 64;
    /* Large blocks are 2 MiB aligned and advised for transparent huge pages:
     * a first touch of a fresh 4 KiB page is slow in VMs, and
     * packed weights are streamed once per forward pass, so TLB reach
     * matters too. */
    size_t align = bytes >= ME_HUGE_MIN ? ME_HUGE_ALIGN : 64;
    if (posix_memalign(&p, align, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= ME_HUGE_MIN)
        madvise(p, (bytes + ME_HUGE_ALIGN - 1) & ~(ME_HUGE_ALIGN - 1), MADV_HUGEPAGE);
#endif
    return p;
}

void me_free_big(void *p)
{
    free(p);
}

void me_unpack_generic(me_linear *L)
{
    if (!L)
        return;
    if (L->packed_borrowed)
        free(L->packed); /* adopt's header; the blob belongs to the pack cache */
    else
        me_free_big(L->packed);
    L->packed = NULL;
    L->packed_borrowed = 0;
    L->packed_kind = ME_PACK_NONE;
    L->packed_bytes = 0;
}

uint16_t me_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);         /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float me_quant_row_s8(const float *w, int32_t n, int8_t *q)
{
    float amax = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        if (a > amax)
            amax = a;
    }
    float inv = me_quant_inv(amax);
    if (inv == 0.0f) { /* nothing to scale: a zero row */
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0 && !defined(__FAST_MATH__)
    /* Clamped first (a NaN goes to -127, as the clamped lrintf did on
     * x86-64), then rounded to nearest even by adding and taking away 1.5 x
     * 2^23, which is exact for |x| <= 127 in fp32 arithmetic: the same
     * values as lrintf, without a library call per weight (which dominated
     * an int8 load) and in a loop the compiler can vectorize.
     * -ffast-math would fold the add and subtract away, hence the guard. */
    for (int32_t i = 0; i < n; i++) {
        float x = w[i] * inv;
        x = x > -127.0f ? x : -127.0f;
        x = x < 127.0f ? x : 127.0f;
        x = (x + 12582912.0f) - 12582912.0f;
        q[i] = (int8_t)(int32_t)x;
    }
#else
    for (int32_t i = 0; i < n; i++) {
        long v = lrintf(w[i] * inv);
        q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
#endif
    return amax / 127.0f;
}

size_t me_linear_work_bytes(int32_t M, int32_t n_in)
{
    /* the largest copy of x a level makes: AVX2 bf16 keeps its bf16-rounded
     * x as fp32 (4 bytes a value; the other copies, bf16 rows with K rounded
     * up to 64 and int8 rows with a per-row scale and sum, take less), plus
     * alignment slack; 15 rows more for the int8 copy's rounding up to
     * groups of 16 rows. Pages a level does not write are never touched. */
    size_t k64 = ((size_t)n_in + 63) & ~(size_t)63;
    return ((size_t)M + 15) * (k64 * 4 + 64) + 4096;
}

size_t me_attn_work_bytes(int32_t n, int32_t d)
{
    size_t nn = ((size_t)n + 15) & ~(size_t)15;
    size_t dd = ((size_t)d + 15) & ~(size_t)15;
    /* transposed keys in double, a 64-row block of scores, a 64-row block of
     * queries in double and of output sums. The key rows are longer than nn:
     * n rounded up to 32, plus one cache line of padding (attn_avx512.c,
     * attn_avx2.c), up to 256 d bytes more; the 64-row terms (query blocks
     * are 3 to 6 rows) and the last term cover that, and test_attention's
     * canary checks every level against this size. */
    return nn * dd * 8 + 64 * nn * 4 + 64 * dd * 8 * 2 + 4096 + dd * 128;
}
