/*
 * ranges.h - the small-M schedule of the GEMM scheduler (gemm_sched.c;
 * one m-block: the weights stream from DRAM once, each block read by all
 * of the rows' tiles in turn).
 *
 * Each pool thread owns one contiguous range of blocks (range
 * `thread % n`) and walks it from the front, a shrinking chunk at a time
 * (me_range_take_front), so that it can prefetch its next block while it
 * computes the current one. A thread whose range is
 * empty then takes blocks from the back of the other ranges, one at a
 * time. Threads rarely get equal shares of the memory bandwidth, and with
 * fixed halves the faster one would wait for the slower at the end of every
 * GEMM (docs/PERFORMANCE.md, "GEMM scheduling").
 *
 * A range is lo | hi << 32 in one atomic word on its own cache line; lo
 * and hi move only by compare-and-swap, so every block is handed out
 * exactly once, whichever threads run whichever tasks (a thread that runs
 * two tasks finds its range empty the second time). Which thread computes a
 * block never changes its result. Relaxed order is enough: the weights are
 * read-only during the run, the quantized copy of x has its own
 * acquire/release (gemm_sched.c, ensure_rows) and the pool's own
 * synchronisation publishes the outputs.
 */
#ifndef ME_KERNELS_RANGES_H
#define ME_KERNELS_RANGES_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    _Alignas(64) atomic_ullong v;
} me_block_range;

/* Most ranges: more threads than this share ranges (thread % n), which
 * stays correct; it bounds the callers' stack arrays (4 KiB). */
#define ME_RANGES_MAX 64

/* The number of ranges for n_threads threads and `units` blocks (>= 1). */
static inline int32_t me_ranges_count(int32_t n_threads, int32_t units)
{
    int32_t n = n_threads < units ? n_threads : units;
    return n < 1 ? 1 : n > ME_RANGES_MAX ? ME_RANGES_MAX : n;
}

/* Where range `i` of n starts when blocks [0, units) are split as evenly as
 * possible (range i is [start(i), start(i + 1))). */
static inline int32_t me_range_start(int32_t units, int32_t i, int32_t n)
{
    return (int32_t)((int64_t)units * i / n);
}

/* Splits blocks [0, units) into n ranges (me_range_start). */
static inline void me_ranges_init(me_block_range *r, int32_t n, int32_t units)
{
    for (int32_t i = 0; i < n; i++) {
        unsigned long long lo = (unsigned long long)me_range_start(units, i, n);
        unsigned long long hi = (unsigned long long)me_range_start(units, i + 1, n);
        atomic_init(&r[i].v, lo | hi << 32);
    }
}

/* The block range r would hand out next from its front (to pick the first
 * prefetch); hi when the range is already empty. */
static inline int32_t me_range_first(me_block_range *r)
{
    return (int32_t)(uint32_t)atomic_load_explicit(&r->v, memory_order_relaxed);
}

/* Takes one block from the front (from_back 0; the owner uses
 * me_range_take_front) or the back (the others); returns -1 once the range
 * is empty. *next gets the block this taker
 * will most likely get next (the one to prefetch), or -1: from the front
 * lo + 1 while it is below hi; from the back hi - 2 only while it is above
 * lo + 1, since lo (the owner's next) is the owner's to take. */
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

/* The owner's take: the front ME_RANGE_CHUNK-th of what is left, at least
 * one block and at most ME_RANGE_CHUNK_MAX, so a range costs its owner
 * fewer compare-and-swaps than it has blocks (17 blocks: 10, 32: 13); each
 * is a full barrier on x86 that waits for the last block's stores. The others still take
 * one block at a time from the back, and the owner's chunk shrinks with
 * the range, so the end of a GEMM stays shared out. Returns the first
 * block and sets *count; *next as for me_range_take from the front. */
#ifndef ME_RANGE_CHUNK
#define ME_RANGE_CHUNK 4
#endif
#ifndef ME_RANGE_CHUNK_MAX
#define ME_RANGE_CHUNK_MAX 8 /* bounds what another thread may wait for */
#endif
_Static_assert(ME_RANGE_CHUNK >= 1 && ME_RANGE_CHUNK_MAX >= 1, "chunks of at least one block");
static inline int32_t me_range_take_front(me_block_range *r, int32_t *count, int32_t *next)
{
    unsigned long long v = atomic_load_explicit(&r->v, memory_order_relaxed);
    for (;;) {
        uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
        if (lo >= hi)
            return -1;
        uint32_t c = (hi - lo) / ME_RANGE_CHUNK;
        c = c < 1 ? 1 : c > ME_RANGE_CHUNK_MAX ? ME_RANGE_CHUNK_MAX : c;
        if (atomic_compare_exchange_weak_explicit(&r->v, &v, v + c, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *count = (int32_t)c;
            *next = lo + c < hi ? (int32_t)(lo + c) : -1;
            return (int32_t)lo;
        }
    }
}

/* The front of r as it is now (a plain load, no claim): the block its owner
 * would take next, or -1 when the range is empty. */
static inline int32_t me_range_peek(me_block_range *r)
{
    unsigned long long v = atomic_load_explicit(&r->v, memory_order_relaxed);
    uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
    return lo < hi ? (int32_t)lo : -1;
}

/* A thread's whole share: its own range `own`, then what is left of the
 * others'. block(ctx, b, next) computes block b (next: the block this
 * thread will most likely compute next, to prefetch, or -1 when it knows
 * of none: then it is probably its last). The hint for a chunk's last
 * block is read when that block starts, since others may have taken the
 * front's blocks from the back meanwhile. */
static inline void me_ranges_work(me_block_range *r, int32_t n, int32_t own,
                                  void (*block)(void *ctx, int32_t b, int32_t next), void *ctx)
{
    int32_t b, next, count;
    while ((b = me_range_take_front(&r[own], &count, &next)) >= 0)
        for (int32_t k = 0; k < count; k++)
            block(ctx, b + k, k + 1 < count ? b + k + 1 : me_range_peek(&r[own]));
    for (int32_t i = 1; i < n; i++)
        while ((b = me_range_take(&r[(own + i) % n], 1, &next)) >= 0)
            block(ctx, b, next);
}

#endif
