/*
 * ranges.h - the latency-mode schedule of the wide-block GEMMs (one
 * m-block, so the weights stream from DRAM once and every block is
 * visited by one row tile or two).
 *
 * Each pool task owns one contiguous range of blocks and walks it from the
 * front, so that it can prefetch its next block while it computes the
 * current one. A task whose range is empty then takes blocks from the back
 * of the other ranges, one at a time. The two threads of a 2-core VM rarely
 * get equal shares of the memory bandwidth: with fixed halves the faster
 * one waited for the slower at the end of every GEMM, 18% of the time of
 * the pool runs at 1x16 f32 (Zen 5), and taking over the other's last
 * blocks brought that to 3%.
 *
 * A range is lo | hi << 32 in one atomic word on its own cache line; lo
 * and hi move only by compare-and-swap, so every block is handed out
 * exactly once. Which thread computes a block never changes its result.
 * Relaxed order is enough: the weights and x are read-only during the run
 * and the pool's own synchronisation publishes the outputs.
 */
#ifndef ME_KERNELS_RANGES_H
#define ME_KERNELS_RANGES_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    _Alignas(64) atomic_ullong v;
} me_block_range;

/* Splits blocks [0, units) into n ranges as evenly as possible. */
static inline void me_ranges_init(me_block_range *r, int32_t n, int32_t units)
{
    for (int32_t i = 0; i < n; i++) {
        unsigned long long lo = (unsigned long long)((int64_t)units * i / n);
        unsigned long long hi = (unsigned long long)((int64_t)units * (i + 1) / n);
        atomic_init(&r[i].v, lo | hi << 32);
    }
}

/* The block range r will hand out first (to size the first prefetch). */
static inline int32_t me_range_first(me_block_range *r)
{
    return (int32_t)(uint32_t)atomic_load_explicit(&r->v, memory_order_relaxed);
}

/* Takes a block from the front (own range: from_back 0) or the back;
 * returns -1 once the range is empty. *next gets the block this taker
 * will most likely get next (the one to prefetch), or -1. */
static inline int32_t me_range_take(me_block_range *r, int from_back, int32_t *next)
{
    unsigned long long v = atomic_load_explicit(&r->v, memory_order_relaxed);
    for (;;) {
        uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
        if (lo >= hi)
            return -1;
        unsigned long long nv = from_back ? v - (1ull << 32) : v + 1;
        if (atomic_compare_exchange_weak_explicit(&r->v, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if (!from_back) {
                *next = lo + 1 < hi ? (int32_t)lo + 1 : -1;
                return (int32_t)lo;
            }
            *next = hi - 1 > lo + 1 ? (int32_t)hi - 2 : -1;
            return (int32_t)hi - 1;
        }
    }
}

/* Task `task`'s whole share: its own range, then what is left of the
 * others'. block(ctx, b, next) computes block b (next: see me_range_take). */
static inline void me_ranges_work(me_block_range *r, int32_t n, int32_t task,
                                  void (*block)(void *ctx, int32_t b, int32_t next), void *ctx)
{
    int32_t b, next;
    while ((b = me_range_take(&r[task], 0, &next)) >= 0)
        block(ctx, b, next);
    for (int32_t i = 1; i < n; i++)
        while ((b = me_range_take(&r[(task + i) % n], 1, &next)) >= 0)
            block(ctx, b, next);
}

#endif
