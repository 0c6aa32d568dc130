/*
 * attn_bench.c - attention alone, one thread, through the kernel table this
 * CPU selects (MEDEMBED_ISA=avx2 etc. forces a level): S sequences x 12
 * heads of N tokens, head size 64, read from a fused QKV buffer with the
 * forward pass's row stride (3 x 768 floats), as a BERT-base layer calls it.
 * Prints the best and the median of R timed passes over all heads after one
 * untimed pass, in ms and in GFLOP/s (4 N^2 64 flops per head), and a
 * checksum of the outputs, so that two builds can be compared for speed and
 * for identical results.
 *
 *   make bench-tools    # or: cc -O2 -D_GNU_SOURCE -Iinclude -Isrc bench/attn_bench.c \
 *                       #       build/libmedembed.a -lutf8proc -ljansson -lsqlite3 -lpthread -lm
 *   build/attn_bench N [FAST] [R] [S]
 *     FAST 0 fp32 dtype (double scores), 2 bf16 / int8 dtypes; R 5; S 8
 *   build/attn_bench 512 0 5; MEDEMBED_ISA=avx2 build/attn_bench 512 0 5
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/kernels.h"
#include "medembed.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: attn_bench N [FAST(0 fp32, 2 bf16/int8)] [R] [S]\n");
        return 2;
    }
    int32_t n = atoi(argv[1]), fast = argc > 2 ? atoi(argv[2]) : 0;
    int R = argc > 3 ? atoi(argv[3]) : 5, S = argc > 4 ? atoi(argv[4]) : 8;
    const int32_t H = 768, nh = 12, d = 64;
    if (n <= 0 || n > 8192 || (fast != 0 && fast != 2) || R <= 0 || R > 1000 || S <= 0 ||
        S > 64) {
        fprintf(stderr, "attn_bench: bad arguments\n");
        return 2;
    }
    const me_kern *k = me_kern_get();
    size_t ld = 3 * (size_t)H, rows = (size_t)S * (size_t)n;
    float *qkv = me_alloc_big(sizeof *qkv * ld * rows);
    float *o = me_alloc_big(sizeof *o * (size_t)H * rows);
    size_t wb = (me_attn_work_bytes(n, d) + 4095) & ~(size_t)4095;
    void *work = me_alloc_big(wb);
    double *t = malloc(sizeof *t * (size_t)R);
    if (!qkv || !o || !work || !t) {
        fprintf(stderr, "attn_bench: out of memory\n");
        return 1;
    }
    /* scores of a few units, as in a trained model's attention */
    uint32_t seed = 1;
    for (size_t i = 0; i < ld * rows; i++) {
        seed = seed * 1664525u + 1013904223u;
        qkv[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 4.0f;
    }
    memset(o, 0, sizeof *o * (size_t)H * rows);
    memset(work, 0, wb);
    for (int r = -1; r < R; r++) {
        double t0 = bench_now();
        for (int32_t s = 0; s < S; s++)
            for (int32_t h = 0; h < nh; h++) {
                const float *b = qkv + (size_t)s * (size_t)n * ld + (size_t)h * (size_t)d;
                me_attn_args a = {.q = b,
                                  .k = b + H,
                                  .v = b + 2 * (size_t)H,
                                  .ld = (int32_t)ld,
                                  .o = o + (size_t)s * (size_t)n * (size_t)H + (size_t)h * (size_t)d,
                                  .ldo = H,
                                  .n = n,
                                  .d = d,
                                  .n_q = n,
                                  .fast = fast,
                                  .scale = 0.125f,
                                  .work = work};
                k->attention(&a);
            }
        if (r >= 0)
            t[r] = bench_now() - t0;
    }
    double sum = 0;
    for (size_t i = 0; i < (size_t)H * rows; i++)
        sum += (double)o[i] * (double)(i % 7 + 1);
    qsort(t, (size_t)R, sizeof *t, bench_cmp_double);
    double flop = 4.0 * (double)n * (double)n * d * nh * S;
    printf("%s n=%d fast=%d heads=%d: best %.2f ms (%.1f GFLOP/s), median %.2f ms, checksum %.9g\n",
           k->isa == ME_ISA_AVX512 ? "avx512" : k->isa == ME_ISA_AVX2 ? "avx2" : "scalar", n,
           fast, S * nh, t[0] * 1e3, flop / t[0] * 1e-9, t[R / 2] * 1e3, sum);
    free(t);
    me_free_big(work);
    me_free_big(o);
    me_free_big(qkv);
    return 0;
}
