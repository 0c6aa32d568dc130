/*
 * gemm_sched.c - the one GEMM scheduler of the SIMD levels (gemm_sched.h
 * says what a level gives it). Generic C: the levels' tile code does the
 * arithmetic; this file decides who computes which block when, and what
 * to pull into the caches meanwhile. Nothing here changes an output's bits.
 *
 * Large M: x is cut into m-blocks that stay in L2 while the blocks of W
 * stream past; a task is (an m-block, a range of blocks), with enough tasks
 * for the pool to balance. Small M (one m-block, the latency case): every
 * thread walks its own range of blocks, prefetching its next block while it
 * computes the current one, then takes over the end of the others' ranges
 * (ranges.h); its last block prefetches its first block of the next layer
 * (me_linear.next). Why each of these: docs/PERFORMANCE.md, "GEMM
 * scheduling".
 */
#include <sched.h>
#include <string.h>

#include "kernels/gemm_sched.h"

/* The write prefetch (prefetchw) of the outputs needs PRFCHW from the
 * compiler in this generic file; CPUs without it (Intel before Broadwell)
 * execute it as a NOP. */
#if defined(__x86_64__) || defined(__i386__)
#define ME_PF_WRITE_FN __attribute__((target("prfchw")))
#else
#define ME_PF_WRITE_FN
#endif

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int32_t cdiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

