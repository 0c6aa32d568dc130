/* pool.c - persistent pthread pool with an atomic task counter.
 *
 * A forward pass is ~100 pool runs back to back (GEMMs, attention,
 * LayerNorms), each 0.1-10 ms, so what a run costs on top of its tasks
 * shows directly in the batch-1 latency. Hence:
 *   - waiting (workers for the next run, the caller for the last worker)
 *     spins on an atomic with the CPU's pause hint for SPIN_NS, then
 *     yields for up to YIELD_NS, and only then sleeps on a condition
 *     variable;
 *   - the mutex and the condition variables are touched only when someone
 *     is actually asleep: `n_sleeping` / `main_sleeping` are published with
 *     sequentially consistent atomics before the sleeper re-checks its
 *     condition, and the waker checks them after publishing its change
 *     (Dekker), so no wake-up is lost and none is paid for needlessly.
 * See docs/PERFORMANCE.md, "Thread pool". */
#include "thread/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Waiting: pause-spin for SPIN_NS (the usual gap inside a forward pass),
 * then sched_yield for up to YIELD_NS (on a machine with more runnable
 * threads than cores the thread we wait for may be preempted, and yielding
 * lets it back on sooner than spinning), then sleep. */
#define SPIN_NS 20000
#define YIELD_NS 2000000

struct me_pool {
    int32_t n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done_cv;
    /* current job (written by the caller before `generation` moves) */
    me_task_fn fn;
    void *arg;
    int64_t n_tasks;
    atomic_llong next;
    atomic_int n_active; /* workers still inside the current job */
    atomic_uint generation;
    atomic_int n_sleeping;    /* workers blocked on `wake` */
    atomic_int main_sleeping; /* the caller blocked on `done_cv` */
    atomic_int stop;
};

typedef struct {
    me_pool *p;
    int32_t index;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("pause");
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void run_tasks(me_pool *p, int32_t thread)
{
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks)
            break;
        p->fn(p->arg, t, thread);
    }
}

/* One step of a wait that started at *t0 (0 = not yet timed): pause, or
 * yield once past SPIN_NS; returns 0 once the wait should turn into a sleep. */
static int wait_step(uint32_t i, int64_t *t0)
{
    if (*t0 == 0 || now_ns() - *t0 < SPIN_NS) {
        cpu_relax();
        if ((i & 63) == 0 && *t0 == 0)
            *t0 = now_ns();
        return 1;
    }
    if (now_ns() - *t0 > SPIN_NS + YIELD_NS)
        return 0;
    sched_yield();
    return 1;
}

/* Waits (without sleeping) until generation != seen or the wait budget is
 * spent; returns the generation. */
static unsigned spin_for_job(me_pool *p, unsigned seen)
{
    int64_t t0 = 0;
    for (uint32_t i = 1;; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || !wait_step(i, &t0))
            return g;
    }
}

static void *worker_main(void *va)
{
    worker_arg *wa = va;
    me_pool *p = wa->p;
    int32_t index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g = spin_for_job(p, seen);
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            g = atomic_load(&p->generation);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        run_tasks(p, index);
        if (atomic_fetch_sub(&p->n_active, 1) == 1 && atomic_load(&p->main_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

me_pool *me_pool_create(int32_t n_threads)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int32_t)n : 1;
    }
    if (n_threads > ME_POOL_MAX_THREADS)
        n_threads = ME_POOL_MAX_THREADS;
    me_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->n_active, 0);
    atomic_init(&p->generation, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->main_sleeping, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return NULL;
        }
        for (int32_t i = 1; i < n_threads; i++) {
            /* Filled before the thread starts: the worker reads it at once. */
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->p = p;
                wa->index = i;
            }
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n_threads = i; /* only i-1 workers exist */
                me_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void me_pool_free(me_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int32_t me_pool_threads(const me_pool *p)
{
    return p ? p->n_threads : 1;
}

void me_pool_run(me_pool *p, int64_t n_tasks, me_task_fn fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->n_active, p->n_threads - 1);
    atomic_fetch_add(&p->generation, 1); /* seq_cst: ordered before n_sleeping */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    run_tasks(p, 0);
    /* Wait for the workers: spin, yield, then sleep. */
    int64_t t0 = 0;
    for (uint32_t i = 1; atomic_load(&p->n_active) > 0; i++) {
        if (!wait_step(i, &t0)) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->main_sleeping, 1);
            while (atomic_load(&p->n_active) > 0)
                pthread_cond_wait(&p->done_cv, &p->mu);
            atomic_store(&p->main_sleeping, 0);
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }
}
