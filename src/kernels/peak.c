/*
 * peak.c - medembed_peak_gflops(): the arithmetic peak the benchmarks
 * compare against. Each thread runs the level's register-only multiply-add
 * loop (me_kern.peak) in rounds until the time is up; the total of
 * operations over the longest thread time is the peak.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MEDEMBED_EXPERIMENTAL
#include "kernels/kernels.h"
#include "medembed.h"

typedef struct {
    const me_kern *k;
    int32_t dtype;
    double seconds;
    double ops, elapsed;
} peak_arg;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *peak_thread(void *va)
{
    peak_arg *a = va;
    double t0 = now_s(), t = t0;
    a->ops = 0;
    while (t - t0 < a->seconds) {
        a->ops += a->k->peak(a->dtype, 1 << 16);
        t = now_s();
    }
    a->elapsed = t - t0;
    return NULL;
}

double medembed_peak_gflops(int32_t dtype, int32_t n_threads, double seconds)
{
    if (dtype < MEDEMBED_DTYPE_F32 || dtype > MEDEMBED_DTYPE_INT8 || n_threads < 0 ||
        !(seconds > 0) || seconds > 60)
        return 0;
    if (n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int32_t)n : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    const me_kern *k = me_kern_get();
    peak_arg *args = calloc((size_t)n_threads, sizeof *args);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    if (!args || !th) {
        free(args);
        free(th);
        return 0;
    }
    int32_t started = 0;
    for (int32_t i = 0; i < n_threads; i++) {
        args[i] = (peak_arg){k, dtype, seconds, 0, 0};
        if (i > 0 && pthread_create(&th[i], NULL, peak_thread, &args[i]) == 0)
            started++;
    }
    peak_thread(&args[0]);
    for (int32_t i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
    double ops = 0, t = 0;
    for (int32_t i = 0; i <= started; i++) {
        ops += args[i].ops;
        if (args[i].elapsed > t)
            t = args[i].elapsed;
    }
    free(args);
    free(th);
    return t > 0 ? ops / t * 1e-9 : 0;
}
