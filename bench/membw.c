/*
 * membw.c - read bandwidth of this machine for a buffer of a given size:
 * two threads each stream one half with 64-byte AVX-512 loads, 40 passes
 * (the first 5 untimed); prints the best and mean pass. Buffers that fit
 * the last-level cache stay there between passes, as a model's weights do
 * between calls, so sweeping the size shows where the cache ends.
 *
 *   cc -O2 -mavx512f -pthread bench/membw.c -o build/membw
 *   for mb in 16 48 85 128 170 340 1024; do build/membw $mb; done
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *p;
    size_t n;
    long sum;
} span;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *stream(void *arg)
{
    span *s = arg;
    __m512i acc = _mm512_setzero_si512();
    for (size_t o = 0; o < s->n; o += 64)
        acc = _mm512_add_epi32(acc, _mm512_load_si512(s->p + o));
    s->sum = _mm512_reduce_add_epi32(acc);
    return NULL;
}

int main(int argc, char **argv)
{
    double mb = argc > 1 ? atof(argv[1]) : 0;
    if (!(mb >= 1 && mb <= 65536)) {
        fprintf(stderr, "usage: membw MB (1..65536)\n");
        return 2;
    }
    size_t n = ((size_t)(mb * 1048576.0) + 8191) & ~(size_t)8191;
    char *buf = aligned_alloc(4096, n);
    if (!buf) {
        fprintf(stderr, "membw: out of memory for %.0f MB\n", mb);
        return 1;
    }
    memset(buf, 1, n);
    double best = 1e30, total = 0;
    long check = 0;
    for (int it = 0; it < 40; it++) {
        span s[2] = {{buf, n / 2, 0}, {buf + n / 2, n / 2, 0}};
        pthread_t th;
        double t = now();
        pthread_create(&th, NULL, stream, &s[1]);
        stream(&s[0]);
        pthread_join(th, NULL);
        t = now() - t;
        check += s[0].sum + s[1].sum;
        if (it >= 5) {
            best = t < best ? t : best;
            total += t;
        }
    }
    printf("%.0f MB: best %.2f ms (%.1f GB/s), mean %.2f ms (%.1f GB/s)%s\n", mb, best * 1e3,
           (double)n / best * 1e-9, total / 35 * 1e3, (double)n / (total / 35) * 1e-9,
           check == 0 ? " (?)" : "");
    free(buf);
    return 0;
}
