/*
 * chunk_error.c - the error of the fp32 GEMMs' blocked summation, by chunk
 * length: each output is summed with one fmaf per k within chunks of c
 * consecutive k from k = 0, and the chunk sums are added in order (the
 * order of the wide-block kernels, see me_f32_chunk in src/kernels/kernels.h).
 * For each K, T dot products of N(0, 1) vectors (x shifted by MEAN) are
 * summed that way for c = 8 .. 128 and compared with a long double sum; the
 * error is printed in units of u sum |x_k w_k| (u = 2^-24), rms and max.
 *
 *   cc -O2 -o build/chunk_error bench/chunk_error.c -lm
 *   build/chunk_error [MEAN] [T]     # MEAN 0, T 20000
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long long state = 88172645463325252ull;

static double uniform(void) /* (0, 1) */
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return ((double)(state >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
    double r = sqrt(-2.0 * log(uniform())); /* two statements: a fixed order of draws */
    return r * cos(6.283185307179586 * uniform());
}

static float chunked(const float *x, const float *w, int K, int c)
{
    float tot = 0.0f;
    for (int q0 = 0; q0 < K; q0 += c) {
        float a = 0.0f;
        for (int q = q0; q < q0 + c && q < K; q++)
            a = fmaf(x[q], w[q], a);
        tot = q0 == 0 ? a : tot + a;
    }
    return tot;
}

int main(int argc, char **argv)
{
    static const int KS[] = {64, 256, 384, 768, 1536, 3072, 4096};
    static const int CS[] = {8, 16, 32, 64, 128};
    enum { NK = sizeof KS / sizeof KS[0], NC = sizeof CS / sizeof CS[0] };
    double mean = argc > 1 ? atof(argv[1]) : 0.0;
    int T = argc > 2 ? atoi(argv[2]) : 20000;
    if (T <= 0) {
        fprintf(stderr, "usage: chunk_error [MEAN] [T > 0]\n");
        return 2;
    }
    float x[4096], w[4096];
    printf("error in units of u sum|x w|, %d dot products each, x mean %g: rms (max)\n", T, mean);
    for (int ki = 0; ki < NK; ki++) {
        int K = KS[ki];
        double se[NC] = {0}, mx[NC] = {0};
        for (int t = 0; t < T; t++) {
            long double exact = 0;
            double sabs = 0;
            for (int i = 0; i < K; i++) {
                x[i] = (float)(normal() + mean);
                w[i] = (float)normal();
                exact += (long double)x[i] * w[i];
                sabs += fabs((double)x[i] * w[i]);
            }
            for (int ci = 0; ci < NC; ci++) {
                double e = fabs((double)((long double)chunked(x, w, K, CS[ci]) - exact)) / sabs *
                           16777216.0;
                se[ci] += e * e;
                mx[ci] = e > mx[ci] ? e : mx[ci];
            }
        }
        printf("K=%5d", K);
        for (int ci = 0; ci < NC; ci++)
            printf("  c=%-3d %5.2f (%5.2f)", CS[ci], sqrt(se[ci] / T), mx[ci]);
        printf("\n");
    }
    return 0;
}