static int32_t min32(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

/* The first block of a task is asked into L2 before the task waits for (or
 * makes) the copy of x: at small M nothing else hides its trip from DRAM. */
#ifndef ME_PF_START_BYTES
#define ME_PF_START_BYTES 4096
#endif

/* Rows per m-block: as many as fit uk->x_bytes (the block of x stays in L2
 * while a task's blocks stream past it), in whole multiples of mb_step, at
 * most about 256; M itself when it fits: one m-block, the latency case. */
static int32_t mb_rows(const me_gemm_plan *p, int32_t K, int32_t M)
{
    const me_gemm_ukernel *uk = p->uk;
    size_t row_bytes = p->ldq ? p->ldq : (size_t)K * 4;
    int32_t step = uk->mb_step, max = 256 / step * step;
    int32_t mb = row_bytes ? (int32_t)(uk->x_bytes / row_bytes) / step * step : max;
    mb = mb < step ? step : mb > max ? max : mb;
    return mb >= M ? M : mb;
}

/* The copy of x for m-block mb is made by the first task that needs it
 * (state 0 -> 1 -> 2), which saves a pool run per bf16 / int8 GEMM; the
 * others wait for it. Every row is converted from its own values only, so
 * which task does it does not matter. */
static void ensure_rows(const me_gemm_job *j, int32_t mb, int32_t m0, int32_t m1)
{
    atomic_int *st = &j->mb_state[mb];
    int expect = 0;
    if (atomic_load_explicit(st, memory_order_acquire) == 2)
        return;
    if (atomic_compare_exchange_strong(st, &expect, 1)) {
        j->p.uk->quant(j, m0, m1);
        atomic_store_explicit(st, 2, memory_order_release);
        return;
    }
    for (uint32_t i = 1; atomic_load_explicit(st, memory_order_acquire) != 2; i++) {
        if ((i & 1023) == 0)
            sched_yield();
        else
            cpu_relax();
    }
}

/* Small M: where `thread`'s own range of layer L->next starts, as
 * me_gemm_linear will split it, when that layer is packed in blocks and
 * will run at small M too (at this M or fewer rows, as the [CLS]-only last
 * layer); NULL otherwise. Every layer of a model is packed by the same
 * level, so j->plan describes L->next too. */
static const uint8_t *next_layer_start(const me_gemm_job *j, int32_t thread)
{
    const me_linear *nx = j->L->next;
    me_gemm_plan np;
    if (!nx || nx->packed_kind != j->L->packed_kind || !j->plan(nx, &np) || np.n_blocks <= 0)
        return NULL;
    if (mb_rows(&np, nx->n_in, j->M) < j->M)
        return NULL;
    int32_t nr = me_ranges_count(j->n_threads, np.n_blocks);
    return np.blocks + (size_t)me_range_start(np.n_blocks, thread % nr, nr) * np.block_bytes;
}

/* A task's rows [m0, m1) of x (fp32, or the copy) and its tile scratch. */
typedef struct {
    const me_gemm_job *j;
    const uint8_t *x;
    size_t ldx;
    int32_t m0, m1;
    /* The first `share` row tiles (uk->pf_tiles at most) pull the next
     * block in, pfs bytes of it per step each: at small M they are the only
     * ones, and the block is the next thing read from DRAM. */
    int32_t share, pfs;
    const uint8_t *after; /* small M: this thread's first block of L->next */
    int32_t run0, run1;   /* uk->finish: the blocks [run0, run1) not yet finished */
    _Alignas(64) uint8_t acc[ME_GEMM_ACC_BYTES];
} sched_ctx;

/* uk->finish over the run of blocks computed since the last call. */
static void finish_run(sched_ctx *c)
{
    const me_gemm_job *j = c->j;
    if (c->run1 > c->run0)
        j->p.uk->finish(j, c->m0, c->m1, c->run0 * j->p.uk->cols,
                        min32(c->run1 * j->p.uk->cols, j->N));
    c->run0 = c->run1 = 0;
}

/* Block cb against the task's rows; the block at next (NULL: none) is
 * pulled in meanwhile. */
ME_PF_WRITE_FN static void sched_block(sched_ctx *c, int32_t cb, const uint8_t *next)
{
    const me_gemm_job *j = c->j;
    const me_gemm_plan *p = &j->p;
    const me_gemm_ukernel *uk = p->uk;
    int32_t n0 = cb * uk->cols, n1 = min32(n0 + uk->cols, j->N);
    const uint8_t *wp = p->blocks + (size_t)cb * p->block_bytes;
    /* The block's bias (and int8 scales and sums) are read by the store
     * after the first tile. At small M a call streams all the weights past
     * the caches, so they come from DRAM each call: ask for them now rather
     * than stall the store on them. A bias read in place from the weight
     * file may be only 4-byte aligned, so both ends of each 16 are asked
     * for. */
    for (int32_t nc = n0; nc < n1; nc += 16) {
        int32_t nl = min32(nc + 15, n1 - 1);
        if (j->L->b) {
            __builtin_prefetch(j->L->b + nc, 0, 3);
            __builtin_prefetch(j->L->b + nl, 0, 3);
        }
        if (p->scale) {
            __builtin_prefetch(p->scale + nc, 0, 3);
            __builtin_prefetch(p->scale + nl, 0, 3);
        }
        if (p->wsum)
            __builtin_prefetch(p->wsum + nc, 0, 3);
    }
    for (int32_t mt = c->m0; mt < c->m1; mt += uk->rows) {
        int32_t rows = min32(c->m1 - mt, uk->rows);
        int32_t ti = (mt - c->m0) / uk->rows;
        const uint8_t *pf =
            next && ti < c->share ? next + (size_t)ti * (size_t)p->steps * (size_t)c->pfs : NULL;
        /* Large M: this tile's output and residual lines were last touched
         * a layer ago (out of L2); ask for them now so that the store does
         * not wait on DRAM after the tile. At small M they are hot and the
         * prefetches would only compete with the weight stream. */
        if (j->n_mb > 1 && !(j->epi & ME_EPI_OUT_BF16)) {
            for (int32_t r = 0; r < rows; r++) {
                size_t o = (size_t)(mt + r) * (size_t)j->N;
                for (int32_t nc = n0; nc < n1; nc += 16) {
                    if (j->res)
                        __builtin_prefetch(j->res + o + nc, 0, 3);
                    __builtin_prefetch(j->y + o + nc, 1, 3);
                }
            }
        }
        if (p->steps > 0)
            uk->tile[rows - 1](c->x + (size_t)mt * c->ldx, c->ldx, wp, p->steps, pf, c->pfs,
                               c->acc);
        else /* K = 0: empty sums */
            memset(c->acc, 0, sizeof c->acc);
        uk->store(j, c->acc, mt, rows, n0);
    }
    if (uk->finish) { /* extend the run, or finish it and start another */
        if (c->run1 != cb || c->run1 - c->run0 >= uk->task_blocks)
            finish_run(c);
        if (c->run1 == c->run0)
            c->run0 = cb;
        c->run1 = cb + 1;
    }
}

/* Small M: block nb of this layer next, or (nb = -1, this thread's last
 * block as far as it knows) its first block of the next layer. */
static void range_block(void *ctx, int32_t cb, int32_t nb)
{
    sched_ctx *c = ctx;
    const me_gemm_plan *p = &c->j->p;
    sched_block(c, cb, nb >= 0 ? p->blocks + (size_t)nb * p->block_bytes : c->after);
}

/* task = (a range of ppt blocks, an m-block); or at small M (j->ranges) the
 * range of the task's pool thread, then what is left of the others'. */
static void gemm_task(void *arg, int64_t task, int32_t thread)
{
    const me_gemm_job *j = arg;
    const me_gemm_plan *p = &j->p;
    const me_gemm_ukernel *uk = p->uk;
    /* m-block major: consecutive tasks share the m-block (x, or its copy,
     * stays in L2 while the blocks stream past); the tasks of a new m-block
     * wait for its copy, which costs less than streaming the copies of x
     * once per block range (docs/PERFORMANCE.md, "GEMM scheduling"). */
    int32_t nct = cdiv(p->n_blocks, j->ppt);
    int32_t mb = (int32_t)(task / nct), nc = (int32_t)(task % nct);
    int32_t c0 = nc * j->ppt, c1 = min32(c0 + j->ppt, p->n_blocks);
    int32_t m0 = mb * j->mb_rows, m1 = min32(m0 + j->mb_rows, j->M);
    /* Small M: one m-block. A thread starts with range thread % n, the
     * range its pool index gets in every layer (with at least as many
     * blocks as threads), so that the block it pulled in during the layer
     * before (next_layer_start) is the one it starts with. */
    int32_t own = j->ranges ? thread % j->n_ranges : 0;
    if (j->ranges) {
        mb = m0 = 0;
        m1 = j->M;
        c0 = me_range_first(&j->ranges[own]);
        c1 = c0 + 1;
    }
    const uint8_t *w0 = p->blocks + (size_t)c0 * p->block_bytes;
    for (size_t o = 0; c0 < p->n_blocks && o < p->block_bytes && o < ME_PF_START_BYTES; o += 64)
        __builtin_prefetch(w0 + o, 0, 2);
    const uint8_t *x = (const uint8_t *)(const void *)j->x;
    size_t ldx = (size_t)j->K * 4;
    if (p->ldq) {
        if (!(j->epi & ME_IN_BF16))
            ensure_rows(j, mb, m0, m1);
        x = j->xq;
        ldx = j->ldq;
    }
    int32_t ntile = cdiv(m1 - m0, uk->rows);
    int32_t share = ntile < uk->pf_tiles ? ntile : uk->pf_tiles;
    int32_t step_bytes = p->steps > 0 ? (int32_t)(p->block_bytes / (size_t)p->steps) : 0;
    sched_ctx c = {.j = j, .x = x, .ldx = ldx, .m0 = m0, .m1 = m1, .share = share,
                   .pfs = share > 0 ? step_bytes / share : 0};
    if (j->ranges) {
        c.after = next_layer_start(j, thread);
        me_ranges_work(j->ranges, j->n_ranges, own, range_block, &c);
    } else {
        for (int32_t cb = c0; cb < c1; cb++)
            sched_block(&c, cb,
                        cb + 1 < c1 ? p->blocks + (size_t)(cb + 1) * p->block_bytes : NULL);
    }
    if (uk->finish)
        finish_run(&c);
}

void me_gemm_linear(me_gemm_plan_fn plan, const me_linear *L, const float *x, int32_t M, float *y,
                    const float *residual, uint32_t epi, me_pool *pool, void *work)
{
    if (M <= 0)
        return;
    me_gemm_job j;
    memset(&j, 0, sizeof j);
    if (!plan(L, &j.p)) {
        me_linear_scalar(L, x, M, y, residual, epi, pool, work);
        return;
    }
    j.L = L;
    j.plan = plan;
    j.x = x;
    j.M = M;
    j.N = L->n_out;
    j.K = L->n_in;
    j.y = y;
    j.res = residual;
    j.epi = epi;
    j.mb_rows = mb_rows(&j.p, j.K, M);
    j.n_mb = cdiv(M, j.mb_rows);
    if (j.p.ldq) {
        /* work: the copy (M rows of ldq bytes), M row scales rounded up to
         * 64 bytes, the m-blocks' states */
        uint8_t *w = work;
        j.ldq = j.p.ldq;
        j.xq = w;
        j.xscale = (float *)(void *)(w + j.ldq * (size_t)M);
        j.mb_state = (atomic_int *)(void *)(w + j.ldq * (size_t)M +
                                            (((size_t)M * 4 + 63) & ~(size_t)63));
        for (int32_t i = 0; i < j.n_mb; i++)
            atomic_init(&j.mb_state[i], 0);
        /* bf16 hand-off (the level's bf16_io allowed it): x is the copy */
        if (epi & ME_IN_BF16)
            j.xq = (uint8_t *)(uintptr_t)(const void *)x;
    }
    if (epi & ME_EPI_OUT_BF16)
        j.ldy_b = me_bf16_row_bytes(j.N);
    int32_t nt = me_pool_threads(pool), units = j.p.n_blocks;
    int32_t ppt = j.p.uk->task_blocks;
    while (ppt > 1 && (int64_t)cdiv(units, ppt) * j.n_mb < 8 * (int64_t)nt)
        ppt /= 2;
    j.ppt = ppt;
    me_block_range ranges[ME_RANGES_MAX];
    if (j.n_mb == 1 && units > 0 && j.p.uk->pf_tiles > 0) { /* N = 0: no blocks, no tasks */
        j.n_ranges = me_ranges_count(nt, units);
        me_ranges_init(ranges, j.n_ranges, units);
        j.ranges = ranges;
        j.n_threads = nt;
        me_pool_run(pool, j.n_ranges, gemm_task, &j);
        return;
    }
    me_pool_run(pool, (int64_t)cdiv(units, ppt) * j.n_mb, gemm_task, &j);
}
