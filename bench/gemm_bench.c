/*
 * gemm_bench.c - one linear layer y = epi(x W^T + b) through the kernel
 * table this CPU selects (as the forward pass calls it; MEDEMBED_ISA=avx2
 * etc. forces a level), in GFLOP/s: the GEMMs' efficiency in place,
 * without the rest of the forward pass. Prints the best and the median of
 * R timed calls after one warm-up, and a checksum of y, so that two builds
 * can be compared for speed and for identical results.
 *
 *   make bench-tools
 *   build/gemm_bench M N K DTYPE [EPI] [THREADS] [R]     (--help: this usage)
 *     DTYPE 0 f32, 1 bf16, 2 int8; EPI 0 none, 1 GELU, 2 residual
 *   # the four GEMMs of a BERT-base layer at 32x128 tokens:
 *   for s in "2304 768 0" "768 768 2" "3072 768 1" "768 3072 2"; do
 *       set -- $s; build/gemm_bench 4096 $1 $2 0 $3; done
 *   # M = 16 (1x16 tokens): the small-M schedule, one range of blocks a thread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/kernels.h"
#include "medembed.h"
#include "thread/pool.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: gemm_bench M N K DTYPE [EPI] [THREADS] [R]\n"
               "  y[M, N] = epi(x[M, K] W^T + b) through the selected kernel level\n"
               "  DTYPE   0 f32, 1 bf16, 2 int8\n"
               "  EPI     0 none, 1 GELU, 2 residual, 3 both (default 0)\n"
               "  THREADS pool threads (default 2)\n"
               "  R       timed calls after one warm-up (default 9)\n"
               "Prints GFLOP/s (best, median) and a checksum of y.\n"
               "MEDEMBED_ISA=scalar|avx2|avx512 forces a level; MEDEMBED_CPU_DISABLE=\n"
               "avx512_bf16,avx512_vnni selects the AVX-512 fallbacks.\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 5) {
        usage(stderr);
        return 2;
    }
    int32_t M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]), dt = atoi(argv[4]);
    uint32_t epi = argc > 5 ? (uint32_t)atoi(argv[5]) : 0;
    int32_t nt = argc > 6 ? atoi(argv[6]) : 2;
    int R = argc > 7 ? atoi(argv[7]) : 9;
    if (M <= 0 || N <= 0 || K <= 0 || dt < 0 || dt > 2 || epi > 3 || nt <= 0 || R <= 0 || R > 1000) {
        fprintf(stderr, "gemm_bench: bad arguments\n");
        return 2;
    }
    const me_kern *k = me_kern_get();
    float *w = malloc(sizeof *w * (size_t)N * (size_t)K), *b = malloc(sizeof *b * (size_t)N);
    float *x = me_alloc_big(sizeof *x * (size_t)M * (size_t)K);
    float *y = me_alloc_big(sizeof *y * (size_t)M * (size_t)N);
    float *r = me_alloc_big(sizeof *r * (size_t)M * (size_t)N);
    void *work = me_alloc_big(me_linear_work_bytes(M, K));
    double *t = malloc(sizeof *t * (size_t)R);
    if (!w || !b || !x || !y || !r || !work || !t) {
        fprintf(stderr, "gemm_bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++)
        w[i] = (float)((i * 7919) % 1000) * 1e-4f - 0.05f;
    for (int32_t i = 0; i < N; i++)
        b[i] = 0.01f;
    for (size_t i = 0; i < (size_t)M * (size_t)K; i++)
        x[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)M * (size_t)N; i++)
        r[i] = 0.1f;
    me_linear L = {.n_out = N, .n_in = K, .w = w, .b = b};
    if (k->pack(&L, dt) != MEDEMBED_OK) {
        fprintf(stderr, "gemm_bench: cannot pack for dtype %d\n", dt);
        return 1;
    }
    me_pool *p = me_pool_create(nt);
    const float *res = (epi & ME_EPI_RESIDUAL) ? r : NULL;
    k->linear(&L, x, M, y, res, epi, p, work);
    for (int i = 0; i < R; i++) {
        double t0 = bench_now();
        k->linear(&L, x, M, y, res, epi, p, work);
        t[i] = bench_now() - t0;
    }
    qsort(t, (size_t)R, sizeof *t, bench_cmp_double);
    double fl = 2.0 * M * (double)N * K;
    uint64_t h = 1469598103934665603ull; /* FNV-1a over y's bytes */
    const unsigned char *yb = (const unsigned char *)y;
    for (size_t i = 0; i < sizeof *y * (size_t)M * (size_t)N; i++)
        h = (h ^ yb[i]) * 1099511628211ull;
    printf("%s M=%d N=%d K=%d dtype=%d epi=%u threads=%d: best %.1f GFLOP/s, median %.1f, "
           "y %016llx\n",
           me_isa_name(k->isa), M, N, K, dt, epi, nt, fl / t[0] * 1e-9, fl / t[R / 2] * 1e-9,
           (unsigned long long)h);
    me_pool_free(p);
    k->unpack(&L);
    me_free_big(work);
    me_free_big(x);
    me_free_big(y);
    me_free_big(r);
    free(w);
    free(b);
    free(t);
    return 0;
}
