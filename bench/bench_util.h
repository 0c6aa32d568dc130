/*
 * bench_util.h - what the bench/ tools share: a monotonic clock and a
 * qsort comparator for timings.
 */
#ifndef MEDEMBED_BENCH_UTIL_H
#define MEDEMBED_BENCH_UTIL_H

#include <time.h>

/* seconds on the monotonic clock */
static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* qsort comparator for doubles, ascending */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
